package engine

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestDiffPlan: each entry of the states before and after an import is
// created, updated (with the members that changed, sorted), unchanged,
// absent from the seed or deleted; a confidential client created without
// a secret is flagged; the bootstrap admin client is listed only when the
// seed names it.
func TestDiffPlan(t *testing.T) {
	doc := func(kv ...string) map[string]json.RawMessage {
		m := map[string]json.RawMessage{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = json.RawMessage(kv[i+1])
		}
		return m
	}
	seed := &Seed{
		Scripts: []*SeedScript{{ScriptDoc: ScriptDoc{Name: "same"}}, {ScriptDoc: ScriptDoc{Name: "changed"}}, {ScriptDoc: ScriptDoc{Name: "new"}}},
		Clients: []*ClientDoc{{ClientID: "public"}, {ClientID: "confidential"}, {ClientID: "with-secret", ClientSecret: "s"}},
	}
	before := &planState{
		config: doc("a", "1", "b", `"x"`),
		scripts: map[string]map[string]json.RawMessage{
			"same":    doc("source", `"1"`),
			"changed": doc("source", `"1"`, "enabled", "true", "level", "100"),
			"other":   doc("source", `"1"`),
			"gone":    doc("source", `"1"`),
		},
		clients: map[string]map[string]json.RawMessage{BootstrapAdminID: doc("scope", `"keyhook:admin"`)},
	}
	after := &planState{
		config: doc("a", "1", "b", `"y"`),
		scripts: map[string]map[string]json.RawMessage{
			"same":    doc("source", `"1"`),
			"changed": doc("source", `"2"`, "enabled", "false", "level", "100", "config", "{}"),
			"new":     doc("source", `"1"`),
			"other":   doc("source", `"1"`),
		},
		clients: map[string]map[string]json.RawMessage{
			BootstrapAdminID: doc("scope", `"keyhook:admin"`),
			"public":         doc("token_endpoint_auth_method", `"none"`),
			"confidential":   doc("token_endpoint_auth_method", `"client_secret_basic"`),
			"with-secret":    doc("token_endpoint_auth_method", `"client_secret_post"`),
		},
	}
	want := []Change{
		{Section: "config", Action: ChangeUpdated, Fields: []string{"b"}},
		{Section: "script", Name: "changed", Action: ChangeUpdated, Fields: []string{"config", "enabled", "source"}},
		{Section: "script", Name: "gone", Action: ChangeDeleted},
		{Section: "script", Name: "new", Action: ChangeCreated},
		{Section: "script", Name: "other", Action: ChangeAbsent},
		{Section: "script", Name: "same", Action: ChangeUnchanged},
		{Section: "client", Name: "confidential", Action: ChangeCreated, SecretGenerated: true},
		{Section: "client", Name: "public", Action: ChangeCreated},
		{Section: "client", Name: "with-secret", Action: ChangeCreated},
	}
	if got := diffPlan(seed, before, after); !reflect.DeepEqual(got, want) {
		t.Fatalf("diffPlan:\n got %+v\nwant %+v", got, want)
	}
	seed.Clients = append(seed.Clients, &ClientDoc{ClientID: BootstrapAdminID})
	got := diffPlan(seed, before, after)
	if len(got) != len(want)+1 || got[7].Name != BootstrapAdminID || got[7].Action != ChangeUnchanged {
		t.Fatalf("the bootstrap admin named by the seed: %+v", got)
	}
}
