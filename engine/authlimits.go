package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/semaphore"

	"github.com/keyhook/keyhook/hooks"
)

// This file holds the limits on authentication attempts (docs/auth-limits.md):
// the memory budget of concurrent password hashing, the back-off after
// failed sign-ins and failed client authentications, and the auth_failure
// events and counters. All of it is per instance.

// Throttle configures the back-off after failed authentications, per
// identity (username or client_id) and per source address.
type Throttle struct {
	// Free is how many failures an identity may have before each further
	// failure locks it out for a while; an address may have 4 × Free.
	// 0 means 5; a negative value turns the throttle off.
	Free int
	// MaxBackoff caps the lock-out, which starts at 1 s and doubles with
	// each failure past Free; 0 means 5 minutes.
	MaxBackoff time.Duration
	// Keys bounds how many identities and how many addresses are
	// remembered (least recently seen are forgotten first); 0 means 100,000.
	Keys int
}

// Defaults of the authentication limits.
const (
	DefaultThrottleFree         = 5
	DefaultThrottleMaxBackoff   = 5 * time.Minute
	DefaultThrottleKeys         = 100_000
	DefaultPasswordHashMemoryMB = 128
	DefaultPasswordHashWait     = 2 * time.Second
	// addressFreeFactor: one address may carry many users (NAT, proxies).
	addressFreeFactor = 4
	// throttleForget: failures older than this (or than twice the
	// longest back-off) are forgiven.
	throttleForget = 15 * time.Minute
	// throttleBusyRetry is the Retry-After of an attempt refused because
	// another attempt of the same identity past its free failures is
	// still being checked.
	throttleBusyRetry = time.Second
)

func (t Throttle) withDefaults() Throttle {
	if t.Free == 0 {
		t.Free = DefaultThrottleFree
	}
	if t.MaxBackoff <= 0 {
		t.MaxBackoff = DefaultThrottleMaxBackoff
	}
	if t.Keys <= 0 {
		t.Keys = DefaultThrottleKeys
	}
	return t
}

type clientAddressKey struct{}

// WithClientAddress returns ctx carrying the network address a request
// came from, which the failure throttles count per. The transport decides
// what it is (the TCP peer unless proxies are trusted); it must not be
// something the client chooses freely.
func WithClientAddress(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddressKey{}, addr)
}

func clientAddress(ctx context.Context) string {
	s, _ := ctx.Value(clientAddressKey{}).(string)
	return s
}

// addressKey is the throttle key of an address: an IPv4 address, or the
// /64 of an IPv6 one, since a single host commonly holds a whole /64
// (RFC 4291 §2.5.1, RFC 8981).
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// throttle counts failures per key and locks a key out with exponential
// back-off once it has more than free of them. Memory is bounded by an
// LRU of fixed-size keys. It is safe for concurrent use.
type throttle struct {
	free int
	// serial: once a key has failed, attempts past its free failures
	// are admitted one at a time (identities; not addresses, which carry
	// many honest callers at once).
	serial bool
	// window: failures count within one forget period from the first
	// of them, however close together, rather than until the key has
	// been quiet that long (the instance-wide limit on user codes,
	// whose honest typos never stop on a busy instance).
	window bool
	max    time.Duration
	now    func() time.Time
	mu     sync.Mutex
	keys   *simplelru.LRU[[32]byte, *failures]
}

type failures struct {
	key     [32]byte
	count   int       // failures not yet forgiven
	last    time.Time // the latest failure
	since   time.Time // the first failure counted (window throttles)
	until   time.Time // locked out until
	pending int       // attempts admitted and not yet ended
}

func newThrottle(free int, serial bool, max time.Duration, size int, now func() time.Time) *throttle {
	if free < 0 {
		return nil
	}
	keys, _ := simplelru.NewLRU[[32]byte, *failures](size, nil)
	return &throttle{free: free, serial: serial, max: max, now: now, keys: keys}
}

// admit reserves an attempt for key, or says how long to wait. A key that
// has failed is, for a serial throttle, checked one attempt at a time
// once its failures and attempts in flight reach its free ones, so
// concurrent guesses cannot outrun the count. A key without failures is
// never held back: concurrent honest attempts (a resource server
// introspecting in parallel, one user on several devices) are not
// failures, and the first burst of guesses is counted when it ends.
func (t *throttle) admit(key string) (*failures, time.Duration) {
	if t == nil || key == "" {
		return nil, 0
	}
	k := sha256.Sum256([]byte(key))
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.keys.Get(k)
	if !ok {
		// A key without failures is not remembered: honest attempts,
		// most of them, add nothing to the LRU (end adds a failure's).
		return &failures{key: k, pending: 1}, 0
	}
	forget := max(throttleForget, 2*t.max)
	if f.pending == 0 && !now.Before(f.until) && now.Sub(f.last) > forget ||
		t.window && !now.Before(f.until) && now.Sub(f.since) > forget {
		f.count, f.until = 0, time.Time{}
	}
	if now.Before(f.until) {
		return nil, f.until.Sub(now)
	}
	if t.serial && f.count > 0 && f.count+f.pending >= t.free && f.pending > 0 {
		return nil, throttleBusyRetry
	}
	f.pending++
	return f, 0
}

// end finishes an admitted attempt: failed counts it, forgive clears the
// key (a successful sign-in of that identity), neither just releases it.
func (t *throttle) end(f *failures, failed, forgive bool) {
	if f == nil {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	f.pending--
	switch cur, ok := t.keys.Peek(f.key); {
	case ok && cur != f:
		// Admitted without a record (or before it was evicted), while
		// another attempt's failure made one: that record is the key's.
		f = cur
	case !ok && !failed:
		return // nothing to remember
	case !ok:
		t.keys.Add(f.key, f)
	}
	switch {
	case forgive:
		f.count, f.until = 0, time.Time{}
	case failed:
		if t.window && now.Sub(f.since) > max(throttleForget, 2*t.max) {
			f.count = 0
		}
		if f.count == 0 {
			f.since = now
		}
		f.count++
		f.last = now
		if over := f.count - t.free; over > 0 {
			f.until = now.Add(backoff(over, t.max))
		}
	}
	if f.count == 0 && f.pending == 0 {
		if cur, ok := t.keys.Peek(f.key); ok && cur == f {
			t.keys.Remove(f.key) // nothing to remember
		}
	}
}

// backoff is 1 s doubled for each failure past the first over the free
// ones, at most max.
func backoff(over int, max time.Duration) time.Duration {
	if over > 30 {
		return max
	}
	return min(time.Second<<(over-1), max)
}

// guard throttles one kind of authentication per identity and per address.
type guard struct {
	id, addr *throttle
}

func newGuard(cfg Throttle, now func() time.Time) *guard {
	cfg = cfg.withDefaults()
	if cfg.Free < 0 {
		return &guard{}
	}
	return &guard{
		id:   newThrottle(cfg.Free, true, cfg.MaxBackoff, cfg.Keys, now),
		addr: newThrottle(cfg.Free*addressFreeFactor, false, cfg.MaxBackoff, cfg.Keys, now),
	}
}

// attempt is one admitted authentication attempt.
type attempt struct {
	g        *guard
	id, addr *failures
}

// admit reserves an attempt of identity id from address addr (either may
// be empty), or returns how long the caller must wait.
func (g *guard) admit(id, addr string) (*attempt, time.Duration) {
	fi, wait := g.id.admit(id)
	if wait > 0 {
		return nil, wait
	}
	fa, wait := g.addr.admit(addressKey(addr))
	if wait > 0 {
		g.id.end(fi, false, false)
		return nil, wait
	}
	return &attempt{g: g, id: fi, addr: fa}, 0
}

// failed counts the attempt as a failure of both its identity and address.
func (a *attempt) failed() {
	a.g.id.end(a.id, true, false)
	a.g.addr.end(a.addr, true, false)
}

// succeeded forgives the identity's failures; the address keeps its own,
// or one valid account would let an address guess the others freely.
func (a *attempt) succeeded() {
	a.g.id.end(a.id, false, true)
	a.g.addr.end(a.addr, false, false)
}

// abandon ends an attempt that proved nothing (a store failure).
func (a *attempt) abandon() {
	a.g.id.end(a.id, false, false)
	a.g.addr.end(a.addr, false, false)
}

// tooManyAttempts is the answer to a throttled attempt: HTTP 429 with
// Retry-After (RFC 6585 §4), whether or not the identity exists.
func tooManyAttempts(wait time.Duration) *Error {
	secs := int64(math.Ceil(wait.Seconds()))
	return &Error{Code: CodeSlowDown, RetryAfter: time.Duration(secs) * time.Second,
		Description: fmt.Sprintf("too many failed attempts; retry after %d seconds", secs)}
}

// hashBudget bounds the memory of the argon2id computations running at
// once; a computation that finds no room within wait is refused.
type hashBudget struct {
	sem  *semaphore.Weighted
	size int64 // KiB
	wait time.Duration
}

func newHashBudget(mb int, wait time.Duration) *hashBudget {
	if mb <= 0 {
		mb = DefaultPasswordHashMemoryMB
	}
	if wait <= 0 {
		wait = DefaultPasswordHashWait
	}
	size := max(int64(mb)*1024, argonMemory) // room for one hash at least
	return &hashBudget{sem: semaphore.NewWeighted(size), size: size, wait: wait}
}

// errHashBusy: the password-hashing budget had no room in time.
var errHashBusy = errors.New("password hashing budget exhausted")

// acquire reserves kib of the budget (a hash needing more than all of it
// takes all of it) and returns the func that gives it back.
func (b *hashBudget) acquire(ctx context.Context, kib int64) (func(), error) {
	kib = min(max(kib, 1), b.size)
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, kib); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &Error{Code: CodeTemporarilyUnavailable, RetryAfter: time.Second, Err: errHashBusy,
			Description: "the server is busy checking passwords; retry shortly"}
	}
	return func() { b.sem.Release(kib) }, nil
}

// hashPassword is HashPassword within the budget.
func (e *Engine) hashPassword(ctx context.Context, password string) (string, error) {
	release, err := e.hashes.acquire(ctx, argonMemory)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(password), nil
}

// verifyPassword is VerifyPassword within the budget.
func (e *Engine) verifyPassword(ctx context.Context, hash, password string) (bool, error) {
	release, err := e.hashes.acquire(ctx, int64(passwordMemoryKiB(hash)))
	if err != nil {
		return false, err
	}
	defer release()
	return VerifyPassword(hash, password), nil
}

// Authentication kinds, methods and failure reasons: the fixed label
// values of keyhook_auth_failures_total and the fields of auth_failure
// log events (docs/auth-limits.md).
const (
	authKindClient = "client"
	authKindUser   = "user"

	methodBasic     = "client_secret_basic"
	methodPost      = "client_secret_post"
	methodAssertion = "client_assertion"
	methodNone      = "none"
	methodMissing   = "missing"
	methodPassword  = "password_grant"
	methodLoginForm = "login_form"

	reasonUnknownClient = "unknown_client"
	reasonBadCredential = "invalid_credentials"
	reasonMissing       = "missing_credentials"
	reasonThrottled     = "throttled"
	reasonBusy          = "busy"
)

// AuthFailureCount is the number of failed authentications of one kind,
// method and reason since the engine started.
type AuthFailureCount struct {
	Kind, Method, Reason string
	Count                uint64
}

type authFailureKey struct{ kind, method, reason string }

type authCounters struct {
	mu sync.Mutex
	m  map[authFailureKey]uint64
}

// AuthFailures returns the failed-authentication counters, sorted.
func (e *Engine) AuthFailures() []AuthFailureCount {
	e.authCounts.mu.Lock()
	out := make([]AuthFailureCount, 0, len(e.authCounts.m))
	for k, n := range e.authCounts.m {
		out = append(out, AuthFailureCount{Kind: k.kind, Method: k.method, Reason: k.reason, Count: n})
	}
	e.authCounts.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		return a.Reason < b.Reason
	})
	return out
}

// authFailed counts a failed authentication and logs it as an
// auth_failure event. attrs name who tried (client_id; never a secret,
// an assertion or a password, nor a username, which users sometimes type
// their password into).
func (e *Engine) authFailed(ctx context.Context, kind, method, reason, detail string, attrs ...slog.Attr) {
	k := authFailureKey{kind, method, reason}
	e.authCounts.mu.Lock()
	if e.authCounts.m == nil {
		e.authCounts.m = map[authFailureKey]uint64{}
	}
	e.authCounts.m[k]++
	e.authCounts.mu.Unlock()
	all := append([]slog.Attr{
		slog.String("kind", kind), slog.String("method", method), slog.String("reason", reason),
		slog.String("remote_addr", clientAddress(ctx)),
	}, attrs...)
	if detail != "" {
		all = append(all, slog.String("detail", detail))
	}
	hooks.Logger(ctx, e.log).LogAttrs(ctx, slog.LevelWarn, "auth_failure", all...)
}

// logValue shortens a client-chosen value for a log line.
func logValue(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

// AuthenticateClient authenticates the client of a request with the one
// method registered for it (RFC 6749 §2.3, RFC 7523 §2.2). Failures are
// throttled per client_id
// and per address, counted, and logged as auth_failure events
// (docs/auth-limits.md); a throttled attempt is refused unchecked.
func (e *Engine) AuthenticateClient(ctx context.Context, cred *ClientCredentials) (*Client, error) {
	id, method := cred.presented()
	who := slog.String("client_id", logValue(id))
	a, wait := e.clientAuths.admit(id, clientAddress(ctx))
	if wait > 0 {
		e.authFailed(ctx, authKindClient, method, reasonThrottled, "", who)
		return nil, tooManyAttempts(wait)
	}
	c, err := e.authenticateClient(ctx, cred)
	var oe *Error
	switch {
	case err == nil:
		a.succeeded()
		return c, nil
	case !errors.As(err, &oe) || oe.Code != CodeInvalidClient:
		a.abandon() // a malformed request or a store failure proves nothing
		return nil, err
	}
	a.failed()
	reason := reasonBadCredential
	switch {
	case errors.Is(err, errUnknownClient):
		reason = reasonUnknownClient
	case method == methodMissing:
		reason = reasonMissing
	}
	e.authFailed(ctx, authKindClient, method, reason, oe.Description, who)
	return nil, err
}

// presented is the client_id a request claims and the method it uses,
// before anything is verified. An assertion's client is its iss when no
// client_id came with it.
func (c *ClientCredentials) presented() (id, method string) {
	switch {
	case c.Basic:
		return c.BasicID, methodBasic
	case c.ClientSecret != "":
		return c.ClientID, methodPost
	case c.Assertion != "" || c.AssertionType != "":
		id = c.ClientID
		if tok, err := parseAssertion(c.Assertion); id == "" && err == nil {
			var cl jwt.Claims
			if tok.unverifiedClaims(&cl) == nil {
				id = cl.Issuer
			}
		}
		return id, methodAssertion
	case c.ClientID != "":
		return c.ClientID, methodNone
	}
	return "", methodMissing
}
