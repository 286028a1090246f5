package web_test

import (
	"bufio"
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

var seriesLabel = regexp.MustCompile(`(\w+)="([^"]*)"`)

// TestMetricsLabelsAreBounded sends requests an attacker chooses freely
// (random paths, path parameters, made-up methods) and checks that the
// HTTP series' labels take only values the server defines: a route
// pattern (never a raw URL), a known method or "other", a status code.
// Otherwise every such request would add a series and grow /metrics
// without bound.
func TestMetricsLabelsAreBounded(t *testing.T) {
	h := newHarness(t)
	routes := map[string]bool{"unmatched": true}
	for _, rt := range h.srv.Config.Handler.(*echo.Echo).Routes() {
		routes[rt.Path] = true
	}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/no/such/path-4711"},
		{http.MethodGet, "/admin/v1/clients/attacker-chosen-id-0815"},
		{http.MethodPost, "/oauth2/token?x=attacker-query"},
		{"BREW", "/oauth2/token"},
		{"XYZZY-4712", "/anything-4713"},
		{http.MethodGet, "/%2e%2e/attacker-escaped-4714"},
	} {
		req, _ := http.NewRequest(tc.method, h.url+tc.path, nil)
		h.do(req)
	}
	methods := map[string]bool{"other": true}
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"} {
		methods[m] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(h.metrics()))
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "keyhook_http_") {
			continue
		}
		n++
		for _, m := range seriesLabel.FindAllStringSubmatch(line, -1) {
			name, v := m[1], m[2]
			switch {
			case name == "route" && !routes[v],
				name == "method" && !methods[v],
				name == "code" && !regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString(v):
				t.Errorf("label %s=%q is not one the server defines: %s", name, v, line)
			}
		}
	}
	if n == 0 {
		t.Fatal("no keyhook_http_ series")
	}
}
