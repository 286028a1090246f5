package web

import (
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// Script versions, rollback and rollout (docs/scripts.md, "Versions,
// rollback and rollout"; docs/admin-api.md).

func (s *Server) listScriptVersions(c echo.Context) error {
	out, err := s.eng.ScriptVersionDocs(c.Request().Context(), c.Param("name"))
	return answer(c, out, err)
}

func (s *Server) getScriptVersion(c echo.Context) error {
	n, err := strconv.Atoi(c.Param("number"))
	if err != nil || n < 1 {
		return engine.Errorf(engine.CodeNotFound, "script %q has no version %q", c.Param("name"), c.Param("number"))
	}
	out, err := s.eng.ScriptVersionDoc(c.Request().Context(), c.Param("name"), n)
	return answer(c, out, err)
}

// rollbackRequest is the body of POST /admin/v1/scripts/{name}/rollback.
type rollbackRequest struct {
	Version *int `json:"version"`
}

func (s *Server) rollbackScript(c echo.Context) error {
	var req rollbackRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Version == nil {
		return engine.Errorf(engine.CodeInvalidRequest, "version: is required")
	}
	out, err := s.eng.RollbackScript(c.Request().Context(), c.Param("name"), *req.Version)
	return answer(c, out, err)
}

func (s *Server) promoteScript(c echo.Context) error {
	out, err := s.eng.PromoteScript(c.Request().Context(), c.Param("name"))
	return answer(c, out, err)
}
