package engine

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestResolveSecrets(t *testing.T) {
	stored := map[string]string{"api_key": "stored-value"}
	for _, tc := range []struct {
		name    string
		sent    map[string]string
		want    map[string]string
		wantErr string
	}{
		{"new values", map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1", "b": "2"}, ""},
		{"a reference keeps the stored value", map[string]string{"api_key": SecretSet, "b": "2"},
			map[string]string{"api_key": "stored-value", "b": "2"}, ""},
		{"empty: none", map[string]string{}, map[string]string{}, ""},
		{"a reference to nothing", map[string]string{"nope": SecretSet}, nil, "secrets.nope: is (set)"},
		{"an empty value", map[string]string{"a": ""}, nil, "secrets.a: must not be empty"},
		{"a bad name", map[string]string{"a.b": "x"}, nil, "secrets: names must match"},
		{"too long a value", map[string]string{"a": strings.Repeat("x", maxScriptSecretSize+1)}, nil, "secrets.a: must be at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveSecrets(tc.sent, stored)
			if tc.wantErr != "" {
				var oe *Error
				if !errors.As(err, &oe) || oe.Code != CodeInvalidRequest || !strings.HasPrefix(oe.Description, tc.wantErr) {
					t.Fatalf("err = %v, want invalid_request %q…", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "stored-value") {
					t.Fatalf("the error carries a secret: %v", err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	many := map[string]string{}
	for i := range maxScriptSecrets + 1 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	if _, err := resolveSecrets(many, nil); err == nil {
		t.Errorf("%d secrets accepted", len(many))
	}
}
