package web_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// TestPurge checks the background clean-up: expired tokens go, and a
// retired key leaves the JWKS only once no token it signed can be valid.
func TestPurge(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.createClient(map[string]any{"client_id": "jwt", "client_secret": "s", "access_token_as_jwt": true})
	old := h.mustToken("jwt", "s", "").AccessToken
	opaque := h.mustToken("keyhook-admin", adminSecret, "").AccessToken
	_, oldHeader := verifyWithJWKS(t, h, old)
	h.admin("POST", "/keys/rotate", nil)

	// The second key signs a day-long token, then retires too: retired
	// for two hours but with a valid token, it stays.
	h.createClient(map[string]any{"client_id": "long", "client_secret": "s", "access_token_as_jwt": true, "access_token_lifetime": 86400})
	long := h.mustToken("long", "s", "").AccessToken
	_, longHeader := verifyWithJWKS(t, h, long)
	h.admin("POST", "/keys/rotate", nil)

	h.clock.advance(2 * time.Hour)
	defer h.clock.advance(-2 * time.Hour)
	h.eng.Purge(ctx)
	if err := h.eng.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	jwks := string(h.do(mustGet(h.url + "/oauth2/jwks")).body)
	if strings.Contains(jwks, oldHeader.KeyID) {
		t.Error("a retired key whose tokens all expired is still published")
	}
	if !strings.Contains(jwks, longHeader.KeyID) {
		t.Error("a key with an unexpired token was removed")
	}
	for name, id := range map[string]string{"opaque": engine.TokenHash(opaque)} {
		if _, err := h.store.Stores().Tokens.TokenByID(ctx, id); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("expired %s token not purged: %v", name, err)
		}
	}
	if in := h.introspect(long); in["active"] != true {
		t.Fatalf("unexpired token after purge: %v", in)
	}
}
