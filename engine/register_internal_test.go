package engine

import (
	"testing"
	"time"
)

// TestAdmissionLimit: n admissions per key, then back-off doubling from
// 1 s to max; a released admission does not count; keys are apart; a
// key is forgotten after throttleForget.
func TestAdmissionLimit(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newAdmissionLimit(2, 8*time.Second, 100, func() time.Time { return now })
	step := func(what, key string, wantWait time.Duration) func() {
		t.Helper()
		release, wait := l.admit(key)
		if wait != wantWait || (wait == 0) != (release != nil) {
			t.Fatalf("%s: wait %v (release %v), want %v", what, wait, release != nil, wantWait)
		}
		return release
	}
	step("first", "a", 0)
	r := step("second", "a", 0)
	step("third, at once", "a", time.Second)
	r() // the second was refused after all
	step("second again", "a", 0)
	step("another key", "b", 0)
	now = now.Add(time.Second)
	step("third after 1 s", "a", 0)
	step("fourth at once", "a", 2*time.Second)
	now = now.Add(2 * time.Second)
	step("fourth", "a", 0)
	step("fifth", "a", 4*time.Second)
	now = now.Add(throttleForget + time.Second)
	step("forgotten", "a", 0)
	step("forgotten, second", "a", 0)
	step("forgotten, third", "a", time.Second)

	var none *admissionLimit
	if release, wait := none.admit("a"); release == nil || wait != 0 {
		t.Fatal("a nil limit refused")
	}
}
