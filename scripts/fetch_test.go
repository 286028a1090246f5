package scripts

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// fetchTestRuntime is a Runtime of the given isolation whose fetches may
// reach loopback (the httptest upstreams), with opts' other settings.
func fetchTestRuntime(t *testing.T, iso hooks.Isolation, opts FetchOptions) *Runtime {
	t.Helper()
	opts.AllowLoopback = true
	// No slow gate: these tests run calls of one script side by side.
	if iso == hooks.IsolationProcess {
		return newProcessRuntime(t, Options{Fetch: opts, Workers: 4, SlowCall: time.Hour})
	}
	e := New(Options{DefaultIsolation: hooks.IsolationInline, Fetch: opts, Logger: quiet, SlowCall: time.Hour})
	t.Cleanup(e.Close)
	return e
}

// fetchingScript fetches r.url with r.opts and stores what it got, or the
// message of what it caught, in r.got.
func fetchingScript(name string, timeout time.Duration) *hooks.Script {
	return &hooks.Script{Name: name, Version: "1", Timeout: timeout, AllowedHosts: []string{"127.0.0.1"},
		Source: `function modifyResponse(r, context) {
  try { var x = context.fetch(r.url, r.opts); r.got = x.status + " " + x.body; }
  catch (e) { r.got = String(e.message); }
  return true;
}`}
}

// fetchCall calls s with r = {url, opts}.
func fetchCall(ctx context.Context, e *Runtime, s *hooks.Script, url string, opts map[string]any) (*hooks.Result, error) {
	return e.Call(ctx, s, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{map[string]any{"url": url, "opts": opts}}, Context: map[string]any{}})
}

func gotOf(t *testing.T, res *hooks.Result, err error) string {
	t.Helper()
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	s, _ := res.Args[0].(map[string]any)["got"].(string)
	return s
}

// TestFetchConcurrencyLimit holds MaxConcurrent fetches of one script in
// an upstream: one more waits and, when none ends before its deadline,
// throws; another script's fetch is not held back.
func TestFetchConcurrencyLimit(t *testing.T) {
	for _, iso := range []hooks.Isolation{hooks.IsolationInline, hooks.IsolationProcess} {
		t.Run(string(iso), func(t *testing.T) {
			release := make(chan struct{})
			var inFlight, peak atomic.Int64
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				if r.URL.Path == "/hold" {
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
				fmt.Fprint(w, "ok")
			}))
			defer up.Close()
			e := fetchTestRuntime(t, iso, FetchOptions{MaxConcurrent: 2})
			holder := fetchingScript("holder", 5*time.Second)
			call := func(s *hooks.Script, path string, opts map[string]any) (*hooks.Result, error) {
				return fetchCall(context.Background(), e, s, up.URL+path, opts)
			}
			got := func(s *hooks.Script, path string, opts map[string]any) string {
				res, err := call(s, path, opts)
				return gotOf(t, res, err)
			}
			// Warm the script up, so that its calls run side by side (the
			// slow gate lets one call at a time through until a call ends
			// quickly, docs/sandbox.md).
			if g := got(holder, "/fast", nil); g != "200 ok" {
				t.Fatalf("warm-up got %q", g)
			}
			var wg sync.WaitGroup
			results := make([]string, 2)
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := call(holder, "/hold", nil)
					if err == nil {
						results[i], _ = res.Args[0].(map[string]any)["got"].(string)
					}
				}()
			}
			deadline := time.Now().Add(5 * time.Second)
			for inFlight.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if inFlight.Load() != 2 {
				t.Fatalf("%d fetches in flight, want 2", inFlight.Load())
			}
			// A third fetch of the script waits for a slot until its timeout.
			start := time.Now()
			if g := got(holder, "/fast", map[string]any{"timeout_ms": 200}); !strings.Contains(g, "too many concurrent fetches") {
				t.Errorf("third fetch got %q, want too many concurrent fetches", g)
			}
			if took := time.Since(start); took > 200*time.Millisecond+2*time.Second {
				t.Errorf("third fetch took %v", took)
			}
			// Another script has slots of its own.
			other := fetchingScript("other", 5*time.Second)
			if g := got(other, "/fast", nil); g != "200 ok" {
				t.Errorf("another script's fetch got %q", g)
			}
			close(release)
			wg.Wait()
			for i, r := range results {
				if r != "200 ok" {
					t.Errorf("held fetch %d got %q", i, r)
				}
			}
			if p := peak.Load(); p > 3 {
				t.Errorf("peak of %d requests in flight, want at most 2 of one script + 1 of another", p)
			}
		})
	}
}

// TestFetchEndsWithTheCall: a fetch whose request ends (the client went
// away) or whose script loops on fetches is stopped, and the upstream
// sees its request cancelled; no fetch outlives its call.
func TestFetchEndsWithTheCall(t *testing.T) {
	for _, iso := range []hooks.Isolation{hooks.IsolationInline, hooks.IsolationProcess} {
		t.Run(string(iso), func(t *testing.T) {
			cancelled := make(chan struct{}, 16)
			arrived := make(chan struct{}, 16)
			var hits atomic.Int64
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if r.URL.Path == "/slow" {
					arrived <- struct{}{}
					select {
					case <-r.Context().Done():
						cancelled <- struct{}{}
					case <-time.After(20 * time.Second):
					}
				}
				fmt.Fprint(w, "ok")
			}))
			defer up.Close()
			e := fetchTestRuntime(t, iso, FetchOptions{})
			healthy(t, e) // the workers are up

			t.Run("the request ends", func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var cancelledAt atomic.Int64
				go func() {
					<-arrived // the fetch is in the upstream: the client goes away
					cancelledAt.Store(time.Now().UnixNano())
					cancel()
				}()
				_, err := fetchCall(ctx, e, fetchingScript("ends", 5*time.Second), up.URL+"/slow", nil)
				wantScriptError(t, err, hooks.FailureCancelled)
				if took := time.Since(time.Unix(0, cancelledAt.Load())); took > 2*time.Second {
					t.Errorf("the call ended %v after its request", took)
				}
				select {
				case <-cancelled:
				case <-time.After(2 * time.Second):
					t.Fatal("the upstream's request was not cancelled")
				}
			})

			t.Run("a loop of fetches", func(t *testing.T) {
				hits.Store(0)
				s := &hooks.Script{Name: "loop", Version: "1", Timeout: 300 * time.Millisecond, AllowedHosts: []string{"127.0.0.1"},
					Source: fmt.Sprintf(`function modifyResponse(r, context) {
  for (;;) { try { context.fetch(%q); } catch (e) {} }
}`, up.URL+"/fast")}
				start := time.Now()
				kind, _, _ := callKind(t, e, s, hooks.FnModifyResponse, map[string]any{})
				if kind != hooks.FailureTimeout {
					t.Fatalf("kind = %q, want timeout", kind)
				}
				if took := time.Since(start); took > 300*time.Millisecond+2*time.Second {
					t.Errorf("the call took %v", took)
				}
				// A fetch already on the wire when the call ended may
				// still reach the upstream (one, once); no fetch may
				// start after it.
				n := hits.Load()
				time.Sleep(200 * time.Millisecond)
				settled := hits.Load()
				time.Sleep(200 * time.Millisecond)
				if later := hits.Load(); settled > n+1 || later != settled {
					t.Errorf("fetches went on after the call ended (%d, then %d, then %d)", n, settled, later)
				}
			})
		})
	}
}

func TestFreshFor(t *testing.T) {
	get := &fetchRequest{method: http.MethodGet, headers: map[string]string{}}
	authed := &fetchRequest{method: http.MethodGet, headers: map[string]string{"authorization": "Bearer x"}}
	for _, tc := range []struct {
		name   string
		req    *fetchRequest
		status int
		header http.Header
		want   time.Duration
	}{
		{"max-age", get, 200, http.Header{"Cache-Control": {"max-age=60"}}, time.Minute},
		{"s-maxage wins", get, 200, http.Header{"Cache-Control": {"max-age=60, s-maxage=10"}}, 10 * time.Second},
		{"age is taken off", get, 200, http.Header{"Cache-Control": {"max-age=60"}, "Age": {"50"}}, 10 * time.Second},
		{"stale on arrival", get, 200, http.Header{"Cache-Control": {"max-age=60"}, "Age": {"60"}}, 0},
		{"no freshness", get, 200, http.Header{}, 0},
		{"no-store", get, 200, http.Header{"Cache-Control": {"no-store, max-age=60"}}, 0},
		{"no-cache", get, 200, http.Header{"Cache-Control": {"no-cache, max-age=60"}}, 0},
		{"private", get, 200, http.Header{"Cache-Control": {"private, max-age=60"}}, 0},
		{"vary star", get, 200, http.Header{"Cache-Control": {"max-age=60"}, "Vary": {"*"}}, 0},
		{"not cacheable status", get, 500, http.Header{"Cache-Control": {"max-age=60"}}, 0},
		{"authorization without public", authed, 200, http.Header{"Cache-Control": {"max-age=60"}}, 0},
		{"authorization with public", authed, 200, http.Header{"Cache-Control": {"public, max-age=60"}}, time.Minute},
		{"a day at most", get, 200, http.Header{"Cache-Control": {"max-age=9999999"}}, 24 * time.Hour},
	} {
		got, ok := freshFor(tc.req, &http.Response{StatusCode: tc.status, Header: tc.header})
		if got != tc.want || ok != (tc.want > 0) {
			t.Errorf("%s: freshFor = %v, %v; want %v", tc.name, got, ok, tc.want)
		}
	}
}

func TestFetchCacheBounds(t *testing.T) {
	now := time.Now()
	resp := func(n int) *fetchResponse { return &fetchResponse{status: 200, body: strings.Repeat("x", n)} }
	t.Run("entries", func(t *testing.T) {
		c := &fetchCache{maxEntries: 2, maxBytes: 1 << 20}
		c.init()
		c.put("a", resp(1), now.Add(time.Minute))
		c.put("b", resp(1), now.Add(time.Minute))
		c.get("a", now) // b is now the least recently used
		c.put("c", resp(1), now.Add(time.Minute))
		if _, ok := c.get("b", now); ok {
			t.Error("b was kept past maxEntries")
		}
		for _, k := range []string{"a", "c"} {
			if _, ok := c.get(k, now); !ok {
				t.Errorf("%s was dropped", k)
			}
		}
	})
	t.Run("bytes", func(t *testing.T) {
		c := &fetchCache{maxEntries: 100, maxBytes: 4000}
		c.init()
		for i := range 10 {
			c.put(fmt.Sprint(i), resp(900), now.Add(time.Minute))
		}
		if c.bytes > 4000 || c.ll.Len() > 4 {
			t.Errorf("%d bytes in %d entries, over the bound", c.bytes, c.ll.Len())
		}
		c.put("huge", resp(2000), now.Add(time.Minute))
		if _, ok := c.get("huge", now); ok {
			t.Error("an entry of over a quarter of the cache was kept")
		}
	})
	t.Run("expiry", func(t *testing.T) {
		c := &fetchCache{maxEntries: 10, maxBytes: 1 << 20}
		c.init()
		c.put("a", resp(1), now.Add(time.Second))
		if _, ok := c.get("a", now.Add(2*time.Second)); ok || c.ll.Len() != 0 {
			t.Error("an expired entry was served or kept")
		}
	})
}

// TestFetchEndsWhenTheWorkerDies kills the worker while the server makes
// its fetch: the server cancels the fetch rather than finish it for no
// one, and the call fails as a crash.
func TestFetchEndsWhenTheWorkerDies(t *testing.T) {
	arrived, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(20 * time.Second):
		}
	}))
	defer up.Close()
	e := fetchTestRuntime(t, hooks.IsolationProcess, FetchOptions{})
	healthy(t, e)
	var killedAt atomic.Int64
	go func() {
		<-arrived
		killedAt.Store(time.Now().UnixNano())
		e.pool.mu.Lock()
		defer e.pool.mu.Unlock()
		for w := range e.pool.all {
			_ = w.cmd.Process.Kill() // as from outside: not a kill the server chose
		}
	}()
	_, err := fetchCall(context.Background(), e, fetchingScript("orphan", 5*time.Second), up.URL+"/slow", nil)
	wantScriptError(t, err, hooks.FailureCrash)
	// The call's deadline is 5 s away: only the worker's death ends it.
	if took := time.Since(time.Unix(0, killedAt.Load())); took > 2*time.Second {
		t.Errorf("the call ended %v after its worker died", took)
	}
	select {
	case <-cancelled:
	case <-time.After(2 * time.Second):
		t.Fatal("the upstream's request was not cancelled")
	}
}

// TestFetchSafeOnly: a call with SafeFetchOnly (a shadow candidate, a
// replay) sends GET and HEAD but refuses the other methods before they
// reach the upstream; without it every method goes out.
func TestFetchSafeOnly(t *testing.T) {
	for _, iso := range []hooks.Isolation{hooks.IsolationInline, hooks.IsolationProcess} {
		t.Run(string(iso), func(t *testing.T) {
			var mu sync.Mutex
			var sent []string
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				sent = append(sent, r.Method)
				mu.Unlock()
				fmt.Fprint(w, "ok")
			}))
			defer up.Close()
			e := fetchTestRuntime(t, iso, FetchOptions{})
			s := fetchingScript("safe-only", 5*time.Second)
			for _, tc := range []struct {
				method   string
				safeOnly bool
				sent     bool
			}{
				{"GET", true, true},
				{"HEAD", true, true},
				{"POST", true, false},
				{"PUT", true, false},
				{"PATCH", true, false},
				{"DELETE", true, false},
				{"POST", false, true},
				{"DELETE", false, true},
			} {
				t.Run(fmt.Sprintf("%s safe only %v", tc.method, tc.safeOnly), func(t *testing.T) {
					mu.Lock()
					sent = nil
					mu.Unlock()
					res, err := e.Call(context.Background(), s, &hooks.Call{Function: hooks.FnModifyResponse,
						Args:    []any{map[string]any{"url": up.URL + "/x", "opts": map[string]any{"method": tc.method, "body": ""}}},
						Context: map[string]any{}, SafeFetchOnly: tc.safeOnly})
					got := gotOf(t, res, err)
					mu.Lock()
					reached := len(sent) == 1 && sent[0] == tc.method
					mu.Unlock()
					if reached != tc.sent {
						t.Fatalf("upstream saw %v, want it sent=%v (script got %q)", sent, tc.sent, got)
					}
					if !tc.sent && !strings.Contains(got, "may only GET or HEAD") {
						t.Fatalf("script got %q, want the refusal", got)
					}
				})
			}
		})
	}
}

// lateTransport answers every request with 200 "late", but only once the
// request's context has ended: a response that arrives as the fetch's
// deadline passes (net/http may still hand over a response read while it
// cancels the request).
type lateTransport struct{}

func (lateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	<-req.Context().Done()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("late")), Request: req}, nil
}

// TestFetchNoAnswerAfterItsTimeout: a response the client hands over
// after the fetch's timeout is a timeout all the same, never the
// script's answer.
func TestFetchNoAnswerAfterItsTimeout(t *testing.T) {
	e := fetchTestRuntime(t, hooks.IsolationInline, FetchOptions{})
	f := e.fetcher()
	f.https.Transport, f.http.Transport = lateTransport{}, lateTransport{}
	res, err := fetchCall(context.Background(), e, fetchingScript("late", 5*time.Second), "http://127.0.0.1:1/late", map[string]any{"timeout_ms": int64(100)})
	if got := gotOf(t, res, err); got != "fetch: timeout" {
		t.Fatalf("the script got %q, want the fetch's timeout", got)
	}
}
