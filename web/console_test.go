package web_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/web"
)

const wantConsoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// delegatedToken creates a client holding scope and returns its token.
func (h *harness) delegatedToken(id, scope string) string {
	h.t.Helper()
	secret := h.createClient(map[string]any{"client_id": id, "scope": scope})
	return h.mustToken(id, secret, "").AccessToken
}

// TestConsoleServesFilesWithStrictHeaders: the console's page, script and
// style are served without a token, each with its type, a CSP that allows
// only this origin's script, style and API, no framing, no sniffing, no
// caching and no CORS; /admin redirects to /admin/. The page has no inline
// script, style or handler (the CSP would block them), and the script never
// parses data as markup.
func TestConsoleServesFilesWithStrictHeaders(t *testing.T) {
	h := newHarness(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ path, ctype, want string }{
		{"/admin/", "text/html; charset=utf-8", `<script src="/admin/console.js" defer></script>`},
		{"/admin/console.js", "text/javascript; charset=utf-8", "/oauth2/token"},
		{"/admin/console.css", "text/css; charset=utf-8", "#gutter .ln.error"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, h.url+tc.path, nil)
			req.Header.Set("Origin", "https://evil.example")
			r := h.do(req)
			if r.status != http.StatusOK || r.header.Get("Content-Type") != tc.ctype || !strings.Contains(string(r.body), tc.want) {
				t.Fatalf("%d %q, body has %q: %v", r.status, r.header.Get("Content-Type"), tc.want, strings.Contains(string(r.body), tc.want))
			}
			for k, v := range map[string]string{"Content-Security-Policy": wantConsoleCSP, "X-Content-Type-Options": "nosniff",
				"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if v := r.header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("Access-Control-Allow-Origin = %q", v)
			}
		})
	}
	resp, err := noRedirect.Get(h.url + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("/admin: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	page, _ := os.ReadFile("console/index.html")
	for _, bad := range []*regexp.Regexp{regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), regexp.MustCompile(`<style`),
		regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`), regexp.MustCompile(`(?i)https?://`)} {
		if loc := bad.FindIndex(page); loc != nil {
			t.Errorf("index.html has %q", page[loc[0]:min(loc[1]+20, len(page))])
		}
	}
	js, _ := os.ReadFile("console/console.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "http://", "https://"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("console.js uses %s", bad)
		}
	}
}

// TestConsoleScriptCheck: POST /admin/v1/script-check compiles and never
// runs; it answers a syntax error at its line and column, and refuses
// what is not a source, what is too big and a token without the scope.
func TestConsoleScriptCheck(t *testing.T) {
	h := newHarness(t)
	readOnly := h.delegatedToken("check-reader", "keyhook:scripts.read")
	writer := h.delegatedToken("check-writer", "keyhook:scripts.write")
	for _, tc := range []struct {
		name, token string
		body        any
		status      int
		line        int // 0: no error
		column      int
		errContains string
	}{
		{"compiles", writer, map[string]any{"source": "function modifyResponse(r) {\n  return true;\n}\n"}, 200, 0, 0, ""},
		// Compiled, not run: an endless loop at the top level answers at once.
		{"not run", writer, map[string]any{"source": "while (true) {}\nfunction modifyResponse(r) { return true }"}, 200, 0, 0, ""},
		{"missing brace at line 3", writer, map[string]any{"source": "function modifyResponse(r) {\n  r.a = 1;\n  r.b = (2;\n  return true;\n}\n"}, 200, 3, 11, ""},
		{"unterminated string at line 2", h.adminToken, map[string]any{"source": "function f() {\n  var s = 'abc\n}\n"}, 200, 2, 0, ""},
		{"markup in the source is data", h.adminToken, map[string]any{"source": "<img src=x onerror=alert(1)>"}, 200, 1, 1, ""},
		{"empty source", writer, map[string]any{"source": ""}, 400, 0, 0, "source: is required"},
		{"no body", writer, "", 400, 0, 0, "a JSON object is required"},
		{"unknown field", writer, map[string]any{"source": "x", "run": true}, 400, 0, 0, "run: unknown field"},
		{"wrong type", writer, map[string]any{"source": 5}, 400, 0, 0, "source: must be a string"},
		{"over the runtime's source limit", writer, map[string]any{"source": strings.Repeat("a", 70<<10)}, 400, 0, 0, "too large"},
		{"over the body limit", writer, map[string]any{"source": strings.Repeat("a", 1100<<10)}, 413, 0, 0, ""},
		{"read-only token", readOnly, map[string]any{"source": "x"}, 403, 0, 0, "keyhook:scripts.write"},
		{"no token", "", map[string]any{"source": "x"}, 401, 0, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.adminAs(tc.token, http.MethodPost, "/script-check", tc.body)
			if r.status != tc.status || !strings.Contains(r.str("error_description"), tc.errContains) {
				t.Fatalf("%d %.300s", r.status, r.body)
			}
			if r.status != 200 {
				return
			}
			var out struct {
				Errors []engine.SourceProblem `json:"errors"`
			}
			if err := json.Unmarshal(r.body, &out); err != nil || out.Errors == nil {
				t.Fatalf("answer %s (%v)", r.body, err)
			}
			if tc.line == 0 {
				if len(out.Errors) != 0 {
					t.Fatalf("errors %+v", out.Errors)
				}
				return
			}
			if len(out.Errors) != 1 || out.Errors[0].Line != tc.line || out.Errors[0].Message == "" ||
				(tc.column != 0 && out.Errors[0].Column != tc.column) {
				t.Fatalf("errors %+v, want line %d column %d", out.Errors, tc.line, tc.column)
			}
		})
	}
	// A saved script says the same: the console's marker and the save's
	// 400 agree.
	r := h.admin(http.MethodPost, "/scripts", introspectionScript("agree", "  r.b = (2;\n  return true;", nil))
	if r.status != 400 || !strings.Contains(r.str("error_description"), "line 2, column 11") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
}

// TestConsoleSample: GET /admin/v1/clients/{id}/sample answers, for each
// function, the input a real call has for a token of that client; run on
// a dry run, a script sees the same members as on a real introspection.
func TestConsoleSample(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "shop", "client_name": "Shop", "scope": "read write",
		"attributes": map[string]any{"tier": "gold"}, "access_token_lifetime": 600})
	h.createClient(map[string]any{"client_id": "jwt-shop", "scope": "read", "access_token_as_jwt": true})
	get := func(token, client, fn string) *response {
		t.Helper()
		return h.adminAs(token, http.MethodGet, "/clients/"+client+"/sample?function="+url.QueryEscape(fn), nil)
	}
	ok := func(client, fn string) (args []any, ctx map[string]any) {
		t.Helper()
		r := get(h.adminToken, client, fn)
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s %s: %d %s", client, fn, r.status, r.body)
		}
		wantFn := fn
		if fn == "" {
			wantFn = "modifyResponse"
		}
		if r.str("function") != wantFn {
			t.Fatalf("function %q", r.str("function"))
		}
		args, _ = r.json["args"].([]any)
		ctx, _ = r.json["context"].(map[string]any)
		if args == nil || ctx == nil {
			t.Fatalf("%s: %s", fn, r.body)
		}
		return args, ctx
	}
	m := func(v any) map[string]any { x, _ := v.(map[string]any); return x }

	args, ctx := ok("shop", "")
	resp := m(args[0])
	if resp["active"] != true || resp["client_id"] != "shop" || resp["scope"] != "read write" || resp["token_type"] != "Bearer" ||
		resp["iss"] != h.url || resp["exp"].(float64)-resp["iat"].(float64) != 600 || resp["sub"] != "shop" {
		t.Fatalf("introspection sample %v", resp)
	}
	if ctx["phase"] != "introspection" || m(ctx["client"])["client_id"] != "shop" || m(m(ctx["client"])["attributes"])["tier"] != "gold" ||
		m(ctx["token"])["client_id"] != "shop" || m(ctx["token"])["grant_type"] != "client_credentials" {
		t.Fatalf("introspection context %v", ctx)
	}
	for _, hidden := range []string{"config", "secrets"} {
		if _, ok := ctx[hidden]; ok {
			t.Errorf("the sample's context has %s", hidden)
		}
	}

	args, ctx = ok("shop", "modifyAccessToken")
	tok := m(args[0])
	if len(m(tok["header"])) != 0 || m(tok["claims"])["client_id"] != "shop" || m(tok["claims"])["scope"] != "read write" || ctx["phase"] != "token" {
		t.Fatalf("access token sample %v %v", tok, ctx)
	}
	args, _ = ok("jwt-shop", "modifyAccessToken")
	if hd := m(m(args[0])["header"]); hd["typ"] != "at+jwt" || hd["kid"] == nil || m(m(args[0])["claims"])["jti"] == nil {
		t.Fatalf("JWT access token sample %v", args[0])
	}
	args, ctx = ok("shop", "modifyRefreshToken")
	if m(args[0])["header"] != nil || m(m(args[0])["claims"])["sub"] != "shop" || m(ctx["token"])["type"] != "refresh_token" {
		t.Fatalf("refresh token sample %v %v", args[0], ctx["token"])
	}
	args, ctx = ok("shop", "getAccessTokenLifetimeInSeconds")
	if len(args) != 0 || m(ctx["token"])["expires_at"] != nil {
		t.Fatalf("lifetime sample %v %v", args, ctx["token"])
	}

	for _, tc := range []struct {
		name, token, client, fn string
		status                  int
	}{
		{"unknown function", h.adminToken, "shop", "modifyEverything", 400},
		{"id token function (no sample)", h.adminToken, "shop", "modifyIdToken", 400},
		{"unknown client", h.adminToken, "nobody", "", 404},
		{"clients.read may", h.delegatedToken("sample-reader", "keyhook:clients.read"), "shop", "", 200},
		{"scripts only may not", h.delegatedToken("sample-scripts", "keyhook:scripts.read keyhook:scripts.write"), "shop", "", 403},
		{"no token", "", "shop", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := get(tc.token, tc.client, tc.fn); r.status != tc.status {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}

	// The same script on the sample and on a real introspection sees the
	// same members.
	const probe = `
  response.keys = Object.keys(response).sort().join(",");
  response.context_keys = Object.keys(context).sort().join(",");
  response.client_keys = Object.keys(context.client).sort().join(",");
  response.token_keys = Object.keys(context.token).sort().join(",");
  response.request_keys = Object.keys(context.request).sort().join(",");
  return true;`
	h.createScript(introspectionScript("probe", probe, map[string]any{"timeout_ms": 5000}))
	sample := get(h.adminToken, "shop", "")
	dry := h.admin(http.MethodPost, "/scripts/probe/test", map[string]any{"function": "modifyResponse",
		"args": sample.json["args"], "context": sample.json["context"]})
	if dry.status != 200 || dry.json["error"] != nil {
		t.Fatalf("dry run: %d %s", dry.status, dry.body)
	}
	if r := h.admin(http.MethodPatch, "/clients/shop", map[string]any{"introspection_scripts": []string{"probe"}}); r.status != 200 {
		t.Fatalf("bind: %d %s", r.status, r.body)
	}
	shopSecret := h.admin(http.MethodPost, "/clients/shop/secret", nil).str("client_secret")
	real := h.introspect(h.mustToken("shop", shopSecret, "").AccessToken)
	after := m(dry.json["args_after"].([]any)[0])
	for _, k := range []string{"keys", "context_keys", "client_keys", "token_keys"} {
		if after[k] != real[k] || real[k] == nil {
			t.Errorf("%s: sample %v, real %v", k, after[k], real[k])
		}
	}
}

// TestConsoleScriptStats: GET /admin/v1/script-stats counts each stored
// script's real calls, failures and timeouts on this instance, not its
// dry runs; scripts never called are listed with zeros.
func TestConsoleScriptStats(t *testing.T) {
	h := newHarness(t, withBreakerOff())
	h.createScript(introspectionScript("tag", `response.tag = 1; return true;`, map[string]any{"timeout_ms": 5000}))
	h.createScript(introspectionScript("boom", `throw new Error("no");`, map[string]any{"timeout_ms": 5000}))
	// A deadline is the point here.
	h.createScript(introspectionScript("spin", `while (true) {}`, map[string]any{"timeout_ms": 50}))
	h.createScript(introspectionScript("idle", `return true;`, map[string]any{"timeout_ms": 5000}))
	secret := h.createClient(map[string]any{"client_id": "app", "scope": "read",
		"introspection_scripts": []string{"tag", "boom", "spin"}})
	for range 3 {
		in := h.introspect(h.mustToken("app", secret, "").AccessToken)
		if in["tag"] != float64(1) {
			t.Fatalf("introspection %v", in)
		}
	}
	// Dry runs do not count.
	if r := h.admin(http.MethodPost, "/scripts/tag/test", map[string]any{"args": []any{map[string]any{}}}); r.status != 200 {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	reader := h.delegatedToken("stats-reader", "keyhook:scripts.read")
	r := h.adminAs(reader, http.MethodGet, "/script-stats", nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var out struct{ Scripts []web.ScriptStats }
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]web.ScriptStats{}
	var names []string
	for _, s := range out.Scripts {
		got[s.Name] = s
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"boom", "idle", "spin", "tag"}) {
		t.Fatalf("scripts %v", names)
	}
	for _, tc := range []struct {
		name                    string
		calls, errors, timeouts uint64
		timed                   bool
	}{
		{"tag", 3, 0, 0, true}, {"boom", 3, 3, 0, true}, {"spin", 3, 3, 3, false}, {"idle", 0, 0, 0, false},
	} {
		s := got[tc.name]
		if s.Calls != tc.calls || s.Errors != tc.errors || s.Timeouts != tc.timeouts {
			t.Errorf("%s: %+v, want calls %d errors %d timeouts %d", tc.name, s, tc.calls, tc.errors, tc.timeouts)
		}
		if tc.timed && (s.MeanMS == nil || s.P50MS == nil || s.P99MS == nil || *s.MeanMS <= 0 || *s.P50MS > *s.P99MS) {
			t.Errorf("%s: latency %v %v %v", tc.name, s.MeanMS, s.P50MS, s.P99MS)
		}
		if tc.calls == 0 && (s.MeanMS != nil || s.P50MS != nil) {
			t.Errorf("%s: latency without calls", tc.name)
		}
	}
	if r := h.adminAs(h.delegatedToken("stats-clients", "keyhook:clients.read"), http.MethodGet, "/script-stats", nil); r.status != 403 {
		t.Fatalf("clients.read token: %d %s", r.status, r.body)
	}

	// Scripts named like the console's routes are scripts like any other:
	// the routes are outside /scripts/.
	for _, name := range []string{"stats", "check", "script-stats", "script-check"} {
		h.createScript(introspectionScript(name, `return true;`, map[string]any{"timeout_ms": 5000}))
		if r := h.admin(http.MethodGet, "/scripts/"+name, nil); r.status != 200 || r.str("name") != name {
			t.Fatalf("GET /scripts/%s: %d %s", name, r.status, r.body)
		}
		if r := h.admin(http.MethodPost, "/scripts/"+name+"/test", map[string]any{"args": []any{map[string]any{}}}); r.status != 200 || r.json["result"] != true {
			t.Fatalf("POST /scripts/%s/test: %d %s", name, r.status, r.body)
		}
	}
	if r := h.admin(http.MethodGet, "/script-stats", nil); r.status != 200 || !strings.Contains(string(r.body), `"name":"script-stats"`) {
		t.Fatalf("stats with a script called script-stats: %d %s", r.status, r.body)
	}
}

// TestConsoleSchemas: the OpenAPI schemas of the console's routes have
// the members their answers have.
func TestConsoleSchemas(t *testing.T) {
	h := newHarness(t)
	doc, _ := servedOpenAPI(t, h)
	for schema, typ := range map[string]reflect.Type{"ScriptSample": reflect.TypeFor[engine.ScriptSample](),
		"SourceProblem": reflect.TypeFor[engine.SourceProblem](), "ScriptStats": reflect.TypeFor[web.ScriptStats]()} {
		var props []string
		for name := range doc.Components.Schemas[schema].Properties {
			props = append(props, name)
		}
		sort.Strings(props)
		if want := jsonNames(typ); !slices.Equal(props, want) {
			t.Errorf("%s: %v, want %v", schema, props, want)
		}
	}
}
