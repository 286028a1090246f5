package hooks

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"testing"
)

func TestLifetimeSeconds(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want int64 // 0: not a lifetime
	}{
		{"integer", int64(600), 600},
		{"Go int", 600, 600},
		{"integral float", 600.0, 600},
		{"one second", int64(1), 1},
		{"ten years", MaxLifetimeSeconds, MaxLifetimeSeconds},
		{"ten years as float", float64(MaxLifetimeSeconds), MaxLifetimeSeconds},
		{"past ten years", MaxLifetimeSeconds + 1, 0},
		{"past ten years as float", float64(MaxLifetimeSeconds + 1), 0},
		{"1e11", 1e11, 0},
		{"1e11 as integer", int64(1e11), 0},
		{"2**62 overflows a Duration", int64(1) << 62, 0},
		{"2**63", math.Pow(2, 63), 0},
		{"1e300", 1e300, 0},
		{"zero", int64(0), 0},
		{"negative zero", math.Copysign(0, -1), 0},
		{"negative", int64(-1), 0},
		{"negative float", -600.0, 0},
		{"fraction", 1.5, 0},
		{"below one", 0.5, 0},
		{"NaN", math.NaN(), 0},
		{"Infinity", math.Inf(1), 0},
		{"-Infinity", math.Inf(-1), 0},
		{"string", "600", 0},
		{"object", map[string]any{"seconds": int64(600)}, 0},
		{"array", []any{int64(600)}, 0},
		{"boolean", true, 0},
		{"nil", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := LifetimeSeconds(tc.v)
			if got != tc.want || ok != (tc.want != 0) {
				t.Fatalf("LifetimeSeconds(%v) = %d, %v; want %d", tc.v, got, ok, tc.want)
			}
		})
	}
	if MaxLifetimeSeconds != 315_532_800 {
		t.Fatalf("MaxLifetimeSeconds = %d", MaxLifetimeSeconds)
	}
}

// returnRuntime is a Runtime whose every function returns the value its
// script's name maps to.
type returnRuntime map[string]any

func (returnRuntime) Check(string, string) error { return nil }

func (r returnRuntime) Call(_ context.Context, s *Script, _ *Call) (*Result, error) {
	return &Result{Defined: true, Return: r[s.Name]}, nil
}

// TestDispatcherLifetimeRefusals: an answer that is not a lifetime leaves
// the last good one (or none) in place and is logged naming the script and
// the function.
func TestDispatcherLifetimeRefusals(t *testing.T) {
	rt := returnRuntime{"good": int64(600), "huge": int64(1) << 62, "nan": math.NaN(), "text": "600", "none": nil}
	for _, tc := range []struct {
		name    string
		scripts []string
		want    int64 // 0: no override
		warned  []string
	}{
		{"good", []string{"good"}, 600, nil},
		{"huge is refused", []string{"huge"}, 0, []string{"huge"}},
		{"a refused answer keeps an earlier one", []string{"good", "huge", "nan", "text"}, 600, []string{"huge", "nan", "text"}},
		{"no answer (or NaN, exported as nil) is logged", []string{"none", "good", "none"}, 600, []string{"none", "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			d := NewDispatcher(rt, slog.New(slog.NewTextHandler(&log, nil)))
			var scripts []*Script
			for _, n := range tc.scripts {
				scripts = append(scripts, &Script{Name: n, Kind: KindUpdateToken, Enabled: true})
			}
			got, ok, err := d.Lifetime(context.Background(), scripts, FnAccessTokenLifetime, nil)
			if err != nil || got != tc.want || ok != (tc.want != 0) {
				t.Fatalf("Lifetime = %d, %v, %v; want %d", got, ok, err, tc.want)
			}
			var warned []string
			for _, line := range strings.Split(log.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "function="+string(FnAccessTokenLifetime)) {
					_, rest, _ := strings.Cut(line, "script=")
					name, _, _ := strings.Cut(rest, " ")
					warned = append(warned, name)
				}
			}
			if strings.Join(warned, ",") != strings.Join(tc.warned, ",") {
				t.Fatalf("warned about %v, want %v:\n%s", warned, tc.warned, log.String())
			}
		})
	}
}
