package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestTokenExchangeOfTrustedIssuerJWT: a JWT of a trusted issuer
// (docs/jwt-bearer.md) is a subject_token a client may exchange when its
// token_exchange policy names the issuer in subject_issuers and allows
// impersonation (RFC 8693 §1.1); the new token is for the JWT's subject,
// within what the issuer may yield. A JWT the client received may be
// exchanged again; one addressed to this server (an assertion) only once,
// here or at the JWT bearer grant. Each refusal is invalid_request.
func TestTokenExchangeOfTrustedIssuerJWT(t *testing.T) {
	f := newBearerFixture(t)
	f.createClient(map[string]any{"client_id": "gw", "client_secret": "gw-secret", "scope": "read write",
		"grant_types":    []string{grantExchange},
		"token_exchange": map[string]any{"subject_issuers": []string{"partner"}, "allow_impersonation": true}})
	f.createClient(map[string]any{"client_id": "gw-noissuer", "client_secret": "gw-noissuer-secret", "scope": "read",
		"grant_types": []string{grantExchange}, "token_exchange": map[string]any{"allow_impersonation": true}})
	f.createClient(map[string]any{"client_id": "gw-noimp", "client_secret": "gw-noimp-secret", "scope": "read",
		"grant_types": []string{grantExchange}, "token_exchange": map[string]any{"subject_issuers": []string{"*"}}})
	f.createClient(map[string]any{"client_id": "gw-other", "client_secret": "gw-other-secret", "scope": "read",
		"grant_types":    []string{grantExchange},
		"token_exchange": map[string]any{"subject_issuers": []string{"partner"}, "allow_impersonation": true}})
	// The partner issuer must allow the exchanging clients (not gw-other).
	if r := f.admin(http.MethodPatch, "/trusted-issuers/partner", map[string]any{
		"allowed_clients": []string{"app", "gw", "gw-noissuer", "gw-noimp"}}); r.status != http.StatusOK {
		t.Fatalf("patch partner: %d %s", r.status, r.body)
	}
	exchange := func(subject, id, secret, scope string) *response {
		t.Helper()
		vals := url.Values{"grant_type": {grantExchange}, "subject_token": {subject}, "subject_token_type": {ttJWT}}
		if scope != "" {
			vals.Set("scope", scope)
		}
		return f.form("/oauth2/token", vals, id, secret)
	}
	// The IdP's access token for alice, issued to the gateway (its aud).
	idpToken := func(sub string, mod func(map[string]any)) string {
		return f.partner(t, sub, func(c map[string]any) {
			c["aud"], c["scope"] = "gw", "read write admin"
			if mod != nil {
				mod(c)
			}
		})
	}

	tok := idpToken("alice", nil)
	r := exchange(tok, "gw", "gw-secret", "")
	if r.status != http.StatusOK || r.str("issued_token_type") != ttAccess {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	in := f.introspect(r.str("access_token"))
	if in["active"] != true || in["sub"] != "alice" || in["client_id"] != "gw" || in["scope"] != "read write" {
		t.Fatalf("introspection of the exchanged token: %v", in)
	}
	// The same token may be exchanged again (its jti is not spent), for
	// less.
	if r := exchange(tok, "gw", "gw-secret", "read"); r.status != http.StatusOK || r.str("scope") != "read" {
		t.Fatalf("second exchange: %d %s", r.status, r.body)
	}

	// A JWT addressed to this server is an assertion: it is used once,
	// here or at the JWT bearer grant.
	assertion := idpToken("alice", func(c map[string]any) { c["aud"] = f.tokenURL })
	if r := exchange(assertion, "gw", "gw-secret", ""); r.status != http.StatusOK {
		t.Fatalf("exchange of an assertion: %d %s", r.status, r.body)
	}
	wantError(t, exchange(assertion, "gw", "gw-secret", ""), http.StatusBadRequest, "invalid_request")
	used := f.partner(t, "alice", nil) // aud: the token endpoint
	if r := f.grant(used, "read", "app", "app-secret"); r.status != http.StatusOK {
		t.Fatalf("JWT bearer grant: %d %s", r.status, r.body)
	}
	r = exchange(used, "gw", "gw-secret", "")
	wantError(t, r, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(r.str("error_description"), "jti was used before") {
		t.Errorf("an assertion used at the JWT bearer grant, exchanged: %s", r.body)
	}

	for _, tc := range []struct {
		name, token, id, secret, scope, desc string
	}{
		{"policy without the issuer", idpToken("alice", func(c map[string]any) { c["aud"] = "gw-noissuer" }), "gw-noissuer", "gw-noissuer-secret", "", "may not exchange tokens of issuer"},
		{"no impersonation", idpToken("alice", func(c map[string]any) { c["aud"] = "gw-noimp" }), "gw-noimp", "gw-noimp-secret", "", "without an actor_token"},
		{"subject the issuer may not name", idpToken("mallory", nil), "gw", "gw-secret", "", "subject is not allowed"},
		{"issuer not allowing the client", idpToken("alice", func(c map[string]any) { c["aud"] = "gw-other" }), "gw-other", "gw-other-secret", "", "issuer is not trusted"},
		{"aud for someone else", idpToken("alice", func(c map[string]any) { c["aud"] = "billing" }), "gw", "gw-secret", "", "aud names neither"},
		{"expired", idpToken("alice", func(c map[string]any) { c["exp"] = c["iat"].(int64) - 1 }), "gw", "gw-secret", "", ""},
		{"scope beyond the issuer's", idpToken("alice", nil), "gw", "gw-secret", "admin", ""},
		{"unknown issuer", signAssertion(t, f.rsaKey, jose.RS256, "k1", f.claims("https://elsewhere.example", "alice",
			func(c map[string]any) { c["aud"] = "gw" })), "gw", "gw-secret", "", "issuer is not trusted"},
		{"signed with another key", signAssertion(t, f.ecKey, jose.ES256, "k1", f.claims("https://idp.example", "alice",
			func(c map[string]any) { c["aud"] = "gw" })), "gw", "gw-secret", "", "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(tc.token, tc.id, tc.secret, tc.scope)
			code := "invalid_request"
			if tc.name == "scope beyond the issuer's" {
				code = "invalid_scope"
			}
			wantError(t, r, http.StatusBadRequest, code)
			if !strings.Contains(r.str("error_description"), tc.desc) {
				t.Errorf("description %q lacks %q", r.str("error_description"), tc.desc)
			}
		})
	}

	// The policy's subject_issuers is checked at registration.
	for _, bad := range []any{[]string{"no spaces allowed"}, []string{"*", "partner"}, []string{"partner", "partner"}} {
		r := f.admin(http.MethodPatch, "/clients/gw", map[string]any{"token_exchange": map[string]any{"subject_issuers": bad}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.str("error_description"), "subject_issuers") {
			t.Errorf("subject_issuers %v: %d %s", bad, r.status, r.body)
		}
	}
}
