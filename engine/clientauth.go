package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionTypeJWTBearer is the client_assertion_type of RFC 7523 §2.2.
const AssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLifetime bounds exp - iat of a client assertion (RFC 7523 §3: a short-lived assertion).
const maxAssertionLifetime = 10 * time.Minute

// ClientCredentials are the credentials a request carries, as parsed by the
// transport (RFC 6749 §2.3, RFC 7523 §2.2).
type ClientCredentials struct {
	// Basic is set when an Authorization: Basic header was sent; its
	// parts are already form-decoded (RFC 6749 §2.3.1).
	Basic                    bool
	BasicID, BasicSecret     string
	ClientID                 string // form client_id
	ClientSecret             string // form client_secret
	AssertionType, Assertion string
	// atPAR says the request is a push to the pushed authorization
	// request endpoint, the one endpoint where an assertion may name
	// that endpoint's URL as its aud (RFC 9126 §2).
	atPAR bool
}

func (c *ClientCredentials) methods() int {
	n := 0
	if c.Basic {
		n++
	}
	if c.ClientSecret != "" {
		n++
	}
	if c.Assertion != "" || c.AssertionType != "" {
		n++
	}
	return n
}

// Empty reports whether the request carries no client identification.
func (c *ClientCredentials) Empty() bool { return c.methods() == 0 && c.ClientID == "" }

var errBadClient = errors.New("client authentication failed")

// errUnknownClient marks a failure for a client_id that is not registered
// (for the auth_failure log; the answer is the same as for a bad secret).
var errUnknownClient = errors.New("unknown client")

func invalidClient(desc string) *Error {
	return &Error{Code: CodeInvalidClient, Description: desc, Err: errBadClient}
}

// authenticateClient authenticates the client of a request with the one
// method registered for it (RFC 6749 §2.3, RFC 7523 §2.2).
func (e *Engine) authenticateClient(ctx context.Context, cred *ClientCredentials) (*Client, error) {
	if cred.methods() > 1 {
		return nil, Errorf(CodeInvalidRequest, "use exactly one client authentication method per request")
	}
	switch {
	case cred.Basic:
		return e.authSecret(ctx, AuthSecretBasic, cred.BasicID, cred.BasicSecret, cred.ClientID)
	case cred.ClientSecret != "":
		return e.authSecret(ctx, AuthSecretPost, cred.ClientID, cred.ClientSecret, "")
	case cred.Assertion != "" || cred.AssertionType != "":
		return e.authAssertion(ctx, cred)
	case cred.ClientID != "":
		c, err := e.clientForAuth(ctx, cred.ClientID)
		if err != nil {
			return nil, err
		}
		if c.AuthMethod != AuthNone {
			return nil, registeredFor(c)
		}
		return c, nil
	}
	return nil, invalidClient("client authentication is required")
}

func (e *Engine) clientForAuth(ctx context.Context, id string) (*Client, error) {
	c, err := e.client(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, &Error{Code: CodeInvalidClient, Description: "client authentication failed", Err: errUnknownClient}
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	return c, nil
}

func (e *Engine) authSecret(ctx context.Context, method AuthMethod, id, secret, formID string) (*Client, error) {
	if id == "" {
		return nil, invalidClient("client authentication failed")
	}
	if formID != "" && formID != id {
		return nil, Errorf(CodeInvalidRequest, "client_id does not match the authenticated client")
	}
	c, err := e.client(ctx, id)
	if errors.Is(err, ErrNotFound) {
		VerifySecret(dummySecretHash, secret) // same cost as a known client
		return nil, &Error{Code: CodeInvalidClient, Description: "client authentication failed", Err: errUnknownClient}
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	// A public client's id in Basic with an empty password is the none
	// method: it proves what a client_id in the body proves, and it is
	// how golang.org/x/oauth2's default AuthStyle first sends a client
	// without a secret. Refused, every such probe would count against
	// the client's address (docs/client-auth.md, docs/auth-limits.md).
	if c.AuthMethod == AuthNone && method == AuthSecretBasic && secret == "" {
		return c, nil
	}
	// A shared-secret client may send its secret either way (as
	// golang.org/x/oauth2's auto-detection retries in the body).
	if c.AuthMethod != AuthSecretBasic && c.AuthMethod != AuthSecretPost {
		VerifySecret(dummySecretHash, secret) // the same cost either way
		return nil, registeredFor(c)
	}
	if !VerifySecret(c.SecretHash, secret) {
		return nil, invalidClient("client authentication failed")
	}
	return c, nil
}

// registeredFor is the answer to a client that used another method than
// the one it is registered for: the description names that method, so a
// misconfigured client can tell what to change.
func registeredFor(c *Client) *Error {
	return invalidClient(fmt.Sprintf("client %s is registered for %s", c.ID, c.AuthMethod))
}

// authAssertion verifies a client_secret_jwt or private_key_jwt assertion
// (RFC 7523 §3, OIDC Core §9).
func (e *Engine) authAssertion(ctx context.Context, cred *ClientCredentials) (*Client, error) {
	if cred.AssertionType != AssertionTypeJWTBearer {
		return nil, invalidClient("client_assertion_type must be " + AssertionTypeJWTBearer)
	}
	if cred.Assertion == "" {
		return nil, Errorf(CodeInvalidRequest, "client_assertion is missing")
	}
	tok, err := parseAssertion(cred.Assertion)
	if err != nil {
		return nil, invalidClient("client_assertion is not a valid signed JWT")
	}
	var unverified jwt.Claims
	if err := tok.unverifiedClaims(&unverified); err != nil || unverified.Issuer == "" {
		return nil, invalidClient("client_assertion has no iss")
	}
	if cred.ClientID != "" && cred.ClientID != unverified.Issuer {
		return nil, invalidClient("client_id does not match the assertion")
	}
	c, err := e.clientForAuth(ctx, unverified.Issuer)
	if err != nil {
		return nil, err
	}
	alg := tok.alg
	hmacAlg := slices.Contains(secretJWTAlgs, alg)
	var key any
	switch c.AuthMethod {
	case AuthSecretJWT:
		if !hmacAlg {
			return nil, invalidClient("client_secret_jwt needs an HS256, HS384 or HS512 assertion")
		}
		secret, err := e.seal.open(c.SecretSealed)
		if err != nil {
			return nil, Wrap(CodeInvalidClient, err, "client authentication failed")
		}
		if n := hmacKeyBytes(alg); len(secret) < n {
			// Registered before secrets were checked: refused by name
			// rather than as a signature that cannot verify.
			return nil, invalidClient(fmt.Sprintf("the client's secret is shorter than the %d bytes %s needs; rotate it", n, alg))
		}
		key = []byte(secret)
	case AuthPrivateKey:
		if hmacAlg {
			return nil, invalidClient("private_key_jwt needs an asymmetric assertion")
		}
		k, err := e.clientKey(ctx, c, tok.kid, alg)
		if err != nil {
			return nil, err
		}
		key = k
	default:
		return nil, registeredFor(c)
	}
	if c.AuthSigningAlg != "" && !sameAlg(c.AuthSigningAlg, alg) {
		return nil, invalidClient("assertion must be signed with " + c.AuthSigningAlg)
	}
	var claims jwt.Claims
	if err := tok.claims(key, &claims); err != nil {
		return nil, invalidClient("client_assertion signature does not verify")
	}
	if err := e.checkAssertionClaims(ctx, c, &claims, cred.atPAR); err != nil {
		return nil, err
	}
	return c, nil
}

func (e *Engine) checkAssertionClaims(ctx context.Context, c *Client, cl *jwt.Claims, atPAR bool) error {
	now := e.now()
	if cl.Issuer != c.ID || cl.Subject != c.ID {
		return invalidClient("assertion iss and sub must be the client_id")
	}
	if !e.assertionAudience(cl.Audience, atPAR) {
		return invalidClient("assertion aud must be the issuer or the token endpoint URL")
	}
	if cl.Expiry == nil || !now.Before(cl.Expiry.Time()) {
		return invalidClient("assertion has expired or has no exp")
	}
	if cl.IssuedAt == nil {
		return invalidClient("assertion has no iat")
	}
	if cl.IssuedAt.Time().After(now.Add(time.Minute)) {
		return invalidClient("assertion iat is in the future")
	}
	if cl.Expiry.Time().Sub(cl.IssuedAt.Time()) > maxAssertionLifetime {
		return invalidClient("assertion lives longer than 10 minutes")
	}
	if cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(time.Minute)) {
		return invalidClient("assertion is not valid yet")
	}
	if cl.ID == "" {
		return invalidClient("assertion has no jti")
	}
	err := e.st.JTIs.UseJTI(ctx, c.ID, cl.ID, cl.Expiry.Time())
	if errors.Is(err, ErrConflict) {
		return invalidClient("assertion jti was used before")
	}
	if err != nil {
		return storeFailure(err)
	}
	return nil
}

// assertionAudience reports whether aud names this server and nothing
// else: the issuer or the token endpoint URL (RFC 7523 §3 item 3), as a
// string or an array holding only those, on every endpoint that accepts
// assertions; at the pushed authorization request endpoint (atPAR) its
// URL too, which RFC 9126 §2 says that endpoint must accept. A value
// naming anyone else could be replayed by them.
func (e *Engine) assertionAudience(aud jwt.Audience, atPAR bool) bool {
	if len(aud) == 0 {
		return false
	}
	for _, a := range aud {
		if a != e.cfg.Issuer && a != e.cfg.Issuer+PathToken && (!atPAR || a != e.cfg.Issuer+PathPAR) {
			return false
		}
	}
	return true
}

// hmacKeyBytes is the shortest client_secret_jwt secret for alg: the size
// of the hash output (RFC 7518 §3.2). An unknown or absent alg gets the
// HS256 floor.
func hmacKeyBytes(alg string) int {
	switch alg {
	case string(jose.HS384):
		return 48
	case string(jose.HS512):
		return 64
	}
	return 32
}

// newHMACSecret is a generated client_secret_jwt secret: 512 random bits,
// long enough for HS512 and so for any alg the client uses.
func newHMACSecret() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(64))
}

// clientKey finds the public key of a private_key_jwt client, inline or
// from its jwks_uri.
func (e *Engine) clientKey(ctx context.Context, c *Client, kid, alg string) (any, error) {
	var set jose.JSONWebKeySet
	switch {
	case c.JWKS != "":
		if err := json.Unmarshal([]byte(c.JWKS), &set); err != nil {
			return nil, Wrap(CodeInvalidClient, err, "the client's jwks cannot be read")
		}
	case c.JWKSURI != "":
		s, err := e.jwks.fetch(ctx, c.JWKSURI)
		if err != nil {
			return nil, Wrap(CodeInvalidClient, err, "the client's jwks_uri cannot be read")
		}
		set = *s
	default:
		return nil, invalidClient("the client has no keys")
	}
	for _, k := range set.Keys {
		if (kid == "" || k.KeyID == kid) && (k.Algorithm == "" || sameAlg(k.Algorithm, alg)) && k.Use != "enc" {
			return k.Public().Key, nil
		}
	}
	return nil, invalidClient("no key of the client matches the assertion")
}
