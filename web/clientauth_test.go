package web_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// assertionClaims are valid RFC 7523 §3 claims for client id with aud.
func assertionClaims(id string, aud any) map[string]any {
	now := time.Now()
	return map[string]any{"iss": id, "sub": id, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString([]byte(id + randomSuffix()))}
}

func assertionValues(a string, extra url.Values) url.Values {
	v := url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	for k, vs := range extra {
		v[k] = vs
	}
	return v
}

// TestJWKSURIRegistration: a jwks_uri must be https, or http to a loopback
// host, and an address literal must not be private or link-local
// (docs/client-auth.md).
func TestJWKSURIRegistration(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		uri    string
		status int
	}{
		{"https://keys.example/jwks", http.StatusCreated},
		{"https://93.184.215.14/jwks", http.StatusCreated},
		{"http://127.0.0.1:9000/jwks", http.StatusCreated},
		{"http://localhost:9000/jwks", http.StatusCreated},
		{"http://[::1]:9000/jwks", http.StatusCreated},
		{"https://127.0.0.1:9000/jwks", http.StatusCreated},
		{"http://keys.example/jwks", http.StatusBadRequest},
		{"http://93.184.215.14/jwks", http.StatusBadRequest},
		{"https://169.254.169.254/latest/meta-data/", http.StatusBadRequest},
		{"https://10.0.0.7/jwks", http.StatusBadRequest},
		{"https://192.168.1.1/jwks", http.StatusBadRequest},
		{"https://[fd00::1]/jwks", http.StatusBadRequest},
		{"https://[fe80::1]/jwks", http.StatusBadRequest},
		{"https://[::ffff:10.0.0.7]/jwks", http.StatusBadRequest},
		{"https://100.100.100.200/jwks", http.StatusBadRequest},
		{"https://0.0.0.0/jwks", http.StatusBadRequest},
		{"https://user:pw@keys.example/jwks", http.StatusBadRequest},
		{"ftp://keys.example/jwks", http.StatusBadRequest},
		{"/jwks", http.StatusBadRequest},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "pk-" + string(rune('a'+i)),
				"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": tc.uri})
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == http.StatusBadRequest && (r.str("error") != "invalid_request" || !strings.HasPrefix(r.str("error_description"), "jwks_uri")) {
				t.Fatalf("got %s, want invalid_request naming jwks_uri", r.body)
			}
		})
	}
}
