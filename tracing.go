package main

// Tracing with OpenTelemetry (docs/operations.md, "Tracing"): keyhook
// serve exports spans over OTLP/HTTP when the standard environment
// variables name an endpoint, and otherwise creates no exporter and no
// tracer at all.

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyhook/keyhook/hooks"
)

// otelConfig is what keyhook serve reads of the OpenTelemetry environment
// (OpenTelemetry Environment Variable Specification; OTLP Exporter
// Configuration). The SDK reads the rest itself: the sampler, headers,
// timeout, compression, certificates, resource attributes and batching.
type otelConfig struct {
	// endpoint is the URL spans are posted to; "": tracing is off.
	endpoint    string
	serviceName string
}

// otelFromEnv reads the tracing configuration: tracing is on when
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL, /v1/traces appended) is set,
// unless OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is none.
func otelFromEnv(env lookupEnv) (otelConfig, error) {
	get := func(name string) string { v, _ := env(name); return strings.TrimSpace(v) }
	var c otelConfig
	if strings.EqualFold(get("OTEL_SDK_DISABLED"), "true") {
		return c, nil
	}
	switch exp := get("OTEL_TRACES_EXPORTER"); exp {
	case "", "otlp":
	case "none":
		return c, nil
	default:
		return c, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported: otlp or none", exp)
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", get("OTEL_EXPORTER_OTLP_ENDPOINT")
		if endpoint != "" {
			endpoint = strings.TrimSuffix(endpoint, "/") + "/v1/traces"
		}
	}
	if endpoint == "" {
		return c, nil
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("%s: %q is not an http or https URL", name, endpoint)
	}
	c.endpoint, c.serviceName = endpoint, get("OTEL_SERVICE_NAME")
	if c.serviceName == "" {
		c.serviceName = "keyhook"
	}
	return c, nil
}

// tracing is a running tracer provider and the batch exporter behind it.
type tracing struct {
	tp *sdktrace.TracerProvider
}

// startTracing starts exporting spans as c says; nil when c has no
// endpoint. Export failures are logged to log.
func startTracing(c otelConfig, log *slog.Logger) (*tracing, error) {
	if c.endpoint == "" {
		return nil, nil
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(c.endpoint))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", c.serviceName)))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: spans not exported", "err", err) }))
	return &tracing{tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// provider is the tracer provider, nil when tracing is off.
func (t *tracing) provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// stop exports the spans still buffered and stops the exporter; it may
// be called more than once.
func (t *tracing) stop(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// traceScripts is a hooks.CallTracer that makes each script call a span,
// a child of the request's, named "script NAME" (docs/operations.md,
// "Tracing"); the span's duration is the call's.
func traceScripts(tp trace.TracerProvider) hooks.CallTracer {
	tracer := tp.Tracer("github.com/keyhook/keyhook/hooks")
	return func(ctx context.Context, s *hooks.Script, fn hooks.Function) (context.Context, func(string)) {
		ctx, span := tracer.Start(ctx, "script "+s.Name, trace.WithAttributes(
			attribute.String("keyhook.script.name", s.Name),
			attribute.String("keyhook.script.version", s.Version),
			attribute.String("keyhook.script.function", string(fn))))
		return ctx, func(result string) {
			span.SetAttributes(attribute.String("keyhook.script.result", result))
			if result != hooks.ResultOK && result != hooks.ResultUndefined {
				span.SetStatus(codes.Error, result)
			}
			span.End()
		}
	}
}
