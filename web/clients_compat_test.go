package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// The Go client libraries real programs use against keyhook, unmodified:
// golang.org/x/oauth2 (and its clientcredentials package) for every grant
// and client authentication method, github.com/coreos/go-oidc/v3 for
// discovery, ID tokens and UserInfo, and plain net/http for what a
// resource server does (introspection, RFC 7662; revocation, RFC 7009).

// assertionSource is an oauth2.TokenSource for client_secret_jwt and
// private_key_jwt clients, as real programs write one: x/oauth2 has no JWT
// client authentication, so each token request gets a fresh assertion
// (RFC 7523 §2.2, a new jti every time) through EndpointParams, with the
// client_id in the body.
type assertionSource struct {
	ctx      context.Context
	tokenURL string
	clientID string
	scopes   []string
	sign     func() string
}

func (s *assertionSource) Token() (*oauth2.Token, error) {
	cfg := clientcredentials.Config{ClientID: s.clientID, TokenURL: s.tokenURL, Scopes: s.scopes,
		AuthStyle: oauth2.AuthStyleInParams, EndpointParams: url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {s.sign()},
		}}
	return cfg.Token(s.ctx)
}

// resourceServer introspects and revokes with plain HTTP and Basic
// credentials, as an API in front of keyhook would.
type resourceServer struct {
	t          *testing.T
	url        string
	id, secret string
}

func (rs *resourceServer) post(path string, vals url.Values) (int, []byte) {
	rs.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rs.url+path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(rs.id), url.QueryEscape(rs.secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rs.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// introspection is the part of an RFC 7662 §2.2 answer these tests read.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
	ClientID  string `json:"client_id"`
	Username  string `json:"username"`
	TokenType string `json:"token_type"`
	Exp       int64  `json:"exp"`
	Iat       int64  `json:"iat"`
	Sub       string `json:"sub"`
	Iss       string `json:"iss"`
	GrantType string `json:"grant_type"`
}

func (rs *resourceServer) introspect(token string) (introspection, map[string]any) {
	rs.t.Helper()
	status, body := rs.post("/oauth2/introspect", url.Values{"token": {token}})
	if status != http.StatusOK {
		rs.t.Fatalf("introspect: %d %s", status, body)
	}
	var in introspection
	var raw map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		rs.t.Fatalf("introspection answer %s: %v", body, err)
	}
	_ = json.Unmarshal(body, &raw)
	return in, raw
}

// wantActive checks an introspection of an active token.
func (rs *resourceServer) wantActive(token, clientID, scope, grant, username string) {
	rs.t.Helper()
	in, raw := rs.introspect(token)
	now := time.Now().Unix()
	if !in.Active || in.ClientID != clientID || in.Scope != scope || in.GrantType != grant || in.Username != username ||
		in.TokenType != "Bearer" || in.Iss != rs.url || in.Exp <= now || in.Iat > now+1 {
		rs.t.Fatalf("introspection = %v, want an active %s token of %s with scope %q for %q", raw, grant, clientID, scope, username)
	}
}

// wantInactive checks that a token introspects as {"active": false} and
// nothing else (RFC 7662 §2.2).
func (rs *resourceServer) wantInactive(token string) {
	rs.t.Helper()
	if _, raw := rs.introspect(token); len(raw) != 1 || raw["active"] != false {
		rs.t.Fatalf("introspection = %v, want only active: false", raw)
	}
}

func (rs *resourceServer) revoke(token, hint string) {
	rs.t.Helper()
	vals := url.Values{"token": {token}}
	if hint != "" {
		vals.Set("token_type_hint", hint)
	}
	if status, body := rs.post("/oauth2/revoke", vals); status != http.StatusOK {
		rs.t.Fatalf("revoke: %d %s", status, body)
	}
}

func retrieveCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// TestGoClientCredentials: client_credentials through x/oauth2 with every
// client authentication method: client_secret_basic and client_secret_post
// (in their own style and with the default auto-detection),
// client_secret_jwt with HS256/384/512 and the generated secret, and
// private_key_jwt with RS256, ES256 and Ed25519 under both names.
func TestGoClientCredentials(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	tokenURL := h.url + "/oauth2/token"
	h.createClient(map[string]any{"client_id": "go-basic", "client_secret": "basic-secret", "scope": "orders:read orders:write"})
	h.createClient(map[string]any{"client_id": "go-post", "client_secret": "post-secret", "scope": "orders:read orders:write",
		"token_endpoint_auth_method": "client_secret_post"})
	hmacSecret := h.createClient(map[string]any{"client_id": "go-hs", "token_endpoint_auth_method": "client_secret_jwt", "scope": "orders:read orders:write"})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	h.createClient(map[string]any{"client_id": "go-pk", "token_endpoint_auth_method": "private_key_jwt", "scope": "orders:read orders:write",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: rsaKey.Public(), KeyID: "rsa", Use: "sig", Algorithm: "RS256"},
			{Key: ecKey.Public(), KeyID: "ec", Use: "sig", Algorithm: "ES256"},
			{Key: edPub, KeyID: "ed", Use: "sig", Algorithm: "Ed25519"},
		}}})
	h.createClient(map[string]any{"client_id": "go-rs", "client_secret": "rs-secret"})
	rs := &resourceServer{t: t, url: h.url, id: "go-rs", secret: "rs-secret"}

	jwtSource := func(id string, scopes []string, sign func(claims map[string]any) string) oauth2.TokenSource {
		return &assertionSource{ctx: ctx, tokenURL: tokenURL, clientID: id, scopes: scopes,
			sign: func() string { return sign(assertionClaims(id, tokenURL)) }}
	}
	joseSigner := func(key any, alg jose.SignatureAlgorithm, kid string) func(map[string]any) string {
		return func(c map[string]any) string { return signAssertion(t, key, alg, kid, c) }
	}
	for _, tc := range []struct {
		name   string
		id     string
		source func(scopes []string) oauth2.TokenSource
	}{
		{"client_secret_basic", "go-basic", func(s []string) oauth2.TokenSource {
			return (&clientcredentials.Config{ClientID: "go-basic", ClientSecret: "basic-secret", TokenURL: tokenURL, Scopes: s, AuthStyle: oauth2.AuthStyleInHeader}).TokenSource(ctx)
		}},
		{"client_secret_post", "go-post", func(s []string) oauth2.TokenSource {
			return (&clientcredentials.Config{ClientID: "go-post", ClientSecret: "post-secret", TokenURL: tokenURL, Scopes: s, AuthStyle: oauth2.AuthStyleInParams}).TokenSource(ctx)
		}},
		{"client_secret_basic auto-detected", "go-basic", func(s []string) oauth2.TokenSource {
			return (&clientcredentials.Config{ClientID: "go-basic", ClientSecret: "basic-secret", TokenURL: tokenURL, Scopes: s}).TokenSource(ctx)
		}},
		{"client_secret_post auto-detected", "go-post", func(s []string) oauth2.TokenSource {
			return (&clientcredentials.Config{ClientID: "go-post", ClientSecret: "post-secret", TokenURL: tokenURL, Scopes: s}).TokenSource(ctx)
		}},
		{"client_secret_jwt HS256", "go-hs", func(s []string) oauth2.TokenSource {
			return jwtSource("go-hs", s, joseSigner([]byte(hmacSecret), jose.HS256, ""))
		}},
		{"client_secret_jwt HS384", "go-hs", func(s []string) oauth2.TokenSource {
			return jwtSource("go-hs", s, joseSigner([]byte(hmacSecret), jose.HS384, ""))
		}},
		{"client_secret_jwt HS512", "go-hs", func(s []string) oauth2.TokenSource {
			return jwtSource("go-hs", s, joseSigner([]byte(hmacSecret), jose.HS512, ""))
		}},
		{"private_key_jwt RS256", "go-pk", func(s []string) oauth2.TokenSource {
			return jwtSource("go-pk", s, joseSigner(rsaKey, jose.RS256, "rsa"))
		}},
		{"private_key_jwt ES256", "go-pk", func(s []string) oauth2.TokenSource {
			return jwtSource("go-pk", s, joseSigner(ecKey, jose.ES256, "ec"))
		}},
		{"private_key_jwt Ed25519", "go-pk", func(s []string) oauth2.TokenSource {
			return jwtSource("go-pk", s, func(c map[string]any) string { return signEd25519(edKey, "Ed25519", "ed", c) })
		}},
		{"private_key_jwt EdDSA", "go-pk", func(s []string) oauth2.TokenSource {
			return jwtSource("go-pk", s, joseSigner(edKey, jose.EdDSA, "ed"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs.t = t
			tok, err := tc.source(nil).Token()
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if tok.Type() != "Bearer" || len(tok.AccessToken) < 43 || tok.RefreshToken != "" || tok.Extra("scope") != "orders:read orders:write" {
				t.Fatalf("token = %+v scope %v", tok, tok.Extra("scope"))
			}
			if d := time.Until(tok.Expiry); d < 290*time.Second || d > 301*time.Second {
				t.Fatalf("expires in %v, want about 300 s", d)
			}
			rs.wantActive(tok.AccessToken, tc.id, "orders:read orders:write", "client_credentials", "")

			// A narrower scope, and a second request (a fresh assertion,
			// as a jti may not repeat).
			first, err := tc.source([]string{"orders:read"}).Token()
			if err != nil || first.Extra("scope") != "orders:read" {
				t.Fatalf("narrow scope: %v %+v", err, first)
			}
			second, err := tc.source([]string{"orders:read"}).Token()
			if err != nil || second.AccessToken == first.AccessToken {
				t.Fatalf("second token: %v", err)
			}
			if _, err := tc.source([]string{"orders:read", "orders:delete"}).Token(); retrieveCode(err) != "invalid_scope" {
				t.Fatalf("a scope not allowed: %v, want invalid_scope", err)
			}

			// Only the owning client may revoke its token (RFC 7009
			// §2.1); then the resource server sees it inactive.
			revokeAs(t, h, tc.id, tok.AccessToken, map[string]string{"go-basic": "basic-secret", "go-post": "post-secret"},
				map[string]func() string{"go-hs": func() string {
					return signAssertion(t, []byte(hmacSecret), jose.HS256, "", assertionClaims("go-hs", h.url))
				},
					"go-pk": func() string { return signAssertion(t, ecKey, jose.ES256, "ec", assertionClaims("go-pk", h.url)) }})
			rs.wantInactive(tok.AccessToken)
			rs.wantActive(first.AccessToken, tc.id, "orders:read", "client_credentials", "")
		})
	}
}

// revokeAs revokes token as its owning client id, with the secret of a
// shared-secret client or an assertion of a JWT client.
func revokeAs(t *testing.T, h *harness, id, token string, secrets map[string]string, assertions map[string]func() string) {
	t.Helper()
	vals := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	var r *response
	if s, ok := secrets[id]; ok {
		r = h.form("/oauth2/revoke", vals, id, s)
	} else {
		r = h.form("/oauth2/revoke", assertionValues(assertions[id](), vals), "", "")
	}
	if r.status != http.StatusOK {
		t.Fatalf("revoke as %s: %d %s", id, r.status, r.body)
	}
}

// TestGoPasswordAndRefresh: the password grant and refresh token rotation
// through x/oauth2's TokenSource, with the default auto-detected auth
// style: an expired access token is refreshed, the refresh token rotates,
// and the ended one is invalid_grant and ends its family (RFC 9700 §4.14.2).
func TestGoPasswordAndRefresh(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h) // alice, and the client "app" with password and refresh_token
	h.createClient(map[string]any{"client_id": "go-rs", "client_secret": "rs-secret"})
	rs := &resourceServer{t: t, url: h.url, id: "go-rs", secret: "rs-secret"}
	ctx := context.Background()
	cfg := &oauth2.Config{ClientID: "app", ClientSecret: "app-secret", Scopes: []string{"api", "email"},
		Endpoint: oauth2.Endpoint{TokenURL: h.url + "/oauth2/token"}}

	tok, err := cfg.PasswordCredentialsToken(ctx, "alice", "alice-pw")
	if err != nil {
		t.Fatalf("password grant: %v", err)
	}
	if tok.RefreshToken == "" || tok.Extra("scope") != "api email" || tok.Extra("id_token") != nil {
		t.Fatalf("token = %+v scope %v", tok, tok.Extra("scope"))
	}
	rs.wantActive(tok.AccessToken, "app", "api email", "password", "alice")
	if _, err := cfg.PasswordCredentialsToken(ctx, "alice", "wrong"); retrieveCode(err) != "invalid_grant" {
		t.Fatalf("wrong password: %v, want invalid_grant", err)
	}

	// The TokenSource refreshes a token whose expiry has passed.
	old := *tok
	tok.Expiry = time.Now().Add(-time.Second)
	src := cfg.TokenSource(ctx, tok)
	fresh, err := src.Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.AccessToken == old.AccessToken || fresh.RefreshToken == "" || fresh.RefreshToken == old.RefreshToken ||
		fresh.Extra("scope") != "api email" || !fresh.Valid() {
		t.Fatalf("refreshed token = %+v, want new access and refresh tokens", fresh)
	}
	if again, err := src.Token(); err != nil || again.AccessToken != fresh.AccessToken {
		t.Fatalf("a valid token is reused: %v", err)
	}
	rs.wantActive(fresh.AccessToken, "app", "api email", "refresh_token", "alice")

	// The ended refresh token is refused, and its use ends the family.
	_, err = cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: old.RefreshToken, Expiry: time.Now().Add(-time.Second)}).Token()
	if retrieveCode(err) != "invalid_grant" {
		t.Fatalf("reused refresh token: %v, want invalid_grant", err)
	}
	rs.wantInactive(fresh.AccessToken)
	rs.wantInactive(fresh.RefreshToken)
}

// TestGoAuthorizationCode: the code flow with PKCE for a public client and
// a confidential one through x/oauth2 (the login form driven with
// net/http), then go-oidc: discovery, ID token verification with the
// nonce, UserInfo; and a resource server's introspection and revocation.
func TestGoAuthorizationCode(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "alice@example.com", "email_verified": true, "name": "Alice Example"}}); r.status != http.StatusCreated {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "go-spa", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{"http://127.0.0.1:9/cb"},
		"scope": "openid profile email api"})
	webSecret := h.createClient(map[string]any{"client_id": "go-web",
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{"https://app.example/cb"},
		"scope": "openid profile email api"})
	h.createClient(map[string]any{"client_id": "go-rs", "client_secret": "rs-secret"})

	provider, err := oidc.NewProvider(ctx, h.url)
	if err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}
	if ep := provider.Endpoint(); ep.AuthURL != h.url+"/oauth2/authorize" || ep.TokenURL != h.url+"/oauth2/token" {
		t.Fatalf("discovered endpoint %+v", ep)
	}
	if provider.UserInfoEndpoint() != h.url+"/oauth2/userinfo" {
		t.Fatalf("discovered userinfo endpoint %q", provider.UserInfoEndpoint())
	}
	var extra struct {
		Revocation    string   `json:"revocation_endpoint"`
		Introspection string   `json:"introspection_endpoint"`
		PKCE          []string `json:"code_challenge_methods_supported"`
	}
	if err := provider.Claims(&extra); err != nil || extra.Revocation != h.url+"/oauth2/revoke" ||
		extra.Introspection != h.url+"/oauth2/introspect" || !slices.Equal(extra.PKCE, []string{"S256"}) {
		t.Fatalf("discovery document: %+v %v", extra, err)
	}

	for _, tc := range []struct {
		name, id, secret, redirect string
	}{
		{"public client", "go-spa", "", "http://127.0.0.1:9/cb"},
		{"confidential client", "go-web", webSecret, "https://app.example/cb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &resourceServer{t: t, url: h.url, id: "go-rs", secret: "rs-secret"}
			// The endpoint as discovered, and the default auth style:
			// x/oauth2 finds out how to authenticate by itself.
			cfg := &oauth2.Config{ClientID: tc.id, ClientSecret: tc.secret, RedirectURL: tc.redirect,
				Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile", "api"}}
			verifier, state, nonce := oauth2.GenerateVerifier(), "state-"+tc.id, "nonce-"+tc.id
			resp := login(t, browser(), cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), "alice", "alice-pw")
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login: %d %s", resp.StatusCode, readAll(resp))
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), tc.redirect+"?") || loc.Query().Get("state") != state || loc.Query().Get("iss") != h.url {
				t.Fatalf("redirect to %s", loc)
			}
			code := loc.Query().Get("code")
			if _, err := cfg.Exchange(ctx, code); retrieveCode(err) != "invalid_grant" {
				t.Fatalf("exchange without the verifier: %v, want invalid_grant", err)
			}
			// That failed attempt did not consume the code (RFC 6749 §4.1.2).
			tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if tok.Type() != "Bearer" || tok.RefreshToken == "" || tok.Extra("scope") != "openid email profile api" {
				t.Fatalf("token = %+v scope %v", tok, tok.Extra("scope"))
			}

			rawID, _ := tok.Extra("id_token").(string)
			idt, err := provider.Verifier(&oidc.Config{ClientID: tc.id}).Verify(ctx, rawID)
			if err != nil {
				t.Fatalf("ID token: %v", err)
			}
			var claims struct {
				Email         string `json:"email"`
				EmailVerified bool   `json:"email_verified"`
				Name          string `json:"name"`
			}
			if err := idt.Claims(&claims); err != nil || idt.Issuer != h.url || idt.Subject != "alice" || idt.Nonce != nonce ||
				!slices.Equal(idt.Audience, []string{tc.id}) || claims.Email != "alice@example.com" || !claims.EmailVerified || claims.Name != "Alice Example" {
				t.Fatalf("ID token %+v claims %+v %v", idt, claims, err)
			}
			if _, err := provider.Verifier(&oidc.Config{ClientID: "someone-else"}).Verify(ctx, rawID); err == nil {
				t.Fatal("the ID token verified for another audience")
			}

			ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil || ui.Subject != "alice" || ui.Email != "alice@example.com" || !ui.EmailVerified {
				t.Fatalf("UserInfo %+v %v", ui, err)
			}
			var uiClaims struct {
				Name string `json:"name"`
			}
			if err := ui.Claims(&uiClaims); err != nil || uiClaims.Name != "Alice Example" {
				t.Fatalf("UserInfo claims %+v %v", uiClaims, err)
			}

			rs.wantActive(tok.AccessToken, tc.id, "openid email profile api", "authorization_code", "alice")
			if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier)); retrieveCode(err) != "invalid_grant" {
				t.Fatalf("a second use of the code: %v, want invalid_grant", err)
			}
			// A second use revokes what the first one issued (RFC 6749 §4.1.2).
			rs.wantInactive(tok.AccessToken)
			rs.wantInactive(tok.RefreshToken)

			// A new sign-in; the client refreshes, then revokes its
			// refresh token when the user signs out, which ends the
			// access tokens of the grant (RFC 7009 §2.1).
			verifier = oauth2.GenerateVerifier()
			resp = login(t, browser(), cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)), "alice", "alice-pw")
			loc, _ = url.Parse(resp.Header.Get("Location"))
			tok, err = cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("second exchange: %v", err)
			}
			expired := *tok
			expired.Expiry = time.Now().Add(-time.Second)
			fresh, err := cfg.TokenSource(ctx, &expired).Token()
			if err != nil || fresh.RefreshToken == tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
				t.Fatalf("refresh: %v %+v", err, fresh)
			}
			if id, _ := fresh.Extra("id_token").(string); id != "" {
				if _, err := provider.Verifier(&oidc.Config{ClientID: tc.id}).Verify(ctx, id); err != nil {
					t.Fatalf("refreshed ID token: %v", err)
				}
			}
			rs.wantActive(fresh.AccessToken, tc.id, "openid email profile api", "refresh_token", "alice")
			vals := url.Values{"token": {fresh.RefreshToken}, "token_type_hint": {"refresh_token"}}
			var r *response
			if tc.secret == "" {
				vals.Set("client_id", tc.id)
				r = h.form("/oauth2/revoke", vals, "", "")
			} else {
				r = h.form("/oauth2/revoke", vals, tc.id, tc.secret)
			}
			if r.status != http.StatusOK {
				t.Fatalf("revoke: %d %s", r.status, r.body)
			}
			rs.wantInactive(fresh.RefreshToken)
			rs.wantInactive(fresh.AccessToken)
			if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: fresh.RefreshToken, Expiry: time.Now().Add(-time.Second)}).Token(); retrieveCode(err) != "invalid_grant" {
				t.Fatalf("refresh with a revoked token: %v, want invalid_grant", err)
			}
			if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(fresh)); err == nil {
				t.Fatal("UserInfo answered for a revoked access token")
			}
		})
	}
}
