package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
)

// jtiFake wraps the real JTI store: it records what UseJTI was asked
// and can fail it.
type jtiFake struct {
	engine.JTIStore
	mu    sync.Mutex
	calls []jtiCall
	fail  bool
}

type jtiCall struct {
	client, jti string
	expires     time.Time
}

func (f *jtiFake) UseJTI(ctx context.Context, clientID, jti string, expires time.Time) error {
	f.mu.Lock()
	f.calls = append(f.calls, jtiCall{clientID, jti, expires})
	f.mu.Unlock()
	if f.fail {
		return errors.New("database gone")
	}
	return f.JTIStore.UseJTI(ctx, clientID, jti, expires)
}

// dpopEngine is an engine on the clock *now whose issuer has a path, with
// the confidential client svc (client_secret_post), its JTI store
// wrapped.
func dpopEngine(t *testing.T, now *time.Time, nonce bool) (*engine.Engine, *jtiFake) {
	t.Helper()
	ctx := context.Background()
	st := openStores(t)
	fake := &jtiFake{JTIStore: st.JTIs}
	st.JTIs = fake
	cfg := engine.Config{Issuer: "https://AS.example:443/auth/", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return *now }, DPoPNonce: nonce}
	cfg.LoginThrottle.Free, cfg.ClientAuthThrottle.Free = -1, -1
	e, err := engine.New(ctx, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "svc", ClientSecret: "svc-secret-0123456789",
		TokenEndpointAuthMethod: "client_secret_post", GrantTypes: []string{"client_credentials"}}); err != nil {
		t.Fatal(err)
	}
	return e, fake
}

// signProof signs claims as a DPoP proof with key, through go-jose.
func signProof(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ccRequest(proof string) *engine.TokenRequest {
	return &engine.TokenRequest{GrantType: engine.GrantClientCredentials,
		Credentials: engine.ClientCredentials{ClientID: "svc", ClientSecret: "svc-secret-0123456789"},
		DPoP:        engine.DPoPProof{Headers: []string{proof}, Method: "POST", Path: engine.PathToken}}
}

// TestDPoPHTU: htu is the issuer, path included, and the endpoint's
// path, compared after RFC 3986 normalisation (RFC 9449 §4.3).
func TestDPoPHTU(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e, _ := dpopEngine(t, &now, false)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i, tc := range []struct {
		htu string
		ok  bool
	}{
		{"https://as.example/auth/oauth2/token", true},
		{"https://AS.EXAMPLE/auth/oauth2/token", true},
		{"HTTPS://as.example:443/auth/oauth2/token", true},
		{"https://as.example/auth/oauth2/token?q=1", true},
		{"https://as.example/auth/oauth2/token#f", true},
		{"https://as.example/auth/oauth2/%74oken", true},
		{"https://as.example/oauth2/token", false},
		{"https://as.example/auth/oauth2/token/", false},
		{"https://as.example/AUTH/oauth2/token", false},
		{"https://as.example:8443/auth/oauth2/token", false},
		{"http://as.example/auth/oauth2/token", false},
		{"https://as.example.evil/auth/oauth2/token", false},
		{"https://user@as.example/auth/oauth2/token", false},
		{"//as.example/auth/oauth2/token", false},
		{"urn:as.example:auth", false},
		{"", false},
		{"https://as.example/auth/oauth2/token\x00", false},
	} {
		p := signProof(t, key, map[string]any{"jti": string(rune('a'+i)) + "-htu", "htm": "POST", "htu": tc.htu, "iat": now.Unix()})
		resp, err := e.Token(context.Background(), ccRequest(p))
		if tc.ok != (err == nil) {
			t.Errorf("htu %q: %v", tc.htu, err)
			continue
		}
		if err == nil && resp.TokenType != "DPoP" {
			t.Errorf("htu %q: token_type %q", tc.htu, resp.TokenType)
		}
		if err != nil && codeOf(err) != engine.CodeInvalidDPoPProof {
			t.Errorf("htu %q: %v", tc.htu, err)
		}
	}
}

// TestDPoPReplayStore: a proof's jti is recorded under its key's
// thumbprint until no clock could take it, and a store that fails is
// temporarily_unavailable, never a token without replay detection.
func TestDPoPReplayStore(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e, fake := dpopEngine(t, &now, false)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	htu := "https://as.example/auth/oauth2/token"
	for _, tc := range []struct {
		name  string
		iat   int64
		until time.Time
	}{
		{"iat now", now.Unix(), now.Add(engine.DPoPProofWindow)},
		{"iat ahead", now.Unix() + 30, now.Add(30*time.Second + engine.DPoPProofWindow)},
		{"iat behind", now.Unix() - 30, now.Add(engine.DPoPProofWindow)},
	} {
		fake.calls = nil
		if _, err := e.Token(context.Background(), ccRequest(signProof(t, key, map[string]any{"jti": tc.name, "htm": "POST", "htu": htu, "iat": tc.iat}))); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(fake.calls) != 1 || !strings.HasPrefix(fake.calls[0].client, "dpop:") || len(fake.calls[0].client) != len("dpop:")+43 ||
			fake.calls[0].jti != tc.name || !fake.calls[0].expires.Equal(tc.until) {
			t.Fatalf("%s: UseJTI calls %+v, want one until %v", tc.name, fake.calls, tc.until)
		}
	}
	fake.fail = true
	_, err := e.Token(context.Background(), ccRequest(signProof(t, key, map[string]any{"jti": "x", "htm": "POST", "htu": htu, "iat": now.Unix()})))
	if codeOf(err) != engine.CodeTemporarilyUnavailable {
		t.Fatalf("a failing store: %v", err)
	}
}

// TestDPoPNonceWindows: a nonce is good in its five-minute window and the
// next, and a refused proof leaves no jti behind.
func TestDPoPNonceWindows(t *testing.T) {
	start := time.Unix(1_800_000_000-1_800_000_000%300, 0) // a window's first second
	now := start
	e, fake := dpopEngine(t, &now, true)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	htu := "https://as.example/auth/oauth2/token"
	nonce := e.DPoPNonce()
	if nonce == "" || len(nonce) < 32 {
		t.Fatalf("nonce %q", nonce)
	}
	n := 0
	try := func(nonce any) error {
		n++
		claims := map[string]any{"jti": "n" + string(rune('a'+n)), "htm": "POST", "htu": htu, "iat": now.Unix()}
		if nonce != nil {
			claims["nonce"] = nonce
		}
		_, err := e.Token(context.Background(), ccRequest(signProof(t, key, claims)))
		return err
	}
	var oe *engine.Error
	if err := try(nil); !errors.As(err, &oe) || oe.Code != engine.CodeUseDPoPNonce || oe.DPoPNonce != nonce {
		t.Fatalf("no nonce: %v", err)
	}
	if len(fake.calls) != 0 {
		t.Fatalf("a proof refused for its nonce was recorded: %+v", fake.calls)
	}
	for _, bad := range []any{"", "x", strings.Repeat("A", len(nonce))} {
		if err := try(bad); codeOf(err) != engine.CodeUseDPoPNonce {
			t.Fatalf("nonce %v: %v", bad, err)
		}
	}
	if err := try(42); codeOf(err) != engine.CodeInvalidDPoPProof {
		t.Fatalf("a nonce that is no string: %v", err)
	}
	for _, at := range []time.Duration{0, 299 * time.Second, 300 * time.Second, 599 * time.Second} {
		now = start.Add(at)
		if err := try(nonce); err != nil {
			t.Fatalf("nonce at +%v: %v", at, err)
		}
	}
	now = start.Add(600 * time.Second)
	if err := try(nonce); codeOf(err) != engine.CodeUseDPoPNonce {
		t.Fatalf("nonce at +600s: %v", err)
	}
	if e.DPoPNonce() == nonce {
		t.Fatal("the nonce did not change")
	}
}
