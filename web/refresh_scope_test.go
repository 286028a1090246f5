package web_test

import "testing"

// TestRefreshScope checks RFC 6749 §6: a refresh without scope gets the
// scope originally granted; a narrower scope narrows the access token
// only, the new refresh token keeping the scope of the one presented; a
// scope beyond the original grant is invalid_scope, even after narrowing.
func TestRefreshScope(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	rt := h.passwordToken("api email").RefreshToken
	for _, step := range []struct {
		name, scope string
		wantScope   string // "" for invalid_scope
	}{
		{"no scope keeps the original", "", "api email"},
		{"narrower narrows the access token", "api", "api"},
		{"no scope after narrowing is the original again", "", "api email"},
		{"another narrowing", "email", "email"},
		{"wider than the original after narrowing", "api email openid", ""},
		{"the original in full", "email api", "email api"},
	} {
		t.Run(step.name, func(t *testing.T) {
			r := h.refresh(rt, step.scope)
			if step.wantScope == "" {
				wantError(t, r, 400, "invalid_scope")
				return
			}
			tr := h.mustDecodeToken(r)
			if tr.Scope != step.wantScope {
				t.Fatalf("scope %q, want %q", tr.Scope, step.wantScope)
			}
			if in := h.introspect(tr.AccessToken); in["scope"] != step.wantScope {
				t.Fatalf("access token scope %v, want %q", in["scope"], step.wantScope)
			}
			if in := h.introspect(tr.RefreshToken); in["scope"] != "api email" {
				t.Fatalf("refresh token scope %v, want the original %q", in["scope"], "api email")
			}
			rt = tr.RefreshToken
		})
	}
}
