package engine

import (
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
// built only when a script will run.
func (sc *scriptCall) context(phase hooks.Phase, t *Token) map[string]any {
	c := sc.client
	grants := make([]any, len(c.GrantTypes))
	for i, g := range c.GrantTypes {
		grants[i] = string(g)
	}
	attrs := make(map[string]any, len(c.Attributes))
	for k, v := range c.Attributes {
		attrs[k] = v
	}
	m := map[string]any{
		"phase": string(phase),
		"client": map[string]any{
			"client_id": c.ID, "client_name": c.Name, "scope": c.Scope,
			"grant_types": grants, "attributes": attrs,
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
			"issued_at": t.IssuedAt.Unix(), "expires_at": t.ExpiresAt.Unix(), "claims": copyClaims(t.Claims),
		}
		if t.Format == FormatJWT {
			tm["jti"] = t.ID
		}
		m["token"] = tm
	}
	if sc.user != nil {
		m["user"] = map[string]any{"username": sc.user.Username, "claims": copyClaims(sc.user.Claims)}
	}
	return m
}

func copyClaims(c map[string]any) map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

func requestMap(r *RequestInfo) map[string]any {
	if r == nil {
		return map[string]any{"method": "", "headers": map[string]any{}, "params": map[string]any{}}
	}
	h := make(map[string]any, len(r.Headers))
	for k, v := range r.Headers {
		h[k] = v
	}
	p := make(map[string]any, len(r.Params))
	for k, v := range r.Params {
		p[k] = v
	}
	return map[string]any{"method": r.Method, "headers": h, "params": p}
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
