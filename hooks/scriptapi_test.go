package hooks

import (
	"slices"
	"testing"
)

// TestWithConfigAddsScriptContextFields: the dispatcher adds to the
// engine's context exactly config and secrets, as ScriptContext names
// them (the engine's test checks the rest).
func TestWithConfigAddsScriptContextFields(t *testing.T) {
	c := withConfig(map[string]any{}, &Script{})
	var got []string
	for k := range c {
		got = append(got, k)
	}
	slices.Sort(got)
	if want := []string{"config", "secrets"}; !slices.Equal(got, want) {
		t.Fatalf("withConfig adds %v, want %v", got, want)
	}
}
