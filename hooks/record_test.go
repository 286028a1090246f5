package hooks

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

type lazyMap map[string]any

func (l lazyMap) Value() any { return map[string]any(l) }

// TestRecordInputs: the dispatcher keeps, per script that records its
// inputs, the newest RecordInputs calls of the live version as the
// script received them, bounded in count and bytes, without config and
// secrets (docs/scripts.md, "Replay").
func TestRecordInputs(t *testing.T) {
	big := strings.Repeat("x", MaxRecordedInputBytes)
	for _, tc := range []struct {
		name        string
		source      string
		record      int
		args        func(i int) map[string]any
		calls       int
		limit       int
		newVersion  bool // the script is written again after the calls
		wantOK      bool
		wantInputs  []float64 // the "i" of each input kept, oldest first
		wantDropped int64
		wantError   bool
	}{
		{name: "off", source: "add", record: 0, calls: 3, wantOK: false},
		{name: "the newest N", source: "add", record: 3, calls: 10, wantOK: true, wantInputs: []float64{7, 8, 9}},
		{name: "limit", source: "add", record: 5, calls: 4, limit: 2, wantOK: true, wantInputs: []float64{2, 3}},
		{name: "fewer calls than N", source: "add", record: 5, calls: 2, wantOK: true, wantInputs: []float64{0, 1}},
		{name: "too big is dropped and counted", source: "add", record: 5, calls: 3, wantOK: true,
			args: func(i int) map[string]any {
				if i == 1 {
					return map[string]any{"i": i, "big": big}
				}
				return map[string]any{"i": i}
			}, wantInputs: []float64{0, 2}, wantDropped: 1},
		{name: "a failed call is kept with its error", source: "throw", record: 2, calls: 1, wantOK: true,
			wantInputs: []float64{0}, wantError: true},
		{name: "an undefined function is not kept", source: "undefined", record: 2, calls: 2, wantOK: true},
		{name: "a new version starts empty", source: "add", record: 3, calls: 2, newVersion: true, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDispatcher(&fakeRuntime{}, nil)
			s := script("rec", tc.source, 1, func(s *Script) { s.RecordInputs, s.Version = tc.record, "v1" })
			d.Replace([]*Script{s})
			for i := range tc.calls {
				arg := map[string]any{"i": i}
				if tc.args != nil {
					arg = tc.args(i)
				}
				hctx := map[string]any{"phase": "introspection", "client": lazyMap{"client_id": "app"},
					"secrets": map[string]any{"k": "hidden-secret"}}
				ctx := WithRequestID(context.Background(), "req-"+string(rune('a'+i)))
				if _, err := d.Run(ctx, []*Script{s}, FnModifyResponse, arg, hctx, DiscardOnFalse); err != nil {
					t.Fatal(err)
				}
			}
			if tc.newVersion {
				next := *s
				next.Version = "v2"
				d.Put(&next)
			}
			got, dropped, ok := d.RecordedInputs("rec", tc.limit)
			if ok != tc.wantOK || dropped != tc.wantDropped || len(got) != len(tc.wantInputs) {
				t.Fatalf("ok %v, dropped %d, %d inputs; want %v, %d, %v", ok, dropped, len(got), tc.wantOK, tc.wantDropped, tc.wantInputs)
			}
			for k, in := range got {
				if in.Args[0].(map[string]any)["i"] != tc.wantInputs[k] {
					t.Errorf("input %d: args %v, want i = %v", k, in.Args, tc.wantInputs[k])
				}
				if in.Function != FnModifyResponse || in.Phase != "introspection" || in.ClientID != "app" ||
					!strings.HasPrefix(in.RequestID, "req-") || in.RecordedAt.IsZero() {
					t.Errorf("input %d: %+v", k, in)
				}
				if _, has := in.Context["config"]; has {
					t.Errorf("input %d holds the config: %v", k, in.Context)
				}
				raw, _ := json.Marshal(in)
				if strings.Contains(string(raw), "hidden-secret") {
					t.Errorf("input %d holds a secret: %s", k, raw)
				}
				if (in.Live.Error != nil) != tc.wantError {
					t.Errorf("input %d: live %+v", k, in.Live)
				}
				if tc.wantError && !Equal(in.Live.ArgsAfter, in.Args) {
					t.Errorf("input %d: a failed call's args_after %v, want the args %v", k, in.Live.ArgsAfter, in.Args)
				}
				if !tc.wantError && in.Live.Result != true {
					t.Errorf("input %d: live %+v", k, in.Live)
				}
			}
			if len(got) > 0 {
				// Each answer is a copy: changing it changes no recording.
				got[0].Args[0].(map[string]any)["i"] = -1.0
				again, _, _ := d.RecordedInputs("rec", tc.limit)
				if again[0].Args[0].(map[string]any)["i"] != tc.wantInputs[0] {
					t.Error("a caller changed a recorded input")
				}
			}
		})
	}
}

// TestRecordInputsBytes: whatever RecordInputs says, a script's recorded
// inputs stay within maxRecordedBytes, the oldest going first.
func TestRecordInputsBytes(t *testing.T) {
	r := newRecording("v", MaxRecordInputs)
	item := make([]byte, MaxRecordedInputBytes)
	for range 2 * maxRecordedBytes / MaxRecordedInputBytes {
		r.add(item)
	}
	if r.bytes > maxRecordedBytes || r.n != maxRecordedBytes/MaxRecordedInputBytes {
		t.Fatalf("%d inputs, %d bytes; want %d inputs within %d bytes", r.n, r.bytes, maxRecordedBytes/MaxRecordedInputBytes, maxRecordedBytes)
	}
	if got := len(r.last(0)); got != r.n {
		t.Fatalf("last(0) gave %d, want %d", got, r.n)
	}
}
