package engine_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
)

// TestCORSOriginsSeedAndInstances checks that allowed_cors_origins goes
// through export and import (the seed of keyhook import and --seed), and
// that the set of allowed origins follows changes: at once on the
// instance that made them, after a Refresh on another.
func TestCORSOriginsSeedAndInstances(t *testing.T) {
	ctx := context.Background()
	open := func() *storage.Store {
		st, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newEngine := func(st *storage.Store) *engine.Engine {
		e, err := engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log}, st.Stores())
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	store := open()
	e, other := newEngine(store), newEngine(store)
	const spa, app = "https://spa.example", "http://localhost:3000"
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "spa", AllowedCORSOrigins: []string{spa, app}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		e      *engine.Engine
		origin string
		want   bool
	}{
		{"listed", e, spa, true},
		{"listed on another instance", other, app, true},
		{"unlisted", e, "https://evil.example", false},
		{"null", e, "null", false},
		{"empty", e, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.CORSOriginAllowed(ctx, tc.origin); got != tc.want {
				t.Fatalf("CORSOriginAllowed(%q) = %v", tc.origin, got)
			}
		})
	}

	t.Run("export and import", func(t *testing.T) {
		seed, err := e.Export(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(seed.Clients, func(c *engine.ClientDoc) bool { return c.ClientID == "spa" })
		if i < 0 || !slices.Equal(seed.Clients[i].AllowedCORSOrigins, []string{spa, app}) {
			t.Fatalf("export: %+v", seed.Clients)
		}
		fresh := newEngine(open())
		if _, err := fresh.Import(ctx, seed); err != nil {
			t.Fatal(err)
		}
		doc, err := fresh.ClientDoc(ctx, "spa")
		if err != nil || !slices.Equal(doc.AllowedCORSOrigins, []string{spa, app}) {
			t.Fatalf("imported: %+v %v", doc, err)
		}
		if !fresh.CORSOriginAllowed(ctx, spa) {
			t.Fatal("imported origin not allowed")
		}
	})

	t.Run("deleted client", func(t *testing.T) {
		if err := e.DeleteClient(ctx, "spa"); err != nil {
			t.Fatal(err)
		}
		if e.CORSOriginAllowed(ctx, spa) {
			t.Fatal("origin of a deleted client still allowed here")
		}
		if err := other.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if other.CORSOriginAllowed(ctx, app) {
			t.Fatal("origin of a deleted client still allowed on another instance after a refresh")
		}
	})
}
