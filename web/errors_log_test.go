package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// TestErrorLogLevels checks how the one error handler logs: a server
// fault (5xx) at ERROR, a client's mistake (4xx) that carries a cause at
// INFO, a plain 4xx not at all (the request line records it), so that
// alerting on ERROR never fires for what clients send.
func TestErrorLogLevels(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		level  string // "" = no line
	}{
		{"storage down", engine.Wrap(engine.CodeTemporarilyUnavailable, errors.New("connection refused"), "try again"), 503, "ERROR"},
		{"a bug", errors.New("nil map"), 500, "ERROR"},
		{"a wrapped server error", fmt.Errorf("issuing: %w", engine.Wrap(engine.CodeServerError, errors.New("sign"), "x")), 500, "ERROR"},
		{"client mistake with a cause", engine.Wrap(engine.CodeInvalidClient, errors.New("jwks_uri: 404"), "the client's jwks_uri cannot be read"), 400, "INFO"},
		{"client mistake", engine.Errorf(engine.CodeInvalidRequest, "grant_type is missing"), 400, ""},
		{"not found", engine.Errorf(engine.CodeNotFound, "client x does not exist"), 404, ""},
		{"forbidden", engine.Errorf(engine.CodeInsufficientScope, "no"), 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := New(Config{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			rec := httptest.NewRecorder()
			c := s.echo.NewContext(httptest.NewRequest(http.MethodPost, "/oauth2/token", nil), rec)
			s.handleError(tc.err, c)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			var line struct{ Level string }
			if buf.Len() > 0 {
				if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
					t.Fatalf("log %q: %v", buf.String(), err)
				}
			}
			if line.Level != tc.level {
				t.Fatalf("logged at %q, want %q: %s", line.Level, tc.level, buf.String())
			}
		})
	}
}
