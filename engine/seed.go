package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Seed is the import/export document of `keyhook import` and --seed:
// server properties, scripts, clients and users (docs/configuration.md: keyhook import).
type Seed struct {
	Config  map[string]json.RawMessage `json:"config,omitempty"`
	Scripts []*SeedScript              `json:"scripts,omitempty"`
	Clients []*ClientDoc               `json:"clients,omitempty"`
	Users   []*UserDoc                 `json:"users,omitempty"`
	// TrustedIssuers are the issuers of JWT bearer grants
	// (docs/jwt-bearer.md).
	TrustedIssuers []*TrustedIssuerDoc `json:"trusted_issuers,omitempty"`
}

// SeedScript is a script of a seed file; its source may live in a file
// next to it (resolved by the caller before Import).
type SeedScript struct {
	ScriptDoc
	SourceFile string `json:"source_file,omitempty"`
	// Versions is the script's history, oldest first, as Export writes
	// it; Import makes it the script's history (docs/scripts.md,
	// "Versions, rollback and rollout").
	Versions []*ScriptVersionDoc `json:"versions,omitempty"`
}

// ImportStats counts what Import did.
type ImportStats struct {
	Created, Replaced int
}

// Atomic is implemented by stores that can make a run of changes
// all-or-nothing: the changes fn makes through them with the context it is
// given commit together when fn returns nil, and none does otherwise.
// storage.Store implements it; Import uses it when Stores.Clients does.
type Atomic interface {
	Atomically(ctx context.Context, fn func(ctx context.Context) error) error
}

// ImportError is a seed entry Import refused: Section is "config",
// "scripts", "clients", "users" or "trusted_issuers" and Index the entry's position in it
// (0 for config), so that a caller can point at the entry in its file.
type ImportError struct {
	Section string
	Index   int
	Err     error
}

func (e *ImportError) Error() string {
	if e.Section == "config" {
		return "config: " + e.Err.Error()
	}
	return fmt.Sprintf("%s[%d]: %v", e.Section, e.Index, e.Err)
}

func (e *ImportError) Unwrap() error { return e.Err }

// Import applies a seed idempotently: what exists is replaced, what does
// not is created. Scripts come before the clients that bind them. The
// import is all or nothing when the stores are Atomic: an entry refused
// (an *ImportError) leaves the entries before it unwritten too.
func (e *Engine) Import(ctx context.Context, s *Seed) (ImportStats, error) {
	st, _, err := e.importSeed(ctx, s, false)
	return st, err
}

// ImportIntoEmpty imports s only when the database is empty (no scripts, no users, no client but keyhook-admin), in
// the same transaction as the check when the stores are Atomic, and
// reports whether it did: --seed imports its file into a new database
// only, so that a restart never undoes what admins changed since.
func (e *Engine) ImportIntoEmpty(ctx context.Context, s *Seed) (ImportStats, bool, error) {
	return e.importSeed(ctx, s, true)
}

func (e *Engine) importSeed(ctx context.Context, s *Seed, onlyEmpty bool) (st ImportStats, imported bool, err error) {
	ctx = withAuthor(ctx, AuthorImport)
	if onlyEmpty {
		ctx = withAuthor(ctx, AuthorSeed)
	}
	apply := func(ctx context.Context) error {
		st = ImportStats{}
		if onlyEmpty {
			empty, err := e.empty(ctx)
			if err != nil || !empty {
				return err
			}
		}
		imported = true
		return e.apply(ctx, s, &st)
	}
	a, ok := e.st.Clients.(Atomic)
	if !ok {
		err = apply(ctx)
		return st, imported, err
	}
	if err = a.Atomically(ctx, apply); err != nil {
		// What this instance cached from the rolled-back writes goes.
		imported = false
		e.rolledBack(ctx, s, nil)
	}
	return st, imported, err
}

// empty reports whether the database holds no scripts, no users and no
// client but the bootstrap admin client: one that was never seeded nor
// configured.
func (e *Engine) empty(ctx context.Context) (bool, error) {
	clients, err := e.st.Clients.Clients(ctx)
	if err != nil {
		return false, storeFailure(err)
	}
	for _, c := range clients {
		if c.ID != BootstrapAdminID {
			return false, nil
		}
	}
	scripts, err := e.st.Scripts.Scripts(ctx)
	if err != nil || len(scripts) > 0 {
		return false, storeFailure(err)
	}
	users, err := e.st.Users.Users(ctx)
	if err != nil {
		return false, storeFailure(err)
	}
	return len(users) == 0, nil
}

func (e *Engine) apply(ctx context.Context, s *Seed, st *ImportStats) error {
	if len(s.Config) > 0 {
		if _, err := e.UpdateProperties(ctx, s.Config); err != nil {
			return &ImportError{Section: "config", Err: err}
		}
	}
	count := func(created bool) {
		if created {
			st.Created++
		} else {
			st.Replaced++
		}
	}
	for i, sc := range s.Scripts {
		doc := sc.ScriptDoc
		if err := e.restoreVersions(ctx, doc.Name, sc.Versions); err != nil {
			return &ImportError{Section: "scripts", Index: i, Err: err}
		}
		_, err := e.ReplaceScript(ctx, doc.Name, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			_, err = e.CreateScript(ctx, &doc)
		}
		if err != nil {
			return &ImportError{Section: "scripts", Index: i, Err: err}
		}
		count(created)
	}
	for i, c := range s.Clients {
		doc := *c
		if doc.ClientID == "" {
			return &ImportError{Section: "clients", Index: i, Err: fieldError("client_id", "is required in a seed")}
		}
		_, err := e.ReplaceClient(ctx, doc.ClientID, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			doc = *c
			_, err = e.CreateClient(ctx, &doc)
		}
		if err != nil {
			return &ImportError{Section: "clients", Index: i, Err: err}
		}
		count(created)
	}
	for i, u := range s.Users {
		doc := *u
		_, err := e.ReplaceUser(ctx, doc.Username, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			_, err = e.createUser(ctx, &doc, false)
		}
		if err != nil {
			return &ImportError{Section: "users", Index: i, Err: err}
		}
		count(created)
	}
	for i, ti := range s.TrustedIssuers {
		doc := *ti
		_, err := e.ReplaceTrustedIssuer(ctx, doc.Name, &doc)
		created := errors.Is(err, CodeNotFound)
		if created {
			doc = *ti
			_, err = e.CreateTrustedIssuer(ctx, &doc)
		}
		if err != nil {
			return &ImportError{Section: "trusted_issuers", Index: i, Err: err}
		}
		count(created)
	}
	return nil
}

// Export writes the current configuration as a Seed, secrets and
// passwords left out.
func (e *Engine) Export(ctx context.Context) (*Seed, error) {
	s := &Seed{Config: map[string]json.RawMessage{}}
	raw, _ := json.Marshal(e.Properties())
	if err := json.Unmarshal(raw, &s.Config); err != nil {
		return nil, err
	}
	scripts, err := e.ScriptDocs(ctx)
	if err != nil {
		return nil, err
	}
	for _, sc := range scripts {
		versions, err := e.exportVersions(ctx, sc.Name)
		if err != nil {
			return nil, err
		}
		sc.Version, sc.VersionNumber, sc.TrippedUntil, sc.FallingBackTo = "", 0, nil, nil
		s.Scripts = append(s.Scripts, &SeedScript{ScriptDoc: *sc, Versions: versions})
	}
	if s.Clients, err = e.ClientDocs(ctx); err != nil {
		return nil, err
	}
	if s.Users, err = e.UserDocs(ctx); err != nil {
		return nil, err
	}
	if e.st.TrustedIssuers != nil {
		if s.TrustedIssuers, err = e.TrustedIssuerDocs(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// BootstrapAdminID is the client the bootstrap secret creates.
const BootstrapAdminID = "keyhook-admin"

// Bootstrap creates the keyhook-admin client (client_secret_basic,
// client_credentials, scope keyhook:admin) when it does not exist, with
// secret, or a generated one when secret is empty. It returns the secret
// when it created the client, "" when the client existed.
func (e *Engine) Bootstrap(ctx context.Context, secret string) (string, error) {
	_, err := e.st.Clients.ClientByID(ctx, BootstrapAdminID)
	if err == nil {
		return "", nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", storeFailure(err)
	}
	out, err := e.CreateClient(ctx, &ClientDoc{
		ClientID: BootstrapAdminID, ClientSecret: secret, ClientName: "keyhook bootstrap admin",
		TokenEndpointAuthMethod: string(AuthSecretBasic), GrantTypes: []string{string(GrantClientCredentials)},
		Scope: AdminScope,
	})
	if errors.Is(err, CodeConflict) {
		return "", nil // another instance created it meanwhile
	}
	if err != nil {
		return "", err
	}
	return out.ClientSecret, nil
}

// ResetAdminSecret gives the bootstrap admin client a new generated
// secret and returns it, creating the client as Bootstrap does when it is
// absent (keyhook admin reset-secret, for an admin who lost the secret).
func (e *Engine) ResetAdminSecret(ctx context.Context) (string, error) {
	secret, err := e.Bootstrap(ctx, "")
	if err != nil || secret != "" {
		return secret, err
	}
	out, err := e.RotateClientSecret(ctx, BootstrapAdminID)
	if err != nil {
		return "", err
	}
	return out.ClientSecret, nil
}
