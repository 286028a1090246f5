package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// BenchmarkIntrospect measures in-process introspection (caller
// authentication, lookup, base answer, scripts) on SQLite.
func BenchmarkIntrospect(b *testing.B) {
	h := newHarness(b)
	h.createScript(introspectionScript("bench", `response.department = context.config.d; return true;`, map[string]any{"config": map[string]any{"d": "x"}}))
	h.createClient(map[string]any{"client_id": "opaque", "client_secret": "s"})
	h.createClient(map[string]any{"client_id": "jwt", "client_secret": "s", "access_token_as_jwt": true})
	h.createClient(map[string]any{"client_id": "scripted", "client_secret": "s", "introspection_scripts": []string{"bench"}})
	h.createScript(introspectionScript("bench-inline", `response.department = context.config.d; return true;`,
		map[string]any{"config": map[string]any{"d": "x"}, "isolation": "inline"}))
	h.createClient(map[string]any{"client_id": "inline", "client_secret": "s", "introspection_scripts": []string{"bench-inline"}})
	for _, id := range []string{"opaque", "jwt", "scripted", "inline"} {
		tok := h.mustToken(id, "s", "").AccessToken
		req := &engine.IntrospectionRequest{Token: tok, Credentials: engine.ClientCredentials{Basic: true, BasicID: "keyhook-admin", BasicSecret: adminSecret}}
		b.Run(id, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := h.eng.Introspect(context.Background(), req)
				if err != nil || res.Fields["active"] != true {
					b.Fatal(err, res)
				}
			}
		})
	}
}

// BenchmarkHandler measures the HTTP handler alone (middleware, form
// parsing, caller authentication, lookup, answer encoding, logging and
// metrics) for introspection and issuance, without a socket.
func BenchmarkHandler(b *testing.B) {
	h := newHarness(b)
	h.createClient(map[string]any{"client_id": "opaque", "client_secret": "opaque-secret"})
	tok := h.mustToken("opaque", "opaque-secret", "").AccessToken
	handler := h.srv.Config.Handler
	for _, tc := range []struct{ name, path, body, user, pass string }{
		{"introspect", engine.PathIntrospect, "token=" + tok, engine.BootstrapAdminID, adminSecret},
		{"issue", engine.PathToken, "grant_type=client_credentials", "opaque", "opaque-secret"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(tc.user, tc.pass)
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
