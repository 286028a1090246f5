package scripts

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus collectors. A nil *metrics records
// nothing, so call sites need no checks.
type metrics struct {
	calls    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics registers the collectors with reg. When an identical
// collector is already registered (a second Runtime on the same registry)
// that one is shared; any other registration error is logged and the
// metrics are kept unregistered, since metrics must never stop scripts.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhook_script_calls_total",
			Help: "Script function calls, by script and function.",
		}, []string{"script", "function"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhook_script_errors_total",
			Help: "Failed script calls, by script and failure kind (exception, timeout, stack_overflow, wrong_type, busy, memory, crash, cancelled, syntax).",
		}, []string{"script", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyhook_script_duration_seconds",
			Help:    "Time spent running script calls (excluding the wait for a runtime).",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1},
		}, []string{"script"}),
	}
	m.calls = register(reg, m.calls, log)
	m.errors = register(reg, m.errors, log)
	m.duration = register(reg, m.duration, log)
	return m
}

// register registers c with reg, returning the collector to use.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, log *slog.Logger) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Warn("scripts: metrics not registered", "err", err)
	return c
}

// call counts a call of a function the script declares. The counter of
// each function, like the duration histogram, is kept with the script's
// cache entry: looking children up by label values on every call costs
// more than the rest of the bookkeeping of a call.
func (m *metrics) call(sc *script, function string) {
	if m == nil {
		return
	}
	if c, ok := sc.callCounters.Load(function); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.calls.WithLabelValues(sc.name, function)
	sc.callCounters.Store(function, c)
	c.Inc()
}

// failure counts a failed call by kind (a hooks.FailureKind or "syntax").
func (m *metrics) failure(script, kind string) {
	if m != nil {
		m.errors.WithLabelValues(script, kind).Inc()
	}
}

// observe records how long a call ran.
func (m *metrics) observe(sc *script, d time.Duration) {
	if m == nil {
		return
	}
	sc.durationOnce.Do(func() { sc.duration = m.duration.WithLabelValues(sc.name) })
	sc.duration.Observe(d.Seconds())
}

// forget deletes the series of a script (deleted, or dropped for good),
// so that series do not accumulate as scripts come and go.
func (m *metrics) forget(script string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"script": script}
	m.calls.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}
