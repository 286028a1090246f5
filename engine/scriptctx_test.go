package engine

import (
	"reflect"
	"testing"
)

func TestRequestMapHidesCredentials(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header bool // a header, else a parameter
		hidden bool
	}{
		{"Authorization", true, true},
		{"Proxy-Authorization", true, true},
		{"X-Forwarded-Authorization", true, true},
		{"X-Original-Authorization", true, true},
		{"Cookie", true, true},
		{"Set-Cookie", true, true},
		{"Dpop", true, true},
		{"X-Api-Key", true, true},
		{"Api-Key", true, true},
		{"X_api_key", true, true},
		{"X-Goog-Apikey", true, true},
		{"Ocp-Apim-Subscription-Key", true, true},
		{"X-Auth-Token", true, true},
		{"X-Access-Token", true, true},
		{"X-Amz-Security-Token", true, true},
		{"X-Csrf-Token", true, true},
		{"X-Xsrf-Token", true, true},
		{"X-Session-Id", true, true},
		{"X-Client-Secret", true, true},
		{"X-User-Password", true, true},
		{"X-Client-Credentials", true, true},
		{"Content-Type", true, false},
		{"User-Agent", true, false},
		{"X-Tenant", true, false},
		{"X-Forwarded-For", true, false},
		{"Accept", true, false},

		{"client_secret", false, true},
		{"client_assertion", false, true},
		{"assertion", false, true},
		{"password", false, true},
		{"Password", false, true},
		{"code", false, true},
		{"code_verifier", false, true},
		{"device_code", false, true},
		{"user_code", false, true},
		{"token", false, true},
		{"refresh_token", false, true},
		{"access_token", false, true},
		{"subject_token", false, true},
		{"actor_token", false, true},
		{"csrf", false, true},
		{"csrf_token", false, true},
		{"id_token_hint", false, true},
		{"new_password", false, true},
		{"app_secret", false, true},
		{"my_custom_token", false, true},
		{"client_assertion_type", false, false},
		{"token_type_hint", false, false},
		{"subject_token_type", false, false},
		{"response_as_jwt", false, false},
		{"grant_type", false, false},
		{"scope", false, false},
		{"username", false, false},
		{"custom_param", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &RequestInfo{Method: "POST", Header: map[string][]string{}, Params: map[string][]string{}}
			var seen map[string]string
			if tc.header {
				r.Header[tc.name] = []string{"v"}
				seen = requestMap(r)["headers"].(map[string]string)
			} else {
				r.Params[tc.name] = []string{"v"}
				seen = requestMap(r)["params"].(map[string]string)
			}
			if hidden := len(seen) == 0; hidden != tc.hidden {
				t.Fatalf("hidden = %v, want %v (scripts see %v)", hidden, tc.hidden, seen)
			}
		})
	}
}

func TestWithoutAddedReservedScopes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		granted string
		scope   any
		want    any
		dropped []string
	}{
		{"added admin", "read", "read keyhook:admin", "read", []string{"keyhook:admin"}},
		{"replaced by area scopes", "openid", "openid keyhook:clients.write keyhook:keys.write", "openid",
			[]string{"keyhook:clients.write", "keyhook:keys.write"}},
		{"held one kept", "read keyhook:users.read", "keyhook:users.read extra", "keyhook:users.read extra", nil},
		{"held one removed", "read keyhook:users.read", "read", "read", nil},
		{"other scopes may be added", "read", "read write", "read write", nil},
		{"a lookalike is not a prefix match", "read", "read keyhookadmin", "read keyhookadmin", nil},
		{"held admin is not held area scope", "keyhook:admin", "keyhook:admin keyhook:keys.write", "keyhook:admin",
			[]string{"keyhook:keys.write"}},
		{"list form", "read", []any{"read", "keyhook:admin", 7.0}, []any{"read", 7.0}, []string{"keyhook:admin"}},
		{"not a scope", "read", 42.0, 42.0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := withoutAddedReservedScopes(tc.granted, tc.scope)
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(dropped, tc.dropped) {
				t.Fatalf("got %#v dropping %v, want %#v dropping %v", got, dropped, tc.want, tc.dropped)
			}
		})
	}
}
