package engine_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
)

// meanwhile runs, once it is armed, a local write between a store read
// and its return: the read's answer then predates the write, as a refresh
// (or a request filling a cache) that read just before an admin's change
// sees it.
type meanwhile struct {
	mu    sync.Mutex
	write func()
}

func (m *meanwhile) arm(write func()) { m.mu.Lock(); m.write = write; m.mu.Unlock() }

// disarm reports whether the write was still to run.
func (m *meanwhile) disarm() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	pending := m.write != nil
	m.write = nil
	return pending
}

func (m *meanwhile) run() {
	m.mu.Lock()
	w := m.write
	m.write = nil
	m.mu.Unlock()
	if w != nil {
		w()
	}
}

type (
	lateScripts struct {
		engine.ScriptStore
		m *meanwhile
	}
	lateProperties struct {
		engine.PropertyStore
		m *meanwhile
	}
	lateKeys struct {
		engine.KeyStore
		m *meanwhile
	}
	lateClients struct {
		engine.ClientStore
		m *meanwhile
	}
)

func (s lateScripts) Scripts(ctx context.Context) ([]*hooks.Script, error) {
	all, err := s.ScriptStore.Scripts(ctx)
	s.m.run()
	return all, err
}

func (s lateProperties) Properties(ctx context.Context) (map[string]string, error) {
	p, err := s.PropertyStore.Properties(ctx)
	s.m.run()
	return p, err
}

func (s lateKeys) SigningKeys(ctx context.Context) ([]*engine.SigningKey, error) {
	k, err := s.KeyStore.SigningKeys(ctx)
	s.m.run()
	return k, err
}

func (s lateClients) ClientByID(ctx context.Context, id string) (*engine.Client, error) {
	c, err := s.ClientStore.ClientByID(ctx, id)
	s.m.run()
	return c, err
}

// TestALocalChangeOutlivesAReloadThatReadBeforeIt checks that what an
// admin changes on this instance applies at once and stays, even when a
// refresh (or a request filling the client cache) read the store just
// before the change and finishes after it: the refresh must not put its
// older copy over the change until the next refresh. A script created at
// the wrong moment was missing for up to RefreshInterval: its client's
// tokens were issued without it.
func TestALocalChangeOutlivesAReloadThatReadBeforeIt(t *testing.T) {
	ctx := context.Background()
	// One for each store: a change happens during a read of its own
	// store.
	ms, mp, mk, mc := &meanwhile{}, &meanwhile{}, &meanwhile{}, &meanwhile{}
	st := openStores(t)
	st.Scripts = lateScripts{st.Scripts, ms}
	st.Properties = lateProperties{st.Properties, mp}
	st.Keys = lateKeys{st.Keys, mk}
	st.Clients = lateClients{st.Clients, mc}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt := scripts.New(scripts.Options{Logger: log})
	defer rt.Close()
	e, err := engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", Logger: log, Hooks: hooks.NewDispatcher(rt, log)}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "c", ClientSecret: "secret-secret"}); err != nil {
		t.Fatal(err)
	}
	const source = "function getAccessTokenLifetimeInSeconds(context) { return 600; }"
	create := func(t *testing.T, name string) {
		if _, err := e.CreateScript(ctx, &engine.ScriptDoc{Name: name, Type: "update_token", Source: source}); err != nil {
			t.Fatal(err)
		}
	}
	bound := func(name string) bool {
		return len(e.Hooks().Select(hooks.KindUpdateToken, []string{name}, false)) == 1
	}
	var rotated string
	for _, tc := range []struct {
		name string
		m    *meanwhile
		// before, when set, makes the refresh read: it reads scripts
		// only when they changed since it last did.
		before func(t *testing.T)
		write  func(t *testing.T)
		// reload is what reads the store; nil is a refresh.
		reload func(t *testing.T)
		holds  func() bool
	}{
		{name: "a script created", m: ms, before: func(t *testing.T) { create(t, "first") }, write: func(t *testing.T) {
			create(t, "created")
		}, holds: func() bool { return bound("created") }},
		{name: "a script deleted", m: ms, before: func(t *testing.T) { create(t, "second") }, write: func(t *testing.T) {
			if err := e.DeleteScript(ctx, "created"); err != nil {
				t.Fatal(err)
			}
		}, holds: func() bool { return !bound("created") }},
		{name: "a property set", m: mp, write: func(t *testing.T) {
			if _, err := e.UpdateProperties(ctx, map[string]json.RawMessage{"access_token_lifetime": json.RawMessage("777")}); err != nil {
				t.Fatal(err)
			}
		}, holds: func() bool { return e.Properties().AccessTokenLifetime == 777 }},
		{name: "a key rotated", m: mk, write: func(t *testing.T) {
			k, err := e.RotateKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rotated = k.ID
		}, holds: func() bool { return e.CurrentKIDForTest() == rotated && len(e.JWKS().Keys) == 2 }},
		{name: "a client's secret changed", m: mc, write: func(t *testing.T) {
			if _, err := e.ReplaceClient(ctx, "c", &engine.ClientDoc{ClientSecret: "another-secret"}); err != nil {
				t.Fatal(err)
			}
		}, reload: func(t *testing.T) {
			if _, err := e.ClientForTest(ctx, "c"); err != nil {
				t.Fatal(err)
			}
		}, holds: func() bool {
			c, err := e.ClientForTest(ctx, "c")
			return err == nil && engine.VerifySecret(c.SecretHash, "another-secret")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(t)
			}
			tc.m.arm(func() { tc.write(t) })
			if tc.reload != nil {
				tc.reload(t)
			} else if err := e.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.m.disarm() {
				t.Fatal("the store was not read")
			}
			if !tc.holds() {
				t.Fatal("the change was undone by a read that finished after it")
			}
		})
	}
}
