package scripts

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dop251/goja"
)

// Limits of what a script passes to context.fetch.
const (
	maxFetchHeaders     = 64
	maxFetchHeaderBytes = 8 << 10
)

// fetchJS is context.fetch(url, {method, headers, body, timeout_ms}):
// it returns {status, headers, body} or throws an Error saying why the
// call was refused or failed (docs/scripts.md, "context.fetch"). It
// blocks the script until the answer, within the call's deadline.
func (st *vmState) fetchJS(call goja.FunctionCall) goja.Value {
	c := &st.cur
	vm := st.vm
	if c.logger == nil {
		return goja.Undefined() // no call in progress
	}
	throw := func(msg string) {
		if ctor, ok := goja.AssertConstructor(vm.Get("Error")); ok {
			if e, err := ctor(nil, vm.ToValue(msg)); err == nil {
				panic(e)
			}
		}
		panic(vm.NewTypeError(msg))
	}
	rawURL, ok := call.Argument(0).Export().(string)
	if !ok {
		panic(vm.NewTypeError("fetch: the url must be a string"))
	}
	req := &fetchRequest{url: rawURL, method: http.MethodGet, headers: map[string]string{}}
	if o := call.Argument(1); !goja.IsUndefined(o) && !goja.IsNull(o) {
		opts, ok := o.(*goja.Object)
		if !ok {
			panic(vm.NewTypeError("fetch: the options must be an object"))
		}
		if v := opts.Get("method"); v != nil && !goja.IsUndefined(v) {
			req.method = strings.ToUpper(v.String())
		}
		if v := opts.Get("headers"); v != nil && !goja.IsUndefined(v) && !goja.IsNull(v) {
			ho, ok := v.(*goja.Object)
			if !ok {
				panic(vm.NewTypeError("fetch: headers must be an object"))
			}
			keys := ho.Keys()
			if len(keys) > maxFetchHeaders {
				throw("fetch: too many headers")
			}
			for _, k := range keys {
				val := ho.Get(k).String()
				if len(k)+len(val) > maxFetchHeaderBytes {
					throw("fetch: header too large: " + k)
				}
				req.headers[k] = val
			}
		}
		if v := opts.Get("body"); v != nil && !goja.IsUndefined(v) && !goja.IsNull(v) {
			if req.body, ok = v.Export().(string); !ok {
				panic(vm.NewTypeError("fetch: body must be a string (JSON.stringify an object)"))
			}
		}
		if v := opts.Get("timeout_ms"); v != nil && !goja.IsUndefined(v) {
			ms := v.ToFloat()
			if !(ms > 0) {
				panic(vm.NewTypeError("fetch: timeout_ms must be a positive number"))
			}
			req.timeout = time.Duration(min(ms, float64(time.Hour/time.Millisecond)) * float64(time.Millisecond))
		}
	}
	if c.fetch == nil {
		throw("fetch: not available here")
	}
	resp, line, err := c.fetch(c.ctx, req, c.deadline)
	if line != "" {
		if len(c.logs) < maxLogLines {
			c.logs = append(c.logs, line)
		} else {
			c.dropped++
		}
	}
	if err != nil {
		if fe, ok := err.(*fetchError); ok && fe.outcome == "cancelled" {
			// The request ended: the call ends too, whether or not the
			// script catches the error.
			vm.Interrupt(cancelled{errors.New("the request ended")})
		}
		throw(err.Error())
	}
	headers := vm.NewObject()
	names := make([]string, 0, len(resp.headers))
	for k := range resp.headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		_ = headers.Set(k, resp.headers[k])
	}
	out := vm.NewObject()
	_ = out.Set("status", resp.status)
	_ = out.Set("headers", headers)
	_ = out.Set("body", resp.body)
	return out
}
