package engine

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// Token exchange (RFC 8693; docs/token-exchange.md).
//
// A confidential client presents a subject_token, and for delegation an
// actor_token, and gets an access token for the subject: with the same
// sub, the requesting client's client_id, a scope no wider than the
// subject token's and the client's, the audience and resources it asked
// for, an expiry no later than the presented tokens', and for delegation
// an act claim naming the actor (RFC 8693 §4.1). Which tokens a client
// may exchange is its token_exchange policy; a script's
// modifyTokenExchange may refuse or narrow the exchange.
//
// Every failure of a presented token, and every refusal by policy or
// script, is invalid_request, as RFC 8693 §2.2.2 requires; audience and
// resource refusals are invalid_target, scope ones invalid_scope.

// GrantTokenExchange is the grant type of RFC 8693 §2.1.
const GrantTokenExchange GrantType = "urn:ietf:params:oauth:grant-type:token-exchange"

// Token type identifiers (RFC 8693 §3).
const (
	TokenTypeAccessToken  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
	TokenTypeIDToken      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT          = "urn:ietf:params:oauth:token-type:jwt"
)

const (
	// MaxExchangeTokenLength bounds a subject_token or actor_token, in
	// bytes (as introspection bounds a token).
	MaxExchangeTokenLength = 16 << 10
	// MaxAudienceParams bounds the audience parameters of one request.
	MaxAudienceParams = 20
	// MaxAudienceLength bounds one audience value, in bytes.
	MaxAudienceLength = 2048
	// MaxExchangePolicyEntries bounds each list of a token_exchange policy.
	MaxExchangePolicyEntries = 100
	// MaxActDepth bounds the nesting of act claims (RFC 8693 §4.1): the
	// actors of one delegation chain.
	MaxActDepth = 8
)

// TokenExchangePolicy is a client's token_exchange metadata: which
// tokens the client may exchange (docs/token-exchange.md). The zero
// policy, a client's default, lets it exchange only its own access
// tokens, without an actor and without audience values: narrowing a
// token it already holds.
type TokenExchangePolicy struct {
	// SubjectClients are the clients whose access tokens this client may
	// present as subject_token, or "*" for any; its own always may be.
	SubjectClients []string `json:"subject_clients"`
	// ActorClients are the clients whose access tokens this client may
	// present as actor_token, or "*" for any; its own always may be.
	ActorClients []string `json:"actor_clients"`
	// AllowImpersonation lets the client exchange another client's
	// token without an actor_token: the new token stands for the subject
	// with nothing saying that this client acts.
	AllowImpersonation bool `json:"allow_impersonation"`
	// AllowDelegation lets the client present an actor_token: the new
	// token carries act (RFC 8693 §4.1).
	AllowDelegation bool `json:"allow_delegation"`
	// Audiences are the audience values (RFC 8693 §2.1) the client may
	// ask for.
	Audiences []string `json:"audiences"`
	// SubjectIssuers are the trusted issuers (by name, or "*" for any;
	// docs/jwt-bearer.md) whose JWTs this client may present as
	// subject_token. Such a token names no client of this server, so it
	// is exchanged as another client's is: with allow_impersonation, or
	// with an actor_token and allow_delegation.
	SubjectIssuers []string `json:"subject_issuers"`
}

// checkTokenExchangePolicy reports why p may not be registered, or nil.
func checkTokenExchangePolicy(p *TokenExchangePolicy) error {
	if p == nil {
		return nil
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"subject_clients", p.SubjectClients}, {"actor_clients", p.ActorClients}} {
		if len(l.list) > MaxExchangePolicyEntries {
			return fmt.Errorf("%s: at most %d entries", l.name, MaxExchangePolicyEntries)
		}
		for i, id := range l.list {
			if id != "*" && !clientIDPattern.MatchString(id) {
				return fmt.Errorf("%s: %q is neither a client_id nor \"*\"", l.name, id)
			}
			if slices.Contains(l.list[:i], id) {
				return fmt.Errorf("%s: %q is listed twice", l.name, id)
			}
		}
		if slices.Contains(l.list, "*") && len(l.list) > 1 {
			return fmt.Errorf("%s: \"*\" stands alone", l.name)
		}
	}
	if len(p.SubjectIssuers) > MaxExchangePolicyEntries {
		return fmt.Errorf("subject_issuers: at most %d entries", MaxExchangePolicyEntries)
	}
	for i, n := range p.SubjectIssuers {
		if n != "*" && !trustedIssuerNamePattern.MatchString(n) {
			return fmt.Errorf("subject_issuers: %q is neither a trusted issuer's name nor \"*\"", n)
		}
		if slices.Contains(p.SubjectIssuers[:i], n) {
			return fmt.Errorf("subject_issuers: %q is listed twice", n)
		}
	}
	if slices.Contains(p.SubjectIssuers, "*") && len(p.SubjectIssuers) > 1 {
		return fmt.Errorf("subject_issuers: \"*\" stands alone")
	}
	if len(p.ActorClients) > 0 && !p.AllowDelegation {
		return fmt.Errorf("actor_clients needs allow_delegation")
	}
	if len(p.Audiences) > MaxExchangePolicyEntries {
		return fmt.Errorf("audiences: at most %d entries", MaxExchangePolicyEntries)
	}
	for i, a := range p.Audiences {
		if err := checkAudience(a); err != nil {
			return fmt.Errorf("audiences: %v", err)
		}
		if slices.Contains(p.Audiences[:i], a) {
			return fmt.Errorf("audiences: %q is listed twice", a)
		}
	}
	return nil
}

// checkAudience reports why s cannot be an audience value: RFC 8693 §2.1
// leaves its form to the server; keyhook takes printable ASCII without
// spaces, as for a scope or a URI.
func checkAudience(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("an audience may not be empty")
	case len(s) > MaxAudienceLength:
		return fmt.Errorf("an audience is at most %d bytes", MaxAudienceLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("an audience is printable ASCII without spaces")
		}
	}
	return nil
}

// policyLists reports whether list names id or is "*".
func policyLists(list []string, id string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, id)
}

// ExchangeToken is a subject_token or actor_token once verified: who it
// stands for and what it allows.
type ExchangeToken struct {
	// Issuer is the iss of a foreign JWT; empty for keyhook's own tokens.
	Issuer string
	// TrustedIssuer is the name of the trusted issuer that verified a
	// foreign JWT, when the trusted issuers did.
	TrustedIssuer string
	Subject       string
	ClientID      string
	// Username is the user of one of keyhook's own tokens, if any.
	Username  string
	Scope     string
	ExpiresAt time.Time
	// Act is the token's own act claim: the actors it already names.
	Act map[string]any
	// MayAct is the token's may_act claim (RFC 8693 §4.4), nil without
	// one; present but not an object, it matches no actor.
	MayAct    any
	HasMayAct bool
	// Record is keyhook's own stored token; nil for a foreign one.
	Record *Token
}

// ForeignTokenVerifier verifies a JWT of another issuer presented for
// token exchange: the trusted issuers (admin-configured issuers and their
// JWKS). It answers ErrNotFound when it trusts no issuer iss, and an
// *Error (invalid_request) when the token does not verify. Without one,
// every foreign JWT is refused.
type ForeignTokenVerifier interface {
	VerifyForeignToken(ctx context.Context, token, tokenType, iss string) (*ExchangeToken, error)
}

// exchangeGrant validates a token exchange request of c (RFC 8693 §2.1)
// and makes the grant of its access token.
func (e *Engine) exchangeGrant(ctx context.Context, c *Client, req *TokenRequest) (*grant, error) {
	issuedType := req.RequestedTokenType
	switch issuedType {
	case "":
		issuedType = TokenTypeAccessToken
	case TokenTypeAccessToken, TokenTypeJWT:
	default:
		return nil, Errorf(CodeInvalidRequest, "requested_token_type %s is not supported; ask for %s or %s",
			shortParam(issuedType), TokenTypeAccessToken, TokenTypeJWT)
	}
	if req.SubjectToken == "" || req.SubjectTokenType == "" {
		return nil, Errorf(CodeInvalidRequest, "subject_token and subject_token_type are required")
	}
	if (req.ActorToken == "") != (req.ActorTokenType == "") {
		return nil, Errorf(CodeInvalidRequest, "actor_token and actor_token_type go together")
	}
	policy := c.TokenExchange
	if policy == nil {
		policy = &TokenExchangePolicy{}
	}
	// The cheap checks of the request come before any token is looked up.
	audiences, err := requestedAudiences(policy, req.Audiences)
	if err != nil {
		return nil, err
	}
	resources, err := requestedResources(c, req.Resources)
	if err != nil {
		return nil, err
	}
	if req.ActorToken != "" && !policy.AllowDelegation {
		return nil, Errorf(CodeInvalidRequest, "the client may not exchange tokens for delegation (actor_token)")
	}

	sub, err := e.exchangeToken(ctx, c, "subject_token", req.SubjectToken, req.SubjectTokenType)
	if err != nil {
		return nil, err
	}
	switch {
	case sub.Issuer != "" && (sub.TrustedIssuer == "" || !policyLists(policy.SubjectIssuers, sub.TrustedIssuer)):
		return nil, Errorf(CodeInvalidRequest, "the client may not exchange tokens of issuer %s", shortParam(sub.Issuer))
	case sub.Issuer == "" && sub.ClientID != c.ID && !policyLists(policy.SubjectClients, sub.ClientID):
		return nil, Errorf(CodeInvalidRequest, "the client may not exchange tokens issued to client %s", shortParam(sub.ClientID))
	}
	var actor *ExchangeToken
	if req.ActorToken != "" {
		if actor, err = e.exchangeToken(ctx, c, "actor_token", req.ActorToken, req.ActorTokenType); err != nil {
			return nil, err
		}
		if actor.Issuer != "" || (actor.ClientID != c.ID && !policyLists(policy.ActorClients, actor.ClientID)) {
			return nil, Errorf(CodeInvalidRequest, "the client may not present actor tokens issued to client %s", shortParam(actor.ClientID))
		}
		if !mayAct(sub, actor) {
			// RFC 8693 §4.4: the subject token names who may act for it.
			return nil, Errorf(CodeInvalidRequest, "the actor is not allowed to act for the subject (may_act)")
		}
	} else if (sub.Issuer != "" || sub.ClientID != c.ID) && !policy.AllowImpersonation {
		return nil, Errorf(CodeInvalidRequest, "the client may not exchange another client's token without an actor_token")
	}
	act, err := exchangeAct(sub, actor)
	if err != nil {
		return nil, err
	}

	// Down-scoping only: within the subject token's scope and the
	// client's.
	allowed := intersectScope(sub.Scope, c.Scope)
	scope, err := grantScope(req.Scope, req.ScopeGiven, allowed)
	if err != nil {
		return nil, err
	}

	var u *User
	if sub.Username != "" {
		if u, err = e.activeUser(ctx, sub.Username, CodeInvalidRequest); err != nil {
			return nil, err
		}
	}
	sc := &scriptCall{e: e, client: c, user: u, req: &req.Request}
	if scope, audiences, resources, err = e.runExchangeScripts(ctx, sc, c, policy, sub, actor, issuedType, scope, allowed, audiences, resources); err != nil {
		return nil, err
	}

	g := &grant{
		client: c, grantType: GrantTokenExchange, user: u, scope: scope, audience: resources,
		logicalAudience: audiences, sub: sub.Subject, act: act, issuedTokenType: issuedType,
		notAfter: sub.ExpiresAt, familyID: randomID(),
	}
	if actor != nil && actor.ExpiresAt.Before(g.notAfter) {
		g.notAfter = actor.ExpiresAt
	}
	if sub.Record != nil {
		// Exchanged tokens join the subject token's grant family: what
		// ends that grant (revoking its refresh token, a replayed code or
		// refresh token) ends them too.
		g.familyID, g.authTime = sub.Record.FamilyID, sub.Record.AuthTime
	}
	return g, nil
}

// shortParam quotes a value from the request for an error description,
// cut short: descriptions are not a place to echo kilobytes back.
func shortParam(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// requestedAudiences validates the audience parameters (RFC 8693 §2.1):
// each well formed and in the policy's audiences; no duplicates, in the
// request's order.
func requestedAudiences(p *TokenExchangePolicy, requested []string) ([]string, error) {
	if len(requested) > MaxAudienceParams {
		return nil, invalidTarget("at most %d audience parameters", MaxAudienceParams)
	}
	var out []string
	for _, a := range requested {
		if err := checkAudience(a); err != nil {
			return nil, invalidTarget("%v", err)
		}
		if !slices.Contains(p.Audiences, a) {
			return nil, invalidTarget("audience %s is not allowed for this client", shortParam(a))
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// intersectScope is the scopes of a that b has too, in a's order.
func intersectScope(a, b string) string {
	var out []string
	for _, s := range splitScope(a) {
		if hasScope(b, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// exchangeToken verifies a presented token of type typ. which names the
// parameter, for the error descriptions.
func (e *Engine) exchangeToken(ctx context.Context, c *Client, which, value, typ string) (*ExchangeToken, error) {
	switch typ {
	case TokenTypeAccessToken, TokenTypeJWT:
	default:
		return nil, Errorf(CodeInvalidRequest, "%s_type %s is not supported; send %s or %s",
			which, shortParam(typ), TokenTypeAccessToken, TokenTypeJWT)
	}
	if len(value) > MaxExchangeTokenLength {
		return nil, Errorf(CodeInvalidRequest, "%s is longer than %d bytes", which, MaxExchangeTokenLength)
	}
	isJWT := strings.Count(value, ".") == 2
	if typ == TokenTypeJWT && !isJWT {
		return nil, Errorf(CodeInvalidRequest, "%s is not a JWT", which)
	}
	t, err := e.lookupToken(ctx, value)
	if err != nil {
		return nil, err
	}
	if t == nil && isJWT {
		if iss := unverifiedIssuer(value); iss != "" && iss != e.cfg.Issuer {
			return e.foreignToken(ctx, c, which, value, typ, iss)
		}
	}
	if t == nil || t.Kind != KindAccess || !t.Active(e.now()) {
		// One answer for unknown, refresh, expired and revoked tokens:
		// no oracle of which tokens exist.
		return nil, Errorf(CodeInvalidRequest, "%s is not an active access token of this server", which)
	}
	x := &ExchangeToken{
		Subject: t.Subject, ClientID: t.ClientID, Username: t.Username, Scope: t.Scope,
		ExpiresAt: t.ExpiresAt, Act: t.Actor, Record: t,
	}
	x.MayAct, x.HasMayAct = t.Claims["may_act"]
	return x, nil
}

// foreignToken verifies a JWT of issuer iss with the trusted issuers.
func (e *Engine) foreignToken(ctx context.Context, c *Client, which, value, typ, iss string) (*ExchangeToken, error) {
	if e.cfg.ForeignTokens == nil && e.st.TrustedIssuers != nil {
		return e.trustedExchangeToken(ctx, c, which, value)
	}
	if e.cfg.ForeignTokens == nil {
		return nil, Errorf(CodeInvalidRequest, "%s: no trusted issuer for %s", which, shortParam(iss))
	}
	x, err := e.cfg.ForeignTokens.VerifyForeignToken(ctx, value, typ, iss)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeInvalidRequest, "%s: no trusted issuer for %s", which, shortParam(iss))
	}
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) {
			return nil, err
		}
		return nil, Wrap(CodeInvalidRequest, err, which+" could not be verified")
	}
	if !x.ExpiresAt.After(e.now()) {
		return nil, Errorf(CodeInvalidRequest, "%s has expired", which)
	}
	x.Issuer, x.Record = iss, nil
	return x, nil
}

// unverifiedIssuer is the iss of a compact JWS's payload, read without
// verifying anything: only to choose who verifies it.
func unverifiedIssuer(value string) string {
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	iss, _ := claims.Iss.(string)
	return iss
}

// mayAct reports whether actor may act for sub: any actor when sub has
// no may_act claim, otherwise one that matches each of its sub, iss and
// client_id members (RFC 8693 §4.4).
func mayAct(sub, actor *ExchangeToken) bool {
	if !sub.HasMayAct {
		return true
	}
	m, ok := sub.MayAct.(map[string]any)
	if !ok || len(m) == 0 {
		return false
	}
	for k, want := range m {
		var got string
		switch k {
		case "sub":
			got = actor.Subject
		case "client_id":
			got = actor.ClientID
		case "iss":
			got = actor.Issuer
		default:
			// A member keyhook cannot check matches no actor.
			return false
		}
		if w, ok := want.(string); !ok || w != got {
			return false
		}
	}
	return true
}

// exchangeAct is the act claim of the new token (RFC 8693 §4.1). With an
// actor, it names the actor, and the subject token's own act (the prior
// actors of the chain) nests inside. Without one, the subject token's
// act is kept as it is: exchanging a delegated token never turns it into
// one without its actors.
func exchangeAct(sub, actor *ExchangeToken) (map[string]any, error) {
	if actor == nil {
		return sub.Act, nil
	}
	act := map[string]any{"sub": actor.Subject}
	if actor.ClientID != "" {
		act["client_id"] = actor.ClientID
	}
	if actor.Issuer != "" {
		act["iss"] = actor.Issuer
	}
	if sub.Act != nil {
		if actDepth(sub.Act) >= MaxActDepth {
			return nil, Errorf(CodeInvalidRequest, "the delegation chain is longer than %d actors", MaxActDepth)
		}
		act["act"] = sub.Act
	}
	return act, nil
}

// actDepth is how many actors a nested act claim names.
func actDepth(act map[string]any) int {
	n := 0
	for act != nil && n <= MaxActDepth {
		n++
		act, _ = act["act"].(map[string]any)
	}
	return n
}

// exchangeParty is a presented token as modifyTokenExchange sees it
// (hooks.ExchangeParty).
func exchangeParty(x *ExchangeToken) map[string]any {
	m := map[string]any{
		"sub": x.Subject, "client_id": x.ClientID, "scope": x.Scope, "exp": x.ExpiresAt.Unix(),
	}
	if x.Issuer != "" {
		m["iss"] = x.Issuer
	}
	if x.Username != "" {
		m["username"] = x.Username
	}
	if x.Act != nil {
		m["act"] = x.Act
	}
	return m
}

// exchangeArg is the request argument of modifyTokenExchange
// (hooks.TokenExchangeRequest).
func exchangeArg(sub, actor *ExchangeToken, issuedType, scope string, audiences, resources []string) map[string]any {
	arg := map[string]any{
		"subject": exchangeParty(sub), "actor": nil, "requested_token_type": issuedType,
		"audience": anyList(audiences), "resource": anyList(resources), "scope": scope,
	}
	if actor != nil {
		arg["actor"] = exchangeParty(actor)
	}
	return arg
}

func anyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// runExchangeScripts runs modifyTokenExchange of c's update_token
// scripts. A script returns false to refuse (invalid_request), or edits
// scope, audience and resource; what they leave is checked again as the
// request was, so a script narrows but never widens.
func (e *Engine) runExchangeScripts(ctx context.Context, sc *scriptCall, c *Client, p *TokenExchangePolicy,
	sub, actor *ExchangeToken, issuedType, scope, allowed string, audiences, resources []string,
) (string, []string, []string, error) {
	if e.hooks == nil {
		return scope, audiences, resources, nil
	}
	scripts := e.hooks.Select(hooks.KindUpdateToken, c.UpdateTokenScripts, false)
	if len(scripts) == 0 {
		return scope, audiences, resources, nil
	}
	ctx = hooks.WithScriptBudget(ctx, e.cfg.ScriptBudget)
	if sub.Record != nil {
		ctx = hooks.WithRolloutKey(ctx, sub.Record.ID)
	}
	arg := exchangeArg(sub, actor, issuedType, scope, audiences, resources)
	out, err := e.hooks.Run(ctx, scripts, hooks.FnModifyTokenExchange, arg, sc.context(hooks.PhaseToken, sub.Record), hooks.StopOnFalse)
	if err != nil {
		return "", nil, nil, scriptDenied(err)
	}
	if out.FalseBy != "" {
		return "", nil, nil, Errorf(CodeInvalidRequest, "the token exchange was refused by script %s", out.FalseBy)
	}
	if out.Ran == 0 {
		return scope, audiences, resources, nil
	}
	v := out.Value
	if s, ok := v["scope"].(string); ok {
		if strings.TrimSpace(s) == "" {
			scope = ""
		} else if scope, err = grantScope(s, true, allowed); err != nil {
			return "", nil, nil, Errorf(CodeInvalidScope, "a script may narrow the scope, never widen it: %s", err.(*Error).Description)
		}
	}
	if l, ok := stringList(v["audience"]); ok {
		if audiences, err = requestedAudiences(p, l); err != nil {
			return "", nil, nil, err
		}
	}
	if l, ok := stringList(v["resource"]); ok {
		if resources, err = requestedResources(c, l); err != nil {
			return "", nil, nil, err
		}
	}
	return scope, audiences, resources, nil
}

// stringList reads a list of strings a script left; anything else is
// not one.
func stringList(v any) ([]string, bool) {
	l, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
