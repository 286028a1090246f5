package scripts

import (
	"github.com/dop251/goja"
	"github.com/dop251/goja/parser"
)

// hardenSource runs once in every new runtime, before any script code. It
// makes the realm's shared state immutable and returns the helpers the Go
// side needs. Why each step:
//
//   - eval is deleted: indirect eval is the only way code can create
//     bindings in the global lexical scope ((0,eval)("let n = 0")), which
//     no freezing reaches. Scripts never need it.
//   - Object.prototype's and the error prototypes' data properties become
//     accessors whose setter defines an own property on the receiver (and
//     ignores assignments to the prototype itself).
//     Without this, freezing them turns ordinary code such as
//     `obj.toString = f`, `Object.assign({}, {constructor: 1})` or
//     `this.name = "MyError"` in a class into silent no-ops or TypeErrors
//     (the "override mistake").
//   - Everything reachable from the global object, plus intrinsics only
//     reachable through instances (iterator and generator prototypes,
//     %ThrowTypeError%), is deep-frozen, so no call can leave a mark on
//     a builtin (Array.prototype.x = 1, globalThis.x = 1, implicit
//     globals) that a later call could see.
//
// The returned run(wrapper, index, n, ...) calls the script's wrapper (one
// fresh evaluation of its top level), picks binding number index and
// calls it with n arguments: the next one or two arguments of run, or for
// n > 2 the elements of the array that follows; it returns notDefined
// when the binding is not a function.
const hardenSource = `(function () {
"use strict";
var g = globalThis;
var freeze = Object.freeze, isExtensible = Object.isExtensible, getProto = Object.getPrototypeOf,
	ownKeys = Reflect.ownKeys, getDesc = Object.getOwnPropertyDescriptor,
	defProp = Object.defineProperty, reflectDefine = Reflect.defineProperty, apply = Reflect.apply,
	stringify = JSON.stringify;

delete g.eval;

function enable(proto, names) {
	for (var i = 0; i < names.length; i++) {
		var name = names[i];
		var d = getDesc(proto, name);
		if (!d || !("value" in d) || !d.configurable) continue;
		defProp(proto, name, {
			get: (function (value) { return function () { return value; }; })(d.value),
			set: (function (name) {
				return function (v) {
					// As an assignment to a frozen property in sloppy code:
					// the prototype itself, primitives, non-extensible
					// receivers and receivers that refuse the property (the
					// context's read-only views) are silently left alone.
					if (this === proto || (typeof this !== "object" && typeof this !== "function") || this === null || !isExtensible(this)) return;
					reflectDefine(this, name, {value: v, writable: true, enumerable: true, configurable: true});
				};
			})(name),
			enumerable: d.enumerable,
			configurable: false
		});
	}
}
enable(Object.prototype, Object.getOwnPropertyNames(Object.prototype));
var errs = [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError];
if (typeof AggregateError === "function") errs.push(AggregateError);
if (typeof GoError === "function") errs.push(GoError);
for (var i = 0; i < errs.length; i++) enable(errs[i].prototype, ["name", "message", "constructor", "toString"]);

function deepFreeze(roots) {
	var seen = new Set();
	var stack = roots.slice();
	while (stack.length > 0) {
		var o = stack.pop();
		if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) continue;
		seen.add(o);
		freeze(o);
		var keys = ownKeys(o);
		for (var i = 0; i < keys.length; i++) {
			var d = getDesc(o, keys[i]);
			if (d === undefined) continue;
			if ("value" in d) stack.push(d.value); else { stack.push(d.get); stack.push(d.set); }
		}
		stack.push(getProto(o));
	}
}

var roots = [g];
function hidden(f) { try { roots.push(f()); } catch (e) {} }
hidden(function () { return getProto([][Symbol.iterator]()); });
hidden(function () { return getProto(new Map()[Symbol.iterator]()); });
hidden(function () { return getProto(new Set()[Symbol.iterator]()); });
hidden(function () { return getProto(""[Symbol.iterator]()); });
hidden(function () { return getProto(/x/[Symbol.matchAll]("")); });
hidden(function () { return function* () {}; });
hidden(function () { return async function () {}; });
hidden(function () { return getDesc((function () { return arguments; })(), "callee").get; });
deepFreeze(roots);

var notDefined = freeze({});
function call(fn, n, a, b) {
	if (n === 1) return fn(a);
	if (n === 2) return fn(a, b);
	return apply(fn, undefined, a);
}
function run(wrapper, index, n, a, b) {
	var fn = wrapper()[index];
	if (typeof fn !== "function") return notDefined;
	return call(fn, n, a, b);
}
// freezeFunctions freezes functions made after the walk above (context.log,
// the script's wrapper) and their prototype objects; everything else
// they reach is already frozen.
function freezeFunctions(list) {
	for (var i = 0; i < list.length; i++) {
		var f = list[i];
		var d = getDesc(f, "prototype");
		if (d && d.value !== null && typeof d.value === "object") freeze(d.value);
		freeze(f);
	}
}
freezeFunctions([run, call, deepFreeze, freezeFunctions]);
return {run: run, notDefined: notDefined, freezeFunctions: freezeFunctions, stringify: stringify};
})()`

// hardenProgram is hardenSource compiled once for all runtimes.
var hardenProgram = mustCompile("keyhook:harden", hardenSource)

// mustCompile compiles trusted, built-in JavaScript (strict, without
// source maps) at package initialisation; a failure is a bug.
func mustCompile(name, src string) *goja.Program {
	prg, err := parser.ParseFile(nil, name, src, 0, parser.WithDisableSourceMaps)
	if err != nil {
		panic(err)
	}
	p, err := goja.CompileAST(prg, true)
	if err != nil {
		panic(err)
	}
	return p
}
