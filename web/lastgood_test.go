package web_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestLastGood: with on_error last_good, a failing live version is
// stood in for by the last version that succeeded on this instance, and
// the admin API says so; without an earlier good version it is skipped.
func TestLastGood(t *testing.T) {
	logs := &lockedBuffer{}
	h := newHarness(t, withLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	// Generous timeouts but where a timeout is the point: the test must
	// hold on a loaded machine.
	lastGood := map[string]any{"on_error": "last_good", "timeout_ms": 5000}
	h.createScript(introspectionScript("lg", `response.v = 1; return true;`, lastGood))
	h.createScript(introspectionScript("fresh", `throw new Error("never worked");`, lastGood))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "introspection_scripts": []string{"lg"}})
	h.createClient(map[string]any{"client_id": "other", "client_secret": "other-secret", "introspection_scripts": []string{"fresh"}})
	tok := h.mustToken("app", "app-secret", "").AccessToken
	if got := h.introspect(tok)["v"]; got != 1.0 {
		t.Fatalf("version 1: v = %v", got)
	}
	fallingBack := func() any {
		t.Helper()
		return h.admin(http.MethodGet, "/scripts/lg", nil).json["falling_back_to"]
	}
	if fb := fallingBack(); fb != nil {
		t.Fatalf("falling_back_to %v while the live version serves", fb)
	}
	for _, tc := range []struct {
		name, body string
		calls      int
		wantV      float64
		wantFB     any
		tripped    bool
	}{
		{"a throwing version", `throw new Error("broken");`, 2, 1, 1.0, false},
		{"a version returning the wrong type", `response.v = 9; return "yes";`, 1, 1, 1.0, false},
		{"a version that times out, until its breaker opens and after", `for (;;) {}`, 7, 1, 1.0, true},
		{"a working version (5) serves again", `response.v = 5; return true;`, 1, 5, nil, false},
		{"after which it is the last good one", `throw new Error("broken again");`, 1, 5, 5.0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := lastGood
			if tc.tripped {
				settings = map[string]any{"on_error": "last_good", "timeout_ms": 50}
			}
			if r := h.admin(http.MethodPut, "/scripts/lg", introspectionScript("lg", tc.body, settings)); r.status != 200 {
				t.Fatalf("PUT: %d %s", r.status, r.body)
			}
			for i := range tc.calls {
				if in := h.introspect(tok); in["active"] != true || in["v"] != tc.wantV {
					t.Fatalf("call %d: %v, want v = %v", i, in, tc.wantV)
				}
			}
			if fb := fallingBack(); fb != tc.wantFB {
				t.Fatalf("falling_back_to %v, want %v", fb, tc.wantFB)
			}
			if _, tripped := h.trippedUntil("lg"); tripped != tc.tripped {
				t.Fatalf("tripped %v, want %v", tripped, tc.tripped)
			}
			if tc.tripped {
				// The timeouts are counted as such for the live version,
				// with the time they took (at least their 50 ms each).
				v := fmt.Sprint(h.admin(http.MethodGet, "/scripts/lg", nil).json["version_number"])
				timeouts, _ := h.metric(`keyhook_script_version_calls_total{result="timeout",script="lg",version="` + v + `"}`)
				secs, _ := h.metric(`keyhook_script_version_duration_seconds_total{script="lg",version="` + v + `"}`)
				if timeouts < 1 || secs < 0.05*timeouts {
					t.Fatalf("version %s: %v timeouts taking %v s", v, timeouts, secs)
				}
			}
		})
	}
	t.Run("without an earlier good version it is skipped", func(t *testing.T) {
		in := h.introspect(h.mustToken("other", "other-secret", "").AccessToken)
		if in["active"] != true {
			t.Fatalf("%v", in)
		}
		if fb := h.admin(http.MethodGet, "/scripts/fresh", nil).json["falling_back_to"]; fb != nil {
			t.Fatalf("falling_back_to %v", fb)
		}
	})
	// One line per switch: to version 1, back to live, to version 5.
	for msg, want := range map[string]int{"serving its last good version": 2, "live version serves again": 1} {
		if got := strings.Count(logs.String(), msg); got != want {
			t.Errorf("%q logged %d times, want %d", msg, got, want)
		}
	}
	if got, _ := h.metric(`keyhook_script_version_calls_total{result="ok",script="lg",version="5"}`); got < 1 {
		t.Fatalf("calls of the last good version 5 not counted: %v", got)
	}
}
