package web

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
)

// Config wires a Server.
type Config struct {
	Engine *engine.Engine
	Logger *slog.Logger
	// Registry serves /metrics and receives the HTTP metrics; nil makes one.
	Registry *prometheus.Registry
	// Ready reports whether the server can serve (database reachable).
	Ready func(ctx context.Context) error
	// MaxFormBytes bounds OAuth endpoint bodies (default 64 KiB); admin
	// bodies may be 1 MiB.
	MaxFormBytes int64
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// when finding a request's address for the failure throttles
	// (docs/auth-limits.md); without any, the TCP peer is the address.
	TrustedProxies []netip.Prefix
	// TracerProvider, when set, makes each request a span
	// (docs/operations.md, "Tracing"); nil: no tracing, at no cost.
	TracerProvider trace.TracerProvider
}

// Server is keyhook's HTTP handler. It is safe for concurrent use.
type Server struct {
	cfg     Config
	eng     *engine.Engine
	log     *slog.Logger
	echo    *echo.Echo
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
	// closing is closed by CloseStreams, when the server shuts down.
	closing   chan struct{}
	closeOnce sync.Once
}

const ctxLogger = "keyhook.logger"

// New builds the server and its routes.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxFormBytes <= 0 {
		cfg.MaxFormBytes = 64 << 10
	}
	s := &Server{cfg: cfg, eng: cfg.Engine, log: cfg.Logger, echo: echo.New(), closing: make(chan struct{})}
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhook_http_requests_total", Help: "HTTP requests by route, method and status.",
	}, []string{"route", "method", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "keyhook_http_request_duration_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route"})
	cfg.Registry.MustRegister(s.reqs, s.latency)
	registerAuthMetrics(cfg.Registry, cfg.Engine)

	e := s.echo
	e.HideBanner, e.HidePort = true, true
	// echo's own logger writes to the server's log, so that every line
	// the server writes goes through one handler.
	e.Logger.SetOutput(slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn).Writer())
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.Use(dropBadRequestID)
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		RequestIDHandler: func(c echo.Context, id string) {
			l := s.log.With("request_id", id)
			c.Set(ctxLogger, l)
			ctx := hooks.WithRequestID(hooks.WithLogger(c.Request().Context(), l), id)
			c.SetRequest(c.Request().WithContext(engine.WithClientAddress(ctx, c.RealIP())))
		},
	}))
	if cfg.TracerProvider != nil {
		e.Use(traceRequests(cfg.TracerProvider))
	}
	e.Use(s.observe)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.logger(c).Error("panic in handler", "err", err, "stack", string(stack))
		return err
	}}))

	// Route-level limits: a group with middleware would catch every
	// unmatched path and turn 405s into 404s.
	limit := middleware.BodyLimit(strconv.FormatInt(cfg.MaxFormBytes, 10) + "B")
	e.POST(engine.PathToken, s.token, limit)
	e.POST(engine.PathDeviceAuthorization, s.deviceAuthorization, limit)
	e.POST(engine.PathIntrospect, s.introspect, limit)
	e.GET(engine.PathIntrospect, s.introspect)
	e.POST(engine.PathRevoke, s.revoke, limit)
	e.POST(engine.PathPAR, s.par, limit)
	e.GET(engine.PathJWKS, s.jwks)
	e.GET("/.well-known/openid-configuration", s.discovery)
	e.GET("/.well-known/oauth-authorization-server", s.discovery)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", s.ready)
	// /metrics is not public: here it needs keyhook:admin or
	// keyhook:metrics.read; MetricsHandler serves it without a token on a
	// listener of its own (keyhook serve --metrics-addr, docs/operations.md).
	e.GET("/metrics", echo.WrapHandler(s.MetricsHandler()), s.requireScope("metrics"))
	s.registrationRoutes(e)
	s.adminRoutes(e)
	s.browserRoutes(e)
	s.consoleRoutes(e)
	return s
}

// Handler is the server as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// MetricsHandler serves the registry in the Prometheus text format,
// without authentication: mount it only where the network keeps it
// private (docs/admin-security.md).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
}

// methodLabel is the request's method when it is one of RFC 9110 §9's
// (or PATCH), else "other": a client may send any token as a method, and
// each distinct label value would be a new series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// observe logs and measures every request.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		// The route label is the pattern echo matched (never the raw
		// URL), so the label values are the routes the server defines.
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		d := time.Since(start)
		s.reqs.WithLabelValues(route, methodLabel(c.Request().Method), strconv.Itoa(status)).Inc()
		s.latency.WithLabelValues(route).Observe(d.Seconds())
		// One line per request, with the path but never the query, the
		// body or the Authorization header, which may carry tokens,
		// secrets and passwords; the request id is logger's. The method
		// and the path are the caller's, so they are cut to a bounded
		// length (the slog handlers quote what could break a line).
		attrs := []slog.Attr{slog.String("method", clip(c.Request().Method, maxLoggedMethod)),
			slog.String("path", clip(c.Request().URL.Path, maxLoggedPath)),
			slog.String("route", route), slog.Int("status", status), slog.Duration("duration", d)}
		if id := requestClientID(c.Request()); id != "" {
			attrs = append(attrs, slog.String("client_id", id))
		}
		s.logger(c).LogAttrs(c.Request().Context(), slog.LevelInfo, "request", attrs...)
		return nil
	}
}

// requestClientID is the client_id a request names, for its log line: the
// user-id of Basic credentials (RFC 6749 §2.3.1; the password is not
// read), else the client_id parameter of a form the handler parsed or of
// the query. It is what the caller claims, authenticated or not; "" when
// none, and cut to maxLoggedClientID bytes.
func requestClientID(r *http.Request) string {
	id := ""
	if user, _, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(user)
	} else if r.PostForm != nil && r.PostForm.Get("client_id") != "" {
		id = r.PostForm.Get("client_id")
	} else if r.URL.RawQuery != "" {
		id = r.URL.Query().Get("client_id")
	}
	return clip(id, maxLoggedClientID)
}

// Longest method, path and client_id a request line holds, in bytes: a
// caller may send any of them up to the header limit (64 KiB), and each
// request would write that much.
const (
	maxLoggedMethod   = 32
	maxLoggedPath     = 512
	maxLoggedClientID = 128
)

// clip is s, or when longer than n bytes its first n bytes at most, cut
// at a UTF-8 character boundary and followed by "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// dropBadRequestID removes an X-Request-Id the caller sent that is not a
// short printable token, so that middleware.RequestID makes one instead:
// the id is logged and echoed, and a caller's id is kept only when it is
// fit for both.
func dropBadRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !goodRequestID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func goodRequestID(id string) bool {
	if len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; b <= ' ' || b >= 0x7f {
			return false
		}
	}
	return true
}

func (s *Server) logger(c echo.Context) *slog.Logger {
	if l, ok := c.Get(ctxLogger).(*slog.Logger); ok {
		return l
	}
	return s.log
}

func (s *Server) ready(c echo.Context) error {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready(ctx); err != nil {
			s.logger(c).Warn("not ready", "err", err)
			return c.String(http.StatusServiceUnavailable, "database unavailable\n")
		}
	}
	return c.String(http.StatusOK, "ready\n")
}

// ipExtractor finds a request's address: the TCP peer, or, when the peer
// is a trusted proxy, the nearest untrusted address of X-Forwarded-For.
// echo's default would believe any client's X-Forwarded-For (and its
// XFF extractor trusts private and loopback networks unless told not to).
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		_, n, err := net.ParseCIDR(p.Masked().String())
		if err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
