package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/hooks/netguard"
)

// This file makes one of keyhook's two kinds of outbound requests (the
// other is scripts' context.fetch, docs/scripts.md): the fetch of a
// private_key_jwt client's jwks_uri (RFC 7591 §2, OIDC Core §9). The URL
// is chosen by whoever registers the client, so the fetch is guarded
// against server-side request forgery (docs/client-auth.md): https or
// loopback http only, the address checked after resolution at dial time
// by netguard's dialer (so DNS rebinding cannot reach a private address),
// no proxy, no redirects, a timeout, a size cap, and a cache that fetches
// a URI at most once per refresh interval, failures included.

// JWKSURIConfig tunes the fetch of clients' jwks_uri; the zero value is
// the documented default (docs/client-auth.md).
type JWKSURIConfig struct {
	// AllowPrivate lets jwks_uri reach private (RFC 1918, RFC 6598,
	// fc00::/7), link-local (169.254/16, fe80::/10) and special-purpose
	// (RFC 6890) addresses, which are refused by default
	// (netguard.Policy.AllowPrivate).
	AllowPrivate bool
	// Timeout bounds one fetch, connection and body; default 5s.
	Timeout time.Duration
	// MaxBytes caps the JWK Set document; default 256 KiB.
	MaxBytes int64
	// MinRefresh is how long a fetched set is used before the URI is
	// fetched again; default 5 minutes. An unknown kid does not shorten it.
	MinRefresh time.Duration
	// FailureTTL is how long a failed fetch is remembered (and answered
	// from memory) before the URI is tried again; default 1 minute.
	FailureTTL time.Duration
	// RootCAs verifies https jwks_uri servers; nil means the system roots.
	RootCAs *x509.CertPool
}

func (c *JWKSURIConfig) defaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 256 << 10
	}
	if c.MinRefresh <= 0 {
		c.MinRefresh = 5 * time.Minute
	}
	if c.FailureTTL <= 0 {
		c.FailureTTL = time.Minute
	}
}

// ErrAddressNotAllowed is why a jwks_uri fetch was refused before any
// connection: its host resolved to an address the configuration forbids.
var ErrAddressNotAllowed = netguard.ErrAddressNotAllowed

// jwksPolicy is where the fetcher may connect. Loopback is always
// allowed (a client and keyhook on one host); private, shared and
// link-local addresses (including the cloud metadata address
// 169.254.169.254) only with allowPrivate; unspecified, multicast and
// broadcast never. With loopbackOnly (plain http) only loopback is allowed.
func jwksPolicy(allowPrivate, loopbackOnly bool) netguard.Policy {
	return netguard.Policy{AllowLoopback: true, AllowPrivate: allowPrivate, LoopbackOnly: loopbackOnly}
}

// jwksAddrAllowed decides whether the fetcher may connect to ip.
func jwksAddrAllowed(ip netip.Addr, allowPrivate, loopbackOnly bool) bool {
	return jwksPolicy(allowPrivate, loopbackOnly).Allows(ip)
}

// jwksURIAllowed checks a jwks_uri before any fetch: https, or http to a
// loopback host; no user info; an IP literal host must pass jwksAddrAllowed.
// Host names are checked again, after resolution, when dialling.
func jwksURIAllowed(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return errors.New("must be an absolute https URL")
	}
	host := u.Hostname()
	switch u.Scheme {
	case "https":
	case "http":
		if !netguard.LoopbackHost(host) {
			return errors.New("must be https (http only to a loopback host)")
		}
	default:
		return errors.New("must be an absolute https URL")
	}
	if ip, err := netip.ParseAddr(host); err == nil && !jwksAddrAllowed(ip, allowPrivate, false) {
		return fmt.Errorf("%w: %s", ErrAddressNotAllowed, ip)
	}
	return nil
}

// jwksFetcher fetches and caches clients' JWK Sets. It is safe for
// concurrent use; concurrent requests for one URI share one fetch.
type jwksFetcher struct {
	cfg   JWKSURIConfig
	now   func() time.Time
	https *http.Client // public addresses (and private ones when allowed)
	http  *http.Client // loopback only

	mu      sync.Mutex
	entries map[string]*jwksEntry
}

// maxJWKSEntries bounds the cache; the URIs come from registered clients,
// so it is only reached by a very large registry, and then expired
// entries are dropped.
const maxJWKSEntries = 10000

type jwksEntry struct {
	fetching sync.Mutex // held while the URI is fetched
	// The fields below are read and written under jwksFetcher.mu.
	set     *jose.JSONWebKeySet
	err     error
	expires time.Time
}

func newJWKSFetcher(cfg JWKSURIConfig, now func() time.Time) *jwksFetcher {
	cfg.defaults()
	f := &jwksFetcher{cfg: cfg, now: now, entries: map[string]*jwksEntry{}}
	f.https = f.client(false)
	f.http = f.client(true)
	return f
}

func (f *jwksFetcher) client(loopbackOnly bool) *http.Client {
	dialer := &netguard.Dialer{Policy: jwksPolicy(f.cfg.AllowPrivate, loopbackOnly), Timeout: f.cfg.Timeout}
	transport := &http.Transport{
		Proxy:                  nil, // a proxy would connect on our behalf, past the address check
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: f.cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    f.cfg.Timeout,
		ResponseHeaderTimeout:  f.cfg.Timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   f.cfg.Timeout,
		// No redirects: a redirect could lead anywhere, and jwks_uri is
		// the URL the client registered.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch returns the JWK Set at uri, from the cache when it was fetched (or
// failed) recently enough.
func (f *jwksFetcher) fetch(ctx context.Context, uri string) (*jose.JSONWebKeySet, error) {
	f.mu.Lock()
	e, ok := f.entries[uri]
	if !ok {
		f.sweep()
		e = &jwksEntry{}
		f.entries[uri] = e
	}
	f.mu.Unlock()

	e.fetching.Lock()
	defer e.fetching.Unlock()
	f.mu.Lock()
	if f.now().Before(e.expires) {
		set, err := e.set, e.err
		f.mu.Unlock()
		return set, err
	}
	f.mu.Unlock()

	set, err := f.get(ctx, uri)
	ttl := f.cfg.MinRefresh
	if err != nil {
		set, ttl = nil, f.cfg.FailureTTL
	}
	f.mu.Lock()
	e.set, e.err, e.expires = set, err, f.now().Add(ttl)
	f.mu.Unlock()
	return set, err
}

// sweep drops expired entries when the cache is full; f.mu is held.
func (f *jwksFetcher) sweep() {
	if len(f.entries) < maxJWKSEntries {
		return
	}
	now := f.now()
	for k, e := range f.entries {
		if !now.Before(e.expires) && e.fetching.TryLock() {
			delete(f.entries, k)
			e.fetching.Unlock()
		}
	}
}

// get makes one request. It does not follow the request's cancellation:
// its result is cached for every later request, so a caller that went
// away must not make it a failure; the timeout bounds it instead.
func (f *jwksFetcher) get(ctx context.Context, uri string) (*jose.JSONWebKeySet, error) {
	if err := jwksURIAllowed(uri, f.cfg.AllowPrivate); err != nil {
		return nil, err
	}
	client := f.https
	if strings.HasPrefix(strings.ToLower(uri), "http:") {
		client = f.http
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks_uri answered %d", resp.StatusCode)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return nil, fmt.Errorf("jwks_uri document is larger than %d bytes", f.cfg.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > f.cfg.MaxBytes {
		return nil, fmt.Errorf("jwks_uri document is larger than %d bytes", f.cfg.MaxBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks_uri document is not a JWK Set: %w", err)
	}
	return &set, nil
}
