package scripts

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"time"

	"github.com/dop251/goja"
)

// The arguments a script edits (the introspection response, a token's
// header and claims) are not built as JavaScript objects property by
// property and read back property by property: for a response of a dozen
// fields that was most of the cost of a call, although a typical hook
// reads or writes two or three of them. Instead each argument is copied
// in Go into its plain form (see plain) and handed to the script as a
// mutable view made with goja's dynamic objects and arrays:
//
//   - a field the script never touches stays a Go value and is handed
//     back as it is, without a round trip through JavaScript;
//   - a field the script reads is converted when it is read (a nested
//     object or array becomes a view of its own, the same one on every
//     read);
//   - a field the script assigns holds the script's value, exported with
//     the JSON semantics of exporter when the call ends.
//
// For ordinary code a view is indistinguishable from a plain object or
// array: property access and assignment, delete, in, hasOwnProperty,
// Object.keys/values/entries/assign, for-in, for-of, spread,
// JSON.stringify, Array.isArray and every array method work, and keys come
// in the order they would on a copy (the argument's keys sorted, then
// added keys in the order they were added). What views do not support, as
// goja's dynamic objects do not:
//
//   - accessor properties, and properties that are not writable,
//     enumerable and configurable: Object.defineProperty with a getter or
//     setter, or with false for any of these, throws a TypeError (one that
//     leaves them out defines an ordinary property);
//   - freezing, sealing or preventing extensions (TypeError);
//   - Symbol-keyed properties, and named properties on arrays;
//   - holes in arrays: an unset element reads as undefined and exports as
//     null, as a hole does.
//
// Scripts that need any of these can copy a field into an object of their
// own.
//
// Views are made per call and only for the call's own private copy of the
// arguments, so nothing the script does reaches the caller's values.

// plain copies a Go argument into the plain form views work on:
// map[string]any, []any and the primitives of plainPrimitive, i.e.
// exactly what exporting the value as a JavaScript value would give back.
// Besides the JSON-like types named by hooks.Call it accepts
// map[string]string, []string and the primitive types plainPrimitive
// knows; anything else goes through an encoding/json round trip.
func plain(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("scripts: value nested deeper than %d levels", maxDepth)
	}
	if p, ok, err := plainPrimitive(v); ok || err != nil {
		return p, err
	}
	switch x := v.(type) {
	case map[string]any:
		// Cloning copies the map's table at once; only the values that
		// are not plain already are converted afterwards.
		if x == nil {
			return map[string]any{}, nil
		}
		m := maps.Clone(x)
		for k, e := range m {
			switch e.(type) {
			case string, bool, int64, nil:
				continue
			}
			pv, err := plain(e, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = pv
		}
		return m, nil
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			pv, err := plain(e, depth+1)
			if err != nil {
				return nil, err
			}
			a[i] = pv
		}
		return a, nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = e
		}
		return m, nil
	case []string:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = e
		}
		return a, nil
	}
	// Anything else (structs, typed maps and slices, pointers...): use its
	// JSON form. Slow, but only for values outside the documented types.
	jp, err := jsonPlain(v)
	if err != nil {
		return nil, err
	}
	return plain(jp, depth)
}

// plainPrimitive converts v when it is a primitive a script can be given
// (ok is false for anything else): nil, string, bool, every integer kind
// (int64, or float64 for a uint64 beyond it), float32 and float64 (int64
// when integral, nil for NaN and infinities, as exportPrimitive),
// json.Number and time.Time (an RFC 3339 string). The error is for a bad
// json.Number.
func plainPrimitive(v any) (out any, ok bool, err error) {
	switch x := v.(type) {
	case nil:
		return nil, true, nil
	case string:
		return x, true, nil
	case bool:
		return x, true, nil
	case int64:
		return x, true, nil
	case int:
		return int64(x), true, nil
	case float64:
		return plainFloat(x), true, nil
	case int8:
		return int64(x), true, nil
	case int16:
		return int64(x), true, nil
	case int32:
		return int64(x), true, nil
	case uint8:
		return int64(x), true, nil
	case uint16:
		return int64(x), true, nil
	case uint32:
		return int64(x), true, nil
	case uint:
		return plainUint(uint64(x)), true, nil
	case uint64:
		return plainUint(x), true, nil
	case float32:
		return plainFloat(float64(x)), true, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true, nil
		}
		f, err := x.Float64()
		if err != nil {
			return nil, true, fmt.Errorf("scripts: bad json.Number %q", string(x))
		}
		return plainFloat(f), true, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), true, nil
	}
	return nil, false, nil
}

// plainFloat is what a JavaScript number exports as (see exportPrimitive).
func plainFloat(f float64) any {
	v, _ := exportPrimitive(f)
	return v
}

// plainUint keeps unsigned integers exact where int64 can hold them.
func plainUint(u uint64) any {
	if u <= math.MaxInt64 {
		return int64(u)
	}
	return plainFloat(float64(u))
}

// viewOfPlain is the JavaScript form of a plain value: a mutable view of a
// map or slice, a primitive otherwise.
func viewOfPlain(vm *goja.Runtime, v any) goja.Value {
	switch x := v.(type) {
	case map[string]any:
		return newRWObject(vm, x)
	case []any:
		return newRWArray(vm, x)
	case nil:
		return goja.Null()
	}
	return vm.ToValue(v) // string, int64, float64, bool
}

// rwObject is the handler of a mutable view of a plain map. Every key is
// in exactly one of m (an untouched plain value, the view's own) and js
// (a value the script assigned, or the view made when it read a nested
// object or array); once the view is exported, m holds the exported
// values too.
type rwObject struct {
	vm *goja.Runtime
	m  map[string]any
	js map[string]goja.Value
	// order is the key order, made when the keys are first listed;
	// until then added holds the keys added so far, in order.
	order []string
	added []string
	// exported is set once the view's map has been handed out as an
	// export result; a second export (the view is reachable twice)
	// copies it so that results never share maps.
	exported bool
}

var (
	rwObjectType = reflect.TypeFor[*rwObject]()
	rwArrayType  = reflect.TypeFor[*rwArray]()
)

func newRWObject(vm *goja.Runtime, m map[string]any) *goja.Object {
	return vm.NewDynamicObject(&rwObject{vm: vm, m: m})
}

func (o *rwObject) Get(key string) goja.Value {
	if v, ok := o.js[key]; ok {
		return v
	}
	v, ok := o.m[key]
	if !ok {
		return nil
	}
	jv := viewOfPlain(o.vm, v)
	switch v.(type) {
	case map[string]any, []any:
		// From now on the view is the value.
		o.setJS(key, jv)
		delete(o.m, key)
	}
	return jv
}

func (o *rwObject) setJS(key string, v goja.Value) {
	if o.js == nil {
		o.js = make(map[string]goja.Value, 4)
	}
	o.js[key] = v
}

func (o *rwObject) Has(key string) bool {
	if _, ok := o.js[key]; ok {
		return true
	}
	_, ok := o.m[key]
	return ok
}

func (o *rwObject) Set(key string, v goja.Value) bool {
	if !o.Has(key) {
		if o.order != nil {
			o.order = append(o.order, key)
		} else {
			o.added = append(o.added, key)
		}
	} else {
		delete(o.m, key)
	}
	o.setJS(key, v)
	return true
}

func (o *rwObject) Delete(key string) bool {
	if !o.Has(key) {
		return true
	}
	if o.order != nil {
		// A new slice: iterations in progress keep the old one.
		o.order = slices.DeleteFunc(slices.Clone(o.order), func(k string) bool { return k == key })
	} else {
		o.added = slices.DeleteFunc(o.added, func(k string) bool { return k == key })
	}
	delete(o.js, key)
	delete(o.m, key)
	return true
}

// Keys lists the keys: those of the argument sorted, then added ones in
// the order they were added (a key deleted and added again counts as
// added). The slice is shared with goja's iterators, so it is never
// changed in place: Set only appends, beyond the length an iterator
// holds, and Delete makes a new one.
func (o *rwObject) Keys() []string {
	if o.order == nil {
		o.order = make([]string, 0, len(o.m)+len(o.js))
		for k := range o.m {
			if !slices.Contains(o.added, k) {
				o.order = append(o.order, k)
			}
		}
		for k := range o.js {
			if !slices.Contains(o.added, k) {
				o.order = append(o.order, k)
			}
		}
		slices.Sort(o.order)
		o.order = append(o.order, o.added...)
		o.added = nil
	}
	return o.order
}

// rwArray is the handler of a mutable view of a plain slice. An element
// is a[i] unless js is long enough and js[i] is set: a value the script
// assigned, or the view of a nested object or array it read. Elements the
// array grew by are hole{} in a: undefined to the script, null in the
// result.
type rwArray struct {
	vm       *goja.Runtime
	a        []any
	js       []goja.Value
	exported bool
}

// hole is an element an array view grew by and the script has not set.
type hole struct{}

func newRWArray(vm *goja.Runtime, a []any) *goja.Object {
	return vm.NewDynamicArray(&rwArray{vm: vm, a: a})
}

func (r *rwArray) Len() int { return len(r.a) }

func (r *rwArray) Get(i int) goja.Value {
	if i < 0 || i >= len(r.a) {
		return nil
	}
	if i < len(r.js) && r.js[i] != nil {
		return r.js[i]
	}
	v := r.a[i]
	if v == (hole{}) {
		return goja.Undefined()
	}
	jv := viewOfPlain(r.vm, v)
	switch v.(type) {
	case map[string]any, []any:
		r.setJS(i, jv)
		r.a[i] = nil
	}
	return jv
}

func (r *rwArray) setJS(i int, v goja.Value) {
	if len(r.js) < len(r.a) {
		r.js = append(r.js, make([]goja.Value, len(r.a)-len(r.js))...)
	}
	r.js[i] = v
}

// Set assigns element i, growing the array when i is past its end. An
// index no result could hold (negative, or beyond maxExportValues) is
// refused: a TypeError in strict code, no effect in sloppy code.
func (r *rwArray) Set(i int, v goja.Value) bool {
	if i < 0 || i >= maxExportValues {
		return false
	}
	if i >= len(r.a) && !r.SetLen(i+1) {
		return false
	}
	r.setJS(i, v)
	return true
}

// SetLen truncates the array or grows it with undefined elements, up to
// maxExportValues.
func (r *rwArray) SetLen(n int) bool {
	if n < 0 || n > maxExportValues {
		return false
	}
	old := len(r.a)
	switch {
	case n < old:
		clear(r.a[n:])
		r.a = r.a[:n]
		if len(r.js) > n {
			clear(r.js[n:])
			r.js = r.js[:n]
		}
	case n > old:
		r.a = slices.Grow(r.a, n-old)
		for range n - old {
			r.a = append(r.a, hole{})
		}
	}
	return true
}

// exportObjectView and exportArrayView export a view: its own map or
// slice, with the values the script assigned exported into it. The view's
// object is already on x's stack.
func (x *exporter) exportObjectView(o *rwObject) (any, error) {
	x.budget -= len(o.m)
	if x.budget < 0 {
		return nil, &exportError{fmt.Sprintf("result has more than %d values", maxExportValues)}
	}
	out := o.m
	if o.exported {
		out = clonePlain(o.m).(map[string]any)
	}
	o.exported = true
	for k, v := range o.js {
		ev, omit, err := x.export(v)
		if err != nil {
			return nil, err
		}
		if omit {
			delete(out, k)
		} else {
			out[k] = ev
		}
	}
	return out, nil
}

func (x *exporter) exportArrayView(r *rwArray) (any, error) {
	x.budget -= len(r.a)
	if x.budget < 0 {
		return nil, &exportError{fmt.Sprintf("result has more than %d values", maxExportValues)}
	}
	out := r.a
	if r.exported {
		out = clonePlain(r.a).([]any)
	}
	r.exported = true
	for i, v := range out {
		if v == (hole{}) {
			out[i] = nil
		}
	}
	for i, v := range r.js {
		if v == nil {
			continue
		}
		ev, _, err := x.export(v)
		if err != nil {
			return nil, err
		}
		out[i] = ev
	}
	return out, nil
}

// clonePlain deep-copies a plain value.
func clonePlain(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clonePlain(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = clonePlain(e)
		}
		return a
	}
	return v
}
