package web_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/keyhook/keyhook/engine"
)

// The device flow (RFC 8628, docs/device-flow.md) through real HTTP: the
// device authorization endpoint, the verification page driven as a
// browser would (cookie jar, hidden fields), and the polling of the token
// endpoint, against a frozen clock.

const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// deviceSetup registers alice, a public TV app with the device grant, a
// confidential box with it, and a client without it.
func deviceSetup(t *testing.T, h *harness) {
	t.Helper()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "alice@example.com", "name": "Alice Example"}}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "tv", "client_name": "Living Room TV", "token_endpoint_auth_method": "none",
		"grant_types": []string{deviceGrant, "refresh_token"}, "scope": "openid profile email api"})
	h.createClient(map[string]any{"client_id": "box", "client_secret": "box-secret",
		"grant_types": []string{deviceGrant}, "scope": "api"})
	h.createClient(map[string]any{"client_id": "nodevice", "client_secret": "nodevice-secret",
		"grant_types": []string{"client_credentials"}, "scope": "api"})
}

// deviceAuth asks for a device code: id alone for a public client, Basic
// credentials otherwise.
func (h *harness) deviceAuth(id, secret string, vals url.Values) *response {
	h.t.Helper()
	if vals == nil {
		vals = url.Values{}
	}
	if secret == "" {
		vals.Set("client_id", id)
		return h.form("/oauth2/device_authorization", vals, "", "")
	}
	return h.form("/oauth2/device_authorization", vals, id, secret)
}

type deviceCodes struct{ device, user, uri, complete string }

func (h *harness) mustDeviceAuth(id, secret, scope string) deviceCodes {
	h.t.Helper()
	vals := url.Values{}
	if scope != "" {
		vals.Set("scope", scope)
	}
	r := h.deviceAuth(id, secret, vals)
	if r.status != http.StatusOK {
		h.t.Fatalf("device authorization: %d %s", r.status, r.body)
	}
	return deviceCodes{r.str("device_code"), r.str("user_code"), r.str("verification_uri"), r.str("verification_uri_complete")}
}

// poll polls the token endpoint with a device code.
func (h *harness) poll(id, secret, deviceCode string) *response {
	h.t.Helper()
	vals := url.Values{"grant_type": {deviceGrant}, "device_code": {deviceCode}}
	if secret == "" {
		vals.Set("client_id", id)
		return h.form("/oauth2/token", vals, "", "")
	}
	return h.form("/oauth2/token", vals, id, secret)
}

// devBrowser is a browser at the verification page.
type devBrowser struct {
	t    *testing.T
	h    *harness
	c    *http.Client
	page string
	resp *http.Response
	// header are extra request headers (X-Forwarded-For).
	header http.Header
}

func newDevBrowser(t *testing.T, h *harness) *devBrowser {
	return &devBrowser{t: t, h: h, c: browser(), header: http.Header{}}
}

func (b *devBrowser) send(req *http.Request) int {
	b.t.Helper()
	for k, v := range b.header {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	b.resp, b.page = resp, readAll(resp)
	return resp.StatusCode
}

// open loads the verification page (u: the verification URI, complete or not).
func (b *devBrowser) open(u string) int {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.send(req)
}

// submit posts the current page's form with its hidden fields and extra.
func (b *devBrowser) submit(extra url.Values) int {
	b.t.Helper()
	form := hiddenFields(b.page)
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, b.h.url+"/oauth2/device", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.send(req)
}

// enter opens the verification page and submits code.
func (b *devBrowser) enter(code string) int {
	b.t.Helper()
	if s := b.open(b.h.url + "/oauth2/device"); s != 200 {
		b.t.Fatalf("verification page: %d %s", s, b.page)
	}
	return b.submit(url.Values{"user_code": {code}})
}

func (b *devBrowser) has(id string) bool { return strings.Contains(b.page, `id="`+id+`"`) }

// approve takes a code through the page: code, sign-in when asked, allow
// or deny.
func (b *devBrowser) decide(code string, allow bool) {
	b.t.Helper()
	if s := b.enter(code); s != 200 {
		b.t.Fatalf("code: %d %s", s, b.page)
	}
	if b.has("password") {
		if s := b.submit(url.Values{"username": {"alice"}, "password": {"alice-pw"}}); s != 200 || !b.has("approve") {
			b.t.Fatalf("sign-in: %d %s", s, b.page)
		}
	}
	step := "deny"
	if allow {
		step = "approve"
	}
	if s := b.submit(url.Values{"step": {step}}); s != 200 || !b.has("done") {
		b.t.Fatalf("%s: %d %s", step, s, b.page)
	}
}

var userCodeShape = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func wantStrictPage(t *testing.T, resp *http.Response) {
	t.Helper()
	h := resp.Header
	if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("page headers %v", h)
	}
}

// renewAdminToken gets a fresh admin token after the clock moved past
// the old one's lifetime.
func (h *harness) renewAdminToken() {
	h.adminToken = h.mustToken(engine.BootstrapAdminID, adminSecret, "").AccessToken
}

// TestDeviceFlow: the whole flow, from the device's request to its
// tokens, with the page driven as a browser, an update-token and an
// introspection script running as for other grants, and the device code
// working once.
func TestDeviceFlow(t *testing.T) {
	h := newHarness(t)
	h.clock.freeze()
	h.createScript(map[string]any{"name": "stamp", "type": "update_token", "timeout_ms": 5000,
		"source": "function modifyAccessToken(t, context) { t.claims.stamped = context.token.grant_type; return true }"})
	h.createScript(introspectionScript("seen", `response.seen = context.token.grant_type; return true;`,
		map[string]any{"timeout_ms": 5000}))
	deviceSetup(t, h)
	h.patch(h.adminToken, "/clients/tv", "application/merge-patch+json", `{"update_token_scripts":["stamp"],"introspection_scripts":["seen"]}`)

	r := h.deviceAuth("tv", "", url.Values{"scope": {"openid profile api"}})
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("device authorization: %d %v %s", r.status, r.header, r.body)
	}
	codes := deviceCodes{r.str("device_code"), r.str("user_code"), r.str("verification_uri"), r.str("verification_uri_complete")}
	if len(codes.device) < 43 || !userCodeShape.MatchString(codes.user) || codes.uri != h.url+"/oauth2/device" ||
		codes.complete != codes.uri+"?user_code="+codes.user || r.json["expires_in"] != 600.0 || r.json["interval"] != 5.0 {
		t.Fatalf("device authorization answer %s", r.body)
	}

	wantError(t, h.poll("tv", "", codes.device), 400, "authorization_pending")

	b := newDevBrowser(t, h)
	if s := b.open(codes.complete); s != 200 || !strings.Contains(b.page, `value="`+codes.user+`"`) {
		t.Fatalf("verification_uri_complete: %d %s", s, b.page)
	}
	wantStrictPage(t, b.resp)
	// Typed in lower case without the dash: the login form of the
	// authorization endpoint, posting back here.
	typed := strings.ToLower(strings.ReplaceAll(codes.user, "-", ""))
	if s := b.submit(url.Values{"user_code": {typed}}); s != 200 || !b.has("password") || !strings.Contains(b.page, `action="device"`) ||
		!strings.Contains(b.page, "Living Room TV") {
		t.Fatalf("code: %d %s", s, b.page)
	}
	wantStrictPage(t, b.resp)
	if s := b.submit(url.Values{"username": {"alice"}, "password": {"wrong"}}); s != 401 || !b.has("error") {
		t.Fatalf("wrong password: %d %s", s, b.page)
	}
	if s := b.submit(url.Values{"username": {"alice"}, "password": {"alice-pw"}}); s != 200 || !b.has("approve") {
		t.Fatalf("sign-in: %d %s", s, b.page)
	}
	wantStrictPage(t, b.resp)
	for _, want := range []string{"Living Room TV", "<li>openid</li>", "<li>profile</li>", "<li>api</li>", codes.user, "alice"} {
		if !strings.Contains(b.page, want) {
			t.Fatalf("the confirmation page does not show %q: %s", want, b.page)
		}
	}
	var session *http.Cookie
	for _, ck := range b.resp.Cookies() {
		if ck.Name == sessionCookieName {
			session = ck
		}
	}
	if session == nil || session.Path != "/oauth2/device" || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie %+v", session)
	}
	// Still undecided: the poll (5 s later, as asked) is pending.
	h.clock.advance(5 * time.Second)
	wantError(t, h.poll("tv", "", codes.device), 400, "authorization_pending")
	if s := b.submit(url.Values{"step": {"approve"}}); s != 200 || !b.has("done") || !strings.Contains(b.page, "Device connected") {
		t.Fatalf("approve: %d %s", s, b.page)
	}

	h.clock.advance(5 * time.Second)
	tok := h.mustDecodeToken(h.poll("tv", "", codes.device))
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" || tok.Scope != "openid profile api" {
		t.Fatalf("tokens %+v", tok)
	}
	in := h.introspect(tok.AccessToken)
	if in["active"] != true || in["grant_type"] != deviceGrant || in["sub"] != "alice" || in["client_id"] != "tv" ||
		in["stamped"] != deviceGrant || in["seen"] != deviceGrant {
		t.Fatalf("introspection %v", in)
	}
	// The refresh token works as any other.
	rr := h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"tv"}}, "", "")
	refreshed := h.mustDecodeToken(rr)

	// A second redemption: invalid_grant, and what the code gave is
	// revoked, as for an authorization code used twice.
	h.clock.advance(5 * time.Second)
	wantError(t, h.poll("tv", "", codes.device), 400, "invalid_grant")
	for _, tk := range []string{tok.AccessToken, refreshed.AccessToken} {
		if in := h.introspect(tk); in["active"] != false {
			t.Fatalf("token of a reused device code still active: %v", in)
		}
	}
	// The user code is spent too.
	if s := b.enter(codes.user); s != 400 || !strings.Contains(b.page, "not valid") {
		t.Fatalf("used user code: %d %s", s, b.page)
	}

	// A second device, same browser: the session spares the password.
	codes2 := h.mustDeviceAuth("tv", "", "api")
	if s := b.enter(codes2.user); s != 200 || !b.has("approve") || b.has("password") {
		t.Fatalf("with a session: %d %s", s, b.page)
	}
	// Another user of the same browser signs in instead and allows it.
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "bob", "password": "bob-pw"}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	if s := b.submit(url.Values{"step": {"switch"}}); s != 200 || !b.has("password") {
		t.Fatalf("switch: %d %s", s, b.page)
	}
	if s := b.submit(url.Values{"username": {"bob"}, "password": {"bob-pw"}}); s != 200 || !strings.Contains(b.page, `id="username">bob<`) {
		t.Fatalf("sign-in as bob: %d %s", s, b.page)
	}
	if s := b.submit(url.Values{"step": {"approve"}}); s != 200 || !b.has("done") {
		t.Fatalf("approve as bob: %d %s", s, b.page)
	}
	h.clock.advance(5 * time.Second)
	if in := h.introspect(h.mustDecodeToken(h.poll("tv", "", codes2.device)).AccessToken); in["sub"] != "bob" {
		t.Fatalf("introspection %v", in)
	}
}

// TestDeviceFlowWithOAuth2Client: golang.org/x/oauth2's device flow
// (DeviceAuth, DeviceAccessToken) against keyhook, with a 1 s interval.
func TestDeviceFlowWithOAuth2Client(t *testing.T) {
	h := newHarness(t, withDeviceFlow(time.Minute, time.Second))
	deviceSetup(t, h)
	// x/oauth2's DeviceAuth sends client_id alone: a public client.
	cfg := &oauth2.Config{ClientID: "tv", Scopes: []string{"api"},
		Endpoint: oauth2.Endpoint{DeviceAuthURL: h.url + "/oauth2/device_authorization", TokenURL: h.url + "/oauth2/token",
			AuthStyle: oauth2.AuthStyleInParams}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if da.Interval != 1 || da.VerificationURI != h.url+"/oauth2/device" || !userCodeShape.MatchString(da.UserCode) {
		t.Fatalf("device auth %+v", da)
	}
	newDevBrowser(t, h).decide(da.UserCode, true)
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatal(err)
	}
	if in := h.introspect(tok.AccessToken); in["active"] != true || in["sub"] != "alice" || in["grant_type"] != deviceGrant {
		t.Fatalf("introspection %v", in)
	}

	// Denied: x/oauth2 hands back access_denied.
	da, err = cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newDevBrowser(t, h).decide(da.UserCode, false)
	_, err = cfg.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" || re.Response.StatusCode != 400 {
		t.Fatalf("denied: %v", err)
	}
}

// TestDevicePolling: slow_down grows the interval by 5 s per RFC 8628
// §3.5, expired_token after the lifetime, access_denied after a denial,
// and what a wrong client or a disabled user gets.
func TestDevicePolling(t *testing.T) {
	h := newHarness(t)
	h.clock.freeze()
	deviceSetup(t, h)

	t.Run("slow_down", func(t *testing.T) {
		c := h.mustDeviceAuth("box", "box-secret", "")
		wantError(t, h.poll("box", "box-secret", c.device), 400, "authorization_pending")
		h.clock.advance(time.Second)
		r := h.poll("box", "box-secret", c.device)
		wantError(t, r, 400, "slow_down")
		if r.header.Get("Retry-After") != "" || !strings.Contains(r.str("error_description"), "10 seconds") {
			t.Fatalf("slow_down answer %v %s", r.header, r.body)
		}
		// The interval is 10 s now: 9 s later is too soon again (15 s).
		h.clock.advance(9 * time.Second)
		wantError(t, h.poll("box", "box-secret", c.device), 400, "slow_down")
		h.clock.advance(14 * time.Second)
		wantError(t, h.poll("box", "box-secret", c.device), 400, "slow_down")
		h.clock.advance(20 * time.Second) // interval 20 s now
		wantError(t, h.poll("box", "box-secret", c.device), 400, "authorization_pending")
	})

	t.Run("expired", func(t *testing.T) {
		c := h.mustDeviceAuth("box", "box-secret", "")
		b := newDevBrowser(t, h)
		if s := b.enter(c.user); s != 200 {
			t.Fatalf("code: %d %s", s, b.page)
		}
		h.clock.advance(600 * time.Second)
		h.renewAdminToken()
		wantError(t, h.poll("box", "box-secret", c.device), 400, "expired_token")
		if s := b.submit(url.Values{"username": {"alice"}, "password": {"alice-pw"}}); s != 400 || !strings.Contains(b.page, "not valid") {
			t.Fatalf("sign-in with an expired code: %d %s", s, b.page)
		}
	})

	t.Run("denied", func(t *testing.T) {
		c := h.mustDeviceAuth("box", "box-secret", "")
		newDevBrowser(t, h).decide(c.user, false)
		wantError(t, h.poll("box", "box-secret", c.device), 400, "access_denied")
		h.clock.advance(5 * time.Second)
		wantError(t, h.poll("box", "box-secret", c.device), 400, "access_denied")
	})

	t.Run("another client's device code", func(t *testing.T) {
		c := h.mustDeviceAuth("tv", "", "")
		h.createClient(map[string]any{"client_id": "thief", "token_endpoint_auth_method": "none", "grant_types": []string{deviceGrant}})
		wantError(t, h.poll("thief", "", c.device), 400, "invalid_grant")
		newDevBrowser(t, h).decide(c.user, true)
		wantError(t, h.poll("thief", "", c.device), 400, "invalid_grant")
		// The thief neither slowed the device down nor spent its code.
		h.mustDecodeToken(h.poll("tv", "", c.device))
	})

	t.Run("unknown and missing device_code", func(t *testing.T) {
		wantError(t, h.poll("box", "box-secret", "not-a-device-code"), 400, "invalid_grant")
		wantError(t, h.poll("box", "box-secret", ""), 400, "invalid_request")
		wantError(t, h.poll("box", "box-secret", strings.Repeat("x", 10_000)), 400, "invalid_grant")
	})

	t.Run("disabled user", func(t *testing.T) {
		c := h.mustDeviceAuth("box", "box-secret", "")
		newDevBrowser(t, h).decide(c.user, true)
		if r := h.patch(h.adminToken, "/users/alice", "application/merge-patch+json", `{"disabled":true}`); r.status != 200 {
			t.Fatalf("disable: %d %s", r.status, r.body)
		}
		defer h.patch(h.adminToken, "/users/alice", "application/merge-patch+json", `{"disabled":false}`)
		wantError(t, h.poll("box", "box-secret", c.device), 400, "invalid_grant")
		// A disabled user cannot sign in at the page either.
		c2 := h.mustDeviceAuth("box", "box-secret", "")
		b := newDevBrowser(t, h)
		b.enter(c2.user)
		if s := b.submit(url.Values{"username": {"alice"}, "password": {"alice-pw"}}); s != 401 {
			t.Fatalf("disabled user's sign-in: %d %s", s, b.page)
		}
	})

	t.Run("client without the grant", func(t *testing.T) {
		wantError(t, h.deviceAuth("nodevice", "nodevice-secret", nil), 400, "unauthorized_client")
		wantError(t, h.poll("nodevice", "nodevice-secret", "whatever"), 400, "unauthorized_client")
	})
}

// TestDeviceAuthorizationRequests: what the device authorization endpoint
// refuses.
func TestDeviceAuthorizationRequests(t *testing.T) {
	h := newHarness(t)
	deviceSetup(t, h)
	for _, tc := range []struct {
		name   string
		r      func() *response
		status int
		code   string
	}{
		{"wrong secret", func() *response { return h.deviceAuth("box", "nope", nil) }, 401, "invalid_client"},
		{"unknown client", func() *response { return h.deviceAuth("ghost", "", nil) }, 400, "invalid_client"},
		{"confidential client without its secret", func() *response { return h.deviceAuth("box", "", nil) }, 400, "invalid_client"},
		{"no client", func() *response { return h.form("/oauth2/device_authorization", url.Values{}, "", "") }, 400, "invalid_client"},
		{"scope not allowed", func() *response { return h.deviceAuth("box", "box-secret", url.Values{"scope": {"admin"}}) }, 400, "invalid_scope"},
		{"malformed scope", func() *response {
			return h.deviceAuth("box", "box-secret", url.Values{"scope": {"api \x01"}})
		}, 400, "invalid_scope"},
		{"repeated parameter", func() *response {
			return h.form("/oauth2/device_authorization?", url.Values{"client_id": {"tv", "tv"}}, "", "")
		}, 400, "invalid_request"},
		{"oversized body", func() *response {
			return h.deviceAuth("tv", "", url.Values{"scope": {strings.Repeat("a", 70_000)}})
		}, 413, "invalid_request"},
		{"not a form", func() *response {
			req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/device_authorization", strings.NewReader(`{"client_id":"tv"}`))
			req.Header.Set("Content-Type", "application/json")
			return h.do(req)
		}, 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, tc.r(), tc.status, tc.code) })
	}
	if r := h.do(mustRequest(http.MethodGet, h.url+"/oauth2/device_authorization")); r.status != 405 {
		t.Fatalf("GET: %d", r.status)
	}
	// Scope absent: every scope of the client.
	r := h.deviceAuth("tv", "", nil)
	if r.status != 200 {
		t.Fatalf("no scope: %d %s", r.status, r.body)
	}
}

// TestDeviceVerificationPage: wrong, malformed and oversized codes, a
// forged form, a decision without a session, and the headers.
func TestDeviceVerificationPage(t *testing.T) {
	h := newHarness(t)
	deviceSetup(t, h)
	c := h.mustDeviceAuth("tv", "", "")

	for _, typed := range []string{"BCDF-GHJK", "", "AEIOU123", strings.Repeat("B", 9), "ＢＣＤＦＧＨＪＫ", "<script>x</script>",
		strings.Repeat("Z", 5000), "BCDF\x00GHJK"} {
		b := newDevBrowser(t, h)
		if s := b.enter(typed); s != 400 || !strings.Contains(b.page, "not valid") || strings.Contains(b.page, "<script>x") {
			t.Fatalf("code %.40q: %d %s", typed, s, b.page)
		}
		wantStrictPage(t, b.resp)
	}

	t.Run("escaped prefill", func(t *testing.T) {
		b := newDevBrowser(t, h)
		if s := b.open(h.url + "/oauth2/device?user_code=" + url.QueryEscape(`"><script>alert(1)</script>`)); s != 200 ||
			strings.Contains(b.page, "<script>alert") {
			t.Fatalf("prefill: %d %s", s, b.page)
		}
	})

	t.Run("no CSRF token", func(t *testing.T) {
		form := url.Values{"step": {"code"}, "user_code": {c.user}}
		r := h.form("/oauth2/device", form, "", "")
		if r.status != 403 {
			t.Fatalf("without CSRF: %d %s", r.status, r.body)
		}
		b := newDevBrowser(t, h)
		b.open(h.url + "/oauth2/device")
		if s := b.submit(url.Values{"user_code": {c.user}, "csrf_token": {"forged"}}); s != 403 {
			t.Fatalf("forged CSRF: %d %s", s, b.page)
		}
	})

	t.Run("approve without a session", func(t *testing.T) {
		b := newDevBrowser(t, h)
		b.open(h.url + "/oauth2/device")
		if s := b.submit(url.Values{"user_code": {c.user}, "step": {"approve"}}); s != 200 || !b.has("password") {
			t.Fatalf("approve without a session: %d %s", s, b.page)
		}
		wantError(t, h.poll("tv", "", c.device), 400, "authorization_pending")
	})

	t.Run("unknown step and oversized form", func(t *testing.T) {
		b := newDevBrowser(t, h)
		b.open(h.url + "/oauth2/device")
		if s := b.submit(url.Values{"user_code": {c.user}, "step": {"steal"}}); s != 400 {
			t.Fatalf("unknown step: %d %s", s, b.page)
		}
		b.open(h.url + "/oauth2/device")
		if s := b.submit(url.Values{"user_code": {c.user}, "junk": {strings.Repeat("j", 70_000)}}); s != 413 {
			t.Fatalf("oversized: %d %.200s", s, b.page)
		}
	})
}

// TestDeviceUserCodeGuessing: wrong user codes are throttled per browser,
// per address and over the instance (RFC 8628 §5.1); a throttled attempt
// is refused unchecked, the right code included.
func TestDeviceUserCodeGuessing(t *testing.T) {
	h := newHarness(t, withThrottles(), withTrustedProxies(netip.MustParsePrefix("127.0.0.0/8")))
	h.clock.freeze()
	deviceSetup(t, h)
	c := h.mustDeviceAuth("tv", "", "")
	wrong := func(i int) string { return "BBBB" + string("BCDFGHJKLMNPQRSTVWXZ"[i%20]) + "BBB" }

	t.Run("per browser", func(t *testing.T) {
		b := newDevBrowser(t, h)
		b.header.Set("X-Forwarded-For", "192.0.2.1")
		b.open(h.url + "/oauth2/device")
		for i := range 6 {
			if s := b.submit(url.Values{"user_code": {wrong(i)}}); s != 400 {
				t.Fatalf("wrong code %d: %d %s", i, s, b.page)
			}
		}
		if s := b.submit(url.Values{"user_code": {c.user}}); s != 429 || b.resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(b.page, "Too many wrong codes") {
			t.Fatalf("right code while throttled: %d %v %s", s, b.resp.Header, b.page)
		}
		h.clock.advance(2 * time.Second)
		if s := b.submit(url.Values{"user_code": {c.user}}); s != 200 {
			t.Fatalf("after the back-off: %d %s", s, b.page)
		}
	})

	t.Run("per address, a fresh browser each time", func(t *testing.T) {
		for i := range 21 {
			b := newDevBrowser(t, h)
			b.header.Set("X-Forwarded-For", "192.0.2.2")
			if s := b.enter(wrong(i)); s != 400 {
				t.Fatalf("wrong code %d: %d %s", i, s, b.page)
			}
		}
		b := newDevBrowser(t, h)
		b.header.Set("X-Forwarded-For", "192.0.2.2")
		if s := b.enter(c.user); s != 429 {
			t.Fatalf("right code from a throttled address: %d %s", s, b.page)
		}
		// Another address is not held back.
		b = newDevBrowser(t, h)
		b.header.Set("X-Forwarded-For", "192.0.2.3")
		if s := b.enter(c.user); s != 200 {
			t.Fatalf("another address: %d %s", s, b.page)
		}
	})

	t.Run("overall", func(t *testing.T) {
		h.clock.advance(time.Hour) // everything above forgiven
		c := h.mustDeviceAuth("tv", "", "")
		// 500 failures (5 × 100) from 25 addresses, 20 each: none of
		// them throttled on its own.
		for i := range 501 {
			b := newDevBrowser(t, h)
			b.header.Set("X-Forwarded-For", "198.51.100."+strconv.Itoa(i/20+1))
			if s := b.enter(wrong(i)); s != 400 {
				t.Fatalf("wrong code %d: %d %s", i, s, b.page)
			}
		}
		b := newDevBrowser(t, h)
		b.header.Set("X-Forwarded-For", "203.0.113.9")
		if s := b.enter(c.user); s != 429 {
			t.Fatalf("right code past the overall limit: %d %s", s, b.page)
		}
		h.clock.advance(2 * time.Second)
		if s := b.enter(c.user); s != 200 {
			t.Fatalf("after the back-off: %d %s", s, b.page)
		}
	})
	var failures uint64
	for _, f := range h.eng.AuthFailures() {
		if f.Kind == "user" && f.Method == "device_user_code" && f.Reason == "invalid_credentials" {
			failures = f.Count
		}
	}
	if failures < 500 {
		t.Fatalf("device_user_code failures counted: %d", failures)
	}
}

// TestDevicePurge: expired device codes go with the purge.
func TestDevicePurge(t *testing.T) {
	h := newHarness(t)
	h.clock.freeze()
	deviceSetup(t, h)
	old := h.mustDeviceAuth("box", "box-secret", "")
	h.clock.advance(300 * time.Second)
	fresh := h.mustDeviceAuth("box", "box-secret", "")
	h.clock.advance(301 * time.Second)
	h.renewAdminToken()
	h.eng.Purge(context.Background())
	ctx := context.Background()
	if _, err := h.store.DeviceGrantByID(ctx, engine.TokenHash(old.device)); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("expired device code after purge: %v", err)
	}
	if _, err := h.store.DeviceGrantByID(ctx, engine.TokenHash(fresh.device)); err != nil {
		t.Fatalf("live device code after purge: %v", err)
	}
	// Deleting the client deletes its device codes.
	if r := h.admin(http.MethodDelete, "/clients/box", nil); r.status != 204 {
		t.Fatalf("delete client: %d %s", r.status, r.body)
	}
	if _, err := h.store.DeviceGrantByID(ctx, engine.TokenHash(fresh.device)); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("device code of a deleted client: %v", err)
	}
}

// TestDeviceDiscovery: the endpoint and the grant in discovery.
func TestDeviceDiscovery(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		r := h.do(mustRequest(http.MethodGet, h.url+path))
		if r.str("device_authorization_endpoint") != h.url+"/oauth2/device_authorization" {
			t.Fatalf("%s: device_authorization_endpoint = %v", path, r.json["device_authorization_endpoint"])
		}
		found := false
		for _, g := range r.json["grant_types_supported"].([]any) {
			found = found || g == deviceGrant
		}
		if !found {
			t.Fatalf("%s: grant_types_supported = %v", path, r.json["grant_types_supported"])
		}
	}
}

// TestDeviceFlowTwoInstancesPostgres: the device asks one instance, the
// user decides on another, the device polls both: the interval and the
// one-time redemption hold across instances.
func TestDeviceFlowTwoInstancesPostgres(t *testing.T) {
	dsn := pgDSN(t)
	a := newHarness(t, withDSN(dsn))
	b := newHarness(t, withDSN(dsn))
	a.clock.freeze()
	b.clock.frozen.Store(a.clock.frozen.Load())
	deviceSetup(t, a)
	c := a.mustDeviceAuth("box", "box-secret", "")
	wantError(t, a.poll("box", "box-secret", c.device), 400, "authorization_pending")
	wantError(t, b.poll("box", "box-secret", c.device), 400, "slow_down")
	newDevBrowser(t, b).decide(c.user, true)
	a.clock.advance(10 * time.Second)
	b.clock.advance(10 * time.Second)
	a.mustDecodeToken(a.poll("box", "box-secret", c.device))
	a.clock.advance(10 * time.Second)
	b.clock.advance(10 * time.Second)
	wantError(t, b.poll("box", "box-secret", c.device), 400, "invalid_grant")
}
