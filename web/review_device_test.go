package web_test

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// TestReviewDeviceResource: a device asking at the token endpoint for a
// resource (RFC 8707 §2) gets a token for it, or invalid_target for one
// it may not have; it is never handed a token for another audience than
// the one it asked for. The refresh token covers what was asked.
func TestReviewDeviceResource(t *testing.T) {
	h := newHarness(t)
	h.clock.freeze()
	deviceSetup(t, h)
	h.patch(h.adminToken, "/clients/tv", "application/merge-patch+json",
		`{"allowed_resources":["https://api.example/","https://files.example/"],"access_token_as_jwt":true}`)

	approved := func() string {
		codes := h.mustDeviceAuth("tv", "", "api")
		newDevBrowser(t, h).decide(codes.user, true)
		h.clock.advance(5 * time.Second)
		return codes.device
	}
	pollFor := func(device string, resources ...string) *response {
		vals := url.Values{"grant_type": {deviceGrant}, "device_code": {device}, "client_id": {"tv"}}
		for _, r := range resources {
			vals.Add("resource", r)
		}
		return h.form("/oauth2/token", vals, "", "")
	}

	for _, tc := range []struct {
		name      string
		resources []string
		status    int
		code      string
		aud       []string
	}{
		{"none: the client's id", nil, 200, "", []string{"tv"}},
		{"one allowed", []string{"https://api.example/"}, 200, "", []string{"https://api.example/"}},
		{"two allowed", []string{"https://api.example/", "https://files.example/"}, 200, "",
			[]string{"https://api.example/", "https://files.example/"}},
		{"not allowed", []string{"https://evil.example/"}, 400, "invalid_target", nil},
		{"malformed", []string{"not a uri"}, 400, "invalid_target", nil},
		{"with a fragment", []string{"https://api.example/#x"}, 400, "invalid_target", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pollFor(approved(), tc.resources...)
			if tc.code != "" {
				wantError(t, r, tc.status, tc.code)
				return
			}
			tok := wantAud(t, h, r, tc.aud...)
			if len(tc.resources) == 0 {
				return
			}
			// A refresh may ask for any one of them, and for none other.
			rr := h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken},
				"client_id": {"tv"}, "resource": {tc.resources[0]}}, "", "")
			next := wantAud(t, h, rr, tc.resources[0])
			wantError(t, h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next.RefreshToken},
				"client_id": {"tv"}, "resource": {"https://evil.example/"}}, "", ""), 400, "invalid_target")
		})
	}

	// An invalid_target answer does not spend the device code: the same
	// code gets its token with a resource it may have.
	device := approved()
	wantError(t, pollFor(device, "https://evil.example/"), 400, "invalid_target")
	h.clock.advance(5 * time.Second)
	tok := wantAud(t, h, pollFor(device, "https://files.example/"), "https://files.example/")
	if in := h.introspect(tok.AccessToken); !reflect.DeepEqual(audOf(in["aud"]), []string{"https://files.example/"}) {
		t.Fatalf("introspection %v", in)
	}
}

// TestReviewDeviceAuthorizationBounded: a client holds at most
// MaxDeviceGrantsPerClient unexpired device codes. A public client is
// authenticated by its client_id alone, so without a bound anyone could
// fill the database with device authorizations (as PAR bounds pushed
// requests, docs/par.md).
func TestReviewDeviceAuthorizationBounded(t *testing.T) {
	h := newHarness(t, withDeviceFlow(30*time.Second, time.Second), withEngine(func(c *engine.Config) {
		c.MaxDeviceGrantsPerClient = 3
	}))
	h.clock.freeze()
	deviceSetup(t, h)
	for range 3 {
		h.mustDeviceAuth("tv", "", "api")
	}
	r := h.deviceAuth("tv", "", url.Values{"scope": {"api"}})
	wantError(t, r, http.StatusTooManyRequests, "slow_down")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// Another client has its own allowance.
	h.mustDeviceAuth("box", "box-secret", "api")
	// Once they expire, the client may ask again.
	h.clock.advance(31 * time.Second)
	h.renewAdminToken()
	h.mustDeviceAuth("tv", "", "api")
}
