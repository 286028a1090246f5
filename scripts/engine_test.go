package scripts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyhook/keyhook/hooks"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newEngine is a Runtime for the tests of the in-process runtime (inline
// isolation unless opts say otherwise); process isolation has tests of
// its own (process_test.go).
func newEngine(opts Options) *Runtime {
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	if opts.DefaultIsolation == "" {
		opts.DefaultIsolation = hooks.IsolationInline
	}
	return New(opts)
}

func js(src string) *hooks.Script {
	return &hooks.Script{Name: "t", Version: "1", Source: src}
}

// modify calls modifyResponse(r, context) and fails the test on error.
func modify(t *testing.T, e *Runtime, s *hooks.Script, r map[string]any, hctx map[string]any) *hooks.Result {
	t.Helper()
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{r}, Context: hctx})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if !res.Defined {
		t.Fatalf("Call: modifyResponse not defined")
	}
	return res
}

func wantScriptError(t *testing.T, err error, kind hooks.FailureKind) *hooks.ScriptError {
	t.Helper()
	var se *hooks.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *hooks.ScriptError of kind %s", err, err, kind)
	}
	if se.Kind != kind {
		t.Fatalf("kind = %s (%v), want %s", se.Kind, se, kind)
	}
	return se
}

// pooled returns the runtime currently idle in a one-runtime pool.
func pooled(t *testing.T, e *Runtime, name string) *vmState {
	t.Helper()
	e.mu.Lock()
	sc := e.scripts[name]
	e.mu.Unlock()
	if cap(sc.permits) != 1 || sc.idleCount() != 1 {
		t.Fatalf("pooled needs MaxRuntimes 1 and an idle runtime")
	}
	st := sc.pop()
	sc.push(st)
	return st
}

func TestCheckSyntaxError(t *testing.T) {
	e := newEngine(Options{})
	tests := []struct {
		name      string
		src       string
		line, col int
		msg       string
	}{
		{"unclosed object brace on line 3", "function modifyResponse(r) {\n  r.x = 1;\n  r.y = {a: 1;\n  return true;\n}\n", 3, 14, "Unexpected token ;"},
		{"missing paren before brace on line 3", "function modifyResponse(r) {\n  r.x = 1;\n  if (r.x {\n    r.y = 1;\n  }\n  return true;\n}\n", 3, 11, "Unexpected token {"},
		{"missing closing brace at end", "function modifyResponse(r) {\n  r.x = 1;\n  return true;\n", 4, 1, "Unexpected end of input"},
		{"compiler error: redeclared let", "let a = 1;\nlet a = 2;\n", 2, 5, "already been declared"},
		{"compiler error: bad assignment target", "var x = 1;\n\n  1 = 2;\n", 3, 3, "Invalid left-hand side"},
		{"line 1", "var = 1", 1, 5, "Unexpected token ="},
		{"top-level return", "return 1", 1, 1, "Illegal return"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.Check("t", tt.src)
			var se *hooks.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Check = %v (%T), want *hooks.SyntaxError", err, err)
			}
			if se.Line != tt.line || se.Column != tt.col || !strings.Contains(se.Message, tt.msg) {
				t.Errorf("Check = line %d col %d %q, want line %d col %d %q", se.Line, se.Column, se.Message, tt.line, tt.col, tt.msg)
			}
			// Call reports the same error.
			_, err = e.Call(context.Background(), js(tt.src), &hooks.Call{Function: "modifyResponse"})
			var se2 *hooks.SyntaxError
			if !errors.As(err, &se2) || *se2 != *se {
				t.Errorf("Call = %v, want %v", err, se)
			}
		})
	}
	if err := e.Check("t", "function modifyResponse(r) { return true }"); err != nil {
		t.Errorf("Check(valid) = %v", err)
	}
}

func TestSourceTooLarge(t *testing.T) {
	e := newEngine(Options{MaxSourceBytes: 100})
	src := "function modifyResponse(r) { return true }\n" + strings.Repeat("// padding\n", 10)
	if err := e.Check("t", src); !errors.Is(err, ErrSourceTooLarge) {
		t.Errorf("Check = %v, want ErrSourceTooLarge", err)
	}
	if _, err := e.Call(context.Background(), js(src), &hooks.Call{Function: "modifyResponse"}); !errors.Is(err, ErrSourceTooLarge) {
		t.Errorf("Call = %v, want ErrSourceTooLarge", err)
	}
	if err := e.Check("t", "function f() {}"); err != nil {
		t.Errorf("Check(small) = %v", err)
	}
}

func TestUndefinedFunction(t *testing.T) {
	e := newEngine(Options{})
	for _, src := range []string{
		`function other(r) { return true }`,
		`var modifyResponse = 5;`,
		`var modifyResponse;`,
		`if (false) { var modifyResponse = function () { return true } }`,
		`{ function modifyResponse() { return true } }`, // block-scoped: not a top-level binding
		``,
	} {
		res, err := e.Call(context.Background(), js(src), &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{"a": 1}}})
		if err != nil || res == nil || res.Defined || res.Return != nil || res.Args != nil {
			t.Errorf("%q: Call = %+v, %v; want Defined false", src, res, err)
		}
	}
	// Hooks may be declared in any top-level form.
	for _, src := range []string{
		`function modifyResponse(r) { return 7 }`,
		`var modifyResponse = function (r) { return 7 }`,
		`let modifyResponse = (r) => 7`,
		`const {modifyResponse} = {modifyResponse: function () { return 7 }}`,
		`const [modifyResponse = () => 7] = []`,
		`var modifyResponse; if (true) { modifyResponse = function () { return 7 } }`,
		`async function modifyResponse(r) { return 7 }`,
	} {
		res, err := e.Call(context.Background(), js(src), &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
		if err != nil || !res.Defined || res.Return != int64(7) {
			t.Errorf("%q: Call = %+v, %v; want Return 7", src, res, err)
		}
	}
}

func TestEdits(t *testing.T) {
	e := newEngine(Options{})
	input := func() map[string]any {
		return map[string]any{
			"active": true,
			"sub":    "alice",
			"exp":    int64(1700000000),
			"n":      1,
			"ratio":  0.5,
			"aud":    []any{"a", "b"},
			"nested": map[string]any{"keep": "k", "drop": "d", "deep": map[string]any{"x": int64(1)}},
			"gone":   "x",
			"null":   nil,
		}
	}
	tests := []struct {
		name string
		body string
		want func(m map[string]any)
	}{
		{"add field", `r.added = "yes"`, func(m map[string]any) { m["added"] = "yes" }},
		{"change field", `r.sub = "bob"; r.exp = r.exp + 60`, func(m map[string]any) { m["sub"] = "bob"; m["exp"] = int64(1700000060) }},
		{"delete field", `delete r.gone`, func(m map[string]any) { delete(m, "gone") }},
		{"delete nested", `delete r.nested.drop`, func(m map[string]any) { delete(m["nested"].(map[string]any), "drop") }},
		{"change nested deep", `r.nested.deep.x = 2; r.nested.deep.y = [1, {z: true}]`, func(m map[string]any) {
			d := m["nested"].(map[string]any)["deep"].(map[string]any)
			d["x"] = int64(2)
			d["y"] = []any{int64(1), map[string]any{"z": true}}
		}},
		{"add nested object", `r.user = {name: "A", roles: ["r1"], meta: {}}`, func(m map[string]any) {
			m["user"] = map[string]any{"name": "A", "roles": []any{"r1"}, "meta": map[string]any{}}
		}},
		{"array edits", `r.aud.push("c"); r.aud[0] = "z"`, func(m map[string]any) { m["aud"] = []any{"z", "b", "c"} }},
		{"replace array", `r.aud = r.aud.filter(function (a) { return a !== "a" })`, func(m map[string]any) { m["aud"] = []any{"b"} }},
		{"numbers", `r.i = 3; r.f = 2.5; r.big = 9007199254740993; r.neg = -4; r.ratio *= 2`, func(m map[string]any) {
			m["i"], m["f"], m["big"], m["neg"], m["ratio"] = int64(3), 2.5, int64(9007199254740992), int64(-4), int64(1)
		}},
		{"JSON semantics", `r.u = undefined; r.fn = function () {}; r.nan = NaN; r.inf = -Infinity; r.arr = [undefined, function () {}]; r.d = new Date(0)`, func(m map[string]any) {
			m["nan"], m["inf"], m["arr"], m["d"] = nil, nil, []any{nil, nil}, "1970-01-01T00:00:00.000Z"
		}},
		{"null stays", `r.other = null`, func(m map[string]any) { m["other"] = nil }},
		{"shadowing Object.prototype names", `r.toString = "s"; r.constructor = 1; r.hasOwnProperty = true; r.ok = Object.prototype.hasOwnProperty.call(r, "toString")`, func(m map[string]any) {
			m["toString"], m["constructor"], m["hasOwnProperty"], m["ok"] = "s", int64(1), true, true
		}},
		{"Object.assign and spread", `var c = Object.assign({}, r.nested, {constructor: "c"}); r.c = {...c}`, func(m map[string]any) {
			m["c"] = map[string]any{"keep": "k", "drop": "d", "deep": map[string]any{"x": int64(1)}, "constructor": "c"}
		}},
		{"custom error classes", `class E extends Error { constructor(m) { super(m); this.name = "E" } } r.e = String(new E("m"))`, func(m map[string]any) { m["e"] = "E: m" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := js("function modifyResponse(r, context) {\n" + tt.body + "\nreturn true }")
			res := modify(t, e, s, input(), nil)
			want := input()
			want["n"] = int64(1)
			tt.want(want)
			if res.Return != true {
				t.Errorf("Return = %v", res.Return)
			}
			if !reflect.DeepEqual(res.Args[0], want) {
				t.Errorf("Args[0] =\n %#v\nwant\n %#v", res.Args[0], want)
			}
		})
	}
}

func TestReturnValues(t *testing.T) {
	e := newEngine(Options{})
	tests := []struct {
		expr string
		want any
	}{
		{"true", true},
		{"false", false},
		{"undefined", nil},
		{"null", nil},
		{"3600", int64(3600)},
		{"1.5", 1.5},
		{"-0", int64(0)},
		{"2 ** 60", int64(1 << 60)},
		{"1e300", 1e300},
		{"NaN", nil},
		{"'s'", "s"},
		{"[1, 'a', null, [true]]", []any{int64(1), "a", nil, []any{true}}},
		{"({a: {b: []}})", map[string]any{"a": map[string]any{"b": []any{}}}},
		{"12345678901234567890n", "12345678901234567890"},
		{"42n", int64(42)},
		{"new Number(5)", int64(5)},
		{"function () {}", nil},
		{"Symbol('x')", nil},
		{"new Map([[1, 2]])", map[string]any{}},
		{"Promise.resolve(9)", int64(9)},
	}
	for _, tt := range tests {
		s := js("function f() { return " + tt.expr + " }")
		res, err := e.Call(context.Background(), s, &hooks.Call{Function: "f"})
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if !reflect.DeepEqual(res.Return, tt.want) {
			t.Errorf("%s: Return = %#v, want %#v", tt.expr, res.Return, tt.want)
		}
	}
	// The context is the only argument when Args is empty.
	res, err := e.Call(context.Background(), js(`function getAccessTokenLifetimeInSeconds(context) { return Number(context.config.ttl) }`),
		&hooks.Call{Function: "getAccessTokenLifetimeInSeconds", Context: map[string]any{"config": map[string]string{"ttl": "300"}}})
	if err != nil || res.Return != int64(300) || len(res.Args) != 0 {
		t.Errorf("lifetime: %+v, %v", res, err)
	}
}

func TestWrongType(t *testing.T) {
	e := newEngine(Options{})
	for _, body := range []string{
		`r.self = r; return true`,
		`var a = []; a.length = 1e9; return a`,
		`var o = {}; for (var i = 0; i < 200; i++) o = {o: o}; return o`,
		`return new Promise(function () {})`,
	} {
		_, err := e.Call(context.Background(), js("function modifyResponse(r) { "+body+" }"),
			&hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
		wantScriptError(t, err, hooks.FailureWrongType)
	}
}

func TestInputNotMutated(t *testing.T) {
	e := newEngine(Options{})
	mk := func() (map[string]any, map[string]any) {
		r := map[string]any{
			"a": "x", "n": int64(1), "list": []any{"p", map[string]any{"q": 1}},
			"obj": map[string]any{"k": "v", "inner": map[string]any{"z": true}},
			"ss":  []string{"s1"}, "ms": map[string]string{"m": "1"},
		}
		c := map[string]any{"phase": "token", "client": map[string]any{"id": "c1", "scopes": []any{"openid"}}}
		return r, c
	}
	r, c := mk()
	wantR, wantC := mk()
	s := js(`function modifyResponse(r, context) {
		r.a = "changed"; delete r.n; r.list.push(1); r.list[1].q = 2; r.list.length = 1;
		r.obj.k = "w"; delete r.obj.inner.z; r.obj.inner.y = 1; r.ss[0] = "s2"; r.ms.m = "2"; r.added = {};
		try { context.client.scopes.push("x") } catch (e) {}
		return true }`)
	res := modify(t, e, s, r, c)
	if !reflect.DeepEqual(r, wantR) {
		t.Errorf("input changed:\n %#v\nwant\n %#v", r, wantR)
	}
	if !reflect.DeepEqual(c, wantC) {
		t.Errorf("context changed:\n %#v\nwant\n %#v", c, wantC)
	}
	got := res.Args[0].(map[string]any)
	if got["a"] != "changed" || got["ss"].([]any)[0] != "s2" || got["ms"].(map[string]any)["m"] != "2" {
		t.Errorf("edits lost: %#v", got)
	}
	// Editing the result does not reach the next call either.
	got["a"] = "tampered"
	res2 := modify(t, e, js(`function modifyResponse(r) { return true }`), r, c)
	if res2.Args[0].(map[string]any)["a"] != "x" {
		t.Errorf("second call saw %v", res2.Args[0])
	}
}

func TestGoArgumentTypes(t *testing.T) {
	e := newEngine(Options{})
	type claims struct {
		Sub string `json:"sub"`
		Age int    `json:"age"`
	}
	s := js(`function f(a, context) { return [typeof a.i, a.i + a.u8 + a.i32 + a.f32, a.ss.join(","), a.ms.k, a.st.sub, a.st.age, a.t, a.nilmap, a.huge] }`)
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "f", Args: []any{map[string]any{
		"i": 1, "u8": uint8(2), "i32": int32(3), "f32": float32(0.5), "ss": []string{"x", "y"},
		"ms": map[string]string{"k": "v"}, "st": claims{"s", 9}, "t": time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC),
		"nilmap": map[string]int(nil), "huge": uint64(math.MaxUint64),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"number", 6.5, "x,y", "v", "s", int64(9), "2020-01-02T03:04:05Z", nil, float64(math.MaxUint64)}
	if !reflect.DeepEqual(res.Return, want) {
		t.Errorf("Return = %#v, want %#v", res.Return, want)
	}
	cyclic := map[string]any{}
	cyclic["self"] = cyclic
	if _, err := e.Call(context.Background(), s, &hooks.Call{Function: "f", Args: []any{cyclic}}); err == nil {
		t.Errorf("cyclic input accepted")
	}
}

func TestContextReadOnly(t *testing.T) {
	e := newEngine(Options{})
	hctx := map[string]any{"phase": "token", "client": map[string]any{"client_id": "c1", "attributes": map[string]any{"t": "x"}}, "scopes": []any{"openid"}}
	statements := []string{
		`context.phase = "changed"`,
		`context.added = 1`,
		`delete context.client`,
		`context.client.client_id = "evil"`,
		`context.client.attributes.t = "y"`,
		`context.scopes[0] = "admin"`,
		`context.scopes[5] = "admin"`,
		`context.scopes.length = 0`,
		`delete context.scopes[0]`,
		`context.client.attributes.added = 1`,
		`context.log = null`,
		`delete context.log`,
	}
	t.Run("sloppy: no effect", func(t *testing.T) {
		var b strings.Builder
		for _, st := range statements {
			b.WriteString(st + ";\n")
		}
		s := js(`function modifyResponse(r, context) {
			` + b.String() + `
			var pushed = "no error";
			try { context.scopes.push("admin") } catch (e) { pushed = e.name }
			r.phase = context.phase; r.added = context.added === undefined; r.cid = context.client.client_id;
			r.t = context.client.attributes.t; r.scopes = context.scopes; r.log = typeof context.log; r.pushed = pushed;
			r.readOnly = !Reflect.set(context, "phase", 1) && !Reflect.set(context, "fresh", 1) && !Reflect.deleteProperty(context.client, "client_id") &&
				!Reflect.set(context.scopes, 0, "x") && !Reflect.defineProperty(context.client.attributes, "n", {value: 1}) && !Reflect.set(context.scopes, "length", 0);
			// Names of Object.prototype (see hardenSource) are no exception.
			context.toString = function () { return "mine" }; context.client.constructor = 1;
			r.override = String(context) === "[object Object]" && context.client.constructor === Object;
			return true }`)
		res := modify(t, e, s, map[string]any{}, hctx)
		got := res.Args[0].(map[string]any)
		want := map[string]any{"phase": "token", "added": true, "cid": "c1", "t": "x", "scopes": []any{"openid"}, "log": "function", "readOnly": true, "override": true, "pushed": "TypeError"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, want %#v", got, want)
		}
	})
	t.Run("strict: throws", func(t *testing.T) {
		for _, line := range statements {
			s := js(`"use strict"; function modifyResponse(r, context) { ` + line + `; return true }`)
			_, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Context: hctx})
			se := wantScriptError(t, err, hooks.FailureException)
			if !strings.Contains(se.Message, "TypeError") {
				t.Errorf("%s: %v, want a TypeError", line, se)
			}
		}
	})
}

// TestContextView checks that the read-only context reads like a plain
// object: every way of reading it, in sorted key order, with stable
// identities, and with each call seeing only its own context.
func TestContextView(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 1})
	type claims struct {
		Sub string `json:"sub"`
	}
	hctx := func(who string) map[string]any {
		return map[string]any{
			"phase": "introspection", "user": nil, "n": int64(5), "f": 1.5, "who": who,
			"client": map[string]any{"client_id": "c", "grant_types": []any{"b", "a"}, "attributes": map[string]any{"t": "x"}},
			"ss":     []string{"s1"}, "ms": map[string]string{"k": "v"}, "st": claims{"s"}, "nested": []any{map[string]any{"a": []any{int64(1)}}},
			"t": time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC),
		}
	}
	s := js(`function modifyResponse(r, c) {
		r.json = JSON.stringify(c);
		r.keys = Object.keys(c).join();
		r.forin = (function () { var k = []; for (var x in c) k.push(x); return k.join() })();
		r.in = ["phase" in c, "log" in c, "nope" in c, "toString" in c, c.hasOwnProperty("who")];
		r.spread = {...c.client};
		r.assign = Object.assign({}, c.client.attributes);
		r.entries = Object.entries(c.ms);
		r.arr = [Array.isArray(c.client.grant_types), c.client.grant_types.includes("a"), [...c.client.grant_types].sort(),
			c.client.grant_types.map(function (s) { return s.toUpperCase() }), c.client.grant_types.length, c.ss.concat(["s2"])];
		r.same = c.client === c.client && c.client.grant_types === c.client.grant_types && c.nested[0] === c.nested[0];
		r.types = [c.user, typeof c.n, c.f, c.missing === undefined, c.st.sub, c.t, c.nested[0].a[0], c.ms.k, c.ss[0], c.ss[1] === undefined];
		r.proto = Object.getPrototypeOf(c) === Object.prototype && Object.getPrototypeOf(c.ss) === Array.prototype;
		r.back = c.client;
		c.log(c.client);
		return true }`)
	for _, who := range []string{"first", "second"} {
		res := modify(t, e, s, map[string]any{}, hctx(who))
		got := res.Args[0].(map[string]any)
		want := map[string]any{
			"json": `{"client":{"attributes":{"t":"x"},"client_id":"c","grant_types":["b","a"]},"f":1.5,"ms":{"k":"v"},"n":5,` +
				`"nested":[{"a":[1]}],"phase":"introspection","ss":["s1"],"st":{"sub":"s"},"t":"2020-01-02T03:04:05Z","user":null,"who":"` + who + `"}`,
			"keys":    "client,f,ms,n,nested,phase,ss,st,t,user,who",
			"forin":   "client,f,ms,n,nested,phase,ss,st,t,user,who",
			"in":      []any{true, true, false, true, true},
			"spread":  map[string]any{"attributes": map[string]any{"t": "x"}, "client_id": "c", "grant_types": []any{"b", "a"}},
			"assign":  map[string]any{"t": "x"},
			"entries": []any{[]any{"k", "v"}},
			"arr":     []any{true, true, []any{"a", "b"}, []any{"B", "A"}, int64(2), []any{"s1", "s2"}},
			"same":    true,
			"types":   []any{nil, "number", 1.5, true, "s", "2020-01-02T03:04:05Z", int64(1), "v", "s1", true},
			"proto":   true,
			"back":    map[string]any{"attributes": map[string]any{"t": "x"}, "client_id": "c", "grant_types": []any{"b", "a"}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", who, got, want)
		}
		if len(res.Logs) != 1 || res.Logs[0] != `{"attributes":{"t":"x"},"client_id":"c","grant_types":["b","a"]}` {
			t.Errorf("logs %q", res.Logs)
		}
	}
	// "log" is context.log's.
	_, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Context: map[string]any{"log": 1}})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("context with a log key: %v", err)
	}
	// A value without a JSON form is found when the script reads it.
	bad := map[string]any{"ch": make(chan int), "ok": "fine"}
	res, err := e.Call(context.Background(), js(`function f(c) { return c.ok }`), &hooks.Call{Function: "f", Context: bad})
	if err != nil || res.Return != "fine" {
		t.Errorf("unread bad value: %+v, %v", res, err)
	}
	_, err = e.Call(context.Background(), js(`function f(c) { return c.ch }`), &hooks.Call{Function: "f", Context: bad})
	if se := wantScriptError(t, err, hooks.FailureException); !strings.Contains(se.Message, "TypeError") {
		t.Errorf("bad value read: %v", se)
	}
	// The context was only read.
	if !reflect.DeepEqual(hctx("first"), hctx("first")) {
		t.Errorf("context changed")
	}
}

func TestManyArguments(t *testing.T) {
	e := newEngine(Options{})
	s := js(`function f(a, b, c, context) { a.x = arguments.length; b.push(context.k); return [a, b, c, typeof context.log] }`)
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "f", Args: []any{map[string]any{}, []any{}, "s"}, Context: map[string]any{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{map[string]any{"x": int64(4)}, []any{"v"}, "s", "function"}
	if !reflect.DeepEqual(res.Return, want) || !reflect.DeepEqual(res.Args, want[:3]) {
		t.Errorf("Return %#v, Args %#v", res.Return, res.Args)
	}
	// Without a context the script still gets one, with log.
	s = js(`function f(a, context) { return [arguments.length, Object.keys(context).length, typeof context.log] }`)
	res, err = e.Call(context.Background(), s, &hooks.Call{Function: "f", Args: []any{1}})
	if err != nil || !reflect.DeepEqual(res.Return, []any{int64(2), int64(0), "function"}) {
		t.Errorf("%+v, %v", res, err)
	}
}

// recorder is a slog.Handler that keeps records and can block in Handle.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
	entered chan struct{} // if set, signalled on Handle
	release chan struct{} // if set, Handle waits for it
}

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recorder) WithGroup(string) slog.Handler            { return h }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	if h.entered != nil {
		h.entered <- struct{}{}
	}
	if h.release != nil {
		<-h.release
	}
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}

func TestContextLog(t *testing.T) {
	e := newEngine(Options{})
	rec := &recorder{}
	s := js(`function modifyResponse(r, context) {
		context.log("hello", 1, 2.5, true, null, undefined, {a: [1, "x"]}, "s p");
		context.log(new TypeError("bad"));
		context.log();
		var cyc = {}; cyc.self = cyc; context.log("cyc", cyc, 10n);
		return true }`)
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Context: map[string]any{}, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`hello 1 2.5 true null undefined {"a":[1,"x"]} s p`, "TypeError: bad", "", "cyc [object Object] 10"}
	if !reflect.DeepEqual(res.Logs, want) {
		t.Errorf("Logs = %q, want %q", res.Logs, want)
	}
	if len(rec.records) != len(want) {
		t.Fatalf("logger got %d records, want %d", len(rec.records), len(want))
	}
	r0 := rec.records[0]
	attrs := map[string]string{}
	r0.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if r0.Level != slog.LevelInfo || r0.Message != want[0] || attrs["script"] != "t" || attrs["function"] != "modifyResponse" {
		t.Errorf("record = %v %q %v", r0.Level, r0.Message, attrs)
	}

	t.Run("caps", func(t *testing.T) {
		rec := &recorder{}
		s := js(`function modifyResponse(r, context) {
			for (var i = 0; i < 150; i++) context.log("line", i);
			return true }`)
		res, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Logger: slog.New(rec)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Logs) != maxLogLines || res.Logs[99] != "line 99" {
			t.Errorf("%d log lines, last %q", len(res.Logs), res.Logs[len(res.Logs)-1])
		}
		if n := len(rec.records); n != maxLogLines+1 || rec.records[n-1].Level != slog.LevelWarn {
			t.Errorf("logger got %d records, want %d lines and a warning", n, maxLogLines)
		}
		s = js(`function modifyResponse(r, context) { context.log("x".repeat(10000)); context.log("é".repeat(3000)); return true }`)
		res, err = e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Logs {
			if len(l) > maxLogLineBytes || !strings.HasSuffix(l, truncatedMark) || !strings.Contains(l, "x") && !strings.Contains(l, "é") {
				t.Errorf("line of %d bytes: %q...", len(l), l[:20])
			}
		}
	})
	t.Run("default logger", func(t *testing.T) {
		rec := &recorder{}
		e := New(Options{Logger: slog.New(rec)})
		if _, err := e.Call(context.Background(), js(`function f(c) { c.log("via options") }`), &hooks.Call{Function: "f"}); err != nil {
			t.Fatal(err)
		}
		if len(rec.records) != 1 || rec.records[0].Message != "via options" {
			t.Errorf("records = %v", rec.records)
		}
	})
}

func TestException(t *testing.T) {
	e := newEngine(Options{})
	tests := []struct {
		src  string
		want []string
	}{
		{"function modifyResponse(r) {\n  throw new Error('boom')\n}", []string{"Error: boom", "line 2", "modifyResponse"}},
		{"function modifyResponse(r) { throw 'plain string' }", []string{"plain string", "line 1, column 30"}},
		{"function modifyResponse(r) { throw {code: 7} }", []string{`{"code":7}`}},
		{"function modifyResponse(r) { return r.missing.field }", []string{"TypeError", "field"}},
		{"function modifyResponse(r) { return undefinedName }", []string{"ReferenceError", "undefinedName"}},
		{"throw new Error('at top level')\nfunction modifyResponse(r) { return true }", []string{"at top level", "(at top level, line 1, column 7)"}},
		{"function modifyResponse(r) { throw {toJSON: function () { throw 1 }} }", []string{"[object Object]"}},
		{"async function modifyResponse(r) { throw new RangeError('async') }", []string{"rejected", "RangeError: async"}},
		{"function modifyResponse(r) { r.o = {}; Object.defineProperty(r.o, 'g', {enumerable: true, get: function () { throw new Error('getter') }}); return true }", []string{"getter"}},
		{"function modifyResponse(r) { Object.defineProperty(r, 'g', {enumerable: true, get: function () { return 1 }}); return true }", []string{"TypeError", "accessor"}},
		{"function modifyResponse(r) { try { null.x } catch (e) { r.caught = true } throw new Error('after catch') }", []string{"after catch"}},
	}
	for _, tt := range tests {
		res, err := e.Call(context.Background(), js(tt.src), &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
		se := wantScriptError(t, err, hooks.FailureException)
		if se.Script != "t" || se.Function != "modifyResponse" {
			t.Errorf("error names %s/%s", se.Script, se.Function)
		}
		for _, w := range tt.want {
			if !strings.Contains(se.Message, w) {
				t.Errorf("%q: message %q lacks %q", tt.src, se.Message, w)
			}
		}
		if res == nil || !res.Defined || res.Args != nil {
			t.Errorf("%q: result %+v", tt.src, res)
		}
	}
	// Logs written before a failure come back with the error.
	res, err := e.Call(context.Background(), js(`function f(c) { c.log("before"); throw new Error("x") }`), &hooks.Call{Function: "f"})
	wantScriptError(t, err, hooks.FailureException)
	if res == nil || len(res.Logs) != 1 || res.Logs[0] != "before" {
		t.Errorf("result %+v", res)
	}
}

func TestTimeout(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 1})
	const timeout = 50 * time.Millisecond
	ok := js(`function ok(r) { r.fine = true; return true }`)
	tests := []struct {
		name string
		body string
	}{
		{"busy loop", `while (true) {}`},
		{"loop catching everything", `for (;;) { try { while (true) {} } catch (e) {} finally { continue } }`},
		{"getter during export", `r.o = [{}]; Object.defineProperty(r.o[0], "x", {enumerable: true, get: function () { for (;;) {} }}); return true`},
		{"promise job", `Promise.resolve().then(function () { for (;;) {} }); return true`},
		{"backtracking regexp", `return /^(?=a)(a|aa)+\1$/.test("a".repeat(40) + "b")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &hooks.Script{Name: "loop", Version: tt.name, Timeout: timeout, Source: "function modifyResponse(r) { " + tt.body + " }\n" + ok.Source}
			start := time.Now()
			_, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
			elapsed := time.Since(start)
			se := wantScriptError(t, err, hooks.FailureTimeout)
			if !strings.Contains(se.Message, "50ms") {
				t.Errorf("message %q", se.Message)
			}
			limit := 10 * timeout
			if tt.name == "backtracking regexp" {
				limit = regexpMatchTimeout + 10*timeout
			}
			if elapsed > limit {
				t.Errorf("took %v, want < %v", elapsed, limit)
			}
			// The one runtime was discarded; the pool serves the next call
			// with a fresh one, without a pending interrupt.
			for i := 0; i < 3; i++ {
				res, err := e.Call(context.Background(), s, &hooks.Call{Function: "ok", Args: []any{map[string]any{}}})
				if err != nil || res.Args[0].(map[string]any)["fine"] != true {
					t.Fatalf("next call: %+v, %v", res, err)
				}
			}
		})
	}
	t.Run("context deadline", func(t *testing.T) {
		s := &hooks.Script{Name: "loop", Version: "ctx", Timeout: time.Minute, Source: `function modifyResponse(r) { while (true) {} }`}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := e.Call(ctx, s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
		se := wantScriptError(t, err, hooks.FailureTimeout)
		if d := time.Since(start); d > time.Second || !strings.Contains(se.Message, "context deadline") {
			t.Errorf("took %v: %v", d, se)
		}
		// An already expired context does not start the script.
		_, err = e.Call(ctx, s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
		wantScriptError(t, err, hooks.FailureTimeout)
	})
	t.Run("top level", func(t *testing.T) {
		s := &hooks.Script{Name: "top", Version: "1", Timeout: timeout, Source: `while (true) {} function f() {}`}
		_, err := e.Call(context.Background(), s, &hooks.Call{Function: "f"})
		wantScriptError(t, err, hooks.FailureTimeout)
	})
	t.Run("default timeout", func(t *testing.T) {
		e := newEngine(Options{DefaultTimeout: 20 * time.Millisecond})
		start := time.Now()
		_, err := e.Call(context.Background(), js(`function f() { for (;;) {} }`), &hooks.Call{Function: "f"})
		wantScriptError(t, err, hooks.FailureTimeout)
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("took %v", d)
		}
	})
}

func TestStackOverflow(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 1, MaxCallStackSize: 100})
	s := js(`function rec(n) { return rec(n + 1) + 1 }
		function modifyResponse(r) { try { return rec(0) } catch (e) { return "caught" } }
		function ok(r) { function d(n) { return n === 0 ? 0 : 1 + d(n - 1) } r.depth = d(90); return true }`)
	_, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
	wantScriptError(t, err, hooks.FailureStackOverflow)
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "ok", Args: []any{map[string]any{}}})
	if err != nil || res.Args[0].(map[string]any)["depth"] != int64(90) {
		t.Fatalf("after overflow: %+v, %v", res, err)
	}
}

// TestNoStateLeaks runs each script 50 times on one pooled runtime: every
// call must see the script as if it had never run before.
func TestNoStateLeaks(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want any // r.n on every call
	}{
		{"var counter", `var n = 0; function modifyResponse(r) { n++; r.n = n; return true }`, int64(1)},
		{"let counter", `let n = 0; function modifyResponse(r) { n++; r.n = n; return true }`, int64(1)},
		{"const object cache", `const cache = {}; function modifyResponse(r) { cache.c = (cache.c || 0) + 1; r.n = cache.c; return true }`, int64(1)},
		{"var object cache", `var cache = {}; function modifyResponse(r) { cache.c = (cache.c || 0) + 1; r.n = cache.c; return true }`, int64(1)},
		{"array cache", `var seen = []; function modifyResponse(r) { seen.push(1); r.n = seen.length; return true }`, int64(1)},
		{"Map cache", `const m = new Map(); function modifyResponse(r) { m.set("c", (m.get("c") || 0) + 1); r.n = m.get("c"); return true }`, int64(1)},
		{"closure counter", `var next = (function () { var n = 0; return function () { return ++n } })(); function modifyResponse(r) { r.n = next(); return true }`, int64(1)},
		{"class static", `class C { static n = 0 } function modifyResponse(r) { r.n = ++C.n; return true }`, int64(1)},
		{"function property", `function modifyResponse(r) { modifyResponse.n = (modifyResponse.n || 0) + 1; r.n = modifyResponse.n; return true }`, int64(1)},
		{"Date mutation", `var d = new Date(0); function modifyResponse(r) { d.setTime(d.getTime() + 1); r.n = d.getTime(); return true }`, int64(1)},
		{"Array.prototype", `function modifyResponse(r) { r.n = [].polluted === undefined ? 0 : 1; Array.prototype.polluted = 1; return true }`, int64(0)},
		{"Object.prototype", `function modifyResponse(r) { r.n = ({}).polluted === undefined && typeof ({}).toString === "function" ? 0 : 1; Object.prototype.polluted = 1; Object.prototype.toString = 1; return true }`, int64(0)},
		{"Object.prototype via __proto__", `function modifyResponse(r) { r.n = ({}).p === undefined ? 0 : 1; ({}).__proto__.p = 1; return true }`, int64(0)},
		{"builtin method replaced", `function modifyResponse(r) { r.n = JSON.stringify === JSON.parse ? 1 : 0; JSON.stringify = JSON.parse; Math.max = null; return true }`, int64(0)},
		{"globalThis property", `function modifyResponse(r) { r.n = globalThis.g === undefined ? 0 : 1; globalThis.g = 1; this.h = 1; return true }`, int64(0)},
		{"implicit global", `function modifyResponse(r) { r.n = typeof leaked === "undefined" ? 0 : 1; leaked = 1; return true }`, int64(0)},
		{"defineProperty on global", `function modifyResponse(r) { r.n = globalThis.d === undefined ? 0 : 1; try { Object.defineProperty(globalThis, "d", {value: 1}) } catch (e) {} return true }`, int64(0)},
		{"context.log property", `function modifyResponse(r, context) { r.n = context.log.x === undefined ? 0 : 1; context.log.x = 1; return true }`, int64(0)},
		{"wrapper via arguments.callee", `var w = arguments.callee; var seen = w.seen; w.seen = true; function modifyResponse(r) { r.n = seen ? 1 : 0; return true }`, int64(0)},
		{"wrapper prototype", `var p = arguments.callee.prototype; var seen = p.seen; p.seen = true; function modifyResponse(r) { r.n = seen ? 1 : 0; return true }`, int64(0)},
		{"hidden iterator prototype", `function modifyResponse(r) { var p = Object.getPrototypeOf([][Symbol.iterator]()); r.n = p.x === undefined ? 0 : 1; p.x = 1; Object.getPrototypeOf(p).y = 1; return true }`, int64(0)},
		{"generator prototype", `function modifyResponse(r) { var p = Object.getPrototypeOf(function* () {}); r.n = p.x === undefined ? 0 : 1; p.x = 1; p.prototype.x = 1; return true }`, int64(0)},
		{"Symbol.unscopables", `function modifyResponse(r) { var u = Array.prototype[Symbol.unscopables]; r.n = u.x === undefined ? 0 : 1; u.x = 1; return true }`, int64(0)},
		{"RegExp lastIndex", `var re = /a/g; function modifyResponse(r) { re.test("aaa"); r.n = re.lastIndex; return true }`, int64(1)},
		{"eval gone", `function modifyResponse(r) { r.n = typeof eval === "undefined" ? 0 : 1; return true }`, int64(0)},
		{"Function constructor globals", `function modifyResponse(r) { var f = Function("return typeof fx")(); r.n = f === "undefined" ? 0 : 1; Function("fx = 1")(); return true }`, int64(0)},
		{"function property via arguments.callee", `function modifyResponse(r) { var f = arguments.callee; r.n = f.n ? 1 : 0; f.n = 1; return true }`, int64(0)},
		{"helper's prototype via new", `function H() {} function modifyResponse(r) { var p = Object.getPrototypeOf(new H()); r.n = p.x ? 1 : 0; p.x = 1; return true }`, int64(0)},
		{"once: helpers only called", `"use strict"; function h() { return this } function g(a) { a.push(1); return a.length } function modifyResponse(r) { r.n = (h() === undefined ? 0 : 1) + g([]) - 1; return true }`, int64(0)},
		{"once: prototype of a plain object", `function modifyResponse(r) { var p = Object.getPrototypeOf(new Object()); r.n = p.x ? 1 : 0; try { p.x = 1 } catch (e) {} return true }`, int64(0)},
		{"strict Array.prototype", `"use strict"; function modifyResponse(r) { r.n = [].polluted === undefined ? 0 : 1; try { Array.prototype.polluted = 1 } catch (e) { r.threw = e instanceof TypeError } return true }`, int64(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(Options{MaxRuntimes: 1})
			s := js(tt.src)
			var first *vmState
			for i := 0; i < 50; i++ {
				res := modify(t, e, s, map[string]any{}, map[string]any{"phase": "token"})
				got := res.Args[0].(map[string]any)
				if !reflect.DeepEqual(got["n"], tt.want) {
					t.Fatalf("call %d: r.n = %#v, want %#v (r = %v)", i+1, got["n"], tt.want, got)
				}
				if threw, ok := got["threw"]; ok && threw != true {
					t.Fatalf("call %d: strict assignment did not throw a TypeError", i+1)
				}
				st := pooled(t, e, "t")
				if first == nil {
					first = st
				} else if st != first {
					t.Fatalf("call %d ran on a new runtime", i+1)
				}
			}
		})
	}
}

// TestRunsOnce: which scripts run their top level once per runtime, and
// that every example script does.
func TestRunsOnce(t *testing.T) {
	tests := []struct {
		src  string
		once bool
	}{
		{`function modifyResponse(r) { r.x = 1; return true }`, true},
		{`"use strict";
		  // helpers
		  function pick(c, k) { return c[k] || "" };
		  async function modifyResponse(r, context) { r.x = pick(context.config, "x"); return helper(r) }
		  function helper(r) { var modify = function () {}; modify(); return true }`, true},
		{`var n = 0; function modifyResponse(r) { return true }`, false},
		{`const T = {a: 1}; function modifyResponse(r) { return true }`, false},
		{`function modifyResponse(r) { return true } modifyResponse = null`, false},
		{`function modifyResponse(r) { modifyResponse = function () { return false }; return true }`, false},
		{`function modifyResponse(r) { [modifyResponse] = [1]; return true }`, false},
		{`function modifyResponse(r) { for (modifyResponse in r) {} return true }`, false},
		{`function g() {} function modifyResponse(r) { g.x = 1; return true }`, false},
		{`function g() {} function modifyResponse(r) { r.f = {g}; return true }`, false},
		{`function g() {} function modifyResponse(r) { return [g].length > 0 }`, false},
		{`function g() {} function modifyResponse(r) { return new g() !== null }`, false},
		{`function modifyResponse(r) { return arguments.length > 0 }`, false},
		{`function* gen() {} function modifyResponse(r) { return true }`, false},
		{`class C {} function modifyResponse(r) { return true }`, false},
		{`if (true) { function modifyResponse(r) { return true } }`, false},
		{`function modifyResponse(r) { return true } modifyResponse(1)`, false},
	}
	for _, tt := range tests {
		c, err := compileScript("t", tt.src, 1<<16)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		if c.once != tt.once {
			t.Errorf("%s: once = %v, want %v", tt.src, c.once, tt.once)
		}
	}
	files, err := filepath.Glob("../examples/scripts/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("example scripts: %v %v", files, err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := compileScript(f, string(src), 1<<16); err != nil || !c.once {
			t.Errorf("%s: compiled %v, once %v", f, err, c != nil && c.once)
		}
	}
	// A runtime of a once script holds its functions; calls use them.
	e := newEngine(Options{MaxRuntimes: 1})
	res := modify(t, e, js(`function modifyResponse(r) { r.x = 1; return true }`), map[string]any{}, nil)
	if res.Args[0].(map[string]any)["x"] != int64(1) || pooled(t, e, "t").fns == nil {
		t.Errorf("once script: %+v", res)
	}
}

func TestNoForbiddenGlobals(t *testing.T) {
	e := newEngine(Options{})
	names := []string{"require", "setTimeout", "setInterval", "setImmediate", "clearTimeout", "process", "fetch", "XMLHttpRequest", "eval", "module", "exports", "Deno", "Bun"}
	var b strings.Builder
	b.WriteString("function f() { return [")
	for i, n := range names {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "typeof %s", n)
	}
	b.WriteString("] }")
	res, err := e.Call(context.Background(), js(b.String()), &hooks.Call{Function: "f"})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Return.([]any) {
		if v != "undefined" {
			t.Errorf("typeof %s = %v", names[i], v)
		}
	}
}

func TestConcurrentCalls(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 4})
	// A generous timeout: 16 callers share 4 runtimes, and under -race on
	// a busy machine waiting for one can take longer than the default.
	s := &hooks.Script{Name: "t", Version: "1", Timeout: 10 * time.Second, Source: `var calls = 0;
		function modifyResponse(r, context) {
			calls++;
			r.out = r.in * 2; r.who = context.who; r.calls = calls;
			r.list = [];
			for (var i = 0; i < 20; i++) r.list.push(r.in + i);
			return true }`}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				in := int64(g*1000 + i)
				res, err := e.Call(context.Background(), s, &hooks.Call{
					Function: "modifyResponse",
					Args:     []any{map[string]any{"in": in}},
					Context:  map[string]any{"who": fmt.Sprint(g)},
				})
				if err != nil {
					errs <- err
					return
				}
				got := res.Args[0].(map[string]any)
				list := got["list"].([]any)
				if got["out"] != 2*in || got["who"] != fmt.Sprint(g) || got["calls"] != int64(1) || len(list) != 20 || list[19] != in+19 {
					errs <- fmt.Errorf("goroutine %d call %d: %v", g, i, got)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBusy(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(Options{MaxRuntimes: 1, Registerer: reg})
	rec := &recorder{entered: make(chan struct{}, 1), release: make(chan struct{})}
	s := js(`function modifyResponse(r, context) { context.log("blocking"); return true }`)
	done := make(chan error, 1)
	go func() {
		_, err := e.Call(context.Background(), &hooks.Script{Name: "t", Version: "1", Source: s.Source, Timeout: 10 * time.Second},
			&hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Logger: slog.New(rec)})
		done <- err
	}()
	<-rec.entered // the only runtime is now held by the first call

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.Call(ctx, s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
	wantScriptError(t, err, hooks.FailureBusy)
	if d := time.Since(start); d < 25*time.Millisecond || d > time.Second {
		t.Errorf("busy after %v, want about 30ms", d)
	}
	// Waiting is also bounded by the script's own timeout.
	short := &hooks.Script{Name: "t", Version: "1", Source: s.Source, Timeout: 20 * time.Millisecond}
	_, err = e.Call(context.Background(), short, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}})
	wantScriptError(t, err, hooks.FailureBusy)
	if got := metricValue(t, reg, "keyhook_script_errors_total", "script=t", "kind=busy"); got != 2 {
		t.Errorf("busy errors = %v, want 2", got)
	}

	close(rec.release)
	if err := <-done; err != nil {
		t.Fatalf("blocked call: %v", err)
	}
	if _, err := e.Call(context.Background(), s, &hooks.Call{Function: "modifyResponse", Args: []any{map[string]any{}}, Logger: quiet}); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestNewVersionReplacesProgram(t *testing.T) {
	e := newEngine(Options{})
	call := &hooks.Call{Function: "f"}
	for i, src := range []string{`function f() { return 1 }`, `function f() { return 2 }`, `function g() {}`} {
		v := fmt.Sprint(i + 1)
		res, err := e.Call(context.Background(), &hooks.Script{Name: "s", Version: v, Source: src}, call)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0, 1:
			if res.Return != int64(i+1) {
				t.Errorf("version %s returned %v", v, res.Return)
			}
		case 2:
			if res.Defined {
				t.Errorf("version 3 still defines f")
			}
		}
		e.mu.Lock()
		n, sc := len(e.scripts), e.scripts["s"]
		e.mu.Unlock()
		if n != 1 || sc.version != v {
			t.Errorf("cache holds %d entries, version %s; want 1, %s", n, sc.version, v)
		}
	}
	// Same version, same source: the entry (and its program) is reused.
	e.mu.Lock()
	before := e.scripts["s"]
	e.mu.Unlock()
	e.Call(context.Background(), &hooks.Script{Name: "s", Version: "3", Source: `function g() {}`}, call)
	e.mu.Lock()
	after := e.scripts["s"]
	e.mu.Unlock()
	if before != after {
		t.Errorf("unchanged script was recompiled")
	}
	e.Forget("s")
	e.mu.Lock()
	n := len(e.scripts)
	e.mu.Unlock()
	if n != 0 {
		t.Errorf("Forget left %d entries", n)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(Options{Registerer: reg})
	s := &hooks.Script{Name: "m", Version: "1", Timeout: 20 * time.Millisecond, Source: `function ok() { return true } function bad() { throw 1 } function slow() { for (;;) {} }`}
	for _, fn := range []hooks.Function{"ok", "ok", "bad", "slow", "missing"} {
		e.Call(context.Background(), s, &hooks.Call{Function: fn})
	}
	if got := metricValue(t, reg, "keyhook_script_calls_total", "script=m", "function=ok"); got != 2 {
		t.Errorf("calls{ok} = %v", got)
	}
	if got := metricValue(t, reg, "keyhook_script_calls_total", "script=m", "function=missing"); got != 0 {
		t.Errorf("calls{missing} = %v", got)
	}
	if got := metricValue(t, reg, "keyhook_script_errors_total", "script=m", "kind=exception"); got != 1 {
		t.Errorf("errors{exception} = %v", got)
	}
	if got := metricValue(t, reg, "keyhook_script_errors_total", "script=m", "kind=timeout"); got != 1 {
		t.Errorf("errors{timeout} = %v", got)
	}
	if got := metricValue(t, reg, "keyhook_script_duration_seconds", "script=m"); got != 4 {
		t.Errorf("duration samples = %v, want 4", got)
	}
	// A second engine on the same registry shares the collectors.
	e2 := newEngine(Options{Registerer: reg})
	e2.Call(context.Background(), s, &hooks.Call{Function: "ok"})
	if got := metricValue(t, reg, "keyhook_script_calls_total", "script=m", "function=ok"); got != 3 {
		t.Errorf("shared calls{ok} = %v", got)
	}
}

func TestPanicsBecomeErrors(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 1})
	h := &panicker{}
	s := js(`function f(c) { c.log("x"); return 1 }`)
	_, err := e.Call(context.Background(), s, &hooks.Call{Function: "f", Logger: slog.New(h)})
	se := wantScriptError(t, err, hooks.FailureException)
	if !strings.Contains(se.Message, "handler exploded") {
		t.Errorf("message %q", se.Message)
	}
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "f", Logger: quiet})
	if err != nil || res.Return != int64(1) {
		t.Errorf("after panic: %+v, %v", res, err)
	}
}

type panicker struct{ recorder }

func (p *panicker) Handle(context.Context, slog.Record) error { panic("handler exploded") }

// metricValue gathers reg and returns the counter value (or histogram
// sample count) of the series of family name with exactly the given
// "label=value" pairs.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(labels, ",")
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			var pairs []string
			for _, l := range labels {
				k, _, _ := strings.Cut(l, "=")
				pairs = append(pairs, k+"="+got[k])
			}
			if len(got) != len(labels) || strings.Join(pairs, ",") != want {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestPoolPrefersIdleRuntimes(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 4})
	s := js(`function f() { return 1 }`)
	for i := 0; i < 10; i++ {
		if _, err := e.Call(context.Background(), s, &hooks.Call{Function: "f"}); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	sc := e.scripts["t"]
	e.mu.Unlock()
	if n := sc.idleCount(); n != 1 {
		t.Errorf("sequential calls made %d runtimes, want 1", n)
	}
}

// TestLanguageStillWorks guards against over-hardening: everyday
// JavaScript must behave normally in a frozen realm.
func TestLanguageStillWorks(t *testing.T) {
	e := newEngine(Options{MaxRuntimes: 1})
	s := js(`"use strict";
		const ROLES = Object.freeze({admin: ["read", "write"], user: ["read"]});
		const re = /-(\w)/g;
		class Claim {
			#secret = 1;
			constructor(name) { this.name = name }
			get upper() { return this.name.toUpperCase() }
			toString() { return "Claim(" + this.name + ")" }
			static of(n) { return new Claim(n) }
		}
		function* count(n) { for (let i = 0; i < n; i++) yield i }
		function modifyResponse(r, context) {
			const parsed = JSON.parse('{"a": [1, 2, {"b": "c"}]}');
			const m = new Map(Object.entries({x: 1, y: 2}));
			const set = new Set([3, 1, 3]);
			const {a: [first, ...rest]} = parsed;
			const obj = {};
			Object.defineProperty(obj, "hidden", {value: 1, enumerable: false});
			obj.toString = function () { return "custom" };
			const camel = "foo-bar-baz".replace(re, (_, c) => c.toUpperCase());
			const c = Claim.of("sub");
			r.out = {
				first, rest, camel,
				sorted: [3, 1, 2].sort((x, y) => x - y),
				mapSize: m.size, setList: [...set],
				gen: [...count(3)], from: Array.from({length: 2}, (_, i) => i * 2),
				template: ` + "`${c.name}-${c.upper}`" + `,
				str: String(c), objStr: String(obj), hidden: obj.hidden,
				roles: ROLES[context.role].join(","),
				math: Math.max(1, 5, 3) + Math.round(2.4),
				date: new Date(Date.UTC(2020, 0, 2)).toISOString(),
				inst: c instanceof Claim && [] instanceof Array,
				keys: Object.keys(r).sort(),
				json: JSON.stringify({z: [1, "2"]}),
				err: (() => { try { null.x } catch (e) { return e instanceof TypeError } })(),
				frozenOwn: (() => { const o = Object.freeze({a: 1}); try { o.a = 2 } catch (e) { return "threw" } return o.a })(),
				num: (1234.5678).toFixed(2), parsedInt: parseInt("42px", 10),
				encoded: encodeURIComponent("a b&c"),
				sym: typeof Symbol.iterator,
				proto: Object.getPrototypeOf(Object.create(null)) === null,
			};
			return true;
		}`)
	want := map[string]any{
		"first": int64(1), "rest": []any{int64(2), map[string]any{"b": "c"}}, "camel": "fooBarBaz",
		"sorted": []any{int64(1), int64(2), int64(3)}, "mapSize": int64(2), "setList": []any{int64(3), int64(1)},
		"gen": []any{int64(0), int64(1), int64(2)}, "from": []any{int64(0), int64(2)},
		"template": "sub-SUB", "str": "Claim(sub)", "objStr": "custom", "hidden": int64(1),
		"roles": "read,write", "math": int64(7), "date": "2020-01-02T00:00:00.000Z", "inst": true,
		"keys": []any{"in"}, "json": `{"z":[1,"2"]}`, "err": true, "frozenOwn": "threw",
		"num": "1234.57", "parsedInt": int64(42), "encoded": "a%20b%26c", "sym": "symbol", "proto": true,
	}
	for i := 0; i < 3; i++ {
		res := modify(t, e, s, map[string]any{"in": 1}, map[string]any{"role": "admin"})
		got := res.Args[0].(map[string]any)["out"]
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("call %d:\n got %#v\nwant %#v", i+1, got, want)
		}
	}
}
