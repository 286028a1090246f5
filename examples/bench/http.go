package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/examples/internal/procstat"
	"github.com/keyhook/keyhook/storage"
)

// ceilingEnv makes this program the bare echo server (its address).
const ceilingEnv = "KEYHOOK_BENCH_CEILING"

// ceilingAnswer is what the ceiling answers: the 12 fields of an active
// opaque token's introspection answer (RFC 7662 §2.2).
var ceilingAnswer = map[string]any{
	"active": true, "client_id": "opaque", "scope": "read", "token_type": "Bearer", "sub": "opaque",
	"aud": "opaque", "iss": "http://127.0.0.1", "exp": 2000000000, "iat": 1700000000, "nbf": 1700000000,
	"jti": "0123456789abcdef0123456789abcdef", "grant_type": "client_credentials",
}

// serveCeiling is the bare echo server: the HTTP stack keyhook uses, and
// nothing of keyhook, answering ceilingAnswer to every POST.
func serveCeiling(addr string) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/*", func(c echo.Context) error { return c.JSON(http.StatusOK, ceilingAnswer) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	fail(http.Serve(ln, e))
}

// proc is a server process of the run, with the address it listens on.
type proc struct {
	cmd  *exec.Cmd
	base string
	done chan error
}

// startProc starts cmd and waits for a stdout line matching re, whose
// first group is the listening address.
func startProc(cmd *exec.Cmd, re *regexp.Regexp) (*proc, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		p.base = "http://" + a
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("%s exited at start: %v\n%s", cmd.Path, err, stderr.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not start in 60 s\n%s", cmd.Path, stderr.String())
	}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func startCeiling(extraEnv ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), ceilingEnv+"=127.0.0.1:0"), extraEnv...)
	return startProc(cmd, regexp.MustCompile(`^listening (\S+)$`))
}

const adminSecret = "bench-admin-secret-0123456789"

// startKeyhook starts `keyhook serve` on dsn, seeded with the bench's
// clients and scripts.
func startKeyhook(exe, dsn, dir string) (*proc, error) {
	seed := engine.Seed{Config: map[string]json.RawMessage{
		"access_token_lifetime": json.RawMessage("86400"), "access_token_signing_alg": json.RawMessage(`"RS256"`)}}
	for _, s := range benchScripts() {
		seed.Scripts = append(seed.Scripts, &engine.SeedScript{ScriptDoc: *s})
	}
	seed.Clients = benchClients()
	raw, err := json.Marshal(seed)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "bench-seed.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "serve", "--addr", "127.0.0.1:0", "--db", dsn, "--seed", path,
		"--bootstrap-admin-secret", adminSecret, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "KEYHOOK_KEK=") // the bench's keys are thrown away
	return startProc(cmd, regexp.MustCompile(`^keyhook serving on http://(\S+) `))
}

// request is one kind of request of a load run.
type request struct {
	path, body, user, pass string
}

func (r request) authorization() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(r.user)+":"+url.QueryEscape(r.pass)))
}

// do sends r once and decodes the JSON answer into out.
func do(base string, r request, method string, out any) error {
	req, err := http.NewRequest(method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		return err
	}
	if r.user != "" {
		req.Header.Set("Authorization", r.authorization())
	}
	if method == http.MethodPost && strings.HasPrefix(r.path, "/oauth2/") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, r.path, resp.StatusCode, body)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func tokenFor(base, client string) (string, error) {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	err := do(base, request{path: engine.PathToken, body: "grant_type=client_credentials", user: client, pass: client + "-secret"},
		http.MethodPost, &out)
	return out.AccessToken, err
}

// result is one load run.
type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int64
}

func useWrk() bool {
	if *noWrk {
		return false
	}
	_, err := exec.LookPath("wrk")
	return err == nil
}

// load runs *conns connections sending r to base for *loadFor.
func load(base string, r request, dir string) (result, error) {
	if useWrk() {
		return loadWrk(base, r, dir)
	}
	return loadGo(base, r), nil
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func loadWrk(base string, r request, dir string) (result, error) {
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.headers[\"Authorization\"] = %q\n",
		r.body, r.authorization())
	script := filepath.Join(dir, "bench.lua")
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return result{}, err
	}
	out, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", *conns), fmt.Sprintf("-d%ds", int(loadFor.Seconds())),
		"--latency", "-s", script, base+r.path).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var res result
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	res.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, m := range wrkPct.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(m[3])]
		d := time.Duration(v * float64(unit))
		if string(m[1]) == "50" {
			res.p50 = d
		} else {
			res.p99 = d
		}
	}
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		res.errors, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := wrkSockErr.FindSubmatch(out); m != nil {
		for _, g := range m[1:] {
			n, _ := strconv.ParseInt(string(g), 10, 64)
			res.errors += n
		}
	}
	return res, nil
}

// loadGo is the load generator used without wrk.
func loadGo(base string, r request) result {
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	client := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	auth := r.authorization()
	var mu sync.Mutex
	var lat []time.Duration
	var n, errs atomic.Int64
	deadline := time.Now().Add(*loadFor)
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, base+r.path, strings.NewReader(r.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", auth)
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				local = append(local, time.Since(start))
				n.Add(1)
				if resp.StatusCode/100 != 2 {
					errs.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(lat) == 0 {
		return result{errors: errs.Load()}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return result{rps: float64(n.Load()) / loadFor.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], errors: errs.Load()}
}

// httpCase is one row of the HTTP load.
type httpCase struct {
	name string
	// alg is the signing algorithm the server must be using.
	alg    string
	req    func(tokens map[string]string) request
	target map[string]string // by store
}

func introspectCase(name, client string, target string) httpCase {
	return httpCase{name: name, alg: "RS256", target: map[string]string{"sqlite": target, "postgres": target},
		req: func(t map[string]string) request {
			return request{path: engine.PathIntrospect, body: "token=" + url.QueryEscape(t[client]), user: "rs", pass: "rs-secret"}
		}}
}

func issueCase(name, client, alg string, target map[string]string) httpCase {
	return httpCase{name: name, alg: alg, target: target, req: func(map[string]string) request {
		return request{path: engine.PathToken, body: "grant_type=client_credentials", user: client, pass: client + "-secret"}
	}}
}

var httpCases = []httpCase{
	introspectCase("HTTP introspect opaque", "opaque", "≥ 0.65"),
	introspectCase("HTTP introspect opaque + 1 script (process)", "opaque-scripted", "≥ 0.60"),
	introspectCase("HTTP introspect opaque + 1 script (inline)", "inline-scripted", ""),
	introspectCase("HTTP introspect jwt (RS256)", "jwt", "≥ 0.60"),
	issueCase("HTTP issue opaque", "opaque", "RS256", map[string]string{"sqlite": "≥ 0.16", "postgres": "≥ 0.10"}),
	issueCase("HTTP issue jwt (RS256)", "jwt", "RS256", map[string]string{"sqlite": "≤ 1.3× floor", "postgres": "≤ 1.3× floor"}),
	issueCase("HTTP issue jwt (ES256)", "jwt", "ES256", map[string]string{"sqlite": "≥ 0.14", "postgres": "≥ 0.14"}),
}

// httpRows runs the HTTP cases against keyhook serve on dsn, interleaved
// with the ceiling, *rounds times.
func httpRows(ctx context.Context, exe, store, dsn, dir string) ([]row, []string, error) {
	ceil, err := startCeiling()
	if err != nil {
		return nil, nil, err
	}
	defer ceil.stop()
	floor, err := startCeiling(roundTripEnv + "=" + roundTripChildren())
	if err != nil {
		return nil, nil, err
	}
	defer floor.stop()
	kh, err := startKeyhook(exe, dsn, dir)
	if err != nil {
		return nil, nil, err
	}
	defer kh.stop()
	var admin struct {
		AccessToken string `json:"access_token"`
	}
	if err := do(kh.base, request{path: engine.PathToken, body: "grant_type=client_credentials&scope=keyhook%3Aadmin",
		user: engine.BootstrapAdminID, pass: adminSecret}, http.MethodPost, &admin); err != nil {
		return nil, nil, err
	}
	setAlg := func(alg string) error {
		for _, step := range []struct{ method, path, body string }{
			{http.MethodPut, "/admin/v1/config", `{"access_token_signing_alg":"` + alg + `"}`},
			{http.MethodPost, "/admin/v1/keys/rotate", ""},
		} {
			req, _ := http.NewRequest(step.method, kh.base+step.path, strings.NewReader(step.body))
			req.Header.Set("Authorization", "Bearer "+admin.AccessToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("%s %s: %d %s", step.method, step.path, resp.StatusCode, b)
			}
		}
		return nil
	}
	tokens := map[string]string{}
	for _, c := range []string{"opaque", "opaque-scripted", "inline-scripted", "jwt"} {
		if tokens[c], err = tokenFor(kh.base, c); err != nil {
			return nil, nil, err
		}
	}
	var cases []httpCase
	for _, c := range httpCases {
		if *only == "" || strings.Contains(c.name, *only) {
			cases = append(cases, c)
		}
	}
	runs := make([][]result, len(cases))
	ratios := make([][]float64, len(cases))
	p99s := make([][]float64, len(cases))
	var ceilRuns, floorRuns []result
	var floorRatios, floorP99s []float64
	var walMax int64
	wal := ""
	if p, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		wal = p + "-wal"
	}
	// What the ceiling and the floor are loaded with (they answer any POST).
	bare := request{path: engine.PathIntrospect, body: "token=x", user: "rs", pass: "rs-secret"}
	alg := "RS256"
	for r := 0; r < *rounds; r++ {
		time.Sleep(time.Second)
		c, err := load(ceil.base, bare, dir)
		if err != nil {
			return nil, nil, err
		}
		ceilRuns = append(ceilRuns, c)
		if *verbose {
			fmt.Fprintf(os.Stderr, "%s round %d: ceiling %.0f req/s p99 %v\n", store, r+1, c.rps, c.p99)
		}
		time.Sleep(time.Second)
		f, err := load(floor.base, bare, dir)
		if err != nil {
			return nil, nil, err
		}
		floorRuns = append(floorRuns, f)
		floorRatios = append(floorRatios, f.rps/c.rps)
		floorP99s = append(floorP99s, float64(f.p99)/float64(c.p99))
		order := make([]int, len(cases))
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 { // alternate the order, keeping each algorithm's cases together
			sort.SliceStable(order, func(a, b int) bool { return cases[order[a]].alg > cases[order[b]].alg })
		}
		for _, i := range order {
			tc := cases[i]
			if tc.alg != alg {
				if err := setAlg(tc.alg); err != nil {
					return nil, nil, err
				}
				alg = tc.alg
			}
			// Let the server finish what the last run left (requests
			// cut off when the load stopped, script workers replaced)
			// before measuring the next case.
			time.Sleep(time.Second)
			res, err := load(kh.base, tc.req(tokens), dir)
			if err != nil {
				return nil, nil, err
			}
			if res.errors > 0 {
				return nil, nil, fmt.Errorf("%s: %d requests failed under load", tc.name, res.errors)
			}
			if *verbose {
				fmt.Fprintf(os.Stderr, "%s round %d: %s %.0f req/s p99 %v (%.2f)\n", store, r+1, tc.name, res.rps, res.p99, res.rps/c.rps)
			}
			runs[i] = append(runs[i], res)
			ratios[i] = append(ratios[i], res.rps/c.rps)
			p99s[i] = append(p99s[i], float64(res.p99)/float64(c.p99))
			if wal != "" {
				if st, err := os.Stat(wal); err == nil && st.Size() > walMax {
					walMax = st.Size()
				}
			}
		}
	}
	if alg != "RS256" {
		if err := setAlg("RS256"); err != nil {
			return nil, nil, err
		}
	}
	server, workers := peakRSS(kh.cmd.Process.Pid)
	pss := pssTotal(kh.cmd.Process.Pid)
	var out []row
	var notes []string
	mid := func(rs []result) result {
		sort.Slice(rs, func(a, b int) bool { return rs[a].rps < rs[b].rps })
		return rs[len(rs)/2]
	}
	cm := mid(ceilRuns)
	out = append(out, row{name: "HTTP bare echo ceiling", store: store, rps: fmt.Sprintf("%.0f", cm.rps), p50: dur(cm.p50),
		p99: dur(cm.p99), ratio: "1"})
	fm := mid(floorRuns)
	out = append(out, row{name: "HTTP bare echo + 1 process round trip", store: store, rps: fmt.Sprintf("%.0f", fm.rps), p50: dur(fm.p50),
		p99: dur(fm.p99), ratio: fmt.Sprintf("%.2f", median(floorRatios))})
	notes = append(notes, fmt.Sprintf("%s: bare echo + 1 process round trip (what a bare call to another process costs here: %s echo children, no script) p99 is %.1f× the ceiling's p99",
		store, roundTripChildren(), median(floorP99s)))
	for i, tc := range cases {
		m := mid(runs[i])
		out = append(out, row{name: tc.name, store: store, rps: fmt.Sprintf("%.0f", m.rps), p50: dur(m.p50), p99: dur(m.p99),
			ratio: fmt.Sprintf("%.2f", median(ratios[i])), target: tc.target[store]})
		if strings.Contains(tc.name, "issue jwt (RS256)") && signFloorNS > 0 {
			floorRPS := float64(runtime.NumCPU()) * 1e9 / signFloorNS
			notes = append(notes, fmt.Sprintf("%s: %s: %.0f req/s; RS256 signing alone on %d cores: %.0f signatures/s = %.2f× (target ≤ 1.3×)",
				store, tc.name, m.rps, runtime.NumCPU(), floorRPS, floorRPS/m.rps))
		}
		if strings.Contains(tc.name, "script (process)") {
			notes = append(notes, fmt.Sprintf("%s: %s p99 is %.1f× the ceiling's p99 (median of rounds; target ≤ 1.5×)",
				store, tc.name, median(p99s[i])))
		}
	}
	out[len(out)-1].rss = fmt.Sprintf("%d MiB", server>>20)
	notes = append(notes, fmt.Sprintf("%s: peak RSS of keyhook serve %d MiB, of its script workers %d MiB together; after the runs server and workers hold %d MiB by PSS (pages they share counted once) (target ≤ 150 MB)",
		store, server>>20, workers>>20, pss>>20))
	if wal != "" {
		notes = append(notes, fmt.Sprintf("sqlite: largest WAL file seen between runs %d MiB", walMax>>20))
	}
	return out, notes, nil
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	}
}

// peakRSS is the high-water resident set of pid and the sum of its
// children's (the script workers).
func peakRSS(pid int) (server, workers int64) {
	for _, k := range procstat.Children(pid) {
		workers += procstat.Bytes(k, "status", "VmHWM")
	}
	return procstat.Bytes(pid, "status", "VmHWM"), workers
}

// pssTotal is the proportional set size of pid and its children: memory
// the processes share (the executable's pages) is counted once.
func pssTotal(pid int) int64 {
	var total int64
	for _, p := range append([]int{pid}, procstat.Children(pid)...) {
		total += procstat.Bytes(p, "smaps_rollup", "Pss")
	}
	return total
}

// newPGDatabase makes a fresh database on the server of base.
func newPGDatabase(ctx context.Context, base string) (string, func(), error) {
	dsn, drop, err := storage.NewTestDSN(ctx, base)
	if err != nil {
		return "", nil, errors.New("postgres: " + err.Error())
	}
	return dsn, func() { _ = drop() }, nil
}
