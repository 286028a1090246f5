package engine_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
)

// wantOAuthError checks the property the fuzz targets here share: an
// error is an *engine.Error with one of the codes a client's bad input may
// cause, never a store failure or a server error.
func wantOAuthError(t *testing.T, err error, codes ...engine.ErrorCode) {
	t.Helper()
	if err == nil {
		return
	}
	var oe *engine.Error
	if !errors.As(err, &oe) {
		t.Fatalf("untyped error %v", err)
	}
	for _, c := range codes {
		if oe.Code == c {
			return
		}
	}
	t.Fatalf("error code %s (%v), want one of %v", oe.Code, err, codes)
}

// FuzzClientAssertion feeds client_assertion values (RFC 7523 §2.2) to
// AuthenticateClient for a private_key_jwt and a client_secret_jwt
// client: it must not panic, must answer invalid_client or
// invalid_request, and may authenticate only those two clients.
func FuzzClientAssertion(f *testing.F) {
	e, clk, _ := newAssertionEngine(f, engine.JWKSURIConfig{})
	ctx := context.Background()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hmacKey := []byte(strings.Repeat("h", 64))
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "pk", TokenEndpointAuthMethod: "private_key_jwt",
		JWKS: mustJSON(f, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Use: "sig"}}})}); err != nil {
		f.Fatal(err)
	}
	if _, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "hs", TokenEndpointAuthMethod: "client_secret_jwt", ClientSecret: string(hmacKey)}); err != nil {
		f.Fatal(err)
	}
	f.Add(clientAssertion(f, clk, key, jose.ES256, "k", "pk", testIssuer))
	f.Add(clientAssertion(f, clk, key, jose.ES256, "k", "pk", []string{testIssuer, "https://rs.example"}))
	f.Add(clientAssertion(f, clk, hmacKey, jose.HS512, "", "hs", testIssuer+engine.PathToken))
	f.Fuzz(func(t *testing.T, assertion string) {
		c, err := e.AuthenticateClient(ctx, &engine.ClientCredentials{
			AssertionType: engine.AssertionTypeJWTBearer, Assertion: assertion})
		wantOAuthError(t, err, engine.CodeInvalidClient, engine.CodeInvalidRequest)
		if err == nil && c.ID != "pk" && c.ID != "hs" {
			t.Fatalf("authenticated %q", c.ID)
		}
	})
}

// FuzzJWTAccessToken feeds Bearer values to BearerToken, which parses and
// verifies RFC 9068 JWT access tokens: it must not panic, must answer
// invalid_token, and may accept only the record of the token it issued.
func FuzzJWTAccessToken(f *testing.F) {
	e, _, _ := newAssertionEngine(f, engine.JWKSURIConfig{})
	ctx := context.Background()
	doc, err := e.CreateClient(ctx, &engine.ClientDoc{ClientID: "jwt", AccessTokenAsJWT: true})
	if err != nil {
		f.Fatal(err)
	}
	resp, err := e.Token(ctx, &engine.TokenRequest{GrantType: engine.GrantClientCredentials,
		Credentials: engine.ClientCredentials{Basic: true, BasicID: "jwt", BasicSecret: doc.ClientSecret}})
	if err != nil {
		f.Fatal(err)
	}
	issued, err := e.BearerToken(ctx, resp.AccessToken)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(resp.AccessToken)
	head, _, _ := strings.Cut(resp.AccessToken, ".")
	f.Add(head + ".e30.")
	f.Fuzz(func(t *testing.T, value string) {
		tok, err := e.BearerToken(ctx, value)
		wantOAuthError(t, err, engine.CodeInvalidToken)
		if err == nil && tok.ID != issued.ID {
			t.Fatalf("accepted a token that was never issued: %+v", tok)
		}
	})
}
