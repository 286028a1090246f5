package scripts

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/keyhook/keyhook/hooks"
)

// benchResponse is a typical introspection response of about ten fields.
func benchResponse() map[string]any {
	return map[string]any{
		"active":     true,
		"client_id":  "client-123",
		"username":   "alice",
		"scope":      "openid profile email",
		"token_type": "Bearer",
		"exp":        int64(1767225600),
		"iat":        int64(1767222000),
		"nbf":        int64(1767222000),
		"sub":        "user-42",
		"aud":        []any{"api://default"},
		"iss":        "https://keyhook.example",
	}
}

func benchContext() map[string]any {
	return map[string]any{
		"phase":  "introspection",
		"client": map[string]any{"client_id": "client-123", "attributes": map[string]any{"tenant": "t1"}},
		"config": map[string]any{"realm": "BasicRealm"},
	}
}

// BenchmarkCall measures one trivial modifyResponse call on a warm pool.
func BenchmarkCall(b *testing.B) {
	e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s := &hooks.Script{Name: "bench", Version: "1", Source: `function modifyResponse(r, context) { r.x = 1; return true }`}
	ctx := context.Background()
	resp, hctx := benchResponse(), benchContext()
	call := &hooks.Call{Function: "modifyResponse", Args: []any{resp}, Context: hctx}
	if _, err := e.Call(ctx, s, call); err != nil {
		b.Fatal(err)
	}
	benchCalls(b, e, s, call)
}

// BenchmarkCallUndefined measures a call of a function the script lacks.
func BenchmarkCallUndefined(b *testing.B) {
	e := New(Options{})
	s := &hooks.Script{Name: "bench", Version: "1", Source: `function modifyResponse(r) { return true }`}
	call := &hooks.Call{Function: "getAccessTokenLifetimeInSeconds", Context: benchContext()}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := e.Call(context.Background(), s, call); err != nil || res.Defined {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkNewRuntime measures making (and hardening) one pooled runtime.
func BenchmarkNewRuntime(b *testing.B) {
	c, err := compileScript("bench", `function modifyResponse(r) { r.x = 1; return true }`, 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := newVMState(c, 256); err != nil {
			b.Fatal(err)
		}
	}
}

// realisticContext is the context the engine passes to an introspection
// script (engine/scriptctx.go and hooks.withConfig): every field present,
// with a user and a handful of request headers.
func realisticContext() map[string]any {
	return map[string]any{
		"phase": "introspection",
		"client": map[string]any{
			"client_id": "c", "client_name": "C", "scope": "a b",
			"grant_types": []any{"client_credentials"},
			"attributes":  map[string]any{"tenant": "acme"},
		},
		"caller": map[string]any{"client_id": "rs"},
		"user": map[string]any{"username": "alice", "claims": map[string]any{
			"email": "alice@example.com", "email_verified": true, "name": "Alice", "groups": []any{"admins", "users"}, "age": int64(42),
		}},
		"token": map[string]any{
			"type": "access_token", "format": "opaque", "client_id": "c", "subject": "c", "username": "",
			"scope": "a b", "grant_type": "client_credentials", "issued_at": int64(1700000000),
			"expires_at": int64(1700000300), "claims": map[string]any{},
		},
		"request": map[string]any{
			"method": "POST",
			"headers": map[string]any{
				"accept": "application/json", "authorization": "Basic cnM6c2VjcmV0", "content-length": "42",
				"content-type": "application/x-www-form-urlencoded", "host": "keyhook.example",
				"user-agent": "bench/1.0", "x-forwarded-for": "10.0.0.1", "x-request-id": "0123456789abcdef",
			},
			"params": map[string]any{"token_type_hint": "access_token", "custom": "x"},
		},
		"config": map[string]any{"k": "v"},
	}
}

// BenchmarkCallRealisticContext measures one trivial introspection hook
// with the context and response the engine really passes.
func BenchmarkCallRealisticContext(b *testing.B) {
	e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s := &hooks.Script{Name: "bench", Version: "1", Source: `function modifyResponse(r, c){ r.department = c.config.k; return true; }`}
	ctx := context.Background()
	resp, hctx := benchResponse(), realisticContext()
	call := &hooks.Call{Function: "modifyResponse", Args: []any{resp}, Context: hctx}
	if res, err := e.Call(ctx, s, call); err != nil || res.Args[0].(map[string]any)["department"] != "v" {
		b.Fatal(res, err)
	}
	benchCalls(b, e, s, call)
}

// benchCalls times repeated calls that must return true.
func benchCalls(b *testing.B, e *Runtime, s *hooks.Script, call *hooks.Call) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := e.Call(ctx, s, call)
		if err != nil || res.Return != true {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkCallParallel measures the cost per call of a trivial
// modifyResponse with 32 callers at once, as under HTTP load: in process
// isolation the workers then take several calls per wake-up.
func BenchmarkCallParallel(b *testing.B) {
	for _, iso := range []hooks.Isolation{hooks.IsolationProcess, hooks.IsolationInline} {
		b.Run(string(iso), func(b *testing.B) {
			e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DefaultIsolation: iso})
			defer e.Close()
			s := &hooks.Script{Name: "bench", Version: "1", Source: `function modifyResponse(r, context) { r.x = 1; return true }`}
			ctx := context.Background()
			call := &hooks.Call{Function: "modifyResponse", Args: []any{benchResponse()}, Context: benchContext()}
			if _, err := e.Call(ctx, s, call); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(16) // 32 callers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Call(ctx, s, call); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
