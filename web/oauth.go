package web

import (
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// oauthForm reads the parameters of an OAuth request: the body of a POST
// (which must be form-encoded) or the query of a GET. A parameter sent
// twice is invalid_request (RFC 6749 §3.1, §3.2), except resource and
// audience, which may be repeated (RFC 8707 §2, RFC 8693 §2.1); a body over the route's limit is
// returned as read, for handleError to answer 413.
func oauthForm(c echo.Context) (url.Values, error) {
	r := c.Request()
	var vals url.Values
	if r.Method == http.MethodGet {
		vals = r.URL.Query()
	} else {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/x-www-form-urlencoded" {
			return nil, engine.Errorf(engine.CodeInvalidRequest, "the body must be application/x-www-form-urlencoded")
		}
		if err := r.ParseForm(); err != nil {
			if bodyTooLarge(err) {
				return nil, err // 413, written by handleError
			}
			return nil, engine.Errorf(engine.CodeInvalidRequest, "the body is not a valid form")
		}
		vals = r.PostForm
	}
	for k, v := range vals {
		if len(v) > 1 && k != paramResource && k != paramAudience {
			return nil, engine.Errorf(engine.CodeInvalidRequest, "parameter %s is repeated", k)
		}
	}
	return vals, nil
}

// paramResource is the resource indicator parameter (RFC 8707 §2).
const paramResource = "resource"

// paramAudience is token exchange's audience parameter (RFC 8693 §2.1).
const paramAudience = "audience"

// credentials reads client credentials from the Authorization header and
// the form (RFC 6749 §2.3.1, RFC 7523 §2.2).
func credentials(c echo.Context, form url.Values) (engine.ClientCredentials, error) {
	cred := engine.ClientCredentials{
		ClientID: form.Get("client_id"), ClientSecret: form.Get("client_secret"),
		AssertionType: form.Get("client_assertion_type"), Assertion: form.Get("client_assertion"),
	}
	scheme, value, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "Basic") {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
		if err != nil {
			return cred, engine.Errorf(engine.CodeInvalidClient, "the Basic credentials are malformed")
		}
		id, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return cred, engine.Errorf(engine.CodeInvalidClient, "the Basic credentials are malformed")
		}
		var err1, err2 error
		cred.BasicID, err1 = url.QueryUnescape(id)
		cred.BasicSecret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return cred, engine.Errorf(engine.CodeInvalidClient, "the Basic credentials are malformed")
		}
		cred.Basic = true
	}
	return cred, nil
}

// clientRequest reads the parameters and client credentials of a request
// made by an authenticating client (token, revocation).
func clientRequest(c echo.Context) (url.Values, engine.ClientCredentials, error) {
	form, err := oauthForm(c)
	if err != nil {
		return nil, engine.ClientCredentials{}, err
	}
	cred, err := credentials(c, form)
	return form, cred, err
}

// resourceAccess reads the access token of Authorization: Bearer (RFC
// 6750 §2.1) or DPoP (RFC 9449 §7.1), with the request's DPoP proofs;
// false when the request uses neither scheme.
func resourceAccess(c echo.Context) (*engine.ResourceAccess, bool) {
	scheme, value, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, engine.TokenTypeDPoP) {
		return nil, false
	}
	return &engine.ResourceAccess{Scheme: scheme, Token: strings.TrimSpace(value), DPoP: dpopProof(c)}, true
}

// dpopProof is the request's DPoP headers (RFC 9449 §4.1), method and
// path; the engine puts its issuer in front of the path.
func dpopProof(c echo.Context) engine.DPoPProof {
	r := c.Request()
	return engine.DPoPProof{Headers: r.Header.Values("DPoP"), Method: r.Method, Path: r.URL.EscapedPath()}
}

// requestInfo is the request as scripts may see it; the engine filters
// out credentials, and only when a script runs.
func requestInfo(c echo.Context, form url.Values) engine.RequestInfo {
	r := c.Request()
	return engine.RequestInfo{Method: r.Method, Header: r.Header, Params: form}
}

func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// token serves POST /oauth2/token (RFC 6749 §3.2).
func (s *Server) token(c echo.Context) error {
	form, cred, err := clientRequest(c)
	if err != nil {
		return err
	}
	_, scopeGiven := form["scope"]
	req := &engine.TokenRequest{
		Credentials: cred, GrantType: engine.GrantType(form.Get("grant_type")),
		Scope: form.Get("scope"), ScopeGiven: scopeGiven,
		Username: form.Get("username"), Password: form.Get("password"),
		RefreshToken: form.Get("refresh_token"), Code: form.Get("code"),
		RedirectURI: form.Get("redirect_uri"), CodeVerifier: form.Get("code_verifier"),
		Resources: form[paramResource], DeviceCode: form.Get("device_code"), Assertion: form.Get("assertion"),
		Request:      requestInfo(c, form),
		SubjectToken: form.Get("subject_token"), SubjectTokenType: form.Get("subject_token_type"),
		ActorToken: form.Get("actor_token"), ActorTokenType: form.Get("actor_token_type"),
		RequestedTokenType: form.Get("requested_token_type"), Audiences: form[paramAudience],
		DPoP: dpopProof(c),
	}
	resp, err := s.eng.Token(c.Request().Context(), req)
	if err != nil {
		return err
	}
	noStore(c)
	if n := s.eng.DPoPNonce(); n != "" {
		c.Response().Header().Set("DPoP-Nonce", n) // RFC 9449 §8.2
	}
	return c.JSON(http.StatusOK, resp)
}

// par serves POST /oauth2/par, the pushed authorization request endpoint
// (RFC 9126 §2): client authentication as at the token endpoint, the
// authorization request validated as at the authorization endpoint, and
// 201 with the request_uri (RFC 9126 §2.2). Errors are JSON, as the
// token endpoint's (RFC 9126 §2.3).
func (s *Server) par(c echo.Context) error {
	form, cred, err := clientRequest(c)
	if err != nil {
		return err
	}
	resp, err := s.eng.PushAuthorization(c.Request().Context(),
		&engine.PushedAuthorizationRequest{Credentials: cred, Request: authorizeRequest(form), DPoP: dpopProof(c)})
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusCreated, resp)
}

// Media type of RFC 9701 answers.
const mediaIntrospectionJWT = "application/token-introspection+jwt"

// introspect serves GET and POST /oauth2/introspect (RFC 7662, RFC 9701).
func (s *Server) introspect(c echo.Context) error {
	form, err := oauthForm(c)
	if err != nil {
		return err
	}
	req := &engine.IntrospectionRequest{
		Token: form.Get("token"), TokenTypeHint: form.Get("token_type_hint"), Request: requestInfo(c, form),
	}
	if ra, ok := resourceAccess(c); ok {
		req.Bearer, req.BearerGiven, req.Scheme, req.DPoP = ra.Token, true, ra.Scheme, ra.DPoP
	} else if req.Credentials, err = credentials(c, form); err != nil {
		return err
	}
	res, err := s.eng.Introspect(c.Request().Context(), req)
	if err != nil {
		return err
	}
	noStore(c)
	if strings.EqualFold(form.Get("response_as_jwt"), "true") || acceptsIntrospectionJWT(c) {
		jwt, err := s.eng.SignIntrospection(res)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, mediaIntrospectionJWT, []byte(jwt))
	}
	return writeFields(c, http.StatusOK, res.Fields)
}

func acceptsIntrospectionJWT(c echo.Context) bool {
	for _, part := range strings.Split(c.Request().Header.Get("Accept"), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		if mt == mediaIntrospectionJWT {
			return true
		}
	}
	return false
}

// revoke serves POST /oauth2/revoke (RFC 7009 §2).
func (s *Server) revoke(c echo.Context) error {
	form, cred, err := clientRequest(c)
	if err != nil {
		return err
	}
	err = s.eng.Revoke(c.Request().Context(), &engine.RevocationRequest{
		Credentials: cred, Token: form.Get("token"), TokenTypeHint: form.Get("token_type_hint"),
	})
	if err != nil {
		return err
	}
	noStore(c)
	return c.NoContent(http.StatusOK)
}

// jwks serves the public keys (RFC 7517 §5).
func (s *Server) jwks(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=60")
	return c.JSON(http.StatusOK, s.eng.JWKS())
}

// discovery serves RFC 8414 and OpenID Connect Discovery metadata.
func (s *Server) discovery(c echo.Context) error {
	md, err := s.eng.Metadata(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, md)
}
