package engine

import (
	"context"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCheckTokenExchangePolicy(t *testing.T) {
	many := make([]string, MaxExchangePolicyEntries+1)
	for i := range many {
		many[i] = "c" + strings.Repeat("x", i)
	}
	for _, tc := range []struct {
		name string
		p    *TokenExchangePolicy
		ok   bool
	}{
		{"none", nil, true},
		{"zero", &TokenExchangePolicy{}, true},
		{"full", &TokenExchangePolicy{SubjectClients: []string{"a", "b"}, ActorClients: []string{"*"}, AllowDelegation: true,
			AllowImpersonation: true, Audiences: []string{"orders", "https://api.example.com"}}, true},
		{"star alone", &TokenExchangePolicy{SubjectClients: []string{"*"}}, true},
		{"star beside an id", &TokenExchangePolicy{SubjectClients: []string{"*", "a"}}, false},
		{"bad id", &TokenExchangePolicy{SubjectClients: []string{"a/b"}}, false},
		{"empty id", &TokenExchangePolicy{SubjectClients: []string{""}}, false},
		{"twice", &TokenExchangePolicy{SubjectClients: []string{"a", "a"}}, false},
		{"too many", &TokenExchangePolicy{SubjectClients: many}, false},
		{"actors without delegation", &TokenExchangePolicy{ActorClients: []string{"a"}}, false},
		{"audience with a space", &TokenExchangePolicy{Audiences: []string{"a b"}}, false},
		{"audience with a control character", &TokenExchangePolicy{Audiences: []string{"a\x00"}}, false},
		{"audience not ASCII", &TokenExchangePolicy{Audiences: []string{"bücher"}}, false},
		{"long audience", &TokenExchangePolicy{Audiences: []string{strings.Repeat("a", MaxAudienceLength+1)}}, false},
		{"audience twice", &TokenExchangePolicy{Audiences: []string{"a", "a"}}, false},
		{"too many audiences", &TokenExchangePolicy{Audiences: many}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkTokenExchangePolicy(tc.p); (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestMayAct(t *testing.T) {
	actor := &ExchangeToken{Subject: "gw", ClientID: "gw-client"}
	for _, tc := range []struct {
		name   string
		mayAct any
		has    bool
		ok     bool
	}{
		{"no may_act", nil, false, true},
		{"sub matches", map[string]any{"sub": "gw"}, true, true},
		{"sub and client_id match", map[string]any{"sub": "gw", "client_id": "gw-client"}, true, true},
		{"sub differs", map[string]any{"sub": "other"}, true, false},
		{"client_id differs", map[string]any{"sub": "gw", "client_id": "other"}, true, false},
		{"iss of a local actor", map[string]any{"iss": "https://other.example"}, true, false},
		{"unknown member", map[string]any{"sub": "gw", "email": "x"}, true, false},
		{"not a string", map[string]any{"sub": 1}, true, false},
		{"empty object", map[string]any{}, true, false},
		{"not an object", "gw", true, false},
		{"null", nil, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := &ExchangeToken{MayAct: tc.mayAct, HasMayAct: tc.has}
			if got := mayAct(sub, actor); got != tc.ok {
				t.Fatalf("mayAct = %v, want %v", got, tc.ok)
			}
		})
	}
}

func TestExchangeAct(t *testing.T) {
	prior := map[string]any{"sub": "first", "client_id": "first"}
	actor := &ExchangeToken{Subject: "second", ClientID: "second"}
	for _, tc := range []struct {
		name  string
		sub   *ExchangeToken
		actor *ExchangeToken
		want  map[string]any
		err   bool
	}{
		{"impersonation", &ExchangeToken{}, nil, nil, false},
		{"impersonation keeps the subject's actors", &ExchangeToken{Act: prior}, nil, prior, false},
		{"delegation", &ExchangeToken{}, actor, map[string]any{"sub": "second", "client_id": "second"}, false},
		{"delegation nests prior actors", &ExchangeToken{Act: prior}, actor,
			map[string]any{"sub": "second", "client_id": "second", "act": prior}, false},
		{"foreign actor", &ExchangeToken{}, &ExchangeToken{Subject: "x", Issuer: "https://other.example"},
			map[string]any{"sub": "x", "iss": "https://other.example"}, false},
		{"chain at the limit", &ExchangeToken{Act: chain(MaxActDepth - 1)}, actor, nil, false},
		{"chain too long", &ExchangeToken{Act: chain(MaxActDepth)}, actor, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := exchangeAct(tc.sub, tc.actor)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				if !errors.Is(err, CodeInvalidRequest) {
					t.Fatalf("err = %v, want invalid_request", err)
				}
				return
			}
			if strings.HasPrefix(tc.name, "chain") {
				if actDepth(got) != MaxActDepth {
					t.Fatalf("depth %d", actDepth(got))
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("act = %v, want %v", got, tc.want)
			}
		})
	}
}

// chain is an act claim naming n actors.
func chain(n int) map[string]any {
	var act map[string]any
	for i := range n {
		next := map[string]any{"sub": "a" + strings.Repeat("x", i)}
		if act != nil {
			next["act"] = act
		}
		act = next
	}
	return act
}

func TestIntersectScope(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"read write admin", "openid read write", "read write"},
		{"read read", "read", "read"},
		{"", "read", ""},
		{"read", "", ""},
	} {
		if got := intersectScope(tc.a, tc.b); got != tc.want {
			t.Errorf("intersectScope(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

func jws(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestUnverifiedIssuer(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		{jws(`{"iss":"https://other.example"}`), "https://other.example"},
		{jws(`{"iss":7}`), ""},
		{jws(`not json`), ""},
		{"a.b", ""},
		{"a.!!!.c", ""},
	} {
		if got := unverifiedIssuer(tc.token); got != tc.want {
			t.Errorf("unverifiedIssuer(%q) = %q, want %q", tc.token, got, tc.want)
		}
	}
}

// fakeVerifier trusts one issuer and answers a fixed token for it.
type fakeVerifier struct {
	iss string
	tok *ExchangeToken
	err error
}

func (f *fakeVerifier) VerifyForeignToken(_ context.Context, _, _, iss string) (*ExchangeToken, error) {
	if iss != f.iss {
		return nil, ErrNotFound
	}
	if f.err != nil {
		return nil, f.err
	}
	cp := *f.tok
	return &cp, nil
}

// TestForeignTokenVerifier: foreign JWTs go to Config.ForeignTokens, the
// trusted issuers' verifier, and are refused without one.
func TestForeignTokenVerifier(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	good := &ExchangeToken{Subject: "bob", ClientID: "partner", Scope: "read", ExpiresAt: now.Add(time.Minute)}
	for _, tc := range []struct {
		name     string
		verifier ForeignTokenVerifier
		iss      string
		desc     string
	}{
		{"no verifier", nil, "https://partner.example", "no trusted issuer"},
		{"untrusted issuer", &fakeVerifier{iss: "https://partner.example", tok: good}, "https://evil.example", "no trusted issuer"},
		{"verification fails", &fakeVerifier{iss: "https://partner.example", err: errors.New("bad signature")}, "https://partner.example", "could not be verified"},
		{"expired", &fakeVerifier{iss: "https://partner.example", tok: &ExchangeToken{Subject: "bob", ExpiresAt: now}}, "https://partner.example", "expired"},
		{"verified", &fakeVerifier{iss: "https://partner.example", tok: good}, "https://partner.example", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{cfg: Config{Issuer: "https://keyhook.example", ForeignTokens: tc.verifier}, now: func() time.Time { return now }}
			x, err := e.foreignToken(context.Background(), nil, "subject_token", jws(`{"iss":"`+tc.iss+`"}`), TokenTypeJWT, tc.iss)
			if tc.desc == "" {
				if err != nil || x.Issuer != tc.iss || x.Subject != "bob" || x.Record != nil {
					t.Fatalf("got %+v, %v", x, err)
				}
				return
			}
			var oe *Error
			if !errors.As(err, &oe) || oe.Code != CodeInvalidRequest || !strings.Contains(oe.Description, tc.desc) {
				t.Fatalf("err = %v, want invalid_request %q", err, tc.desc)
			}
		})
	}
}
