package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AuthorizeRequest is an authorization request (RFC 6749 §4.1.1,
// RFC 7636 §4.3, OIDC Core §3.1.2.1).
//
// The JSON names are the parameters' own: a pushed request is stored
// this way (RFC 9126, engine/par.go).
type AuthorizeRequest struct {
	ResponseType        string `json:"response_type,omitempty"`
	ClientID            string `json:"client_id,omitempty"`
	RedirectURI         string `json:"redirect_uri,omitempty"`
	Scope               string `json:"scope,omitempty"`
	ScopeGiven          bool   `json:"scope_given,omitempty"`
	State               string `json:"state,omitempty"`
	CodeChallenge       string `json:"code_challenge,omitempty"`
	CodeChallengeMethod string `json:"code_challenge_method,omitempty"`
	Nonce               string `json:"nonce,omitempty"`
	// Prompt, MaxAge and LoginHint are OIDC Core §3.1.2.1's, as sent
	// (MaxAge "" when absent).
	Prompt    string `json:"prompt,omitempty"`
	MaxAge    string `json:"max_age,omitempty"`
	LoginHint string `json:"login_hint,omitempty"`
	// IDTokenHint is an ID token this server issued, naming the user the
	// client expects (OIDC Core §3.1.2.1); expired ones count.
	IDTokenHint string `json:"id_token_hint,omitempty"`
	// RequestObject is the request parameter (OIDC Core §6), which
	// keyhook refuses. RequestURI is the request_uri parameter: one this
	// server issued for a pushed request (RFC 9126 §4), else refused.
	RequestObject string `json:"-"`
	RequestURI    string `json:"-"`
	// Resources are the resource parameters (RFC 8707 §2), as sent.
	Resources []string `json:"resource,omitempty"`
	// DPoPJKT binds the code to a DPoP key by its thumbprint (RFC 9449
	// §10): the code is redeemed only with a proof by that key.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
}

// Authorization is a validated authorization request.
type Authorization struct {
	Client      *Client
	RedirectURI string
	Scope       string
	// Resources are the validated resource indicators the grant covers.
	Resources []string
	Request   *AuthorizeRequest
	// PromptNone: the user may not be shown anything (prompt=none).
	// PromptLogin: the user must sign in even with a session
	// (prompt=login, or select_account, which the login form is).
	PromptNone, PromptLogin bool
	// MaxAge is the largest age in seconds of a sign-in this request
	// accepts; -1 when max_age was not sent.
	MaxAge int64
	// HintSubject is the sub of a valid id_token_hint, else "".
	HintSubject string
	// RequestURI is the request_uri of the pushed request this
	// authorization is made from (RFC 9126 §4), else "": the login form
	// carries it instead of the parameters.
	RequestURI string
	// pushedID is the stored pushed request, consumed with the code.
	pushedID string
}

// Hint is the user this request names, by login_hint or else by
// id_token_hint: the login form's username, and the only user whose
// session may answer it.
func (a *Authorization) Hint() string {
	if a.Request.LoginHint != "" {
		return a.Request.LoginHint
	}
	return a.HintSubject
}

// RedirectError is an authorization error that goes back to the client's
// redirect URI (RFC 6749 §4.1.2.1). Errors before a valid redirect URI is
// known are plain *Error values and are shown to the user instead.
type RedirectError struct {
	Err         *Error
	RedirectURI string
	State       string
}

func (e *RedirectError) Error() string { return e.Err.Error() }
func (e *RedirectError) Unwrap() error { return e.Err }

// Location is the redirect URI with the error parameters.
func (e *RedirectError) Location(issuer string) string {
	q := url.Values{"error": {string(e.Err.Code)}, "error_description": {e.Err.Description}, "iss": {issuer}}
	if e.State != "" {
		q.Set("state", e.State)
	}
	return withQuery(e.RedirectURI, q)
}

func withQuery(uri string, q url.Values) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	existing := u.Query()
	for k, v := range q {
		existing[k] = v
	}
	u.RawQuery = existing.Encode()
	return u.String()
}

// Authorize validates an authorization request. The redirect URI must
// match a registered one exactly before anything is sent back to it.
// With a request_uri of a pushed request (RFC 9126 §4), the pushed
// parameters are the request and the others sent along, but client_id,
// are ignored; they are validated again, as the client may have changed.
func (e *Engine) Authorize(ctx context.Context, req *AuthorizeRequest) (*Authorization, error) {
	if req.ClientID == "" {
		return nil, Errorf(CodeInvalidRequest, "client_id is missing")
	}
	c, err := e.client(ctx, req.ClientID)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeInvalidRequest, "the client is unknown")
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if !isPushedURI(req.RequestURI) {
		return e.checkAuthorization(ctx, c, req, false)
	}
	p, err := e.pushedRequest(ctx, c, req.RequestURI)
	if err != nil {
		return nil, err
	}
	pushed := p.Request
	pushed.ClientID = c.ID
	a, err := e.checkAuthorization(ctx, c, &pushed, true)
	if err != nil {
		return nil, err
	}
	a.RequestURI, a.pushedID = req.RequestURI, p.ID
	return a, nil
}

// checkAuthorization validates an authorization request of client c:
// the one rule set of the authorization endpoint and of the pushed
// authorization request endpoint (RFC 9126 §2.1). pushed tells a request
// that is being or was pushed, which a client required to push needs.
func (e *Engine) checkAuthorization(ctx context.Context, c *Client, req *AuthorizeRequest, pushed bool) (*Authorization, error) {
	redirect := req.RedirectURI
	switch {
	case redirect == "" && len(c.RedirectURIs) == 1:
		redirect = c.RedirectURIs[0]
	case redirect == "":
		return nil, Errorf(CodeInvalidRequest, "redirect_uri is missing")
	case !slices.Contains(c.RedirectURIs, redirect):
		return nil, Errorf(CodeInvalidRequest, "redirect_uri is not registered for this client")
	}
	fail := func(code ErrorCode, desc string) error {
		return &RedirectError{Err: Errorf(code, "%s", desc), RedirectURI: redirect, State: req.State}
	}
	// OIDC Core §6.3: a server that does not support request objects
	// answers these errors.
	if req.RequestObject != "" {
		return nil, fail(CodeRequestNotSupported, "the request parameter is not supported")
	}
	if req.RequestURI != "" {
		// Only request_uri values of pushed requests are taken
		// (RFC 9126 §4); none is fetched (OIDC Core §6.2).
		return nil, fail(CodeRequestURINotSupported, "the request_uri parameter is not supported")
	}
	if !utf8Request(req) {
		// RFC 6749 Appendix B: parameters are UTF-8. A pushed request is
		// stored as JSON, which would turn other bytes into U+FFFD (the
		// state or nonce given back would not be the one sent), and the
		// nonce is stored with the code, which PostgreSQL would refuse.
		return nil, fail(CodeInvalidRequest, "the parameters must be UTF-8")
	}
	if !pushed && (e.cfg.RequirePushedAuthorizationRequests || c.RequirePushedAuthorizationRequests) {
		// RFC 9126 §5, §6.
		return nil, fail(CodeInvalidRequest, "this client must push its authorization requests to "+e.cfg.Issuer+PathPAR)
	}
	if req.ResponseType != "code" {
		return nil, fail(CodeUnsupportedResponseType, "only response_type=code is supported")
	}
	if !c.HasGrant(GrantAuthorizationCode) {
		return nil, fail(CodeUnauthorizedClient, "the client may not use the authorization_code grant")
	}
	switch {
	case req.CodeChallengeMethod == "plain":
		return nil, fail(CodeInvalidRequest, "code_challenge_method plain is not allowed; use S256")
	case req.CodeChallenge == "" && req.CodeChallengeMethod != "":
		return nil, fail(CodeInvalidRequest, "code_challenge is missing")
	case req.CodeChallenge == "" && c.Public():
		return nil, fail(CodeInvalidRequest, "public clients must use PKCE (code_challenge with S256)")
	case req.CodeChallenge != "" && req.CodeChallengeMethod != "S256":
		return nil, fail(CodeInvalidRequest, "code_challenge_method must be S256")
	case req.CodeChallenge != "" && (len(req.CodeChallenge) != 43 || !base64URLChars(req.CodeChallenge)):
		return nil, fail(CodeInvalidRequest, "code_challenge must be a base64url SHA-256 (43 characters)")
	}
	if req.DPoPJKT != "" && (len(req.DPoPJKT) != 43 || !base64URLChars(req.DPoPJKT)) {
		return nil, fail(CodeInvalidRequest, "dpop_jkt must be a base64url SHA-256 JWK thumbprint (43 characters)")
	}
	scope, err := grantScope(req.Scope, req.ScopeGiven, c.Scope)
	if err != nil {
		var oe *Error
		errors.As(err, &oe)
		return nil, fail(oe.Code, oe.Description)
	}
	// RFC 8707 §2: a resource that is malformed or not allowed goes back
	// to the client as invalid_target.
	resources, err := requestedResources(c, req.Resources)
	if err != nil {
		var oe *Error
		errors.As(err, &oe)
		return nil, fail(oe.Code, oe.Description)
	}
	a := &Authorization{Client: c, RedirectURI: redirect, Scope: scope, Resources: resources, Request: req, MaxAge: -1}
	if err := a.parseOIDC(); err != nil {
		return nil, fail(CodeInvalidRequest, err.Error())
	}
	if req.IDTokenHint != "" {
		if a.HintSubject = e.idTokenSubject(ctx, req.IDTokenHint); a.HintSubject == "" {
			return nil, fail(CodeInvalidRequest, "id_token_hint is not an ID token of this server")
		}
	}
	return a, nil
}

// idTokenSubject is the sub of an ID token this server signed (typ JWT,
// iss this issuer), expired or not, as OIDC Core §3.1.2.1 lets an
// id_token_hint be; "" for anything else.
func (e *Engine) idTokenSubject(ctx context.Context, raw string) string {
	payload, typ, k := e.verifyOwnJWT(ctx, raw)
	if k == nil || typ != typIDToken {
		return ""
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Iss != e.cfg.Issuer {
		return ""
	}
	return claims.Sub
}

// parseOIDC reads prompt and max_age (OIDC Core §3.1.2.1). keyhook has
// no consent screen: consent is given by registering the client, so
// prompt=consent asks for nothing more; select_account is answered by
// the login form, where the user chooses the account to sign in with.
func (a *Authorization) parseOIDC() error {
	for _, p := range strings.Fields(a.Request.Prompt) {
		switch p {
		case "none":
			a.PromptNone = true
		case "login", "select_account":
			a.PromptLogin = true
		case "consent":
		default:
			return fmt.Errorf("prompt value %q is not supported", p)
		}
	}
	if a.PromptNone && len(strings.Fields(a.Request.Prompt)) > 1 {
		return errors.New("prompt=none may not be combined with other values")
	}
	if a.Request.MaxAge != "" {
		n, err := strconv.ParseInt(a.Request.MaxAge, 10, 64)
		if err != nil || n < 0 {
			return errors.New("max_age must be a non-negative number of seconds")
		}
		a.MaxAge = n
	}
	return nil
}

func base64URLChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ErrLoginFailed is returned by Login for wrong credentials, unknown or
// disabled users alike.
var ErrLoginFailed = errors.New("the username or password is wrong")

// SignIn is the outcome of a successful Login: the redirect URI with a
// fresh code, and the new login session and how long it lasts
// (SessionValue is "" when none could be stored; the sign-in counts all
// the same).
type SignIn struct {
	Location        string
	SessionValue    string
	SessionLifetime time.Duration
}

// Login authenticates the user of an authorization, starts a login
// session that replaces the browser's previous one (oldSession, the
// value of its cookie, may be ""), and returns the redirect URI carrying
// a fresh, single-use authorization code.
func (e *Engine) Login(ctx context.Context, a *Authorization, username, password, oldSession string) (*SignIn, error) {
	u, err := e.authenticateUser(ctx, methodLoginForm, username, password)
	if errors.Is(err, CodeInvalidGrant) {
		return nil, ErrLoginFailed
	}
	if err != nil {
		return nil, err
	}
	now := e.now()
	location, err := e.issueCode(ctx, a, u.Username, now)
	if err != nil {
		return nil, err
	}
	out := &SignIn{Location: location}
	if out.SessionValue = e.startSession(ctx, u, now, oldSession); out.SessionValue != "" {
		out.SessionLifetime = e.sessionLifetime()
	}
	return out, nil
}

// issueCode stores a fresh authorization code for username, who signed
// in at authTime, and returns the redirect URI carrying it, the state and
// iss (RFC 6749 §4.1.2, RFC 9207 §2).
func (e *Engine) issueCode(ctx context.Context, a *Authorization, username string, authTime time.Time) (string, error) {
	now := e.now()
	if err := e.consumePushed(ctx, a, now); err != nil {
		return "", err
	}
	value := randomToken()
	code := &AuthCode{
		ID: TokenHash(value), ClientID: a.Client.ID, Username: username, RedirectURI: a.RedirectURI, Scope: a.Scope,
		CodeChallenge: a.Request.CodeChallenge, CodeChallengeMethod: a.Request.CodeChallengeMethod, Nonce: a.Request.Nonce,
		Resources: a.Resources, FamilyID: randomID(), AuthTime: authTime, DPoPJKT: a.Request.DPoPJKT,
		ExpiresAt: now.Add(time.Duration(e.Properties().AuthorizationCodeLifetime) * time.Second),
	}
	if err := e.st.Codes.CreateCode(ctx, code); err != nil {
		if e.clientGone(ctx, a.Client.ID) { // deleted on another instance meanwhile
			return "", Errorf(CodeInvalidRequest, "the client is unknown")
		}
		return "", storeFailure(err)
	}
	q := url.Values{"code": {value}, "iss": {e.cfg.Issuer}}
	if a.Request.State != "" {
		q.Set("state", a.Request.State)
	}
	return withQuery(a.RedirectURI, q), nil
}

// utf8Request reports whether every parameter of ar is valid UTF-8.
func utf8Request(ar *AuthorizeRequest) bool {
	for _, v := range []string{ar.ResponseType, ar.ClientID, ar.RedirectURI, ar.Scope, ar.State, ar.CodeChallenge,
		ar.CodeChallengeMethod, ar.Nonce, ar.Prompt, ar.MaxAge, ar.LoginHint, ar.IDTokenHint} {
		if !utf8.ValidString(v) {
			return false
		}
	}
	for _, v := range ar.Resources {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}
