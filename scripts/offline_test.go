package scripts

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestFixtureDiff: the paths where a call's result or edits differ from
// a fixture's expectation (keyhook script test).
func TestFixtureDiff(t *testing.T) {
	tests := []struct {
		name      string
		want, got any
		diff      []string
	}{
		{"same", map[string]any{"a": []any{1.0, "x"}}, map[string]any{"a": []any{1.0, "x"}}, nil},
		{"changed field", map[string]any{"a": map[string]any{"b": "x"}}, map[string]any{"a": map[string]any{"b": "y"}},
			[]string{`v.a.b: expected "x", got "y"`}},
		{"missing and unexpected", map[string]any{"a": 1.0}, map[string]any{"b": true},
			[]string{`v.a: expected 1, missing`, `v.b: not expected, got true`}},
		{"array lengths", []any{"x"}, []any{"x", "y"},
			[]string{`v[1]: not expected, got "y"`}},
		{"key that is not a name", map[string]any{"a-b": 1.0}, map[string]any{"a-b": 2.0},
			[]string{`v["a-b"]: expected 1, got 2`}},
		{"type", map[string]any{"a": "1"}, map[string]any{"a": 1.0},
			[]string{`v.a: expected "1", got 1`}},
		{"null", nil, false, []string{`v: expected null, got false`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range diff("v", tt.want, tt.got) {
				got = append(got, d.String())
			}
			if !reflect.DeepEqual(got, tt.diff) {
				t.Errorf("diff = %q, want %q", got, tt.diff)
			}
		})
	}
}

// TestReadFixture: a fixture that is not valid is an error naming the
// file and what is wrong.
func TestReadFixture(t *testing.T) {
	tests := []struct {
		name, body, err string
	}{
		{"valid", `{"function": "modifyResponse", "args": [{}], "expect": {"result": true, "args_after": [{}], "error": null}}`, ""},
		{"expected error only", `{"function": "modifyResponse", "expect": {"error": "boom"}}`, ""},
		{"unknown field", `{"function": "modifyResponse", "expect": {"error": "x"}, "extra": 1}`, `unknown field "extra"`},
		{"unknown context field", `{"function": "f", "context": {"log": 1}, "expect": {"error": "x"}}`, `unknown field "context.log"`},
		{"config not strings", `{"function": "f", "context": {"config": {"n": 1}}, "expect": {"error": "x"}}`, `"context.config.n" must be a string`},
		{"no function", `{"expect": {"error": "x"}}`, `"function" must be`},
		{"timeout", `{"function": "f", "timeout_ms": 5001, "expect": {"error": "x"}}`, `"timeout_ms" must be between 1 and 5000`},
		{"no result", `{"function": "f", "expect": {"args_after": []}}`, `"expect.result" is needed`},
		{"args_after not an array", `{"function": "f", "expect": {"result": 1, "args_after": {}}}`, `"expect.args_after" must be an array`},
		{"two values", `{"function": "f", "expect": {"error": "x"}} {}`, "more than one JSON value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.test.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadFixture(path)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("ReadFixture: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), path)):
				t.Fatalf("ReadFixture: %v, want an error naming %s and %q", err, path, tt.err)
			}
		})
	}
}

// TestFixtures: the fixtures of a script are BASENAME.test.json and
// BASENAME.*.test.json beside it, in name order, and no others.
func TestFixtures(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"s.js", "s.test.json", "s.b.test.json", "s.a.test.json", "sx.test.json", "s.json", "t.test.json"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Fixtures(filepath.Join(dir, "s.js"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "s.test.json"), filepath.Join(dir, "s.a.test.json"), filepath.Join(dir, "s.b.test.json")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fixtures = %q, want %q", got, want)
	}
}
