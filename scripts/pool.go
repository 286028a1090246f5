package scripts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Process isolation (hooks.IsolationProcess, the default).
//
// Calls run in worker processes: the same executable, started with
// workerEnv set, so that the package's init turns the process into a
// worker (worker.go) before main runs. A worker runs one call at a time
// in the same in-process runtime the inline mode uses, under its own
// address-space limit (RLIMIT_AS) and a heap watchdog. The server keeps
// the deadline: a worker that has not answered shortly after its call's
// deadline, or after the call's request ended, is killed with SIGKILL
// and replaced off the request path. So whatever a script does — a loop
// inside a built-in goja cannot interrupt, a backtracking regular
// expression, an allocation of gigabytes — it costs at most one worker
// process, never the server, and no goroutine or process keeps working
// for it after its deadline.
//
// What crosses the process boundary is plain data (wire.go): the
// arguments, and the context, whose lazy values are sent when the
// script's source mentions their key and fetched on first read
// otherwise.

// Worker exit codes that say why a worker ended itself.
const (
	exitMemory   = 17 // the heap watchdog found the call over budget
	exitTimeout  = 18 // the call ran far past its deadline (the server is gone or late)
	exitProtocol = 19 // the server sent something that does not decode
)

// killReason says why the server killed a worker.
type killReason int32

const (
	notKilled killReason = iota
	killedDeadline
	killedCancel
	killedClose
)

// pool is the set of worker processes of a Runtime. Workers are started
// on first use and replaced when they die.
type pool struct {
	exe      string
	workers  int
	env      []string
	grace    time.Duration
	startMax time.Duration
	log      *slog.Logger

	startOnce sync.Once
	idle      chan *worker
	everReady chan struct{} // closed when the first worker is ready
	readyOnce sync.Once
	nextID    atomic.Uint64

	mu       sync.Mutex
	closed   bool
	all      map[*worker]bool
	spawning sync.WaitGroup // spawns in progress, which close waits for
	starting atomic.Int32   // how many
}

// worker is one worker process as the server sees it.
type worker struct {
	cmd *exec.Cmd
	// conn is the server's end of the worker's socket, used by the
	// goroutine that holds the worker (and, to write, by none other);
	// it is closed once the worker is dead and released (closeConn), never
	// while a call may still read it.
	conn      fdConn
	closeOnce sync.Once
	r         *bufio.Reader
	wmu       sync.Mutex // serializes writes (the call's and a cancel's)
	stderr    *headBuffer
	exited    chan struct{} // closed once the process is reaped
	killed    atomic.Int32  // a killReason
}

func newPool(opts *Options, log *slog.Logger) *pool {
	exe := "/proc/self/exe" // the running binary, even if replaced on disk
	if _, err := os.Stat(exe); err != nil {
		exe, _ = os.Executable()
	}
	env := []string{
		workerEnv + "=1",
		"GOMAXPROCS=2",
		"GOTRACEBACK=single",
		fmt.Sprintf("%s=%d", workerASEnv, int64(opts.MaxMemoryMB)<<20+workerHeadroom),
		fmt.Sprintf("%s=%d", workerStackEnv, opts.MaxCallStackSize),
	}
	return &pool{
		exe: exe, workers: opts.Workers, env: env, grace: opts.KillGrace, startMax: 30 * time.Second, log: log,
		idle: make(chan *worker, opts.Workers), everReady: make(chan struct{}), all: map[*worker]bool{},
	}
}

// start spawns the workers in the background, once.
func (p *pool) start() {
	p.startOnce.Do(func() {
		for range p.workers {
			go p.replace()
		}
	})
}

// replace starts one worker and makes it idle, retrying with a backoff
// while starting fails (and the pool is open).
func (p *pool) replace() {
	backoff := 50 * time.Millisecond
	for {
		w, err := p.spawn()
		if err == nil {
			p.readyOnce.Do(func() { close(p.everReady) })
			p.put(w)
			return
		}
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		p.log.Error("scripts: starting a worker process failed; retrying", "err", err, "retry_in", backoff)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

// put makes w idle, or ends it when the pool is closed.
func (p *pool) put(w *worker) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		w.kill(killedClose)
		go func() { <-w.exited; w.closeConn() }()
		return
	}
	p.idle <- w // never blocks: at most p.workers workers exist
}

// spawn starts a worker process and waits for it to say it is ready.
func (p *pool) spawn() (*worker, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("scripts: runtime closed")
	}
	p.spawning.Add(1)
	p.starting.Add(1)
	p.mu.Unlock()
	defer p.spawning.Done()
	defer p.starting.Add(-1)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "keyhook-server")
	cmd := exec.Command(p.exe)
	cmd.Args = []string{"keyhook-script-worker"}
	// A minimal environment: the worker needs none of the server's
	// (which may hold database credentials and secrets).
	cmd.Env = p.env
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	// The server's end is used with blocking system calls by the one
	// goroutine that owns the worker (see worker.conn), so a call costs
	// the kernel's wake-up and no netpoller round.
	w := &worker{cmd: cmd, conn: fdConn(fds[0]), stderr: &headBuffer{max: 4 << 10}, exited: make(chan struct{})}
	w.r = bufio.NewReaderSize(w.conn, 32<<10)
	cmd.Stderr = w.stderr
	// The worker dies with the server (also killed at the server's
	// deadline, and it ends itself when its socket closes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	// The worker's end is the worker's alone from now on: with a copy
	// left here, reads of this end would not see the worker die.
	theirs.Close()
	if err != nil {
		w.closeConn()
		return nil, fmt.Errorf("starting %s: %w", p.exe, err)
	}
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		w.kill(killedClose)
		<-w.exited
		w.closeConn()
		return nil, errors.New("scripts: runtime closed")
	}
	p.all[w] = true
	p.mu.Unlock()

	notReady := time.AfterFunc(p.startMax, func() { w.kill(killedClose) })
	typ, _, err := readFrame(w.r)
	notReady.Stop()
	if err != nil || typ != frameReady {
		w.kill(killedClose)
		p.forget(w)
		<-w.exited
		w.closeConn()
		return nil, fmt.Errorf("worker did not start: %v %s", err, w.stderr.String())
	}
	return w, nil
}

func (p *pool) forget(w *worker) {
	p.mu.Lock()
	delete(p.all, w)
	p.mu.Unlock()
}

// close kills every worker; calls in progress fail.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	all := make([]*worker, 0, len(p.all))
	for w := range p.all {
		all = append(all, w)
	}
	p.mu.Unlock()
	for _, w := range all {
		w.kill(killedClose)
		<-w.exited
	}
	// Idle workers are nobody's: close their sockets. Those in a call are
	// closed when their call releases them.
	for drained := false; !drained; {
		select {
		case w := <-p.idle:
			w.closeConn()
		default:
			drained = true
		}
	}
	// A spawn that started before closed was set sees it once its
	// worker is ready, and ends it.
	p.spawning.Wait()
}

// kill ends the worker's process (once; the first reason wins).
func (w *worker) kill(why killReason) {
	if w.killed.CompareAndSwap(int32(notKilled), int32(why)) {
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// closeConn closes the server's end of the socket, once.
func (w *worker) closeConn() { w.closeOnce.Do(func() { _ = syscall.Close(int(w.conn)) }) }

func (w *worker) write(e *encoder) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return writeFrame(w.conn, e)
}

// acquire takes an idle worker, waiting at most until deadline (or,
// while no worker has ever started, for the first one to start) or ctx's
// end.
func (p *pool) acquire(ctx context.Context, deadline time.Time) (*worker, error) {
	for {
		w, err := p.acquireAny(ctx, deadline)
		if err != nil {
			return nil, err
		}
		select {
		case <-w.exited:
			// It died while idle (killed from outside, say): replace
			// it, rather than fail a call that never reached it.
			p.release(w, false)
			continue
		default:
		}
		return w, nil
	}
}

// acquireAny takes an idle worker, alive or not; see acquire.
func (p *pool) acquireAny(ctx context.Context, deadline time.Time) (*worker, error) {
	p.start()
	select {
	case w := <-p.idle:
		return w, nil
	default:
	}
	select {
	case <-p.everReady:
		if p.starting.Load() > 0 {
			// A worker is on its way (replacing one that was killed):
			// waiting for it is not the call's doing.
			deadline = later(deadline, withinBudget(ctx, time.Now().Add(startWait)))
		}
	default:
		// The first workers are still starting.
		deadline = withinBudget(ctx, time.Now().Add(p.startMax))
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case w := <-p.idle:
		return w, nil
	case <-t.C:
		return nil, fmt.Errorf("no worker process free before the deadline (all %d busy)", p.workers)
	case <-ctx.Done():
		return nil, fmt.Errorf("no worker process free before the request ended: %v", ctx.Err())
	}
}

// release returns w to the pool when it is healthy, or replaces it.
func (p *pool) release(w *worker, healthy bool) {
	if healthy && w.killed.Load() == int32(notKilled) {
		p.put(w)
		return
	}
	w.kill(killedClose)
	p.forget(w)
	go func() {
		<-w.exited
		w.closeConn()
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			p.replace()
		}
	}()
}

// startWait bounds how long a call waits for a worker that is starting
// when none is idle.
const startWait = 2 * time.Second

// withinBudget is t, or the end of ctx's script budget or deadline when
// that comes first: no wait of a call outlasts its request's budget.
func withinBudget(ctx context.Context, t time.Time) time.Time {
	if end, ok := hooks.ScriptDeadline(ctx); ok && end.Before(t) {
		t = end
	}
	if end, ok := ctx.Deadline(); ok && end.Before(t) {
		t = end
	}
	return t
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// setupMax bounds how long a worker may take to compile a script and
// make its runtime before the call's own deadline starts.
const setupMax = 10 * time.Second

// killTimer kills a worker when the time it was last armed with passes,
// unless it is stopped first. It is safe for concurrent use (the call's
// goroutine arms it, and so does a cancellation).
type killTimer struct {
	w       *worker
	mu      sync.Mutex
	t       *time.Timer
	gen     int
	stopped bool
	fired   bool
}

// arm replaces the timer's deadline with now+d.
func (k *killTimer) arm(d time.Duration, why killReason) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	if k.t != nil {
		k.t.Stop()
	}
	k.gen++
	gen := k.gen
	k.t = time.AfterFunc(d, func() {
		k.mu.Lock()
		live := gen == k.gen && !k.stopped
		if live {
			k.fired = true
		}
		k.mu.Unlock()
		if live {
			k.w.kill(why)
		}
	})
}

// stop disarms the timer for good and reports whether it fired.
func (k *killTimer) stop() (fired bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.t != nil {
		k.t.Stop()
	}
	return k.fired
}

// remoteCall is one call on a worker.
type remoteCall struct {
	s    *hooks.Script
	call *hooks.Call
	// waitUntil bounds the wait for a worker; the call's own deadline
	// counts from when it has one.
	waitUntil time.Time
	deadline  func(now time.Time) (time.Time, bool)
	timeout   time.Duration
	budget    int64
	// sendNow reports whether a lazy context value is worth computing
	// and sending with the call (the script mentions its key).
	sendNow func(key string) bool
	logger  *slog.Logger
	// fetch makes the call's fetches (frameFetch), bounded by until: the
	// call's deadline as the server keeps it.
	fetch fetchFunc
	until time.Time
}

// call runs rc on a worker. Failures of the script come back as
// *hooks.ScriptError, as from the inline runtime.
func (p *pool) call(ctx context.Context, rc *remoteCall) (*hooks.Result, error) {
	fail := func(kind hooks.FailureKind, msg string) error {
		return &hooks.ScriptError{Script: rc.s.Name, Function: rc.call.Function, Kind: kind, Message: msg}
	}
	w, err := p.acquire(ctx, rc.waitUntil)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fail(hooks.FailureCancelled, err.Error())
		}
		return nil, fail(hooks.FailureBusy, err.Error())
	}
	if err := ctx.Err(); err != nil {
		// The request ended while the call waited for a worker.
		p.release(w, true)
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fail(hooks.FailureTimeout, rc.timeoutMessage())
		}
		return nil, fail(hooks.FailureCancelled, "not started: the request ended ("+context.Cause(ctx).Error()+")")
	}
	deadline, _ := rc.deadline(time.Now())
	rc.until = deadline
	id := p.nextID.Add(1)
	f := newFrame(frameCall)
	f.uvarint(id)
	f.string(rc.s.Name)
	f.string(rc.s.Version)
	f.uvarint(uint64(max(time.Until(deadline), 0)))
	f.uvarint(uint64(rc.budget))
	f.string(string(rc.call.Function))
	f.uvarint(uint64(len(rc.call.Args)))
	for i, a := range rc.call.Args {
		if err := f.value(a, 0); err != nil {
			p.release(w, true)
			return nil, fmt.Errorf("scripts: argument %d: %w", i, err)
		}
	}
	f.byte(tagMap)
	f.uvarint(uint64(len(rc.call.Context)))
	for k, v := range rc.call.Context {
		f.string(k)
		if _, lazy := v.(hooks.Lazy); lazy && !rc.sendNow(k) {
			f.byte(tagLazy)
			continue
		}
		if err := f.value(v, 1); err != nil {
			p.release(w, true)
			return nil, fmt.Errorf("scripts: context.%s: %w", k, err)
		}
	}
	// The server's deadline: shortly after the call's, kill the worker.
	// A worker that must compile the script or make a runtime first says
	// so (frameSetup): that time is not the script's, so the deadline is
	// suspended (up to setupMax) until the script starts (frameRunning),
	// then counts again from then, once per call.
	kt := &killTimer{w: w}
	kt.arm(time.Until(deadline)+p.grace, killedDeadline)
	restarted := false
	var cancelling atomic.Bool
	onPhase := func(typ byte) {
		switch {
		case cancelling.Load():
			// The request ended: the kill armed then stands.
		case typ == frameSetup && !restarted:
			kt.arm(time.Until(withinBudget(ctx, time.Now().Add(setupMax)))+p.grace, killedDeadline)
		case typ == frameRunning && !restarted:
			restarted = true
			d, _ := rc.deadline(time.Now())
			rc.until = d
			kt.arm(time.Until(d)+p.grace, killedDeadline)
		}
	}
	// The request's end: ask the worker to stop the call (SIGUSR1: the
	// worker does not read its socket during a call), and kill it if it
	// does not do so promptly. A worker asked may see the signal late,
	// during its next call, so it is not used again.
	stopCancel := context.AfterFunc(ctx, func() {
		cancelling.Store(true)
		_ = w.cmd.Process.Signal(syscall.SIGUSR1)
		kt.arm(p.grace, killedCancel)
	})
	if err := w.write(f); err != nil {
		stopCancel()
		kt.stop()
		p.release(w, false)
		return nil, fail(hooks.FailureCrash, "the worker process is gone: "+err.Error())
	}
	res, err, rerr := p.exchange(ctx, w, id, rc, onPhase)
	cancelled := !stopCancel()
	healthy := !kt.stop() && !cancelled
	if rerr != nil {
		err := p.deathError(w, rc, ctx, rerr, fail)
		p.release(w, false)
		return res, err
	}
	// A call the worker interrupted may leave nothing behind (the worker
	// discards that runtime), so the worker stays.
	p.release(w, healthy)
	if se, ok := err.(*hooks.ScriptError); ok && se.Kind == hooks.FailureTimeout {
		// The worker only knew the time left; say it as the script has it.
		se.Message = rc.timeoutMessage()
	}
	return res, err
}

// exchange serves the worker's requests of one call (the source, lazy
// context values, log records) until its result arrives. err is the
// call's outcome; ioErr reports a worker that stopped answering or
// answered something malformed.
func (p *pool) exchange(ctx context.Context, w *worker, id uint64, rc *remoteCall, onPhase func(typ byte)) (res *hooks.Result, err, ioErr error) {
	var logs []string
	for {
		typ, payload, err := readFrame(w.r)
		if err != nil {
			return &hooks.Result{Defined: true, Logs: logs}, nil, err
		}
		d := &decoder{b: payload}
		if got := d.uvarint(); got != id || d.err != nil {
			return nil, nil, fmt.Errorf("%w: answer for call %d during call %d", errMalformed, got, id)
		}
		switch typ {
		case frameNeedSrc:
			f := newFrame(frameSource)
			f.uvarint(id)
			f.string(rc.s.Source)
			if err := w.write(f); err != nil {
				return nil, nil, err
			}
		case frameNeedField:
			key := d.string()
			f := newFrame(frameField)
			f.uvarint(id)
			v, ok := rc.call.Context[key]
			if lz, isLazy := v.(hooks.Lazy); isLazy && ok && d.err == nil {
				v = lz.Value()
			} else {
				v = nil
			}
			if err := f.value(v, 1); err != nil {
				f = newFrame(frameField)
				f.uvarint(id)
				f.byte(tagNull)
			}
			if err := w.write(f); err != nil {
				return nil, nil, err
			}
		case frameLog:
			level := slog.Level(d.varint())
			msg := d.string()
			n := d.count()
			attrs := make([]slog.Attr, 0, n+2)
			for range n {
				k := d.string()
				attrs = append(attrs, slog.String(k, d.string()))
			}
			if d.err != nil {
				return nil, nil, d.err
			}
			if level == slog.LevelInfo {
				logs = append(logs, msg)
			}
			rc.logger.LogAttrs(context.Background(), level, msg, attrs...)
		case frameSetup, frameRunning:
			onPhase(typ)
		case frameFetch:
			req := decodeFetchRequest(d)
			if d.err != nil || len(d.b) != 0 {
				return nil, nil, fmt.Errorf("%w: fetch", errMalformed)
			}
			line, err := p.fetch(ctx, w, id, rc, req)
			if line != "" && len(logs) < maxLogLines {
				logs = append(logs, line)
			}
			if err != nil {
				return nil, nil, err
			}
		case frameResult:
			res, err := decodeResult(d, rc, logs)
			if errors.Is(err, errMalformed) {
				return nil, nil, err
			}
			return res, err, nil
		default:
			return nil, nil, fmt.Errorf("%w: frame type %d", errMalformed, typ)
		}
	}
}

// fetch makes a fetch the worker asked for and sends the answer. The
// request's end cancels it, and so does the worker's death (killed at
// its deadline, or gone); it never runs past the call's deadline.
func (p *pool) fetch(ctx context.Context, w *worker, id uint64, rc *remoteCall, req *fetchRequest) (string, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-w.exited:
			cancel()
		case <-done:
		}
	}()
	var resp *fetchResponse
	var line string
	var err error
	if rc.fetch == nil {
		err = &fetchError{"disabled", "not available here"}
	} else {
		resp, line, err = rc.fetch(fctx, req, rc.until)
	}
	f := newFrame(frameFetched)
	f.uvarint(id)
	if err != nil {
		f.string(err.Error())
		outcome := "error"
		if fe, ok := err.(*fetchError); ok {
			outcome = fe.outcome
		}
		f.string(outcome)
	} else {
		f.string("")
		f.uvarint(uint64(resp.status))
		f.uvarint(uint64(len(resp.headers)))
		for k, v := range resp.headers {
			f.string(k)
			f.string(v)
		}
		f.string(resp.body)
	}
	return line, w.write(f)
}

// Result status bytes.
const (
	resultOK byte = iota
	resultScriptError
	resultSyntaxError
	resultError
)

// decodeResult reads a frameResult (after its id).
func decodeResult(d *decoder, rc *remoteCall, logs []string) (*hooks.Result, error) {
	status := d.byte()
	res := &hooks.Result{Defined: d.bool(), Logs: logs}
	res.Duration = time.Duration(d.uvarint())
	var err error
	switch status {
	case resultOK:
		if res.Defined {
			res.Return = d.value(1, nil, "")
			n := d.count()
			res.Args = make([]any, n)
			for i := range res.Args {
				res.Args[i] = d.value(1, nil, "")
			}
		}
	case resultScriptError:
		kind, msg := d.string(), d.string()
		err = &hooks.ScriptError{Script: rc.s.Name, Function: rc.call.Function, Kind: hooks.FailureKind(kind), Message: msg}
	case resultSyntaxError:
		line, col, msg := d.uvarint(), d.uvarint(), d.string()
		err = &hooks.SyntaxError{Line: int(line), Column: int(col), Message: msg}
	case resultError:
		err = errors.New(d.string())
	default:
		d.fail()
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, fmt.Errorf("%w: result", errMalformed)
	}
	if !res.Defined && err == nil {
		return &hooks.Result{Defined: false}, nil
	}
	return res, err
}

// deathError explains a call whose worker stopped answering: killed at
// the deadline or at the request's end, or dead by itself (out of
// memory, its own watchdog, a crash).
func (p *pool) deathError(w *worker, rc *remoteCall, ctx context.Context, cause error, fail func(hooks.FailureKind, string) error) error {
	if errors.Is(cause, errMalformed) {
		w.kill(killedClose)
		p.log.Error("scripts: a worker process answered something malformed; it was replaced", "err", cause)
		return fail(hooks.FailureCrash, "the worker process answered something malformed")
	}
	switch killReason(w.killed.Load()) {
	case killedDeadline:
		return fail(hooks.FailureTimeout, rc.timeoutMessage())
	case killedCancel:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(hooks.FailureTimeout, rc.timeoutMessage())
		}
		return fail(hooks.FailureCancelled, "stopped: the request ended ("+context.Cause(ctx).Error()+")")
	case killedClose:
		return fail(hooks.FailureCrash, "the script runtime is shutting down")
	}
	// It died by itself: wait briefly for its exit status.
	select {
	case <-w.exited:
	case <-time.After(time.Second):
		w.kill(killedClose)
		<-w.exited
	}
	code := -1
	if st := w.cmd.ProcessState; st != nil {
		code = st.ExitCode()
	}
	head := w.stderr.String()
	switch {
	case code == exitMemory || outOfMemory(head):
		return fail(hooks.FailureMemory, fmt.Sprintf("allocated past its memory budget of %d MiB", rc.budget>>20))
	case code == exitTimeout:
		return fail(hooks.FailureTimeout, rc.timeoutMessage())
	}
	p.log.Error("scripts: a worker process died", "script", rc.s.Name, "exit_code", code, "cause", cause, "stderr", firstLines(head, 5))
	return fail(hooks.FailureCrash, fmt.Sprintf("the worker process died (exit code %d)", code))
}

// outOfMemory recognises what a process that ran out of address space
// writes before it dies: the Go runtime's fatal errors, and those of the
// race detector's runtime in -race builds.
func outOfMemory(stderr string) bool {
	for _, m := range []string{"out of memory", "cannot allocate memory", "failed to allocate", "errno: 12", "address space collisions"} {
		if strings.Contains(stderr, m) {
			return true
		}
	}
	return false
}

// timeoutMessage is the message of a call stopped at its deadline.
func (rc *remoteCall) timeoutMessage() string {
	_, byCtx := rc.deadline(time.Now())
	return timeoutMessage(byCtx, rc.timeout)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// headBuffer keeps the first max bytes written to it (a worker's stderr:
// the cause of a fatal error comes first).
type headBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *headBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - len(t.b); room > 0 {
		t.b = append(t.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (t *headBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

var _ io.Writer = (*headBuffer)(nil)
