package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Replay (docs/scripts.md, "Replay"): a version of a script, or unsaved
// source, runs on the inputs its live version recorded on this instance
// (hooks/record.go), each through the dry run (TestScript), so under the
// same limits, isolation and redaction, touching no token and no stored
// state; the answer says where it differs from what the live version
// gave.

// replayBudget bounds a whole replay: the inputs not run when it is spent
// fail (cancelled) and count as errors.
const replayBudget = 30 * time.Second

// ReplayRequest is the body of POST /admin/v1/scripts/{name}/replay: one
// of Version and Source, and at most how many of the newest inputs to
// replay (absent: all that are recorded).
type ReplayRequest struct {
	Version *int   `json:"version"`
	Source  string `json:"source"`
	Limit   *int   `json:"limit"`
}

// ReplayResult is its answer.
type ReplayResult struct {
	Inputs []*ReplayedInput `json:"inputs"`
	Totals ReplayTotals     `json:"totals"`
}

// ReplayedInput is one recorded input, what the live version gave, and
// what the replayed code gave.
type ReplayedInput struct {
	RequestID  string               `json:"request_id"`
	RecordedAt time.Time            `json:"recorded_at"`
	Function   string               `json:"function"`
	Phase      string               `json:"phase"`
	ClientID   string               `json:"client_id"`
	Live       hooks.RecordedResult `json:"live"`
	Replayed   hooks.RecordedResult `json:"replayed"`
	// Same is true when both failed, or both answered the same result
	// and left the same arguments.
	Same bool `json:"same"`
}

// ReplayTotals counts the inputs replayed, those whose outcome is the
// same and different, and the replays that failed (of either). Dropped
// counts the calls not recorded because they were bigger than
// hooks.MaxRecordedInputBytes.
type ReplayTotals struct {
	Inputs    int   `json:"inputs"`
	Same      int   `json:"same"`
	Different int   `json:"different"`
	Errors    int   `json:"errors"`
	Dropped   int64 `json:"dropped"`
}

// ReplayScript runs a version or unsaved source of the script called name
// on the inputs its live version recorded here.
func (e *Engine) ReplayScript(ctx context.Context, name string, req *ReplayRequest) (*ReplayResult, error) {
	if e.hooks == nil {
		return nil, Errorf(CodeServerError, "scripts are not enabled")
	}
	if (req.Version == nil) == (req.Source == "") {
		return nil, fieldError("version", "give either version or source")
	}
	if req.Version != nil && *req.Version < 1 {
		return nil, fieldError("version", "must be a version number (1 or more)")
	}
	limit := 0
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > hooks.MaxRecordInputs {
			return nil, fieldError("limit", "must be between 1 and %d", hooks.MaxRecordInputs)
		}
		limit = *req.Limit
	}
	s, err := e.st.Scripts.ScriptByName(ctx, name)
	if err != nil {
		return nil, adminErr(err, "script", name)
	}
	// Replayed code runs with the script's isolation: in the server's
	// own process for an inline script, which only keyhook:admin may
	// trust code with (engine/admin_delegation.go).
	if delegated(ctx) && s.Isolation == hooks.IsolationInline {
		return nil, Errorf(CodeInsufficientScope, "isolation: only %s may replay code on a script that runs inline", AdminScope)
	}
	src, cfg := req.Source, s.Config
	if req.Version != nil {
		if src, cfg, err = e.versionSource(ctx, name, *req.Version); err != nil {
			return nil, err
		}
	}
	if s.RecordInputs == 0 {
		return nil, Errorf(CodeConflict, "record_inputs: script %q records no inputs to replay", name)
	}
	inputs, dropped, _ := e.hooks.RecordedInputs(name, limit)
	ctx, cancel := context.WithTimeout(ctx, replayBudget)
	defer cancel()
	out := &ReplayResult{Inputs: make([]*ReplayedInput, 0, len(inputs)), Totals: ReplayTotals{Dropped: dropped}}
	for _, in := range inputs {
		hctx := in.Context
		if hctx == nil {
			hctx = map[string]any{}
		}
		c := make(map[string]any, len(cfg))
		for k, v := range cfg {
			c[k] = v
		}
		hctx["config"] = c
		run, err := e.TestScript(ctx, name, &DryRunRequest{Function: string(in.Function), Args: in.Args, Context: hctx, Source: src,
			safeFetchOnly: true})
		if err != nil && ctx.Err() == nil {
			return nil, err // the source does not compile, or the script is gone
		}
		if err != nil {
			// The budget is spent (or the caller gone) while the dry run
			// read the script: this input fails like those it runs.
			msg := "not replayed: the replay ran out of time"
			run = &DryRunResult{ArgsAfter: in.Args, Error: &msg}
		}
		ri := &ReplayedInput{RequestID: in.RequestID, RecordedAt: in.RecordedAt, Function: string(in.Function),
			Phase: in.Phase, ClientID: in.ClientID, Live: in.Live,
			Replayed: hooks.RecordedResult{Result: run.Result, ArgsAfter: run.ArgsAfter, Error: run.Error}}
		ri.Same = sameOutcome(ri.Live, ri.Replayed)
		out.Inputs = append(out.Inputs, ri)
		out.Totals.Inputs++
		if ri.Same {
			out.Totals.Same++
		} else {
			out.Totals.Different++
		}
		if run.Error != nil {
			out.Totals.Errors++
		}
	}
	return out, nil
}

// versionSource is the source and config of version number of a script.
func (e *Engine) versionSource(ctx context.Context, name string, number int) (string, map[string]string, error) {
	vs, err := e.versionStore()
	if err != nil {
		return "", nil, err
	}
	v, err := vs.ScriptVersion(ctx, name, number)
	if errors.Is(err, ErrNotFound) {
		return "", nil, Errorf(CodeNotFound, "script %q has no version %d", name, number)
	}
	if err != nil {
		return "", nil, storeFailure(err)
	}
	var doc ScriptDoc
	if err := json.Unmarshal(v.Snapshot, &doc); err != nil {
		return "", nil, Wrap(CodeServerError, err, fmt.Sprintf("version %d of script %q cannot be read", number, name))
	}
	return doc.Source, doc.Config, nil
}

// sameOutcome reports whether two outcomes agree: both failed, or both
// answered equal results and arguments.
func sameOutcome(a, b hooks.RecordedResult) bool {
	if (a.Error != nil) || (b.Error != nil) {
		return a.Error != nil && b.Error != nil
	}
	return hooks.Equal(a.Result, b.Result) && hooks.Equal(a.ArgsAfter, b.ArgsAfter)
}
