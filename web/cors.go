package web

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// corsMethods are the endpoints a browser app may call from its own
// origin, with the methods each answers (docs/browser-flow.md). The
// authorization endpoint is a page the browser navigates to, and the
// admin API is for servers and tools: neither answers CORS. The pushed
// authorization request endpoint does, as the token endpoint: a public
// browser app pushes its request before it sends the user away
// (docs/par.md).
var corsMethods = map[string]string{
	engine.PathToken:                          "POST",
	engine.PathPAR:                            "POST",
	engine.PathRevoke:                         "POST",
	engine.PathIntrospect:                     "GET, POST",
	engine.PathUserinfo:                       "GET, POST",
	engine.PathJWKS:                           "GET",
	"/.well-known/openid-configuration":       "GET",
	"/.well-known/oauth-authorization-server": "GET",
}

// corsMaxAge is how long, in seconds, a browser may keep a preflight
// answer: short, so that an origin taken off a client stops working soon
// in browsers that asked before.
const corsMaxAge = "600"

// cors answers CORS (the Fetch standard's CORS protocol) on the
// endpoints of corsMethods for an origin in some client's
// allowed_cors_origins, and gives other origins no CORS header at all:
// no "*", and no Access-Control-Allow-Credentials, since these endpoints
// take credentials in headers and bodies, never cookies. A preflight
// (OPTIONS with Access-Control-Request-Method) is answered 204 here
// whatever the origin; the browser reads the headers. Every answer of
// these endpoints carries Vary: Origin, since the CORS headers depend on
// it (discovery and JWKS may be cached).
func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		methods, ok := corsMethods[r.URL.Path]
		if !ok {
			return next(c)
		}
		h := c.Response().Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		allowed := origin != "" && s.eng.CORSOriginAllowed(r.Context(), origin)
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
			if allowed {
				h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After")
			}
			return next(c)
		}
		if allowed {
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", corsMaxAge)
		}
		return c.NoContent(http.StatusNoContent)
	}
}
