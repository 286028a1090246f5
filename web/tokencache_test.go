package web_test

import (
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"
)

// TestRevocationReachesEveryInstance: each instance caches the tokens it
// introspects (docs/performance.md); a token revoked through another
// instance is still inactive on this one at once on one SQLite file, and
// as soon as the change's notification arrives on PostgreSQL. Each case
// first introspects the tokens on A, so that A holds them in its cache.
func TestRevocationReachesEveryInstance(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
		// wait is how long A may take to see the change.
		wait time.Duration
	}{
		{"two instances on one sqlite file", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") }, 0},
		{"two instances on postgres", pgDSN, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := tc.dsn(t)
			a, b := newHarness(t, withDSN(dsn)), newHarness(t, withDSN(dsn))
			a.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret",
				"grant_types": []string{"client_credentials"}, "scope": "api"})
			a.createClient(map[string]any{"client_id": "jwt", "client_secret": "jwt-secret",
				"grant_types": []string{"client_credentials"}, "scope": "api", "access_token_as_jwt": true})
			inactiveOnA := func(what, token string) {
				t.Helper()
				deadline := time.Now().Add(tc.wait)
				for {
					if a.introspect(token)["active"] == false {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: still active on A", what)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			for _, c := range []struct{ client, secret string }{{"app", "app-secret"}, {"jwt", "jwt-secret"}} {
				tok := a.mustToken(c.client, c.secret, "").AccessToken
				for range 3 {
					if a.introspect(tok)["active"] != true {
						t.Fatalf("%s's token is not active on A", c.client)
					}
				}
				if r := b.form("/oauth2/revoke", url.Values{"token": {tok}}, c.client, c.secret); r.status != http.StatusOK {
					t.Fatalf("revoke on B: %d %s", r.status, r.body)
				}
				inactiveOnA(c.client+"'s token revoked on B", tok)
			}
			// A client deleted on B takes its tokens with it.
			tok := a.mustToken("app", "app-secret", "").AccessToken
			if a.introspect(tok)["active"] != true {
				t.Fatal("new token is not active on A")
			}
			if r := b.admin(http.MethodDelete, "/clients/app", nil); r.status != http.StatusNoContent {
				t.Fatalf("delete on B: %d %s", r.status, r.body)
			}
			inactiveOnA("the token of a client deleted on B", tok)
		})
	}
}
