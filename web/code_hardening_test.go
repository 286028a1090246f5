package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"golang.org/x/oauth2"
)

// issueCode signs alice in through the browser flow of cfg and returns
// the code; verifier "" sends no code_challenge.
func issueCode(t *testing.T, cfg *oauth2.Config, verifier string) string {
	t.Helper()
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	resp := login(t, browser(), cfg.AuthCodeURL("s", opts...), "alice", "alice-pw")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d %s", resp.StatusCode, readAll(resp))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// publicCodeTokens runs the code flow for the public client spa of
// codeSetup and returns its tokens.
func publicCodeTokens(t *testing.T, cfg *oauth2.Config) *oauth2.Token {
	t.Helper()
	v := oauth2.GenerateVerifier()
	tok, err := cfg.Exchange(context.Background(), issueCode(t, cfg, v), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func s256(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}
