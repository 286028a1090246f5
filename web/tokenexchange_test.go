package web_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// Token exchange (RFC 8693; docs/token-exchange.md), driven through real
// HTTP on a real SQLite file (and PostgreSQL when KEYHOOK_TEST_PG is set).

const (
	grantExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	ttAccess      = "urn:ietf:params:oauth:token-type:access_token"
	ttRefresh     = "urn:ietf:params:oauth:token-type:refresh_token"
	ttIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	ttJWT         = "urn:ietf:params:oauth:token-type:jwt"
)

// exchangeSetup registers alice and these clients:
//   - frontend: alice's tokens (password grant, refresh tokens), 2 minutes;
//   - gateway: may exchange frontend's tokens, impersonate and delegate,
//     audience values "orders", "refuse", "widen", "sneak", resource resAPI;
//   - deep: JWT access tokens, may exchange gateway's tokens with its own
//     token as actor (the second hop of a delegation chain);
//   - lonely: the grant without a policy;
//   - pub: a public client with the grant; cc: a client without it.
func exchangeSetup(t *testing.T, h *harness) {
	t.Helper()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw"}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "frontend", "client_secret": "fe-secret", "scope": "openid read write admin",
		"grant_types": []string{"password", "refresh_token", "client_credentials"}, "access_token_lifetime": 120})
	h.createClient(map[string]any{"client_id": "gateway", "client_secret": "gw-secret", "scope": "openid read write",
		"grant_types": []string{grantExchange, "client_credentials", "refresh_token"}, "allowed_resources": []string{resAPI},
		"token_exchange": map[string]any{"subject_clients": []string{"frontend"}, "allow_impersonation": true,
			"allow_delegation": true, "audiences": []string{"orders", "refuse", "widen", "sneak"}}})
	h.createClient(map[string]any{"client_id": "deep", "client_secret": "deep-secret", "scope": "read write",
		"grant_types": []string{grantExchange, "client_credentials"}, "access_token_as_jwt": true,
		"token_exchange": map[string]any{"subject_clients": []string{"gateway"}, "allow_delegation": true}})
	h.createClient(map[string]any{"client_id": "lonely", "client_secret": "lonely-secret", "scope": "read write",
		"grant_types": []string{grantExchange, "client_credentials"}})
	h.createClient(map[string]any{"client_id": "pub", "token_endpoint_auth_method": "none", "scope": "read",
		"grant_types": []string{grantExchange, "refresh_token"}})
	h.createClient(map[string]any{"client_id": "cc", "client_secret": "cc-secret", "scope": "read",
		"grant_types": []string{"client_credentials"}})
}

// aliceToken is alice's access token (and refresh token) at frontend.
func aliceToken(t *testing.T, h *harness, scope string) *tokenResp {
	t.Helper()
	return h.mustDecodeToken(h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"},
		"password": {"alice-pw"}, "scope": {scope}}, "frontend", "fe-secret"))
}

// exchangeAs posts a token exchange of subject as client id; extra adds
// or overrides parameters (an empty value removes one).
func exchangeAs(h *harness, id, secret, subject string, extra url.Values) *response {
	h.t.Helper()
	vals := url.Values{"grant_type": {grantExchange}, "subject_token": {subject}, "subject_token_type": {ttAccess}}
	for k, v := range extra {
		if len(v) == 1 && v[0] == "" {
			vals.Del(k)
		} else {
			vals[k] = v
		}
	}
	return h.form("/oauth2/token", vals, id, secret)
}

func TestTokenExchangeImpersonation(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "openid read write admin")
	subj := h.introspect(alice.AccessToken)

	r := exchangeAs(h, "gateway", "gw-secret", alice.AccessToken, nil)
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	if r.str("issued_token_type") != ttAccess || r.str("token_type") != "Bearer" {
		t.Fatalf("answer: %s", r.body)
	}
	if _, ok := r.json["refresh_token"]; ok {
		t.Fatalf("a refresh token was issued: %s", r.body)
	}
	if _, ok := r.json["id_token"]; ok {
		t.Fatalf("an ID token was issued: %s", r.body)
	}
	// Default scope: the subject's and the client's in common.
	if r.str("scope") != "openid read write" {
		t.Fatalf("scope %q", r.str("scope"))
	}
	got := h.introspect(r.str("access_token"))
	if got["active"] != true || got["sub"] != "alice" || got["client_id"] != "gateway" || got["username"] != "alice" ||
		got["grant_type"] != grantExchange || got["aud"] != "gateway" {
		t.Fatalf("introspection: %v", got)
	}
	if _, ok := got["act"]; ok {
		t.Fatalf("impersonation has act: %v", got)
	}
	// Not beyond the subject token's expiry (frontend's 2 minutes,
	// below gateway's 5).
	if got["exp"].(float64) > subj["exp"].(float64) {
		t.Fatalf("exchanged exp %v after subject's %v", got["exp"], subj["exp"])
	}
	if n := r.json["expires_in"].(float64); n > 120 || n < 110 {
		t.Fatalf("expires_in %v", n)
	}
	// The exchanged token is itself a subject_token for the client it
	// was issued to (narrowing it further).
	r2 := exchangeAs(h, "gateway", "gw-secret", r.str("access_token"), url.Values{"scope": {"read"}})
	if r2.status != http.StatusOK || r2.str("scope") != "read" {
		t.Fatalf("re-exchange: %d %s", r2.status, r2.body)
	}
}

func TestTokenExchangeDelegation(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "read write")
	gw := h.mustToken("gateway", "gw-secret", "read")

	r := exchangeAs(h, "gateway", "gw-secret", alice.AccessToken, url.Values{
		"actor_token": {gw.AccessToken}, "actor_token_type": {ttAccess}, "scope": {"read"}})
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	first := h.introspect(r.str("access_token"))
	wantAct := map[string]any{"sub": "gateway", "client_id": "gateway"}
	if first["sub"] != "alice" || !reflect.DeepEqual(first["act"], wantAct) || first["scope"] != "read" {
		t.Fatalf("introspection: %v", first)
	}

	// Second hop: deep exchanges the delegated token with its own token
	// as actor; the prior actor nests (RFC 8693 §4.1). deep's access
	// tokens are JWTs, which carry act too.
	deepTok := h.mustToken("deep", "deep-secret", "read")
	r2 := exchangeAs(h, "deep", "deep-secret", r.str("access_token"), url.Values{
		"actor_token": {deepTok.AccessToken}, "actor_token_type": {ttJWT}})
	if r2.status != http.StatusOK {
		t.Fatalf("second hop: %d %s", r2.status, r2.body)
	}
	nested := map[string]any{"sub": "deep", "client_id": "deep", "act": wantAct}
	claims := jwtClaims(t, r2.str("access_token"))
	if claims["sub"] != "alice" || claims["client_id"] != "deep" || !reflect.DeepEqual(claims["act"], nested) {
		t.Fatalf("JWT claims: %v", claims)
	}
	if got := h.introspect(r2.str("access_token")); !reflect.DeepEqual(got["act"], nested) {
		t.Fatalf("introspection act: %v", got["act"])
	}
	// Impersonating with a delegated token keeps its actors: no
	// laundering delegation into impersonation.
	r3 := exchangeAs(h, "gateway", "gw-secret", r.str("access_token"), nil)
	if r3.status != http.StatusOK {
		t.Fatalf("re-exchange: %d %s", r3.status, r3.body)
	}
	if got := h.introspect(r3.str("access_token")); !reflect.DeepEqual(got["act"], wantAct) {
		t.Fatalf("act after impersonation of a delegated token: %v", got["act"])
	}
}

func TestTokenExchangeScopeAudienceResource(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "read write admin").AccessToken
	readOnly := aliceToken(t, h, "read").AccessToken

	ok := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"audience": {"orders"}, "resource": {resAPI}, "scope": {"write"}})
	if ok.status != http.StatusOK || ok.str("scope") != "write" {
		t.Fatalf("exchange: %d %s", ok.status, ok.body)
	}
	if got := h.introspect(ok.str("access_token")); !reflect.DeepEqual(got["aud"], []any{"orders", resAPI}) {
		t.Fatalf("aud %v", got["aud"])
	}

	for _, tc := range []struct {
		name    string
		subject string
		extra   url.Values
		code    string
	}{
		{"scope beyond the subject token", readOnly, url.Values{"scope": {"read write"}}, "invalid_scope"},
		{"scope the subject has but not the client", alice, url.Values{"scope": {"admin"}}, "invalid_scope"},
		{"unknown scope", alice, url.Values{"scope": {"delete"}}, "invalid_scope"},
		{"malformed scope", alice, url.Values{"scope": {"re\"ad"}}, "invalid_scope"},
		{"audience not in the policy", alice, url.Values{"audience": {"billing"}}, "invalid_target"},
		{"audience with a space", alice, url.Values{"audience": {"or ders"}}, "invalid_target"},
		{"oversized audience", alice, url.Values{"audience": {strings.Repeat("a", 3000)}}, "invalid_target"},
		{"too many audiences", alice, url.Values{"audience": slices.Repeat([]string{"orders"}, 21)}, "invalid_target"},
		{"resource not allowed", alice, url.Values{"resource": {resFiles}}, "invalid_target"},
		{"resource with a fragment", alice, url.Values{"resource": {resAPI + "#x"}}, "invalid_target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, exchangeAs(h, "gateway", "gw-secret", tc.subject, tc.extra), http.StatusBadRequest, tc.code)
		})
	}
}

func TestTokenExchangeRefusals(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "read write")
	lonely := h.mustToken("lonely", "lonely-secret", "read write")
	gwOwn := h.mustToken("gateway", "gw-secret", "read")
	ccTok := h.mustToken("cc", "cc-secret", "read")
	revoked := aliceToken(t, h, "read")
	if r := h.form("/oauth2/revoke", url.Values{"token": {revoked.AccessToken}}, "frontend", "fe-secret"); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	foreign := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://other.example","sub":"x"}`)) + ".c2ln"
	forged := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+h.url+`","jti":"x"}`)) + ".c2ln"

	// A client without a policy narrows its own tokens, and nothing else.
	if r := exchangeAs(h, "lonely", "lonely-secret", lonely.AccessToken, url.Values{"scope": {"read"}}); r.status != 200 || r.str("scope") != "read" {
		t.Fatalf("own token: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name           string
		client, secret string
		subject        string
		extra          url.Values
		status         int
		code, desc     string
	}{
		{"another client's token without a policy", "lonely", "lonely-secret", alice.AccessToken, nil, 400, "invalid_request", "issued to client"},
		{"delegation without a policy", "lonely", "lonely-secret", lonely.AccessToken,
			url.Values{"actor_token": {lonely.AccessToken}, "actor_token_type": {ttAccess}}, 400, "invalid_request", "delegation"},
		{"audience without a policy", "lonely", "lonely-secret", lonely.AccessToken, url.Values{"audience": {"orders"}}, 400, "invalid_target", ""},
		{"a client not in subject_clients", "gateway", "gw-secret", ccTok.AccessToken, nil, 400, "invalid_request", "issued to client"},
		{"an actor of a client not in actor_clients", "gateway", "gw-secret", alice.AccessToken,
			url.Values{"actor_token": {ccTok.AccessToken}, "actor_token_type": {ttAccess}}, 400, "invalid_request", "actor tokens"},
		{"impersonation not allowed", "deep", "deep-secret", gwOwn.AccessToken, nil, 400, "invalid_request", "without an actor_token"},
		{"revoked subject token", "gateway", "gw-secret", revoked.AccessToken, nil, 400, "invalid_request", "not an active access token"},
		{"garbage subject token", "gateway", "gw-secret", "not-a-token", nil, 400, "invalid_request", "not an active access token"},
		{"refresh token as access token", "gateway", "gw-secret", alice.RefreshToken, nil, 400, "invalid_request", "not an active access token"},
		{"refresh token type", "gateway", "gw-secret", alice.RefreshToken, url.Values{"subject_token_type": {ttRefresh}}, 400, "invalid_request", "not supported"},
		{"id token type", "gateway", "gw-secret", alice.AccessToken, url.Values{"subject_token_type": {ttIDToken}}, 400, "invalid_request", "not supported"},
		{"jwt type for an opaque token", "gateway", "gw-secret", alice.AccessToken, url.Values{"subject_token_type": {ttJWT}}, 400, "invalid_request", "not a JWT"},
		{"unknown type", "gateway", "gw-secret", alice.AccessToken, url.Values{"subject_token_type": {"urn:x"}}, 400, "invalid_request", "not supported"},
		{"foreign JWT", "gateway", "gw-secret", foreign, url.Values{"subject_token_type": {ttJWT}}, 400, "invalid_request", "issuer is not trusted"},
		{"forged JWT of this issuer", "gateway", "gw-secret", forged, url.Values{"subject_token_type": {ttJWT}}, 400, "invalid_request", "not an active access token"},
		{"oversized subject token", "gateway", "gw-secret", strings.Repeat("a", 17<<10), nil, 400, "invalid_request", "longer than"},
		{"missing subject_token", "gateway", "gw-secret", "", nil, 400, "invalid_request", "required"},
		{"missing subject_token_type", "gateway", "gw-secret", alice.AccessToken, url.Values{"subject_token_type": {""}}, 400, "invalid_request", "required"},
		{"actor_token without its type", "gateway", "gw-secret", alice.AccessToken, url.Values{"actor_token": {gwOwn.AccessToken}}, 400, "invalid_request", "go together"},
		{"actor_token_type without a token", "gateway", "gw-secret", alice.AccessToken, url.Values{"actor_token_type": {ttAccess}}, 400, "invalid_request", "go together"},
		{"garbage actor token", "gateway", "gw-secret", alice.AccessToken,
			url.Values{"actor_token": {"nope"}, "actor_token_type": {ttAccess}}, 400, "invalid_request", "actor_token is not an active"},
		{"unsupported requested_token_type", "gateway", "gw-secret", alice.AccessToken, url.Values{"requested_token_type": {ttIDToken}}, 400, "invalid_request", "not supported"},
		{"refresh token requested", "gateway", "gw-secret", alice.AccessToken, url.Values{"requested_token_type": {ttRefresh}}, 400, "invalid_request", "not supported"},
		{"public client", "pub", "", alice.AccessToken, nil, 400, "unauthorized_client", ""},
		{"client without the grant", "cc", "cc-secret", ccTok.AccessToken, nil, 400, "unauthorized_client", ""},
		{"wrong client secret", "gateway", "nope", alice.AccessToken, nil, 401, "invalid_client", ""},
		{"repeated subject_token", "gateway", "gw-secret", alice.AccessToken, url.Values{"subject_token": {alice.AccessToken, alice.AccessToken}}, 400, "invalid_request", "repeated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := exchangeAs(h, tc.client, tc.secret, tc.subject, tc.extra)
			wantError(t, r, tc.status, tc.code)
			if !strings.Contains(r.str("error_description"), tc.desc) {
				t.Fatalf("description %q lacks %q", r.str("error_description"), tc.desc)
			}
			if len(r.body) > 1024 {
				t.Fatalf("answer of %d bytes echoes the request", len(r.body))
			}
		})
	}

	// Expired: the clock passes frontend's 2 minutes.
	fresh := aliceToken(t, h, "read")
	h.clock.advance(3 * time.Minute)
	wantError(t, exchangeAs(h, "gateway", "gw-secret", fresh.AccessToken, nil), 400, "invalid_request")
}

func TestTokenExchangeMayAct(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	// frontend's tokens name who may act for alice (RFC 8693 §4.4).
	h.createScript(map[string]any{"name": "may-act", "type": "update_token", "timeout_ms": 5000, "source": `
function modifyAccessToken(token, context) {
  var who = context.request.params.may_act_sub;
  if (who) token.claims.may_act = {sub: who};
  return true;
}`})
	if r := h.admin(http.MethodPatch, "/clients/frontend", map[string]any{"update_token_scripts": []string{"may-act"}}); r.status != 200 {
		t.Fatalf("bind: %d %s", r.status, r.body)
	}
	mayAct := func(who string) string {
		return h.mustDecodeToken(h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"},
			"password": {"alice-pw"}, "scope": {"read"}, "may_act_sub": {who}}, "frontend", "fe-secret")).AccessToken
	}
	gw := h.mustToken("gateway", "gw-secret", "read").AccessToken
	actor := url.Values{"actor_token": {gw}, "actor_token_type": {ttAccess}}
	if r := exchangeAs(h, "gateway", "gw-secret", mayAct("gateway"), actor); r.status != 200 {
		t.Fatalf("may_act gateway: %d %s", r.status, r.body)
	}
	r := exchangeAs(h, "gateway", "gw-secret", mayAct("someone-else"), actor)
	wantError(t, r, 400, "invalid_request")
	if !strings.Contains(r.str("error_description"), "may_act") {
		t.Fatalf("description: %s", r.body)
	}
}

func TestTokenExchangeRequestedJWT(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "read").AccessToken
	r := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"requested_token_type": {ttJWT}})
	if r.status != 200 || r.str("issued_token_type") != ttJWT {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	claims := jwtClaims(t, r.str("access_token"))
	if claims["sub"] != "alice" || claims["client_id"] != "gateway" {
		t.Fatalf("claims %v", claims)
	}
	if got := h.introspect(r.str("access_token")); got["active"] != true {
		t.Fatalf("introspection %v", got)
	}
	// A JWT access token of this server is a jwt subject_token too.
	if r2 := exchangeAs(h, "gateway", "gw-secret", r.str("access_token"), url.Values{"subject_token_type": {ttJWT}}); r2.status != 200 {
		t.Fatalf("jwt subject: %d %s", r2.status, r2.body)
	}
}

func TestTokenExchangeFollowsSubjectGrant(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "read")
	r := exchangeAs(h, "gateway", "gw-secret", alice.AccessToken, nil)
	if r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	// Revoking the subject's refresh token ends its grant, and the
	// tokens exchanged from it.
	if rv := h.form("/oauth2/revoke", url.Values{"token": {alice.RefreshToken}}, "frontend", "fe-secret"); rv.status != 200 {
		t.Fatalf("revoke: %d %s", rv.status, rv.body)
	}
	if got := h.introspect(r.str("access_token")); got["active"] != false {
		t.Fatalf("exchanged token still active: %v", got)
	}
	// The exchanged token is gateway's to revoke, not frontend's.
	other := aliceToken(t, h, "read")
	x := exchangeAs(h, "gateway", "gw-secret", other.AccessToken, nil).str("access_token")
	if rv := h.form("/oauth2/revoke", url.Values{"token": {x}}, "frontend", "fe-secret"); rv.str("error") != "unauthorized_client" {
		t.Fatalf("frontend revoked gateway's token: %d %s", rv.status, rv.body)
	}
}

func TestTokenExchangeScript(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	h.createScript(map[string]any{"name": "exchange-rules", "type": "update_token", "timeout_ms": 5000, "source": `
function modifyTokenExchange(request, context) {
  if (request.audience.indexOf("refuse") >= 0) return false;
  if (request.audience.indexOf("orders") >= 0) request.scope = "read";
  if (request.audience.indexOf("widen") >= 0) request.scope = request.scope + " admin";
  if (request.audience.indexOf("sneak") >= 0) request.audience.push("billing");
  if (request.subject.username !== "alice" || request.subject.client_id !== "frontend") return false;
  if (request.actor && request.actor.sub !== "gateway") return false;
  return true;
}`})
	if r := h.admin(http.MethodPatch, "/clients/gateway", map[string]any{"update_token_scripts": []string{"exchange-rules"}}); r.status != 200 {
		t.Fatalf("bind: %d %s", r.status, r.body)
	}
	alice := aliceToken(t, h, "read write").AccessToken

	r := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"audience": {"orders"}})
	if r.status != 200 || r.str("scope") != "read" {
		t.Fatalf("narrowed: %d %s", r.status, r.body)
	}
	if r := exchangeAs(h, "gateway", "gw-secret", alice, nil); r.status != 200 || r.str("scope") != "read write" {
		t.Fatalf("allowed: %d %s", r.status, r.body)
	}
	gw := h.mustToken("gateway", "gw-secret", "read").AccessToken
	if r := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"actor_token": {gw}, "actor_token_type": {ttAccess}}); r.status != 200 {
		t.Fatalf("delegation: %d %s", r.status, r.body)
	}
	refused := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"audience": {"refuse"}})
	wantError(t, refused, 400, "invalid_request")
	if refused.str("error_description") != "the token exchange was refused by script exchange-rules" {
		t.Fatalf("description: %s", refused.body)
	}
	wantError(t, exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"audience": {"widen"}}), 400, "invalid_scope")
	wantError(t, exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"audience": {"sneak"}}), 400, "invalid_target")

	// A script that throws under on_error: deny refuses the exchange as a
	// server error (docs/sandbox.md); under the default it is skipped.
	for _, onError := range []string{"deny", "skip"} {
		h.createScript(map[string]any{"name": "boom-" + onError, "type": "update_token", "timeout_ms": 5000, "on_error": onError,
			"source": `function modifyTokenExchange(request, context) { if (request.scope === "write") throw new Error("no"); return true; }`})
	}
	bind := func(names ...string) {
		if r := h.admin(http.MethodPatch, "/clients/gateway", map[string]any{"update_token_scripts": names}); r.status != 200 {
			t.Fatalf("bind: %d %s", r.status, r.body)
		}
	}
	bind("boom-deny")
	wantError(t, exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"scope": {"write"}}), 500, "server_error")
	bind("boom-skip")
	if r := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"scope": {"write"}}); r.status != 200 || r.str("scope") != "write" {
		t.Fatalf("on_error skip: %d %s", r.status, r.body)
	}
}

func TestTokenExchangeAdminPolicy(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	got := h.admin(http.MethodGet, "/clients/gateway", nil)
	want := map[string]any{"subject_clients": []any{"frontend"}, "actor_clients": []any{}, "allow_impersonation": true,
		"allow_delegation": true, "audiences": []any{"orders", "refuse", "widen", "sneak"}, "subject_issuers": []any{}}
	if !reflect.DeepEqual(got.json["token_exchange"], want) {
		t.Fatalf("token_exchange %v", got.json["token_exchange"])
	}
	if got := h.admin(http.MethodGet, "/clients/lonely", nil); got.json["token_exchange"] != nil {
		t.Fatalf("default policy %v", got.json["token_exchange"])
	}
	for _, tc := range []struct {
		name   string
		policy any
	}{
		{"star beside ids", map[string]any{"subject_clients": []string{"*", "frontend"}}},
		{"bad client id", map[string]any{"subject_clients": []string{"a/b"}}},
		{"twice", map[string]any{"subject_clients": []string{"a", "a"}}},
		{"actor clients without delegation", map[string]any{"actor_clients": []string{"a"}}},
		{"audience with a space", map[string]any{"audiences": []string{"a b"}}},
		{"empty audience", map[string]any{"audiences": []string{""}}},
		{"too many audiences", map[string]any{"audiences": func() []string {
			var l []string
			for i := range 101 {
				l = append(l, "a"+strings.Repeat("x", i))
			}
			return l
		}()}},
		{"not an object", "everything"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "bad", "grant_types": []string{grantExchange},
				"token_exchange": tc.policy})
			if r.status != http.StatusBadRequest {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	// Removing the policy returns the client to the default.
	if r := h.admin(http.MethodPatch, "/clients/gateway", map[string]any{"token_exchange": nil}); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	alice := aliceToken(t, h, "read").AccessToken
	wantError(t, exchangeAs(h, "gateway", "gw-secret", alice, nil), 400, "invalid_request")
}

func TestTokenExchangeDiscovery(t *testing.T) {
	if string(engine.GrantTokenExchange) != grantExchange {
		t.Fatalf("grant type %q", engine.GrantTokenExchange)
	}
	h := newHarness(t)
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		r := h.do(mustRequest(http.MethodGet, h.url+path))
		grants, _ := r.json["grant_types_supported"].([]any)
		if !slices.Contains(grants, any(grantExchange)) {
			t.Fatalf("%s: grant_types_supported %v", path, grants)
		}
	}
}

// TestTokenExchangePostgres runs delegation on PostgreSQL: the act column
// and the policy column round-trip there too.
func TestTokenExchangePostgres(t *testing.T) {
	h := newHarness(t, withDSN(pgDSN(t)))
	exchangeSetup(t, h)
	alice := aliceToken(t, h, "read").AccessToken
	gw := h.mustToken("gateway", "gw-secret", "read").AccessToken
	r := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"actor_token": {gw}, "actor_token_type": {ttAccess}, "audience": {"orders"}})
	if r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	got := h.introspect(r.str("access_token"))
	if !reflect.DeepEqual(got["act"], map[string]any{"sub": "gateway", "client_id": "gateway"}) || got["aud"] != "orders" {
		t.Fatalf("introspection %v", got)
	}
}

// TestTokenExchangeActProtected: a script cannot forge, change or remove
// act, neither on an exchanged token nor on any other.
func TestTokenExchangeActProtected(t *testing.T) {
	h := newHarness(t)
	exchangeSetup(t, h)
	h.createScript(map[string]any{"name": "forge-act", "type": "update_token", "timeout_ms": 5000, "source": `
function modifyAccessToken(token, context) {
  token.claims.act = {sub: "evil"};
  return true;
}`})
	if r := h.admin(http.MethodPatch, "/clients/deep", map[string]any{"update_token_scripts": []string{"forge-act"}}); r.status != 200 {
		t.Fatalf("bind: %d %s", r.status, r.body)
	}
	own := h.mustToken("deep", "deep-secret", "read").AccessToken
	if c := jwtClaims(t, own); c["act"] != nil {
		t.Fatalf("a script forged act: %v", c)
	}
	if got := h.introspect(own); got["act"] != nil {
		t.Fatalf("a script forged act in introspection: %v", got)
	}
	alice := aliceToken(t, h, "read").AccessToken
	gw := h.mustToken("gateway", "gw-secret", "read").AccessToken
	delegated := exchangeAs(h, "gateway", "gw-secret", alice, url.Values{"actor_token": {gw}, "actor_token_type": {ttAccess}})
	r := exchangeAs(h, "deep", "deep-secret", delegated.str("access_token"), url.Values{"actor_token": {own}, "actor_token_type": {ttAccess}})
	if r.status != 200 {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	want := map[string]any{"sub": "deep", "client_id": "deep", "act": map[string]any{"sub": "gateway", "client_id": "gateway"}}
	if c := jwtClaims(t, r.str("access_token")); !reflect.DeepEqual(c["act"], want) {
		t.Fatalf("act %v", c["act"])
	}
}
