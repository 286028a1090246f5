package scripts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dop251/goja"
	"github.com/dop251/goja/parser"

	"github.com/keyhook/keyhook/hooks"
)

const (
	// maxLogLines and maxLogLineBytes cap what one call may write with
	// context.log, so a chatty or hostile script cannot flood the logs.
	maxLogLines     = 100
	maxLogLineBytes = 4 << 10
	truncatedMark   = "…[truncated]"
)

// promiseType identifies promises cheaply: ExportType, unlike Export,
// does not copy the object.
var promiseType = reflect.TypeOf((*goja.Promise)(nil))

// interrupted is the value a runtime is interrupted with when its call's
// deadline passes; cancelled, when its request ends first.
type (
	interrupted struct{}
	cancelled   struct{ cause error }
)

// vmState is one pooled goja runtime of one script version. It is used by
// one call at a time; only its timer's callback touches it concurrently,
// and that only calls vm.Interrupt, which goja makes safe.
type vmState struct {
	vm         *goja.Runtime
	run        goja.Callable // hardenSource's run(wrapper, index, n, args)
	export     goja.Callable // native; exports cur.ret and cur.args
	stringify  goja.Callable // the original JSON.stringify
	notDefined *goja.Object
	wrapper    goja.Value // the compiled script: one call = one fresh top level
	// fns are the script's top-level functions when its top level runs
	// once per runtime (compiled.once), by index; nil otherwise.
	fns   []goja.Callable
	log   goja.Value // context.log, frozen, reads cur
	timer *time.Timer
	cur   callState
	// watch is Runtime.watch (worker processes): told when a call starts
	// running JavaScript; the function it returns reports whether it
	// interrupted the call.
	watch func(interrupt func(v any)) func() bool

	// fetch is context.fetch, frozen, reading cur; fetcher makes the
	// next call's fetches (set before each invoke).
	fetch   goja.Value
	fetcher fetchFunc
}

// callState is what the native functions of a vmState need to know about
// the call in progress. It is reset after every call so that nothing of a
// call outlives it.
type callState struct {
	ctx      context.Context
	logger   *slog.Logger
	script   string
	function hooks.Function
	logs     []string
	dropped  int
	// deadline is when the call's time ends; fetch makes its fetches.
	deadline time.Time
	fetch    fetchFunc

	ret    goja.Value      // what the function returned
	thrown *goja.Exception // what the function threw
	args   []goja.Value    // the arguments as passed (without context)

	outRet  any
	outArgs []any
	failure *hooks.ScriptError
}

// newVMState makes a runtime for one compiled script: a fresh goja realm,
// hardened (see hardenSource) before the script's code is ever evaluated,
// with the script's wrapper function instantiated and frozen.
func newVMState(c *compiled, stackSize int) (st *vmState, err error) {
	defer func() {
		if x := recover(); x != nil {
			st, err = nil, fmt.Errorf("scripts: creating runtime: %v", x)
		}
	}()
	vm := goja.New()
	vm.SetMaxCallStackSize(stackSize)
	// The Function constructor compiles at run time; it must not read
	// source maps from disk either.
	vm.SetParserOptions(parser.WithDisableSourceMaps)
	// goja seeds a generator per runtime, whose position would let a call
	// observe how many random numbers earlier calls drew; use the
	// process-wide one instead.
	vm.SetRandSource(rand.Float64)
	h, err := vm.RunProgram(hardenProgram)
	if err != nil {
		return nil, fmt.Errorf("scripts: hardening runtime: %w", err)
	}
	ho := h.(*goja.Object)
	st = &vmState{vm: vm}
	var ok1, ok2, ok3 bool
	st.run, ok1 = goja.AssertFunction(ho.Get("run"))
	st.stringify, ok2 = goja.AssertFunction(ho.Get("stringify"))
	freezeFunctions, ok3 := goja.AssertFunction(ho.Get("freezeFunctions"))
	st.notDefined, _ = ho.Get("notDefined").(*goja.Object)
	if !ok1 || !ok2 || !ok3 || st.notDefined == nil {
		return nil, errors.New("scripts: hardening runtime: missing helpers")
	}
	st.log = vm.ToValue(st.logFunc)
	st.fetch = vm.ToValue(st.fetchJS)
	exportFn := vm.ToValue(st.exportFunc)
	st.export, _ = goja.AssertFunction(exportFn)
	st.wrapper, err = vm.RunProgram(c.prg)
	if err != nil {
		return nil, fmt.Errorf("scripts: instantiating script: %w", err)
	}
	// The log function is handed to scripts, and the wrapper is visible
	// to them as arguments.callee; freeze both (and what hangs off them,
	// e.g. the wrapper's prototype object) so they cannot carry state.
	if _, err := freezeFunctions(goja.Undefined(), vm.NewArray(st.log, st.fetch, st.wrapper, exportFn)); err != nil {
		return nil, fmt.Errorf("scripts: freezing runtime: %w", err)
	}
	if c.once {
		// The top level only declares functions, which no code can
		// change or reach except by calling them (see runsOnce): run it
		// now, once, and freeze what it made.
		wrapper, _ := goja.AssertFunction(st.wrapper)
		arr, err := wrapper(goja.Undefined())
		if err != nil {
			return nil, fmt.Errorf("scripts: running the top level: %w", err)
		}
		if _, err := freezeFunctions(goja.Undefined(), arr); err != nil {
			return nil, fmt.Errorf("scripts: freezing runtime: %w", err)
		}
		ao := arr.(*goja.Object)
		st.fns = make([]goja.Callable, len(c.index))
		for i := range st.fns {
			if st.fns[i], _ = goja.AssertFunction(ao.Get(indexKey(i))); st.fns[i] == nil {
				return nil, errors.New("scripts: a top-level binding is not a function")
			}
		}
	}
	st.timer = time.AfterFunc(time.Hour, func() { vm.Interrupt(interrupted{}) })
	st.timer.Stop()
	return st, nil
}

// invoke runs call.Function (binding number idx of the script) with the
// given deadline. reusable is false when the runtime must be discarded:
// it was interrupted, overflowed its stack or panicked. invoke never lets
// a Go panic escape: a panic becomes an exception failure.
func (st *vmState) invoke(ctx context.Context, name string, idx int, call *hooks.Call, logger *slog.Logger, deadline time.Time, timeoutMsg func() string) (res *hooks.Result, reusable bool, err error) {
	st.cur = callState{ctx: ctx, logger: logger, script: name, function: call.Function, deadline: deadline, fetch: st.fetcher}
	defer func() {
		if x := recover(); x != nil {
			st.timer.Stop()
			res = &hooks.Result{Defined: true, Logs: st.cur.logs}
			err = &hooks.ScriptError{Script: name, Function: call.Function, Kind: hooks.FailureException, Message: fmt.Sprintf("internal error: %v", x)}
			reusable = false
		}
		st.cur = callState{}
	}()

	// Copy the arguments in. A failure here is the caller's fault, not
	// the script's, and leaves the runtime clean.
	// runArgs is what the function is called with: the arguments and the
	// context, after (when the top level runs per call) what st.run
	// takes first: the wrapper, the index and the number of arguments.
	var prefix []goja.Value
	if st.fns == nil {
		prefix = []goja.Value{st.wrapper, st.vm.ToValue(idx), st.vm.ToValue(len(call.Args) + 1)}
	}
	runArgs := append(make([]goja.Value, 0, len(prefix)+len(call.Args)+1), prefix...)
	for i, a := range call.Args {
		p, cerr := plain(a, 0)
		if cerr != nil {
			return nil, true, fmt.Errorf("scripts: argument %d: %w", i, cerr)
		}
		// A mutable view of the call's own copy (see rwview.go).
		runArgs = append(runArgs, viewOfPlain(st.vm, p))
	}
	// The context is not copied: the script gets a read-only view that
	// converts what it reads (see readonly.go).
	ctxObj, cerr := contextView(st.vm, call.Context, st.log, st.fetch)
	if cerr != nil {
		return nil, true, fmt.Errorf("scripts: context: %w", cerr)
	}
	runArgs = append(runArgs, ctxObj)
	args := runArgs[len(prefix) : len(runArgs)-1] // without the context
	fn := st.run
	if st.fns != nil {
		fn = st.fns[idx]
	} else if len(call.Args) > 1 {
		// run takes one or two arguments (the usual case) or an array.
		items := make([]any, len(runArgs)-len(prefix))
		for i, v := range runArgs[len(prefix):] {
			items[i] = v
		}
		runArgs = append(prefix, st.vm.NewArray(items...)) // new: args shares the old array
	}

	start := time.Now()
	st.timer.Reset(deadline.Sub(start))
	// The request's end interrupts the call too (the client went away,
	// the server is shutting down).
	stopCancel := func() bool { return true }
	if ctx.Done() != nil {
		stopCancel = context.AfterFunc(ctx, func() {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				st.vm.Interrupt(interrupted{}) // ctx's deadline is the call's
				return
			}
			st.vm.Interrupt(cancelled{context.Cause(ctx)})
		})
	}
	watchDone := func() bool { return false }
	if st.watch != nil {
		watchDone = st.watch(func(v any) { st.vm.Interrupt(v) })
	}
	fail := func(kind hooks.FailureKind, msg string) *hooks.ScriptError {
		return &hooks.ScriptError{Script: name, Function: call.Function, Kind: kind, Message: msg}
	}
	reusable = true

	ret, rerr := fn(goja.Undefined(), runArgs...)
	if rerr != nil {
		var ex *goja.Exception
		if kind, msg, ok := aborted(rerr, timeoutMsg); ok {
			err, reusable = fail(kind, msg), false
		} else if errors.As(rerr, &ex) {
			st.cur.thrown = ex
		} else {
			err = fail(hooks.FailureException, rerr.Error())
		}
	} else if ret.SameAs(st.notDefined) {
		if !st.timer.Stop() || !stopCancel() || watchDone() {
			reusable = false
		}
		return &hooks.Result{Defined: false}, reusable, nil
	}

	if err == nil {
		// Export inside a JavaScript call, so that getters, proxy traps
		// and toString methods that run meanwhile are under the deadline
		// and their exceptions come back as errors.
		st.cur.ret = ret
		st.cur.args = args
		if _, xerr := st.export(goja.Undefined()); xerr != nil {
			reusable = false
			if kind, msg, ok := aborted(xerr, timeoutMsg); ok {
				err = fail(kind, msg)
			} else {
				err = fail(hooks.FailureException, "exporting the result: "+xerr.Error())
			}
		} else if st.cur.failure != nil {
			err = st.cur.failure
		}
	}
	if !st.timer.Stop() || !stopCancel() {
		// The deadline passed or the request ended: an interrupt is
		// pending or about to be delivered, possibly after any
		// ClearInterrupt we could do.
		reusable = false
	}
	if watchDone() {
		// The watchdog found the call over its memory budget, maybe
		// only after its JavaScript ended: the call fails all the same.
		reusable = false
		var se *hooks.ScriptError
		if err == nil || errors.As(err, &se) && se.Kind != hooks.FailureMemory {
			err = fail(hooks.FailureMemory, "allocated past its memory budget")
		}
	}
	res = &hooks.Result{Defined: true, Logs: st.cur.logs, Duration: time.Since(start)}
	if err == nil {
		res.Return, res.Args = st.cur.outRet, st.cur.outArgs
	}
	if st.cur.dropped > 0 {
		logger.LogAttrs(ctx, slog.LevelWarn, "script log lines dropped", slog.String("script", name),
			slog.String("function", string(call.Function)), slog.Int("dropped", st.cur.dropped), slog.Int("limit", maxLogLines))
	}
	return res, reusable, err
}

// aborted recognises the errors goja returns for a call it stopped: an
// interrupt at the deadline, and a stack overflow. Either way the runtime
// must not be reused.
func aborted(err error, timeoutMsg func() string) (kind hooks.FailureKind, msg string, ok bool) {
	var ie *goja.InterruptedError
	var so *goja.StackOverflowError
	switch {
	case errors.As(err, &ie):
		switch v := ie.Value().(type) {
		case cancelled:
			return hooks.FailureCancelled, fmt.Sprintf("stopped: the request ended (%v)", v.cause), true
		case overBudget:
			return hooks.FailureMemory, "allocated past its memory budget", true
		}
		return hooks.FailureTimeout, timeoutMsg(), true
	case errors.As(err, &so):
		return hooks.FailureStackOverflow, "maximum call stack size exceeded", true
	}
	return "", "", false
}

// exportFunc is called from Go through st.export, i.e. inside a
// JavaScript call: it turns the call's outcome into Go values.
func (st *vmState) exportFunc(goja.FunctionCall) goja.Value {
	c := &st.cur
	fail := func(kind hooks.FailureKind, msg string) {
		c.failure = &hooks.ScriptError{Script: c.script, Function: c.function, Kind: kind, Message: msg}
	}
	if c.thrown != nil {
		fail(hooks.FailureException, st.describeException(c.thrown))
		return goja.Undefined()
	}
	ret := c.ret
	if o, ok := ret.(*goja.Object); ok && o.ExportType() == promiseType {
		if p, ok := o.Export().(*goja.Promise); ok {
			switch p.State() {
			case goja.PromiseStateFulfilled:
				ret = p.Result()
			case goja.PromiseStateRejected:
				fail(hooks.FailureException, "promise rejected: "+st.format(p.Result()))
				return goja.Undefined()
			default:
				fail(hooks.FailureWrongType, "returned a promise that did not settle")
				return goja.Undefined()
			}
		}
	}
	x := exporter{budget: maxExportValues}
	v, _, err := x.export(ret)
	if err != nil {
		fail(hooks.FailureWrongType, "return value: "+err.Error())
		return goja.Undefined()
	}
	c.outRet = v
	c.outArgs = make([]any, len(c.args))
	for i, a := range c.args {
		v, _, err := x.export(a)
		if err != nil {
			fail(hooks.FailureWrongType, fmt.Sprintf("argument %d: %v", i, err))
			return goja.Undefined()
		}
		c.outArgs[i] = v
	}
	return goja.Undefined()
}

// describeException renders a thrown value and where it was thrown:
// the innermost frame with a source position, called "top level" when it
// is the wrapper function, i.e. the script's top-level code.
func (st *vmState) describeException(ex *goja.Exception) string {
	msg := st.format(ex.Value())
	frames := ex.Stack()
	for i := range frames {
		p := frames[i].Position()
		if p.Line <= 0 {
			continue
		}
		col := p.Column
		if p.Line == 1 && col > len(wrapperPrefix) {
			col -= len(wrapperPrefix)
		}
		where := frames[i].FuncName()
		if where == "" || where == "<anonymous>" {
			// The wrapper is anonymous and the outermost frame of the
			// script (hook functions have names, even those assigned
			// from anonymous function expressions).
			where = "<anonymous>"
			outermost := true
			for j := i + 1; j < len(frames); j++ {
				if frames[j].SrcName() == frames[i].SrcName() {
					outermost = false
					break
				}
			}
			if outermost {
				where = "top level"
			}
		}
		return fmt.Sprintf("%s (at %s, line %d, column %d)", msg, where, p.Line, col)
	}
	return msg
}

// logFunc is context.log: it joins its arguments with spaces (strings as
// they are, other values as JSON), keeps the line for Result.Logs and
// writes it to the call's logger.
func (st *vmState) logFunc(call goja.FunctionCall) goja.Value {
	c := &st.cur
	if c.logger == nil {
		return goja.Undefined() // no call in progress
	}
	if len(c.logs) >= maxLogLines {
		c.dropped++
		return goja.Undefined()
	}
	var b strings.Builder
	for i, a := range call.Arguments {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(st.format(a))
		if b.Len() > maxLogLineBytes {
			break
		}
	}
	line := truncate(b.String(), maxLogLineBytes)
	c.logs = append(c.logs, line)
	c.logger.LogAttrs(c.ctx, slog.LevelInfo, line, slog.String("script", c.script), slog.String("function", string(c.function)))
	return goja.Undefined()
}

// format renders a value for logs and error messages: strings as they
// are, errors as "Name: message", other values as JSON when they have a
// JSON form. It must run inside a JavaScript call (it may run script
// code: toJSON, getters, toString).
func (st *vmState) format(v goja.Value) string {
	if v == nil || goja.IsUndefined(v) {
		return "undefined"
	}
	o, isObj := v.(*goja.Object)
	if !isObj {
		if s, ok := v.Export().(string); ok {
			return s
		}
		return v.String()
	}
	switch o.ClassName() {
	case "Error":
		return o.String()
	case "Function":
		return "[function]"
	}
	if s, err := st.stringify(goja.Undefined(), v); err == nil {
		if str, ok := s.Export().(string); ok {
			return str
		}
	}
	return o.String()
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}
