package scripts

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/hooks/netguard"
)

// context.fetch (docs/scripts.md, "context.fetch"): a script's outbound
// HTTP call, made by the server whatever the script's isolation. Inline,
// the call's runtime asks the fetcher directly; in a worker process, the
// worker asks the server over its socket (frameFetch) and the server's
// fetcher answers (frameFetched), so that the allow-list, the address
// guard, the cache, the concurrency limit and the metrics live here only
// and workers need no network.

// FetchOptions configures context.fetch. Zero values select the
// defaults.
type FetchOptions struct {
	// AllowLoopback lets scripts reach loopback addresses, over https or
	// plain http (--script-fetch-allow-loopback). Private, link-local and
	// metadata addresses are never reachable.
	AllowLoopback bool
	// MaxBytes caps a response body (and a request body). Default 256 KiB.
	MaxBytes int64
	// MaxConcurrent is how many fetches of one script may be in flight at
	// once on this server; more wait, within their deadline. Default 4.
	MaxConcurrent int
	// CacheEntries and CacheBytes bound the response cache. Defaults 1024
	// entries and 16 MiB.
	CacheEntries int
	CacheBytes   int64
	// RootCAs verifies upstreams; nil means the system roots.
	RootCAs *x509.CertPool
	// LookupNetIP, when set, replaces the system resolver (tests).
	LookupNetIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

func (o *FetchOptions) defaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 10
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 4
	}
	if o.CacheEntries <= 0 {
		o.CacheEntries = 1024
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = 16 << 20
	}
}

// fetchRequest is a call of context.fetch as the script made it.
type fetchRequest struct {
	url, method string
	headers     map[string]string
	body        string
	// timeout is the script's timeout_ms; 0 is what remains of the call.
	timeout time.Duration
	// safeOnly is the call's hooks.Call.SafeFetchOnly (set by the
	// server, never by the script).
	safeOnly bool
}

// fetchResponse is what the script gets back: headers lower-cased, the
// values of a repeated header joined with ", ".
type fetchResponse struct {
	status  int
	headers map[string]string
	body    string
}

// fetchError is a refused or failed fetch; the script sees its message
// as an Error it can catch. outcome is the metric's label.
type fetchError struct{ outcome, msg string }

func (e *fetchError) Error() string { return "fetch: " + e.msg }

// fetchFunc runs one fetch for a call whose time ends at deadline; the
// string is the line the call's logs get.
type fetchFunc func(ctx context.Context, req *fetchRequest, deadline time.Time) (*fetchResponse, string, error)

var fetchMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// forbiddenHeader reports request headers a script may not set: those the
// HTTP layer owns (framing, connection, host) and proxies'.
func forbiddenHeader(name string) bool {
	switch strings.ToLower(name) {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade", "expect":
		return true
	}
	return strings.HasPrefix(strings.ToLower(name), "proxy-")
}

// fetcher makes scripts' fetches. It is safe for concurrent use.
type fetcher struct {
	opts    FetchOptions
	https   *http.Client // public addresses (loopback too when allowed)
	http    *http.Client // loopback only, when allowed
	metrics *fetchMetrics
	cache   *fetchCache

	mu    sync.Mutex
	slots map[string]chan struct{} // per script name
}

func newFetcher(opts FetchOptions, reg prometheus.Registerer, log *slog.Logger) *fetcher {
	opts.defaults()
	f := &fetcher{opts: opts, slots: map[string]chan struct{}{},
		cache: &fetchCache{maxEntries: opts.CacheEntries, maxBytes: opts.CacheBytes}}
	f.cache.init()
	f.https = f.client(netguard.Policy{AllowLoopback: opts.AllowLoopback})
	f.http = f.client(netguard.Policy{LoopbackOnly: true})
	if reg != nil {
		f.metrics = newFetchMetrics(reg, log)
	}
	return f
}

func (f *fetcher) client(p netguard.Policy) *http.Client {
	d := &netguard.Dialer{Policy: p, Timeout: 10 * time.Second, LookupNetIP: f.opts.LookupNetIP}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // a proxy would connect on our behalf, past the address check
			DialContext:            d.DialContext,
			TLSClientConfig:        &tls.Config{RootCAs: f.opts.RootCAs, MinVersion: tls.VersionTLS12},
			MaxResponseHeaderBytes: 16 << 10,
			MaxIdleConnsPerHost:    4,
			IdleConnTimeout:        90 * time.Second,
		},
		// A redirect is the script's to follow or not: it gets the 3xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch runs req for script s, whose call ends at deadline, and logs and
// counts it. The request's end (ctx) cancels it.
func (f *fetcher) fetch(ctx context.Context, s *hooks.Script, deadline time.Time, req *fetchRequest, logger *slog.Logger) (*fetchResponse, string, error) {
	if f == nil {
		return nil, "", &fetchError{"disabled", "the script runtime is closed"}
	}
	start := time.Now()
	resp, shown, outcome, err := f.do(ctx, s, deadline, req)
	took := time.Since(start)
	f.metrics.observe(s.Name, outcome, took)
	line := fmt.Sprintf("fetch %s %s: ", req.method, shown)
	attrs := []slog.Attr{slog.String("script", s.Name), slog.String("method", req.method), slog.String("url", shown),
		slog.String("outcome", outcome), slog.Duration("duration", took)}
	if err != nil {
		line += fmt.Sprintf("%v (%d ms)", err, took.Milliseconds())
		attrs = append(attrs, slog.String("err", err.Error()))
	} else {
		cached := ""
		if outcome == "cached" {
			cached = ", cached"
		}
		line += fmt.Sprintf("%d (%d ms%s)", resp.status, took.Milliseconds(), cached)
		attrs = append(attrs, slog.Int("status", resp.status))
	}
	// Never the headers or bodies: they may hold credentials.
	logger.LogAttrs(ctx, slog.LevelInfo, "script fetch", attrs...)
	return resp, line, err
}

// do is fetch without the bookkeeping; shown is the URL without its
// query, user info and fragment, for logs.
func (f *fetcher) do(ctx context.Context, s *hooks.Script, deadline time.Time, req *fetchRequest) (resp *fetchResponse, shown, outcome string, err error) {
	refuse := func(outcome, format string, a ...any) (*fetchResponse, string, string, error) {
		return nil, shown, outcome, &fetchError{outcome, fmt.Sprintf(format, a...)}
	}
	shown = "(invalid url)"
	if len(s.AllowedHosts) == 0 {
		return refuse("disabled", "fetch is disabled (the script's allowed_hosts is empty)")
	}
	u, perr := url.Parse(req.url)
	if perr != nil || u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return refuse("invalid", "invalid url: must be an absolute https URL")
	}
	shown = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.User != nil {
		return refuse("invalid", "invalid url: user info is not allowed")
	}
	host := u.Hostname()
	if !netguard.HostAllowed(host, s.AllowedHosts) {
		return refuse("host_not_allowed", "host not allowed: %s is not in the script's allowed_hosts", host)
	}
	client := f.https
	if u.Scheme == "http" {
		if !f.opts.AllowLoopback || !netguard.LoopbackHost(host) {
			return refuse("https_only", "https only (plain http only to loopback, when the server allows it)")
		}
		client = f.http
	}
	if !slices.Contains(fetchMethods, req.method) {
		return refuse("invalid", "method not allowed: %s", req.method)
	}
	if req.safeOnly && req.method != http.MethodGet && req.method != http.MethodHead {
		return refuse("unsafe_method", "%s not sent: this call's answer is discarded (a shadow candidate or a replay), so it may only GET or HEAD", req.method)
	}
	for k := range req.headers {
		if forbiddenHeader(k) {
			return refuse("invalid", "header not allowed: %s", k)
		}
	}
	if int64(len(req.body)) > f.opts.MaxBytes {
		return refuse("invalid", "request body too large (over %d bytes)", f.opts.MaxBytes)
	}
	until := deadline
	if req.timeout > 0 && time.Now().Add(req.timeout).Before(until) {
		until = time.Now().Add(req.timeout)
	}
	if !time.Now().Before(until) {
		return refuse("timeout", "timeout")
	}

	key, cacheable := cacheKey(s.Name, u, req)
	if cacheable {
		if r, ok := f.cache.get(key, time.Now()); ok {
			return r, shown, "cached", nil
		}
	}

	fctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	release, ok := f.acquire(fctx, s.Name)
	if !ok {
		if ctx.Err() != nil {
			return refuse("cancelled", "cancelled: the request ended")
		}
		return refuse("busy", "too many concurrent fetches (%d per script) until the deadline", f.opts.MaxConcurrent)
	}
	defer release()

	hreq, herr := http.NewRequestWithContext(fctx, req.method, u.String(), strings.NewReader(req.body))
	if herr != nil {
		return refuse("invalid", "invalid request: %v", herr)
	}
	if req.body == "" {
		hreq.Body, hreq.ContentLength = nil, 0
	}
	for k, v := range req.headers {
		hreq.Header.Set(k, v)
	}
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", "keyhook-script-fetch")
	}
	hresp, derr := client.Do(hreq)
	if derr != nil {
		return f.failure(ctx, fctx, derr, shown)
	}
	defer hresp.Body.Close()
	if err := fctx.Err(); err != nil {
		// The response came as the fetch was being cancelled (net/http
		// may hand over one it read meanwhile): past its deadline or its
		// request's end, it is not the script's.
		return f.failure(ctx, fctx, err, shown)
	}
	if hresp.ContentLength > f.opts.MaxBytes {
		return refuse("too_large", "response too large (over %d bytes)", f.opts.MaxBytes)
	}
	body, rerr := io.ReadAll(io.LimitReader(hresp.Body, f.opts.MaxBytes+1))
	if rerr == nil {
		rerr = fctx.Err() // the whole body, but only after the deadline
	}
	if rerr != nil {
		return f.failure(ctx, fctx, rerr, shown)
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return refuse("too_large", "response too large (over %d bytes)", f.opts.MaxBytes)
	}
	resp = &fetchResponse{status: hresp.StatusCode, headers: make(map[string]string, len(hresp.Header)), body: string(body)}
	for k, vs := range hresp.Header {
		resp.headers[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	if cacheable {
		if ttl, ok := freshFor(req, hresp); ok {
			f.cache.put(key, resp, time.Now().Add(ttl))
		}
	}
	return resp, shown, "ok", nil
}

// failure classifies a failed request. Its message never carries the URL
// (whose query may hold credentials).
func (f *fetcher) failure(ctx, fctx context.Context, err error, shown string) (*fetchResponse, string, string, error) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, netguard.ErrAddressNotAllowed):
		return nil, shown, "private_address", &fetchError{"private_address", "private address refused (" + err.Error() + ")"}
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, shown, "cancelled", &fetchError{"cancelled", "cancelled: the request ended"}
	case fctx.Err() != nil:
		return nil, shown, "timeout", &fetchError{"timeout", "timeout"}
	}
	return nil, shown, "error", &fetchError{"error", "failed: " + err.Error()}
}

// acquire takes one of the script's fetch slots, waiting until ctx ends.
func (f *fetcher) acquire(ctx context.Context, script string) (release func(), ok bool) {
	f.mu.Lock()
	slots := f.slots[script]
	if slots == nil {
		slots = make(chan struct{}, f.opts.MaxConcurrent)
		f.slots[script] = slots
	}
	f.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, true
	case <-ctx.Done():
		return nil, false
	}
}

// forget drops what the fetcher keeps of a deleted script.
func (f *fetcher) forget(script string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	delete(f.slots, script)
	f.mu.Unlock()
	f.metrics.forget(script)
}

// cacheKey is the cache's key of a GET: the script, the URL and every
// request header (a response to other credentials is another entry).
// Other methods, and requests that ask for no cache, are not cached.
func cacheKey(script string, u *url.URL, req *fetchRequest) (string, bool) {
	if req.method != http.MethodGet {
		return "", false
	}
	var b strings.Builder
	b.WriteString(script)
	b.WriteByte('\n')
	b.WriteString(u.String())
	names := make([]string, 0, len(req.headers))
	for k := range req.headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if lk == "cache-control" || lk == "pragma" {
			if v := strings.ToLower(req.headers[k]); strings.Contains(v, "no-cache") || strings.Contains(v, "no-store") {
				return "", false
			}
		}
		fmt.Fprintf(&b, "\n%s:%s", lk, req.headers[k])
	}
	return b.String(), true
}

// cacheableStatus are the statuses a cache may store with explicit
// freshness (RFC 9110 §15.1, "heuristically cacheable").
var cacheableStatus = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// freshFor is how long resp may be served from the cache, as a shared
// cache (RFC 9111): s-maxage or max-age, less Age; nothing with no-store,
// no-cache, private or Vary: *, and, for a request with Authorization,
// only what the response marks public (RFC 9111 §3.5).
func freshFor(req *fetchRequest, resp *http.Response) (time.Duration, bool) {
	if !slices.Contains(cacheableStatus, resp.StatusCode) || strings.TrimSpace(resp.Header.Get("Vary")) == "*" {
		return 0, false
	}
	cc := map[string]string{}
	for _, v := range resp.Header.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			cc[strings.ToLower(k)] = strings.Trim(val, `"`)
		}
	}
	for _, no := range []string{"no-store", "no-cache", "private"} {
		if _, ok := cc[no]; ok {
			return 0, false
		}
	}
	age, ok := cc["s-maxage"]
	if !ok {
		age, ok = cc["max-age"]
	}
	secs, err := strconv.ParseInt(age, 10, 64)
	if !ok || err != nil || secs <= 0 {
		return 0, false
	}
	for k := range req.headers {
		if strings.EqualFold(k, "Authorization") {
			_, public := cc["public"]
			_, shared := cc["s-maxage"]
			if !public && !shared {
				return 0, false
			}
		}
	}
	if a, err := strconv.ParseInt(resp.Header.Get("Age"), 10, 64); err == nil && a > 0 {
		secs -= a
	}
	if secs <= 0 {
		return 0, false
	}
	return time.Duration(min(secs, 86400)) * time.Second, true
}

// fetchCache holds fresh responses, least recently used first out, within
// maxEntries and maxBytes. Safe for concurrent use.
type fetchCache struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int64
	bytes      int64
	ll         *list.List // of *cacheEntry, most recent first
	m          map[string]*list.Element
}

type cacheEntry struct {
	key     string
	resp    *fetchResponse // never changed once stored
	expires time.Time
	size    int64
}

func (c *fetchCache) init() {
	c.ll, c.m = list.New(), map[string]*list.Element{}
}

func (c *fetchCache) get(key string, now time.Time) (*fetchResponse, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil, false
	}
	c.ll.MoveToFront(el)
	return e.resp, true
}

func (c *fetchCache) put(key string, resp *fetchResponse, expires time.Time) {
	size := int64(len(key) + len(resp.body) + 64)
	for k, v := range resp.headers {
		size += int64(len(k) + len(v))
	}
	if size > c.maxBytes/4 {
		return // one entry may not crowd out the rest
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.remove(el)
	}
	for c.ll.Len() >= c.maxEntries || c.bytes+size > c.maxBytes {
		c.remove(c.ll.Back())
	}
	c.m[key] = c.ll.PushFront(&cacheEntry{key: key, resp: resp, expires: expires, size: size})
	c.bytes += size
}

func (c *fetchCache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.ll.Remove(el)
	delete(c.m, e.key)
	c.bytes -= e.size
}

// fetchMetrics count fetches; a nil *fetchMetrics records nothing.
type fetchMetrics struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newFetchMetrics(reg prometheus.Registerer, log *slog.Logger) *fetchMetrics {
	m := &fetchMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyhook_script_fetch_total",
			Help: "context.fetch calls, by script and outcome (ok, cached, disabled, invalid, unsafe_method, host_not_allowed, https_only, private_address, timeout, too_large, busy, cancelled, error).",
		}, []string{"script", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyhook_script_fetch_duration_seconds",
			Help:    "Time context.fetch calls took, cache hits and refusals included.",
			Buckets: []float64{1e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5},
		}, []string{"script"}),
	}
	m.total = register(reg, m.total, log)
	m.duration = register(reg, m.duration, log)
	return m
}

func (m *fetchMetrics) observe(script, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.total.WithLabelValues(script, outcome).Inc()
	m.duration.WithLabelValues(script).Observe(d.Seconds())
}

func (m *fetchMetrics) forget(script string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"script": script}
	m.total.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}
