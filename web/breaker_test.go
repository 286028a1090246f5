package web_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// metric reads one series from /metrics, e.g.
// `keyhook_script_skipped_total{script="x"}`; ok is false when absent.
func (h *harness) metric(series string) (value float64, ok bool) {
	h.t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(h.metrics()))
	for sc.Scan() {
		if rest, found := strings.CutPrefix(sc.Text(), series+" "); found {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				h.t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v, true
		}
	}
	return 0, false
}

// trippedUntil reads tripped_until of a script from the admin API.
func (h *harness) trippedUntil(name string) (time.Time, bool) {
	h.t.Helper()
	r := h.admin(http.MethodGet, "/scripts/"+name, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET script %s: %d %s", name, r.status, r.body)
	}
	raw, ok := r.json["tripped_until"].(string)
	if !ok {
		return time.Time{}, false
	}
	until, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		h.t.Fatalf("tripped_until %q: %v", raw, err)
	}
	return until, true
}

// TestBreakerSkipsAFailingScript drives a script that throws on every
// call through the real server: after DefaultBreakerThreshold failures it
// is skipped (not run, its on_error applies) until the cool-down ends or
// it is replaced, and the admin API and /metrics say so.
func TestBreakerSkipsAFailingScript(t *testing.T) {
	h := newHarness(t)
	const name = "flaky"
	throws := func(extra map[string]any) map[string]any {
		return introspectionScript(name, `response.edited = true; throw new Error("boom");`, extra)
	}
	h.createScript(throws(nil))
	h.createClient(map[string]any{"client_id": "tripper", "client_secret": "s", "introspection_scripts": []string{name}})
	tok := h.mustToken("tripper", "s", "").AccessToken

	var (
		calls   = `keyhook_script_calls_total{function="modifyResponse",script="flaky"}`
		trips   = `keyhook_script_breaker_trips_total{script="flaky"}`
		tripped = `keyhook_script_tripped{script="flaky"}`
		skipped = `keyhook_script_skipped_total{script="flaky"}`
	)
	value := func(series string) float64 { v, _ := h.metric(series); return v }
	// introspectN introspects n times, checks every answer with want, and
	// returns how many calls of the script ran meanwhile.
	introspectN := func(n int, want func(in map[string]any) bool) float64 {
		t.Helper()
		before := value(calls)
		for i := 0; i < n; i++ {
			if in := h.introspect(tok); !want(in) {
				t.Fatalf("introspection %d: %v", i, in)
			}
		}
		return value(calls) - before
	}
	skippedEdits := func(in map[string]any) bool { return in["active"] == true && in["edited"] == nil }
	denied := func(in map[string]any) bool { return len(in) == 1 && in["active"] == false }

	if ran := introspectN(hooks.DefaultBreakerThreshold, skippedEdits); ran != hooks.DefaultBreakerThreshold {
		t.Fatalf("%v calls ran before the trip, want %d", ran, hooks.DefaultBreakerThreshold)
	}
	until, ok := h.trippedUntil(name)
	if !ok || !until.After(h.clock.now()) {
		t.Fatalf("tripped_until = %v %v, want in the future", until, ok)
	}
	if v := value(trips); v != 1 {
		t.Fatalf("%s = %v, want 1", trips, v)
	}
	if v := value(tripped); v != 1 {
		t.Fatalf("%s = %v, want 1", tripped, v)
	}
	list := h.admin(http.MethodGet, "/scripts", nil)
	if !strings.Contains(string(list.body), `"tripped_until"`) {
		t.Fatalf("the list does not show tripped_until: %s", list.body)
	}

	t.Run("tripped: not run, on_error skip applies", func(t *testing.T) {
		if ran := introspectN(3, skippedEdits); ran != 0 {
			t.Fatalf("%v calls ran while tripped", ran)
		}
		if v := value(skipped); v != 3 {
			t.Fatalf("%s = %v, want 3", skipped, v)
		}
	})

	t.Run("after the cool-down one call runs; its failure re-opens", func(t *testing.T) {
		h.clock.advance(hooks.DefaultBreakerCooldown)
		if _, ok := h.trippedUntil(name); ok {
			t.Fatal("still tripped after the cool-down")
		}
		if v := value(tripped); v != 0 {
			t.Fatalf("%s = %v after the cool-down, want 0", tripped, v)
		}
		if ran := introspectN(3, skippedEdits); ran != 1 {
			t.Fatalf("%v calls ran, want the one probe", ran)
		}
		if v := value(trips); v != 2 {
			t.Fatalf("%s = %v, want 2", trips, v)
		}
	})

	t.Run("replacing the script clears tripped_until; tripped_until is not writable", func(t *testing.T) {
		doc := throws(map[string]any{"on_error": "deny", "tripped_until": "2100-01-01T00:00:00Z"})
		if r := h.admin(http.MethodPut, "/scripts/"+name, doc); r.status != http.StatusOK || r.json["tripped_until"] != nil {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
		if until, ok := h.trippedUntil(name); ok {
			t.Fatalf("tripped_until = %v after the script was replaced", until)
		}
	})

	t.Run("tripped with on_error deny: inactive, not run", func(t *testing.T) {
		if ran := introspectN(hooks.DefaultBreakerThreshold, denied); ran != hooks.DefaultBreakerThreshold {
			t.Fatalf("%v calls ran before the trip", ran)
		}
		if _, ok := h.trippedUntil(name); !ok {
			t.Fatal("not tripped")
		}
		if ran := introspectN(3, denied); ran != 0 {
			t.Fatalf("%v calls ran while tripped", ran)
		}
	})

	t.Run("a fixed script runs at once", func(t *testing.T) {
		h.admin(http.MethodPut, "/scripts/"+name, introspectionScript(name, `response.edited = true; return true;`, nil))
		if ran := introspectN(1, func(in map[string]any) bool { return in["edited"] == true }); ran != 1 {
			t.Fatalf("%v calls ran", ran)
		}
	})

	t.Run("deleting the script deletes its series", func(t *testing.T) {
		if r := h.admin(http.MethodDelete, "/scripts/"+name, nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}
		for _, series := range []string{trips, tripped, skipped} {
			if _, ok := h.metric(series); ok {
				t.Errorf("%s still exported", series)
			}
		}
	})
}
