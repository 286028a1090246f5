package web_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestReviewPARParametersNotUTF8: a pushed request is stored as JSON,
// which cannot hold bytes that are not UTF-8: a state or nonce with such
// bytes came back altered (U+FFFD), so the client's own state check
// failed, or the ID token's nonce was not the one sent. Such a push is
// refused instead, with invalid_request, and a request that is UTF-8
// comes back byte for byte.
func TestReviewPARParametersNotUTF8(t *testing.T) {
	h := newHarness(t)
	parSetup(t, h)
	for _, tc := range []struct {
		name, param, value string
	}{
		{"state", "state", "st\xff\xfeate"},
		{"nonce", "nonce", "n\xc3"},
		{"login_hint", "login_hint", "al\x80ice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, webPush(h, url.Values{tc.param: {tc.value}}), http.StatusBadRequest, "invalid_request")
		})
	}
	state := "ünïcode-state ✓ & =?#"
	uri := mustPush(t, webPush(h, url.Values{"state": {state}}))
	c := browser()
	q := codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "web", uri, nil))), webRedirect)
	if q.Get("state") != state {
		t.Fatalf("state %q, want %q", q.Get("state"), state)
	}
}
