package web_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log sink the server's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRequestLogLine: each request logs one JSON line with its method,
// path, status, duration, request id (the caller's X-Request-Id when it is
// fit, echoed) and client_id when the request names one, and no log line
// carries a token, secret or password sent in the body, the query or the
// Authorization header.
func TestRequestLogLine(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, withLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	const (
		clientSecret = "log-client-secret-Zq81"
		password     = "log-user-password-Xw72"
		querySecret  = "log-query-secret-Pp55"
	)
	h.createClient(map[string]any{"client_id": "log-app", "client_secret": clientSecret,
		"token_endpoint_auth_method": "client_secret_post", "grant_types": []string{"password", "refresh_token"}, "scope": "openid"})
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "log-alice", "password": password}); r.status != http.StatusCreated {
		t.Fatalf("create user: %d %s", r.status, r.body)
	}
	tok := h.mustDecodeToken(h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"log-alice"},
		"password": {password}, "client_id": {"log-app"}, "client_secret": {clientSecret}}, "", ""))
	secrets := []string{clientSecret, password, querySecret, adminSecret, tok.AccessToken, tok.RefreshToken, h.adminToken}

	for _, tc := range []struct {
		name      string
		method    string
		path      string // with a query carrying secrets
		body      url.Values
		basic     bool // keyhook-admin's Basic credentials
		bearer    string
		requestID string
		// want: the logged path, status, client_id and request id ("" for
		// a generated one).
		wantPath, wantClient, wantID string
		wantStatus                   int
	}{
		{name: "password grant with the secret in body and query", method: http.MethodPost,
			path: "/oauth2/token?client_secret=" + querySecret + "&password=" + querySecret,
			body: url.Values{"grant_type": {"password"}, "username": {"log-alice"}, "password": {password},
				"client_id": {"log-app"}, "client_secret": {clientSecret}},
			requestID: "trace-4711", wantPath: "/oauth2/token", wantClient: "log-app", wantID: "trace-4711", wantStatus: 200},
		{name: "refresh grant failing", method: http.MethodPost, path: "/oauth2/token",
			body: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken + "x"},
				"client_id": {"log-app"}, "client_secret": {clientSecret}},
			wantPath: "/oauth2/token", wantClient: "log-app", wantStatus: 400},
		{name: "introspection with Basic and the token in the query", method: http.MethodGet,
			path: "/oauth2/introspect?token=" + url.QueryEscape(tok.AccessToken), basic: true,
			requestID: "bad id\twith spaces", wantPath: "/oauth2/introspect", wantClient: "keyhook-admin", wantStatus: 200},
		{name: "admin API with a bearer token and one in the query", method: http.MethodGet,
			path: "/admin/v1/clients?access_token=" + url.QueryEscape(h.adminToken), bearer: h.adminToken,
			wantPath: "/admin/v1/clients", wantStatus: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.body != nil {
				body = strings.NewReader(tc.body.Encode())
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(tc.method, h.url+tc.path, body)
			if tc.body != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.basic {
				req.SetBasicAuth("keyhook-admin", adminSecret)
			}
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			if tc.requestID != "" {
				req.Header.Set("X-Request-Id", tc.requestID)
			}
			r := h.do(req)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.wantStatus)
			}
			id := r.header.Get("X-Request-Id")
			if id == "" || (tc.wantID != "" && id != tc.wantID) || (tc.wantID == "" && id == tc.requestID) {
				t.Fatalf("X-Request-Id answered %q (sent %q)", id, tc.requestID)
			}
			var line map[string]any
			n := 0
			for _, l := range strings.Split(logs.String(), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" && m["request_id"] == id {
					line, n = m, n+1
				}
			}
			if n != 1 {
				t.Fatalf("%d request lines with request_id %q; log:\n%s", n, id, logs.String())
			}
			if line["method"] != tc.method || line["path"] != tc.wantPath || line["status"] != float64(tc.wantStatus) {
				t.Errorf("line %v", line)
			}
			if _, ok := line["duration"].(float64); !ok {
				t.Errorf("no duration: %v", line)
			}
			if got, _ := line["client_id"].(string); got != tc.wantClient {
				t.Errorf("client_id %q, want %q: %v", got, tc.wantClient, line)
			}
		})
	}
	all := logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(all, s) {
			t.Errorf("the log carries %q:\n%s", s, all)
		}
	}
}

// TestRequestLogHostileValues: in the text format, what a caller sends
// (client_id in the query or in Basic credentials, the path, the method)
// can neither start a log line of its own nor make one line huge: each
// request writes one line of bounded length, cut at a character boundary.
func TestRequestLogHostileValues(t *testing.T) {
	var logs lockedBuffer
	h := newHarness(t, withLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	const forged = "level=ERROR msg=forged"
	for _, tc := range []struct {
		name, method, path string
		basicUser          string
	}{
		{name: "newline in client_id", method: http.MethodGet,
			path: "/oauth2/authorize?client_id=" + url.QueryEscape("x\n"+forged+"\r\n"+forged)},
		{name: "newline in the Basic user-id", method: http.MethodPost, path: "/oauth2/token",
			basicUser: url.QueryEscape("x\n" + forged)},
		{name: "newline in the path", method: http.MethodGet, path: "/oauth2/" + url.PathEscape("x\n"+forged)},
		{name: "huge path", method: http.MethodGet, path: "/" + strings.Repeat("p", 30_000)},
		{name: "huge method", method: strings.Repeat("M", 30_000), path: "/oauth2/token"},
		{name: "huge client_id, multibyte", method: http.MethodGet,
			path: "/oauth2/authorize?client_id=" + url.QueryEscape("a"+strings.Repeat("é", 10_000))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "hostile-" + strings.ReplaceAll(tc.name, " ", "-")
			req, err := http.NewRequest(tc.method, h.url+tc.path, strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Request-Id", id)
			if tc.basicUser != "" {
				req.SetBasicAuth(tc.basicUser, "pw")
			}
			h.do(req)
			n := 0
			for _, l := range strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n") {
				if !strings.HasPrefix(l, "time=") {
					t.Fatalf("a log line of its own: %q", l)
				}
				if !strings.Contains(l, "request_id="+id+" ") || !strings.Contains(l, "msg=request ") {
					continue
				}
				n++
				if len(l) > 2048 {
					t.Errorf("request line of %d bytes: %.300s…", len(l), l)
				}
				if strings.Contains(l, `\x`) {
					t.Errorf("a character cut in two: %.300s…", l)
				}
			}
			if n != 1 {
				t.Fatalf("%d request lines with request_id %s", n, id)
			}
		})
	}
}
