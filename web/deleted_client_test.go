package web_test

import (
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestDeletedClientIsInvalidClient deletes a client on instance A while
// instance B still holds it in its client cache, and checks that B
// answers invalid_client (RFC 6749 §5.2) for every grant, never a 5xx:
// the tokens B would issue can no longer be stored for a client that is
// gone, nor can a code.
func TestDeletedClientIsInvalidClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"two instances on one sqlite file", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "shared.db") }},
		{"two instances on postgres", pgDSN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := tc.dsn(t)
			a, b := newHarness(t, withDSN(dsn)), newHarness(t, withDSN(dsn))
			web, _, _ := codeClientSetup(t, a) // alice, and the code client web
			a.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret",
				"grant_types": []string{"password", "refresh_token", "client_credentials"}, "scope": "api"})

			// B reads the clients into its cache, then A deletes them.
			b.mustToken("app", "app-secret", "")
			rt := b.passwordToken("api").RefreshToken
			b.mustDecodeToken(b.redeem("web", "web-secret", issueCodeOn(t, b, web), web.RedirectURL, ""))
			pending := issueCodeOn(t, b, web)
			signIn := browser()
			bweb := *web
			bweb.Endpoint.AuthURL = b.url + "/oauth2/authorize"
			page, err := signIn.Get(bweb.AuthCodeURL("s"))
			if err != nil || page.StatusCode != 200 {
				t.Fatalf("login page on B: %v %v", page, err)
			}
			fields := hiddenFields(readAll(page))
			for _, id := range []string{"app", "web"} {
				if r := a.admin(http.MethodDelete, "/clients/"+id, nil); r.status != http.StatusNoContent {
					t.Fatalf("delete %s on A: %d %s", id, r.status, r.body)
				}
			}
			// Signing in first: a failed token request below drops the client
			// from B's cache.
			t.Run("signing in to the deleted client", func(t *testing.T) {
				fields.Set("username", "alice")
				fields.Set("password", "alice-pw")
				resp, err := signIn.PostForm(b.url+"/oauth2/authorize", fields)
				if err != nil {
					t.Fatal(err)
				}
				body := readAll(resp)
				if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(body, "Cannot sign in") {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
			})
			for _, step := range []struct {
				name string
				r    func() *response
			}{
				{"client_credentials", func() *response {
					return b.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "app", "app-secret")
				}},
				{"password", func() *response {
					return b.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, "app", "app-secret")
				}},
				{"refresh_token", func() *response {
					return b.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", "app-secret")
				}},
				{"authorization_code", func() *response { return b.redeem("web", "web-secret", pending, web.RedirectURL, "") }},
			} {
				t.Run(step.name, func(t *testing.T) {
					wantError(t, step.r(), 401, "invalid_client")
				})
			}
		})
	}
}

// hiddenFields are the hidden inputs of the login form.
func hiddenFields(page string) url.Values {
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	return form
}

// issueCodeOn is issueCode against instance h (no PKCE).
func issueCodeOn(t *testing.T, h *harness, cfg *oauth2.Config) string {
	t.Helper()
	c := *cfg
	c.Endpoint.AuthURL = h.url + "/oauth2/authorize"
	c.Endpoint.TokenURL = h.url + "/oauth2/token"
	return issueCode(t, &c, "")
}
