// Command soak is `make soak` (docs/security.md): it builds keyhook,
// serves it on a fresh SQLite file seeded with examples/, and runs mixed
// load for -duration: client-credentials, password and refresh grants,
// introspection, revocation, admin edits, and one client whose
// introspection script is hostile (it loops, or allocates without end).
//
// It fails (exit 1) when a well-formed request gets a 5xx, when the
// server's resident memory or goroutines grow after the warm-up, or when
// a token it issued does not introspect as expected at the end: active
// unless revoked, rotated away or expired. It prints those figures.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keyhook/keyhook/examples/internal/procstat"
)

var (
	duration = flag.Duration("duration", 10*time.Minute, "how long the mixed load runs")
	workers  = flag.Int("workers", 8, "concurrent clients")
	sample   = flag.Duration("sample", 10*time.Second, "how often RSS and goroutines are sampled")
	// Growth allowed between the first sample after the warm-up and the
	// last minute of the run.
	maxWALMB           = flag.Int("max-wal-mb", 192, "largest allowed size of the SQLite WAL in a sample")
	maxRSSGrowth       = flag.Float64("max-rss-growth", 0.25, "largest allowed relative growth of the server's RSS")
	maxGoroutineGrowth = flag.Int("max-goroutine-growth", 64, "largest allowed growth of the server's goroutines")
	keep               = flag.Bool("keep", false, "keep the work directory (database, server log)")
)

const hostileScript = `function modifyResponse(response, context) {
  if (Math.random() < 0.5) { for (;;) {} }
  var a = []; for (;;) { a.push(new Array(1 << 16).fill(1)); }
}`

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// ledger is every token the soak was issued and what it expects of it.
type ledger struct {
	mu     sync.Mutex
	tokens []*issued
	// refresh are live refresh tokens of the password client.
	refresh []*issued
}

type issued struct {
	token   string
	kind    string // access or refresh
	client  string
	expires time.Time
	ended   atomic.Bool // revoked, or rotated away
	// unknown is set when a request that may have ended it got no
	// answer; such a token is not judged.
	unknown atomic.Bool
	// revoking is set before a revocation is sent: until its answer
	// sets ended, the token may be either.
	revoking atomic.Bool
}

func (l *ledger) add(t *issued) {
	l.mu.Lock()
	l.tokens = append(l.tokens, t)
	if t.kind == "refresh" {
		l.refresh = append(l.refresh, t)
	}
	l.mu.Unlock()
}

// pick returns a random token of kind, nil when there is none.
func (l *ledger) pick(r *rand.Rand, kind string) *issued {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kind == "refresh" {
		if len(l.refresh) == 0 {
			return nil
		}
		i := r.IntN(len(l.refresh))
		t := l.refresh[i]
		// A refresh token is used once: take it out of the pool.
		l.refresh[i] = l.refresh[len(l.refresh)-1]
		l.refresh = l.refresh[:len(l.refresh)-1]
		return t
	}
	if len(l.tokens) == 0 {
		return nil
	}
	// Recent tokens mostly, as resource servers see them.
	n := len(l.tokens)
	lo := max(0, n-2000)
	return l.tokens[lo+r.IntN(n-lo)]
}

// stats counts answers per operation and status.
type stats struct {
	mu     sync.Mutex
	counts map[string]map[int]int
	bad    []string // unexpected answers, first few
}

func (s *stats) count(op string, status int, unexpected string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[op] == nil {
		s.counts[op] = map[int]int{}
	}
	s.counts[op][status]++
	if unexpected != "" && len(s.bad) < 20 {
		s.bad = append(s.bad, op+": "+unexpected)
	}
}

func (s *stats) fives() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.counts {
		for st, c := range m {
			if st >= 500 {
				n += c
			}
		}
	}
	return n
}

type soak struct {
	base, metrics string
	http          *http.Client
	led           ledger
	st            stats
	adminToken    atomic.Value // string
	adminSecret   string
}

func run() error {
	work, err := os.MkdirTemp("", "keyhook-soak")
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		if *keep || failed {
			fmt.Println("work directory (database, server log):", work)
		} else {
			os.RemoveAll(work)
		}
	}()
	bin := filepath.Join(work, "keyhook")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	seed, err := filepath.Abs("examples/seed.yaml")
	if err != nil {
		return err
	}
	addr, maddr := freeAddr(), freeAddr()
	logf, err := os.Create(filepath.Join(work, "server.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	s := &soak{base: "http://" + addr, metrics: "http://" + maddr + "/metrics", adminSecret: "soak-admin-secret",
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	s.st.counts = map[string]map[int]int{}
	cmd := exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", maddr, "--db", "sqlite:"+filepath.Join(work, "keyhook.db"),
		"--seed", seed, "--bootstrap-admin-secret", s.adminSecret, "--log-level", "warn")
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	if err := s.waitHealthy(exited); err != nil {
		return err
	}
	if err := s.setup(); err != nil {
		return err
	}

	fmt.Printf("soak: %d workers for %s against %s (log %s)\n", *workers, *duration, s.base, logf.Name())
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx, rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano()))))
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.admin(ctx) }()

	type point struct {
		at         time.Duration
		rss        int64
		goroutines int
		// Script worker processes and their memory, together.
		workers    int
		workersRSS int64
		// The SQLite WAL's size (README "Performance": it stays bounded).
		wal int64
	}
	var points []point
	start := time.Now()
	tick := time.NewTicker(*sample)
	defer tick.Stop()
	sampleNow := func() {
		kids := procstat.Children(cmd.Process.Pid)
		var kidsRSS int64
		for _, k := range kids {
			kidsRSS += procstat.Bytes(k, "status", "VmRSS")
		}
		var wal int64
		if st, err := os.Stat(filepath.Join(work, "keyhook.db-wal")); err == nil {
			wal = st.Size()
		}
		points = append(points, point{at: time.Since(start).Round(time.Second), rss: procstat.Bytes(cmd.Process.Pid, "status", "VmRSS"), goroutines: s.goroutines(),
			workers: len(kids), workersRSS: kidsRSS, wal: wal})
	}
	sampleNow()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-exited:
			return fmt.Errorf("the server exited during the run: %v (see %s)", err, logf.Name())
		case <-tick.C:
			sampleNow()
		}
	}
	wg.Wait()
	sampleNow()

	// Every token issued introspects as expected.
	checked, wrong := s.verify()

	// Figures.
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\tanswers by status")
	ops := make([]string, 0, len(s.st.counts))
	for op := range s.st.counts {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	total := 0
	for _, op := range ops {
		var parts []string
		codes := make([]int, 0)
		for c := range s.st.counts[op] {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d×%d", c, s.st.counts[op][c]))
			total += s.st.counts[op][c]
		}
		fmt.Fprintf(tw, "%s\t%s\n", op, strings.Join(parts, " "))
	}
	tw.Flush()
	elapsed := time.Since(start)
	fmt.Printf("\n%d requests in %s (%.0f/s); %d tokens issued, %d introspected at the end, %d wrong\n",
		total, elapsed.Round(time.Second), float64(total)/elapsed.Seconds(), len(s.led.tokens), checked, wrong)
	fmt.Println("\nsample\tRSS MiB\tgoroutines\tscript workers\ttheir RSS MiB\tWAL MiB")
	var walPeak int64
	for _, p := range points {
		fmt.Printf("%s\t%.1f\t%d\t%d\t%.1f\t%.1f\n", p.at, float64(p.rss)/(1<<20), p.goroutines, p.workers, float64(p.workersRSS)/(1<<20),
			float64(p.wal)/(1<<20))
		walPeak = max(walPeak, p.wal)
	}

	var failures []string
	if n := s.st.fives(); n > 0 {
		failures = append(failures, fmt.Sprintf("%d answers were 5xx", n))
	}
	if len(s.st.bad) > 0 {
		failures = append(failures, "unexpected answers:\n  "+strings.Join(s.st.bad, "\n  "))
	}
	if wrong > 0 {
		failures = append(failures, fmt.Sprintf("%d tokens introspected wrongly at the end", wrong))
	}
	if walPeak > int64(*maxWALMB)<<20 {
		failures = append(failures, fmt.Sprintf("the WAL grew to %d MiB (more than %d MiB)", walPeak>>20, *maxWALMB))
	}
	// Flat: the highest of the fifth after a warm-up fifth against the
	// highest of the last fifth (the heap breathes with each GC cycle,
	// so single samples are not compared).
	if len(points) >= 3 {
		fifth := max(1, len(points)/5)
		peak := func(ps []point) (rss int64, g int) {
			for _, p := range ps {
				rss, g = max(rss, p.rss), max(g, p.goroutines)
			}
			return rss, g
		}
		baseRSS, baseG := peak(points[fifth:min(len(points), 2*fifth)])
		lastRSS, lastG := peak(points[len(points)-fifth:])
		growth := float64(lastRSS-baseRSS) / float64(baseRSS)
		fmt.Printf("\npeak RSS %.1f → %.1f MiB (%+.0f%%), goroutines %d → %d, after the warm-up\n",
			float64(baseRSS)/(1<<20), float64(lastRSS)/(1<<20), growth*100, baseG, lastG)
		if growth > *maxRSSGrowth {
			failures = append(failures, fmt.Sprintf("RSS grew %.0f%% (more than %.0f%%)", growth*100, *maxRSSGrowth*100))
		}
		if lastG-baseG > *maxGoroutineGrowth {
			failures = append(failures, fmt.Sprintf("goroutines grew by %d (more than %d)", lastG-baseG, *maxGoroutineGrowth))
		}
	}
	// The server stops cleanly.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			failures = append(failures, fmt.Sprintf("the server exited with %v after SIGTERM", err))
		}
	case <-time.After(40 * time.Second):
		failures = append(failures, "the server did not stop within 40 s of SIGTERM")
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n"))
	}
	failed = false
	fmt.Println("soak: passed")
	return nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (s *soak) waitHealthy(exited chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("the server exited at start: %v", err)
		default:
		}
		if resp, err := http.Get(s.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the server did not become healthy in 30 s")
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (s *soak) do(method, path string, form url.Values, body any, auth func(*http.Request), out any) (int, error) {
	var rd io.Reader
	ctype := ""
	switch {
	case form != nil:
		rd, ctype = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
	case body != nil:
		b, _ := json.Marshal(body)
		rd, ctype = strings.NewReader(string(b)), "application/json"
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return 0, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(id, secret) }
}

func (s *soak) bearer() func(*http.Request) {
	tok, _ := s.adminToken.Load().(string)
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func (s *soak) refreshAdmin() error {
	var m map[string]any
	st, err := s.do(http.MethodPost, "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, nil, basic("keyhook-admin", s.adminSecret), &m)
	if err != nil || st != 200 {
		return fmt.Errorf("admin token: %d %v %v", st, err, m)
	}
	s.adminToken.Store(m["access_token"].(string))
	return nil
}

// setup adds the hostile script and the client it is bound to.
func (s *soak) setup() error {
	if err := s.refreshAdmin(); err != nil {
		return err
	}
	steps := []struct {
		path string
		body any
	}{
		{"/admin/v1/scripts", map[string]any{"name": "soak-hostile", "type": "introspection", "source": hostileScript, "timeout_ms": 50}},
		{"/admin/v1/clients", map[string]any{"client_id": "soak-hostile", "client_secret": "soak-hostile-secret-0123456789abcdef",
			"grant_types": []string{"client_credentials"}, "scope": "api.read", "introspection_scripts": []string{"soak-hostile"}}},
	}
	for _, step := range steps {
		var m map[string]any
		st, err := s.do(http.MethodPost, step.path, nil, step.body, s.bearer(), &m)
		if err != nil || st != 201 {
			return fmt.Errorf("POST %s: %d %v %v", step.path, st, err, m)
		}
	}
	return nil
}

// ccClients are the client-credentials clients the soak issues for.
var ccClients = []struct{ id, secret string }{
	{"demo-service", "demo-service-secret"},
	{"demo-jwt", "demo-jwt-secret"},
	{"soak-hostile", "soak-hostile-secret-0123456789abcdef"},
}

func (s *soak) worker(ctx context.Context, r *rand.Rand) {
	for ctx.Err() == nil {
		switch n := r.IntN(100); {
		case n < 25:
			c := ccClients[r.IntN(len(ccClients))]
			s.issue("client_credentials", url.Values{"grant_type": {"client_credentials"}}, c.id, c.secret, nil)
		case n < 30:
			s.issue("password", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-password"},
				"scope": {"openid api.read"}}, "demo-password", "demo-password-secret", nil)
		case n < 45:
			old := s.led.pick(r, "refresh")
			if old == nil {
				continue
			}
			s.issue("refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old.token}}, "demo-password", "demo-password-secret", old)
		case n < 90:
			t := s.led.pick(r, "access")
			if t == nil || t.kind != "access" {
				continue
			}
			s.introspect("introspect", t)
		default:
			t := s.led.pick(r, "access")
			if t == nil || t.kind != "access" || t.ended.Load() {
				continue
			}
			// Revoke as the client the token was issued to (RFC 7009 §2.1).
			secret := ""
			for _, c := range ccClients {
				if c.id == t.client {
					secret = c.secret
				}
			}
			if t.client == "demo-password" {
				secret = "demo-password-secret"
			}
			t.revoking.Store(true)
			st, err := s.do(http.MethodPost, "/oauth2/revoke", url.Values{"token": {t.token}, "token_type_hint": {"access_token"}}, nil, basic(t.client, secret), nil)
			s.record("revoke", st, err, 200)
			if err != nil {
				t.unknown.Store(true)
			}
			if st == 200 {
				t.ended.Store(true)
			}
		}
	}
}

func (s *soak) record(op string, st int, err error, want int) {
	switch {
	case err != nil:
		s.st.count(op, 0, err.Error())
	case st != want:
		s.st.count(op, st, fmt.Sprintf("status %d, want %d", st, want))
	default:
		s.st.count(op, st, "")
	}
}

// issue asks for a token and records what came back; old is the refresh
// token it rotates away.
func (s *soak) issue(op string, form url.Values, id, secret string, old *issued) {
	var m struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
	}
	sent := time.Now()
	st, err := s.do(http.MethodPost, "/oauth2/token", form, nil, basic(id, secret), &m)
	s.record(op, st, err, 200)
	if err != nil && old != nil {
		old.unknown.Store(true)
	}
	if st != 200 {
		return
	}
	if old != nil {
		old.ended.Store(true)
	}
	s.led.add(&issued{token: m.AccessToken, kind: "access", client: id, expires: sent.Add(time.Duration(m.ExpiresIn) * time.Second)})
	if m.RefreshToken != "" {
		// Refresh tokens expire much later than the run; their expiry is
		// not checked.
		s.led.add(&issued{token: m.RefreshToken, kind: "refresh", client: id, expires: sent.Add(24 * time.Hour)})
	}
}

// introspect checks one token's answer against the ledger; a token near
// its expiry is not judged.
func (s *soak) introspect(op string, t *issued) bool {
	var m map[string]any
	ended := t.ended.Load()
	st, err := s.do(http.MethodPost, "/oauth2/introspect", url.Values{"token": {t.token}, "client_id": {"demo-resource-server"},
		"client_secret": {"demo-resource-server-secret"}}, nil, nil, &m)
	s.record(op, st, err, 200)
	if st != 200 {
		return false
	}
	now := time.Now()
	if d := t.expires.Sub(now); t.unknown.Load() || d > -5*time.Second && d < 5*time.Second {
		return true
	}
	if !ended && t.revoking.Load() {
		return true // a revocation of it is in flight
	}
	want := !ended && now.Before(t.expires)
	if got, _ := m["active"].(bool); got != want && ended == t.ended.Load() {
		s.st.count(op+" (answer)", 0, fmt.Sprintf("%s token of %s: active %v, want %v (expires in %s, revoked %v, answer %v)",
			t.kind, t.client, got, want, t.expires.Sub(now).Round(time.Second), ended, m))
		return false
	}
	return true
}

// verify introspects every token issued, eight at a time.
func (s *soak) verify() (checked, wrong int) {
	s.led.mu.Lock()
	all := append([]*issued(nil), s.led.tokens...)
	s.led.mu.Unlock()
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				if !s.introspect("verify", all[i]) {
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return len(all), int(bad.Load())
}

// admin edits the server while it serves: a client created, replaced and
// deleted, a script replaced, a property set, once a second.
func (s *soak) admin(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if i%60 == 0 {
			if err := s.refreshAdmin(); err != nil {
				s.st.count("admin token", 0, err.Error())
			}
		}
		id := fmt.Sprintf("soak-temp-%d", i)
		client := map[string]any{"client_id": id, "grant_types": []string{"client_credentials"}, "scope": "api.read"}
		st, err := s.do(http.MethodPost, "/admin/v1/clients", nil, client, s.bearer(), nil)
		s.record("admin create client", st, err, 201)
		client["client_name"] = "renamed"
		st, err = s.do(http.MethodPut, "/admin/v1/clients/"+id, nil, client, s.bearer(), nil)
		s.record("admin replace client", st, err, 200)
		st, err = s.do(http.MethodDelete, "/admin/v1/clients/"+id, nil, nil, s.bearer(), nil)
		s.record("admin delete client", st, err, 204)
		var sc map[string]any
		st, err = s.do(http.MethodGet, "/admin/v1/scripts/liberty-fields", nil, nil, s.bearer(), &sc)
		s.record("admin read script", st, err, 200)
		if st == 200 {
			body := map[string]any{"name": "liberty-fields", "type": sc["type"], "source": sc["source"], "config": sc["config"],
				"level": 100 + i%2}
			st, err = s.do(http.MethodPut, "/admin/v1/scripts/liberty-fields", nil, body, s.bearer(), nil)
			s.record("admin replace script", st, err, 200)
		}
		st, err = s.do(http.MethodPut, "/admin/v1/config", nil, map[string]any{"introspection_required_scope": ""}, s.bearer(), nil)
		s.record("admin config", st, err, 200)
	}
}

// goroutines reads go_goroutines from the server's metrics listener.
func (s *soak) goroutines() int {
	resp, err := s.http.Get(s.metrics)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int(f)
		}
	}
	return -1
}
