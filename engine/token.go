package engine

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// RequestInfo is the request a script call stems from. Scripts see its
// method, lower-cased headers and parameters without credentials
// (docs/sandbox.md); the filtering happens only when a script runs.
type RequestInfo struct {
	Method string
	Header map[string][]string // as received, canonical names
	Params map[string][]string
}

// TokenRequest is a parsed token endpoint request (RFC 6749 §4).
type TokenRequest struct {
	Credentials  ClientCredentials
	GrantType    GrantType
	Scope        string
	ScopeGiven   bool
	Username     string
	Password     string
	RefreshToken string
	Code         string
	RedirectURI  string
	CodeVerifier string
	// Resources are the resource parameters (RFC 8707 §2), as sent.
	Resources  []string
	DeviceCode string
	// Assertion is the JWT of the JWT bearer grant (RFC 7523 §2.1).
	Assertion string
	// Token exchange parameters (RFC 8693 §2.1); Audiences may repeat.
	SubjectToken, SubjectTokenType string
	ActorToken, ActorTokenType     string
	RequestedTokenType             string
	Audiences                      []string
	// DPoP is the request's DPoP proof, if any (RFC 9449 §5).
	DPoP    DPoPProof
	Request RequestInfo
	// dpopJKT is the thumbprint of the checked proof's key.
	dpopJKT string
}

// TokenResponse is the successful answer of RFC 6749 §5.1.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	// IssuedTokenType answers a token exchange (RFC 8693 §2.2.1).
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// grant is what a grant handler established: who gets a token, for which
// client and scope, in which family.
type grant struct {
	client    *Client
	grantType GrantType
	user      *User
	// sub is the subject when it is neither the user's name nor the
	// client's id: the JWT bearer grant's (mapped) assertion subject, or
	// the subject token's sub of a token exchange.
	sub   string
	scope string
	// audience is the resources the access token is for (RFC 8707), and
	// granted all that the grant covers, which its refresh token keeps.
	audience, granted []string
	familyID          string
	authTime          time.Time
	nonce             string
	// rotating is the refresh token being exchanged, if any.
	rotating *Token
	// redeeming is the authorization code being exchanged, if any.
	redeeming *AuthCode
	// device is the approved device authorization being redeemed, if any.
	device *DeviceGrant
	// jkt is the DPoP key the tokens are bound to (RFC 9449 §5).
	jkt string
	// reused is the answer given again to a refresh token presented
	// within its reuse interval (docs/refresh.md); nothing is issued.
	reused *TokenResponse
	// Token exchange (exchange.go): the act claim, the audience values
	// beside the resources, the issued token type, and the time the
	// token may not outlive.
	act             map[string]any
	logicalAudience []string
	issuedTokenType string
	notAfter        time.Time
}

func (g *grant) subject() string {
	if g.sub != "" {
		return g.sub
	}
	if g.user != nil {
		return g.user.Username
	}
	return g.client.ID
}

// Token handles a token endpoint request (RFC 6749 §3.2, §4, §5).
func (e *Engine) Token(ctx context.Context, req *TokenRequest) (*TokenResponse, error) {
	if req.GrantType == "" {
		return nil, Errorf(CodeInvalidRequest, "grant_type is missing")
	}
	if !KnownGrant(req.GrantType) {
		return nil, Errorf(CodeUnsupportedGrantType, "grant_type %q is not supported", req.GrantType)
	}
	client, err := e.AuthenticateClient(ctx, &req.Credentials)
	if err != nil {
		return nil, err
	}
	if !client.HasGrant(req.GrantType) {
		return nil, Errorf(CodeUnauthorizedClient, "the client may not use grant_type %s", req.GrantType)
	}
	if client.Public() && req.GrantType != GrantAuthorizationCode && req.GrantType != GrantRefreshToken && req.GrantType != GrantDeviceCode {
		return nil, Errorf(CodeUnauthorizedClient, "a public client may only use the authorization_code, device_code and refresh_token grants")
	}
	if req.dpopJKT, err = e.tokenDPoP(ctx, client, req); err != nil {
		return nil, err
	}
	var g *grant
	switch req.GrantType {
	case GrantClientCredentials:
		g, err = e.clientCredentialsGrant(client, req)
	case GrantPassword:
		g, err = e.passwordGrant(ctx, client, req)
	case GrantRefreshToken:
		g, err = e.refreshGrant(ctx, client, req)
	case GrantAuthorizationCode:
		g, err = e.codeGrant(ctx, client, req)
	case GrantDeviceCode:
		g, err = e.deviceGrant(ctx, client, req)
	case GrantJWTBearer:
		g, err = e.jwtBearerGrant(ctx, client, req)
	case GrantTokenExchange:
		// modifyTokenExchange and the issuance's scripts share one budget.
		ctx = hooks.WithScriptBudget(ctx, e.cfg.ScriptBudget)
		g, err = e.exchangeGrant(ctx, client, req)
	}
	var resp *TokenResponse
	switch {
	case err == nil && g.reused != nil:
		resp = g.reused
	case err == nil:
		g.jkt = req.dpopJKT
		resp, err = e.issue(ctx, g, &req.Request)
	}
	if err != nil && e.clientGone(ctx, client.ID) {
		// Deleted on another instance while this one still had it cached:
		// its tokens and codes went with it, and what it would be issued
		// cannot be stored. Whatever failed, the answer is that the client
		// does not exist (RFC 6749 §5.2), never a storage failure.
		return nil, invalidClient("the client no longer exists")
	}
	return resp, err
}

// clientGone reports whether the client id is known, by the store, not
// to exist any more, and then drops it from the cache. Only failed
// requests ask, so the hot path keeps its cache.
func (e *Engine) clientGone(ctx context.Context, id string) bool {
	_, err := e.st.Clients.ClientByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		e.forgetClient(id)
		return true
	}
	return false
}

// grantScope resolves the requested scope against the allowed one
// (RFC 6749 §3.3): absent means all allowed; anything else must be a
// subset.
func grantScope(requested string, given bool, allowed string) (string, error) {
	if !given || strings.TrimSpace(requested) == "" {
		return strings.Join(splitScope(allowed), " "), nil
	}
	allow := splitScope(allowed)
	var out []string
	for _, s := range splitScope(requested) {
		if !validScopeToken(s) {
			return "", Errorf(CodeInvalidScope, "scope %q is malformed", s)
		}
		if !slices.Contains(allow, s) {
			return "", Errorf(CodeInvalidScope, "scope %q is not allowed", s)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, " "), nil
}

// validScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return s != ""
}

func (e *Engine) clientCredentialsGrant(c *Client, req *TokenRequest) (*grant, error) {
	scope, err := grantScope(req.Scope, req.ScopeGiven, c.Scope)
	if err != nil {
		return nil, err
	}
	res, err := requestedResources(c, req.Resources)
	if err != nil {
		return nil, err
	}
	return &grant{client: c, grantType: GrantClientCredentials, scope: scope, audience: res, familyID: randomID()}, nil
}

func (e *Engine) passwordGrant(ctx context.Context, c *Client, req *TokenRequest) (*grant, error) {
	if req.Username == "" || req.Password == "" {
		return nil, Errorf(CodeInvalidRequest, "username and password are required")
	}
	scope, err := grantScope(req.Scope, req.ScopeGiven, c.Scope)
	if err != nil {
		return nil, err
	}
	res, err := requestedResources(c, req.Resources)
	if err != nil {
		return nil, err
	}
	u, err := e.authenticateUser(ctx, methodPassword, req.Username, req.Password)
	if err != nil {
		return nil, err
	}
	// The refresh token of a password grant covers what was asked.
	return &grant{client: c, grantType: GrantPassword, user: u, scope: scope, audience: res, granted: res,
		familyID: randomID(), authTime: e.now()}, nil
}

// authenticateUser checks a username and password (method names the
// path, for the log). Unknown users, wrong passwords, users without a
// password and disabled users all answer invalid_grant after the same
// work; failures are throttled per username and per address, and the
// hashing stays within the memory budget (docs/auth-limits.md).
func (e *Engine) authenticateUser(ctx context.Context, method, username, password string) (*User, error) {
	if e.st.Users == nil {
		return nil, Errorf(CodeUnsupportedGrantType, "users are not configured")
	}
	a, wait := e.logins.admit(username, clientAddress(ctx))
	if wait > 0 {
		e.authFailed(ctx, authKindUser, method, reasonThrottled, "")
		return nil, tooManyAttempts(wait)
	}
	u, err := e.st.Users.UserByName(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		a.abandon()
		return nil, storeFailure(err)
	}
	hash := dummyPasswordHash
	if u != nil && passwordMemoryKiB(u.PasswordHash) > 0 {
		hash = u.PasswordHash
	}
	ok, err := e.verifyPassword(ctx, hash, password)
	if err != nil {
		a.abandon()
		if errors.Is(err, CodeTemporarilyUnavailable) {
			e.authFailed(ctx, authKindUser, method, reasonBusy, "")
		}
		return nil, err
	}
	if u == nil || !ok || u.Disabled || hash == dummyPasswordHash {
		a.failed()
		e.authFailed(ctx, authKindUser, method, reasonBadCredential, "")
		return nil, Errorf(CodeInvalidGrant, "the username or password is wrong")
	}
	a.succeeded()
	return u, nil
}

// activeUser is the user a grant or token stands for. A user deleted or
// disabled since answers code: the grant ends with the user.
func (e *Engine) activeUser(ctx context.Context, username string, code ErrorCode) (*User, error) {
	u, err := e.st.Users.UserByName(ctx, username)
	if errors.Is(err, ErrNotFound) || (err == nil && u.Disabled) {
		return nil, Errorf(code, "the user no longer exists or is disabled")
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	return u, nil
}

func (e *Engine) refreshGrant(ctx context.Context, c *Client, req *TokenRequest) (*grant, error) {
	if req.RefreshToken == "" {
		return nil, Errorf(CodeInvalidRequest, "refresh_token is missing")
	}
	t, err := e.st.Tokens.TokenByID(ctx, TokenHash(req.RefreshToken))
	if errors.Is(err, ErrNotFound) || (err == nil && (t.Kind != KindRefresh || t.ClientID != c.ID)) {
		return nil, Errorf(CodeInvalidGrant, "the refresh token is invalid")
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if t.JKT != "" && t.JKT != req.dpopJKT {
		// RFC 9449 §5: a public client's refresh token is bound to the
		// key of the proof it was issued with.
		return nil, Errorf(CodeInvalidGrant, "the refresh token is bound to a DPoP key: send a proof by that key")
	}
	now := e.now()
	if !t.UsedAt.IsZero() {
		// Within the client's reuse interval, the answer of the rotation
		// is given again (docs/refresh.md).
		aud, audErr := narrowResources(c, t.Resources, req.Resources)
		again, err := e.reuseRotation(ctx, c, t, now, aud, audErr == nil)
		if err != nil {
			return nil, err
		}
		if again != nil {
			return &grant{client: c, reused: again}, nil
		}
		// Reuse of a rotated refresh token (RFC 9700 §4.14.2): end the family.
		if err := e.st.Tokens.RevokeFamily(ctx, t.FamilyID); err != nil {
			return nil, storeFailure(err)
		}
		e.log.Warn("refresh token reused; grant family revoked", "client_id", c.ID, "family", t.FamilyID)
		return nil, Errorf(CodeInvalidGrant, "the refresh token was already used")
	}
	if !t.Active(now) {
		return nil, Errorf(CodeInvalidGrant, "the refresh token is expired or revoked")
	}
	// RFC 6749 §6: no scope means the scope originally granted, which the
	// refresh token keeps through rotations (refreshToken); a narrower
	// one narrows this access token only.
	scope := t.Scope
	if req.ScopeGiven && strings.TrimSpace(req.Scope) != "" {
		if scope, err = grantScope(req.Scope, true, t.Scope); err != nil {
			return nil, Errorf(CodeInvalidScope, "a refresh may narrow the scope, never widen it")
		}
	}
	// RFC 8707 §2.2: an access token for any of the resources granted.
	aud, err := narrowResources(c, t.Resources, req.Resources)
	if err != nil {
		return nil, err
	}
	g := &grant{client: c, grantType: GrantRefreshToken, scope: scope, audience: aud, granted: t.Resources,
		familyID: t.FamilyID, authTime: t.AuthTime, rotating: t}
	if t.Username != "" {
		if g.user, err = e.activeUser(ctx, t.Username, CodeInvalidGrant); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (e *Engine) codeGrant(ctx context.Context, c *Client, req *TokenRequest) (*grant, error) {
	if req.Code == "" {
		return nil, Errorf(CodeInvalidRequest, "code is missing")
	}
	if e.st.Codes == nil {
		return nil, Errorf(CodeUnsupportedGrantType, "authorization codes are not configured")
	}
	// Every check comes before the code is consumed (RFC 9700 §4.5): a
	// redemption that fails for the client, the redirect URI or PKCE
	// leaves the code to its rightful client. Only a successful issuance
	// consumes it, in the transaction that stores its tokens (issue).
	code, err := e.st.Codes.CodeByID(ctx, TokenHash(req.Code))
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeInvalidGrant, "the code is invalid")
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if code.ClientID != c.ID {
		// Neither consumed nor treated as a replay: another client cannot
		// burn a code, nor end the grant of the client it was issued to.
		return nil, Errorf(CodeInvalidGrant, "the code was issued to another client")
	}
	if !code.UsedAt.IsZero() {
		// RFC 6749 §4.1.2: a code used twice is refused and what it gave
		// is revoked, whatever else the replay carries.
		if err := e.st.Tokens.RevokeFamily(ctx, code.FamilyID); err != nil {
			return nil, storeFailure(err)
		}
		e.log.Warn("authorization code reused; grant family revoked", "client_id", c.ID, "family", code.FamilyID)
		return nil, Errorf(CodeInvalidGrant, "the code was already used")
	}
	if !e.now().Before(code.ExpiresAt) {
		return nil, Errorf(CodeInvalidGrant, "the code has expired")
	}
	// redirect_uri may be left out only where it could be left out of the
	// authorization request: the client has exactly one.
	if req.RedirectURI != code.RedirectURI && !(req.RedirectURI == "" && len(c.RedirectURIs) == 1) {
		return nil, Errorf(CodeInvalidGrant, "redirect_uri does not match the authorization request")
	}
	// PKCE both ways (RFC 7636 §4.6, RFC 9700 §2.1.1 and §4.8.2): a code
	// bound to a code_challenge needs its code_verifier, and a
	// code_verifier for a code without one is refused rather than
	// ignored, so that a PKCE downgrade fails whichever way it goes.
	switch {
	case code.CodeChallenge == "" && req.CodeVerifier != "":
		return nil, Errorf(CodeInvalidGrant, "code_verifier was sent but the authorization request had no code_challenge")
	case code.CodeChallenge == "" && c.Public():
		return nil, Errorf(CodeInvalidGrant, "code_verifier is required")
	case code.CodeChallenge != "" && req.CodeVerifier == "":
		return nil, Errorf(CodeInvalidGrant, "code_verifier is required")
	case code.CodeChallenge != "":
		sum := sha256.Sum256([]byte(req.CodeVerifier))
		if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(code.CodeChallenge)) != 1 {
			return nil, Errorf(CodeInvalidGrant, "code_verifier does not match the code_challenge")
		}
	}
	if code.DPoPJKT != "" && code.DPoPJKT != req.dpopJKT {
		// RFC 9449 §10: a code bound by dpop_jkt is redeemed only with a
		// proof by that key; the code stays for the rightful client.
		return nil, Errorf(CodeInvalidGrant, "the code is bound to a DPoP key (dpop_jkt): send a proof by that key")
	}
	aud, err := narrowResources(c, code.Resources, req.Resources)
	if err != nil {
		return nil, err
	}
	u, err := e.activeUser(ctx, code.Username, CodeInvalidGrant)
	if err != nil {
		return nil, err
	}
	return &grant{client: c, grantType: GrantAuthorizationCode, user: u, scope: code.Scope, audience: aud,
		granted: code.Resources, familyID: code.FamilyID, authTime: code.AuthTime, nonce: code.Nonce, redeeming: code}, nil
}

// lifetimes of one issuance, in seconds.
type lifetimes struct{ access, refresh, id int64 }

func (e *Engine) lifetimes(ctx context.Context, c *Client, scripts []*hooks.Script, hctx map[string]any) (lifetimes, error) {
	p := e.Properties()
	lt := lifetimes{access: p.AccessTokenLifetime, refresh: p.RefreshTokenLifetime, id: p.IDTokenLifetime}
	// A stored value the admin API would refuse today (written before it
	// checked) is ignored rather than overflowing a time.Duration.
	if validLifetime(c.AccessTokenLifetime) {
		lt.access = c.AccessTokenLifetime
	}
	if validLifetime(c.RefreshTokenLifetime) {
		lt.refresh = c.RefreshTokenLifetime
	}
	if validLifetime(c.IDTokenLifetime) {
		lt.id = c.IDTokenLifetime
	}
	if len(scripts) == 0 {
		return lt, nil
	}
	for _, f := range []struct {
		fn  hooks.Function
		dst *int64
	}{
		{hooks.FnAccessTokenLifetime, &lt.access},
		{hooks.FnRefreshTokenLifetime, &lt.refresh},
		{hooks.FnIDTokenLifetime, &lt.id},
	} {
		n, ok, err := e.hooks.Lifetime(ctx, scripts, f.fn, hctx)
		if err != nil {
			return lt, err
		}
		if ok {
			*f.dst = n
		}
	}
	return lt, nil
}
