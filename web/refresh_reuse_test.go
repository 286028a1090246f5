package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRefreshTokenReuseIntervalField checks the client field
// refresh_token_reuse_interval: 0 by default, whole seconds up to 300,
// anything else 400 naming the field.
func TestRefreshTokenReuseIntervalField(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		name  string
		value any
		want  float64 // -1: refused
	}{
		{"absent", nil, 0},
		{"zero", 0, 0},
		{"maximum", 300, 300},
		{"over the maximum", 301, -1},
		{"negative", -1, -1},
		{"fractional", 1.5, -1},
		{"a string", "60", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := map[string]any{"client_id": "c" + strings.Repeat("x", i), "grant_types": []string{"password", "refresh_token"}}
			if tc.value != nil {
				doc["refresh_token_reuse_interval"] = tc.value
			}
			r := h.admin(http.MethodPost, "/clients", doc)
			if tc.want < 0 {
				wantError(t, r, 400, "invalid_request")
				if !strings.HasPrefix(r.str("error_description"), "refresh_token_reuse_interval") {
					t.Fatalf("error_description %q does not name the field", r.str("error_description"))
				}
				return
			}
			if r.status != http.StatusCreated || r.json["refresh_token_reuse_interval"] != tc.want {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := h.admin(http.MethodGet, "/clients/"+doc["client_id"].(string), nil); got.json["refresh_token_reuse_interval"] != tc.want {
				t.Fatalf("read back %s", got.body)
			}
		})
	}
}

// TestRefreshAnswerLostInTransit presents a refresh token whose answer
// the client never read again within the client's reuse interval: the
// same pair comes back, and works; after the interval, reuse ends the
// family (docs/refresh.md, RFC 9700 §4.14.2).
func TestRefreshAnswerLostInTransit(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	if r := h.admin(http.MethodPut, "/clients/app", map[string]any{"client_secret": "app-secret",
		"grant_types": []string{"password", "refresh_token"}, "scope": "openid profile email api",
		"refresh_token_reuse_interval": 30}); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	t.Run("within the interval", func(t *testing.T) {
		first := h.passwordToken("api")
		lost := h.mustDecodeToken(h.refresh(first.RefreshToken, ""))
		again := h.mustDecodeToken(h.refresh(first.RefreshToken, ""))
		if again.AccessToken != lost.AccessToken || again.RefreshToken != lost.RefreshToken {
			t.Fatalf("a different pair: %+v, first answered %+v", again, lost)
		}
		h.mustDecodeToken(h.refresh(again.RefreshToken, ""))
	})
	t.Run("after the interval", func(t *testing.T) {
		first := h.passwordToken("api")
		lost := h.mustDecodeToken(h.refresh(first.RefreshToken, ""))
		h.clock.advance(31 * time.Second)
		wantError(t, h.refresh(first.RefreshToken, ""), 400, "invalid_grant")
		if in := h.introspect(lost.AccessToken); in["active"] != false {
			t.Fatalf("successor after reuse: %v", in)
		}
		wantError(t, h.refresh(lost.RefreshToken, ""), 400, "invalid_grant")
	})
}
