package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
)

// logHeartbeat is how often a followed log stream sends a comment, so
// that proxies and clients see the connection alive (and a gone client
// is noticed).
const logHeartbeat = 15 * time.Second

// scriptLogs answers GET /admin/v1/scripts/{name}/logs: this instance's
// latest context.log lines of a script as JSON, or with ?follow=true as
// server-sent events (docs/scripts.md, "Logs"; HTML Living Standard
// §9.2, "Server-sent events").
func (s *Server) scriptLogs(c echo.Context) error {
	q := c.QueryParams()
	limit := engine.DefaultScriptLogLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > engine.MaxScriptLogLimit {
			return engine.Errorf(engine.CodeInvalidRequest, "limit: must be a whole number from 1 to %d", engine.MaxScriptLogLimit)
		}
		limit = n
	}
	since := q.Get("since")
	if since == "" {
		// An EventSource reconnecting says where it was.
		since = c.Request().Header.Get("Last-Event-ID")
	}
	var afterSeq uint64
	var after time.Time
	if since != "" {
		var err error
		if afterSeq, err = strconv.ParseUint(since, 10, 64); err != nil {
			if after, err = time.Parse(time.RFC3339Nano, since); err != nil {
				return engine.Errorf(engine.CodeInvalidRequest, "since: must be a sequence number or an RFC 3339 time")
			}
		}
	}
	follow := false
	switch q.Get("follow") {
	case "", "false", "0":
	case "true", "1":
		follow = true
	default:
		return engine.Errorf(engine.CodeInvalidRequest, "follow: must be true or false")
	}
	ctx, name := c.Request().Context(), c.Param("name")
	if !follow {
		lines, err := s.eng.ScriptLogs(ctx, name, afterSeq, after, limit)
		return answer(c, map[string]any{"lines": lines}, err)
	}
	// Follow before reading what is kept, so that no line falls between.
	f, err := s.eng.FollowScriptLogs(ctx, name)
	if err != nil {
		return err
	}
	defer f.Stop()
	backlog, err := s.eng.ScriptLogs(ctx, name, afterSeq, after, limit)
	if err != nil {
		return err
	}

	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// The server's read and write timeouts are for ordinary requests; a
	// stream lives until its client goes or the server shuts down. Each
	// write gets its own deadline instead, so a client that stops
	// reading is dropped.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	write := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(2 * logHeartbeat))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	event := func(l hooks.LogLine) bool {
		b, _ := json.Marshal(l)
		return write("id: %d\ndata: %s\n\n", l.Seq, b)
	}
	last := afterSeq
	for _, l := range backlog {
		if !event(l) {
			return nil
		}
		last = l.Seq
	}
	if !write(": following %s\n\n", name) {
		return nil
	}
	beat := time.NewTicker(logHeartbeat)
	defer beat.Stop()
	var dropped uint64
	for {
		// Lines lost while this client lagged are counted, not waited for.
		if n := f.Dropped(); n > dropped {
			dropped = n
			if !write("data: {\"dropped\": %d}\n\n", n) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		case l, ok := <-f.Lines():
			if !ok {
				// The script was deleted: the stream ends with it.
				write("event: end\ndata: {\"ended\": \"the script was deleted\"}\n\n")
				return nil
			}
			if l.Seq <= last {
				continue // in the backlog already
			}
			if !event(l) {
				return nil
			}
		case <-beat.C:
			if !write(": heartbeat\n\n") {
				return nil
			}
		}
	}
}

// CloseStreams ends the followed log streams (GET
// /admin/v1/scripts/{name}/logs?follow=true) and makes new ones end at
// once. http.Server.Shutdown waits for every handler, and a stream's
// never ends by itself: register this with
// http.Server.RegisterOnShutdown.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }
