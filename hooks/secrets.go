package hooks

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
)

// SecretMark replaces a secret value wherever keyhook would otherwise
// show it: a script's log lines and error messages, dry-run answers and
// the live log (docs/scripts.md, "Secrets").
const SecretMark = "[secret]"

// secretsValue is context.secrets: computed when a script reads it, so
// that a worker process receives the values only for scripts that name
// them (a Lazy value is sent when the script mentions its key).
type secretsValue map[string]string

func (s secretsValue) Value() any {
	if s == nil {
		return map[string]string{}
	}
	return map[string]string(s)
}

// Redact returns text with every occurrence of one of s's secret values
// replaced by SecretMark. It catches a value as it is and as JSON writes
// it inside a string (what context.log does with objects); a value the
// script transformed (split, reversed, encoded) is not recognised: the
// script's authors see its secrets (docs/scripts.md).
func (s *Script) Redact(text string) string {
	if s == nil || len(s.Secrets) == 0 || text == "" {
		return text
	}
	var forms []string
	for _, v := range s.Secrets {
		for _, f := range secretForms(v) {
			if strings.Contains(text, f) {
				forms = append(forms, f)
			}
		}
	}
	if len(forms) == 0 {
		return text
	}
	// Longest first: a value that contains another is replaced whole.
	slices.SortFunc(forms, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, SecretMark)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// secretForms are the spellings of v that Redact looks for: v itself and,
// when JSON escapes some of its characters, its JSON string body.
func secretForms(v string) []string {
	if v == "" {
		return nil
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		if j := strings.TrimSuffix(strings.TrimSpace(b.String()), `"`); len(j) > 1 && j[1:] != v {
			return []string{v, j[1:]}
		}
	}
	return []string{v}
}

// RedactValue is v (a JSON-like value) with Redact applied to every
// string and object key in it; v itself is not changed.
func (s *Script) RedactValue(v any) any {
	if s == nil || len(s.Secrets) == 0 {
		return v
	}
	switch x := v.(type) {
	case string:
		return s.Redact(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = s.RedactValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[s.Redact(k)] = s.RedactValue(e)
		}
		return out
	}
	return v
}
