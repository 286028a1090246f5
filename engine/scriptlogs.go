package engine

import (
	"context"
	"errors"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// MaxScriptLogLimit is the most lines GET /admin/v1/scripts/{name}/logs
// answers at once; DefaultScriptLogLimit is how many without ?limit.
const (
	MaxScriptLogLimit     = hooks.DefaultLogLinesPerScript
	DefaultScriptLogLimit = 100
)

// ScriptLogs returns this instance's latest context.log lines of the
// script called name (docs/scripts.md, "Logs"): at most limit, with a
// sequence number above afterSeq and a time after since (zero: no bound),
// oldest first.
func (e *Engine) ScriptLogs(ctx context.Context, name string, afterSeq uint64, since time.Time, limit int) ([]hooks.LogLine, error) {
	ring, err := e.scriptLogRing(ctx, name)
	if err != nil {
		return nil, err
	}
	out := ring.Lines(name, afterSeq, since, limit)
	if out == nil {
		out = []hooks.LogLine{}
	}
	return out, nil
}

// FollowScriptLogs starts following the new context.log lines of the
// script called name on this instance; the caller stops the follower.
func (e *Engine) FollowScriptLogs(ctx context.Context, name string) (*hooks.LogFollower, error) {
	ring, err := e.scriptLogRing(ctx, name)
	if err != nil {
		return nil, err
	}
	f, err := ring.Follow(name)
	if errors.Is(err, hooks.ErrTooManyFollowers) {
		return nil, Errorf(CodeTemporarilyUnavailable, "%d logs are followed on this instance, the most it serves; try again later", hooks.MaxLogFollowers)
	}
	return f, err
}

// scriptLogRing is the live log, after checking that the script exists.
func (e *Engine) scriptLogRing(ctx context.Context, name string) (*hooks.LogRing, error) {
	if e.hooks == nil || e.hooks.Logs == nil {
		return nil, Errorf(CodeServerError, "scripts are not enabled")
	}
	if _, err := e.st.Scripts.ScriptByName(ctx, name); err != nil {
		return nil, adminErr(err, "script", name)
	}
	return e.hooks.Logs, nil
}
