package web_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// sizedBody returns a reader of s whose length the HTTP client knows (it
// sends Content-Length) or does not know (it sends the body chunked,
// RFC 9112 §7.1), so that only the server's reading can find the size.
func sizedBody(s string, chunked bool) (io.Reader, int64) {
	if chunked {
		return io.MultiReader(strings.NewReader(s)), -1
	}
	return strings.NewReader(s), int64(len(s))
}

// TestBodyLimit checks that a body over a route's limit answers 413 with an
// RFC 6749 §5.2 error body (RFC 9110 §15.5.14), whether the client declares
// its length or streams it chunked.
func TestBodyLimit(t *testing.T) {
	h := newHarness(t)
	const oauthLimit, adminLimit = 64 << 10, 1 << 20
	form := func(n int) string { return "grant_type=client_credentials&token=x&pad=" + strings.Repeat("a", n) }
	jsonDoc := func(n int) string { return `{"client_id":"big","description":"` + strings.Repeat("a", n) + `"}` }
	const formType, jsonType = "application/x-www-form-urlencoded", "application/json"
	type tc struct {
		method, path, body, contentType string
		bearer                          bool
		wantStatus                      int
	}
	cases := map[string]tc{
		"token over":      {http.MethodPost, "/oauth2/token", form(100 << 10), formType, false, http.StatusRequestEntityTooLarge},
		"introspect over": {http.MethodPost, "/oauth2/introspect", form(100 << 10), formType, false, http.StatusRequestEntityTooLarge},
		"revoke over":     {http.MethodPost, "/oauth2/revoke", form(100 << 10), formType, false, http.StatusRequestEntityTooLarge},
		// Just under the limit is an ordinary request.
		"token under":        {http.MethodPost, "/oauth2/token", form(oauthLimit - 1024), formType, false, http.StatusOK},
		"admin clients over": {http.MethodPost, "/admin/v1/clients", jsonDoc(adminLimit + 64<<10), jsonType, true, http.StatusRequestEntityTooLarge},
		"admin config over":  {http.MethodPut, "/admin/v1/config", `{"pad":"` + strings.Repeat("a", adminLimit+64<<10) + `"}`, jsonType, true, http.StatusRequestEntityTooLarge},
	}
	for name, c := range cases {
		for _, chunked := range []bool{false, true} {
			mode := "content-length"
			if chunked {
				mode = "chunked"
			}
			t.Run(name+"/"+mode, func(t *testing.T) {
				rd, n := sizedBody(c.body, chunked)
				req, _ := http.NewRequest(c.method, h.url+c.path, rd)
				req.ContentLength = n
				req.Header.Set("Content-Type", c.contentType)
				if c.bearer {
					req.Header.Set("Authorization", "Bearer "+h.adminToken)
				} else {
					req.SetBasicAuth(engine.BootstrapAdminID, adminSecret)
				}
				r := h.do(req)
				if c.wantStatus == http.StatusOK {
					if r.status != http.StatusOK {
						t.Fatalf("want 200, got %d %s", r.status, r.body)
					}
					return
				}
				wantError(t, r, c.wantStatus, "invalid_request")
				if d := r.str("error_description"); !strings.Contains(d, "too large") {
					t.Fatalf("error_description %q does not say too large", d)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("Content-Type %q, want JSON", ct)
				}
			})
		}
	}
}

// TestDuplicateParameters checks RFC 6749 §3.1 and §3.2: "Request and
// response parameters MUST NOT be included more than once." — a repeated
// parameter is invalid_request naming it, in a body or (GET introspection,
// RFC 7662 §2.1 via RFC 6749 §3.1) in the query.
func TestDuplicateParameters(t *testing.T) {
	h := newHarness(t)
	tok := h.mustToken(engine.BootstrapAdminID, adminSecret, "").AccessToken
	secret := url.QueryEscape(adminSecret)
	id := url.QueryEscape(engine.BootstrapAdminID)
	cases := []struct {
		name, method, path, params, param string
		basic                             bool
	}{
		{"token grant_type", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&grant_type=password", "grant_type", true},
		{"token grant_type same value", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&grant_type=client_credentials", "grant_type", true},
		{"token grant_type encoded name", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&grant%5Ftype=client_credentials", "grant_type", true},
		{"token client_id", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&client_id=" + id + "&client_id=" + id + "&client_secret=" + secret, "client_id", false},
		{"token client_secret", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&client_id=" + id + "&client_secret=" + secret + "&client_secret=" + secret, "client_secret", false},
		{"token scope", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&scope=a&scope=b", "scope", true},
		{"token empty scope twice", http.MethodPost, "/oauth2/token", "grant_type=client_credentials&scope=&scope=", "scope", true},
		{"introspect token", http.MethodPost, "/oauth2/introspect", "token=" + tok + "&token=" + tok, "token", true},
		{"introspect token_type_hint", http.MethodPost, "/oauth2/introspect", "token=" + tok + "&token_type_hint=access_token&token_type_hint=refresh_token", "token_type_hint", true},
		{"introspect GET token", http.MethodGet, "/oauth2/introspect", "token=" + tok + "&token=x", "token", true},
		{"introspect GET client_id", http.MethodGet, "/oauth2/introspect", "token=" + tok + "&client_id=" + id + "&client_id=" + id + "&client_secret=" + secret, "client_id", false},
		{"revoke token", http.MethodPost, "/oauth2/revoke", "token=" + tok + "&token=x", "token", true},
		{"revoke token_type_hint", http.MethodPost, "/oauth2/revoke", "token=x&token_type_hint=access_token&token_type_hint=access_token", "token_type_hint", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var req *http.Request
			if c.method == http.MethodGet {
				req, _ = http.NewRequest(http.MethodGet, h.url+c.path+"?"+c.params, nil)
			} else {
				req, _ = http.NewRequest(c.method, h.url+c.path, strings.NewReader(c.params))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if c.basic {
				req.SetBasicAuth(id, secret)
			}
			r := h.do(req)
			wantError(t, r, http.StatusBadRequest, "invalid_request")
			if d := r.str("error_description"); !strings.Contains(d, c.param) {
				t.Fatalf("error_description %q does not name %s", d, c.param)
			}
		})
	}
	// The token is still good: no repeated request above was served.
	if got := h.introspect(tok); got["active"] != true {
		t.Fatalf("token no longer active: %v", got)
	}
}
