// Command bench is `make bench`: in-process Go benchmarks of the hot paths
// (introspection, issuance, one hook call) and an HTTP load run against a
// real listener, printed as one table. With KEYHOOK_TEST_PG set it repeats
// the store-bound rows on PostgreSQL.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
	"github.com/keyhook/keyhook/storage"
	"github.com/keyhook/keyhook/web"
)

var (
	loadFor = flag.Duration("load", 2*time.Second, "length of each HTTP load run")
	conns   = flag.Int("conns", 64, "concurrent HTTP connections")
	rounds  = flag.Int("rounds", 7, "interleaved HTTP load runs per kind; the median is reported")
	only    = flag.String("only", "", "run only the HTTP load of this client (opaque, jwt, scripted), for profiling")
	cpuprof = flag.String("cpuprofile", "", "write a CPU profile of the -only load run to this file")
	verbose = flag.Bool("v", false, "print every HTTP load round to stderr")
)

type row struct {
	name, store     string
	nsPerOp, allocs string
	rps, p50, p99   string
}

const benchScript = `function modifyResponse(response, context) {
  response.department = context.config.department;
  response.roles = ["reader"];
  return true;
}`

// fixture is one wired server with the clients the rows use.
type fixture struct {
	eng    *engine.Engine
	store  *storage.Store
	rt     *scripts.Runtime
	url    string
	tokens map[string]string
	close  func()
}

func setup(ctx context.Context, dsn string) (*fixture, error) {
	store, err := storage.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt := scripts.New(scripts.Options{Logger: log})
	eng, err := engine.New(ctx, engine.Config{Issuer: "http://bench.local", Logger: log, Hooks: hooks.NewDispatcher(rt, log)}, store.Stores())
	if err != nil {
		return nil, err
	}
	for _, sd := range []*engine.ScriptDoc{
		{Name: "bench", Type: "introspection", Source: benchScript, Config: map[string]string{"department": "payments"}},
		{Name: "bench-inline", Type: "introspection", Source: benchScript, Config: map[string]string{"department": "payments"},
			Isolation: string(hooks.IsolationInline)},
	} {
		if _, err := eng.CreateScript(ctx, sd); err != nil {
			return nil, err
		}
	}
	for _, c := range []*engine.ClientDoc{
		{ClientID: "rs", ClientSecret: "rs-secret"},
		{ClientID: "opaque", ClientSecret: "opaque-secret", Scope: "read"},
		{ClientID: "jwt", ClientSecret: "jwt-secret", Scope: "read", AccessTokenAsJWT: true},
		{ClientID: "scripted", ClientSecret: "scripted-secret", Scope: "read", IntrospectionScripts: []string{"bench"}},
		{ClientID: "inline", ClientSecret: "inline-secret", Scope: "read", IntrospectionScripts: []string{"bench-inline"}},
	} {
		if _, err := eng.CreateClient(ctx, c); err != nil {
			return nil, err
		}
	}
	f := &fixture{eng: eng, store: store, rt: rt, tokens: map[string]string{}}
	for _, id := range []string{"opaque", "jwt", "scripted", "inline"} {
		resp, err := eng.Token(ctx, &engine.TokenRequest{GrantType: engine.GrantClientCredentials,
			Credentials: engine.ClientCredentials{Basic: true, BasicID: id, BasicSecret: id + "-secret"}})
		if err != nil {
			return nil, err
		}
		f.tokens[id] = resp.AccessToken
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: web.New(web.Config{Engine: eng, Logger: log}).Handler()}
	go srv.Serve(ln)
	f.url = "http://" + ln.Addr().String()
	f.close = func() { srv.Close(); rt.Close(); store.Close() }
	return f, nil
}

func introspectReq(tok string) *engine.IntrospectionRequest {
	return &engine.IntrospectionRequest{Token: tok,
		Credentials: engine.ClientCredentials{Basic: true, BasicID: "rs", BasicSecret: "rs-secret"}}
}

func bench(fn func(b *testing.B)) (string, string) {
	r := testing.Benchmark(fn)
	return fmt.Sprintf("%d", r.NsPerOp()), fmt.Sprintf("%d", r.AllocsPerOp())
}

// load runs conns workers posting to the introspection endpoint for d.
func load(f *fixture, tok string, d time.Duration, conns int) (rps float64, p50, p99 time.Duration) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	body := url.Values{"token": {tok}}.Encode()
	var mu sync.Mutex
	var lat []time.Duration
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, f.url+engine.PathIntrospect, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("rs", "rs-secret")
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					local = append(local, time.Since(start))
					n.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return 0, 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(n.Load()) / d.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100]
}

// loadResult is one HTTP load run.
type loadResult struct {
	rps      float64
	p50, p99 time.Duration
}

// cost is the throughput one bound script costs, in percent, over rounds
// (inline: the median for a script in inline isolation).
type cost struct{ median, min, max, inline float64 }

func costOf(c []float64) cost {
	sort.Float64s(c)
	return cost{median: c[len(c)/2], min: c[0], max: c[len(c)-1]}
}

func rows(ctx context.Context, store, dsn string) ([]row, cost, error) {
	f, err := setup(ctx, dsn)
	if err != nil {
		return nil, cost{}, err
	}
	defer f.close()
	var out []row
	cases := []struct{ name, client string }{
		{"introspect opaque", "opaque"}, {"introspect jwt", "jwt"}, {"introspect opaque + 1 script (process)", "scripted"},
		{"introspect opaque + 1 script (inline)", "inline"},
	}
	// The HTTP runs are interleaved, *rounds times, in an order that
	// alternates between rounds (opaque, scripted, jwt; then jwt,
	// scripted, opaque; ...) so that a machine
	// slowing down or speeding up meanwhile weighs on every kind alike;
	// each kind reports its median run. The script's cost is measured
	// within each round, between the neighbouring opaque and scripted
	// runs, and reported as the median over rounds with its range: on a
	// small shared machine throughput drifts between runs more than
	// between kinds.
	runs := make([][]loadResult, len(cases))
	var costs, inlineCosts []float64
	for r := 0; r < *rounds; r++ {
		order := []int{0, 2, 3, 1} // opaque and scripted side by side
		if r%2 == 1 {
			order = []int{1, 3, 2, 0}
		}
		round := make([]float64, len(cases))
		for _, i := range order {
			rps, p50, p99 := load(f, f.tokens[cases[i].client], *loadFor, *conns)
			runs[i] = append(runs[i], loadResult{rps, p50, p99})
			round[i] = rps
		}
		costs = append(costs, 100*(1-round[2]/round[0]))
		inlineCosts = append(inlineCosts, 100*(1-round[3]/round[0]))
		if *verbose {
			fmt.Fprintf(os.Stderr, "%s round %d: opaque %.0f, jwt %.0f, scripted %.0f, inline %.0f req/s: script costs %.1f%% (inline %.1f%%)\n",
				store, r+1, round[0], round[1], round[2], round[3], costs[len(costs)-1], inlineCosts[len(inlineCosts)-1])
		}
	}
	for i, tc := range cases {
		req := introspectReq(f.tokens[tc.client])
		ns, allocs := bench(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res, err := f.eng.Introspect(ctx, req); err != nil || res.Fields["active"] != true {
					b.Fatalf("introspect: %v %v", err, res)
				}
			}
		})
		sort.Slice(runs[i], func(a, b int) bool { return runs[i][a].rps < runs[i][b].rps })
		m := runs[i][len(runs[i])/2]
		out = append(out, row{tc.name, store, ns, allocs, fmt.Sprintf("%.0f", m.rps), m.p50.Round(time.Microsecond).String(), m.p99.Round(time.Microsecond).String()})
	}
	scriptCost := costOf(costs)
	scriptCost.inline = costOf(inlineCosts).median
	for _, tc := range []struct{ name, client string }{{"token client_credentials opaque", "opaque"}, {"token client_credentials jwt", "jwt"}} {
		req := &engine.TokenRequest{GrantType: engine.GrantClientCredentials,
			Credentials: engine.ClientCredentials{Basic: true, BasicID: tc.client, BasicSecret: tc.client + "-secret"}}
		ns, allocs := bench(func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.eng.Token(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
		out = append(out, row{tc.name, store, ns, allocs, "", "", ""})
	}
	return out, scriptCost, nil
}

// hookRows measure one modifyResponse call on a warm runtime, in each
// isolation mode; the median of five runs.
func hookRows(ctx context.Context) []row {
	var out []row
	for _, iso := range []hooks.Isolation{hooks.IsolationProcess, hooks.IsolationInline} {
		rt := scripts.New(scripts.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DefaultIsolation: iso})
		s := &hooks.Script{Name: "bench", Kind: hooks.KindIntrospection, Source: benchScript, Enabled: true,
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
		for range 50 {
			if err := call(); err != nil {
				fail(err)
			}
		}
		var ns []int64
		var allocs int64
		for i := 0; i < 5; i++ {
			r := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := call(); err != nil {
						b.Fatal(err)
					}
				}
			})
			ns = append(ns, r.NsPerOp())
			allocs = r.AllocsPerOp()
		}
		rt.Close()
		sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
		out = append(out, row{"one hook call, " + string(iso) + " (median of 5)", "-", fmt.Sprint(ns[2]), fmt.Sprint(allocs), "", "", ""})
	}
	return out
}

func main() {
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keyhook-bench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	if *only != "" {
		profileOne(ctx, "sqlite:"+filepath.Join(dir, "bench.db"))
		return
	}
	all := hookRows(ctx)
	costs := map[string]cost{}
	r, cost, err := rows(ctx, "sqlite", "sqlite:"+filepath.Join(dir, "bench.db"))
	if err != nil {
		fail(err)
	}
	all, costs["sqlite"] = append(all, r...), cost
	if base := os.Getenv("KEYHOOK_TEST_PG"); base != "" {
		dsn, drop, err := storage.NewTestDSN(ctx, base)
		if err != nil {
			fail(err)
		}
		r, cost, err := rows(ctx, "postgres", dsn)
		drop()
		if err != nil {
			fail(err)
		}
		all, costs["postgres"] = append(all, r...), cost
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "benchmark\tstore\tns/op\tallocs/op\tHTTP req/s (%d conns)\tp50\tp99\t\n", *conns)
	for _, r := range all {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.store, r.nsPerOp, r.allocs, r.rps, r.p50, r.p99)
	}
	w.Flush()
	for _, store := range []string{"sqlite", "postgres"} {
		if c, ok := costs[store]; ok {
			fmt.Printf("one bound script costs %.1f%% of opaque introspection throughput over HTTP (%s, process isolation; median of %d paired rounds, range %.1f%% to %.1f%%); inline isolation: %.1f%%\n",
				c.median, store, *rounds, c.min, c.max, c.inline)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// profileOne runs one HTTP load, optionally under the CPU profiler.
func profileOne(ctx context.Context, dsn string) {
	f, err := setup(ctx, dsn)
	if err != nil {
		fail(err)
	}
	defer f.close()
	if *cpuprof != "" {
		out, err := os.Create(*cpuprof)
		if err != nil {
			fail(err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	rps, p50, p99 := load(f, f.tokens[*only], *loadFor, *conns)
	fmt.Printf("%s: %.0f req/s, p50 %v, p99 %v\n", *only, rps, p50, p99)
}
