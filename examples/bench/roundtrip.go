package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/labstack/echo/v4"
)

// The round-trip floor: the bare echo ceiling plus, for every request,
// one round trip to a child process over a socket pair, which sends the
// answer back unchanged. It is what a design like keyhook's (calls sent
// over sockets to worker processes) pays per call on this machine before
// it does anything: no script, no decoding, pipelined like keyhook's
// worker pool (several calls in flight per child, answered in order),
// with as many children as keyhook's default number of workers.
// keyhook's process-isolation case is measured against it.

// roundTripEnv makes the ceiling server the round-trip floor (its
// number of child processes).
const roundTripEnv = "KEYHOOK_BENCH_ROUNDTRIP"

// echoChildEnv makes this program an echo child, serving fd 3.
const echoChildEnv = "KEYHOOK_BENCH_ECHO_CHILD"

// serveEchoChild sends every frame read on fd 3 back unchanged, from
// one locked thread with blocking reads, as a keyhook worker does.
func serveEchoChild() {
	runtime.LockOSThread()
	if err := syscall.SetNonblock(3, false); err != nil {
		fail(err)
	}
	f := os.NewFile(3, "parent")
	r := bufio.NewReaderSize(f, 32<<10)
	for {
		b, err := readEchoFrame(r)
		if err != nil {
			os.Exit(0) // the parent is gone
		}
		if _, err := f.Write(b); err != nil {
			os.Exit(0)
		}
	}
}

// readEchoFrame reads a frame: a 4-byte little-endian length, then that
// many bytes. It returns the whole frame.
func readEchoFrame(r *bufio.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("echo frame of %d bytes", n)
	}
	b := make([]byte, 4+n)
	copy(b, hdr[:])
	_, err := io.ReadFull(r, b[4:])
	return b, err
}

// echoChild is the parent's side of one child: calls in flight wait in
// order for their answers.
type echoChild struct {
	conn     *os.File
	r        *bufio.Reader
	mu       sync.Mutex
	waiters  []chan []byte
	inFlight atomic.Int32
	answered atomic.Int64
	closed   atomic.Bool
}

// close ends the child: it exits when its socket closes.
func (c *echoChild) close() {
	c.closed.Store(true)
	_ = c.conn.Close()
}

// roundTrip sends frame b to c and returns c's answer.
func (c *echoChild) roundTrip(b []byte) []byte {
	ch := make(chan []byte, 1)
	c.inFlight.Add(1)
	c.mu.Lock()
	c.waiters = append(c.waiters, ch)
	_, err := c.conn.Write(b)
	c.mu.Unlock()
	if err != nil {
		fail(err)
	}
	out := <-ch
	c.inFlight.Add(-1)
	return out
}

// read hands each answer to the call that waits longest.
func (c *echoChild) read() {
	for {
		b, err := readEchoFrame(c.r)
		if err != nil {
			if c.closed.Load() {
				return
			}
			fail(fmt.Errorf("echo child: %w", err))
		}
		c.mu.Lock()
		ch := c.waiters[0]
		c.waiters[0] = nil
		c.waiters = c.waiters[1:]
		c.mu.Unlock()
		c.answered.Add(1)
		ch <- b
	}
}

// startEchoChildren starts n echo children of this program.
func startEchoChildren(n int) []*echoChild {
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	var out []*echoChild
	for range n {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			fail(err)
		}
		childEnd := os.NewFile(uintptr(fds[1]), "child")
		cmd := exec.Command(self)
		cmd.Env = []string{echoChildEnv + "=1"}
		cmd.ExtraFiles = []*os.File{childEnd}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		childEnd.Close()
		if err := syscall.SetNonblock(fds[0], true); err != nil {
			fail(err)
		}
		conn := os.NewFile(uintptr(fds[0]), "echo-child") // in the netpoller
		c := &echoChild{conn: conn, r: bufio.NewReaderSize(conn, 32<<10)}
		go c.read()
		out = append(out, c)
	}
	return out
}

// serveRoundTrip is the round-trip floor on addr with n children.
func serveRoundTrip(addr string, n int) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/*", roundTripHandler(startEchoChildren(n)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	fail(http.Serve(ln, e))
}

// roundTripHandler answers ceilingAnswer after sending it to one of
// children and back.
func roundTripHandler(children []*echoChild) echo.HandlerFunc {
	body, err := json.Marshal(ceilingAnswer)
	if err != nil {
		fail(err)
	}
	frame := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
	frame = append(frame, body...)
	return func(c echo.Context) error {
		out := leastBusy(children).roundTrip(frame)
		return c.JSONBlob(http.StatusOK, out[4:])
	}
}

// leastBusy is the child with the fewest calls in flight, as keyhook's
// pool picks.
func leastBusy(children []*echoChild) *echoChild {
	best := children[0]
	for _, ch := range children[1:] {
		if ch.inFlight.Load() < best.inFlight.Load() {
			best = ch
		}
	}
	return best
}

// roundTripRows measure one round trip to an echo child with a frame
// the size of a hook call's, as hookRows measure a hook call: one at a
// time and with 32 callers at once. They are the floor of a hook call in
// process isolation.
func roundTripRows() []row {
	n, _ := strconv.Atoi(roundTripChildren())
	children := startEchoChildren(n)
	defer func() {
		for _, c := range children {
			c.close()
		}
	}()
	frame := binary.LittleEndian.AppendUint32(nil, roundTripFrameBytes)
	frame = append(frame, make([]byte, roundTripFrameBytes)...)
	serialNs, _, par := serialAndParallel(func() error {
		leastBusy(children).roundTrip(frame)
		return nil
	})
	return []row{
		{name: "one process round trip, no script, serial (median of 5)", store: "-", nsPerOp: fmt.Sprint(serialNs)},
		{name: "one process round trip, no script, 32 callers (per call)", store: "-", nsPerOp: fmt.Sprint(par.NsPerOp())},
	}
}

// roundTripFrameBytes is about the size of a hook call's frame (the
// bench's introspection call: its response and context).
const roundTripFrameBytes = 400

// roundTripChildren is how many children the floor starts: keyhook's
// default number of script workers (scripts.Options.Workers).
func roundTripChildren() string { return strconv.Itoa(2 * runtime.GOMAXPROCS(0)) }
