package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
	"github.com/keyhook/keyhook/storage"
)

// The scripts of the bench: one introspection script and one update-token
// script, each adding a claim from its config.
const (
	introspectionScript = `function modifyResponse(response, context) {
  response.department = context.config.department;
  response.roles = ["reader"];
  return true;
}`
	updateTokenScript = `function modifyAccessToken(token, context) {
  token.claims.department = context.config.department;
  return true;
}`
)

// benchClients are the clients of both the in-process and the HTTP runs.
// The JWT clients are signed with the server's current key, RS256 or
// ES256 (the access_token_signing_alg property) depending on the phase.
func benchClients() []*engine.ClientDoc {
	cc := []string{string(engine.GrantClientCredentials)}
	return []*engine.ClientDoc{
		{ClientID: "rs", ClientSecret: "rs-secret", GrantTypes: cc},
		{ClientID: "opaque", ClientSecret: "opaque-secret", Scope: "read", GrantTypes: cc},
		{ClientID: "opaque-scripted", ClientSecret: "opaque-scripted-secret", Scope: "read", GrantTypes: cc,
			IntrospectionScripts: []string{"bench-introspection"}, UpdateTokenScripts: []string{"bench-update"}},
		{ClientID: "jwt", ClientSecret: "jwt-secret", Scope: "read", GrantTypes: cc, AccessTokenAsJWT: true},
		{ClientID: "jwt-scripted", ClientSecret: "jwt-scripted-secret", Scope: "read", GrantTypes: cc, AccessTokenAsJWT: true,
			IntrospectionScripts: []string{"bench-introspection"}, UpdateTokenScripts: []string{"bench-update"}},
		{ClientID: "inline-scripted", ClientSecret: "inline-scripted-secret", Scope: "read", GrantTypes: cc,
			IntrospectionScripts: []string{"bench-introspection-inline"}},
	}
}

func benchScripts() []*engine.ScriptDoc {
	cfg := map[string]string{"department": "payments"}
	return []*engine.ScriptDoc{
		{Name: "bench-introspection", Type: "introspection", Source: introspectionScript, Config: cfg},
		{Name: "bench-introspection-inline", Type: "introspection", Source: introspectionScript, Config: cfg,
			Isolation: string(hooks.IsolationInline)},
		{Name: "bench-update", Type: "update_token", Source: updateTokenScript, Config: cfg},
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func ccRequest(client string) *engine.TokenRequest {
	return &engine.TokenRequest{GrantType: engine.GrantClientCredentials,
		Credentials: engine.ClientCredentials{Basic: true, BasicID: client, BasicSecret: client + "-secret"}}
}

func introspectRequest(tok string) *engine.IntrospectionRequest {
	return &engine.IntrospectionRequest{Token: tok,
		Credentials: engine.ClientCredentials{Basic: true, BasicID: "rs", BasicSecret: "rs-secret"}}
}

// benchRow runs fn with testing.Benchmark.
func benchRow(name string, fn func(b *testing.B)) row {
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		fn(b)
	})
	return row{name: name, store: "sqlite", nsPerOp: fmt.Sprint(r.NsPerOp()),
		bytes: fmt.Sprint(r.AllocedBytesPerOp()), allocs: fmt.Sprint(r.AllocsPerOp())}
}

// goRows are the in-process benchmarks, on an engine over a SQLite file.
func goRows(ctx context.Context, dir string) ([]row, []string, error) {
	var out []row
	var notes []string
	out = append(out, hookRows(ctx)...)
	out = append(out, roundTripRows()...)
	sign, floor, err := signingRows()
	if err != nil {
		return nil, nil, err
	}
	signFloorNS = floor
	out = append(out, sign...)

	store, err := storage.Open(ctx, "sqlite:"+filepath.Join(dir, "inproc.db"))
	if err != nil {
		return nil, nil, err
	}
	defer store.Close()
	log := quietLogger()
	rt := scripts.New(scripts.Options{Logger: log})
	defer rt.Close()
	eng, err := engine.New(ctx, engine.Config{Issuer: "http://bench.local", Logger: log, Hooks: hooks.NewDispatcher(rt, log)}, store.Stores())
	if err != nil {
		return nil, nil, err
	}
	for _, sd := range benchScripts() {
		if _, err := eng.CreateScript(ctx, sd); err != nil {
			return nil, nil, err
		}
	}
	for _, c := range benchClients() {
		if _, err := eng.CreateClient(ctx, c); err != nil {
			return nil, nil, err
		}
	}
	issue := func(client string) (string, error) {
		resp, err := eng.Token(ctx, ccRequest(client))
		if err != nil {
			return "", err
		}
		return resp.AccessToken, nil
	}
	tokens := map[string]string{}
	for _, c := range []string{"opaque", "opaque-scripted", "jwt", "jwt-scripted", "inline-scripted"} {
		if tokens[c], err = issue(c); err != nil {
			return nil, nil, err
		}
	}
	for _, tc := range []struct{ name, client string }{
		{"introspect opaque", "opaque"},
		{"introspect opaque + 1 script (process)", "opaque-scripted"},
		{"introspect opaque + 1 script (inline)", "inline-scripted"},
		{"introspect jwt (RS256)", "jwt"},
		{"introspect jwt (RS256) + 1 script (process)", "jwt-scripted"},
	} {
		req := introspectRequest(tokens[tc.client])
		out = append(out, benchRow(tc.name, func(b *testing.B) {
			for b.Loop() {
				if res, err := eng.Introspect(ctx, req); err != nil || res.Fields["active"] != true {
					b.Fatalf("introspect: %v %v", err, res)
				}
			}
		}))
	}
	issueRows := func(alg string) {
		for _, tc := range []struct{ name, client string }{
			{"issue opaque", "opaque"},
			{"issue opaque + 1 update-token script", "opaque-scripted"},
			{"issue jwt (" + alg + ")", "jwt"},
			{"issue jwt (" + alg + ") + 1 update-token script", "jwt-scripted"},
		} {
			if alg != "RS256" && tc.client[:3] != "jwt" {
				continue
			}
			req := ccRequest(tc.client)
			out = append(out, benchRow(tc.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := eng.Token(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			}))
		}
	}
	issueRows("RS256")
	if err := useAlg(ctx, eng, "ES256"); err != nil {
		return nil, nil, err
	}
	issueRows("ES256")
	for i := range out {
		if out[i].name == "issue jwt (RS256)" {
			var ns float64
			fmt.Sscan(out[i].nsPerOp, &ns)
			notes = append(notes, fmt.Sprintf("RS256 signing floor %.0f µs; in-process RS256 JWT issuance, one at a time, %.0f µs = %.2f× the floor (its SQLite commit cannot be shared with others; under load see the HTTP row)",
				floor/1e3, ns/1e3, ns/floor))
		}
	}
	return out, notes, nil
}

// signFloorNS is RS256 signing alone, ns/op, once the Go benchmarks ran.
var signFloorNS float64

// useAlg makes alg the server's signing algorithm and rotates to a key of it.
func useAlg(ctx context.Context, eng *engine.Engine, alg string) error {
	if _, err := eng.UpdateProperties(ctx, map[string]json.RawMessage{"access_token_signing_alg": json.RawMessage(`"` + alg + `"`)}); err != nil {
		return err
	}
	_, err := eng.RotateKey(ctx)
	return err
}

// signingRows time jose signing alone, on claims of an access token's
// size, for RS256 and ES256; floor is RS256's ns/op.
func signingRows() ([]row, float64, error) {
	claims, _ := json.Marshal(map[string]any{"iss": "http://bench.local", "sub": "jwt", "aud": "jwt", "client_id": "jwt",
		"scope": "read", "jti": "0123456789abcdef0123456789abcdef", "iat": 1700000000, "nbf": 1700000000, "exp": 1700000300,
		"department": "payments"})
	var out []row
	var floor float64
	for _, alg := range []string{"RS256", "ES256"} {
		key, err := engine.NewSigningKey(alg, time.Now())
		if err != nil {
			return nil, 0, err
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON([]byte(key.PrivateJWK)); err != nil {
			return nil, 0, err
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jwk.Key},
			(&jose.SignerOptions{}).WithType("at+jwt"))
		if err != nil {
			return nil, 0, err
		}
		r := benchRow("sign alone ("+alg+")", func(b *testing.B) {
			for b.Loop() {
				jws, err := signer.Sign(claims)
				if err == nil {
					_, err = jws.CompactSerialize()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		r.store = "-"
		if alg == "RS256" {
			fmt.Sscan(r.nsPerOp, &floor)
		}
		out = append(out, r)
	}
	return out, floor, nil
}

// serialAndParallel times call one at a time, five times (their median
// time, and the last run for its allocations), and with 32 callers at
// once on 2 cores (par: the cost per call).
func serialAndParallel(call func() error) (serialNs int64, last, par testing.BenchmarkResult) {
	var ns []int64
	for range 5 {
		last = testing.Benchmark(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
		})
		ns = append(ns, last.NsPerOp())
	}
	slices.Sort(ns)
	par = testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16) // 32 callers on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	return ns[2], last, par
}

// hookRows measure one modifyResponse call on a warm runtime in each
// isolation mode: one call at a time (the median of five runs), and the
// cost per call with 32 callers at once.
func hookRows(ctx context.Context) []row {
	var out []row
	for _, iso := range []hooks.Isolation{hooks.IsolationProcess, hooks.IsolationInline} {
		rt := scripts.New(scripts.Options{Logger: quietLogger(), DefaultIsolation: iso})
		s := &hooks.Script{Name: "bench", Kind: hooks.KindIntrospection, Source: introspectionScript, Enabled: true,
			Timeout: 100 * time.Millisecond, Version: "1", Config: map[string]string{"department": "x"}}
		resp := map[string]any{"active": true, "client_id": "c", "scope": "read write", "sub": "alice", "aud": "c",
			"iss": "http://bench.local", "exp": int64(2000000000), "iat": int64(1700000000), "nbf": int64(1700000000), "token_type": "Bearer"}
		hctx := map[string]any{"phase": "introspection", "config": map[string]any{"department": "payments"},
			"client": map[string]any{"client_id": "c", "attributes": map[string]any{}}}
		call := func() error {
			_, err := rt.Call(ctx, s, &hooks.Call{Function: hooks.FnModifyResponse, Args: []any{resp}, Context: hctx})
			return err
		}
		// Warm every worker and runtime first: cold starts are not the
		// steady-state cost.
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for range 20 {
					_ = call()
				}
			})
		}
		wg.Wait()
		serialNs, last, par := serialAndParallel(call)
		out = append(out, row{name: "one hook call, " + string(iso) + ", serial (median of 5)", store: "-",
			nsPerOp: fmt.Sprint(serialNs), bytes: fmt.Sprint(last.AllocedBytesPerOp()), allocs: fmt.Sprint(last.AllocsPerOp())})
		out = append(out, row{name: "one hook call, " + string(iso) + ", 32 callers (per call)", store: "-",
			nsPerOp: fmt.Sprint(par.NsPerOp()), bytes: fmt.Sprint(par.AllocedBytesPerOp()), allocs: fmt.Sprint(par.AllocsPerOp())})
		rt.Close()
	}
	return out
}
