package scripts

import (
	"context"
	"errors"
	"log/slog"

	"github.com/keyhook/keyhook/hooks"
)

// callRedacted runs call as run does, keeping s's secret values out of
// what the call says about itself: the lines context.log writes (to the
// logger and in Result.Logs) and the error's message show hooks.SecretMark
// where a value was (docs/scripts.md, "Secrets"). This covers both
// isolation modes: a worker's log records reach the server's logger
// through the call's Logger too. Return and Args are the script's answer
// and are left as they are: what a script puts in a token is its own
// doing.
func (e *Runtime) callRedacted(ctx context.Context, s *hooks.Script, call *hooks.Call) (*hooks.Result, error) {
	cp := *call
	cp.Logger = slog.New(&redactHandler{h: e.logger(call).Handler(), s: s})
	res, err := e.run(ctx, s, &cp)
	if res != nil && len(res.Logs) > 0 {
		out := *res
		out.Logs = make([]string, len(res.Logs))
		for i, l := range res.Logs {
			out.Logs[i] = s.Redact(l)
		}
		res = &out
	}
	return res, redactError(s, err)
}

// redactError is err with s's secret values taken out of its message.
func redactError(s *hooks.Script, err error) error {
	if err == nil {
		return nil
	}
	var se *hooks.ScriptError
	if errors.As(err, &se) {
		if msg := s.Redact(se.Message); msg != se.Message {
			cp := *se
			cp.Message = msg
			return &cp
		}
		return err
	}
	if msg := s.Redact(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

// redactHandler is a slog.Handler that redacts a script's secret values
// in the message and the attributes of each record before h sees it.
type redactHandler struct {
	h slog.Handler
	s *hooks.Script
}

func (r *redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return r.h.Enabled(ctx, l) }

func (r *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, r.s.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(r.attr(a))
		return true
	})
	return r.h.Handle(ctx, out)
}

func (r *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString, slog.KindAny:
		if s := v.String(); r.s.Redact(s) != s {
			return slog.String(a.Key, r.s.Redact(s))
		}
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = r.attr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return a
}

func (r *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = r.attr(a)
	}
	return &redactHandler{h: r.h.WithAttrs(out), s: r.s}
}

func (r *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{h: r.h.WithGroup(name), s: r.s}
}
