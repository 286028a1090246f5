package web_test

import (
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyhook/keyhook/engine"
)

// TestTraceRequests: each request is a server span named for the route
// it matched, with the method, route, status and the client_id it names,
// never its query, token or secret; a caller's traceparent is the parent
// (and, with the default parent-based sampler, its sampled flag decides).
func TestTraceRequests(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	h := newHarness(t, withTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))))
	h.createClient(map[string]any{"client_id": "traced", "client_secret": "traced-secret"})
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name, method, path, body, traceparent string
		basic                                 bool
		want                                  string // the span's name; "" none
		attrs                                 map[string]any
		child                                 bool
	}{
		{"token", http.MethodPost, engine.PathToken, "grant_type=client_credentials", "", true,
			"POST /oauth2/token", map[string]any{"http.request.method": "POST", "http.route": "/oauth2/token",
				"http.response.status_code": int64(200), "client_id": "traced"}, false},
		{"refused with a query", http.MethodPost, engine.PathToken + "?client_id=traced&access_token=query-secret", "grant_type=password", "", false,
			"POST /oauth2/token", map[string]any{"http.route": "/oauth2/token", "http.response.status_code": int64(400), "client_id": "traced"}, false},
		{"unmatched", http.MethodGet, "/nowhere/query-secret", "", "", false,
			"GET", map[string]any{"http.request.method": "GET", "http.route": nil, "http.response.status_code": int64(404)}, false},
		{"unknown method", "BREW", engine.PathJWKS, "", "", false,
			"_OTHER " + engine.PathJWKS, map[string]any{"http.request.method": "_OTHER"}, false},
		{"traceparent", http.MethodGet, engine.PathJWKS, "", "00-" + traceID + "-" + parentID + "-01", false,
			"GET " + engine.PathJWKS, map[string]any{"http.response.status_code": int64(200)}, true},
		{"traceparent not sampled", http.MethodGet, engine.PathJWKS, "", "00-" + traceID + "-" + parentID + "-00", false,
			"", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.Ended())
			req, _ := http.NewRequest(tc.method, h.url+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.basic {
				req.SetBasicAuth("traced", "traced-secret")
			}
			if tc.traceparent != "" {
				req.Header.Set("traceparent", tc.traceparent)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			spans := rec.Ended()[before:]
			if tc.want == "" {
				if len(spans) != 0 {
					t.Fatalf("%d spans, want none", len(spans))
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if sp.Name() != tc.want || sp.SpanKind() != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want %q server", sp.Name(), sp.SpanKind(), tc.want)
			}
			got := map[string]any{}
			for _, kv := range sp.Attributes() {
				got[string(kv.Key)] = kv.Value.AsInterface()
				if s := kv.Value.Emit(); strings.Contains(s, "secret") {
					t.Errorf("attribute %s = %q", kv.Key, s)
				}
			}
			for k, v := range tc.attrs {
				if got[k] != v {
					t.Errorf("attribute %s = %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
			if parent := sp.Parent(); tc.child != parent.IsValid() ||
				tc.child && (parent.TraceID().String() != traceID || parent.SpanID().String() != parentID || !parent.IsRemote()) {
				t.Errorf("parent %v, want the traceparent's: %v", parent, tc.child)
			}
		})
	}
}
