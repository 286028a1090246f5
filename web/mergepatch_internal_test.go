package web

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestMergePatch runs the examples of RFC 7396 Appendix A and a few more
// (nested removal, numbers kept exact, a target that is not an object).
func TestMergePatch(t *testing.T) {
	for _, tc := range []struct{ name, target, patch, want string }{
		{"A.1 replace", `{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{"A.2 add", `{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{"A.3 remove", `{"a":"b"}`, `{"a":null}`, `{}`},
		{"A.4 remove one", `{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{"A.5 array replaces", `{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{"A.6 value becomes array", `{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{"A.7 nested", `{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{"A.8 array of objects replaces", `{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{"A.9 arrays replace", `["a","b"]`, `["c","d"]`, `["c","d"]`},
		{"A.10 object replaces array", `{"a":"b"}`, `["c"]`, `["c"]`},
		{"A.11 null patch", `{"a":"foo"}`, `null`, `null`},
		{"A.12 string patch", `{"a":"foo"}`, `"bar"`, `"bar"`},
		{"A.13 null inside an array is kept", `{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{"A.14 array target", `[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{"A.15 new object drops its nulls", `{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		{"empty patch changes nothing", `{"a":{"b":[1,2]}}`, `{}`, `{"a":{"b":[1,2]}}`},
		{"deep merge keeps siblings", `{"a":{"b":{"c":1,"d":2},"e":3}}`, `{"a":{"b":{"c":null,"f":4}}}`, `{"a":{"b":{"d":2,"f":4},"e":3}}`},
		{"numbers stay exact", `{"n":9007199254740993}`, `{"m":1.50}`, `{"m":1.50,"n":9007199254740993}`},
		{"remove a missing member", `{"a":1}`, `{"z":null}`, `{"a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(mergePatch(decodeNumbers(t, tc.target), decodeNumbers(t, tc.patch)))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("merge %s into %s = %s, want %s", tc.patch, tc.target, got, tc.want)
			}
		})
	}
}

func decodeNumbers(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}
