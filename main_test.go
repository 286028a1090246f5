package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keyhook-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "keyhook")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a running `keyhook serve`.
type server struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	lines  []string
}

// start runs keyhook serve in dir and waits until /healthz answers.
func start(t *testing.T, dir, addr string, env []string, args ...string) *server {
	t.Helper()
	return startCommand(t, exec.Command(binary, append([]string{"serve"}, args...)...), dir, addr, env)
}

// startCommand runs cmd (keyhook serve, maybe under a wrapper such as
// prlimit) in dir and waits until /healthz answers on addr.
func startCommand(t *testing.T, cmd *exec.Cmd, dir, addr string, env []string) *server {
	t.Helper()
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stdout: bufio.NewScanner(out)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for s.stdout.Scan() {
		line := s.stdout.Text()
		s.lines = append(s.lines, line)
		if strings.HasPrefix(line, "keyhook serving on") {
			break
		}
	}
	go io.Copy(io.Discard, out)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server on %s did not become healthy; output %v", addr, s.lines)
	return nil
}

// stop sends SIGTERM and wants exit status 0.
func (s *server) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15s after SIGTERM")
	}
}

func (s *server) secret() string {
	for _, l := range s.lines {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "client_secret="); ok {
			return v
		}
	}
	return ""
}

func token(t *testing.T, addr, id, secret string) (int, map[string]any) {
	t.Helper()
	st, m := tryToken(addr, id, secret)
	if st == 0 {
		t.Fatalf("token endpoint on %s did not answer", addr)
	}
	return st, m
}

func TestServeDefaultsEnvAndSignals(t *testing.T) {
	dir := t.TempDir()
	envAddr := freeAddr(t)
	// First start: address from the environment, database keyhook.db in
	// the working directory, generated admin secret printed once.
	s := start(t, dir, envAddr, []string{"KEYHOOK_ADDR=" + envAddr})
	secret := s.secret()
	if secret == "" {
		t.Fatalf("no bootstrap secret printed: %v", s.lines)
	}
	if st, m := token(t, envAddr, "keyhook-admin", secret); st != 200 || m["scope"] != "keyhook:admin" {
		t.Fatalf("admin token: %d %v", st, m)
	}
	resp, _ := http.Get("http://" + envAddr + "/.well-known/openid-configuration")
	var md map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["issuer"] != "http://"+envAddr {
		t.Fatalf("default issuer %v", md["issuer"])
	}
	s.stop(t)
	if _, err := os.Stat(filepath.Join(dir, "keyhook.db")); err != nil {
		t.Fatalf("keyhook.db: %v", err)
	}
	// Second start: the flag wins over the environment; nothing printed,
	// the same key and secret still work.
	flagAddr := freeAddr(t)
	s = start(t, dir, flagAddr, []string{"KEYHOOK_ADDR=" + envAddr, "KEYHOOK_ISSUER=https://issuer.example"}, "--addr", flagAddr)
	if s.secret() != "" {
		t.Fatalf("credentials printed again: %v", s.lines)
	}
	if st, _ := token(t, flagAddr, "keyhook-admin", secret); st != 200 {
		t.Fatalf("admin token after restart: %d", st)
	}
	resp, _ = http.Get("http://" + flagAddr + "/.well-known/oauth-authorization-server")
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if md["issuer"] != "https://issuer.example" {
		t.Fatalf("issuer from environment: %v", md["issuer"])
	}
	s.stop(t)
}

func TestSeedImportExport(t *testing.T) {
	dir := t.TempDir()
	seed, _ := filepath.Abs("examples/seed.yaml")
	db := "sqlite:" + filepath.Join(dir, "seeded.db")
	addr := freeAddr(t)
	s := start(t, dir, addr, nil, "--addr", addr, "--db", db, "--seed", seed, "--bootstrap-admin-secret", "given-secret")
	if s.secret() != "given-secret" {
		t.Fatalf("bootstrap secret: %v", s.lines)
	}
	for id, secret := range map[string]string{"demo-service": "demo-service-secret", "demo-jwt": "demo-jwt-secret", "keyhook-admin": "given-secret"} {
		if st, m := token(t, addr, id, secret); st != 200 {
			t.Fatalf("%s: %d %v", id, st, m)
		}
	}
	s.stop(t)
	// Importing again is idempotent: everything is replaced, nothing added.
	out, err := exec.Command(binary, "import", "--db", db, seed).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0 created") {
		t.Fatalf("import again: %v %s", err, out)
	}
	exp, err := exec.Command(binary, "export", "--db", db).Output()
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	for _, want := range []string{"demo-service", "janssen-jwt-claims", "alice", "access_token_lifetime"} {
		if !strings.Contains(string(exp), want) {
			t.Errorf("export lacks %s", want)
		}
	}
	for _, secret := range []string{"demo-service-secret", "alice-password", "given-secret", "client_secret:", "password:", "argon2"} {
		if strings.Contains(string(exp), secret) {
			t.Errorf("export contains %q", secret)
		}
	}
	// The export imports into a fresh database.
	expFile := filepath.Join(dir, "export.yaml")
	_ = os.WriteFile(expFile, exp, 0o600)
	if out, err := exec.Command(binary, "import", "--db", "sqlite:"+filepath.Join(dir, "copy.db"), expFile).CombinedOutput(); err != nil {
		t.Fatalf("import of export: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "import", "--db", db, filepath.Join(dir, "missing.yaml")).CombinedOutput(); err == nil {
		t.Fatalf("import of a missing file succeeded: %s", out)
	}
}

// TestGracefulShutdownLosesNoToken sends SIGTERM while clients are busy
// getting tokens: the server exits 0, and every token it answered with
// is stored (it introspects active after a restart).
func TestGracefulShutdownLosesNoToken(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	args := []string{"--addr", addr, "--bootstrap-admin-secret", "admin-secret"}
	s := start(t, dir, addr, nil, args...)
	var mu sync.Mutex
	var issued []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, m := tryToken(addr, "keyhook-admin", "admin-secret")
				if st == 200 {
					mu.Lock()
					issued = append(issued, m["access_token"].(string))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	s.stop(t) // SIGTERM mid-load; exit status 0
	close(stop)
	wg.Wait()
	if len(issued) == 0 {
		t.Fatal("no token issued before shutdown")
	}
	addr2 := freeAddr(t)
	s = start(t, dir, addr2, nil, "--addr", addr2)
	defer s.stop(t)
	for _, tok := range issued {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr2+"/oauth2/introspect",
			strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("keyhook-admin", "admin-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if m["active"] != true {
			t.Fatalf("token answered before shutdown is not stored: %v", m)
		}
	}
	t.Logf("%d tokens issued under load, all stored", len(issued))
}

// tryToken is token without failing the test on connection errors, which
// are expected once the server stops.
func tryToken(addr, id, secret string) (int, map[string]any) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	if json.NewDecoder(resp.Body).Decode(&m) != nil {
		return 0, nil
	}
	return resp.StatusCode, m
}

// TestExampleScripts runs the server seeded with examples/ and checks what
// each example script does to real tokens.
func TestExampleScripts(t *testing.T) {
	dir := t.TempDir()
	seed, _ := filepath.Abs("examples/seed.yaml")
	addr := freeAddr(t)
	s := start(t, dir, addr, nil, "--addr", addr, "--seed", seed)
	defer s.stop(t)
	post := func(path string, vals url.Values, id, secret string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if id != "" {
			req.SetBasicAuth(id, secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, m)
		}
		return m
	}
	introspect := func(tok string) map[string]any {
		return post("/oauth2/introspect", url.Values{"token": {tok}, "client_id": {"demo-resource-server"},
			"client_secret": {"demo-resource-server-secret"}}, "", "")
	}
	want := func(t *testing.T, got map[string]any, fields map[string]any) {
		t.Helper()
		for k, v := range fields {
			g, _ := json.Marshal(got[k])
			w, _ := json.Marshal(v)
			if string(g) != string(w) {
				t.Errorf("%s = %s, want %s", k, g, w)
			}
		}
	}
	t.Run("liberty-fields", func(t *testing.T) {
		tok := post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "demo-service", "demo-service-secret")
		want(t, introspect(tok["access_token"].(string)), map[string]any{
			"grant_type": "client_credentials", "realmName": "BasicRealm", "uniqueSecurityName": "demo-service", "tokenType": "Bearer"})
	})
	t.Run("onewelcome-user-details", func(t *testing.T) {
		tok := post("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-password"},
			"scope": {"openid api.read"}}, "demo-password", "demo-password-secret")
		want(t, introspect(tok["access_token"].(string)), map[string]any{
			"user_details": map[string]any{"email": "alice@example.com", "name": "Alice Example", "given_name": "Alice", "family_name": "Example"},
			"amr":          []any{"DEFAULT"}, "app_identifier": "", "username": "alice"})
		if tok["id_token"] == nil || tok["refresh_token"] == nil {
			t.Fatalf("password grant answer %v", tok)
		}
	})
	t.Run("janssen-jwt-claims and department-claim", func(t *testing.T) {
		tok := post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "audience": {"payments-api"}}, "demo-jwt", "demo-jwt-secret")
		if tok["expires_in"] != 120.0 {
			t.Fatalf("expires_in = %v, want the script's 120", tok["expires_in"])
		}
		parts := strings.Split(tok["access_token"].(string), ".")
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var claims map[string]any
		_ = json.Unmarshal(raw, &claims)
		want(t, claims, map[string]any{"tenant": "acme", "roles": []any{"reader", "auditor"}, "department": "payments", "aud": "payments-api"})
		want(t, introspect(tok["access_token"].(string)), map[string]any{"tenant": "acme", "department": "payments", "aud": "payments-api"})
	})
}

// TestNothingSecretInTheDatabaseFile checks the SQLite files for client
// secrets, passwords and opaque tokens in plain text.
func TestNothingSecretInTheDatabaseFile(t *testing.T) {
	dir := t.TempDir()
	seed, _ := filepath.Abs("examples/seed.yaml")
	addr := freeAddr(t)
	s := start(t, dir, addr, nil, "--addr", addr, "--seed", seed, "--bootstrap-admin-secret", "bootstrap-plain-secret")
	_, tok := token(t, addr, "demo-service", "demo-service-secret")
	s.stop(t)
	var all []byte
	for _, f := range []string{"keyhook.db", "keyhook.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		all = append(all, b...)
	}
	if len(all) == 0 {
		t.Fatal("no database file")
	}
	for _, secret := range []string{"demo-service-secret", "demo-jwt-secret", "alice-password", "bootstrap-plain-secret", tok["access_token"].(string)} {
		if strings.Contains(string(all), secret) {
			t.Errorf("%q is stored in plain text", secret)
		}
	}
}

// TestMetricsAddr checks that /metrics is not public: on the main
// listener it needs an admin token, and --metrics-addr (or
// KEYHOOK_METRICS_ADDR) serves it without one on a listener of its own,
// which serves nothing else.
func TestMetricsAddr(t *testing.T) {
	get := func(t *testing.T, url, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name  string
		flag  bool
		serve bool
	}{
		{"default: no metrics listener", false, false},
		{"--metrics-addr", true, true},
		{"KEYHOOK_METRICS_ADDR", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, addr, maddr := t.TempDir(), freeAddr(t), freeAddr(t)
			env := []string{"KEYHOOK_BOOTSTRAP_ADMIN_SECRET=metrics-admin-secret"}
			var args []string
			switch {
			case tc.flag:
				args = []string{"--addr", addr, "--metrics-addr", maddr}
			case tc.serve:
				args = []string{"--addr", addr}
				env = append(env, "KEYHOOK_METRICS_ADDR="+maddr)
			default:
				args = []string{"--addr", addr}
			}
			s := start(t, dir, addr, env, args...)
			if st, body := get(t, "http://"+addr+"/metrics", ""); st != http.StatusUnauthorized {
				t.Fatalf("/metrics on the main listener without a token: %d %s", st, body)
			}
			_, m := token(t, addr, "keyhook-admin", "metrics-admin-secret")
			if st, body := get(t, "http://"+addr+"/metrics", m["access_token"].(string)); st != 200 || !strings.Contains(body, "keyhook_http_requests_total") {
				t.Fatalf("/metrics with an admin token: %d", st)
			}
			if !tc.serve {
				if resp, err := http.Get("http://" + maddr + "/metrics"); err == nil {
					resp.Body.Close()
					t.Fatalf("something answers on %s without --metrics-addr", maddr)
				}
			} else {
				st, body := get(t, "http://"+maddr+"/metrics", "")
				if st != 200 || !strings.Contains(body, "keyhook_http_requests_total") || !strings.Contains(body, "go_goroutines") {
					t.Fatalf("/metrics on --metrics-addr: %d", st)
				}
				if st, _ := get(t, "http://"+maddr+"/admin/v1/clients", ""); st != http.StatusNotFound {
					t.Fatalf("the metrics listener serves the admin API: %d", st)
				}
			}
			s.stop(t)
		})
	}
}

// TestTuneGC: keyhook serve lets the heap grow to --memory-target-mb
// before collecting hard, unless GOGC or GOMEMLIMIT say otherwise
// (docs/performance.md).
func TestTuneGC(t *testing.T) {
	origPercent := debug.SetGCPercent(100)
	origLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(origPercent); debug.SetMemoryLimit(origLimit) })
	for _, tc := range []struct {
		name           string
		gogc, memlimit string
		target, hash   int
		percent        int
		limit          int64
	}{
		// Password hashing's budget comes on top of the target.
		{"defaults", "", "", 96, 128, 400, (96 + 128) << 20},
		{"a larger target", "", "", 512, 128, 400, (512 + 128) << 20},
		{"no hashing budget", "", "", 96, 0, 400, 96 << 20},
		{"turned off", "", "", 0, 128, 100, math.MaxInt64},
		{"GOGC set", "150", "", 96, 128, 100, (96 + 128) << 20},
		{"GOMEMLIMIT set", "", "1GiB", 96, 128, 400, math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMEMLIMIT", tc.memlimit)
			tuneGC(tc.target, tc.hash)
			if got := debug.SetGCPercent(100); got != tc.percent {
				t.Errorf("GC percent %d, want %d", got, tc.percent)
			}
			if got := debug.SetMemoryLimit(math.MaxInt64); got != tc.limit {
				t.Errorf("memory limit %d, want %d", got, tc.limit)
			}
		})
	}
}
