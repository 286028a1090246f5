package engine

import (
	"context"
	"errors"
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

// IntrospectionRequest is a parsed RFC 7662 §2.1 request.
type IntrospectionRequest struct {
	Credentials ClientCredentials
	// Bearer is the access token of Authorization: Bearer, or of
	// Authorization: DPoP when Scheme says so, when sent.
	Bearer      string
	BearerGiven bool
	// Scheme is the Authorization scheme of Bearer ("" is Bearer); DPoP
	// the request's proof (RFC 9449 §7).
	Scheme        string
	DPoP          DPoPProof
	Token         string
	TokenTypeHint string
	Request       RequestInfo
}

// Introspection is the answer of RFC 7662 §2.2.
type Introspection struct {
	// Fields is the response object; exactly {"active": false} when the
	// token is not active.
	Fields map[string]any
	// Caller is the client_id of the caller when known (the aud of a JWT
	// answer, RFC 9701 §5).
	Caller string
}

// introspectionChain runs introspection scripts: false discards a script's
// edits, and a script that sets active to false ends the chain, since the
// answer is then {"active": false} whatever later scripts would do.
var introspectionChain = hooks.Chain{Done: func(v map[string]any) bool { return v["active"] == false }}

// inactive is the whole answer for a token that is not active.
func inactive() map[string]any { return map[string]any{"active": false} }

// Introspect answers whether a token is active and what it carries
// (RFC 7662 §2). Caller authorization errors are the only errors besides a
// missing token and storage failures; everything wrong with the token
// itself is {"active": false}.
func (e *Engine) Introspect(ctx context.Context, req *IntrospectionRequest) (*Introspection, error) {
	caller, err := e.introspectionCaller(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.Token == "" {
		return nil, Errorf(CodeInvalidRequest, "token is missing")
	}
	out := &Introspection{Caller: caller, Fields: inactive()}
	t, err := e.lookupToken(ctx, req.Token)
	if err != nil {
		return nil, err
	}
	if t == nil || !t.Active(e.now()) {
		return out, nil
	}
	owner, err := e.client(ctx, t.ClientID)
	if errors.Is(err, ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	fields := e.introspectionFields(t)
	if scripts := e.introspectionScripts(owner); len(scripts) > 0 {
		ctx := hooks.WithRolloutKey(hooks.WithScriptBudget(ctx, e.cfg.ScriptBudget), t.ID)
		sc := &scriptCall{e: e, client: owner, caller: caller, req: &req.Request, username: t.Username, ctx: ctx}
		res, err := e.hooks.Run(ctx, scripts, hooks.FnModifyResponse, fields, sc.context(hooks.PhaseIntrospection, t), introspectionChain)
		var denied *hooks.DeniedError
		if errors.As(err, &denied) {
			return out, nil
		}
		if err != nil {
			return nil, Wrap(CodeServerError, err, "a script failed")
		}
		fields = res.Value
		if fields["active"] == false {
			return out, nil
		}
		// Resource servers grant what the answer's scope says.
		e.dropAddedReservedScopes(fields, t.Scope, scripts, hooks.FnModifyResponse, hooks.PhaseIntrospection, t.ClientID)
		fields["active"] = true
		// The binding is the server's (RFC 9449 §6.2): a resource server
		// that reads an answer without cnf would take the token as a
		// bearer token.
		setBinding(fields, t)
		for k, v := range fields {
			if v == nil {
				delete(fields, k) // RFC 7662 §2.2: absent, never null
			}
		}
	}
	out.Fields = fields
	return out, nil
}

// introspectionCaller authorizes the caller (RFC 7662 §2.1) and returns its
// client_id when known.
func (e *Engine) introspectionCaller(ctx context.Context, req *IntrospectionRequest) (string, error) {
	p := e.Properties()
	if p.IntrospectionSkipAuthorization {
		return "", nil
	}
	if req.BearerGiven {
		scheme := req.Scheme
		if scheme == "" {
			scheme = "Bearer"
		}
		t, err := e.ResourceToken(ctx, &ResourceAccess{Scheme: scheme, Token: req.Bearer, DPoP: req.DPoP})
		if err != nil {
			return "", err
		}
		// The caller is a protected resource (RFC 7662 §2.1, §4), which
		// keeps a secret: a token held by a public client (a browser, a
		// phone) never authorizes introspection, whatever its scope. The
		// client is read as it is now, so a client turned public or
		// deleted since loses the right with it.
		owner, err := e.client(ctx, t.ClientID)
		if errors.Is(err, ErrNotFound) || (err == nil && owner.Public()) {
			return "", Errorf(CodeInvalidToken, "the bearer token was not issued to a confidential client")
		}
		if err != nil {
			return "", storeFailure(err)
		}
		if p.IntrospectionRequiredScope != "" && !hasScope(t.Scope, p.IntrospectionRequiredScope) {
			return "", Errorf(CodeInsufficientScope, "the bearer token lacks scope %s", p.IntrospectionRequiredScope)
		}
		return t.ClientID, nil
	}
	if req.Credentials.Empty() {
		return "", invalidClient("client authentication or a bearer token is required")
	}
	c, err := e.AuthenticateClient(ctx, &req.Credentials)
	if err != nil {
		return "", err
	}
	if c.Public() {
		return "", invalidClient("public clients may not introspect tokens")
	}
	return c.ID, nil
}

// lookupToken finds the record of a presented token, or nil when there is
// none: a JWT must verify with one of the server's keys and is found by
// jti; any other string by its hash. Only storage failures are errors.
func (e *Engine) lookupToken(ctx context.Context, value string) (*Token, error) {
	if value == "" || len(value) > 16<<10 {
		return nil, nil
	}
	id := ""
	if strings.Count(value, ".") == 2 {
		if id = e.verifiedJTI(ctx, value); id == "" {
			return nil, nil
		}
	} else {
		id = TokenHash(value)
	}
	t, err := e.st.Tokens.LookupToken(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if (t.Format == FormatJWT) != (strings.Count(value, ".") == 2) {
		return nil, nil
	}
	return t, nil
}

// introspectionFields is the base answer for an active token
// (RFC 7662 §2.2); absent values are left out.
func (e *Engine) introspectionFields(t *Token) map[string]any {
	m := make(map[string]any, 14+len(t.Claims))
	for k, v := range t.Claims {
		m[k] = v
	}
	m["active"] = true
	m["client_id"] = t.ClientID
	m["iss"] = e.cfg.Issuer
	m["exp"] = t.ExpiresAt.Unix()
	m["iat"] = t.IssuedAt.Unix()
	m["nbf"] = t.IssuedAt.Unix()
	m["token_type"] = "Bearer"
	if t.Kind == KindRefresh {
		m["token_type"] = "refresh_token"
	}
	setBinding(m, t)
	if t.Scope != "" {
		m["scope"] = t.Scope
	}
	if t.Subject != "" {
		m["sub"] = t.Subject
	}
	if len(t.Audience) > 0 {
		m["aud"] = audienceClaim(t.Audience)
	}
	if t.Format == FormatJWT {
		m["jti"] = t.ID
	}
	if t.GrantType != "" {
		m["grant_type"] = string(t.GrantType)
	}
	if t.Username != "" {
		m["username"] = t.Username
	}
	if t.Actor != nil {
		// RFC 8693 §4.1: act belongs in the introspection answer too.
		m["act"] = t.Actor
	}
	return m
}

// SignIntrospection makes the RFC 9701 JWT answer: signed with the current
// key, typ token-introspection+jwt, with iss, aud, iat and
// token_introspection.
func (e *Engine) SignIntrospection(in *Introspection) (string, error) {
	claims := map[string]any{
		"iss": e.cfg.Issuer, "iat": e.now().Unix(), "token_introspection": in.Fields,
	}
	if in.Caller != "" {
		claims["aud"] = in.Caller
	}
	s, _, err := e.signJWT(typIntrospection, nil, claims)
	if err != nil {
		return "", Wrap(CodeServerError, err, "the answer could not be signed")
	}
	return s, nil
}

// RevocationRequest is a parsed RFC 7009 §2.1 request.
type RevocationRequest struct {
	Credentials   ClientCredentials
	Token         string
	TokenTypeHint string
}

// Revoke revokes a token of the authenticated client (RFC 7009 §2).
// Unknown tokens are not an error (RFC 7009 §2.2). Revoking a refresh
// token revokes every token of its grant.
func (e *Engine) Revoke(ctx context.Context, req *RevocationRequest) error {
	c, err := e.AuthenticateClient(ctx, &req.Credentials)
	if err != nil {
		return err
	}
	if req.Token == "" {
		return Errorf(CodeInvalidRequest, "token is missing")
	}
	t, err := e.lookupToken(ctx, req.Token)
	if err != nil || t == nil {
		return err
	}
	if t.ClientID != c.ID {
		return Errorf(CodeUnauthorizedClient, "the token was issued to another client")
	}
	if t.Kind == KindRefresh {
		err = e.st.Tokens.RevokeFamily(ctx, t.FamilyID)
	} else {
		err = e.st.Tokens.RevokeToken(ctx, t.ID)
	}
	if err != nil {
		return storeFailure(err)
	}
	return nil
}

// setBinding writes t's DPoP binding into introspection answer m (RFC
// 9449 §6.2): cnf with the key's thumbprint and, for an access token,
// token_type DPoP; no cnf for a bearer token. It runs again after the
// scripts, since the binding is the server's to say.
func setBinding(m map[string]any, t *Token) {
	delete(m, "cnf")
	if t.JKT == "" {
		return
	}
	m["cnf"] = cnfClaim(t.JKT)
	if t.Kind != KindRefresh {
		m["token_type"] = TokenTypeDPoP
	}
}
