package engine

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// jsonFields lists the json names of t's fields, all of them or only
// those without omitempty.
func jsonFields(t reflect.Type, requiredOnly bool) []string {
	var names []string
	for i := range t.NumField() {
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "-" || requiredOnly && strings.Contains(opts, "omitempty") {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func mapKeys(v any) []string {
	var keys []string
	switch m := v.(type) {
	case map[string]any:
		for k := range m {
			keys = append(keys, k)
		}
	case map[string]string:
		for k := range m {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestScriptAPIMatchesMaps: the maps the engine builds for a script have
// exactly the fields of the hooks types that describe them (and from
// which scripts/keyhook.d.ts is generated): all fields when every value
// is known, the ones without omitempty when the optional ones are not.
// A name added to, renamed in or removed from one side only fails here.
func TestScriptAPIMatchesMaps(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	full := &Token{
		ID: "j1", Kind: KindAccess, Format: FormatJWT, ClientID: "c1", Subject: "s", Username: "u",
		Scope: "read", GrantType: "password", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Audience: []string{"api"}, Claims: map[string]any{}, JKT: "thumbprint",
	}
	bare := &Token{Kind: KindAccess, Format: FormatOpaque, ClientID: "c1", IssuedAt: now}
	sc := &scriptCall{
		client: &Client{ID: "c1", Name: "C", GrantTypes: []GrantType{"password"}},
		caller: "rs", user: &User{Username: "u"}, registration: registrationMap("create", &ClientRegistration{}),
		req: &RequestInfo{Method: "POST", Header: map[string][]string{"Accept": {"*/*"}}},
	}
	e := &Engine{}
	fullParty := &ExchangeToken{Issuer: "https://other.example", Subject: "s", ClientID: "c1", Username: "u", Scope: "read",
		ExpiresAt: now, Act: map[string]any{"sub": "a"}}

	// config and secrets are the script's own, added by the dispatcher
	// (hooks.withConfig); log and fetch by the runtime.
	ctxKeys := append(mapKeys(sc.context(hooks.PhaseToken, full)), "config", "secrets", "log", "fetch")
	slices.Sort(ctxKeys)
	ctxKeysBare := append(mapKeys((&scriptCall{client: sc.client}).context(hooks.PhaseToken, nil)), "config", "secrets", "log", "fetch")
	slices.Sort(ctxKeysBare)

	for _, tc := range []struct {
		name     string
		got      []string
		typ      any
		required bool
	}{
		{"context", ctxKeys, hooks.ScriptContext{}, false},
		{"context without caller and token", ctxKeysBare, hooks.ScriptContext{}, true},
		{"client", mapKeys(sc.clientMap()), hooks.ClientInfo{}, false},
		{"caller", mapKeys(sc.context(hooks.PhaseIntrospection, nil)["caller"]), hooks.CallerInfo{}, false},
		{"token", mapKeys(tokenMap(full)), hooks.TokenInfo{}, false},
		{"token before its lifetime, opaque", mapKeys(tokenMap(bare)), hooks.TokenInfo{}, true},
		{"user", mapKeys(sc.userMap()), hooks.UserInfo{}, false},
		{"request", mapKeys(requestMap(sc.req)), hooks.HTTPRequestInfo{}, false},
		{"no request", mapKeys(requestMap(nil)), hooks.HTTPRequestInfo{}, false},
		{"introspection response", mapKeys(e.introspectionFields(full)), hooks.IntrospectionResponse{}, false},
		{"bare introspection response", mapKeys(e.introspectionFields(bare)), hooks.IntrospectionResponse{}, true},
		{"access and ID token argument", mapKeys(tokenArg(map[string]any{}, map[string]any{})), hooks.TokenArg{}, false},
		{"refresh token argument", mapKeys(tokenArg(nil, map[string]any{})), hooks.TokenArg{}, true},
		{"assertion argument", mapKeys(assertionArg(&TrustedIssuer{Name: "t"}, &ForeignJWT{Subject: "s"})), hooks.AssertionArg{}, false},
		{"token exchange request", mapKeys(exchangeArg(fullParty, nil, TokenTypeAccessToken, "read", nil, nil)), hooks.TokenExchangeRequest{}, false},
		{"exchange party", mapKeys(exchangeParty(fullParty)), hooks.ExchangeParty{}, false},
		{"bare exchange party", mapKeys(exchangeParty(&ExchangeToken{})), hooks.ExchangeParty{}, true},
		{"registration", mapKeys(registrationMap("update", &ClientRegistration{Label: "l"})), hooks.RegistrationInfo{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := jsonFields(reflect.TypeOf(tc.typ), tc.required)
			if !slices.Equal(tc.got, want) {
				t.Errorf("the engine builds %v, %T says %v", tc.got, tc.typ, want)
			}
		})
	}
}
