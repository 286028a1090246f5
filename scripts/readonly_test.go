package scripts

import (
	"context"
	"reflect"
	"testing"

	"github.com/keyhook/keyhook/hooks"
)

// TestContextLazy: a hooks.Lazy context value is computed only when a
// script reads it, once per call, and reads like any other value.
func TestContextLazy(t *testing.T) {
	e := newEngine(Options{})
	var calls int
	hctx := map[string]any{
		"phase": "token",
		"user":  lazyFunc(func() any { calls++; return map[string]any{"username": "alice", "roles": []string{"r"}} }),
		"none":  lazyFunc(func() any { calls++; return nil }),
	}
	s := js(`function f(context) { return [context.user.username, context.user === context.user, context.user.roles[0], context.none, Object.keys(context).join(",")] }`)
	res, err := e.Call(context.Background(), s, &hooks.Call{Function: "f", Context: hctx})
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{"alice", true, "r", nil, "none,phase,user"}; !reflect.DeepEqual(res.Return, want) || calls != 2 {
		t.Errorf("Return = %#v (want %#v), %d computations", res.Return, want, calls)
	}
	calls = 0
	if _, err := e.Call(context.Background(), js(`function f(context) { return context.phase }`), &hooks.Call{Function: "f", Context: hctx}); err != nil || calls != 0 {
		t.Errorf("unread lazy values computed %d times (%v)", calls, err)
	}
}

// lazyFunc is a hooks.Lazy made of a function.
type lazyFunc func() any

func (f lazyFunc) Value() any { return f() }
