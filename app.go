package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
	"github.com/keyhook/keyhook/storage"
	"github.com/keyhook/keyhook/web"
)

// options configure the wired server. keyhook serve sets them all from
// its flags (docs/configuration.md); the other commands set the database
// and the key-encryption key and keep the defaults of the rest.
type options struct {
	addr, db, issuer, bootstrapSecret, seed string
	// issuerFromAddr: no --issuer was given, the issuer is http://ADDR.
	issuerFromAddr      bool
	logLevel, logFormat string
	// metricsAddr is where /metrics is served without a token; empty:
	// nowhere (the main listener serves it to admin tokens only).
	metricsAddr string
	// The script sandbox (docs/sandbox.md).
	scriptIsolation string
	scriptWorkers   int
	scriptMemoryMax int
	// scriptFetchAllowLoopback lets context.fetch reach this host
	// (docs/scripts.md).
	scriptFetchAllowLoopback bool
	// Keys at rest (docs/keys.md): the key-encryption key comes from
	// kekFile or, without one, from KEYHOOK_KEK; never from the command
	// line, where other users of the machine could read it.
	kekFile    string
	kekEnv     string
	requireKEK bool
	// Authentication limits (docs/auth-limits.md).
	hashMemoryMB, hashWaitMS          int
	loginFailures, clientAuthFailures int
	backoffMaxSeconds                 int
	trustedProxies                    []netip.Prefix
	// How long a login session lasts (docs/browser-flow.md).
	loginSessionSeconds int
	// Pushed authorization requests (docs/par.md).
	parLifetimeSeconds, parMaxPerClient int
	requirePAR                          bool
	dpopNonce                           bool
	// Open dynamic client registration (docs/registration.md).
	openRegistration         bool
	openRegistrationScope    string
	openRegistrationsPerAddr int
	// softwareStatementJWKS is the file of the keys whose software
	// statements registration accepts.
	softwareStatementJWKS string
	// deviceCodeSeconds, devicePollSeconds: the device flow's
	// (docs/device-flow.md).
	deviceCodeSeconds, devicePollSeconds int
	// deviceMaxPerClient bounds one client's unexpired device codes.
	deviceMaxPerClient int
	// jwks_uri fetches (docs/client-auth.md).
	jwksURIAllowPrivate bool
	// The Go heap's target (docs/performance.md); 0 leaves Go's defaults.
	memoryTargetMB int
	// Tracing (docs/operations.md): keyhook serve reads it from the
	// OTEL_* environment variables; without an endpoint, it is off.
	otel otelConfig
}

// defaultMemoryTargetMB is --memory-target-mb's default.
const defaultMemoryTargetMB = 96

// defaultOptions are the flags' defaults.
func defaultOptions() *options {
	return &options{
		addr: "127.0.0.1:8080", db: "sqlite:keyhook.db", logLevel: "info", logFormat: "text",
		scriptIsolation: string(hooks.IsolationProcess), scriptMemoryMax: 256,
		hashMemoryMB: engine.DefaultPasswordHashMemoryMB, hashWaitMS: int(engine.DefaultPasswordHashWait / time.Millisecond),
		loginFailures: engine.DefaultThrottleFree, clientAuthFailures: engine.DefaultThrottleFree,
		backoffMaxSeconds:   int(engine.DefaultThrottleMaxBackoff / time.Second),
		loginSessionSeconds: int(engine.DefaultSessionLifetime / time.Second),
		parLifetimeSeconds:  int(engine.DefaultPushedRequestLifetime / time.Second),
		parMaxPerClient:     engine.DefaultMaxPushedRequestsPerClient,
		deviceCodeSeconds:   int(engine.DefaultDeviceCodeLifetime / time.Second),
		devicePollSeconds:   int(engine.DefaultDevicePollInterval / time.Second),
		deviceMaxPerClient:  engine.DefaultMaxDeviceGrantsPerClient,
		memoryTargetMB:      defaultMemoryTargetMB,

		openRegistrationsPerAddr: engine.DefaultOpenRegistrationsPerAddress,
	}
}

// throttle is the engine's throttle for a --*-failures flag (0: off).
func throttle(free, maxSeconds int) engine.Throttle {
	if free == 0 {
		free = -1
	}
	return engine.Throttle{Free: free, MaxBackoff: time.Duration(maxSeconds) * time.Second}
}

// app is the wired server: storage, scripts, engine.
type app struct {
	store *storage.Store
	eng   *engine.Engine
	rt    *scripts.Runtime
	reg   *prometheus.Registry
	// tracing is nil when tracing is off.
	tracing *tracing
}

// withApp opens the database (creating and migrating it when needed),
// wires the engine with the key-encryption key kek, and runs fn.
func withApp(ctx context.Context, o *options, kek []byte, log *slog.Logger, reg *prometheus.Registry, fn func(*app) error) error {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	store, err := storage.Open(ctx, o.db, storage.WithLogger(log))
	if err != nil {
		return fmt.Errorf("opening %s: %w", redactDSN(o.db), err)
	}
	defer store.Close()
	rt := scripts.New(scripts.Options{Registerer: reg, Logger: log, DefaultIsolation: hooks.Isolation(o.scriptIsolation),
		Workers: o.scriptWorkers, MaxMemoryMB: o.scriptMemoryMax,
		Fetch: scripts.FetchOptions{AllowLoopback: o.scriptFetchAllowLoopback}})
	defer rt.Close()
	disp := hooks.NewDispatcher(rt, log)
	tr, err := startTracing(o.otel, log)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.stop(ctx) // serve stops it first; this covers the other ways out
	}()
	if tp := tr.provider(); tp != nil {
		disp.TraceCall = traceScripts(tp)
	}
	web.RegisterScriptMetrics(reg, disp)
	statementKeys, err := loadStatementKeys(o.softwareStatementJWKS)
	if err != nil {
		return err
	}
	eng, err := engine.New(ctx, engine.Config{Issuer: o.issuer, Logger: log, Hooks: disp, MaxScriptMemoryMB: o.scriptMemoryMax,
		KEK:                  kek,
		PasswordHashMemoryMB: o.hashMemoryMB, PasswordHashWait: time.Duration(o.hashWaitMS) * time.Millisecond,
		LoginThrottle:                      throttle(o.loginFailures, o.backoffMaxSeconds),
		ClientAuthThrottle:                 throttle(o.clientAuthFailures, o.backoffMaxSeconds),
		JWKSURI:                            engine.JWKSURIConfig{AllowPrivate: o.jwksURIAllowPrivate},
		SessionLifetime:                    time.Duration(o.loginSessionSeconds) * time.Second,
		PushedRequestLifetime:              time.Duration(o.parLifetimeSeconds) * time.Second,
		MaxPushedRequestsPerClient:         o.parMaxPerClient,
		RequirePushedAuthorizationRequests: o.requirePAR,
		DPoPNonce:                          o.dpopNonce,
		OpenRegistration:                   o.openRegistration,
		OpenRegistrationScope:              o.openRegistrationScope,
		OpenRegistrationsPerAddress:        o.openRegistrationsPerAddr,
		SoftwareStatementKeys:              statementKeys,
		DeviceCodeLifetime:                 time.Duration(o.deviceCodeSeconds) * time.Second,
		DevicePollInterval:                 time.Duration(o.devicePollSeconds) * time.Second,
		MaxDeviceGrantsPerClient:           o.deviceMaxPerClient}, store.Stores())
	if err != nil {
		return err
	}
	warnUnencryptedKeys(log, eng.UnencryptedKeys())
	return fn(&app{store: store, eng: eng, rt: rt, reg: reg, tracing: tr})
}

// redactDSN is dsn without a password, for messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// loadStatementKeys reads the JWK Set of --software-statement-jwks (nil
// without one; docs/registration.md).
func loadStatementKeys(path string) (*jose.JSONWebKeySet, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--software-statement-jwks: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) == 0 {
		return nil, fmt.Errorf("--software-statement-jwks: %s is not a JWK Set with at least one key", path)
	}
	return &set, nil
}

// loadKEK reads the key-encryption key of --kek-file or KEYHOOK_KEK
// (o.kekEnv); nil when neither is set, which --require-kek refuses.
func loadKEK(o *options) ([]byte, error) {
	text, from := o.kekEnv, "KEYHOOK_KEK"
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
		log.Warn("UNENCRYPTED KEYS: signing keys, the client-secret sealing key and script secrets are stored unencrypted in the database; " +
			"anyone who can read the database or a backup of it can sign tokens as this server and read the scripts' secrets. " +
			"Set a key-encryption key with --kek-file or KEYHOOK_KEK (keyhook new-kek makes one), and --require-kek to refuse to start without it (docs/keys.md)")
	case k.Unencrypted():
		log.Warn("UNENCRYPTED KEYS: some keys or script secrets were stored before the key-encryption key was set and are still unencrypted in the database; "+
			"rotate the signing key (POST /admin/v1/keys/rotate) and the old one is deleted when its tokens have expired; "+
			"write those scripts again (a PUT of what GET answers) to seal their secrets (docs/keys.md)",
			"signing_keys", strings.Join(k.PlainSigningKeys, " "), "sealing_key", k.PlainSealKey,
			"script_secrets", strings.Join(k.PlainScriptSecrets, " "))
	}
}

// dataFlags are the flags of the commands that work on a database
// offline (import, export, admin reset-secret): the database and the
// key-encryption key that opens its keys, with the environment variables
// keyhook serve reads.
func dataFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.db, "db", o.db, "database: sqlite:PATH or postgres://…")
	fs.StringVar(&o.kekFile, "kek-file", "", "file holding the base64 key-encryption key of the database (or set KEYHOOK_KEK)")
}

// finishDataOptions applies the environment and checks the DSN.
func finishDataOptions(o *options, fs *pflag.FlagSet, env lookupEnv) error {
	if err := applyEnv(fs, env); err != nil {
		return err
	}
	o.kekEnv, _ = env("KEYHOOK_KEK")
	if err := storage.CheckDSN(o.db); err != nil {
		return fmt.Errorf("--db: %w", err)
	}
	return nil
}

// withData runs fn on the database of a data command (import, export,
// admin reset-secret): the environment and the DSN's form first, then the
// key-encryption key, then the store, logging warnings only.
func withData(c *cobra.Command, o *options, env lookupEnv, stderr io.Writer, fn func(*app) error) error {
	if err := finishDataOptions(o, c.Flags(), env); err != nil {
		return err
	}
	kek, err := loadKEK(o)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return withApp(c.Context(), o, kek, log, nil, fn)
}
