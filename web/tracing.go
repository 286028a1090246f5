package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// traceRequests makes each request a server span named for its route
// ("POST /oauth2/token"), a child of the caller's span when the request
// carries a W3C traceparent (W3C Trace Context §3.2), with the attributes
// of the OpenTelemetry HTTP server semantic conventions the route gives
// (never the URL: its query may carry tokens) and the client_id the
// request names, as its log line has it (docs/operations.md, "Tracing").
func traceRequests(tp trace.TracerProvider) echo.MiddlewareFunc {
	tracer := tp.Tracer("github.com/keyhook/keyhook/web")
	prop := propagation.TraceContext{}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			method := spanMethod(r.Method)
			name, attrs := method, []attribute.KeyValue{attribute.String("http.request.method", method)}
			if route := c.Path(); route != "" {
				name += " " + route
				attrs = append(attrs, attribute.String("http.route", route))
			}
			ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
			defer span.End()
			c.SetRequest(r.WithContext(ctx))
			err := next(c)
			status := c.Response().Status
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if id := requestClientID(c.Request()); id != "" {
				span.SetAttributes(attribute.String("client_id", id))
			}
			// Server spans are errors for 5xx only: a 4xx is the
			// caller's mistake, answered as it should be.
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, "")
			}
			return err
		}
	}
}

// spanMethod is methodLabel in the conventions' spelling: "_OTHER" for a
// method RFC 9110 does not define.
func spanMethod(m string) string {
	if m = methodLabel(m); m == "other" {
		return "_OTHER"
	}
	return m
}
