package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/storage"
	"github.com/keyhook/keyhook/web"
)

func newServeCommand(env lookupEnv, stdout, stderr io.Writer) *cobra.Command {
	o := defaultOptions()
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the server",
		Long: "Run the server. Each flag falls back to the environment variable KEYHOOK_<FLAG>\n" +
			"(--script-workers: KEYHOOK_SCRIPT_WORKERS); a flag wins. The configuration, the\n" +
			"listeners and the seed file are checked before the database is opened: a start\n" +
			"that fails changes nothing.",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := finishServeOptions(o, c.Flags(), env); err != nil {
				return err
			}
			return serveUntilStopped(c.Context(), o, stdout, stderr)
		},
	}
	serveFlags(cmd.Flags(), o)
	return cmd
}

// serveFlags defines keyhook serve's flags on fs, bound to o.
func serveFlags(fs *pflag.FlagSet, o *options) {
	fs.SortFlags = false
	fs.StringVar(&o.addr, "addr", o.addr, "listen address HOST:PORT")
	fs.StringVar(&o.db, "db", o.db, "database: sqlite:PATH or postgres://…")
	fs.StringVar(&o.issuer, "issuer", "", "issuer URL (default http://ADDR)")
	fs.StringVar(&o.bootstrapSecret, "bootstrap-admin-secret", "", "secret of the keyhook-admin client created when absent (default: generated and printed once)")
	fs.StringVar(&o.seed, "seed", "", "YAML file to import at start into an empty database (same format as keyhook import)")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", o.logFormat, "text or json (one object per line)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "",
		"serve /metrics without a token on this HOST:PORT (keep it private); default: only to tokens with keyhook:admin or keyhook:metrics.read")
	fs.StringVar(&o.scriptIsolation, "script-isolation", o.scriptIsolation,
		"where scripts without their own isolation run: process (worker processes) or inline")
	fs.IntVar(&o.scriptWorkers, "script-workers", 0, "script worker processes (default 2 per CPU)")
	fs.IntVar(&o.scriptMemoryMax, "script-memory-max-mb", o.scriptMemoryMax, "largest memory budget a script may have, MiB")
	fs.BoolVar(&o.scriptFetchAllowLoopback, "script-fetch-allow-loopback", false,
		"let scripts' context.fetch reach loopback addresses, plain http included (never private or link-local ones)")
	fs.StringVar(&o.kekFile, "kek-file", "",
		"file holding the base64 key-encryption key that seals signing keys at rest (or set KEYHOOK_KEK)")
	fs.BoolVar(&o.requireKEK, "require-kek", false, "refuse to start without a key-encryption key")
	fs.IntVar(&o.hashMemoryMB, "password-hash-memory-mb", o.hashMemoryMB,
		"memory all password hashes computed at once may use, MiB (each takes 19)")
	fs.IntVar(&o.hashWaitMS, "password-hash-wait-ms", o.hashWaitMS, "how long a password check waits for hashing memory before 503, ms")
	fs.IntVar(&o.loginFailures, "login-failures", o.loginFailures,
		"failed sign-ins per username (4x per address) before back-off; 0 turns it off")
	fs.IntVar(&o.clientAuthFailures, "client-auth-failures", o.clientAuthFailures,
		"failed client authentications per client_id (4x per address) before back-off; 0 turns it off")
	fs.IntVar(&o.backoffMaxSeconds, "auth-backoff-max-seconds", o.backoffMaxSeconds,
		"longest back-off after failed authentications, seconds")
	fs.IntVar(&o.loginSessionSeconds, "login-session-seconds", o.loginSessionSeconds,
		"how long a login session spares the user the password, seconds (from the sign-in, never extended)")
	fs.IntVar(&o.parLifetimeSeconds, "par-lifetime-seconds", o.parLifetimeSeconds,
		"how long a request_uri of a pushed authorization request may be used, seconds")
	fs.IntVar(&o.parMaxPerClient, "par-max-per-client", o.parMaxPerClient,
		"unused, unexpired pushed authorization requests one client may hold")
	fs.BoolVar(&o.requirePAR, "require-pushed-authorization-requests", false,
		"take authorization requests only through the pushed authorization request endpoint, for every client")
	fs.BoolVar(&o.dpopNonce, "dpop-nonce", false,
		"make DPoP proofs carry a server nonce (RFC 9449 section 8), answered use_dpop_nonce with a DPoP-Nonce header")
	fs.BoolVar(&o.openRegistration, "open-registration", false,
		"let clients register at /oauth2/register without an initial access token (RFC 7591)")
	fs.StringVar(&o.openRegistrationScope, "open-registration-scope", "",
		"space-separated scopes an openly registered client may have (default none)")
	fs.IntVar(&o.openRegistrationsPerAddr, "open-registrations-per-address", o.openRegistrationsPerAddr,
		"open registrations one address may make before each further one waits longer")
	fs.StringVar(&o.softwareStatementJWKS, "software-statement-jwks", "",
		"JWK Set file of the public keys whose software statements registration accepts (default none: refused)")
	fs.IntVar(&o.deviceCodeSeconds, "device-code-seconds", o.deviceCodeSeconds,
		"how long a device code and its user code live (RFC 8628 expires_in), seconds")
	fs.IntVar(&o.devicePollSeconds, "device-poll-interval-seconds", o.devicePollSeconds,
		"least time a device waits between two polls of the token endpoint (RFC 8628 interval), seconds")
	fs.IntVar(&o.deviceMaxPerClient, "device-max-per-client", o.deviceMaxPerClient,
		"unexpired device codes one client may hold")
	fs.String("trusted-proxies", "",
		"comma-separated CIDRs of proxies whose X-Forwarded-For is believed (default none: the TCP peer is the address)")
	fs.BoolVar(&o.jwksURIAllowPrivate, "jwks-uri-allow-private", false,
		"let clients' jwks_uri reach private and link-local addresses")
	fs.IntVar(&o.memoryTargetMB, "memory-target-mb", o.memoryTargetMB,
		"heap size the server may reach before collecting garbage often, MiB (GOMEMLIMIT); 0 keeps Go's defaults")
}

// finishServeOptions applies the environment to the flags the command line
// did not set and checks every value.
func finishServeOptions(o *options, fs *pflag.FlagSet, env lookupEnv) error {
	if err := applyEnv(fs, env); err != nil {
		return err
	}
	o.kekEnv, _ = env("KEYHOOK_KEK")
	var err error
	if o.otel, err = otelFromEnv(env); err != nil {
		return err
	}
	proxies := fs.Lookup("trusted-proxies").Value.String()
	for _, s := range strings.Split(proxies, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--trusted-proxies: %q is not a CIDR", s)
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
		{"--login-session-seconds", o.loginSessionSeconds, 60, 30 * 86_400},
		{"--par-lifetime-seconds", o.parLifetimeSeconds, 5, 600},
		{"--par-max-per-client", o.parMaxPerClient, 1, 1_000_000},
		{"--device-code-seconds", o.deviceCodeSeconds, 60, 3600},
		{"--open-registrations-per-address", o.openRegistrationsPerAddr, 1, 1_000_000},
		{"--device-poll-interval-seconds", o.devicePollSeconds, 1, 60},
		{"--device-max-per-client", o.deviceMaxPerClient, 1, 1_000_000},
		{"--script-memory-max-mb", o.scriptMemoryMax, 1, 16 << 10},
		{"--script-workers", o.scriptWorkers, 0, 256},
	} {
		if c.v < c.a || c.v > c.b {
			return fmt.Errorf("%s: %d is not between %d and %d", c.name, c.v, c.a, c.b)
		}
	}
	if o.issuer == "" {
		o.issuer, o.issuerFromAddr = "http://"+o.addr, true
	}
	switch hooks.Isolation(o.scriptIsolation) {
	case hooks.IsolationProcess, hooks.IsolationInline:
	default:
		return fmt.Errorf("--script-isolation: %q is neither process nor inline", o.scriptIsolation)
	}
	if _, err := newLogger(io.Discard, o.logLevel, o.logFormat); err != nil {
		return err
	}
	if err := storage.CheckDSN(o.db); err != nil {
		return fmt.Errorf("--db: %w", err)
	}
	return nil
}

// serveUntilStopped runs the server until ctx ends or SIGTERM/SIGINT. Everything that
// can be checked without the database is checked first — the KEK, the seed
// file, the listeners — so that a start that fails leaves the database as
// it was (or absent): no schema, no key, no bootstrap secret, no import.
func serveUntilStopped(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	kek, err := loadKEK(o)
	if err != nil {
		return err
	}
	var seed *seedFile
	if o.seed != "" {
		if seed, err = readSeed(o.seed); err != nil {
			return fmt.Errorf("--seed: %w", err)
		}
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	defer ln.Close()
	if o.issuerFromAddr {
		o.issuer = "http://" + ln.Addr().String() // the port bound for :0
	}
	var mln net.Listener
	if o.metricsAddr != "" {
		if mln, err = net.Listen("tcp", o.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		defer mln.Close()
	}

	tuneGC(o.memoryTargetMB, o.hashMemoryMB)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return withApp(ctx, o, kek, log, reg, func(a *app) error {
		// The bootstrap admin and the seed commit together: a seed the
		// engine refuses leaves no admin client whose secret was never
		// shown, and the secret is printed once it is stored.
		var secret string
		err := a.store.Atomically(ctx, func(ctx context.Context) error {
			var err error
			if secret, err = a.eng.Bootstrap(ctx, o.bootstrapSecret); err != nil {
				return fmt.Errorf("bootstrap admin: %w", err)
			}
			if seed == nil {
				return nil
			}
			st, imported, err := a.eng.ImportIntoEmpty(ctx, seed.seed)
			switch {
			case err != nil:
				return fmt.Errorf("--seed: %w", seed.explain(err))
			case imported:
				log.Info("seed imported", "file", o.seed, "created", st.Created, "replaced", st.Replaced)
			default:
				log.Info("seed not imported: the database is not empty (it was seeded or configured before)", "file", o.seed)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if secret != "" {
			fmt.Fprintf(stdout, "created the bootstrap admin client (shown once):\n  client_id=%s\n  client_secret=%s\n",
				engine.BootstrapAdminID, secret)
		}
		srv := web.New(web.Config{Engine: a.eng, Logger: log, Registry: reg, Ready: a.store.Ping, TrustedProxies: o.trustedProxies,
			TracerProvider: a.tracing.provider()})
		// Requests' contexts end some time after shutdown starts, which
		// stops the scripts still running for them (see below).
		baseCtx, endRequests := context.WithCancelCause(context.Background())
		defer endRequests(nil)
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			BaseContext: func(net.Listener) context.Context { return baseCtx }}
		// Followed script logs end when shutdown starts, not at its timeout.
		hs.RegisterOnShutdown(srv.CloseStreams)
		a.rt.Start()
		// The refresh and purge loop ends before the store closes.
		runCtx, stopRun := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		go func() { a.eng.Run(runCtx); close(runDone) }()
		defer func() { stopRun(); <-runDone }()

		sigCtx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		errc := make(chan error, 2)
		if mln != nil {
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
		// The spans of the last requests are still buffered.
		if err := a.tracing.stop(shutCtx); err != nil {
			log.Warn("tracing: spans not flushed", "err", err)
		}
		log.Info("stopped")
		return nil
	})
}

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
