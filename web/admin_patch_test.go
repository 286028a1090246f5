package web_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// patch sends a PATCH to the admin API with the given token and
// Content-Type ("" sends none).
func (h *harness) patch(token, path, contentType, body string) *response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPatch, h.url+"/admin/v1"+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

const mergePatchType = "application/merge-patch+json"

// TestAdminPatchClient applies JSON merge patches (RFC 7396) to a client
// one after the other: members present replace, null resets a member to
// its default, attributes merge, lists replace; a refused patch (bad
// JSON, not an object, unknown or wrong field, identifier changed, a
// value PUT refuses) is 400 naming the field and changes nothing.
func TestAdminPatchClient(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("a", `return true;`, nil))
	h.createScript(introspectionScript("b", `return true;`, nil))
	secret := h.createClient(map[string]any{"client_id": "x", "client_name": "Billing", "scope": "read write",
		"access_token_as_jwt": true, "grant_types": []string{"client_credentials", "refresh_token"},
		"attributes": map[string]string{"team": "red", "tier": "gold"}})

	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		field                   string         // named by a 400's error_description
		want                    map[string]any // members of the client afterwards
	}{
		{"bind a script and nothing else", mergePatchType, `{"introspection_scripts":["a"]}`, 200, "",
			map[string]any{"introspection_scripts": []any{"a"}, "client_name": "Billing", "scope": "read write",
				"access_token_as_jwt": true, "grant_types": []any{"client_credentials", "refresh_token"}}},
		{"application/json is a merge patch too", "application/json; charset=utf-8", `{"client_name":"Invoices"}`, 200, "",
			map[string]any{"client_name": "Invoices", "introspection_scripts": []any{"a"}}},
		{"no Content-Type is a merge patch too", "", `{"scope":"read"}`, 200, "",
			map[string]any{"scope": "read", "client_name": "Invoices"}},
		{"lists replace", mergePatchType, `{"introspection_scripts":["b","a"]}`, 200, "",
			map[string]any{"introspection_scripts": []any{"b", "a"}}},
		{"attributes merge", mergePatchType, `{"attributes":{"tier":null,"region":"eu"}}`, 200, "",
			map[string]any{"attributes": map[string]any{"team": "red", "region": "eu"}}},
		{"null resets to the default", mergePatchType, `{"grant_types":null,"client_name":null,"access_token_as_jwt":null}`, 200, "",
			map[string]any{"grant_types": []any{"client_credentials"}, "client_name": "", "access_token_as_jwt": false, "scope": "read"}},
		{"null unbinds", mergePatchType, `{"introspection_scripts":null}`, 200, "",
			map[string]any{"introspection_scripts": []any{}}},
		{"a lifetime", mergePatchType, `{"access_token_lifetime":600}`, 200, "",
			map[string]any{"access_token_lifetime": 600.0}},
		{"the same client_id", mergePatchType, `{"client_id":"x"}`, 200, "", nil},
		{"an empty patch", mergePatchType, `{}`, 200, "", map[string]any{"access_token_lifetime": 600.0}},

		{"another client_id", mergePatchType, `{"client_id":"y"}`, 400, "client_id", nil},
		{"an unknown field", mergePatchType, `{"client_nam":"typo"}`, 400, "client_nam", nil},
		{"an unknown field set to null", mergePatchType, `{"client_nam":null}`, 400, "client_nam", nil},
		{"a wrong type", mergePatchType, `{"scope":42}`, 400, "scope", nil},
		{"a wrong type in attributes", mergePatchType, `{"attributes":{"team":1}}`, 400, "attributes", nil},
		{"a missing script", mergePatchType, `{"introspection_scripts":["nope"]}`, 400, "introspection_scripts", nil},
		{"a grant PUT refuses", mergePatchType, `{"grant_types":["implicit"]}`, 400, "grant_types", nil},
		{"the code grant without a redirect URI", mergePatchType, `{"grant_types":["authorization_code"]}`, 400, "redirect_uris", nil},
		{"a bad lifetime", mergePatchType, `{"access_token_lifetime":-1}`, 400, "access_token_lifetime", nil},
		{"malformed JSON", mergePatchType, `{"scope":`, 400, "body", nil},
		{"an array", mergePatchType, `[{"op":"replace","path":"/scope","value":"x"}]`, 400, "body", nil},
		{"a string", mergePatchType, `"scope"`, 400, "body", nil},
		{"null", mergePatchType, `null`, 400, "body", nil},
		{"an empty body", mergePatchType, ``, 400, "body", nil},
		{"two values", mergePatchType, `{} {}`, 400, "body", nil},
		{"JSON Patch", "application/json-patch+json", `[]`, 415, "", nil},
		{"a form", "application/x-www-form-urlencoded", `scope=x`, 415, "", nil},
		{"too large", mergePatchType, `{"client_name":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.admin(http.MethodGet, "/clients/x", nil)
			r := h.patch(h.adminToken, "/clients/x", tc.contentType, tc.body)
			if r.status != tc.status {
				t.Fatalf("PATCH %s: %d %s, want %d", tc.body, r.status, r.body, tc.status)
			}
			after := h.admin(http.MethodGet, "/clients/x", nil)
			if tc.status != 200 {
				if r.str("error") == "" || r.str("error_description") == "" {
					t.Fatalf("error body %s", r.body)
				}
				if tc.field != "" && !strings.HasPrefix(r.str("error_description"), tc.field+":") {
					t.Fatalf("error_description %q does not name %s", r.str("error_description"), tc.field)
				}
				if tc.status == 415 && !strings.Contains(r.header.Get("Accept-Patch"), mergePatchType) {
					t.Fatalf("415 without Accept-Patch: %v", r.header)
				}
				if !reflect.DeepEqual(before.json, after.json) {
					t.Fatalf("a refused patch changed the client:\n%s\n%s", before.body, after.body)
				}
				return
			}
			if r.str("client_secret") != "" {
				t.Fatalf("the answer carries a secret: %s", r.body)
			}
			if !reflect.DeepEqual(r.json, after.json) {
				t.Fatalf("the answer is not the client:\n%s\n%s", r.body, after.body)
			}
			for k, v := range tc.want {
				if !reflect.DeepEqual(after.json[k], v) {
					t.Fatalf("%s = %#v, want %#v: %s", k, after.json[k], v, after.body)
				}
			}
			h.mustToken("x", secret, "") // the secret survives
		})
	}

	t.Run("set the secret", func(t *testing.T) {
		r := h.patch(h.adminToken, "/clients/x", mergePatchType, `{"client_secret":"a-new-secret-chosen-by-the-admin"}`)
		if r.status != 200 || r.str("client_secret") != "" {
			t.Fatalf("%d %s", r.status, r.body)
		}
		h.mustToken("x", "a-new-secret-chosen-by-the-admin", "")
		wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "x", secret), 401, "invalid_client")
	})
	t.Run("Janssen's name turns the flag off", func(t *testing.T) {
		h.patch(h.adminToken, "/clients/x", mergePatchType, `{"access_token_as_jwt":true,"run_introspection_script_before_jwt_creation":true}`)
		r := h.patch(h.adminToken, "/clients/x", mergePatchType,
			`{"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims":false}`)
		if r.status != 200 || r.json["run_introspection_script_before_jwt_creation"] != false || r.json["access_token_as_jwt"] != true {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("a missing client", func(t *testing.T) {
		wantError(t, h.patch(h.adminToken, "/clients/nobody", mergePatchType, `{"client_name":"n"}`), 404, "not_found")
		if r := h.admin(http.MethodGet, "/clients/nobody", nil); r.status != 404 {
			t.Fatalf("PATCH created a client: %d %s", r.status, r.body)
		}
	})
	t.Run("a method change that needs a secret answers it once", func(t *testing.T) {
		h.createClient(map[string]any{"client_id": "spa", "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code"}, "redirect_uris": []string{"https://spa.example/cb"}})
		r := h.patch(h.adminToken, "/clients/spa", mergePatchType, `{"token_endpoint_auth_method":"client_secret_basic","grant_types":["client_credentials"]}`)
		if r.status != 200 || len(r.str("client_secret")) < 32 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		h.mustToken("spa", r.str("client_secret"), "")
	})
}

// TestAdminPutReplacesWholeClient pins PUT's meaning (RFC 9110 §9.3.4,
// docs/admin-api.md): the body is the whole new client, so members it
// leaves out take their defaults. PATCH is the partial update.
func TestAdminPutReplacesWholeClient(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("a", `return true;`, nil))
	h.createClient(map[string]any{"client_id": "x", "client_name": "Billing", "scope": "read", "access_token_as_jwt": true})
	r := h.admin(http.MethodPut, "/clients/x", map[string]any{"introspection_scripts": []string{"a"}})
	if r.status != 200 || r.str("client_name") != "" || r.str("scope") != "" || r.json["access_token_as_jwt"] != false {
		t.Fatalf("PUT with one member: %d %s", r.status, r.body)
	}
}

// TestAdminPatchScriptAndUser patches scripts and users the same way:
// config and claims merge, null resets, the name cannot change, and a
// patch PUT would refuse is refused with the field named.
func TestAdminPatchScriptAndUser(t *testing.T) {
	h := newHarness(t)
	src := "function modifyResponse(response, context) {\nreturn true;\n}"
	h.createScript(map[string]any{"name": "s", "type": "introspection", "source": src, "level": 7,
		"enabled": false, "config": map[string]string{"a": "1", "b": "2"}})
	h.createClient(map[string]any{"client_id": "pw", "client_secret": "pw-secret", "grant_types": []string{"password"}, "scope": "openid"})
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "a@example.com", "name": "Alice", "address": map[string]any{"country": "FR", "locality": "Lyon"}}}); r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		field            string
		want             map[string]any
	}{
		{"script level only", "/scripts/s", `{"level":3}`, 200, "",
			map[string]any{"level": 3.0, "source": src, "enabled": false, "config": map[string]any{"a": "1", "b": "2"}}},
		{"script config merges", "/scripts/s", `{"config":{"a":null,"c":"3"}}`, 200, "",
			map[string]any{"config": map[string]any{"b": "2", "c": "3"}, "level": 3.0}},
		{"script null resets", "/scripts/s", `{"enabled":null,"level":null,"timeout_ms":null}`, 200, "",
			map[string]any{"enabled": true, "level": 100.0, "timeout_ms": 100.0}},
		{"script renamed", "/scripts/s", `{"name":"t"}`, 400, "name", nil},
		{"script syntax error", "/scripts/s", `{"source":"function ("}`, 400, "source", nil},
		{"script source removed", "/scripts/s", `{"source":null}`, 400, "source", nil},
		{"script timeout too long", "/scripts/s", `{"timeout_ms":6000}`, 400, "timeout_ms", nil},
		{"script unknown field", "/scripts/s", `{"levle":1}`, 400, "levle", nil},
		{"missing script", "/scripts/nope", `{"level":1}`, 404, "", nil},
		{"user claims merge", "/users/alice", `{"claims":{"email":"alice@example.com","name":null,"address":{"locality":"Paris"}}}`, 200, "",
			map[string]any{"claims": map[string]any{"email": "alice@example.com", "address": map[string]any{"country": "FR", "locality": "Paris"}}, "disabled": false}},
		{"user disabled", "/users/alice", `{"disabled":true}`, 200, "",
			map[string]any{"disabled": true, "claims": map[string]any{"email": "alice@example.com", "address": map[string]any{"country": "FR", "locality": "Paris"}}}},
		{"user enabled again", "/users/alice", `{"disabled":false}`, 200, "", map[string]any{"disabled": false}},
		{"user renamed", "/users/alice", `{"username":"bob"}`, 400, "username", nil},
		{"user password too long", "/users/alice", `{"password":"` + strings.Repeat("p", 1025) + `"}`, 400, "password", nil},
		{"user wrong type", "/users/alice", `{"disabled":"yes"}`, 400, "disabled", nil},
		{"missing user", "/users/nobody", `{"disabled":true}`, 404, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.admin(http.MethodGet, tc.path, nil)
			r := h.patch(h.adminToken, tc.path, mergePatchType, tc.body)
			if r.status != tc.status {
				t.Fatalf("PATCH %s %s: %d %s, want %d", tc.path, tc.body, r.status, r.body, tc.status)
			}
			after := h.admin(http.MethodGet, tc.path, nil)
			if tc.status != 200 {
				if tc.field != "" && !strings.HasPrefix(r.str("error_description"), tc.field+":") {
					t.Fatalf("error_description %q does not name %s", r.str("error_description"), tc.field)
				}
				if !reflect.DeepEqual(before.json, after.json) {
					t.Fatalf("a refused patch changed it:\n%s\n%s", before.body, after.body)
				}
				return
			}
			for k, v := range tc.want {
				if !reflect.DeepEqual(after.json[k], v) || !reflect.DeepEqual(r.json[k], v) {
					t.Fatalf("%s = %#v (answer %#v), want %#v", k, after.json[k], r.json[k], v)
				}
			}
		})
	}
	t.Run("user password", func(t *testing.T) {
		if r := h.patch(h.adminToken, "/users/alice", mergePatchType, `{"password":"new-pw"}`); r.status != 200 || r.json["password"] != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		h.mustDecodeToken(h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"new-pw"}}, "pw", "pw-secret"))
		wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, "pw", "pw-secret"), 400, "invalid_grant")
	})
}

// TestDelegatedPatchCannotEscalate tries with PATCH what
// TestDelegatedAdminCannotEscalate and TestDelegatedAdminsCannotChangeWhatRuns
// try with PUT: PATCH goes through the same rules, so each is 403
// insufficient_scope and changes nothing.
func TestDelegatedPatchCannotEscalate(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("watch", `return true;`, nil))
	h.createScript(map[string]any{"name": "stamp", "type": "update_token",
		"source": "function modifyAccessToken(token, context) { return true }"})
	h.createScript(introspectionScript("inline-trusted", `return true;`, map[string]any{"isolation": "inline"}))
	h.createScript(introspectionScript("worker", `return true;`, map[string]any{"isolation": "process"}))
	h.createClient(map[string]any{"client_id": "clients-admin", "client_secret": "clients-admin-secret", "scope": "keyhook:clients.write keyhook:clients.read"})
	h.createClient(map[string]any{"client_id": "scripts-admin", "client_secret": "scripts-admin-secret", "scope": "keyhook:scripts.write keyhook:scripts.read"})
	h.createClient(map[string]any{"client_id": "ordinary", "client_secret": "ordinary-secret", "scope": "read"})
	h.createClient(map[string]any{"client_id": "bound", "client_secret": "bound-secret", "scope": "read", "introspection_scripts": []string{"watch"}})
	h.createClient(map[string]any{"client_id": "jwt", "client_secret": "jwt-secret", "access_token_as_jwt": true})
	h.createClient(map[string]any{"client_id": "jwt-runs", "client_secret": "jwt-runs-secret", "access_token_as_jwt": true,
		"run_introspection_script_before_jwt_creation": true})
	h.createClient(map[string]any{"client_id": "opaque-flag", "client_secret": "opaque-flag-secret", "run_introspection_script_before_jwt_creation": true})
	clients := h.mustToken("clients-admin", "clients-admin-secret", "").AccessToken
	scripts := h.mustToken("scripts-admin", "scripts-admin-secret", "").AccessToken

	for _, tc := range []struct {
		name, token, path, body string
	}{
		{"bind a script", clients, "/clients/ordinary", `{"introspection_scripts":["watch"]}`},
		{"bind an update-token script", clients, "/clients/ordinary", `{"update_token_scripts":["stamp"]}`},
		{"unbind a script", clients, "/clients/bound", `{"introspection_scripts":null}`},
		{"rebind a script", clients, "/clients/bound", `{"introspection_scripts":[]}`},
		{"give a client keyhook:admin", clients, "/clients/ordinary", `{"scope":"read keyhook:admin"}`},
		{"give itself keyhook:admin", clients, "/clients/clients-admin", `{"scope":"keyhook:clients.write keyhook:admin"}`},
		{"give a client another area", clients, "/clients/ordinary", `{"scope":"read keyhook:scripts.write"}`},
		{"set the bootstrap admin's secret", clients, "/clients/keyhook-admin", `{"client_secret":"taken-over-secret"}`},
		{"rename the bootstrap admin", clients, "/clients/keyhook-admin", `{"client_name":"mine"}`},
		{"patch the bootstrap admin with nothing", clients, "/clients/keyhook-admin", `{}`},
		{"drop the bootstrap admin's scope", clients, "/clients/keyhook-admin", `{"scope":null}`},
		{"run scripts at JWT creation", clients, "/clients/jwt", `{"run_introspection_script_before_jwt_creation":true}`},
		{"with Janssen's name", clients, "/clients/jwt", `{"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims":true}`},
		{"turn JWTs on where the flag is set", clients, "/clients/opaque-flag", `{"access_token_as_jwt":true}`},
		{"stop running scripts at JWT creation", clients, "/clients/jwt-runs", `{"run_introspection_script_before_jwt_creation":false}`},
		{"stop with Janssen's name", clients, "/clients/jwt-runs", `{"run_introspection_script_before_access_token_as_jwt_creation_and_include_claims":false}`},
		{"turn JWTs off where the flag is set", clients, "/clients/jwt-runs", `{"access_token_as_jwt":null}`},
		{"a script with a clients token", clients, "/scripts/watch", `{"level":1}`},
		{"a user with a clients token", clients, "/users/alice", `{"disabled":true}`},
		{"keep a trusted script inline", scripts, "/scripts/inline-trusted", `{"level":1}`},
		{"make a script inline", scripts, "/scripts/worker", `{"isolation":"inline"}`},
		{"a client with a scripts token", scripts, "/clients/ordinary", `{"client_name":"n"}`},
		{"bind with a scripts token", scripts, "/clients/ordinary", `{"introspection_scripts":["watch"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(h)
			r := h.patch(tc.token, tc.path, mergePatchType, tc.body)
			if r.status != http.StatusForbidden || r.str("error") != "insufficient_scope" {
				t.Fatalf("PATCH %s %s: %d %s, want 403 insufficient_scope", tc.path, tc.body, r.status, r.body)
			}
			if after := snapshot(h); !reflect.DeepEqual(before, after) {
				t.Fatalf("a refused patch changed something:\n%v\n%v", before, after)
			}
			h.mustToken("keyhook-admin", adminSecret, "")
		})
	}
	t.Run("ordinary administration works", func(t *testing.T) {
		for _, tc := range []struct{ token, path, body string }{
			{clients, "/clients/ordinary", `{"scope":"read write","attributes":{"team":"blue"}}`},
			{clients, "/clients/bound", `{"client_name":"keeps its binding"}`},
			{clients, "/clients/jwt-runs", `{"client_name":"keeps its flag"}`},
			{clients, "/clients/ordinary", `{"introspection_scripts":[]}`}, // no change: none bound
			{scripts, "/scripts/inline-trusted", `{"isolation":"process"}`},
			{scripts, "/scripts/watch", `{"level":1,"config":{"k":"v"}}`},
		} {
			if r := h.patch(tc.token, tc.path, mergePatchType, tc.body); r.status != 200 {
				t.Fatalf("PATCH %s %s: %d %s", tc.path, tc.body, r.status, r.body)
			}
		}
		if r := h.admin(http.MethodGet, "/clients/bound", nil); !reflect.DeepEqual(r.json["introspection_scripts"], []any{"watch"}) {
			t.Fatalf("bound lost its binding: %s", r.body)
		}
	})
	t.Run("keyhook:admin may do all of it", func(t *testing.T) {
		for _, tc := range []struct{ path, body string }{
			{"/clients/ordinary", `{"scope":"read keyhook:users.read","introspection_scripts":["watch"],"update_token_scripts":["stamp"]}`},
			{"/clients/jwt", `{"run_introspection_script_before_jwt_creation":true}`},
			{"/scripts/worker", `{"isolation":"inline"}`},
		} {
			if r := h.patch(h.adminToken, tc.path, mergePatchType, tc.body); r.status != 200 {
				t.Fatalf("PATCH %s %s: %d %s", tc.path, tc.body, r.status, r.body)
			}
		}
	})
}

// snapshot is every client and script as keyhook:admin reads them.
func snapshot(h *harness) map[string]any {
	h.t.Helper()
	out := map[string]any{}
	for _, p := range []string{"/clients", "/scripts", "/users"} {
		r := h.admin(http.MethodGet, p, nil)
		var v any
		_ = json.Unmarshal(r.body, &v)
		out[p] = v
	}
	return out
}

// TestPatchAnswersOnlyWhatAWriteOnlyTokenWrote: write does not imply
// read (docs/admin-security.md), so a token with an area's .write scope
// but neither its .read nor keyhook:admin gets back only the members its
// patch named, as stored, never the rest of the record.
func TestPatchAnswersOnlyWhatAWriteOnlyTokenWrote(t *testing.T) {
	h := newHarness(t)
	for _, area := range []string{"clients", "scripts", "users"} {
		h.createClient(map[string]any{"client_id": area + "-w", "client_secret": area + "-w-secret", "scope": "keyhook:" + area + ".write"})
		h.createClient(map[string]any{"client_id": area + "-rw", "client_secret": area + "-rw-secret", "scope": "keyhook:" + area + ".write keyhook:" + area + ".read"})
	}
	h.createClient(map[string]any{"client_id": "target", "client_name": "Target", "scope": "hidden",
		"attributes": map[string]string{"api_key_hint": "hidden", "team": "red"}})
	h.createScript(introspectionScript("s", `return "hidden";`, map[string]any{"config": map[string]string{"token": "hidden", "k": "v"}}))
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "pw",
		"claims": map[string]any{"email": "hidden@example.com", "address": map[string]any{"street": "hidden", "country": "FR"}}}); r.status != 201 {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		area, path, body string
		want             map[string]any
	}{
		{"clients", "/clients/target", `{"client_name":"Renamed","attributes":{"team":"blue"}}`,
			map[string]any{"client_id": "target", "client_name": "Renamed", "attributes": map[string]any{"team": "blue"}}},
		{"clients", "/clients/target", `{"attributes":{"gone":null}}`,
			map[string]any{"client_id": "target", "attributes": map[string]any{}}},
		{"scripts", "/scripts/s", `{"level":5,"config":{"k":"w"}}`,
			map[string]any{"name": "s", "level": 5.0, "config": map[string]any{"k": "w"}}},
		{"users", "/users/alice", `{"disabled":false,"claims":{"address":{"country":"DE"}}}`,
			map[string]any{"username": "alice", "disabled": false, "claims": map[string]any{"address": map[string]any{"country": "DE"}}}},
	} {
		t.Run(tc.area+" "+tc.body, func(t *testing.T) {
			tok := h.mustToken(tc.area+"-w", tc.area+"-w-secret", "").AccessToken
			r := h.patch(tok, tc.path, mergePatchType, tc.body)
			if r.status != 200 || !reflect.DeepEqual(r.json, tc.want) {
				t.Fatalf("write-only: %d %s, want %v", r.status, r.body, tc.want)
			}
			if strings.Contains(string(r.body), "hidden") {
				t.Fatalf("the answer reads what the token may not: %s", r.body)
			}
			// With the read scope too, the answer is the whole record.
			rw := h.mustToken(tc.area+"-rw", tc.area+"-rw-secret", "").AccessToken
			r = h.patch(rw, tc.path, mergePatchType, tc.body)
			if full := h.admin(http.MethodGet, tc.path, nil); r.status != 200 || !reflect.DeepEqual(r.json, full.json) {
				t.Fatalf("read-write: %d %s, want %s", r.status, r.body, full.body)
			}
		})
	}
}

// TestAdminConfigNullResets: PUT /config sets the properties it names
// and keeps the rest, like a merge patch (RFC 7396); null resets a
// property to its default, whatever its type.
func TestAdminConfigNullResets(t *testing.T) {
	h := newHarness(t)
	h.setConfig(map[string]any{"access_token_lifetime": 60, "introspection_skip_authorization": true,
		"introspection_required_scope": "introspect", "access_token_signing_alg": "ES256"})
	r := h.admin(http.MethodPut, "/config", `{"access_token_lifetime":null,"introspection_skip_authorization":null,
		"introspection_required_scope":null,"access_token_signing_alg":null}`)
	want := map[string]any{"access_token_lifetime": 300.0, "introspection_skip_authorization": false,
		"introspection_required_scope": "", "access_token_signing_alg": "RS256"}
	for k, v := range want {
		if r.status != 200 || r.json[k] != v {
			t.Fatalf("%s after null: %d %s", k, r.status, r.body)
		}
	}
	if got := h.admin(http.MethodGet, "/config", nil); got.json["access_token_lifetime"] != 300.0 {
		t.Fatalf("GET after null: %s", got.body)
	}
}
