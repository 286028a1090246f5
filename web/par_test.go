package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/keyhook/keyhook/engine"
)

const (
	webRedirect  = "http://127.0.0.1:9/web-callback"
	webRedirect2 = "http://127.0.0.1:9/web-other"
	webSecret    = "web-secret"
	parPath      = "/oauth2/par"
	badURIText   = "request_uri is unknown, expired or already used"
)

// parSetup registers alice, the public app spa (codeSetup) and a
// confidential web app that authenticates with client_secret_basic.
func parSetup(t *testing.T, h *harness) (spa, web *oauth2.Config) {
	t.Helper()
	spa = codeSetup(t, h)
	h.createClient(map[string]any{"client_id": "web", "client_secret": webSecret, "client_name": "Web App",
		"token_endpoint_auth_method": "client_secret_basic", "grant_types": []string{"authorization_code"},
		"redirect_uris": []string{webRedirect, webRedirect2}, "scope": "openid email api"})
	web = &oauth2.Config{ClientID: "web", ClientSecret: webSecret, RedirectURL: webRedirect,
		Endpoint: oauth2.Endpoint{AuthURL: h.url + "/oauth2/authorize", TokenURL: h.url + "/oauth2/token",
			AuthStyle: oauth2.AuthStyleInHeader}}
	return spa, web
}

// webPush pushes an authorization request of the web app.
func webPush(h *harness, extra url.Values) *response {
	h.t.Helper()
	vals := url.Values{"response_type": {"code"}, "redirect_uri": {webRedirect}, "scope": {"openid email"},
		"state": {"pushed-state"}, "nonce": {"pushed-nonce"}}
	for k, v := range extra {
		vals[k] = v
	}
	return h.form(parPath, vals, "web", webSecret)
}

// mustPush checks a 201 answer of RFC 9126 §2.2 and returns its request_uri.
func mustPush(t *testing.T, r *response) string {
	t.Helper()
	if r.status != http.StatusCreated {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	uri := r.str("request_uri")
	rnd := strings.TrimPrefix(uri, engine.RequestURIPrefix)
	// 256 random bits, base64url: at least the 128 RFC 9126 §7.1 asks.
	if rnd == uri || len(rnd) < 43 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("push answer %s %v", r.body, r.header)
	}
	if n, _ := r.json["expires_in"].(float64); n <= 0 {
		t.Fatalf("expires_in %v", r.json["expires_in"])
	}
	return uri
}

// authorizeURL is the authorization URL of a pushed request, with extra
// parameters that RFC 9126 §4 says the server ignores.
func authorizeURL(h *harness, clientID, requestURI string, extra url.Values) string {
	q := url.Values{"client_id": {clientID}, "request_uri": {requestURI}}
	for k, v := range extra {
		q[k] = v
	}
	return h.url + "/oauth2/authorize?" + q.Encode()
}

// codeFrom checks a redirect to redirect and returns its query.
func codeFrom(t *testing.T, resp *http.Response, redirect string) url.Values {
	t.Helper()
	body := readAll(resp)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || !strings.HasPrefix(loc.String(), redirect+"?") {
		t.Fatalf("want a redirect to %s, got %d %s %s", redirect, resp.StatusCode, loc, body)
	}
	return loc.Query()
}

// wantBadRequestURI checks the error page of a request_uri that cannot be used.
func wantBadRequestURI(t *testing.T, resp *http.Response) {
	t.Helper()
	body := readAll(resp)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, badURIText) {
		t.Fatalf("want the invalid request_uri page, got %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// formOf loads an authorization URL and returns the login form's fields.
func formOf(t *testing.T, c *http.Client, authURL string) url.Values {
	t.Helper()
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize page: %d %s", resp.StatusCode, page)
	}
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	form.Set("username", "alice")
	form.Set("password", "alice-pw")
	return form
}

func postLogin(t *testing.T, c *http.Client, h *harness, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(h.url+"/oauth2/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestPARConfidentialFlow: a client_secret_basic client pushes its
// request, the browser carries only client_id and request_uri, the
// pushed parameters win over any sent along, the code is exchanged with
// golang.org/x/oauth2, and the request_uri then answers nothing more.
func TestPARConfidentialFlow(t *testing.T) {
	h := newHarness(t)
	_, web := parSetup(t, h)
	ctx := context.Background()
	uri := mustPush(t, webPush(h, nil))

	// Parameters on the URL besides client_id and request_uri are
	// ignored (RFC 9126 §4): another registered redirect, state, scope.
	authURL := authorizeURL(h, "web", uri, url.Values{"redirect_uri": {webRedirect2}, "state": {"url-state"},
		"scope": {"api"}, "response_type": {"token"}})
	c := browser()
	form := formOf(t, c, authURL)
	if len(form) != 5 || form.Get("request_uri") != uri || form.Get("client_id") != "web" || form.Get("csrf_token") == "" {
		t.Fatalf("the login form carries %v; want client_id, request_uri and the CSRF token only", form)
	}
	q := codeFrom(t, postLogin(t, c, h, form), webRedirect)
	if q.Get("state") != "pushed-state" || q.Get("iss") != h.url {
		t.Fatalf("redirect query %v", q)
	}
	tok, err := web.Exchange(ctx, q.Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.Extra("scope") != "openid email" || tok.Extra("id_token") == nil {
		t.Fatalf("token scope %v, id_token %v", tok.Extra("scope"), tok.Extra("id_token") != nil)
	}
	var idClaims map[string]any
	parts := strings.Split(tok.Extra("id_token").(string), ".")
	if err := json.Unmarshal(mustB64(t, parts[1]), &idClaims); err != nil || idClaims["nonce"] != "pushed-nonce" {
		t.Fatalf("id_token claims %v %v", idClaims, err)
	}

	t.Run("replayed request_uri", func(t *testing.T) {
		// A new browser, and the same browser with its form again.
		resp, err := browser().Get(authURL)
		if err != nil {
			t.Fatal(err)
		}
		wantBadRequestURI(t, resp)
		wantBadRequestURI(t, postLogin(t, c, h, form))
	})
	t.Run("with a login session, replay still fails", func(t *testing.T) {
		resp, err := c.Get(authURL) // c holds alice's session now
		if err != nil {
			t.Fatal(err)
		}
		wantBadRequestURI(t, resp)
	})
	t.Run("a session answers a fresh pushed request at once, once", func(t *testing.T) {
		u := mustPush(t, webPush(h, nil))
		resp, err := c.Get(authorizeURL(h, "web", u, nil))
		if err != nil {
			t.Fatal(err)
		}
		codeFrom(t, resp, webRedirect)
		resp, err = c.Get(authorizeURL(h, "web", u, nil))
		if err != nil {
			t.Fatal(err)
		}
		wantBadRequestURI(t, resp)
	})
	t.Run("the wrong password keeps the request usable", func(t *testing.T) {
		u := mustPush(t, webPush(h, nil))
		b := browser()
		f := formOf(t, b, authorizeURL(h, "web", u, nil))
		f.Set("password", "wrong")
		resp := postLogin(t, b, h, f)
		body := readAll(resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `name="request_uri"`) ||
			strings.Contains(body, `name="redirect_uri"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		f.Set("password", "alice-pw")
		codeFrom(t, postLogin(t, b, h, f), webRedirect)
	})
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPARPublicClientWithPKCE: a public client pushes with its client_id
// alone and must send a PKCE challenge; the verifier redeems the code.
func TestPARPublicClientWithPKCE(t *testing.T) {
	h := newHarness(t)
	spa, _ := parSetup(t, h)
	verifier := oauth2.GenerateVerifier()
	push := url.Values{"client_id": {"spa"}, "response_type": {"code"}, "redirect_uri": {spaRedirect}, "scope": {"openid api"},
		"state": {"s1"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"}}
	uri := mustPush(t, h.form(parPath, push, "", ""))
	c := browser()
	q := codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "spa", uri, nil))), spaRedirect)
	tok, err := spa.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil || tok.Extra("scope") != "openid api" {
		t.Fatalf("exchange: %v %v", err, tok)
	}

	t.Run("no PKCE", func(t *testing.T) {
		p := cloneVals(push)
		p.Del("code_challenge")
		p.Del("code_challenge_method")
		wantError(t, h.form(parPath, p, "", ""), http.StatusBadRequest, "invalid_request")
	})
	t.Run("Basic with an empty password is the none method", func(t *testing.T) {
		p := cloneVals(push)
		p.Del("client_id")
		mustPush(t, h.form(parPath, p, "spa", ""))
	})
}

// TestPARRequestURIRules: expiry, another client's request_uri, made-up
// ones and foreign URIs at the authorization endpoint.
func TestPARRequestURIRules(t *testing.T) {
	h := newHarness(t)
	parSetup(t, h)
	get := func(u string) *http.Response {
		t.Helper()
		resp, err := browser().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	t.Run("expired before first use", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		h.clock.advance(61 * time.Second)
		defer h.clock.advance(-61 * time.Second)
		wantBadRequestURI(t, get(authorizeURL(h, "web", uri, nil)))
	})
	t.Run("the sign-in window once the form is shown", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		c := browser()
		form := formOf(t, c, authorizeURL(h, "web", uri, nil))
		// Past the 60 s lifetime, within the sign-in window.
		h.clock.advance(5 * time.Minute)
		defer h.clock.advance(-5 * time.Minute)
		codeFrom(t, postLogin(t, c, h, form), webRedirect)
	})
	t.Run("the sign-in window ends", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		c := browser()
		form := formOf(t, c, authorizeURL(h, "web", uri, nil))
		h.clock.advance(engine.PushedSignInWindow + time.Second)
		defer h.clock.advance(-engine.PushedSignInWindow - time.Second)
		wantBadRequestURI(t, postLogin(t, c, h, form))
	})
	t.Run("reloading does not extend the window", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		formOf(t, browser(), authorizeURL(h, "web", uri, nil))
		h.clock.advance(engine.PushedSignInWindow - time.Minute)
		formOf(t, browser(), authorizeURL(h, "web", uri, nil)) // still within
		h.clock.advance(2 * time.Minute)
		defer h.clock.advance(-engine.PushedSignInWindow - time.Minute)
		wantBadRequestURI(t, get(authorizeURL(h, "web", uri, nil)))
	})
	t.Run("another client's request_uri", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		wantBadRequestURI(t, get(authorizeURL(h, "spa", uri, nil)))
		// Untouched for its own client.
		c := browser()
		codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "web", uri, nil))), webRedirect)
	})
	t.Run("made-up request_uri", func(t *testing.T) {
		wantBadRequestURI(t, get(authorizeURL(h, "web", engine.RequestURIPrefix+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil)))
	})
	t.Run("without client_id", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		resp := get(h.url + "/oauth2/authorize?" + url.Values{"request_uri": {uri}}.Encode())
		body := readAll(resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "client_id is missing") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("a request_uri by reference is still not supported", func(t *testing.T) {
		resp := get(h.url + "/oauth2/authorize?" + url.Values{"client_id": {"web"}, "response_type": {"code"},
			"redirect_uri": {webRedirect}, "state": {"x"}, "request_uri": {"https://web.example/req.jwt"}}.Encode())
		q := codeFrom(t, resp, webRedirect)
		if q.Get("error") != "request_uri_not_supported" || q.Get("state") != "x" {
			t.Fatalf("%v", q)
		}
	})
	t.Run("concurrent sign-ins on one request_uri: one code", func(t *testing.T) {
		uri := mustPush(t, webPush(h, nil))
		const n = 4
		clients := make([]*http.Client, n)
		forms := make([]url.Values, n)
		for i := range n {
			clients[i] = browser()
			forms[i] = formOf(t, clients[i], authorizeURL(h, "web", uri, nil))
		}
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, err := clients[i].PostForm(h.url+"/oauth2/authorize", forms[i])
				if err == nil {
					codes[i] = resp.StatusCode
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		won := 0
		for _, c := range codes {
			switch c {
			case http.StatusSeeOther:
				won++
			case http.StatusBadRequest:
			default:
				t.Errorf("status %d", c)
			}
		}
		if won != 1 {
			t.Fatalf("%d sign-ins got a code, want 1 (%v)", won, codes)
		}
	})
	t.Run("deleting the client deletes its pushed requests", func(t *testing.T) {
		h.createClient(map[string]any{"client_id": "gone", "client_secret": "s", "grant_types": []string{"authorization_code"},
			"redirect_uris": []string{webRedirect}})
		mustPush(t, h.form(parPath, url.Values{"response_type": {"code"}}, "gone", "s"))
		ctx := context.Background()
		if n, _ := h.store.CountPushedRequests(ctx, "gone", time.Time{}); n != 1 {
			t.Fatalf("%d pushed requests", n)
		}
		if r := h.admin(http.MethodDelete, "/clients/gone", nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if n, _ := h.store.CountPushedRequests(ctx, "gone", time.Time{}); n != 0 {
			t.Fatalf("%d pushed requests left", n)
		}
	})
}

// TestPAREndpointErrors: the endpoint answers as the token endpoint does
// for client authentication, and as the authorization endpoint would for
// the request, but as JSON (RFC 9126 §2.3).
func TestPAREndpointErrors(t *testing.T) {
	h := newHarness(t)
	parSetup(t, h)
	h.createClient(map[string]any{"client_id": "post", "client_secret": "post-secret",
		"token_endpoint_auth_method": "client_secret_post", "grant_types": []string{"authorization_code"},
		"redirect_uris": []string{webRedirect}})
	good := url.Values{"response_type": {"code"}, "redirect_uri": {webRedirect}, "state": {"s"}}

	t.Run("client authentication", func(t *testing.T) {
		for _, tc := range []struct {
			name, id, secret string
			body             url.Values
			status           int
			code             string
			challenge        bool
		}{
			{"wrong Basic secret", "web", "nope", nil, 401, "invalid_client", true},
			{"unknown Basic client", "nobody", "nope", nil, 401, "invalid_client", true},
			{"no authentication", "", "", url.Values{"client_id": {"web"}}, 400, "invalid_client", false},
			{"nothing at all", "", "", nil, 400, "invalid_client", false},
			{"wrong secret in the body", "", "", url.Values{"client_id": {"post"}, "client_secret": {"nope"}}, 400, "invalid_client", false},
			{"two methods", "web", webSecret, url.Values{"client_secret": {webSecret}}, 400, "invalid_request", false},
			{"client_id of another client", "web", webSecret, url.Values{"client_id": {"spa"}}, 400, "invalid_request", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				vals := cloneVals(good)
				for k, v := range tc.body {
					vals[k] = v
				}
				r := h.form(parPath, vals, tc.id, tc.secret)
				wantError(t, r, tc.status, tc.code)
				if got := r.header.Get("WWW-Authenticate") != ""; got != tc.challenge {
					t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
				}
			})
		}
		vals := cloneVals(good)
		vals.Set("client_id", "post")
		vals.Set("client_secret", "post-secret")
		mustPush(t, h.form(parPath, vals, "", ""))
	})

	t.Run("authorization parameters", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			set  url.Values
			del  string
			code string
		}{
			{"response_type token", url.Values{"response_type": {"token"}}, "", "unsupported_response_type"},
			{"no response_type", nil, "response_type", "unsupported_response_type"},
			{"redirect_uri not registered", url.Values{"redirect_uri": {"http://127.0.0.1:9/evil"}}, "", "invalid_request"},
			{"redirect_uri missing with two registered", nil, "redirect_uri", "invalid_request"},
			{"scope not allowed", url.Values{"scope": {"openid admin"}}, "", "invalid_scope"},
			{"plain PKCE", url.Values{"code_challenge": {"abc"}, "code_challenge_method": {"plain"}}, "", "invalid_request"},
			{"short code_challenge", url.Values{"code_challenge": {"abc"}, "code_challenge_method": {"S256"}}, "", "invalid_request"},
			{"unknown prompt", url.Values{"prompt": {"dance"}}, "", "invalid_request"},
			{"prompt none with login", url.Values{"prompt": {"none login"}}, "", "invalid_request"},
			{"negative max_age", url.Values{"max_age": {"-1"}}, "", "invalid_request"},
			{"foreign id_token_hint", url.Values{"id_token_hint": {"a.b.c"}}, "", "invalid_request"},
			{"request object", url.Values{"request": {"eyJhbGciOiJub25lIn0.e30."}}, "", "request_not_supported"},
			{"request_uri pushed", url.Values{"request_uri": {engine.RequestURIPrefix + "x"}}, "", "invalid_request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				vals := cloneVals(good)
				for k, v := range tc.set {
					vals[k] = v
				}
				if tc.del != "" {
					vals.Del(tc.del)
				}
				r := h.form(parPath, vals, "web", webSecret)
				wantError(t, r, http.StatusBadRequest, tc.code)
				if r.header.Get("Location") != "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Fatalf("%v", r.header)
				}
			})
		}
		t.Run("a client without the authorization_code grant", func(t *testing.T) {
			h.createClient(map[string]any{"client_id": "cc", "client_secret": "cc-secret", "redirect_uris": []string{webRedirect}})
			wantError(t, h.form(parPath, good, "cc", "cc-secret"), http.StatusBadRequest, "unauthorized_client")
		})
	})

	t.Run("transport", func(t *testing.T) {
		r := h.form(parPath, url.Values{"response_type": {"code"}, "state": {strings.Repeat("x", 70<<10)}}, "web", webSecret)
		wantError(t, r, http.StatusRequestEntityTooLarge, "invalid_request")

		req, _ := http.NewRequest(http.MethodPost, h.url+parPath, strings.NewReader(`{"response_type":"code"}`))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("web", webSecret)
		wantError(t, h.do(req), http.StatusBadRequest, "invalid_request")

		req, _ = http.NewRequest(http.MethodPost, h.url+parPath, strings.NewReader("response_type=code&state=a&state=b"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("web", webSecret)
		wantError(t, h.do(req), http.StatusBadRequest, "invalid_request")

		if r := h.do(mustGet(h.url + parPath + "?response_type=code")); r.status != http.StatusMethodNotAllowed {
			t.Fatalf("GET: %d %s", r.status, r.body)
		}
	})
}

// TestPARThrottledLikeTheTokenEndpoint: failed authentications at the
// pushed authorization request endpoint count in the same throttle as
// the token endpoint's (docs/auth-limits.md).
func TestPARThrottledLikeTheTokenEndpoint(t *testing.T) {
	h := newHarness(t, withThrottles())
	parSetup(t, h)
	vals := url.Values{"response_type": {"code"}, "redirect_uri": {webRedirect}}
	throttled := false
	for range 30 {
		r := h.form(parPath, vals, "web", "wrong")
		if r.status == http.StatusTooManyRequests {
			throttled = true
			if r.header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			break
		}
		wantError(t, r, http.StatusUnauthorized, "invalid_client")
	}
	if !throttled {
		t.Fatal("30 failed authentications were never throttled")
	}
	// The same client at the token endpoint is throttled too.
	r := h.form("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, "web", webSecret)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("token endpoint: %d %s", r.status, r.body)
	}
}

// TestPARRequired: the client metadata and the server flag (RFC 9126
// §5, §6) refuse authorization requests that were not pushed.
func TestPARRequired(t *testing.T) {
	plainURL := func(h *harness) string {
		return h.url + "/oauth2/authorize?" + url.Values{"client_id": {"web"}, "response_type": {"code"},
			"redirect_uri": {webRedirect}, "state": {"st"}}.Encode()
	}
	plain := func(t *testing.T, h *harness) url.Values {
		t.Helper()
		resp, err := browser().Get(plainURL(h))
		if err != nil {
			t.Fatal(err)
		}
		return codeFrom(t, resp, webRedirect)
	}
	t.Run("per client", func(t *testing.T) {
		h := newHarness(t)
		parSetup(t, h)
		formOf(t, browser(), plainURL(h)) // not required yet: the login form
		r := h.admin(http.MethodPatch, "/clients/web", map[string]any{"require_pushed_authorization_requests": true})
		if r.status != http.StatusOK || r.json["require_pushed_authorization_requests"] != true {
			t.Fatalf("patch: %d %s", r.status, r.body)
		}
		if r := h.admin(http.MethodGet, "/clients/spa", nil); r.json["require_pushed_authorization_requests"] != false {
			t.Fatalf("spa: %s", r.body)
		}
		if q := plain(t, h); q.Get("error") != "invalid_request" || q.Get("state") != "st" || q.Get("code") != "" {
			t.Fatalf("%v", q)
		}
		c := browser()
		codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "web", mustPush(t, webPush(h, nil)), nil))), webRedirect)
		// Another client is not concerned.
		resp := login(t, browser(), h.url+"/oauth2/authorize?"+url.Values{"client_id": {"spa"}, "response_type": {"code"},
			"redirect_uri": {spaRedirect}, "code_challenge": {oauth2.S256ChallengeFromVerifier("v")},
			"code_challenge_method": {"S256"}}.Encode(), "alice", "alice-pw")
		if codeFrom(t, resp, spaRedirect).Get("code") == "" {
			t.Fatal("spa got no code")
		}
		if r := h.do(mustGet(h.url + "/.well-known/openid-configuration")); r.json["require_pushed_authorization_requests"] != false {
			t.Fatalf("discovery: %v", r.json["require_pushed_authorization_requests"])
		}
	})
	t.Run("server-wide", func(t *testing.T) {
		h := newHarness(t, withEngine(func(c *engine.Config) { c.RequirePushedAuthorizationRequests = true }))
		parSetup(t, h)
		if q := plain(t, h); q.Get("error") != "invalid_request" {
			t.Fatalf("%v", q)
		}
		c := browser()
		codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "web", mustPush(t, webPush(h, nil)), nil))), webRedirect)
		if r := h.do(mustGet(h.url + "/.well-known/openid-configuration")); r.json["require_pushed_authorization_requests"] != true {
			t.Fatalf("discovery: %v", r.json["require_pushed_authorization_requests"])
		}
	})
}

// TestPARBounded: a client holds at most MaxPushedRequestsPerClient
// unexpired requests (429 beyond, RFC 9126 §2.3), and expired ones are
// purged.
func TestPARBounded(t *testing.T) {
	h := newHarness(t, withEngine(func(c *engine.Config) {
		c.MaxPushedRequestsPerClient = 3
		c.PushedRequestLifetime = 30 * time.Second
	}))
	parSetup(t, h)
	ctx := context.Background()
	for range 3 {
		if r := webPush(h, nil); r.json["expires_in"] != float64(30) {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	r := webPush(h, nil)
	wantError(t, r, http.StatusTooManyRequests, "slow_down")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// Another client has its own allowance.
	mustPush(t, h.form(parPath, url.Values{"client_id": {"spa"}, "response_type": {"code"},
		"code_challenge": {oauth2.S256ChallengeFromVerifier("v")}, "code_challenge_method": {"S256"}}, "", ""))

	h.clock.advance(31 * time.Second)
	defer h.clock.advance(-31 * time.Second)
	mustPush(t, webPush(h, nil))
	h.eng.Purge(ctx)
	if n, err := h.store.CountPushedRequests(ctx, "web", time.Time{}); err != nil || n != 1 {
		t.Fatalf("after purge %d rows (%v), want the 1 unexpired", n, err)
	}
	if n, _ := h.store.CountPushedRequests(ctx, "spa", time.Time{}); n != 0 {
		t.Fatalf("spa: %d rows after purge", n)
	}
}

// TestPARDiscoveryAndCORS: the endpoint is advertised (RFC 9126 §5);
// request_uri_parameter_supported stays false, since no request_uri is
// fetched by reference; a browser app's origin gets CORS, as at the
// token endpoint.
func TestPARDiscoveryAndCORS(t *testing.T) {
	h := newHarness(t)
	parSetup(t, h)
	for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		r := h.do(mustGet(h.url + p))
		if r.str("pushed_authorization_request_endpoint") != h.url+parPath || r.json["require_pushed_authorization_requests"] != false ||
			r.json["request_uri_parameter_supported"] != false || r.json["request_parameter_supported"] != false {
			t.Fatalf("%s: %s", p, r.body)
		}
	}
	h.admin(http.MethodPatch, "/clients/spa", map[string]any{"allowed_cors_origins": []string{"https://spa.example"}})
	if err := h.eng.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodOptions, h.url+parPath, nil)
	req.Header.Set("Origin", "https://spa.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	r := h.do(req)
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "https://spa.example" ||
		r.header.Get("Access-Control-Allow-Methods") != "POST" {
		t.Fatalf("preflight: %d %v", r.status, r.header)
	}
	req, _ = http.NewRequest(http.MethodPost, h.url+parPath, strings.NewReader(url.Values{"client_id": {"spa"},
		"response_type": {"code"}, "code_challenge": {oauth2.S256ChallengeFromVerifier("v")}, "code_challenge_method": {"S256"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://spa.example")
	r = h.do(req)
	mustPush(t, r)
	if r.header.Get("Access-Control-Allow-Origin") != "https://spa.example" {
		t.Fatalf("no CORS on the answer: %v", r.header)
	}
	req.Header.Set("Origin", "https://evil.example")
	req, _ = http.NewRequest(http.MethodOptions, h.url+parPath, nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	if r := h.do(req); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS for an unknown origin: %v", r.header)
	}
}

// TestPARAcrossInstancesOnPostgres: a request pushed to one instance is
// used at another, once.
func TestPARAcrossInstancesOnPostgres(t *testing.T) {
	dsn := pgDSN(t)
	a := newHarness(t, withDSN(dsn))
	b := newHarness(t, withDSN(dsn))
	_, web := parSetup(t, a)
	uri := mustPush(t, webPush(a, nil))
	c := browser()
	q := codeFrom(t, postLogin(t, c, b, formOf(t, c, authorizeURL(b, "web", uri, nil))), webRedirect)
	if q.Get("state") != "pushed-state" {
		t.Fatalf("%v", q)
	}
	web.Endpoint.TokenURL = b.url + "/oauth2/token"
	if _, err := web.Exchange(context.Background(), q.Get("code")); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	resp, err := browser().Get(authorizeURL(a, "web", uri, nil))
	if err != nil {
		t.Fatal(err)
	}
	wantBadRequestURI(t, resp)
}

// TestPARWithPrivateKeyJWT: a private_key_jwt client pushes with an
// assertion whose aud is the issuer, the token endpoint or the PAR
// endpoint (RFC 9126 §2); a jti is used once, here as anywhere.
func TestPARWithPrivateKeyJWT(t *testing.T) {
	h := newHarness(t)
	parSetup(t, h)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.createClient(map[string]any{"client_id": "pkjwt", "token_endpoint_auth_method": "private_key_jwt",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{webRedirect},
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Use: "sig"}}}})
	req := url.Values{"response_type": {"code"}, "state": {"pk"}}
	for _, aud := range []string{h.url, h.url + "/oauth2/token", h.url + parPath} {
		a := signAssertion(t, key, jose.ES256, "k", assertionClaims("pkjwt", aud))
		uri := mustPush(t, h.form(parPath, assertionValues(a, req), "", ""))
		if aud == h.url+parPath {
			c := browser()
			if q := codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "pkjwt", uri, nil))), webRedirect); q.Get("state") != "pk" {
				t.Fatalf("%v", q)
			}
		}
		wantError(t, h.form(parPath, assertionValues(a, req), "", ""), http.StatusBadRequest, "invalid_client") // jti replayed
	}
	a := signAssertion(t, key, jose.ES256, "k", assertionClaims("pkjwt", h.url+"/oauth2/authorize"))
	wantError(t, h.form(parPath, assertionValues(a, req), "", ""), http.StatusBadRequest, "invalid_client")
}

// TestPARKeepsResources: the resource indicators of a pushed request
// (RFC 8707, repeated) are the request's when the browser comes with its
// request_uri: the token is for those, whatever the URL says, and a
// resource the client may not ask for is refused at the push.
func TestPARKeepsResources(t *testing.T) {
	h := newHarness(t)
	_, web := parSetup(t, h)
	const api, files = "https://api.example.com", "https://files.example.com"
	if r := h.admin(http.MethodPatch, "/clients/web", map[string]any{"allowed_resources": []string{api, files}, "access_token_as_jwt": true}); r.status != http.StatusOK {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if r := webPush(h, url.Values{"resource": {"https://elsewhere.example.com"}}); r.status != http.StatusBadRequest || r.str("error") != "invalid_target" {
		t.Fatalf("push of a resource not allowed: %d %s", r.status, r.body)
	}
	uri := mustPush(t, webPush(h, url.Values{"resource": {api, files}}))
	c := browser()
	form := formOf(t, c, authorizeURL(h, "web", uri, url.Values{"resource": {"https://elsewhere.example.com"}}))
	q := codeFrom(t, postLogin(t, c, h, form), webRedirect)
	tok, err := web.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	var claims map[string]any
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %s", tok.AccessToken)
	}
	if err := json.Unmarshal(mustB64(t, parts[1]), &claims); err != nil {
		t.Fatal(err)
	}
	aud, _ := json.Marshal(claims["aud"])
	if string(aud) != `["https://api.example.com","https://files.example.com"]` {
		t.Fatalf("aud %s, want the two pushed resources", aud)
	}
}
