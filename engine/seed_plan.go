package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
)

// Import plans: what an import changes, entry by entry, for keyhook
// import --bundle and its --dry-run (docs/configuration.md, "Bundles").
// The plan is not predicted: the import runs in its transaction, the
// entries are read before and after it, and a dry run rolls it back, so
// that what a dry run prints is what the import would do, defaults and
// checks included.

// ChangeAction is what an import did to one entry.
type ChangeAction string

const (
	ChangeCreated   ChangeAction = "created"
	ChangeUpdated   ChangeAction = "updated"
	ChangeUnchanged ChangeAction = "unchanged"
	// ChangeAbsent is an entry of the database the seed does not name,
	// left as it is.
	ChangeAbsent ChangeAction = "absent"
	// ChangeDeleted is such an entry deleted by a pruning import.
	ChangeDeleted ChangeAction = "deleted"
)

// Change is what an import did to one entry: Section is "config" (Name
// empty), "script" or "client"; Fields are the top-level members of the
// entry's admin document that changed, sorted (for config: the
// properties).
type Change struct {
	Section string
	Name    string
	Action  ChangeAction
	Fields  []string
	// SecretGenerated is a client created with a secret the server
	// generated, as the seed gave none: nobody knows it until it is
	// rotated.
	SecretGenerated bool
}

// ImportOptions say how ImportPlan imports.
type ImportOptions struct {
	// DryRun rolls the import back after computing its plan.
	DryRun bool
	// Prune deletes the scripts and clients the seed does not name (never
	// the bootstrap admin client), in the same transaction.
	Prune bool
}

// errDryRun rolls a dry run's transaction back.
var errDryRun = errors.New("dry run")

// ErrNotAtomic is a dry run or plan asked of stores that cannot roll
// back.
var ErrNotAtomic = errors.New("the stores cannot run an import in one transaction")

// ImportPlan imports s as Import does (scripts written through
// ReplaceScript and CreateScript, so that a changed script gets a new
// version authored AuthorImport and an unchanged one none) and returns
// what changed: config first, then scripts and clients by name. Users are
// imported but not planned. An error changes nothing; with DryRun nothing
// changes either.
func (e *Engine) ImportPlan(ctx context.Context, s *Seed, opt ImportOptions) ([]Change, error) {
	a, ok := e.st.Clients.(Atomic)
	if !ok {
		return nil, ErrNotAtomic
	}
	ctx = withAuthor(ctx, AuthorImport)
	var plan []Change
	err := a.Atomically(ctx, func(ctx context.Context) error {
		before, err := e.planState(ctx)
		if err != nil {
			return err
		}
		var st ImportStats
		if err := e.apply(ctx, s, &st); err != nil {
			return err
		}
		if opt.Prune {
			if err := e.prune(ctx, s, before); err != nil {
				return err
			}
		}
		after, err := e.planState(ctx)
		if err != nil {
			return err
		}
		plan = diffPlan(s, before, after)
		if opt.DryRun {
			return errDryRun
		}
		return nil
	})
	if err == nil {
		return plan, nil
	}
	e.rolledBack(ctx, s, planClients(plan))
	if errors.Is(err, errDryRun) {
		return plan, nil
	}
	return nil, err
}

// planClients names the clients of plan, whose cached entries a roll
// back makes stale.
func planClients(plan []Change) []string {
	var ids []string
	for _, c := range plan {
		if c.Section == "client" {
			ids = append(ids, c.Name)
		}
	}
	return ids
}

// rolledBack forgets what this instance cached from writes a roll back
// undid: clients, properties and the scripts handed to the runtime.
func (e *Engine) rolledBack(ctx context.Context, s *Seed, clients []string) {
	for _, c := range s.Clients {
		e.forgetClient(c.ClientID)
	}
	for _, id := range clients {
		e.forgetClient(id)
	}
	e.propsGuard.wrote(nil)
	if err := e.reloadProperties(ctx); err != nil {
		e.log.Warn("import: reloading properties after a roll back", "err", err)
	}
	e.scriptsChanged(nil)
	if err := e.reloadScripts(ctx, true); err != nil {
		e.log.Warn("import: reloading scripts after a roll back", "err", err)
	}
}

// planState is what a plan compares: the properties and the admin
// documents of scripts and clients, as JSON objects.
type planState struct {
	config  map[string]json.RawMessage
	scripts map[string]map[string]json.RawMessage
	clients map[string]map[string]json.RawMessage
}

// planOmits are the members of a script's document that are state, not
// settings: they change on every write or with the instance.
var planOmits = []string{"version", "version_number", "tripped_until", "falling_back_to"}

func (e *Engine) planState(ctx context.Context) (*planState, error) {
	st := &planState{scripts: map[string]map[string]json.RawMessage{}, clients: map[string]map[string]json.RawMessage{}}
	if err := remarshal(e.Properties(), &st.config); err != nil {
		return nil, err
	}
	scripts, err := e.ScriptDocs(ctx)
	if err != nil {
		return nil, err
	}
	for _, sc := range scripts {
		var m map[string]json.RawMessage
		if err := remarshal(sc, &m); err != nil {
			return nil, err
		}
		for _, k := range planOmits {
			delete(m, k)
		}
		st.scripts[sc.Name] = m
	}
	clients, err := e.ClientDocs(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range clients {
		var m map[string]json.RawMessage
		if err := remarshal(c, &m); err != nil {
			return nil, err
		}
		delete(m, "client_secret")
		st.clients[c.ClientID] = m
	}
	return st, nil
}

func remarshal(v, out any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return Wrap(CodeServerError, err, "the import plan could not be encoded")
	}
	return json.Unmarshal(raw, out)
}

// prune deletes the scripts and clients of before that s does not name,
// but the bootstrap admin client.
func (e *Engine) prune(ctx context.Context, s *Seed, before *planState) error {
	inSeed := map[string]bool{}
	for _, sc := range s.Scripts {
		inSeed["script "+sc.Name] = true
	}
	for _, c := range s.Clients {
		inSeed["client "+c.ClientID] = true
	}
	for _, id := range slices.Sorted(maps.Keys(before.clients)) {
		if id != BootstrapAdminID && !inSeed["client "+id] {
			if err := e.DeleteClient(ctx, id); err != nil {
				return err
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before.scripts)) {
		if !inSeed["script "+name] {
			if err := e.DeleteScript(ctx, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// diffPlan compares the states before and after importing s.
func diffPlan(s *Seed, before, after *planState) []Change {
	cfg := Change{Section: "config", Action: ChangeUnchanged, Fields: changedFields(before.config, after.config)}
	if len(cfg.Fields) > 0 {
		cfg.Action = ChangeUpdated
	}
	plan := []Change{cfg}
	seedClients := map[string]*ClientDoc{}
	for _, c := range s.Clients {
		seedClients[c.ClientID] = c
	}
	for _, sec := range []struct {
		name          string
		before, after map[string]map[string]json.RawMessage
	}{{"script", before.scripts, after.scripts}, {"client", before.clients, after.clients}} {
		names := slices.Collect(maps.Keys(sec.before))
		for n := range sec.after {
			if _, ok := sec.before[n]; !ok {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			b, inBefore := sec.before[n]
			a, inAfter := sec.after[n]
			c := Change{Section: sec.name, Name: n}
			switch {
			case !inBefore:
				c.Action = ChangeCreated
				if sec.name == "client" {
					var method string
					_ = json.Unmarshal(a["token_endpoint_auth_method"], &method)
					if sc := seedClients[n]; sc != nil && sc.ClientSecret == "" && AuthMethod(method).UsesSecret() {
						c.SecretGenerated = true
					}
				}
			case !inAfter:
				c.Action = ChangeDeleted
			case sec.name == "client" && seedClients[n] == nil, sec.name == "script" && !seedHasScript(s, n):
				c.Action = ChangeAbsent
			default:
				c.Fields = changedFields(b, a)
				c.Action = ChangeUnchanged
				if len(c.Fields) > 0 {
					c.Action = ChangeUpdated
				}
			}
			if sec.name == "client" && n == BootstrapAdminID && c.Action == ChangeAbsent {
				continue // the bootstrap admin client is no part of a bundle
			}
			plan = append(plan, c)
		}
	}
	return plan
}

func seedHasScript(s *Seed, name string) bool {
	for _, sc := range s.Scripts {
		if sc.Name == name {
			return true
		}
	}
	return false
}

// changedFields are the members whose values differ between a and b,
// sorted.
func changedFields(a, b map[string]json.RawMessage) []string {
	var out []string
	for k, av := range a {
		if bv, ok := b[k]; !ok || !bytes.Equal(av, bv) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
