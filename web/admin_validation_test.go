package web_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestAdminRefusesOutOfRangeValues sends values that are well-formed JSON
// but out of range to the admin API: each is 400 naming the field, is not
// stored, and the server keeps issuing tokens and answering its admins
// (a lifetime near 2^63 seconds used to overflow time.Duration: tokens
// were dead on arrival and, as a server property, locked the admin API
// out).
func TestAdminRefusesOutOfRangeValues(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "plain", "client_secret": "plain-secret"})
	h.createScript(introspectionScript("kept", `return true;`, nil))
	const tenYears = 315532800
	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
		field              string
	}{
		{"server access lifetime 2^63-1", http.MethodPut, "/config", map[string]any{"access_token_lifetime": int64(9223372036854775807)}, "access_token_lifetime"},
		{"server access lifetime over 10 years", http.MethodPut, "/config", map[string]any{"access_token_lifetime": tenYears + 1}, "access_token_lifetime"},
		{"server refresh lifetime 2^62", http.MethodPut, "/config", map[string]any{"refresh_token_lifetime": int64(1) << 62}, "refresh_token_lifetime"},
		{"server id lifetime 0", http.MethodPut, "/config", map[string]any{"id_token_lifetime": 0}, "id_token_lifetime"},
		{"server code lifetime negative", http.MethodPut, "/config", map[string]any{"authorization_code_lifetime": -5}, "authorization_code_lifetime"},
		{"server lifetime fractional", http.MethodPut, "/config", map[string]any{"access_token_lifetime": 1.5}, "access_token_lifetime"},
		{"server lifetime as a string", http.MethodPut, "/config", map[string]any{"access_token_lifetime": "600"}, "access_token_lifetime"},
		{"client access lifetime 2^63-1", http.MethodPut, "/clients/plain", map[string]any{"client_secret": "plain-secret", "access_token_lifetime": int64(9223372036854775807)}, "access_token_lifetime"},
		{"client refresh lifetime over 10 years", http.MethodPut, "/clients/plain", map[string]any{"client_secret": "plain-secret", "refresh_token_lifetime": tenYears + 1}, "refresh_token_lifetime"},
		{"client id lifetime negative", http.MethodPut, "/clients/plain", map[string]any{"client_secret": "plain-secret", "id_token_lifetime": -1}, "id_token_lifetime"},
		{"new client lifetime 2^62", http.MethodPost, "/clients", map[string]any{"client_id": "eternal", "access_token_lifetime": int64(1) << 62}, "access_token_lifetime"},
		{"script level over int32", http.MethodPut, "/scripts/kept", map[string]any{"type": "introspection", "source": "function modifyResponse() { return true }", "level": int64(1) << 31}, "level"},
		{"script level under int32", http.MethodPut, "/scripts/kept", map[string]any{"type": "introspection", "source": "function modifyResponse() { return true }", "level": -(int64(1) << 31) - 1}, "level"},
		{"script timeout 0", http.MethodPut, "/scripts/kept", map[string]any{"type": "introspection", "source": "function modifyResponse() { return true }", "timeout_ms": 0}, "timeout_ms"},
		{"script memory over the maximum", http.MethodPut, "/scripts/kept", map[string]any{"type": "introspection", "source": "function modifyResponse() { return true }", "memory_mb": 100000}, "memory_mb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(tc.method, tc.path, tc.body)
			if r.status != http.StatusBadRequest || !strings.Contains(r.str("error_description"), tc.field) {
				t.Fatalf("%s %s: %d %s, want 400 naming %s", tc.method, tc.path, r.status, r.body, tc.field)
			}
			// Nothing was stored: the server still issues live tokens to
			// clients and to its admin, with the lifetimes it had.
			tr := h.mustToken("plain", "plain-secret", "")
			if tr.ExpiresIn != 300 {
				t.Fatalf("expires_in = %d after a refused change, want the default 300", tr.ExpiresIn)
			}
			if in := h.introspect(tr.AccessToken); in["active"] != true {
				t.Fatalf("a new token is not active after a refused change: %v", in)
			}
			admin := h.mustToken("keyhook-admin", adminSecret, "").AccessToken
			if r := h.adminAs(admin, http.MethodGet, "/config", nil); r.status != http.StatusOK {
				t.Fatalf("admin API after a refused change: %d %s", r.status, r.body)
			}
			if r := h.admin(http.MethodGet, "/scripts/kept", nil); r.json["level"] != float64(100) || r.json["timeout_ms"] != float64(100) {
				t.Fatalf("script changed by a refused update: %s", r.body)
			}
		})
	}
	t.Run("ten years is accepted", func(t *testing.T) {
		if r := h.admin(http.MethodPut, "/clients/plain", map[string]any{"client_secret": "plain-secret", "access_token_lifetime": tenYears}); r.status != http.StatusOK {
			t.Fatalf("PUT client with a 10-year lifetime: %d %s", r.status, r.body)
		}
		if tr := h.mustToken("plain", "plain-secret", ""); tr.ExpiresIn != tenYears {
			t.Fatalf("expires_in = %d, want %d", tr.ExpiresIn, tenYears)
		}
	})
}

// TestAdminRefusesMalformedFields sends malformed names, identifiers,
// URLs and script limits: each is 400 naming the field and nothing is
// stored. Identifiers must stay usable in the admin API's own paths
// (/clients/{client_id}, /users/{username}), so no /, ?, #, % or space.
func TestAdminRefusesMalformedFields(t *testing.T) {
	h := newHarness(t)
	src := "function modifyResponse() { return true }"
	h.createScript(introspectionScript("kept", `return true;`, nil))
	script := func(extra map[string]any) map[string]any {
		doc := map[string]any{"name": "new-script", "type": "introspection", "source": src}
		for k, v := range extra {
			doc[k] = v
		}
		return doc
	}
	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
		field, absent      string
	}{
		{"timeout_ms 0", http.MethodPost, "/scripts", script(map[string]any{"timeout_ms": 0}), "timeout_ms", "/scripts/new-script"},
		{"timeout_ms negative", http.MethodPost, "/scripts", script(map[string]any{"timeout_ms": -1}), "timeout_ms", "/scripts/new-script"},
		{"timeout_ms over 5000", http.MethodPost, "/scripts", script(map[string]any{"timeout_ms": 5001}), "timeout_ms", "/scripts/new-script"},
		{"timeout_ms fractional", http.MethodPost, "/scripts", script(map[string]any{"timeout_ms": 1.5}), "timeout_ms", "/scripts/new-script"},
		{"timeout_ms replacing", http.MethodPut, "/scripts/kept", map[string]any{"type": "introspection", "source": src, "timeout_ms": -5}, "timeout_ms", ""},
		{"level fractional", http.MethodPost, "/scripts", script(map[string]any{"level": 2.5}), "level", "/scripts/new-script"},
		{"record_inputs negative", http.MethodPost, "/scripts", script(map[string]any{"record_inputs": -1}), "record_inputs", "/scripts/new-script"},
		{"record_inputs over 1000", http.MethodPost, "/scripts", script(map[string]any{"record_inputs": 1001}), "record_inputs", "/scripts/new-script"},
		{"script name with capitals", http.MethodPost, "/scripts", script(map[string]any{"name": "New-Script"}), "name", "/scripts/New-Script"},
		{"script name of 65 characters", http.MethodPost, "/scripts", script(map[string]any{"name": strings.Repeat("a", 65)}), "name", "/scripts/" + strings.Repeat("a", 65)},
		{"script name with a dot", http.MethodPost, "/scripts", script(map[string]any{"name": "a.b"}), "name", "/scripts/a.b"},
		{"empty script name", http.MethodPost, "/scripts", script(map[string]any{"name": ""}), "name", ""},
		{"client_id with a slash", http.MethodPost, "/clients", map[string]any{"client_id": "a/b"}, "client_id", ""},
		{"client_id with a space", http.MethodPost, "/clients", map[string]any{"client_id": "a b"}, "client_id", "/clients/a%20b"},
		{"client_id with a question mark", http.MethodPost, "/clients", map[string]any{"client_id": "a?b"}, "client_id", ""},
		{"client_id with a percent sign", http.MethodPost, "/clients", map[string]any{"client_id": "a%41"}, "client_id", "/clients/a%2541"},
		{"client_id of 256 characters", http.MethodPost, "/clients", map[string]any{"client_id": strings.Repeat("c", 256)}, "client_id", "/clients/" + strings.Repeat("c", 256)},
		{"username with a slash", http.MethodPost, "/users", map[string]any{"username": "a/b", "password": "pw-pw-pw-pw"}, "username", ""},
		{"username with a hash", http.MethodPost, "/users", map[string]any{"username": "a#b", "password": "pw-pw-pw-pw"}, "username", ""},
		{"username with a space", http.MethodPost, "/users", map[string]any{"username": "a b", "password": "pw-pw-pw-pw"}, "username", "/users/a%20b"},
		{"redirect URI not a URL", http.MethodPost, "/clients", map[string]any{"client_id": "r1", "grant_types": []string{"authorization_code"}, "redirect_uris": []string{"not a url"}}, "redirect_uris", "/clients/r1"},
		{"redirect URI relative", http.MethodPost, "/clients", map[string]any{"client_id": "r2", "grant_types": []string{"authorization_code"}, "redirect_uris": []string{"/callback"}}, "redirect_uris", "/clients/r2"},
		{"redirect URI that does not parse", http.MethodPost, "/clients", map[string]any{"client_id": "r3", "grant_types": []string{"authorization_code"}, "redirect_uris": []string{"http://[::1/cb"}}, "redirect_uris", "/clients/r3"},
		{"jwks_uri relative", http.MethodPost, "/clients", map[string]any{"client_id": "j1", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "/jwks"}, "jwks_uri", "/clients/j1"},
		{"jwks_uri without host", http.MethodPost, "/clients", map[string]any{"client_id": "j2", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://"}, "jwks_uri", "/clients/j2"},
		{"jwks_uri that does not parse", http.MethodPost, "/clients", map[string]any{"client_id": "j3", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://[::1/jwks"}, "jwks_uri", "/clients/j3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(tc.method, tc.path, tc.body)
			if r.status != http.StatusBadRequest || !strings.HasPrefix(r.str("error_description"), tc.field) {
				t.Fatalf("%s %s: %d %s, want 400 naming %s", tc.method, tc.path, r.status, r.body, tc.field)
			}
			if tc.absent != "" {
				if r := h.admin(http.MethodGet, tc.absent, nil); r.status != http.StatusNotFound {
					t.Fatalf("stored anyway: GET %s: %d %s", tc.absent, r.status, r.body)
				}
			}
			if r := h.admin(http.MethodGet, "/scripts/kept", nil); r.json["timeout_ms"] != float64(100) {
				t.Fatalf("script changed by a refused update: %s", r.body)
			}
		})
	}
	for _, id := range []string{"ok.client_1~x", "urn:example:client", "svc@example.com", "a+b"} {
		t.Run("client_id "+id+" is accepted", func(t *testing.T) {
			if r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": id}); r.status != http.StatusCreated {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if r := h.admin(http.MethodGet, "/clients/"+id, nil); r.status != http.StatusOK {
				t.Fatalf("GET /clients/%s: %d %s", id, r.status, r.body)
			}
		})
	}
	for _, name := range []string{"alice@example.com", "bob.smith", "carol_1-2+x"} {
		t.Run("username "+name+" is accepted", func(t *testing.T) {
			if r := h.admin(http.MethodPost, "/users", map[string]any{"username": name, "password": "pw-pw-pw-pw"}); r.status != http.StatusCreated {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if r := h.admin(http.MethodGet, "/users/"+name, nil); r.status != http.StatusOK {
				t.Fatalf("GET /users/%s: %d %s", name, r.status, r.body)
			}
		})
	}
}
