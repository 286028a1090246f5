// Package scripts is keyhook's JavaScript hooks.Runtime, built on goja.
//
// # Isolation between calls
//
// A script must not be able to carry anything from one call into another
// (a counter, a cache, a polluted prototype): calls run on behalf of
// different clients and users, and a token must depend only on its own
// inputs. Runtimes are pooled for speed, so isolation cannot come from a
// fresh runtime per call. Deep-freezing the global object after running a
// script's top level once is not enough either: it misses top-level let
// and const bindings (they live in the global lexical scope, not on the
// global object), variables captured by closures (var next = (function ()
// { var n = 0; return function () { return ++n } })()), and the internal
// slots of Maps, Sets and Dates, which Object.freeze does not touch.
//
// So the two kinds of state are treated separately:
//
//   - The script's own state is made per call. Its source is compiled as
//     the body of a function (see compiled); every call evaluates that
//     body afresh, so each call gets new top-level bindings, new closures
//     and new objects, and the previous call's are garbage. The cost is
//     re-running the top level on every call: a few microseconds for a
//     script of function declarations and constant tables, more for one
//     that builds large tables at load time. The usual script has no
//     state to make: its top level only declares functions, which it only
//     ever calls. Such a script's top level runs once per runtime and its
//     functions are frozen (see runsOnce), which no call can tell apart
//     from a fresh top level.
//   - The shared realm (the global object, the builtins, their prototypes
//     and hidden intrinsics) is deep-frozen once per runtime before any
//     script code runs, and eval is removed (see hardenSource), so a call
//     cannot leave a trace there. Assignments to frozen properties fail
//     silently in sloppy code and throw a TypeError in strict code.
//
// Consequences for script authors: top-level bindings are not properties
// of the global object (this.x and globalThis.x do not see them, and
// assigning globalThis.x has no effect); hooks must be declared at the top
// level (function f() {}, var/let/const f = ...), not installed on
// globalThis; eval does not exist.
//
// # The arguments
//
// The arguments a script edits are the call's own copies, handed over as
// mutable views of Go maps and slices rather than built as JavaScript
// objects (see rwview.go): a field the script does not touch never
// crosses into JavaScript and back.
//
// # The context argument
//
// The context is not copied into the script: it is a read-only view of
// the caller's map that converts a field when the script first reads it
// (see readonly.go), made afresh for every call. Writes to it have no
// effect in sloppy code and throw a TypeError in strict code; unlike a
// frozen object it reports itself extensible and cannot be frozen
// (Object.freeze on it throws).
//
// # Limits
//
// A call is interrupted at its deadline (Script.Timeout or
// Options.DefaultTimeout, or ctx's deadline if earlier). goja only checks
// for interrupts between JavaScript instructions, so one long native
// operation runs to completion first: a script that builds a huge or
// deeply nested value and hands it to a builtin (JSON.stringify of an
// array nested a million deep, Array(1e9).fill()) can hold its runtime and
// its caller far past the deadline. Script authors can do this on
// purpose; token contents alone cannot, except through regular
// expressions with catastrophic backtracking, which run in goja's regexp2
// engine, so this package bounds every such match (see init).
package scripts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/dlclark/regexp2/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyhook/keyhook/hooks"
)

// regexpMatchTimeout bounds one regular-expression match on goja's
// backtracking engine (regexp2), which runs in Go and so cannot be
// interrupted at a call's deadline; without a bound a pattern with
// catastrophic backtracking would hold a runtime and its caller forever.
// A match that times out reports no match.
const regexpMatchTimeout = 250 * time.Millisecond

func init() {
	// Set before any goroutine can compile a regexp; only replace the
	// library's "forever" default, never a value someone chose.
	if regexp2.DefaultMatchTimeout == time.Duration(math.MaxInt64) {
		regexp2.DefaultMatchTimeout = regexpMatchTimeout
	}
}

// Options configures a Runtime. Zero values select the defaults.
type Options struct {
	// MaxRuntimes is the size of each script version's runtime pool, i.e.
	// how many calls of one script may run at once. Default
	// 2*GOMAXPROCS.
	MaxRuntimes int
	// MaxCallStackSize bounds JavaScript call depth (goja's
	// SetMaxCallStackSize); deeper calls fail with stack_overflow.
	// Default 256.
	MaxCallStackSize int
	// MaxSourceBytes rejects larger sources in Check and Call. Default
	// 64 KiB.
	MaxSourceBytes int
	// DefaultTimeout applies to scripts whose Timeout is 0. Default
	// 100ms.
	DefaultTimeout time.Duration
	// Registerer receives the engine's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives context.log lines of calls without a Logger and
	// the engine's own warnings; nil means slog.Default() at the time of
	// logging.
	Logger *slog.Logger
}

// Runtime is the goja-backed hooks.Runtime. It caches one compiled program
// and one runtime pool per script name, for the latest version seen. It is
// safe for concurrent use.
type Runtime struct {
	opts    Options
	metrics *metrics

	mu      sync.Mutex
	scripts map[string]*script
}

var _ hooks.Runtime = (*Runtime)(nil)

// script is the cache entry of one (Name, Version): compiled once, with
// its runtime pool.
type script struct {
	name, version, source string

	once     sync.Once
	compiled *compiled
	err      error

	// The pool. A call holds one of the permits of running (MaxRuntimes
	// of them) while it runs; with it, it takes the runtime returned
	// last to idle, or makes one when idle is empty. So at most
	// MaxRuntimes runtimes exist, a script only gets as many as it has
	// concurrent calls, and the runtime reused is the one used most
	// recently, whose memory is likeliest still in the CPU's caches.
	permits chan struct{}
	mu      sync.Mutex
	idle    []*vmState

	// The metrics' children for this script (see metrics.call).
	callCounters sync.Map // function name -> prometheus.Counter
	durationOnce sync.Once
	duration     prometheus.Observer
}

// New returns a Runtime with opts' zero fields set to their defaults.
func New(opts Options) *Runtime {
	if opts.MaxRuntimes <= 0 {
		opts.MaxRuntimes = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.MaxCallStackSize <= 0 {
		opts.MaxCallStackSize = 256
	}
	if opts.MaxSourceBytes <= 0 {
		opts.MaxSourceBytes = 64 << 10
	}
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = 100 * time.Millisecond
	}
	e := &Runtime{opts: opts, scripts: make(map[string]*script)}
	if opts.Registerer != nil {
		e.metrics = newMetrics(opts.Registerer, e.logger(nil))
	}
	return e
}

// Check compiles source as Call would and returns a *hooks.SyntaxError
// (1-based line and column in source) if it does not compile, or an error
// wrapping ErrSourceTooLarge. Nothing is cached and nothing runs.
func (e *Runtime) Check(name, source string) error {
	_, err := compileScript(name, source, e.opts.MaxSourceBytes)
	return err
}

// Forget drops the cached program and runtimes of a script name, e.g.
// when the script is deleted. Calls in progress finish normally.
func (e *Runtime) Forget(name string) {
	e.mu.Lock()
	delete(e.scripts, name)
	e.mu.Unlock()
}

// lookup returns the cache entry for s, compiling it on first use. A new
// version (or, defensively, a different source under the same version)
// replaces the entry for the name, so old programs and their runtimes
// become garbage once their last calls finish.
func (e *Runtime) lookup(s *hooks.Script) *script {
	e.mu.Lock()
	sc := e.scripts[s.Name]
	if sc == nil || sc.version != s.Version || sc.source != s.Source {
		sc = &script{name: s.Name, version: s.Version, source: s.Source}
		e.scripts[s.Name] = sc
	}
	e.mu.Unlock()
	sc.once.Do(func() {
		sc.compiled, sc.err = compileScript(s.Name, s.Source, e.opts.MaxSourceBytes)
		if sc.err == nil {
			sc.permits = make(chan struct{}, e.opts.MaxRuntimes)
		}
	})
	return sc
}

// logger picks where context.log lines go: the call's logger, else the
// engine's, else slog.Default() as it is now (it may be replaced after
// New).
func (e *Runtime) logger(call *hooks.Call) *slog.Logger {
	if call != nil && call.Logger != nil {
		return call.Logger
	}
	if e.opts.Logger != nil {
		return e.opts.Logger
	}
	return slog.Default()
}

// Call runs call.Function of s; see hooks.Runtime. On a *hooks.ScriptError
// the Result is still returned when the function started, carrying the
// lines it logged before failing (Args and Return are then nil). A
// function not declared at the script's top level is answered without
// running anything.
func (e *Runtime) Call(ctx context.Context, s *hooks.Script, call *hooks.Call) (*hooks.Result, error) {
	if len(s.Source) > e.opts.MaxSourceBytes {
		return nil, fmt.Errorf("%w: script %q is %d bytes, limit is %d", ErrSourceTooLarge, s.Name, len(s.Source), e.opts.MaxSourceBytes)
	}
	sc := e.lookup(s)
	if sc.err != nil {
		e.metrics.call(sc, string(call.Function))
		e.metrics.failure(s.Name, "syntax")
		return nil, sc.err
	}
	idx, ok := sc.compiled.index[string(call.Function)]
	if !ok {
		return &hooks.Result{Defined: false}, nil
	}
	e.metrics.call(sc, string(call.Function))

	timeout := s.Timeout
	if timeout <= 0 {
		timeout = e.opts.DefaultTimeout
	}
	ctxDeadline, hasCtxDeadline := ctx.Deadline()
	// deadline is the earlier of now+timeout and ctx's deadline.
	deadline := func(now time.Time) (time.Time, bool) {
		d := now.Add(timeout)
		if hasCtxDeadline && ctxDeadline.Before(d) {
			return ctxDeadline, true
		}
		return d, false
	}
	fail := func(kind hooks.FailureKind, msg string) error {
		e.metrics.failure(s.Name, string(kind))
		return &hooks.ScriptError{Script: s.Name, Function: call.Function, Kind: kind, Message: msg}
	}
	if err := ctx.Err(); err != nil {
		return nil, fail(hooks.FailureTimeout, "not started: "+err.Error())
	}

	waitUntil, _ := deadline(time.Now())
	if err := sc.acquire(ctx, waitUntil); err != nil {
		return nil, fail(hooks.FailureBusy, err.Error())
	}
	defer sc.release()
	st := sc.pop()
	if st == nil {
		var err error
		if st, err = newVMState(sc.compiled, e.opts.MaxCallStackSize); err != nil {
			return nil, err
		}
	}
	// The script's own timeout counts from now: neither the wait for a
	// runtime nor making one is the script's doing.
	runUntil, byCtx := deadline(time.Now())
	timeoutMsg := func() string {
		if byCtx {
			return "ran past the context deadline"
		}
		return fmt.Sprintf("ran longer than its timeout of %v", timeout)
	}
	res, reusable, err := st.invoke(ctx, s.Name, idx, call, e.logger(call), runUntil, timeoutMsg)
	if reusable {
		st.vm.ClearInterrupt()
		sc.push(st)
	}
	if res != nil && res.Defined {
		e.metrics.observe(sc, res.Duration)
	}
	var se *hooks.ScriptError
	if errors.As(err, &se) {
		e.metrics.failure(s.Name, string(se.Kind))
	}
	return res, err
}

// acquire takes a permit to run, waiting at most until deadline or ctx's
// end.
func (sc *script) acquire(ctx context.Context, deadline time.Time) error {
	select {
	case sc.permits <- struct{}{}:
		return nil
	default:
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return errors.New("no runtime free before the deadline")
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sc.permits <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("no runtime free within %v (all %d busy)", wait.Round(time.Microsecond), cap(sc.permits))
	case <-ctx.Done():
		return fmt.Errorf("no runtime free before the context ended: %v", ctx.Err())
	}
}

func (sc *script) release() { <-sc.permits }

// pop takes the runtime returned last, or nil when none is idle.
func (sc *script) pop() *vmState {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := len(sc.idle)
	if n == 0 {
		return nil
	}
	st := sc.idle[n-1]
	sc.idle[n-1] = nil
	sc.idle = sc.idle[:n-1]
	return st
}

// push returns a runtime for reuse.
func (sc *script) push(st *vmState) {
	sc.mu.Lock()
	sc.idle = append(sc.idle, st)
	sc.mu.Unlock()
}

// idleCount is how many runtimes are idle (for tests).
func (sc *script) idleCount() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.idle)
}
