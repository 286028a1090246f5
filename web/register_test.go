package web_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// registerCall sends a registration request (method, path below the
// issuer) with an optional bearer token and a JSON body (a string is
// sent as it is).
func (h *harness) registerCall(method, path, token string, body any) *response {
	h.t.Helper()
	var rd *strings.Reader
	switch b := body.(type) {
	case nil:
		rd = strings.NewReader("")
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = strings.NewReader(string(raw))
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

// initialToken issues an initial access token through the admin API.
func (h *harness) initialToken(doc map[string]any) string {
	h.t.Helper()
	r := h.admin(http.MethodPost, "/registration-tokens", doc)
	if r.status != http.StatusCreated || r.str("token") == "" {
		h.t.Fatalf("create registration token: %d %s", r.status, r.body)
	}
	return r.str("token")
}

// mustRegister registers a client and returns the client information.
func (h *harness) mustRegister(token string, md map[string]any) *response {
	h.t.Helper()
	r := h.registerCall(http.MethodPost, engine.PathRegister, token, md)
	if r.status != http.StatusCreated {
		h.t.Fatalf("register %v: %d %s", md, r.status, r.body)
	}
	return r
}

func TestRegisterWithInitialToken(t *testing.T) {
	testRegisterWithInitialToken(t, newHarness(t))
}

func TestRegisterWithInitialTokenPostgres(t *testing.T) {
	testRegisterWithInitialToken(t, newHarness(t, withDSN(pgDSN(t))))
}

func testRegisterWithInitialToken(t *testing.T, h *harness) {
	iat := h.initialToken(map[string]any{"label": "partners", "max_uses": 2, "scope": "read write"})

	conf := h.mustRegister(iat, map[string]any{
		"client_name": "Reports", "grant_types": []string{"client_credentials"}, "scope": "read",
	})
	id, secret := conf.str("client_id"), conf.str("client_secret")
	if id == "" || secret == "" || conf.str("registration_access_token") == "" {
		t.Fatalf("registration answer lacks credentials: %s", conf.body)
	}
	if conf.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", conf.header.Get("Cache-Control"))
	}
	if got := conf.str("registration_client_uri"); got != h.url+engine.PathRegister+"/"+id {
		t.Errorf("registration_client_uri = %q", got)
	}
	if conf.json["client_secret_expires_at"] != float64(0) || conf.json["client_id_issued_at"] == nil {
		t.Errorf("client_secret_expires_at / client_id_issued_at: %s", conf.body)
	}
	if conf.str("token_endpoint_auth_method") != "client_secret_basic" || conf.str("scope") != "read" ||
		conf.str("client_name") != "Reports" {
		t.Errorf("metadata not answered as registered: %s", conf.body)
	}
	// The new client works at the token endpoint, within its scope.
	tok := h.mustToken(id, secret, "read")
	if in := h.introspect(tok.AccessToken); in["active"] != true || in["client_id"] != id {
		t.Fatalf("token of the registered client: %v", in)
	}
	wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"write"}}, id, secret),
		http.StatusBadRequest, "invalid_scope")

	pub := h.mustRegister(iat, map[string]any{
		"token_endpoint_auth_method": "none", "redirect_uris": []string{"https://app.example/cb"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
	})
	if pub.str("client_secret") != "" || pub.json["client_secret_expires_at"] != nil {
		t.Errorf("a public client got a secret: %s", pub.body)
	}
	if rt, _ := json.Marshal(pub.json["response_types"]); string(rt) != `["code"]` {
		t.Errorf("response_types = %s", rt)
	}
	// The public client is usable at the authorization endpoint.
	q := url.Values{"response_type": {"code"}, "client_id": {pub.str("client_id")}, "redirect_uri": {"https://app.example/cb"},
		"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
	req, _ := http.NewRequest(http.MethodGet, h.url+"/oauth2/authorize?"+q.Encode(), nil)
	if r := h.do(req); r.status != http.StatusOK {
		t.Errorf("authorize with the public client: %d %s", r.status, r.body)
	}

	// Two uses: the third registration is refused.
	r := h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"grant_types": []string{"client_credentials"}})
	wantError(t, r, http.StatusUnauthorized, "invalid_token")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	list := h.admin(http.MethodGet, "/registration-tokens", nil)
	if !strings.Contains(string(list.body), `"uses":2`) || strings.Contains(string(list.body), iat) {
		t.Errorf("listed tokens: %s", list.body)
	}

	disc := h.do(mustRequest(http.MethodGet, h.url+"/.well-known/openid-configuration"))
	if disc.str("registration_endpoint") != h.url+engine.PathRegister {
		t.Errorf("discovery registration_endpoint = %q", disc.str("registration_endpoint"))
	}
}

func TestRegistrationManagement(t *testing.T) {
	h := newHarness(t)
	iat := h.initialToken(map[string]any{"max_uses": 5})
	reg := h.mustRegister(iat, map[string]any{"client_name": "One", "grant_types": []string{"client_credentials"}, "scope": "a b"})
	id, secret, rat := reg.str("client_id"), reg.str("client_secret"), reg.str("registration_access_token")
	path := engine.PathRegister + "/" + id
	other := h.mustRegister(iat, map[string]any{"grant_types": []string{"client_credentials"}})
	h.createClient(map[string]any{"client_id": "admin-made", "client_secret": "admin-made-secret"})

	t.Run("read", func(t *testing.T) {
		r := h.registerCall(http.MethodGet, path, rat, nil)
		if r.status != http.StatusOK || r.str("client_id") != id || r.str("client_name") != "One" ||
			r.str("registration_access_token") != rat || r.str("client_secret") != "" {
			t.Fatalf("read: %d %s", r.status, r.body)
		}
	})

	t.Run("refused tokens", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, token string
		}{
			{"no token", path, ""},
			{"wrong token", path, rat + "x"},
			{"another client's token", path, other.str("registration_access_token")},
			{"the client's own access token", path, h.mustToken(id, secret, "").AccessToken},
			{"the initial access token", path, iat},
			{"a client that does not exist", engine.PathRegister + "/nobody", rat},
			{"a client of the admin API", engine.PathRegister + "/admin-made", rat},
			{"the admin token on an admin client", engine.PathRegister + "/admin-made", h.adminToken},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
					var body any
					if m == http.MethodPut {
						body = map[string]any{"client_id": id}
					}
					r := h.registerCall(m, tc.path, tc.token, body)
					wantError(t, r, http.StatusUnauthorized, "invalid_token")
					if r.str("error_description") != "the registration access token is not valid" && tc.token != "" {
						t.Errorf("%s: description %q gives more away", m, r.str("error_description"))
					}
				}
			})
		}
		if r := h.admin(http.MethodGet, "/clients/admin-made", nil); r.status != http.StatusOK {
			t.Fatalf("the admin client was touched: %d", r.status)
		}
	})

	t.Run("update", func(t *testing.T) {
		r := h.registerCall(http.MethodPut, path, rat, map[string]any{
			"client_id": id, "client_secret": secret, "client_name": "One renamed",
			"grant_types": []string{"client_credentials"}, "scope": "a",
			"registration_access_token": rat, "registration_client_uri": h.url + path, "client_id_issued_at": 1,
		})
		if r.status != http.StatusOK || r.str("client_name") != "One renamed" || r.str("scope") != "a" ||
			r.str("client_secret") != "" || r.str("registration_access_token") != rat {
			t.Fatalf("update: %d %s", r.status, r.body)
		}
		// The secret is kept.
		h.mustToken(id, secret, "a")
		for _, tc := range []struct {
			name string
			body map[string]any
		}{
			{"without client_id", map[string]any{"grant_types": []string{"client_credentials"}}},
			{"another client_id", map[string]any{"client_id": other.str("client_id"), "grant_types": []string{"client_credentials"}}},
			{"a wrong client_secret", map[string]any{"client_id": id, "client_secret": "guess", "grant_types": []string{"client_credentials"}}},
			{"a keyhook scope", map[string]any{"client_id": id, "scope": "keyhook:admin", "grant_types": []string{"client_credentials"}}},
			{"bound scripts", map[string]any{"client_id": id, "update_token_scripts": []string{}, "grant_types": []string{"client_credentials"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, h.registerCall(http.MethodPut, path, rat, tc.body), http.StatusBadRequest, "invalid_client_metadata")
			})
		}
		// Full replacement: a member left out takes its default, and a
		// public client has no secret any more.
		r = h.registerCall(http.MethodPut, path, rat, map[string]any{
			"client_id": id, "token_endpoint_auth_method": "none", "redirect_uris": []string{"http://127.0.0.1:9/cb"},
		})
		if r.status != http.StatusOK || r.str("client_name") != "" || r.json["client_secret_expires_at"] != nil ||
			r.str("scope") != "" {
			t.Fatalf("replace: %d %s", r.status, r.body)
		}
		wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, id, secret), http.StatusUnauthorized, "invalid_client")
		// Back to a confidential client: a new secret, answered once.
		r = h.registerCall(http.MethodPut, path, rat, map[string]any{"client_id": id, "grant_types": []string{"client_credentials"}})
		if r.status != http.StatusOK || r.str("client_secret") == "" {
			t.Fatalf("secret not issued: %d %s", r.status, r.body)
		}
		secret = r.str("client_secret")
		h.mustToken(id, secret, "")
	})

	t.Run("delete", func(t *testing.T) {
		access := h.mustToken(id, secret, "").AccessToken
		r := h.registerCall(http.MethodDelete, path, rat, nil)
		if r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if in := h.introspect(access); in["active"] != false {
			t.Fatalf("the deleted client's token: %v", in)
		}
		wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, id, secret), http.StatusUnauthorized, "invalid_client")
		wantError(t, h.registerCall(http.MethodGet, path, rat, nil), http.StatusUnauthorized, "invalid_token")
		wantError(t, h.registerCall(http.MethodDelete, path, rat, nil), http.StatusUnauthorized, "invalid_token")
		// The other client is untouched.
		if r := h.registerCall(http.MethodGet, engine.PathRegister+"/"+other.str("client_id"), other.str("registration_access_token"), nil); r.status != http.StatusOK {
			t.Fatalf("the other client: %d %s", r.status, r.body)
		}
	})

	t.Run("an admin replace keeps the registration", func(t *testing.T) {
		oid := other.str("client_id")
		if r := h.admin(http.MethodPatch, "/clients/"+oid, map[string]any{"client_name": "patched"}); r.status != http.StatusOK {
			t.Fatalf("patch: %d %s", r.status, r.body)
		}
		r := h.registerCall(http.MethodGet, engine.PathRegister+"/"+oid, other.str("registration_access_token"), nil)
		if r.status != http.StatusOK || r.str("client_name") != "patched" {
			t.Fatalf("read after an admin patch: %d %s", r.status, r.body)
		}
	})
}

func TestRegistrationRefusals(t *testing.T) {
	h := newHarness(t)
	iat := h.initialToken(map[string]any{"max_uses": 1, "scope": "read"})
	cc := []string{"client_credentials"}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"keyhook:admin scope", map[string]any{"grant_types": cc, "scope": "keyhook:admin"}, 400, "invalid_client_metadata"},
		{"a keyhook area scope", map[string]any{"grant_types": cc, "scope": "read keyhook:clients.write"}, 400, "invalid_client_metadata"},
		{"a scope the token does not allow", map[string]any{"grant_types": cc, "scope": "read write"}, 400, "invalid_client_metadata"},
		{"introspection scripts", map[string]any{"grant_types": cc, "introspection_scripts": []string{"x"}}, 400, "invalid_client_metadata"},
		{"update token scripts", map[string]any{"grant_types": cc, "update_token_scripts": []string{}}, 400, "invalid_client_metadata"},
		{"access_token_as_jwt", map[string]any{"grant_types": cc, "access_token_as_jwt": true}, 400, "invalid_client_metadata"},
		{"a lifetime", map[string]any{"grant_types": cc, "access_token_lifetime": 1e9}, 400, "invalid_client_metadata"},
		{"allowed resources", map[string]any{"grant_types": cc, "allowed_resources": []string{"https://api.example"}}, 400, "invalid_client_metadata"},
		{"attributes", map[string]any{"grant_types": cc, "attributes": map[string]any{"a": "b"}}, 400, "invalid_client_metadata"},
		{"a token exchange policy", map[string]any{"grant_types": cc, "token_exchange": map[string]any{"subject_clients": []string{"*"}, "allow_impersonation": true}}, 400, "invalid_client_metadata"},
		{"the token exchange grant", map[string]any{"grant_types": []string{"urn:ietf:params:oauth:grant-type:token-exchange"}}, 400, "invalid_client_metadata"},
		{"the JWT bearer grant", map[string]any{"grant_types": []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"}}, 400, "invalid_client_metadata"},
		{"the password grant", map[string]any{"grant_types": []string{"password"}}, 400, "invalid_client_metadata"},
		{"an unknown grant", map[string]any{"grant_types": []string{"urn:x"}}, 400, "invalid_client_metadata"},
		{"a client_id", map[string]any{"grant_types": cc, "client_id": "chosen"}, 400, "invalid_client_metadata"},
		{"a client_secret", map[string]any{"grant_types": cc, "client_secret": "chosen-secret"}, 400, "invalid_client_metadata"},
		{"an unknown auth method", map[string]any{"grant_types": cc, "token_endpoint_auth_method": "magic"}, 400, "invalid_client_metadata"},
		{"private_key_jwt without keys", map[string]any{"grant_types": cc, "token_endpoint_auth_method": "private_key_jwt"}, 400, "invalid_client_metadata"},
		{"a wrong type", map[string]any{"grant_types": cc, "redirect_uris": "https://a.example/cb"}, 400, "invalid_client_metadata"},
		{"a code response without the grant", map[string]any{"grant_types": cc, "response_types": []string{"code"}}, 400, "invalid_client_metadata"},
		{"a token response", map[string]any{"redirect_uris": []string{"https://a.example/cb"}, "response_types": []string{"token"}}, 400, "invalid_client_metadata"},
		{"an http redirect URI", map[string]any{"redirect_uris": []string{"http://app.example/cb"}}, 400, "invalid_redirect_uri"},
		{"a javascript redirect URI", map[string]any{"redirect_uris": []string{"javascript:alert(1)"}}, 400, "invalid_redirect_uri"},
		{"a fragment", map[string]any{"redirect_uris": []string{"https://app.example/cb#x"}}, 400, "invalid_redirect_uri"},
		{"no redirect URI for the code grant", map[string]any{"client_name": "x"}, 400, "invalid_redirect_uri"},
		{"a software statement", map[string]any{"grant_types": cc, "software_statement": "eyJhbGciOiJub25lIn0.e30."}, 400, "invalid_software_statement"},
		{"a JSON array", `[]`, 400, "invalid_request"},
		{"null", `null`, 400, "invalid_client_metadata"},
		{"malformed JSON", `{"grant_types": [`, 400, "invalid_request"},
		{"two JSON values", `{} {}`, 400, "invalid_request"},
		{"an oversized body", `{"client_name": "` + strings.Repeat("a", 70<<10) + `"}`, 413, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, tc.body), tc.status, tc.code)
		})
	}
	t.Run("a form body", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.url+engine.PathRegister, strings.NewReader("client_name=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+iat)
		wantError(t, h.do(req), http.StatusBadRequest, "invalid_request")
	})
	t.Run("no token", func(t *testing.T) {
		wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, "", map[string]any{"grant_types": cc}), 401, "invalid_token")
	})
	t.Run("a made-up token", func(t *testing.T) {
		wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, "made-up", map[string]any{"grant_types": cc}), 401, "invalid_token")
	})
	t.Run("an admin access token", func(t *testing.T) {
		wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, h.adminToken, map[string]any{"grant_types": cc}), 401, "invalid_token")
	})
	// None of the refusals used the one-use token; unknown metadata is
	// ignored (RFC 7591 §2), not kept nor answered.
	r := h.mustRegister(iat, map[string]any{"grant_types": cc, "scope": "read", "logo_uri": "https://a.example/l.png",
		"made_up": map[string]any{"x": 1}, "contacts": []string{"ops@a.example"}})
	for _, k := range []string{"logo_uri", "made_up", "contacts"} {
		if _, ok := r.json[k]; ok {
			t.Errorf("%s was kept: %s", k, r.body)
		}
	}
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"grant_types": cc}), 401, "invalid_token")
}

func TestRegistrationTokenLifetime(t *testing.T) {
	h := newHarness(t)
	iat := h.initialToken(map[string]any{"expires_in": 60, "max_uses": 10})
	h.clock.advance(61 * time.Second)
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"grant_types": []string{"client_credentials"}}),
		http.StatusUnauthorized, "invalid_token")

	// A deleted token is refused at once.
	created := h.admin(http.MethodPost, "/registration-tokens", map[string]any{"label": "gone"})
	id := created.str("id")
	if r := h.admin(http.MethodGet, "/registration-tokens/"+id, nil); r.status != http.StatusOK || r.str("label") != "gone" ||
		r.str("token") != "" || r.json["max_uses"] != float64(1) || r.json["scope"] != nil {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	if r := h.admin(http.MethodDelete, "/registration-tokens/"+id, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, created.str("token"), map[string]any{"grant_types": []string{"client_credentials"}}),
		http.StatusUnauthorized, "invalid_token")
	wantError(t, h.admin(http.MethodGet, "/registration-tokens/"+id, nil), http.StatusNotFound, "not_found")
	wantError(t, h.admin(http.MethodDelete, "/registration-tokens/"+id, nil), http.StatusNotFound, "not_found")
}

func TestRegistrationTokenAdmin(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		body any
	}{
		{"a keyhook scope", map[string]any{"scope": "read keyhook:admin"}},
		{"a bad scope", map[string]any{"scope": "a\"b"}},
		{"max_uses below 1", map[string]any{"max_uses": -1}},
		{"max_uses too large", map[string]any{"max_uses": 1e7}},
		{"expires_in too long", map[string]any{"expires_in": 400 * 86400}},
		{"expires_in negative", map[string]any{"expires_in": -5}},
		{"a long label", map[string]any{"label": strings.Repeat("l", 256)}},
		{"an unknown member", map[string]any{"made_up": 1}},
		{"a chosen id", map[string]any{"id": "mine"}},
		{"a chosen token", map[string]any{"token": "mine"}},
		{"uses", map[string]any{"uses": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.admin(http.MethodPost, "/registration-tokens", tc.body), http.StatusBadRequest, "invalid_request")
		})
	}
	// A delegated keyhook:clients.write token may issue one; it never
	// gives a keyhook scope, whoever asks.
	h.createClient(map[string]any{"client_id": "delegate", "client_secret": "delegate-secret", "scope": "keyhook:clients.write"})
	del := h.mustToken("delegate", "delegate-secret", "").AccessToken
	r := h.adminAs(del, http.MethodPost, "/registration-tokens", map[string]any{"scope": "read", "label": "by delegate"})
	if r.status != http.StatusCreated || r.str("created_by") != "delegate" {
		t.Fatalf("delegated create: %d %s", r.status, r.body)
	}
	wantError(t, h.adminAs(del, http.MethodPost, "/registration-tokens", map[string]any{"scope": "keyhook:clients.write"}),
		http.StatusBadRequest, "invalid_request")
	wantError(t, h.adminAs(del, http.MethodGet, "/registration-tokens", nil), http.StatusForbidden, "insufficient_scope")
	// What a token allows is what its clients get, never more.
	reg := h.mustRegister(r.str("token"), map[string]any{"grant_types": []string{"client_credentials"}, "scope": "read"})
	tok := h.mustToken(reg.str("client_id"), reg.str("client_secret"), "")
	if tok.Scope != "read" {
		t.Fatalf("scope %q", tok.Scope)
	}
}

func TestOpenRegistration(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		h := newHarness(t)
		r := h.registerCall(http.MethodPost, engine.PathRegister, "", map[string]any{"grant_types": []string{"client_credentials"}})
		wantError(t, r, http.StatusUnauthorized, "invalid_token")
	})
	h := newHarness(t, withEngine(func(c *engine.Config) {
		c.OpenRegistration, c.OpenRegistrationScope, c.OpenRegistrationsPerAddress = true, "profile", 2
	}))
	md := map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "none", "scope": "profile"}
	// A refused registration does not count.
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, "", map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "scope": "email"}),
		http.StatusBadRequest, "invalid_client_metadata")
	// No machine identities without an initial access token.
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, "", map[string]any{"grant_types": []string{"client_credentials"}}),
		http.StatusBadRequest, "invalid_client_metadata")
	// A wrong initial token is refused even so: it is not open registration.
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, "made-up", md), http.StatusUnauthorized, "invalid_token")
	first := h.mustRegister("", md)
	h.mustRegister("", md)
	r := h.registerCall(http.MethodPost, engine.PathRegister, "", md)
	wantError(t, r, http.StatusTooManyRequests, "slow_down")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After")
	}
	// An update is no registration: the limit does not apply, the scope
	// cap does.
	path := engine.PathRegister + "/" + first.str("client_id")
	rat := first.str("registration_access_token")
	upd := map[string]any{"client_id": first.str("client_id"), "client_name": "named"}
	for k, v := range md {
		upd[k] = v
	}
	if r := h.registerCall(http.MethodPut, path, rat, upd); r.status != http.StatusOK || r.str("client_name") != "named" {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	upd["scope"] = "profile email"
	wantError(t, h.registerCall(http.MethodPut, path, rat, upd), http.StatusBadRequest, "invalid_client_metadata")
	upd["scope"], upd["grant_types"] = "profile", []string{"authorization_code", "client_credentials"}
	wantError(t, h.registerCall(http.MethodPut, path, rat, upd), http.StatusBadRequest, "invalid_client_metadata")
	// Past the back-off, one more is admitted.
	h.clock.advance(2 * time.Second)
	h.mustRegister("", md)
}

func registrationScript(name, body string, extra map[string]any) map[string]any {
	doc := map[string]any{"name": name, "type": "registration", "timeout_ms": 5000,
		"source": "function validateRegistration(metadata, context) {\n" + body + "\n}"}
	for k, v := range extra {
		doc[k] = v
	}
	return doc
}

func TestRegistrationScripts(t *testing.T) {
	h := newHarness(t)
	h.createScript(registrationScript("policy", `
		if ((metadata.client_name || "").indexOf("evil") >= 0) return false;
		metadata.client_name = context.registration.initial_token_label + ": " + (metadata.client_name || "") +
			" (" + context.registration.operation + ")";
		if (metadata.scope) metadata.scope = metadata.scope.split(" ").filter(function (s) { return s !== "admin-ish"; }).join(" ");
		return true;`, map[string]any{"level": 10}))
	h.createScript(registrationScript("second", `metadata.client_name += " +" + context.phase; return true;`, map[string]any{"level": 20}))
	h.createScript(registrationScript("sneaky", `
		if (metadata.client_name.indexOf("sneak") >= 0) metadata.update_token_scripts = ["x"];
		if (metadata.client_name.indexOf("grab") >= 0) metadata.scope = "keyhook:admin";
		return true;`, map[string]any{"level": 30}))
	iat := h.initialToken(map[string]any{"label": "acme", "max_uses": 10})
	cc := []string{"client_credentials"}

	r := h.mustRegister(iat, map[string]any{"client_name": "App", "grant_types": cc, "scope": "read admin-ish"})
	if got := r.str("client_name"); got != "acme: App (create) +registration" || r.str("scope") != "read" {
		t.Fatalf("amended metadata: %q %q", got, r.str("scope"))
	}
	refused := h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"client_name": "evil app", "grant_types": cc})
	wantError(t, refused, http.StatusBadRequest, "invalid_client_metadata")
	if strings.Contains(refused.str("error_description"), "policy\"") || strings.Contains(refused.str("error_description"), "script") {
		t.Errorf("the refusal names the script: %s", refused.body)
	}
	for _, name := range []string{"sneak", "grab"} {
		wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"client_name": name, "grant_types": cc}),
			http.StatusBadRequest, "invalid_client_metadata")
	}
	// The scripts run on updates too.
	id, rat := r.str("client_id"), r.str("registration_access_token")
	u := h.registerCall(http.MethodPut, engine.PathRegister+"/"+id, rat, map[string]any{"client_id": id, "client_name": "B", "grant_types": cc})
	if u.status != http.StatusOK || u.str("client_name") != "acme: B (update) +registration" {
		t.Fatalf("update: %d %s", u.status, u.body)
	}
	wantError(t, h.registerCall(http.MethodPut, engine.PathRegister+"/"+id, rat, map[string]any{"client_id": id, "client_name": "evil", "grant_types": cc}),
		http.StatusBadRequest, "invalid_client_metadata")

	// A registration script cannot be bound to a client.
	wantError(t, h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "bound", "update_token_scripts": []string{"policy"}}),
		http.StatusBadRequest, "invalid_request")

	// A failing script with on_error deny refuses with server_error; a
	// disabled one does not run.
	h.createScript(registrationScript("broken", `throw new Error("boom");`, map[string]any{"level": 40, "on_error": "deny"}))
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"client_name": "x", "grant_types": cc}),
		http.StatusInternalServerError, "server_error")
	if r := h.admin(http.MethodPatch, "/scripts/broken", map[string]any{"enabled": false}); r.status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	h.mustRegister(iat, map[string]any{"client_name": "x", "grant_types": cc})
}

// TestRegistrationExampleScript runs examples/scripts/registration_policy.js
// as a stored registration script behind a real registration endpoint.
func TestRegistrationExampleScript(t *testing.T) {
	src, err := os.ReadFile("../examples/scripts/registration_policy.js")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	h.createScript(map[string]any{"name": "registration-policy", "type": "registration", "source": string(src), "timeout_ms": 5000,
		"config": map[string]any{"allowed_domains": "acme.example", "max_scope": "openid profile"}})
	iat := h.initialToken(map[string]any{"label": "partner-acme", "max_uses": 3})
	r := h.mustRegister(iat, map[string]any{"client_name": "Reports", "redirect_uris": []string{"https://app.acme.example/cb"},
		"scope": "openid profile payroll"})
	if r.str("client_name") != "partner-acme: Reports" || r.str("scope") != "openid profile" {
		t.Fatalf("amended: %s", r.body)
	}
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{
		"redirect_uris": []string{"https://acme.example.evil.test/cb"}}), http.StatusBadRequest, "invalid_client_metadata")
}

// TestRegistrationTokenRace: concurrent registrations with a one-use
// initial access token make exactly one client.
func TestRegistrationTokenRace(t *testing.T) {
	h := newHarness(t)
	iat := h.initialToken(map[string]any{"max_uses": 1})
	const n = 8
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"grant_types": []string{"client_credentials"}}).status
		}()
	}
	wg.Wait()
	close(statuses)
	created := 0
	for s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusUnauthorized:
		default:
			t.Errorf("status %d", s)
		}
	}
	if created != 1 {
		t.Fatalf("%d clients registered with a one-use token", created)
	}
	all := h.admin(http.MethodGet, "/clients", nil)
	var list []map[string]any
	_ = json.Unmarshal(all.body, &list)
	if len(list) != 2 { // keyhook-admin and the registered one
		t.Fatalf("%d clients: %s", len(list), all.body)
	}
}

// TestOpenRegistrationBurst: concurrent open registrations from one
// address are counted as they are admitted, so a burst gets no more
// clients than the per-address limit.
func TestOpenRegistrationBurst(t *testing.T) {
	h := newHarness(t, withEngine(func(c *engine.Config) {
		c.OpenRegistration, c.OpenRegistrationsPerAddress = true, 3
	}))
	// A slow registration script keeps every registration of the burst
	// in flight together: none has finished when the others are admitted.
	h.createScript(registrationScript("slow", `var t = Date.now(); while (Date.now() - t < 200) {} return true;`, nil))
	const n = 12
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- h.registerCall(http.MethodPost, engine.PathRegister, "",
				map[string]any{"redirect_uris": []string{"https://app.example/cb"}, "token_endpoint_auth_method": "none"}).status
		}()
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[http.StatusCreated] != 3 || count[http.StatusTooManyRequests] != n-3 {
		t.Fatalf("statuses %v, want 3 × 201 and %d × 429", count, n-3)
	}
}
