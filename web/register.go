package web

import (
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/keyhook/keyhook/engine"
)

// registrationBodyLimit bounds a registration request: client metadata
// with a JWK Set of a few keys fits many times over.
const registrationBodyLimit = "64K"

// registrationRoutes mounts dynamic client registration (RFC 7591 §3)
// and the client configuration endpoint (RFC 7592 §2),
// docs/registration.md. The bearer tokens they take (initial access
// token, registration access token) are checked by the engine.
func (s *Server) registrationRoutes(e *echo.Echo) {
	limit := middleware.BodyLimit(registrationBodyLimit)
	e.POST(engine.PathRegister, s.register, limit)
	e.GET(engine.PathRegister+"/:id", s.readRegistration)
	e.PUT(engine.PathRegister+"/:id", s.updateRegistration, limit)
	e.DELETE(engine.PathRegister+"/:id", s.deleteRegistration)
}

// registrationRequest reads the bearer token and the JSON object of a
// registration request.
func registrationRequest(c echo.Context) (*engine.RegistrationRequest, error) {
	tok, _ := bearer(c)
	req := &engine.RegistrationRequest{Token: tok, Request: requestInfo(c, nil)}
	if mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); mt != echo.MIMEApplicationJSON {
		return nil, engine.Errorf(engine.CodeInvalidRequest, "the request body must be application/json (RFC 7591 §3.1)")
	}
	if err := decodeStrict(c.Request().Body, &req.Metadata); err != nil {
		return nil, err
	}
	if req.Metadata == nil {
		return nil, engine.Errorf(engine.CodeInvalidClientMetadata, "body: a JSON object is required")
	}
	return req, nil
}

// register serves POST /oauth2/register: 201 with the client information
// response (RFC 7591 §3.2.1).
func (s *Server) register(c echo.Context) error {
	req, err := registrationRequest(c)
	if err != nil {
		return err
	}
	out, err := s.eng.Register(c.Request().Context(), req)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusCreated, out)
}

// readRegistration serves GET /oauth2/register/{client_id} (RFC 7592 §2.1).
func (s *Server) readRegistration(c echo.Context) error {
	tok, _ := bearer(c)
	out, err := s.eng.RegisteredClientInformation(c.Request().Context(), c.Param("id"), tok)
	noStore(c)
	return answer(c, out, err)
}

// updateRegistration serves PUT /oauth2/register/{client_id} (RFC 7592 §2.2).
func (s *Server) updateRegistration(c echo.Context) error {
	tok, _ := bearer(c)
	if _, err := s.eng.RegisteredClientInformation(c.Request().Context(), c.Param("id"), tok); err != nil {
		return err // the token first: a stranger learns nothing from the body's errors
	}
	req, err := registrationRequest(c)
	if err != nil {
		return err
	}
	out, err := s.eng.UpdateRegistration(c.Request().Context(), c.Param("id"), req)
	noStore(c)
	return answer(c, out, err)
}

// deleteRegistration serves DELETE /oauth2/register/{client_id} (RFC 7592
// §2.3): 204.
func (s *Server) deleteRegistration(c echo.Context) error {
	tok, _ := bearer(c)
	return noContent(c, s.eng.DeleteRegistration(c.Request().Context(), c.Param("id"), tok))
}

// bearer is the token of an Authorization: Bearer header (RFC 6750
// §2.1): registration access tokens are bearer tokens (RFC 7592 §3).
func bearer(c echo.Context) (string, bool) {
	scheme, value, _ := strings.Cut(c.Request().Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(value), true
}
