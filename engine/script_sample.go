package engine

import (
	"context"
	"errors"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// SourceProblem is one reason a script's source does not compile, at its
// line and column (1-based, as the runtime reports them).
type SourceProblem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

// CheckScriptSource compiles src as a script's source, without running
// any of it, and returns why it does not compile: no problems when it
// does (docs/console.md). It is what every write of a script checks; a
// source over the runtime's size limit is a 400, as it is there.
func (e *Engine) CheckScriptSource(src string) ([]SourceProblem, error) {
	if e.hooks == nil {
		return nil, Errorf(CodeServerError, "scripts are not enabled")
	}
	if src == "" {
		return nil, fieldError("source", "is required")
	}
	err := e.hooks.Runtime().Check("source", src)
	if err == nil {
		return []SourceProblem{}, nil
	}
	var se *hooks.SyntaxError
	if errors.As(err, &se) {
		return []SourceProblem{{Line: se.Line, Column: se.Column, Message: se.Message}}, nil
	}
	return nil, fieldError("source", "%v", err)
}

// ScriptSample is an input for a dry run (DryRunRequest's function, args
// and context) shaped as a real call of function would be for a token of
// one client: the same code builds it as builds the input of real calls.
type ScriptSample struct {
	Function string         `json:"function"`
	Args     []any          `json:"args"`
	Context  map[string]any `json:"context"`
}

// sampleFunctions are the functions ScriptSample can make an input for.
var sampleFunctions = map[hooks.Function]bool{
	hooks.FnModifyResponse: true, hooks.FnModifyAccessToken: true, hooks.FnModifyRefreshToken: true,
	hooks.FnAccessTokenLifetime: true, hooks.FnIDTokenLifetime: true, hooks.FnRefreshTokenLifetime: true,
}

// ScriptSample makes the input of a call of function for an access token
// that client clientID would get with the client_credentials grant (a
// refresh token for modifyRefreshToken), issued now: for modifyResponse
// the introspection answer of that token and the introspection context,
// for the others the token's claims and the token endpoint's context.
// Nothing is issued or stored.
func (e *Engine) ScriptSample(ctx context.Context, clientID string, function string) (*ScriptSample, error) {
	fn := hooks.Function(function)
	if fn == "" {
		fn = hooks.FnModifyResponse
	}
	if !sampleFunctions[fn] {
		return nil, fieldError("function", "must be one of modifyResponse, modifyAccessToken, modifyRefreshToken, "+
			"getAccessTokenLifetimeInSeconds, getIdTokenLifetimeInSeconds, getRefreshTokenLifetimeInSeconds")
	}
	c, err := e.st.Clients.ClientByID(ctx, clientID)
	if err != nil {
		return nil, adminErr(err, "client", clientID)
	}
	now := e.now().Truncate(time.Second)
	p := e.Properties()
	lifetime := p.AccessTokenLifetime
	if c.AccessTokenLifetime > 0 {
		lifetime = c.AccessTokenLifetime
	}
	t := &Token{Kind: KindAccess, Format: FormatOpaque, ClientID: c.ID, Subject: c.ID, Scope: c.Scope,
		GrantType: GrantClientCredentials, Audience: []string{c.ID}, IssuedAt: now, ID: TokenHash(randomToken())}
	if c.AccessTokenAsJWT {
		t.Format, t.ID = FormatJWT, randomID()
	}
	sc := &scriptCall{e: e, client: c, ctx: ctx,
		req: &RequestInfo{Method: "POST", Header: map[string][]string{}, Params: map[string][]string{}}}
	out := &ScriptSample{Function: string(fn)}
	switch fn {
	case hooks.FnModifyResponse:
		t.ExpiresAt = now.Add(time.Duration(lifetime) * time.Second)
		sc.caller = c.ID
		sc.req.Params["token_type_hint"] = []string{"access_token"}
		out.Args = []any{e.introspectionFields(t)}
		out.Context = resolveContext(sc.context(hooks.PhaseIntrospection, t))
	case hooks.FnModifyAccessToken:
		t.ExpiresAt = now.Add(time.Duration(lifetime) * time.Second)
		sc.req.Params["grant_type"] = []string{string(GrantClientCredentials)}
		header := map[string]any{}
		if t.Format == FormatJWT {
			if k := e.currentKey(); k != nil {
				header = map[string]any{"alg": string(k.alg), "kid": k.kid, "typ": typAccessToken}
			}
		}
		out.Args = []any{tokenArg(header, e.accessClaims(t))}
		out.Context = resolveContext(sc.context(hooks.PhaseToken, t))
	case hooks.FnModifyRefreshToken:
		rl := p.RefreshTokenLifetime
		if c.RefreshTokenLifetime > 0 {
			rl = c.RefreshTokenLifetime
		}
		t.Kind, t.Format, t.ExpiresAt = KindRefresh, FormatOpaque, now.Add(time.Duration(rl)*time.Second)
		sc.req.Params["grant_type"] = []string{string(GrantClientCredentials)}
		out.Args = []any{tokenArg(nil, refreshClaims(t))}
		out.Context = resolveContext(sc.context(hooks.PhaseToken, t))
	default: // the lifetime functions: expires_at is not known yet
		sc.req.Params["grant_type"] = []string{string(GrantClientCredentials)}
		out.Args = []any{}
		out.Context = resolveContext(sc.context(hooks.PhaseToken, t))
	}
	return out, nil
}

// resolveContext is hctx with its lazy values computed, as JSON can carry
// it.
func resolveContext(hctx map[string]any) map[string]any {
	for k, v := range hctx {
		if lz, ok := v.(hooks.Lazy); ok {
			hctx[k] = lz.Value()
		}
	}
	return hctx
}
