package engine

import (
	"context"
	"errors"
	"strings"
	"time"
)

// RequestURIPrefix starts every request_uri the pushed authorization
// request endpoint issues (RFC 9126 §2.2); the rest is 256 random bits.
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// DefaultPushedRequestLifetime is how long a request_uri may be used
// when Config.PushedRequestLifetime is not set (RFC 9126 §2.2: "typically
// ... between 5 and 600 seconds").
const DefaultPushedRequestLifetime = 60 * time.Second

// PushedSignInWindow is how long a pushed request lives once the
// authorization endpoint has first accepted it: the login form is shown
// and the user needs time to fill it in, and the form's POST must find
// the request again (docs/par.md). It is given once, at the first use,
// so a request_uri cannot be kept alive by loading it over and over.
const PushedSignInWindow = 10 * time.Minute

// DefaultMaxPushedRequestsPerClient bounds the unexpired pushed requests
// of one client when Config.MaxPushedRequestsPerClient is not set: with
// the default lifetime, about 16 pushes a second, sustained.
const DefaultMaxPushedRequestsPerClient = 1000

// PushedRequest is an authorization request pushed by an authenticated
// client (RFC 9126 §2), stored by the hash of its request_uri.
type PushedRequest struct {
	// ID is the TokenHash of the request_uri.
	ID       string
	ClientID string
	Request  AuthorizeRequest
	// Started is set when the authorization endpoint first accepted the
	// request, and ExpiresAt was then moved to the end of the sign-in
	// window.
	Started   bool
	ExpiresAt time.Time
}

// PushedRequestStore keeps pushed authorization requests. Deleting a
// client deletes its pushed requests.
type PushedRequestStore interface {
	CreatePushedRequest(ctx context.Context, p *PushedRequest) error
	// PushedRequestByID returns the request, expired or not, or
	// ErrNotFound.
	PushedRequestByID(ctx context.Context, id string) (*PushedRequest, error)
	// StartPushedRequest marks the request started and moves its expiry
	// to until, if it was not started; it reports whether it did.
	StartPushedRequest(ctx context.Context, id string, until time.Time) (bool, error)
	// ConsumePushedRequest deletes the request if it has not expired at
	// now and reports whether it did; of concurrent calls for one
	// request at most one reports true.
	ConsumePushedRequest(ctx context.Context, id string, now time.Time) (bool, error)
	// CountPushedRequests counts the client's requests unexpired at now.
	CountPushedRequests(ctx context.Context, clientID string, now time.Time) (int64, error)
	PurgePushedRequests(ctx context.Context, before time.Time) (int64, error)
}

// PushedAuthorizationRequest is a request to the pushed authorization
// request endpoint (RFC 9126 §2.1): client credentials, as at the token
// endpoint, and the authorization request parameters.
type PushedAuthorizationRequest struct {
	Credentials ClientCredentials
	Request     *AuthorizeRequest
	// DPoP is the request's DPoP proof, if any: its key binds the code
	// as dpop_jkt would (RFC 9449 §10.1).
	DPoP DPoPProof
}

// PushedAuthorizationResponse is the answer of RFC 9126 §2.2.
type PushedAuthorizationResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int64  `json:"expires_in"`
}

func (e *Engine) pushedLifetime() time.Duration {
	return positiveOr(e.cfg.PushedRequestLifetime, DefaultPushedRequestLifetime)
}

func (e *Engine) maxPushedPerClient() int {
	return positiveOr(e.cfg.MaxPushedRequestsPerClient, DefaultMaxPushedRequestsPerClient)
}

// PushedAuthorizationRequired reports whether the server requires every
// client to push its authorization requests (RFC 9126 §5).
func (e *Engine) PushedAuthorizationRequired() bool { return e.cfg.RequirePushedAuthorizationRequests }

// PushAuthorization serves the pushed authorization request endpoint
// (RFC 9126 §2): it authenticates the client as the token endpoint does
// (same methods, same failure throttle), validates the authorization
// request as the authorization endpoint would, and stores it under a
// fresh request_uri. Errors are plain *Error values (RFC 9126 §2.3),
// never a RedirectError.
func (e *Engine) PushAuthorization(ctx context.Context, req *PushedAuthorizationRequest) (*PushedAuthorizationResponse, error) {
	if e.st.Pushed == nil {
		return nil, Errorf(CodeInvalidRequest, "pushed authorization requests are not available")
	}
	req.Credentials.atPAR = true
	c, err := e.AuthenticateClient(ctx, &req.Credentials)
	if err != nil {
		return nil, err
	}
	ar := *req.Request
	switch {
	case ar.RequestURI != "":
		// RFC 9126 §2.1: request_uri must not be pushed.
		return nil, Errorf(CodeInvalidRequest, "request_uri may not be sent to the pushed authorization request endpoint")
	case ar.RequestObject != "":
		// OIDC Core §6.3 as at the authorization endpoint: keyhook takes
		// no request objects, pushed or not.
		return nil, Errorf(CodeRequestNotSupported, "the request parameter is not supported")
	case ar.ClientID != "" && ar.ClientID != c.ID:
		return nil, Errorf(CodeInvalidRequest, "client_id does not match the authenticated client")
	}
	ar.ClientID = c.ID
	if req.DPoP.Given() {
		// RFC 9449 §10.1: a proof at the pushed authorization request
		// endpoint binds the code to its key; with dpop_jkt, both must
		// name the same key.
		jkt, err := e.checkDPoP(ctx, &req.DPoP, "")
		if err != nil {
			return nil, err
		}
		if ar.DPoPJKT != "" && ar.DPoPJKT != jkt {
			return nil, badProof("dpop_jkt is not the thumbprint of the DPoP proof's key")
		}
		ar.DPoPJKT = jkt
	}
	if _, err := e.checkAuthorization(ctx, c, &ar, true); err != nil {
		var re *RedirectError
		if errors.As(err, &re) {
			return nil, re.Err
		}
		return nil, err
	}
	now := e.now()
	n, err := e.st.Pushed.CountPushedRequests(ctx, c.ID, now)
	if err != nil {
		return nil, storeFailure(err)
	}
	lifetime := e.pushedLifetime()
	if n >= int64(e.maxPushedPerClient()) {
		// RFC 9126 §2.3: 429 when a client pushes more than allowed.
		return nil, &Error{Code: CodeSlowDown, RetryAfter: lifetime,
			Description: "the client has too many unused pushed authorization requests; use or let them expire"}
	}
	value := RequestURIPrefix + randomToken()
	p := &PushedRequest{ID: TokenHash(value), ClientID: c.ID, Request: ar, ExpiresAt: now.Add(lifetime)}
	if err := e.st.Pushed.CreatePushedRequest(ctx, p); err != nil {
		if e.clientGone(ctx, c.ID) {
			return nil, invalidClient("the client no longer exists")
		}
		return nil, storeFailure(err)
	}
	return &PushedAuthorizationResponse{RequestURI: value, ExpiresIn: int64(lifetime / time.Second)}, nil
}

// errBadRequestURI is the one answer for a request_uri that is unknown,
// expired, used, or another client's (RFC 9126 §4; the error code is
// OIDC Core §3.1.2.6's).
func errBadRequestURI() *Error {
	return Errorf(CodeInvalidRequestURI, "request_uri is unknown, expired or already used")
}

// isPushedURI reports whether uri has the form of a request_uri this
// server issues.
func isPushedURI(uri string) bool { return strings.HasPrefix(uri, RequestURIPrefix) }

// pushedRequest finds the unexpired pushed request uri of client c and,
// at its first use, gives it the sign-in window.
func (e *Engine) pushedRequest(ctx context.Context, c *Client, uri string) (*PushedRequest, error) {
	if e.st.Pushed == nil {
		return nil, errBadRequestURI()
	}
	p, err := e.st.Pushed.PushedRequestByID(ctx, TokenHash(uri))
	if errors.Is(err, ErrNotFound) {
		return nil, errBadRequestURI()
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	now := e.now()
	if p.ClientID != c.ID || !now.Before(p.ExpiresAt) {
		return nil, errBadRequestURI()
	}
	if !p.Started {
		until := now.Add(PushedSignInWindow)
		if until.Before(p.ExpiresAt) {
			until = p.ExpiresAt
		}
		if _, err := e.st.Pushed.StartPushedRequest(ctx, p.ID, until); err != nil {
			return nil, storeFailure(err)
		}
	}
	return p, nil
}

// consumePushed ends the pushed request a is made from, when it is made
// from one, as a code is issued for it: a request_uri answers one
// authorization (RFC 9126 §4), and of two sign-ins racing on one, one
// gets the code and the other invalid_request_uri.
func (e *Engine) consumePushed(ctx context.Context, a *Authorization, now time.Time) error {
	if a.pushedID == "" {
		return nil
	}
	ok, err := e.st.Pushed.ConsumePushedRequest(ctx, a.pushedID, now)
	if err != nil {
		return storeFailure(err)
	}
	if !ok {
		return errBadRequestURI()
	}
	return nil
}
