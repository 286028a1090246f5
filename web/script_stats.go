package web

import (
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"

	"github.com/keyhook/keyhook/hooks"
)

// ScriptStats is one script's calls on this instance since it started,
// as GET /admin/v1/script-stats answers them (docs/console.md). The calls
// of its candidate and of the last good version it falls back to count
// as its own; dry runs do not count.
type ScriptStats struct {
	Name     string `json:"name"`
	Calls    uint64 `json:"calls"`
	Errors   uint64 `json:"errors"`
	Timeouts uint64 `json:"timeouts"`
	// MeanMS, P50MS and P99MS are the calls' duration in milliseconds:
	// the mean, and the upper bounds of the histogram buckets that hold
	// the median and the 99th percentile (null with no timed call; the
	// largest bucket's bound, 1000, for calls longer than that).
	MeanMS *float64 `json:"mean_ms"`
	P50MS  *float64 `json:"p50_ms"`
	P99MS  *float64 `json:"p99_ms"`
}

// scriptStats serves GET /admin/v1/script-stats from the server's
// registry: keyhook_script_calls_total, keyhook_script_errors_total and
// keyhook_script_duration_seconds (docs/operations.md), read at the
// request, for every stored script.
func (s *Server) scriptStats(c echo.Context) error {
	docs, err := s.eng.ScriptDocs(c.Request().Context())
	if err != nil {
		return err
	}
	byName := make(map[string]*ScriptStats, len(docs))
	out := make([]*ScriptStats, 0, len(docs))
	for _, d := range docs {
		st := &ScriptStats{Name: d.Name}
		byName[d.Name] = st
		out = append(out, st)
	}
	families, err := s.cfg.Registry.Gather()
	if err != nil && len(families) == 0 {
		return err
	}
	hists := map[string]*histogram{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			st := byName[statsScript(m)]
			if st == nil {
				continue
			}
			switch f.GetName() {
			case "keyhook_script_calls_total":
				st.Calls += uint64(m.GetCounter().GetValue())
			case "keyhook_script_errors_total":
				n := uint64(m.GetCounter().GetValue())
				st.Errors += n
				if label(m, "kind") == string(hooks.FailureTimeout) {
					st.Timeouts += n
				}
			case "keyhook_script_duration_seconds":
				h := hists[st.Name]
				if h == nil {
					h = &histogram{}
					hists[st.Name] = h
				}
				h.add(m.GetHistogram())
			}
		}
	}
	for name, h := range hists {
		st := byName[name]
		if h.count == 0 {
			continue
		}
		mean := h.sum / float64(h.count) * 1000
		st.MeanMS = &mean
		st.P50MS, st.P99MS = h.quantileMS(0.5), h.quantileMS(0.99)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	noStore(c)
	return c.JSON(http.StatusOK, map[string]any{"scripts": out})
}

// statsScript is the script a series counts for: its script label with
// the candidate and last-good suffixes taken off, or "" for a dry run.
func statsScript(m *dto.Metric) string {
	name := label(m, "script")
	if strings.HasSuffix(name, hooks.DryRunSuffix) {
		return ""
	}
	name = strings.TrimSuffix(name, hooks.CandidateSuffix)
	return strings.TrimSuffix(name, hooks.LastGoodSuffix)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// histogram adds up the cumulative buckets of histograms with the same
// bounds.
type histogram struct {
	count  uint64
	sum    float64
	bounds []float64
	counts []uint64
}

func (h *histogram) add(p *dto.Histogram) {
	h.count += p.GetSampleCount()
	h.sum += p.GetSampleSum()
	for i, b := range p.GetBucket() {
		if i == len(h.bounds) {
			h.bounds = append(h.bounds, b.GetUpperBound())
			h.counts = append(h.counts, 0)
		}
		h.counts[i] += b.GetCumulativeCount()
	}
}

// quantileMS is the upper bound, in milliseconds, of the first bucket
// holding at least q of the calls; the largest finite bound when they
// are above it all.
func (h *histogram) quantileMS(q float64) *float64 {
	need := uint64(math.Ceil(q * float64(h.count)))
	v := math.NaN()
	for i, n := range h.counts {
		if !math.IsInf(h.bounds[i], 1) {
			v = h.bounds[i]
		}
		if n >= need {
			break
		}
	}
	if math.IsNaN(v) {
		return nil
	}
	v *= 1000
	return &v
}
