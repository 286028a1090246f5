package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestInvalidClientStatus: invalid_client is 401 with a Basic challenge
// when the client tried the Authorization header and 400 without any
// challenge otherwise (RFC 6749 §5.2), except at the introspection
// endpoint, a protected resource, which is always 401 (RFC 7662 §2.1).
// The description names the method the client is registered for.
func TestInvalidClientStatus(t *testing.T) {
	h := newHarness(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.createClient(map[string]any{"client_id": "st-pk", "token_endpoint_auth_method": "private_key_jwt",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Use: "sig"}}}})
	h.createClient(map[string]any{"client_id": "st-basic", "client_secret": "basic-secret"})
	for _, ep := range []struct {
		path  string
		extra url.Values
	}{
		{"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}},
		{"/oauth2/revoke", url.Values{"token": {"some-token"}}},
		{"/oauth2/introspect", url.Values{"token": {"some-token"}}},
	} {
		with := func(kv ...string) url.Values {
			v := url.Values{}
			for k, vs := range ep.extra {
				v[k] = vs
			}
			for i := 0; i+1 < len(kv); i += 2 {
				v.Set(kv[i], kv[i+1])
			}
			return v
		}
		for _, tc := range []struct {
			name       string
			vals       url.Values
			id, secret string // Basic, when id != ""
			basic      bool
			named      string // the registered method the description names
		}{
			{"private_key_jwt client with Basic", with(), "st-pk", "guess", true, "private_key_jwt"},
			{"private_key_jwt client with a secret in the body", with("client_id", "st-pk", "client_secret", "guess"), "", "", false, "private_key_jwt"},
			{"private_key_jwt client with only its id", with("client_id", "st-pk"), "", "", false, "private_key_jwt"},
			{"basic client with a wrong secret in Basic", with(), "st-basic", "wrong", true, ""},
			{"basic client with a wrong secret in the body", with("client_id", "st-basic", "client_secret", "wrong"), "", "", false, ""},
			{"basic client with a bad assertion", with("client_id", "st-basic", "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
				"client_assertion", signAssertion(t, key, jose.ES256, "k", assertionClaims("st-basic", h.url))), "", "", false, "client_secret_basic"},
			{"unknown client in the body", with("client_id", "nobody", "client_secret", "x"), "", "", false, ""},
		} {
			t.Run(ep.path+" "+tc.name, func(t *testing.T) {
				r := h.form(ep.path, tc.vals, tc.id, tc.secret)
				status := http.StatusBadRequest
				if tc.basic || ep.path == "/oauth2/introspect" {
					status = http.StatusUnauthorized
				}
				wantError(t, r, status, "invalid_client")
				challenge := r.header.Get("WWW-Authenticate")
				if status == http.StatusUnauthorized && !strings.HasPrefix(challenge, "Basic") {
					t.Fatalf("401 with WWW-Authenticate %q, want a Basic challenge", challenge)
				}
				if status == http.StatusBadRequest && challenge != "" {
					t.Fatalf("400 with WWW-Authenticate %q, want none", challenge)
				}
				if tc.named != "" && r.str("error_description") != "client "+tc.vals.Get("client_id")+tc.id+" is registered for "+tc.named {
					t.Fatalf("description %q, want it to name %s", r.str("error_description"), tc.named)
				}
			})
		}
	}
}

// TestOAuth2AutoDetect: golang.org/x/oauth2's default AuthStyle
// (AuthStyleAutoDetect) tries Basic, and after any error tries again with
// the credentials in the body. A shared-secret client is accepted either
// way, so what the caller sees is the real error of the request
// (invalid_scope, invalid_grant), not an invalid_client for the retry.
func TestOAuth2AutoDetect(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h) // alice
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			id := "auto-" + method
			h.createClient(map[string]any{"client_id": id, "client_secret": "auto-secret", "token_endpoint_auth_method": method,
				"grant_types": []string{"client_credentials", "password", "refresh_token"}, "scope": "a b"})
			ctx := context.Background()
			tokenURL := h.url + "/oauth2/token"
			// The zero AuthStyle is AuthStyleAutoDetect; each config has
			// its own style cache, so every case probes afresh.
			cc := func(scopes ...string) *clientcredentials.Config {
				return &clientcredentials.Config{ClientID: id, ClientSecret: "auto-secret", TokenURL: tokenURL, Scopes: scopes}
			}
			pw := func() *oauth2.Config {
				return &oauth2.Config{ClientID: id, ClientSecret: "auto-secret", Endpoint: oauth2.Endpoint{TokenURL: tokenURL}}
			}
			wantCode := func(t *testing.T, err error, code string) {
				t.Helper()
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.ErrorCode != code || re.Response.StatusCode != http.StatusBadRequest {
					t.Fatalf("err = %v, want a 400 %s RetrieveError", err, code)
				}
			}

			tok, err := cc("b").Token(ctx)
			if err != nil || tok.Extra("scope") != "b" {
				t.Fatalf("client_credentials: %v %+v", err, tok)
			}
			t.Run("a scope not allowed is invalid_scope", func(t *testing.T) {
				_, err := cc("a", "c").Token(ctx)
				wantCode(t, err, "invalid_scope")
			})
			t.Run("a grant not allowed is unauthorized_client", func(t *testing.T) {
				h.createClient(map[string]any{"client_id": id + "-cc", "client_secret": "auto-secret", "token_endpoint_auth_method": method})
				cfg := pw()
				cfg.ClientID = id + "-cc"
				_, err := cfg.PasswordCredentialsToken(ctx, "alice", "alice-pw")
				wantCode(t, err, "unauthorized_client")
			})
			t.Run("a wrong password is invalid_grant", func(t *testing.T) {
				_, err := pw().PasswordCredentialsToken(ctx, "alice", "wrong")
				wantCode(t, err, "invalid_grant")
			})
			t.Run("a revoked refresh token is invalid_grant", func(t *testing.T) {
				tok, err := pw().PasswordCredentialsToken(ctx, "alice", "alice-pw")
				if err != nil || tok.RefreshToken == "" {
					t.Fatalf("password grant: %v %+v", err, tok)
				}
				if r := h.form("/oauth2/revoke", url.Values{"token": {tok.RefreshToken}}, id, "auto-secret"); r.status != http.StatusOK {
					t.Fatalf("revoke: %d %s", r.status, r.body)
				}
				_, err = pw().TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
				wantCode(t, err, "invalid_grant")
			})
			t.Run("an expired refresh token is invalid_grant", func(t *testing.T) {
				tok, err := pw().PasswordCredentialsToken(ctx, "alice", "alice-pw")
				if err != nil || tok.RefreshToken == "" {
					t.Fatalf("password grant: %v %+v", err, tok)
				}
				h.clock.advance(15 * 24 * time.Hour) // past the 14-day default
				defer h.clock.advance(-15 * 24 * time.Hour)
				_, err = pw().TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}).Token()
				wantCode(t, err, "invalid_grant")
			})
			t.Run("a wrong secret is still invalid_client", func(t *testing.T) {
				_, err := (&clientcredentials.Config{ClientID: id, ClientSecret: "wrong", TokenURL: tokenURL}).Token(ctx)
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
					t.Fatalf("err = %v, want invalid_client", err)
				}
			})
		})
	}
}

// discovered reads a list of strings from the discovery document.
func discovered(t *testing.T, h *harness, key string) []string {
	t.Helper()
	r := h.do(mustGet(h.url + "/.well-known/openid-configuration"))
	if r.status != http.StatusOK {
		t.Fatalf("discovery: %d %s", r.status, r.body)
	}
	raw, ok := r.json[key].([]any)
	if !ok {
		t.Fatalf("discovery has no list %s: %s", key, r.body)
	}
	var out []string
	for _, v := range raw {
		out = append(out, v.(string))
	}
	return out
}

// assertionKeys are a client_secret_jwt client's generated secret and a
// private_key_jwt client's keys, one client per alg family, registered
// without token_endpoint_auth_signing_alg so that every alg of the family
// is theirs to use.
type assertionKeys struct {
	secret []byte
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
}

func newAssertionKeys(t *testing.T, h *harness, hmacID, pkID string) *assertionKeys {
	t.Helper()
	k := &assertionKeys{}
	k.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var edPub ed25519.PublicKey
	edPub, k.ed, _ = ed25519.GenerateKey(rand.Reader)
	k.secret = []byte(h.createClient(map[string]any{"client_id": hmacID, "token_endpoint_auth_method": "client_secret_jwt", "scope": "a"}))
	h.createClient(map[string]any{"client_id": pkID, "token_endpoint_auth_method": "private_key_jwt", "scope": "a",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: k.rsa.Public(), KeyID: "rsa", Use: "sig"},
			{Key: k.ec.Public(), KeyID: "ec", Use: "sig"},
			{Key: edPub, KeyID: "ed", Use: "sig"},
		}}})
	return k
}

// sign makes an assertion with alg for the client of that alg's family,
// or "" when this test does not know how to sign with alg.
func (k *assertionKeys) sign(t *testing.T, alg, id, aud string) string {
	t.Helper()
	claims := assertionClaims(id, aud)
	switch alg {
	case "HS256", "HS384", "HS512":
		return signAssertion(t, k.secret, jose.SignatureAlgorithm(alg), "", claims)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return signAssertion(t, k.rsa, jose.SignatureAlgorithm(alg), "rsa", claims)
	case "ES256":
		return signAssertion(t, k.ec, jose.ES256, "ec", claims)
	case "Ed25519", "EdDSA":
		return signEd25519(k.ed, alg, "ed", claims)
	case "none":
		return unsignedAssertion(claims)
	}
	return ""
}

// TestDiscoveredAssertionAlgs: every alg that discovery lists for client
// assertions works at the endpoint it is listed for, with a generated
// client_secret_jwt secret (512 bits, RFC 7518 §3.2) or a private_key_jwt
// key, and algs it does not list are refused (RFC 8414 §2).
func TestDiscoveredAssertionAlgs(t *testing.T) {
	h := newHarness(t)
	keys := newAssertionKeys(t, h, "alg-hs", "alg-pk")
	if len(keys.secret) < 64 {
		t.Fatalf("a generated secret has %d bytes, HS512 needs 64 (RFC 7518 §3.2)", len(keys.secret))
	}
	tok := h.mustToken("keyhook-admin", adminSecret, "").AccessToken
	for _, ep := range []struct{ key, path string }{
		{"token_endpoint_auth_signing_alg_values_supported", "/oauth2/token"},
		{"introspection_endpoint_auth_signing_alg_values_supported", "/oauth2/introspect"},
		{"revocation_endpoint_auth_signing_alg_values_supported", "/oauth2/revoke"},
	} {
		listed := discovered(t, h, ep.key)
		if want := []string{"HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "Ed25519", "EdDSA"}; !sameSet(listed, want) {
			t.Errorf("%s = %v, want %v", ep.key, listed, want)
		}
		call := func(id, a string) *response {
			extra := url.Values{"token": {tok}}
			if ep.path == "/oauth2/revoke" {
				extra.Set("token", "unknown-token") // 200, RFC 7009 §2.2
			}
			if ep.path == "/oauth2/token" {
				extra = url.Values{"grant_type": {"client_credentials"}}
			}
			extra.Set("client_id", id)
			return h.form(ep.path, assertionValues(a, extra), "", "")
		}
		for _, alg := range listed {
			t.Run(ep.path+" listed "+alg, func(t *testing.T) {
				id := "alg-pk"
				if strings.HasPrefix(alg, "HS") {
					id = "alg-hs"
				}
				a := keys.sign(t, alg, id, h.url)
				if a == "" {
					t.Fatalf("discovery lists %s, which this test cannot sign with", alg)
				}
				if r := call(id, a); r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.body)
				}
			})
		}
		for _, tc := range []struct{ alg, id string }{
			{"none", "alg-pk"}, {"none", "alg-hs"},
			{"HS256", "alg-pk"}, {"RS256", "alg-hs"}, {"Ed25519", "alg-hs"},
			{"RS384", "alg-pk"}, {"RS512", "alg-pk"}, {"PS384", "alg-pk"}, {"PS512", "alg-pk"},
		} {
			t.Run(ep.path+" refused "+tc.alg+" for "+tc.id, func(t *testing.T) {
				r := call(tc.id, keys.sign(t, tc.alg, tc.id, h.url))
				status := http.StatusBadRequest
				if ep.path == "/oauth2/introspect" {
					status = http.StatusUnauthorized
				}
				wantError(t, r, status, "invalid_client")
			})
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestDiscoveredAuthMethods: every client authentication method discovery
// lists for an endpoint works there, and "none" works only where listed
// (RFC 8414 §2; a public client may revoke its own tokens, RFC 7009 §2.1,
// but cannot introspect, RFC 7662 §2.1).
func TestDiscoveredAuthMethods(t *testing.T) {
	h := newHarness(t)
	keys := newAssertionKeys(t, h, "m-hs", "m-pk")
	h.createClient(map[string]any{"client_id": "m-basic", "client_secret": "basic-secret", "scope": "a"})
	h.createClient(map[string]any{"client_id": "m-post", "client_secret": "post-secret", "scope": "a", "token_endpoint_auth_method": "client_secret_post"})
	passwordSetup(t, h)
	h.createClient(map[string]any{"client_id": "m-none", "token_endpoint_auth_method": "none", "grant_types": []string{"authorization_code", "refresh_token"},
		"redirect_uris": []string{spaRedirect}, "scope": "openid api"})
	spaTokens := publicTokens(t, h, "m-none")

	// request makes an authenticated request of the method; token is the
	// token to revoke or introspect.
	request := func(t *testing.T, method, path, token string) *response {
		vals := url.Values{"token": {token}}
		if path == "/oauth2/token" {
			vals = url.Values{"grant_type": {"client_credentials"}}
		}
		switch method {
		case "client_secret_basic":
			return h.form(path, vals, "m-basic", "basic-secret")
		case "client_secret_post":
			vals.Set("client_id", "m-post")
			vals.Set("client_secret", "post-secret")
		case "client_secret_jwt":
			return h.form(path, assertionValues(keys.sign(t, "HS256", "m-hs", h.url), vals), "", "")
		case "private_key_jwt":
			return h.form(path, assertionValues(keys.sign(t, "ES256", "m-pk", h.url), vals), "", "")
		case "none":
			if path == "/oauth2/token" {
				vals = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spaTokens.RefreshToken}}
			}
			vals.Set("client_id", "m-none")
		default:
			t.Fatalf("discovery lists the unknown method %s", method)
		}
		return h.form(path, vals, "", "")
	}
	all := []string{"client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none"}
	for _, ep := range []struct{ key, path string }{
		{"token_endpoint_auth_methods_supported", "/oauth2/token"},
		{"introspection_endpoint_auth_methods_supported", "/oauth2/introspect"},
		{"revocation_endpoint_auth_methods_supported", "/oauth2/revoke"},
	} {
		listed := discovered(t, h, ep.key)
		for _, m := range all {
			t.Run(ep.path+" "+m, func(t *testing.T) {
				token := spaTokens.AccessToken
				if ep.path == "/oauth2/revoke" && m != "none" {
					token = "unknown-token" // 200, RFC 7009 §2.2
				}
				r := request(t, m, ep.path, token)
				if slices.Contains(listed, m) {
					if r.status != http.StatusOK {
						t.Fatalf("%s lists %s, but it got %d %s", ep.key, m, r.status, r.body)
					}
					if ep.path == "/oauth2/introspect" && r.json["active"] != true {
						t.Fatalf("introspection by %s: %s", m, r.body)
					}
					return
				}
				if r.status == http.StatusOK {
					t.Fatalf("%s does not list %s, but it worked: %s", ep.key, m, r.body)
				}
			})
		}
	}
	if r := h.introspect(spaTokens.AccessToken); r["active"] != false {
		t.Fatalf("the public client's revocation did not revoke: %v", r)
	}
}

// publicTokens runs the code flow for the public client id (alice signs
// in) and returns its tokens.
func publicTokens(t *testing.T, h *harness, id string) *oauth2.Token {
	t.Helper()
	cfg := &oauth2.Config{ClientID: id, RedirectURL: spaRedirect, Scopes: []string{"openid", "api"},
		Endpoint: oauth2.Endpoint{AuthURL: h.url + "/oauth2/authorize", TokenURL: h.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "alice", "alice-pw")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok, err := cfg.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("code flow: %v %+v", err, tok)
	}
	return tok
}

// TestDiscoveryLists: the lists clients pick their settings from: PKCE
// S256 only (plain is refused, RFC 7636 §4.2), and scopes_supported with
// the public scopes only, never keyhook:* or a client's private scopes.
func TestDiscoveryLists(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "api", "scope": "orders:read orders:write secret-scope keyhook:clients.read",
		"attributes": map[string]any{"public_scopes": "orders:read keyhook:clients.read"}})
	if got := discovered(t, h, "code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", got)
	}
	scopes := discovered(t, h, "scopes_supported")
	for _, s := range []string{"openid", "profile", "email", "offline_access", "orders:read"} {
		if !slices.Contains(scopes, s) {
			t.Errorf("scopes_supported %v lacks %s", scopes, s)
		}
	}
	for _, s := range scopes {
		if strings.HasPrefix(s, "keyhook:") || s == "orders:write" || s == "secret-scope" {
			t.Errorf("scopes_supported lists %s: %v", s, scopes)
		}
	}
	for _, key := range []string{"introspection_endpoint_auth_signing_alg_values_supported", "revocation_endpoint_auth_methods_supported"} {
		if len(discovered(t, h, key)) == 0 {
			t.Errorf("%s is empty", key)
		}
	}
}

// TestPublicClientAutoDetectIsNotAFailure: x/oauth2's default AuthStyle
// sends a public client's id in Basic with an empty password, then (after
// an error) in the body. A program that makes a new oauth2.Config per run
// or per request (a CLI, a handler) probes every time; with the failure
// throttles on (docs/auth-limits.md) those probes must not lock out the
// client or its address: Basic with an empty password is the "none"
// method, as it proves as much as a client_id in the body.
func TestPublicClientAutoDetectIsNotAFailure(t *testing.T) {
	h := newHarness(t, withThrottles())
	passwordSetup(t, h) // alice
	h.createClient(map[string]any{"client_id": "cli", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{spaRedirect}, "scope": "openid api"})
	tok := publicTokens(t, h, "cli")
	ctx := context.Background()
	for i := range 25 { // the address's allowance is 20 failures
		cfg := &oauth2.Config{ClientID: "cli", Endpoint: oauth2.Endpoint{TokenURL: h.url + "/oauth2/token"}}
		next, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Second)}).Token()
		if err != nil {
			t.Fatalf("refresh %d with a new oauth2.Config: %v", i+1, err)
		}
		tok = next
	}
	// Still a public client: it may not introspect nor use other grants.
	wantError(t, h.form("/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "cli", ""), http.StatusUnauthorized, "invalid_client")
	wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "cli", ""), http.StatusBadRequest, "unauthorized_client")
	// Basic with a password is not "none": that client is misconfigured.
	r := h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "cli", "a-secret")
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	if !strings.Contains(r.str("error_description"), "registered for none") {
		t.Fatalf("description %q does not name none", r.str("error_description"))
	}
}
