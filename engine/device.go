package engine

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// This file is the OAuth 2.0 Device Authorization Grant (RFC 8628,
// docs/device-flow.md): the device authorization endpoint, the user code
// the verification page takes, and the polling of the token endpoint.

// GrantDeviceCode is the grant type of RFC 8628 §3.4.
const GrantDeviceCode GrantType = "urn:ietf:params:oauth:grant-type:device_code"

// Paths of the device flow, relative to the issuer.
const (
	// PathDeviceAuthorization is the device authorization endpoint (RFC 8628 §3.1).
	PathDeviceAuthorization = "/oauth2/device_authorization"
	// PathDevice is the verification URI (RFC 8628 §3.2) where the user
	// types the user code.
	PathDevice = "/oauth2/device"
)

// Error codes of the token endpoint while a device polls (RFC 8628 §3.5).
const (
	CodeAuthorizationPending ErrorCode = "authorization_pending"
	CodeExpiredToken         ErrorCode = "expired_token"
)

// Defaults of the device flow (docs/device-flow.md).
const (
	DefaultDeviceCodeLifetime = 600 * time.Second
	DefaultDevicePollInterval = 5 * time.Second
	// deviceSlowDownStep is what a slow_down adds to the interval of its
	// device code (RFC 8628 §3.5).
	deviceSlowDownStep = 5 * time.Second
	// userCodeAlphabet has no vowels, so that no word is spelled, and no
	// letters easily mistaken for digits (RFC 8628 §6.1): 20 letters.
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	// userCodeLength letters give 20^8 ≈ 2^34.6 codes; with the
	// guessing limits of docs/device-flow.md an attacker's chance over a
	// code's lifetime is negligible (RFC 8628 §5.1).
	userCodeLength = 8
	// maxUserCodeInput bounds what is read of a typed user code.
	maxUserCodeInput = 64
	// userCodeOverallFactor: all the browsers and addresses of an
	// instance together may fail this many times the per-browser free
	// failures before every guess is held back.
	userCodeOverallFactor = 100
	// DefaultMaxDeviceGrantsPerClient bounds the unexpired device codes of
	// one client when Config.MaxDeviceGrantsPerClient is not set: a
	// public client is authenticated by its client_id alone, so anyone
	// may ask on its behalf, and the bound protects the database (as
	// DefaultMaxPushedRequestsPerClient does for pushed requests).
	DefaultMaxDeviceGrantsPerClient = 1000
)

// DeviceStatus is where the user is with a device authorization.
type DeviceStatus string

// Device authorization states.
const (
	DevicePending  DeviceStatus = "pending"
	DeviceApproved DeviceStatus = "approved"
	DeviceDenied   DeviceStatus = "denied"
)

// DeviceGrant is a device authorization (RFC 8628 §3.1–3.5) as stored.
// Neither the device code nor the user code is kept, only their hashes.
type DeviceGrant struct {
	// ID is the TokenHash of the device code.
	ID string
	// UserCodeID is the hash of the normalized user code (userCodeID).
	UserCodeID string
	ClientID   string
	Scope      string
	Status     DeviceStatus
	// Username and AuthTime are the user who decided and when they signed in.
	Username string
	AuthTime time.Time
	FamilyID string
	// Interval is the least number of seconds between two polls; it
	// grows with every slow_down.
	Interval     int64
	LastPolledAt time.Time
	CreatedAt    time.Time
	ExpiresAt    time.Time
	// UsedAt is when tokens were issued for it; zero before.
	UsedAt time.Time
}

// DeviceStore keeps device authorizations. Deleting a client deletes its
// device authorizations.
type DeviceStore interface {
	// CreateDeviceGrant returns ErrConflict when its ID or UserCodeID exists.
	CreateDeviceGrant(ctx context.Context, g *DeviceGrant) error
	// DeviceGrantByID returns the grant or ErrNotFound.
	DeviceGrantByID(ctx context.Context, id string) (*DeviceGrant, error)
	// DeviceGrantByUserCode returns the grant of a user code hash or ErrNotFound.
	DeviceGrantByUserCode(ctx context.Context, userCodeID string) (*DeviceGrant, error)
	// PollDeviceGrant records a poll of id at now. When the previous
	// poll was less than the grant's interval before now, it also adds
	// step to the interval and reports false. Of concurrent polls within
	// one interval, on any instance, at most one reports true.
	PollDeviceGrant(ctx context.Context, id string, now time.Time, step time.Duration) (bool, error)
	// DecideDeviceGrant sets status, username and authTime if the grant
	// is pending and unexpired at now, and reports whether it did.
	DecideDeviceGrant(ctx context.Context, id string, status DeviceStatus, username string, authTime, now time.Time) (bool, error)
	// RedeemDeviceGrant marks the grant used at now and stores tokens,
	// atomically, if and only if it was unused; as CodeStore.RedeemCode.
	RedeemDeviceGrant(ctx context.Context, id string, now time.Time, tokens ...*Token) (bool, error)
	// CountDeviceGrants counts the client's grants unexpired at now.
	CountDeviceGrants(ctx context.Context, clientID string, now time.Time) (int64, error)
	// PurgeDeviceGrants deletes grants that expired before t.
	PurgeDeviceGrants(ctx context.Context, before time.Time) (int64, error)
}

// DeviceAuthorizationRequest is a request of RFC 8628 §3.1.
type DeviceAuthorizationRequest struct {
	Credentials ClientCredentials
	Scope       string
	ScopeGiven  bool
}

// DeviceAuthorizationResponse is the answer of RFC 8628 §3.2.
type DeviceAuthorizationResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

func (e *Engine) deviceCodeLifetime() time.Duration {
	return positiveOr(e.cfg.DeviceCodeLifetime, DefaultDeviceCodeLifetime)
}

func (e *Engine) maxDeviceGrantsPerClient() int {
	return positiveOr(e.cfg.MaxDeviceGrantsPerClient, DefaultMaxDeviceGrantsPerClient)
}

func (e *Engine) devicePollInterval() time.Duration {
	return positiveOr(e.cfg.DevicePollInterval, DefaultDevicePollInterval)
}

// DeviceAuthorization serves the device authorization endpoint (RFC 8628
// §3.1–3.2): the client authenticates as at the token endpoint (a public
// client by client_id alone), must have the device_code grant, and gets a
// device code for polling and a user code for its user.
func (e *Engine) DeviceAuthorization(ctx context.Context, req *DeviceAuthorizationRequest) (*DeviceAuthorizationResponse, error) {
	if e.st.Devices == nil {
		return nil, Errorf(CodeUnsupportedGrantType, "the device flow is not configured")
	}
	c, err := e.AuthenticateClient(ctx, &req.Credentials)
	if err != nil {
		return nil, err
	}
	if !c.HasGrant(GrantDeviceCode) {
		return nil, Errorf(CodeUnauthorizedClient, "the client may not use the device_code grant")
	}
	scope, err := grantScope(req.Scope, req.ScopeGiven, c.Scope)
	if err != nil {
		return nil, err
	}
	now := e.now()
	lifetime, interval := e.deviceCodeLifetime(), e.devicePollInterval()
	n, err := e.st.Devices.CountDeviceGrants(ctx, c.ID, now)
	if err != nil {
		return nil, storeFailure(err)
	}
	if n >= int64(e.maxDeviceGrantsPerClient()) {
		return nil, &Error{Code: CodeSlowDown, RetryAfter: lifetime,
			Description: "the client has too many unexpired device codes; use them or let them expire"}
	}
	deviceCode := randomToken()
	g := &DeviceGrant{
		ID: TokenHash(deviceCode), ClientID: c.ID, Scope: scope, Status: DevicePending, FamilyID: randomID(),
		Interval: int64(interval / time.Second), CreatedAt: now, ExpiresAt: now.Add(lifetime),
	}
	var userCode string
	// A user code may collide with a live one (1 in 20^8 per live code):
	// draw again.
	for range 5 {
		userCode = newUserCode()
		g.UserCodeID = e.userCodeID(userCode)
		if err = e.st.Devices.CreateDeviceGrant(ctx, g); !errors.Is(err, ErrConflict) {
			break
		}
	}
	if err != nil {
		if e.clientGone(ctx, c.ID) {
			return nil, invalidClient("the client no longer exists")
		}
		return nil, storeFailure(err)
	}
	shown := FormatUserCode(userCode)
	uri := e.cfg.Issuer + PathDevice
	return &DeviceAuthorizationResponse{
		DeviceCode: deviceCode, UserCode: shown, VerificationURI: uri,
		VerificationURIComplete: uri + "?user_code=" + shown,
		ExpiresIn:               int64(lifetime / time.Second), Interval: g.Interval,
	}, nil
}

// newUserCode draws userCodeLength letters of userCodeAlphabet uniformly
// (rejection sampling: 256 is not a multiple of 20).
func newUserCode() string {
	out := make([]byte, 0, userCodeLength)
	var b [1]byte
	for len(out) < userCodeLength {
		_, _ = rand.Read(b[:])
		if int(b[0]) >= 256/len(userCodeAlphabet)*len(userCodeAlphabet) {
			continue
		}
		out = append(out, userCodeAlphabet[int(b[0])%len(userCodeAlphabet)])
	}
	return string(out)
}

// FormatUserCode shows a normalized user code as XXXX-XXXX (RFC 8628 §6.1).
func FormatUserCode(code string) string {
	if len(code) != userCodeLength {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// NormalizeUserCode is a typed user code without case, dashes and spaces
// (RFC 8628 §6.1: the user may type it either way); ok is false when
// what remains cannot be a user code.
func NormalizeUserCode(typed string) (string, bool) {
	if len(typed) > maxUserCodeInput {
		return "", false
	}
	var b strings.Builder
	for _, r := range typed {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		if r > 0x7f || !strings.ContainsRune(userCodeAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != userCodeLength {
		return "", false
	}
	return b.String(), true
}

// userCodeID is what the store keeps of a normalized user code: an HMAC
// under a key derived from the client-secret sealing key. A user code has
// about 35 bits, so a plain hash of it could be reversed from a copy of
// the database while the code is live; the keyed one cannot without the
// sealing key, which the key-encryption key protects (docs/keys.md).
func (e *Engine) userCodeID(code string) string {
	m := hmac.New(sha256.New, e.userCodeKey)
	m.Write([]byte("user_code:" + code))
	return hex.EncodeToString(m.Sum(nil))
}

// ErrUserCodeInvalid is the verification page's one answer to a user code
// that is malformed, unknown, expired or already decided.
var ErrUserCodeInvalid = errors.New("the code is not valid")

// DeviceRequest is what the verification page shows of a pending device
// authorization: which client asks, for which scope.
type DeviceRequest struct {
	Client *Client
	Scope  string
	// UserCode is the normalized user code, shown as FormatUserCode.
	UserCode string
	grant    *DeviceGrant
}

// deviceAuthMethod names the user-code check in auth_failure events.
const methodDeviceUserCode = "device_user_code"

// DeviceLookup finds the pending device authorization of a user code
// typed at the verification page. browser identifies the browser (its
// CSRF cookie) for the guessing limits; with the address of ctx and the
// instance's total they bound how many codes can be tried (RFC 8628 §5.1,
// docs/device-flow.md). A wrong code answers ErrUserCodeInvalid, a
// throttled attempt a *Error slow_down with RetryAfter, unchecked.
func (e *Engine) DeviceLookup(ctx context.Context, typed, browser string) (*DeviceRequest, error) {
	if e.st.Devices == nil {
		return nil, ErrUserCodeInvalid
	}
	a, wait := e.userCodes.admit(browser, clientAddress(ctx))
	if wait > 0 {
		e.authFailed(ctx, authKindUser, methodDeviceUserCode, reasonThrottled, "")
		return nil, tooManyAttempts(wait)
	}
	all, wait := e.userCodesAll.admit("all")
	if wait > 0 {
		a.abandon()
		e.authFailed(ctx, authKindUser, methodDeviceUserCode, reasonThrottled, "")
		return nil, tooManyAttempts(wait)
	}
	code, ok := NormalizeUserCode(typed)
	var g *DeviceGrant
	var err error
	if ok {
		g, err = e.st.Devices.DeviceGrantByUserCode(ctx, e.userCodeID(code))
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		a.abandon()
		e.userCodesAll.end(all, false, false)
		return nil, storeFailure(err)
	}
	if !ok || g == nil || g.Status != DevicePending || !g.UsedAt.IsZero() || !e.now().Before(g.ExpiresAt) {
		a.failed()
		e.userCodesAll.end(all, true, false)
		e.authFailed(ctx, authKindUser, methodDeviceUserCode, reasonBadCredential, "")
		return nil, ErrUserCodeInvalid
	}
	// A right code forgives nothing: an attacker could otherwise reset
	// the count with a code of their own.
	a.abandon()
	e.userCodesAll.end(all, false, false)
	c, err := e.client(ctx, g.ClientID)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUserCodeInvalid
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	return &DeviceRequest{Client: c, Scope: g.Scope, UserCode: code, grant: g}, nil
}

// DeviceSignedIn is the user of the browser's live login session
// (sessionValue, its cookie), or "" when there is none.
func (e *Engine) DeviceSignedIn(ctx context.Context, sessionValue string) (string, error) {
	s, _, err := e.session(ctx, sessionValue)
	if err != nil || s == nil {
		return "", err
	}
	return s.Username, nil
}

// DeviceLogin signs the user in at the verification page, with the
// password check and the login session of the authorization endpoint
// (Login): it returns the new session (Location is empty). The user code
// is checked again first, so the form cannot be used to guess codes
// without counting.
func (e *Engine) DeviceLogin(ctx context.Context, typed, browser, username, password, oldSession string) (*DeviceRequest, *SignIn, error) {
	dr, err := e.DeviceLookup(ctx, typed, browser)
	if err != nil {
		return nil, nil, err
	}
	u, err := e.authenticateUser(ctx, methodLoginForm, username, password)
	if errors.Is(err, CodeInvalidGrant) {
		return dr, nil, ErrLoginFailed
	}
	if err != nil {
		return dr, nil, err
	}
	out := &SignIn{}
	if out.SessionValue = e.startSession(ctx, u, e.now(), oldSession); out.SessionValue != "" {
		out.SessionLifetime = e.sessionLifetime()
	}
	return dr, out, nil
}

// DeviceDecide records the decision of the user signed in with
// sessionValue on the device authorization of a user code: approved, the
// device's next poll gets tokens for that user; denied, access_denied
// (RFC 8628 §3.5). ErrLoginNeeded when the browser has no live session.
func (e *Engine) DeviceDecide(ctx context.Context, typed, browser, sessionValue string, approve bool) (*DeviceRequest, error) {
	dr, err := e.DeviceLookup(ctx, typed, browser)
	if err != nil {
		return nil, err
	}
	s, _, err := e.session(ctx, sessionValue)
	if err != nil {
		return dr, err
	}
	if s == nil {
		return dr, ErrLoginNeeded
	}
	status := DeviceDenied
	if approve {
		status = DeviceApproved
	}
	ok, err := e.st.Devices.DecideDeviceGrant(ctx, dr.grant.ID, status, s.Username, s.AuthTime, e.now())
	if err != nil {
		return dr, storeFailure(err)
	}
	if !ok {
		// Decided in another tab, or expired, meanwhile.
		return dr, ErrUserCodeInvalid
	}
	return dr, nil
}

// deviceGrant is the token endpoint's side (RFC 8628 §3.4–3.5): the
// client polls with its device code until the user decided.
func (e *Engine) deviceGrant(ctx context.Context, c *Client, req *TokenRequest) (*grant, error) {
	if req.DeviceCode == "" {
		return nil, Errorf(CodeInvalidRequest, "device_code is missing")
	}
	if e.st.Devices == nil {
		return nil, Errorf(CodeUnsupportedGrantType, "the device flow is not configured")
	}
	g, err := e.st.Devices.DeviceGrantByID(ctx, TokenHash(req.DeviceCode))
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeInvalidGrant, "the device_code is invalid")
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if g.ClientID != c.ID {
		// Neither polled nor treated as a replay: another client can
		// neither slow the device down nor end its grant.
		return nil, Errorf(CodeInvalidGrant, "the device_code was issued to another client")
	}
	if !g.UsedAt.IsZero() {
		// As for an authorization code used twice (RFC 6749 §4.1.2):
		// refused, and what it gave is revoked.
		if err := e.st.Tokens.RevokeFamily(ctx, g.FamilyID); err != nil {
			return nil, storeFailure(err)
		}
		e.log.Warn("device code reused; grant family revoked", "client_id", c.ID, "family", g.FamilyID)
		return nil, Errorf(CodeInvalidGrant, "the device_code was already used")
	}
	now := e.now()
	if !now.Before(g.ExpiresAt) {
		return nil, Errorf(CodeExpiredToken, "the device_code has expired")
	}
	// RFC 8707 §2: the token request names the resources the token is
	// for, each allowed for the client, as for the password grant; the
	// refresh token covers them. Refused before the poll counts.
	res, err := requestedResources(c, req.Resources)
	if err != nil {
		return nil, err
	}
	ok, err := e.st.Devices.PollDeviceGrant(ctx, g.ID, now, deviceSlowDownStep)
	if err != nil {
		return nil, storeFailure(err)
	}
	if !ok {
		// RFC 8628 §3.5: 400 slow_down, and the interval grows by 5 s.
		return nil, Errorf(CodeSlowDown, "polling faster than every %d seconds; wait %d seconds between polls from now on",
			g.Interval, g.Interval+int64(deviceSlowDownStep/time.Second))
	}
	switch g.Status {
	case DeviceDenied:
		return nil, Errorf(CodeAccessDenied, "the user denied the request")
	case DeviceApproved:
	default:
		return nil, Errorf(CodeAuthorizationPending, "the user has not decided yet")
	}
	u, err := e.activeUser(ctx, g.Username, CodeInvalidGrant)
	if err != nil {
		return nil, err
	}
	return &grant{client: c, grantType: GrantDeviceCode, user: u, scope: g.Scope, audience: res, granted: res,
		familyID: g.FamilyID, authTime: g.AuthTime, device: g}, nil
}
