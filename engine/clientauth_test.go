package engine_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/engine"
)

// hmacAssertion signs an assertion by hand: go-jose refuses to sign with a
// key shorter than the hash output, which is what this test needs.
func hmacAssertion(alg string, h func() hash.Hash, key []byte, id string, now time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	head, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	body, _ := json.Marshal(map[string]any{"iss": id, "sub": id, "aud": testIssuer, "iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(), "jti": "j-" + alg})
	signing := enc(head) + "." + enc(body)
	m := hmac.New(h, key)
	m.Write([]byte(signing))
	return signing + "." + enc(m.Sum(nil))
}

// TestShortHMACSecretAtUse: a client_secret_jwt client stored with a
// secret shorter than its assertion's alg needs (RFC 7518 §3.2), as one
// registered before registration checked it, is refused by name.
func TestShortHMACSecretAtUse(t *testing.T) {
	e, clk, st := newAssertionEngine(t, engine.JWKSURIConfig{})
	for _, tc := range []struct {
		alg    string
		h      func() hash.Hash
		secret int
	}{
		{"HS256", sha256.New, 20},
		{"HS384", sha512.New384, 40},
		{"HS512", sha512.New, 48},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			id, secret := "short-"+tc.alg, strings.Repeat("k", tc.secret)
			if err := st.Clients.CreateClient(context.Background(), &engine.Client{ID: id, AuthMethod: engine.AuthSecretJWT,
				SecretHash: engine.HashSecret(secret), SecretSealed: e.SealForTest(secret),
				GrantTypes: []engine.GrantType{engine.GrantClientCredentials}}); err != nil {
				t.Fatal(err)
			}
			_, err := e.AuthenticateClient(context.Background(), &engine.ClientCredentials{AssertionType: engine.AssertionTypeJWTBearer,
				Assertion: hmacAssertion(tc.alg, tc.h, []byte(secret), id, clk.now())})
			wantCode(t, err, engine.CodeInvalidClient)
			if !strings.Contains(err.Error(), "shorter") {
				t.Fatalf("err = %v, want it to say the secret is too short", err)
			}
		})
	}
}
