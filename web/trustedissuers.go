package web

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// areaAdminOnly marks admin routes that only keyhook:admin may call, no
// keyhook:<area>.write scope: the writes of trusted issuers, whose keys
// mint tokens for any subject they allow (docs/jwt-bearer.md).
const areaAdminOnly = "admin"

// trustedIssuerRoutes mounts /admin/v1/trusted-issuers (docs/admin-api.md):
// read with keyhook:trusted_issuers.read, written only with keyhook:admin.
func (s *Server) trustedIssuerRoutes(route func(method, path, area string, h echo.HandlerFunc)) {
	route(http.MethodPost, "/trusted-issuers", areaAdminOnly, s.createTrustedIssuer)
	route(http.MethodGet, "/trusted-issuers", "trusted_issuers", s.listTrustedIssuers)
	route(http.MethodGet, "/trusted-issuers/:name", "trusted_issuers", s.getTrustedIssuer)
	route(http.MethodPut, "/trusted-issuers/:name", areaAdminOnly, s.replaceTrustedIssuer)
	route(http.MethodPatch, "/trusted-issuers/:name", areaAdminOnly, s.patchTrustedIssuer)
	route(http.MethodDelete, "/trusted-issuers/:name", areaAdminOnly, s.deleteTrustedIssuer)
}

func (s *Server) createTrustedIssuer(c echo.Context) error {
	var doc engine.TrustedIssuerDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.CreateTrustedIssuer(c.Request().Context(), &doc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) listTrustedIssuers(c echo.Context) error {
	out, err := s.eng.TrustedIssuerDocs(c.Request().Context())
	return answer(c, out, err)
}

func (s *Server) getTrustedIssuer(c echo.Context) error {
	out, err := s.eng.TrustedIssuerDoc(c.Request().Context(), c.Param("name"))
	return answer(c, out, err)
}

func (s *Server) replaceTrustedIssuer(c echo.Context) error {
	var doc engine.TrustedIssuerDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.ReplaceTrustedIssuer(c.Request().Context(), c.Param("name"), &doc)
	return answer(c, out, err)
}

// patchTrustedIssuer applies a JSON merge patch (RFC 7396) through
// ReplaceTrustedIssuer.
func (s *Server) patchTrustedIssuer(c echo.Context) error {
	ctx, name := c.Request().Context(), c.Param("name")
	return patchResource(c, "trusted_issuers", "name", nil,
		func() (*engine.TrustedIssuerDoc, error) { return s.eng.TrustedIssuerDoc(ctx, name) },
		func(d *engine.TrustedIssuerDoc) (*engine.TrustedIssuerDoc, error) {
			return s.eng.ReplaceTrustedIssuer(ctx, name, d)
		})
}

func (s *Server) deleteTrustedIssuer(c echo.Context) error {
	return noContent(c, s.eng.DeleteTrustedIssuer(c.Request().Context(), c.Param("name")))
}
