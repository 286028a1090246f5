package scripts

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// TestArgumentViews drives the mutable argument views (rwview.go) through
// what scripts do with a response: each case's function returns what it
// observed, and the argument is checked as exported after the call.
func TestArgumentViews(t *testing.T) {
	e := newEngine(Options{})
	input := func() map[string]any {
		return map[string]any{
			"b": "bee", "a": int64(1), "c": true,
			"aud":  []any{"x", "y"},
			"obj":  map[string]any{"k": "v", "list": []any{map[string]any{"n": int64(1)}}},
			"none": nil,
		}
	}
	tests := []struct {
		name     string
		strict   bool
		body     string
		observed any
		want     func(m map[string]any)
	}{
		{"keys sorted, then added in order", false,
			`r.z = 1; r.d = 2; delete r.a; r.a = 3; return Object.keys(r).join(",")`,
			"aud,b,c,none,obj,z,d,a",
			func(m map[string]any) { m["z"], m["d"], m["a"] = int64(1), int64(2), int64(3) }},
		{"for-in skips keys deleted meanwhile", false,
			`var seen = []; for (var k in r) { seen.push(k); delete r.c; r.later = 1 } return seen.join(",")`,
			"a,aud,b,none,obj",
			func(m map[string]any) { delete(m, "c"); m["later"] = int64(1) }},
		{"in, hasOwnProperty, entries, values", false,
			`return ["a" in r, "q" in r, "toString" in r, r.hasOwnProperty("none"), r.hasOwnProperty("toString"),
				Object.entries(r).length, Object.values(r.obj).length, r.none === null, r.missing === undefined]`,
			[]any{true, false, true, true, false, int64(6), int64(2), true, true}, nil},
		{"JSON.stringify and spread", false,
			`var s = JSON.stringify(r); var c = {...r}; c.b = "copy"; return [s, r.b, Object.keys(c).length]`,
			[]any{`{"a":1,"aud":["x","y"],"b":"bee","c":true,"none":null,"obj":{"k":"v","list":[{"n":1}]}}`, "bee", int64(6)}, nil},
		{"a nested view is the same object on every read", false,
			`var o = r.obj; o.k = "w"; return [r.obj === o, r.aud === r.aud, r.obj.list[0] === o.list[0]]`,
			[]any{true, true, true},
			func(m map[string]any) { m["obj"].(map[string]any)["k"] = "w" }},
		{"arrays", false,
			`r.aud.push("z"); r.aud.sort().reverse(); r.aud.splice(1, 1);
				return [Array.isArray(r.aud), r.aud.length, r.aud.indexOf("x"), r.aud.map(function (a) { return a.toUpperCase() }).join(""),
					[].concat(r.aud, ["w"]).length, Array.from(r.aud).length, [...r.aud].length]`,
			[]any{true, int64(2), int64(1), "ZX", int64(3), int64(2), int64(2)},
			func(m map[string]any) { m["aud"] = []any{"z", "x"} }},
		{"growing an array leaves nulls, as holes do", false,
			`r.aud[4] = "e"; var a = r.aud; a.length = 6; return [a.length, a[3] === undefined, 3 in a]`,
			[]any{int64(6), true, true},
			func(m map[string]any) { m["aud"] = []any{"x", "y", nil, nil, "e", nil} }},
		{"truncating and deleting elements", false,
			`r.obj.list.length = 0; delete r.aud[0]; return r.aud[0] === undefined`,
			true,
			func(m map[string]any) {
				m["aud"] = []any{nil, "y"}
				m["obj"].(map[string]any)["list"] = []any{}
			}},
		{"an index no result could hold is refused", true,
			`try { r.aud[2000000] = 1 } catch (e) { return [e instanceof TypeError, r.aud.length] }`,
			[]any{true, int64(2)}, nil},
		{"a view moved, detached or kept twice", false,
			`var o = r.obj; delete r.obj; r.moved = o; r.twice = [r.aud, r.aud]; var a = r.aud; r.aud = "flat"; a.push("late"); return r.obj`,
			nil,
			func(m map[string]any) {
				m["moved"] = m["obj"]
				delete(m, "obj")
				m["twice"] = []any{[]any{"x", "y", "late"}, []any{"x", "y", "late"}}
				m["aud"] = "flat"
			}},
		{"views inside script objects", false,
			`r.wrap = {inner: r.obj.list, other: new Map()}; return true`,
			true,
			func(m map[string]any) {
				m["wrap"] = map[string]any{"inner": []any{map[string]any{"n": int64(1)}}, "other": map[string]any{}}
			}},
		{"define a plain data property", true,
			`Object.defineProperty(r, "d", {value: 1, writable: true, enumerable: true, configurable: true}); return Object.getOwnPropertyDescriptor(r, "d").value`,
			int64(1),
			func(m map[string]any) { m["d"] = int64(1) }},
		{"what views do not support throws in strict code", true,
			`var errs = [];
				[function () { Object.freeze(r) }, function () { Object.defineProperty(r, "g", {get: function () { return 1 }}) },
				 function () { Object.defineProperty(r, "ro", {value: 1, writable: false}) }, function () { r[Symbol.iterator] = 1 },
				 function () { r.aud.name = "n" }].forEach(function (f) { try { f(); errs.push("none") } catch (e) { errs.push(e.name) } });
				return errs.join(",")`,
			"TypeError,TypeError,TypeError,TypeError,TypeError", nil},
		{"prototype changes stay with the view", false,
			`Object.setPrototypeOf(r, {inherited: 1}); return [r.inherited, Object.keys(r).indexOf("inherited")]`,
			[]any{int64(1), int64(-1)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "function modifyResponse(r) {\n" + tt.body + "\n}"
			if tt.strict {
				src = `"use strict";` + src
			}
			res, err := e.Call(context.Background(), js(src), &hooks.Call{Function: "modifyResponse", Args: []any{input()}})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Return, tt.observed) {
				t.Errorf("observed %#v, want %#v", res.Return, tt.observed)
			}
			want := input()
			if tt.want != nil {
				tt.want(want)
			}
			if !reflect.DeepEqual(res.Args[0], want) {
				t.Errorf("argument after the call\n %#v\nwant\n %#v", res.Args[0], want)
			}
		})
	}
}

// TestArgumentViewResultsShareNothing: a view reachable twice is exported
// as two separate values, so a caller editing one does not edit the other.
func TestArgumentViewResultsShareNothing(t *testing.T) {
	e := newEngine(Options{})
	// A nil map argument is an empty object.
	res, err := e.Call(context.Background(), js(`function f(r) { r.x = Object.keys(r).length; return true }`),
		&hooks.Call{Function: "f", Args: []any{map[string]any(nil)}})
	if err != nil || !reflect.DeepEqual(res.Args[0], map[string]any{"x": int64(0)}) {
		t.Fatalf("nil map: %+v, %v", res, err)
	}
	res, err = e.Call(context.Background(), js(`function f(r) { r.copy = r.obj; r.list2 = r.list; return true }`),
		&hooks.Call{Function: "f", Args: []any{map[string]any{"obj": map[string]any{"k": "v"}, "list": []any{"a"}}}})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Args[0].(map[string]any)
	m["obj"].(map[string]any)["k"] = "changed"
	m["list"].([]any)[0] = "changed"
	if m["copy"].(map[string]any)["k"] != "v" || m["list2"].([]any)[0] != "a" {
		t.Errorf("results share storage: %#v", m)
	}
}

// TestArgumentViewLimits: a cycle through views and an array grown past
// what a result may hold fail as wrong_type, not by exhausting memory.
func TestArgumentViewLimits(t *testing.T) {
	e := newEngine(Options{})
	for _, body := range []string{
		`r.obj.back = r; return true`,
		`r.list.push(r.list); return true`,
		`r.list.length = 1000000; r.copies = [r.list, r.list]; return true`,
	} {
		s := js("function f(r) { " + body + " }")
		s.Timeout = 20 * time.Second // the race detector makes a million elements slow
		_, err := e.Call(context.Background(), s,
			&hooks.Call{Function: "f", Args: []any{map[string]any{"obj": map[string]any{}, "list": []any{}}}})
		se := wantScriptError(t, err, hooks.FailureWrongType)
		if !strings.Contains(se.Message, "cycle") && !strings.Contains(se.Message, "more than") {
			t.Errorf("%s: %s", body, se.Message)
		}
	}
}

// TestArgumentViewsMatchPlainObjects is a differential test: random
// sequences of everyday edits run on the argument (a view) and on a plain
// copy of it made with JSON.parse, in the same call; both must end up with
// the same JSON, key order included. Edits that make holes in arrays or
// give arrays named properties are left out: that is where views differ
// (see rwview.go).
func TestArgumentViewsMatchPlainObjects(t *testing.T) {
	ops := []string{
		`X.a = 1`, `X.s = "str"`, `delete X.b`, `delete X.missing`, `X.b = {deep: {x: [1, 2]}}`,
		`X.aud.push("z")`, `X.aud.splice(0, 1)`, `X.aud.unshift("first")`, `X.aud.reverse()`, `X.aud.sort()`,
		`X.aud.pop()`, `X.aud.shift()`, `X.aud = X.aud.concat(["c"])`, `X.aud.length = 0`, `X.aud.fill("f")`,
		`X.obj.k = X.aud`, `X.obj.list.push({n: X.aud.length})`, `X.obj.list[0].n = 9`, `delete X.obj.k`,
		`X.n = Object.keys(X).length`, `X.keys = Object.keys(X).join(",")`, `X.okeys = Object.keys(X.obj).join(",")`,
		`for (var k in X) { if (k.length === 1) delete X[k] }`, `for (var k in X.obj) X["o_" + k] = typeof X.obj[k]`,
		`X.m = Object.assign({}, X.obj)`, `Object.assign(X, {p: 1, q: [1, 2]})`, `X.e = Object.entries(X.obj).length`,
		`X.j = JSON.stringify(X.obj)`, `X.d = "aud" in X`, `X.h = X.hasOwnProperty("b")`, `X.v = Object.values(X).length`,
		`X.sp = {...X.obj, extra: true}`, `X.arr = [...X.aud]`, `X.idx = X.aud.indexOf("y")`, `X.joined = X.aud.join("|")`,
		`X.mapped = X.aud.map(function (a) { return typeof a })`, `X.aud[0] = "zero"`, `X.lst = X.obj.list`, `X.lst.push(X.aud)`,
		`X.sum = X.aud.reduce(function (s, a) { return s + String(a).length }, 0)`, `X.a = undefined`, `X.f = function () {}`,
		`X.nested = {in: X.obj}`, `delete X.aud`, `X.aud = ["r", "e"]`, `X.toString = "shadow"`, `X.constructor = 1`,
	}
	e := newEngine(Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 150 { // each is a new script, so a new runtime: 4000 pass too, slowly
		var seq []string
		for range 1 + rng.IntN(8) {
			seq = append(seq, ops[rng.IntN(len(ops))])
		}
		// Each edit is guarded: when one throws on the view, it must throw
		// on the copy too (and the other way round).
		var onR, onC strings.Builder
		for j, op := range seq {
			fmt.Fprintf(&onR, "try { %s } catch (e) { r.err%d = e.name }\n", strings.ReplaceAll(op, "X", "r"), j)
			fmt.Fprintf(&onC, "try { %s } catch (e) { c.err%d = e.name }\n", strings.ReplaceAll(op, "X", "c"), j)
		}
		src := "function f(r) {\nvar c = JSON.parse(JSON.stringify(r));\n" + onR.String() + onC.String() + "return JSON.stringify(c) }"
		res, err := e.Call(context.Background(), js(src), &hooks.Call{Function: "f", Args: []any{map[string]any{
			"b": "bee", "a": int64(1), "aud": []any{"x", "y"}, "obj": map[string]any{"k": "v", "list": []any{map[string]any{"n": int64(1)}}},
		}}})
		if err != nil {
			t.Fatalf("sequence %d %q: %v", i, seq, err)
		}
		want, err := json.Marshal(res.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		// Compare as JSON documents, with the view's key order taken
		// from the copy: re-encode the copy through the same Go types.
		var plainCopy any
		if err := json.Unmarshal([]byte(res.Return.(string)), &plainCopy); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(plainCopy)
		if string(got) != string(want) {
			t.Errorf("sequence %d %q:\n view: %s\n copy: %s", i, seq, want, got)
		}
	}
}
