package web

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// encodingJSON is what echo's c.JSON writes for v.
func encodingJSON(t testing.TB, v any) (string, bool) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return "", false
	}
	return strings.TrimSuffix(buf.String(), "\n"), true
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	deep := any("leaf")
	for range 40 {
		deep = map[string]any{"d": []any{deep}}
	}
	for _, tc := range []struct {
		name string
		v    any
	}{
		{"introspection answer", map[string]any{"active": true, "client_id": "c", "exp": int64(2000000000), "iat": int64(1700000000),
			"scope": "a b", "aud": []string{"x", "y"}, "roles": []any{"reader", int64(1), 2.5, nil, false}, "n": json.Number("12.50")}},
		{"escapes", map[string]any{"k<>&\"\\": "<script>&\u2028\u2029\x00\x1f\t\n\r\b\f\x7f", "ü": "é😀"}},
		{"invalid utf-8", map[string]any{"bad\xff": "a\xc3\x28b\xed\xa0\x80"}},
		{"floats", []any{1.0, 1e21, 1e-7, -0.0, 123456789.123, float32(1.5)}},
		{"empty and nil", map[string]any{"m": map[string]any{}, "a": []any{}, "s": []string{}, "nilm": map[string]any(nil),
			"nila": []any(nil), "nils": []string(nil), "e": ""}},
		{"other types", map[string]any{"ints": []int{1, 2}, "m": map[string]string{"b": "1", "a": "2"}, "u": uint64(math.MaxUint64),
			"i32": int32(-5), "i": -7}},
		{"deep nesting", deep},
		{"many keys", func() map[string]any {
			m := map[string]any{}
			for i := range 100 {
				m[strings.Repeat("k", i%7)+string(rune('a'+i%26))+strings.Repeat("z", i/26)] = i
			}
			return m
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, ok := encodingJSON(t, tc.v)
			got, err := appendJSON(nil, tc.v, 0)
			if !ok {
				if err == nil {
					t.Fatalf("encoding/json fails, appendJSON gave %s", got)
				}
				return
			}
			if err != nil || string(got) != want {
				t.Fatalf("appendJSON = %s, %v\nencoding/json = %s", got, err, want)
			}
		})
	}
	if _, err := appendJSON(nil, map[string]any{"n": json.Number("1e")}, 0); err == nil {
		t.Error("an invalid json.Number was encoded")
	}
	if _, err := appendJSON(nil, map[string]any{"f": math.NaN()}, 0); err == nil {
		t.Error("NaN was encoded")
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "<&>", "\u2028", "\xff\xfe", "\x00\x01", "é😀", "a\"b\\c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := encodingJSON(t, map[string]any{s: s})
		got, err := appendJSON(nil, map[string]any{s: s}, 0)
		if err != nil || string(got) != want {
			t.Fatalf("appendJSON(%q) = %s, %v; encoding/json = %s", s, got, err, want)
		}
	})
}
