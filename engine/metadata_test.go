package engine_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
)

// countingClients counts the reads of every client.
type countingClients struct {
	engine.ClientStore
	n *atomic.Int64
}

func (s countingClients) Clients(ctx context.Context) ([]*engine.Client, error) {
	s.n.Add(1)
	return s.ClientStore.Clients(ctx)
}

// TestDiscoveryIsBuiltOnceAndRebuiltOnChange checks that the metadata
// document (RFC 8414 §3) is not read from the store per request, that it
// is rebuilt at once after a local change to clients and after a refresh
// for a change on another instance, and that scopes_supported lists the
// standard scopes and those clients mark public, never a keyhook:* scope
// nor a client's private scopes.
func TestDiscoveryIsBuiltOnceAndRebuiltOnChange(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var reads atomic.Int64
	st := store.Stores()
	st.Clients = countingClients{st.Clients, &reads}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log}, st)
	if err != nil {
		t.Fatal(err)
	}
	other, err := engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log}, store.Stores())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Bootstrap(ctx, "admin-secret-0123456789"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "api", Scope: "private-a public-b keyhook:users.read",
		Attributes: map[string]string{"public_scopes": "public-b keyhook:users.read not-its-scope"}}); err != nil {
		t.Fatal(err)
	}
	scopes := func(t *testing.T, e *engine.Engine) []string {
		t.Helper()
		md, err := e.Metadata(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return md["scopes_supported"].([]string)
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T)
		on     *engine.Engine
		want   []string
		reads  int64
	}{
		{"first build", nil, e, []string{"address", "email", "offline_access", "openid", "phone", "profile", "public-b"}, 1},
		{"a local change applies at once", func(t *testing.T) {
			if _, err := e.ReplaceClient(ctx, "api", &engine.ClientDoc{Scope: "private-a public-b public-c",
				Attributes: map[string]string{"public_scopes": "public-c"}}); err != nil {
				t.Fatal(err)
			}
		}, e, []string{"address", "email", "offline_access", "openid", "phone", "profile", "public-c"}, 1},
		{"another instance's change waits for a refresh", func(t *testing.T) {
			if _, err := other.CreateClient(ctx, &engine.ClientDoc{ClientID: "web", Scope: "public-d",
				Attributes: map[string]string{"public_scopes": "public-d"}}); err != nil {
				t.Fatal(err)
			}
		}, e, []string{"address", "email", "offline_access", "openid", "phone", "profile", "public-c"}, 0},
		{"after the refresh", func(t *testing.T) {
			if err := e.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
		}, e, []string{"address", "email", "offline_access", "openid", "phone", "profile", "public-c", "public-d"}, 1},
		{"a deletion", func(t *testing.T) {
			if err := e.DeleteClient(ctx, "api"); err != nil {
				t.Fatal(err)
			}
		}, e, []string{"address", "email", "offline_access", "openid", "phone", "profile", "public-d"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.change != nil {
				tc.change(t)
			}
			before := reads.Load()
			var got []string
			for range 100 {
				got = scopes(t, tc.on)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("scopes_supported = %v, want %v", got, tc.want)
			}
			if n := reads.Load() - before; n > tc.reads {
				t.Errorf("100 requests read every client %d times, want at most %d", n, tc.reads)
			}
		})
	}
}
