package hooks

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Dispatcher knows the current scripts and runs the ones that apply to a
// token: those bound to its owning client, enabled, ordered by level then
// name (docs/scripts.md). It is safe for concurrent use; Replace swaps the
// whole set atomically.
type Dispatcher struct {
	rt  Runtime
	log *slog.Logger
	// OnFailure, when set, is told of every failed script call (metrics),
	// including the calls a breaker skips (FailureTripped).
	OnFailure func(script string, kind FailureKind)
	// Breaker tunes the per-script circuit breakers (see BreakerOptions).
	Breaker BreakerOptions
	// OnTrip, when set, is told each time a script's breaker opens.
	OnTrip func(script string, until time.Time)
	// OnRemove, when set, is told of each script that leaves the set
	// (deleted here or, after a refresh, on another instance), so that
	// per-script state kept elsewhere, such as metric series, can go too.
	// Like the other callbacks and Breaker, it is set before the
	// dispatcher is used.
	OnRemove func(script string)
	// OnShadowDifference, when set, is told of each call of a script
	// whose shadow candidate gave another result than the live version.
	OnShadowDifference func(script string)
	// TraceCall, when set, is told of each script call (tracing).
	TraceCall CallTracer
	// Logs keeps the scripts' latest context.log lines (the live log);
	// NewDispatcher makes one with the default bounds.
	Logs *LogRing

	mu     sync.RWMutex
	byName map[string]*Script
	// enabledIntrospection is every enabled introspection script, sorted,
	// for backward-compatibility mode.
	enabledIntrospection []*Script
	// circuits holds a breaker per script in byName; written under mu,
	// read without locking on every call.
	circuits atomic.Pointer[map[string]*circuit]
	// states holds per script its candidate, last good version and call
	// counts (hooks/rollout.go); written under mu, read without locking.
	states atomic.Pointer[map[string]*scriptState]
	// recordings holds the recorded inputs of the scripts that record
	// them (hooks/record.go); written under mu, read without locking.
	recordings atomic.Pointer[map[string]*recording]
}

// NewDispatcher returns a dispatcher that runs scripts on rt.
func NewDispatcher(rt Runtime, log *slog.Logger) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	return &Dispatcher{rt: rt, log: log, byName: map[string]*Script{}, Logs: NewLogRing(0, 0)}
}

// Runtime is the runtime scripts run on.
func (d *Dispatcher) Runtime() Runtime { return d.rt }

// Replace makes all the current set of scripts.
func (d *Dispatcher) Replace(all []*Script) { d.replace(all, "") }

// replace is Replace; deleted, when set, names a script deleted here,
// whose state goes even if a refresh that read the database before it was
// created has already dropped it from the set (that refresh forgot it
// before a dry run or call made state for it again).
func (d *Dispatcher) replace(all []*Script, deleted string) {
	byName := make(map[string]*Script, len(all))
	var intro []*Script
	for _, s := range all {
		byName[s.Name] = s
		if s.Enabled && s.Kind == KindIntrospection {
			intro = append(intro, s)
		}
	}
	sortScripts(intro)
	d.mu.Lock()
	var removed []string
	for name := range d.byName {
		if _, ok := byName[name]; !ok {
			removed = append(removed, name)
		}
	}
	if _, ok := byName[deleted]; deleted != "" && !ok && !slices.Contains(removed, deleted) {
		removed = append(removed, deleted)
	}
	// A script's candidate, last good version and dry runs run under
	// names of their own (hooks/rollout.go): they go with it, and a
	// candidate goes when it is removed.
	var gone []string
	for _, name := range removed {
		gone = append(gone, name, name+CandidateSuffix, name+LastGoodSuffix, name+DryRunSuffix)
	}
	for name, s := range d.byName {
		if next, ok := byName[name]; ok && s.Candidate != nil && next.Candidate == nil {
			gone = append(gone, name+CandidateSuffix)
		}
	}
	circuits := d.keepCircuits(byName)
	states := d.keepStates(byName)
	d.byName, d.enabledIntrospection = byName, intro
	d.circuits.Store(&circuits)
	d.states.Store(&states)
	d.keepRecordings(byName)
	d.mu.Unlock()
	if forget, ok := d.rt.(Forgetter); ok {
		for _, name := range gone {
			forget.Forget(name)
		}
	}
	for _, name := range removed {
		if d.OnRemove != nil {
			d.OnRemove(name)
		}
		if d.Logs != nil {
			d.Logs.Forget(name)
		}
	}
}

// FailureCounter is implemented by runtimes that count failed calls
// (metrics): the dispatcher tells them of the failures it finds itself
// in a call that succeeded for the runtime (a hook that returned a
// non-boolean), so that every failure is counted once.
type FailureCounter interface {
	CountFailure(script string, kind FailureKind)
}

// verdict reports a failure the dispatcher found to the runtime.
func (d *Dispatcher) verdict(se *ScriptError) *ScriptError {
	if c, ok := d.rt.(FailureCounter); ok {
		c.CountFailure(se.Script, se.Kind)
	}
	return se
}

// Forgetter is implemented by runtimes that keep per-script state (a
// compiled program, runtimes, metric series): the dispatcher tells them
// of each script that leaves the set, so that state stays bounded by the
// scripts that exist.
type Forgetter interface {
	Forget(name string)
}

// Put adds or replaces one script (after a local admin change, so that it
// takes effect before the next reload).
func (d *Dispatcher) Put(s *Script) { d.Replace(append(d.others(s.Name), s)) }

// Remove forgets one script, deleted here.
func (d *Dispatcher) Remove(name string) { d.replace(d.others(name), name) }

// others is every script but the one called name.
func (d *Dispatcher) others(name string) []*Script {
	d.mu.RLock()
	defer d.mu.RUnlock()
	all := make([]*Script, 0, len(d.byName)+1)
	for n, s := range d.byName {
		if n != name {
			all = append(all, s)
		}
	}
	return all
}

func sortScripts(list []*Script) {
	slices.SortFunc(list, func(a, b *Script) int {
		if a.Level != b.Level {
			return cmp.Compare(a.Level, b.Level)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// Select returns the enabled scripts of kind among bound, in run order.
// With all set (introspection_script_backward_compatibility) it returns
// every enabled introspection script, whatever the bindings.
func (d *Dispatcher) Select(kind Kind, bound []string, all bool) []*Script {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if all && kind == KindIntrospection {
		return d.enabledIntrospection
	}
	if len(bound) == 0 {
		return nil
	}
	out := make([]*Script, 0, len(bound))
	for _, name := range bound {
		if s, ok := d.byName[name]; ok && s.Enabled && s.Kind == kind {
			out = append(out, s)
		}
	}
	sortScripts(out)
	return out
}

// Enabled returns every enabled script of kind, in run order (level,
// then name): the registration scripts, which no client binds.
func (d *Dispatcher) Enabled(kind Kind) []*Script {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []*Script
	for _, s := range d.byName {
		if s.Enabled && s.Kind == kind {
			out = append(out, s)
		}
	}
	sortScripts(out)
	return out
}

// DeniedError reports a script whose failure refuses the token
// (on_error: deny).
type DeniedError struct {
	Script string
	Cause  error
}

func (e *DeniedError) Error() string { return "script " + e.Script + " denied: " + e.Cause.Error() }
func (e *DeniedError) Unwrap() error { return e.Cause }

// Chain says how a chain of scripts goes on after each script. The zero
// Chain discards the edits of a script that returns false and runs the
// next one.
type Chain struct {
	// StopOnFalse ends the chain at a false return: the caller refuses
	// what was asked (Outcome.FalseBy names the script).
	StopOnFalse bool
	// Done, when set, ends the chain after a kept edit for which it
	// reports true (introspection: a script made the token inactive).
	Done func(value map[string]any) bool
}

// The two common chains.
var (
	// DiscardOnFalse: false discards that script's edits; the next runs.
	DiscardOnFalse = Chain{}
	// StopOnFalse: false ends the chain; the caller refuses what was asked.
	StopOnFalse = Chain{StopOnFalse: true}
)

// Outcome is the result of a chain of scripts over one object.
type Outcome struct {
	// Value is the object after every kept edit.
	Value map[string]any
	// FalseBy names the script that returned false under StopOnFalse.
	FalseBy string
	// Ran counts the scripts that defined the function and ran.
	Ran int
}

type loggerKey struct{}

// WithLogger returns ctx carrying the logger that context.log writes to
// (with the request id, say).
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger is the logger ctx carries (see WithLogger), or fallback.
func Logger(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

func (d *Dispatcher) logger(ctx context.Context) *slog.Logger { return Logger(ctx, d.log) }

// Run calls fn(value, context) of each script in order. A script's edits
// are kept when it returns true. A script that fails (throws, times out,
// returns a non-boolean) has its edits discarded; with on_error deny Run
// stops with a *DeniedError, with on_error last_good the last version of
// the script that succeeded here answers instead. A script whose circuit
// breaker is open is not called and counts as failed. value itself is
// never modified.
func (d *Dispatcher) Run(ctx context.Context, scripts []*Script, fn Function, value map[string]any, hctx map[string]any, chain Chain) (*Outcome, error) {
	out := &Outcome{Value: value}
	log := d.logger(ctx)
	for _, s := range scripts {
		res, err := d.runOne(ctx, log, s, fn, []any{out.Value}, hctx, modifyVerdict)
		if err != nil {
			return nil, err
		}
		if res == nil || !res.Defined {
			continue
		}
		out.Ran++
		if res.Return == false {
			if chain.StopOnFalse {
				out.FalseBy = s.Name
				return out, nil
			}
			continue
		}
		edited := res.Args[0].(map[string]any)
		out.Value = edited
		if chain.Done != nil && chain.Done(edited) {
			return out, nil
		}
	}
	return out, nil
}

// modifyVerdict judges the answer of a modify* function: true or false,
// and the argument still an object when true.
func modifyVerdict(res *Result) error {
	keep, isBool := res.Return.(bool)
	if !isBool {
		return &ScriptError{Kind: FailureWrongType, Message: "must return true or false"}
	}
	if _, ok := res.Args[0].(map[string]any); keep && !ok {
		return &ScriptError{Kind: FailureWrongType, Message: "replaced its argument with a non-object"}
	}
	return nil
}

// runOne calls fn of the version of s that serves this call (see pick),
// runs a shadow candidate beside it, and applies the breaker and the
// script's on_error. It returns the result to use (nil when the script
// failed and nothing stands in), or a *DeniedError. judge, when set,
// refuses answers of the wrong shape as FailureWrongType.
func (d *Dispatcher) runOne(ctx context.Context, log *slog.Logger, s *Script, fn Function, args []any, hctx map[string]any, judge func(*Result) error) (*Result, error) {
	run, counts, shadow := d.pick(ctx, s)
	cctx, end := d.startCall(ctx, run, fn)
	var res *Result
	err := d.admit(run, fn)
	if err != nil {
		end(resultOf(err))
	} else {
		start := time.Now()
		res, err = d.rt.Call(cctx, run, &Call{Function: fn, Args: args, Context: withConfig(hctx, run), Logger: log})
		took := time.Since(start)
		d.keepLogs(ctx, s, run, fn, hctx, res)
		d.record(ctx, s, run, fn, args, hctx, res, err)
		if err == nil && res.Defined && judge != nil {
			if verr := judge(res); verr != nil {
				se := verr.(*ScriptError)
				se.Script, se.Function = run.Name, fn
				err = d.verdict(se)
			}
		}
		end(callResult(res, err))
		if counts != nil && (err == nil && res.Defined || err != nil) {
			counts.count(err, took)
		}
		if shadow != nil {
			d.runShadow(ctx, log, s, shadow, fn, args, hctx, judge, outcome{res: res, err: err})
		}
	}
	if err == nil {
		d.ran(log, run, fn, res.Defined)
		if res.Defined && run == s {
			d.noteGood(log, s)
		}
		return res, nil
	}
	if denied := d.fail(log, run, fn, err); denied != nil {
		return nil, denied
	}
	if run.OnError == OnErrorLastGood && run == s {
		if lres, ok := d.serveLastGood(ctx, log, s, fn, args, hctx, judge); ok {
			return lres, nil
		}
	}
	return nil, nil
}

// Lifetime calls a lifetime function (getAccessTokenLifetimeInSeconds and
// the like) of each script; an answer LifetimeSeconds accepts overrides,
// the last one wins. Any other answer, none included, is ignored and
// logged. ok is false when no script gave one.
func (d *Dispatcher) Lifetime(ctx context.Context, scripts []*Script, fn Function, hctx map[string]any) (seconds int64, ok bool, err error) {
	log := d.logger(ctx)
	for _, s := range scripts {
		res, err := d.runOne(ctx, log, s, fn, nil, hctx, nil)
		if err != nil {
			return 0, false, err
		}
		if res == nil || !res.Defined {
			continue
		}
		if n, valid := LifetimeSeconds(res.Return); valid {
			seconds, ok = n, true
		} else {
			log.Warn("script lifetime ignored: not whole seconds between 1 and 10 years", "script", s.Name,
				"function", string(fn), "value", lifetimeForLog(s.RedactValue(res.Return)))
		}
	}
	return seconds, ok, nil
}

// fail logs a failed call, records it in the script's breaker and applies
// the script's failure policy. A call skipped by an open breaker is not
// logged: the trip was, once, and a line per request would flood the log.
func (d *Dispatcher) fail(log *slog.Logger, s *Script, fn Function, err error) error {
	kind := FailureException
	var se *ScriptError
	if errors.As(err, &se) {
		kind = se.Kind
	}
	if kind != FailureTripped {
		log.Warn("script failed; its edits are discarded", "script", s.Name, "function", string(fn), "kind", string(kind), "err", err, "on_error", string(s.OnError))
		d.failed(log, s, fn, kind)
	}
	if d.OnFailure != nil {
		d.OnFailure(s.Name, kind)
	}
	if s.OnError == OnErrorDeny {
		return &DeniedError{Script: s.Name, Cause: err}
	}
	return nil
}

// withConfig is hctx with the script's own config and secrets added.
func withConfig(hctx map[string]any, s *Script) map[string]any {
	c := make(map[string]any, len(hctx)+2)
	for k, v := range hctx {
		c[k] = v
	}
	cfg := s.Config
	if cfg == nil {
		cfg = map[string]string{}
	}
	c["config"] = cfg
	c["secrets"] = secretsValue(s.Secrets)
	return c
}

// RestoreProtected puts back, in edited, the values orig has for the
// protected names (removing them where orig has none) and returns the
// names a script tried to change.
func RestoreProtected(orig, edited map[string]any, protected []string) []string {
	var changed []string
	for _, name := range protected {
		ov, had := orig[name]
		nv, has := edited[name]
		if had != has || (had && !Equal(ov, nv)) {
			changed = append(changed, name)
		}
		if had {
			edited[name] = ov
		} else {
			delete(edited, name)
		}
	}
	return changed
}

// Equal compares JSON-like values, treating all numeric types alike.
func Equal(a, b any) bool {
	fa, aNum := number(a)
	fb, bNum := number(b)
	if aNum || bNum {
		return aNum && bNum && fa == fb
	}
	switch av := a.(type) {
	case string, bool, nil:
		return a == b
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !Equal(av[i], bv[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !Equal(x, y) {
				return false
			}
		}
		return true
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
