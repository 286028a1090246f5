package scripts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// newProcessRuntime is a Runtime whose calls run in worker processes (this
// test binary, started as workers), closed when the test ends.
func newProcessRuntime(t testing.TB, opts Options) *Runtime {
	t.Helper()
	opts.DefaultIsolation = hooks.IsolationProcess
	if opts.Logger == nil {
		opts.Logger = quiet
		if os.Getenv("KEYHOOK_TEST_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
	}
	e := New(opts)
	t.Cleanup(e.Close)
	return e
}

// callKind runs fn of src and returns the failure kind ("" on success)
// and how long the call took.
func callKind(t *testing.T, e *Runtime, s *hooks.Script, fn hooks.Function, args ...any) (hooks.FailureKind, time.Duration, *hooks.Result) {
	t.Helper()
	start := time.Now()
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: fn, Args: args, Context: map[string]any{"phase": "introspection"}})
	took := time.Since(start)
	if err == nil {
		return "", took, res
	}
	var se *hooks.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want a *hooks.ScriptError", err, err)
	}
	return se.Kind, took, res
}

// healthy checks that the runtime still answers an ordinary call.
func healthy(t *testing.T, e *Runtime) {
	t.Helper()
	s := &hooks.Script{Name: "ok", Version: "1", Timeout: 5 * time.Second, Source: `function modifyResponse(r) { r.ok = true; return true }`}
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{}}, Context: map[string]any{}})
	if err != nil {
		t.Fatalf("an ordinary call after the attack: %v", err)
	}
	if res.Return != true || res.Args[0].(map[string]any)["ok"] != true {
		t.Fatalf("ordinary call: %+v", res)
	}
}

// TestProcessRunsLikeInline checks that a call through a worker gives what
// the in-process runtime gives: edits, return value, logs, lazy context.
func TestProcessRunsLikeInline(t *testing.T) {
	e := newProcessRuntime(t, Options{})
	inline := newEngine(Options{})
	src := `function modifyResponse(r, context) {
		context.log("phase", context.phase, "user", context.user && context.user.username);
		r.added = {n: 1.5, list: [1, "two", null, true]};
		delete r.drop;
		r.big = 9007199254740993;
		r.client = context.client.client_id;
		r.cfg = context.config.k;
		return true;
	}`
	lazyReads := 0
	for _, rt := range []*Runtime{e, inline} {
		s := &hooks.Script{Name: "same", Version: "1", Source: src}
		hctx := map[string]any{
			"phase":  "introspection",
			"config": map[string]string{"k": "v"},
			"client": testLazy(func() any { lazyReads++; return map[string]any{"client_id": "c1"} }),
			"user":   testLazy(func() any { lazyReads++; return map[string]any{"username": "alice"} }),
			// Never read: must not be computed.
			"request": testLazy(func() any { t.Error("context.request computed but never read"); return nil }),
		}
		res, err := rt.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse,
			Args: []any{map[string]any{"keep": "k", "drop": 1, "n": int64(7)}}, Context: hctx})
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(res.Return, res.Args, res.Logs)
		want := `true [map[added:map[list:[1 two <nil> true] n:1.5] big:9007199254740992 cfg:v client:c1 keep:k n:7]] [phase introspection user alice]`
		if got != want {
			t.Errorf("isolation %s:\n got %s\nwant %s", rt.opts.DefaultIsolation, got, want)
		}
	}
	if lazyReads != 4 {
		t.Errorf("lazy values computed %d times, want 2 per runtime", lazyReads)
	}
}

type testLazy func() any

func (f testLazy) Value() any { return f() }

// TestProcessLazyFetchedOnRead checks that a lazy context value the source
// does not name is fetched from the server when the script reads it.
func TestProcessLazyFetchedOnRead(t *testing.T) {
	e := newProcessRuntime(t, Options{})
	s := &hooks.Script{Name: "dyn", Version: "1", Source: `function modifyResponse(r, c) { r.v = c["us" + "er"].name; return true }`}
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{}},
		Context: map[string]any{"user": testLazy(func() any { return map[string]any{"name": "bob"} })}})
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Args[0].(map[string]any)["v"]; v != "bob" {
		t.Fatalf("v = %v", v)
	}
}

// TestProcessLazyNotSentUnlessNamed checks that a lazy context value
// whose key the source does not name (only a longer word containing it)
// is neither computed nor sent.
func TestProcessLazyNotSentUnlessNamed(t *testing.T) {
	e := newProcessRuntime(t, Options{})
	s := &hooks.Script{Name: "named", Version: "1", Source: `function modifyResponse(r, c) { r.username = c.phase + "-users"; return true }`}
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{}},
		Context: map[string]any{"phase": "p", "user": testLazy(func() any { t.Error("context.user computed"); return nil })}})
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Args[0].(map[string]any)["username"]; v != "p-users" {
		t.Fatalf("username = %v", v)
	}
}

// TestDeadlineWithoutEscape runs scripts whose time goes into built-ins
// goja's interrupt does not reach: each must fail by its deadline (plus
// the kill grace and a generous allowance for a loaded machine), and the
// runtime must serve the next call.
func TestDeadlineWithoutEscape(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 4})
	const timeout = 200 * time.Millisecond
	cases := []struct{ name, body string }{
		{"loop", `for (;;) {}`},
		{"deep recursion", `function f(n) { return 1 + f(n + 1) } r.n = f(0)`},
		{"repeat", `var s = 'x'.repeat(1e9); r.n = s.length`},
		{"padStart", `var s = ''.padStart(1e9, 'ab'); r.n = s.length`},
		{"padEnd", `var s = ''.padEnd(1e9, 'ab'); r.n = s.length`},
		{"join", `var s = new Array(1e8).join(); r.n = s.length`},
		{"fill", `var a = new Array(2**25).fill(0); r.n = a.length`},
		{"sort with a comparator", `var a = []; for (var i = 0; i < 3e6; i++) a.push((i * 7919) % 3e6); a.sort(function (x, y) { return x - y }); r.n = a[0]`},
		{"stringify", `var a = new Array(2e7).fill('xxxxxxxx'); r.n = JSON.stringify(a).length`},
		{"parse", `var t = '[' + '1,'.repeat(3e7) + '1]'; r.n = JSON.parse(t).length`},
		{"backtracking regexp", `r.m = /^(a+)+\1$/.test('a'.repeat(40) + 'b')`},
		{"replace with a callback", `r.n = 'a'.repeat(5e6).replace(/a/g, function () { return 'bb' }).length`},
	}
	// Workers are started before the first case, so that its time is the
	// call's and not the start of a process. The bound is generous (5 s
	// past the deadline): under -race on a loaded 2-core machine replacing
	// a killed worker alone takes seconds, and what this test holds is
	// that a runaway call ends, not how fast a busy machine gets there.
	healthy(t, e)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &hooks.Script{Name: "hostile", Version: tc.name, Timeout: timeout, MemoryMB: 256,
				Source: "function modifyResponse(r) {" + tc.body + "; return true }"}
			kind, took, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{})
			// The memory budget may stop the biggest of these first, and
			// the stack limit a recursion; either way the call fails and
			// ends promptly.
			if kind != hooks.FailureTimeout && kind != hooks.FailureMemory && kind != hooks.FailureStackOverflow {
				t.Fatalf("kind = %q, want timeout (or memory, stack_overflow)", kind)
			}
			if took > timeout+5*time.Second {
				t.Fatalf("took %v with a timeout of %v", took, timeout)
			}
			healthy(t, e)
		})
	}
}

// TestMemoryBudget runs scripts that allocate past their budget in the
// ways the sandbox must survive: each fails as memory (or, where the
// machine is slow, timeout) and the runtime serves the next call.
func TestMemoryBudget(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 4})
	cases := []struct {
		name, body string
		memoryMB   int
	}{
		{"one huge string", `var s = 'x'.repeat(2**28); r.n = s.length`, 0},
		{"doubling", `var s = 'xxxxxxxx'; for (;;) s += s`, 0},
		{"filled array", `var a = new Array(5e7).fill(0); r.n = a.length`, 0},
		{"typed array of a GiB", `var a = new Uint8Array(2**30); r.n = a.length`, 0},
		{"array buffer of a GiB", `var a = new ArrayBuffer(2**30); r.n = a.byteLength`, 0},
		{"millions of objects", `var a = []; for (var i = 0; i < 1e7; i++) a.push({i: i, s: 'v' + i}); r.n = a.length`, 0},
		{"huge JSON.parse", `var t = '[' + '{"a":1},'.repeat(4e6) + '1]'; r.n = JSON.parse(t).length`, 0},
		{"over a larger budget", `var s = 'x'.repeat(2**27); var t = s + 'y'; r.n = t.length`, 64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &hooks.Script{Name: "hungry", Version: tc.name, Timeout: 10 * time.Second, MemoryMB: tc.memoryMB,
				Source: "function modifyResponse(r) {" + tc.body + "; return true }"}
			kind, took, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{})
			if kind != hooks.FailureMemory {
				t.Fatalf("kind = %q after %v, want memory", kind, took)
			}
			healthy(t, e)
		})
	}
	t.Run("within a budget", func(t *testing.T) {
		s := &hooks.Script{Name: "fits", Version: "1", Timeout: 5 * time.Second, MemoryMB: 64,
			Source: `function modifyResponse(r) { var s = 'x'.repeat(2**24); r.n = s.length; return true }`}
		kind, _, res := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{})
		if kind != "" || res.Args[0].(map[string]any)["n"] != int64(1<<24) {
			t.Fatalf("kind %q, result %+v", kind, res)
		}
	})
}

// TestProcessCancellation checks that a call stops when its request ends,
// without waiting for its deadline, in both isolation modes.
func TestProcessCancellation(t *testing.T) {
	for _, iso := range []hooks.Isolation{hooks.IsolationProcess, hooks.IsolationInline} {
		t.Run(string(iso), func(t *testing.T) {
			e := newProcessRuntime(t, Options{})
			s := &hooks.Script{Name: "spin", Version: "1", Timeout: 5 * time.Second, Isolation: iso,
				Source: `function modifyResponse(r) { for (;;) {} }`}
			healthy(t, e) // workers started
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			_, err := e.Call(ctx, s, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{}}, Context: map[string]any{}})
			var se *hooks.ScriptError
			if !errors.As(err, &se) || se.Kind != hooks.FailureCancelled {
				t.Fatalf("err = %v, want cancelled", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("took %v: the call was not stopped when its context ended", took)
			}
			healthy(t, e)
		})
	}
}

// TestProcessCPUIdleAfterTimeout checks that after a script times out in a
// built-in no process keeps working for it: the CPU time of this process
// and of every worker stops growing within a second.
func TestProcessCPUIdleAfterTimeout(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 2})
	healthy(t, e)
	s := &hooks.Script{Name: "burn", Version: "1", Timeout: 100 * time.Millisecond, MemoryMB: 256,
		Source: `function modifyResponse(r) { r.n = new Array(2**25).fill(0).length; return true }`}
	if kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{}); kind != hooks.FailureTimeout && kind != hooks.FailureMemory {
		t.Fatalf("kind = %q", kind)
	}
	waitWorkersIdle(t, e) // the replacement has started
	before := treeCPU(t)
	time.Sleep(time.Second)
	if used := treeCPU(t) - before; used > 300*time.Millisecond {
		t.Fatalf("%v of CPU used in the second after the timeout, want (nearly) idle", used)
	}
}

// waitWorkersIdle waits until every worker of e is started and idle.
func waitWorkersIdle(t *testing.T, e *Runtime) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); idleWorkers(e.workers()) < e.opts.Workers; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%d of %d workers idle after 30s", idleWorkers(e.workers()), e.opts.Workers)
		}
	}
}

// idleWorkers counts the workers of p that take calls and have none.
func idleWorkers(p *pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, w := range p.ready {
		w.qmu.Lock()
		if len(w.calls) == 0 {
			n++
		}
		w.qmu.Unlock()
	}
	return n
}

// treeCPU is the CPU time of this process and its live children.
func treeCPU(t *testing.T) time.Duration {
	t.Helper()
	pids := []string{strconv.Itoa(os.Getpid())}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", os.Getpid(), os.Getpid())); err == nil {
		pids = append(pids, strings.Fields(string(b))...)
	}
	// Children may be started from any thread: scan every task.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	seen := map[string]bool{pids[0]: true}
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", os.Getpid(), task.Name()))
		for _, p := range strings.Fields(string(b)) {
			if !seen[p] {
				seen[p] = true
				pids = append(pids, p)
			}
		}
	}
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	return total
}

// TestProcessConcurrent runs many calls at once through a small pool.
func TestProcessConcurrent(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 2})
	s := &hooks.Script{Name: "c", Version: "1", Timeout: 2 * time.Second,
		Source: `function modifyResponse(r) { r.twice = r.n * 2; return true }`}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				n := int64(i*100 + j)
				res, err := e.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse,
					Args: []any{map[string]any{"n": n}}, Context: map[string]any{}})
				if err != nil {
					t.Error(err)
					return
				}
				if got := res.Args[0].(map[string]any)["twice"]; got != 2*n {
					t.Errorf("twice = %v, want %d", got, 2*n)
				}
			}
		})
	}
	wg.Wait()
}

// sent is how many calls the workers of e hold (running or queued).
func sent(e *Runtime) int {
	p := e.workers()
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, w := range p.ready {
		w.qmu.Lock()
		n += len(w.calls)
		w.qmu.Unlock()
	}
	return n
}

// waitSent waits until the workers of e hold n calls.
func waitSent(t *testing.T, e *Runtime, n int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); sent(e) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the workers hold %d calls, want %d", sent(e), n)
		}
	}
}

// TestProcessQueuedBehindASpinner: a call sent to a worker behind one that
// spins until its deadline is not failed with it when the worker is
// killed; it never started, so it is sent again and answered.
func TestProcessQueuedBehindASpinner(t *testing.T) {
	// One worker, and no stall rule: the second call must queue behind
	// the spinner.
	e := newProcessRuntime(t, Options{Workers: 1, SlowCall: time.Hour})
	spinner := &hooks.Script{Name: "spinner", Version: "1", Timeout: 300 * time.Millisecond,
		Source: `function modifyResponse(r) { if (r.spin) { for (;;) {} } return true }`}
	other := &hooks.Script{Name: "other", Version: "1", Timeout: 5 * time.Second,
		Source: `function modifyResponse(r) { r.ok = true; return true }`}
	for _, s := range []*hooks.Script{spinner, other} { // both compiled and shown fast
		if kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{}); kind != "" {
			t.Fatalf("warm-up of %s: %s", s.Name, kind)
		}
	}
	spun := make(chan hooks.FailureKind, 1)
	go func() {
		kind, _, _ := callKind(t, e, spinner, hooks.FnModifyResponse, map[string]any{"spin": true})
		spun <- kind
	}()
	waitSent(t, e, 1)
	done := make(chan struct{})
	var kind hooks.FailureKind
	var res *hooks.Result
	go func() {
		kind, _, res = callKind(t, e, other, hooks.FnModifyResponse, map[string]any{})
		close(done)
	}()
	waitSent(t, e, 2) // queued behind the spinner
	if k := <-spun; k != hooks.FailureTimeout {
		t.Fatalf("spinner: %q, want timeout", k)
	}
	<-done
	if kind != "" || res.Args[0].(map[string]any)["ok"] != true {
		t.Fatalf("the call queued behind the spinner: %q %+v, want it answered", kind, res)
	}
}

// TestProcessCancelStopsOnlyItsCall: the request of a call queued behind
// another ends; the call is answered as cancelled, without stopping the
// call running on the worker or costing the worker.
func TestProcessCancelStopsOnlyItsCall(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 1, SlowCall: time.Hour})
	busy := &hooks.Script{Name: "busy", Version: "1", Timeout: 5 * time.Second,
		Source: `function modifyResponse(r) { var end = Date.now() + r.ms; while (Date.now() < end) {} r.done = true; return true }`}
	if kind, _, _ := callKind(t, e, busy, hooks.FnModifyResponse, map[string]any{"ms": int64(0)}); kind != "" {
		t.Fatalf("warm-up: %s", kind)
	}
	pid := func() int {
		p := e.workers()
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.ready[0].cmd.Process.Pid
	}
	before := pid()
	first := make(chan *hooks.Result, 1)
	go func() {
		kind, _, res := callKind(t, e, busy, hooks.FnModifyResponse, map[string]any{"ms": int64(400)})
		if kind != "" {
			t.Errorf("the running call: %q", kind)
		}
		first <- res
	}()
	waitSent(t, e, 1)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := e.Call(ctx, busy, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{"ms": int64(0)}}, Context: map[string]any{}})
		errc <- err
	}()
	waitSent(t, e, 2)
	cancel()
	var se *hooks.ScriptError
	if err := <-errc; !errors.As(err, &se) || se.Kind != hooks.FailureCancelled {
		t.Fatalf("the cancelled call: %v, want cancelled", err)
	}
	if res := <-first; res == nil || res.Args[0].(map[string]any)["done"] != true {
		t.Fatalf("the running call: %+v, want it to run to its end", res)
	}
	if after := pid(); after != before {
		t.Fatalf("the worker was replaced (pid %d, then %d)", before, after)
	}
}

// TestProcessQueuedCallKeepsItsDeadline: a call waiting in a worker's
// queue behind long calls ends at its own deadline, not theirs.
func TestProcessQueuedCallKeepsItsDeadline(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 1, SlowCall: time.Hour})
	busy := &hooks.Script{Name: "busy", Version: "1", Timeout: 5 * time.Second,
		Source: `function modifyResponse(r) { var end = Date.now() + r.ms; while (Date.now() < end) {} return true }`}
	if kind, _, _ := callKind(t, e, busy, hooks.FnModifyResponse, map[string]any{"ms": int64(0)}); kind != "" {
		t.Fatalf("warm-up: %s", kind)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { callKind(t, e, busy, hooks.FnModifyResponse, map[string]any{"ms": int64(400)}) })
		waitSent(t, e, i+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.Call(ctx, busy, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{"ms": int64(0)}}, Context: map[string]any{}})
	took := time.Since(start)
	var se *hooks.ScriptError
	if !errors.As(err, &se) || se.Kind != hooks.FailureTimeout {
		t.Errorf("the queued call: %v, want timeout", err)
	}
	if took > 300*time.Millisecond {
		t.Errorf("the queued call ended after %v, want at its 50ms deadline", took)
	}
	wg.Wait()
}

// slowHandler takes its time over each record, as a logger writing to a
// slow disk would: a call's frames then wait in the server.
type slowHandler struct{ slog.Handler }

func (h slowHandler) Handle(ctx context.Context, r slog.Record) error {
	time.Sleep(20 * time.Millisecond)
	return nil
}

// TestProcessKillForOneCallSparesTheNext: a call's request ends after its
// worker answered it but before the server read the answer (its log
// records are slow to write); the kill that follows lands on the next
// call, which must not be reported as cancelled or timed out, nor crash
// the server.
func TestProcessKillForOneCallSparesTheNext(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 1, SlowCall: time.Hour, KillGrace: 20 * time.Millisecond})
	s := &hooks.Script{Name: "s", Version: "1", Timeout: 5 * time.Second,
		Source: `function modifyResponse(r, context) {
			for (var i = 0; i < r.logs; i++) { context.log("line " + i) }
			var end = Date.now() + r.ms; while (Date.now() < end) {}
			return true }`}
	if kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{"logs": int64(0), "ms": int64(0)}); kind != "" {
		t.Fatalf("warm-up: %s", kind)
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := e.Call(ctx, s, &hooks.Call{Function: hooks.FnModifyResponse, Logger: slog.New(slowHandler{quiet.Handler()}),
			Args: []any{map[string]any{"logs": int64(30), "ms": int64(0)}}, Context: map[string]any{}})
		first <- err
	}()
	waitSent(t, e, 1)
	second := make(chan error, 1)
	go func() {
		_, err := e.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse,
			Args: []any{map[string]any{"logs": int64(0), "ms": int64(2000)}}, Context: map[string]any{}})
		second <- err
	}()
	waitSent(t, e, 2)
	time.Sleep(100 * time.Millisecond) // the worker is past the first call, the server still reads its logs
	cancel()
	<-first
	err := <-second
	var se *hooks.ScriptError
	if errors.As(err, &se) && (se.Kind == hooks.FailureCancelled || se.Kind == hooks.FailureTimeout) {
		t.Fatalf("the next call was blamed for the kill: %v", err)
	}
	healthy(t, e)
}

// TestProcessExclusiveCallNotStarved: a call that needs a worker to
// itself (here, of a script that may fetch) gets one while other calls
// keep every worker busy.
func TestProcessExclusiveCallNotStarved(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 1, SlowCall: time.Hour})
	fast := &hooks.Script{Name: "fast", Version: "1", Timeout: 5 * time.Second,
		Source: `function modifyResponse(r) { r.ok = true; return true }`}
	fetching := &hooks.Script{Name: "fetching", Version: "1", Timeout: 2 * time.Second,
		Source: `function modifyResponse(r, context) { if (r.never) { context.fetch("https://example.com/") } r.ok = true; return true }`}
	for _, s := range []*hooks.Script{fast, fetching} {
		if kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{}); kind != "" {
			t.Fatalf("warm-up of %s: %s", s.Name, kind)
		}
	}
	defer keepCalling(t, e, fast, 8, map[string]any{})()
	waitSent(t, e, 8)
	for range 5 {
		if kind, took, _ := callKind(t, e, fetching, hooks.FnModifyResponse, map[string]any{}); kind != "" {
			t.Fatalf("the call that needs a worker to itself: %q after %v", kind, took)
		}
	}
}

// TestProcessSpinnersLeaveAWorker: however many scripts spin until they
// are killed, once each has timed out their calls leave one worker free
// of them, so a fast script's calls never wait for a spinner's kill;
// answering in time between spins does not lift that. Two spinners on two workers, each called again as soon
// as its call ends, would otherwise hold both workers nearly all the
// time.
func TestProcessSpinnersLeaveAWorker(t *testing.T) {
	const spin = 1500 * time.Millisecond // the spinners' timeout
	e := newProcessRuntime(t, Options{Workers: 2, KillGrace: 20 * time.Millisecond})
	fast := &hooks.Script{Name: "fast", Version: "1", Timeout: 10 * time.Second,
		Source: `function modifyResponse(r) { r.ok = true; return true }`}
	var spinners []*hooks.Script
	for i := range 2 {
		spinners = append(spinners, &hooks.Script{Name: fmt.Sprintf("spin%d", i), Version: "1", Timeout: spin,
			Source: `function modifyResponse(r) { if (r.spin) { for (;;) {} } return true }`})
	}
	if kind, _, _ := callKind(t, e, fast, hooks.FnModifyResponse, map[string]any{}); kind != "" {
		t.Fatalf("warm-up: %s", kind)
	}
	var wg sync.WaitGroup
	for _, s := range spinners { // each times out once
		wg.Go(func() {
			if kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{"spin": true}); kind != hooks.FailureTimeout {
				t.Errorf("%s: %q, want a timeout", s.Name, kind)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, s := range spinners { // spin, answer, spin, …
		defer keepCalling(t, e, s, 3, map[string]any{"spin": true}, map[string]any{})()
	}
	// Fast calls for longer than two of the spinners' calls, so that
	// some come while a spinner's worker is killed and replaced.
	var slowest time.Duration
	calls := 0
	for end := time.Now().Add(2*spin + 500*time.Millisecond); time.Now().Before(end); calls++ {
		kind, took, _ := callKind(t, e, fast, hooks.FnModifyResponse, map[string]any{})
		if kind != "" {
			t.Fatalf("a fast call beside the spinners: %q after %v", kind, took)
		}
		slowest = max(slowest, took)
		time.Sleep(20 * time.Millisecond)
	}
	// A fast call takes a millisecond, or more on a worker just started
	// (which compiles the script first); one that waited for a spinner's
	// worker to be killed took up to the spinners' timeout.
	if slowest > spin*2/3 {
		t.Fatalf("the slowest of %d fast calls beside two spinners took %v: it waited for a spinner's worker", calls, slowest)
	}
}

// TestProcessSlowScriptsKeepEveryWorker: the worker left to the others
// is kept from scripts that were killed, not from scripts that are
// merely slow (a context.fetch may take that long): two slow scripts
// that answer in time run at once on two workers.
func TestProcessSlowScriptsKeepEveryWorker(t *testing.T) {
	e := newProcessRuntime(t, Options{Workers: 2, SlowCall: 5 * time.Millisecond})
	var slow []*hooks.Script
	for i := range 2 {
		slow = append(slow, &hooks.Script{Name: fmt.Sprintf("slow%d", i), Version: "1", Timeout: 5 * time.Second,
			Source: `function modifyResponse(r) { var end = Date.now() + (r.ms || 0); while (Date.now() < end) {} return true }`})
	}
	for _, s := range slow { // each shows itself slow, and answers in time
		if kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{"ms": int64(20)}); kind != "" {
			t.Fatalf("%s: %q", s.Name, kind)
		}
	}
	var wg sync.WaitGroup
	for _, s := range slow {
		wg.Go(func() {
			if kind, took, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{"ms": int64(1500)}); kind != "" {
				t.Errorf("%s: %q after %v", s.Name, kind, took)
			}
		})
	}
	waitSent(t, e, 2)
	wg.Wait()
}

// keepCalling calls s from n goroutines, each as soon as its last call
// ended, with args in turn, until the function it returns is called
// (which waits for them).
func keepCalling(t *testing.T, e *Runtime, s *hooks.Script, n int, args ...map[string]any) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				callKind(t, e, s, hooks.FnModifyResponse, maps.Clone(args[i%len(args)]))
			}
		})
	}
	return func() { close(done); wg.Wait() }
}
