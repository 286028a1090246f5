// Package engine is keyhook's domain: client authentication, the grants of
// the token endpoint, token issuance (opaque and RFC 9068 JWT),
// introspection (RFC 7662), revocation (RFC 7009) and the admin operations.
// It knows neither HTTP, SQL nor JavaScript: package web calls it, package
// storage implements its Stores and package hooks runs its scripts.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/keyhook/keyhook/hooks"
)

// Config is what the engine needs besides its stores.
type Config struct {
	// Issuer is the server's base URL without trailing slash (RFC 8414 §2).
	Issuer string
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Hooks runs scripts; nil runs none.
	Hooks *hooks.Dispatcher
	// JWKSURI guards and caches the fetch of clients' jwks_uri
	// (docs/client-auth.md).
	JWKSURI JWKSURIConfig
	// RefreshInterval is how often shared state (properties, keys,
	// scripts) is reloaded from the store; default 2s (changes must reach every instance within 5s).
	RefreshInterval time.Duration
	// ScriptBudget bounds the time all the scripts of one request run
	// together (each also has its own timeout); default MaxScriptTimeout.
	ScriptBudget time.Duration
	// MaxScriptMemoryMB is the largest memory budget a script may ask for
	// (the script runtime's limit); default 256.
	MaxScriptMemoryMB int
	// KEK is the key-encryption key (KEKSize bytes) that seals signing
	// keys and the client-secret sealing key at rest (engine/kek.go);
	// nil stores them in the clear.
	KEK []byte
	// PasswordHashMemoryMB bounds the memory of the argon2id hashes
	// computed at once (sign-ins, password grants, setting passwords);
	// default 128, never less than one hash (docs/auth-limits.md).
	PasswordHashMemoryMB int
	// PasswordHashWait is how long a password check waits for room in
	// that budget before it is refused as temporarily_unavailable;
	// default 2s.
	PasswordHashWait time.Duration
	// LoginThrottle limits failed sign-ins (login form and password
	// grant) per username and per address.
	LoginThrottle Throttle
	// ClientAuthThrottle limits failed client authentications per
	// client_id and per address.
	ClientAuthThrottle Throttle
	// SessionLifetime is how long a login session lasts from the
	// sign-in (docs/browser-flow.md); default DefaultSessionLifetime.
	SessionLifetime time.Duration
	// PushedRequestLifetime is how long a request_uri from the pushed
	// authorization request endpoint may be used (RFC 9126 §2.2,
	// docs/par.md); default DefaultPushedRequestLifetime.
	PushedRequestLifetime time.Duration
	// RequirePushedAuthorizationRequests makes every client use pushed
	// authorization requests (RFC 9126 §5, §6).
	RequirePushedAuthorizationRequests bool
	// MaxPushedRequestsPerClient bounds the unexpired pushed requests of
	// one client; default DefaultMaxPushedRequestsPerClient.
	MaxPushedRequestsPerClient int
	// DeviceCodeLifetime is how long a device code and its user code
	// live (RFC 8628 §3.2 expires_in); default DefaultDeviceCodeLifetime.
	DeviceCodeLifetime time.Duration
	// DevicePollInterval is the least time between two polls of a
	// device code (RFC 8628 §3.2 interval), in whole seconds; default
	// DefaultDevicePollInterval.
	DevicePollInterval time.Duration
	// MaxDeviceGrantsPerClient bounds the unexpired device codes of one
	// client; default DefaultMaxDeviceGrantsPerClient.
	MaxDeviceGrantsPerClient int
	// ForeignTokens verifies JWTs of other issuers presented for token
	// exchange (exchange.go); nil refuses them all.
	ForeignTokens ForeignTokenVerifier
	// DPoPNonce makes DPoP proofs carry a server nonce (RFC 9449 §8,
	// docs/dpop.md).
	DPoPNonce bool
	// OpenRegistration lets clients register without an initial access
	// token (RFC 7591 §3, docs/registration.md); off by default.
	OpenRegistration bool
	// OpenRegistrationScope is the space-separated scopes an openly
	// registered client may have; empty: none.
	OpenRegistrationScope string
	// OpenRegistrationsPerAddress is how many open registrations one
	// address may make before each further one waits, doubling up to
	// LoginThrottle's MaxBackoff; default
	// DefaultOpenRegistrationsPerAddress.
	OpenRegistrationsPerAddress int
	// SoftwareStatementKeys are the public keys whose software
	// statements (RFC 7591 §2.3) registration accepts, by kid; none
	// refuses every statement.
	SoftwareStatementKeys *jose.JSONWebKeySet
}

// Engine implements keyhook's endpoints without their transport. It is
// safe for concurrent use.
type Engine struct {
	cfg   Config
	st    Stores
	log   *slog.Logger
	now   func() time.Time
	props atomic.Pointer[Properties]
	keys  keyRing
	seal  *sealer
	// nonceKey makes the DPoP server nonces (dpop.go).
	nonceKey []byte
	// userCodeKey keys the stored hashes of device user codes
	// (device.go).
	userCodeKey []byte
	// kek seals keys at rest; nil without Config.KEK. sealKeyPlain is
	// whether the sealing key was found stored in the clear.
	kek          *sealer
	sealKeyPlain bool
	hooks        *hooks.Dispatcher
	jwks         *jwksFetcher
	// clients caches hot-path client reads for RefreshInterval.
	clients *clientCache
	// verified remembers JWT access tokens whose signature was checked
	// (keys.go, verifiedJTI).
	verified *lru.Cache[[32]byte, verifiedJWT]
	// plainSecrets names the scripts whose secrets are stored in the
	// clear although there is a KEK (engine/scriptsecrets.go).
	plainSecretsMu sync.Mutex
	plainSecrets   map[string]bool
	// scriptsVersion is the store's script version last loaded.
	scriptsVersion atomic.Value
	// propsGuard, keysGuard and scriptsGuard keep a refresh from undoing
	// a local change (reload.go).
	propsGuard, keysGuard, scriptsGuard reloadGuard
	// meta is the discovery document (metadata.go).
	meta metadataCache
	// Authentication limits (authlimits.go).
	hashes      *hashBudget
	logins      *guard
	clientAuths *guard
	authCounts  authCounters
	// userCodes and userCodesAll bound the guessing of user codes per
	// browser and address, and over the instance (device.go).
	userCodes    *guard
	userCodesAll *throttle
	// openRegistrations limits open registrations per address
	// (register.go).
	openRegistrations *admissionLimit
}

// Paths of the endpoints, relative to the issuer (RFC 8414 §2).
const (
	PathToken         = "/oauth2/token"
	PathIntrospect    = "/oauth2/introspect"
	PathRevoke        = "/oauth2/revoke"
	PathAuthorize     = "/oauth2/authorize"
	PathUserinfo      = "/oauth2/userinfo"
	PathPAR           = "/oauth2/par"
	PathJWKS          = "/oauth2/jwks"
	AdminScope        = "keyhook:admin"
	sealKeySecretName = "client-secret-seal-key"
)

// New loads the engine's shared state from st, creating a signing key and
// the sealing key on first start.
func New(ctx context.Context, cfg Config, st Stores) (*Engine, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxScriptMemoryMB <= 0 {
		cfg.MaxScriptMemoryMB = 256
	}
	if cfg.ScriptBudget <= 0 {
		cfg.ScriptBudget = MaxScriptTimeout
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 2 * time.Second
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	e := &Engine{cfg: cfg, st: st, log: cfg.Logger, now: cfg.Now, hooks: cfg.Hooks}
	e.jwks = newJWKSFetcher(cfg.JWKSURI, cfg.Now)
	e.hashes = newHashBudget(cfg.PasswordHashMemoryMB, cfg.PasswordHashWait)
	e.logins = newGuard(cfg.LoginThrottle, cfg.Now)
	e.clientAuths = newGuard(cfg.ClientAuthThrottle, cfg.Now)
	// The browser key of a user-code guess is the guesser's to choose,
	// so the address and the instance are the bounds that hold: serial,
	// so that a back-off does not end in a burst of concurrent guesses
	// (device.go).
	e.userCodes = newGuard(cfg.LoginThrottle, cfg.Now)
	if e.userCodes.addr != nil {
		e.userCodes.addr.serial = true
	}
	if t := cfg.LoginThrottle.withDefaults(); t.Free > 0 {
		e.userCodesAll = newThrottle(t.Free*userCodeOverallFactor, true, t.MaxBackoff, 1, cfg.Now)
		e.userCodesAll.window = true
	}
	if ks := cfg.SoftwareStatementKeys; ks != nil {
		for _, k := range ks.Keys {
			if k.KeyID == "" || !k.Valid() || !k.IsPublic() {
				return nil, fmt.Errorf("a software statement key must be a valid public JWK with a kid (%q)", k.KeyID)
			}
		}
	}
	if r := reservedScopes(cfg.OpenRegistrationScope); len(r) > 0 {
		return nil, fmt.Errorf("the open registration scope cannot hold %s", strings.Join(r, " "))
	}
	if cfg.OpenRegistration {
		n := cfg.OpenRegistrationsPerAddress
		if n <= 0 {
			n = DefaultOpenRegistrationsPerAddress
		}
		t := cfg.LoginThrottle.withDefaults()
		e.openRegistrations = newAdmissionLimit(n, t.MaxBackoff, t.Keys, cfg.Now)
	}
	e.clients = newClientCache(cfg.RefreshInterval)
	e.verified, _ = lru.New[[32]byte, verifiedJWT](verifiedJWTs)
	e.props.Store(DefaultProperties())
	if err := e.reloadProperties(ctx); err != nil {
		return nil, fmt.Errorf("loading properties: %w", err)
	}
	if cfg.KEK != nil {
		if len(cfg.KEK) != KEKSize {
			return nil, fmt.Errorf("a key-encryption key must be %d bytes, not %d", KEKSize, len(cfg.KEK))
		}
		var err error
		if e.kek, err = newSealer(cfg.KEK); err != nil {
			return nil, err
		}
	}
	if st.Scripts != nil {
		e.st.Scripts = &sealedScripts{ScriptStore: st.Scripts, e: e}
	}
	if err := e.loadSealKey(ctx); err != nil {
		return nil, err
	}
	if err := e.loadKeys(ctx, true); err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	e.resealSigningKeys(ctx)
	if err := e.reloadScripts(ctx, false); err != nil {
		return nil, fmt.Errorf("loading scripts: %w", err)
	}
	e.resealScriptSecrets(ctx)
	return e, nil
}

// Issuer is the server's issuer identifier.
func (e *Engine) Issuer() string { return e.cfg.Issuer }

// Properties is the current snapshot of the server properties; never nil.
func (e *Engine) Properties() *Properties { return e.props.Load() }

// Hooks is the script dispatcher (nil when scripts are off).
func (e *Engine) Hooks() *hooks.Dispatcher { return e.hooks }

func (e *Engine) reloadProperties(ctx context.Context) error {
	return e.propsGuard.reload(ctx, func(ctx context.Context) (func() error, error) {
		stored, err := e.st.Properties.Properties(ctx)
		if err != nil {
			return nil, err
		}
		return func() error { e.props.Store(decodeProperties(stored)); return nil }, nil
	})
}

// reloadScripts reads the scripts when their version in the store
// changed since they were last read, or always when forced.
func (e *Engine) reloadScripts(ctx context.Context, force bool) error {
	if e.hooks == nil || e.st.Scripts == nil {
		return nil
	}
	return e.scriptsGuard.reload(ctx, func(ctx context.Context) (func() error, error) {
		version, err := e.st.Scripts.ScriptsVersion(ctx)
		if err != nil {
			return nil, err
		}
		if old, _ := e.scriptsVersion.Load().(string); old == version && version != "" && !force {
			return nil, nil
		}
		all, err := e.st.Scripts.Scripts(ctx)
		if err != nil {
			return nil, err
		}
		return func() error {
			e.hooks.Replace(all)
			e.scriptsVersion.Store(version)
			return nil
		}, nil
	})
}

// scriptsChanged applies a local change to the scripts the dispatcher
// runs (reload.go).
func (e *Engine) scriptsChanged(update func()) {
	if e.hooks != nil {
		e.scriptsGuard.wrote(update)
	}
}

// Refresh reloads what other instances may have changed: properties,
// signing keys, scripts and the discovery document.
func (e *Engine) Refresh(ctx context.Context) error {
	// Clients may have changed on another instance: the discovery
	// document is rebuilt when next asked for.
	e.invalidateMetadata()
	return errors.Join(e.reloadProperties(ctx), e.reloadKeys(ctx), e.reloadScripts(ctx, false))
}

// Run refreshes shared state every RefreshInterval and purges expired
// records every minute, until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	refresh := time.NewTicker(e.cfg.RefreshInterval)
	defer refresh.Stop()
	purge := time.NewTicker(time.Minute)
	defer purge.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("refreshing shared state failed", "err", err)
			}
		case <-purge.C:
			e.Purge(ctx)
		}
	}
}

// Purge deletes expired tokens, codes, login sessions, pushed
// authorization requests, device codes, initial access tokens and
// assertion ids, and retired
// keys that no unexpired token needs any more.
func (e *Engine) Purge(ctx context.Context) {
	now := e.now()
	n1, err1 := e.st.Tokens.PurgeTokens(ctx, now)
	n2, err2 := e.st.JTIs.PurgeJTIs(ctx, now)
	var n3, n4, n5, n6, n7 int64
	var err3, err4, err5, err6, err7 error
	if e.st.Codes != nil {
		n3, err3 = e.st.Codes.PurgeCodes(ctx, now)
	}
	if e.st.Sessions != nil {
		n4, err4 = e.st.Sessions.PurgeSessions(ctx, now)
	}
	if e.st.Pushed != nil {
		n5, err5 = e.st.Pushed.PurgePushedRequests(ctx, now)
	}
	if e.st.Devices != nil {
		n6, err6 = e.st.Devices.PurgeDeviceGrants(ctx, now)
	}
	if e.st.Registration != nil {
		n7, err7 = e.st.Registration.PurgeRegistrationTokens(ctx, now)
	}
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		e.log.Warn("purge failed", "err", err)
	}
	if n1+n2+n3+n4+n5+n6+n7 > 0 {
		e.log.Info("purged expired records", "tokens", n1, "jtis", n2, "codes", n3, "sessions", n4, "pushed_requests", n5, "device_codes", n6, "registration_tokens", n7)
	}
	// A retired key leaves the JWKS once no token it signed is unexpired
	// and it has been retired for longer than the longest JWT answer lives.
	e.keys.mu.RLock()
	var retired []*SigningKey
	for _, k := range e.keys.byID {
		if !k.rec.RetiredAt.IsZero() && now.Sub(k.rec.RetiredAt) > time.Hour {
			retired = append(retired, k.rec)
		}
	}
	e.keys.mu.RUnlock()
	for _, rec := range retired {
		latest, err := e.st.Tokens.LatestExpiry(ctx, rec.ID)
		if err != nil || latest.After(now) {
			continue
		}
		if err := e.st.Keys.DeleteSigningKey(ctx, rec.ID); err == nil {
			e.log.Info("retired signing key removed", "kid", rec.ID)
		}
	}
}

// positiveOr is v when it is set (above zero), else its default d: the
// configured lifetimes and bounds of Config.
func positiveOr[T int | int64 | time.Duration](v, d T) T {
	if v > 0 {
		return v
	}
	return d
}
