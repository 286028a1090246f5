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
}

// context builds the read-only context argument of CONTRACT §7. It is
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
	}
	if !t.ExpiresAt.IsZero() {
		tm["expires_at"] = t.ExpiresAt.Unix()
	}
	if t.Format == FormatJWT {
		tm["jti"] = t.ID
	}
	return tm
}

// orEmpty is m, or an empty map for nil, so scripts always see an object.
func orEmpty[V any](m map[string]V) map[string]V {
	if m == nil {
		return map[string]V{}
	}
	return m
}

// secretParams and hiddenHeaders are never shown to scripts.
var (
	secretParams = map[string]bool{
		"client_secret": true, "client_assertion": true, "password": true, "refresh_token": true,
		"code": true, "code_verifier": true, "token": true,
	}
	hiddenHeaders = map[string]bool{"authorization": true, "cookie": true, "proxy-authorization": true}
)

// requestMap is context.request: first values, lower-cased header names,
// credentials removed.
func requestMap(r *RequestInfo) map[string]any {
	if r == nil {
		return map[string]any{"method": "", "headers": map[string]string{}, "params": map[string]string{}}
	}
	headers := make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		if lk := strings.ToLower(k); !hiddenHeaders[lk] && len(v) > 0 {
			headers[lk] = v[0]
		}
	}
	params := make(map[string]string, len(r.Params))
	for k, v := range r.Params {
		if !secretParams[k] && len(v) > 0 {
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
