package web_test

import (
	"net/http"
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
