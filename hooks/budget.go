package hooks

import (
	"context"
	"time"
)

type budgetKey struct{}

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
	return context.WithValue(ctx, budgetKey{}, end)
}

// ScriptDeadline is the end of the script budget ctx carries, if any.
// Runtimes stop a call at the earliest of its timeout, ctx's deadline
// and this.
func ScriptDeadline(ctx context.Context) (time.Time, bool) {
	end, ok := ctx.Value(budgetKey{}).(time.Time)
	return end, ok
}
