package engine

import (
	"strings"

	"github.com/keyhook/keyhook/hooks"
)

// scriptCall gathers what the context of a script call is made of.
type scriptCall struct {
	e      *Engine
	client *Client
	user   *User
	caller string
	req    *RequestInfo
}

// context builds the read-only context argument of CONTRACT §7. It is
// built only when a script will run. The runtime only reads what it is
// given, lazily and during the call, so the maps of the client, token,
// user and request are passed as they are, not copied.
func (sc *scriptCall) context(phase hooks.Phase, t *Token) map[string]any {
	c := sc.client
	grants := make([]string, len(c.GrantTypes))
	for i, g := range c.GrantTypes {
		grants[i] = string(g)
	}
	m := map[string]any{
		"phase": string(phase),
		"client": map[string]any{
			"client_id": c.ID, "client_name": c.Name, "scope": c.Scope,
			"grant_types": grants, "attributes": orEmpty(c.Attributes),
		},
		"user":    nil,
		"request": requestMap(sc.req),
	}
	if sc.caller != "" {
		m["caller"] = map[string]any{"client_id": sc.caller}
	}
	if t != nil {
		tm := map[string]any{
			"type": string(t.Kind), "format": string(t.Format), "client_id": t.ClientID,
			"subject": t.Subject, "username": t.Username, "scope": t.Scope, "grant_type": string(t.GrantType),
			"issued_at": t.IssuedAt.Unix(), "expires_at": t.ExpiresAt.Unix(), "claims": orEmpty(t.Claims),
		}
		if t.Format == FormatJWT {
			tm["jti"] = t.ID
		}
		m["token"] = tm
	}
	if sc.user != nil {
		m["user"] = map[string]any{"username": sc.user.Username, "claims": orEmpty(sc.user.Claims)}
	}
	return m
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
