package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// introspectRecorded introspects token as the bootstrap admin with a
// request id, a parameter and header a script may read, and credentials
// it may not (docs/scripts.md, "context").
func (h *harness) introspectRecorded(token, requestID string) map[string]any {
	h.t.Helper()
	vals := url.Values{"token": {token}, "tenant": {"acme"}, "api_secret": {"leak-param-secret"}}
	req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/introspect", strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-Id", requestID)
	req.Header.Set("X-Tenant", "acme-header")
	req.Header.Set("X-Api-Key", "leak-header-key")
	req.Header.Set("Cookie", "session=leak-cookie")
	req.SetBasicAuth(engine.BootstrapAdminID, adminSecret)
	r := h.do(req)
	if r.status != http.StatusOK {
		h.t.Fatalf("introspect: %d %s", r.status, r.body)
	}
	return r.json
}

// replayAnswer is the answer of POST /admin/v1/scripts/{name}/replay.
type replayAnswer struct {
	Inputs []struct {
		RequestID  string `json:"request_id"`
		RecordedAt string `json:"recorded_at"`
		Function   string `json:"function"`
		Phase      string `json:"phase"`
		ClientID   string `json:"client_id"`
		Live       struct {
			Result    any     `json:"result"`
			ArgsAfter []any   `json:"args_after"`
			Error     *string `json:"error"`
		} `json:"live"`
		Replayed struct {
			Result    any     `json:"result"`
			ArgsAfter []any   `json:"args_after"`
			Error     *string `json:"error"`
		} `json:"replayed"`
		Same bool `json:"same"`
	} `json:"inputs"`
	Totals struct {
		Inputs, Same, Different, Errors int
	} `json:"totals"`
}

// TestScriptReplay: a script with record_inputs keeps the inputs of its
// live version's calls, and replay runs unsaved source or a version on
// them and answers where they differ, touching no token; the recording
// holds no credential (docs/scripts.md, "Replay").
func TestScriptReplay(t *testing.T) {
	h := newHarness(t)
	slow := map[string]any{"timeout_ms": 5000} // answers, not deadlines, are tested: hold on a loaded machine
	v1 := introspectionScript("shaper", `response.v = 1; return true;`, slow)
	h.createScript(v1)
	liveBody := `response.v = 2; response.tenant = context.request.params.tenant + "/" + context.request.headers["x-tenant"]; return true;`
	v2 := introspectionScript("shaper", liveBody, map[string]any{"timeout_ms": 5000, "record_inputs": 5})
	if r := h.admin(http.MethodPut, "/scripts/shaper", v2); r.status != http.StatusOK || r.json["record_inputs"] != 5.0 {
		t.Fatalf("PUT with record_inputs: %d %s", r.status, r.body)
	}
	h.createScript(introspectionScript("quiet", `return true;`, slow))
	h.createScript(introspectionScript("trusted", `return true;`, map[string]any{"timeout_ms": 5000, "record_inputs": 1, "isolation": "inline"}))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"shaper"}})
	tok := h.mustToken("app", "app-secret", "").AccessToken
	for i := range 3 {
		if got := h.introspectRecorded(tok, fmt.Sprintf("req-%d", i)); got["tenant"] != "acme/acme-header" {
			t.Fatalf("live answer %v", got)
		}
	}

	h.createClient(map[string]any{"client_id": "scripts-writer", "client_secret": "sw-secret", "scope": "keyhook:scripts.write"})
	h.createClient(map[string]any{"client_id": "scripts-reader", "client_secret": "sr-secret", "scope": "keyhook:scripts.read"})
	h.createClient(map[string]any{"client_id": "clients-reader", "client_secret": "cr-secret", "scope": "keyhook:clients.read"})
	writer := h.mustToken("scripts-writer", "sw-secret", "").AccessToken
	reader := h.mustToken("scripts-reader", "sr-secret", "").AccessToken
	clientsReader := h.mustToken("clients-reader", "cr-secret", "").AccessToken
	fn := func(body string) string { return "function modifyResponse(response, context) {\n" + body + "\n}" }
	upper := strings.Replace(liveBody, `"/"`, `"/" + "X"`, 1)

	for _, tc := range []struct {
		name       string
		token      string
		script     string
		body       map[string]any
		wantStatus int
		wantTotals [4]int // inputs, same, different, errors
		check      func(t *testing.T, a *replayAnswer)
	}{
		{name: "identical source: all same", body: map[string]any{"source": v2["source"]},
			wantStatus: 200, wantTotals: [4]int{3, 3, 0, 0}},
		{name: "a source that changes one field", body: map[string]any{"source": fn(upper)},
			wantStatus: 200, wantTotals: [4]int{3, 0, 3, 0}, check: func(t *testing.T, a *replayAnswer) {
				in := a.Inputs[0]
				live, _ := in.Live.ArgsAfter[0].(map[string]any)
				replayed, _ := in.Replayed.ArgsAfter[0].(map[string]any)
				if live["tenant"] != "acme/acme-header" || replayed["tenant"] != "acme/Xacme-header" || in.Replayed.Result != true {
					t.Fatalf("live %v, replayed %v", live, replayed)
				}
				for i, in := range a.Inputs {
					if in.RequestID != fmt.Sprintf("req-%d", i) || in.Function != "modifyResponse" || in.Phase != "introspection" ||
						in.ClientID != "app" || in.RecordedAt == "" {
						t.Errorf("input %d: %+v", i, in)
					}
				}
			}},
		{name: "version 1", body: map[string]any{"version": 1},
			wantStatus: 200, wantTotals: [4]int{3, 0, 3, 0}, check: func(t *testing.T, a *replayAnswer) {
				if got := a.Inputs[2].Replayed.ArgsAfter[0].(map[string]any); got["v"] != 1.0 || got["tenant"] != nil {
					t.Fatalf("version 1 gave %v", got)
				}
			}},
		{name: "version 2, the live one", body: map[string]any{"version": 2}, wantStatus: 200, wantTotals: [4]int{3, 3, 0, 0}},
		{name: "a source that throws", body: map[string]any{"source": fn(`throw new Error("boom");`)},
			wantStatus: 200, wantTotals: [4]int{3, 0, 3, 3}, check: func(t *testing.T, a *replayAnswer) {
				if e := a.Inputs[0].Replayed.Error; e == nil || !strings.Contains(*e, "boom") {
					t.Fatalf("replayed %+v", a.Inputs[0].Replayed)
				}
			}},
		{name: "limit", body: map[string]any{"source": v2["source"], "limit": 2}, wantStatus: 200, wantTotals: [4]int{2, 2, 0, 0},
			check: func(t *testing.T, a *replayAnswer) {
				if a.Inputs[0].RequestID != "req-1" || a.Inputs[1].RequestID != "req-2" {
					t.Fatalf("limit 2 replayed %s, %s; want the newest", a.Inputs[0].RequestID, a.Inputs[1].RequestID)
				}
			}},
		{name: "delegated scripts.write", token: writer, body: map[string]any{"version": 2}, wantStatus: 200, wantTotals: [4]int{3, 3, 0, 0}},
		{name: "delegated scripts.read", token: reader, body: map[string]any{"version": 2}, wantStatus: 403},
		{name: "delegated clients.read", token: clientsReader, body: map[string]any{"version": 2}, wantStatus: 403},
		{name: "neither version nor source", body: map[string]any{}, wantStatus: 400},
		{name: "both version and source", body: map[string]any{"version": 1, "source": v2["source"]}, wantStatus: 400},
		{name: "a source that does not compile", body: map[string]any{"source": "function modifyResponse( {"}, wantStatus: 400},
		{name: "limit 0", body: map[string]any{"version": 1, "limit": 0}, wantStatus: 400},
		{name: "an unknown version", body: map[string]any{"version": 99}, wantStatus: 404},
		{name: "an unknown script", script: "nope", body: map[string]any{"version": 1}, wantStatus: 404},
		{name: "a script that records nothing", script: "quiet", body: map[string]any{"version": 1}, wantStatus: 409},
		{name: "delegated, on an inline script", token: writer, script: "trusted", body: map[string]any{"version": 1}, wantStatus: 403},
		{name: "keyhook:admin, on an inline script", script: "trusted", body: map[string]any{"version": 1}, wantStatus: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token, script := tc.token, tc.script
			if token == "" {
				token = h.adminToken
			}
			if script == "" {
				script = "shaper"
			}
			r := h.adminAs(token, http.MethodPost, "/scripts/"+script+"/replay", tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.wantStatus)
			}
			if r.status != http.StatusOK {
				return
			}
			var a replayAnswer
			if err := json.Unmarshal(r.body, &a); err != nil {
				t.Fatal(err)
			}
			if got := [4]int{a.Totals.Inputs, a.Totals.Same, a.Totals.Different, a.Totals.Errors}; got != tc.wantTotals || len(a.Inputs) != got[0] {
				t.Fatalf("totals %v with %d inputs, want %v: %s", got, len(a.Inputs), tc.wantTotals, r.body)
			}
			for _, leak := range []string{tok, adminSecret, "leak-param-secret", "leak-header-key", "leak-cookie"} {
				if strings.Contains(string(r.body), leak) {
					t.Fatalf("the answer holds %q: %s", leak, r.body)
				}
			}
			if tc.check != nil {
				tc.check(t, &a)
			}
		})
	}

	t.Run("the recording holds no credential", func(t *testing.T) {
		inputs, _, ok := h.eng.Hooks().RecordedInputs("shaper", 0)
		if !ok || len(inputs) != 3 {
			t.Fatalf("%d inputs recorded (%v), want 3: replays are not recorded", len(inputs), ok)
		}
		raw, _ := json.Marshal(inputs)
		for _, leak := range []string{tok, adminSecret, "leak-param-secret", "leak-header-key", "leak-cookie", "authorization", "cookie", "api_secret"} {
			if strings.Contains(strings.ToLower(string(raw)), strings.ToLower(leak)) {
				t.Fatalf("the recording holds %q: %s", leak, raw)
			}
		}
		req, _ := inputs[0].Context["request"].(map[string]any)
		params, _ := req["params"].(map[string]any)
		headers, _ := req["headers"].(map[string]any)
		if params["tenant"] != "acme" || headers["x-tenant"] != "acme-header" {
			t.Fatalf("the recorded request lost what the script may read: %v", req)
		}
	})

	t.Run("replays leave live traffic alone", func(t *testing.T) {
		if got := h.introspect(tok); got["v"] != 2.0 || got["active"] != true {
			t.Fatalf("after the replays: %v", got)
		}
		if doc := h.admin(http.MethodGet, "/scripts/shaper", nil); doc.json["version_number"] != 2.0 || doc.json["tripped_until"] != nil {
			t.Fatalf("after the replays: %s", doc.body)
		}
	})
}

// TestScriptReplayRing: record_inputs bounds the recording; each new
// version of the script starts an empty one.
func TestScriptReplayRing(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		record any
		calls  int
		want   int // inputs replayed; -1: 409, none recorded
	}{
		{"record_inputs 3, 10 calls", 3, 10, 3},
		{"record_inputs 20, 4 calls", 20, 4, 4},
		{"record_inputs 0", 0, 2, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.admin(http.MethodDelete, "/scripts/ring", nil)
			h.createScript(introspectionScript("ring", `response.n = 1; return true;`, map[string]any{"timeout_ms": 5000, "record_inputs": tc.record}))
			id := "ring-" + strings.NewReplacer(" ", "-", ",", "").Replace(tc.name)
			h.createClient(map[string]any{"client_id": id, "client_secret": "ring-secret", "introspection_scripts": []string{"ring"}})
			tok := h.mustToken(id, "ring-secret", "").AccessToken
			for i := range tc.calls {
				h.introspectRecorded(tok, fmt.Sprintf("%s-%d", id, i))
			}
			r := h.admin(http.MethodPost, "/scripts/ring/replay", map[string]any{"version": 1})
			if tc.want < 0 {
				if r.status != http.StatusConflict {
					t.Fatalf("%d %s, want 409", r.status, r.body)
				}
				return
			}
			var a replayAnswer
			if err := json.Unmarshal(r.body, &a); err != nil || r.status != 200 || a.Totals.Inputs != tc.want || a.Totals.Same != tc.want {
				t.Fatalf("%d %s, want %d inputs, all same", r.status, r.body, tc.want)
			}
			if last := a.Inputs[len(a.Inputs)-1].RequestID; last != fmt.Sprintf("%s-%d", id, tc.calls-1) {
				t.Fatalf("newest input %s", last)
			}
			// A new version records afresh.
			if p := h.admin(http.MethodPatch, "/scripts/ring", map[string]any{"level": 5}); p.status != 200 {
				t.Fatalf("PATCH: %d %s", p.status, p.body)
			}
			r = h.admin(http.MethodPost, "/scripts/ring/replay", map[string]any{"version": 1})
			if err := json.Unmarshal(r.body, &a); err != nil || r.status != 200 || a.Totals.Inputs != 0 {
				t.Fatalf("after a new version: %d %s, want no inputs", r.status, r.body)
			}
		})
	}
}

// TestScriptReplaySecretRedacted: a script that copies one of its secrets
// into its answer is recorded with the value as [secret], in what it
// returned and edited, and the replay's answer shows no value either
// (docs/scripts.md, "Secrets" and "Replay").
func TestScriptReplaySecretRedacted(t *testing.T) {
	h := newHarness(t)
	const secret = "s3cr3t-replay-value-42"
	h.createScript(introspectionScript("leaky", `response.key = context.secrets.api_key; return true;`,
		map[string]any{"timeout_ms": 5000, "record_inputs": 3, "secrets": map[string]any{"api_key": secret}}))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"leaky"}})
	tok := h.mustToken("app", "app-secret", "").AccessToken
	h.introspectRecorded(tok, "req-secret")
	r := h.admin(http.MethodPost, "/scripts/leaky/replay", map[string]any{"source": `function modifyResponse(response, context) { return true; }`})
	if r.status != http.StatusOK {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), secret) {
		t.Fatalf("the replay answer carries the secret: %s", r.body)
	}
	var got replayAnswer
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Inputs) != 1 {
		t.Fatalf("answer %s: %v", r.body, err)
	}
	live, _ := got.Inputs[0].Live.ArgsAfter[0].(map[string]any)
	if live["key"] != "[secret]" {
		t.Fatalf("recorded live answer %v, want key [secret]", live)
	}
}

// TestDryRunLeavesTheLiveVersionAlone: a dry run or a replay, of unsaved
// source or of the stored script, runs under a runtime name of its own:
// its calls and failures are not counted as the live script's (nor does
// it take the live version's program, runtimes or slow-call gate), and
// its answer still names the script.
func TestDryRunLeavesTheLiveVersionAlone(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("shaper", `if (response.boom) throw new Error("boom"); return true;`,
		map[string]any{"timeout_ms": 5000, "record_inputs": 5}))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"shaper"}})
	tok := h.mustToken("app", "app-secret", "").AccessToken
	h.introspectRecorded(tok, "req-0")
	const (
		liveCalls  = `keyhook_script_calls_total{function="modifyResponse",script="shaper"}`
		liveErrors = `keyhook_script_errors_total{kind="exception",script="shaper"}`
	)
	throws := "function modifyResponse(response, context) { throw new Error(\"boom\"); }"
	for _, tc := range []struct {
		name, path string
		body       map[string]any
		errorOf    func(r *response) string
	}{
		{"dry run of the stored script", "/scripts/shaper/test",
			map[string]any{"args": []any{map[string]any{"boom": true}}}, dryRunError},
		{"dry run of unsaved source", "/scripts/shaper/test",
			map[string]any{"source": throws, "args": []any{map[string]any{}}}, dryRunError},
		{"replay of unsaved source", "/scripts/shaper/replay", map[string]any{"source": throws}, func(r *response) string {
			var a replayAnswer
			if err := json.Unmarshal(r.body, &a); err != nil || len(a.Inputs) != 1 || a.Inputs[0].Replayed.Error == nil {
				return ""
			}
			return *a.Inputs[0].Replayed.Error
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, _ := h.metric(liveCalls)
			r := h.admin(http.MethodPost, tc.path, tc.body)
			if r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", tc.path, r.status, r.body)
			}
			if msg := tc.errorOf(r); !strings.Contains(msg, "boom") || !strings.HasPrefix(msg, "script shaper:") {
				t.Fatalf("error %q, want the script's exception under its own name (%s)", msg, r.body)
			}
			if now, _ := h.metric(liveCalls); now != calls {
				t.Errorf("the live script's calls went from %v to %v", calls, now)
			}
			if n, ok := h.metric(liveErrors); ok {
				t.Errorf("the live script counts %v exceptions", n)
			}
		})
	}
}

// dryRunError is the error of a dry run's answer, "" when none.
func dryRunError(r *response) string { e, _ := r.json["error"].(string); return e }
