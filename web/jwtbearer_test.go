package web_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
)

const grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// bearerFixture is a server with trusted issuers and clients for the JWT
// bearer grant (docs/jwt-bearer.md).
type bearerFixture struct {
	*harness
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	tokenURL string
}

func newBearerFixture(t *testing.T, opts ...harnessOpt) *bearerFixture {
	t.Helper()
	h := newHarness(t, opts...)
	f := &bearerFixture{harness: h, tokenURL: h.url + "/oauth2/token"}
	f.rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
	f.ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	inline := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.rsaKey.Public(), KeyID: "k1", Use: "sig"}}}
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.ecKey.Public(), KeyID: "e1", Use: "sig"}}})
	}))
	t.Cleanup(remote.Close)
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "scope": "read write other",
		"grant_types": []string{grantJWTBearer, "refresh_token"}})
	h.createClient(map[string]any{"client_id": "app2", "client_secret": "app2-secret", "scope": "read write",
		"grant_types": []string{grantJWTBearer}})
	h.createClient(map[string]any{"client_id": "nogrant", "client_secret": "nogrant-secret", "scope": "read"})
	h.createClient(map[string]any{"client_id": "pub", "token_endpoint_auth_method": "none", "scope": "read",
		"grant_types": []string{grantJWTBearer}})
	for _, ti := range []map[string]any{
		{"name": "partner", "issuer": "https://idp.example", "jwks": inline, "allowed_subjects": []string{"alice", "bob"},
			"allowed_scopes": []string{"read", "write"}, "allowed_clients": []string{"app", "nogrant", "pub"}},
		{"name": "remote", "issuer": "https://remote.example", "jwks_uri": remote.URL, "allowed_subjects": []string{"*"},
			"allowed_scopes": []string{"read"}, "allowed_clients": []string{"app"}},
		{"name": "off", "issuer": "https://off.example", "jwks": inline, "allowed_subjects": []string{"*"},
			"allowed_scopes": []string{"read"}, "allowed_clients": []string{"app"}, "enabled": false},
	} {
		if r := h.admin(http.MethodPost, "/trusted-issuers", ti); r.status != http.StatusCreated {
			t.Fatalf("create trusted issuer %v: %d %s", ti["name"], r.status, r.body)
		}
	}
	return f
}

// claims are valid assertion claims of iss about sub, changed by mod.
func (f *bearerFixture) claims(iss, sub string, mod func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": iss, "sub": sub, "aud": f.tokenURL, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": "jti-" + randomSuffix()}
	if mod != nil {
		mod(c)
	}
	return c
}

// partner is an assertion of the partner issuer, signed with its key.
func (f *bearerFixture) partner(t *testing.T, sub string, mod func(map[string]any)) string {
	return signAssertion(t, f.rsaKey, jose.RS256, "k1", f.claims("https://idp.example", sub, mod))
}

func (f *bearerFixture) grant(assertion, scope, id, secret string) *response {
	f.t.Helper()
	vals := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}}
	if scope != "" {
		vals.Set("scope", scope)
	}
	return f.form("/oauth2/token", vals, id, secret)
}

// TestJWTBearerGrant: an assertion of a trusted issuer gets an access
// token for its subject, with inline keys and from a jwks_uri; no
// refresh token; introspection names the grant.
func TestJWTBearerGrant(t *testing.T) {
	f := newBearerFixture(t)
	r := f.grant(f.partner(t, "alice", nil), "", "app", "app-secret")
	tok := f.mustDecodeToken(r)
	if tok.Scope != "read write" || tok.RefreshToken != "" || tok.IDToken != "" || tok.TokenType != "Bearer" {
		t.Fatalf("token: %s", r.body)
	}
	in := f.introspect(tok.AccessToken)
	if in["active"] != true || in["sub"] != "alice" || in["client_id"] != "app" || in["grant_type"] != grantJWTBearer ||
		in["scope"] != "read write" || in["username"] != nil {
		t.Fatalf("introspection: %v", in)
	}

	r = f.grant(f.partner(t, "bob", nil), "read", "app", "app-secret")
	if tok := f.mustDecodeToken(r); tok.Scope != "read" {
		t.Fatalf("narrowed scope: %s", r.body)
	}

	remote := signAssertion(t, f.ecKey, jose.ES256, "e1", f.claims("https://remote.example", "anyone@remote", nil))
	r = f.grant(remote, "", "app", "app-secret")
	tok = f.mustDecodeToken(r)
	if in := f.introspect(tok.AccessToken); in["sub"] != "anyone@remote" || in["scope"] != "read" {
		t.Fatalf("jwks_uri issuer: %v", in)
	}

	// aud may be the issuer, or a list holding this server among others
	// (RFC 7523 §3 item 3).
	for _, aud := range []any{f.url, []string{"https://other.example", f.tokenURL}} {
		r := f.grant(f.partner(t, "alice", func(c map[string]any) { c["aud"] = aud }), "", "app", "app-secret")
		if r.status != http.StatusOK {
			t.Fatalf("aud %v: %d %s", aud, r.status, r.body)
		}
	}

	meta := f.do(mustRequest(http.MethodGet, f.url+"/.well-known/oauth-authorization-server"))
	grants, _ := meta.json["grant_types_supported"].([]any)
	found := false
	for _, g := range grants {
		found = found || g == grantJWTBearer
	}
	if !found {
		t.Fatalf("grant_types_supported: %v", grants)
	}
}

// TestJWTBearerRejections: every way an assertion, its presenter or the
// request can be wrong, with the RFC's error code.
func TestJWTBearerRejections(t *testing.T) {
	f := newBearerFixture(t)
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(f.rsaKey.Public())
	replayed := f.partner(t, "alice", nil)
	f.mustDecodeToken(f.grant(replayed, "", "app", "app-secret"))
	// A refused presentation by another client does not burn the jti.
	unburnt := f.partner(t, "alice", nil)
	wantError(t, f.grant(unburnt, "", "app2", "app2-secret"), 400, "invalid_grant")
	f.mustDecodeToken(f.grant(unburnt, "", "app", "app-secret"))

	type tc struct {
		name       string
		assertion  string
		scope      string
		id, secret string
		status     int
		code       string
	}
	app := func(name, assertion string, status int, code string) tc {
		return tc{name, assertion, "", "app", "app-secret", status, code}
	}
	big := strings.Repeat("x", engine.MaxForeignJWTBytes)
	cases := []tc{
		app("unknown issuer", signAssertion(t, f.rsaKey, jose.RS256, "k1", f.claims("https://unknown.example", "alice", nil)), 400, "invalid_grant"),
		app("disabled issuer", signAssertion(t, f.rsaKey, jose.RS256, "k1", f.claims("https://off.example", "alice", nil)), 400, "invalid_grant"),
		{"issuer not allowed for the client", f.partner(t, "alice", nil), "", "app2", "app2-secret", 400, "invalid_grant"},
		app("bad signature", signAssertion(t, otherKey, jose.RS256, "k1", f.claims("https://idp.example", "alice", nil)), 400, "invalid_grant"),
		app("another issuer's key", signAssertion(t, f.ecKey, jose.ES256, "e1", f.claims("https://idp.example", "alice", nil)), 400, "invalid_grant"),
		app("alg none", unsignedAssertion(f.claims("https://idp.example", "alice", nil)), 400, "invalid_grant"),
		app("HS256 keyed with the public key", signAssertion(t, pubDER, jose.HS256, "k1", f.claims("https://idp.example", "alice", nil)), 400, "invalid_grant"),
		app("expired", f.partner(t, "alice", func(c map[string]any) {
			c["iat"] = time.Now().Add(-5 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		}), 400, "invalid_grant"),
		app("lives too long", f.partner(t, "alice", func(c map[string]any) { c["exp"] = time.Now().Add(11 * time.Minute).Unix() }), 400, "invalid_grant"),
		app("lives too long without iat", f.partner(t, "alice", func(c map[string]any) {
			delete(c, "iat")
			c["exp"] = time.Now().Add(time.Hour).Unix()
		}), 400, "invalid_grant"),
		app("no exp", f.partner(t, "alice", func(c map[string]any) { delete(c, "exp") }), 400, "invalid_grant"),
		app("nbf in the future", f.partner(t, "alice", func(c map[string]any) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() }), 400, "invalid_grant"),
		app("iat in the future", f.partner(t, "alice", func(c map[string]any) { c["iat"] = time.Now().Add(5 * time.Minute).Unix() }), 400, "invalid_grant"),
		app("no jti", f.partner(t, "alice", func(c map[string]any) { delete(c, "jti") }), 400, "invalid_grant"),
		app("replayed jti", replayed, 400, "invalid_grant"),
		app("wrong aud", f.partner(t, "alice", func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" }), 400, "invalid_grant"),
		app("no aud", f.partner(t, "alice", func(c map[string]any) { delete(c, "aud") }), 400, "invalid_grant"),
		app("subject not allowed", f.partner(t, "carol", nil), 400, "invalid_grant"),
		app("no sub", f.partner(t, "alice", func(c map[string]any) { delete(c, "sub") }), 400, "invalid_grant"),
		app("oversized", f.partner(t, "alice", func(c map[string]any) { c["pad"] = big }), 400, "invalid_grant"),
		app("malformed", "not-a-jwt", 400, "invalid_grant"),
		app("three garbage parts", "a.b.c", 400, "invalid_grant"),
		app("no assertion", "", 400, "invalid_request"),
		{"scope the issuer does not allow", f.partner(t, "alice", nil), "other", "app", "app-secret", 400, "invalid_scope"},
		{"scope nobody allows", f.partner(t, "alice", nil), "admin", "app", "app-secret", 400, "invalid_scope"},
		{"client without the grant", f.partner(t, "alice", nil), "", "nogrant", "nogrant-secret", 400, "unauthorized_client"},
		{"wrong client secret", f.partner(t, "alice", nil), "", "app", "wrong", 401, "invalid_client"},
		{"no client authentication", f.partner(t, "alice", nil), "", "", "", 400, "invalid_client"},
		{"public client", f.partner(t, "alice", nil), "", "pub", "", 400, "unauthorized_client"},
	}
	// why is what each answer must say, so that a case cannot pass for
	// another reason than its own.
	why := map[string]string{
		"unknown issuer": "issuer is not trusted", "disabled issuer": "issuer is not trusted",
		"issuer not allowed for the client": "issuer is not trusted", "bad signature": "signature does not verify",
		"another issuer's key": "signature does not verify", "alg none": "not a valid signed JWT",
		"HS256 keyed with the public key": "must be signed with one of", "expired": "has expired",
		"lives too long": "max_assertion_lifetime", "lives too long without iat": "max_assertion_lifetime",
		"no exp": "no exp", "nbf in the future": "nbf", "iat in the future": "iat is in the future",
		"no jti": "no jti", "replayed jti": "jti was used before", "wrong aud": "aud must contain", "no aud": "aud must contain",
		"subject not allowed": "subject is not allowed", "no sub": "no sub", "oversized": "too large",
		"malformed": "not a valid signed JWT", "three garbage parts": "not a valid signed JWT", "no assertion": "assertion is missing",
		"scope the issuer does not allow": `"other" is not allowed`, "scope nobody allows": `"admin" is not allowed`,
		"client without the grant": "may not use grant_type", "wrong client secret": "client authentication failed",
		"no client authentication": "client authentication is required", "public client": "public client",
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.grant(c.assertion, c.scope, c.id, c.secret)
			wantError(t, r, c.status, c.code)
			if d := r.str("error_description"); !strings.Contains(d, why[c.name]) {
				t.Fatalf("error_description %q, want it to say %q", d, why[c.name])
			}
		})
	}
}

// TestJWTBearerValidateAssertion: validateAssertion of the client's
// update_token scripts maps the subject, or refuses the assertion with
// a fixed description; its edits to header and claims are ignored, and
// a subject that is not a string refuses.
func TestJWTBearerValidateAssertion(t *testing.T) {
	f := newBearerFixture(t)
	f.createScript(map[string]any{"name": "map-subject", "type": "update_token", "timeout_ms": 5000,
		"config": map[string]any{"prefix": "partner:"}, "source": `
function validateAssertion(assertion, context) {
  if (assertion.claims.acr !== "high") return false;
  if (assertion.claims.odd) { assertion.subject = 42; return true; }
  assertion.subject = context.config.prefix + assertion.subject + "@" + assertion.trusted_issuer;
  assertion.claims.sub = "ignored";
  assertion.header.alg = "none";
  return true;
}
function modifyAccessToken(token, context) {
  token.claims.seen_sub = context.token.subject;
  token.claims.seen_grant = context.token.grant_type;
  return true;
}`})
	f.createScript(map[string]any{"name": "thrower", "type": "update_token", "timeout_ms": 5000, "on_error": "deny",
		"source": `function validateAssertion(assertion) { throw new Error("secret internals"); }`})
	f.createClient(map[string]any{"client_id": "hooked", "client_secret": "hooked-secret", "scope": "read",
		"grant_types": []string{grantJWTBearer}, "update_token_scripts": []string{"map-subject"}, "access_token_as_jwt": true})
	f.createClient(map[string]any{"client_id": "throws", "client_secret": "throws-secret", "scope": "read",
		"grant_types": []string{grantJWTBearer}, "update_token_scripts": []string{"thrower"}})
	if r := f.admin(http.MethodPatch, "/trusted-issuers/partner",
		map[string]any{"allowed_clients": []string{"app", "hooked", "throws"}}); r.status != http.StatusOK {
		t.Fatalf("PATCH trusted issuer: %d %s", r.status, r.body)
	}

	r := f.grant(f.partner(t, "alice", func(c map[string]any) { c["acr"] = "high" }), "", "hooked", "hooked-secret")
	tok := f.mustDecodeToken(r)
	in := f.introspect(tok.AccessToken)
	if in["sub"] != "partner:alice@partner" || in["seen_sub"] != "partner:alice@partner" || in["seen_grant"] != grantJWTBearer {
		t.Fatalf("mapped subject: %v", in)
	}

	for name, mod := range map[string]func(map[string]any){
		"refused":              func(c map[string]any) { c["acr"] = "low" },
		"subject not a string": func(c map[string]any) { c["acr"], c["odd"] = "high", true },
	} {
		r := f.grant(f.partner(t, "alice", mod), "", "hooked", "hooked-secret")
		wantError(t, r, 400, "invalid_grant")
		if r.str("error_description") != "the assertion was refused" {
			t.Fatalf("%s: %s", name, r.body)
		}
	}
	// A failing script with on_error deny refuses, without its message.
	r = f.grant(f.partner(t, "alice", nil), "", "throws", "throws-secret")
	if r.status != http.StatusInternalServerError || strings.Contains(string(r.body), "secret internals") {
		t.Fatalf("throwing script: %d %s", r.status, r.body)
	}
}

// TestTrustedIssuersAdmin: the admin API validates trusted issuers (400
// naming the field), keeps one per iss, and lets only keyhook:admin
// write them; keyhook:trusted_issuers.read reads them.
func TestTrustedIssuersAdmin(t *testing.T) {
	f := newBearerFixture(t)
	key := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.rsaKey.Public(), KeyID: "k1"}}}
	private := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: f.rsaKey, KeyID: "p1"}}}
	secret := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "s1"}}}
	base := func(mod func(map[string]any)) map[string]any {
		d := map[string]any{"name": "new", "issuer": "https://new.example", "jwks": key,
			"allowed_subjects": []string{"*"}, "allowed_scopes": []string{"read"}, "allowed_clients": []string{"app"}}
		if mod != nil {
			mod(d)
		}
		return d
	}
	for _, tc := range []struct {
		name  string
		doc   map[string]any
		field string
	}{
		{"bad name", base(func(d map[string]any) { d["name"] = "a/b" }), "name"},
		{"no issuer", base(func(d map[string]any) { delete(d, "issuer") }), "issuer"},
		{"issuer with a space", base(func(d map[string]any) { d["issuer"] = "https://x .example" }), "issuer"},
		{"own issuer", base(func(d map[string]any) { d["issuer"] = f.url }), "issuer"},
		{"neither jwks nor jwks_uri", base(func(d map[string]any) { delete(d, "jwks") }), "jwks"},
		{"both jwks and jwks_uri", base(func(d map[string]any) { d["jwks_uri"] = "https://new.example/jwks" }), "jwks"},
		{"empty jwks", base(func(d map[string]any) { d["jwks"] = map[string]any{"keys": []any{}} }), "jwks"},
		{"symmetric key", base(func(d map[string]any) { d["jwks"] = secret }), "jwks"},
		{"plain http jwks_uri", base(func(d map[string]any) { delete(d, "jwks"); d["jwks_uri"] = "http://new.example/jwks" }), "jwks_uri"},
		{"metadata address jwks_uri", base(func(d map[string]any) { delete(d, "jwks"); d["jwks_uri"] = "https://169.254.169.254/jwks" }), "jwks_uri"},
		{"empty subject", base(func(d map[string]any) { d["allowed_subjects"] = []string{""} }), "allowed_subjects"},
		{"bad scope", base(func(d map[string]any) { d["allowed_scopes"] = []string{"a\"b"} }), "allowed_scopes"},
		{"admin scope", base(func(d map[string]any) { d["allowed_scopes"] = []string{"keyhook:admin"} }), "allowed_scopes"},
		{"bad client id", base(func(d map[string]any) { d["allowed_clients"] = []string{"a b"} }), "allowed_clients"},
		{"lifetime too long", base(func(d map[string]any) { d["max_assertion_lifetime"] = 86401 }), "max_assertion_lifetime"},
		{"negative lifetime", base(func(d map[string]any) { d["max_assertion_lifetime"] = -1 }), "max_assertion_lifetime"},
		{"unknown member", base(func(d map[string]any) { d["allowed_audiences"] = []string{"x"} }), "allowed_audiences"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.admin(http.MethodPost, "/trusted-issuers", tc.doc)
			if r.status != http.StatusBadRequest || !strings.HasPrefix(r.str("error_description"), tc.field+":") {
				t.Fatalf("%d %s, want 400 naming %s", r.status, r.body, tc.field)
			}
		})
	}

	r := f.admin(http.MethodPost, "/trusted-issuers", base(func(d map[string]any) { d["jwks"] = private }))
	if r.status != http.StatusCreated || strings.Contains(string(r.body), `"d"`) || r.json["enabled"] != true ||
		r.json["max_assertion_lifetime"] != float64(engine.DefaultMaxAssertionLifetime) {
		t.Fatalf("create with a private key (kept public only): %d %s", r.status, r.body)
	}
	if r := f.admin(http.MethodPost, "/trusted-issuers", base(nil)); r.status != http.StatusConflict || !strings.HasPrefix(r.str("error_description"), "name:") {
		t.Fatalf("same name: %d %s", r.status, r.body)
	}
	if r := f.admin(http.MethodPost, "/trusted-issuers", base(func(d map[string]any) { d["name"] = "again" })); r.status != http.StatusConflict || !strings.HasPrefix(r.str("error_description"), "issuer:") {
		t.Fatalf("same issuer: %d %s", r.status, r.body)
	}
	if r := f.admin(http.MethodPut, "/trusted-issuers/new", base(func(d map[string]any) { d["issuer"] = "https://idp.example" })); r.status != http.StatusConflict {
		t.Fatalf("PUT taking another's issuer: %d %s", r.status, r.body)
	}
	if r := f.admin(http.MethodPut, "/trusted-issuers/new", base(func(d map[string]any) { d["name"] = "renamed" })); r.status != http.StatusBadRequest {
		t.Fatalf("PUT renaming: %d %s", r.status, r.body)
	}
	if r := f.admin(http.MethodPatch, "/trusted-issuers/new", map[string]any{"enabled": false}); r.status != http.StatusOK || r.json["enabled"] != false || r.json["issuer"] != "https://new.example" {
		t.Fatalf("PATCH enabled: %d %s", r.status, r.body)
	}
	list := f.admin(http.MethodGet, "/trusted-issuers", nil)
	var docs []map[string]any
	_ = json.Unmarshal(list.body, &docs)
	if list.status != http.StatusOK || len(docs) != 4 || docs[0]["name"] != "new" {
		t.Fatalf("list: %d %s", list.status, list.body)
	}

	// Delegated admins: read with .read; no write, not even with
	// keyhook:trusted_issuers.write, nor with clients.write.
	tokens := map[string]string{}
	for _, sc := range []string{"keyhook:trusted_issuers.read", "keyhook:trusted_issuers.write", "keyhook:clients.write"} {
		id := strings.NewReplacer(":", "-", ".", "-").Replace(sc)
		f.createClient(map[string]any{"client_id": id, "client_secret": id + "-secret", "scope": sc})
		tokens[sc] = f.mustToken(id, id+"-secret", "").AccessToken
	}
	if r := f.adminAs(tokens["keyhook:trusted_issuers.read"], http.MethodGet, "/trusted-issuers/partner", nil); r.status != http.StatusOK {
		t.Fatalf("read with .read: %d %s", r.status, r.body)
	}
	mine := base(func(d map[string]any) { d["name"], d["issuer"] = "mine", "https://mine.example" })
	for sc, tok := range tokens {
		for _, w := range []struct {
			method, path string
			body         any
		}{
			{http.MethodPost, "/trusted-issuers", mine},
			{http.MethodPut, "/trusted-issuers/partner", mine},
			{http.MethodPatch, "/trusted-issuers/partner", map[string]any{"allowed_subjects": []string{"*"}}},
			{http.MethodDelete, "/trusted-issuers/partner", nil},
		} {
			r := f.adminAs(tok, w.method, w.path, w.body)
			if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_scope") {
				t.Fatalf("%s %s as %s: %d %s, want 403", w.method, w.path, sc, r.status, r.body)
			}
		}
	}
	if r := f.admin(http.MethodGet, "/trusted-issuers/partner", nil); r.status != http.StatusOK || len(r.json["allowed_subjects"].([]any)) != 2 {
		t.Fatalf("partner changed by a delegated admin: %s", r.body)
	}

	if r := f.admin(http.MethodDelete, "/trusted-issuers/partner", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantError(t, f.grant(f.partner(t, "alice", nil), "", "app", "app-secret"), 400, "invalid_grant")
	if r := f.admin(http.MethodGet, "/trusted-issuers/partner", nil); r.status != http.StatusNotFound {
		t.Fatalf("deleted: %d %s", r.status, r.body)
	}
}

// TestJWTBearerTwoInstancesPostgres: on one PostgreSQL database, a
// trusted issuer created on one instance serves on the other, and an
// assertion used on one is a replay on the other.
func TestJWTBearerTwoInstancesPostgres(t *testing.T) {
	dsn := pgDSN(t)
	a := newBearerFixture(t, withDSN(dsn))
	b := &bearerFixture{harness: newHarness(t, withDSN(dsn)), rsaKey: a.rsaKey, ecKey: a.ecKey, tokenURL: a.tokenURL}
	// b's issuer URL differs (another listener): assertions name a's
	// token endpoint and b's issuer both.
	aud := []string{a.tokenURL, b.url}
	used := a.partner(t, "alice", func(c map[string]any) { c["aud"] = aud })
	a.mustDecodeToken(a.grant(used, "", "app", "app-secret"))
	r := b.grant(used, "", "app", "app-secret")
	wantError(t, r, 400, "invalid_grant")
	if !strings.Contains(r.str("error_description"), "jti was used before") {
		t.Fatalf("replay on the other instance: %s", r.body)
	}
	tok := b.mustDecodeToken(b.grant(a.partner(t, "bob", func(c map[string]any) { c["aud"] = aud }), "read", "app", "app-secret"))
	if in := a.introspect(tok.AccessToken); in["sub"] != "bob" || in["grant_type"] != grantJWTBearer {
		t.Fatalf("token of B introspected on A: %v", in)
	}
	if r := b.admin(http.MethodPost, "/trusted-issuers", map[string]any{"name": "dup", "issuer": "https://idp.example",
		"jwks_uri": "https://idp.example/jwks"}); r.status != http.StatusConflict || !strings.HasPrefix(r.str("error_description"), "issuer:") {
		t.Fatalf("same issuer on PostgreSQL: %d %s", r.status, r.body)
	}
}

// TestTrustedIssuersSeed: keyhook import and export carry trusted
// issuers; an imported one serves the grant, and a bad one is refused
// naming its entry.
func TestTrustedIssuersSeed(t *testing.T) {
	f := newBearerFixture(t)
	ctx := t.Context()
	seed, err := f.eng.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(seed.TrustedIssuers) != 3 || seed.TrustedIssuers[1].Name == "" {
		t.Fatalf("exported trusted issuers: %+v", seed.TrustedIssuers)
	}
	raw, _ := json.Marshal(seed)

	g := &bearerFixture{harness: newHarness(t), rsaKey: f.rsaKey}
	g.tokenURL = g.url + "/oauth2/token"
	var again engine.Seed
	if err := json.Unmarshal(raw, &again); err != nil {
		t.Fatal(err)
	}
	for _, c := range again.Clients {
		if c.ClientID == "app" {
			c.ClientSecret = "app-secret"
		}
	}
	if _, err := g.eng.Import(ctx, &again); err != nil {
		t.Fatalf("import: %v", err)
	}
	g.mustDecodeToken(g.grant(g.partner(t, "alice", nil), "", "app", "app-secret"))
	// Importing again replaces, idempotently.
	if st, err := g.eng.Import(ctx, &engine.Seed{TrustedIssuers: again.TrustedIssuers}); err != nil || st.Replaced != 3 {
		t.Fatalf("second import: %+v %v", st, err)
	}

	bad := &engine.Seed{TrustedIssuers: []*engine.TrustedIssuerDoc{{Name: "bad", Issuer: "https://bad.example"}}}
	_, err = g.eng.Import(ctx, bad)
	var ie *engine.ImportError
	if !errors.As(err, &ie) || ie.Section != "trusted_issuers" || !strings.Contains(err.Error(), "jwks") {
		t.Fatalf("bad trusted issuer imported: %v", err)
	}
}

// TestJWTBearerJWKSURIOverTLS: a trusted issuer's https jwks_uri is
// fetched with the configured roots; one that cannot be read refuses
// the assertion (invalid_grant), never a server error.
func TestJWTBearerJWKSURIOverTLS(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fail atomic.Bool
	keys := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "gone", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ecKey.Public(), KeyID: "t1"}}})
	}))
	defer keys.Close()
	pool := x509.NewCertPool()
	pool.AddCert(keys.Certificate())
	h := newHarness(t, withEngine(func(c *engine.Config) { c.JWKSURI.RootCAs = pool }))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "scope": "read",
		"grant_types": []string{grantJWTBearer}})
	for _, ti := range []map[string]any{
		{"name": "tls", "issuer": "https://tls.example", "jwks_uri": keys.URL + "/jwks",
			"allowed_subjects": []string{"*"}, "allowed_scopes": []string{"read"}, "allowed_clients": []string{"app"}},
		{"name": "broken", "issuer": "https://broken.example", "jwks_uri": keys.URL + "/missing",
			"allowed_subjects": []string{"*"}, "allowed_scopes": []string{"read"}, "allowed_clients": []string{"app"}},
	} {
		if r := h.admin(http.MethodPost, "/trusted-issuers", ti); r.status != http.StatusCreated {
			t.Fatalf("create %v: %d %s", ti["name"], r.status, r.body)
		}
	}
	f := &bearerFixture{harness: h, tokenURL: h.url + "/oauth2/token"}
	tok := f.mustDecodeToken(f.grant(signAssertion(t, ecKey, jose.ES256, "t1", f.claims("https://tls.example", "svc-7", nil)), "", "app", "app-secret"))
	if in := h.introspect(tok.AccessToken); in["sub"] != "svc-7" {
		t.Fatalf("introspection: %v", in)
	}
	fail.Store(true)
	r := f.grant(signAssertion(t, ecKey, jose.ES256, "t1", f.claims("https://broken.example", "svc-7", nil)), "", "app", "app-secret")
	wantError(t, r, 400, "invalid_grant")
	if !strings.Contains(r.str("error_description"), "cannot be fetched") {
		t.Fatalf("unreadable jwks_uri: %s", r.body)
	}
}
