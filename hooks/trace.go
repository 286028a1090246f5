package hooks

import (
	"context"
	"errors"
)

// Results of a script call as a CallTracer hears of them: ResultOK, ResultUndefined,
// or the call's FailureKind (FailureTripped for a call an open breaker skipped).
const (
	ResultOK        = "ok"
	ResultUndefined = "undefined" // the script does not define the function
)

// CallTracer is told of each script call the dispatcher makes, before it
// starts (tracing, docs/operations.md "Tracing"). The context it returns
// is the one the call runs with; end is called once, when the dispatcher
// has judged the call, with its result (see ResultOK). It must be safe
// for concurrent use and cheap: it runs on every call.
type CallTracer func(ctx context.Context, s *Script, fn Function) (_ context.Context, end func(result string))

// startCall starts tracing a call of fn of s, when d.TraceCall is set.
func (d *Dispatcher) startCall(ctx context.Context, s *Script, fn Function) (context.Context, func(string)) {
	if d.TraceCall == nil {
		return ctx, endNothing
	}
	return d.TraceCall(ctx, s, fn)
}

func endNothing(string) {}

// callResult is the result of a call that answered res, or failed with
// err (a verdict on its answer included).
func callResult(res *Result, err error) string {
	if err == nil && !res.Defined {
		return ResultUndefined
	}
	return resultOf(err)
}

// resultOf is the result of a call that ended with err.
func resultOf(err error) string {
	if err == nil {
		return ResultOK
	}
	var se *ScriptError
	if errors.As(err, &se) {
		return string(se.Kind)
	}
	return string(FailureException)
}
