package hooks

import (
	"context"
	"fmt"
	"reflect"
	"testing"
)

type traceKey struct{}

// tracedRuntime is fakeRuntime that notes whether each call ran with the
// context the tracer returned, and knows one more behaviour: "non-object"
// returns true after replacing its argument with a string.
type tracedRuntime struct {
	fakeRuntime
	traced []bool
}

func (r *tracedRuntime) Call(ctx context.Context, s *Script, call *Call) (*Result, error) {
	r.traced = append(r.traced, ctx.Value(traceKey{}) == s.Name)
	if s.Source == "non-object" {
		return &Result{Defined: true, Return: true, Args: []any{"x"}}, nil
	}
	return r.fakeRuntime.Call(ctx, s, call)
}

// recordCalls sets d.TraceCall to one that notes "name function result"
// per call, and fails t when a call is ended twice.
func recordCalls(t *testing.T, d *Dispatcher) *[]string {
	var got []string
	d.TraceCall = func(ctx context.Context, s *Script, fn Function) (context.Context, func(string)) {
		ended := false
		return context.WithValue(ctx, traceKey{}, s.Name), func(result string) {
			if ended {
				t.Errorf("call of %s ended twice", s.Name)
			}
			ended = true
			got = append(got, fmt.Sprintf("%s %s %s", s.Name, fn, result))
		}
	}
	return &got
}

// TestTraceCall: the tracer hears of every call once, with the result
// the dispatcher judged (a wrong answer is a failure though the runtime
// succeeded), and the call runs with the tracer's context.
func TestTraceCall(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scripts  []*Script
		lifetime bool
		want     []string
	}{
		{"run", []*Script{script("a", "add", 0), script("b", "add-then-false", 1), script("c", "throw", 2),
			script("d", "string", 3), script("e", "undefined", 4), script("f", "non-object", 5)}, false,
			[]string{"a modifyResponse ok", "b modifyResponse ok", "c modifyResponse exception",
				"d modifyResponse wrong_type", "e modifyResponse undefined", "f modifyResponse wrong_type"}},
		{"deny stops", []*Script{script("a", "throw", 0, func(s *Script) { s.OnError = OnErrorDeny }), script("b", "add", 1)}, false,
			[]string{"a modifyResponse exception"}},
		{"lifetime", []*Script{script("a", "lifetime", 0), script("b", "lifetime-bad", 1), script("c", "undefined", 2),
			script("d", "throw", 3)}, true,
			[]string{"a getAccessTokenLifetimeInSeconds ok", "b getAccessTokenLifetimeInSeconds ok",
				"c getAccessTokenLifetimeInSeconds undefined", "d getAccessTokenLifetimeInSeconds exception"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &tracedRuntime{}
			d := NewDispatcher(rt, nil)
			got := recordCalls(t, d)
			if tc.lifetime {
				d.Lifetime(context.Background(), tc.scripts, FnAccessTokenLifetime, nil)
			} else {
				d.Run(context.Background(), tc.scripts, FnModifyResponse, map[string]any{}, nil, DiscardOnFalse)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("traced %q, want %q", *got, tc.want)
			}
			for i, ok := range rt.traced {
				if !ok {
					t.Errorf("call %d (%s) did not run with the tracer's context", i, rt.calls[i])
				}
			}
		})
	}
}

// TestTraceCallTripped: a call an open breaker skips is traced as tripped.
func TestTraceCallTripped(t *testing.T) {
	s := versioned("s", "v1")
	f := newBreakerFixture(t, s)
	f.trip(t, s)
	got := recordCalls(t, f.d)
	f.d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{}, nil, DiscardOnFalse)
	f.d.Lifetime(context.Background(), []*Script{s}, FnAccessTokenLifetime, nil)
	want := []string{"s modifyResponse tripped", "s getAccessTokenLifetimeInSeconds tripped"}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("traced %q, want %q", *got, want)
	}
}

// TestUntracedCallDoesNotAllocate: without a tracer, tracing a call costs
// a nil check.
func TestUntracedCallDoesNotAllocate(t *testing.T) {
	d := NewDispatcher(&fakeRuntime{}, nil)
	s := script("a", "add", 0)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		cctx, end := d.startCall(ctx, s, FnModifyResponse)
		end(resultOf(nil))
		if cctx != ctx {
			t.Fatal("context changed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}
