package hooks

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// fakeRuntime runs Go functions in place of scripts: Source names the
// behaviour.
type fakeRuntime struct {
	calls []string
	// safeOnly is each call's SafeFetchOnly.
	safeOnly []bool
	// budgetEnds is the script budget's end each call saw.
	budgetEnds []time.Time
}

func (f *fakeRuntime) Check(name, source string) error { return nil }

func (f *fakeRuntime) Call(ctx context.Context, s *Script, call *Call) (*Result, error) {
	f.calls = append(f.calls, s.Name)
	f.safeOnly = append(f.safeOnly, call.SafeFetchOnly)
	end, _ := ScriptDeadline(ctx)
	f.budgetEnds = append(f.budgetEnds, end)
	arg := map[string]any{}
	if len(call.Args) > 0 {
		for k, v := range call.Args[0].(map[string]any) {
			arg[k] = v
		}
	}
	res := &Result{Defined: true, Args: []any{arg}}
	switch s.Source {
	case "undefined":
		return &Result{}, nil
	case "add":
		arg[s.Name] = call.Context["config"].(map[string]string)["value"]
		res.Return = true
	case "add-then-false":
		arg[s.Name] = "discarded"
		res.Return = false
	case "deactivate":
		arg["active"] = false
		res.Return = true
	case "throw":
		return nil, &ScriptError{Script: s.Name, Function: call.Function, Kind: FailureException, Message: "boom"}
	case "string":
		res.Return = "yes"
	case "slow":
		time.Sleep(50 * time.Millisecond)
		res.Return = true
	case "leak-secret":
		arg["leaked"] = s.Secrets["api_key"]
		res.Return = true
	case "lifetime":
		res.Return = int64(42)
	case "lifetime-bad":
		res.Return = "42"
	}
	return res, nil
}

func script(name, source string, level int, opts ...func(*Script)) *Script {
	s := &Script{Name: name, Kind: KindIntrospection, Source: source, Enabled: true, Level: level,
		Config: map[string]string{"value": name + "-value"}, OnError: OnErrorSkip}
	for _, o := range opts {
		o(s)
	}
	return s
}

func TestSelect(t *testing.T) {
	d := NewDispatcher(&fakeRuntime{}, nil)
	d.Replace([]*Script{
		script("b", "add", 10),
		script("a", "add", 10),
		script("first", "add", 1),
		script("off", "add", 0, func(s *Script) { s.Enabled = false }),
		script("upd", "add", 0, func(s *Script) { s.Kind = KindUpdateToken }),
	})
	names := func(l []*Script) []string {
		var out []string
		for _, s := range l {
			out = append(out, s.Name)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		kind  Kind
		bound []string
		all   bool
		want  []string
	}{
		{"bound, by level then name", KindIntrospection, []string{"b", "a", "first"}, false, []string{"first", "a", "b"}},
		{"disabled and missing skipped", KindIntrospection, []string{"off", "missing", "a"}, false, []string{"a"}},
		{"wrong kind skipped", KindIntrospection, []string{"upd"}, false, nil},
		{"none bound", KindIntrospection, nil, false, nil},
		{"backward compatibility runs all enabled", KindIntrospection, nil, true, []string{"first", "a", "b"}},
		{"backward compatibility only for introspection", KindUpdateToken, []string{"upd"}, true, []string{"upd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(d.Select(tc.kind, tc.bound, tc.all)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	d.Remove("a")
	if got := names(d.Select(KindIntrospection, []string{"a", "b"}, false)); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("after Remove: %v", got)
	}
}

func TestRun(t *testing.T) {
	base := map[string]any{"active": true, "scope": "x"}
	deny := func(s *Script) { s.OnError = OnErrorDeny }
	for _, tc := range []struct {
		name     string
		scripts  []*Script
		chain    Chain
		want     map[string]any
		falseBy  string
		deniedBy string
	}{
		{"edits kept in order", []*Script{script("a", "add", 1), script("b", "add", 2)}, DiscardOnFalse,
			map[string]any{"active": true, "scope": "x", "a": "a-value", "b": "b-value"}, "", ""},
		{"false discards", []*Script{script("a", "add-then-false", 1), script("b", "add", 2)}, DiscardOnFalse,
			map[string]any{"active": true, "scope": "x", "b": "b-value"}, "", ""},
		{"false stops", []*Script{script("a", "add-then-false", 1), script("b", "add", 2)}, StopOnFalse,
			map[string]any{"active": true, "scope": "x"}, "a", ""},
		{"throw skipped", []*Script{script("a", "throw", 1), script("b", "add", 2)}, DiscardOnFalse,
			map[string]any{"active": true, "scope": "x", "b": "b-value"}, "", ""},
		{"wrong return type skipped", []*Script{script("a", "string", 1)}, DiscardOnFalse,
			map[string]any{"active": true, "scope": "x"}, "", ""},
		{"undefined function ignored", []*Script{script("a", "undefined", 1)}, DiscardOnFalse,
			map[string]any{"active": true, "scope": "x"}, "", ""},
		{"throw with deny", []*Script{script("a", "throw", 1, deny)}, DiscardOnFalse, nil, "", "a"},
		{"wrong type with deny", []*Script{script("a", "string", 1, deny)}, DiscardOnFalse, nil, "", "a"},
		{"Done stops the chain", []*Script{script("a", "deactivate", 1), script("b", "add", 2)},
			Chain{Done: func(v map[string]any) bool { return v["active"] == false }},
			map[string]any{"active": false, "scope": "x"}, "", ""},
		{"without Done the chain goes on", []*Script{script("a", "deactivate", 1), script("b", "add", 2)}, DiscardOnFalse,
			map[string]any{"active": false, "scope": "x", "b": "b-value"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var failures []FailureKind
			d := NewDispatcher(&fakeRuntime{}, nil)
			d.OnFailure = func(_ string, k FailureKind) { failures = append(failures, k) }
			out, err := d.Run(context.Background(), tc.scripts, FnModifyResponse, base, map[string]any{}, tc.chain)
			if tc.deniedBy != "" {
				var de *DeniedError
				if !errors.As(err, &de) || de.Script != tc.deniedBy {
					t.Fatalf("err = %v, want denied by %s", err, tc.deniedBy)
				}
				if len(failures) != 1 {
					t.Fatalf("failures = %v", failures)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out.Value, tc.want) || out.FalseBy != tc.falseBy {
				t.Fatalf("value %v falseBy %q, want %v %q", out.Value, out.FalseBy, tc.want, tc.falseBy)
			}
			if len(base) != 2 {
				t.Fatalf("input changed: %v", base)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	d := NewDispatcher(&fakeRuntime{}, nil)
	for _, tc := range []struct {
		name    string
		scripts []*Script
		want    int64
		ok      bool
	}{
		{"number overrides", []*Script{script("a", "lifetime", 1)}, 42, true},
		{"non-number keeps", []*Script{script("a", "lifetime-bad", 1)}, 0, false},
		{"undefined keeps", []*Script{script("a", "undefined", 1)}, 0, false},
		{"throw keeps", []*Script{script("a", "throw", 1)}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := d.Lifetime(context.Background(), tc.scripts, "getAccessTokenLifetimeInSeconds", nil)
			if err != nil || got != tc.want || ok != tc.ok {
				t.Fatalf("got %d %v %v", got, ok, err)
			}
		})
	}
}

func TestRestoreProtected(t *testing.T) {
	orig := map[string]any{"iss": "https://a", "exp": int64(10), "sub": "x"}
	edited := map[string]any{"iss": "https://evil", "exp": float64(10), "sub": "y", "jti": "new"}
	changed := RestoreProtected(orig, edited, []string{"iss", "exp", "jti"})
	if !reflect.DeepEqual(changed, []string{"iss", "jti"}) {
		t.Fatalf("changed = %v", changed)
	}
	want := map[string]any{"iss": "https://a", "exp": int64(10), "sub": "y"}
	if !reflect.DeepEqual(edited, want) {
		t.Fatalf("edited = %v", edited)
	}
}

// forgettingRuntime records the names the dispatcher tells it to forget.
type forgettingRuntime struct {
	fakeRuntime
	forgotten []string
}

func (f *forgettingRuntime) Forget(name string) { f.forgotten = append(f.forgotten, name) }

// TestRemoveForgetsWhatARefreshDropped: a refresh that read the database
// before a script was created drops it from the set; a dry run then makes
// state for it again (under its dry-run name), and deleting it here must
// still forget that state and tell OnRemove, though the set no longer
// holds it.
func TestRemoveForgetsWhatARefreshDropped(t *testing.T) {
	rt := &forgettingRuntime{}
	d := NewDispatcher(rt, nil)
	var removed []string
	d.OnRemove = func(name string) { removed = append(removed, name) }
	d.Put(&Script{Name: "x", Kind: KindIntrospection, Enabled: true, Version: "1"})
	d.Replace(nil) // the stale refresh
	rt.forgotten, removed = nil, nil
	d.Remove("x")
	for _, want := range []string{"x", "x" + DryRunSuffix, "x" + CandidateSuffix, "x" + LastGoodSuffix} {
		if !slices.Contains(rt.forgotten, want) {
			t.Errorf("Remove did not forget %s: %v", want, rt.forgotten)
		}
	}
	if !reflect.DeepEqual(removed, []string{"x"}) {
		t.Errorf("OnRemove heard %v, want [x]", removed)
	}
	// A refresh that drops a script nobody deleted here still forgets it
	// once, and removing a name never known forgets it all the same.
	rt.forgotten, removed = nil, nil
	d.Remove("never-known")
	if !slices.Contains(rt.forgotten, "never-known"+DryRunSuffix) || !reflect.DeepEqual(removed, []string{"never-known"}) {
		t.Errorf("forgotten %v, removed %v", rt.forgotten, removed)
	}
}
