package engine

import (
	"context"
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

// scriptCall gathers what the context of a script call is made of. It is
// used by one goroutine, the request's.
type scriptCall struct {
	e      *Engine
	client *Client
	caller string
	req    *RequestInfo

	// user is the token's user; when it is nil and username is set, it
	// is loaded (with ctx) the first time a script reads context.user.
	user       *User
	username   string
	ctx        context.Context
	userLoaded bool
	// registration is context.registration, for validateRegistration
	// (register.go); nil otherwise.
	registration map[string]any
}

// context builds the read-only context argument (docs/scripts.md). It is
// built only when a script will run, and its costlier parts (client,
// token, user, request) only when a script reads them (hooks.Lazy). The
// runtime only reads what it is given, during the call, so maps of the
// client, token, user and request are passed as they are, not copied.
func (sc *scriptCall) context(phase hooks.Phase, t *Token) map[string]any {
	// The lazy values are pointers converted to types with a Value
	// method, so that making them allocates nothing.
	m := map[string]any{
		"phase":   string(phase),
		"client":  (*lazyClient)(sc),
		"user":    (*lazyUser)(sc),
		"request": (*lazyRequest)(sc),
	}
	if sc.caller != "" {
		m["caller"] = map[string]any{"client_id": sc.caller}
	}
	if sc.registration != nil {
		m["registration"] = sc.registration
	}
	if t != nil {
		// Read during the calls this context is made for: issuance goes
		// on changing t afterwards (lifetimes, claims), and each phase
		// makes its own context.
		m["token"] = (*lazyToken)(t)
	}
	return m
}

type (
	lazyClient  scriptCall
	lazyUser    scriptCall
	lazyRequest scriptCall
	lazyToken   Token
)

func (l *lazyClient) Value() any  { return (*scriptCall)(l).clientMap() }
func (l *lazyUser) Value() any    { return (*scriptCall)(l).userMap() }
func (l *lazyRequest) Value() any { return requestMap(l.req) }
func (l *lazyToken) Value() any   { return tokenMap((*Token)(l)) }

// clientMap is context.client.
func (sc *scriptCall) clientMap() any {
	c := sc.client
	grants := make([]string, len(c.GrantTypes))
	for i, g := range c.GrantTypes {
		grants[i] = string(g)
	}
	return map[string]any{
		"client_id": c.ID, "client_name": c.Name, "scope": c.Scope,
		"grant_types": grants, "attributes": orEmpty(c.Attributes),
	}
}

// userMap is context.user: the user, or nil for tokens without one (and
// when the user can no longer be read).
func (sc *scriptCall) userMap() any {
	if sc.user == nil && sc.username != "" && !sc.userLoaded && sc.e.st.Users != nil {
		sc.userLoaded = true
		sc.user, _ = sc.e.st.Users.UserByName(sc.ctx, sc.username)
	}
	if sc.user == nil {
		return nil
	}
	return map[string]any{"username": sc.user.Username, "claims": orEmpty(sc.user.Claims)}
}

// tokenMap is context.token. expires_at is left out while it is not yet
// known: when the lifetime functions are deciding it.
func tokenMap(t *Token) any {
	tm := map[string]any{
		"type": string(t.Kind), "format": string(t.Format), "client_id": t.ClientID,
		"subject": t.Subject, "username": t.Username, "scope": t.Scope, "grant_type": string(t.GrantType),
		"issued_at": t.IssuedAt.Unix(), "claims": orEmpty(t.Claims),
		"audience": orNone(t.Audience), "resources": orNone(t.Resources),
	}
	if !t.ExpiresAt.IsZero() {
		tm["expires_at"] = t.ExpiresAt.Unix()
	}
	if t.Format == FormatJWT {
		tm["jti"] = t.ID
	}
	if t.JKT != "" {
		tm["cnf"] = cnfClaim(t.JKT)
	}
	return tm
}

// tokenArg is the token argument of modifyAccessToken, modifyIdToken and
// modifyRefreshToken (hooks.TokenArg): header and claims, or the claims
// alone for a refresh token, which has no header.
func tokenArg(header, claims map[string]any) map[string]any {
	if header == nil {
		return map[string]any{"claims": claims}
	}
	return map[string]any{"header": header, "claims": claims}
}

// orNone is l, or an empty list for nil, so scripts always see an array.
func orNone(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// orEmpty is m, or an empty map for nil, so scripts always see an object.
func orEmpty[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// Scripts see the request without its credentials: what a script reads
// it can copy into a token, an introspection answer or a log, where anyone
// who reads those would learn them. The rules err on the side of hiding:
// a header or parameter a script misses is an inconvenience, a leaked one
// is a breach.
var (
	// secretParams are the request parameters that carry credentials:
	// client authentication (RFC 6749 §2.3.1, RFC 7521 §4.2), grants and
	// their proofs (RFC 6749 §4, RFC 7636 §4.5, RFC 7523 §2.1, RFC 8628
	// §3.2 and §3.4, RFC 8693 §2.1), tokens (RFC 7662 §2.1, RFC 7009 §2.1, RFC 6750
	// §2.2), the login form's CSRF token and OIDC's id_token_hint (OIDC
	// Core §3.1.2.1). Any other name ending in _token, or containing
	// secret, password or passwd, is hidden too (see hiddenParam).
	secretParams = map[string]bool{
		"client_secret": true, "client_assertion": true, "assertion": true,
		"password": true, "code": true, "code_verifier": true, "device_code": true, "user_code": true,
		"token": true, "refresh_token": true, "access_token": true, "subject_token": true, "actor_token": true,
		"csrf": true, "csrf_token": true, "id_token_hint": true,
	}
	// secretParamParts hide every parameter whose name contains them.
	secretParamParts = []string{"secret", "password", "passwd"}

	// hiddenHeaderNames are credential headers whose names give nothing
	// away: DPoP proofs (RFC 9449 §4.1).
	hiddenHeaderNames = map[string]bool{"dpop": true}
	// hiddenHeaderParts hide every header whose name contains them:
	// authorization (Authorization, Proxy-Authorization and their
	// forwarded copies), cookies both ways, API keys, session ids, and
	// the many X-…-Token and X-…-Secret headers of gateways and clouds.
	hiddenHeaderParts = []string{
		"authorization", "cookie", "secret", "password", "passwd", "token",
		"api-key", "apikey", "session", "credential",
	}
)

// hiddenHeader reports whether scripts may not see the header called
// name (lower-cased): one of hiddenHeaderNames, a name containing one of
// hiddenHeaderParts, or a name ending in -key (X-Api-Key,
// X-Functions-Key, Ocp-Apim-Subscription-Key). Underscores count as
// hyphens, since some proxies pass X_Api_Key through.
func hiddenHeader(name string) bool {
	name = strings.ReplaceAll(name, "_", "-")
	if hiddenHeaderNames[name] || name == "key" || strings.HasSuffix(name, "-key") {
		return true
	}
	for _, p := range hiddenHeaderParts {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}

// hiddenParam reports whether scripts may not see the request parameter
// called name: one of secretParams, a name ending in _token (a token of
// some kind, while token_type_hint and subject_token_type stay visible),
// or a name containing one of secretParamParts. Parameter names are
// case-sensitive (RFC 6749 §3.1), but a credential is hidden whatever its
// case.
func hiddenParam(name string) bool {
	name = strings.ToLower(name)
	if secretParams[name] || strings.HasSuffix(name, "_token") {
		return true
	}
	for _, p := range secretParamParts {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}

// requestMap is context.request: first values, lower-cased header names,
// credentials removed (hiddenHeader, hiddenParam).
func requestMap(r *RequestInfo) map[string]any {
	if r == nil {
		return map[string]any{"method": "", "headers": map[string]string{}, "params": map[string]string{}}
	}
	headers := make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		if lk := strings.ToLower(k); !hiddenHeader(lk) && len(v) > 0 {
			headers[lk] = v[0]
		}
	}
	params := make(map[string]string, len(r.Params))
	for k, v := range r.Params {
		if !hiddenParam(k) && len(v) > 0 {
			params[k] = v[0]
		}
	}
	return map[string]any{"method": r.Method, "headers": headers, "params": params}
}

// introspectionScripts are the introspection scripts that run for tokens
// of owner: its bound ones, or every enabled one in backward-compatibility
// mode.
func (e *Engine) introspectionScripts(owner *Client) []*hooks.Script {
	if e.hooks == nil {
		return nil
	}
	return e.hooks.Select(hooks.KindIntrospection, owner.IntrospectionScripts,
		e.Properties().IntrospectionScriptBackwardCompatibility)
}
