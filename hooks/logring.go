package hooks

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Live log defaults (docs/scripts.md, "Logs").
const (
	// DefaultLogLinesPerScript is how many context.log lines a LogRing
	// keeps per script.
	DefaultLogLinesPerScript = 1000
	// DefaultLogLines is how many it keeps in all.
	DefaultLogLines = 20000
	// logFollowBuffer is how many lines a follower may fall behind before
	// lines are dropped for it.
	logFollowBuffer = 256
	// MaxLogFollowers is how many followers a LogRing serves at once, of
	// all scripts: each holds a stream, its goroutine and up to
	// logFollowBuffer lines (about 1 MiB at most).
	MaxLogFollowers = 32
)

// ErrTooManyFollowers is Follow's answer when MaxLogFollowers follow.
var ErrTooManyFollowers = errors.New("too many followed logs on this instance")

// LogLine is one line a script wrote with context.log, as the live log
// keeps it. Line is redacted (Script.Redact) before it gets here.
type LogLine struct {
	// Seq numbers the lines of a LogRing from 1, in the order they were
	// kept, across scripts.
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Script    string    `json:"script"`
	Version   string    `json:"version"`
	RequestID string    `json:"request_id,omitempty"`
	Phase     string    `json:"phase,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	Function  string    `json:"function"`
	// DurationMS is the duration of the call that wrote the line, when
	// the runtime measured it.
	DurationMS float64 `json:"duration_ms,omitempty"`
	Line       string  `json:"line"`
}

// LogRing keeps the latest context.log lines of each script in memory, for
// GET /admin/v1/scripts/{name}/logs: at most PerScript lines per script
// and Total in all, the oldest going first. It is this instance's: lines
// of calls on other instances are in their rings. Followers get each new
// line of a script on a buffered channel; a follower that does not keep
// up loses lines (counted), never slows a script. It is safe for
// concurrent use.
type LogRing struct {
	perScript, total int

	mu       sync.Mutex
	seq      uint64
	byScript map[string][]LogLine
	// order holds, oldest first, the script and seq of every kept line
	// (and of some already dropped by the per-script bound), for the
	// total bound.
	order     []logRef
	followers map[string]map[*LogFollower]struct{}
	following int // followers of all scripts
}

type logRef struct {
	script string
	seq    uint64
}

// NewLogRing returns a ring keeping perScript lines per script and total
// lines in all (0: the defaults).
func NewLogRing(perScript, total int) *LogRing {
	if perScript <= 0 {
		perScript = DefaultLogLinesPerScript
	}
	if total <= 0 {
		total = DefaultLogLines
	}
	return &LogRing{perScript: perScript, total: total, byScript: map[string][]LogLine{},
		followers: map[string]map[*LogFollower]struct{}{}}
}

// Add keeps lines (their Seq is set here) and hands them to the script's
// followers.
func (r *LogRing) Add(lines ...LogLine) {
	if len(lines) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range lines {
		r.seq++
		l.Seq = r.seq
		kept := append(r.byScript[l.Script], l)
		if len(kept) > r.perScript {
			kept = kept[len(kept)-r.perScript:]
		}
		r.byScript[l.Script] = kept
		r.order = append(r.order, logRef{l.Script, l.Seq})
		for len(r.order) > r.total {
			ref := r.order[0]
			r.order = r.order[1:]
			if s := r.byScript[ref.script]; len(s) > 0 && s[0].Seq == ref.seq {
				if len(s) == 1 {
					delete(r.byScript, ref.script)
				} else {
					r.byScript[ref.script] = s[1:]
				}
			}
		}
		for f := range r.followers[l.Script] {
			select {
			case f.c <- l:
			default:
				f.dropped++
			}
		}
	}
}

// Lines returns, oldest first, at most limit of the script's lines kept
// with a Seq above afterSeq and a Time after since (zero values: no bound);
// the latest ones when there are more.
func (r *LogRing) Lines(script string, afterSeq uint64, since time.Time, limit int) []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []LogLine
	for _, l := range r.byScript[script] {
		if l.Seq > afterSeq && (since.IsZero() || l.Time.After(since)) {
			out = append(out, l)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return append([]LogLine{}, out...)
}

// Len is how many lines the ring keeps in all.
func (r *LogRing) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.byScript {
		n += len(s)
	}
	return n
}

// Forget drops the script's lines (it was deleted) and ends its
// followers: their Lines channel is closed, so that a stream neither
// outlives the script nor shows the lines of a new script of that name.
func (r *LogRing) Forget(script string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byScript, script)
	for f := range r.followers[script] {
		close(f.c)
		f.ended = true
		r.following--
	}
	delete(r.followers, script)
}

// LogFollower receives the new lines of one script (see Follow).
type LogFollower struct {
	c       chan LogLine
	dropped uint64 // under the ring's mu
	ended   bool   // under the ring's mu: Forget or Stop took it out
	r       *LogRing
	script  string
}

// Follow starts following script's new lines; call Stop when done. Past
// MaxLogFollowers it answers ErrTooManyFollowers.
func (r *LogRing) Follow(script string) (*LogFollower, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.following >= MaxLogFollowers {
		return nil, ErrTooManyFollowers
	}
	f := &LogFollower{c: make(chan LogLine, logFollowBuffer), r: r, script: script}
	if r.followers[script] == nil {
		r.followers[script] = map[*LogFollower]struct{}{}
	}
	r.followers[script][f] = struct{}{}
	r.following++
	return f, nil
}

// Lines is where the new lines arrive; it is closed when the script is
// forgotten (deleted).
func (f *LogFollower) Lines() <-chan LogLine { return f.c }

// Dropped is how many lines the follower lost so far by not keeping up.
func (f *LogFollower) Dropped() uint64 {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return f.dropped
}

// Stop ends the following.
func (f *LogFollower) Stop() {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	if f.ended {
		return
	}
	f.ended = true
	f.r.following--
	delete(f.r.followers[f.script], f)
	if len(f.r.followers[f.script]) == 0 {
		delete(f.r.followers, f.script)
	}
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the id of the request it serves, for
// the live log.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// keepLogs puts the lines a call of run, the version of s that served it
// (s itself, its candidate or its last good version), logged into s's
// ring, with what is known of the call: its request, phase, owning client
// (context.client, computed here if it was lazy) and duration.
func (d *Dispatcher) keepLogs(ctx context.Context, s, run *Script, fn Function, hctx map[string]any, res *Result) {
	if d.Logs == nil || res == nil || len(res.Logs) == 0 {
		return
	}
	now := time.Now()
	base := LogLine{Time: now, Script: s.Name, Version: run.Version, RequestID: RequestID(ctx), Function: string(fn),
		DurationMS: float64(res.Duration.Microseconds()) / 1000}
	base.Phase, _ = hctx["phase"].(string)
	client := hctx["client"]
	if lz, ok := client.(Lazy); ok {
		client = lz.Value()
	}
	if m, ok := client.(map[string]any); ok {
		base.ClientID, _ = m["client_id"].(string)
	}
	lines := make([]LogLine, len(res.Logs))
	for i, l := range res.Logs {
		lines[i] = base
		lines[i].Line = run.Redact(l)
	}
	d.Logs.Add(lines...)
}
