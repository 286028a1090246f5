package web_test

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestClientSecretAnsweredOnlyOnce checks that a client secret is in the
// answer that creates it (POST /clients, a rotation, a replacement that
// had to generate one) and in no other answer: not when read, listed, or
// replaced with a secret the caller chose (it knows it already).
func TestClientSecretAnsweredOnlyOnce(t *testing.T) {
	h := newHarness(t)
	const chosen = "chosen-secret-0123456789"
	r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "c1", "client_secret": chosen})
	if r.status != http.StatusCreated || r.str("client_secret") != chosen {
		t.Fatalf("create: %d %s, want the secret once", r.status, r.body)
	}
	r = h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "pub", "token_endpoint_auth_method": "none"})
	if r.status != http.StatusCreated || r.json["client_secret"] != nil {
		t.Fatalf("create public client: %d %s", r.status, r.body)
	}
	rotated := ""
	for _, tc := range []struct {
		name, method, path string
		body               map[string]any
		status             int
		// answers is whether this answer carries a (new) secret.
		answers bool
	}{
		{"read", http.MethodGet, "/clients/c1", nil, 200, false},
		{"list", http.MethodGet, "/clients", nil, 200, false},
		{"replace keeping the secret", http.MethodPut, "/clients/c1", map[string]any{"scope": "a"}, 200, false},
		{"replace with a chosen secret", http.MethodPut, "/clients/c1", map[string]any{"client_secret": chosen + "-2", "scope": "a"}, 200, false},
		{"rotate", http.MethodPost, "/clients/c1/secret", nil, 200, true},
		{"read after rotation", http.MethodGet, "/clients/c1", nil, 200, false},
		{"list after rotation", http.MethodGet, "/clients", nil, 200, false},
		{"replace after rotation", http.MethodPut, "/clients/c1", map[string]any{"scope": "a b"}, 200, false},
		{"a public client becomes confidential", http.MethodPut, "/clients/pub", map[string]any{"token_endpoint_auth_method": "client_secret_basic"}, 200, true},
		{"read it", http.MethodGet, "/clients/pub", nil, 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("%s %s: %d %s", tc.method, tc.path, r.status, r.body)
			}
			has := strings.Contains(string(r.body), `"client_secret"`)
			if has != tc.answers {
				t.Fatalf("%s %s answers a secret: %v, want %v: %s", tc.method, tc.path, has, tc.answers, r.body)
			}
			for _, s := range []string{chosen, chosen + "-2", rotated} {
				if s != "" && strings.Contains(string(r.body), s) && !tc.answers {
					t.Fatalf("%s %s answers a secret given before: %s", tc.method, tc.path, r.body)
				}
			}
			if tc.answers && tc.path == "/clients/c1/secret" {
				rotated = r.str("client_secret")
				h.mustToken("c1", rotated, "")
			}
		})
	}
}

// TestNoSecretInAnyLogLine runs a server whose every log line, at debug
// level, goes to one buffer; it creates clients and users with secrets
// and passwords, uses them at every endpoint, right and wrong, and then
// looks for each secret, password and token in that output.
func TestNoSecretInAnyLogLine(t *testing.T) {
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHarness(t, withLogger(log))
	secrets := []string{adminSecret, h.adminToken}
	keep := func(s string) string {
		if s == "" {
			t.Fatal("an empty secret")
		}
		secrets = append(secrets, s)
		return s
	}
	// A script that logs everything it is shown.
	h.createScript(introspectionScript("tell-all", `context.log(JSON.stringify(context)); context.log(JSON.stringify(response)); return true;`, nil))
	basic := keep("basic-secret-c4f1e2d3")
	keep(h.createClient(map[string]any{"client_id": "basic", "client_secret": basic, "scope": "api",
		"grant_types": []string{"client_credentials", "password", "refresh_token"}, "introspection_scripts": []string{"tell-all"}}))
	post := keep("post-secret-9a8b7c6d")
	h.createClient(map[string]any{"client_id": "post", "client_secret": post, "token_endpoint_auth_method": "client_secret_post", "scope": "api"})
	generated := keep(h.createClient(map[string]any{"client_id": "generated", "scope": "api"}))
	rotated := keep(h.admin(http.MethodPost, "/clients/generated/secret", nil).str("client_secret"))
	replaced := keep("replaced-secret-5e6f7a8b")
	h.admin(http.MethodPut, "/clients/basic", map[string]any{"client_secret": replaced, "scope": "api",
		"grant_types": []string{"client_credentials", "password", "refresh_token"}, "introspection_scripts": []string{"tell-all"}})
	password := keep("carol-password-7f3e9c1b")
	h.admin(http.MethodPost, "/users", map[string]any{"username": "carol", "password": password})
	newPassword := keep("carol-new-password-2d4c6e8a")
	h.admin(http.MethodPut, "/users/carol", map[string]any{"password": newPassword})
	wrong := keep("wrong-secret-0f1e2d3c")
	wrongPassword := keep("wrong-password-8b9a0c1d")

	tok := h.mustToken("basic", replaced, "")
	keep(tok.AccessToken)
	pw := h.mustDecodeToken(h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"carol"},
		"password": {newPassword}, "scope": {"api"}}, "basic", replaced))
	keep(pw.AccessToken)
	keep(pw.RefreshToken)
	h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"carol"}, "password": {wrongPassword}}, "basic", replaced)
	h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {pw.RefreshToken}}, "basic", replaced)
	h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "basic", wrong)
	h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"post"}, "client_secret": {post}}, "", "")
	h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"post"}, "client_secret": {wrong}}, "", "")
	h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "generated", rotated)
	h.form("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "generated", generated)
	h.form("/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "post", post)
	h.form("/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "post", wrong)
	h.formBearer("/oauth2/introspect", url.Values{"token": {pw.AccessToken}}, tok.AccessToken)
	h.form("/oauth2/revoke", url.Values{"token": {pw.AccessToken}}, "basic", replaced)
	h.adminAs(wrong, http.MethodGet, "/clients", nil)
	req, _ := http.NewRequest(http.MethodGet, h.url+"/oauth2/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	h.do(req)

	// The login page, with a wrong and then the right password.
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "bob", "password": keep("bob-password-3c5e7a9b")}); r.status != 201 {
		t.Fatalf("user bob: %d %s", r.status, r.body)
	}
	cfg := codeSetup(t, h)
	authURL := cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	readAll(login(t, browser(), authURL, "bob", wrongPassword))
	readAll(login(t, browser(), authURL, "alice", keep("alice-pw")))
	readAll(login(t, browser(), authURL, "bob", "bob-password-3c5e7a9b"))

	logs := out.String()
	if !strings.Contains(logs, "tell-all") || !strings.Contains(logs, "request") {
		t.Fatalf("the test captured no log lines:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) is in the log:\n%s", s, logs)
		}
		if e := url.QueryEscape(s); e != s && strings.Contains(logs, e) {
			t.Errorf("a secret (%.6s…), escaped, is in the log", s)
		}
	}
}
