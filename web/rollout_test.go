package web_test

import (
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestCandidateValidation: a candidate is checked like a source, set and
// removed with PUT and PATCH, and adds no version.
func TestCandidateValidation(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("s", `return true;`, nil))
	good := map[string]any{"source": "function modifyResponse(r) { return true }", "rollout": "canary", "percent": 10}
	for _, tc := range []struct {
		name      string
		candidate any
		status    int
		field     string
	}{
		{"a syntax error names candidate.source with its line and column", map[string]any{"source": "function (", "rollout": "shadow"}, 400, "candidate.source: line 1, column"},
		{"no source", map[string]any{"rollout": "shadow"}, 400, "candidate.source: is required"},
		{"an unknown rollout", map[string]any{"source": "function f() {}", "rollout": "blue-green"}, 400, "candidate.rollout:"},
		{"a percent over 100", map[string]any{"source": "function f() {}", "rollout": "canary", "percent": 101}, 400, "candidate.percent:"},
		{"a negative percent", map[string]any{"source": "function f() {}", "rollout": "canary", "percent": -1}, 400, "candidate.percent:"},
		{"a percent that is not a number", map[string]any{"source": "function f() {}", "rollout": "canary", "percent": "5"}, 400, "candidate.percent:"},
		{"a good one", good, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(http.MethodPatch, "/scripts/s", map[string]any{"candidate": tc.candidate})
			if r.status != tc.status || !strings.HasPrefix(r.str("error_description"), tc.field) {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tc.status, tc.field)
			}
		})
	}
	doc := h.admin(http.MethodGet, "/scripts/s", nil)
	if !jsonEqual(doc.json["candidate"], good) {
		t.Fatalf("candidate %v, want %v", doc.json["candidate"], good)
	}
	if r := h.admin(http.MethodPatch, "/scripts/s", map[string]any{"candidate": map[string]any{"percent": 30}}); r.status != 200 ||
		r.json["candidate"].(map[string]any)["percent"] != 30.0 {
		t.Fatalf("patching the percent: %d %s", r.status, r.body)
	}
	if r := h.admin(http.MethodPatch, "/scripts/s", map[string]any{"candidate": nil}); r.status != 200 || r.json["candidate"] != nil {
		t.Fatalf("removing it: %d %s", r.status, r.body)
	}
	if got := numbers(h.versions("s")); !slices.Equal(got, []int{1}) {
		t.Fatalf("versions %v: a candidate added one", got)
	}
	if r := h.admin(http.MethodPost, "/scripts/s/promote", nil); r.status != http.StatusConflict {
		t.Fatalf("promote without a candidate: %d %s", r.status, r.body)
	}
}

// TestShadowCandidate: a shadow candidate runs beside the live version;
// its differences are counted and the live answers stand.
func TestShadowCandidate(t *testing.T) {
	logs := &lockedBuffer{}
	h := newHarness(t, withLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	// Generous timeouts: the test is about answers, not deadlines, and
	// must hold on a loaded machine.
	h.createScript(introspectionScript("differs", `response.v = 1; return true;`,
		map[string]any{"timeout_ms": 5000, "candidate": map[string]any{"rollout": "shadow", "source": "function modifyResponse(r) { r.v = 2; r.extra = true; return true }"}}))
	h.createScript(introspectionScript("agrees", `response.w = 1; return true;`,
		map[string]any{"timeout_ms": 5000, "candidate": map[string]any{"rollout": "shadow", "source": "function modifyResponse(r) { r['w'] = 2 - 1; return true }"}}))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"differs", "agrees"}})
	tok := h.mustToken("app", "app-secret", "").AccessToken
	for range 3 {
		if in := h.introspect(tok); in["v"] != 1.0 || in["w"] != 1.0 || in["extra"] != nil {
			t.Fatalf("live answer changed: %v", in)
		}
	}
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`keyhook_script_shadow_differences_total{script="differs"}`, 3},
		{`keyhook_script_shadow_differences_total{script="agrees"}`, 0},
		{`keyhook_script_version_calls_total{result="ok",script="differs",version="candidate"}`, 3},
		{`keyhook_script_version_calls_total{result="ok",script="differs",version="1"}`, 3},
	} {
		if got, _ := h.metric(tc.series); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.series, got, tc.want)
		}
	}
	// Samples are rate-limited per script: at least one, with the
	// request id, and none for the candidate that agrees.
	var samples []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "differs from the live version") {
			samples = append(samples, line)
		}
	}
	if len(samples) == 0 || len(samples) > 3 || !strings.Contains(samples[0], `"request_id"`) ||
		!strings.Contains(samples[0], `"script":"differs"`) || strings.Contains(logs.String(), `"script":"agrees","function"`) {
		t.Fatalf("shadow samples %q", samples)
	}
}

// TestCanaryCandidate: a canary candidate answers for about its percent
// of tokens, the same ones every time; promote makes it live.
func TestCanaryCandidate(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("canary", `response.served = "live"; return true;`,
		map[string]any{"timeout_ms": 5000, "candidate": map[string]any{"rollout": "canary", "percent": 50, "source": "function modifyResponse(r) { r.served = 'candidate'; return true }"}}))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"canary"}})
	candidate := 0
	for i := range 200 {
		tok := h.mustToken("app", "app-secret", "").AccessToken
		first, second := h.introspect(tok)["served"], h.introspect(tok)["served"]
		if first != second {
			t.Fatalf("token %d saw %v then %v", i, first, second)
		}
		if first == "candidate" {
			candidate++
		}
	}
	if candidate < 60 || candidate > 140 {
		t.Fatalf("the candidate served %d of 200 tokens at 50%%", candidate)
	}

	r := h.admin(http.MethodPost, "/scripts/canary/promote", nil)
	if r.status != 200 || r.json["candidate"] != nil || r.json["version_number"] != 2.0 ||
		r.str("source") != "function modifyResponse(r) { r.served = 'candidate'; return true }" {
		t.Fatalf("promote: %d %s", r.status, r.body)
	}
	if vs := h.versions("canary"); vs[0]["number"] != 2.0 || vs[0]["author"] != "keyhook-admin" {
		t.Fatalf("versions after promote %v", vs)
	}
	for range 5 {
		if got := h.introspect(h.mustToken("app", "app-secret", "").AccessToken)["served"]; got != "candidate" {
			t.Fatalf("after promote served %v", got)
		}
	}
}

// TestCandidateDelegation: a delegated token cannot reach through a
// candidate or promote what it could not PUT: a candidate runs with its
// script's settings, inline ones included.
func TestCandidateDelegation(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "scripts-admin", "client_secret": "sa-secret", "scope": "keyhook:scripts.write"})
	delegated := h.mustToken("scripts-admin", "sa-secret", "").AccessToken
	cand := map[string]any{"rollout": "canary", "percent": 100, "source": "function modifyResponse(r) { r.x = 1; return true }"}
	h.createScript(introspectionScript("trusted", `return true;`, map[string]any{"isolation": "inline"}))
	h.createScript(introspectionScript("trusted-cand", `return true;`, map[string]any{"isolation": "inline", "candidate": cand}))
	h.createScript(introspectionScript("plain", `return true;`, nil))
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
	}{
		{"a candidate on an inline script", http.MethodPatch, "/scripts/trusted", map[string]any{"candidate": cand}, 403},
		{"a PUT with a candidate and inline", http.MethodPut, "/scripts/plain", introspectionScript("plain", `return true;`, map[string]any{"isolation": "inline", "candidate": cand}), 403},
		{"promote on an inline script", http.MethodPost, "/scripts/trusted-cand/promote", nil, 403},
		{"remove the candidate of an inline script", http.MethodPatch, "/scripts/trusted-cand", map[string]any{"candidate": nil}, 403},
		{"a candidate on a process script", http.MethodPatch, "/scripts/plain", map[string]any{"candidate": cand}, 200},
		{"promote it", http.MethodPost, "/scripts/plain/promote", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.adminAs(delegated, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
		})
	}
	if r := h.admin(http.MethodGet, "/scripts/trusted-cand", nil); r.json["candidate"] == nil || r.str("source") != "function modifyResponse(response, context) {\nreturn true;\n}" {
		t.Fatalf("the trusted script changed: %s", r.body)
	}
}

// TestCanaryAtIssuance: an update_token canary picks its version by the
// token being issued, opaque or JWT, and introspection shows the claims
// of the version that served.
func TestCanaryAtIssuance(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name    string
		percent int
		jwt     bool
		want    string
	}{
		{"opaque at 100%", 100, false, "candidate"},
		{"opaque at 0%", 0, false, "live"},
		{"JWT at 100%", 100, true, "candidate"},
		{"JWT at 0%", 0, true, "live"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.NewReplacer(" ", "-", "%", "").Replace(strings.ToLower(tc.name))
			h.createScript(map[string]any{"name": name, "type": "update_token", "timeout_ms": 5000,
				"source": "function modifyAccessToken(t) { t.claims.served = 'live'; return true }",
				"candidate": map[string]any{"rollout": "canary", "percent": tc.percent,
					"source": "function modifyAccessToken(t) { t.claims.served = 'candidate'; return true }"}})
			h.createClient(map[string]any{"client_id": name, "client_secret": "secret", "access_token_as_jwt": tc.jwt,
				"update_token_scripts": []string{name}})
			if got := h.introspect(h.mustToken(name, "secret", "").AccessToken)["served"]; got != tc.want {
				t.Fatalf("served %v, want %s", got, tc.want)
			}
		})
	}
}
