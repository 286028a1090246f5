package hooks

import (
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Circuit breaker defaults.
const (
	// DefaultBreakerThreshold is how many failures in a row open a
	// script's breaker.
	DefaultBreakerThreshold = 5
	// DefaultBreakerCooldown is how long an open breaker skips its script.
	DefaultBreakerCooldown = 30 * time.Second
)

// BreakerOptions tunes the per-script circuit breakers of a Dispatcher.
// The zero value gives the defaults.
//
// A script whose calls of one function fail Threshold times in a row
// (throw, time out, overflow the stack, return the wrong type, run out of
// memory, crash their process) is not called for Cooldown: every call of
// any of its functions is treated as a failure of kind FailureTripped, so
// the script's on_error applies without the cost of running it — a broken
// script must not cost every request its full timeout. After the
// cool-down one call runs (half-open): success closes the breaker, failure
// opens it for another Cooldown. Failures that are not the script's doing
// (FailureBusy, FailureCancelled) neither count nor reset the count.
//
// Failures are counted per function because a token request calls
// several functions of one script: a lifetime function that works must
// not hide a modifyAccessToken that times out on every request.
//
// Breakers are per instance: each server learns on its own that a script
// is broken, and a script replaced by a new version starts afresh.
type BreakerOptions struct {
	// Threshold is the number of failures in a row that opens a breaker;
	// 0 means DefaultBreakerThreshold, a negative number turns breakers
	// off.
	Threshold int
	// Cooldown is how long an open breaker skips its script; 0 means
	// DefaultBreakerCooldown.
	Cooldown time.Duration
	// Now is the clock (tests inject a fixed one); nil means time.Now.
	Now func() time.Time
}

func (o *BreakerOptions) threshold() int {
	if o.Threshold == 0 {
		return DefaultBreakerThreshold
	}
	return o.Threshold
}

func (o *BreakerOptions) cooldown() time.Duration {
	if o.Cooldown <= 0 {
		return DefaultBreakerCooldown
	}
	return o.Cooldown
}

func (o *BreakerOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// counts reports whether a failure of kind k is the script's doing, and so
// counts towards opening its breaker. Kinds added later count unless
// listed here: a new way for a script to fail is most likely its own.
func (k FailureKind) counts() bool {
	switch k {
	case FailureBusy, FailureCancelled, FailureTripped:
		return false
	}
	return true
}

// circuit is the breaker of one version of one script. Replace makes a
// new one for a new version, so version never changes.
type circuit struct {
	version string
	// suspect is set while failures > 0 or the breaker is open: the calls
	// of a healthy script read only this flag, without locking.
	suspect atomic.Bool

	mu sync.Mutex
	// failures counts each function's failures since its last success;
	// nil while none failed.
	failures map[Function]int
	until    time.Time // open until then; zero when closed
	probing  bool      // half-open: one call runs and decides
}

// keepCircuits returns the breakers of byName: a script's breaker is kept
// while its version stays, so the state is bounded by the set of scripts
// and a replaced script starts closed. d.mu must be held.
func (d *Dispatcher) keepCircuits(byName map[string]*Script) map[string]*circuit {
	old := d.circuitMap()
	out := make(map[string]*circuit, len(byName))
	for name, s := range byName {
		if c, ok := old[name]; ok && c.version == s.Version {
			out[name] = c
		} else {
			out[name] = &circuit{version: s.Version}
		}
	}
	return out
}

func (d *Dispatcher) circuitMap() map[string]*circuit {
	if m := d.circuits.Load(); m != nil {
		return *m
	}
	return nil
}

// circuitOf is s's breaker; nil when breakers are off or s is not the
// version the dispatcher knows (a call that started before a Replace).
func (d *Dispatcher) circuitOf(s *Script) *circuit {
	if d.Breaker.Threshold < 0 {
		return nil
	}
	if c := d.circuitMap()[s.Name]; c != nil && c.version == s.Version {
		return c
	}
	return nil
}

// admit reports whether s may run now. When it may not, the error is the
// FailureTripped failure that stands for the call.
func (d *Dispatcher) admit(s *Script, fn Function) error {
	c := d.circuitOf(s)
	if c == nil || !c.suspect.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.until.IsZero() {
		return nil
	}
	now := d.Breaker.now()
	if now.Before(c.until) {
		return &ScriptError{Script: s.Name, Function: fn, Kind: FailureTripped,
			Message: "not run: its circuit breaker is open until " + c.until.UTC().Format(time.RFC3339)}
	}
	// Half-open: this call probes. The others stay skipped for one more
	// cool-down, or until the probe answers; a probe that never answers
	// is replaced by the next call after that.
	c.until, c.probing = now.Add(d.Breaker.cooldown()), true
	return nil
}

// succeeded records a call of fn of s that ran and gave a usable answer.
func (d *Dispatcher) succeeded(log *slog.Logger, s *Script, fn Function) {
	c := d.circuitOf(s)
	if c == nil || !c.suspect.Load() {
		return
	}
	c.mu.Lock()
	if !c.until.IsZero() && !c.probing {
		// Open: a call that started before the trip does not close it;
		// only the probe after the cool-down does.
		c.mu.Unlock()
		return
	}
	closed := c.probing
	delete(c.failures, fn)
	if closed || len(c.failures) == 0 {
		c.failures, c.until, c.probing = nil, time.Time{}, false
		c.suspect.Store(false)
	}
	c.mu.Unlock()
	if closed {
		log.Info("script circuit breaker closed: a call succeeded after the cool-down", "script", s.Name, "version", s.Version)
	}
}

// ran records a call of fn of s that returned without error: it counts as
// a success when s defines fn; otherwise nothing ran, which says nothing
// about s.
func (d *Dispatcher) ran(log *slog.Logger, s *Script, fn Function, defined bool) {
	if defined {
		d.succeeded(log, s, fn)
	} else {
		d.inconclusive(s)
	}
}

// inconclusive records a call of s that says nothing about s (busy,
// cancelled, function not defined): a probe gives way to the next call.
func (d *Dispatcher) inconclusive(s *Script) {
	c := d.circuitOf(s)
	if c == nil || !c.suspect.Load() {
		return
	}
	c.mu.Lock()
	if c.probing {
		c.until, c.probing = d.Breaker.now(), false
	}
	c.mu.Unlock()
}

// failed records a failed call of fn of s, opening its breaker at the
// threshold or when the half-open probe fails. Opening is logged once and
// reported to OnTrip; the calls skipped meanwhile are not logged.
func (d *Dispatcher) failed(log *slog.Logger, s *Script, fn Function, kind FailureKind) {
	if kind == FailureTripped {
		return
	}
	if !kind.counts() {
		d.inconclusive(s)
		return
	}
	c := d.circuitOf(s)
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.until.IsZero() && !c.probing {
		c.mu.Unlock() // open already: a call that started before the trip
		return
	}
	if c.failures == nil {
		c.failures = map[Function]int{}
	}
	c.failures[fn]++
	c.suspect.Store(true)
	failures := c.failures[fn]
	if failures < d.Breaker.threshold() && !c.probing {
		c.mu.Unlock()
		return
	}
	until := d.Breaker.now().Add(d.Breaker.cooldown())
	c.until, c.probing = until, false
	c.mu.Unlock()
	log.Warn("script circuit breaker open: the script is skipped and its on_error applies until the cool-down ends",
		"script", s.Name, "version", s.Version, "function", string(fn), "failures", failures, "tripped_until", until)
	if d.OnTrip != nil {
		d.OnTrip(s.Name, until)
	}
}

// TrippedUntil reports when the open breaker of the script called name
// closes (becomes half-open); ok is false when it is not open. It is this
// instance's view: each instance keeps its own breakers.
func (d *Dispatcher) TrippedUntil(name string) (until time.Time, ok bool) {
	c := d.circuitMap()[name]
	if c == nil || !c.suspect.Load() {
		return time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.until.IsZero() || !d.Breaker.now().Before(c.until) {
		return time.Time{}, false
	}
	return c.until, true
}

// Breakers yields every script the dispatcher knows with the time its
// breaker is open until, zero when it is not open (metrics read them at
// scrape time).
func (d *Dispatcher) Breakers() iter.Seq2[string, time.Time] {
	return func(yield func(string, time.Time) bool) {
		for name := range d.circuitMap() {
			until, _ := d.TrippedUntil(name)
			if !yield(name, until) {
				return
			}
		}
	}
}
