package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/keyhook/keyhook/engine"
)

// browserRoutes mounts the endpoints a user agent or an OIDC relying
// party calls directly.
func (s *Server) browserRoutes(e *echo.Echo) {
	// CORS is middleware for every route (it picks its endpoints by
	// path), so that preflights, which have no route of their own, and
	// error answers get it too.
	e.Use(s.cors)
	limit := middleware.BodyLimit("64K")
	e.GET(engine.PathAuthorize, s.authorizeForm)
	e.POST(engine.PathAuthorize, s.authorizeLogin, limit)
	e.GET(engine.PathDevice, s.deviceForm)
	e.POST(engine.PathDevice, s.deviceSubmit, limit)
	e.GET(engine.PathUserinfo, s.userinfo)
	e.POST(engine.PathUserinfo, s.userinfo)
}

// userinfo serves OIDC Core §5.3: the user's claims for an access token
// that was granted openid.
func (s *Server) userinfo(c echo.Context) error {
	ra, ok := resourceAccess(c)
	if !ok || ra.Token == "" {
		return engine.Errorf(engine.CodeInvalidToken, "a bearer access token is required")
	}
	claims, err := s.eng.UserInfo(c.Request().Context(), ra)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusOK, claims)
}
