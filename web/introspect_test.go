package web_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// introspectSetup makes an opaque and a JWT client, a resource server
// that introspects, a public client, and a user-bound token.
type introspectFixture struct {
	opaque, jwtTok, refresh, userAccess string
}

func introspectSetup(t *testing.T, h *harness) *introspectFixture {
	t.Helper()
	passwordSetup(t, h)
	h.createClient(map[string]any{"client_id": "opaque", "client_secret": "opaque-secret", "scope": "read write"})
	h.createClient(map[string]any{"client_id": "jwt", "client_secret": "jwt-secret", "scope": "read", "access_token_as_jwt": true})
	h.createClient(map[string]any{"client_id": "rs", "client_secret": "rs-secret", "token_endpoint_auth_method": "client_secret_post", "scope": "introspect"})
	h.createClient(map[string]any{"client_id": "spa", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{"http://127.0.0.1:9/cb"}})
	pw := h.passwordToken("api")
	return &introspectFixture{
		opaque:     h.mustToken("opaque", "opaque-secret", "read").AccessToken,
		jwtTok:     h.mustToken("jwt", "jwt-secret", "").AccessToken,
		refresh:    pw.RefreshToken,
		userAccess: pw.AccessToken,
	}
}

// introspectReq sends an introspection request as a client: mode "basic"
// (client opaque), "post-creds" (client rs) or "none".
func (h *harness) introspectReq(method, mode string, vals url.Values, extra http.Header) *response {
	h.t.Helper()
	vals = cloneVals(vals)
	var req *http.Request
	if mode == "post-creds" {
		vals.Set("client_id", "rs")
		vals.Set("client_secret", "rs-secret")
	}
	if method == http.MethodGet {
		req, _ = http.NewRequest(http.MethodGet, h.url+"/oauth2/introspect?"+vals.Encode(), nil)
	} else {
		req, _ = http.NewRequest(http.MethodPost, h.url+"/oauth2/introspect", strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if mode == "basic" {
		req.SetBasicAuth("opaque", "opaque-secret")
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	return h.do(req)
}

func cloneVals(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func TestIntrospectionActiveTokens(t *testing.T) {
	h := newHarness(t)
	// The rs client authenticates with client_secret_post; its bearer
	// tokens come from a Basic-authenticated twin.
	f := introspectSetup(t, h)
	h.createClient(map[string]any{"client_id": "rs-bearer", "client_secret": "rsb", "scope": "introspect"})
	rsBearer := h.mustToken("rs-bearer", "rsb", "").AccessToken

	jwtClaims, _ := verifyWithJWKS(t, h, f.jwtTok)
	cases := []struct {
		name   string
		token  string
		want   map[string]any
		absent []string
	}{
		{"opaque", f.opaque, map[string]any{"active": true, "client_id": "opaque", "scope": "read", "token_type": "Bearer",
			"sub": "opaque", "aud": "opaque", "iss": h.url, "grant_type": "client_credentials"}, []string{"username", "jti"}},
		{"jwt", f.jwtTok, map[string]any{"active": true, "client_id": "jwt", "token_type": "Bearer", "jti": jwtClaims["jti"],
			"iss": h.url, "scope": "read"}, []string{"username"}},
		{"user access", f.userAccess, map[string]any{"active": true, "username": "alice", "sub": "alice", "grant_type": "password"}, nil},
		{"refresh", f.refresh, map[string]any{"active": true, "token_type": "refresh_token", "client_id": "app", "username": "alice"}, nil},
	}
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		for _, mode := range []string{"basic", "post-creds", "bearer"} {
			for _, tc := range cases {
				t.Run(method+"/"+mode+"/"+tc.name, func(t *testing.T) {
					var r *response
					if mode == "bearer" {
						r = h.introspectBearer(method, rsBearer, url.Values{"token": {tc.token}})
					} else {
						r = h.introspectReq(method, mode, url.Values{"token": {tc.token}}, nil)
					}
					if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
						t.Fatalf("%d %v %s", r.status, r.header, r.body)
					}
					for k, v := range tc.want {
						if r.json[k] != v {
							t.Errorf("%s = %v, want %v", k, r.json[k], v)
						}
					}
					for _, k := range []string{"exp", "iat", "nbf"} {
						if _, ok := r.json[k].(float64); !ok {
							t.Errorf("%s missing", k)
						}
					}
					for _, k := range tc.absent {
						if _, ok := r.json[k]; ok {
							t.Errorf("%s present", k)
						}
					}
					if strings.Contains(string(r.body), "null") {
						t.Errorf("null in %s", r.body)
					}
				})
			}
		}
	}
	t.Run("wrong hint only changes search order", func(t *testing.T) {
		r := h.introspectReq(http.MethodPost, "basic", url.Values{"token": {f.refresh}, "token_type_hint": {"access_token"}}, nil)
		if r.json["active"] != true {
			t.Fatalf("%s", r.body)
		}
	})
}

func (h *harness) introspectBearer(method, token string, vals url.Values) *response {
	h.t.Helper()
	var req *http.Request
	if method == http.MethodGet {
		req, _ = http.NewRequest(http.MethodGet, h.url+"/oauth2/introspect?"+vals.Encode(), nil)
	} else {
		req, _ = http.NewRequest(http.MethodPost, h.url+"/oauth2/introspect", strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return h.do(req)
}

func TestIntrospectionInactiveTokens(t *testing.T) {
	h := newHarness(t)
	f := introspectSetup(t, h)
	revoked := h.mustToken("opaque", "opaque-secret", "").AccessToken
	h.form("/oauth2/revoke", url.Values{"token": {revoked}}, "opaque", "opaque-secret")
	revokedJWT := h.mustToken("jwt", "jwt-secret", "").AccessToken
	h.form("/oauth2/revoke", url.Values{"token": {revokedJWT}}, "jwt", "jwt-secret")
	parts := strings.Split(f.jwtTok, ".")
	tamperedClaims := strings.Replace(parts[1], parts[1][:4], "eyJ4", 1)
	// A JWT signed by a key the server does not have.
	foreign := func() string {
		key, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
		s, _ := jwt.Signed(key).Claims(map[string]any{"jti": "x", "iss": h.url}).Serialize()
		return s
	}()
	short := h.mustToken("opaque", "opaque-secret", "").AccessToken
	for name, tok := range map[string]string{
		"unknown":           "definitely-not-issued",
		"garbage":           "\x00\x01%%%",
		"revoked opaque":    revoked,
		"revoked jwt":       revokedJWT,
		"tampered jwt":      parts[0] + "." + tamperedClaims + "." + parts[2],
		"jwt bad signature": parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"foreign jwt":       foreign,
		"huge":              strings.Repeat("a", 40<<10),
	} {
		t.Run(name, func(t *testing.T) {
			r := h.introspectReq(http.MethodPost, "basic", url.Values{"token": {tok}}, nil)
			if r.status != 200 || string(r.body) != "{\"active\":false}\n" {
				t.Fatalf("%d %q", r.status, r.body)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		h.clock.advance(301 * time.Second)
		defer h.clock.advance(-301 * time.Second)
		r := h.introspectReq(http.MethodPost, "post-creds", url.Values{"token": {short}}, nil)
		if r.json["active"] != false || len(r.json) != 1 {
			t.Fatalf("%s", r.body)
		}
	})
}

func TestIntrospectionCallerAuthorization(t *testing.T) {
	h := newHarness(t)
	f := introspectSetup(t, h)
	h.createClient(map[string]any{"client_id": "rs-bearer", "client_secret": "rsb", "scope": "introspect other"})
	withScope := h.mustToken("rs-bearer", "rsb", "introspect").AccessToken
	withoutScope := h.mustToken("rs-bearer", "rsb", "other").AccessToken
	expiredBearer := h.mustToken("rs-bearer", "rsb", "introspect").AccessToken
	tok := url.Values{"token": {f.opaque}}

	noAuth := func(method string, vals url.Values) *response {
		return h.introspectReq(method, "none", vals, nil)
	}
	t.Run("no credentials", func(t *testing.T) {
		for _, m := range []string{"GET", "POST"} {
			r := noAuth(m, tok)
			if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s: %d %v", m, r.status, r.header)
			}
		}
	})
	t.Run("public client", func(t *testing.T) {
		wantError(t, h.introspectReq("POST", "none", url.Values{"token": {f.opaque}, "client_id": {"spa"}}, nil), 401, "invalid_client")
	})
	t.Run("wrong client secret", func(t *testing.T) {
		r := h.form("/oauth2/introspect", tok, "opaque", "wrong")
		wantError(t, r, 401, "invalid_client")
	})
	t.Run("invalid bearer", func(t *testing.T) {
		for _, b := range []string{"garbage", f.refresh} {
			r := h.introspectBearer("POST", b, tok)
			wantError(t, r, 401, "invalid_token")
			if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("challenge %q", r.header.Get("WWW-Authenticate"))
			}
		}
	})
	t.Run("missing token", func(t *testing.T) {
		wantError(t, h.introspectReq("POST", "basic", url.Values{}, nil), 400, "invalid_request")
		wantError(t, h.introspectBearer("GET", withScope, url.Values{}), 400, "invalid_request")
	})
	t.Run("required scope", func(t *testing.T) {
		h.setConfig(map[string]any{"introspection_required_scope": "introspect"})
		defer h.setConfig(map[string]any{"introspection_required_scope": ""})
		if r := h.introspectBearer("POST", withScope, tok); r.json["active"] != true {
			t.Fatalf("with scope: %d %s", r.status, r.body)
		}
		r := h.introspectBearer("POST", withoutScope, tok)
		wantError(t, r, 403, "insufficient_scope")
		if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Fatalf("challenge %q", r.header.Get("WWW-Authenticate"))
		}
		// Client authentication is not affected by the bearer scope.
		if r := h.introspectReq("POST", "basic", tok, nil); r.json["active"] != true {
			t.Fatalf("client auth: %s", r.body)
		}
	})
	t.Run("expired bearer", func(t *testing.T) {
		h.clock.advance(400 * time.Second)
		defer h.clock.advance(-400 * time.Second)
		wantError(t, h.introspectBearer("POST", expiredBearer, tok), 401, "invalid_token")
	})
	t.Run("skip authorization", func(t *testing.T) {
		h.setConfig(map[string]any{"introspection_skip_authorization": true})
		defer h.setConfig(map[string]any{"introspection_skip_authorization": false})
		for _, m := range []string{"GET", "POST"} {
			if r := noAuth(m, tok); r.status != 200 || r.json["active"] != true {
				t.Fatalf("%s: %d %s", m, r.status, r.body)
			}
		}
	})
}

func TestIntrospectionJWTAnswer(t *testing.T) {
	h := newHarness(t)
	f := introspectSetup(t, h)
	check := func(t *testing.T, r *response, wantAud string, wantActive bool) {
		t.Helper()
		if r.status != 200 || r.header.Get("Content-Type") != "application/token-introspection+jwt" {
			t.Fatalf("%d %v %s", r.status, r.header, r.body)
		}
		claims, header := verifyWithJWKS(t, h, string(r.body))
		if header.ExtraHeaders["typ"] != "token-introspection+jwt" {
			t.Fatalf("typ = %v", header.ExtraHeaders["typ"])
		}
		if claims["iss"] != h.url || claims["iat"] == nil {
			t.Fatalf("claims %v", claims)
		}
		if wantAud != "" && claims["aud"] != wantAud {
			t.Fatalf("aud = %v, want %s", claims["aud"], wantAud)
		}
		ti, _ := claims["token_introspection"].(map[string]any)
		if ti["active"] != wantActive {
			t.Fatalf("token_introspection = %v", ti)
		}
		if wantActive && ti["client_id"] != "opaque" {
			t.Fatalf("token_introspection = %v", ti)
		}
	}
	for _, m := range []string{"GET", "POST"} {
		t.Run(m+" response_as_jwt", func(t *testing.T) {
			check(t, h.introspectReq(m, "basic", url.Values{"token": {f.opaque}, "response_as_jwt": {"true"}}, nil), "opaque", true)
		})
		t.Run(m+" Accept header", func(t *testing.T) {
			check(t, h.introspectReq(m, "post-creds", url.Values{"token": {f.opaque}}, http.Header{"Accept": {"application/token-introspection+jwt"}}), "rs", true)
		})
	}
	t.Run("inactive as JWT", func(t *testing.T) {
		check(t, h.introspectReq("POST", "basic", url.Values{"token": {"nope"}, "response_as_jwt": {"true"}}, nil), "opaque", false)
	})
	t.Run("response_as_jwt=false is JSON", func(t *testing.T) {
		r := h.introspectReq("POST", "basic", url.Values{"token": {f.opaque}, "response_as_jwt": {"false"}}, nil)
		var m map[string]any
		if json.Unmarshal(r.body, &m) != nil || m["active"] != true {
			t.Fatalf("%s", r.body)
		}
	})
}

func TestRevocation(t *testing.T) {
	h := newHarness(t)
	f := introspectSetup(t, h)
	t.Run("unknown token is 200", func(t *testing.T) {
		if r := h.form("/oauth2/revoke", url.Values{"token": {"never-issued"}}, "opaque", "opaque-secret"); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("another client's token", func(t *testing.T) {
		wantError(t, h.form("/oauth2/revoke", url.Values{"token": {f.opaque}}, "jwt", "jwt-secret"), 400, "unauthorized_client")
		if h.introspect(f.opaque)["active"] != true {
			t.Fatal("token of another client was revoked")
		}
	})
	t.Run("client authentication required", func(t *testing.T) {
		wantError(t, h.form("/oauth2/revoke", url.Values{"token": {f.opaque}}, "", ""), 400, "invalid_client")
		wantError(t, h.form("/oauth2/revoke", url.Values{"token": {f.opaque}}, "opaque", "bad"), 401, "invalid_client")
	})
	t.Run("missing token", func(t *testing.T) {
		wantError(t, h.form("/oauth2/revoke", url.Values{}, "opaque", "opaque-secret"), 400, "invalid_request")
	})
	for name, tc := range map[string]struct{ tok, id, secret string }{
		"opaque": {f.opaque, "opaque", "opaque-secret"},
		"jwt":    {f.jwtTok, "jwt", "jwt-secret"},
	} {
		t.Run("revoke "+name, func(t *testing.T) {
			if r := h.form("/oauth2/revoke", url.Values{"token": {tc.tok}}, tc.id, tc.secret); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if in := h.introspect(tc.tok); len(in) != 1 || in["active"] != false {
				t.Fatalf("after revocation: %v", in)
			}
		})
	}
	t.Run("refresh token revokes its grant", func(t *testing.T) {
		r := h.form("/oauth2/revoke", url.Values{"token": {f.refresh}, "token_type_hint": {"refresh_token"}}, "app", "app-secret")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for name, tok := range map[string]string{"refresh": f.refresh, "access": f.userAccess} {
			if h.introspect(tok)["active"] != false {
				t.Errorf("%s token still active", name)
			}
		}
		wantError(t, h.refresh(f.refresh, ""), 400, "invalid_grant")
	})
}
