package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Script versions (docs/scripts.md, "Versions, rollback and rollout").
// Every write of a script whose snapshot differs from its newest version
// appends a version in the same transaction as the write; a write that
// changes nothing in the snapshot appends none. Rollback writes an old
// snapshot back through ReplaceScript, so it meets the checks and the
// delegation rules of a PUT.

// Authors of the versions the server writes itself.
const (
	AuthorImport    = "import"
	AuthorSeed      = "seed"
	AuthorBootstrap = "bootstrap"
)

type authorKey struct{}

// withAuthor returns ctx whose script writes are authored by author when
// no admin API client makes them.
func withAuthor(ctx context.Context, author string) context.Context {
	return context.WithValue(ctx, authorKey{}, author)
}

// author is who writes a script version with ctx.
func author(ctx context.Context) string {
	if id, ok := ctx.Value(adminClientKey{}).(string); ok && id != "" {
		return id
	}
	if a, ok := ctx.Value(authorKey{}).(string); ok {
		return a
	}
	return AuthorBootstrap
}

// snapshotOmits are the members of a ScriptDoc that are not a script's
// settings: read-only state, the candidate (not live) and write-only
// secrets, which never go into a snapshot.
var snapshotOmits = []string{"version", "version_number", "tripped_until", "falling_back_to", "candidate", "secrets"}

// scriptSnapshot is the snapshot of s: its admin document as JSON with
// sorted members, so that equal settings give equal bytes.
func scriptSnapshot(s *hooks.Script) ([]byte, error) {
	raw, err := json.Marshal(ScriptDocument(s))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	for _, k := range snapshotOmits {
		delete(m, k)
	}
	return json.Marshal(m)
}

func sourceSHA256(src string) string {
	sum := sha256.Sum256([]byte(src))
	return hex.EncodeToString(sum[:])
}

// atomically runs fn in one transaction when the stores can.
func (e *Engine) atomically(ctx context.Context, fn func(ctx context.Context) error) error {
	if a, ok := e.st.Clients.(Atomic); ok {
		return a.Atomically(ctx, fn)
	}
	return fn(ctx)
}

// saveScript writes s with write and, when its snapshot differs from the
// newest version's, appends a version and gives s its number. Two writes
// of one script at once may pick the same number: the loser writes again
// on the newer history.
func (e *Engine) saveScript(ctx context.Context, s *hooks.Script, write func(context.Context, *hooks.Script) error) error {
	if e.st.ScriptVersions == nil {
		return write(ctx, s)
	}
	snap, err := scriptSnapshot(s)
	if err != nil {
		return Wrap(CodeServerError, err, "the script could not be encoded")
	}
	for attempt := 1; ; attempt++ {
		err := e.atomically(ctx, func(ctx context.Context) error { return e.saveVersioned(ctx, s, snap, write) })
		var race *versionRace
		if !errors.As(err, &race) {
			return err
		}
		if attempt == 3 {
			return race.err
		}
	}
}

// versionRace is a version number taken meanwhile by another write.
type versionRace struct{ err error }

func (r *versionRace) Error() string { return r.err.Error() }

func (e *Engine) saveVersioned(ctx context.Context, s *hooks.Script, snap []byte, write func(context.Context, *hooks.Script) error) error {
	latest, err := e.st.ScriptVersions.LatestScriptVersion(ctx, s.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		latest = nil
	case err != nil:
		return err
	}
	if latest != nil && bytes.Equal(latest.Snapshot, snap) {
		s.Number = latest.Number
		return write(ctx, s)
	}
	s.Number = 1
	if latest != nil {
		s.Number = latest.Number + 1
	}
	if err := write(ctx, s); err != nil {
		return err
	}
	err = e.st.ScriptVersions.AddScriptVersion(ctx, &ScriptVersion{Script: s.Name, Number: s.Number,
		Author: author(ctx), CreatedAt: e.now().UTC(), SHA256: sourceSHA256(s.Source), Snapshot: snap})
	if errors.Is(err, ErrConflict) {
		return &versionRace{err: storeFailure(err)}
	}
	return err
}

// ScriptVersionDoc is a script version as the admin API answers it:
// Snapshot is left out of lists.
type ScriptVersionDoc struct {
	Number    int             `json:"number"`
	Author    string          `json:"author"`
	CreatedAt time.Time       `json:"created_at"`
	SHA256    string          `json:"sha256"`
	Snapshot  json.RawMessage `json:"snapshot,omitempty"`
}

func scriptVersionDocument(v *ScriptVersion, withSnapshot bool) *ScriptVersionDoc {
	d := &ScriptVersionDoc{Number: v.Number, Author: v.Author, CreatedAt: v.CreatedAt.UTC(), SHA256: v.SHA256}
	if withSnapshot {
		d.Snapshot = json.RawMessage(v.Snapshot)
	}
	return d
}

func (e *Engine) versionStore() (ScriptVersionStore, error) {
	if e.st.ScriptVersions == nil {
		return nil, Errorf(CodeServerError, "script versions are not kept")
	}
	return e.st.ScriptVersions, nil
}

// ScriptVersionDocs lists the versions of a script, newest first, without
// their snapshots.
func (e *Engine) ScriptVersionDocs(ctx context.Context, name string) ([]*ScriptVersionDoc, error) {
	vs, err := e.versionStore()
	if err != nil {
		return nil, err
	}
	if _, err := e.st.Scripts.ScriptByName(ctx, name); err != nil {
		return nil, adminErr(err, "script", name)
	}
	all, err := vs.ScriptVersions(ctx, name)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*ScriptVersionDoc, len(all))
	for i, v := range all {
		out[i] = scriptVersionDocument(v, false)
	}
	return out, nil
}

// ScriptVersionDoc reads one version of a script with its snapshot.
func (e *Engine) ScriptVersionDoc(ctx context.Context, name string, number int) (*ScriptVersionDoc, error) {
	vs, err := e.versionStore()
	if err != nil {
		return nil, err
	}
	v, err := vs.ScriptVersion(ctx, name, number)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "script %q has no version %d", name, number)
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	return scriptVersionDocument(v, true), nil
}

// RollbackScript makes version number of a script live again as a new
// version whose snapshot is that version's. It goes through
// ReplaceScript: what the caller could not PUT, it cannot roll back to.
// The candidate, which no snapshot holds, stays.
func (e *Engine) RollbackScript(ctx context.Context, name string, number int) (*ScriptDoc, error) {
	if number < 1 {
		return nil, fieldError("version", "must be a version number (1 or more)")
	}
	vs, err := e.versionStore()
	if err != nil {
		return nil, err
	}
	cur, err := e.st.Scripts.ScriptByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "script", name)
	}
	v, err := vs.ScriptVersion(ctx, name, number)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "script %q has no version %d", name, number)
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	var doc ScriptDoc
	if err := json.Unmarshal(v.Snapshot, &doc); err != nil {
		return nil, Wrap(CodeServerError, err, fmt.Sprintf("version %d of script %q cannot be read", number, name))
	}
	keepCandidate(&doc, cur)
	return e.ReplaceScript(ctx, name, &doc)
}

// exportVersions is the history of a script, oldest first, for Export.
func (e *Engine) exportVersions(ctx context.Context, name string) ([]*ScriptVersionDoc, error) {
	if e.st.ScriptVersions == nil {
		return nil, nil
	}
	all, err := e.st.ScriptVersions.ScriptVersions(ctx, name)
	if err != nil {
		return nil, storeFailure(err)
	}
	out := make([]*ScriptVersionDoc, len(all))
	for i, v := range all {
		out[len(all)-1-i] = scriptVersionDocument(v, true)
	}
	return out, nil
}

// restoreVersions makes docs (oldest first, as Export writes them) the
// history of the script called name, before Import writes the script
// itself: when the imported script equals the newest version, that write
// adds none, so importing a file twice leaves the same history. An import
// without versions keeps the history there is.
func (e *Engine) restoreVersions(ctx context.Context, name string, docs []*ScriptVersionDoc) error {
	if len(docs) == 0 || e.st.ScriptVersions == nil {
		return nil
	}
	all := make([]*ScriptVersion, len(docs))
	for i, d := range docs {
		if d == nil || d.Number < 1 || (i > 0 && d.Number <= docs[i-1].Number) {
			return fieldError("versions", "numbers must be 1 or more and increasing")
		}
		var snap map[string]any
		if err := json.Unmarshal(d.Snapshot, &snap); err != nil || snap == nil {
			return fieldError("versions", "version %d: snapshot must be a JSON object", d.Number)
		}
		src, _ := snap["source"].(string)
		canon, _ := json.Marshal(snap)
		// The digest is the source's, whatever the file says.
		all[i] = &ScriptVersion{Script: name, Number: d.Number, Author: d.Author, CreatedAt: d.CreatedAt,
			SHA256: sourceSHA256(src), Snapshot: canon}
	}
	if err := e.st.ScriptVersions.ReplaceScriptVersions(ctx, name, all); err != nil {
		return storeFailure(err)
	}
	return nil
}

// CandidateDoc is a script's candidate as the admin API reads and writes
// it: a source tried in shadow (beside the live version, its result
// discarded) or as a canary (its result used for Percent % of tokens).
type CandidateDoc struct {
	Source  string `json:"source"`
	Rollout string `json:"rollout"`
	Percent *int   `json:"percent,omitempty"`
}

// candidateFromDoc validates a candidate of the script called name.
func (e *Engine) candidateFromDoc(name string, doc *CandidateDoc) (*hooks.Candidate, error) {
	c := &hooks.Candidate{Source: doc.Source, Rollout: hooks.Rollout(doc.Rollout)}
	switch c.Rollout {
	case hooks.RolloutShadow, hooks.RolloutCanary:
	default:
		return nil, fieldError("candidate.rollout", "must be shadow or canary")
	}
	if doc.Percent != nil {
		if *doc.Percent < 0 || *doc.Percent > 100 {
			return nil, fieldError("candidate.percent", "must be between 0 and 100")
		}
		c.Percent = *doc.Percent
	}
	if c.Source == "" {
		return nil, fieldError("candidate.source", "is required")
	}
	if err := e.checkSource("candidate.source", name, c.Source); err != nil {
		return nil, err
	}
	return c, nil
}

// keepCandidate gives doc the candidate cur has.
func keepCandidate(doc *ScriptDoc, cur *hooks.Script) {
	doc.Candidate = ScriptDocument(cur).Candidate
}

// PromoteScript makes the candidate of a script its live source, as a new
// version, and clears it. It goes through ReplaceScript, as a PUT of the
// script with that source would.
func (e *Engine) PromoteScript(ctx context.Context, name string) (*ScriptDoc, error) {
	cur, err := e.st.Scripts.ScriptByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "script", name)
	}
	if cur.Candidate == nil {
		return nil, Errorf(CodeConflict, "candidate: script %q has none to promote", name)
	}
	doc := ScriptDocument(cur)
	doc.Source, doc.Candidate, doc.Version, doc.VersionNumber = cur.Candidate.Source, nil, "", 0
	return e.ReplaceScript(ctx, name, doc)
}
