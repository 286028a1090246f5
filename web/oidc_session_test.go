package web_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// sessionCookieName is the login session cookie (docs/browser-flow.md).
const sessionCookieName = "keyhook_session"

// signedIn signs alice in with a fresh browser and returns the browser,
// the login answer and the session cookie it set.
func signedIn(t *testing.T, h *harness, cfg *oauth2.Config) (*http.Client, *http.Response, *http.Cookie) {
	t.Helper()
	b := browser()
	resp := login(t, b, cfg.AuthCodeURL("first", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice-pw")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d %s", resp.StatusCode, readAll(resp))
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookieName {
			return b, resp, ck
		}
	}
	t.Fatalf("no %s cookie after a successful login: %v", sessionCookieName, resp.Header.Values("Set-Cookie"))
	return nil, nil, nil
}

// authURLWith is cfg's authorization URL with state "st", a fresh PKCE
// challenge and the extra parameters, given as name, value pairs.
func authURLWith(cfg *oauth2.Config, extra ...string) string {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())}
	for i := 0; i+1 < len(extra); i += 2 {
		opts = append(opts, oauth2.SetAuthURLParam(extra[i], extra[i+1]))
	}
	return cfg.AuthCodeURL("st", opts...)
}

// outcome is what an authorization request led to: the login form, a
// code, or an error sent back to the client.
type outcome struct {
	form   bool
	code   string
	err    string
	loc    *url.URL
	status int
	page   string
}

func authorizeWith(t *testing.T, b *http.Client, u string) outcome {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(resp)
	o := outcome{status: resp.StatusCode, page: page}
	switch resp.StatusCode {
	case http.StatusOK:
		o.form = strings.Contains(page, `id="password"`)
	case http.StatusSeeOther:
		o.loc, _ = url.Parse(resp.Header.Get("Location"))
		o.code, o.err = o.loc.Query().Get("code"), o.loc.Query().Get("error")
	}
	return o
}

func (o outcome) String() string {
	if o.loc != nil {
		return o.loc.String()
	}
	return o.page
}

// TestAuthorizePromptAndSession checks the OpenID Connect request
// parameters of OIDC Core §3.1.2.1 against a browser with and without a
// login session: prompt (none, login, consent, select_account, unknown,
// none with another value), max_age, login_hint, and the request objects
// of OIDC Core §6 that keyhook does not support.
func TestAuthorizePromptAndSession(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h)
	withSession, _, _ := signedIn(t, h, cfg)
	url := func(extra ...string) string { return authURLWith(cfg, extra...) }
	const (
		form = "form"
		code = "code"
	)
	for _, tc := range []struct {
		name    string
		session bool
		params  []string
		want    string // form, code, or the error sent back
	}{
		{"second authorization needs no password", true, nil, code},
		{"prompt=none with a session", true, []string{"prompt", "none"}, code},
		{"prompt=none without a session", false, []string{"prompt", "none"}, "login_required"},
		{"prompt=login with a session", true, []string{"prompt", "login"}, form},
		{"prompt=select_account is a login", true, []string{"prompt", "select_account"}, form},
		{"prompt=consent is satisfied by registration", true, []string{"prompt", "consent"}, code},
		{"prompt=login consent with a session", true, []string{"prompt", "login consent"}, form},
		{"prompt=none login", true, []string{"prompt", "none login"}, "invalid_request"},
		{"prompt=none consent", false, []string{"prompt", "consent none"}, "invalid_request"},
		{"unknown prompt", true, []string{"prompt", "create"}, "invalid_request"},
		{"empty prompt", true, []string{"prompt", ""}, code},
		{"max_age satisfied", true, []string{"max_age", "3600"}, code},
		{"max_age=0 is prompt=login", true, []string{"max_age", "0"}, form},
		{"max_age=0 with prompt=none", true, []string{"max_age", "0", "prompt", "none"}, "login_required"},
		{"negative max_age", true, []string{"max_age", "-1"}, "invalid_request"},
		{"max_age not a number", true, []string{"max_age", "1h"}, "invalid_request"},
		{"login_hint of the signed-in user", true, []string{"login_hint", "alice"}, code},
		{"login_hint of another user", true, []string{"login_hint", "bob"}, form},
		{"login_hint of another user, prompt=none", true, []string{"login_hint", "bob", "prompt", "none"}, "login_required"},
		{"request object", true, []string{"request", "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"},
		{"request_uri", false, []string{"request_uri", "https://rp.example/req.jwt"}, "request_uri_not_supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := browser()
			if tc.session {
				b = withSession
			}
			o := authorizeWith(t, b, url(tc.params...))
			switch tc.want {
			case form:
				if !o.form {
					t.Fatalf("want the login form, got %d %s", o.status, o)
				}
			case code:
				if o.code == "" {
					t.Fatalf("want a code, got %d %s", o.status, o)
				}
			default:
				if o.err != tc.want {
					t.Fatalf("want error %s, got %d %s", tc.want, o.status, o)
				}
			}
			if o.loc != nil {
				// RFC 9207: every authorization response carries iss.
				if q := o.loc.Query(); q.Get("iss") != h.url || q.Get("state") != "st" || !strings.HasPrefix(o.loc.String(), spaRedirect+"?") {
					t.Fatalf("redirect %s lacks iss %s or state", o.loc, h.url)
				}
			}
		})
	}

	t.Run("max_age older than the sign-in", func(t *testing.T) {
		h.clock.advance(2 * time.Hour)
		defer h.clock.advance(-2 * time.Hour)
		if o := authorizeWith(t, withSession, url("max_age", "3600")); !o.form {
			t.Fatalf("want the form, got %s", o)
		}
		if o := authorizeWith(t, withSession, url("max_age", "3600", "prompt", "none")); o.err != "login_required" {
			t.Fatalf("want login_required, got %s", o)
		}
		if o := authorizeWith(t, withSession, url("max_age", "86400")); o.code == "" {
			t.Fatalf("want a code, got %s", o)
		}
	})

	t.Run("login_hint prefills the username, escaped", func(t *testing.T) {
		o := authorizeWith(t, browser(), url("login_hint", `"><script>alert(1)</script>`))
		if !o.form || strings.Contains(o.page, "<script>alert") ||
			!strings.Contains(o.page, `value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`) {
			t.Fatalf("page %s", o.page)
		}
	})
}

// TestLoginSessionCookie checks the cookie a successful sign-in sets and
// the server side of the session: opaque, HttpOnly, SameSite=Lax, scoped
// to the authorization endpoint, Secure behind https, and useless once it
// expires, once the user is disabled, changed or deleted, or when forged.
func TestLoginSessionCookie(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h)
	prompt := func(b *http.Client) outcome {
		return authorizeWith(t, b, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("prompt", "none")))
	}

	t.Run("attributes", func(t *testing.T) {
		_, resp, ck := signedIn(t, h, cfg)
		raw := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Path != "/oauth2/authorize" || len(ck.Value) < 43 {
			t.Fatalf("cookie %+v (%s)", ck, raw)
		}
		if ck.MaxAge <= 0 || ck.MaxAge > 24*3600 {
			t.Fatalf("cookie lifetime %d s", ck.MaxAge)
		}
		if strings.Contains(ck.Value, "alice") {
			t.Fatalf("cookie value %q is not opaque", ck.Value)
		}
	})

	t.Run("Secure behind https", func(t *testing.T) {
		b := browser()
		b.Transport = headerTransport{"X-Forwarded-Proto": "https"}
		resp := login(t, b, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice-pw")
		resp.Body.Close()
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookieName {
				ck = c
			}
		}
		if ck == nil || !ck.Secure {
			t.Fatalf("cookie %+v", ck)
		}
	})

	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, b *http.Client)
		after func()
	}{
		{"forged value", func(t *testing.T, b *http.Client) {
			u, _ := url.Parse(h.url + "/oauth2/authorize")
			b.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookieName, Value: strings.Repeat("A", 43), Path: "/oauth2/authorize"}})
		}, nil},
		{"expired", func(t *testing.T, b *http.Client) { h.clock.advance(25 * time.Hour) }, func() { h.clock.advance(-25 * time.Hour) }},
		{"user disabled", func(t *testing.T, b *http.Client) {
			h.admin(http.MethodPut, "/users/alice", map[string]any{"disabled": true, "claims": map[string]any{}})
		}, func() {
			h.admin(http.MethodPut, "/users/alice", map[string]any{"disabled": false, "claims": map[string]any{}})
		}},
		{"user disabled and enabled again", func(t *testing.T, b *http.Client) {
			h.clock.advance(time.Second)
			h.admin(http.MethodPut, "/users/alice", map[string]any{"disabled": true, "claims": map[string]any{}})
			h.clock.advance(time.Second)
			h.admin(http.MethodPut, "/users/alice", map[string]any{"disabled": false, "claims": map[string]any{}})
		}, nil},
		{"password changed", func(t *testing.T, b *http.Client) {
			h.clock.advance(time.Second)
			h.admin(http.MethodPut, "/users/alice", map[string]any{"password": "alice-pw", "claims": map[string]any{}})
		}, nil},
		{"user deleted", func(t *testing.T, b *http.Client) {
			h.admin(http.MethodDelete, "/users/alice", nil)
		}, func() {
			h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, _ := signedIn(t, h, cfg)
			if o := prompt(b); o.code == "" {
				t.Fatalf("session not used: %s", o)
			}
			tc.spoil(t, b)
			if tc.after != nil {
				defer tc.after()
			}
			if o := prompt(b); o.err != "login_required" {
				t.Fatalf("want login_required, got %d %s", o.status, o)
			}
		})
	}

	t.Run("a new sign-in replaces the session", func(t *testing.T) {
		b, _, first := signedIn(t, h, cfg)
		resp := login(t, b, cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("prompt", "login")), "alice", "alice-pw")
		resp.Body.Close()
		var second *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == sessionCookieName {
				second = c
			}
		}
		if second == nil || second.Value == first.Value {
			t.Fatalf("session not renewed: %+v", second)
		}
		old := browser()
		u, _ := url.Parse(h.url + "/oauth2/authorize")
		old.Jar.SetCookies(u, []*http.Cookie{first})
		if o := prompt(old); o.err != "login_required" {
			t.Fatalf("the replaced session still works: %s", o)
		}
	})
}

// headerTransport adds headers to every request.
type headerTransport map[string]string

func (ht headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range ht {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestIDTokenAuthTimeFromSession checks that an ID token issued from a
// login session carries the time the user signed in (OIDC Core §2
// auth_time, required when max_age was requested) and the request's
// nonce, not the time of the second authorization.
func TestIDTokenAuthTimeFromSession(t *testing.T) {
	h := newHarness(t)
	h.clock.freeze()
	cfg := codeSetup(t, h)
	signedInAt := h.clock.now().Unix()
	b, _, _ := signedIn(t, h, cfg)
	h.clock.advance(10 * time.Minute)
	defer h.clock.advance(-10 * time.Minute)
	verifier := oauth2.GenerateVerifier()
	o := authorizeWith(t, b, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-2"),
		oauth2.SetAuthURLParam("max_age", "3600")))
	if o.code == "" {
		t.Fatalf("want a code, got %s", o)
	}
	ctx := context.Background()
	tok, err := cfg.Exchange(ctx, o.code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	provider, err := oidc.NewProvider(ctx, h.url)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: "spa", Now: h.clock.now}).Verify(ctx, rawID)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil || claims.AuthTime != signedInAt || idt.Nonce != "n-2" {
		t.Fatalf("auth_time %d (signed in at %d), nonce %q, %v", claims.AuthTime, signedInAt, idt.Nonce, err)
	}
}

// TestDiscoveryBrowserFlow checks the provider metadata of the browser
// flow (OpenID Connect Discovery 1.0 §3, RFC 8414 §2, RFC 9207 §3).
func TestDiscoveryBrowserFlow(t *testing.T) {
	h := newHarness(t)
	r := h.do(mustRequest(http.MethodGet, h.url+"/.well-known/openid-configuration"))
	for _, tc := range []struct {
		field string
		want  any
	}{
		{"authorization_response_iss_parameter_supported", true},
		{"request_parameter_supported", false},
		{"request_uri_parameter_supported", false},
		{"claims_parameter_supported", false},
	} {
		if r.json[tc.field] != tc.want {
			t.Errorf("%s = %v, want %v", tc.field, r.json[tc.field], tc.want)
		}
	}
	has := func(field string, want ...string) {
		list, _ := r.json[field].([]any)
		for _, w := range want {
			if !slices.Contains(list, any(w)) {
				t.Errorf("%s = %v lacks %s", field, list, w)
			}
		}
	}
	has("prompt_values_supported", "none", "login", "consent", "select_account")
	has("claims_supported", "auth_time", "nonce", "sub", "iss")
	if doc, _ := r.json["service_documentation"].(string); !strings.HasPrefix(doc, "https://") {
		t.Errorf("service_documentation = %q", doc)
	}
}

func mustRequest(method, u string) *http.Request {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		panic(err)
	}
	return req
}

// TestIDTokenHint: an id_token_hint (OIDC Core §3.1.2.1) names the user
// the client expects, like login_hint: a session of that user answers
// (even when the hint has expired), a session of another user does not
// (login_required with prompt=none), the form is prefilled with it, and
// anything but an ID token this server signed is invalid_request.
func TestIDTokenHint(t *testing.T) {
	h := newHarness(t)
	cfg := codeSetup(t, h)
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "bob", "password": "bob-pw"}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	secret := h.createClient(map[string]any{"client_id": "pw", "grant_types": []string{"password"}, "scope": "openid",
		"access_token_as_jwt": true, "id_token_lifetime": 60})
	idToken := func(user, pass string) (id, access string) {
		r := h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass},
			"scope": {"openid"}}, "pw", secret)
		tok := h.mustDecodeToken(r)
		if tok.IDToken == "" {
			t.Fatalf("no id_token for %s: %s", user, r.body)
		}
		return tok.IDToken, tok.AccessToken
	}
	aliceHint, aliceAccess := idToken("alice", "alice-pw")
	bobHint, _ := idToken("bob", "bob-pw")
	withSession, _, _ := signedIn(t, h, cfg)
	authURL := func(extra ...string) string { return authURLWith(cfg, extra...) }
	parts := strings.Split(aliceHint, ".")
	tampered := parts[0] + "." + parts[1] + "x." + parts[2]
	for _, tc := range []struct {
		name    string
		session bool
		params  []string
		want    string // code, form, or the error sent back
	}{
		{"hint of the signed-in user", true, []string{"id_token_hint", aliceHint}, "code"},
		{"hint of the signed-in user, prompt=none", true, []string{"id_token_hint", aliceHint, "prompt", "none"}, "code"},
		{"hint of another user", true, []string{"id_token_hint", bobHint}, "form"},
		{"hint of another user, prompt=none", true, []string{"id_token_hint", bobHint, "prompt", "none"}, "login_required"},
		{"login_hint wins over id_token_hint", true, []string{"id_token_hint", bobHint, "login_hint", "alice"}, "code"},
		{"not a JWT", true, []string{"id_token_hint", "alice"}, "invalid_request"},
		{"a tampered ID token", true, []string{"id_token_hint", tampered}, "invalid_request"},
		{"an access token, not an ID token", true, []string{"id_token_hint", aliceAccess}, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := browser()
			if tc.session {
				b = withSession
			}
			o := authorizeWith(t, b, authURL(tc.params...))
			switch tc.want {
			case "form":
				if !o.form {
					t.Fatalf("want the login form, got %d %s", o.status, o)
				}
			case "code":
				if o.code == "" {
					t.Fatalf("want a code, got %d %s", o.status, o)
				}
			default:
				if o.err != tc.want {
					t.Fatalf("want error %s, got %d %s", tc.want, o.status, o)
				}
			}
		})
	}
	t.Run("an expired hint still names its user", func(t *testing.T) {
		h.clock.advance(2 * time.Minute) // past the hint's 60 s, within the session
		defer h.clock.advance(-2 * time.Minute)
		if o := authorizeWith(t, withSession, authURL("id_token_hint", aliceHint, "prompt", "none")); o.code == "" {
			t.Fatalf("want a code, got %s", o)
		}
	})
	t.Run("the form is prefilled with the hint's user", func(t *testing.T) {
		o := authorizeWith(t, browser(), authURL("id_token_hint", bobHint))
		if !o.form || !strings.Contains(o.page, `value="bob"`) {
			t.Fatalf("page %s", o.page)
		}
	})
}
