package hooks

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func withCandidate(source string, rollout Rollout, percent int) func(*Script) {
	return func(s *Script) { s.Candidate = &Candidate{Source: source, Rollout: rollout, Percent: percent} }
}

// TestCanary: the candidate serves a stable share of token keys near its
// percent, and never a call without a key.
func TestCanary(t *testing.T) {
	for _, tc := range []struct {
		name     string
		percent  int
		key      bool
		min, max int
	}{
		{"0%", 0, true, 0, 0},
		{"100%", 100, true, 1000, 1000},
		{"50%", 50, true, 430, 570},
		{"10%", 10, true, 60, 140},
		{"no token key", 100, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRuntime{}
			d := NewDispatcher(rt, nil)
			s := script("c", "add", 0, withCandidate("deactivate", RolloutCanary, tc.percent))
			d.Replace([]*Script{s})
			served := 0
			for i := range 1000 {
				ctx := context.Background()
				if tc.key {
					ctx = WithRolloutKey(ctx, fmt.Sprintf("token-%d", i))
				}
				var first any
				for round := range 2 {
					out, err := d.Run(ctx, []*Script{s}, FnModifyResponse, map[string]any{"active": true}, nil, DiscardOnFalse)
					if err != nil {
						t.Fatal(err)
					}
					if round == 1 && out.Value["active"] != first {
						t.Fatalf("key %d met two versions", i)
					}
					first = out.Value["active"]
				}
				if first == false {
					served++
				}
			}
			if served < tc.min || served > tc.max {
				t.Fatalf("the candidate served %d of 1000, want %d to %d", served, tc.min, tc.max)
			}
		})
	}
}

// TestShadow: the live answer stands; a difference is reported, whether
// in the edits, the return value or one failing alone; the candidate's
// fetches may only GET or HEAD.
func TestShadow(t *testing.T) {
	for _, tc := range []struct {
		name, live, candidate string
		differs               bool
	}{
		{"the same edits", "deactivate", "deactivate", false},
		{"other edits", "deactivate", "add", true},
		{"the candidate throws", "deactivate", "throw", true},
		{"the live version throws", "throw", "deactivate", true},
		{"both throw", "throw", "throw", false},
		{"another return value", "add-then-false", "string", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRuntime{}
			d := NewDispatcher(rt, nil)
			diffs := 0
			d.OnShadowDifference = func(string) { diffs++ }
			s := script("s", tc.live, 0, withCandidate(tc.candidate, RolloutShadow, 0))
			d.Replace([]*Script{s})
			alone := script("s", tc.live, 0)
			want, _ := NewDispatcher(&fakeRuntime{}, nil).Run(context.Background(), []*Script{alone}, FnModifyResponse, map[string]any{"active": true}, nil, DiscardOnFalse)
			out, err := d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{"active": true}, nil, DiscardOnFalse)
			if err != nil || !Equal(out.Value, want.Value) {
				t.Fatalf("Run = %v, %v; want the live answer %v", out, err, want.Value)
			}
			if (diffs == 1) != tc.differs || diffs > 1 {
				t.Fatalf("%d differences reported, want differs=%v", diffs, tc.differs)
			}
			if len(rt.calls) != 2 || rt.calls[1] != "s"+CandidateSuffix {
				t.Fatalf("calls %v", rt.calls)
			}
			// The live version's fetches go out as the script says; the
			// discarded candidate's may only GET or HEAD.
			if rt.safeOnly[0] || !rt.safeOnly[1] {
				t.Fatalf("SafeFetchOnly of the live and candidate calls: %v, want [false true]", rt.safeOnly)
			}
		})
	}
}

// TestLastGoodFallback: a failing live version is stood in for by the
// last version that succeeded, and FallingBackTo says so until the live
// one succeeds; without one the script is skipped.
func TestLastGoodFallback(t *testing.T) {
	d := NewDispatcher(&fakeRuntime{}, nil)
	version := func(n int, source string) *Script {
		return script("s", source, 0, func(s *Script) {
			s.Number, s.Version, s.OnError = n, fmt.Sprint("v", n), OnErrorLastGood
		})
	}
	run := func(s *Script) map[string]any {
		t.Helper()
		d.Replace([]*Script{s})
		out, err := d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{"active": true}, nil, DiscardOnFalse)
		if err != nil {
			t.Fatal(err)
		}
		return out.Value
	}
	for _, tc := range []struct {
		name        string
		s           *Script
		wantKey     string // the runtime name whose edit is in the answer
		fallingBack int
	}{
		{"the first version fails: nothing earlier", version(1, "throw"), "", 0},
		{"a version succeeds", version(2, "add"), "s", 0},
		{"the next fails: version 2 stands in", version(3, "throw"), "s" + LastGoodSuffix, 2},
		{"and the next", version(4, "string"), "s" + LastGoodSuffix, 2},
		{"a version succeeds again", version(5, "add"), "s", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(tc.s)
			for _, k := range []string{"s", "s" + LastGoodSuffix} {
				if _, has := got[k]; has != (k == tc.wantKey) {
					t.Fatalf("answer %v, want the edit of %q", got, tc.wantKey)
				}
			}
			n, ok := d.FallingBackTo("s")
			if n != tc.fallingBack || ok != (tc.fallingBack != 0) {
				t.Fatalf("FallingBackTo = %d, %v; want %d", n, ok, tc.fallingBack)
			}
		})
	}
}

// TestShadowSampleRedactsSecrets: the logged sample of a shadow
// difference shows the script's secrets as [secret], whichever version
// copied one into its answer.
func TestShadowSampleRedactsSecrets(t *testing.T) {
	const secret = "s3cr3t-api-key"
	for _, tc := range []struct{ name, live, candidate string }{
		{"the candidate leaks", "add", "leak-secret"},
		{"the live version leaks", "leak-secret", "add"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDispatcher(&fakeRuntime{}, nil)
			s := script("s", tc.live, 0, withCandidate(tc.candidate, RolloutShadow, 0), func(s *Script) {
				s.Secrets = map[string]string{"api_key": secret}
			})
			d.Replace([]*Script{s})
			var buf bytes.Buffer
			ctx := WithLogger(context.Background(), slog.New(slog.NewJSONHandler(&buf, nil)))
			if _, err := d.Run(ctx, []*Script{s}, FnModifyResponse, map[string]any{"active": true}, nil, DiscardOnFalse); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if !strings.Contains(out, "differs from the live version") {
				t.Fatalf("no sample logged: %s", out)
			}
			if strings.Contains(out, secret) || !strings.Contains(out, SecretMark) {
				t.Fatalf("the sample shows the secret: %s", out)
			}
		})
	}
}

// TestLastGoodRunsWithCurrentSecrets: secrets are not versioned, so the
// last good version standing in for a failing live one reads the
// script's secrets as they are now, not those it succeeded with.
func TestLastGoodRunsWithCurrentSecrets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets map[string]string // of the failing live version
		want    any               // what the last good version read
	}{
		{"rotated", map[string]string{"api_key": "new-value"}, "new-value"},
		{"removed", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDispatcher(&fakeRuntime{}, nil)
			good := script("s", "leak-secret", 0, func(s *Script) {
				s.Number, s.Version, s.OnError, s.Secrets = 1, "v1", OnErrorLastGood, map[string]string{"api_key": "old-value"}
			})
			failing := script("s", "throw", 0, func(s *Script) {
				s.Number, s.Version, s.OnError, s.Secrets = 2, "v2", OnErrorLastGood, tc.secrets
			})
			for _, s := range []*Script{good, failing} {
				d.Replace([]*Script{s})
				if _, err := d.Run(context.Background(), []*Script{s}, FnModifyResponse, map[string]any{}, nil, DiscardOnFalse); err != nil {
					t.Fatal(err)
				}
			}
			out, err := d.Run(context.Background(), []*Script{failing}, FnModifyResponse, map[string]any{}, nil, DiscardOnFalse)
			if err != nil {
				t.Fatal(err)
			}
			if n, ok := d.FallingBackTo("s"); !ok || n != 1 {
				t.Fatalf("FallingBackTo = %d, %v; want version 1", n, ok)
			}
			if got := out.Value["leaked"]; got != tc.want {
				t.Fatalf("the last good version read %q, want %q", got, tc.want)
			}
		})
	}
}

// TestShadowTimeIsNotTheLiveScripts: the time a shadow candidate runs is
// given back to the request's script budget, so that the live scripts
// after it have what they would have had without it.
func TestShadowTimeIsNotTheLiveScripts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		candidate string
		least     time.Duration // the next script's budget end, past the first's
	}{
		{"a slow candidate", "slow", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRuntime{}
			d := NewDispatcher(rt, nil)
			first := script("first", "add", 0, withCandidate(tc.candidate, RolloutShadow, 0))
			next := script("next", "add", 0)
			d.Replace([]*Script{first, next})
			ctx := WithScriptBudget(context.Background(), time.Hour)
			if _, err := d.Run(ctx, []*Script{first, next}, FnModifyResponse, map[string]any{}, nil, DiscardOnFalse); err != nil {
				t.Fatal(err)
			}
			if len(rt.budgetEnds) != 3 || rt.calls[2] != "next" {
				t.Fatalf("calls %v", rt.calls)
			}
			if gained := rt.budgetEnds[2].Sub(rt.budgetEnds[0]); gained < tc.least {
				t.Fatalf("the next script's budget ends %v after the first's, want at least %v", gained, tc.least)
			}
		})
	}
}
