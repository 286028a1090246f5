package web_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// corsAnswer sends one request with an Origin (a preflight when
// preflight is set) and returns the answer.
func (h *harness) corsRequest(method, path, origin string, preflight bool) *response {
	h.t.Helper()
	m := method
	if preflight {
		m = http.MethodOptions
	}
	req, _ := http.NewRequest(m, h.url+path, nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if preflight {
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return h.do(req)
}

// TestCORS checks which origins get CORS answers: those in some client's
// allowed_cors_origins, on the token, introspection, revocation,
// userinfo, discovery and JWKS endpoints only; never another origin, the
// opaque origin "null", the authorization endpoint or the admin API, and
// never an origin whose client was deleted or changed.
func TestCORS(t *testing.T) {
	h := newHarness(t)
	const (
		spa   = "http://127.0.0.1:8000"
		other = "https://app.example"
		third = "https://app.example:8443"
	)
	h.createClient(map[string]any{"client_id": "spa", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{spa + "/cb"}, "allowed_cors_origins": []string{spa}})
	h.createClient(map[string]any{"client_id": "other", "allowed_cors_origins": []string{other}})

	type endpoint struct{ method, path string }
	open := []endpoint{
		{"POST", "/oauth2/token"}, {"POST", "/oauth2/introspect"}, {"GET", "/oauth2/introspect"}, {"POST", "/oauth2/revoke"},
		{"GET", "/oauth2/userinfo"}, {"POST", "/oauth2/userinfo"}, {"GET", "/.well-known/openid-configuration"},
		{"GET", "/.well-known/oauth-authorization-server"}, {"GET", "/oauth2/jwks"},
	}
	closed := []endpoint{{"GET", "/oauth2/authorize"}, {"POST", "/oauth2/authorize"}, {"GET", "/admin/v1/clients"},
		{"POST", "/admin/v1/clients"}, {"DELETE", "/admin/v1/clients/spa"}, {"GET", "/healthz"}}

	check := func(t *testing.T, ep endpoint, origin string, preflight, want bool) {
		t.Helper()
		r := h.corsRequest(ep.method, ep.path, origin, preflight)
		acao := r.header.Get("Access-Control-Allow-Origin")
		if !want {
			for k := range r.header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Fatalf("%s %s from %q (preflight %v): unexpected %s: %v", ep.method, ep.path, origin, preflight, k, r.header)
				}
			}
			return
		}
		if acao != origin || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatalf("%s %s from %q (preflight %v): %d %v", ep.method, ep.path, origin, preflight, r.status, r.header)
		}
		if !slices.Contains(strings.Split(strings.ReplaceAll(strings.Join(r.header.Values("Vary"), ","), " ", ""), ","), "Origin") {
			t.Fatalf("%s %s: no Vary: Origin: %v", ep.method, ep.path, r.header)
		}
		if preflight {
			methods := r.header.Get("Access-Control-Allow-Methods")
			headers := strings.ToLower(r.header.Get("Access-Control-Allow-Headers"))
			if r.status != http.StatusNoContent || !strings.Contains(methods, ep.method) || !strings.Contains(headers, "authorization") ||
				!strings.Contains(headers, "content-type") || r.header.Get("Access-Control-Max-Age") == "" {
				t.Fatalf("%s %s preflight: %d %v", ep.method, ep.path, r.status, r.header)
			}
		}
	}

	for _, tc := range []struct {
		name   string
		origin string
		eps    []endpoint
		want   bool
	}{
		{"listed origin", spa, open, true},
		{"origin of another client", other, open, true},
		{"unlisted origin", "https://evil.example", open, false},
		{"listed host, other port", "http://127.0.0.1:8001", open, false},
		{"listed host, other scheme", "https://127.0.0.1:8000", open, false},
		{"listed origin with a path", spa + "/", open, false},
		{"listed origin, other case", strings.ToUpper(other), open, false},
		{"opaque origin null", "null", open, false},
		{"wildcard", "*", open, false},
		{"no origin", "", open, false},
		{"listed origin, closed endpoints", spa, closed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ep := range tc.eps {
				for _, preflight := range []bool{true, false} {
					check(t, ep, tc.origin, preflight, tc.want)
				}
			}
		})
	}

	t.Run("origin of a deleted client", func(t *testing.T) {
		if r := h.admin(http.MethodDelete, "/clients/other", nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		for _, ep := range open {
			check(t, ep, other, true, false)
			check(t, ep, other, false, false)
		}
	})
	t.Run("origin removed by PUT, new origin added", func(t *testing.T) {
		r := h.admin(http.MethodPut, "/clients/spa", map[string]any{"token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code"}, "redirect_uris": []string{spa + "/cb"}, "allowed_cors_origins": []string{third}})
		if r.status != http.StatusOK {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
		check(t, open[0], spa, true, false)
		check(t, open[0], third, true, true)
		check(t, open[0], third, false, true)
	})
	t.Run("discovery and JWKS vary by Origin even without one", func(t *testing.T) {
		for _, p := range []string{"/.well-known/openid-configuration", "/oauth2/jwks"} {
			r := h.corsRequest(http.MethodGet, p, "", false)
			if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
				t.Fatalf("%s: Vary %v", p, r.header.Values("Vary"))
			}
		}
	})
}

// TestCORSOriginRegistration checks allowed_cors_origins at registration:
// origins exactly as a browser sends them (scheme://host[:port], RFC 6454
// §6.2), never a path, a wildcard, "null", user information or a default
// port spelled out; the admin API answers the list back.
func TestCORSOriginRegistration(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example", true},
		{"https://app.example:8443", true},
		{"http://localhost:3000", true},
		{"http://127.0.0.1:8080", true},
		{"http://[::1]:8080", true},

		{"*", false},
		{"null", false},
		{"", false},
		{"https://*.app.example", false},
		{"https://app.example/", false},
		{"https://app.example/path", false},
		{"https://app.example?x=1", false},
		{"https://app.example#f", false},
		{"https://user@app.example", false},
		{"HTTPS://APP.example", false},
		{"https://app.example:443", false},
		{"http://app.example:80", false},
		{"app.example", false},
		{"//app.example", false},
		{"file:///etc", false},
		{"javascript:alert(1)", false},
		{"https://", false},
		{"https://app.example:99999", false},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			id := "o" + strings.Repeat("x", i)
			r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": id, "allowed_cors_origins": []string{tc.origin}})
			if !tc.ok {
				wantError(t, r, 400, "invalid_request")
				if !strings.HasPrefix(r.str("error_description"), "allowed_cors_origins:") {
					t.Fatalf("error_description %q does not name allowed_cors_origins", r.str("error_description"))
				}
				return
			}
			if r.status != http.StatusCreated {
				t.Fatalf("refused: %d %s", r.status, r.body)
			}
			got := h.admin(http.MethodGet, "/clients/"+id, nil)
			list, _ := got.json["allowed_cors_origins"].([]any)
			if len(list) != 1 || list[0] != tc.origin {
				t.Fatalf("GET answers %s", got.body)
			}
		})
	}
	t.Run("absent is an empty list", func(t *testing.T) {
		h.createClient(map[string]any{"client_id": "plain"})
		got := h.admin(http.MethodGet, "/clients/plain", nil)
		if list, ok := got.json["allowed_cors_origins"].([]any); !ok || len(list) != 0 {
			t.Fatalf("GET answers %s", got.body)
		}
	})
}
