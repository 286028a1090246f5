package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
)

// faultyIssuers is a trusted issuer store whose lookups can fail.
type faultyIssuers struct {
	engine.TrustedIssuerStore
	down atomic.Bool
}

func (s *faultyIssuers) TrustedIssuerByIssuer(ctx context.Context, iss string) (*engine.TrustedIssuer, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.TrustedIssuerStore.TrustedIssuerByIssuer(ctx, iss)
}

// faultyJTIs is a replay store whose writes can fail.
type faultyJTIs struct {
	engine.JTIStore
	down atomic.Bool
}

func (s *faultyJTIs) UseJTI(ctx context.Context, key, jti string, exp time.Time) error {
	if s.down.Load() {
		return errDown
	}
	return s.JTIStore.UseJTI(ctx, key, jti, exp)
}

type foreignFixture struct {
	e       *engine.Engine
	issuers *faultyIssuers
	jtis    *faultyJTIs
	clock   *testClock
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
}

const foreignAS = "http://keyhook.test"

func newForeignFixture(t *testing.T) *foreignFixture {
	t.Helper()
	ctx := context.Background()
	st := openStores(t)
	f := &foreignFixture{issuers: &faultyIssuers{TrustedIssuerStore: st.TrustedIssuers}, jtis: &faultyJTIs{JTIStore: st.JTIs},
		clock: &testClock{t: time.Unix(1_700_000_000, 0)}}
	st.TrustedIssuers, st.JTIs = f.issuers, f.jtis
	var err error
	f.e, err = engine.New(ctx, engine.Config{Issuer: foreignAS, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: f.clock.now, ClientAuthThrottle: engine.Throttle{Free: -1}}, st)
	if err != nil {
		t.Fatal(err)
	}
	f.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, f.ed, _ = ed25519.GenerateKey(rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: f.ec.Public(), KeyID: "ec", Algorithm: "ES256"},
		{Key: f.ed.Public(), KeyID: "ed"},
	}}
	raw, _ := json.Marshal(set)
	for _, doc := range []*engine.TrustedIssuerDoc{
		{Name: "one", Issuer: "https://one.example", JWKS: raw, MaxAssertionLifetime: 300},
		{Name: "two", Issuer: "https://two.example", JWKS: raw},
	} {
		if _, err := f.e.CreateTrustedIssuer(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *foreignFixture) sign(t *testing.T, alg jose.SignatureAlgorithm, kid string, claims map[string]any) string {
	t.Helper()
	var key any = f.ec
	if alg == jose.EdDSA {
		key = f.ed
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// TestVerifyForeignJWT: each check at its boundary, on a fixed clock.
func TestVerifyForeignJWT(t *testing.T) {
	f := newForeignFixture(t)
	now := f.clock.now().Unix()
	aud := []string{foreignAS, foreignAS + engine.PathToken}
	n := 0
	claims := func(mod func(map[string]any)) map[string]any {
		n++
		c := map[string]any{"iss": "https://one.example", "sub": "alice", "aud": foreignAS + engine.PathToken,
			"iat": now, "exp": now + 60, "jti": "j" + strings.Repeat("x", n), "custom": "kept"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		mod  func(map[string]any)
		alg  jose.SignatureAlgorithm
		kid  string
		why  string // "" accepted
	}{
		{"accepted", nil, jose.ES256, "ec", ""},
		{"EdDSA key without alg", nil, jose.EdDSA, "ed", ""},
		{"no kid tries every key", nil, jose.ES256, "", ""},
		{"key alg differs", nil, jose.EdDSA, "ec", "does not verify"},
		{"unknown kid", nil, jose.ES256, "nope", "does not verify"},
		{"exp is now", func(c map[string]any) { c["exp"] = now }, jose.ES256, "ec", "expired"},
		{"lifetime at the issuer's max", func(c map[string]any) { c["exp"] = now + 300 }, jose.ES256, "ec", ""},
		{"lifetime a second over", func(c map[string]any) { c["exp"] = now + 301 }, jose.ES256, "ec", "max_assertion_lifetime"},
		{"old iat counts", func(c map[string]any) { c["iat"], c["exp"] = now-250, now+51 }, jose.ES256, "ec", "max_assertion_lifetime"},
		{"no iat: exp from now", func(c map[string]any) { delete(c, "iat"); c["exp"] = now + 300 }, jose.ES256, "ec", ""},
		{"iat a minute ahead", func(c map[string]any) { c["iat"], c["exp"] = now+60, now+120 }, jose.ES256, "ec", ""},
		{"iat past the skew", func(c map[string]any) { c["iat"], c["exp"] = now+61, now+120 }, jose.ES256, "ec", "iat is in the future"},
		{"nbf a minute ahead", func(c map[string]any) { c["nbf"] = now + 60 }, jose.ES256, "ec", ""},
		{"nbf past the skew", func(c map[string]any) { c["nbf"] = now + 61 }, jose.ES256, "ec", "nbf"},
		{"aud among others", func(c map[string]any) { c["aud"] = []string{"https://rs.example", foreignAS} }, jose.ES256, "ec", ""},
		{"aud a prefix", func(c map[string]any) { c["aud"] = foreignAS + "/" }, jose.ES256, "ec", "aud"},
		{"empty jti", func(c map[string]any) { c["jti"] = "" }, jose.ES256, "ec", "no jti"},
		{"iss of another trusted issuer", func(c map[string]any) { c["iss"] = "https://two.example" }, jose.ES256, "ec", ""},
		{"iss differs in case", func(c map[string]any) { c["iss"] = "https://ONE.example" }, jose.ES256, "ec", "not trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fj, ti, err := f.e.VerifyForeignJWT(context.Background(), f.sign(t, tc.alg, tc.kid, claims(tc.mod)), aud)
			if tc.why == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if fj.Claims["custom"] != "kept" || fj.Header["alg"] != string(tc.alg) || ti.Issuer != fj.Issuer || fj.Subject != "alice" {
					t.Fatalf("verified: %+v %+v", fj, ti)
				}
				return
			}
			var e *engine.Error
			if !errors.As(err, &e) || e.Code != engine.CodeInvalidGrant || !strings.Contains(e.Description, tc.why) {
				t.Fatalf("got %v, want invalid_grant saying %q", err, tc.why)
			}
		})
	}

	t.Run("jti is per issuer and used once", func(t *testing.T) {
		ctx := context.Background()
		one := claims(func(c map[string]any) { c["jti"] = "shared" })
		two := claims(func(c map[string]any) { c["jti"], c["iss"] = "shared", "https://two.example" })
		for _, c := range []map[string]any{one, two} {
			if _, _, err := f.e.VerifyForeignJWT(ctx, f.sign(t, jose.ES256, "ec", c), aud); err != nil {
				t.Fatalf("first use of jti of %v: %v", c["iss"], err)
			}
		}
		_, _, err := f.e.VerifyForeignJWT(ctx, f.sign(t, jose.ES256, "ec", one), aud)
		if err == nil || !strings.Contains(err.Error(), "used before") {
			t.Fatalf("replay: %v", err)
		}
	})

	t.Run("store failures are temporarily_unavailable", func(t *testing.T) {
		ctx := context.Background()
		f.issuers.down.Store(true)
		_, _, err := f.e.VerifyForeignJWT(ctx, f.sign(t, jose.ES256, "ec", claims(nil)), aud)
		f.issuers.down.Store(false)
		if !errors.Is(err, engine.CodeTemporarilyUnavailable) {
			t.Fatalf("issuer lookup failing: %v", err)
		}
		f.jtis.down.Store(true)
		_, _, err = f.e.VerifyForeignJWT(ctx, f.sign(t, jose.ES256, "ec", claims(nil)), aud)
		f.jtis.down.Store(false)
		if !errors.Is(err, engine.CodeTemporarilyUnavailable) {
			t.Fatalf("replay store failing: %v", err)
		}
	})

	t.Run("a disabled issuer, then enabled again", func(t *testing.T) {
		ctx := context.Background()
		off := false
		doc, _ := f.e.TrustedIssuerDoc(ctx, "one")
		doc.Enabled = &off
		if _, err := f.e.ReplaceTrustedIssuer(ctx, "one", doc); err != nil {
			t.Fatal(err)
		}
		c := claims(nil)
		if _, _, err := f.e.VerifyForeignJWT(ctx, f.sign(t, jose.ES256, "ec", c), aud); err == nil || !strings.Contains(err.Error(), "not trusted") {
			t.Fatalf("disabled: %v", err)
		}
		on := true
		doc.Enabled = &on
		if _, err := f.e.ReplaceTrustedIssuer(ctx, "one", doc); err != nil {
			t.Fatal(err)
		}
		// Refused while disabled, the JWT did not use its jti up.
		if _, _, err := f.e.VerifyForeignJWT(ctx, f.sign(t, jose.ES256, "ec", c), aud); err != nil {
			t.Fatalf("enabled again: %v", err)
		}
	})
}

// TestTrustedIssuersDelegated: the engine refuses every write of a
// trusted issuer by a delegated admin, whatever its scope.
func TestTrustedIssuersDelegated(t *testing.T) {
	f := newForeignFixture(t)
	ctx := engine.WithAdminScope(context.Background(), "keyhook:trusted_issuers.write keyhook:clients.write")
	doc, _ := f.e.TrustedIssuerDoc(context.Background(), "one")
	doc.AllowedSubjects = []string{"*"}
	for name, err := range map[string]error{
		"create": func() error {
			d := *doc
			d.Name = "mine"
			d.Issuer = "https://mine.example"
			_, err := f.e.CreateTrustedIssuer(ctx, &d)
			return err
		}(),
		"replace": func() error { _, err := f.e.ReplaceTrustedIssuer(ctx, "one", doc); return err }(),
		"delete":  f.e.DeleteTrustedIssuer(ctx, "one"),
	} {
		if !errors.Is(err, engine.CodeInsufficientScope) {
			t.Errorf("%s by a delegated admin: %v", name, err)
		}
	}
	if got, _ := f.e.TrustedIssuerDoc(context.Background(), "one"); len(got.AllowedSubjects) != 0 {
		t.Fatalf("changed: %+v", got)
	}
}
