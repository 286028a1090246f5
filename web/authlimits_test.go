package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// logEvents are the JSON log records in s with message msg.
func logEvents(s *syncBuffer, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(s.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// attemptAnswer is what a client sees of one authentication attempt.
type attemptAnswer struct {
	status     int
	retryAfter string
	answer     string // the JSON body, or the login page's error text
}

var loginError = regexp.MustCompile(`<p class="error" id="error">([^<]*)</p>`)

// signInPaths are the two ways to present a password: the password grant
// and the login form of the authorization-code flow.
var signInPaths = []struct {
	name   string
	failed int // status of a wrong password
	try    func(t *testing.T, h *harness, user, pass string, hdr http.Header) attemptAnswer
}{
	{"password grant", http.StatusBadRequest, func(t *testing.T, h *harness, user, pass string, hdr http.Header) attemptAnswer {
		vals := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}}
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "app-secret")
		for k, v := range hdr {
			req.Header[k] = v
		}
		r := h.do(req)
		return attemptAnswer{r.status, r.header.Get("Retry-After"), string(r.body)}
	}},
	{"login form", http.StatusUnauthorized, func(t *testing.T, h *harness, user, pass string, hdr http.Header) attemptAnswer {
		c := browser()
		authURL := h.url + "/oauth2/authorize?" + url.Values{"response_type": {"code"}, "client_id": {"spa"},
			"redirect_uri": {spaRedirect}, "code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}.Encode()
		resp, err := c.Get(authURL)
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{}
		for _, m := range hiddenField.FindAllStringSubmatch(readAll(resp), -1) {
			form.Set(m[1], html.UnescapeString(m[2]))
		}
		form.Set("username", user)
		form.Set("password", pass)
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/authorize", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header[k] = v
		}
		if resp, err = c.Do(req); err != nil {
			t.Fatal(err)
		}
		a := attemptAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
		if m := loginError.FindStringSubmatch(readAll(resp)); m != nil {
			a.answer = m[1]
		}
		return a
	}},
}

// signInSetup: alice, a confidential client with the password grant and
// a public one with the code flow.
func signInSetup(t *testing.T, h *harness) {
	t.Helper()
	passwordSetup(t, h)
	h.createClient(map[string]any{"client_id": "spa", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{spaRedirect}, "scope": "openid api"})
}

// TestSignInThrottle drives password guessing at both sign-in paths: past
// 5 failures a username is locked out for 1 s, then 2 s, ... (even the
// right password gets 429 with Retry-After), an unknown username gets the
// same answers, and an address is locked out after 20 failures whatever
// the usernames, X-Forwarded-For notwithstanding (docs/auth-limits.md).
func TestSignInThrottle(t *testing.T) {
	for _, p := range signInPaths {
		t.Run(p.name, func(t *testing.T) {
			h := newHarness(t, withThrottles())
			h.clock.freeze() // lock-outs end only when the test advances the clock
			signInSetup(t, h)
			try := func(user, pass string, hdr http.Header) attemptAnswer { return p.try(t, h, user, pass, hdr) }
			wantThrottled := func(t *testing.T, a attemptAnswer, retry string) {
				t.Helper()
				if a.status != http.StatusTooManyRequests || a.retryAfter != retry {
					t.Fatalf("want 429 with Retry-After %s, got %d %q %s", retry, a.status, a.retryAfter, a.answer)
				}
			}
			failures := 0 // from this test's address
			t.Run("known and unknown usernames alike", func(t *testing.T) {
				var answers []attemptAnswer
				for _, user := range []string{"alice", "mallory"} {
					for i := 0; i < 6; i++ {
						if a := try(user, "guess", nil); a.status != p.failed {
							t.Fatalf("%s failure %d: %+v", user, i+1, a)
						}
						failures++
					}
					a := try(user, "alice-pw", nil) // right for alice, and refused unchecked
					wantThrottled(t, a, "1")
					answers = append(answers, a)
				}
				if answers[0] != answers[1] {
					t.Fatalf("a known and an unknown user are told apart: %+v vs %+v", answers[0], answers[1])
				}
			})
			t.Run("back-off doubles, then the right password works", func(t *testing.T) {
				h.clock.advance(time.Second)
				if a := try("alice", "guess", nil); a.status != p.failed {
					t.Fatalf("after the lock-out: %+v", a)
				}
				failures++
				wantThrottled(t, try("alice", "alice-pw", nil), "2")
				h.clock.advance(time.Second)
				wantThrottled(t, try("alice", "alice-pw", nil), "1")
				h.clock.advance(time.Second)
				if a := try("alice", "alice-pw", nil); a.status == p.failed || a.status >= 400 {
					t.Fatalf("right password after the back-off: %+v", a)
				}
				if a := try("alice", "guess", nil); a.status != p.failed { // success forgave alice
					t.Fatalf("first failure after a success: %+v", a)
				}
				failures++
			})
			t.Run("per address, X-Forwarded-For notwithstanding", func(t *testing.T) {
				for n := 0; failures < 21; n++ {
					if a := try("user"+string(rune('a'+n)), "guess", nil); a.status != p.failed {
						t.Fatalf("address failure %d: %+v", failures+1, a)
					}
					failures++
				}
				spoof := http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Real-Ip": {"203.0.113.9"}}
				wantThrottled(t, try("zed", "guess", spoof), "1")
			})
		})
	}
}

// TestDisabledUser checks that a disabled user cannot sign in, refresh a
// token issued before, or exchange a code issued before; the answers are
// those of a wrong password. Enabled again, the user can.
func TestDisabledUser(t *testing.T) {
	h := newHarness(t)
	signInSetup(t, h)
	cfg := &oauth2.Config{ClientID: "spa", RedirectURL: spaRedirect, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: h.url + "/oauth2/authorize", TokenURL: h.url + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	before := h.passwordToken("api")
	verifier := oauth2.GenerateVerifier()
	resp := login(t, browser(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "alice", "alice-pw")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %d %s", resp.StatusCode, loc)
	}
	setDisabled := func(d bool) {
		if r := h.admin(http.MethodPut, "/users/alice", map[string]any{"disabled": d, "claims": map[string]any{}}); r.status != 200 {
			t.Fatalf("PUT user: %d %s", r.status, r.body)
		}
	}
	setDisabled(true)
	for _, tc := range []struct {
		name string
		do   func() *response
	}{
		{"password grant", func() *response {
			return h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, "app", "app-secret")
		}},
		{"refresh of a token issued before", func() *response { return h.refresh(before.RefreshToken, "") }},
		{"code issued before", func() *response {
			return h.form("/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {"spa"},
				"redirect_uri": {spaRedirect}, "code_verifier": {verifier}}, "", "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, tc.do(), http.StatusBadRequest, "invalid_grant") })
	}
	t.Run("login form", func(t *testing.T) {
		a := signInPaths[1].try(t, h, "alice", "alice-pw", nil)
		b := signInPaths[1].try(t, h, "nobody", "alice-pw", nil)
		if a.status != http.StatusUnauthorized || a != b {
			t.Fatalf("disabled %+v, unknown %+v", a, b)
		}
	})
	setDisabled(false)
	if tr := h.passwordToken("api"); tr.AccessToken == "" {
		t.Fatal("no token once enabled")
	}
}

// TestClientAuthThrottle drives secret guessing: past 5 failures a
// client_id gets 429 slow_down with Retry-After, the right secret
// included, whichever endpoint and method; unknown client_ids alike;
// an address past 20 failures is locked out whatever it claims. Each
// failure is an auth_failure log event without the secret, and a
// counter labelled by kind, method and reason only.
func TestClientAuthThrottle(t *testing.T) {
	logs := &syncBuffer{}
	h := newHarness(t, withThrottles(), withLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	h.clock.freeze()
	h.createClient(map[string]any{"client_id": "svc", "client_secret": "svc-secret-0123456789",
		"grant_types": []string{"client_credentials"}, "scope": "api"})
	cc := url.Values{"grant_type": {"client_credentials"}}
	const guess = "guess-XYZZY-not-logged"
	failures := 0
	t.Run("known and unknown client_ids alike", func(t *testing.T) {
		var bodies []string
		for _, id := range []string{"svc", "ghost"} {
			for i := 0; i < 6; i++ {
				wantError(t, h.form("/oauth2/token", cc, id, guess), http.StatusUnauthorized, "invalid_client")
				failures++
			}
			r := h.form("/oauth2/token", cc, id, "svc-secret-0123456789")
			wantError(t, r, http.StatusTooManyRequests, "slow_down")
			if r.header.Get("Retry-After") != "1" {
				t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
			}
			bodies = append(bodies, string(r.body))
		}
		if bodies[0] != bodies[1] {
			t.Fatalf("%s vs %s", bodies[0], bodies[1])
		}
	})
	t.Run("x/oauth2 sees 429 slow_down", func(t *testing.T) {
		_, err := (&clientcredentials.Config{ClientID: "svc", ClientSecret: "svc-secret-0123456789", TokenURL: h.url + "/oauth2/token",
			AuthStyle: oauth2.AuthStyleInHeader}).Token(context.Background())
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "slow_down" || re.Response.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%v", err)
		}
	})
	t.Run("after the back-off the right secret works", func(t *testing.T) {
		h.clock.advance(time.Second)
		h.mustToken("svc", "svc-secret-0123456789", "")
	})
	t.Run("one count across endpoints and methods", func(t *testing.T) {
		for i := 0; i < 6; i++ {
			r := h.form("/oauth2/revoke", url.Values{"token": {"x"}, "client_id": {"svc"}, "client_secret": {guess}}, "", "")
			if r.str("error") != "invalid_client" {
				t.Fatalf("revoke %d: %d %s", i, r.status, r.body)
			}
			failures++
		}
		r := h.form("/oauth2/introspect", url.Values{"token": {"x"}}, "svc", "svc-secret-0123456789")
		wantError(t, r, http.StatusTooManyRequests, "slow_down")
	})
	t.Run("per address, X-Forwarded-For notwithstanding", func(t *testing.T) {
		for n := 0; failures < 21; n++ {
			wantError(t, h.form("/oauth2/token", cc, "rotating-"+string(rune('a'+n)), guess), http.StatusUnauthorized, "invalid_client")
			failures++
		}
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", strings.NewReader(cc.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.SetBasicAuth("fresh", guess)
		wantError(t, h.do(req), http.StatusTooManyRequests, "slow_down")
	})
	t.Run("auth_failure events", func(t *testing.T) {
		if strings.Contains(logs.String(), guess) || strings.Contains(logs.String(), "svc-secret") {
			t.Fatal("a secret reached the log")
		}
		seen := map[string]int{}
		for _, ev := range logEvents(logs, "auth_failure") {
			if ev["kind"] != "client" || ev["remote_addr"] != "127.0.0.1" {
				t.Fatalf("event %v", ev)
			}
			seen[ev["client_id"].(string)+" "+ev["method"].(string)+" "+ev["reason"].(string)]++
		}
		for k, n := range map[string]int{
			"svc client_secret_basic invalid_credentials": 6, "ghost client_secret_basic unknown_client": 6,
			"svc client_secret_post invalid_credentials": 6, "svc client_secret_basic throttled": 3,
		} {
			if seen[k] != n {
				t.Errorf("%d events %q, want %d (all: %v)", seen[k], k, n, seen)
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		m := string(h.metrics())
		for _, want := range []string{
			`keyhook_auth_failures_total{kind="client",method="client_secret_basic",reason="invalid_credentials"} 6`,
			`keyhook_auth_failures_total{kind="client",method="client_secret_basic",reason="unknown_client"} 9`,
			`keyhook_auth_failures_total{kind="client",method="client_secret_post",reason="invalid_credentials"} 6`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if strings.Contains(m, "ghost") || strings.Contains(m, `"svc"`) {
			t.Error("a client_id is a label value")
		}
	})
}

// TestThrottleBehindTrustedProxy: with trusted proxies the address is the
// X-Forwarded-For one, and an IPv6 address counts by its /64.
func TestThrottleBehindTrustedProxy(t *testing.T) {
	h := newHarness(t, withThrottles(), withTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
	h.clock.freeze()
	try := func(id, from string) *response {
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		req.SetBasicAuth(id, "guess")
		return h.do(req)
	}
	for i := 0; i < 21; i++ {
		wantError(t, try("id-"+string(rune('a'+i)), "2001:db8:0:1::a"), http.StatusUnauthorized, "invalid_client")
	}
	for _, tc := range []struct {
		from   string
		status int
	}{
		{"2001:db8:0:1::a", http.StatusTooManyRequests},
		{"2001:db8:0:1::b", http.StatusTooManyRequests}, // the same /64
		{"2001:db8:0:2::a", http.StatusUnauthorized},
		{"198.51.100.7", http.StatusUnauthorized},
	} {
		t.Run(tc.from, func(t *testing.T) {
			if r := try("other", tc.from); r.status != tc.status {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}

// TestThrottleLetsHonestConcurrencyThrough: many honest attempts at once,
// of one client or one user from one address, are not failures and are
// never throttled (a resource server introspects in parallel; the soak
// run found them answered 429 when attempts in flight counted as
// failures to be).
func TestThrottleLetsHonestConcurrencyThrough(t *testing.T) {
	// Room for every hash at once, and a wait no -race run reaches: this
	// test is about the throttle, not the hashing budget.
	h := newHarness(t, withThrottles(), withPasswordHashing(12*19, time.Minute))
	h.createClient(map[string]any{"client_id": "rs", "client_secret": "rs-secret"})
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "grant_types": []string{"password"}})
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "carol", "password": "carol-password"}); r.status != http.StatusCreated {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	tok := h.mustToken("rs", "rs-secret", "").AccessToken
	for _, tc := range []struct {
		name string
		n    int
		call func() *response
	}{
		{"introspection by one client", 40, func() *response {
			return h.form("/oauth2/introspect", url.Values{"token": {tok}}, "rs", "rs-secret")
		}},
		{"password grants of one user", 12, func() *response {
			return h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"carol"}, "password": {"carol-password"}}, "app", "app-secret")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			got := make([]*response, tc.n)
			start := make(chan struct{})
			for i := range tc.n {
				wg.Add(1)
				go func() { defer wg.Done(); <-start; got[i] = tc.call() }()
			}
			close(start)
			wg.Wait()
			for i, r := range got {
				if r.status != http.StatusOK {
					t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
				}
			}
		})
	}
}
