package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
)

// registrationFake wraps the real registration token store: it can fail
// the lookup or lose the use of a token (as when a concurrent
// registration took its last use first).
type registrationFake struct {
	engine.RegistrationTokenStore
	failLookup, loseUse, failUse bool
}

func (f *registrationFake) RegistrationTokenByHash(ctx context.Context, hash string) (*engine.RegistrationToken, error) {
	if f.failLookup {
		return nil, errors.New("database gone")
	}
	return f.RegistrationTokenStore.RegistrationTokenByHash(ctx, hash)
}

func (f *registrationFake) UseRegistrationToken(ctx context.Context, id string, now time.Time) (bool, error) {
	switch {
	case f.failUse:
		return false, errors.New("database gone")
	case f.loseUse:
		return false, nil
	}
	return f.RegistrationTokenStore.UseRegistrationToken(ctx, id, now)
}

// clientsFake fails client creation.
type clientsFake struct {
	engine.ClientStore
	failCreate bool
}

func (f *clientsFake) CreateClient(ctx context.Context, c *engine.Client) error {
	if f.failCreate {
		return errors.New("database gone")
	}
	return f.ClientStore.CreateClient(ctx, c)
}

func registrationEngine(t *testing.T, now *time.Time, cfg engine.Config) (*engine.Engine, *registrationFake, *clientsFake) {
	t.Helper()
	ctx := context.Background()
	st := openStores(t)
	regs := &registrationFake{RegistrationTokenStore: st.Registration}
	clients := &clientsFake{ClientStore: st.Clients}
	st.Registration, st.Clients = regs, clients
	cfg.Issuer, cfg.Logger = "http://keyhook.test", slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Now = func() time.Time { return *now }
	cfg.LoginThrottle.Free, cfg.ClientAuthThrottle.Free = -1, -1
	e, err := engine.New(ctx, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return e, regs, clients
}

// TestRegisterFailures: each failure of a registration's stores is its
// RFC answer, and a registration refused after its token was looked up
// does not use the token.
func TestRegisterFailures(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	e, regs, clients := registrationEngine(t, &now, engine.Config{})
	scope := "read"
	tok, err := e.CreateRegistrationToken(ctx, &engine.RegistrationTokenDoc{MaxUses: 2, Scope: &scope, ExpiresIn: 60})
	if err != nil {
		t.Fatal(err)
	}
	md := func() map[string]any {
		return map[string]any{"grant_types": []any{"client_credentials"}, "scope": "read"}
	}
	for _, tc := range []struct {
		name  string
		setup func()
		md    map[string]any
		want  engine.ErrorCode
	}{
		{"lookup fails", func() { regs.failLookup = true }, md(), engine.CodeTemporarilyUnavailable},
		{"the last use lost to another registration", func() { regs.loseUse = true }, md(), engine.CodeInvalidToken},
		{"the use fails", func() { regs.failUse = true }, md(), engine.CodeTemporarilyUnavailable},
		{"the client cannot be stored", func() { clients.failCreate = true }, md(), engine.CodeTemporarilyUnavailable},
		{"a refused scope", func() {}, map[string]any{"grant_types": []any{"client_credentials"}, "scope": "write"}, engine.CodeInvalidClientMetadata},
		{"a keyhook scope", func() {}, map[string]any{"grant_types": []any{"client_credentials"}, "scope": "keyhook:admin"}, engine.CodeInvalidClientMetadata},
		{"a script binding", func() {}, map[string]any{"introspection_scripts": []any{}}, engine.CodeInvalidClientMetadata},
		{"a software statement", func() {}, map[string]any{"software_statement": "x"}, engine.CodeInvalidSoftwareStatement},
		{"a relative redirect URI", func() {}, map[string]any{"redirect_uris": []any{"/cb"}}, engine.CodeInvalidRedirectURI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			*regs, *clients = registrationFake{RegistrationTokenStore: regs.RegistrationTokenStore}, clientsFake{ClientStore: clients.ClientStore}
			tc.setup()
			_, err := e.Register(ctx, &engine.RegistrationRequest{Token: tok.Token, Metadata: tc.md})
			if got := codeOf(err); got != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	*regs, *clients = registrationFake{RegistrationTokenStore: regs.RegistrationTokenStore}, clientsFake{ClientStore: clients.ClientStore}
	got, err := e.RegistrationTokenDoc(ctx, tok.ID)
	if err != nil || got.Uses != 1 { // only "the client cannot be stored" used it
		t.Fatalf("uses = %+v, %v; want 1", got, err)
	}
	if _, err := e.Register(ctx, &engine.RegistrationRequest{Token: tok.Token, Metadata: md()}); err != nil {
		t.Fatalf("the last use: %v", err)
	}
	now = now.Add(time.Hour)
	tok2, _ := e.CreateRegistrationToken(ctx, &engine.RegistrationTokenDoc{ExpiresIn: 60})
	now = now.Add(60 * time.Second)
	if _, err := e.Register(ctx, &engine.RegistrationRequest{Token: tok2.Token, Metadata: md()}); codeOf(err) != engine.CodeInvalidToken {
		t.Fatalf("at its expiry: %v", err)
	}
}

// TestOpenRegistrationScopeRefused: the server does not start with a
// keyhook:* scope for open registration.
func TestOpenRegistrationScopeRefused(t *testing.T) {
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	_, err = engine.New(ctx, engine.Config{Issuer: "http://keyhook.test", OpenRegistration: true,
		OpenRegistrationScope: "profile keyhook:admin"}, store.Stores())
	if err == nil {
		t.Fatal("engine.New took keyhook:admin as the open registration scope")
	}
}

// TestSoftwareStatementKeysMustBePublic: the server does not start with
// a private key, or a key without kid, among the software statement keys.
func TestSoftwareStatementKeysMustBePublic(t *testing.T) {
	ctx := context.Background()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, k := range map[string]jose.JSONWebKey{
		"private":   {Key: priv, KeyID: "v1"},
		"no kid":    {Key: &priv.PublicKey},
		"not a key": {Key: "nope", KeyID: "v1"},
	} {
		t.Run(name, func(t *testing.T) {
			store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			_, err = engine.New(ctx, engine.Config{Issuer: "http://keyhook.test",
				SoftwareStatementKeys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k}}}, store.Stores())
			if err == nil {
				t.Fatal("engine.New took it")
			}
		})
	}
}
