package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Recorded inputs (docs/scripts.md, "Replay"). A script with RecordInputs
// set has the inputs of its live version's calls kept in memory on the
// instance that served them, in a ring per script: the function, its
// arguments and context as the script received them, and what the live
// version answered. POST /admin/v1/scripts/{name}/replay runs another
// version on them. The ring belongs to one version: a new version of the
// script (any write) starts an empty one, and a script that stops
// recording drops its ring.
//
// What is kept is a copy, encoded as JSON when recorded: it cannot change
// afterwards, and its size is known. The context is kept without
// context.config (replay gives the script's own) and without
// context.secrets, and context.request has no credentials to begin with
// (docs/scripts.md, "context").

// Bounds of recording.
const (
	// MaxRecordInputs is the largest RecordInputs.
	MaxRecordInputs = 1000
	// MaxRecordedInputBytes bounds one recorded input (encoded as JSON);
	// a bigger one is not kept, only counted.
	MaxRecordedInputBytes = 64 << 10
	// maxRecordedBytes bounds the inputs kept per script: past it the
	// oldest go, whatever RecordInputs says.
	maxRecordedBytes = 16 << 20
)

// RecordedInput is one recorded call of a script's live version.
type RecordedInput struct {
	RequestID  string    `json:"request_id"`
	RecordedAt time.Time `json:"recorded_at"`
	Function   Function  `json:"function"`
	Phase      string    `json:"phase"`
	ClientID   string    `json:"client_id"`
	// Args and Context are what the script received (Context without
	// config and secrets, its lazy values resolved).
	Args    []any          `json:"args"`
	Context map[string]any `json:"context"`
	Live    RecordedResult `json:"live"`
}

// RecordedResult is what the live version answered: its return value and
// its arguments after the call, or the error it failed with (then
// ArgsAfter holds the arguments as given, as a dry run answers).
type RecordedResult struct {
	Result    any     `json:"result"`
	ArgsAfter []any   `json:"args_after"`
	Error     *string `json:"error"`
}

// recording is the ring of one version of one script. It is safe for
// concurrent use.
type recording struct {
	version string
	dropped atomic.Int64

	mu    sync.Mutex
	ring  [][]byte // capacity RecordInputs; ring[start] is the oldest
	start int
	n     int
	bytes int
}

func newRecording(version string, capacity int) *recording {
	return &recording{version: version, ring: make([][]byte, min(capacity, MaxRecordInputs))}
}

// add keeps raw as the newest input, dropping the oldest ones past the
// ring's capacity or maxRecordedBytes.
func (r *recording) add(raw []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.n > 0 && (r.n == len(r.ring) || r.bytes+len(raw) > maxRecordedBytes) {
		r.bytes -= len(r.ring[r.start])
		r.ring[r.start] = nil
		r.start = (r.start + 1) % len(r.ring)
		r.n--
	}
	r.ring[(r.start+r.n)%len(r.ring)] = raw
	r.n++
	r.bytes += len(raw)
}

// last is the newest limit inputs (all for limit <= 0), oldest first.
func (r *recording) last(limit int) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([][]byte, n)
	for i := range n {
		out[i] = r.ring[(r.start+r.n-n+i)%len(r.ring)]
	}
	return out
}

func (d *Dispatcher) recordingMap() map[string]*recording {
	if m := d.recordings.Load(); m != nil {
		return *m
	}
	return nil
}

// keepRecordings makes the rings of byName: a version's ring is kept
// while the version stays; a new version, or one that starts recording,
// gets an empty ring. d.mu must be held.
func (d *Dispatcher) keepRecordings(byName map[string]*Script) {
	old := d.recordingMap()
	out := make(map[string]*recording)
	for name, s := range byName {
		if s.RecordInputs <= 0 {
			continue
		}
		if r := old[name]; r != nil && r.version == s.Version && len(r.ring) == min(s.RecordInputs, MaxRecordInputs) {
			out[name] = r
			continue
		}
		out[name] = newRecording(s.Version, s.RecordInputs)
	}
	d.recordings.Store(&out)
}

// record keeps a call of fn of run, the version of s that served it, with
// what the runtime gave, when s records its inputs and run is its live
// version. A call that did not run (the function is not defined, the
// request ended) is not kept. It runs on the request's goroutine, right
// after the call: the context's lazy values may be read there only, and
// the token they show has not changed yet.
func (d *Dispatcher) record(ctx context.Context, s, run *Script, fn Function, args []any, hctx map[string]any, res *Result, err error) {
	if run != s || s.RecordInputs <= 0 {
		return
	}
	rec := d.recordingMap()[s.Name]
	if rec == nil || rec.version != s.Version {
		return
	}
	var se *ScriptError
	if err == nil && !res.Defined || errors.As(err, &se) && se.Kind == FailureCancelled {
		return
	}
	in := RecordedInput{RequestID: RequestID(ctx), RecordedAt: time.Now().UTC(), Function: fn,
		Args: args, Context: recordedContext(hctx)}
	if in.Args == nil {
		in.Args = []any{}
	}
	in.Phase, _ = in.Context["phase"].(string)
	if c, ok := in.Context["client"].(map[string]any); ok {
		in.ClientID, _ = c["client_id"].(string)
	}
	if err != nil {
		msg := s.Redact(err.Error())
		in.Live = RecordedResult{ArgsAfter: in.Args, Error: &msg}
	} else {
		in.Live = RecordedResult{Result: res.Return, ArgsAfter: res.Args}
		if in.Live.ArgsAfter == nil {
			in.Live.ArgsAfter = []any{}
		}
	}
	// A script may have copied one of its secrets into what it returned
	// or edited (or an earlier script into its arguments): the recording
	// shows such values as [secret], as the live log does.
	if len(s.Secrets) > 0 {
		in.Args, _ = s.RedactValue(in.Args).([]any)
		in.Live.Result = s.RedactValue(in.Live.Result)
		in.Live.ArgsAfter, _ = s.RedactValue(in.Live.ArgsAfter).([]any)
	}
	raw, jerr := json.Marshal(&in)
	if jerr != nil || len(raw) > MaxRecordedInputBytes {
		rec.dropped.Add(1)
		return
	}
	rec.add(raw)
}

// recordedContext is hctx as a script read it, its lazy values resolved,
// without the script's config and secrets.
func recordedContext(hctx map[string]any) map[string]any {
	out := make(map[string]any, len(hctx))
	for k, v := range hctx {
		switch k {
		case "config", "secrets", "log":
			continue
		}
		if lz, ok := v.(Lazy); ok {
			v = lz.Value()
		}
		out[k] = v
	}
	return out
}

// RecordedInputs returns the newest limit inputs recorded on this instance
// for the live version of the script called name (all of them for limit
// <= 0), oldest first, each a fresh copy; and how many calls were not kept
// because they were bigger than MaxRecordedInputBytes. ok is false when
// the script records no inputs here.
func (d *Dispatcher) RecordedInputs(name string, limit int) (inputs []*RecordedInput, dropped int64, ok bool) {
	rec := d.recordingMap()[name]
	if rec == nil {
		return nil, 0, false
	}
	raws := rec.last(limit)
	inputs = make([]*RecordedInput, 0, len(raws))
	for _, raw := range raws {
		var in RecordedInput
		if err := json.Unmarshal(raw, &in); err == nil {
			inputs = append(inputs, &in)
		}
	}
	return inputs, rec.dropped.Load(), true
}
