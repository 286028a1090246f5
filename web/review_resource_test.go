package web_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestReviewResourceTokenNotForKeyhook: an access token asked for a
// resource (RFC 8707) is for that resource. Handed to it, it was also
// taken by keyhook's own bearer endpoints: the resource server could read
// the user's claims at userinfo, or, with a delegated admin client's
// token, call the admin API. A token for resources is taken there only
// when one of them names this server (its issuer, or a URL under it).
func TestReviewResourceTokenNotForKeyhook(t *testing.T) {
	h := newHarness(t)
	resourceSetup(t, h, map[string]any{"scope": "openid read keyhook:clients.read",
		"allowed_resources": []string{resAPI, h.url, h.url + "/oauth2/userinfo"}})

	userToken := func(resources ...string) string {
		q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {resRedir},
			"scope": {"openid read"}, "state": {"s"}, "nonce": {"n"}}
		for _, r := range resources {
			q.Add("resource", r)
		}
		resp := login(t, browser(), h.url+"/oauth2/authorize?"+q.Encode(), "alice", "alice-pw")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("code") == "" {
			t.Fatalf("login: %d %s", resp.StatusCode, loc)
		}
		return h.mustDecodeToken(exchange(h, loc.Query().Get("code"))).AccessToken
	}
	userinfo := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/oauth2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return h.do(req).status
	}
	for _, tc := range []struct {
		name      string
		resources []string
		want      int
	}{
		{"no resource", nil, http.StatusOK},
		{"another resource", []string{resAPI}, http.StatusUnauthorized},
		{"the issuer", []string{h.url}, http.StatusOK},
		{"the userinfo endpoint", []string{h.url + "/oauth2/userinfo"}, http.StatusOK},
		{"another resource and the issuer", []string{resAPI, h.url}, http.StatusOK},
	} {
		t.Run("userinfo, "+tc.name, func(t *testing.T) {
			if got := userinfo(userToken(tc.resources...)); got != tc.want {
				t.Fatalf("userinfo: %d, want %d", got, tc.want)
			}
		})
	}

	adminToken := func(resources ...string) string {
		return h.mustDecodeToken(tokenFor(h, "app", "app-secret", url.Values{"grant_type": {"client_credentials"},
			"scope": {"keyhook:clients.read"}}, resources...)).AccessToken
	}
	for _, tc := range []struct {
		name      string
		resources []string
		want      int
	}{
		{"no resource", nil, http.StatusOK},
		{"another resource", []string{resAPI}, http.StatusUnauthorized},
		{"the issuer", []string{h.url}, http.StatusOK},
	} {
		t.Run("admin API, "+tc.name, func(t *testing.T) {
			if r := h.adminAs(adminToken(tc.resources...), http.MethodGet, "/clients", nil); r.status != tc.want {
				t.Fatalf("admin API: %d %s, want %d", r.status, r.body, tc.want)
			}
		})
	}
}
