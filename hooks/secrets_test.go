package hooks

import "testing"

func TestRedact(t *testing.T) {
	s := &Script{Secrets: map[string]string{"a": "s3cr3t", "b": "s3cr3t-longer", "q": `x"y\z`, "empty": ""}}
	for _, tc := range []struct{ name, in, want string }{
		{"no secret", "hello", "hello"},
		{"one", "key=s3cr3t!", "key=[secret]!"},
		{"twice", "s3cr3ts3cr3t", "[secret][secret]"},
		{"longest first", "s3cr3t-longer", "[secret]"},
		{"as JSON writes it", `{"q":"x\"y\\z"}`, `{"q":"[secret]"}`},
		{"raw", `x"y\z`, "[secret]"},
		{"an empty value redacts nothing", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Redact(tc.in); got != tc.want {
				t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	got := s.RedactValue(map[string]any{"s3cr3t": []any{"a s3cr3t", 1.5, true}})
	if !Equal(got, map[string]any{"[secret]": []any{"a [secret]", 1.5, true}}) {
		t.Errorf("RedactValue = %v", got)
	}
	if got := (&Script{}).Redact("s3cr3t"); got != "s3cr3t" {
		t.Errorf("a script without secrets: %q", got)
	}
}
