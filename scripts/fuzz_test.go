package scripts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dop251/goja"
)

// The fuzz targets here check what comes back from a script: FuzzExport
// exports values made by arbitrary JavaScript (exporter, convert.go) and
// FuzzArgumentView edits the mutable argument views of rwview.go and
// exports them. The seeds (below and in testdata/fuzz) run with the
// ordinary tests; `make fuzz` runs each target for a few seconds.
//
// Both only assert what the code promises. Known defects are let through
// on purpose, so that `make test` stays green until they are fixed: each
// is numbered, and a check that fails on one skips the input naming it
// (go test -v shows "known defect N"). When one is fixed, delete its
// tolerance; the seeds named after it then assert it.
//
//  1. exporter lists an object's keys (goja's Object.Keys) before its
//     budget is charged, so a 10 MB typed array, or a proxy of a String
//     object of a long string, costs seconds of Go time and gigabytes
//     outside any deadline before "more than 1048576 values" comes back.
//     fuzzCheapKeys skips such values (seeds typed-array-large,
//     proxied-long-string-object).
//  2. An argument view stays live once exported: its map or slice is the
//     result. A getter that runs later in the same export and edits the
//     argument changes the result already handed out, and shrinking then
//     regrowing an array leaves rwview's hole{} markers in it
//     (FuzzArgumentView seed getter-regrows-array).
//  3. Depth is counted three ways: plain accepts arguments maxDepth+1
//     levels deep, exporter maxDepth levels of JavaScript values, and
//     the untouched parts of an argument view are not counted at all. So
//     an argument 101 levels deep that the script merely reads fails to
//     export (seed depth-101-read), and an argument 100 deep that the
//     script wraps in an object exports 101 deep, where the same edit of
//     a plain copy fails (seed deep-untouched-subtree-wrapped).
//  4. (fixed) A String object (new String("s")) was left out, where
//     JSON.stringify gives its string (seed string-object).
//  5. A key that is not valid UTF-16 ("\ud800") is left out: goja hands it
//     to Go as U+FFFD, under which exporter finds nothing (seed
//     lone-surrogates).
//  6. (fixed) A Date outside years 0-9999 became "275760-09-13T00:00:00.000Z",
//     not what toISOString gives, "+275760-09-13T00:00:00.000Z" (seed
//     dates-far).
//  7. Sorting an array view that holds itself orders it differently from
//     a plain array: during sort, String() of the view's self element is
//     the array mid-sort, where a plain array's is "" (its cycle). Later
//     edits then keep or drop other elements (FuzzArgumentView seed
//     self-containing-array-sorted).
//
// Not asserted, as JSON.stringify throws on it: a BigInt object
// (Object(1n)) exports as {} (goja's class name for it is "Object", so
// exporter's "BigInt" case never matches).

// fuzzTimeout interrupts a runtime that fuzzed code keeps busy.
const fuzzTimeout = 50 * time.Millisecond

// fuzzCheckTimeout bounds the checks of one value, which run getters and
// walk values up to exporter's budget.
const fuzzCheckTimeout = time.Second

// fuzzMaxWork bounds the property reads of fuzzCheapKeys and analyze: a
// value that needs more is skipped, or not analyzed.
const fuzzMaxWork = 1 << 16

// fuzzMaxKeys is the most index keys fuzzCheapKeys lets one object have.
const fuzzMaxKeys = 1 << 14

// fuzzPrelude runs in every fuzz runtime before any fuzzed code, which may
// replace the globals: it captures the intrinsics the checks use and the
// helpers generated programs call (see fuzzProgram).
var fuzzPrelude = goja.MustCompile("fuzz-prelude.js", `(function () {
	"use strict";
	var H = {
		px: function (a) { return new Proxy(Object(a), {}) },
		pxTraps: function (a) {
			return new Proxy({}, {
				ownKeys: function () { return ["k", "l"] },
				getOwnPropertyDescriptor: function () { return {value: a, enumerable: true, configurable: true, writable: true} },
				get: function () { return a }
			})
		},
		getter: function (a) { return {get g() { return a }} },
		thrower: function (a) { return {v: a, get g() { throw new Error("getter") }} },
		counter: function (a) { var n = 0; return {get g() { return [a, n++] }} },
		grower: function (a) {
			var o = {x: a};
			Object.defineProperty(o, "g", {enumerable: true, get: function () { o["k" + Object.keys(o).length] = a; return 1 }});
			return o
		},
		shrinker: function (a) { var r = [a, a]; r.push({get g() { r.length = 0; r.length = 4; return a }}); return r },
		cyc: function (a) { var o = {v: a}; o.self = o; return o },
		cycArr: function (a) { var r = [a]; r.push(r); return r },
		deep: function (a, n) { for (var i = 0; i < n; i++) a = [a]; return a },
		deepObj: function (a, n) { for (var i = 0; i < n; i++) a = {a: a}; return a },
		dag: function (a, n) { for (var i = 0; i < n % 17; i++) a = [a, a]; return a },
		sparse: function (a) { var r = []; r[7] = a; return r },
		long: function (a, n) { var r = [a]; r.length = [2, 1000, 1 << 20, 1e9, 2 ** 32 - 1][n % 5]; return r },
		hidden: function (a) { return Object.defineProperty({}, "h", {value: a}) },
		sym: function (a) { var o = {}; o[Symbol("k")] = a; return o },
		toJSON: function (a) { return {v: a, toJSON: function () { return "json" }} },
		frozen: function (a) { return Object.freeze({v: a}) },
		create: function (a) { return Object.create(Object(a), {own: {value: a, enumerable: true}}) },
		twice: function (a) { return [a, a] },
		revoked: function () { var p = Proxy.revocable({}, {}); p.revoke(); return p.proxy },
		named: function (a) { var r = [a]; r.name = a; return r },
		elemGetter: function (a) { return Object.defineProperty([1, 2], 0, {get: function () { return a }, enumerable: true}) },
		protoHole: function (a) {
			Object.defineProperty(Array.prototype, 1, {get: function () { return a }, configurable: true});
			return [0, , 2]
		},
		dateJSON: function (a) { var d = new Date(0); d.toJSON = function () { return a }; return d },
		dateValueOf: function (a) { var d = new Date(0); d.valueOf = function () { return NaN }; d.v = a; return d },
		strProps: function (a) { var s = new String("w"); s.v = a; return s },
		args: function (a) { return (function () { return arguments })(a, a) },
		promise: function (a) { return Promise.resolve(a) },
		bound: function (a) { return function () { return a }.bind(null) },
		error: function (a) { var e = new Error("e"); e.v = a; return e },
		map: function (a) { var m = new Map([[a, a]]); m.v = a; return m },
		floats: function (a) { return new Float64Array([a, -0, NaN, 1e300 * 10]) },
		typed: function (a, n) { var t = new Uint8Array(n % 9); t.v = a; return t },
		bigLen: function (a, n) { return new Uint8Array([1, 1 << 14][n % 2]) }
	};
	return {
		H: H,
		gopd: Object.getOwnPropertyDescriptor,
		keys: Object.keys,
		names: Object.getOwnPropertyNames,
		isView: ArrayBuffer.isView,
		stringify: JSON.stringify,
		protos: {Object: Object.prototype, Date: Date.prototype, String: String.prototype,
			Number: Number.prototype, Boolean: Boolean.prototype, BigInt: BigInt.prototype}
	}
})()`, false)

// fuzzSandbox runs before any fuzzed code. goja's builtins are Go loops
// that an interrupt does not stop: on a sparse array of length 1e9, join
// or fill runs for minutes and allocates gigabytes, and 2n ** (2n ** 100n)
// is a fatal out of memory. A script can do that to the engine too, which
// is the sandbox's business (worker processes); these targets are after
// exporter, so the builtins that take a length are wrapped to throw a
// RangeError beyond fuzzMaxLength, and fuzzRisky skips the sources that
// cannot be covered that way.
var fuzzSandbox = goja.MustCompile("fuzz-sandbox.js", `(function (cap) {
	"use strict";
	var apply = Reflect.apply, define = Object.defineProperty, names = Object.getOwnPropertyNames,
		gopd = Object.getOwnPropertyDescriptor;
	function len(x) { return x !== null && (typeof x === "object" || typeof x === "string") ? Number(x.length) : 0 }
	function wrap(holder, name, size) {
		var d = gopd(holder, name);
		if (!d || typeof d.value !== "function" || name === "constructor") return;
		var orig = d.value;
		define(holder, name, {value: function () {
			if (size(this, arguments) > cap) throw new RangeError("fuzz: " + String(name) + " too large");
			return apply(orig, this, arguments);
		}, writable: true, configurable: true});
	}
	function lengths(self, args) {
		var n = len(self);
		for (var i = 0; i < args.length; i++) n = Math.max(n, len(args[i]));
		return n;
	}
	[Array.prototype, Object.getPrototypeOf(Uint8Array.prototype)].forEach(function (p) {
		names(p).forEach(function (name) { wrap(p, name, lengths) });
		wrap(p, Symbol.iterator, lengths);
	});
	wrap(Array, "from", lengths);
	wrap(String.prototype, "repeat", function (s, a) { return String(s).length * Number(a[0]) });
	wrap(String.prototype, "padStart", function (s, a) { return Number(a[0]) });
	wrap(String.prototype, "padEnd", function (s, a) { return Number(a[0]) });
	wrap(BigInt, "asUintN", function (s, a) { return Number(a[0]) });
	wrap(BigInt, "asIntN", function (s, a) { return Number(a[0]) });
	wrap(Function.prototype, "apply", function (s, a) { return len(a[1]) });
	wrap(Reflect, "apply", function (s, a) { return len(a[2]) });
	wrap(Reflect, "construct", function (s, a) { return len(a[1]) });
})`, false)

// fuzzMaxLength is the largest length fuzzSandbox lets builtins work on.
const fuzzMaxLength = 1 << 16

var (
	// fuzzBigIntOps are operators that make a BigInt of any size in one
	// step (2n ** (2n ** 100n) is a fatal out of memory).
	fuzzBigIntOps = regexp.MustCompile(`\*\*|<<`)
	fuzzBigIntish = regexp.MustCompile(`[0-9_]n|BigInt|\\[ux]|eval|Function|constructor`)
	// fuzzHugeAlloc: a constructor that allocates its length at once
	// (new Float64Array(1e9)) with a large number.
	fuzzHugeAlloc = regexp.MustCompile(`Array|Buffer|View`)
	fuzzLarge     = regexp.MustCompile(`[0-9]{7,}|[0-9][eE]\+?([6-9]|[0-9]{2})|\*\*|<<|0[xXoObB]|MAX`)
)

// fuzzRisky reports a source fuzzSandbox cannot keep from running for
// minutes or taking all memory in a builtin: spread and JSON.stringify
// of huge or cyclic-looking values, BigInt operators, and large typed
// arrays.
func fuzzRisky(src string) bool {
	return strings.Contains(src, "...") || strings.Contains(src, "stringify") ||
		fuzzBigIntOps.MatchString(src) && fuzzBigIntish.MatchString(src) ||
		fuzzHugeAlloc.MatchString(src) && fuzzLarge.MatchString(src)
}

// fuzzHelpers are the names of fuzzPrelude's helpers of one argument (and
// of a count, for those in fuzzCountHelpers).
var (
	fuzzHelpers = []string{"px", "pxTraps", "getter", "thrower", "counter", "grower", "shrinker", "cyc", "cycArr",
		"sparse", "hidden", "sym", "toJSON", "frozen", "create", "twice", "named", "elemGetter", "protoHole",
		"dateJSON", "dateValueOf", "strProps", "args", "promise", "bound", "error", "map", "floats"}
	fuzzCountHelpers = []string{"deep", "deepObj", "dag", "long", "typed", "bigLen"}
	fuzzAtoms        = []string{`S`, `0`, `1`, `-0`, `1.5`, `-1e-7`, `NaN`, `Infinity`, `-Infinity`, `2**53 + 2`,
		`2**63`, `-(2**63)`, `2**64`, `1e21`, `1.7976931348623157e308`, `"s"`, `""`, `"\ud800"`, `"\u00e9\u2028"`,
		`null`, `undefined`, `true`, `false`, `10n`, `-(2n**63n)`, `2n**64n`, `Symbol("s")`, `function () {}`,
		`class {}`, `new Date(0)`, `new Date(NaN)`, `new Date(8.64e15)`, `new Date(-62198755200000)`, `[]`, `{}`,
		`new String("ab")`, `new Number(-0)`, `new Number(2**70)`, `new Boolean(false)`, `Object(1n)`,
		`Object(Symbol())`, `new Set([1])`, `/re/g`, `H.revoked()`, `globalThis.Math`, `JSON`}
	fuzzKeys = []string{`"a"`, `"__proto__"`, `""`, `"0"`, `"10"`, `"1e3"`, `"length"`, `"toJSON"`, `"\u00e9\u0000"`,
		`"\ud800"`, `"\udc00"`, `"\ufffd"`, `"constructor"`, `"-1"`}
)

// fuzzProgram turns fuzzed bytes into a JavaScript function of S (the
// value of the fuzzed source) and H (fuzzPrelude's helpers) that returns
// a value built by a small stack machine: atoms, arrays, objects (own
// __proto__ keys included), objects with a prototype, and the helpers.
// Every byte string gives a program that compiles.
func fuzzProgram(gen []byte) string {
	var stack []string
	pop := func() string {
		if len(stack) == 0 {
			return "S"
		}
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return e
	}
	next := func(i *int) int {
		*i++
		if *i < len(gen) {
			return int(gen[*i])
		}
		return 0
	}
	for i := 0; i < len(gen); i++ {
		switch gen[i] % 7 {
		case 0:
			stack = append(stack, fuzzAtoms[next(&i)%len(fuzzAtoms)])
		case 1:
			b, a := pop(), pop()
			stack = append(stack, "["+a+", "+b+"]")
		case 2:
			b, a := pop(), pop()
			k1, k2 := fuzzKeys[next(&i)%len(fuzzKeys)], fuzzKeys[next(&i)%len(fuzzKeys)]
			stack = append(stack, "{["+k1+"]: "+a+", ["+k2+"]: "+b+"}")
		case 3:
			a := pop()
			stack = append(stack, "{__proto__: "+a+", x: 1}")
		case 4, 5:
			a := pop()
			stack = append(stack, "H."+fuzzHelpers[next(&i)%len(fuzzHelpers)]+"("+a+")")
		case 6:
			a := pop()
			h := fuzzCountHelpers[next(&i)%len(fuzzCountHelpers)]
			stack = append(stack, fmt.Sprintf("H.%s(%s, %d)", h, a, next(&i)))
		}
	}
	expr := "S"
	switch len(stack) {
	case 0:
	case 1:
		expr = stack[0]
	default:
		expr = "[" + strings.Join(stack, ", ") + "]"
	}
	return "(function (S, H) { return " + expr + " })"
}

// fuzzRuntime is a fresh goja runtime for one fuzz input, interrupted
// after fuzzTimeout, with the intrinsics fuzzPrelude captured and
// fuzzSandbox's limits.
type fuzzRuntime struct {
	t                  *testing.T
	vm                 *goja.Runtime
	helpers            goja.Value
	gopd, isView, json goja.Callable
	keys, names        goja.Callable // Object.keys and getOwnPropertyNames
	protos             map[string]*goja.Object
	// conversions are fuzzConversions and Symbol.toPrimitive as keys;
	// intrinsic holds, for each prototype of protos, what it has under
	// each of them before fuzzed code runs.
	conversions []goja.Value
	intrinsic   map[*goja.Object][]fuzzDesc
	timer       *time.Timer
	work        int // property reads by own
}

// fuzzConversions are the properties JSON.stringify (and exporter's
// reading of a Date) may call on a Date or a String, Number, Boolean or
// BigInt object (Symbol.toPrimitive is added per runtime); toJSON is
// looked up on every object.
var fuzzConversions = []string{"toJSON", "toString", "valueOf", "toISOString"}

func newFuzzRuntime(t *testing.T) *fuzzRuntime {
	vm := goja.New()
	vm.SetMaxCallStackSize(256)
	r := &fuzzRuntime{t: t, vm: vm, protos: map[string]*goja.Object{}, intrinsic: map[*goja.Object][]fuzzDesc{},
		conversions: []goja.Value{goja.SymToPrimitive}}
	for _, k := range fuzzConversions {
		r.conversions = append(r.conversions, vm.ToValue(k))
	}
	r.timer = time.AfterFunc(fuzzTimeout, func() { vm.Interrupt("fuzz timeout") })
	t.Cleanup(func() { r.timer.Stop() })
	p, err := vm.RunProgram(fuzzPrelude)
	if err != nil {
		t.Skipf("prelude: %v", err) // interrupted on a slow machine
	}
	po := p.(*goja.Object)
	r.helpers = po.Get("H")
	r.gopd, _ = goja.AssertFunction(po.Get("gopd"))
	r.isView, _ = goja.AssertFunction(po.Get("isView"))
	r.keys, _ = goja.AssertFunction(po.Get("keys"))
	r.names, _ = goja.AssertFunction(po.Get("names"))
	r.json, _ = goja.AssertFunction(po.Get("stringify"))
	protos := po.Get("protos").(*goja.Object)
	if err := r.inJS(func() {
		for _, name := range protos.Keys() {
			proto := protos.Get(name).(*goja.Object)
			r.protos[name] = proto
			for _, k := range r.conversions {
				d, _ := r.own(proto, k)
				r.intrinsic[proto] = append(r.intrinsic[proto], d)
			}
		}
	}); err != nil {
		t.Skipf("prelude: %v", err)
	}
	sandbox, err := vm.RunProgram(fuzzSandbox)
	if err != nil {
		t.Skipf("sandbox: %v", err)
	}
	fn, _ := goja.AssertFunction(sandbox)
	if _, err := fn(goja.Undefined(), vm.ToValue(fuzzMaxLength)); err != nil {
		t.Skipf("sandbox: %v", err)
	}
	return r
}

// rearm stops the running deadline and starts one of d; it reports false
// when the running one has already fired (an interrupt is pending).
func (r *fuzzRuntime) rearm(d time.Duration) bool {
	if !r.timer.Stop() {
		return false
	}
	vm := r.vm
	r.timer = time.AfterFunc(d, func() { vm.Interrupt("fuzz timeout") })
	return true
}

// inJS runs fn inside a JavaScript call, as the engine runs exporter, so
// that exceptions thrown by getters and proxy traps (and interrupts) come
// back as errors. A Go panic is not caught.
func (r *fuzzRuntime) inJS(fn func()) error {
	call, _ := goja.AssertFunction(r.vm.ToValue(func(goja.FunctionCall) goja.Value {
		fn()
		return goja.Undefined()
	}))
	_, err := call(goja.Undefined())
	return err
}

// export exports v with a fresh exporter, inside a JavaScript call. jsErr
// is an exception thrown or an interrupt meanwhile; err is exporter's.
func (r *fuzzRuntime) export(v goja.Value) (out any, omit bool, err, jsErr error) {
	jsErr = r.inJS(func() {
		x := exporter{budget: maxExportValues}
		out, omit, err = x.export(v)
	})
	if jsErr != nil {
		var ex *goja.Exception
		var ie *goja.InterruptedError
		var so *goja.StackOverflowError
		if !errors.As(jsErr, &ex) && !errors.As(jsErr, &ie) && !errors.As(jsErr, &so) {
			r.t.Fatalf("export failed with %T, neither an exception nor an abort: %v", jsErr, jsErr)
		}
		return nil, false, nil, jsErr
	}
	var xe *exportError
	if err != nil && !errors.As(err, &xe) {
		r.t.Fatalf("export failed with %T, not an *exportError: %v", err, err)
	}
	return out, omit, err, nil
}

// fuzzDesc is an own property as Object.getOwnPropertyDescriptor gives it.
type fuzzDesc struct {
	value, get, set goja.Value
	accessor        bool
}

func (d fuzzDesc) same(e fuzzDesc) bool {
	same := func(a, b goja.Value) bool { return a == nil && b == nil || a != nil && b != nil && a.SameAs(b) }
	return d.accessor == e.accessor && same(d.value, e.value) && same(d.get, e.get) && same(d.set, e.set)
}

// own returns o's own property key without running script code (o is not
// a proxy); it must be called inside inJS.
func (r *fuzzRuntime) own(o *goja.Object, key goja.Value) (fuzzDesc, bool) {
	r.work++
	dv, err := r.gopd(goja.Undefined(), o, key)
	if err != nil {
		panic(err) // an interrupt: back to inJS
	}
	d, ok := dv.(*goja.Object)
	if !ok {
		return fuzzDesc{}, false
	}
	var fd fuzzDesc
	// Only own properties of the descriptor: a getter that fuzzed code
	// put on Object.prototype must not run.
	for _, name := range d.GetOwnPropertyNames() {
		switch name {
		case "value":
			fd.value = d.Get(name)
		case "get":
			fd.get, fd.accessor = d.Get(name), true
		case "set":
			fd.set, fd.accessor = d.Get(name), true
		}
	}
	return fd, true
}

func (r *fuzzRuntime) ownKey(o *goja.Object, key string) (fuzzDesc, bool) {
	return r.own(o, r.vm.ToValue(key))
}

// list calls keys or names on o (not a proxy), giving the keys as
// JavaScript strings: goja's Object.Keys turns a key that is not valid
// UTF-16 into another one. Must be called inside inJS.
func (r *fuzzRuntime) list(of goja.Callable, o *goja.Object) []goja.Value {
	a, err := of(goja.Undefined(), o)
	if err != nil {
		panic(err)
	}
	ao := a.(*goja.Object)
	keys := make([]goja.Value, ao.Get("length").ToInteger())
	for i := range keys {
		keys[i] = ao.Get(indexKey(i))
	}
	return keys
}

var fuzzProxyType = reflect.TypeFor[goja.Proxy]()

func fuzzIsProxy(o *goja.Object) bool { return o.ExportType() == fuzzProxyType }

// typedLen is the length of a typed array, -1 for other objects.
func (r *fuzzRuntime) typedLen(o *goja.Object) int {
	if v, err := r.isView(goja.Undefined(), o); err != nil {
		panic(err)
	} else if !v.ToBoolean() {
		return -1
	}
	if rv := reflect.ValueOf(o.Export()); rv.Kind() == reflect.Slice {
		return rv.Len()
	}
	return -1 // a DataView
}

// fuzzCheapKeys reports whether every object v reaches through data
// properties and proxies' targets and handlers is cheap to list the keys
// of (no typed array or String object with more than fuzzMaxKeys
// elements), with at most fuzzMaxWork properties in all. It works around
// known defect 1. Must be called inside inJS.
func (r *fuzzRuntime) fuzzCheapKeys(v goja.Value) bool {
	seen := map[*goja.Object]bool{}
	todo := []goja.Value{v}
	for len(todo) > 0 {
		o, ok := todo[len(todo)-1].(*goja.Object)
		todo = todo[:len(todo)-1]
		if !ok || seen[o] {
			continue
		}
		if seen[o] = true; r.work > fuzzMaxWork {
			return false
		}
		if fuzzIsProxy(o) {
			p := o.Export().(goja.Proxy)
			if t := p.Target(); t != nil {
				todo = append(todo, t, p.Handler())
			}
			continue
		}
		switch o.ClassName() {
		case "Function":
			continue // exported as nothing; its properties are not read
		case "String":
			if d, _ := r.ownKey(o, "length"); d.value != nil && d.value.ToInteger() > fuzzMaxKeys {
				return false
			}
		default:
			if r.typedLen(o) > fuzzMaxKeys {
				return false
			}
		}
		for _, k := range r.list(r.names, o) {
			if d, ok := r.own(o, k); ok {
				for _, e := range []goja.Value{d.value, d.get, d.set} {
					if e != nil {
						todo = append(todo, e)
					}
				}
			}
		}
	}
	return true
}

// fuzzShape is what analyze found out about a value without running
// script code.
type fuzzShape struct {
	// impure: exporting v may run script code (a getter, a proxy trap, a
	// hole read through the prototype chain, a toJSON, toString or valueOf
	// JSON.stringify would call...), so neither determinism nor
	// JSON.stringify can be asserted.
	impure bool
	// Any of these must make export fail.
	cycle, tooDeep, tooMany bool
	// JSON.stringify throws on a BigInt; goja's JSON.stringify gives null
	// for a Symbol object, where the standard (and exporter) give {}.
	bigint, symbolObject bool
	// known names the known defects (see the top of the file) v may run
	// into.
	known []string

	count int            // values exporter would visit, as it charges its budget
	stack []*goja.Object // objects being walked
}

func (s *fuzzShape) comparable() bool {
	return !s.impure && !s.cycle && !s.tooDeep && !s.tooMany && !s.bigint && !s.symbolObject
}

func (s *fuzzShape) knownDefect(d string) {
	if !slices.Contains(s.known, d) {
		s.known = append(s.known, d)
	}
}

var (
	fuzzBigIntType = reflect.TypeFor[*big.Int]()
	fuzzStringType = reflect.TypeFor[string]()
)

// analyze walks v as exporter would, reading only own data properties;
// a value that takes more than fuzzMaxWork reads counts as impure. Must be
// called inside inJS.
func (r *fuzzRuntime) analyze(s *fuzzShape, v goja.Value) {
	if s.impure || s.tooMany {
		return
	}
	if r.work > fuzzMaxWork {
		s.impure = true
		return
	}
	if s.count++; s.count > maxExportValues {
		s.tooMany = true
		return
	}
	o, ok := v.(*goja.Object)
	if !ok {
		if _, ok := v.Export().(*big.Int); ok {
			s.bigint = true
		}
		return
	}
	if fuzzIsProxy(o) {
		s.impure = true
		return
	}
	switch class := o.ClassName(); class {
	case "Function":
		return
	case "Date", "String", "Number", "Boolean", "BigInt":
		if !r.intactConversions(o, r.protos[class]) {
			s.impure = true
		}
		return
	case "Object":
		switch o.ExportType() {
		case fuzzBigIntType:
			s.bigint = true
		case fuzzStringType:
			s.symbolObject = true
		}
	}
	if len(s.stack) >= maxDepth {
		s.tooDeep = true
		return
	}
	for _, a := range s.stack {
		if a == o {
			s.cycle = true
			return
		}
	}
	if !r.noToJSON(o) {
		s.impure = true
		return
	}
	s.stack = append(s.stack, o)
	defer func() { s.stack = s.stack[:len(s.stack)-1] }()
	if o.ClassName() == "Array" {
		d, _ := r.ownKey(o, "length")
		n := d.value.ToInteger()
		if int64(s.count)+n > maxExportValues {
			s.tooMany = true
			return
		}
		for i := range int(n) {
			d, ok := r.ownKey(o, indexKey(i))
			if !ok || d.accessor {
				s.impure = true // a hole is read through the prototypes
				return
			}
			r.analyze(s, d.value)
		}
		return
	}
	for _, k := range r.list(r.keys, o) {
		if !r.vm.ToValue(k.String()).SameAs(k) {
			// exporter looks up another key: what it finds is not
			// what JSON.stringify finds, and the count may differ.
			s.knownDefect("5 (keys that are not UTF-16 are left out)")
		}
		d, ok := r.own(o, k)
		if !ok || d.accessor {
			s.impure = true
			return
		}
		r.analyze(s, d.value)
	}
}

// noToJSON reports whether JSON.stringify finds no toJSON on o (Object and
// Array objects), with no proxy in o's prototype chain.
func (r *fuzzRuntime) noToJSON(o *goja.Object) bool {
	for p := o; p != nil; p = p.Prototype() {
		if fuzzIsProxy(p) {
			return false
		}
		if _, ok := r.ownKey(p, "toJSON"); ok {
			return false
		}
	}
	return true
}

// intactConversions reports whether a Date or primitive wrapper object o
// converts as the intrinsics do: its prototypes are proto and
// Object.prototype, which have what they had before fuzzed code ran, and
// it has none of fuzzConversions of its own.
func (r *fuzzRuntime) intactConversions(o, proto *goja.Object) bool {
	if o.Prototype() != proto || proto.Prototype() != r.protos["Object"] {
		return false
	}
	for _, k := range r.conversions {
		if _, ok := r.own(o, k); ok {
			return false
		}
	}
	for _, p := range []*goja.Object{proto, r.protos["Object"]} {
		for i, k := range r.conversions {
			if d, _ := r.own(p, k); !d.same(r.intrinsic[p][i]) {
				return false
			}
		}
	}
	return true
}

// checkPlain returns what is wrong with an export result v, if anything:
// a type other than map[string]any, []any, string, bool, int64, float64
// and nil; a float64 that is not finite or is integral within int64 (an
// int64 then); containers nested more than maxNest deep. n counts v's
// values.
func checkPlain(v any, maxNest int) (n int, problem string) {
	var walk func(v any, nest int) string
	walk = func(v any, nest int) string {
		n++
		switch x := v.(type) {
		case nil, string, bool, int64:
			return ""
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Sprintf("non-finite float %v", x)
			}
			if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
				return fmt.Sprintf("integral float64 %v (want int64)", x)
			}
			return ""
		case map[string]any:
			if nest++; nest > maxNest {
				return fmt.Sprintf("nested deeper than %d", maxNest)
			}
			for _, e := range x {
				if p := walk(e, nest); p != "" {
					return p
				}
			}
			return ""
		case []any:
			if nest++; nest > maxNest {
				return fmt.Sprintf("nested deeper than %d", maxNest)
			}
			for _, e := range x {
				if p := walk(e, nest); p != "" {
					return p
				}
			}
			return ""
		}
		return fmt.Sprintf("non-plain value %T %#v", v, v)
	}
	problem = walk(v, 0)
	if problem == "" {
		if _, err := json.Marshal(v); err != nil {
			problem = "json.Marshal: " + err.Error()
		}
	}
	return n, problem
}

// sameJSON reports whether a and b are the same JSON document: numbers
// (int64, float64, json.Number) are compared by value as float64.
func sameJSON(a, b any) bool {
	if x, ok := jsonNumber(a); ok {
		y, ok := jsonNumber(b)
		return ok && x == y
	}
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !sameJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	case nil, string, bool:
		return a == b
	}
	return false
}

func jsonNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// sharedContainer returns a map or slice that appears twice in vs (results must
// share nothing, with each other or with the caller's values), or "".
func sharedContainer(vs ...any) string {
	seen := map[uintptr]bool{}
	var walk func(v any) string
	walk = func(v any) string {
		rv := reflect.ValueOf(v)
		switch v.(type) {
		case map[string]any, []any:
			if p := rv.Pointer(); p != 0 && rv.Len() > 0 {
				if seen[p] {
					return fmt.Sprintf("%T %v", v, v)
				}
				seen[p] = true
			}
		default:
			return ""
		}
		for _, e := range reflect.ValueOf(v).Seq2() {
			if s := walk(e.Interface()); s != "" {
				return s
			}
		}
		return ""
	}
	for _, v := range vs {
		if s := walk(v); s != "" {
			return s
		}
	}
	return ""
}

// stringified is json.Unmarshal of JSON.stringify(v) (numbers as
// json.Number); undefined when JSON.stringify gives undefined.
func (r *fuzzRuntime) stringified(v goja.Value) (doc any, undefined bool, err error) {
	s, err := r.json(goja.Undefined(), v)
	if err != nil {
		return nil, false, err
	}
	if goja.IsUndefined(s) {
		return nil, true, nil
	}
	dec := json.NewDecoder(strings.NewReader(s.String()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		r.t.Fatalf("JSON.stringify gave what encoding/json cannot read: %v", err)
	}
	return doc, false, nil
}

// fail fails the test, unless what analyze found out about the value may
// be wrong because of a known defect: then it skips the input.
func (r *fuzzRuntime) fail(s *fuzzShape, format string, args ...any) {
	if len(s.known) > 0 {
		r.t.Skipf("known defect %s: %s", strings.Join(s.known, ", "), fmt.Sprintf(format, args...))
	}
	r.t.Fatalf(format, args...)
}

// checkExport exports v and checks exporter's promises.
func (r *fuzzRuntime) checkExport(v goja.Value) {
	t := r.t
	var cheap bool
	var s fuzzShape
	if err := r.inJS(func() {
		if cheap = r.fuzzCheapKeys(v); cheap {
			r.work = 0
			r.analyze(&s, v)
		}
	}); err != nil || !cheap {
		return // interrupted, or too big to check (see known defect 1)
	}
	out, omit, err, jsErr := r.export(v)
	if jsErr != nil {
		var ie *goja.InterruptedError
		if !s.impure && !errors.As(jsErr, &ie) {
			r.fail(&s, "exporting ran script code that threw, but nothing in the value can: %v", jsErr)
		}
		return
	}
	mustFail := s.cycle || s.tooDeep || s.tooMany
	if err != nil {
		if !s.impure && !mustFail {
			r.fail(&s, "export failed on a value it can export (%d values): %v", s.count, err)
		}
		return
	}
	if !s.impure && mustFail {
		r.fail(&s, "export succeeded on a value with cycle=%v tooDeep=%v tooMany=%v: %.200v", s.cycle, s.tooDeep, s.tooMany, out)
	}
	n, problem := checkPlain(out, maxDepth)
	if problem != "" {
		t.Fatalf("export result: %s", problem)
	}
	if n > maxExportValues {
		t.Fatalf("export result has %d values, more than the budget %d", n, maxExportValues)
	}
	if omit && out != nil {
		t.Fatalf("export omits a value but returns %#v", out)
	}
	if s.impure {
		return
	}
	again, omit2, err, jsErr := r.export(v)
	if jsErr != nil {
		return // interrupted
	}
	if err != nil || omit2 != omit || !reflect.DeepEqual(again, out) {
		t.Fatalf("exporting twice differs:\n first: %#v\nsecond: %#v (%v)", out, again, err)
	}
	if sh := sharedContainer(out, again); sh != "" {
		t.Fatalf("two exports share %s", sh)
	}
	if !s.comparable() {
		return
	}
	var doc any
	var undefined bool
	if err := r.inJS(func() {
		var serr error
		if doc, undefined, serr = r.stringified(v); serr != nil {
			panic(serr)
		}
	}); err != nil {
		var ie *goja.InterruptedError
		if errors.As(err, &ie) {
			return
		}
		r.fail(&s, "JSON.stringify threw on a value exporter took: %v", err)
	}
	if undefined != omit || !undefined && !sameJSON(out, doc) {
		r.fail(&s, "export differs from JSON.stringify:\nexport: %#v (omit %v)\n  JSON: %#v (undefined %v)", out, omit, doc, undefined)
	}
}

// FuzzExport evaluates fuzzed JavaScript (src, then optionally a program
// fuzzProgram builds from gen around its value) and exports the result.
// Always: no panic, an error is an *exportError or a JavaScript one, the
// result is plain (see checkPlain), at most maxDepth deep and within the
// budget. For values whose export runs no script code (see analyze):
// cycles, excess depth and excess values fail and nothing else does,
// exporting twice gives equal results sharing nothing, and the result is
// JSON.stringify's (numbers compared by value).
func FuzzExport(f *testing.F) {
	// More seeds, one per case the exporter distinguishes, are in
	// testdata/fuzz/FuzzExport.
	for _, seed := range []struct {
		src string
		gen []byte
	}{
		{`({a: 1, b: [true, null, "s", 1.5], c: {d: {}}})`, nil},
		{`[undefined, function () {}, Symbol(), NaN, -Infinity]`, nil},
		{`(() => { var a = {}; a.a = a; return a })()`, nil},
		{`(() => { var a = []; a.length = 1e9; return a })()`, nil},
		{`({get g() { return 1 }, d: new Date(0), big: 10n})`, nil},
		{`"s"`, []byte{0, 2, 0, 3, 2, 1, 1, 4, 0, 6, 0, 200}},
	} {
		f.Add(seed.src, seed.gen)
	}
	f.Fuzz(func(t *testing.T, src string, gen []byte) {
		if len(src) > 1<<12 || len(gen) > 1<<8 {
			return
		}
		if fuzzRisky(src) {
			return
		}
		r := newFuzzRuntime(t)
		v, err := r.vm.RunString(src)
		if err != nil {
			return // does not compile, throws or loops
		}
		if len(gen) > 0 {
			prog := fuzzProgram(gen)
			fn, err := r.vm.RunString(prog)
			if err != nil {
				var ie *goja.InterruptedError
				if errors.As(err, &ie) {
					return
				}
				t.Fatalf("generated program %s: %v", prog, err)
			}
			call, _ := goja.AssertFunction(fn)
			if v, err = call(goja.Undefined(), v, r.helpers); err != nil {
				return
			}
		}
		if r.rearm(fuzzCheckTimeout) {
			r.checkExport(v)
		}
	})
}

// fuzzEditKind says what an edit of FuzzArgumentView does to the view.
type fuzzEditKind int

const (
	// editRead reads and changes nothing (writes to the read-only
	// context are refused).
	editRead fuzzEditKind = iota
	// editSame changes the view as it would change a plain copy.
	editSame
	// editView does what views refuse or do differently by design (see
	// rwview.go): no comparison with the plain copy.
	editView
	// editGetter leaves a getter that runs, and may edit views, while
	// the value is exported: no comparison, exporting is not repeatable.
	editGetter
)

// fuzzEdits are the edits FuzzArgumentView applies, one per fuzzed byte,
// to the argument (a view) and to a plain copy made with JSON.parse. Each
// is the body of a function of c (the cursor: an object or array the
// edits navigated to) and R (the argument) that may return a new cursor;
// C is the read-only context. Keys are taken in sorted order, which views
// and copies agree on.
var fuzzEdits = []struct {
	kind fuzzEditKind
	js   string
}{
	{editRead, `return child(c)`},
	{editRead, `return R`},
	{editRead, `void JSON.stringify(R)`},
	{editRead, `if (C) { C.x = 1; delete C[firstKey(C)] }`},
	{editSame, `if (isObj(c)) c.added = {n: 1, list: [1, "two", null, 2.5, -0]}`},
	{editSame, `if (isObj(c)) c.s = "str"`},
	{editSame, `if (isObj(c)) { var k = firstKey(c); if (k !== undefined) delete c[k] }`},
	{editSame, `delete c.missing`},
	{editSame, `if (isObj(c)) { var k = firstKey(c); if (k !== undefined) c[k] = [k] }`},
	{editSame, `if (isObj(c)) { var k = firstKey(c); if (k !== undefined) { c.moved = c[k]; delete c[k] } }`},
	{editSame, `if (isObj(c)) c.alias = child(c)`},
	{editSame, `if (isObj(c)) c.self = R`},
	{editSame, `if (isObj(c)) c.keys = Object.keys(c).sort().join()`},
	{editSame, `if (isObj(c)) c.len = JSON.stringify(c).length`},
	{editSame, `if (isObj(c)) c.types = Object.keys(c).sort().map(function (k) { return typeof c[k] }).join()`},
	{editSame, `if (isObj(c)) c.values = Object.keys(c).sort().map(function (k) { return c[k] })`},
	{editSame, `if (isObj(c)) c.copy = {...c}`},
	{editSame, `if (isObj(c)) Object.assign(c, {p: 1, q: [1, 2]})`},
	{editSame, `if (isObj(c)) c.u = undefined`},
	{editSame, `if (isObj(c)) c.f = function () {}`},
	{editSame, `if (isObj(c)) c.d = new Date(0)`},
	{editSame, `if (isObj(c)) c.big = [2n ** 70n, 7n]`},
	{editSame, `if (isObj(c)) c.ctx = C`},
	{editSame, `if (isObj(c)) { var k = firstKey(C); if (k !== undefined) c.fromCtx = C[k] }`},
	{editSame, `if (Array.isArray(c)) c.push("pushed", {o: 1}, undefined)`},
	{editSame, `if (Array.isArray(c)) c.pop()`},
	{editSame, `if (Array.isArray(c)) c.shift()`},
	{editSame, `if (Array.isArray(c)) c.unshift(0, [])`},
	{editSame, `if (Array.isArray(c)) c.splice(0, 1, "spliced")`},
	{editSame, `if (Array.isArray(c)) c.reverse()`},
	{editSame, `if (Array.isArray(c)) c.sort()`},
	{editSame, `if (Array.isArray(c)) c.length = c.length >> 1`},
	{editSame, `if (Array.isArray(c)) c.length += 2`},
	{editSame, `if (Array.isArray(c)) c[c.length + 1] = "past the end"`},
	{editSame, `if (Array.isArray(c) && c.length) c[0] = {replaced: c[0]}`},
	{editSame, `if (Array.isArray(c)) c.fill(0, 1)`},
	{editSame, `if (Array.isArray(c)) c.push(c.slice())`},
	{editSame, `if (Array.isArray(c)) c.push(c)`},
	{editView, `if (Array.isArray(c)) c.length = 1048577`}, // refused: beyond maxExportValues
	{editView, `if (Array.isArray(c)) c[1048576] = 1`},
	{editView, `if (Array.isArray(c)) c.named = 1`},
	{editView, `if (isObj(c)) Object.defineProperty(c, "fixed", {value: 1, enumerable: true})`},
	{editView, `if (c !== null && typeof c === "object") Object.freeze(c)`},
	{editView, `if (c !== null && typeof c === "object") c[Symbol("s")] = 1`},
	{editView, `if (c !== null && typeof c === "object") Object.setPrototypeOf(c, {inherited: 1})`},
	{editGetter, `if (isObj(c)) c.g = {get x() { if (isObj(R)) delete R[firstKey(R)]; return 1 }}`},
	{editGetter, `if (Array.isArray(c)) { var a = c; a.push({get x() { a.length = 0; a.length = 3; return 1 }}) }`},
	{editGetter, `if (isObj(c)) { var o = c; o.g = {get x() { o.late = [1]; o[firstKey(o)] = 2; return 1 }} }`},
	{editGetter, `if (isObj(c)) { var o = c; o.g = {get x() { var k = child(o); if (Array.isArray(k)) k.reverse(); return 1 }} }`},
	{editGetter, `if (isObj(c)) c.g = {get x() { throw new Error("getter") }}`},
}

// fuzzEditProgram is a function of the argument's view X, the context's
// view C, the argument's JSON text and the edits' indexes that applies
// the edits to X and to JSON.parse(text) (but those of kind editView or
// editGetter only to X: on a plain array, length = 1e9 is allowed, and
// the next fill would hang), and returns that copy and what each run
// threw.
var fuzzEditProgram = func() *goja.Program {
	var b strings.Builder
	b.WriteString(`(function (X, C, text, ops) {
	function isObj(x) { return x !== null && typeof x === "object" && !Array.isArray(x) }
	function firstKey(x) { return Object.keys(x).sort()[0] }
	function child(x) {
		var vs = Array.isArray(x) ? x : isObj(x) ? Object.keys(x).sort().map(function (k) { return x[k] }) : [];
		for (var i = 0; i < vs.length; i++) {
			if (vs[i] !== null && typeof vs[i] === "object") return vs[i];
		}
	}
	var edits = [
`)
	var viewOnly []string
	for _, e := range fuzzEdits {
		fmt.Fprintf(&b, "\t\tfunction (c, R) { %s },\n", e.js)
		viewOnly = append(viewOnly, fmt.Sprint(e.kind >= editView))
	}
	fmt.Fprintf(&b, "\t];\n\tvar viewOnly = [%s];\n", strings.Join(viewOnly, ", "))
	b.WriteString(`	function apply(R, copy) {
		var cur = R, log = [];
		for (var i = 0; i < ops.length; i++) {
			var op = ops[i] % edits.length;
			if (copy && viewOnly[op]) continue;
			try {
				var next = edits[op](cur, R);
				if (next !== undefined) cur = next;
			} catch (e) {
				log.push(i + ":" + (e instanceof Error ? e.name : typeof e));
			}
		}
		return log.join();
	}
	var copy = JSON.parse(text);
	return [copy, apply(X, false), apply(copy, true)];
})`)
	return goja.MustCompile("fuzz-edits.js", b.String(), false)
}()

// selfSorted reports whether ops push an array into itself and sort an
// array: known defect 7.
func selfSorted(ops []byte) bool {
	has := func(js string) bool {
		return slices.ContainsFunc(ops, func(o byte) bool { return fuzzEdits[int(o)%len(fuzzEdits)].js == js })
	}
	return has(`if (Array.isArray(c)) c.push(c)`) && has(`if (Array.isArray(c)) c.sort()`)
}

// depthDefect reports whether err is exporter's depth limit, on a value
// v deeper than that: known defect 3.
func depthDefect(err error, v any) bool {
	return err != nil && strings.Contains(err.Error(), "nested deeper") && nestingOf(v) > maxDepth
}

// nestingOf is how deeply v's maps and slices are nested.
func nestingOf(v any) int {
	deepest := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			deepest = max(deepest, nestingOf(e))
		}
	case []any:
		for _, e := range x {
			deepest = max(deepest, nestingOf(e))
		}
	default:
		return 0
	}
	return deepest + 1
}

// FuzzArgumentView decodes fuzzed JSON, makes its plain copy and a view of
// it (the argument; the JSON itself is the read-only context), applies the
// fuzzed fuzzEdits and exports the view. Always: plain keeps the value and
// shares nothing with it, no panic, the result is plain, the caller's
// value is unchanged. Without getters: exporting twice gives equal results
// sharing nothing (with each other and the caller's value). With reads
// only, the result is the argument; with editRead and editSame only, it is
// what the same edits make of a plain copy, and they throw the same.
func FuzzArgumentView(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzArgumentView.
	for _, seed := range []struct {
		arg string
		ops []byte
	}{
		{`{"b": "bee", "a": 1, "aud": ["x", "y"], "obj": {"k": "v", "list": [{"n": 1}]}, "none": null}`, []byte{0, 4, 1, 24, 6}},
		{`{"claims": {"scope": "a b", "exp": 1700000000}, "active": true}`, []byte{0, 5, 12, 1, 11}},
		{`[1, [2, [3]], {"x": 9007199254740993}]`, []byte{24, 30, 0, 32, 37}},
		{`{"10": 1, "9": 2, "__proto__": {"p": 1}, "é": "\ud800"}`, []byte{8, 9, 13, 16, 22}},
		{`"just a string"`, []byte{4, 24}},
	} {
		f.Add([]byte(seed.arg), seed.ops)
	}
	f.Fuzz(func(t *testing.T, data, ops []byte) {
		if len(data) > 1<<12 || len(ops) > 16 {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var orig any
		if dec.Decode(&orig) != nil {
			return
		}
		before, err := json.Marshal(orig)
		if err != nil {
			t.Fatalf("json.Marshal of what json decoded: %v", err)
		}
		p, err := plain(orig, 0)
		if err != nil {
			return // too deep, or a number beyond float64
		}
		if _, problem := checkPlain(p, maxDepth+1); problem != "" {
			t.Fatalf("plain: %s", problem)
		}
		if !sameJSON(p, orig) {
			t.Fatalf("plain changed the value:\n got: %#v\nwant: %#v", p, orig)
		}
		if sh := sharedContainer(p, orig); sh != "" {
			t.Fatalf("plain's copy shares %s with the caller's value", sh)
		}
		// The context is the caller's value itself: views only read it.
		ctx, _ := orig.(map[string]any)
		if _, ok := ctx["log"]; ok {
			ctx = nil
		}

		var used [editGetter + 1]bool
		opVals := make([]any, len(ops))
		for i, o := range ops {
			used[fuzzEdits[int(o)%len(fuzzEdits)].kind] = true
			opVals[i] = int64(o)
		}
		r := newFuzzRuntime(t)
		fn, err := r.vm.RunProgram(fuzzEditProgram)
		if err != nil {
			return // interrupted
		}
		call, _ := goja.AssertFunction(fn)
		view := viewOfPlain(r.vm, p)
		ctxView, err := contextView(r.vm, ctx, nil, nil)
		if err != nil {
			t.Fatalf("contextView: %v", err)
		}
		ret, err := call(goja.Undefined(), view, ctxView, r.vm.ToValue(string(before)), r.vm.NewArray(opVals...))
		if err != nil {
			return // interrupted, or a stack overflow
		}
		if !r.rearm(fuzzCheckTimeout) {
			return
		}
		res := ret.(*goja.Object)
		plainCopy, logView, logCopy := res.Get("0"), res.Get("1").String(), res.Get("2").String()

		out, _, xerr, jsErr := r.export(view)
		if jsErr != nil {
			return // a getter threw, or the deadline passed
		}
		if xerr == nil {
			// maxDepth levels of views and script values, with untouched
			// parts of the argument (up to maxDepth+1 deep) under them:
			// see known defect 3.
			_, problem := checkPlain(out, 2*maxDepth+1)
			if strings.Contains(problem, "scripts.hole") && used[editGetter] {
				t.Skipf("known defect 2 (hole{} leaks into the result): %s", problem)
			}
			if problem != "" {
				t.Fatalf("export: %s", problem)
			}
		}
		if got, _ := json.Marshal(orig); !bytes.Equal(got, before) {
			t.Fatalf("the caller's value changed:\n got: %s\nwant: %s", got, before)
		}
		if !used[editSame] && !used[editView] && !used[editGetter] {
			if depthDefect(xerr, orig) {
				t.Skipf("known defect 3 (plain takes %d levels, exporter %d): %v", maxDepth+1, maxDepth, xerr)
			}
			if xerr != nil || !sameJSON(out, orig) {
				t.Fatalf("edits that only read changed the argument (%v):\n got: %#v\nwant: %#v", xerr, out, orig)
			}
		}
		if used[editGetter] {
			return
		}
		again, _, xerr2, jsErr := r.export(view)
		if jsErr != nil {
			return
		}
		if (xerr == nil) != (xerr2 == nil) || !reflect.DeepEqual(out, again) {
			t.Fatalf("exporting the view twice differs:\n first: %#v (%v)\nsecond: %#v (%v)", out, xerr, again, xerr2)
		}
		copyOut, _, copyErr, jsErr := r.export(plainCopy)
		if jsErr != nil {
			return
		}
		if sh := sharedContainer(out, again, copyOut, orig); sh != "" {
			t.Fatalf("results share %s", sh)
		}
		if used[editView] {
			return
		}
		if logView != logCopy {
			t.Fatalf("edits threw differently: view %q, plain copy %q", logView, logCopy)
		}
		if (xerr == nil) != (copyErr == nil) || !sameJSON(out, copyOut) {
			if xerr == nil && (depthDefect(copyErr, orig) || depthDefect(copyErr, out)) {
				t.Skipf("known defect 3 (a view's untouched parts are not counted): %v", copyErr)
			}
			if selfSorted(ops) {
				t.Skipf("known defect 7 (an array view that holds itself sorts differently)")
			}
			t.Fatalf("view and plain copy differ after the same edits:\n view: %#v (%v)\ncopy: %#v (%v)", out, xerr, copyOut, copyErr)
		}
	})
}
