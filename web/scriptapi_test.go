package web_test

import (
	"bytes"
	"net/http"
	"os"
	"testing"
)

// TestScriptAPIDeclarations: GET /admin/v1/scripts/api.d.ts serves
// scripts/keyhook.d.ts without a token (docs/admin-api.md), and the route
// does not take the place of a script's: a script may not be called
// api.d.ts, and the ones named like the route's segments are still found.
func TestScriptAPIDeclarations(t *testing.T) {
	h := newHarness(t)
	want, err := os.ReadFile("../scripts/keyhook.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	r := h.call("", http.MethodGet, "/admin/v1/scripts/api.d.ts", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/typescript; charset=utf-8" {
		t.Fatalf("GET /admin/v1/scripts/api.d.ts: %d %q %.200s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if !bytes.Equal(r.body, want) {
		t.Fatal("the served declarations are not scripts/keyhook.d.ts")
	}
	h.createScript(map[string]any{"name": "api", "type": "introspection",
		"source": "function modifyResponse(r, c) { return true; }"})
	if r := h.admin(http.MethodGet, "/scripts/api", nil); r.status != http.StatusOK {
		t.Fatalf("GET /admin/v1/scripts/api: %d %.200s", r.status, r.body)
	}
}
