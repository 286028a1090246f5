package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func TestClientCredentialsWithOAuth2Client(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "svc-basic", "client_secret": "s3cret-basic", "scope": "a b"})
	h.createClient(map[string]any{"client_id": "svc-post", "client_secret": "s3cret-post", "scope": "a",
		"token_endpoint_auth_method": "client_secret_post"})
	for _, tc := range []struct {
		name, id, secret string
		style            oauth2.AuthStyle
		scopes           []string
		wantScope        string
	}{
		{"basic, all allowed scopes", "svc-basic", "s3cret-basic", oauth2.AuthStyleInHeader, nil, "a b"},
		{"basic, one scope", "svc-basic", "s3cret-basic", oauth2.AuthStyleInHeader, []string{"b"}, "b"},
		{"post", "svc-post", "s3cret-post", oauth2.AuthStyleInParams, nil, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientcredentials.Config{ClientID: tc.id, ClientSecret: tc.secret, TokenURL: h.url + "/oauth2/token",
				Scopes: tc.scopes, AuthStyle: tc.style}
			tok, err := cfg.Token(context.Background())
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.TokenType != "Bearer" || len(tok.AccessToken) < 43 {
				t.Fatalf("token = %+v", tok)
			}
			if d := time.Until(tok.Expiry); d < 290*time.Second || d > 301*time.Second {
				t.Fatalf("expiry in %v, want about 300s", d)
			}
			if got := tok.Extra("scope"); got != tc.wantScope {
				t.Fatalf("scope = %v, want %q", got, tc.wantScope)
			}
			if tok.RefreshToken != "" {
				t.Fatalf("client_credentials must not get a refresh token")
			}
			in := h.introspect(tok.AccessToken)
			if in["active"] != true || in["client_id"] != tc.id || in["scope"] != tc.wantScope {
				t.Fatalf("introspection = %v", in)
			}
		})
	}
	t.Run("wrong secret fails through the library too", func(t *testing.T) {
		cfg := clientcredentials.Config{ClientID: "svc-basic", ClientSecret: "nope", TokenURL: h.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
		_, err := cfg.Token(context.Background())
		var re *oauth2.RetrieveError
		if err == nil || !asRetrieveError(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
			t.Fatalf("err = %v", err)
		}
	})
}

func asRetrieveError(err error, re **oauth2.RetrieveError) bool {
	e, ok := err.(*oauth2.RetrieveError)
	if ok {
		*re = e
	}
	return ok
}

func TestTokenResponseHeaders(t *testing.T) {
	h := newHarness(t)
	r := h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "keyhook-admin", adminSecret)
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Fatalf("status %d headers %v", r.status, r.header)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
}

// signAssertion makes a client assertion (RFC 7523 §3).
func signAssertion(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func unsignedAssertion(claims map[string]any) string {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body, _ := json.Marshal(claims)
	return head + "." + base64.RawURLEncoding.EncodeToString(body) + "."
}

func TestClientAuthenticationMethods(t *testing.T) {
	h := newHarness(t)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: rsaKey.Public(), KeyID: "rsa", Use: "sig"},
		{Key: ecKey.Public(), KeyID: "ec", Use: "sig"},
		{Key: edKey.Public(), KeyID: "ed", Use: "sig"},
	}}
	h.createClient(map[string]any{"client_id": "c-basic", "client_secret": "basic-secret"})
	h.createClient(map[string]any{"client_id": "c-post", "client_secret": "post-secret", "token_endpoint_auth_method": "client_secret_post"})
	h.createClient(map[string]any{"client_id": "c-hmac", "client_secret": "a-long-enough-hmac-secret-for-hs512-0123456789abcdef0123456789abcdef", "token_endpoint_auth_method": "client_secret_jwt"})
	h.createClient(map[string]any{"client_id": "c-pk", "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks})
	keySet := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ecKey.Public(), KeyID: "remote", Use: "sig"}}})
	}))
	defer keySet.Close()
	h.createClient(map[string]any{"client_id": "c-pk-uri", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": keySet.URL})
	h.createClient(map[string]any{"client_id": "c-public", "token_endpoint_auth_method": "none", "grant_types": []string{"client_credentials"}})
	hmacKey := []byte("a-long-enough-hmac-secret-for-hs512-0123456789abcdef0123456789abcdef")
	tokenURL := h.url + "/oauth2/token"

	claims := func(id string, mod func(map[string]any)) map[string]any {
		now := time.Now()
		c := map[string]any{"iss": id, "sub": id, "aud": tokenURL, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			"jti": base64.RawURLEncoding.EncodeToString([]byte(time.Now().String() + id + randomSuffix()))}
		if mod != nil {
			mod(c)
		}
		return c
	}
	assertionForm := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	}
	replayed := signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", nil))
	if r := h.form("/oauth2/token", assertionForm(replayed), "", ""); r.status != 200 {
		t.Fatalf("first use of assertion: %d %s", r.status, r.body)
	}

	cases := []struct {
		name       string
		vals       url.Values
		id, secret string // Basic credentials
		status     int
		code       string
	}{
		{"basic", url.Values{"grant_type": {"client_credentials"}}, "c-basic", "basic-secret", 200, ""},
		{"basic wrong secret", url.Values{"grant_type": {"client_credentials"}}, "c-basic", "wrong", 401, "invalid_client"},
		{"basic unknown client", url.Values{"grant_type": {"client_credentials"}}, "nobody", "x", 401, "invalid_client"},
		{"basic client using post", url.Values{"grant_type": {"client_credentials"}, "client_id": {"c-basic"}, "client_secret": {"basic-secret"}}, "", "", 200, ""},
		{"basic client using post, wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"c-basic"}, "client_secret": {"wrong"}}, "", "", 400, "invalid_client"},
		{"post", url.Values{"grant_type": {"client_credentials"}, "client_id": {"c-post"}, "client_secret": {"post-secret"}}, "", "", 200, ""},
		{"post client using basic", url.Values{"grant_type": {"client_credentials"}}, "c-post", "post-secret", 200, ""},
		{"client_secret_jwt client using basic", url.Values{"grant_type": {"client_credentials"}}, "c-hmac", "x", 401, "invalid_client"},
		{"two methods at once", url.Values{"grant_type": {"client_credentials"}, "client_secret": {"basic-secret"}}, "c-basic", "basic-secret", 400, "invalid_request"},
		{"no credentials", url.Values{"grant_type": {"client_credentials"}}, "", "", 400, "invalid_client"},
		{"client_secret_jwt HS256", assertionForm(signAssertion(t, hmacKey, jose.HS256, "", claims("c-hmac", nil))), "", "", 200, ""},
		{"client_secret_jwt HS512, issuer as aud", assertionForm(signAssertion(t, hmacKey, jose.HS512, "", claims("c-hmac", func(c map[string]any) { c["aud"] = h.url }))), "", "", 200, ""},
		{"client_secret_jwt wrong key", assertionForm(signAssertion(t, []byte("another-key-another-key-another-key!"), jose.HS256, "", claims("c-hmac", nil))), "", "", 400, "invalid_client"},
		{"client_secret_jwt with RS256", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-hmac", nil))), "", "", 400, "invalid_client"},
		{"private_key_jwt RS256", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", nil))), "", "", 200, ""},
		{"private_key_jwt PS256", assertionForm(signAssertion(t, rsaKey, jose.PS256, "rsa", claims("c-pk", nil))), "", "", 200, ""},
		{"private_key_jwt ES256", assertionForm(signAssertion(t, ecKey, jose.ES256, "ec", claims("c-pk", nil))), "", "", 200, ""},
		{"private_key_jwt EdDSA", assertionForm(signAssertion(t, edKey, jose.EdDSA, "ed", claims("c-pk", nil))), "", "", 200, ""},
		{"private_key_jwt with jwks_uri", assertionForm(signAssertion(t, ecKey, jose.ES256, "remote", claims("c-pk-uri", nil))), "", "", 200, ""},
		{"private_key_jwt with jwks_uri, wrong key", assertionForm(signAssertion(t, rsaKey, jose.RS256, "remote", claims("c-pk-uri", nil))), "", "", 400, "invalid_client"},
		{"private_key_jwt with HS256", assertionForm(signAssertion(t, hmacKey, jose.HS256, "", claims("c-pk", nil))), "", "", 400, "invalid_client"},
		{"alg none", assertionForm(unsignedAssertion(claims("c-pk", nil))), "", "", 400, "invalid_client"},
		{"expired assertion", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", func(c map[string]any) {
			c["iat"] = time.Now().Add(-5 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		}))), "", "", 400, "invalid_client"},
		{"replayed jti", assertionForm(replayed), "", "", 400, "invalid_client"},
		{"wrong audience", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" }))), "", "", 400, "invalid_client"},
		{"lives longer than 10 minutes", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", func(c map[string]any) { c["exp"] = time.Now().Add(11 * time.Minute).Unix() }))), "", "", 400, "invalid_client"},
		{"sub is not the client", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", func(c map[string]any) { c["sub"] = "someone" }))), "", "", 400, "invalid_client"},
		{"no jti", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-pk", func(c map[string]any) { delete(c, "jti") }))), "", "", 400, "invalid_client"},
		{"key of another client", assertionForm(signAssertion(t, rsaKey, jose.RS256, "rsa", claims("c-basic", nil))), "", "", 400, "invalid_client"},
		{"wrong assertion type", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:other"}, "client_assertion": {"x.y.z"}}, "", "", 400, "invalid_client"},
		{"garbage assertion", assertionForm("not-a-jwt"), "", "", 400, "invalid_client"},
		{"public client may not use client_credentials", url.Values{"grant_type": {"client_credentials"}, "client_id": {"c-public"}}, "", "", 400, "unauthorized_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.form("/oauth2/token", tc.vals, tc.id, tc.secret)
			if tc.status == 200 {
				if r.status != 200 || r.str("access_token") == "" {
					t.Fatalf("got %d %s", r.status, r.body)
				}
				return
			}
			wantError(t, r, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Fatalf("401 without Basic challenge: %v", r.header)
			}
		})
	}
}

var suffixMu sync.Mutex
var suffixN int

func randomSuffix() string {
	suffixMu.Lock()
	defer suffixMu.Unlock()
	suffixN++
	return strings.Repeat("x", suffixN%7) + string(rune('a'+suffixN%26)) + time.Now().Format(time.RFC3339Nano)
}

func TestTokenEndpointBadInput(t *testing.T) {
	h := newHarness(t)
	post := func(ct, body string, basic bool) *response {
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if basic {
			req.SetBasicAuth("keyhook-admin", adminSecret)
		}
		return h.do(req)
	}
	for _, tc := range []struct {
		name, ct, body string
		basic          bool
		status         int
		code           string
	}{
		{"json body", "application/json", `{"grant_type":"client_credentials"}`, true, 400, "invalid_request"},
		{"no content type", "", "grant_type=client_credentials", true, 400, "invalid_request"},
		{"missing grant_type", "application/x-www-form-urlencoded", "scope=a", true, 400, "invalid_request"},
		{"repeated parameter", "application/x-www-form-urlencoded", "grant_type=client_credentials&grant_type=client_credentials", true, 400, "invalid_request"},
		{"unknown grant", "application/x-www-form-urlencoded", "grant_type=urn:example:magic", true, 400, "unsupported_grant_type"},
		{"grant the client lacks", "application/x-www-form-urlencoded", "grant_type=password&username=a&password=b", true, 400, "unauthorized_client"},
		{"scope not allowed", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=keyhook:admin+extra", true, 400, "invalid_scope"},
		{"malformed scope", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=%22quoted%22", true, 400, "invalid_scope"},
		{"huge body", "application/x-www-form-urlencoded", "grant_type=client_credentials&pad=" + strings.Repeat("x", 200<<10), true, 413, "invalid_request"},
		{"broken form", "application/x-www-form-urlencoded", "grant_type=%zz", true, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, post(tc.ct, tc.body, tc.basic), tc.status, tc.code)
		})
	}
	t.Run("malformed basic header", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Basic !!!not-base64")
		wantError(t, h.do(req), 401, "invalid_client")
	})
	t.Run("GET is not allowed", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/oauth2/token?grant_type=client_credentials", nil)
		if r := h.do(req); r.status != http.StatusMethodNotAllowed {
			t.Fatalf("GET token: %d", r.status)
		}
	})
}

// verifyWithJWKS checks a JWT against the server's published keys.
func verifyWithJWKS(t *testing.T, h *harness, raw string) (map[string]any, jose.Header) {
	t.Helper()
	r := h.do(mustGet(h.url + "/oauth2/jwks"))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatalf("jwks: %v", err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("parse JWT: %v", err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS %s", tok.Headers[0].KeyID, r.body)
	}
	if keys[0].Use != "sig" || keys[0].Algorithm != tok.Headers[0].Algorithm {
		t.Fatalf("JWKS entry %+v does not match header alg %s", keys[0], tok.Headers[0].Algorithm)
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("JWT does not verify with the JWKS: %v", err)
	}
	return claims, tok.Headers[0]
}

func mustGet(u string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return req
}

func TestJWTAccessToken(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "jwt-client", "client_secret": "jwt-secret", "scope": "read write", "access_token_as_jwt": true})
	tr := h.mustToken("jwt-client", "jwt-secret", "read")
	claims, header := verifyWithJWKS(t, h, tr.AccessToken)
	if header.ExtraHeaders["typ"] != "at+jwt" || header.Algorithm != "RS256" || header.KeyID == "" {
		t.Fatalf("header = %+v", header)
	}
	for k, want := range map[string]any{"iss": h.url, "sub": "jwt-client", "aud": "jwt-client", "client_id": "jwt-client", "scope": "read"} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	for _, k := range []string{"exp", "iat", "nbf", "jti"} {
		if claims[k] == nil {
			t.Errorf("claim %s missing", k)
		}
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 300 {
		t.Errorf("exp - iat = %v, want 300", exp-iat)
	}
	in := h.introspect(tr.AccessToken)
	if in["active"] != true || in["jti"] != claims["jti"] {
		t.Fatalf("introspection of JWT = %v", in)
	}
}

func TestKeyRotationAndAlgorithms(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "jwt-client", "client_secret": "jwt-secret", "access_token_as_jwt": true})
	old := h.mustToken("jwt-client", "jwt-secret", "").AccessToken
	_, oldHeader := verifyWithJWKS(t, h, old)
	for _, alg := range []string{"PS256", "ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			h.setConfig(map[string]any{"access_token_signing_alg": alg})
			r := h.admin(http.MethodPost, "/keys/rotate", nil)
			if r.status != 200 || r.str("alg") != alg {
				t.Fatalf("rotate: %d %s", r.status, r.body)
			}
			tok := h.mustToken("jwt-client", "jwt-secret", "").AccessToken
			_, header := verifyWithJWKS(t, h, tok)
			if header.Algorithm != alg || header.KeyID != r.str("kid") {
				t.Fatalf("new token signed with %s/%s, want %s/%s", header.Algorithm, header.KeyID, alg, r.str("kid"))
			}
			// The first token keeps verifying and introspecting.
			if _, hd := verifyWithJWKS(t, h, old); hd.KeyID != oldHeader.KeyID {
				t.Fatal("old kid changed")
			}
			if h.introspect(old)["active"] != true {
				t.Fatal("old token inactive after rotation")
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		t.Run(path, func(t *testing.T) {
			r := h.do(mustGet(h.url + path))
			if r.status != 200 {
				t.Fatalf("%d", r.status)
			}
			want := map[string]string{
				"issuer": h.url, "token_endpoint": h.url + "/oauth2/token", "introspection_endpoint": h.url + "/oauth2/introspect",
				"revocation_endpoint": h.url + "/oauth2/revoke", "jwks_uri": h.url + "/oauth2/jwks",
				"authorization_endpoint": h.url + "/oauth2/authorize", "userinfo_endpoint": h.url + "/oauth2/userinfo",
			}
			for k, v := range want {
				if r.str(k) != v {
					t.Errorf("%s = %q, want %q", k, r.str(k), v)
				}
			}
			for _, k := range []string{"grant_types_supported", "token_endpoint_auth_methods_supported",
				"token_endpoint_auth_signing_alg_values_supported", "introspection_endpoint_auth_methods_supported",
				"scopes_supported", "response_types_supported", "code_challenge_methods_supported",
				"id_token_signing_alg_values_supported", "introspection_signing_alg_values_supported"} {
				if list, ok := r.json[k].([]any); !ok || len(list) == 0 {
					t.Errorf("%s missing", k)
				}
			}
			if m := r.json["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
				t.Errorf("code_challenge_methods_supported = %v", m)
			}
		})
	}
}

// TestInvalidClientNamesTheRegisteredMethod: a client that uses another
// method than its registered one is told which one it is registered for;
// a shared-secret client may use Basic or the body.
func TestInvalidClientNamesTheRegisteredMethod(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "m-jwt", "client_secret": strings.Repeat("k", 64), "token_endpoint_auth_method": "client_secret_jwt"})
	h.createClient(map[string]any{"client_id": "m-post", "client_secret": "post-secret", "token_endpoint_auth_method": "client_secret_post"})
	h.createClient(map[string]any{"client_id": "m-basic", "client_secret": "basic-secret"})
	cc := url.Values{"grant_type": {"client_credentials"}}
	withID := func(id string, extra ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}
		if len(extra) == 1 {
			v.Set("client_secret", extra[0])
		}
		return v
	}
	for _, tc := range []struct {
		name       string
		vals       url.Values
		id, secret string
		status     int
		method     string // named in the description; "" for a success
	}{
		{"secret_jwt client with Basic", cc, "m-jwt", "whatever", 401, "client_secret_jwt"},
		{"secret_jwt client in the body", withID("m-jwt", "whatever"), "", "", 400, "client_secret_jwt"},
		{"secret_jwt client with only its id", withID("m-jwt"), "", "", 400, "client_secret_jwt"},
		{"basic client with only its id", withID("m-basic"), "", "", 400, "client_secret_basic"},
		{"post client with Basic", cc, "m-post", "post-secret", 200, ""},
		{"basic client in the body", withID("m-basic", "basic-secret"), "", "", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.form("/oauth2/token", tc.vals, tc.id, tc.secret)
			if tc.method == "" {
				if r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.body)
				}
				return
			}
			wantError(t, r, tc.status, "invalid_client")
			if !strings.Contains(r.str("error_description"), "registered for "+tc.method) {
				t.Fatalf("description %q does not name %s", r.str("error_description"), tc.method)
			}
		})
	}
}
