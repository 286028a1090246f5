// Package web is keyhook's HTTP face: it parses requests into engine
// requests, writes every error through one handler, and serves discovery,
// JWKS, health, metrics, the admin API and the login page. Only this
// package knows HTTP status codes.
package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// statusOf maps an OAuth error code to its HTTP status (RFC 6749 §5.2,
// RFC 6750 §3.1, RFC 7009 §2.2.1).
func statusOf(code engine.ErrorCode) int {
	switch code {
	case engine.CodeInvalidClient, engine.CodeInvalidToken:
		return http.StatusUnauthorized
	case engine.CodeInsufficientScope, engine.CodeAccessDenied:
		return http.StatusForbidden
	case engine.CodeServerError:
		return http.StatusInternalServerError
	case engine.CodeTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	case engine.CodeSlowDown:
		return http.StatusTooManyRequests // RFC 6585 §4
	case engine.CodeNotFound:
		return http.StatusNotFound
	case engine.CodeConflict:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// errorBody is the JSON error of RFC 6749 §5.2.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// challenge quotes a value for a WWW-Authenticate parameter (RFC 9110 §11.2).
func challenge(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// bodyTooLarge reports whether err comes from a request body over its
// route's limit. echo's BodyLimit answers *echo.HTTPError 413, from the
// middleware when Content-Length is over and from its reader when a body
// without one (chunked, RFC 9112 §7.1) grows past it; http.MaxBytesReader
// answers *http.MaxBytesError. Both are found by type, wrapped or not.
func bodyTooLarge(err error) bool {
	var mbe *http.MaxBytesError
	var he *echo.HTTPError
	return errors.As(err, &mbe) || errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge
}

// handleError is echo's one error handler: it finds the *engine.Error
// (wrapped or not) and writes its RFC body, status and challenge; a body
// over its limit is 413 (RFC 9110 §15.5.14) with an RFC 6749 §5.2 body;
// a PATCH body that is no JSON merge patch is 415 (RFC 5789 §2.2);
// echo's own errors (404 route, 405) become OAuth-shaped bodies too;
// anything else is a logged 500 that tells the client nothing.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var oe *engine.Error
	var he *echo.HTTPError
	var pe *unsupportedPatchError
	switch {
	case bodyTooLarge(err):
		writeError(c, http.StatusRequestEntityTooLarge,
			engine.Errorf(engine.CodeInvalidRequest, "the request body is too large"))
		return
	case errors.As(err, &pe):
		c.Response().Header().Set("Accept-Patch", mergePatchType)
		writeError(c, http.StatusUnsupportedMediaType, engine.Errorf(engine.CodeInvalidRequest, "%s", pe.Error()))
		return
	case errors.As(err, &oe):
	case errors.As(err, &he):
		oe = &engine.Error{Code: engine.CodeInvalidRequest, Description: fmt.Sprint(he.Message)}
		switch he.Code {
		case http.StatusNotFound:
			oe.Code = engine.CodeNotFound
		case http.StatusMethodNotAllowed:
			oe.Description = "method not allowed"
			writeError(c, he.Code, oe)
			return
		case http.StatusUnauthorized:
			oe.Code = engine.CodeInvalidToken
		}
	default:
		oe = engine.Wrap(engine.CodeServerError, err, "internal error")
	}
	status := statusOf(oe.Code)
	if c.Path() == engine.PathToken && oe.RetryAfter == 0 && (oe.Code == engine.CodeSlowDown || oe.Code == engine.CodeAccessDenied) {
		// A device's polling errors are RFC 6749 §5.2 errors (RFC 8628
		// §3.5): 400. The failure throttle's slow_down, with Retry-After,
		// stays 429 (docs/auth-limits.md).
		status = http.StatusBadRequest
	}
	// A server fault is an ERROR; a client's mistake is INFO when its
	// cause is worth a line (say, a jwks_uri that cannot be read), else
	// only the request line records it: what clients send never raises
	// an alert.
	switch {
	case status >= 500:
		s.logger(c).Error("request failed", "code", string(oe.Code), "status", status, "err", oe.Error())
	case oe.Err != nil:
		s.logger(c).Info("request refused", "code", string(oe.Code), "status", status, "err", oe.Error())
	}
	h := c.Response().Header()
	if oe.DPoPNonce != "" {
		h.Set("DPoP-Nonce", oe.DPoPNonce) // RFC 9449 §8, §9
	}
	switch oe.Code {
	case engine.CodeInvalidDPoPProof, engine.CodeUseDPoPNonce:
		// 400 at the token endpoint (RFC 9449 §5, §8); a protected
		// resource answers 401 with a DPoP challenge (RFC 9449 §7.1, §9).
		if c.Path() != engine.PathToken && c.Path() != engine.PathPAR {
			status = http.StatusUnauthorized
			h.Set("WWW-Authenticate", dpopChallenge(oe))
		}
	case engine.CodeInvalidClient:
		// 401 with a challenge when the client tried the Authorization
		// header, 400 otherwise (RFC 6749 §5.2). Introspection is a
		// protected resource (RFC 7662 §2.1): a caller it cannot
		// authenticate is always 401 there (docs/endpoints.md has the
		// introspection rules).
		if triedBasic(c.Request()) || c.Path() == engine.PathIntrospect {
			h.Set("WWW-Authenticate", `Basic realm="keyhook"`)
		} else {
			status = http.StatusBadRequest
		}
	case engine.CodeInvalidToken, engine.CodeInsufficientScope:
		if oe.DPoP || usedDPoP(c.Request()) {
			h.Set("WWW-Authenticate", dpopChallenge(oe))
		} else {
			h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="keyhook", error=%s, error_description=%s`,
				challenge(string(oe.Code)), challenge(oe.Description)))
		}
	}
	writeError(c, status, oe)
}

// dpopChallenge is RFC 9449 §7.1's challenge for an error at a protected
// resource, with the algorithms a proof may use.
func dpopChallenge(oe *engine.Error) string {
	return fmt.Sprintf(`DPoP realm="keyhook", error=%s, error_description=%s, algs=%s`,
		challenge(string(oe.Code)), challenge(oe.Description), challenge(strings.Join(engine.DPoPSigningAlgs, " ")))
}

// usedDPoP reports whether r presents its access token as
// Authorization: DPoP (RFC 9449 §7.1), whose errors get a DPoP challenge.
func usedDPoP(r *http.Request) bool {
	scheme, _, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	return strings.EqualFold(scheme, engine.TokenTypeDPoP)
}

// triedBasic reports whether r carries HTTP Basic credentials (RFC 7617
// §2; the scheme is case-insensitive, RFC 9110 §11.1).
func triedBasic(r *http.Request) bool {
	scheme, _, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	return strings.EqualFold(scheme, "Basic")
}

func writeError(c echo.Context, status int, oe *engine.Error) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	setRetryAfter(c, oe)
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, errorBody{Error: string(oe.Code), Description: oe.Description})
}

// setRetryAfter sends the error's Retry-After in whole seconds, rounded
// up (RFC 9110 §10.2.3).
func setRetryAfter(c echo.Context, oe *engine.Error) {
	if oe.RetryAfter > 0 {
		secs := (oe.RetryAfter + time.Second - 1) / time.Second
		c.Response().Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
}
