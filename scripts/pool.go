package scripts

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
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
// address-space limit (RLIMIT_AS) and a heap watchdog. The server sends
// it up to pipelineDepth calls ahead, which it runs in order; one reader
// goroutine per worker hands each frame to the call it is about. The
// server keeps the deadline of the call running: a worker that has not
// answered shortly after that deadline, or after that call's request
// ended, is killed with SIGKILL and replaced off the request path; the
// calls queued behind it, which never started, are sent again. So whatever a script does — a loop
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

// pipelineDepth is how many calls a worker holds at once: the one it
// runs and those sent to run after it, in order. Sending calls ahead lets
// one wake-up of a worker serve several calls, and one read of the
// server's serve several answers: a round trip between two processes
// costs tens of microseconds of CPU on a virtual machine, more than a
// typical call.
const pipelineDepth = 16

// maxRequeues bounds how often one call is sent again because the worker
// it waited in died before starting it.
const maxRequeues = 3

// pool is the set of worker processes of a Runtime. Workers are started
// on first use and replaced when they die.
type pool struct {
	exe      string
	workers  int
	env      []string
	grace    time.Duration
	startMax time.Duration
	// stall: a worker whose call has run this long takes no more calls
	// while another can (the call may be a spinner, killed at its
	// deadline; the calls queued behind it are then sent again).
	stall time.Duration
	log   *slog.Logger

	startOnce sync.Once
	everReady chan struct{} // closed when the first worker is ready
	readyOnce sync.Once
	nextID    atomic.Uint64
	waiting   atomic.Int32 // calls waiting for room

	mu       sync.Mutex
	closed   bool
	all      map[*worker]bool // started and not yet released
	ready    []*worker        // those that take calls
	room     chan struct{}    // closed and replaced when a worker may have room
	spawning sync.WaitGroup   // spawns in progress, which close waits for
	starting atomic.Int32     // how many
}

// worker is one worker process as the server sees it.
type worker struct {
	cmd *exec.Cmd
	// conn is the server's end of the worker's socket (in the netpoller);
	// its reader goroutine alone reads it, and it is closed once that
	// goroutine has ended.
	conn *os.File
	// ctl is the server's end of the control socket, on which it sends
	// the ids of calls whose request ended (nonblocking).
	ctl       int
	closeOnce sync.Once
	r         *bufio.Reader
	wmu       sync.Mutex // serializes writes
	stderr    *headBuffer
	exited    chan struct{} // closed once the process is reaped
	killed    atomic.Int32  // a killReason

	// Under qmu: the calls sent and not answered, in the order sent,
	// which is the order the worker runs them in (calls[0] runs); since
	// when calls[0] runs; whether it wants the worker to itself; whether
	// the worker is gone. kt kills the worker at calls[0]'s deadline.
	qmu       sync.Mutex
	calls     []*inflight
	byID      map[uint64]*inflight
	headSince time.Time
	exclusive bool
	gone      bool
	kt        *time.Timer
	ktGen     uint64
	// killFor is the call the kill timer was last armed for, killedFor
	// the one it was armed for when it fired: a kill that lands after
	// that call answered hits the next one, which is then not blamed.
	killFor, killedFor uint64
}

// errKilledForAnother: the worker was killed for the call before this
// one, which had answered just before the kill landed.
var errKilledForAnother = errors.New("the worker process was killed for the call before this one")

// deliver hands m to the call, unless its caller has stopped listening.
func (c *inflight) deliver(m workerMsg) {
	select {
	case c.msgs <- m:
	case <-c.done:
	}
}

// inflight is a call sent to a worker.
type inflight struct {
	id        uint64
	rc        *remoteCall
	ctx       context.Context
	msgs      chan workerMsg // from the worker's reader goroutine
	done      chan struct{}  // closed when await returns: msgs is no longer read
	cancelled atomic.Bool
	// queued: sent behind another call (set before the send, then read
	// only by the caller).
	queued bool
	// Under the worker's qmu: whether its runtime was made (frameRunning
	// seen) and its deadline as the server keeps it.
	restarted bool
	until     time.Time
}

// workerMsg is what a worker's reader hands to a call: a frame of it, or
// the worker's end (dead: while it ran; requeue: before it started).
type workerMsg struct {
	typ           byte
	payload       []byte
	dead, requeue bool
	cause         error
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
		exe: exe, workers: opts.Workers, env: env, grace: opts.KillGrace, startMax: 30 * time.Second,
		stall: opts.SlowCall, log: log,
		everReady: make(chan struct{}), all: map[*worker]bool{}, room: make(chan struct{}),
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

// replace starts one worker and makes it take calls, retrying with a
// backoff while starting fails (and the pool is open).
func (p *pool) replace() {
	backoff := 50 * time.Millisecond
	for {
		err := p.spawn()
		if err == nil {
			p.readyOnce.Do(func() { close(p.everReady) })
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

// spawn starts a worker process, waits for it to say it is ready, and
// makes it take calls.
func (p *pool) spawn() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("scripts: runtime closed")
	}
	p.spawning.Add(1)
	p.starting.Add(1)
	p.mu.Unlock()
	defer p.spawning.Done()
	defer p.starting.Add(-1)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	ctl, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return fmt.Errorf("socketpair: %w", err)
	}
	// In nonblocking mode the server's end joins the netpoller: the
	// reader goroutine waits without holding a thread.
	_ = syscall.SetNonblock(fds[0], true)
	theirs := os.NewFile(uintptr(fds[1]), "keyhook-server")
	theirCtl := os.NewFile(uintptr(ctl[1]), "keyhook-server-control")
	cmd := exec.Command(p.exe)
	cmd.Args = []string{"keyhook-script-worker"}
	// A minimal environment: the worker needs none of the server's
	// (which may hold database credentials and secrets).
	cmd.Env = p.env
	cmd.ExtraFiles = []*os.File{theirs, theirCtl} // fds 3 and 4
	w := &worker{cmd: cmd, conn: os.NewFile(uintptr(fds[0]), "keyhook-worker"), ctl: ctl[0],
		stderr: &headBuffer{max: 4 << 10}, exited: make(chan struct{}), byID: map[uint64]*inflight{}}
	w.r = bufio.NewReaderSize(w.conn, 32<<10)
	cmd.Stderr = w.stderr
	// The worker dies with the server (also killed at the server's
	// deadline, and it ends itself when its socket closes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	// The worker's ends are the worker's alone from now on: with a copy
	// left here, reads of this end would not see the worker die.
	theirs.Close()
	theirCtl.Close()
	if err != nil {
		w.closeConn()
		return fmt.Errorf("starting %s: %w", p.exe, err)
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
		return errors.New("scripts: runtime closed")
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
		return fmt.Errorf("worker did not start: %v %s", err, w.stderr.String())
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		w.kill(killedClose)
	} else {
		p.ready = append(p.ready, w)
		p.mu.Unlock()
	}
	go p.read(w)
	p.signalRoom()
	return nil
}

// forget drops w from the pool.
func (p *pool) forget(w *worker) {
	p.mu.Lock()
	delete(p.all, w)
	if i := slices.Index(p.ready, w); i >= 0 {
		p.ready = slices.Delete(p.ready, i, i+1)
	}
	p.mu.Unlock()
}

// signalRoom wakes the calls waiting for a worker with room.
func (p *pool) signalRoom() {
	if p.waiting.Load() == 0 {
		return
	}
	p.mu.Lock()
	close(p.room)
	p.room = make(chan struct{})
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
	p.ready = nil
	close(p.room)
	p.room = make(chan struct{})
	p.mu.Unlock()
	for _, w := range all {
		w.kill(killedClose)
		<-w.exited
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

// closeConn closes the server's ends of the sockets, once.
func (w *worker) closeConn() {
	w.closeOnce.Do(func() {
		_ = w.conn.Close()
		_ = syscall.Close(w.ctl)
	})
}

func (w *worker) write(e *encoder) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return writeFrame(w.conn, e)
}

// armLocked (qmu held) kills the worker at at, for why, unless it is
// re-armed or disarmed first.
func (w *worker) armLocked(id uint64, at time.Time, why killReason) {
	w.ktGen++
	gen := w.ktGen
	w.killFor = id
	if w.kt != nil {
		w.kt.Stop()
	}
	w.kt = time.AfterFunc(time.Until(at), func() {
		// Decided under qmu: an answer read meanwhile re-armed it.
		w.qmu.Lock()
		live := gen == w.ktGen && !w.gone
		if live {
			w.killedFor = w.killFor
		}
		w.qmu.Unlock()
		if live {
			w.kill(why)
		}
	})
}

// disarmLocked (qmu held) stops the kill timer.
func (w *worker) disarmLocked() {
	w.ktGen++
	if w.kt != nil {
		w.kt.Stop()
	}
}

// startHeadLocked (qmu held) counts the time of calls[0] from now: the
// worker starts it when it has answered the call before it. Its kill
// comes shortly after its deadline, or shortly after now when its
// request has ended already.
func (w *worker) startHeadLocked(grace time.Duration) {
	if len(w.calls) == 0 {
		w.exclusive = false
		w.disarmLocked()
		return
	}
	c := w.calls[0]
	now := time.Now()
	w.headSince, w.exclusive = now, c.rc.exclusive
	c.until, _ = c.rc.deadline(now)
	if c.cancelled.Load() {
		w.armLocked(c.id, now.Add(grace), killedCancel)
		return
	}
	// A call whose budget ran out while it waited is answered by the
	// worker at once (as a timeout): the grace counts from now.
	w.armLocked(c.id, later(c.until, now).Add(grace), killedDeadline)
}

// read reads w's frames and hands each to the call it is about, until
// w ends; then it fails the call that was running, sends the others
// again, and replaces w.
func (p *pool) read(w *worker) {
	var cause error
	for {
		typ, payload, err := readFrame(w.r)
		if err != nil {
			cause = err
			break
		}
		d := &decoder{b: payload}
		id := d.uvarint()
		w.qmu.Lock()
		// Everything a worker says is about the call it runs.
		if d.err != nil || len(w.calls) == 0 || w.calls[0].id != id {
			w.qmu.Unlock()
			cause = fmt.Errorf("%w: frame %d for call %d, which is not running", errMalformed, typ, id)
			break
		}
		c := w.calls[0]
		answered := false
		switch typ {
		case frameSetup:
			// Compiling the script or making its runtime comes first:
			// that time is not the script's (up to setupMax).
			if !c.restarted && !c.cancelled.Load() {
				now := time.Now()
				w.armLocked(c.id, later(withinBudget(c.ctx, now.Add(setupMax)), now).Add(p.grace), killedDeadline)
			}
		case frameRunning:
			if !c.restarted {
				c.restarted = true
				if !c.cancelled.Load() {
					now := time.Now()
					c.until, _ = c.rc.deadline(now)
					w.armLocked(c.id, later(c.until, now).Add(p.grace), killedDeadline)
				}
			}
		case frameResult:
			answered = true
			w.calls[0] = nil
			w.calls = w.calls[1:]
			delete(w.byID, id)
			w.startHeadLocked(p.grace)
		}
		w.qmu.Unlock()
		if typ != frameSetup && typ != frameRunning {
			c.deliver(workerMsg{typ: typ, payload: d.b})
		}
		if answered {
			p.signalRoom()
		}
	}
	if errors.Is(cause, errMalformed) {
		w.kill(killedClose)
		p.log.Error("scripts: a worker process answered something malformed; it was replaced", "err", cause)
	}
	p.forget(w)
	w.qmu.Lock()
	w.gone = true
	calls := w.calls
	w.calls, w.byID = nil, nil
	w.disarmLocked()
	killedFor := w.killedFor
	w.qmu.Unlock()
	why := killReason(w.killed.Load())
	for i, c := range calls {
		switch {
		case i > 0:
			c.deliver(workerMsg{requeue: true})
		case (why == killedDeadline || why == killedCancel) && c.id != killedFor:
			// Killed for the call before it, which had answered
			// already (the answer was still unread).
			c.deliver(workerMsg{dead: true, cause: errKilledForAnother})
		default:
			c.deliver(workerMsg{dead: true, cause: cause})
		}
	}
	// It died by itself, or was killed: wait briefly for its exit.
	select {
	case <-w.exited:
	case <-time.After(time.Second):
		w.kill(killedClose)
		<-w.exited
	}
	w.closeConn()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if !closed {
		p.replace()
	}
}

// pick chooses a worker with room for rc, waiting for one at most until
// until (or, while no worker has ever started, for the first to start)
// or ctx's end. The least loaded worker wins; a worker whose call has
// run longer than stall, or runs a slow script's call, takes no call
// behind it, and a slow script's call (rc.exclusive) goes only to a
// worker with nothing to do.
func (p *pool) pick(ctx context.Context, rc *remoteCall, until time.Time) (*worker, error) {
	p.start()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("scripts: runtime closed")
		}
		// Counted as waiting before looking, so that an answer read
		// meanwhile signals the room this call would miss.
		p.waiting.Add(1)
		w := p.leastLoadedLocked(rc)
		room := p.room
		if w != nil {
			p.waiting.Add(-1)
		}
		p.mu.Unlock()
		if w != nil {
			return w, nil
		}
		if t == nil {
			deadline := until
			select {
			case <-p.everReady:
				if p.starting.Load() > 0 {
					// A worker is on its way (replacing one that was
					// killed): waiting for it is not the call's doing.
					deadline = later(deadline, withinBudget(ctx, time.Now().Add(startWait)))
				}
			default:
				// The first workers are still starting.
				deadline = withinBudget(ctx, time.Now().Add(p.startMax))
			}
			t = time.NewTimer(time.Until(deadline))
		}
		var err error
		select {
		case <-room:
		case <-t.C:
			err = fmt.Errorf("no worker process free before the deadline (all %d busy)", p.workers)
		case <-ctx.Done():
			err = fmt.Errorf("no worker process free before the request ended: %v", ctx.Err())
		}
		p.waiting.Add(-1)
		if err != nil {
			return nil, err
		}
	}
}

// leastLoadedLocked (p.mu held) is the worker pick chooses now, or nil.
// An overran call never takes the last ready worker free of overran
// calls (unless the pool has a single worker): however many scripts
// spin until they are killed, one worker is left for the others.
func (p *pool) leastLoadedLocked(rc *remoteCall) *worker {
	var best *worker
	bestLoad := pipelineDepth
	now := time.Now()
	free := 0 // ready workers without an overran call (counted for an overran rc)
	for _, w := range p.ready {
		w.qmu.Lock()
		load := len(w.calls)
		busy := w.gone || load >= pipelineDepth ||
			load > 0 && (rc.exclusive || w.exclusive || now.Sub(w.headSince) > p.stall)
		if rc.overran && !w.gone && !slices.ContainsFunc(w.calls, func(c *inflight) bool { return c.rc.overran }) {
			free++
		}
		w.qmu.Unlock()
		if !busy && load < bestLoad {
			best, bestLoad = w, load
		}
	}
	if rc.overran && p.workers > 1 && free < 2 {
		return nil
	}
	return best
}

// send sends call frame f (of call id) to a worker with room.
func (p *pool) send(ctx context.Context, rc *remoteCall, id uint64, f *encoder, until time.Time) (*worker, *inflight, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("not started: the request ended (%v)", err)
		}
		w, err := p.pick(ctx, rc, until)
		if err != nil {
			return nil, nil, err
		}
		c := &inflight{id: id, rc: rc, ctx: ctx, msgs: make(chan workerMsg, 8), done: make(chan struct{})}
		w.wmu.Lock()
		w.qmu.Lock()
		if w.gone || len(w.calls) >= pipelineDepth {
			// Taken meanwhile: choose again.
			w.qmu.Unlock()
			w.wmu.Unlock()
			continue
		}
		w.calls = append(w.calls, c)
		w.byID[id] = c
		c.queued = len(w.calls) > 1
		if !c.queued {
			w.startHeadLocked(p.grace)
		}
		w.qmu.Unlock()
		// A failed write means the worker is gone: its reader fails or
		// resends the call.
		_ = writeFrame(w.conn, f)
		w.wmu.Unlock()
		return w, c, nil
	}
}

// cancel tells w that c's request ended: the worker stops c if it runs
// it, and answers it at once if it has not started it; once c runs, the
// worker is killed if it has not answered shortly after.
func (p *pool) cancel(w *worker, c *inflight) {
	c.cancelled.Store(true)
	w.qmu.Lock()
	sent := !w.gone && w.byID[c.id] == c
	if sent && w.calls[0] == c {
		w.armLocked(c.id, time.Now().Add(p.grace), killedCancel)
	}
	w.qmu.Unlock()
	if sent {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], c.id)
		// The socket has room for thousands of ids; if it is full the
		// worker runs the call, and is killed shortly after it starts
		// (startHeadLocked).
		_, _ = syscall.Write(w.ctl, b[:])
	}
}

// startWait bounds how long a call waits for a worker that is starting
// when none has room.
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

// remoteCall is one call on a worker.
type remoteCall struct {
	s    *hooks.Script
	call *hooks.Call
	// waitUntil bounds the wait for a worker; the call's own deadline
	// counts from when it runs.
	waitUntil time.Time
	deadline  func(now time.Time) (time.Time, bool)
	timeout   time.Duration
	// ctxEnd is the end of the call's context or script budget (zero:
	// none), which bounds the call wherever it waited.
	ctxEnd time.Time
	budget int64
	// exclusive: the call is of a slow script, which runs on a worker
	// with no other call (Options.SlowCall).
	exclusive bool
	// overran: a call of the script failed by its timeout, memory
	// budget or a crash within the last minute; the call never takes the
	// last worker free of such calls.
	overran bool
	// sendNow reports whether a lazy context value is worth computing
	// and sending with the call (the script mentions its key).
	sendNow func(key string) bool
	logger  *slog.Logger
	// fetch makes the call's fetches (frameFetch), bounded by the call's
	// deadline as the server keeps it.
	fetch fetchFunc
}

// call runs rc on a worker. Failures of the script come back as
// *hooks.ScriptError, as from the inline runtime.
func (p *pool) call(ctx context.Context, rc *remoteCall) (*hooks.Result, error) {
	fail := func(kind hooks.FailureKind, msg string) error {
		return &hooks.ScriptError{Script: rc.s.Name, Function: rc.call.Function, Kind: kind, Message: msg}
	}
	id := p.nextID.Add(1)
	f := newFrame(frameCall)
	f.uvarint(id)
	f.string(rc.s.Name)
	f.string(rc.s.Version)
	f.uvarint(uint64(max(rc.timeout, 0)))
	var end int64
	if !rc.ctxEnd.IsZero() {
		end = rc.ctxEnd.UnixNano()
	}
	f.varint(end)
	f.uvarint(uint64(rc.budget))
	f.string(string(rc.call.Function))
	f.uvarint(uint64(len(rc.call.Args)))
	for i, a := range rc.call.Args {
		if err := f.value(a, 0); err != nil {
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
			return nil, fmt.Errorf("scripts: context.%s: %w", k, err)
		}
	}
	until := rc.waitUntil
	for requeues := 0; ; requeues++ {
		w, c, err := p.send(ctx, rc, id, f, until)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fail(hooks.FailureCancelled, err.Error())
			}
			return nil, fail(hooks.FailureBusy, err.Error())
		}
		res, err, requeued := p.await(ctx, w, c, fail)
		if !requeued {
			return res, err
		}
		// The worker died (killed for the call before this one) before
		// it started this one: send it again, with a new wait.
		if requeues == maxRequeues {
			return nil, fail(hooks.FailureBusy, "not started: the worker processes it was sent to died")
		}
		until, _ = rc.deadline(time.Now())
	}
}

// await serves the worker's requests of call c (the source, lazy
// context values, log records, fetches) until its result arrives, and
// returns it; requeued reports a worker that ended before it started c.
func (p *pool) await(ctx context.Context, w *worker, c *inflight, fail func(hooks.FailureKind, string) error) (res *hooks.Result, err error, requeued bool) {
	stopCancel := context.AfterFunc(ctx, func() { p.cancel(w, c) })
	defer stopCancel()
	defer close(c.done)
	rc := c.rc
	// The end of the request's script budget, which does not end ctx,
	// ends a wait in the queue too. A call that ran at once needs no
	// timer: its kill timer counts to that end.
	var budgetEnd <-chan time.Time
	if !rc.ctxEnd.IsZero() && c.queued {
		t := time.NewTimer(time.Until(rc.ctxEnd))
		defer t.Stop()
		budgetEnd = t.C
	}
	ended := ctx.Done()
	var logs []string
	for {
		var m workerMsg
		select {
		case m = <-c.msgs:
		case <-ended:
			ended = nil
			if p.abandon(w, c) {
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return nil, fail(hooks.FailureTimeout, rc.timeoutMessage()), false
				}
				return nil, fail(hooks.FailureCancelled, "not started: the request ended ("+causeOf(ctx)+")"), false
			}
			continue // it runs: the worker stops it, or is killed
		case <-budgetEnd:
			// Running, it is killed at that end (startHeadLocked).
			budgetEnd = nil
			if p.abandon(w, c) {
				p.cancel(w, c)
				return nil, fail(hooks.FailureTimeout, rc.timeoutMessage()), false
			}
			continue
		}
		if m.requeue {
			return nil, nil, true
		}
		if m.dead {
			return &hooks.Result{Defined: true, Logs: logs}, p.deathError(w, rc, ctx, m.cause, fail), false
		}
		d := &decoder{b: m.payload}
		switch m.typ {
		case frameNeedSrc:
			f := newFrame(frameSource)
			f.uvarint(c.id)
			f.string(rc.s.Source)
			_ = w.write(f) // a worker gone is the reader's to report
		case frameNeedField:
			key := d.string()
			f := newFrame(frameField)
			f.uvarint(c.id)
			v, ok := rc.call.Context[key]
			if lz, isLazy := v.(hooks.Lazy); isLazy && ok && d.err == nil {
				v = lz.Value()
			} else {
				v = nil
			}
			if err := f.value(v, 1); err != nil {
				f = newFrame(frameField)
				f.uvarint(c.id)
				f.byte(tagNull)
			}
			_ = w.write(f)
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
				w.kill(killedClose)
				return nil, fail(hooks.FailureCrash, "the worker process answered something malformed"), false
			}
			if level == slog.LevelInfo {
				logs = append(logs, msg)
			}
			rc.logger.LogAttrs(context.Background(), level, msg, attrs...)
		case frameFetch:
			req := decodeFetchRequest(d)
			if d.err != nil || len(d.b) != 0 {
				w.kill(killedClose)
				return nil, fail(hooks.FailureCrash, "the worker process answered something malformed"), false
			}
			w.qmu.Lock()
			until := c.until
			w.qmu.Unlock()
			line, _ := p.fetch(ctx, w, c.id, rc, req, until)
			if line != "" && len(logs) < maxLogLines {
				logs = append(logs, line)
			}
		case frameResult:
			res, err := decodeResult(d, rc, logs)
			if errors.Is(err, errMalformed) {
				w.kill(killedClose)
				return nil, fail(hooks.FailureCrash, "the worker process answered something malformed"), false
			}
			if se, ok := err.(*hooks.ScriptError); ok && se.Kind == hooks.FailureTimeout {
				// The worker only knew the time left; say it as the
				// script has it.
				se.Message = rc.timeoutMessage()
			}
			return res, err, false
		}
	}
}

// abandon gives up c, whose request ended while it waited in w's queue:
// the worker, told by cancel, answers it without running it, and the
// answer is dropped. It reports false when c runs already (or is
// answered), and must then be waited for.
func (p *pool) abandon(w *worker, c *inflight) bool {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return !w.gone && w.byID[c.id] == c && w.calls[0] != c
}

// fetch makes a fetch the worker asked for and sends the answer. The
// request's end cancels it, and so does the worker's death (killed at
// its deadline, or gone); it never runs past the call's deadline.
func (p *pool) fetch(ctx context.Context, w *worker, id uint64, rc *remoteCall, req *fetchRequest, until time.Time) (string, error) {
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
		resp, line, err = rc.fetch(fctx, req, until)
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
		// Killed and logged by its reader.
		return fail(hooks.FailureCrash, "the worker process answered something malformed")
	}
	if errors.Is(cause, errKilledForAnother) {
		return fail(hooks.FailureCrash, "not finished: "+cause.Error())
	}
	switch killReason(w.killed.Load()) {
	case killedDeadline:
		return fail(hooks.FailureTimeout, rc.timeoutMessage())
	case killedCancel:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || !rc.ctxEnd.IsZero() && !time.Now().Before(rc.ctxEnd) {
			return fail(hooks.FailureTimeout, rc.timeoutMessage())
		}
		return fail(hooks.FailureCancelled, "stopped: the request ended ("+causeOf(ctx)+")")
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

// causeOf says why ctx ended (or that it has not).
func causeOf(ctx context.Context) string {
	if err := context.Cause(ctx); err != nil {
		return err.Error()
	}
	return "it had not"
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
