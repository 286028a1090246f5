package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/keyhook/keyhook/engine"
)

// adminRoutes mounts the admin API (docs/admin-api.md, described by
// web/openapi.json). Every route but the OpenAPI document and the script
// API's TypeScript declarations needs a bearer
// access token of this server with keyhook:admin, or keyhook:<area>.read
// for GET and keyhook:<area>.write otherwise.
func (s *Server) adminRoutes(e *echo.Echo) {
	limit := middleware.BodyLimit("1M")
	// Middleware is set per route: a group with middleware would catch
	// every unmatched path below it and turn 405s into 404s.
	route := func(method, path, area string, h echo.HandlerFunc) {
		e.Add(method, "/admin/v1"+path, h, limit, s.requireScope(area))
	}
	route(http.MethodPost, "/clients", "clients", s.createClient)
	route(http.MethodGet, "/clients", "clients", s.listClients)
	route(http.MethodGet, "/clients/:id", "clients", s.getClient)
	route(http.MethodPut, "/clients/:id", "clients", s.replaceClient)
	route(http.MethodPatch, "/clients/:id", "clients", s.patchClient)
	route(http.MethodDelete, "/clients/:id", "clients", s.deleteClient)
	route(http.MethodPost, "/clients/:id/secret", "clients", s.rotateSecret)

	// Initial access tokens of dynamic client registration
	// (docs/registration.md): the clients area, since a registration
	// gives no more than keyhook:clients.write may give itself.
	route(http.MethodPost, "/registration-tokens", "clients", s.createRegistrationToken)
	route(http.MethodGet, "/registration-tokens", "clients", s.listRegistrationTokens)
	route(http.MethodGet, "/registration-tokens/:id", "clients", s.getRegistrationToken)
	route(http.MethodDelete, "/registration-tokens/:id", "clients", s.deleteRegistrationToken)

	route(http.MethodPost, "/scripts", "scripts", s.createScript)
	route(http.MethodGet, "/scripts", "scripts", s.listScripts)
	route(http.MethodGet, "/scripts/:name", "scripts", s.getScript)
	route(http.MethodPut, "/scripts/:name", "scripts", s.replaceScript)
	route(http.MethodPatch, "/scripts/:name", "scripts", s.patchScript)
	route(http.MethodDelete, "/scripts/:name", "scripts", s.deleteScript)
	route(http.MethodPost, "/scripts/:name/test", "scripts", s.testScript)
	route(http.MethodGet, "/scripts/:name/versions", "scripts", s.listScriptVersions)
	route(http.MethodGet, "/scripts/:name/versions/:number", "scripts", s.getScriptVersion)
	route(http.MethodPost, "/scripts/:name/rollback", "scripts", s.rollbackScript)
	route(http.MethodPost, "/scripts/:name/promote", "scripts", s.promoteScript)
	route(http.MethodGet, "/scripts/:name/logs", "scripts", s.scriptLogs)
	route(http.MethodPost, "/scripts/:name/replay", "scripts", s.replayScript)

	route(http.MethodPost, "/users", "users", s.createUser)
	route(http.MethodGet, "/users", "users", s.listUsers)
	route(http.MethodGet, "/users/:name", "users", s.getUser)
	route(http.MethodPut, "/users/:name", "users", s.replaceUser)
	route(http.MethodPatch, "/users/:name", "users", s.patchUser)
	route(http.MethodDelete, "/users/:name", "users", s.deleteUser)

	route(http.MethodGet, "/config", "config", s.getConfig)
	route(http.MethodPut, "/config", "config", s.putConfig)

	route(http.MethodPost, "/keys/rotate", "keys", s.rotateKey)

	s.trustedIssuerRoutes(route)

	e.GET("/admin/v1/openapi.json", s.openAPI)
	// A static route: echo tries it before /scripts/:name, and no script
	// can be called api.d.ts (names are [a-z0-9_-]).
	e.GET("/admin/v1/scripts/api.d.ts", s.scriptAPI)
}

// ctxAdminScope holds the scope of the request's admin token.
const ctxAdminScope = "keyhook.admin_scope"

// requireScope checks the bearer token and its scope (RFC 6750 §3.1).
func (s *Server) requireScope(area string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			ra, ok := resourceAccess(c)
			if !ok || ra.Token == "" {
				return engine.Errorf(engine.CodeInvalidToken, "a bearer access token is required")
			}
			t, err := s.eng.ResourceToken(c.Request().Context(), ra)
			if err != nil {
				return err
			}
			need := "keyhook:" + area + ".write"
			if c.Request().Method == http.MethodGet {
				need = "keyhook:" + area + ".read"
			}
			if area == areaAdminOnly {
				need = engine.AdminScope
			}
			for _, sc := range strings.Fields(t.Scope) {
				if sc == engine.AdminScope || sc == need {
					// The engine limits what a delegated token may do
					// within its area (see engine.WithAdminScope).
					c.Set(ctxAdminScope, t.Scope)
					ctx := engine.WithAdminScope(c.Request().Context(), t.Scope)
					c.SetRequest(c.Request().WithContext(engine.WithAdminClient(ctx, t.ClientID)))
					return next(c)
				}
			}
			if need == engine.AdminScope {
				return engine.Errorf(engine.CodeInsufficientScope, "this needs scope %s", engine.AdminScope)
			}
			return engine.Errorf(engine.CodeInsufficientScope, "this needs scope %s or %s", engine.AdminScope, need)
		}
	}
}

// decodeJSON reads a JSON body strictly: unknown fields and wrong types
// are 400 naming the field; a body over the route's limit is 413.
func decodeJSON(c echo.Context, dst any) error {
	return decodeStrict(c.Request().Body, dst)
}

// decodeStrict decodes one JSON value from r into dst as decodeJSON does.
func decodeStrict(r io.Reader, dst any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if dec.More() {
			return engine.Errorf(engine.CodeInvalidRequest, "body: more than one JSON value")
		}
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case bodyTooLarge(err):
		return err // 413, written by handleError
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return engine.Errorf(engine.CodeInvalidRequest, "%s: must be %s, not %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return engine.Errorf(engine.CodeInvalidRequest, "body: malformed JSON at byte %d", syntaxErr.Offset)
	case errors.Is(err, io.EOF):
		return engine.Errorf(engine.CodeInvalidRequest, "body: a JSON object is required")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return engine.Errorf(engine.CodeInvalidRequest, "%s: unknown field", name)
	}
	return engine.Errorf(engine.CodeInvalidRequest, "body: %v", err)
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "float"):
		return "a number"
	case goKind == "bool":
		return "true or false"
	case goKind == "string":
		return "a string"
	case goKind == "slice":
		return "a list"
	case goKind == "map", goKind == "struct":
		return "an object"
	}
	return fmt.Sprintf("a %s", goKind)
}

func (s *Server) createClient(c echo.Context) error {
	var doc engine.ClientDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.CreateClient(c.Request().Context(), &doc)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) listClients(c echo.Context) error {
	out, err := s.eng.ClientDocs(c.Request().Context())
	return answer(c, out, err)
}

func (s *Server) getClient(c echo.Context) error {
	out, err := s.eng.ClientDoc(c.Request().Context(), c.Param("id"))
	return answer(c, out, err)
}

func (s *Server) replaceClient(c echo.Context) error {
	var doc engine.ClientDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.ReplaceClient(c.Request().Context(), c.Param("id"), &doc)
	noStore(c)
	return answer(c, out, err)
}

// patchClient applies a JSON merge patch (RFC 7396) to a client: the
// patched client goes through ReplaceClient, as a PUT body would.
func (s *Server) patchClient(c echo.Context) error {
	ctx, id := c.Request().Context(), c.Param("id")
	return patchResource(c, "clients", "client_id", janssenRunIntrospection,
		func() (*engine.ClientDoc, error) { return s.eng.ClientDoc(ctx, id) },
		func(d *engine.ClientDoc) (*engine.ClientDoc, error) { return s.eng.ReplaceClient(ctx, id, d) })
}

func (s *Server) deleteClient(c echo.Context) error {
	return noContent(c, s.eng.DeleteClient(c.Request().Context(), c.Param("id")))
}

func (s *Server) rotateSecret(c echo.Context) error {
	out, err := s.eng.RotateClientSecret(c.Request().Context(), c.Param("id"))
	noStore(c)
	return answer(c, out, err)
}

func (s *Server) createRegistrationToken(c echo.Context) error {
	var doc engine.RegistrationTokenDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.CreateRegistrationToken(c.Request().Context(), &doc)
	if err != nil {
		return err
	}
	noStore(c)
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) listRegistrationTokens(c echo.Context) error {
	out, err := s.eng.RegistrationTokenDocs(c.Request().Context())
	return answer(c, out, err)
}

func (s *Server) getRegistrationToken(c echo.Context) error {
	out, err := s.eng.RegistrationTokenDoc(c.Request().Context(), c.Param("id"))
	return answer(c, out, err)
}

func (s *Server) deleteRegistrationToken(c echo.Context) error {
	return noContent(c, s.eng.DeleteRegistrationToken(c.Request().Context(), c.Param("id")))
}

func (s *Server) createScript(c echo.Context) error {
	var doc engine.ScriptDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.CreateScript(c.Request().Context(), &doc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) listScripts(c echo.Context) error {
	out, err := s.eng.ScriptDocs(c.Request().Context())
	return answer(c, out, err)
}

func (s *Server) getScript(c echo.Context) error {
	out, err := s.eng.ScriptDoc(c.Request().Context(), c.Param("name"))
	return answer(c, out, err)
}

func (s *Server) replaceScript(c echo.Context) error {
	var doc engine.ScriptDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.ReplaceScript(c.Request().Context(), c.Param("name"), &doc)
	return answer(c, out, err)
}

// patchScript applies a JSON merge patch (RFC 7396) to a script through
// ReplaceScript.
func (s *Server) patchScript(c echo.Context) error {
	ctx, name := c.Request().Context(), c.Param("name")
	return patchResource(c, "scripts", "name", nil,
		func() (*engine.ScriptDoc, error) { return s.eng.ScriptDoc(ctx, name) },
		func(d *engine.ScriptDoc) (*engine.ScriptDoc, error) { return s.eng.ReplaceScript(ctx, name, d) })
}

func (s *Server) deleteScript(c echo.Context) error {
	return noContent(c, s.eng.DeleteScript(c.Request().Context(), c.Param("name")))
}

func (s *Server) testScript(c echo.Context) error {
	var req engine.DryRunRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	out, err := s.eng.TestScript(c.Request().Context(), c.Param("name"), &req)
	return answer(c, out, err)
}

func (s *Server) createUser(c echo.Context) error {
	var doc engine.UserDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.CreateUser(c.Request().Context(), &doc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) listUsers(c echo.Context) error {
	out, err := s.eng.UserDocs(c.Request().Context())
	return answer(c, out, err)
}

func (s *Server) getUser(c echo.Context) error {
	out, err := s.eng.UserDoc(c.Request().Context(), c.Param("name"))
	return answer(c, out, err)
}

func (s *Server) replaceUser(c echo.Context) error {
	var doc engine.UserDoc
	if err := decodeJSON(c, &doc); err != nil {
		return err
	}
	out, err := s.eng.ReplaceUser(c.Request().Context(), c.Param("name"), &doc)
	return answer(c, out, err)
}

// patchUser applies a JSON merge patch (RFC 7396) to a user through
// ReplaceUser.
func (s *Server) patchUser(c echo.Context) error {
	ctx, name := c.Request().Context(), c.Param("name")
	return patchResource(c, "users", "username", nil,
		func() (*engine.UserDoc, error) { return s.eng.UserDoc(ctx, name) },
		func(d *engine.UserDoc) (*engine.UserDoc, error) { return s.eng.ReplaceUser(ctx, name, d) })
}

func (s *Server) deleteUser(c echo.Context) error {
	return noContent(c, s.eng.DeleteUser(c.Request().Context(), c.Param("name")))
}

func (s *Server) getConfig(c echo.Context) error {
	return c.JSON(http.StatusOK, s.eng.Properties())
}

func (s *Server) putConfig(c echo.Context) error {
	var patch map[string]json.RawMessage
	if err := decodeJSON(c, &patch); err != nil {
		return err
	}
	out, err := s.eng.UpdateProperties(c.Request().Context(), patch)
	return answer(c, out, err)
}

func (s *Server) rotateKey(c echo.Context) error {
	k, err := s.eng.RotateKey(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"kid": k.ID, "alg": k.Alg, "created_at": k.CreatedAt.Unix()})
}

// answer writes v as 200 JSON, or returns err to the error handler.
func answer(c echo.Context, v any, err error) error {
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func noContent(c echo.Context, err error) error {
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
