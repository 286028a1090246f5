package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
)

// liveLogSetup makes a bound script that logs its client, and a secret,
// on every call, in the given isolation mode.
func liveLogSetup(t *testing.T, h *harness, isolation string) string {
	t.Helper()
	h.createScript(introspectionScript("chatty", `context.log("seen", context.client.client_id, "key", context.secrets.k); return true;`,
		map[string]any{"isolation": isolation, "secrets": map[string]string{"k": "live-secret-3e4f5a"}}))
	h.createClient(map[string]any{"client_id": "talker", "client_secret": "talker-secret", "introspection_scripts": []string{"chatty"}})
	return h.mustToken("talker", "talker-secret", "").AccessToken
}

// introspectID introspects tok and returns the X-Request-Id answered.
func introspectID(t *testing.T, h *harness, tok string) string {
	t.Helper()
	r := h.form("/oauth2/introspect", url.Values{"token": {tok}}, "keyhook-admin", adminSecret)
	if r.status != http.StatusOK || r.header.Get("X-Request-Id") == "" {
		t.Fatalf("introspect: %d %v %s", r.status, r.header, r.body)
	}
	return r.header.Get("X-Request-Id")
}

// TestScriptLiveLogs checks GET /admin/v1/scripts/{name}/logs: the lines a
// bound script logs during real introspection, with their request id,
// phase, owning client, version and function, secrets redacted; and its
// query parameters and scope.
func TestScriptLiveLogs(t *testing.T) {
	for _, isolation := range []string{"process", "inline"} {
		t.Run(isolation, func(t *testing.T) {
			h := newHarness(t)
			tok := liveLogSetup(t, h, isolation)
			ids := []string{introspectID(t, h, tok), introspectID(t, h, tok)}
			version := h.admin(http.MethodGet, "/scripts/chatty", nil).str("version")

			r := h.admin(http.MethodGet, "/scripts/chatty/logs", nil)
			var got struct{ Lines []hooks.LogLine }
			if err := json.Unmarshal(r.body, &got); r.status != http.StatusOK || err != nil {
				t.Fatalf("GET logs: %d %s", r.status, r.body)
			}
			if len(got.Lines) != 2 {
				t.Fatalf("%d lines, want 2: %s", len(got.Lines), r.body)
			}
			for i, l := range got.Lines {
				want := hooks.LogLine{Seq: l.Seq, Time: l.Time, Script: "chatty", Version: version, RequestID: ids[i],
					Phase: "introspection", ClientID: "talker", Function: "modifyResponse", DurationMS: l.DurationMS,
					Line: "seen talker key [secret]"}
				if l != want || l.Time.IsZero() || l.DurationMS <= 0 {
					t.Errorf("line %d = %+v, want %+v", i, l, want)
				}
			}
			if strings.Contains(string(r.body), "live-secret-3e4f5a") {
				t.Fatalf("the live log carries a secret: %s", r.body)
			}
			first := got.Lines[0]

			for _, tc := range []struct {
				query  string
				status int
				lines  int
			}{
				{"?limit=1", http.StatusOK, 1},
				{"?since=" + itoa(first.Seq), http.StatusOK, 1},
				{"?since=" + first.Time.Add(-time.Second).Format(time.RFC3339Nano), http.StatusOK, 2},
				{"?limit=0", http.StatusBadRequest, 0},
				{"?limit=1001", http.StatusBadRequest, 0},
				{"?since=yesterday", http.StatusBadRequest, 0},
				{"?follow=maybe", http.StatusBadRequest, 0},
			} {
				r := h.admin(http.MethodGet, "/scripts/chatty/logs"+tc.query, nil)
				lines, _ := r.json["lines"].([]any)
				if r.status != tc.status || len(lines) != tc.lines {
					t.Errorf("GET logs%s: %d with %d lines, want %d with %d: %s", tc.query, r.status, len(lines), tc.status, tc.lines, r.body)
				}
			}
			if r := h.admin(http.MethodGet, "/scripts/missing/logs", nil); r.status != http.StatusNotFound {
				t.Errorf("logs of a missing script: %d %s", r.status, r.body)
			}
		})
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestScriptLiveLogsScope checks that reading the live log needs
// keyhook:scripts.read (or keyhook:admin), not another area's.
func TestScriptLiveLogsScope(t *testing.T) {
	h := newHarness(t)
	liveLogSetup(t, h, "inline")
	for _, tc := range []struct {
		scope  string
		status int
	}{
		{"keyhook:clients.read", http.StatusForbidden},
		{"keyhook:scripts.write", http.StatusForbidden},
		{"keyhook:scripts.read", http.StatusOK},
	} {
		t.Run(tc.scope, func(t *testing.T) {
			id := "reader-" + strings.NewReplacer(":", "-", ".", "-").Replace(tc.scope)
			h.createClient(map[string]any{"client_id": id, "client_secret": id + "-secret", "scope": tc.scope})
			tok := h.mustToken(id, id+"-secret", "").AccessToken
			for _, q := range []string{"", "?follow=true"} {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/admin/v1/scripts/chatty/logs"+q, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				cancel()
				if resp.StatusCode != tc.status {
					t.Errorf("GET logs%s with %s: %d, want %d", q, tc.scope, resp.StatusCode, tc.status)
				}
			}
		})
	}
}

// sseReader reads server-sent events from a followed log.
type sseReader struct {
	t *testing.T
	r *bufio.Reader
}

// next returns the next data line, skipping comments and ids; it fails
// the test after a generous timeout (the stream's context).
func (s *sseReader) next() string {
	s.t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the stream: %v", err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			return strings.TrimSpace(data)
		}
	}
}

func follow(t *testing.T, h *harness, query string) (*http.Response, *sseReader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/admin/v1/scripts/chatty/logs"+query, nil)
	req.Header.Set("Authorization", "Bearer "+h.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("follow: %d %v", resp.StatusCode, resp.Header)
	}
	r := &sseReader{t: t, r: bufio.NewReader(resp.Body)}
	// The server says it follows once the backlog is out.
	for {
		line, err := r.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.HasPrefix(line, ": following") {
			return resp, r
		}
	}
}

// TestScriptLiveLogsFollow checks ?follow=true: a line logged after the
// client connected arrives as an event, and a graceful shutdown ends the
// stream at once instead of waiting for it.
func TestScriptLiveLogsFollow(t *testing.T) {
	h := newHarness(t)
	tok := liveLogSetup(t, h, "process")
	before := introspectID(t, h, tok)

	_, stream := follow(t, h, "?follow=true&since=0")
	id := introspectID(t, h, tok)
	for {
		var l hooks.LogLine
		data := stream.next()
		if err := json.Unmarshal([]byte(data), &l); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if l.RequestID == before {
			continue // the backlog
		}
		if l.RequestID != id || l.Line != "seen talker key [secret]" || l.ClientID != "talker" {
			t.Fatalf("event %+v, want the line of request %s", l, id)
		}
		break
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a followed log open: %v after %v", err, time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with a followed log open", d)
	}
}

// TestScriptLiveLogsFollowLimits: a followed log ends when its script is
// deleted (a new script of that name shows nothing to it), and an
// instance serves at most hooks.MaxLogFollowers streams at once (503
// past them).
func TestScriptLiveLogsFollowLimits(t *testing.T) {
	h := newHarness(t)
	h.createScript(introspectionScript("chatty", `return true;`, map[string]any{"timeout_ms": 5000}))
	resp, stream := follow(t, h, "?follow=true")
	if r := h.admin(http.MethodDelete, "/scripts/chatty", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if data := stream.next(); !strings.Contains(data, "deleted") {
		t.Fatalf("event %q, want the end of the stream", data)
	}
	if rest, err := io.ReadAll(stream.r); err != nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("after the end event: %q, %v; want the body to end", rest, err)
	}
	resp.Body.Close()

	h.createScript(introspectionScript("chatty", `return true;`, map[string]any{"timeout_ms": 5000}))
	for range hooks.MaxLogFollowers {
		follow(t, h, "?follow=true") // closed at the test's end
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+"/admin/v1/scripts/chatty/logs?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+h.adminToken)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: status %d, want 503", hooks.MaxLogFollowers+1, r.StatusCode)
	}
}
