// Command keyhook is an OAuth 2.0 / OpenID Connect authorization server
// whose tokens and introspection answers are shaped by JavaScript hooks.
//
//	keyhook serve [flags]     run the server
//	keyhook import FILE       import clients, scripts, users and config
//	keyhook export            write them as YAML (secrets left out)
//	keyhook new-kek           print a fresh key-encryption key
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gopkg.in/yaml.v3"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
	"github.com/keyhook/keyhook/storage"
	"github.com/keyhook/keyhook/web"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  keyhook serve [--addr HOST:PORT] [--db DSN] [--issuer URL] [--bootstrap-admin-secret S] [--seed FILE]
                [--script-isolation process|inline] [--script-workers N] [--script-memory-max-mb MB]
                [--kek-file FILE] [--require-kek] [--metrics-addr HOST:PORT]
                [--password-hash-memory-mb MB] [--password-hash-wait-ms MS] [--login-failures N]
                [--client-auth-failures N] [--auth-backoff-max-seconds S] [--trusted-proxies CIDR,...]
                [--jwks-uri-allow-private]
  keyhook import [--db DSN] FILE
  keyhook export [--db DSN]
  keyhook new-kek`

// options are the flags of keyhook serve (README "Running it"); each falls back to its
// environment variable, and a flag wins.
type options struct {
	addr, db, issuer, bootstrapSecret, seed, logLevel string
	// metricsAddr is where /metrics is served without a token; empty:
	// nowhere (the main listener serves it to admin tokens only).
	metricsAddr string
	// The script sandbox (docs/sandbox.md).
	scriptIsolation string
	scriptWorkers   int
	scriptMemoryMax int
	// Keys at rest (docs/keys.md): the key-encryption key comes from
	// kekFile or, without one, from KEYHOOK_KEK; never from the command
	// line, where other users of the machine could read it.
	kekFile    string
	requireKEK bool
	// Authentication limits (docs/auth-limits.md).
	hashMemoryMB, hashWaitMS          int
	loginFailures, clientAuthFailures int
	backoffMaxSeconds                 int
	trustedProxies                    []netip.Prefix
	// jwks_uri fetches (docs/client-auth.md).
	jwksURIAllowPrivate bool
	// The Go heap's target (docs/performance.md); 0 leaves Go's defaults.
	memoryTargetMB int
}

func parseFlags(name string, args []string, stderr io.Writer) (*options, []string, error) {
	o := &options{}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", envOr("KEYHOOK_ADDR", "127.0.0.1:8080"), "listen address HOST:PORT")
	fs.StringVar(&o.db, "db", envOr("KEYHOOK_DB", "sqlite:keyhook.db"), "database: sqlite:PATH or postgres://…")
	fs.StringVar(&o.issuer, "issuer", os.Getenv("KEYHOOK_ISSUER"), "issuer URL (default http://ADDR)")
	fs.StringVar(&o.bootstrapSecret, "bootstrap-admin-secret", os.Getenv("KEYHOOK_BOOTSTRAP_ADMIN_SECRET"), "secret of the keyhook-admin client created when absent")
	fs.StringVar(&o.seed, "seed", "", "YAML file to import at start")
	fs.StringVar(&o.metricsAddr, "metrics-addr", os.Getenv("KEYHOOK_METRICS_ADDR"),
		"serve /metrics without a token on this HOST:PORT (keep it private); default: only to tokens with keyhook:admin or keyhook:metrics.read")
	fs.StringVar(&o.logLevel, "log-level", envOr("KEYHOOK_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.StringVar(&o.scriptIsolation, "script-isolation", envOr("KEYHOOK_SCRIPT_ISOLATION", "process"),
		"where scripts without their own isolation run: process (worker processes) or inline")
	fs.IntVar(&o.scriptWorkers, "script-workers", envInt("KEYHOOK_SCRIPT_WORKERS", 0), "script worker processes (default 2 per CPU)")
	fs.IntVar(&o.scriptMemoryMax, "script-memory-max-mb", envInt("KEYHOOK_SCRIPT_MEMORY_MAX_MB", 256),
		"largest memory budget a script may have, MiB")
	fs.StringVar(&o.kekFile, "kek-file", os.Getenv("KEYHOOK_KEK_FILE"),
		"file holding the base64 key-encryption key that seals signing keys at rest (or set KEYHOOK_KEK)")
	fs.BoolVar(&o.requireKEK, "require-kek", envBool("KEYHOOK_REQUIRE_KEK"), "refuse to start without a key-encryption key")
	fs.IntVar(&o.hashMemoryMB, "password-hash-memory-mb", envInt("KEYHOOK_PASSWORD_HASH_MEMORY_MB", engine.DefaultPasswordHashMemoryMB),
		"memory all password hashes computed at once may use, MiB (each takes 19)")
	fs.IntVar(&o.hashWaitMS, "password-hash-wait-ms", envInt("KEYHOOK_PASSWORD_HASH_WAIT_MS", int(engine.DefaultPasswordHashWait/time.Millisecond)),
		"how long a password check waits for hashing memory before 503, ms")
	fs.IntVar(&o.loginFailures, "login-failures", envInt("KEYHOOK_LOGIN_FAILURES", engine.DefaultThrottleFree),
		"failed sign-ins per username (4x per address) before back-off; 0 turns it off")
	fs.IntVar(&o.clientAuthFailures, "client-auth-failures", envInt("KEYHOOK_CLIENT_AUTH_FAILURES", engine.DefaultThrottleFree),
		"failed client authentications per client_id (4x per address) before back-off; 0 turns it off")
	fs.IntVar(&o.backoffMaxSeconds, "auth-backoff-max-seconds", envInt("KEYHOOK_AUTH_BACKOFF_MAX_SECONDS", int(engine.DefaultThrottleMaxBackoff/time.Second)),
		"longest back-off after failed authentications, seconds")
	proxies := fs.String("trusted-proxies", os.Getenv("KEYHOOK_TRUSTED_PROXIES"),
		"comma-separated CIDRs of proxies whose X-Forwarded-For is believed (default none: the TCP peer is the address)")
	fs.IntVar(&o.memoryTargetMB, "memory-target-mb", envInt("KEYHOOK_MEMORY_TARGET_MB", defaultMemoryTargetMB),
		"heap size the server may reach before collecting garbage often, MiB (GOMEMLIMIT); 0 keeps Go's defaults")
	allowPrivate, _ := strconv.ParseBool(os.Getenv("KEYHOOK_JWKS_URI_ALLOW_PRIVATE"))
	fs.BoolVar(&o.jwksURIAllowPrivate, "jwks-uri-allow-private", allowPrivate,
		"let clients' jwks_uri reach private and link-local addresses")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	for _, s := range strings.Split(*proxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR", s)
		}
		o.trustedProxies = append(o.trustedProxies, p)
	}
	for _, c := range []struct {
		name    string
		v, a, b int
	}{
		{"--password-hash-memory-mb", o.hashMemoryMB, 19, 1 << 16},
		{"--password-hash-wait-ms", o.hashWaitMS, 1, 60_000},
		{"--login-failures", o.loginFailures, 0, 1000},
		{"--client-auth-failures", o.clientAuthFailures, 0, 1000},
		{"--auth-backoff-max-seconds", o.backoffMaxSeconds, 1, 86_400},
	} {
		if c.v < c.a || c.v > c.b {
			return nil, nil, fmt.Errorf("%s: %d is not between %d and %d", c.name, c.v, c.a, c.b)
		}
	}
	if o.issuer == "" {
		o.issuer = "http://" + o.addr
	}
	switch hooks.Isolation(o.scriptIsolation) {
	case hooks.IsolationProcess, hooks.IsolationInline:
	default:
		return nil, nil, fmt.Errorf("--script-isolation: %q is neither process nor inline", o.scriptIsolation)
	}
	if o.scriptMemoryMax < 1 || o.scriptMemoryMax > 16<<10 {
		return nil, nil, fmt.Errorf("--script-memory-max-mb: %d is not between 1 and 16384", o.scriptMemoryMax)
	}
	if o.scriptWorkers < 0 || o.scriptWorkers > 256 {
		return nil, nil, fmt.Errorf("--script-workers: %d is not between 0 (default) and 256", o.scriptWorkers)
	}
	return o, fs.Args(), nil
}

// envInt is the integer in the environment variable name, or def when it
// is unset; a value that is not an integer makes it -1, which the flag
// checks refuse.
func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// envBool is whether the environment variable name is set to true (1,
// t, true…, as strconv.ParseBool reads it).
func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

// throttle is the engine's throttle for a --*-failures flag (0: off).
func throttle(free, maxSeconds int) engine.Throttle {
	if free == 0 {
		free = -1
	}
	return engine.Throttle{Free: free, MaxBackoff: time.Duration(maxSeconds) * time.Second}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	if args[0] == "new-kek" {
		fmt.Fprintln(stdout, engine.NewKEK())
		return nil
	}
	o, rest, err := parseFlags(args[0], args[1:], stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	switch args[0] {
	case "serve":
		return serve(ctx, o, stdout, log)
	case "import":
		if len(rest) != 1 {
			return errors.New(usage)
		}
		return withApp(ctx, o, log, nil, func(a *app) error {
			st, err := importFile(ctx, a.eng, rest[0])
			if err == nil {
				fmt.Fprintf(stdout, "imported %s: %d created, %d replaced\n", rest[0], st.Created, st.Replaced)
			}
			return err
		})
	case "export":
		return withApp(ctx, o, log, nil, func(a *app) error {
			seed, err := a.eng.Export(ctx)
			if err != nil {
				return err
			}
			return writeYAML(stdout, seed)
		})
	}
	return errors.New(usage)
}

// app is the wired server: storage, scripts, engine.
type app struct {
	store *storage.Store
	eng   *engine.Engine
	rt    *scripts.Runtime
	reg   *prometheus.Registry
}

func withApp(ctx context.Context, o *options, log *slog.Logger, reg *prometheus.Registry, fn func(*app) error) error {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	kek, err := loadKEK(o)
	if err != nil {
		return err
	}
	store, err := storage.Open(ctx, o.db, storage.WithLogger(log))
	if err != nil {
		return fmt.Errorf("opening %s: %w", o.db, err)
	}
	defer store.Close()
	rt := scripts.New(scripts.Options{Registerer: reg, Logger: log, DefaultIsolation: hooks.Isolation(o.scriptIsolation),
		Workers: o.scriptWorkers, MaxMemoryMB: o.scriptMemoryMax})
	defer rt.Close()
	disp := hooks.NewDispatcher(rt, log)
	web.RegisterScriptMetrics(reg, disp)
	eng, err := engine.New(ctx, engine.Config{Issuer: o.issuer, Logger: log, Hooks: disp, MaxScriptMemoryMB: o.scriptMemoryMax,
		KEK:                  kek,
		PasswordHashMemoryMB: o.hashMemoryMB, PasswordHashWait: time.Duration(o.hashWaitMS) * time.Millisecond,
		LoginThrottle:      throttle(o.loginFailures, o.backoffMaxSeconds),
		ClientAuthThrottle: throttle(o.clientAuthFailures, o.backoffMaxSeconds),
		JWKSURI:            engine.JWKSURIConfig{AllowPrivate: o.jwksURIAllowPrivate}}, store.Stores())
	if err != nil {
		return err
	}
	warnUnencryptedKeys(log, eng.UnencryptedKeys())
	return fn(&app{store: store, eng: eng, rt: rt, reg: reg})
}

// loadKEK reads the key-encryption key of --kek-file or KEYHOOK_KEK; nil
// when neither is set, which --require-kek refuses.
func loadKEK(o *options) ([]byte, error) {
	text, from := os.Getenv("KEYHOOK_KEK"), "KEYHOOK_KEK"
	if o.kekFile != "" {
		raw, err := os.ReadFile(o.kekFile)
		if err != nil {
			return nil, fmt.Errorf("--kek-file: %w", err)
		}
		text, from = string(raw), "--kek-file "+o.kekFile
	}
	if strings.TrimSpace(text) == "" {
		if o.requireKEK {
			return nil, errors.New("--require-kek: no key-encryption key; give one with --kek-file or KEYHOOK_KEK (make one with keyhook new-kek)")
		}
		return nil, nil
	}
	kek, err := engine.ParseKEK(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return kek, nil
}

// warnUnencryptedKeys says, at start, which keys the database holds in the
// clear: whoever reads the database can then sign tokens as this server.
func warnUnencryptedKeys(log *slog.Logger, k engine.KeyEncryption) {
	switch {
	case !k.KEK:
		log.Warn("UNENCRYPTED KEYS: signing keys and the client-secret sealing key are stored unencrypted in the database; " +
			"anyone who can read the database or a backup of it can sign tokens as this server. " +
			"Set a key-encryption key with --kek-file or KEYHOOK_KEK (keyhook new-kek makes one), and --require-kek to refuse to start without it (docs/keys.md)")
	case k.Unencrypted():
		log.Warn("UNENCRYPTED KEYS: some keys were stored before the key-encryption key was set and are still unencrypted in the database; "+
			"rotate the signing key (POST /admin/v1/keys/rotate) and the old one is deleted when its tokens have expired (docs/keys.md)",
			"signing_keys", strings.Join(k.PlainSigningKeys, " "), "sealing_key", k.PlainSealKey)
	}
}

func serve(ctx context.Context, o *options, stdout io.Writer, log *slog.Logger) error {
	tuneGC(o.memoryTargetMB, o.hashMemoryMB)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return withApp(ctx, o, log, reg, func(a *app) error {
		secret, err := a.eng.Bootstrap(ctx, o.bootstrapSecret)
		if err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		if secret != "" {
			fmt.Fprintf(stdout, "created the bootstrap admin client (shown once):\n  client_id=%s\n  client_secret=%s\n",
				engine.BootstrapAdminID, secret)
		}
		if o.seed != "" {
			st, err := importFile(ctx, a.eng, o.seed)
			if err != nil {
				return fmt.Errorf("--seed: %w", err)
			}
			log.Info("seed imported", "file", o.seed, "created", st.Created, "replaced", st.Replaced)
		}
		srv := web.New(web.Config{Engine: a.eng, Logger: log, Registry: reg, Ready: a.store.Ping, TrustedProxies: o.trustedProxies})
		ln, err := net.Listen("tcp", o.addr)
		if err != nil {
			return err
		}
		// Requests' contexts end some time after shutdown starts, which
		// stops the scripts still running for them (see below).
		baseCtx, endRequests := context.WithCancelCause(context.Background())
		defer endRequests(nil)
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			BaseContext: func(net.Listener) context.Context { return baseCtx }}
		a.rt.Start()
		// The refresh and purge loop ends before the store closes.
		runCtx, stopRun := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		go func() { a.eng.Run(runCtx); close(runDone) }()
		defer func() { stopRun(); <-runDone }()

		sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		errc := make(chan error, 2)
		if o.metricsAddr != "" {
			mln, err := net.Listen("tcp", o.metricsAddr)
			if err != nil {
				ln.Close()
				return fmt.Errorf("--metrics-addr: %w", err)
			}
			mux := http.NewServeMux()
			mux.Handle("GET /metrics", srv.MetricsHandler())
			ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
				WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
			defer ms.Close()
			go func() {
				if err := ms.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
					errc <- fmt.Errorf("--metrics-addr: %w", err)
				}
			}()
			log.Info("serving /metrics without authentication", "addr", mln.Addr().String())
		}
		go func() { errc <- hs.Serve(ln) }()
		fmt.Fprintf(stdout, "keyhook serving on http://%s (issuer %s)\n", ln.Addr(), a.eng.Issuer())
		select {
		case err := <-errc:
			return err
		case <-sigCtx.Done():
		}
		log.Info("shutting down: finishing in-flight requests")
		shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// In-flight requests get as long as any script may run to
		// finish; then the scripts still running are stopped (their
		// on_error applies) so that shutdown does not wait on them.
		stopScripts := time.AfterFunc(engine.MaxScriptTimeout, func() {
			endRequests(errors.New("the server is shutting down"))
		})
		defer stopScripts.Stop()
		if err := hs.Shutdown(shutCtx); err != nil {
			return err
		}
		log.Info("stopped")
		return nil
	})
}

// defaultMemoryTargetMB is --memory-target-mb's default.
const defaultMemoryTargetMB = 96

// tuneGC lets the heap grow to targetMB before the collector works hard:
// garbage is collected when the heap has grown 4 times its live size
// (GOGC=400) or nears the limit (GOMEMLIMIT), whichever comes first. With
// Go's defaults (GOGC=100) a server with a live heap of a few MiB collects
// every few MiB allocated, many times a second under load, and spends a
// quarter of its CPU doing it (docs/performance.md). The limit is the
// target plus hashMB, the memory password hashing may hold at once
// (--password-hash-memory-mb): without it, a burst of sign-ins would keep
// the heap at the limit and the collector running. GOGC and GOMEMLIMIT in
// the environment win.
func tuneGC(targetMB, hashMB int) {
	if targetMB <= 0 {
		return
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(targetMB+max(hashMB, 0)) << 20)
	}
}

// importFile reads a YAML seed; scripts' source_file paths are relative
// to the file.
func importFile(ctx context.Context, eng *engine.Engine, path string) (engine.ImportStats, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return engine.ImportStats{}, err
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return engine.ImportStats{}, fmt.Errorf("%s: %w", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return engine.ImportStats{}, fmt.Errorf("%s: %w", path, err)
	}
	var seed engine.Seed
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&seed); err != nil {
		return engine.ImportStats{}, fmt.Errorf("%s: %w", path, err)
	}
	for _, s := range seed.Scripts {
		if s.SourceFile != "" {
			p := s.SourceFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(path), p)
			}
			src, err := os.ReadFile(p)
			if err != nil {
				return engine.ImportStats{}, fmt.Errorf("script %s: %w", s.Name, err)
			}
			s.Source = string(src)
		}
	}
	return eng.Import(ctx, &seed)
}

func writeYAML(w io.Writer, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return err
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	defer enc.Close()
	return enc.Encode(doc)
}
