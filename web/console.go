package web

import (
	"embed"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// consoleFiles are the admin console's page, script and style
// (docs/console.md): hand-written, embedded, served from this server only.
//
//go:embed console/index.html console/console.js console/console.css
var consoleFiles embed.FS

// consoleCSP lets the console load its own script and style and call its
// own server, and nothing else: no inline code, no other origin, no
// framing. Scripts' sources, logs and client names it shows are data an
// attacker may write; the page puts them in text nodes, and this policy
// stops any that slipped into markup from running.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// consoleRoutes mounts the admin console at /admin/. Its files need no
// token: everything it shows or changes goes through the admin API with
// the token the page gets from /oauth2/token, so it adds no way in.
func (s *Server) consoleRoutes(e *echo.Echo) {
	e.GET("/admin", func(c echo.Context) error {
		consoleHeaders(c)
		return c.Redirect(http.StatusMovedPermanently, "/admin/")
	})
	e.GET("/admin/", consoleFile("console/index.html", "text/html; charset=utf-8"))
	e.GET("/admin/console.js", consoleFile("console/console.js", "text/javascript; charset=utf-8"))
	e.GET("/admin/console.css", consoleFile("console/console.css", "text/css; charset=utf-8"))

	// The console's own admin routes, outside /admin/v1/scripts/ so that
	// no script name can reach them and they no script's route.
	limit := middleware.BodyLimit("1M")
	e.POST("/admin/v1/script-check", s.checkScript, limit, s.requireScope("scripts"))
	e.GET("/admin/v1/script-stats", s.scriptStats, s.requireScope("scripts"))
	e.GET("/admin/v1/clients/:id/sample", s.scriptSample, s.requireScope("clients"))
}

func consoleHeaders(c echo.Context) {
	h := c.Response().Header()
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func consoleFile(name, contentType string) echo.HandlerFunc {
	body, err := consoleFiles.ReadFile(name)
	if err != nil {
		panic("web: console file missing: " + name) // embedded at build time
	}
	return func(c echo.Context) error {
		consoleHeaders(c)
		return c.Blob(http.StatusOK, contentType, body)
	}
}

// checkScript serves POST /admin/v1/script-check: {"source": "..."} is
// compiled, never run, and the answer lists why it does not compile.
func (s *Server) checkScript(c echo.Context) error {
	var req struct {
		Source string `json:"source"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	problems, err := s.eng.CheckScriptSource(req.Source)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"errors": problems})
}

// scriptSample serves GET /admin/v1/clients/{client_id}/sample: a dry
// run's input for a token of the client (?function=, default
// modifyResponse).
func (s *Server) scriptSample(c echo.Context) error {
	out, err := s.eng.ScriptSample(c.Request().Context(), c.Param("id"), c.QueryParam("function"))
	noStore(c)
	return answer(c, out, err)
}
