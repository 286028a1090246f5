package web_test

import (
	"context"
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
	for _, id := range []string{"opaque", "jwt", "scripted"} {
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
