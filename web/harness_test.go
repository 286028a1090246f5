package web_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
	"github.com/keyhook/keyhook/storage"
	"github.com/keyhook/keyhook/web"
)

// clock is a test clock that real time drives and tests can advance, or
// freeze so that only advance moves it.
type clock struct{ offset, frozen atomic.Int64 }

func (c *clock) now() time.Time {
	if f := c.frozen.Load(); f != 0 {
		return time.Unix(0, f+c.offset.Load())
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }
func (c *clock) freeze()                 { c.frozen.Store(time.Now().UnixNano()) }

// harness is one keyhook server on a real listener with a real SQLite
// file (or PostgreSQL) and real goja scripts.
type harness struct {
	t          testing.TB
	srv        *httptest.Server
	url        string
	eng        *engine.Engine
	store      *storage.Store
	clock      *clock
	reg        *prometheus.Registry
	adminToken string
}

const adminSecret = "test-admin-secret"

type harnessOpt func(*harnessCfg)

type harnessCfg struct {
	dsn        string
	log        *slog.Logger
	workers    int
	budget     time.Duration
	breakerOff bool
	proxies    []netip.Prefix
	throttles  bool
	// hashMB, hashWait: the password-hashing budget (0: defaults).
	hashMB   int
	hashWait time.Duration
	// tracer, when set, traces requests (docs/operations.md, "Tracing").
	tracer trace.TracerProvider
	// fetch configures scripts' context.fetch; isolation is the scripts'
	// default isolation ("" = process).
	fetch     scripts.FetchOptions
	isolation hooks.Isolation
	// kek is the key-encryption key (nil: none, docs/keys.md).
	kek []byte
	// engine changes the engine's configuration last.
	engine []func(*engine.Config)
	// deviceLifetime, deviceInterval: the device flow's (0: defaults).
	deviceLifetime, deviceInterval time.Duration
}

// withEngine changes the engine's configuration before it starts.
func withEngine(f func(*engine.Config)) harnessOpt {
	return func(c *harnessCfg) { c.engine = append(c.engine, f) }
}

// withDeviceFlow sets the device code lifetime and poll interval.
func withDeviceFlow(lifetime, interval time.Duration) harnessOpt {
	return func(c *harnessCfg) { c.deviceLifetime, c.deviceInterval = lifetime, interval }
}

// withFetch configures scripts' context.fetch.
func withFetch(f scripts.FetchOptions) harnessOpt { return func(c *harnessCfg) { c.fetch = f } }

// withIsolation sets the default isolation of scripts.
func withIsolation(i hooks.Isolation) harnessOpt { return func(c *harnessCfg) { c.isolation = i } }

func withWorkers(n int) harnessOpt { return func(c *harnessCfg) { c.workers = n } }

// withScriptBudget sets the engine's per-request script budget.
func withScriptBudget(d time.Duration) harnessOpt { return func(c *harnessCfg) { c.budget = d } }

// withBreakerOff turns the scripts' circuit breakers off.
func withBreakerOff() harnessOpt { return func(c *harnessCfg) { c.breakerOff = true } }

// withThrottles turns on the failure throttles with their defaults
// (docs/auth-limits.md); other tests fail authentications at will.
func withThrottles() harnessOpt { return func(c *harnessCfg) { c.throttles = true } }

// withPasswordHashing sets the password-hashing budget and its wait.
func withPasswordHashing(mb int, wait time.Duration) harnessOpt {
	return func(c *harnessCfg) { c.hashMB, c.hashWait = mb, wait }
}

// withTrustedProxies makes the server believe X-Forwarded-For from these networks.
func withTrustedProxies(p ...netip.Prefix) harnessOpt { return func(c *harnessCfg) { c.proxies = p } }

// withTracerProvider makes the server trace requests to tp.
func withTracerProvider(tp trace.TracerProvider) harnessOpt {
	return func(c *harnessCfg) { c.tracer = tp }
}

// withKEK gives the engine a key-encryption key.
func withKEK(kek []byte) harnessOpt { return func(c *harnessCfg) { c.kek = kek } }

func withDSN(dsn string) harnessOpt { return func(c *harnessCfg) { c.dsn = dsn } }

func withLogger(l *slog.Logger) harnessOpt { return func(c *harnessCfg) { c.log = l } }

func quietLogger() *slog.Logger {
	if os.Getenv("KEYHOOK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	cfg := &harnessCfg{dsn: "sqlite:" + filepath.Join(t.TempDir(), "keyhook.db"), log: quietLogger()}
	for _, o := range opts {
		o(cfg)
	}
	ctx := context.Background()
	store, err := storage.Open(ctx, cfg.dsn)
	if err != nil {
		t.Fatalf("storage.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	log := cfg.log
	reg := prometheus.NewRegistry()
	clk := &clock{}
	rt := scripts.New(scripts.Options{Registerer: reg, Logger: log, Workers: cfg.workers, Fetch: cfg.fetch, DefaultIsolation: cfg.isolation})
	t.Cleanup(rt.Close)
	disp := hooks.NewDispatcher(rt, log)
	disp.Breaker.Now = clk.now // script cool-downs follow the test clock
	if cfg.breakerOff {
		disp.Breaker.Threshold = -1
	}
	ecfg := engine.Config{Issuer: base, Logger: log, Now: clk.now, Hooks: disp, ScriptBudget: cfg.budget,
		PasswordHashMemoryMB: cfg.hashMB, PasswordHashWait: cfg.hashWait, KEK: cfg.kek,
		DeviceCodeLifetime: cfg.deviceLifetime, DevicePollInterval: cfg.deviceInterval}
	if !cfg.throttles {
		ecfg.LoginThrottle.Free, ecfg.ClientAuthThrottle.Free = -1, -1
	}
	for _, f := range cfg.engine {
		f(&ecfg)
	}
	eng, err := engine.New(ctx, ecfg, store.Stores())
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	web.RegisterScriptMetrics(reg, eng.Hooks())
	if _, err := eng.Bootstrap(ctx, adminSecret); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	ws := web.New(web.Config{Engine: eng, Logger: log, Registry: reg, Ready: store.Ping, TrustedProxies: cfg.proxies,
		TracerProvider: cfg.tracer})
	srv.Config.Handler = ws.Handler()
	srv.Config.RegisterOnShutdown(ws.CloseStreams) // as keyhook serve does
	srv.Start()
	t.Cleanup(srv.Close)
	// The refresh loop, as keyhook serve runs it: shared state written by
	// other instances arrives through it.
	// It ends before the store closes (cleanups run last first).
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { eng.Run(runCtx); close(runDone) }()
	t.Cleanup(func() { stopRun(); <-runDone })
	h := &harness{t: t, srv: srv, url: base, eng: eng, store: store, clock: clk, reg: reg}
	h.adminToken = h.mustToken(engine.BootstrapAdminID, adminSecret, "").AccessToken
	return h
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r *response) str(key string) string { s, _ := r.json[key].(string); return s }

func (h *harness) do(req *http.Request) *response {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := &response{status: resp.StatusCode, header: resp.Header, body: body}
	_ = json.Unmarshal(body, &out.json)
	return out
}

// form POSTs a form to path with optional Basic credentials (id != "").
func (h *harness) form(path string, vals url.Values, id, secret string) *response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return h.do(req)
}

// withBearer POSTs a form with Authorization: Bearer.
func (h *harness) formBearer(path string, vals url.Values, token string) *response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	return h.do(req)
}

// admin calls the admin API with the bootstrap admin's token.
func (h *harness) admin(method, path string, body any) *response {
	h.t.Helper()
	return h.adminAs(h.adminToken, method, path, body)
}

func (h *harness) adminAs(token, method, path string, body any) *response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
		}
	}
	req, _ := http.NewRequest(method, h.url+"/admin/v1"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

// createClient creates a client through the admin API and returns its secret.
func (h *harness) createClient(doc map[string]any) string {
	h.t.Helper()
	r := h.admin(http.MethodPost, "/clients", doc)
	if r.status != http.StatusCreated {
		h.t.Fatalf("create client %v: %d %s", doc["client_id"], r.status, r.body)
	}
	return r.str("client_secret")
}

func (h *harness) createScript(doc map[string]any) {
	h.t.Helper()
	r := h.admin(http.MethodPost, "/scripts", doc)
	if r.status != http.StatusCreated {
		h.t.Fatalf("create script %v: %d %s", doc["name"], r.status, r.body)
	}
}

func (h *harness) setConfig(props map[string]any) {
	h.t.Helper()
	if r := h.admin(http.MethodPut, "/config", props); r.status != http.StatusOK {
		h.t.Fatalf("PUT /config: %d %s", r.status, r.body)
	}
}

type tokenResp struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

// mustToken gets a client_credentials token with Basic authentication.
func (h *harness) mustToken(id, secret, scope string) *tokenResp {
	h.t.Helper()
	vals := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		vals.Set("scope", scope)
	}
	return h.mustDecodeToken(h.form("/oauth2/token", vals, id, secret))
}

func (h *harness) mustDecodeToken(r *response) *tokenResp {
	h.t.Helper()
	if r.status != http.StatusOK {
		h.t.Fatalf("token endpoint: %d %s", r.status, r.body)
	}
	var tr tokenResp
	if err := json.Unmarshal(r.body, &tr); err != nil {
		h.t.Fatalf("token response: %v", err)
	}
	return &tr
}

// introspect calls the introspection endpoint as the bootstrap admin.
func (h *harness) introspect(token string) map[string]any {
	h.t.Helper()
	r := h.form("/oauth2/introspect", url.Values{"token": {token}}, engine.BootstrapAdminID, adminSecret)
	if r.status != http.StatusOK {
		h.t.Fatalf("introspect: %d %s", r.status, r.body)
	}
	return r.json
}

// wantError checks an OAuth error answer.
func wantError(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.status, r.body)
	}
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
