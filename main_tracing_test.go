package main

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver (OTLP Specification,
// "OTLP/HTTP") that keeps the spans it is sent.
type otlpReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	posts int
	spans []*tracepb.Span
	// resources holds the resource of each span, by index.
	resources []*commonpb.KeyValue
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			t.Errorf("receiver: %s %s", req.Method, req.URL.Path)
			http.NotFound(w, req)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var ex coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &ex); err != nil {
			t.Errorf("receiver: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.posts++
		for _, rs := range ex.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
				for range ss.Spans {
					r.resources = append(r.resources, rs.GetResource().GetAttributes()...)
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// attrs is a span's attributes as strings.
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch v.Value.(type) {
		case *commonpb.AnyValue_IntValue:
			m[kv.Key] = strconv.FormatInt(v.GetIntValue(), 10)
		default:
			m[kv.Key] = v.GetStringValue()
		}
	}
	return m
}

// scriptedServer runs keyhook serve with env, creates the scripts polite
// (edits the answer) and grumpy (throws) and a client "tracer" bound to
// both, and returns the server, its address and a token of that client.
func scriptedServer(t *testing.T, env []string) (s *server, addr, admin, tok string, versions map[string]string) {
	t.Helper()
	addr = freeAddr(t)
	s = start(t, t.TempDir(), addr, env, "--addr", addr, "--bootstrap-admin-secret", tracingAdminSecret, "--script-isolation", "inline")
	_, m := token(t, addr, "keyhook-admin", tracingAdminSecret)
	admin, _ = m["access_token"].(string)
	call := func(path string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/admin/v1"+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 201 {
			t.Fatalf("POST %s: %d %v", path, resp.StatusCode, m)
		}
		return m
	}
	versions = map[string]string{}
	for name, src := range map[string]string{
		"polite": "function modifyResponse(r) { r.polite = true; return true }",
		"grumpy": "function modifyResponse(r) { throw new Error('no') }",
	} {
		doc := call("/scripts", map[string]any{"name": name, "type": "introspection", "source": src})
		versions[name], _ = doc["version"].(string)
	}
	call("/clients", map[string]any{"client_id": "tracer", "client_secret": tracingClientSecret,
		"introspection_scripts": []string{"polite", "grumpy"}})
	_, m = token(t, addr, "tracer", tracingClientSecret)
	tok, _ = m["access_token"].(string)
	return s, addr, admin, tok, versions
}

const (
	tracingAdminSecret  = "tracing-test-admin-secret"
	tracingClientSecret = "tracing-test-client-secret"
	// The caller's span (W3C Trace Context §3.2).
	incomingTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpanID  = "00f067aa0ba902b7"
)

// introspectTraced introspects tok as keyhook-admin with a traceparent.
func introspectTraced(t *testing.T, addr, tok string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/oauth2/introspect?client_id=query-"+tok[:8],
		strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("traceparent", "00-"+incomingTraceID+"-"+incomingSpanID+"-01")
	req.SetBasicAuth("keyhook-admin", tracingAdminSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if m["active"] != true || m["polite"] != true {
		t.Fatalf("introspection: %d %v", resp.StatusCode, m)
	}
	return m
}

// TestTracing: with OTEL_EXPORTER_OTLP_ENDPOINT set, an introspection is
// a server span named for its route, a child of the caller's traceparent,
// with a child span per script call; the spans reach the receiver when
// the server stops (SIGTERM flushes them), and no attribute holds the
// token or a secret the requests carried.
func TestTracing(t *testing.T) {
	rcv := newOTLPReceiver(t)
	// A long batch delay: the spans reach the receiver because stopping
	// flushes them. The empty variables keep a developer's away.
	s, addr, admin, tok, versions := scriptedServer(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.srv.URL,
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_SDK_DISABLED=", "OTEL_TRACES_EXPORTER=", "OTEL_TRACES_SAMPLER=",
		"OTEL_SERVICE_NAME=keyhook-tracing-test", "OTEL_BSP_SCHEDULE_DELAY=600000"})
	introspectTraced(t, addr, tok)
	s.stop(t)

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var request *tracepb.Span
	for _, sp := range rcv.spans {
		if sp.Name == "POST /oauth2/introspect" {
			request = sp
		}
	}
	if request == nil {
		names := []string{}
		for _, sp := range rcv.spans {
			names = append(names, sp.Name)
		}
		t.Fatalf("no introspection span among %q", names)
	}
	if got := hex.EncodeToString(request.TraceId); got != incomingTraceID {
		t.Errorf("request span's trace id %s, want the traceparent's %s", got, incomingTraceID)
	}
	if got := hex.EncodeToString(request.ParentSpanId); got != incomingSpanID {
		t.Errorf("request span's parent %s, want the traceparent's %s", got, incomingSpanID)
	}
	if request.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("request span kind %v", request.Kind)
	}
	for k, want := range map[string]string{"http.request.method": "POST", "http.route": "/oauth2/introspect",
		"http.response.status_code": "200", "client_id": "keyhook-admin"} {
		if got := attrs(request.Attributes)[k]; got != want {
			t.Errorf("request span %s = %q, want %q", k, got, want)
		}
	}
	children := map[string]*tracepb.Span{}
	for _, sp := range rcv.spans {
		if bytes.Equal(sp.ParentSpanId, request.SpanId) {
			children[sp.Name] = sp
		}
	}
	for _, tc := range []struct{ name, result string }{{"polite", "ok"}, {"grumpy", "exception"}} {
		sp := children["script "+tc.name]
		if sp == nil {
			t.Errorf("no child span script %s of the request span", tc.name)
			continue
		}
		a := attrs(sp.Attributes)
		want := map[string]string{"keyhook.script.name": tc.name, "keyhook.script.version": versions[tc.name],
			"keyhook.script.function": "modifyResponse", "keyhook.script.result": tc.result}
		for k, v := range want {
			if a[k] != v || v == "" {
				t.Errorf("script %s span %s = %q, want %q", tc.name, k, a[k], v)
			}
		}
		if !bytes.Equal(sp.TraceId, request.TraceId) || sp.EndTimeUnixNano <= sp.StartTimeUnixNano {
			t.Errorf("script %s span: trace %x, %d..%d", tc.name, sp.TraceId, sp.StartTimeUnixNano, sp.EndTimeUnixNano)
		}
	}
	if got := attrs(rcv.resources)["service.name"]; got != "keyhook-tracing-test" {
		t.Errorf("service.name %q", got)
	}
	for _, sp := range rcv.spans {
		for k, v := range attrs(sp.Attributes) {
			for _, secret := range []string{tok, tok[:8], admin, tracingAdminSecret, tracingClientSecret} {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s = %q holds a token or secret", sp.Name, k, v)
				}
			}
		}
	}
}

// TestTracingOff: without an endpoint, or with tracing turned off by the
// standard variables, the receiver gets nothing.
func TestTracingOff(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(endpoint string) []string
	}{
		{"no endpoint", func(string) []string { return []string{"OTEL_SERVICE_NAME=keyhook", "OTEL_TRACES_SAMPLER=always_on"} }},
		{"sdk disabled", func(e string) []string { return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + e, "OTEL_SDK_DISABLED=true"} }},
		{"exporter none", func(e string) []string {
			return []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + e + "/v1/traces", "OTEL_TRACES_EXPORTER=none"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newOTLPReceiver(t)
			s, addr, _, tok, _ := scriptedServer(t, tc.env(rcv.srv.URL))
			introspectTraced(t, addr, tok)
			s.stop(t)
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if rcv.posts != 0 {
				t.Errorf("%d exports, %d spans", rcv.posts, len(rcv.spans))
			}
		})
	}
}

// TestOTelFromEnv: which variables turn tracing on, and where spans go.
func TestOTelFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		endpoint string
		service  string
		err      string
	}{
		{"none", nil, "", "", ""},
		{"service name alone", map[string]string{"OTEL_SERVICE_NAME": "x"}, "", "", ""},
		{"base endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http://c:4318/v1/traces", "keyhook", ""},
		{"traces endpoint wins", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t/x", "OTEL_SERVICE_NAME": "auth"}, "https://t/x", "auth", ""},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, "", "", ""},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, "", "", ""},
		{"exporter console", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "console"}, "", "", "OTEL_TRACES_EXPORTER"},
		{"no scheme", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}, "", "", "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"grpc scheme", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "grpc://c:4317"}, "", "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseServe(nil, tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.otel.endpoint != tc.endpoint || o.otel.serviceName != tc.service {
				t.Errorf("endpoint %q service %q, want %q %q", o.otel.endpoint, o.otel.serviceName, tc.endpoint, tc.service)
			}
		})
	}
}
