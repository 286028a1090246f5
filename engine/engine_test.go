package engine

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestGrantScope(t *testing.T) {
	for _, tc := range []struct {
		name, requested string
		given           bool
		allowed, want   string
		err             ErrorCode
	}{
		{"absent means all allowed", "", false, "a b", "a b", ""},
		{"empty means all allowed", " ", true, "a b", "a b", ""},
		{"subset", "b", true, "a b", "b", ""},
		{"duplicates collapse", "b b a", true, "a b", "b a", ""},
		{"escalation", "a c", true, "a b", "", CodeInvalidScope},
		{"malformed", `a"b`, true, `a"b`, "", CodeInvalidScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := grantScope(tc.requested, tc.given, tc.allowed)
			if tc.err != "" {
				if oe, ok := err.(*Error); !ok || oe.Code != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	h := HashSecret("s3cret")
	if strings.Contains(h, "s3cret") || h == HashSecret("s3cret") {
		t.Fatalf("hash %q must be salted and not contain the secret", h)
	}
	for _, tc := range []struct {
		hash, secret string
		ok           bool
	}{
		{h, "s3cret", true}, {h, "s3cret ", false}, {h, "", false}, {"plain", "plain", false}, {"hmac-sha256$!!$!!", "x", false},
	} {
		if VerifySecret(tc.hash, tc.secret) != tc.ok {
			t.Errorf("VerifySecret(%q, %q) != %v", tc.hash, tc.secret, tc.ok)
		}
	}
	p := HashPassword("pw")
	if !strings.HasPrefix(p, "$argon2id$") || !VerifyPassword(p, "pw") || VerifyPassword(p, "pW") || VerifyPassword("junk", "pw") {
		t.Fatalf("password hash %q", p)
	}
	s, err := newSealer(randomBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.seal("hmac-secret")
	if strings.Contains(sealed, "hmac-secret") {
		t.Fatal("sealed secret shows the plain text")
	}
	if plain, err := s.open(sealed); err != nil || plain != "hmac-secret" {
		t.Fatalf("open = %q, %v", plain, err)
	}
	if _, err := s.open(sealed[:len(sealed)-2] + "AA"); err == nil {
		t.Fatal("a tampered sealed secret opened")
	}
	if len(randomToken()) != 43 {
		t.Fatal("opaque tokens must carry 256 bits")
	}
}

func TestProperties(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	if err := ValidateProperties(map[string]json.RawMessage{"access_token_lifetime": raw("60"), "introspection_skip_authorization": raw("true")}); err != nil {
		t.Fatal(err)
	}
	// null resets a property to its default (a JSON merge patch's
	// removal, RFC 7396), whatever the property's type.
	nulls := map[string]string{}
	for name := range propertyChecks {
		nulls[name] = "null"
		if err := ValidateProperties(map[string]json.RawMessage{name: raw("null")}); err != nil {
			t.Errorf("%s: null refused: %v", name, err)
		}
	}
	if p := decodeProperties(nulls); *p != *DefaultProperties() {
		t.Errorf("stored nulls decode to %+v", p)
	}
	for _, bad := range []map[string]json.RawMessage{
		{"nope": raw("1")},
		{"nope": raw("null")},
		{"access_token_lifetime": raw(`"60"`)},
		{"access_token_lifetime": raw("-1")},
		{"introspection_skip_authorization": raw("1")},
		{"access_token_signing_alg": raw(`"none"`)},
	} {
		if err := ValidateProperties(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	p := decodeProperties(map[string]string{"access_token_lifetime": "60", "id_token_lifetime": `"bad"`, "unknown": "1"})
	if p.AccessTokenLifetime != 60 || p.IDTokenLifetime != 3600 || p.RefreshTokenLifetime != 1209600 || p.AccessTokenSigningAlg != "RS256" {
		t.Fatalf("decoded %+v", p)
	}
}

func TestUserClaims(t *testing.T) {
	u := &User{Username: "alice", Claims: map[string]any{"name": "Alice", "email": "a@example.com", "email_verified": true, "phone_number": "1"}}
	for _, tc := range []struct {
		scope string
		want  []string
	}{
		{"openid", nil},
		{"openid email", []string{"email", "email_verified"}},
		{"openid profile", []string{"name"}},
		{"openid profile email phone", []string{"name", "email", "email_verified", "phone_number"}},
	} {
		got := UserClaims(u, tc.scope)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v", tc.scope, got)
		}
		for _, k := range tc.want {
			if _, ok := got[k]; !ok {
				t.Errorf("%s: %s missing", tc.scope, k)
			}
		}
	}
}
