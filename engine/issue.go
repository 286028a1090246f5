package engine

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// protectedClaims are the claims scripts may not change (docs/sandbox.md).
// act is the token exchange's (RFC 8693 §4.1): only the server says who
// acts for whom. cnf is the DPoP key a token is bound to (RFC 9449 §6),
// which a script may neither remove, change nor add.
var protectedClaims = []string{"iss", "jti", "iat", "nbf", "exp", "client_id", "act", "cnf"}

// protectedHeaderNames are the JWS header fields scripts may not set or
// change: those that choose the key or algorithm a verifier uses (alg,
// kid, jku, jwk, x5u, x5c; RFC 7515 §4.1, RFC 8725 §3.1 and §3.10), that
// change how the payload is read (typ and cty, RFC 7515 §4.1.9–4.1.10 and
// RFC 8725 §3.11; zip, RFC 7516 §4.1.3) or encoded (b64, RFC 7797 §3), or
// that make verifiers refuse the token (crit, RFC 7515 §4.1.11). Other
// fields are the script's to add.
var protectedHeaderNames = []string{"alg", "kid", "typ", "cty", "jku", "x5u", "x5c", "jwk", "crit", "zip", "b64"}

// reservedScopePrefix marks the scopes the admin API checks (keyhook:admin,
// keyhook:<area>.read and keyhook:<area>.write). Only the server grants
// them: a script may keep or drop one the token was granted, never add
// one, or a script bound to any client could open the admin API to it.
const reservedScopePrefix = "keyhook:"

// withoutAddedReservedScopes is scope (a space-separated string, or a
// list of strings as some introspection answers carry) without the
// reserved scopes that granted lacks, and the scopes it dropped.
// Anything else is returned as it is.
func withoutAddedReservedScopes(granted string, scope any) (any, []string) {
	held := func(s string) bool { return !strings.HasPrefix(s, reservedScopePrefix) || hasScope(granted, s) }
	var dropped []string
	switch v := scope.(type) {
	case string:
		kept := make([]string, 0, len(v))
		for _, s := range splitScope(v) {
			if held(s) {
				kept = append(kept, s)
			} else {
				dropped = append(dropped, s)
			}
		}
		if len(dropped) > 0 {
			return strings.Join(kept, " "), dropped
		}
	case []any:
		kept := make([]any, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok && !held(s) {
				dropped = append(dropped, s)
			} else {
				kept = append(kept, x)
			}
		}
		if len(dropped) > 0 {
			return kept, dropped
		}
	}
	return scope, nil
}

// dropAddedReservedScopes removes from fields["scope"] the reserved
// scopes that granted lacks, and logs what it removed with who tried.
func (e *Engine) dropAddedReservedScopes(fields map[string]any, granted string, scripts []*hooks.Script, fn hooks.Function, phase hooks.Phase, clientID string) {
	scope, ok := fields["scope"]
	if !ok {
		return
	}
	kept, dropped := withoutAddedReservedScopes(granted, scope)
	if len(dropped) == 0 {
		return
	}
	fields["scope"] = kept
	names := make([]string, len(scripts))
	for i, s := range scripts {
		names[i] = s.Name
	}
	e.log.Warn("scripts may not add keyhook scopes; dropped", "scopes", dropped, "scripts", names,
		"function", string(fn), "phase", string(phase), "client_id", clientID)
}

// standardAccessClaims are kept in Token fields rather than Token.Claims.
var standardAccessClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"jti": true, "client_id": true, "scope": true, "act": true, "cnf": true,
}

// JWT types (RFC 9068 §2.1, RFC 9701 §5).
const (
	typAccessToken   = "at+jwt"
	typIDToken       = "JWT"
	typIntrospection = "token-introspection+jwt"
)

// issue creates, shapes with scripts, signs and stores the tokens of a
// grant, and answers them (RFC 6749 §5.1). Nothing is answered that was
// not stored.
func (e *Engine) issue(ctx context.Context, g *grant, req *RequestInfo) (*TokenResponse, error) {
	c := g.client
	now := e.now().Truncate(time.Second)
	var updateScripts []*hooks.Script
	if e.hooks != nil {
		updateScripts = e.hooks.Select(hooks.KindUpdateToken, c.UpdateTokenScripts, false)
	}
	if len(updateScripts) > 0 || c.AccessTokenAsJWT && c.RunIntrospectionBeforeJWT {
		// Every script this issuance runs shares one budget.
		ctx = hooks.WithScriptBudget(ctx, e.cfg.ScriptBudget)
	}
	at := &Token{
		Kind: KindAccess, Format: FormatOpaque, ClientID: c.ID, Subject: g.subject(), Scope: g.scope,
		GrantType: g.grantType, FamilyID: g.familyID, Audience: []string{c.ID}, IssuedAt: now, AuthTime: g.authTime,
		JKT: g.jkt,
	}
	if len(g.audience) > 0 {
		// RFC 8707 §2: the token is for the resources asked.
		at.Audience, at.Resources = slices.Clone(g.audience), slices.Clone(g.audience)
	}
	if len(g.logicalAudience) > 0 {
		// RFC 8693 §2.1: and for the audience values asked.
		at.Audience = append(slices.Clone(g.logicalAudience), g.audience...)
	}
	at.Actor = g.act
	var opaque string
	if c.AccessTokenAsJWT || g.issuedTokenType == TokenTypeJWT {
		at.Format, at.ID = FormatJWT, randomID()
	} else {
		// Made before the scripts run: its hash picks the version of a
		// canary script (hooks.WithRolloutKey) as introspection will.
		opaque = randomToken()
		at.ID = TokenHash(opaque)
	}
	ctx = hooks.WithRolloutKey(ctx, at.ID)
	if g.user != nil {
		at.Username = g.user.Username
	}
	sc := &scriptCall{e: e, client: c, user: g.user, req: req}
	var hctx map[string]any
	if len(updateScripts) > 0 {
		hctx = sc.context(hooks.PhaseToken, at)
	}
	lt, err := e.lifetimes(ctx, c, updateScripts, hctx)
	if err != nil {
		return nil, scriptDenied(err)
	}
	at.ExpiresAt = now.Add(time.Duration(lt.access) * time.Second)
	if !g.notAfter.IsZero() && at.ExpiresAt.After(g.notAfter) {
		// An exchanged token does not outlive the tokens it came from.
		at.ExpiresAt = g.notAfter
		lt.access = max(int64(g.notAfter.Sub(now)/time.Second), 0)
	}

	claims := e.accessClaims(at)
	header := map[string]any{}
	if at.Format == FormatJWT {
		if k := e.currentKey(); k != nil {
			header = map[string]any{"alg": string(k.alg), "kid": k.kid, "typ": typAccessToken}
		}
		if c.AccessTokenAsJWT && c.RunIntrospectionBeforeJWT {
			if claims, err = e.introspectionClaims(ctx, sc, at, claims); err != nil {
				return nil, err
			}
		}
	}
	if len(updateScripts) > 0 {
		out, err := e.hooks.Run(ctx, updateScripts, hooks.FnModifyAccessToken,
			tokenArg(header, claims), sc.context(hooks.PhaseToken, at), hooks.StopOnFalse)
		if err != nil {
			return nil, scriptDenied(err)
		}
		if out.FalseBy != "" {
			return nil, Errorf(CodeInvalidGrant, "the access token was refused by script %s", out.FalseBy)
		}
		header, claims = e.acceptEdits(out.Value, header, claims)
		e.dropAddedReservedScopes(claims, at.Scope, updateScripts, hooks.FnModifyAccessToken, hooks.PhaseToken, at.ClientID)
	}
	e.applyAccessClaims(at, claims)

	resp := &TokenResponse{TokenType: "Bearer", ExpiresIn: lt.access, Scope: at.Scope, IssuedTokenType: g.issuedTokenType}
	if at.JKT != "" {
		resp.TokenType = TokenTypeDPoP // RFC 9449 §5
	}
	if at.Format == FormatJWT {
		if resp.AccessToken, at.KeyID, err = e.signJWT(typAccessToken, header, claims); err != nil {
			return nil, Wrap(CodeServerError, err, "the access token could not be signed")
		}
	} else {
		resp.AccessToken = opaque
	}
	tokens := []*Token{at}

	// Token exchange issues the access token alone: a refresh token or
	// an ID token would outlive or widen what was presented.
	exchange := g.grantType == GrantTokenExchange
	if c.HasGrant(GrantRefreshToken) && g.grantType != GrantClientCredentials && g.grantType != GrantJWTBearer && !exchange {
		rt, value, err := e.refreshToken(ctx, sc, g, at, now, lt.refresh, updateScripts)
		if err != nil {
			return nil, err
		}
		if rt != nil {
			tokens = append(tokens, rt)
			resp.RefreshToken = value
		}
	}
	if g.user != nil && hasScope(at.Scope, "openid") && !exchange {
		if resp.IDToken, err = e.idToken(ctx, sc, g, at, now, lt.id, updateScripts); err != nil {
			return nil, err
		}
	}

	switch {
	case g.rotating != nil:
		used := e.now()
		ok, err := e.st.Tokens.RotateRefreshToken(ctx, g.rotating.ID, used, e.successor(g, tokens, resp, used), tokens...)
		if err != nil {
			return nil, storeFailure(err)
		}
		if !ok {
			// Lost a race with another use of the same refresh token
			// within its reuse interval: the winner's answer, if it may
			// be given again.
			if again, err := e.reuseRacedRotation(ctx, g); err != nil || again != nil {
				return again, err
			}
			// Otherwise, or when it ended meanwhile: this is reuse, and
			// ends the family.
			if err := e.st.Tokens.RevokeFamily(ctx, g.familyID); err != nil {
				return nil, storeFailure(err)
			}
			return nil, Errorf(CodeInvalidGrant, "the refresh token was already used")
		}
	case g.redeeming != nil:
		ok, err := e.st.Codes.RedeemCode(ctx, g.redeeming.ID, e.now(), tokens...)
		if err != nil {
			return nil, storeFailure(err)
		}
		if !ok {
			// Lost a race with another redemption of the same code: a
			// replay (RFC 6749 §4.1.2). The winner's tokens were stored
			// with the code's consumption, so this reaches them.
			if err := e.st.Tokens.RevokeFamily(ctx, g.familyID); err != nil {
				return nil, storeFailure(err)
			}
			e.log.Warn("authorization code redeemed concurrently; grant family revoked", "client_id", c.ID, "family", g.familyID)
			return nil, Errorf(CodeInvalidGrant, "the code was already used")
		}
	case g.device != nil:
		ok, err := e.st.Devices.RedeemDeviceGrant(ctx, g.device.ID, e.now(), tokens...)
		if err != nil {
			return nil, storeFailure(err)
		}
		if !ok {
			// Lost a race with another redemption of the same device
			// code: as for an authorization code, the winner's tokens
			// are revoked.
			if err := e.st.Tokens.RevokeFamily(ctx, g.familyID); err != nil {
				return nil, storeFailure(err)
			}
			e.log.Warn("device code redeemed concurrently; grant family revoked", "client_id", c.ID, "family", g.familyID)
			return nil, Errorf(CodeInvalidGrant, "the device_code was already used")
		}
	default:
		if err := e.st.Tokens.CreateTokens(ctx, tokens...); err != nil {
			return nil, storeFailure(err)
		}
	}
	return resp, nil
}

// scriptDenied maps a script's on_error: deny to the token endpoint's
// answer (docs/sandbox.md: 500 server_error).
func scriptDenied(err error) error {
	var d *hooks.DeniedError
	if errors.As(err, &d) {
		return Wrap(CodeServerError, err, "the token was refused because script "+d.Script+" failed")
	}
	return Wrap(CodeServerError, err, "a script failed")
}

func (e *Engine) accessClaims(at *Token) map[string]any {
	claims := map[string]any{
		"iss": e.cfg.Issuer, "sub": at.Subject, "aud": audienceClaim(at.Audience),
		"exp": at.ExpiresAt.Unix(), "iat": at.IssuedAt.Unix(), "nbf": at.IssuedAt.Unix(),
		"client_id": at.ClientID, "scope": at.Scope,
	}
	if at.Format == FormatJWT {
		claims["jti"] = at.ID
	}
	for k, v := range at.Claims {
		claims[k] = v
	}
	if at.Actor != nil {
		claims["act"] = at.Actor
	}
	delete(claims, "cnf")
	if at.JKT != "" {
		claims["cnf"] = cnfClaim(at.JKT) // RFC 9449 §6.1
	}
	return claims
}

// introspectionClaims runs the owning client's introspection scripts on
// the would-be introspection answer of a new JWT access token
// (phase jwt_creation) and adds what they added or changed to its claims.
func (e *Engine) introspectionClaims(ctx context.Context, sc *scriptCall, at *Token, claims map[string]any) (map[string]any, error) {
	scripts := e.introspectionScripts(sc.client)
	if len(scripts) == 0 {
		return claims, nil
	}
	base := e.introspectionFields(at)
	out, err := e.hooks.Run(ctx, scripts, hooks.FnModifyResponse, base, sc.context(hooks.PhaseJWTCreation, at), introspectionChain)
	if err != nil {
		return nil, scriptDenied(err)
	}
	merged := make(map[string]any, len(claims)+len(out.Value))
	for k, v := range claims {
		merged[k] = v
	}
	e.dropAddedReservedScopes(out.Value, at.Scope, scripts, hooks.FnModifyResponse, hooks.PhaseJWTCreation, at.ClientID)
	for k, v := range out.Value {
		if k == "active" || k == "token_type" || slices.Contains(protectedClaims, k) {
			continue
		}
		if old, had := base[k]; had && hooks.Equal(old, v) {
			continue
		}
		merged[k] = v
	}
	return merged, nil
}

// acceptEdits reads header and claims back from a script's token object,
// keeping the protected ones as the server made them.
func (e *Engine) acceptEdits(value map[string]any, header, claims map[string]any) (map[string]any, map[string]any) {
	newClaims, ok1 := value["claims"].(map[string]any)
	newHeader, ok2 := value["header"].(map[string]any)
	if !ok1 {
		newClaims = claims
	}
	if !ok2 {
		newHeader = header
	}
	if changed := hooks.RestoreProtected(claims, newClaims, protectedClaims); len(changed) > 0 {
		e.log.Warn("scripts may not change these claims; edits ignored", "claims", changed)
	}
	if changed := hooks.RestoreProtected(header, newHeader, protectedHeaderNames); len(changed) > 0 {
		e.log.Warn("scripts may not change these header fields; edits ignored", "header", changed)
	}
	return newHeader, newClaims
}

// applyAccessClaims moves standard claims a script may have changed (sub,
// aud, scope) into the token record and keeps the rest as its Claims.
func (e *Engine) applyAccessClaims(at *Token, claims map[string]any) {
	if s, ok := claims["scope"].(string); ok {
		at.Scope = strings.Join(splitScope(s), " ")
	}
	claims["scope"] = at.Scope
	if s, ok := claims["sub"].(string); ok && s != "" {
		at.Subject = s
	}
	claims["sub"] = at.Subject
	if aud := audienceList(claims["aud"]); len(aud) > 0 {
		at.Audience = aud
	}
	claims["aud"] = audienceClaim(at.Audience)
	at.Claims = nil
	for k, v := range claims {
		if !standardAccessClaims[k] {
			if at.Claims == nil {
				at.Claims = map[string]any{}
			}
			at.Claims[k] = v
		}
	}
}

// refreshClaims are the claims modifyRefreshToken sees of rt.
func refreshClaims(rt *Token) map[string]any {
	return map[string]any{
		"client_id": rt.ClientID, "sub": rt.Subject, "scope": rt.Scope,
		"iat": rt.IssuedAt.Unix(), "exp": rt.ExpiresAt.Unix(),
	}
}

func (e *Engine) refreshToken(ctx context.Context, sc *scriptCall, g *grant, at *Token, now time.Time, lifetime int64, scripts []*hooks.Script) (*Token, string, error) {
	scope := at.Scope
	if g.rotating != nil {
		// RFC 6749 §6: the new refresh token's scope is identical to the
		// one presented; a narrower request narrows the access token only,
		// so a later refresh without scope gets the original grant back.
		scope = g.rotating.Scope
	}
	rt := &Token{
		Kind: KindRefresh, Format: FormatOpaque, ClientID: g.client.ID, Subject: at.Subject, Username: at.Username,
		Scope: scope, GrantType: g.grantType, FamilyID: g.familyID, Audience: []string{g.client.ID},
		Resources: slices.Clone(g.granted),
		IssuedAt:  now, ExpiresAt: now.Add(time.Duration(lifetime) * time.Second), AuthTime: g.authTime,
	}
	if g.client.Public() {
		// RFC 9449 §5: a public client's refresh token is bound to the
		// DPoP key too; a confidential client's is not, since the client
		// authenticates when it refreshes.
		rt.JKT = g.jkt
	}
	if len(scripts) > 0 {
		claims := refreshClaims(rt)
		out, err := e.hooks.Run(ctx, scripts, hooks.FnModifyRefreshToken, tokenArg(nil, claims),
			sc.context(hooks.PhaseToken, rt), hooks.StopOnFalse)
		if err != nil {
			return nil, "", scriptDenied(err)
		}
		if out.FalseBy != "" {
			return nil, "", nil
		}
		if edited, ok := out.Value["claims"].(map[string]any); ok {
			for k, v := range edited {
				if k != "client_id" && k != "sub" && k != "scope" && !slices.Contains(protectedClaims, k) {
					if rt.Claims == nil {
						rt.Claims = map[string]any{}
					}
					rt.Claims[k] = v
				}
			}
		}
	}
	value := randomToken()
	rt.ID = TokenHash(value)
	return rt, value, nil
}

// idToken makes the OpenID Connect ID token (OIDC Core §2) with the
// user's claims that the granted scopes release (OIDC Core §5.4).
func (e *Engine) idToken(ctx context.Context, sc *scriptCall, g *grant, at *Token, now time.Time, lifetime int64, scripts []*hooks.Script) (string, error) {
	claims := map[string]any{
		"iss": e.cfg.Issuer, "sub": g.user.Username, "aud": g.client.ID, "azp": g.client.ID,
		"exp": now.Add(time.Duration(lifetime) * time.Second).Unix(), "iat": now.Unix(), "jti": randomID(),
	}
	if !g.authTime.IsZero() {
		claims["auth_time"] = g.authTime.Unix()
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	for k, v := range UserClaims(g.user, at.Scope) {
		if _, taken := claims[k]; !taken {
			claims[k] = v
		}
	}
	header := map[string]any{}
	if k := e.currentKey(); k != nil {
		header = map[string]any{"alg": string(k.alg), "kid": k.kid, "typ": typIDToken}
	}
	if len(scripts) > 0 {
		out, err := e.hooks.Run(ctx, scripts, hooks.FnModifyIDToken, tokenArg(header, claims),
			sc.context(hooks.PhaseToken, at), hooks.DiscardOnFalse)
		if err != nil {
			return "", scriptDenied(err)
		}
		header, claims = e.acceptEdits(out.Value, header, claims)
	}
	s, _, err := e.signJWT(typIDToken, header, claims)
	if err != nil {
		return "", Wrap(CodeServerError, err, "the ID token could not be signed")
	}
	return s, nil
}

// scopeClaims are the user claims each OIDC scope releases (OIDC Core §5.4).
var scopeClaims = map[string][]string{
	"email":   {"email", "email_verified"},
	"phone":   {"phone_number", "phone_number_verified"},
	"address": {"address"},
}

// UserClaims are the claims of u that scope releases: profile releases
// every claim that no other scope governs.
func UserClaims(u *User, scope string) map[string]any {
	out := map[string]any{}
	governed := map[string]bool{}
	for _, names := range scopeClaims {
		for _, n := range names {
			governed[n] = true
		}
	}
	for _, s := range splitScope(scope) {
		if s == "profile" {
			for k, v := range u.Claims {
				if !governed[k] {
					out[k] = v
				}
			}
		}
		for _, n := range scopeClaims[s] {
			if v, ok := u.Claims[n]; ok {
				out[n] = v
			}
		}
	}
	return out
}

func hasScope(scope, s string) bool {
	for _, v := range splitScope(scope) {
		if v == s {
			return true
		}
	}
	return false
}

// audienceClaim is aud as RFC 7519 §4.1.3 allows: one string or a list.
func audienceClaim(aud []string) any {
	if len(aud) == 1 {
		return aud[0]
	}
	out := make([]any, len(aud))
	for i, a := range aud {
		out[i] = a
	}
	return out
}

func audienceList(v any) []string {
	switch a := v.(type) {
	case string:
		if a != "" {
			return []string{a}
		}
	case []any:
		var out []string
		for _, x := range a {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}
