package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const spaRedirect = "http://127.0.0.1:9/callback"

// codeSetup registers alice and a public browser app.
func codeSetup(t *testing.T, h *harness) *oauth2.Config {
	t.Helper()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "alice@example.com", "email_verified": true, "name": "Alice Example"}}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "spa", "client_name": "Demo SPA", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{spaRedirect},
		"scope": "openid profile email api"})
	return &oauth2.Config{ClientID: "spa", RedirectURL: spaRedirect, Scopes: []string{"openid", "email", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: h.url + "/oauth2/authorize", TokenURL: h.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so a test sees where the server sends the user.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// login loads the authorize URL, fills the form and returns the answer.
func login(t *testing.T, client *http.Client, authURL, user, pass string) *http.Response {
	t.Helper()
	resp, err := client.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(resp)
	if resp.StatusCode != 200 {
		t.Fatalf("authorize page: %d %s", resp.StatusCode, page)
	}
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Add(m[1], html.UnescapeString(m[2])) // resource may repeat (RFC 8707)
	}
	form.Set("username", user)
	form.Set("password", pass)
	resp, err = client.PostForm(authURL[:strings.Index(authURL, "?")], form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestAuthorizationCodeFlowWithOIDC(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n0nce"))
	resp := login(t, browser(), authURL, "alice", "alice-pw")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d %s", resp.StatusCode, readAll(resp))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), spaRedirect+"?") || loc.Query().Get("state") != "st4te" || loc.Query().Get("iss") != h.url {
		t.Fatalf("redirect to %s", loc)
	}
	code := loc.Query().Get("code")

	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" || tok.RefreshToken == "" {
		t.Fatalf("token %+v", tok)
	}
	provider, err := oidc.NewProvider(ctx, h.url)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: "spa"}).Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("id_token does not verify: %v", err)
	}
	var claims struct {
		Email    string `json:"email"`
		Name     string `json:"name"`
		AuthTime int64  `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil || idt.Nonce != "n0nce" || idt.Subject != "alice" || claims.Email != "alice@example.com" ||
		claims.Name != "Alice Example" || claims.AuthTime == 0 {
		t.Fatalf("id_token %+v claims %+v err %v", idt, claims, err)
	}
	ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Email != "alice@example.com" || ui.Subject != "alice" {
		t.Fatalf("userinfo %+v %v", ui, err)
	}
	if in := h.introspect(tok.AccessToken); in["grant_type"] != "authorization_code" || in["username"] != "alice" {
		t.Fatalf("introspection %v", in)
	}
	// A public client refreshes with its client_id alone.
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Fatalf("refresh: %v", err)
	}

	t.Run("reused code fails and revokes what it gave", func(t *testing.T) {
		_, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
			t.Fatalf("reuse: %v", err)
		}
		if h.introspect(tok.AccessToken)["active"] != false {
			t.Fatal("token of a reused code still active")
		}
	})
}

func TestAuthorizationCodeFailures(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h)
	ctx := context.Background()
	t.Run("wrong code_verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice", "alice-pw")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		_, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("no code_verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice", "alice-pw")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if _, err := cfg.Exchange(ctx, loc.Query().Get("code")); err == nil {
			t.Fatal("exchange without verifier succeeded")
		}
	})
	for _, tc := range []struct{ name, user, pass string }{
		{"wrong password", "alice", "nope"}, {"unknown user", "bob", "alice-pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), tc.user, tc.pass)
			body := readAll(resp)
			if resp.StatusCode != 401 || resp.Header.Get("Location") != "" || !strings.Contains(body, "username or password is wrong") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("disabled user", func(t *testing.T) {
		h.admin("PUT", "/users/alice", map[string]any{"disabled": true, "claims": map[string]any{}})
		defer h.admin("PUT", "/users/alice", map[string]any{"disabled": false, "claims": map[string]any{}})
		resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice-pw")
		if resp.StatusCode != 401 {
			t.Fatalf("%d", resp.StatusCode)
		}
	})
	t.Run("missing CSRF cookie", func(t *testing.T) {
		authURL := cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		c := browser()
		resp, _ := c.Get(authURL)
		page := readAll(resp)
		form := url.Values{}
		for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
			form.Add(m[1], html.UnescapeString(m[2])) // resource may repeat (RFC 8707)
		}
		form.Set("username", "alice")
		form.Set("password", "alice-pw")
		resp, _ = browser().PostForm(h.url+"/oauth2/authorize", form) // a fresh client: no cookie
		if resp.StatusCode != 403 || resp.Header.Get("Location") != "" {
			t.Fatalf("%d", resp.StatusCode)
		}
	})

	challenge := func(v string) string {
		s := sha256.Sum256([]byte(v))
		return base64.RawURLEncoding.EncodeToString(s[:])
	}
	base := url.Values{"response_type": {"code"}, "client_id": {"spa"}, "redirect_uri": {spaRedirect}, "state": {"xyz"},
		"code_challenge": {challenge("v")}, "code_challenge_method": {"S256"}}
	with := func(k, v string) string {
		q := cloneVals(base)
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return h.url + "/oauth2/authorize?" + q.Encode()
	}
	for _, tc := range []struct {
		name, url string
		page      bool   // shown as a page, never redirected
		errCode   string // else redirected with this error
	}{
		{"redirect_uri mismatch", with("redirect_uri", "http://127.0.0.1:9/other"), true, ""},
		{"redirect_uri prefix trick", with("redirect_uri", spaRedirect+"/../evil"), true, ""},
		{"unknown client", with("client_id", "nobody"), true, ""},
		{"missing client", with("client_id", ""), true, ""},
		{"plain PKCE", with("code_challenge_method", "plain"), false, "invalid_request"},
		{"public client without PKCE", with("code_challenge", ""), false, "invalid_request"},
		{"token response type", with("response_type", "token"), false, "unsupported_response_type"},
		{"scope not allowed", with("scope", "openid admin"), false, "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := browser().Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(resp)
			if tc.page {
				if resp.StatusCode != 400 || resp.Header.Get("Location") != "" || !strings.Contains(body, "Cannot sign in") {
					t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
				}
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), spaRedirect) ||
				loc.Query().Get("error") != tc.errCode || loc.Query().Get("state") != "xyz" {
				t.Fatalf("%d %s", resp.StatusCode, loc)
			}
		})
	}
}

func TestAuthorizationCodeExpiryAndRedirectBinding(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h)
	ctx := context.Background()
	issue := func() (code, verifier string) {
		verifier = oauth2.GenerateVerifier()
		resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "alice", "alice-pw")
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return loc.Query().Get("code"), verifier
	}
	t.Run("expired code", func(t *testing.T) {
		code, verifier := issue()
		h.clock.advance(61 * time.Second) // authorization_code_lifetime is 60
		defer h.clock.advance(-61 * time.Second)
		_, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
			t.Fatalf("expired code: %v", err)
		}
	})
	t.Run("redirect_uri differs from the authorization request", func(t *testing.T) {
		code, verifier := issue()
		other := *cfg
		other.RedirectURL = "http://127.0.0.1:9/elsewhere"
		_, err := other.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
			t.Fatalf("mismatched redirect_uri: %v", err)
		}
	})
}
