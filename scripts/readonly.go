package scripts

import (
	"fmt"
	"slices"

	"github.com/dop251/goja"

	"github.com/keyhook/keyhook/hooks"
)

// The context argument is not copied into the script up front: most hooks
// read two or three of its fields, and building (and freezing) the whole
// tree of objects was most of the cost of a call. Instead the script gets
// read-only views made with goja's dynamic objects and arrays: a view
// converts a field when the script first reads it, and a nested object or
// array read twice is the same view both times (context.client ===
// context.client), for the rest of the call.
//
// What a script can and cannot do with a view:
//
//   - Read it like a plain object or array: property access, in,
//     hasOwnProperty, Object.keys/values/entries, for-in, for-of and
//     array methods that do not modify, spread, JSON.stringify. Keys come
//     in sorted order, as they did when the context was copied.
//   - Not change it: assigning, adding, deleting or defining properties
//     (also array elements and length, push, sort...) has no effect in
//     sloppy code and throws a TypeError in strict code, as on a frozen
//     object; Object.defineProperty always throws. Unlike a frozen object,
//     a view reports itself extensible and its properties writable and
//     configurable (Object.isFrozen gives false) and cannot be frozen,
//     sealed or made non-extensible (Object.freeze throws a TypeError);
//     its prototype can be replaced, which only affects that view in that
//     call.
//   - Not reach Go values: a view hands out only JavaScript primitives and
//     other views, and Go-side Export of a view is never given to scripts.
//   - Not keep anything: views are made per call, hold no script values
//     and are unreachable once the call ends (the realm is frozen and the
//     script's top level is fresh on every call).
//
// The caller's maps and slices are only read, during the call; hooks.Call
// promises they are not changed meanwhile. A hooks.Lazy value of a map is
// computed on the first read of its key and then kept like a nested view.

// roObject is the handler of a read-only view of a map[string]any or
// map[string]string.
type roObject struct {
	vm    *goja.Runtime
	m     map[string]any
	ms    map[string]string
	strs  bool       // the view is of ms, not m
	depth int        // of the map, for maxDepth
	log   goja.Value // context.log; set only on the context itself
	fetch goja.Value // context.fetch; likewise
	keys  []string   // sorted, made on first use
	kids  []roKid    // views made for nested objects and arrays, and Lazy values, so far
}

type roKid struct {
	key string
	v   goja.Value
}

func (o *roObject) Get(key string) goja.Value {
	if o.log != nil && key == "log" {
		return o.log
	}
	if o.fetch != nil && key == "fetch" {
		return o.fetch
	}
	if o.strs {
		s, ok := o.ms[key]
		if !ok {
			return nil
		}
		return o.vm.ToValue(s)
	}
	v, ok := o.m[key]
	if !ok {
		return nil
	}
	lz, isLazy := v.(hooks.Lazy)
	if !isLazy {
		if jv := primitive(o.vm, v); jv != nil {
			return jv
		}
	}
	for _, k := range o.kids {
		if k.key == key {
			return k.v
		}
	}
	if isLazy {
		v = lz.Value()
	}
	jv := primitive(o.vm, v)
	if jv == nil {
		jv = viewOf(o.vm, v, o.depth+1)
	}
	o.kids = append(o.kids, roKid{key, jv})
	return jv
}

func (o *roObject) Has(key string) bool {
	if o.log != nil && key == "log" || o.fetch != nil && key == "fetch" {
		return true
	}
	if o.strs {
		_, ok := o.ms[key]
		return ok
	}
	_, ok := o.m[key]
	return ok
}

// Keys lists the enumerable own keys; context.log is not one of them, as
// it was a non-enumerable property when the context was copied.
func (o *roObject) Keys() []string {
	if o.keys == nil {
		if o.strs {
			o.keys = make([]string, 0, len(o.ms))
			for k := range o.ms {
				o.keys = append(o.keys, k)
			}
		} else {
			o.keys = make([]string, 0, len(o.m))
			for k := range o.m {
				o.keys = append(o.keys, k)
			}
		}
		slices.Sort(o.keys)
	}
	// Shared: goja only reads the slice (iterators keep it while the
	// script runs more code), and it never changes.
	return o.keys
}

// Set refuses every change (a TypeError in strict code, no effect in
// sloppy code).
func (o *roObject) Set(string, goja.Value) bool { return false }

// Delete refuses to delete an existing property; deleting a missing one
// succeeds, as on a frozen object.
func (o *roObject) Delete(key string) bool { return !o.Has(key) }

// roArray is the handler of a read-only view of a []any or []string.
type roArray struct {
	vm    *goja.Runtime
	a     []any
	as    []string
	strs  bool // the view is of as, not a
	depth int
	kids  []goja.Value // views made for nested objects and arrays, by index
}

func (a *roArray) Len() int {
	if a.strs {
		return len(a.as)
	}
	return len(a.a)
}

func (a *roArray) Get(i int) goja.Value {
	if i < 0 || i >= a.Len() {
		return nil
	}
	if a.strs {
		return a.vm.ToValue(a.as[i])
	}
	v := a.a[i]
	if jv := primitive(a.vm, v); jv != nil {
		return jv
	}
	if a.kids == nil {
		a.kids = make([]goja.Value, len(a.a))
	} else if a.kids[i] != nil {
		return a.kids[i]
	}
	jv := viewOf(a.vm, v, a.depth+1)
	a.kids[i] = jv
	return jv
}

func (a *roArray) Set(int, goja.Value) bool { return false }
func (a *roArray) SetLen(int) bool          { return false }

// contextView makes the read-only view of a call's context (nil: an empty
// one) with context.log and context.fetch.
func contextView(vm *goja.Runtime, m map[string]any, log, fetch goja.Value) (*goja.Object, error) {
	for _, k := range []string{"log", "fetch"} {
		if _, ok := m[k]; ok {
			return nil, fmt.Errorf("the key %q is reserved for context.%s", k, k)
		}
	}
	if m == nil {
		m = map[string]any{}
	}
	return vm.NewDynamicObject(&roObject{vm: vm, m: m, log: log, fetch: fetch}), nil
}

// viewOf returns the JavaScript form of a non-primitive context value v
// at the given depth: a view of a map or slice, or (for other types) of
// their JSON form. A value that cannot be passed to a script (nested
// deeper than maxDepth, without a JSON form) is only found when the script
// reads it, and is thrown as a TypeError then.
func viewOf(vm *goja.Runtime, v any, depth int) goja.Value {
	if depth > maxDepth {
		panic(vm.NewTypeError("context: value nested deeper than %d levels", maxDepth))
	}
	switch x := v.(type) {
	case map[string]any:
		return vm.NewDynamicObject(&roObject{vm: vm, m: x, depth: depth})
	case map[string]string:
		return vm.NewDynamicObject(&roObject{vm: vm, ms: x, strs: true, depth: depth})
	case []any:
		return vm.NewDynamicArray(&roArray{vm: vm, a: x, depth: depth})
	case []string:
		return vm.NewDynamicArray(&roArray{vm: vm, as: x, strs: true, depth: depth})
	}
	plain, err := jsonPlain(v)
	if err != nil {
		panic(vm.NewTypeError("context: %v", err))
	}
	if jv := primitive(vm, plain); jv != nil {
		return jv
	}
	return viewOf(vm, plain, depth)
}

// primitive is primitiveToJS throwing its error (a bad json.Number) as a
// TypeError.
func primitive(vm *goja.Runtime, v any) goja.Value {
	jv, err := primitiveToJS(vm, v)
	if err != nil {
		panic(vm.NewTypeError("context: %v", err))
	}
	return jv
}
