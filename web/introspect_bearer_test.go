package web_test

import (
	"net/url"
	"testing"
)

// TestIntrospectionBearerMustBeConfidential checks that only an access
// token of a confidential client authorizes introspection (RFC 7662 §4:
// the caller is a protected resource, which can keep a secret; a public
// client's token is in the hands of a browser or a phone).
func TestIntrospectionBearerMustBeConfidential(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h) // spa: a public client
	h.createClient(map[string]any{"client_id": "rs", "client_secret": "rs-secret", "scope": "introspect"})
	subject := h.mustToken("rs", "rs-secret", "").AccessToken
	public := publicCodeTokens(t, cfg).AccessToken
	confidential := h.mustToken("rs", "rs-secret", "").AccessToken

	for _, tc := range []struct {
		name, bearer  string
		requiredScope string
		status        int
		code          string
	}{
		{"confidential client's token", confidential, "", 200, ""},
		{"public client's token", public, "", 401, "invalid_token"},
		{"public client's token, required scope set and held", public, "openid", 401, "invalid_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.setConfig(map[string]any{"introspection_required_scope": tc.requiredScope})
			defer h.setConfig(map[string]any{"introspection_required_scope": ""})
			r := h.introspectBearer("POST", tc.bearer, url.Values{"token": {subject}})
			if tc.status == 200 {
				if r.status != 200 || r.json["active"] != true {
					t.Fatalf("%d %s", r.status, r.body)
				}
				return
			}
			wantError(t, r, tc.status, tc.code)
		})
	}
}
