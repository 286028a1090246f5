package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The runtime side of the script sandbox, attacked through the real
// server: scripts bound to clients and the dry-run API.

// hostileCase is a script body that a sandbox must stop.
type hostileCase struct {
	name, body string
	kinds      []string // acceptable failure kinds
}

var runawayCases = []hostileCase{
	{"repeat", `var s = 'x'.repeat(1e9); response.n = s.length;`, []string{"timeout", "memory"}},
	{"padStart", `response.n = ''.padStart(1e9, 'ab').length;`, []string{"timeout", "memory"}},
	{"join", `response.n = new Array(1e8).join().length;`, []string{"timeout", "memory"}},
	{"fill", `response.n = new Array(2**25).fill(0).length;`, []string{"timeout", "memory"}},
	{"stringify", `response.n = JSON.stringify(new Array(2e7).fill('xxxxxxxx')).length;`, []string{"timeout", "memory"}},
	{"backtracking regexp", `response.m = /^(a+)+\1$/.test('a'.repeat(40) + 'b');`, []string{"timeout"}},
	{"replace with a callback", `response.n = 'a'.repeat(5e6).replace(/a/g, function () { return 'bb' }).length;`, []string{"timeout", "memory"}},
}

var memoryCases = []hostileCase{
	{"one huge string", `response.n = 'x'.repeat(2**28).length;`, []string{"memory"}},
	{"doubling", `var s = 'xxxxxxxx'; for (;;) s += s;`, []string{"memory"}},
	// These two allocate step by step; on a loaded -race build they may
	// reach their deadline before their budget (the scripts package and
	// keyhook serve under prlimit check them strictly as memory).
	{"filled array", `response.n = new Array(5e7).fill(0).length;`, []string{"memory", "timeout"}},
	{"typed array of a GiB", `response.n = new Uint8Array(2**30).length;`, []string{"memory"}},
	{"millions of objects", `var a = []; for (var i = 0; i < 1e7; i++) a.push({i: i}); response.n = a.length;`, []string{"memory", "timeout"}},
	{"huge JSON.parse", `response.n = JSON.parse('[' + '{"a":1},'.repeat(4e6) + '1]').length;`, []string{"memory"}},
}

// TestHostileScriptsAreStopped binds each hostile script to a client and
// introspects one of its tokens: the answer comes promptly with the
// script's edits discarded (on_error skip), the dry-run API reports the
// failure kind, and another client's introspection is served meanwhile.
func TestHostileScriptsAreStopped(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("polite", `response.polite = true; return true;`, nil))
	h.createClient(map[string]any{"client_id": "bystander", "client_secret": "s", "introspection_scripts": []string{"polite"}})
	bystander := h.mustToken("bystander", "s", "").AccessToken
	for _, group := range []struct {
		cases     []hostileCase
		timeoutMS int
	}{{runawayCases, 200}, {memoryCases, 5000}} {
		for i, tc := range group.cases {
			t.Run(tc.name, func(t *testing.T) {
				name := fmt.Sprintf("hostile-%d-%d", group.timeoutMS, i)
				h.createScript(introspectionScript(name, tc.body+" response.survived = true; return true;",
					map[string]any{"timeout_ms": group.timeoutMS}))
				h.createClient(map[string]any{"client_id": name, "client_secret": "s", "introspection_scripts": []string{name}})
				tok := h.mustToken(name, "s", "").AccessToken

				start := time.Now()
				in := h.introspect(tok)
				took := time.Since(start)
				if in["active"] != true || in["survived"] != nil {
					t.Fatalf("introspection = %v, want active without the script's edits", in)
				}
				// The slack covers starting a worker and setting up the
				// script's runtime, which do not count against its
				// deadline and take seconds on a loaded 2-core -race run
				// (3.25 s was seen beside the other packages' tests); the
				// scripts package checks the kill at the deadline itself.
				if limit := time.Duration(group.timeoutMS)*time.Millisecond + 8*time.Second; took > limit {
					t.Fatalf("introspection took %v, want < %v", took, limit)
				}
				if in := h.introspect(bystander); in["polite"] != true {
					t.Fatalf("bystander's introspection = %v", in)
				}
				r := h.admin(http.MethodPost, "/scripts/"+name+"/test", map[string]any{"args": []any{map[string]any{}}})
				msg, _ := r.json["error"].(string)
				if r.status != http.StatusOK || !slices.ContainsFunc(tc.kinds, func(k string) bool { return strings.Contains(msg, ": "+k+" in ") }) {
					t.Fatalf("dry run: %d %s, want one of %v", r.status, r.body, tc.kinds)
				}
			})
		}
	}
}

// TestScriptStopsWhenTheClientGoesAway checks that a script is
// interrupted when its request is cancelled, not only at its deadline.
func TestScriptStopsWhenTheClientGoesAway(t *testing.T) {
	for _, isolation := range []string{"process", "inline"} {
		t.Run(isolation, func(t *testing.T) {
			h := newHarness(t)
			h.createScript(introspectionScript("forever", `for (;;) {}`, map[string]any{"timeout_ms": 5000, "isolation": isolation}))
			h.createClient(map[string]any{"client_id": "patient", "client_secret": "s", "introspection_scripts": []string{"forever"}})
			tok := h.mustToken("patient", "s", "").AccessToken
			// Workers started (a slow start would end the request before
			// the script runs, which is not what this test is about).
			h.createScript(introspectionScript("warm", `return true;`, nil))
			h.createClient(map[string]any{"client_id": "warm", "client_secret": "s", "introspection_scripts": []string{"warm"}})
			h.introspect(h.mustToken("warm", "s", "").AccessToken)

			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("keyhook-admin", adminSecret)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				t.Fatalf("the request finished (%d) although its script loops for 5s", resp.StatusCode)
			}
			series := `keyhook_script_errors_total{kind="cancelled",script="forever"}`
			for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if v, _ := h.metric(series); v == 1 {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("%s not 1 within 3s of the client leaving: the script ran on", series)
				}
			}
		})
	}
}

// TestScriptBudgetPerRequest checks that the scripts of one request run
// within one budget together: a chain of slow scripts cannot hold a
// request for the sum of their timeouts.
func TestScriptBudgetPerRequest(t *testing.T) {
	h := newHarness(t, withScriptBudget(500*time.Millisecond))
	var names []string
	for i := range 4 {
		name := fmt.Sprintf("slow-%d", i)
		names = append(names, name)
		h.createScript(introspectionScript(name, `for (;;) {}`, map[string]any{"timeout_ms": 2000, "level": i}))
	}
	h.createClient(map[string]any{"client_id": "chained", "client_secret": "s", "introspection_scripts": names})
	tok := h.mustToken("chained", "s", "").AccessToken
	start := time.Now()
	if in := h.introspect(tok); in["active"] != true {
		t.Fatalf("introspection = %v", in)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("4 scripts of 2s each held the request %v; the request's budget is 500ms", took)
	}
}

// TestSlowScriptDoesNotSlowOtherClients measures another client's
// introspection latency alone and while a client's script spins on every
// call: its p99 must stay within twice the baseline (plus 5 ms, so that
// a baseline of a millisecond on a loaded machine does not make the
// bound meaningless). The breaker is off, so this measures the bounded
// concurrency of slow scripts, not the breaker.
func TestSlowScriptDoesNotSlowOtherClients(t *testing.T) {
	h := newHarness(t, withBreakerOff())
	h.createScript(introspectionScript("spinner", `for (;;) {}`, map[string]any{"timeout_ms": 1000}))
	h.createScript(introspectionScript("quick", `response.quick = true; return true;`, nil))
	h.createClient(map[string]any{"client_id": "noisy", "client_secret": "s", "introspection_scripts": []string{"spinner"}})
	h.createClient(map[string]any{"client_id": "calm", "client_secret": "s", "introspection_scripts": []string{"quick"}})
	noisy := h.mustToken("noisy", "s", "").AccessToken
	calm := h.mustToken("calm", "s", "").AccessToken

	measure := func() time.Duration {
		const n = 200
		lat := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			if in := h.introspect(calm); in["quick"] != true {
				t.Fatalf("calm introspection = %v", in)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat[n*99/100]
	}
	measure() // warm up
	// Rounds of (alone, beside the spinner) measurements; the bound must
	// hold in one of them. Without bounded concurrency for slow scripts
	// the spinner holds every worker and core in every round; a single
	// round can also be spoiled by other work on the machine (CI runs
	// test binaries side by side, and the spinner takes one of its two
	// cores), which this guards against: CI once saw three spoiled
	// rounds in a row, with the code before pipelining giving the same
	// ratios as after it when run alone.
	attack := func() (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					h.form("/oauth2/introspect", url.Values{"token": {noisy}}, "keyhook-admin", adminSecret)
				}
			})
		}
		time.Sleep(300 * time.Millisecond)
		return func() { close(done); wg.Wait() }
	}
	var rounds []string
	for range 5 {
		base := measure()
		stop := attack()
		attacked := measure()
		stop()
		rounds = append(rounds, fmt.Sprintf("%v alone, %v beside", base, attacked))
		if attacked <= 2*base {
			t.Logf("calm client's p99: %s a spinning script", rounds[len(rounds)-1])
			return
		}
	}
	t.Fatalf("calm client's p99 more than doubled beside a spinning script in every round: %v", rounds)
}

// TestWrongReturnTypeIsCounted checks that a hook answering something
// other than a boolean is counted as a wrong_type failure in /metrics,
// like failures the runtime finds itself.
func TestWrongReturnTypeIsCounted(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("chatty", `response.x = 1; return "yes";`, nil))
	h.createClient(map[string]any{"client_id": "chatty", "client_secret": "s", "introspection_scripts": []string{"chatty"}})
	tok := h.mustToken("chatty", "s", "").AccessToken
	if in := h.introspect(tok); in["active"] != true || in["x"] != nil {
		t.Fatalf("introspection = %v, want active without the script's edits", in)
	}
	if v, _ := h.metric(`keyhook_script_errors_total{kind="wrong_type",script="chatty"}`); v != 1 {
		t.Fatalf("wrong_type failures counted: %v, want 1", v)
	}
}
