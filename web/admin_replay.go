package web

import (
	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
)

// replayScript runs a version or unsaved source of a script on the inputs
// its live version recorded on this instance (docs/scripts.md, "Replay").
// It runs code, so it needs keyhook:scripts.write, as the dry run does;
// and the answer shows what the recorded requests carried, which
// keyhook:scripts.read alone never sees.
func (s *Server) replayScript(c echo.Context) error {
	var req engine.ReplayRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	out, err := s.eng.ReplayScript(c.Request().Context(), c.Param("name"), &req)
	noStore(c)
	return answer(c, out, err)
}
