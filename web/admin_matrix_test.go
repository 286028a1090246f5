package web_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// routeAreas says, for every route the server registers, which admin
// area's scope it needs ("" = none: the OAuth endpoints authenticate
// their callers themselves). A route missing here fails
// TestAdminScopeMatrix, so a new route cannot go unchecked.
var routeAreas = map[string]string{
	"POST /oauth2/token":                          "",
	"POST /oauth2/introspect":                     "",
	"GET /oauth2/introspect":                      "",
	"POST /oauth2/revoke":                         "",
	"POST /oauth2/par":                            "",
	"GET /oauth2/jwks":                            "",
	"GET /oauth2/authorize":                       "",
	"POST /oauth2/authorize":                      "",
	"POST /oauth2/device_authorization":           "",
	"GET /oauth2/device":                          "",
	"POST /oauth2/device":                         "",
	"GET /oauth2/userinfo":                        "",
	"POST /oauth2/userinfo":                       "",
	"GET /.well-known/openid-configuration":       "",
	"GET /.well-known/oauth-authorization-server": "",
	"GET /healthz":                                "",
	"GET /readyz":                                 "",
	"GET /metrics":                                "metrics",
	"POST /admin/v1/clients":                      "clients",
	"GET /admin/v1/clients":                       "clients",
	"GET /admin/v1/clients/:id":                   "clients",
	"PUT /admin/v1/clients/:id":                   "clients",
	"PATCH /admin/v1/clients/:id":                 "clients",
	"DELETE /admin/v1/clients/:id":                "clients",
	"POST /admin/v1/clients/:id/secret":           "clients",
	"POST /admin/v1/scripts":                      "scripts",
	"GET /admin/v1/scripts":                       "scripts",
	"GET /admin/v1/scripts/:name":                 "scripts",
	"PUT /admin/v1/scripts/:name":                 "scripts",
	"PATCH /admin/v1/scripts/:name":               "scripts",
	"DELETE /admin/v1/scripts/:name":              "scripts",
	"POST /admin/v1/scripts/:name/test":           "scripts",
	"GET /admin/v1/scripts/:name/logs":            "scripts",
	"POST /admin/v1/users":                        "users",
	"GET /admin/v1/users":                         "users",
	"GET /admin/v1/users/:name":                   "users",
	"PUT /admin/v1/users/:name":                   "users",
	"PATCH /admin/v1/users/:name":                 "users",
	"DELETE /admin/v1/users/:name":                "users",
	"GET /admin/v1/config":                        "config",
	"PUT /admin/v1/config":                        "config",
	"POST /admin/v1/keys/rotate":                  "keys",
	"GET /admin/v1/openapi.json":                  "",
	"GET /admin/v1/scripts/api.d.ts":              "",

	// Script versions and rollout (docs/scripts.md).
	"GET /admin/v1/scripts/:name/versions":         "scripts",
	"GET /admin/v1/scripts/:name/versions/:number": "scripts",
	"POST /admin/v1/scripts/:name/rollback":        "scripts",
	"POST /admin/v1/scripts/:name/promote":         "scripts",

	// Replay of recorded inputs (docs/scripts.md, "Replay").
	"POST /admin/v1/scripts/:name/replay": "scripts",

	// The admin console (docs/console.md): its files need no token, its
	// routes an area's scope like the others.
	"GET /admin":                       "",
	"GET /admin/":                      "",
	"GET /admin/console.js":            "",
	"GET /admin/console.css":           "",
	"POST /admin/v1/script-check":      "scripts",
	"GET /admin/v1/script-stats":       "scripts",
	"GET /admin/v1/clients/:id/sample": "clients",
	// Trusted issuers (docs/jwt-bearer.md): read with their area's
	// .read scope, written only with keyhook:admin ("admin").
	"POST /admin/v1/trusted-issuers":         "admin",
	"GET /admin/v1/trusted-issuers":          "trusted_issuers",
	"GET /admin/v1/trusted-issuers/:name":    "trusted_issuers",
	"PUT /admin/v1/trusted-issuers/:name":    "admin",
	"PATCH /admin/v1/trusted-issuers/:name":  "admin",
	"DELETE /admin/v1/trusted-issuers/:name": "admin",
	// Dynamic client registration (docs/registration.md): the endpoints
	// check their own tokens; initial access tokens are the clients
	// area's.
	"POST /oauth2/register":                    "",
	"GET /oauth2/register/:id":                 "",
	"PUT /oauth2/register/:id":                 "",
	"DELETE /oauth2/register/:id":              "",
	"POST /admin/v1/registration-tokens":       "clients",
	"GET /admin/v1/registration-tokens":        "clients",
	"GET /admin/v1/registration-tokens/:id":    "clients",
	"DELETE /admin/v1/registration-tokens/:id": "clients",
}

// TestAdminScopeMatrix calls every registered route with no token, a
// token without any keyhook scope, keyhook:admin, and each
// keyhook:<area>.read and .write: a route of an area answers 401 without
// a token, 403 insufficient_scope without its scope (GET needs .read,
// anything else .write; neither implies the other), and is served with
// it or with keyhook:admin. A route of the area "admin" is served with
// keyhook:admin only.
func TestAdminScopeMatrix(t *testing.T) {
	h := newHarness(t)
	areas := []string{"clients", "scripts", "users", "config", "keys", "metrics", "trusted_issuers"}
	scopes := []string{"", "api", "keyhook:admin"}
	for _, a := range areas {
		scopes = append(scopes, "keyhook:"+a+".read", "keyhook:"+a+".write")
	}
	tokens := map[string]string{"": ""}
	for _, sc := range scopes[1:] {
		id := "matrix-" + strings.NewReplacer(":", "-", ".", "-").Replace(sc)
		secret := id + "-secret"
		h.createClient(map[string]any{"client_id": id, "client_secret": secret, "scope": sc})
		tokens[sc] = h.mustToken(id, secret, "").AccessToken
	}

	routes := h.srv.Config.Handler.(*echo.Echo).Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		area, ok := routeAreas[key]
		if !ok {
			t.Errorf("route %s has no row in routeAreas: say which scope it needs", key)
			continue
		}
		path := strings.NewReplacer(":id", "matrix-missing", ":name", "matrix-missing", ":number", "1").Replace(rt.Path)
		for _, sc := range scopes {
			t.Run(key+" as "+sc, func(t *testing.T) {
				var body any
				if rt.Method != http.MethodGet {
					body = "{}"
				}
				r := h.call(tokens[sc], rt.Method, path, body)
				if area == "" {
					if r.status >= 500 {
						t.Fatalf("%d %s", r.status, r.body)
					}
					return
				}
				need := "keyhook:" + area + ".write"
				if rt.Method == http.MethodGet {
					need = "keyhook:" + area + ".read"
				}
				if area == "admin" {
					need = "keyhook:admin"
				}
				switch {
				case sc == "":
					if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
						t.Fatalf("without a token: %d %q %s, want 401 invalid_token", r.status, r.header.Get("WWW-Authenticate"), r.body)
					}
				case sc == "keyhook:admin" || sc == need:
					if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden || r.status >= 500 {
						t.Fatalf("with %s: %d %s, want it served", sc, r.status, r.body)
					}
				default:
					if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
						t.Fatalf("with %s: %d %q %s, want 403 insufficient_scope", sc, r.status, r.header.Get("WWW-Authenticate"), r.body)
					}
				}
			})
		}
	}
	for key := range routeAreas {
		if !seen[key] {
			t.Errorf("routeAreas has %s, which the server does not register", key)
		}
	}
	if !slices.ContainsFunc(routes, func(r *echo.Route) bool { return r.Path == "/admin/v1/keys/rotate" }) {
		t.Fatal("the route list looks wrong")
	}
}

// call sends a request with an optional bearer token to any path.
func (h *harness) call(token, method, path string, body any) *response {
	h.t.Helper()
	if strings.HasPrefix(path, "/admin/v1") {
		return h.adminAs(token, method, strings.TrimPrefix(path, "/admin/v1"), body)
	}
	var rd *strings.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

// metrics reads /metrics as keyhook:admin.
func (h *harness) metrics() []byte {
	h.t.Helper()
	r := h.call(h.adminToken, http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	return r.body
}
