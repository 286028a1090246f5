package engine

import (
	"testing"
)

// TestUserCodeIDIsKeyed: the stored id of a user code is keyed by the
// sealing key. A user code has about 35 bits: an unkeyed hash of it (as
// stored before) could be reversed from a copy of the database while the
// code is live, so the id must be neither that hash nor the same under
// another server's key.
func TestUserCodeIDIsKeyed(t *testing.T) {
	a := &Engine{userCodeKey: deriveKey([]byte("sealing key of server a........."), "keyhook device user code key")}
	b := &Engine{userCodeKey: deriveKey([]byte("sealing key of server b........."), "keyhook device user code key")}
	code := "BCDFGHJK"
	id := a.userCodeID(code)
	for _, tc := range []struct {
		name string
		same bool
		got  string
	}{
		{"the same code again", true, a.userCodeID(code)},
		{"another code", false, a.userCodeID("BCDFGHJL")},
		{"an unkeyed hash", false, TokenHash("user_code:" + code)},
		{"another server's key", false, b.userCodeID(code)},
	} {
		if (tc.got == id) != tc.same {
			t.Errorf("%s: id %s, want same=%v as %s", tc.name, tc.got, tc.same, id)
		}
	}
	if len(id) != 64 {
		t.Errorf("id %q is not a hex SHA-256", id)
	}
}
