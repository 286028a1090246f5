package web

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyhook/keyhook/hooks"
)

// RegisterScriptMetrics registers the metrics of d's script circuit
// breakers with reg and chains d's callbacks to feed them:
//
//	keyhook_script_breaker_trips_total{script}  times the breaker opened
//	keyhook_script_tripped{script}              1 while it is open, else 0
//	keyhook_script_skipped_total{script}        calls skipped while open
//
// The gauge is read from d at scrape time, so it drops to 0 when a
// cool-down ends without any event. The series of a script go when d
// forgets it (deleted here or on another instance). Call it once per
// dispatcher, before d is used: it sets d's callbacks, keeping any set
// before.
func RegisterScriptMetrics(reg prometheus.Registerer, d *hooks.Dispatcher) {
	trips := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_script_breaker_trips_total",
		Help: "Times a script's circuit breaker opened after repeated failures, by script.",
	}, []string{"script"})
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_script_skipped_total",
		Help: "Script calls not made because the script's circuit breaker was open (its on_error applied), by script.",
	}, []string{"script"})
	reg.MustRegister(trips, skipped, &trippedCollector{d: d, desc: prometheus.NewDesc("keyhook_script_tripped",
		"1 while the script's circuit breaker is open (the script is skipped), else 0.", []string{"script"}, nil)})
	shadowDiffs := registerRolloutMetrics(reg, d)

	onTrip, onFailure, onRemove := d.OnTrip, d.OnFailure, d.OnRemove
	d.OnTrip = func(script string, until time.Time) {
		trips.WithLabelValues(script).Inc()
		if onTrip != nil {
			onTrip(script, until)
		}
	}
	d.OnFailure = func(script string, kind hooks.FailureKind) {
		if kind == hooks.FailureTripped {
			skipped.WithLabelValues(script).Inc()
		}
		if onFailure != nil {
			onFailure(script, kind)
		}
	}
	d.OnRemove = func(script string) {
		trips.DeleteLabelValues(script)
		skipped.DeleteLabelValues(script)
		shadowDiffs.DeleteLabelValues(script)
		if onRemove != nil {
			onRemove(script)
		}
	}
}

// trippedCollector reports keyhook_script_tripped from the dispatcher's
// breakers when scraped.
type trippedCollector struct {
	d    *hooks.Dispatcher
	desc *prometheus.Desc
}

func (c *trippedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *trippedCollector) Collect(ch chan<- prometheus.Metric) {
	for script, until := range c.d.Breakers() {
		v := 0.0
		if !until.IsZero() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, script)
	}
}

// registerRolloutMetrics registers the metrics of script versions
// (docs/scripts.md, "Versions, rollback and rollout"):
//
//	keyhook_script_shadow_differences_total{script}         calls whose shadow candidate answered otherwise
//	keyhook_script_version_calls_total{script,version,result} calls per version (number or "candidate"), result ok, timeout or error
//	keyhook_script_version_duration_seconds_total{script,version} the time those calls took
//
// The last two are read from d at scrape time and hold only the versions
// that run (live, candidate, last good), so their series stay bounded;
// their rates give each version's error rate, timeout rate and mean
// latency.
func registerRolloutMetrics(reg prometheus.Registerer, d *hooks.Dispatcher) *prometheus.CounterVec {
	diffs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_script_shadow_differences_total",
		Help: "Script calls whose shadow candidate gave another result (return value or edited argument) than the live version, by script.",
	}, []string{"script"})
	reg.MustRegister(diffs, &versionCallsCollector{d: d,
		calls: prometheus.NewDesc("keyhook_script_version_calls_total",
			"Script calls per version that runs on this instance (its number, or candidate), by result (ok, timeout or error).",
			[]string{"script", "version", "result"}, nil),
		seconds: prometheus.NewDesc("keyhook_script_version_duration_seconds_total",
			"Time spent in the calls of each version that runs on this instance (its number, or candidate).",
			[]string{"script", "version"}, nil)})
	onDiff := d.OnShadowDifference
	d.OnShadowDifference = func(script string) {
		diffs.WithLabelValues(script).Inc()
		if onDiff != nil {
			onDiff(script)
		}
	}
	return diffs
}

type versionCallsCollector struct {
	d              *hooks.Dispatcher
	calls, seconds *prometheus.Desc
}

func (c *versionCallsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.calls; ch <- c.seconds }

func (c *versionCallsCollector) Collect(ch chan<- prometheus.Metric) {
	for v := range c.d.VersionCalls() {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(v.OK), v.Script, v.Version, "ok")
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(v.Timeouts), v.Script, v.Version, "timeout")
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(v.Failed), v.Script, v.Version, "error")
		ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.CounterValue, v.Seconds, v.Script, v.Version)
	}
}
