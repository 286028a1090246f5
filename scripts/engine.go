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
	"sync/atomic"
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
	// DefaultIsolation is where calls of scripts without an Isolation of
	// their own run. Default hooks.IsolationProcess.
	DefaultIsolation hooks.Isolation
	// Workers is the number of worker processes for process isolation,
	// i.e. how many such calls run at once. Default 2*GOMAXPROCS.
	Workers int
	// DefaultMemoryMB is the memory budget of a call of a script without
	// one (MiB). Default 32.
	DefaultMemoryMB int
	// MaxMemoryMB is the largest budget a script may ask for (MiB); it
	// sizes the workers' address-space limit. Default 256.
	MaxMemoryMB int
	// KillGrace is how long past a call's deadline (or its request's
	// end) a worker may take to answer before it is killed. Default 50ms.
	KillGrace time.Duration
	// MaxRuntimes is the size of each script version's runtime pool, i.e.
	// how many calls of one script may run at once in this process.
	// Default 2*GOMAXPROCS. (In worker processes a script may have as
	// many calls as the workers hold.)
	MaxRuntimes int
	// MaxScripts bounds how many scripts keep a compiled program and
	// runtimes cached; the least recently called is dropped first.
	// Default 1024.
	MaxScripts int
	// SlowCall is the duration past which a script counts as slow: a slow
	// script runs one call at a time, so that it cannot hold every worker
	// or core (its other calls wait, then fail as busy). Default 10ms.
	SlowCall time.Duration
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
	// Fetch configures context.fetch (docs/scripts.md).
	Fetch FetchOptions
	// Registerer receives the engine's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives context.log lines of calls without a Logger and
	// the engine's own warnings; nil means slog.Default() at the time of
	// logging.
	Logger *slog.Logger
}

// Runtime is the goja-backed hooks.Runtime. It caches one compiled program
// and one runtime pool per script name, for the latest version seen, for
// at most Options.MaxScripts scripts. Calls run in worker processes or in
// this process (hooks.Isolation). It is safe for concurrent use; Close
// ends its worker processes.
type Runtime struct {
	opts    Options
	metrics *metrics

	mu      sync.Mutex
	scripts map[string]*script
	uses    atomic.Uint64 // clock of script.lastUse

	poolOnce sync.Once
	pool     *pool

	fetchOnce sync.Once
	fetches   *fetcher // made on first use, never in a worker process
	// remoteFetch, when set (in worker processes), asks the server to
	// make a call's fetch.
	remoteFetch fetchFunc

	// cold, when set (in worker processes), is told when a call had to
	// make its runtime before running.
	cold func()
	// watch, when set (in worker processes), is told when a call starts
	// running JavaScript, with a way to interrupt it; the function it
	// returns is called when the call stops running JavaScript and
	// reports whether it interrupted the call (over its memory budget).
	watch func(interrupt func(v any)) func() bool
}

var _ hooks.Runtime = (*Runtime)(nil)

// script is the cache entry of one (Name, Version): compiled once, with
// its runtime pool.
type script struct {
	name, version, source string
	lastUse               atomic.Uint64

	once     sync.Once
	compiled *compiled
	err      error

	// The pool. A call holds one of the permits of running (MaxRuntimes
	// of them) while it runs; with it, it takes the runtime returned
	// last to idle, or makes one when idle is empty. So at most
	// MaxRuntimes runtimes exist, a script only gets as many as it has
	// concurrent calls, and the runtime reused is the one used most
	// recently, whose memory is likeliest still in the CPU's caches.
	// Process isolation has permits of its own, as many as the workers
	// hold calls (Workers × pipelineDepth), and no idle runtimes.
	permits        chan struct{}
	processPermits chan struct{}
	mu             sync.Mutex
	idle           []*vmState
	// slow is set until a call of the script ends within
	// Options.SlowCall, and again while its last call ran longer than
	// that or failed by its timeout or budget; then its calls also take
	// slowPermit, so they run one at a time.
	slow       atomic.Bool
	slowPermit chan struct{}
	// overranAt is when a call of the script last failed by its
	// timeout, memory budget or a crash (a spinner, say; not a script
	// that is merely new or slow), in Unix nanoseconds, or 0. For
	// overranFor after that, its calls in process isolation never take
	// the last worker free of such calls (pool.pick), whatever its calls
	// did meanwhile.
	overranAt atomic.Int64

	// The metrics' children for this script (see metrics.call).
	callCounters sync.Map // function name -> prometheus.Counter
	durationOnce sync.Once
	duration     prometheus.Observer
}

// New returns a Runtime with opts' zero fields set to their defaults.
func New(opts Options) *Runtime {
	if opts.DefaultIsolation == "" {
		opts.DefaultIsolation = hooks.IsolationProcess
	}
	if opts.Workers <= 0 {
		opts.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.DefaultMemoryMB <= 0 {
		opts.DefaultMemoryMB = 32
	}
	if opts.MaxMemoryMB <= 0 {
		opts.MaxMemoryMB = 256
	}
	opts.DefaultMemoryMB = min(opts.DefaultMemoryMB, opts.MaxMemoryMB)
	if opts.KillGrace <= 0 {
		opts.KillGrace = 50 * time.Millisecond
	}
	if opts.MaxRuntimes <= 0 {
		opts.MaxRuntimes = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.MaxScripts <= 0 {
		opts.MaxScripts = 1024
	}
	if opts.SlowCall <= 0 {
		opts.SlowCall = 10 * time.Millisecond
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

// Close ends the worker processes; calls in progress on them fail. The
// Runtime must not be used afterwards.
func (e *Runtime) Close() {
	e.poolOnce.Do(func() {}) // no pool may start after Close
	if e.pool != nil {
		e.pool.close()
	}
	e.fetchOnce.Do(func() {}) // nor a fetcher
	if f := e.fetches; f != nil {
		f.https.CloseIdleConnections()
		f.http.CloseIdleConnections()
	}
}

// Start starts the worker processes now rather than on the first call
// that needs one, so that the first requests do not wait for them.
func (e *Runtime) Start() {
	if e.opts.DefaultIsolation == hooks.IsolationProcess {
		e.workers().start()
	}
}

// workers is the worker pool, made on first use.
func (e *Runtime) workers() *pool {
	e.poolOnce.Do(func() { e.pool = newPool(&e.opts, e.logger(nil)) })
	return e.pool
}

// Check compiles source as Call would and returns a *hooks.SyntaxError
// (1-based line and column in source) if it does not compile, or an error
// wrapping ErrSourceTooLarge. Nothing is cached and nothing runs.
func (e *Runtime) Check(name, source string) error {
	_, err := compileScript(name, source, e.opts.MaxSourceBytes)
	return err
}

// Forget drops the cached program, runtimes and metric series of a
// script name, e.g. when the script is deleted. Calls in progress finish
// normally.
func (e *Runtime) Forget(name string) {
	e.mu.Lock()
	delete(e.scripts, name)
	e.mu.Unlock()
	e.metrics.forget(name)
	e.fetcher().forget(name)
}

// fetcher is the server's fetcher, made on first use; nil after Close
// when none was made before.
func (e *Runtime) fetcher() *fetcher {
	e.fetchOnce.Do(func() { e.fetches = newFetcher(e.opts.Fetch, e.opts.Registerer, e.logger(nil)) })
	return e.fetches
}

// fetchFor is how a call of s makes its fetches: here, or (in a worker
// process) by asking the server.
func (e *Runtime) fetchFor(s *hooks.Script, call *hooks.Call) fetchFunc {
	if e.remoteFetch != nil {
		return e.remoteFetch
	}
	return func(ctx context.Context, req *fetchRequest, deadline time.Time) (*fetchResponse, string, error) {
		if call.SafeFetchOnly {
			cp := *req
			cp.safeOnly = true
			req = &cp
		}
		return e.fetcher().fetch(ctx, s, deadline, req, e.logger(call))
	}
}

// CountFailure counts a failure found outside the runtime (see
// hooks.FailureCounter).
func (e *Runtime) CountFailure(script string, kind hooks.FailureKind) {
	e.metrics.failure(script, string(kind))
}

// cachedSource is the source of name at version when it is cached.
func (e *Runtime) cachedSource(name, version string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if sc := e.scripts[name]; sc != nil && sc.version == version {
		return sc.source, true
	}
	return "", false
}

// warm reports whether a call of name at version would find its program
// compiled and a runtime idle.
func (e *Runtime) warm(name, version string) bool {
	e.mu.Lock()
	sc := e.scripts[name]
	e.mu.Unlock()
	return sc != nil && sc.version == version && sc.compiled != nil && sc.idleCount() > 0
}

// lookup returns the cache entry for s, compiling it on first use. A new
// version (or, defensively, a different source under the same version)
// replaces the entry for the name, so old programs and their runtimes
// become garbage once their last calls finish. Past MaxScripts entries
// the least recently used one is dropped.
func (e *Runtime) lookup(s *hooks.Script) *script {
	e.mu.Lock()
	sc := e.scripts[s.Name]
	if sc == nil || sc.version != s.Version || sc.source != s.Source {
		if sc == nil && len(e.scripts) >= e.opts.MaxScripts {
			e.evictLocked()
		}
		sc = &script{name: s.Name, version: s.Version, source: s.Source}
		e.scripts[s.Name] = sc
	}
	e.mu.Unlock()
	sc.lastUse.Store(e.uses.Add(1))
	sc.once.Do(func() {
		sc.compiled, sc.err = compileScript(s.Name, s.Source, e.opts.MaxSourceBytes)
		if sc.err == nil {
			sc.permits = make(chan struct{}, e.opts.MaxRuntimes)
			sc.processPermits = make(chan struct{}, e.opts.Workers*pipelineDepth)
			sc.slowPermit = make(chan struct{}, 1)
			// Until a call has shown the script fast, it runs one call at
			// a time: a script that spins from its first call never holds
			// more than one worker or core.
			sc.slow.Store(true)
		}
	})
	return sc
}

// evictLocked drops the least recently used cache entry (e.mu held). Its
// metric series stay: the script still exists.
func (e *Runtime) evictLocked() {
	var oldest *script
	for _, sc := range e.scripts {
		if oldest == nil || sc.lastUse.Load() < oldest.lastUse.Load() {
			oldest = sc
		}
	}
	if oldest != nil {
		delete(e.scripts, oldest.name)
	}
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

// isolation is where s's calls run.
func (e *Runtime) isolation(s *hooks.Script) hooks.Isolation {
	if s.Isolation == hooks.IsolationInline || s.Isolation == hooks.IsolationProcess {
		return s.Isolation
	}
	return e.opts.DefaultIsolation
}

// budget is s's memory budget in bytes.
func (e *Runtime) budget(s *hooks.Script) int64 {
	mb := s.MemoryMB
	if mb <= 0 {
		mb = e.opts.DefaultMemoryMB
	}
	return int64(min(mb, e.opts.MaxMemoryMB)) << 20
}

// Call runs call.Function of s; see hooks.Runtime. On a *hooks.ScriptError
// the Result is still returned when the function started, carrying the
// lines it logged before failing (Args and Return are then nil). A
// function not declared at the script's top level is answered without
// running anything. The call stops at its deadline (s.Timeout, or ctx's
// deadline if earlier) and when ctx ends. A script's secret values are
// redacted from its log lines and error messages (see callRedacted).
func (e *Runtime) Call(ctx context.Context, s *hooks.Script, call *hooks.Call) (*hooks.Result, error) {
	if len(s.Secrets) > 0 {
		return e.callRedacted(ctx, s, call)
	}
	return e.run(ctx, s, call)
}

// run is Call without redaction.
func (e *Runtime) run(ctx context.Context, s *hooks.Script, call *hooks.Call) (*hooks.Result, error) {
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
	if end, ok := hooks.ScriptDeadline(ctx); ok && (!hasCtxDeadline || end.Before(ctxDeadline)) {
		ctxDeadline, hasCtxDeadline = end, true
	}
	// deadline is the earlier of now+timeout and ctx's deadline (or
	// its script budget).
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
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fail(hooks.FailureTimeout, "not started: "+err.Error())
		}
		return nil, fail(hooks.FailureCancelled, "not started: "+err.Error())
	}

	waitUntil, _ := deadline(time.Now())
	process := e.isolation(s) == hooks.IsolationProcess
	slowHeld, err := sc.acquire(ctx, waitUntil, process)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fail(hooks.FailureCancelled, err.Error())
		}
		return nil, fail(hooks.FailureBusy, err.Error())
	}
	defer sc.release(slowHeld, process)

	var res *hooks.Result
	if process {
		// The script's own timeout counts from when it has a worker:
		// the waits for a permit and a worker are not its doing.
		rc := &remoteCall{
			s: s, call: call, waitUntil: waitUntil, deadline: deadline, timeout: timeout, budget: e.budget(s),
			// A call that may wait on the network runs on a worker of its
			// own, as a slow script's calls do: no call waits behind it.
			exclusive: slowHeld || sc.mentionsKey("fetch"),
			overran:   sc.overranLately(),
			sendNow:   sc.mentionsKey, logger: e.logger(call), fetch: e.fetchFor(s, call),
		}
		if hasCtxDeadline {
			rc.ctxEnd = ctxDeadline
		}
		res, err = e.workers().call(ctx, rc)
	} else {
		res, err = e.callInline(ctx, sc, s, idx, call, deadline, timeout)
	}
	if res != nil && res.Defined {
		e.metrics.observe(sc, res.Duration)
	}
	var se *hooks.ScriptError
	isScriptErr := errors.As(err, &se)
	if isScriptErr {
		e.metrics.failure(s.Name, string(se.Kind))
	}
	switch {
	case isScriptErr && (se.Kind == hooks.FailureTimeout || se.Kind == hooks.FailureMemory || se.Kind == hooks.FailureCrash):
		sc.slow.Store(true)
		sc.overranAt.Store(time.Now().UnixNano())
	case res != nil && res.Defined && !isScriptErr:
		sc.slow.Store(res.Duration > e.opts.SlowCall)
	}
	return res, err
}

// callInline runs a call on one of the script's runtimes in this process.
func (e *Runtime) callInline(ctx context.Context, sc *script, s *hooks.Script, idx int, call *hooks.Call, deadline func(time.Time) (time.Time, bool), timeout time.Duration) (*hooks.Result, error) {
	st := sc.pop()
	if st == nil {
		var err error
		if st, err = newVMState(sc.compiled, e.opts.MaxCallStackSize); err != nil {
			return nil, err
		}
		if e.cold != nil {
			e.cold()
		}
	}
	// The script's own timeout counts from now: neither the wait for a
	// runtime nor making one is the script's doing.
	runUntil, byCtx := deadline(time.Now())
	timeoutMsg := func() string { return timeoutMessage(byCtx, timeout) }
	st.watch = e.watch
	st.fetcher = e.fetchFor(s, call)
	res, reusable, err := st.invoke(ctx, s.Name, idx, call, e.logger(call), runUntil, timeoutMsg)
	st.fetcher = nil
	if reusable {
		st.vm.ClearInterrupt()
		sc.push(st)
	}
	return res, err
}

// timeoutMessage says why a call was stopped at its deadline: its own
// timeout, or the (earlier) deadline of its context or script budget.
func timeoutMessage(byCtx bool, timeout time.Duration) string {
	if byCtx {
		return "ran past the context deadline"
	}
	return fmt.Sprintf("ran longer than its timeout of %v", timeout)
}

// overranFor is how long a call that overran (timeout, memory, crash)
// marks its script: a script that spins only now and then, answering in
// time between, stays marked.
const overranFor = time.Minute

// overranLately reports whether a call of the script overran within the
// last overranFor (reading the clock only for a script that ever did).
func (sc *script) overranLately() bool {
	at := sc.overranAt.Load()
	return at != 0 && time.Now().UnixNano()-at < int64(overranFor)
}

// mentionsKey reports whether the script's source names key (see
// compiled.names): a lazy context value it does not name is most likely
// never read, so it is fetched only if the script does read it.
func (sc *script) mentionsKey(key string) bool { return sc.compiled.names[key] }

// acquire takes a permit to run (and, while the script is slow, the
// slow permit too), waiting at most until deadline or ctx's end.
func (sc *script) acquire(ctx context.Context, deadline time.Time, process bool) (slow bool, err error) {
	permits := sc.permits
	if process {
		permits = sc.processPermits
	}
	if err := acquire(ctx, permits, deadline); err != nil {
		return false, err
	}
	if sc.slow.Load() {
		if err := acquire(ctx, sc.slowPermit, deadline); err != nil {
			<-permits
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// acquire takes a slot of permits, waiting at most until deadline or
// ctx's end.
func acquire(ctx context.Context, permits chan struct{}, deadline time.Time) error {
	select {
	case permits <- struct{}{}:
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
	case permits <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("no runtime free within %v (all %d busy)", wait.Round(time.Microsecond), cap(permits))
	case <-ctx.Done():
		return fmt.Errorf("no runtime free before the context ended: %v", ctx.Err())
	}
}

// release gives back what acquire took.
func (sc *script) release(slow, process bool) {
	if slow {
		<-sc.slowPermit
	}
	if process {
		<-sc.processPermits
	} else {
		<-sc.permits
	}
}

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
