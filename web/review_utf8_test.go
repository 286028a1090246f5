package web_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestReviewNotUTF8Identifiers: a client_id or username that is
// not UTF-8 is a client's mistake, answered as an unknown client or a
// wrong password. On PostgreSQL, whose text is always UTF-8, the lookup
// failed instead, and every endpoint answered 503 "cannot reach its
// storage": the token, pushed authorization request and device
// authorization endpoints, the authorization endpoint and the device
// verification page. SQLite answers the same.
func TestReviewNotUTF8Identifiers(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { notUTF8Identifiers(t, newHarness(t)) })
	t.Run("postgres", func(t *testing.T) { notUTF8Identifiers(t, newHarness(t, withDSN(pgDSN(t)))) })
}

func notUTF8Identifiers(t *testing.T, h *harness) {
	resourceSetup(t, h, map[string]any{"grant_types": []string{"authorization_code", "password", "client_credentials"}})
	h.createClient(map[string]any{"client_id": "tv", "client_name": "TV", "token_endpoint_auth_method": "none",
		"grant_types": []string{deviceGrant}, "scope": "api"})
	const bad = "ap\xffp"
	for _, tc := range []struct {
		name   string
		r      func() *response
		status int
		code   string
	}{
		{"token, Basic client_id", func() *response {
			return h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, bad, "app-secret")
		}, http.StatusUnauthorized, "invalid_client"},
		{"token, form client_id", func() *response {
			return h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {bad}}, "", "")
		}, http.StatusBadRequest, "invalid_client"},
		{"token, password grant username", func() *response {
			return h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"al\xffice"}, "password": {"x"}},
				"app", "app-secret")
		}, http.StatusBadRequest, "invalid_grant"},
		{"pushed authorization request", func() *response {
			return h.form("/oauth2/par", url.Values{"client_id": {bad}, "response_type": {"code"}}, "", "")
		}, http.StatusBadRequest, "invalid_client"},
		{"device authorization", func() *response {
			return h.form("/oauth2/device_authorization", url.Values{"client_id": {"t\xffv"}}, "", "")
		}, http.StatusBadRequest, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.r(), tc.status, tc.code)
		})
	}

	t.Run("authorization endpoint, client_id", func(t *testing.T) {
		resp, err := http.Get(h.url + "/oauth2/authorize?" + url.Values{"client_id": {bad}, "response_type": {"code"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(resp); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("authorization endpoint, username", func(t *testing.T) {
		resp := login(t, browser(), authURLResources(h, "app"), "al\xffice", "x")
		if body := readAll(resp); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("verification page, username", func(t *testing.T) {
		codes := h.mustDeviceAuth("tv", "", "api")
		b := newDevBrowser(t, h)
		if s := b.enter(codes.user); s != 200 || !b.has("password") {
			t.Fatalf("code: %d %s", s, b.page)
		}
		if s := b.submit(url.Values{"username": {"al\xffice"}, "password": {"x"}}); s != http.StatusUnauthorized || !b.has("password") {
			t.Fatalf("sign-in: %d %s", s, b.page)
		}
	})
	t.Run("authorization endpoint, nonce", func(t *testing.T) {
		// The nonce is stored with the code: PostgreSQL refused it at
		// the sign-in (503 after the password). It is refused before,
		// at the client's redirect URI, as a malformed parameter.
		u := h.url + "/oauth2/authorize?" + url.Values{"response_type": {"code"}, "client_id": {"app"},
			"redirect_uri": {resRedir}, "scope": {"openid read"}, "state": {"s"}, "nonce": {"n\xff"}}.Encode()
		resp, err := browser().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		readAll(resp)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Query().Get("error") != "invalid_request" ||
			loc.Query().Get("state") != "s" {
			t.Fatalf("%d %s", resp.StatusCode, loc)
		}
	})
}
