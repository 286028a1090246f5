package hooks

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"iter"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Versions under trial and the last good version (docs/scripts.md,
// "Versions, rollback and rollout"). A script's candidate and its last
// good version run on the runtime under names of their own (the script's
// name with CandidateSuffix or LastGoodSuffix, which no script name can
// hold), so that each keeps its compiled program beside the live one's
// and has its own runtime metric series.

// Runtime names of the versions a script runs besides its live one. A
// dry run or replay (engine.TestScript) runs as DryRunSuffix: it neither
// replaces the live version's compiled program nor shares its runtimes,
// its slow-call gate, its fetch slots or its failure counts.
const (
	CandidateSuffix = "@candidate"
	LastGoodSuffix  = "@last-good"
	DryRunSuffix    = "@dry-run"
)

// OnErrorLastGood runs the last version of the script that succeeded on
// this instance when the live one fails; without one it is OnErrorSkip.
const OnErrorLastGood OnError = "last_good"

// shadowSampleEvery is the least time between two logged samples of a
// script's shadow differences.
const shadowSampleEvery = time.Second

type rolloutKey struct{}

// WithRolloutKey returns ctx carrying what identifies the token a
// request is about (its jti, or the hash of an opaque token): a canary
// candidate runs for a stable share of these keys, so one token always
// meets the same version.
func WithRolloutKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, rolloutKey{}, key)
}

// inCanary reports whether the token key falls in the percent share of
// the script's canary. The script's name is hashed in, so that the
// canaries of two scripts pick independent shares.
func inCanary(script, key string, percent int) bool {
	switch {
	case percent <= 0:
		return false
	case percent >= 100:
		return true
	}
	sum := sha256.Sum256([]byte(script + "\x00" + key))
	return binary.BigEndian.Uint64(sum[:8])%100 < uint64(percent)
}

// versionCounts counts the calls of one version and the time they took
// (metrics): ok, timed out, or failed otherwise.
type versionCounts struct {
	ok, timeouts, failed atomic.Int64
	nanos                atomic.Int64
}

// count counts a call that ended with err after took.
func (c *versionCounts) count(err error, took time.Duration) {
	var se *ScriptError
	switch {
	case err == nil:
		c.ok.Add(1)
	case errors.As(err, &se) && se.Kind == FailureTimeout:
		c.timeouts.Add(1)
	default:
		c.failed.Add(1)
	}
	c.nanos.Add(int64(took))
}

// call is c as a VersionCall of version of script.
func (c *versionCounts) call(script, version string) VersionCall {
	return VersionCall{Script: script, Version: version, OK: c.ok.Load(), Timeouts: c.timeouts.Load(), Failed: c.failed.Load(),
		Seconds: time.Duration(c.nanos.Load()).Seconds()}
}

// trial is the candidate of one version of a script.
type trial struct {
	script  *Script // runnable: named name+CandidateSuffix
	rollout Rollout
	percent int
	counts  versionCounts
	// lastSample is when a shadow difference was last logged (Unix ns).
	lastSample atomic.Int64
}

// goodState is the last version of a script that succeeded on this
// instance; it outlives the versions that replace it.
type goodState struct {
	script atomic.Pointer[Script] // runnable: named name+LastGoodSuffix
	// serving is the number of the version served instead of the live
	// one, 0 while the live one serves.
	serving atomic.Int64
	mu      sync.Mutex
	counts  *versionCounts // of script; replaced with it
}

// scriptState is what the dispatcher keeps per script version.
type scriptState struct {
	version string
	number  int
	live    versionCounts
	trial   *trial
	good    *goodState
}

// keepStates returns the states of byName: a version's state is kept
// while the version stays, the last good version while the name does.
// d.mu must be held.
func (d *Dispatcher) keepStates(byName map[string]*Script) map[string]*scriptState {
	old := d.stateMap()
	out := make(map[string]*scriptState, len(byName))
	for name, s := range byName {
		prev := old[name]
		if prev != nil && prev.version == s.Version {
			out[name] = prev
			continue
		}
		st := &scriptState{version: s.Version, number: s.Number, good: &goodState{}}
		if prev != nil {
			st.good = prev.good
			if prev.number == s.Number && s.Number != 0 {
				st.live.ok.Store(prev.live.ok.Load())
				st.live.timeouts.Store(prev.live.timeouts.Load())
				st.live.failed.Store(prev.live.failed.Load())
				st.live.nanos.Store(prev.live.nanos.Load())
			}
		}
		if c := s.Candidate; c != nil {
			cs := *s
			cs.Name, cs.Source, cs.Version, cs.Number, cs.Candidate = s.Name+CandidateSuffix, c.Source, s.Version+"~candidate", 0, nil
			st.trial = &trial{script: &cs, rollout: c.Rollout, percent: c.Percent}
		}
		out[name] = st
	}
	return out
}

func (d *Dispatcher) stateMap() map[string]*scriptState {
	if m := d.states.Load(); m != nil {
		return *m
	}
	return nil
}

// stateOf is the state of s; nil for a version the dispatcher does not
// know (a call that started before a Replace).
func (d *Dispatcher) stateOf(s *Script) *scriptState {
	if st := d.stateMap()[s.Name]; st != nil && st.version == s.Version {
		return st
	}
	return nil
}

// pick returns the version of s that serves this call (the candidate for
// a token in a canary's share), the counts of that version, and the
// shadow trial to run beside it.
func (d *Dispatcher) pick(ctx context.Context, s *Script) (run *Script, counts *versionCounts, shadow *trial) {
	st := d.stateOf(s)
	if st == nil {
		return s, nil, nil
	}
	tr := st.trial
	if tr == nil {
		return s, &st.live, nil
	}
	if tr.rollout == RolloutShadow {
		return s, &st.live, tr
	}
	if key, ok := ctx.Value(rolloutKey{}).(string); ok && inCanary(s.Name, key, tr.percent) {
		return tr.script, &tr.counts, nil
	}
	return s, &st.live, nil
}

// outcome is what one call of one version gave, as shadow compares it.
type outcome struct {
	res *Result
	err error
}

func (o outcome) same(p outcome) bool {
	if (o.err != nil) != (p.err != nil) {
		return false
	}
	if o.err != nil {
		return true // both failed
	}
	if o.res.Defined != p.res.Defined || !Equal(o.res.Return, p.res.Return) || len(o.res.Args) != len(p.res.Args) {
		return false
	}
	for i := range o.res.Args {
		if !Equal(o.res.Args[i], p.res.Args[i]) {
			return false
		}
	}
	return true
}

// runShadow runs the candidate tr beside s on the same input and
// compares what it gives with what s gave; its result is discarded, and
// its failures apply no policy and open no breaker. Its fetches may only
// GET or HEAD: the live version already made the request's changes. It runs on the
// request's goroutine, after s: the context's lazy values may be read
// by the request's goroutine only.
func (d *Dispatcher) runShadow(ctx context.Context, log *slog.Logger, s *Script, tr *trial, fn Function, args []any, hctx map[string]any, judge func(*Result) error, live outcome) {
	start := time.Now()
	res, err := d.rt.Call(ctx, tr.script, &Call{Function: fn, Args: args, Context: withConfig(hctx, tr.script), Logger: log,
		SafeFetchOnly: true})
	took := time.Since(start)
	extendScriptBudget(ctx, took)
	if err == nil && res.Defined && judge != nil {
		err = judge(res)
	}
	tr.counts.count(err, took)
	shadow := outcome{res: res, err: err}
	if shadow.same(live) {
		return
	}
	if d.OnShadowDifference != nil {
		d.OnShadowDifference(s.Name)
	}
	now := time.Now().UnixNano()
	last := tr.lastSample.Load()
	if now-last < int64(shadowSampleEvery) || !tr.lastSample.CompareAndSwap(last, now) {
		return
	}
	log.Info("script candidate differs from the live version (shadow)", "script", s.Name, "function", string(fn),
		"live", s.describe(live), "candidate", tr.script.describe(shadow))
}

// describe is an outcome of s for a log line, s's secrets shown as
// SecretMark: a version may have copied one into its answer (or an
// earlier script into its arguments).
func (s *Script) describe(o outcome) any {
	if o.err != nil {
		return map[string]any{"error": s.Redact(o.err.Error())}
	}
	if !o.res.Defined {
		return map[string]any{"defined": false}
	}
	return map[string]any{"return": s.RedactValue(o.res.Return), "args": s.RedactValue(o.res.Args)}
}

// noteGood records a call of the live version s that succeeded: s is
// now its script's last good version, and serves again if another did.
func (d *Dispatcher) noteGood(log *slog.Logger, s *Script) {
	st := d.stateOf(s)
	if st == nil {
		return
	}
	g := st.good
	if from := g.serving.Load(); from != 0 && g.serving.CompareAndSwap(from, 0) {
		log.Info("script live version serves again", "script", s.Name, "version", s.Number, "was_serving", from)
	}
	if cur := g.script.Load(); cur != nil && cur.Version == s.Version {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur := g.script.Load(); cur == nil || cur.Version != s.Version {
		cp := *s
		// Without its secrets: it runs with the script's current ones
		// (serveLastGood).
		cp.Name, cp.Candidate, cp.Secrets = s.Name+LastGoodSuffix, nil, nil
		g.counts = &versionCounts{}
		g.script.Store(&cp)
	}
}

// lastGood is the last good version of s to run in place of s, or nil
// when there is none earlier than s.
func (d *Dispatcher) lastGood(s *Script) (*Script, *goodState) {
	st := d.stateMap()[s.Name]
	if st == nil {
		return nil, nil
	}
	lg := st.good.script.Load()
	if lg == nil || lg.Version == s.Version || (lg.Number != 0 && lg.Number == s.Number) {
		return nil, nil
	}
	return lg, st.good
}

// serveLastGood runs the last good version of s after s failed; ok
// reports whether its result is to be used.
func (d *Dispatcher) serveLastGood(ctx context.Context, log *slog.Logger, s *Script, fn Function, args []any, hctx map[string]any, judge func(*Result) error) (*Result, bool) {
	lg, g := d.lastGood(s)
	if lg == nil {
		return nil, false
	}
	// Secrets are not part of a version (docs/scripts.md, "Secrets"):
	// the last good version runs with the script's secrets as they are
	// now, so that one an admin rotated or removed is not used (nor kept)
	// by the version that succeeded before.
	cur := *lg
	cur.Secrets = s.Secrets
	lg = &cur
	start := time.Now()
	res, err := d.rt.Call(ctx, lg, &Call{Function: fn, Args: args, Context: withConfig(hctx, lg), Logger: log})
	took := time.Since(start)
	if err == nil && res.Defined && judge != nil {
		err = judge(res)
	}
	g.mu.Lock()
	counts := g.counts
	g.mu.Unlock()
	if counts != nil {
		counts.count(err, took)
	}
	if err != nil || !res.Defined {
		return nil, false
	}
	if n := int64(lg.Number); g.serving.Swap(n) != n {
		log.Warn("script live version failed: serving its last good version", "script", s.Name, "version", s.Number, "serving_version", lg.Number)
	}
	return res, true
}

// FallingBackTo reports the number of the version this instance serves
// in place of the live version of the script called name, after the live
// one failed (on_error: last_good); ok is false while the live one
// serves.
func (d *Dispatcher) FallingBackTo(name string) (number int, ok bool) {
	st := d.stateMap()[name]
	if st == nil {
		return 0, false
	}
	n := st.good.serving.Load()
	return int(n), n != 0
}

// VersionCall counts the calls of one version of a script on this
// instance; Version is its number, or "candidate". OK, Timeouts and
// Failed (other failures) part the calls; Seconds is the time they took.
type VersionCall struct {
	Script, Version      string
	OK, Timeouts, Failed int64
	Seconds              float64
}

// VersionCalls yields the calls of each version of each script that runs
// on this instance: the live one, the candidate, and the last good one
// while it differs from the live one (metrics read them at scrape time;
// a version's counts go with it, so the series stay bounded).
func (d *Dispatcher) VersionCalls() iter.Seq[VersionCall] {
	return func(yield func(VersionCall) bool) {
		for name, st := range d.stateMap() {
			if !yield(st.live.call(name, strconv.Itoa(st.number))) {
				return
			}
			if tr := st.trial; tr != nil {
				if !yield(tr.counts.call(name, "candidate")) {
					return
				}
			}
			st.good.mu.Lock()
			lg, counts := st.good.script.Load(), st.good.counts
			st.good.mu.Unlock()
			if lg != nil && counts != nil && lg.Number != st.number {
				if !yield(counts.call(name, strconv.Itoa(lg.Number))) {
					return
				}
			}
		}
	}
}
