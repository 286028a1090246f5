package scripts

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dlclark/regexp2/v2"

	"github.com/keyhook/keyhook/hooks"
)

// The worker side of process isolation (see pool.go).

const (
	// workerEnv, when set, makes the process a script worker: the
	// package's init serves calls on fd 3 and exits, so main never runs.
	// Any binary that links this package can be a worker, the server's
	// and test binaries alike.
	workerEnv = "KEYHOOK_SCRIPT_WORKER"
	// workerASEnv is the address space, in bytes, a worker may add to
	// what it has when it starts (RLIMIT_AS).
	workerASEnv = "KEYHOOK_SCRIPT_WORKER_AS"
	// workerStackEnv is the JavaScript call depth limit.
	workerStackEnv = "KEYHOOK_SCRIPT_WORKER_STACK"
	// workerHeadroom is address space a worker gets beyond the largest
	// memory budget: for the Go runtime's own growth (heap arenas are
	// reserved 64 MiB at a time, thread stacks) and the call's garbage.
	workerHeadroom = 512 << 20
	// workerOverrun is how long a worker lets a call run past its
	// deadline before ending itself (the server normally kills it much
	// sooner; this covers a server that is gone).
	workerOverrun = 2 * time.Second
)

func init() {
	if os.Getenv(workerEnv) == "" {
		return
	}
	// In a worker a regular expression may run until the server kills
	// the process at the call's deadline; a match timeout would instead
	// turn a long match into a silent "no match".
	regexp2.DefaultMatchTimeout = time.Duration(math.MaxInt64)
	os.Exit(serveWorker())
}

// serveWorker runs calls sent on fd 3 until it closes.
func serveWorker() int {
	// The socket is used with blocking system calls from one locked
	// thread: a call then costs the kernel's wake-up of this thread and
	// no hand-over inside the Go scheduler.
	runtime.LockOSThread()
	conn := fdConn(3)
	if err := syscall.SetNonblock(int(conn), false); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook script worker: no server socket:", err)
		return 1
	}
	limitAddressSpace()
	lowerPriority()
	stack, _ := strconv.Atoi(os.Getenv(workerStackEnv))
	w := &workerProc{conn: conn, r: bufio.NewReaderSize(conn, 32<<10), cancelled: map[uint64]bool{}, kick: make(chan struct{}, 1)}
	w.rt = New(Options{
		DefaultIsolation: hooks.IsolationInline, MaxRuntimes: 1, MaxScripts: 64, MaxCallStackSize: stack,
		Logger: slog.New(&frameHandler{w: w}),
	})
	w.rt.watch = w.watch
	w.rt.cold = w.running
	w.rt.remoteFetch = w.fetch
	// The server cancels a call whose request ended by sending its id
	// on the control socket: the call is stopped if it runs, and
	// answered at once when its turn comes if it has not started.
	go w.readCancels(os.NewFile(4, "keyhook-server-control"))
	go w.watchLoop()
	if err := w.write(newFrame(frameReady)); err != nil {
		return 1
	}
	for {
		payload, ok := w.next()
		if !ok {
			return 0 // the server closed the socket or died
		}
		if !w.serve(payload) {
			return exitProtocol
		}
	}
}

// next is the next call to run: sent while an earlier one ran (and kept
// by reply), or read now. ok is false when the server is gone; a frame
// that is not a call ends the worker.
func (w *workerProc) next() (payload []byte, ok bool) {
	if len(w.queued) > 0 {
		payload = w.queued[0]
		w.queued[0] = nil
		w.queued = w.queued[1:]
		return payload, true
	}
	typ, payload, err := readFrame(w.r)
	if err != nil {
		return nil, false
	}
	if typ != frameCall {
		os.Exit(exitProtocol)
	}
	return payload, true
}

// maxCancelled bounds the ids of cancelled calls a worker remembers; a
// cancel that came after its call ended stays until then. Forgetting one
// only lets a call whose request ended run.
const maxCancelled = 4096

// readCancels reads the ids of calls to cancel from the control socket
// until it closes.
func (w *workerProc) readCancels(ctl *os.File) {
	r := bufio.NewReader(ctl)
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return
		}
		id := binary.LittleEndian.Uint64(b[:])
		w.cmu.Lock()
		if c := w.cur.Load(); c != nil && c.id == id {
			c.cancel()
		} else {
			if len(w.cancelled) >= maxCancelled {
				clear(w.cancelled)
			}
			w.cancelled[id] = true
		}
		w.cmu.Unlock()
	}
}

// limitAddressSpace caps the worker's address space at what it has now
// plus the allowance the server passed: an allocation beyond it fails,
// which the Go runtime treats as fatal, so the worker (and only the
// worker) dies and the server reports the call as over its memory
// budget.
func limitAddressSpace() {
	extra, err := strconv.ParseInt(os.Getenv(workerASEnv), 10, 64)
	if err != nil || extra <= 0 {
		return
	}
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return
	}
	pages, err := strconv.ParseUint(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		return
	}
	lim := pages*uint64(os.Getpagesize()) + uint64(extra)
	var cur syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_AS, &cur) == nil && cur.Max < lim {
		lim = cur.Max // inherited and lower already (prlimit on the server)
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: lim, Max: lim})
}

// fdConn is a socket used with blocking reads and writes.
type fdConn int

func (c fdConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(c), p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c fdConn) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := syscall.Write(int(c), p[written:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// workerNice is the scheduling niceness of workers: when the machine's
// CPUs are contended, the server's own request handling runs before
// script code, so a script that spins until its deadline slows its own
// requests, not everyone's.
const workerNice = 5

// lowerPriority gives every thread of the worker workerNice (on Linux a
// niceness is per thread; threads made later inherit their creator's).
func lowerPriority() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, workerNice)
		}
	}
}

// workerProc is the state of a worker process.
type workerProc struct {
	conn fdConn
	r    *bufio.Reader // read by the serving goroutine only
	wmu  sync.Mutex
	rt   *Runtime

	// The call in progress, for cancellation and the watchdog.
	cur atomic.Pointer[workerCall]
	// queued holds calls the server sent while one ran (read by reply).
	queued [][]byte
	// cancelled holds the ids of calls cancelled before they started;
	// cmu orders a cancel against the start of its call.
	cmu       sync.Mutex
	cancelled map[uint64]bool
	// kick wakes the resting watchdog (watchLoop).
	kick chan struct{}
}

type workerCall struct {
	id      uint64
	cancel  context.CancelFunc
	timeout time.Duration
	budget  int64
	// started is when the call was taken up; the watchdog looks at it
	// once it has run watchdogEvery (see watchLoop).
	started time.Time
	// interrupt stops the call's JavaScript (set while it runs); over is
	// set when the watchdog found the call over its budget; deadline is
	// when the call's time ends (zero while its runtime is being made).
	mu        sync.Mutex
	done      bool // the call returned; the watchdog leaves it alone
	deadline  time.Time
	interrupt func(v any)
	over      bool
	base      uint64    // live heap when the watchdog first looked
	overAt    time.Time // when it interrupted the call for its budget
	lastGC    time.Time
}

func (w *workerProc) write(e *encoder) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return writeFrame(w.conn, e)
}

// reply reads the server's answer to a request of call id (a source, a
// lazy value or a fetch). Only calls sent to run later can come
// meanwhile; they are kept for next.
func (w *workerProc) reply(id uint64) *decoder {
	for {
		typ, payload, err := readFrame(w.r)
		if err != nil {
			os.Exit(0) // the server is gone
		}
		if typ == frameCall {
			w.queued = append(w.queued, payload)
			continue
		}
		d := &decoder{b: payload}
		if (typ != frameSource && typ != frameField && typ != frameFetched) || d.uvarint() != id || d.err != nil {
			os.Exit(exitProtocol)
		}
		return d
	}
}

// serve runs one call frame and answers it; false means the frame did
// not decode.
func (w *workerProc) serve(payload []byte) bool {
	d := &decoder{b: payload}
	id := d.uvarint()
	s := &hooks.Script{Name: d.string(), Version: d.string(), Isolation: hooks.IsolationInline}
	timeout := time.Duration(d.uvarint())
	ctxEnd := d.varint()
	budget := int64(d.uvarint())
	call := &hooks.Call{Function: hooks.Function(d.string())}
	call.Args = make([]any, d.count())
	for i := range call.Args {
		call.Args[i] = d.value(1, nil, "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hctx, _ := d.value(0, func(key string) any { return &remoteLazy{w: w, id: id, key: key} }, "").(map[string]any)
	if d.err != nil || len(d.b) != 0 || hctx == nil {
		return false
	}
	call.Context = hctx
	// The call's time counts from now, when its turn came, bounded by
	// its request's end wherever it waited.
	if ctxEnd != 0 {
		timeout = min(timeout, time.Until(time.Unix(0, ctxEnd)))
	}
	s.Timeout = max(timeout, time.Millisecond)
	wc := &workerCall{id: id, cancel: cancel, timeout: s.Timeout, budget: budget, started: time.Now()}
	w.cmu.Lock()
	stopped := w.cancelled[id]
	delete(w.cancelled, id)
	if !stopped {
		w.cur.Store(wc)
	}
	w.cmu.Unlock()
	if stopped {
		return w.answer(id, nil, &hooks.ScriptError{Kind: hooks.FailureCancelled, Message: "not started: the request ended"})
	}
	defer w.cur.Store(nil)
	select {
	case w.kick <- struct{}{}: // the watchdog was resting
	default:
	}
	if w.rt.warm(s.Name, s.Version) {
		wc.mu.Lock()
		wc.deadline = time.Now().Add(s.Timeout)
		wc.mu.Unlock()
	} else {
		// Compiling the script and making its runtime come first; the
		// call's time starts when the script does (running).
		setup := newFrame(frameSetup)
		setup.uvarint(id)
		if w.write(setup) != nil {
			os.Exit(0)
		}
	}

	if src, ok := w.rt.cachedSource(s.Name, s.Version); ok {
		s.Source = src
	} else {
		need := newFrame(frameNeedSrc)
		need.uvarint(id)
		if w.write(need) != nil {
			os.Exit(0)
		}
		s.Source = w.reply(id).string()
	}
	res, err := w.rt.Call(ctx, s, call)
	// From here the watchdog must not end the process: the call is over
	// and its answer about to go out (check holds mu while it decides).
	wc.mu.Lock()
	wc.done = true
	wc.mu.Unlock()
	ok := w.answer(id, res, err)
	var se *hooks.ScriptError
	if errors.As(err, &se) && (se.Kind == hooks.FailureMemory || se.Kind == hooks.FailureTimeout) {
		// What the call built is garbage now, but the live heap the
		// watchdog measures the next call from is that of the last
		// collection, which may have counted it: collect before the
		// next call (after answering, so the answer is not late).
		runtime.GC()
	}
	return ok
}

// answer sends a call's result.
func (w *workerProc) answer(id uint64, res *hooks.Result, err error) bool {
	f := newFrame(frameResult)
	f.uvarint(id)
	var se *hooks.ScriptError
	var syn *hooks.SyntaxError
	switch {
	case err == nil:
		f.byte(resultOK)
	case errors.As(err, &se):
		f.byte(resultScriptError)
	case errors.As(err, &syn):
		f.byte(resultSyntaxError)
	default:
		f.byte(resultError)
	}
	defined := res != nil && res.Defined
	f.bool(defined)
	var dur time.Duration
	if res != nil {
		dur = res.Duration
	}
	f.uvarint(uint64(max(dur, 0)))
	switch {
	case err == nil:
		if defined {
			if e := f.value(res.Return, 1); e != nil {
				return w.answer(id, res, &hooks.ScriptError{Kind: hooks.FailureWrongType, Message: e.Error()})
			}
			f.uvarint(uint64(len(res.Args)))
			for _, a := range res.Args {
				if e := f.value(a, 1); e != nil {
					return w.answer(id, res, &hooks.ScriptError{Kind: hooks.FailureWrongType, Message: e.Error()})
				}
			}
		}
	case se != nil:
		f.string(string(se.Kind))
		f.string(se.Message)
	case syn != nil:
		f.uvarint(uint64(max(syn.Line, 0)))
		f.uvarint(uint64(max(syn.Column, 0)))
		f.string(syn.Message)
	default:
		f.string(err.Error())
	}
	if w.write(f) != nil {
		os.Exit(0)
	}
	return true
}

// running tells the server that the call in progress starts only now,
// after its runtime was made.
func (w *workerProc) running() {
	if c := w.cur.Load(); c != nil {
		f := newFrame(frameRunning)
		f.uvarint(c.id)
		if w.write(f) != nil {
			os.Exit(0)
		}
		c.mu.Lock()
		c.deadline = time.Now().Add(c.timeout)
		c.mu.Unlock()
	}
}

// fetch asks the server to make a fetch of the call in progress
// (context.fetch, fetch.go): the worker has no network of its own. The
// server bounds it by the call's deadline and the request's end.
func (w *workerProc) fetch(_ context.Context, req *fetchRequest, _ time.Time) (*fetchResponse, string, error) {
	c := w.cur.Load()
	if c == nil {
		return nil, "", &fetchError{"disabled", "not available here"}
	}
	f := newFrame(frameFetch)
	f.uvarint(c.id)
	encodeFetchRequest(f, req)
	if w.write(f) != nil {
		os.Exit(0)
	}
	d := w.reply(c.id)
	resp, err := decodeFetched(d)
	if d.err != nil || len(d.b) != 0 {
		os.Exit(exitProtocol)
	}
	// The server logged the call and keeps its line for the call's logs.
	return resp, "", err
}

// remoteLazy is a context value the server computes when the script
// first reads it.
type remoteLazy struct {
	w   *workerProc
	id  uint64
	key string
}

func (l *remoteLazy) Value() any {
	f := newFrame(frameNeedField)
	f.uvarint(l.id)
	f.string(l.key)
	if l.w.write(f) != nil {
		os.Exit(0)
	}
	d := l.w.reply(l.id)
	v := d.value(1, nil, "")
	if d.err != nil {
		os.Exit(exitProtocol)
	}
	return v
}

// watch is the Runtime hook that makes the call in progress
// interruptible by the watchdog; the function it returns reports whether
// the watchdog found the call over its budget.
func (w *workerProc) watch(interrupt func(v any)) func() bool {
	c := w.cur.Load()
	if c == nil {
		return func() bool { return false }
	}
	c.mu.Lock()
	c.interrupt = interrupt
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.interrupt = nil
		return c.over
	}
}

// overBudget is what the watchdog interrupts a call with.
type overBudget struct{}

// watchdogEvery is how often the watchdog looks at a running call. A call
// shorter than that is never looked at (the address-space limit still
// bounds it), so the common call costs no extra wake-up.
const watchdogEvery = time.Millisecond

// check is the watchdog's look at call c, every watchdogEvery while it runs. A
// heap grown past the call's memory budget interrupts it (and ends the
// process if the call is inside a built-in that does not see interrupts
// 100 ms later), and a call far past its deadline ends the process.
func (w *workerProc) check(c *workerCall) {
	if w.cur.Load() != c {
		return
	}
	samples := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() (objects, live uint64) {
		rtmetrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64()
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	deadline, overAt, base, lastGC := c.deadline, c.overAt, c.base, c.lastGC
	now := time.Now()
	// The process ends with mu held, so never after the call returned.
	if !deadline.IsZero() && now.After(deadline.Add(workerOverrun)) {
		os.Exit(exitTimeout)
	}
	if !overAt.IsZero() && now.Sub(overAt) > 100*time.Millisecond {
		os.Exit(exitMemory) // stuck in a built-in past its budget
	}
	c.mu.Unlock()
	if !overAt.IsZero() {
		return
	}
	if base == 0 {
		// The live heap as of the last collection: what the call found.
		_, base = read()
		c.mu.Lock()
		c.base = base
		c.mu.Unlock()
	}
	limit := base + uint64(c.budget)
	// Far over the budget, garbage or not, the call is over: collecting
	// a heap of gigabytes first would take longer than the call may.
	hard := limit + uint64(c.budget) + 32<<20
	objects, live := read()
	over := objects > hard
	if !over && objects > limit && (live > limit || now.Sub(lastGC) >= 20*time.Millisecond) {
		// Over the budget counting garbage: collect, and look again.
		runtime.GC()
		c.mu.Lock()
		c.lastGC = time.Now()
		c.mu.Unlock()
		_, live = read()
		over = live > limit
	}
	if over {
		c.mu.Lock()
		c.over, c.overAt = true, time.Now()
		if c.interrupt != nil {
			c.interrupt(overBudget{})
		}
		c.mu.Unlock()
	}
}

// watchLoop is the watchdog: every watchdogEvery it checks the call in
// progress once that has run so long. One ticker for all calls costs
// less than a timer per call (each arming wakes the runtime's poller).
// While no call runs for a few ticks it rests until the next call.
func (w *workerProc) watchLoop() {
	t := time.NewTicker(watchdogEvery)
	idle := 0
	for range t.C {
		c := w.cur.Load()
		if c == nil {
			if idle++; idle > 3 {
				t.Stop()
				<-w.kick
				t.Reset(watchdogEvery)
				idle = 0
			}
			continue
		}
		idle = 0
		if time.Since(c.started) >= watchdogEvery {
			w.check(c)
		}
	}
}

// frameHandler is the worker Runtime's slog handler: records go to the
// server, which logs them with the request's logger.
type frameHandler struct {
	w     *workerProc
	attrs []slog.Attr
}

func (h *frameHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *frameHandler) Handle(_ context.Context, r slog.Record) error {
	c := h.w.cur.Load()
	if c == nil {
		return nil
	}
	f := newFrame(frameLog)
	f.uvarint(c.id)
	f.varint(int64(r.Level))
	f.string(r.Message)
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	f.uvarint(uint64(len(attrs)))
	for _, a := range attrs {
		f.string(a.Key)
		f.string(a.Value.String())
	}
	return h.w.write(f)
}

func (h *frameHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &frameHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *frameHandler) WithGroup(string) slog.Handler { return h }
