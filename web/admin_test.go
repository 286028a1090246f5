package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAdminAuthorization(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "reader", "client_secret": "reader-secret", "scope": "keyhook:clients.read"})
	h.createClient(map[string]any{"client_id": "plain", "client_secret": "plain-secret", "scope": "api"})
	reader := h.mustToken("reader", "reader-secret", "").AccessToken
	plain := h.mustToken("plain", "plain-secret", "").AccessToken
	for _, tc := range []struct {
		name, token, method, path string
		status                    int
		challenge                 string
	}{
		{"no token", "", "GET", "/clients", 401, `error="invalid_token"`},
		{"garbage token", "garbage", "GET", "/clients", 401, `error="invalid_token"`},
		{"token without admin scope", plain, "GET", "/clients", 403, `error="insufficient_scope"`},
		{"read scope reads", reader, "GET", "/clients", 200, ""},
		{"read scope cannot write", reader, "DELETE", "/clients/plain", 403, `error="insufficient_scope"`},
		{"read scope of another area", reader, "GET", "/scripts", 403, `error="insufficient_scope"`},
		{"admin scope", h.adminToken, "GET", "/config", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.adminAs(tc.token, tc.method, tc.path, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.challenge != "" && !strings.Contains(r.header.Get("WWW-Authenticate"), tc.challenge) {
				t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("revoked admin token", func(t *testing.T) {
		tok := h.mustToken("keyhook-admin", adminSecret, "").AccessToken
		h.form("/oauth2/revoke", url.Values{"token": {tok}}, "keyhook-admin", adminSecret)
		if r := h.adminAs(tok, "GET", "/clients", nil); r.status != 401 {
			t.Fatalf("revoked token: %d", r.status)
		}
	})
}

func TestAdminClients(t *testing.T) {
	h := newHarness(t)
	r := h.admin(http.MethodPost, "/clients", map[string]any{"client_name": "generated"})
	if r.status != 201 || r.str("client_id") == "" || len(r.str("client_secret")) < 32 {
		t.Fatalf("create with defaults: %d %s", r.status, r.body)
	}
	if r.str("token_endpoint_auth_method") != "client_secret_basic" || r.json["grant_types"].([]any)[0] != "client_credentials" {
		t.Fatalf("defaults: %s", r.body)
	}
	id, secret := r.str("client_id"), r.str("client_secret")
	h.mustToken(id, secret, "")

	got := h.admin(http.MethodGet, "/clients/"+id, nil)
	if got.status != 200 || got.json["client_secret"] != nil {
		t.Fatalf("read: %d %s", got.status, got.body)
	}
	if list := h.admin(http.MethodGet, "/clients", nil); list.status != 200 || !strings.Contains(string(list.body), id) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	rot := h.admin(http.MethodPost, "/clients/"+id+"/secret", nil)
	if rot.status != 200 || rot.str("client_secret") == "" || rot.str("client_secret") == secret {
		t.Fatalf("rotate secret: %d %s", rot.status, rot.body)
	}
	wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, id, secret), 401, "invalid_client")
	h.mustToken(id, rot.str("client_secret"), "")

	put := h.admin(http.MethodPut, "/clients/"+id, map[string]any{"client_name": "renamed", "scope": "x y", "access_token_as_jwt": true})
	if put.status != 200 || put.str("client_name") != "renamed" || put.json["access_token_as_jwt"] != true || put.str("client_secret") != "" {
		t.Fatalf("replace: %d %s", put.status, put.body)
	}
	h.mustToken(id, rot.str("client_secret"), "x") // the secret survives a replace
	put = h.admin(http.MethodPut, "/clients/"+id, map[string]any{"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims": true})
	if put.json["run_introspection_script_before_jwt_creation"] != true {
		t.Fatalf("Janssen's field name: %s", put.body)
	}
	if d := h.admin(http.MethodDelete, "/clients/"+id, nil); d.status != 204 {
		t.Fatalf("delete: %d", d.status)
	}
	for _, m := range []string{"GET", "DELETE"} {
		wantError(t, h.admin(m, "/clients/"+id, nil), 404, "not_found")
	}
	wantError(t, h.admin("PUT", "/clients/"+id, map[string]any{}), 404, "not_found")
	h.createClient(map[string]any{"client_id": "dup"})
	wantError(t, h.admin("POST", "/clients", map[string]any{"client_id": "dup"}), 409, "conflict")
}

func TestAdminBadFields(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name  string
		path  string
		body  any
		field string
	}{
		{"unknown grant", "/clients", map[string]any{"grant_types": []string{"implicit"}}, "grant_types"},
		{"unknown auth method", "/clients", map[string]any{"token_endpoint_auth_method": "tls_client_auth"}, "token_endpoint_auth_method"},
		{"wrong type", "/clients", `{"scope": 42}`, "scope"},
		{"unknown field", "/clients", `{"client_nam": "typo"}`, "client_nam"},
		{"malformed JSON", "/clients", `{"client_name": `, "body"},
		{"missing script binding", "/clients", map[string]any{"introspection_scripts": []string{"nope"}}, "introspection_scripts"},
		{"private_key_jwt without keys", "/clients", map[string]any{"token_endpoint_auth_method": "private_key_jwt"}, "jwks"},
		{"code grant without redirect", "/clients", map[string]any{"grant_types": []string{"authorization_code"}}, "redirect_uris"},
		{"redirect with fragment", "/clients", map[string]any{"redirect_uris": []string{"https://a.example/cb#x"}}, "redirect_uris"},
		{"negative lifetime", "/clients", map[string]any{"access_token_lifetime": -5}, "access_token_lifetime"},
		{"bad script name", "/scripts", map[string]any{"name": "Bad Name", "type": "introspection", "source": "function modifyResponse(r){return true}"}, "name"},
		{"bad script type", "/scripts", map[string]any{"name": "s", "type": "other", "source": "x"}, "type"},
		{"timeout too long", "/scripts", map[string]any{"name": "s", "type": "introspection", "source": "function modifyResponse(r){return true}", "timeout_ms": 6000}, "timeout_ms"},
		{"bad on_error", "/scripts", map[string]any{"name": "s", "type": "introspection", "source": "function modifyResponse(r){return true}", "on_error": "explode"}, "on_error"},
		{"user without password", "/users", map[string]any{"username": "bob"}, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(http.MethodPost, tc.path, tc.body)
			wantError(t, r, 400, "invalid_request")
			if !strings.HasPrefix(r.str("error_description"), tc.field+":") {
				t.Fatalf("error_description %q does not name %s", r.str("error_description"), tc.field)
			}
		})
	}
}

func TestAdminConfig(t *testing.T) {
	h := newHarness(t)
	r := h.admin(http.MethodGet, "/config", nil)
	want := map[string]any{"introspection_skip_authorization": false, "introspection_script_backward_compatibility": false,
		"introspection_required_scope": "", "access_token_lifetime": 300.0, "refresh_token_lifetime": 1209600.0,
		"id_token_lifetime": 3600.0, "authorization_code_lifetime": 60.0, "access_token_signing_alg": "RS256"}
	for k, v := range want {
		if r.json[k] != v {
			t.Errorf("default %s = %v, want %v", k, r.json[k], v)
		}
	}
	r = h.admin(http.MethodPut, "/config", map[string]any{"access_token_lifetime": 60})
	if r.status != 200 || r.json["access_token_lifetime"] != 60.0 || r.json["refresh_token_lifetime"] != 1209600.0 {
		t.Fatalf("PUT keeps the rest: %d %s", r.status, r.body)
	}
	if tr := h.mustToken("keyhook-admin", adminSecret, ""); tr.ExpiresIn != 60 {
		t.Fatalf("expires_in = %d after setting 60", tr.ExpiresIn)
	}
	for _, tc := range []struct {
		name string
		body map[string]any
		prop string
	}{
		{"unknown property", map[string]any{"no_such_thing": true}, "no_such_thing"},
		{"wrong type", map[string]any{"introspection_skip_authorization": "yes"}, "introspection_skip_authorization"},
		{"zero lifetime", map[string]any{"access_token_lifetime": 0}, "access_token_lifetime"},
		{"unknown algorithm", map[string]any{"access_token_signing_alg": "HS256"}, "access_token_signing_alg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(http.MethodPut, "/config", tc.body)
			wantError(t, r, 400, "invalid_request")
			if !strings.Contains(r.str("error_description"), tc.prop) {
				t.Fatalf("description %q does not name %s", r.str("error_description"), tc.prop)
			}
		})
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := newHarness(t)
	// /metrics on the main listener needs a token (keyhook serve
	// --metrics-addr serves it without one on a listener of its own).
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401} {
		if r := h.do(mustGet(h.url + path)); r.status != want {
			t.Errorf("%s: %d", path, r.status)
		}
	}
	if !strings.Contains(string(h.metrics()), "keyhook_http_requests_total") {
		t.Errorf("metrics lack keyhook_http_requests_total")
	}
	h.store.Close()
	if r := h.do(mustGet(h.url + "/readyz")); r.status != 503 {
		t.Errorf("readyz with the database closed: %d", r.status)
	}
	wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "keyhook-admin", adminSecret), 503, "temporarily_unavailable")
}
