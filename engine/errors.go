package engine

import (
	"errors"
	"fmt"
	"time"
)

// ErrorCode is an OAuth 2.0 error code (RFC 6749 §5.2, RFC 6750 §3.1,
// RFC 7009 §2.2.1). Only package web turns codes into HTTP statuses.
type ErrorCode string

// Error codes keyhook answers with.
const (
	CodeInvalidRequest          ErrorCode = "invalid_request"
	CodeInvalidClient           ErrorCode = "invalid_client"
	CodeInvalidGrant            ErrorCode = "invalid_grant"
	CodeUnauthorizedClient      ErrorCode = "unauthorized_client"
	CodeUnsupportedGrantType    ErrorCode = "unsupported_grant_type"
	CodeInvalidScope            ErrorCode = "invalid_scope"
	CodeInvalidToken            ErrorCode = "invalid_token"
	CodeInsufficientScope       ErrorCode = "insufficient_scope"
	CodeAccessDenied            ErrorCode = "access_denied"
	CodeUnsupportedResponseType ErrorCode = "unsupported_response_type"
	CodeUnsupportedTokenType    ErrorCode = "unsupported_token_type"
	CodeServerError             ErrorCode = "server_error"
	CodeTemporarilyUnavailable  ErrorCode = "temporarily_unavailable"
	// CodeSlowDown answers an attempt refused by the failure throttle
	// (registered for the token endpoint by RFC 8628 §3.5; HTTP 429).
	CodeSlowDown ErrorCode = "slow_down"
	// Authorization errors of OpenID Connect (OIDC Core §3.1.2.6): the
	// request asked for no user interaction but needs a sign-in, or used
	// a request object keyhook does not support (OIDC Core §6).
	CodeLoginRequired          ErrorCode = "login_required"
	CodeRequestNotSupported    ErrorCode = "request_not_supported"
	CodeRequestURINotSupported ErrorCode = "request_uri_not_supported"
	// CodeInvalidTarget answers a resource parameter that is malformed,
	// unknown or not allowed (RFC 8707 §2; HTTP 400).
	CodeInvalidTarget ErrorCode = "invalid_target"
	// CodeInvalidRequestURI answers a request_uri of a pushed
	// authorization request that is unknown, expired, used or another
	// client's (OIDC Core §3.1.2.6, RFC 9126 §4).
	CodeInvalidRequestURI ErrorCode = "invalid_request_uri"
)

// Error is the one error type that reaches a client. Description is sent;
// Err is for the log only and never leaves the server.
type Error struct {
	Code        ErrorCode
	Description string
	Err         error
	// RetryAfter, when set, is sent as Retry-After (RFC 9110 §10.2.3).
	RetryAfter time.Duration
	// DPoP marks an error about a DPoP proof or a DPoP-bound token: a
	// protected resource answers it with a DPoP challenge (RFC 9449
	// §7.1). DPoPNonce, when set, is sent as DPoP-Nonce (RFC 9449 §8).
	DPoP      bool
	DPoPNonce string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Description, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors compare by their OAuth code: errors.Is(err,
// CodeNotFound), or errors.Is(err, Errorf(CodeNotFound, ...)) whatever
// the description, finds an *Error with that code however it is wrapped.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case ErrorCode:
		return e.Code == t
	case *Error:
		return e.Code == t.Code
	}
	return false
}

// Error makes a code usable as the target of errors.Is (see (*Error).Is).
func (c ErrorCode) Error() string { return string(c) }

// Errorf returns a fresh *Error with a formatted description.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Wrap returns a fresh *Error that keeps cause for the log.
func Wrap(code ErrorCode, cause error, description string) *Error {
	return &Error{Code: code, Description: description, Err: cause}
}

// Sentinels that stores return.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a record with the same key exists already.
	ErrConflict = errors.New("conflict")
)

// storeFailure turns an unexpected store error into the client-facing
// answer: from the client's side a failing database is a passing condition.
func storeFailure(err error) error {
	var oe *Error
	if errors.As(err, &oe) {
		return err
	}
	return Wrap(CodeTemporarilyUnavailable, err, "the server cannot reach its storage, try again")
}
