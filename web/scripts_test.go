package web_test

import (
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func introspectionScript(name, body string, extra map[string]any) map[string]any {
	doc := map[string]any{"name": name, "type": "introspection",
		"source": "function modifyResponse(response, context) {\n" + body + "\n}"}
	for k, v := range extra {
		doc[k] = v
	}
	return doc
}

func TestIntrospectionScripts(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("add-a", `response.order = (response.order || "") + "a"; response.a = context.config.v; return true;`,
		map[string]any{"level": 20, "config": map[string]any{"v": "from-config"}}))
	h.createScript(introspectionScript("add-b", `response.order = (response.order || "") + "b"; return true;`, map[string]any{"level": 10}))
	h.createScript(introspectionScript("add-c", `response.order = (response.order || "") + "c"; return true;`, map[string]any{"level": 20}))
	h.createScript(introspectionScript("discard", `response.discarded = true; delete response.sub; return false;`, nil))
	h.createScript(introspectionScript("edit", `delete response.iss; response.scope = "changed"; response.nested = {x: [1, {y: "z"}]}; return true;`, nil))
	h.createScript(introspectionScript("deactivate", `response.active = false; response.leak = "x"; return true;`, nil))
	h.createScript(introspectionScript("thrower", `response.thrown = true; throw new Error("boom");`, nil))
	h.createScript(introspectionScript("denier", `throw new Error("deny me");`, map[string]any{"on_error": "deny"}))
	h.createScript(introspectionScript("wrong-type", `response.x = 1; return "yes";`, nil))
	h.createScript(introspectionScript("disabled", `response.disabled_ran = true; return true;`, map[string]any{"enabled": false}))
	h.createScript(introspectionScript("ctx", `
		response.phase = context.phase;
		response.owner = context.client.client_id;
		response.tenant = context.client.attributes.tenant;
		response.caller = context.caller ? context.caller.client_id : null;
		response.format = context.token.format;
		response.custom = context.request.params.custom_param || "none";
		response.saw_secret = ("client_secret" in context.request.params) || ("authorization" in context.request.headers) || ("token" in context.request.params);
		response.method = context.request.method;
		context.log("ctx script ran for", context.client.client_id);
		return true;`, nil))

	bind := func(id string, scripts ...string) string {
		h.createClient(map[string]any{"client_id": id, "client_secret": id + "-secret", "introspection_scripts": scripts,
			"attributes": map[string]any{"tenant": "acme"}})
		return h.mustToken(id, id+"-secret", "").AccessToken
	}
	for _, tc := range []struct {
		name    string
		scripts []string
		check   func(t *testing.T, in map[string]any)
	}{
		{"order by level then name", []string{"add-c", "add-a", "add-b"}, func(t *testing.T, in map[string]any) {
			if in["order"] != "bac" || in["a"] != "from-config" {
				t.Fatalf("%v", in)
			}
		}},
		{"false discards", []string{"discard"}, func(t *testing.T, in map[string]any) {
			if in["discarded"] != nil || in["sub"] == nil {
				t.Fatalf("%v", in)
			}
		}},
		{"add change delete nested", []string{"edit"}, func(t *testing.T, in map[string]any) {
			n, _ := json.Marshal(in["nested"])
			if in["iss"] != nil || in["scope"] != "changed" || string(n) != `{"x":[1,{"y":"z"}]}` || in["active"] != true {
				t.Fatalf("%v", in)
			}
		}},
		{"active false", []string{"add-a", "deactivate", "add-b"}, func(t *testing.T, in map[string]any) {
			if len(in) != 1 || in["active"] != false {
				t.Fatalf("%v", in)
			}
		}},
		{"throw is skipped", []string{"thrower", "add-b"}, func(t *testing.T, in map[string]any) {
			if in["thrown"] != nil || in["order"] != "b" || in["active"] != true {
				t.Fatalf("%v", in)
			}
		}},
		{"wrong return type is skipped", []string{"wrong-type"}, func(t *testing.T, in map[string]any) {
			if in["x"] != nil || in["active"] != true {
				t.Fatalf("%v", in)
			}
		}},
		{"deny makes inactive", []string{"add-a", "denier"}, func(t *testing.T, in map[string]any) {
			if len(in) != 1 || in["active"] != false {
				t.Fatalf("%v", in)
			}
		}},
		{"disabled does not run", []string{"disabled"}, func(t *testing.T, in map[string]any) {
			if in["disabled_ran"] != nil {
				t.Fatalf("%v", in)
			}
		}},
		{"context", []string{"ctx"}, func(t *testing.T, in map[string]any) {
			want := map[string]any{"phase": "introspection", "tenant": "acme", "caller": "keyhook-admin", "format": "opaque",
				"custom": "hello", "saw_secret": false, "method": "POST"}
			for k, v := range want {
				if in[k] != v {
					t.Errorf("%s = %v, want %v", k, in[k], v)
				}
			}
			if in["owner"] != in["client_id"] {
				t.Errorf("owner %v", in["owner"])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := bind(strings.ReplaceAll(tc.name, " ", "-"), tc.scripts...)
			r := h.form("/oauth2/introspect", url.Values{"token": {tok}, "custom_param": {"hello"}}, "keyhook-admin", adminSecret)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			tc.check(t, r.json)
		})
	}

	t.Run("unbound scripts do not run; backward compatibility runs them all", func(t *testing.T) {
		tok := bind("unbound")
		if in := h.introspect(tok); in["order"] != nil {
			t.Fatalf("unbound: %v", in)
		}
		h.setConfig(map[string]any{"introspection_script_backward_compatibility": true})
		defer h.setConfig(map[string]any{"introspection_script_backward_compatibility": false})
		// Every enabled introspection script runs: deactivate and denier among them.
		if in := h.introspect(tok); len(in) != 1 || in["active"] != false {
			t.Fatalf("backward compatibility: %v", in)
		}
		h.admin("PUT", "/scripts/deactivate", introspectionScript("deactivate", `return true;`, nil))
		h.admin("PUT", "/scripts/denier", introspectionScript("denier", `return true;`, nil))
		in := h.introspect(tok)
		if in["order"] != "bac" || in["active"] != true {
			t.Fatalf("backward compatibility, all enabled: %v", in)
		}
	})
}

func TestScriptTimeoutDoesNotStallTheServer(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("spin", `while (true) {}`, map[string]any{"timeout_ms": 50}))
	h.createScript(introspectionScript("recurse", `function f(n) { return f(n + 1) + 1; } f(0); return true;`, nil))
	h.createClient(map[string]any{"client_id": "spinner", "client_secret": "s", "introspection_scripts": []string{"spin"}})
	h.createClient(map[string]any{"client_id": "recurser", "client_secret": "s", "introspection_scripts": []string{"recurse"}})
	spin := h.mustToken("spinner", "s", "").AccessToken
	rec := h.mustToken("recurser", "s", "").AccessToken

	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.form("/oauth2/introspect", url.Values{"token": {spin}}, "keyhook-admin", adminSecret)
			if r.status != 200 || r.json["active"] != true {
				t.Errorf("spinning script: %d %s", r.status, r.body)
			}
		}()
	}
	// Meanwhile the server answers everything else.
	if tr := h.mustToken("keyhook-admin", adminSecret, ""); tr.AccessToken == "" {
		t.Error("no token while scripts spin")
	}
	wg.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("8 spinning calls took %v", d)
	}
	if in := h.introspect(rec); in["active"] != true {
		t.Fatalf("recursion: %v", in)
	}
	m := string(h.metrics())
	for _, want := range []string{`keyhook_script_errors_total{kind="timeout",script="spin"}`, `keyhook_script_errors_total{kind="stack_overflow",script="recurse"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestScriptGlobalsDoNotLeak(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "counter", "type": "introspection", "source": `
var n = 0;
var seen = {};
function modifyResponse(response, context) {
  n++;
  seen[context.token.client_id + n] = true;
  response.n = n;
  response.seen = Object.keys(seen).length;
  return true;
}`})
	h.createClient(map[string]any{"client_id": "counted", "client_secret": "s", "introspection_scripts": []string{"counter"}})
	tok := h.mustToken("counted", "s", "").AccessToken
	for i := 0; i < 20; i++ {
		in := h.introspect(tok)
		if in["n"] != 1.0 || in["seen"] != 1.0 {
			t.Fatalf("call %d: n=%v seen=%v; state leaked between calls", i, in["n"], in["seen"])
		}
	}
}

// TestIntrospectionScriptSeesUser: context.user is the token's user, read
// from the store only when a script asks for it, and null for tokens
// without one.
func TestIntrospectionScriptSeesUser(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	h.createScript(introspectionScript("who", `response.who = context.user ? context.user.username + " " + context.user.claims.email : "nobody"; return true;`, nil))
	h.admin("PUT", "/clients/app", map[string]any{"client_secret": "app-secret", "grant_types": []string{"password", "client_credentials"},
		"scope": "api", "introspection_scripts": []string{"who"}})
	if in := h.introspect(h.passwordToken("api").AccessToken); in["who"] != "alice alice@example.com" {
		t.Fatalf("password token: %v", in)
	}
	if in := h.introspect(h.mustToken("app", "app-secret", "").AccessToken); in["who"] != "nobody" {
		t.Fatalf("client_credentials token: %v", in)
	}
}

func TestUpdateTokenScripts(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	h.createScript(map[string]any{"name": "shape", "type": "update_token", "config": map[string]any{"dept": "payments"}, "source": `
function modifyAccessToken(token, context) {
  token.claims.department = context.config.dept;
  token.claims.iss = "https://evil.example";
  token.claims.exp = 1;
  token.claims.client_id = "someone-else";
  token.header.kid = "forged";
  token.header.x_custom = "hdr";
  if (context.request.params.narrow === "yes") { token.claims.scope = "read"; }
  token.claims.seen_lifetime = context.token.expires_at - context.token.issued_at;
  return true;
}
// expires_at is what this function decides, so it is not in the context yet.
function getAccessTokenLifetimeInSeconds(context) { return "expires_at" in context.token ? 1 : 120; }
function modifyRefreshToken(token, context) { token.claims.rt_marker = "kept"; return true; }
function modifyIdToken(token, context) { token.claims.id_marker = context.user.username; return true; }
function getIdTokenLifetimeInSeconds(context) { return 90; }`})
	h.createScript(map[string]any{"name": "refuse", "type": "update_token", "source": `function modifyAccessToken(token, context) { return false; }`})
	h.createScript(map[string]any{"name": "broken", "type": "update_token", "on_error": "deny", "source": `function modifyAccessToken(token, context) { throw new Error("no"); }`})
	h.createScript(map[string]any{"name": "broken-skip", "type": "update_token", "source": `function modifyAccessToken(token, context) { token.claims.x = 1; throw new Error("no"); }`})
	h.createScript(map[string]any{"name": "no-refresh", "type": "update_token", "source": `function modifyRefreshToken(token, context) { return false; }`})

	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			id := "shaped-" + format
			h.createClient(map[string]any{"client_id": id, "client_secret": "s", "scope": "read write", "update_token_scripts": []string{"shape"},
				"access_token_as_jwt": format == "jwt"})
			r := h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "narrow": {"yes"}}, id, "s")
			tr := h.mustDecodeToken(r)
			if tr.ExpiresIn != 120 || tr.Scope != "read" {
				t.Fatalf("token response %+v", tr)
			}
			in := h.introspect(tr.AccessToken)
			if in["department"] != "payments" || in["scope"] != "read" || in["iss"] != h.url || in["client_id"] != id || in["seen_lifetime"] != 120.0 {
				t.Fatalf("introspection %v", in)
			}
			if exp, iat := in["exp"].(float64), in["iat"].(float64); exp-iat != 120 {
				t.Fatalf("lifetime %v", exp-iat)
			}
			if format == "jwt" {
				claims, header := verifyWithJWKS(t, h, tr.AccessToken)
				if claims["department"] != "payments" || claims["iss"] != h.url || claims["client_id"] != id || claims["scope"] != "read" {
					t.Fatalf("claims %v", claims)
				}
				if header.KeyID == "forged" || header.ExtraHeaders["x_custom"] != "hdr" {
					t.Fatalf("header %+v", header)
				}
			}
		})
	}
	t.Run("refresh and id token hooks", func(t *testing.T) {
		h.admin("PUT", "/clients/app", map[string]any{"client_secret": "app-secret", "grant_types": []string{"password", "refresh_token"},
			"scope": "openid profile email api", "update_token_scripts": []string{"shape"}})
		tr := h.passwordToken("openid api")
		if in := h.introspect(tr.RefreshToken); in["rt_marker"] != "kept" {
			t.Fatalf("refresh introspection %v", in)
		}
		tok, err := jwt.ParseSigned(tr.IDToken, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		_ = tok.UnsafeClaimsWithoutVerification(&claims)
		if claims["id_marker"] != "alice" || claims["exp"].(float64)-claims["iat"].(float64) != 90 {
			t.Fatalf("id token claims %v", claims)
		}
		verifyWithJWKS(t, h, tr.IDToken)
	})
	for _, tc := range []struct {
		name, script string
		status       int
		code, desc   string
		refresh      bool
	}{
		{"false refuses the token", "refuse", 400, "invalid_grant", "refuse", false},
		{"deny on error is server_error", "broken", 500, "server_error", "broken", false},
		{"skip on error issues without edits", "broken-skip", 200, "", "", false},
		{"modifyRefreshToken false issues no refresh token", "no-refresh", 200, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "c-" + tc.script
			h.createClient(map[string]any{"client_id": id, "client_secret": "s", "update_token_scripts": []string{tc.script},
				"grant_types": []string{"password", "refresh_token", "client_credentials"}, "scope": "api"})
			vals := url.Values{"grant_type": {"client_credentials"}}
			if tc.refresh {
				vals = url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}
			}
			r := h.form("/oauth2/token", vals, id, "s")
			if tc.status != 200 {
				wantError(t, r, tc.status, tc.code)
				if !strings.Contains(r.str("error_description"), tc.desc) {
					t.Fatalf("description %q does not name the script", r.str("error_description"))
				}
				return
			}
			tr := h.mustDecodeToken(r)
			if tc.refresh && tr.RefreshToken != "" {
				t.Fatal("refresh token issued")
			}
			if in := h.introspect(tr.AccessToken); in["x"] != nil || in["active"] != true {
				t.Fatalf("introspection %v", in)
			}
		})
	}
}

func TestIntrospectionScriptBeforeJWTCreation(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("jwt-claims", `
		if (context.phase === "jwt_creation") { response.tenant = context.client.attributes.tenant; response.iss = "forged"; }
		response.roles = ["reader"];
		return true;`, nil))
	h.createScript(introspectionScript("jwt-refuse", `response.never = true; return false;`, nil))
	h.createScript(map[string]any{"name": "after", "type": "update_token",
		"source": `function modifyAccessToken(token, context) { token.claims.saw_tenant = token.claims.tenant || "none"; return true; }`})
	for _, tc := range []struct {
		name   string
		doc    map[string]any
		claims map[string]any
		absent []string
	}{
		{"contract name", map[string]any{"run_introspection_script_before_jwt_creation": true, "introspection_scripts": []string{"jwt-claims"},
			"update_token_scripts": []string{"after"}},
			map[string]any{"tenant": "acme", "saw_tenant": "acme"}, nil},
		{"janssen name", map[string]any{"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims": true,
			"introspection_scripts": []string{"jwt-claims"}}, map[string]any{"tenant": "acme"}, nil},
		{"flag off", map[string]any{"introspection_scripts": []string{"jwt-claims"}}, nil, []string{"tenant", "roles"}},
		{"false transfers nothing", map[string]any{"run_introspection_script_before_jwt_creation": true, "introspection_scripts": []string{"jwt-refuse"}},
			nil, []string{"never"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "j-" + strings.ReplaceAll(tc.name, " ", "-")
			doc := map[string]any{"client_id": id, "client_secret": "s", "access_token_as_jwt": true, "attributes": map[string]any{"tenant": "acme"}}
			for k, v := range tc.doc {
				doc[k] = v
			}
			h.createClient(doc)
			claims, _ := verifyWithJWKS(t, h, h.mustToken(id, "s", "").AccessToken)
			for k, v := range tc.claims {
				if claims[k] != v {
					t.Errorf("claim %s = %v, want %v", k, claims[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := claims[k]; ok {
					t.Errorf("claim %s present", k)
				}
			}
			if claims["iss"] != h.url || claims["active"] != nil || claims["token_type"] != nil {
				t.Errorf("protected or base fields leaked: %v", claims)
			}
		})
	}
}

func TestScriptAdmin(t *testing.T) {
	h := newHarness(t)
	r := h.admin("POST", "/scripts", map[string]any{"name": "broken", "type": "introspection",
		"source": "function modifyResponse(r, c) {\n  return true;\n  if (\n}"})
	wantError(t, r, 400, "invalid_request")
	if d := r.str("error_description"); !strings.HasPrefix(d, "source:") || !strings.Contains(d, "line 4") {
		t.Fatalf("syntax error description %q", d)
	}
	h.createScript(introspectionScript("s1", `response.v = 1; return true;`, nil))
	got := h.admin("GET", "/scripts/s1", nil)
	if got.json["enabled"] != true || got.json["level"] != 100.0 || got.json["timeout_ms"] != 100.0 || got.json["on_error"] != "skip" {
		t.Fatalf("defaults %s", got.body)
	}
	h.createClient(map[string]any{"client_id": "bound", "client_secret": "s", "introspection_scripts": []string{"s1"}})
	tok := h.mustToken("bound", "s", "").AccessToken
	if in := h.introspect(tok); in["v"] != 1.0 {
		t.Fatalf("v = %v", in["v"])
	}
	if r := h.admin("PUT", "/scripts/s1", introspectionScript("s1", `response.v = 2; return true;`, nil)); r.status != 200 {
		t.Fatalf("replace %d %s", r.status, r.body)
	}
	if in := h.introspect(tok); in["v"] != 2.0 {
		t.Fatalf("after replace v = %v", in["v"])
	}
	wantError(t, h.admin("POST", "/clients", map[string]any{"update_token_scripts": []string{"s1"}}), 400, "invalid_request")
	if list := h.admin("GET", "/scripts", nil); !strings.Contains(string(list.body), `"s1"`) {
		t.Fatalf("list %s", list.body)
	}
	t.Run("dry run", func(t *testing.T) {
		r := h.admin("POST", "/scripts/s1/test", map[string]any{"args": []any{map[string]any{"active": true}}, "context": map[string]any{}})
		if r.status != 200 || r.json["result"] != true || r.json["error"] != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if after := r.json["args_after"].([]any)[0].(map[string]any); after["v"] != 2.0 {
			t.Fatalf("args_after %v", after)
		}
		r = h.admin("POST", "/scripts/s1/test", map[string]any{"function": "modifyResponse", "source": `function modifyResponse(r, c) { c.log("hi", c.config.k); throw new Error("nope"); }`,
			"args": []any{map[string]any{}}, "context": map[string]any{"config": map[string]any{"k": "v"}}})
		if r.status != 200 || r.json["error"] == nil || !strings.Contains(r.str("error"), "nope") {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if logs := r.json["logs"].([]any); len(logs) != 1 || logs[0] != "hi v" {
			t.Fatalf("logs %v", logs)
		}
		if _, ok := r.json["duration_ms"]; !ok {
			t.Fatalf("no duration_ms: %s", r.body)
		}
		wantError(t, h.admin("POST", "/scripts/nope/test", map[string]any{}), 404, "not_found")
	})
	if d := h.admin("DELETE", "/scripts/s1", nil); d.status != 204 {
		t.Fatalf("delete %d", d.status)
	}
	if in := h.introspect(tok); in["v"] != nil || in["active"] != true {
		t.Fatalf("after delete %v", in)
	}
	wantError(t, h.admin("GET", "/scripts/s1", nil), 404, "not_found")
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestScriptLogReachesServerLog(t *testing.T) {
	var buf syncBuffer
	h := newHarness(t, withLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	h.createScript(introspectionScript("chatty", `context.log("hello from", context.client.client_id, {n: 1}); return true;`, nil))
	h.createClient(map[string]any{"client_id": "talker", "client_secret": "s", "introspection_scripts": []string{"chatty"}})
	tok := h.mustToken("talker", "s", "").AccessToken
	r := h.form("/oauth2/introspect", url.Values{"token": {tok}}, "keyhook-admin", adminSecret)
	reqID := r.header.Get("X-Request-Id")
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, `hello from talker {\"n\":1}`) || strings.Contains(line, `hello from talker {"n":1}`) {
			if !strings.Contains(line, "script=chatty") || reqID == "" || !strings.Contains(line, "request_id="+reqID) {
				t.Fatalf("log line lacks script or request id %q: %s", reqID, line)
			}
			return
		}
	}
	t.Fatalf("script log line not found in:\n%s", buf.String())
}
