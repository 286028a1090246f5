package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/storage"
)

const testIssuer = "https://keyhook.test"

// testClock is a settable clock for the engine.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newAssertionEngine is an engine on a fresh SQLite file with a test clock.
// Its client-authentication throttle is off: these tests fail on purpose
// many times in a row (the throttle has tests of its own).
func newAssertionEngine(t testing.TB, cfg engine.JWKSURIConfig) (*engine.Engine, *testClock, engine.Stores) {
	t.Helper()
	ctx := context.Background()
	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clk := &testClock{t: time.Now()}
	e, err := engine.New(ctx, engine.Config{Issuer: testIssuer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: clk.now, JWKSURI: cfg, ClientAuthThrottle: engine.Throttle{Free: -1}}, store.Stores())
	if err != nil {
		t.Fatal(err)
	}
	return e, clk, store.Stores()
}

var jtiN atomic.Int64

// clientAssertion signs an RFC 7523 §3 assertion for client id at the clock's now.
func clientAssertion(t testing.TB, clk *testClock, key any, alg jose.SignatureAlgorithm, kid, id string, aud any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := clk.now()
	payload, _ := json.Marshal(map[string]any{"iss": id, "sub": id, "aud": aud, "iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(), "jti": "jti-" + string(rune('a'+jtiN.Add(1)%26)) + time.Now().Format(time.RFC3339Nano)})
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func authenticate(e *engine.Engine, assertion string) error {
	_, err := e.AuthenticateClient(context.Background(), &engine.ClientCredentials{
		AssertionType: engine.AssertionTypeJWTBearer, Assertion: assertion})
	return err
}

func wantCode(t *testing.T, err error, code engine.ErrorCode) {
	t.Helper()
	var oe *engine.Error
	if !errors.As(err, &oe) || oe.Code != code {
		t.Fatalf("err = %v, want %s", err, code)
	}
}

// keyServer serves a JWK Set through its current handler and counts the
// requests; with no handler it answers only when the test ends.
type keyServer struct {
	*httptest.Server
	hits    atomic.Int64
	handler atomic.Pointer[http.HandlerFunc]
}

func (ks *keyServer) serve(h http.HandlerFunc) { ks.handler.Store(&h) }

func newKeyServer(t *testing.T, tls bool, handle http.HandlerFunc) *keyServer {
	ks := &keyServer{}
	if handle != nil {
		ks.serve(handle)
	}
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.hits.Add(1)
		if h := ks.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	if tls {
		ks.Server = httptest.NewTLSServer(h)
	} else {
		ks.Server = httptest.NewServer(h)
	}
	t.Cleanup(ks.Close)
	t.Cleanup(func() { close(release) }) // runs first: Close waits for handlers
	return ks
}

// poolOf trusts the test server's certificate.
func poolOf(s *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

func serveKeys(set *jose.JSONWebKeySet) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(set)
	}
}

// TestJWKSURIFetch drives private_key_jwt with a jwks_uri through
// AuthenticateClient and counts what reaches the client's key server
// (docs/client-auth.md): a cache with a minimum refresh interval, failures
// cached too, no redirects, a size cap and a timeout.
func TestJWKSURIFetch(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := func(kid string) *jose.JSONWebKeySet {
		return &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: kid, Use: "sig"}}}
	}
	const twenty = 20
	for _, tc := range []struct {
		name string
		tls  bool
		cfg  engine.JWKSURIConfig
		// handler is the key server; run uses it through e and counts.
		handler http.HandlerFunc
		run     func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(kid string) string)
	}{
		{
			name: "twenty unknown kids in a row cause one fetch", tls: true, handler: serveKeys(set("k1")),
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				if err := authenticate(e, sign("k1")); err != nil {
					t.Fatalf("https on loopback: %v", err)
				}
				for range twenty {
					wantCode(t, authenticate(e, sign("unknown")), engine.CodeInvalidClient)
				}
				if n := ks.hits.Load(); n != 1 {
					t.Fatalf("%d fetches, want 1", n)
				}
			},
		},
		{
			name: "failures are cached", tls: true,
			handler: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusInternalServerError) },
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				for range twenty {
					wantCode(t, authenticate(e, sign("k1")), engine.CodeInvalidClient)
				}
				if n := ks.hits.Load(); n != 1 {
					t.Fatalf("%d fetches for %d bad assertions, want 1", n, twenty)
				}
				clk.advance(time.Minute + time.Second)
				wantCode(t, authenticate(e, sign("k1")), engine.CodeInvalidClient)
				if n := ks.hits.Load(); n != 2 {
					t.Fatalf("%d fetches after the failure TTL, want 2", n)
				}
			},
		},
		{
			name: "a rotated key is fetched after the refresh interval", tls: true, handler: serveKeys(set("k1")),
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				if err := authenticate(e, sign("k1")); err != nil {
					t.Fatal(err)
				}
				ks.serve(serveKeys(set("k2")))
				wantCode(t, authenticate(e, sign("k2")), engine.CodeInvalidClient)
				if n := ks.hits.Load(); n != 1 {
					t.Fatalf("%d fetches within the refresh interval, want 1", n)
				}
				clk.advance(5*time.Minute + time.Second)
				if err := authenticate(e, sign("k2")); err != nil {
					t.Fatalf("after the refresh interval: %v", err)
				}
				if n := ks.hits.Load(); n != 2 {
					t.Fatalf("%d fetches, want 2", n)
				}
			},
		},
		{
			name: "redirects are not followed", tls: true,
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				target := newKeyServer(t, false, serveKeys(set("k1")))
				ks.serve(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target.URL+"/jwks", http.StatusFound)
				})
				wantCode(t, authenticate(e, sign("k1")), engine.CodeInvalidClient)
				if n := target.hits.Load(); n != 0 {
					t.Fatalf("the redirect was followed (%d requests)", n)
				}
			},
		},
		{
			name: "plain http on loopback", handler: serveKeys(set("k1")),
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				if err := authenticate(e, sign("k1")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a 200 KiB document is read", tls: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				serveKeys(set("k1"))(w, r)
				_, _ = w.Write([]byte(strings.Repeat(" ", 200<<10)))
			},
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				if err := authenticate(e, sign("k1")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a document over 256 KiB is refused", tls: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				serveKeys(set("k1"))(w, r)
				_, _ = w.Write([]byte(strings.Repeat(" ", 300<<10)))
			},
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				wantCode(t, authenticate(e, sign("k1")), engine.CodeInvalidClient)
			},
		},
		{
			name: "a slow server times out", tls: true, cfg: engine.JWKSURIConfig{Timeout: 300 * time.Millisecond},
			run: func(t *testing.T, e *engine.Engine, clk *testClock, ks *keyServer, sign func(string) string) {
				start := time.Now()
				wantCode(t, authenticate(e, sign("k1")), engine.CodeInvalidClient)
				if d := time.Since(start); d > 4*time.Second {
					t.Fatalf("the fetch took %v with a 300ms timeout", d)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := newKeyServer(t, tc.tls, tc.handler)
			cfg := tc.cfg
			if tc.tls {
				cfg.RootCAs = poolOf(ks.Server)
			}
			e, clk, _ := newAssertionEngine(t, cfg)
			if _, err := e.CreateClient(context.Background(), &engine.ClientDoc{ClientID: "pk",
				TokenEndpointAuthMethod: "private_key_jwt", JWKSURI: ks.URL + "/jwks"}); err != nil {
				t.Fatal(err)
			}
			tc.run(t, e, clk, ks, func(kid string) string { return clientAssertion(t, clk, key, jose.ES256, kid, "pk", testIssuer) })
		})
	}
}

// TestJWKSURIAddresses checks that a jwks_uri pointing at a private or
// link-local address is never connected to, even for a client stored
// before registration checked it (or whose name now resolves there), and
// that --jwks-uri-allow-private lets it through the guard.
func TestJWKSURIAddresses(t *testing.T) {
	for _, tc := range []struct {
		name, uri    string
		allowPrivate bool
		guarded      bool // refused by the address guard, not by the connection
	}{
		{"cloud metadata", "https://169.254.169.254/latest/meta-data", false, true},
		{"RFC 1918", "https://10.0.0.1/jwks", false, true},
		{"unique local IPv6", "https://[fd00::1]/jwks", false, true},
		{"link-local IPv6", "https://[fe80::1]/jwks", false, true},
		{"IPv4-mapped private", "https://[::ffff:192.168.1.1]/jwks", false, true},
		{"shared address space (a cloud's metadata)", "https://100.100.100.200/jwks", false, true},
		{"unspecified", "https://0.0.0.0/jwks", false, true},
		{"plain http off loopback", "http://keys.example/jwks", false, false},
		{"private allowed by configuration", "https://10.0.0.1:1/jwks", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, clk, st := newAssertionEngine(t, engine.JWKSURIConfig{AllowPrivate: tc.allowPrivate, Timeout: 500 * time.Millisecond})
			if err := st.Clients.CreateClient(context.Background(), &engine.Client{ID: "pk", AuthMethod: engine.AuthPrivateKey,
				JWKSURI: tc.uri, GrantTypes: []engine.GrantType{engine.GrantClientCredentials}}); err != nil {
				t.Fatal(err)
			}
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			err := authenticate(e, clientAssertion(t, clk, key, jose.ES256, "k1", "pk", testIssuer))
			wantCode(t, err, engine.CodeInvalidClient)
			if got := errors.Is(err, engine.ErrAddressNotAllowed); got != tc.guarded {
				t.Fatalf("refused by the address guard: %v, want %v (err %v)", got, tc.guarded, err)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
