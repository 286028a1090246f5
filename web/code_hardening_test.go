package web_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
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

// codeClientSetup adds a confidential client "web" and a second
// confidential client "other", both with the code grant, to codeSetup.
func codeClientSetup(t *testing.T, h *harness) (web, other, public *oauth2.Config) {
	t.Helper()
	public = codeSetup(t, h)
	for _, id := range []string{"web", "other"} {
		h.createClient(map[string]any{"client_id": id, "client_secret": id + "-secret",
			"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{"https://" + id + ".example/cb"},
			"scope": "openid api"})
	}
	conf := func(id string) *oauth2.Config {
		return &oauth2.Config{ClientID: id, ClientSecret: id + "-secret", RedirectURL: "https://" + id + ".example/cb", Scopes: []string{"api"},
			Endpoint: oauth2.Endpoint{AuthURL: h.url + "/oauth2/authorize", TokenURL: h.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}}
	}
	return conf("web"), conf("other"), public
}

// redeem posts an authorization_code token request as client id
// (Basic when secret is set, client_id in the form otherwise).
func (h *harness) redeem(id, secret, code, redirectURI, verifier string) *response {
	h.t.Helper()
	vals := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		vals.Set("code_verifier", verifier)
	}
	if secret == "" {
		vals.Set("client_id", id)
		id = ""
	}
	return h.form("/oauth2/token", vals, id, secret)
}

// TestAuthorizationCodePKCEDowngrade checks that PKCE cannot be dropped
// nor added at the token endpoint (RFC 9700 §2.1.1, §4.8.2): a code
// issued with a code_challenge needs its code_verifier, and a code issued
// without one is refused when a code_verifier comes with it.
func TestAuthorizationCodePKCEDowngrade(t *testing.T) {
	h := newHarness(t)
	web, _, _ := codeClientSetup(t, h)
	for _, tc := range []struct {
		name              string
		challenge, verify bool
		wantOK            bool
	}{
		{"challenge and verifier", true, true, true},
		{"neither", false, false, true},
		{"challenge without verifier", true, false, false},
		{"verifier without challenge", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := issueCode(t, web, map[bool]string{true: v}[tc.challenge])
			sent := ""
			if tc.verify {
				sent = v
			}
			r := h.redeem("web", "web-secret", code, web.RedirectURL, sent)
			if tc.wantOK {
				h.mustDecodeToken(r)
				return
			}
			wantError(t, r, 400, "invalid_grant")
		})
	}
}

// TestAuthorizationCodeCheckedBeforeConsumed checks that a redemption
// that fails for the client, the redirect URI or PKCE leaves the code to
// its rightful client: only a successful redemption consumes it
// (RFC 6749 §4.1.3, RFC 9700 §4.5).
func TestAuthorizationCodeCheckedBeforeConsumed(t *testing.T) {
	h := newHarness(t)
	web, _, _ := codeClientSetup(t, h)
	for _, tc := range []struct {
		name    string
		attempt func(code, verifier string) *response
	}{
		{"another confidential client", func(code, v string) *response {
			return h.redeem("other", "other-secret", code, web.RedirectURL, v)
		}},
		{"another client claiming the code's redirect URI", func(code, v string) *response {
			return h.redeem("other", "other-secret", code, "https://other.example/cb", v)
		}},
		{"a public client", func(code, v string) *response { return h.redeem("spa", "", code, spaRedirect, v) }},
		{"wrong redirect_uri", func(code, v string) *response {
			return h.redeem("web", "web-secret", code, "https://other.example/cb", v)
		}},
		{"wrong code_verifier", func(code, v string) *response {
			return h.redeem("web", "web-secret", code, web.RedirectURL, oauth2.GenerateVerifier())
		}},
		{"no code_verifier", func(code, v string) *response { return h.redeem("web", "web-secret", code, web.RedirectURL, "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := issueCode(t, web, v)
			wantError(t, tc.attempt(code, v), 400, "invalid_grant")
			tok := h.mustDecodeToken(h.redeem("web", "web-secret", code, web.RedirectURL, v))
			if in := h.introspect(tok.AccessToken); in["active"] != true {
				t.Fatalf("token of the rightful redemption: %v", in)
			}
		})
	}
	t.Run("another client presenting a used code revokes nothing", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := issueCode(t, web, v)
		tok := h.mustDecodeToken(h.redeem("web", "web-secret", code, web.RedirectURL, v))
		wantError(t, h.redeem("other", "other-secret", code, web.RedirectURL, v), 400, "invalid_grant")
		if in := h.introspect(tok.AccessToken); in["active"] != true {
			t.Fatalf("after another client's attempt: %v", in)
		}
	})
}

// TestAuthorizationCodeReplayRevokes checks that a second redemption of a
// code fails and revokes every token the first one produced and what was
// refreshed from them (RFC 6749 §4.1.2, RFC 9700 §4.5).
func TestAuthorizationCodeReplayRevokes(t *testing.T) {
	h := newHarness(t)
	web, _, public := codeClientSetup(t, h)
	for _, tc := range []struct {
		name          string
		cfg           *oauth2.Config
		secret        string
		replayWrongly bool // replay with a wrong code_verifier
	}{
		{"confidential client", web, "web-secret", false},
		{"public client", public, "", false},
		{"public client, replay with a wrong verifier", public, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := issueCode(t, tc.cfg, v)
			first := h.mustDecodeToken(h.redeem(tc.cfg.ClientID, tc.secret, code, tc.cfg.RedirectURL, v))
			vals := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}
			id, secret := tc.cfg.ClientID, tc.secret
			if secret == "" {
				vals.Set("client_id", id)
				id = ""
			}
			refreshed := h.mustDecodeToken(h.form("/oauth2/token", vals, id, secret))
			replayV := v
			if tc.replayWrongly {
				replayV = oauth2.GenerateVerifier()
			}
			wantError(t, h.redeem(tc.cfg.ClientID, tc.secret, code, tc.cfg.RedirectURL, replayV), 400, "invalid_grant")
			for name, tok := range map[string]string{"access": first.AccessToken, "refresh": first.RefreshToken,
				"refreshed access": refreshed.AccessToken, "refreshed refresh": refreshed.RefreshToken} {
				if in := h.introspect(tok); len(in) != 1 || in["active"] != false {
					t.Errorf("%s token after the replay: %v", name, in)
				}
			}
		})
	}
}

// raceRedeem redeems one code from n goroutines at once, spread over the
// given instances, and returns the 200 answers and the count of 400s.
func raceRedeem(t *testing.T, instances []*harness, cfg *oauth2.Config, code, verifier string, n int) (wins []*tokenResp, rejected int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		h := instances[i%len(instances)]
		wg.Go(func() {
			<-start
			vals := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {cfg.RedirectURL}, "code_verifier": {verifier}}
			req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", stringsReader(vals.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(cfg.ClientID, cfg.ClientSecret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var tr tokenResp
			_ = json.NewDecoder(resp.Body).Decode(&tr)
			mu.Lock()
			defer mu.Unlock()
			switch resp.StatusCode {
			case 200:
				wins = append(wins, &tr)
			case 400:
				rejected++
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	close(start)
	wg.Wait()
	return wins, rejected
}

// TestAuthorizationCodeConcurrentRedemption checks that of concurrent
// redemptions of one code exactly one succeeds, and that the others,
// being replays, revoke what it produced (RFC 6749 §4.1.2), on one
// SQLite instance and on two instances sharing PostgreSQL.
func TestAuthorizationCodeConcurrentRedemption(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instances func(t *testing.T) []*harness
	}{
		{"sqlite", func(t *testing.T) []*harness { return []*harness{newHarness(t)} }},
		{"two instances on postgres", func(t *testing.T) []*harness {
			dsn := pgDSN(t)
			return []*harness{newHarness(t, withDSN(dsn)), newHarness(t, withDSN(dsn))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := tc.instances(t)
			web, _, _ := codeClientSetup(t, hs[0])
			for round := range 3 {
				v := oauth2.GenerateVerifier()
				code := issueCode(t, web, v)
				wins, rejected := raceRedeem(t, hs, web, code, v, 8)
				if len(wins) != 1 || rejected != 7 {
					t.Fatalf("round %d: %d successes and %d invalid_grant, want 1 and 7", round, len(wins), rejected)
				}
				for _, h := range hs {
					for name, tok := range map[string]string{"access": wins[0].AccessToken, "refresh": wins[0].RefreshToken} {
						if in := h.introspect(tok); in["active"] != false {
							t.Errorf("round %d: the winner's %s token is still active: %v", round, name, in)
						}
					}
				}
			}
		})
	}
}
