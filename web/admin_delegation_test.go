package web_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestDelegatedAdminCannotEscalate gives a client the clients.write (and
// clients.read) scope and tries, with its token, every way to turn that
// into more: giving a client keyhook:* scopes, taking over a client that
// holds them (replace, rotate its secret, delete), and changing which
// scripts run for a client. Each is 403 insufficient_scope and changes
// nothing; ordinary client administration still works.
func TestDelegatedAdminCannotEscalate(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("watch", `return true;`, nil))
	h.createClient(map[string]any{"client_id": "delegate", "client_secret": "delegate-secret",
		"scope": "keyhook:clients.write keyhook:clients.read"})
	h.createClient(map[string]any{"client_id": "ordinary", "client_secret": "ordinary-secret", "scope": "read"})
	tok := h.mustToken("delegate", "delegate-secret", "").AccessToken

	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
	}{
		{"create a client with keyhook:admin", http.MethodPost, "/clients", map[string]any{"client_id": "evil", "scope": "keyhook:admin"}},
		{"create a client with another area", http.MethodPost, "/clients", map[string]any{"client_id": "evil", "scope": "read keyhook:scripts.write"}},
		{"give an existing client keyhook:admin", http.MethodPut, "/clients/ordinary", map[string]any{"scope": "read keyhook:admin"}},
		{"give itself keyhook:admin", http.MethodPut, "/clients/delegate", map[string]any{"scope": "keyhook:clients.write keyhook:admin"}},
		{"replace the bootstrap admin", http.MethodPut, "/clients/keyhook-admin", map[string]any{"client_secret": "taken-over-secret", "scope": "keyhook:admin"}},
		{"rotate the bootstrap admin's secret", http.MethodPost, "/clients/keyhook-admin/secret", nil},
		{"delete the bootstrap admin", http.MethodDelete, "/clients/keyhook-admin", nil},
		{"bind a script on create", http.MethodPost, "/clients", map[string]any{"client_id": "bound", "introspection_scripts": []string{"watch"}}},
		{"bind a script to an existing client", http.MethodPut, "/clients/ordinary", map[string]any{"scope": "read", "introspection_scripts": []string{"watch"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.adminAs(tok, tc.method, tc.path, tc.body)
			if r.status != http.StatusForbidden || r.str("error") != "insufficient_scope" {
				t.Fatalf("%s %s: %d %s, want 403 insufficient_scope", tc.method, tc.path, r.status, r.body)
			}
			// Nothing changed: the admin still gets in with its secret,
			// no evil client exists, ordinary keeps its scope and scripts.
			h.mustToken("keyhook-admin", adminSecret, "")
			if r := h.admin(http.MethodGet, "/clients/evil", nil); r.status != http.StatusNotFound {
				t.Fatalf("client evil: %d %s", r.status, r.body)
			}
			if r := h.admin(http.MethodGet, "/clients/ordinary", nil); r.str("scope") != "read" || len(r.json["introspection_scripts"].([]any)) != 0 {
				t.Fatalf("ordinary changed: %s", r.body)
			}
		})
	}
	t.Run("ordinary administration works", func(t *testing.T) {
		if r := h.adminAs(tok, http.MethodPost, "/clients", map[string]any{"client_id": "fine", "scope": "read write"}); r.status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		if r := h.adminAs(tok, http.MethodPut, "/clients/ordinary", map[string]any{"scope": "read write"}); r.status != http.StatusOK {
			t.Fatalf("replace: %d %s", r.status, r.body)
		}
		if r := h.adminAs(tok, http.MethodPost, "/clients/fine/secret", nil); r.status != http.StatusOK {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		if r := h.adminAs(tok, http.MethodDelete, "/clients/fine", nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
	})
	t.Run("keyhook:admin may do all of it", func(t *testing.T) {
		if r := h.admin(http.MethodPut, "/clients/ordinary", map[string]any{"scope": "read keyhook:users.read", "introspection_scripts": []string{"watch"}}); r.status != http.StatusOK {
			t.Fatalf("admin replace: %d %s", r.status, r.body)
		}
	})
}

// TestDelegatedAdminsCannotChangeWhatRuns covers the other ways a
// delegated token could change which code runs, or where: turning on a
// client's introspection scripts at JWT creation (like a binding), and a
// script in the server's own process (isolation inline, for trusted
// scripts only). keyhook:admin may do both; a delegated token may keep
// them as they are.
func TestDelegatedAdminsCannotChangeWhatRuns(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("inline-trusted", `return true;`, map[string]any{"isolation": "inline"}))
	h.createScript(introspectionScript("fetcher", `return true;`, map[string]any{"allowed_hosts": []string{"api.example.com"}}))
	h.createClient(map[string]any{"client_id": "clients-admin", "client_secret": "clients-admin-secret", "scope": "keyhook:clients.write"})
	h.createClient(map[string]any{"client_id": "scripts-admin", "client_secret": "scripts-admin-secret", "scope": "keyhook:scripts.write"})
	h.createClient(map[string]any{"client_id": "jwt", "client_secret": "jwt-secret", "access_token_as_jwt": true})
	h.createClient(map[string]any{"client_id": "jwt-runs", "client_secret": "jwt-runs-secret", "access_token_as_jwt": true,
		"run_introspection_script_before_jwt_creation": true})
	clients := h.mustToken("clients-admin", "clients-admin-secret", "").AccessToken
	scripts := h.mustToken("scripts-admin", "scripts-admin-secret", "").AccessToken
	src := "function modifyResponse(r) { return true }"
	for _, tc := range []struct {
		name, token, method, path string
		body                      map[string]any
		status                    int
	}{
		{"create a client that runs scripts at JWT creation", clients, http.MethodPost, "/clients",
			map[string]any{"client_id": "new-jwt", "access_token_as_jwt": true, "run_introspection_script_before_jwt_creation": true}, 403},
		{"with Janssen's name", clients, http.MethodPost, "/clients",
			map[string]any{"client_id": "new-jwt", "access_token_as_jwt": true, "run_introspection_script_before_access_token_as_jwt_creation_and_include_claims": true}, 403},
		{"turn it on for a client", clients, http.MethodPut, "/clients/jwt",
			map[string]any{"access_token_as_jwt": true, "run_introspection_script_before_jwt_creation": true}, 403},
		{"turn it off for a client", clients, http.MethodPut, "/clients/jwt-runs",
			map[string]any{"access_token_as_jwt": true}, 403},
		{"turn JWTs off where it is set", clients, http.MethodPut, "/clients/jwt-runs",
			map[string]any{"access_token_as_jwt": false, "run_introspection_script_before_jwt_creation": true}, 403},
		{"keep it on", clients, http.MethodPut, "/clients/jwt-runs",
			map[string]any{"access_token_as_jwt": true, "run_introspection_script_before_jwt_creation": true, "client_name": "renamed"}, 200},
		{"keep it off", clients, http.MethodPut, "/clients/jwt",
			map[string]any{"access_token_as_jwt": true, "client_name": "renamed"}, 200},
		{"the flag without JWTs runs nothing", clients, http.MethodPost, "/clients",
			map[string]any{"client_id": "opaque-flag", "run_introspection_script_before_jwt_creation": true}, 201},
		{"turn JWTs on where the flag is set", clients, http.MethodPut, "/clients/opaque-flag",
			map[string]any{"access_token_as_jwt": true, "run_introspection_script_before_jwt_creation": true}, 403},
		{"create an inline script", scripts, http.MethodPost, "/scripts",
			map[string]any{"name": "inline-new", "type": "introspection", "source": src, "isolation": "inline"}, 403},
		{"make a script inline", scripts, http.MethodPut, "/scripts/inline-trusted-2",
			map[string]any{"type": "introspection", "source": src, "isolation": "inline"}, 403},
		{"rewrite a trusted inline script", scripts, http.MethodPut, "/scripts/inline-trusted",
			map[string]any{"type": "introspection", "source": src, "isolation": "inline"}, 403},
		{"rewrite it to run in a process", scripts, http.MethodPut, "/scripts/inline-trusted-2",
			map[string]any{"type": "introspection", "source": src, "isolation": "process"}, 200},
		// A dry run of unsaved code on an inline script would run it in
		// the server's process.
		{"try unsaved code on an inline script", scripts, http.MethodPost, "/scripts/inline-trusted/test",
			map[string]any{"source": "function modifyResponse(r) { return true; }", "args": []any{map[string]any{}}}, 403},
		{"dry-run an inline script as stored", scripts, http.MethodPost, "/scripts/inline-trusted/test",
			map[string]any{"args": []any{map[string]any{}}}, 200},
		{"keyhook:admin may try unsaved code inline", h.adminToken, http.MethodPost, "/scripts/inline-trusted/test",
			map[string]any{"source": "function modifyResponse(r) { return true; }", "args": []any{map[string]any{}}}, 200},
		{"a process script is fine", scripts, http.MethodPost, "/scripts",
			map[string]any{"name": "process-new", "type": "introspection", "source": src, "isolation": "process"}, 201},
		// allowed_hosts lets a script send what it sees out (context.fetch).
		{"create a script that may fetch", scripts, http.MethodPost, "/scripts",
			map[string]any{"name": "fetch-new", "type": "introspection", "source": src, "allowed_hosts": []string{"api.example.com"}}, 403},
		{"let a script fetch from another host", scripts, http.MethodPut, "/scripts/fetcher",
			map[string]any{"type": "introspection", "source": src, "allowed_hosts": []string{"evil.example.com"}}, 403},
		{"drop a script's hosts", scripts, http.MethodPut, "/scripts/fetcher",
			map[string]any{"type": "introspection", "source": src}, 403},
		{"keep a script's hosts", scripts, http.MethodPut, "/scripts/fetcher",
			map[string]any{"type": "introspection", "source": src, "allowed_hosts": []string{"api.example.com"}}, 200},
		{"keyhook:admin may let a script fetch", h.adminToken, http.MethodPut, "/scripts/fetcher",
			map[string]any{"type": "introspection", "source": src, "allowed_hosts": []string{"evil.example.com"}}, 200},
		{"keyhook:admin may turn it on", h.adminToken, http.MethodPut, "/clients/jwt",
			map[string]any{"access_token_as_jwt": true, "run_introspection_script_before_jwt_creation": true}, 200},
		{"keyhook:admin may write inline scripts", h.adminToken, http.MethodPost, "/scripts",
			map[string]any{"name": "inline-admin", "type": "introspection", "source": src, "isolation": "inline"}, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "make a script inline" {
				h.createScript(introspectionScript("inline-trusted-2", `return true;`, nil))
			}
			r := h.adminAs(tc.token, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
			}
			if tc.status == 403 && r.str("error") != "insufficient_scope" {
				t.Fatalf("error %s", r.body)
			}
		})
	}
	if r := h.admin(http.MethodGet, "/scripts/inline-trusted", nil); r.str("source") != "function modifyResponse(response, context) {\nreturn true;\n}" {
		t.Fatalf("the trusted script changed: %s", r.body)
	}
}

// TestDelegatedAdminsInTwoSteps combines delegated tokens: whatever a
// clients.write, users.write, scripts.write and config.write admin do
// together, the tokens they can get carry no keyhook:* scope, and the
// admin API refuses them.
func TestDelegatedAdminsInTwoSteps(t *testing.T) {
	h := newHarness(t)
	tok := map[string]string{}
	for _, area := range []string{"clients", "users", "scripts", "config"} {
		id := area + "-admin"
		h.createClient(map[string]any{"client_id": id, "client_secret": id + "-secret", "scope": "keyhook:" + area + ".write"})
		tok[area] = h.mustToken(id, id+"-secret", "").AccessToken
	}
	step := func(area, method, path string, body any, want int) {
		t.Helper()
		if r := h.adminAs(tok[area], method, path, body); r.status != want {
			t.Fatalf("%s: %s %s: %d %s, want %d", area, method, path, r.status, r.body, want)
		}
	}
	// clients.write: a password client; users.write: a user it knows the
	// password of; scripts.write: a script that adds keyhook:admin
	// wherever it runs; config.write: make it run for every token.
	step("clients", http.MethodPost, "/clients", map[string]any{"client_id": "pw", "client_secret": "pw-secret",
		"grant_types": []string{"password", "client_credentials"}, "scope": "api"}, 201)
	step("users", http.MethodPost, "/users", map[string]any{"username": "mallory", "password": "mallory-pw",
		"claims": map[string]any{"scope": "keyhook:admin", "keyhook:admin": true}}, 201)
	step("scripts", http.MethodPost, "/scripts", introspectionScript("widen",
		`response.scope = "keyhook:admin " + response.scope; response["keyhook:admin"] = true; return true;`,
		map[string]any{"config": map[string]any{"scope": "keyhook:admin"}}), 201)
	step("config", http.MethodPut, "/config", map[string]any{"introspection_script_backward_compatibility": true}, 200)

	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"password grant", url.Values{"grant_type": {"password"}, "username": {"mallory"}, "password": {"mallory-pw"}}},
		{"password grant asking for keyhook:admin", url.Values{"grant_type": {"password"}, "username": {"mallory"}, "password": {"mallory-pw"}, "scope": {"api keyhook:admin"}}},
		{"client credentials", url.Values{"grant_type": {"client_credentials"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.form("/oauth2/token", tc.form, "pw", "pw-secret")
			if tc.form.Get("scope") != "" {
				wantError(t, r, http.StatusBadRequest, "invalid_scope")
				return
			}
			tr := h.mustDecodeToken(r)
			if strings.Contains(tr.Scope, "keyhook:") {
				t.Fatalf("token scope %q", tr.Scope)
			}
			if in := h.introspect(tr.AccessToken); strings.Contains(in["scope"].(string), "keyhook:") {
				t.Fatalf("introspection scope %v", in["scope"])
			}
			for _, path := range []string{"/clients", "/config", "/users", "/scripts"} {
				wantError(t, h.adminAs(tr.AccessToken, http.MethodGet, path, nil), http.StatusForbidden, "insufficient_scope")
			}
		})
	}
}
