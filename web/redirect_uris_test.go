package web_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestRedirectURIRegistration checks the redirect URIs a client may
// register (RFC 9700 §2.1, §4.1; RFC 8252 §7.1, §7.3, §8.4): https, http on
// a loopback address, or a private-use scheme in reverse-domain form;
// never a script or data URI, a local file, plain http to another host, or
// a URI with a fragment (RFC 6749 §3.1.2).
func TestRedirectURIRegistration(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/cb", true},
		{"https://app.example:8443/cb?tenant=a", true},
		{"http://127.0.0.1/cb", true},
		{"http://127.0.0.1:49152/cb", true},
		{"http://[::1]:8080/cb", true},
		{"http://localhost:3000/callback", true},
		{"com.example.app:/oauth2redirect", true},
		{"com.example.app://callback", true},

		{"javascript:alert(document.cookie)", false},
		{"JavaScript://app.example/%0aalert(1)", false},
		{"data:text/html,<script>alert(1)</script>", false},
		{"file:///etc/passwd", false},
		{"file://host/share/cb", false},
		{"vbscript:msgbox(1)", false},
		{"http://app.example/cb", false},
		{"http://127.0.0.1.evil.example/cb", false},
		{"http://localhost.evil.example/cb", false},
		{"https://app.example/cb#frag", false},
		{"https://app.example/cb#", false},
		{"com.example.app:/cb#x", false},
		{"myapp://cb", false},
		{"https:///cb", false},
		{"https://user:pw@app.example/cb", false},
		{"/relative/cb", false},
		{"", false},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			id := "c" + strings.Repeat("x", i)
			r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": id, "grant_types": []string{"authorization_code"},
				"redirect_uris": []string{tc.uri}})
			if tc.ok {
				if r.status != http.StatusCreated {
					t.Fatalf("refused: %d %s", r.status, r.body)
				}
				return
			}
			wantError(t, r, 400, "invalid_request")
			if !strings.HasPrefix(r.str("error_description"), "redirect_uris:") {
				t.Fatalf("error_description %q does not name redirect_uris", r.str("error_description"))
			}
		})
	}
}
