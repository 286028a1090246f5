package web

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/scripts"
)

// openAPIDocument is the OpenAPI 3.1 description of the admin API
// (docs/admin-api.md). TestOpenAPIMatchesRoutes checks it against the
// routes the server registers, and TestOpenAPISchemasMatchDocs against
// the fields the admin API reads and writes.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPI serves the document without a token: it describes the API, not
// the server's data, and tools read it before they have a token.
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
}

// scriptAPI serves scripts/keyhook.d.ts, the TypeScript declarations of
// the script API (docs/scripts.md, "Typed API"). Like the OpenAPI
// document it needs no token: it describes the API every server runs, not
// this server's scripts, and editors fetch it without credentials.
func (s *Server) scriptAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/typescript; charset=utf-8", []byte(scripts.Declarations()))
}
