package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// This file verifies JWTs signed by trusted issuers (trustedissuer.go):
// the assertions of the JWT bearer grant (RFC 7523 §3) and, for any
// other caller, any JWT a trusted issuer signed. The checks are those of
// client assertions (clientauth.go), made for another party's JWTs.

// MaxForeignJWTBytes bounds a trusted issuer's JWT as received.
const MaxForeignJWTBytes = 16 << 10

// foreignSkew is how far iat and nbf may be ahead of this server's clock.
const foreignSkew = time.Minute

// ForeignJWT is a verified JWT of a trusted issuer.
type ForeignJWT struct {
	// Header and Claims are as the JWT carries them.
	Header map[string]any
	Claims map[string]any
	// The registered claims (RFC 7519 §4.1) the checks read.
	Issuer, Subject, ID string
	Audience            []string
	Expiry              time.Time
	// IssuedAt is zero when the JWT has no iat.
	IssuedAt time.Time
}

// foreignJTIKey is the key the replay store (JTIStore) keeps a trusted
// issuer's jti values under: jti is unique per issuer (RFC 7519 §4.1.7).
// No client_id holds a "/" (clientIDPattern), so it never meets a
// client's key.
func foreignJTIKey(iss string) string { return "iss/" + iss }

// VerifyForeignJWT verifies raw, a compact JWS signed by a trusted
// issuer: its iss names an enabled trusted issuer, a key of that issuer
// verifies its signature with an asymmetric algorithm, its aud holds one
// of audiences, exp is in the future and not further than the issuer's
// max_assertion_lifetime after iat (or now), iat and nbf are not in the
// future, and its jti was not seen before (recorded until exp, on the
// shared store, so across instances). Who may present it and which
// subjects it may name are the caller's to check (TrustedIssuer's
// AllowsClient and AllowsSubject). Errors are *Error with invalid_grant
// (RFC 7523 §3.1), or temporarily_unavailable when the store fails.
func (e *Engine) VerifyForeignJWT(ctx context.Context, raw string, audiences []string) (*ForeignJWT, *TrustedIssuer, error) {
	fj, ti, err := e.verifyForeignJWT(ctx, raw, audiences)
	if err != nil {
		return nil, nil, err
	}
	if err := e.useForeignJTI(ctx, fj); err != nil {
		return nil, nil, err
	}
	return fj, ti, nil
}

func badForeignJWT(desc string) *Error { return Errorf(CodeInvalidGrant, "%s", desc) }

// verifyForeignJWT is VerifyForeignJWT but the jti replay check, so that
// a JWT refused for another reason does not burn its jti.
func (e *Engine) verifyForeignJWT(ctx context.Context, raw string, audiences []string) (*ForeignJWT, *TrustedIssuer, error) {
	if len(raw) > MaxForeignJWTBytes {
		return nil, nil, badForeignJWT("the assertion is too large")
	}
	st, err := e.trustedIssuerStore()
	if err != nil {
		return nil, nil, err
	}
	tok, err := parseAssertion(raw)
	if err != nil {
		return nil, nil, badForeignJWT("the assertion is not a valid signed JWT")
	}
	header, err := jwsHeader(raw)
	if err != nil {
		return nil, nil, badForeignJWT("the assertion is not a valid signed JWT")
	}
	// Only signatures: an HMAC "verified" with a public key would take
	// anyone's word (RFC 8725 §2.1, §3.1).
	if !slices.Contains(privateKeyAlgs, tok.alg) {
		return nil, nil, badForeignJWT("the assertion must be signed with one of " + strings.Join(privateKeyAlgs, ", "))
	}
	var unverified jwt.Claims
	if err := tok.unverifiedClaims(&unverified); err != nil || unverified.Issuer == "" {
		return nil, nil, badForeignJWT("the assertion has no iss")
	}
	ti, err := st.TrustedIssuerByIssuer(ctx, unverified.Issuer)
	if errors.Is(err, ErrNotFound) || (err == nil && !ti.Enabled) {
		return nil, nil, badForeignJWT("the assertion's issuer is not trusted")
	}
	if err != nil {
		return nil, nil, storeFailure(err)
	}
	keys, err := e.issuerKeys(ctx, ti)
	if err != nil {
		return nil, nil, err
	}
	var cl jwt.Claims
	verified := false
	for _, k := range keys {
		if k.Use == "enc" || (tok.kid != "" && k.KeyID != tok.kid) || (k.Algorithm != "" && !sameAlg(k.Algorithm, tok.alg)) {
			continue
		}
		if _, sym := k.Key.([]byte); sym {
			continue
		}
		if tok.claims(k.Public().Key, &cl) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, nil, badForeignJWT("the assertion's signature does not verify with the issuer's keys")
	}
	var all map[string]any
	if err := tok.allClaims(&all); err != nil {
		return nil, nil, badForeignJWT("the assertion's claims cannot be read")
	}
	if err := e.checkForeignClaims(ti, &cl, audiences); err != nil {
		return nil, nil, err
	}
	fj := &ForeignJWT{Header: header, Claims: all, Issuer: cl.Issuer, Subject: cl.Subject, ID: cl.ID,
		Audience: []string(cl.Audience), Expiry: cl.Expiry.Time()}
	if cl.IssuedAt != nil {
		fj.IssuedAt = cl.IssuedAt.Time()
	}
	return fj, ti, nil
}

// checkForeignClaims checks the registered claims (RFC 7523 §3 items
// 1-7) but the jti's novelty.
func (e *Engine) checkForeignClaims(ti *TrustedIssuer, cl *jwt.Claims, audiences []string) error {
	now := e.now()
	if cl.Issuer != ti.Issuer {
		return badForeignJWT("the assertion's issuer is not trusted")
	}
	if cl.Subject == "" {
		return badForeignJWT("the assertion has no sub")
	}
	// RFC 7523 §3 item 3: aud contains a value that identifies this
	// server.
	if !slices.ContainsFunc(cl.Audience, func(a string) bool { return slices.Contains(audiences, a) }) {
		return badForeignJWT("the assertion's aud must contain this server's issuer or token endpoint URL")
	}
	if cl.Expiry == nil {
		return badForeignJWT("the assertion has no exp")
	}
	exp := cl.Expiry.Time()
	if !now.Before(exp) {
		return badForeignJWT("the assertion has expired")
	}
	start := now
	if cl.IssuedAt != nil {
		iat := cl.IssuedAt.Time()
		if iat.After(now.Add(foreignSkew)) {
			return badForeignJWT("the assertion's iat is in the future")
		}
		start = iat
	}
	if exp.Sub(start) > time.Duration(ti.MaxLifetime)*time.Second {
		return badForeignJWT("the assertion lives longer than its issuer's max_assertion_lifetime")
	}
	if cl.NotBefore != nil && cl.NotBefore.Time().After(now.Add(foreignSkew)) {
		return badForeignJWT("the assertion is not valid yet (nbf)")
	}
	if cl.ID == "" {
		return badForeignJWT("the assertion has no jti")
	}
	return nil
}

// useForeignJTI records fj's jti until its exp; a second use is refused
// (RFC 7523 §3 item 7).
func (e *Engine) useForeignJTI(ctx context.Context, fj *ForeignJWT) error {
	err := e.st.JTIs.UseJTI(ctx, foreignJTIKey(fj.Issuer), fj.ID, fj.Expiry)
	if errors.Is(err, ErrConflict) {
		return badForeignJWT("the assertion's jti was used before")
	}
	if err != nil {
		return storeFailure(err)
	}
	return nil
}

// issuerKeys is ti's JWK Set, inline or from its jwks_uri (fetched and
// cached as clients' are, with the same guards).
func (e *Engine) issuerKeys(ctx context.Context, ti *TrustedIssuer) ([]jose.JSONWebKey, error) {
	if ti.JWKS != "" {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(ti.JWKS), &set); err != nil {
			return nil, Wrap(CodeServerError, err, "the trusted issuer's jwks cannot be read")
		}
		return set.Keys, nil
	}
	set, err := e.jwks.fetch(ctx, ti.JWKSURI)
	if err != nil {
		return nil, Wrap(CodeInvalidGrant, err, "the assertion's issuer keys cannot be fetched")
	}
	return set.Keys, nil
}

// jwsHeader decodes the protected header of a compact JWS.
func jwsHeader(raw string) (map[string]any, error) {
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// allClaims reads every claim of an assertion whose signature claims
// has verified.
func (a *signedAssertion) allClaims(out *map[string]any) error {
	if a.tok != nil {
		return a.tok.UnsafeClaimsWithoutVerification(out)
	}
	return json.Unmarshal(a.payload, out)
}
