package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// trustedExchangeToken verifies value, a JWT of another issuer presented
// as the subject_token or actor_token of a token exchange by client c,
// with the trusted issuers (docs/jwt-bearer.md, docs/token-exchange.md):
// the checks of a JWT bearer assertion (signature by the issuer's keys,
// exp within max_assertion_lifetime, iat, nbf, a jti) except that its
// jti is not spent, since a token a client holds may be exchanged more
// than once (for several audiences) until it expires, unless its aud
// names this server: an assertion is used once. Its aud must name this
// server or the client that presents it (which received it as a
// resource server), the issuer must allow the client, and the subject
// must be one the issuer may name. The token's scope is what its scope
// claim and the issuer's allowed_scopes share. Every refusal is
// invalid_request (RFC 8693 §2.2.2), saying no more than which check.
func (e *Engine) trustedExchangeToken(ctx context.Context, c *Client, which, value string) (*ExchangeToken, error) {
	if c == nil {
		return nil, Errorf(CodeInvalidRequest, "%s: no trusted issuer for it", which)
	}
	ours := []string{e.cfg.Issuer, e.cfg.Issuer + PathToken}
	fj, ti, err := e.verifyForeignJWT(ctx, value, append(ours, c.ID))
	if err != nil {
		return nil, asExchangeRefusal(which, err)
	}
	if !ti.AllowsClient(c.ID) {
		// As for an unknown issuer: a client learns nothing of the
		// issuers trusted for others.
		return nil, Errorf(CodeInvalidRequest, "%s: the token's issuer is not trusted", which)
	}
	if fj.Subject == "" || !ti.AllowsSubject(fj.Subject) {
		return nil, Errorf(CodeInvalidRequest, "%s: the token's subject is not allowed by its issuer", which)
	}
	if !fj.Expiry.After(e.now()) {
		return nil, Errorf(CodeInvalidRequest, "%s has expired", which)
	}
	if slices.ContainsFunc(fj.Audience, func(a string) bool { return slices.Contains(ours, a) }) {
		// A JWT addressed to this server is an assertion (RFC 7523):
		// one use, here or at the JWT bearer grant, whichever comes
		// first. One the client received as a resource server may be
		// exchanged again until it expires.
		if err := e.useForeignJTI(ctx, fj); err != nil {
			return nil, asExchangeRefusal(which, err)
		}
	}
	scope, _ := fj.Claims["scope"].(string)
	x := &ExchangeToken{
		Issuer: fj.Issuer, TrustedIssuer: ti.Name, Subject: fj.Subject,
		Scope: intersectScope(scope, strings.Join(ti.AllowedScopes, " ")), ExpiresAt: fj.Expiry,
	}
	if id, ok := fj.Claims["client_id"].(string); ok {
		x.ClientID = id
	}
	if act, ok := fj.Claims["act"].(map[string]any); ok {
		x.Act = act
	}
	x.MayAct, x.HasMayAct = fj.Claims["may_act"]
	return x, nil
}

// asExchangeRefusal is a trusted issuer's refusal of a JWT (invalid_grant,
// as for an assertion) as token exchange answers it: invalid_request
// naming the parameter (RFC 8693 §2.2.2). A store failure stays one.
func asExchangeRefusal(which string, err error) error {
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != CodeInvalidGrant {
		return err
	}
	desc := strings.ReplaceAll(oe.Description, "the assertion", "the token")
	if strings.Contains(desc, "aud") && !strings.Contains(desc, "jti") {
		desc = "the token's aud names neither this server nor the client"
	}
	return Errorf(CodeInvalidRequest, "%s: %s", which, desc)
}
