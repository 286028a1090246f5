package web_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/storage"
)

// pgDSN is a fresh PostgreSQL database for this test, dropped after it;
// the test is skipped without KEYHOOK_TEST_PG (CI always sets it).
func pgDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("KEYHOOK_TEST_PG")
	if base == "" {
		t.Skip("KEYHOOK_TEST_PG is not set")
	}
	dsn, drop, err := storage.NewTestDSN(context.Background(), base)
	if err != nil {
		t.Fatalf("test database: %v", err)
	}
	t.Cleanup(func() { _ = drop() }) // registered first, so it runs after the stores close
	return dsn
}

// eventually polls cond for up to 5 seconds, the bound the README sets for changes to reach every instance
// for changes to reach every instance.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within 5s", what)
}

func TestTwoInstancesOnePostgres(t *testing.T) {
	dsn := pgDSN(t)
	a := newHarness(t, withDSN(dsn))
	b := newHarness(t, withDSN(dsn))
	passwordSetup(t, a)
	a.createClient(map[string]any{"client_id": "jwt", "client_secret": "jwt-secret", "access_token_as_jwt": true})

	t.Run("a token issued on A introspects on B", func(t *testing.T) {
		for _, tok := range []string{a.passwordToken("api").AccessToken, a.mustToken("jwt", "jwt-secret", "").AccessToken} {
			if in := b.introspect(tok); in["active"] != true {
				t.Fatalf("on B: %v", in)
			}
		}
	})
	t.Run("a revocation on A is seen on B at once", func(t *testing.T) {
		tr := b.passwordToken("api")
		if r := a.form("/oauth2/revoke", url.Values{"token": {tr.RefreshToken}}, "app", "app-secret"); r.status != 200 {
			t.Fatalf("revoke on A: %d", r.status)
		}
		if in := b.introspect(tr.AccessToken); in["active"] != false {
			t.Fatalf("on B after revocation on A: %v", in)
		}
	})
	t.Run("a refresh token raced on A and B succeeds once", func(t *testing.T) {
		for round := 0; round < 3; round++ {
			if wins, _ := raceRefresh(t, []*harness{a, b}, a.passwordToken("").RefreshToken, 10); wins != 1 {
				t.Fatalf("round %d: %d successes, want 1", round, wins)
			}
		}
	})
	t.Run("a script changed on A runs on B within 5s", func(t *testing.T) {
		a.createScript(introspectionScript("shared", `response.version = 1; return true;`, nil))
		a.createClient(map[string]any{"client_id": "scripted", "client_secret": "s", "introspection_scripts": []string{"shared"}})
		tok := a.mustToken("scripted", "s", "").AccessToken
		eventually(t, "new script on B", func() bool { return b.introspect(tok)["version"] == 1.0 })
		a.admin("PUT", "/scripts/shared", introspectionScript("shared", `response.version = 2; return true;`, nil))
		eventually(t, "replaced script on B", func() bool { return b.introspect(tok)["version"] == 2.0 })
	})
	t.Run("a property changed on A applies on B within 5s", func(t *testing.T) {
		a.setConfig(map[string]any{"access_token_lifetime": 77})
		eventually(t, "lifetime on B", func() bool { return b.mustToken("jwt", "jwt-secret", "").ExpiresIn == 77 })
	})
	t.Run("a key rotated on A is in B's JWKS and signs B's tokens", func(t *testing.T) {
		r := a.admin("POST", "/keys/rotate", nil)
		kid := r.str("kid")
		eventually(t, "B signs with the new key", func() bool {
			_, header := verifyWithJWKS(t, b, b.mustToken("jwt", "jwt-secret", "").AccessToken)
			return header.KeyID == kid
		})
		if !strings.Contains(string(b.do(mustGet(b.url+"/oauth2/jwks")).body), kid) {
			t.Fatal("new kid not in B's JWKS")
		}
	})
	t.Run("a client secret rotated on A applies on B within 5s", func(t *testing.T) {
		r := a.admin("POST", "/clients/jwt/secret", nil)
		fresh := r.str("client_secret")
		eventually(t, "old secret refused on B", func() bool {
			return b.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "jwt", "jwt-secret").status == 401
		})
		b.mustToken("jwt", fresh, "")
	})
}

// tcpProxy forwards to a target and can cut every connection, to make the
// database unreachable and bring it back.
type tcpProxy struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.up.Store(true)
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.up.Load() {
				c.Close()
				continue
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			go func() { io.Copy(d, c); d.Close() }()
			go func() { io.Copy(c, d); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestDatabaseOutageAndRecovery(t *testing.T) {
	dsn := pgDSN(t)
	u, _ := url.Parse(dsn)
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	h := newHarness(t, withDSN(u.String()))
	h.createClient(map[string]any{"client_id": "svc", "client_secret": "s"})
	tok := h.mustToken("svc", "s", "").AccessToken

	proxy.up.Store(false)
	proxy.cut()
	if r := h.do(mustGet(h.url + "/readyz")); r.status != 503 {
		t.Fatalf("readyz while down: %d", r.status)
	}
	if r := h.do(mustGet(h.url + "/healthz")); r.status != 200 {
		t.Fatalf("healthz while down: %d", r.status)
	}
	// No token that was not stored; no answer about a token that could not be read.
	wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "svc", "s"), 503, "temporarily_unavailable")
	wantError(t, h.form("/oauth2/introspect", url.Values{"token": {tok}}, "svc", "s"), 503, "temporarily_unavailable")

	proxy.up.Store(true)
	eventually(t, "ready again", func() bool { return h.do(mustGet(h.url+"/readyz")).status == 200 })
	if in := h.introspect(tok); in["active"] != true {
		t.Fatalf("after recovery: %v", in)
	}
	h.mustToken("svc", "s", "")
}
