package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// versions lists a script's versions through the admin API.
func (h *harness) versions(name string) []map[string]any {
	h.t.Helper()
	r := h.admin(http.MethodGet, "/scripts/"+name+"/versions", nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET versions of %s: %d %s", name, r.status, r.body)
	}
	var out []map[string]any
	if err := json.Unmarshal(r.body, &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func numbers(vs []map[string]any) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v["number"].(float64))
	}
	return out
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestScriptVersions: every write that changes a script's source or
// settings adds a version with its author and source digest, a write that
// changes nothing adds none, and rollback makes an old version live
// again as a new one (docs/scripts.md, "Versions, rollback and rollout").
func TestScriptVersions(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "scripts-admin", "client_secret": "sa-secret", "scope": "keyhook:scripts.write keyhook:scripts.read"})
	delegated := h.mustToken("scripts-admin", "sa-secret", "").AccessToken
	slow := map[string]any{"timeout_ms": 5000} // answers, not deadlines, are tested: hold on a loaded machine
	v1 := introspectionScript("shaper", `response.v = 1; return true;`, slow)
	h.createScript(v1)
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"shaper"}})
	tok := h.mustToken("app", "app-secret", "").AccessToken

	for _, tc := range []struct {
		name, token, method string
		body                map[string]any
		wantNumbers         []int
		wantAuthor          string
	}{
		{"the same PUT adds none", h.adminToken, http.MethodPut, v1, []int{1}, "keyhook-admin"},
		{"a new source adds one", h.adminToken, http.MethodPut, introspectionScript("shaper", `response.v = 2; return true;`, slow), []int{2, 1}, "keyhook-admin"},
		{"a PATCH of a setting adds one", delegated, http.MethodPatch, map[string]any{"level": 7}, []int{3, 2, 1}, "scripts-admin"},
		{"the same PATCH adds none", delegated, http.MethodPatch, map[string]any{"level": 7}, []int{3, 2, 1}, "scripts-admin"},
		{"an empty PATCH adds none", h.adminToken, http.MethodPatch, map[string]any{}, []int{3, 2, 1}, "scripts-admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := h.adminAs(tc.token, tc.method, "/scripts/shaper", tc.body); r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", tc.method, r.status, r.body)
			}
			vs := h.versions("shaper")
			if got := numbers(vs); !slices.Equal(got, tc.wantNumbers) {
				t.Fatalf("versions %v, want %v", got, tc.wantNumbers)
			}
			if vs[0]["author"] != tc.wantAuthor || vs[0]["created_at"] == "" {
				t.Fatalf("newest version %v, want author %s", vs[0], tc.wantAuthor)
			}
			if _, ok := vs[0]["snapshot"]; ok {
				t.Fatalf("the list carries snapshots: %v", vs[0])
			}
			if doc := h.admin(http.MethodGet, "/scripts/shaper", nil); doc.json["version_number"] != float64(tc.wantNumbers[0]) {
				t.Fatalf("version_number %v, want %d", doc.json["version_number"], tc.wantNumbers[0])
			}
		})
	}

	one := h.admin(http.MethodGet, "/scripts/shaper/versions/1", nil)
	snap, _ := one.json["snapshot"].(map[string]any)
	if one.status != http.StatusOK || snap["source"] != v1["source"] || one.str("sha256") != sha256Hex(v1["source"].(string)) {
		t.Fatalf("version 1: %d %s", one.status, one.body)
	}
	for _, k := range []string{"version", "version_number", "tripped_until", "candidate"} {
		if _, ok := snap[k]; ok {
			t.Fatalf("the snapshot holds %s: %v", k, snap)
		}
	}
	if got := h.introspect(tok)["v"]; got != 2.0 {
		t.Fatalf("before rollback v = %v", got)
	}

	t.Run("rollback", func(t *testing.T) {
		r := h.adminAs(delegated, http.MethodPost, "/scripts/shaper/rollback", map[string]any{"version": 1})
		if r.status != http.StatusOK || r.str("source") != v1["source"] || r.json["level"] != 100.0 || r.json["version_number"] != 4.0 {
			t.Fatalf("rollback: %d %s", r.status, r.body)
		}
		four := h.admin(http.MethodGet, "/scripts/shaper/versions/4", nil)
		if !jsonEqual(four.json["snapshot"], one.json["snapshot"]) || four.str("author") != "scripts-admin" {
			t.Fatalf("version 4 %s, want the snapshot of version 1 %s", four.body, one.body)
		}
		if got := h.introspect(tok)["v"]; got != 1.0 {
			t.Fatalf("after rollback v = %v", got)
		}
		if r := h.admin(http.MethodPost, "/scripts/shaper/rollback", map[string]any{"version": 4}); r.status != 200 || r.json["version_number"] != 4.0 {
			t.Fatalf("rollback to the live version: %d %s", r.status, r.body)
		}
	})

	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"rollback to a version that does not exist", http.MethodPost, "/scripts/shaper/rollback", map[string]any{"version": 99}, 404},
		{"rollback to version 0", http.MethodPost, "/scripts/shaper/rollback", map[string]any{"version": 0}, 400},
		{"rollback without a version", http.MethodPost, "/scripts/shaper/rollback", map[string]any{}, 400},
		{"rollback with a string", http.MethodPost, "/scripts/shaper/rollback", map[string]any{"version": "1"}, 400},
		{"rollback of a missing script", http.MethodPost, "/scripts/nope/rollback", map[string]any{"version": 1}, 404},
		{"versions of a missing script", http.MethodGet, "/scripts/nope/versions", nil, 404},
		{"a version that is not a number", http.MethodGet, "/scripts/shaper/versions/x", nil, 404},
		{"a version that does not exist", http.MethodGet, "/scripts/shaper/versions/99", nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := h.admin(tc.method, tc.path, tc.body); r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
		})
	}

	t.Run("a deleted script's versions go with it", func(t *testing.T) {
		if r := h.admin(http.MethodDelete, "/scripts/shaper", nil); r.status != 204 {
			t.Fatalf("delete: %d", r.status)
		}
		h.createScript(introspectionScript("shaper", `response.v = 5; return true;`, nil))
		if got := numbers(h.versions("shaper")); !slices.Equal(got, []int{1}) {
			t.Fatalf("versions after re-creation %v", got)
		}
	})
}

// TestRollbackDelegation: a delegated token cannot roll back to what it
// could not PUT: a version that runs inline.
func TestRollbackDelegation(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "scripts-admin", "client_secret": "sa-secret", "scope": "keyhook:scripts.write"})
	h.createClient(map[string]any{"client_id": "reader", "client_secret": "r-secret", "scope": "keyhook:scripts.read"})
	delegated := h.mustToken("scripts-admin", "sa-secret", "").AccessToken
	reader := h.mustToken("reader", "r-secret", "").AccessToken
	h.createScript(introspectionScript("trusted", `return true;`, map[string]any{"isolation": "inline"}))
	if r := h.admin(http.MethodPatch, "/scripts/trusted", map[string]any{"isolation": "process"}); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, token string
		version     int
		status      int
	}{
		{"a delegated token cannot restore inline", delegated, 1, 403},
		{"a read token cannot roll back", reader, 2, 403},
		{"a delegated token may restore a process version", delegated, 2, 200},
		{"keyhook:admin may restore inline", h.adminToken, 1, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.adminAs(tc.token, http.MethodPost, "/scripts/trusted/rollback", map[string]any{"version": tc.version})
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
		})
	}
	if got := numbers(h.versions("trusted")); !slices.Equal(got, []int{3, 2, 1}) {
		t.Fatalf("versions %v: a refused rollback added one", got)
	}
}

// TestScriptVersionsExportImport: export writes each script's history and
// import restores it, twice without change.
func TestScriptVersionsExportImport(t *testing.T) {
	a := newHarness(t)
	a.createScript(introspectionScript("hist", `response.v = 1; return true;`, nil))
	a.admin(http.MethodPatch, "/scripts/hist", map[string]any{"level": 3})
	a.admin(http.MethodPatch, "/scripts/hist", map[string]any{"source": "function modifyResponse(r) { r.v = 3; return true; }"})
	seed, err := a.eng.Export(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(seed.Scripts) != 1 || len(seed.Scripts[0].Versions) != 3 || seed.Scripts[0].Versions[0].Number != 1 {
		t.Fatalf("exported %+v", seed.Scripts)
	}
	// Through JSON, as a file would carry it.
	raw, _ := json.Marshal(seed)
	b := newHarness(t)
	for round := range 2 {
		var in engine.Seed
		if err := json.Unmarshal(raw, &in); err != nil {
			t.Fatal(err)
		}
		if _, err := b.eng.Import(context.Background(), &in); err != nil {
			t.Fatalf("import %d: %v", round, err)
		}
		got, want := b.versions("hist"), a.versions("hist")
		if !jsonEqual(got, want) {
			t.Fatalf("import %d: versions %v, want %v", round, got, want)
		}
		for n := 1; n <= 3; n++ {
			p := "/scripts/hist/versions/" + string(rune('0'+n))
			if g, w := b.admin(http.MethodGet, p, nil), a.admin(http.MethodGet, p, nil); !jsonEqual(g.json, w.json) {
				t.Fatalf("import %d: version %d %s, want %s", round, n, g.body, w.body)
			}
		}
		if doc := b.admin(http.MethodGet, "/scripts/hist", nil); doc.json["version_number"] != 3.0 {
			t.Fatalf("import %d: version_number %v", round, doc.json["version_number"])
		}
	}
	t.Run("an import that changes the script adds a version by import", func(t *testing.T) {
		var in engine.Seed
		_ = json.Unmarshal(raw, &in)
		in.Scripts[0].Level = nil
		if _, err := b.eng.Import(context.Background(), &in); err != nil {
			t.Fatal(err)
		}
		vs := b.versions("hist")
		if got := numbers(vs); !slices.Equal(got, []int{4, 3, 2, 1}) || vs[0]["author"] != engine.AuthorImport {
			t.Fatalf("versions %v", vs)
		}
	})
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestRollbackOnASecondInstance: a rollback on A runs on B, which shares
// A's PostgreSQL, within 5 s.
func TestRollbackOnASecondInstance(t *testing.T) {
	dsn := pgDSN(t)
	a := newHarness(t, withDSN(dsn))
	b := newHarness(t, withDSN(dsn))
	a.createScript(introspectionScript("shared", `response.v = 1; return true;`, nil))
	a.createClient(map[string]any{"client_id": "scripted", "client_secret": "s", "introspection_scripts": []string{"shared"}})
	a.admin(http.MethodPut, "/scripts/shared", introspectionScript("shared", `response.v = 2; return true;`, map[string]any{"config": map[string]any{"k": "x"}}))
	tok := a.mustToken("scripted", "s", "").AccessToken
	eventually(t, "version 2 on B", func() bool { return b.introspect(tok)["v"] == 2.0 })
	if r := a.admin(http.MethodPost, "/scripts/shared/rollback", map[string]any{"version": 1}); r.status != 200 {
		t.Fatalf("rollback: %d %s", r.status, r.body)
	}
	eventually(t, "version 1 on B", func() bool { return b.introspect(tok)["v"] == 1.0 })
	if doc := b.admin(http.MethodGet, "/scripts/shared", nil); doc.json["version_number"] != 3.0 || len(doc.json["config"].(map[string]any)) != 0 {
		t.Fatalf("on B: %s", doc.body)
	}
}
