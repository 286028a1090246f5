package storage

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
)

// TestScriptVersionStore runs the script version store's contract on
// SQLite and, with KEYHOOK_TEST_PG, on PostgreSQL.
func TestScriptVersionStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *Store
	}{
		{"sqlite", func(t *testing.T) *Store { return mustOpen(t, "sqlite:"+filepath.Join(t.TempDir(), "keyhook.db")) }},
		{"postgres", func(t *testing.T) *Store {
			dsn, drop, err := NewTestDSN(context.Background(), pgBase(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = drop() })
			return mustOpen(t, dsn)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := tc.open(t)
			_, err := st.LatestScriptVersion(ctx, "s")
			isErr(t, "LatestScriptVersion of none", err, engine.ErrNotFound)
			s := &hooks.Script{Name: "s", Kind: hooks.KindIntrospection, Source: "x", Number: 2,
				Candidate: &hooks.Candidate{Source: "y", Rollout: hooks.RolloutCanary, Percent: 30}}
			noErr(t, "CreateScript", st.CreateScript(ctx, s))
			got, err := st.ScriptByName(ctx, "s")
			noErr(t, "ScriptByName", err)
			equal(t, "number and candidate", []any{got.Number, got.Candidate}, []any{2, s.Candidate})

			v1 := &engine.ScriptVersion{Script: "s", Number: 1, Author: "a", CreatedAt: ts(10), SHA256: "h1", Snapshot: []byte(`{"source":"x"}`)}
			v2 := &engine.ScriptVersion{Script: "s", Number: 2, Author: "b", CreatedAt: ts(20), SHA256: "h2", Snapshot: []byte(`{"source":"y"}`)}
			noErr(t, "AddScriptVersion 1", st.AddScriptVersion(ctx, v1))
			noErr(t, "AddScriptVersion 2", st.AddScriptVersion(ctx, v2))
			isErr(t, "AddScriptVersion taken", st.AddScriptVersion(ctx, v2), engine.ErrConflict)
			all, err := st.ScriptVersions(ctx, "s")
			noErr(t, "ScriptVersions", err)
			equal(t, "newest first", all, []*engine.ScriptVersion{v2, v1})
			latest, err := st.LatestScriptVersion(ctx, "s")
			noErr(t, "LatestScriptVersion", err)
			equal(t, "latest", latest, v2)
			one, err := st.ScriptVersion(ctx, "s", 1)
			noErr(t, "ScriptVersion", err)
			equal(t, "one", one, v1)
			_, err = st.ScriptVersion(ctx, "s", 3)
			isErr(t, "ScriptVersion absent", err, engine.ErrNotFound)

			v5 := &engine.ScriptVersion{Script: "other", Number: 5, Author: "import", CreatedAt: ts(50), SHA256: "h5", Snapshot: []byte(`{}`)}
			noErr(t, "ReplaceScriptVersions", st.ReplaceScriptVersions(ctx, "s", []*engine.ScriptVersion{v5}))
			all, _ = st.ScriptVersions(ctx, "s")
			v5.Script = "s"
			equal(t, "replaced", all, []*engine.ScriptVersion{v5})

			noErr(t, "DeleteScript", st.DeleteScript(ctx, "s"))
			all, err = st.ScriptVersions(ctx, "s")
			noErr(t, "ScriptVersions after delete", err)
			equal(t, "versions after delete", len(all), 0)
		})
	}
}
