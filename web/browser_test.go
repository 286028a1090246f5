package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// chromium finds the browser; .ci/run installs Debian's chromium and sets
// KEYHOOK_REQUIRE_BROWSER, so CI fails rather than skips without it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("KEYHOOK_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH, and KEYHOOK_REQUIRE_BROWSER is set")
	}
	t.Skip("no chromium on PATH")
	return ""
}

// TestLoginInRealBrowser drives the login page in headless Chromium: it
// fills the form, lands on a local redirect URI with a code, and the test
// exchanges the code.
func TestLoginInRealBrowser(t *testing.T) {
	ctx := headless(t)
	h := newHarness(t)
	got := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.URL.Query():
		default:
		}
		fmt.Fprint(w, `<!doctype html><p id="done">signed in</p>`)
	}))
	defer cb.Close()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "alice@example.com"}}); r.status != 201 {
		t.Fatalf("user: %d", r.status)
	}
	h.createClient(map[string]any{"client_id": "browser-app", "client_name": "Browser App", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{cb.URL + "/callback"}, "scope": "openid email"})
	cfg := &oauth2.Config{ClientID: "browser-app", RedirectURL: cb.URL + "/callback", Scopes: []string{"openid", "email"},
		Endpoint: oauth2.Endpoint{AuthURL: h.url + "/oauth2/authorize", TokenURL: h.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	verifier := oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL("browser-state", oauth2.S256ChallengeOption(verifier), oidc.Nonce("browser-nonce"))

	step := func(name string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, a); err != nil {
			t.Fatalf("browser, %s: %v", name, err)
		}
	}
	text := func(name string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("browser, %s: %v", name, err)
		}
		return v
	}
	step("open the authorization URL", chromedp.Steps(chromedp.Navigate(authURL), chromedp.WaitVisible(chromedp.ID("username"))))
	title := text("title", chromedp.Title())
	// A wrong password first: the page says so and keeps the form.
	step("wrong password", chromedp.Steps(
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "wrong"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("error"))))
	errText := text("error text", chromedp.Text(chromedp.ID("error")))
	step("right password", chromedp.Steps(
		chromedp.SendKeys(chromedp.ID("password"), "alice-pw"),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(chromedp.ID("done"))))
	landed := text("location", chromedp.Location())
	if !strings.Contains(title, "Sign in") || !strings.Contains(errText, "wrong") {
		t.Fatalf("title %q, error %q", title, errText)
	}
	if !strings.HasPrefix(landed, cb.URL+"/callback?") {
		t.Fatalf("landed on %s", landed)
	}
	q := <-got
	if q.Get("state") != "browser-state" || q.Get("code") == "" {
		t.Fatalf("callback query %v", q)
	}
	tok, err := cfg.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if raw, _ := tok.Extra("id_token").(string); raw == "" {
		t.Fatal("no id_token")
	}
	if in := h.introspect(tok.AccessToken); in["username"] != "alice" || in["active"] != true {
		t.Fatalf("introspection %v", in)
	}
}
