package web

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyhook/keyhook/engine"
)

// registerAuthMetrics registers keyhook_auth_failures_total{kind, method,
// reason}, read from the engine at scrape time. Its labels come from
// fixed sets (docs/auth-limits.md), never from a client_id or username.
func registerAuthMetrics(reg prometheus.Registerer, eng *engine.Engine) {
	if eng == nil {
		return
	}
	reg.MustRegister(&authFailureCollector{eng: eng, desc: prometheus.NewDesc("keyhook_auth_failures_total",
		"Failed client authentications and sign-ins, by kind (client, user), method and reason.",
		[]string{"kind", "method", "reason"}, nil)})
}

type authFailureCollector struct {
	eng  *engine.Engine
	desc *prometheus.Desc
}

func (c *authFailureCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *authFailureCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.eng.AuthFailures() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(f.Count), f.Kind, f.Method, f.Reason)
	}
}
