package scripts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
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
	f := os.NewFile(3, "keyhook-server")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyhook script worker: no server socket:", err)
		return 1
	}
	limitAddressSpace()
	stack, _ := strconv.Atoi(os.Getenv(workerStackEnv))
	w := &workerProc{conn: conn, calls: make(chan []byte, 1), replies: make(chan []byte, 1), started: make(chan struct{}, 1)}
	w.rt = New(Options{
		DefaultIsolation: hooks.IsolationInline, MaxRuntimes: 1, MaxScripts: 64, MaxCallStackSize: stack,
		Logger: slog.New(&frameHandler{w: w}),
	})
	w.rt.watch = w.watch
	w.rt.cold = w.running
	go w.watchdog()
	ready := newFrame(frameReady)
	ready.uvarint(0)
	if err := w.write(ready); err != nil {
		return 1
	}
	go w.read()
	for payload := range w.calls {
		if !w.serve(payload) {
			return exitProtocol
		}
	}
	return 0
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

// workerProc is the state of a worker process.
type workerProc struct {
	conn    net.Conn
	wmu     sync.Mutex
	rt      *Runtime
	calls   chan []byte   // call frames, from read
	replies chan []byte   // source and field frames, from read
	started chan struct{} // wakes the watchdog when a call starts

	// The call in progress, for cancel frames and the watchdog.
	cur atomic.Pointer[workerCall]
}

type workerCall struct {
	id      uint64
	cancel  context.CancelFunc
	timeout time.Duration
	budget  int64
	// interrupt stops the call's JavaScript (set while it runs); over is
	// set when the watchdog found the call over its budget.
	mu        sync.Mutex
	deadline  time.Time
	interrupt func(v any)
	over      bool
}

func (w *workerProc) write(e *encoder) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return writeFrame(w.conn, e)
}

// read dispatches the server's frames; it ends the process when the
// server goes away.
func (w *workerProc) read() {
	r := bufio.NewReaderSize(w.conn, 32<<10)
	for {
		typ, payload, err := readFrame(r)
		if err != nil {
			os.Exit(0) // the server closed the socket or died
		}
		switch typ {
		case frameCall:
			w.calls <- payload
		case frameSource, frameField:
			w.replies <- payload
		case frameCancel:
			d := &decoder{b: payload}
			id := d.uvarint()
			if c := w.cur.Load(); c != nil && c.id == id {
				c.cancel()
			}
		default:
			os.Exit(exitProtocol)
		}
	}
}

// reply waits for the server's answer to a request of call id. An answer
// to an earlier call (one that was cancelled while it waited) is dropped.
func (w *workerProc) reply(ctx context.Context, id uint64) (*decoder, bool) {
	for {
		select {
		case payload := <-w.replies:
			d := &decoder{b: payload}
			got := d.uvarint()
			if d.err != nil || got > id {
				os.Exit(exitProtocol)
			}
			if got == id {
				return d, true
			}
		case <-ctx.Done():
			return nil, false
		}
	}
}

// serve runs one call frame and answers it; false means the frame did
// not decode.
func (w *workerProc) serve(payload []byte) bool {
	d := &decoder{b: payload}
	id := d.uvarint()
	s := &hooks.Script{Name: d.string(), Version: d.string(), Isolation: hooks.IsolationInline}
	timeout := time.Duration(d.uvarint())
	budget := int64(d.uvarint())
	call := &hooks.Call{Function: hooks.Function(d.string())}
	call.Args = make([]any, d.count())
	for i := range call.Args {
		call.Args[i] = d.value(1, nil, "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hctx, _ := d.value(0, func(key string) any { return &remoteLazy{w: w, ctx: ctx, id: id, key: key} }, "").(map[string]any)
	if d.err != nil || len(d.b) != 0 || hctx == nil {
		return false
	}
	call.Context = hctx
	s.Timeout = max(timeout, time.Millisecond)
	wc := &workerCall{id: id, cancel: cancel, timeout: s.Timeout, budget: budget}
	w.cur.Store(wc)
	defer w.cur.Store(nil)
	select {
	case w.started <- struct{}{}: // wake the watchdog
	default:
	}
	if w.rt.warm(s.Name, s.Version) {
		wc.deadline = time.Now().Add(s.Timeout)
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
		rd, ok := w.reply(ctx, id)
		if !ok {
			return w.answer(id, nil, &hooks.ScriptError{Script: s.Name, Function: call.Function, Kind: hooks.FailureCancelled, Message: "cancelled"})
		}
		s.Source = rd.string()
	}
	res, err := w.rt.Call(ctx, s, call)
	return w.answer(id, res, err)
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

// remoteLazy is a context value the server computes when the script
// first reads it.
type remoteLazy struct {
	w   *workerProc
	ctx context.Context
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
	d, ok := l.w.reply(l.ctx, l.id)
	if !ok {
		return nil
	}
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

// watchdog checks the call in progress every millisecond: a heap grown
// past the call's memory budget interrupts it (and ends the process if
// the call is inside a built-in that does not see interrupts), and a call
// far past its deadline ends the process.
func (w *workerProc) watchdog() {
	samples := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	read := func() (objects, live uint64) {
		rtmetrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64()
	}
	var (
		watched  *workerCall
		base     uint64
		lastGC   time.Time
		overAt   time.Time
		interval = time.Millisecond
	)
	for {
		c := w.cur.Load()
		if c == nil {
			// Idle: sleep until the next call starts.
			watched = nil
			<-w.started
			continue
		}
		time.Sleep(interval)
		if c = w.cur.Load(); c == nil {
			continue
		}
		now := time.Now()
		if c != watched {
			watched, overAt = c, time.Time{}
			_, base = read()
		}
		c.mu.Lock()
		deadline := c.deadline
		c.mu.Unlock()
		if !deadline.IsZero() && now.After(deadline.Add(workerOverrun)) {
			os.Exit(exitTimeout)
		}
		if !overAt.IsZero() {
			if now.Sub(overAt) > 100*time.Millisecond {
				os.Exit(exitMemory) // stuck in a built-in past its budget
			}
			continue
		}
		limit := base + uint64(c.budget)
		objects, live := read()
		if objects <= limit {
			continue
		}
		if live <= limit && now.Sub(lastGC) < 20*time.Millisecond {
			continue // garbage, measured a moment ago
		}
		runtime.GC()
		lastGC = time.Now()
		if _, live = read(); live > limit {
			c.mu.Lock()
			c.over = true
			if c.interrupt != nil {
				c.interrupt(overBudget{})
			}
			c.mu.Unlock()
			overAt = time.Now()
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
