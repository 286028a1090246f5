package hooks

import (
	"context"
	"sync/atomic"
	"time"
)

type budgetKey struct{}

// budget is the end of a request's script budget (Unix ns); a shadow
// run pushes it back (see extendScriptBudget).
type budget struct{ end atomic.Int64 }

// WithScriptBudget returns ctx carrying a deadline d from now for every
// script call made on its behalf: however many scripts a request runs
// (lifetimes, access, refresh and ID token, a chain of introspection
// scripts), together they run at most d. Unlike a context deadline it
// bounds only the scripts, not the rest of the request's work. An
// earlier budget already in ctx is kept.
func WithScriptBudget(ctx context.Context, d time.Duration) context.Context {
	end := time.Now().Add(d)
	if prev, ok := ScriptDeadline(ctx); ok && prev.Before(end) {
		return ctx
	}
	b := &budget{}
	b.end.Store(end.UnixNano())
	return context.WithValue(ctx, budgetKey{}, b)
}

// ScriptDeadline is the end of the script budget ctx carries, if any.
// Runtimes stop a call at the earliest of its timeout, ctx's deadline
// and this.
func ScriptDeadline(ctx context.Context) (time.Time, bool) {
	b, ok := ctx.Value(budgetKey{}).(*budget)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, b.end.Load()), true
}

// extendScriptBudget pushes the end of ctx's script budget back by d, the
// time a shadow candidate ran: the budget is for the scripts that answer,
// and a discarded run must not leave the live scripts after it less time
// (docs/scripts.md, "Versions, rollback and rollout").
func extendScriptBudget(ctx context.Context, d time.Duration) {
	if b, ok := ctx.Value(budgetKey{}).(*budget); ok {
		b.end.Add(int64(d))
	}
}
