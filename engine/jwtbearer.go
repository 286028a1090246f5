package engine

import (
	"context"
	"slices"
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

// This file is the JWT bearer authorization grant (RFC 7523 §2.1,
// docs/jwt-bearer.md): a client presents a JWT that a trusted issuer
// signed about a subject, and gets an access token for that subject.

// GrantJWTBearer is the grant type of RFC 7523 §2.1.
const GrantJWTBearer GrantType = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// assertionRefused is the answer when a script refuses an assertion: a
// fixed description, which tells nothing of the script.
const assertionRefused = "the assertion was refused"

// tokenAudiences are the aud values that name this server in an
// assertion: its issuer and its token endpoint URL (RFC 7523 §3 item 3).
func (e *Engine) tokenAudiences() []string {
	return []string{e.cfg.Issuer, e.cfg.Issuer + PathToken}
}

// jwtBearerGrant checks the assertion (RFC 7523 §3) and who presents it,
// then lets the client's scripts map or refuse its subject
// (validateAssertion). No refresh token is issued (RFC 7523 §3.1 leaves
// it to the server; a new assertion gets a new token).
func (e *Engine) jwtBearerGrant(ctx context.Context, c *Client, req *TokenRequest) (*grant, error) {
	if e.st.TrustedIssuers == nil {
		return nil, Errorf(CodeUnsupportedGrantType, "trusted issuers are not configured")
	}
	if req.Assertion == "" {
		return nil, Errorf(CodeInvalidRequest, "assertion is missing")
	}
	fj, ti, err := e.verifyForeignJWT(ctx, req.Assertion, e.tokenAudiences())
	if err != nil {
		return nil, err
	}
	// The same answer as for an unknown issuer: a client learns nothing of
	// the issuers trusted for others.
	if !ti.AllowsClient(c.ID) {
		return nil, badForeignJWT("the assertion's issuer is not trusted")
	}
	if !ti.AllowsSubject(fj.Subject) {
		return nil, badForeignJWT("the assertion's subject is not allowed")
	}
	// The scope is within what both the issuer's assertions and the
	// client may have (RFC 6749 §3.3).
	var allowed []string
	for _, s := range splitScope(c.Scope) {
		if slices.Contains(ti.AllowedScopes, s) {
			allowed = append(allowed, s)
		}
	}
	scope, err := grantScope(req.Scope, req.ScopeGiven, strings.Join(allowed, " "))
	if err != nil {
		return nil, err
	}
	res, err := requestedResources(c, req.Resources)
	if err != nil {
		return nil, err
	}
	if err := e.useForeignJTI(ctx, fj); err != nil {
		return nil, err
	}
	sub, err := e.validateAssertion(ctx, c, ti, fj, &req.Request)
	if err != nil {
		return nil, err
	}
	return &grant{client: c, grantType: GrantJWTBearer, sub: sub, scope: scope, audience: res, familyID: randomID()}, nil
}

// assertionArg is the argument of validateAssertion (hooks.AssertionArg).
func assertionArg(ti *TrustedIssuer, fj *ForeignJWT) map[string]any {
	return map[string]any{"header": orEmpty(fj.Header), "claims": orEmpty(fj.Claims), "subject": fj.Subject, "trusted_issuer": ti.Name}
}

// validateAssertion calls validateAssertion(assertion, context) of the
// client's update_token scripts (docs/scripts.md): each may set
// assertion.subject, the subject the token is for, or return false to
// refuse. header, claims and trusted_issuer are for reading; edits to
// them are ignored.
func (e *Engine) validateAssertion(ctx context.Context, c *Client, ti *TrustedIssuer, fj *ForeignJWT, req *RequestInfo) (string, error) {
	if e.hooks == nil {
		return fj.Subject, nil
	}
	scripts := e.hooks.Select(hooks.KindUpdateToken, c.UpdateTokenScripts, false)
	if len(scripts) == 0 {
		return fj.Subject, nil
	}
	ctx = hooks.WithScriptBudget(ctx, e.cfg.ScriptBudget)
	sc := &scriptCall{e: e, client: c, req: req}
	out, err := e.hooks.Run(ctx, scripts, hooks.FnValidateAssertion, assertionArg(ti, fj), sc.context(hooks.PhaseToken, nil), hooks.StopOnFalse)
	if err != nil {
		return "", scriptDenied(err)
	}
	if out.FalseBy != "" {
		e.log.Info("assertion refused by script", "client_id", c.ID, "script", out.FalseBy, "trusted_issuer", ti.Name)
		return "", badForeignJWT(assertionRefused)
	}
	sub, ok := out.Value["subject"].(string)
	if !ok || sub == "" || len(sub) > maxSubjectLength {
		e.log.Warn("assertion refused: a validateAssertion script left subject not a string of 1 to 1024 characters",
			"client_id", c.ID, "trusted_issuer", ti.Name)
		return "", badForeignJWT(assertionRefused)
	}
	return sub, nil
}
