package scripts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"time"

	"github.com/dop251/goja"
)

const (
	// maxDepth bounds nesting when copying values into and out of a
	// script: deeper data is almost certainly a cycle or an attack, and Go
	// recursion must stay bounded.
	maxDepth = 100
	// maxExportValues bounds how many values one call may hand back (its
	// return value and arguments together), so a script cannot make the
	// server allocate without limit (e.g. a = []; a.length = 1e9).
	maxExportValues = 1 << 20
)

// indexKeys caches the property names of small array indexes so that
// exporting arrays does not format an integer per element.
var indexKeys = func() (k [1024]string) {
	for i := range k {
		k[i] = strconv.Itoa(i)
	}
	return
}()

// indexKey is the property name of array index i.
func indexKey(i int) string {
	if i < len(indexKeys) {
		return indexKeys[i]
	}
	return strconv.Itoa(i)
}

// primitiveToJS converts v when it is one of the primitives of
// plainPrimitive (nil included); for maps, slices and other types it
// returns nil and no error.
func primitiveToJS(vm *goja.Runtime, v any) (goja.Value, error) {
	p, ok, err := plainPrimitive(v)
	switch {
	case !ok || err != nil:
		return nil, err
	case p == nil:
		return goja.Null(), nil
	}
	return vm.ToValue(p), nil
}

// jsonPlain turns a value of a type toJS does not know into plain values
// (numbers as json.Number) through its JSON form; nil pointers, maps and
// slices become nil.
func jsonPlain(v any) (any, error) {
	rv := reflect.ValueOf(v)
	if (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) && rv.IsNil() {
		return nil, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("scripts: cannot pass %T to a script: %w", v, err)
	}
	var plain any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&plain); err != nil {
		return nil, fmt.Errorf("scripts: cannot pass %T to a script: %w", v, err)
	}
	return plain, nil
}

// exportError is a result a script cannot hand back (cyclic, too deep, too
// large); it is reported as a wrong_type failure.
type exportError struct{ msg string }

func (e *exportError) Error() string { return e.msg }

// exporter turns script values back into plain Go values, with the
// semantics of JSON.stringify except that toJSON methods are not called:
// undefined, functions and symbols are dropped from objects and become
// nil in arrays; NaN and ±Infinity become nil; Dates become ISO 8601
// strings; numbers with an integral value become int64, others float64;
// a BigInt becomes int64 when it fits and a decimal string otherwise.
// Cycles, nesting deeper than maxDepth and more than maxExportValues
// values are errors. Getters and proxy traps run, so export must happen
// while the call's deadline is still armed.
type exporter struct {
	stack  []*goja.Object // objects being exported, for cycle detection
	budget int
}

// isoDate is t as the runtime's own Date.prototype.toISOString writes it,
// so that an exported Date reads as JSON.stringify in the script gives it:
// years 0 to 9999 in four digits, later ones with a "+" and as many
// digits as they take, earlier ones with a "-" and at least four (goja's
// form; ECMA-262 §21.4.1.32 would pad expanded years to six digits).
func isoDate(t time.Time) string {
	t = t.UTC()
	rest := t.Format("-01-02T15:04:05.000Z07:00")
	switch y := t.Year(); {
	case y > 9999:
		return fmt.Sprintf("+%d%s", y, rest)
	case y < 0:
		return fmt.Sprintf("-%04d%s", -y, rest)
	default:
		return fmt.Sprintf("%04d%s", y, rest)
	}
}

// export returns the Go form of v; omit reports a value JSON would leave
// out of an object.
func (x *exporter) export(v goja.Value) (out any, omit bool, err error) {
	x.budget--
	if x.budget < 0 {
		return nil, false, &exportError{fmt.Sprintf("result has more than %d values", maxExportValues)}
	}
	if v == nil || goja.IsUndefined(v) {
		return nil, true, nil
	}
	if goja.IsNull(v) {
		return nil, false, nil
	}
	o, ok := v.(*goja.Object)
	if !ok {
		if _, isSym := v.(*goja.Symbol); isSym {
			return nil, true, nil
		}
		out, omit = exportPrimitive(v.Export())
		return out, omit, nil
	}
	switch o.ClassName() {
	case "Function":
		return nil, true, nil
	case "Date":
		t, ok := o.Export().(time.Time)
		if !ok || math.IsNaN(o.ToFloat()) {
			return nil, false, nil
		}
		return isoDate(t), false, nil
	case "String":
		// JSON.stringify gives a String object's string (ECMA-262
		// SerializeJSONProperty); goja would export it as a map.
		return o.String(), false, nil
	case "Number", "Boolean", "BigInt":
		out, omit = exportPrimitive(o.Export())
		return out, omit, nil
	}
	if len(x.stack) >= maxDepth {
		return nil, false, &exportError{fmt.Sprintf("result nested deeper than %d levels", maxDepth)}
	}
	for _, a := range x.stack {
		if a == o {
			return nil, false, &exportError{"result contains a cycle"}
		}
	}
	x.stack = append(x.stack, o)
	defer func() { x.stack = x.stack[:len(x.stack)-1] }()

	switch o.ExportType() {
	case rwObjectType:
		out, err := x.exportObjectView(o.Export().(*rwObject))
		return out, false, err
	case rwArrayType:
		out, err := x.exportArrayView(o.Export().(*rwArray))
		return out, false, err
	}

	if o.ClassName() == "Array" {
		n := o.Get("length").ToInteger()
		if n > int64(x.budget) {
			return nil, false, &exportError{fmt.Sprintf("result has more than %d values", maxExportValues)}
		}
		arr := make([]any, n)
		for i := range arr {
			ev, _, err := x.export(o.Get(indexKey(i)))
			if err != nil {
				return nil, false, err
			}
			arr[i] = ev
		}
		return arr, false, nil
	}
	keys := o.Keys()
	m := make(map[string]any, len(keys))
	for _, k := range keys {
		ev, omit, err := x.export(o.Get(k))
		if err != nil {
			return nil, false, err
		}
		if !omit {
			m[k] = ev
		}
	}
	return m, false, nil
}

// exportPrimitive normalises what goja's Export gives for a primitive.
func exportPrimitive(v any) (any, bool) {
	switch x := v.(type) {
	case nil:
		return nil, false
	case int64, string, bool:
		return x, false
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		if x == math.Trunc(x) && x >= math.MinInt64 && x < math.MaxInt64 {
			return int64(x), false
		}
		return x, false
	case *big.Int:
		if x.IsInt64() {
			return x.Int64(), false
		}
		return x.String(), false
	}
	// Symbols and anything unexpected are left out, as JSON does.
	return nil, true
}
