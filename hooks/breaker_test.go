package hooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// stepRuntime answers each call as told by do (the kind of failure, or
// "ok", "wrong", "undefined", "block") and counts the calls it gets.
type stepRuntime struct {
	mu    sync.Mutex
	do    string
	calls int
	// entered and release: a "block" call signals entered, then waits
	// until release is closed.
	entered, release chan struct{}
}

func (r *stepRuntime) set(do string) {
	r.mu.Lock()
	r.do = do
	r.mu.Unlock()
}

func (r *stepRuntime) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *stepRuntime) Check(name, source string) error { return nil }

func (r *stepRuntime) Call(_ context.Context, s *Script, call *Call) (*Result, error) {
	r.mu.Lock()
	r.calls++
	do := r.do
	r.mu.Unlock()
	if do == "block" {
		r.entered <- struct{}{}
		<-r.release
		do = "ok"
	}
	ok := &Result{Defined: true, Return: true, Args: call.Args}
	if call.Function == FnAccessTokenLifetime {
		ok.Return = int64(60)
	}
	switch do {
	case "ok":
		return ok, nil
	case "wrong":
		ok.Return = "yes"
		return ok, nil
	case "undefined":
		return &Result{}, nil
	}
	return nil, &ScriptError{Script: s.Name, Function: call.Function, Kind: FailureKind(do), Message: do}
}

// fixedClock is a clock that moves only when told.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// breakerFixture is a dispatcher with threshold 3 and a 10 s cool-down
// on a fixed clock, logging into a buffer and counting what it reports.
type breakerFixture struct {
	d       *Dispatcher
	rt      *stepRuntime
	clock   *fixedClock
	logs    *syncBuffer
	mu      sync.Mutex
	trips   []time.Time
	kinds   map[FailureKind]int
	removed []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// lines counts the log lines that contain s.
func (b *syncBuffer) lines(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.b.String(), s)
}

const (
	testThreshold = 3
	testCooldown  = 10 * time.Second
)

func newBreakerFixture(t *testing.T, scripts ...*Script) *breakerFixture {
	t.Helper()
	f := &breakerFixture{rt: &stepRuntime{do: "ok", entered: make(chan struct{}, 1), release: make(chan struct{})}, clock: &fixedClock{t: time.Unix(1_700_000_000, 0)},
		logs: &syncBuffer{}, kinds: map[FailureKind]int{}}
	f.d = NewDispatcher(f.rt, slog.New(slog.NewTextHandler(f.logs, nil)))
	f.d.Breaker = BreakerOptions{Threshold: testThreshold, Cooldown: testCooldown, Now: f.clock.now}
	f.d.OnTrip = func(_ string, until time.Time) {
		f.mu.Lock()
		f.trips = append(f.trips, until)
		f.mu.Unlock()
	}
	f.d.OnFailure = func(_ string, k FailureKind) {
		f.mu.Lock()
		f.kinds[k]++
		f.mu.Unlock()
	}
	f.d.OnRemove = func(name string) { f.removed = append(f.removed, name) }
	f.d.Replace(scripts)
	return f
}

func versioned(name, version string, opts ...func(*Script)) *Script {
	s := script(name, "", 1, opts...)
	s.Version = version
	return s
}

func TestBreaker(t *testing.T) {
	type step struct {
		do       string        // what the runtime does if called
		advance  time.Duration // the clock moves before the call
		lifetime bool          // call getAccessTokenLifetimeInSeconds through Lifetime instead of Run
		ran      bool          // the runtime was called
	}
	throw := step{do: "exception", ran: true}
	ok := step{do: "ok", ran: true}
	skipped := func(do string) step { return step{do: do} }
	after := func(d time.Duration, s step) step { s.advance = d; return s }
	for _, tc := range []struct {
		name    string
		onError OnError
		steps   []step
		trips   int
		tripped bool // at the end
	}{
		{"N-1 failures then success: not tripped", OnErrorSkip,
			[]step{throw, throw, ok, throw, throw, ok}, 0, false},
		{"N failures trip; later calls not made", OnErrorSkip,
			[]step{throw, throw, throw, skipped("exception"), skipped("ok")}, 1, true},
		{"every failure of the script's doing counts", OnErrorSkip,
			[]step{{do: "timeout", ran: true}, {do: "stack_overflow", ran: true}, {do: "wrong", ran: true}, skipped("ok")}, 1, true},
		{"memory and crash count", OnErrorSkip,
			[]step{{do: "memory", ran: true}, {do: "crash", ran: true}, throw, skipped("ok")}, 1, true},
		{"busy and cancelled neither count nor reset", OnErrorSkip,
			[]step{throw, {do: "busy", ran: true}, throw, {do: "cancelled", ran: true}, throw, skipped("ok")}, 1, true},
		{"undefined function neither counts nor resets", OnErrorSkip,
			[]step{throw, throw, {do: "undefined", ran: true}, throw, skipped("ok")}, 1, true},
		{"with deny, tripped calls deny", OnErrorDeny,
			[]step{throw, throw, throw, skipped("ok"), skipped("ok")}, 1, true},
		{"still open just before the cool-down ends", OnErrorSkip,
			[]step{throw, throw, throw, after(testCooldown-time.Millisecond, skipped("ok"))}, 1, true},
		{"half-open success closes", OnErrorSkip,
			[]step{throw, throw, throw, after(testCooldown, ok), throw, throw, ok}, 1, false},
		{"half-open failure re-opens for another cool-down", OnErrorSkip,
			[]step{throw, throw, throw, after(testCooldown, throw), skipped("ok"), after(testCooldown-time.Millisecond, skipped("ok")),
				after(time.Millisecond, ok)}, 2, false},
		{"half-open call of an undefined function lets the next one probe", OnErrorSkip,
			[]step{throw, throw, throw, after(testCooldown, step{do: "undefined", ran: true}), throw, skipped("ok")}, 2, true},
		{"lifetime calls are skipped too", OnErrorSkip,
			[]step{throw, throw, throw, {do: "ok", lifetime: true}}, 1, true},
		{"lifetime failures count", OnErrorSkip,
			[]step{{do: "exception", lifetime: true, ran: true}, {do: "timeout", lifetime: true, ran: true}, {do: "exception", lifetime: true, ran: true}, skipped("ok")}, 1, true},
		{"a working function does not hide a failing one", OnErrorSkip,
			[]step{throw, {do: "ok", lifetime: true, ran: true}, throw, {do: "ok", lifetime: true, ran: true}, throw, skipped("ok")}, 1, true},
		{"lifetime call with deny denies while tripped", OnErrorDeny,
			[]step{throw, throw, throw, {do: "ok", lifetime: true}}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := versioned("s", "v1", func(s *Script) { s.OnError = tc.onError })
			f := newBreakerFixture(t, s)
			base := map[string]any{"active": true}
			skips, failedRuns := 0, 0
			for i, st := range tc.steps {
				f.clock.advance(st.advance)
				f.rt.set(st.do)
				before := f.rt.count()
				var err error
				if st.lifetime {
					var secs int64
					var set bool
					secs, set, err = f.d.Lifetime(context.Background(), []*Script{s}, FnAccessTokenLifetime, nil)
					if err == nil && set != (st.ran && st.do == "ok") {
						t.Fatalf("step %d: lifetime %d %v", i, secs, set)
					}
				} else {
					var out *Outcome
					out, err = f.d.Run(context.Background(), []*Script{s}, FnModifyResponse, base, map[string]any{}, DiscardOnFalse)
					if err == nil && (len(out.Value) != 1 || out.Value["active"] != true) {
						t.Fatalf("step %d: value %v", i, out.Value)
					}
				}
				if ran := f.rt.count() > before; ran != st.ran {
					t.Fatalf("step %d (%s): ran = %v, want %v", i, st.do, ran, st.ran)
				}
				failing := st.do != "ok" && st.do != "undefined"
				if !st.ran {
					skips++
				} else if failing {
					failedRuns++
				}
				var de *DeniedError
				wantDenied := tc.onError == OnErrorDeny && (!st.ran || failing)
				if gotDenied := errors.As(err, &de); gotDenied != wantDenied || (err != nil && !gotDenied) {
					t.Fatalf("step %d: err = %v, want denied %v", i, err, wantDenied)
				}
				if !st.ran && tc.onError == OnErrorDeny {
					if se := (*ScriptError)(nil); !errors.As(err, &se) || se.Kind != FailureTripped {
						t.Fatalf("step %d: cause %v, want tripped", i, err)
					}
				}
			}
			if len(f.trips) != tc.trips {
				t.Fatalf("trips = %d, want %d", len(f.trips), tc.trips)
			}
			if n := f.logs.lines("circuit breaker open"); n != tc.trips {
				t.Fatalf("%d trip log lines, want %d (logged once per trip):\n%s", n, tc.trips, f.logs.b.String())
			}
			if n := f.logs.lines("script failed"); n != failedRuns {
				t.Fatalf("%d failure log lines, want %d (skipped calls are not logged):\n%s", n, failedRuns, f.logs.b.String())
			}
			if f.kinds[FailureTripped] != skips {
				t.Fatalf("OnFailure told of %d tripped calls, want %d", f.kinds[FailureTripped], skips)
			}
			until, tripped := f.d.TrippedUntil("s")
			if tripped != tc.tripped {
				t.Fatalf("TrippedUntil = %v %v, want tripped %v", until, tripped, tc.tripped)
			}
			if tripped && !until.Equal(f.trips[len(f.trips)-1]) {
				t.Fatalf("TrippedUntil = %v, trip said %v", until, f.trips[len(f.trips)-1])
			}
		})
	}
}

// trip makes s fail until its breaker opens.
func (f *breakerFixture) trip(t *testing.T, s *Script) {
	t.Helper()
	f.rt.set("exception")
	for range testThreshold {
		f.d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{}, map[string]any{}, DiscardOnFalse)
	}
	if _, ok := f.d.TrippedUntil(s.Name); !ok {
		t.Fatal("not tripped")
	}
}

func TestBreakerState(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(f *breakerFixture)
		// calls is the script to call after change (nil: none).
		calls       *Script
		wantRan     bool
		wantTripped bool
		wantKept    bool // some state is kept under the name
		wantRemoved []string
	}{
		{"reload with the same version keeps the state",
			func(f *breakerFixture) { f.d.Replace([]*Script{versioned("s", "v1"), versioned("other", "v1")}) },
			versioned("s", "v1"), false, true, true, nil},
		{"a new version starts closed",
			func(f *breakerFixture) { f.d.Put(versioned("s", "v2")) },
			versioned("s", "v2"), true, false, true, nil},
		{"a call of the old version after the new one is not skipped",
			func(f *breakerFixture) { f.d.Put(versioned("s", "v2")) },
			versioned("s", "v1"), true, false, true, nil},
		{"Remove drops the state",
			func(f *breakerFixture) { f.d.Remove("s") },
			nil, false, false, false, []string{"s"}},
		{"Replace without it drops the state",
			func(f *breakerFixture) { f.d.Replace([]*Script{versioned("other", "v1")}) },
			nil, false, false, false, []string{"s"}},
		{"removed then added again starts closed",
			func(f *breakerFixture) { f.d.Remove("s"); f.d.Put(versioned("s", "v1")) },
			versioned("s", "v1"), true, false, true, []string{"s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := versioned("s", "v1")
			f := newBreakerFixture(t, s, versioned("other", "v1"))
			f.trip(t, s)
			tc.change(f)
			_, tripped := f.d.TrippedUntil("s")
			if tripped != tc.wantTripped {
				t.Fatalf("tripped = %v after the change, want %v", tripped, tc.wantTripped)
			}
			if tc.calls != nil {
				f.rt.set("ok")
				before := f.rt.count()
				f.d.Run(context.Background(), []*Script{tc.calls}, FnModifyResponse, map[string]any{}, map[string]any{}, DiscardOnFalse)
				if ran := f.rt.count() > before; ran != tc.wantRan {
					t.Fatalf("ran = %v, want %v", ran, tc.wantRan)
				}
			}
			if _, kept := f.d.circuitMap()["s"]; kept != tc.wantKept {
				t.Fatalf("state kept = %v, want %v", kept, tc.wantKept)
			}
			if strings.Join(f.removed, ",") != strings.Join(tc.wantRemoved, ",") {
				t.Fatalf("OnRemove told of %v, want %v", f.removed, tc.wantRemoved)
			}
		})
	}
}

func TestBreakersIterator(t *testing.T) {
	s := versioned("s", "v1")
	f := newBreakerFixture(t, s, versioned("ok", "v1"))
	f.trip(t, s)
	got := map[string]time.Time{}
	for name, until := range f.d.Breakers() {
		got[name] = until
	}
	if len(got) != 2 || !got["ok"].IsZero() || !got["s"].Equal(f.clock.now().Add(testCooldown)) {
		t.Fatalf("Breakers = %v", got)
	}
}

// TestBreakerHalfOpenProbesOnce: after the cool-down one call runs; the
// others are skipped until it answers.
func TestBreakerHalfOpenProbesOnce(t *testing.T) {
	s := versioned("s", "v1")
	f := newBreakerFixture(t, s)
	f.trip(t, s)
	f.clock.advance(testCooldown)
	f.rt.set("block")
	before := f.rt.count()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{}, map[string]any{}, DiscardOnFalse)
	}()
	<-f.rt.entered
	f.d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{}, map[string]any{}, DiscardOnFalse)
	if n := f.rt.count() - before; n != 1 {
		t.Fatalf("%d calls ran during the probe, want 1", n)
	}
	close(f.rt.release)
	<-done
	if _, tripped := f.d.TrippedUntil("s"); tripped {
		t.Fatal("a successful probe did not close the breaker")
	}
}

// TestBreakerConcurrent runs a failing and a healthy script from many
// goroutines (run it with -race): the failing one trips once and stops
// being called, the healthy one never trips.
func TestBreakerConcurrent(t *testing.T) {
	bad, good := versioned("bad", "v1"), versioned("good", "v1")
	rt := &scriptedRuntime{fail: map[string]bool{"bad": true}}
	f := newBreakerFixture(t, bad, good)
	f.d.rt = rt
	const goroutines, calls = 8, 200
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				f.d.Run(context.Background(), []*Script{bad, good}, FnModifyResponse, map[string]any{}, map[string]any{}, DiscardOnFalse)
				f.d.TrippedUntil("bad")
			}
		}()
	}
	wg.Wait()
	if len(f.trips) != 1 {
		t.Fatalf("%d trips, want 1", len(f.trips))
	}
	// At most the calls in flight when it tripped ran after the threshold.
	if n := rt.calls("bad"); n < testThreshold || n > testThreshold+goroutines {
		t.Fatalf("bad ran %d times", n)
	}
	if n := rt.calls("good"); n != goroutines*calls {
		t.Fatalf("good ran %d times, want %d", n, goroutines*calls)
	}
	if _, tripped := f.d.TrippedUntil("good"); tripped {
		t.Fatal("good tripped")
	}
}

// scriptedRuntime fails the scripts named in fail and counts calls per
// script.
type scriptedRuntime struct {
	fail map[string]bool
	mu   sync.Mutex
	n    map[string]int
}

func (r *scriptedRuntime) Check(name, source string) error { return nil }

func (r *scriptedRuntime) Call(_ context.Context, s *Script, call *Call) (*Result, error) {
	r.mu.Lock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[s.Name]++
	r.mu.Unlock()
	if r.fail[s.Name] {
		return nil, &ScriptError{Script: s.Name, Function: call.Function, Kind: FailureTimeout, Message: "slow"}
	}
	return &Result{Defined: true, Return: true, Args: call.Args}, nil
}

func (r *scriptedRuntime) calls(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[name]
}

// TestBreakerHealthyPathDoesNotAllocate: the bookkeeping of a call of a
// healthy script is a map lookup and an atomic load.
func TestBreakerHealthyPathDoesNotAllocate(t *testing.T) {
	s := versioned("s", "v1")
	f := newBreakerFixture(t, s)
	allocs := testing.AllocsPerRun(100, func() {
		if err := f.d.admit(s, FnModifyResponse); err != nil {
			t.Fatal(err)
		}
		f.d.succeeded(f.d.log, s, FnModifyResponse)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}
