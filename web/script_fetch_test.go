package web_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
)

// context.fetch (docs/scripts.md) attacked and used through the real
// server: scripts bound to clients run on introspection and token
// requests, and the dry run, against httptest upstreams on loopback.

// fetchUpstream is an https upstream that answers for example.com (the
// name its certificate holds) and counts its requests per path.
type fetchUpstream struct {
	srv  *httptest.Server
	port string
	mu   sync.Mutex
	hits map[string]int64 // requests per path
}

func newFetchUpstream(t *testing.T) *fetchUpstream {
	t.Helper()
	u := &fetchUpstream{hits: map[string]int64{}}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.hits[r.URL.Path]++
		u.mu.Unlock()
		switch r.URL.Path {
		case "/claims":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"tier":"gold"}`)
		case "/cached":
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprint(w, `{"tier":"cached"}`)
		case "/nostore":
			w.Header().Set("Cache-Control", "no-store, max-age=60")
			fmt.Fprint(w, `{"tier":"fresh"}`)
		case "/private":
			w.Header().Set("Cache-Control", "private, max-age=60")
			fmt.Fprint(w, `{"tier":"private"}`)
		case "/redirect":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/big":
			fmt.Fprint(w, strings.Repeat("x", 300<<10))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "/echo":
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Seen", r.Header.Get("X-Api-Key"))
			b := make([]byte, 64)
			n, _ := r.Body.Read(b)
			fmt.Fprintf(w, "%s", b[:n])
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(u.srv.Close)
	_, u.port, _ = net.SplitHostPort(u.srv.Listener.Addr().String())
	return u
}

func (u *fetchUpstream) hitsOf(path string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[path]
}

// url is the upstream's URL for path under host (example.com resolves to
// the upstream through the test resolver).
func (u *fetchUpstream) url(host, path string) string {
	return "https://" + net.JoinHostPort(host, u.port) + path
}

// fetchOptions trusts the upstream's certificate and resolves the test
// names: example.com to the upstream, the others to forbidden addresses.
func (u *fetchUpstream) fetchOptions(allowLoopback bool) scripts.FetchOptions {
	pool := x509.NewCertPool()
	pool.AddCert(u.srv.Certificate())
	names := map[string][]netip.Addr{
		"example.com":   {netip.MustParseAddr("127.0.0.1")},
		"metadata.test": {netip.MustParseAddr("169.254.169.254")},
		"private.test":  {netip.MustParseAddr("10.0.0.1")},
		"v6local.test":  {netip.MustParseAddr("::1")},
	}
	return scripts.FetchOptions{
		AllowLoopback: allowLoopback,
		RootCAs:       pool,
		LookupNetIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok {
				return a, nil
			}
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host) // localhost, through the system

		},
	}
}

// fetchScript is an introspection script that fetches url with opts and
// reports what happened: the fetched body's tier claim, the status, or
// the error message the script caught.
func fetchScript(name, url, opts string, extra map[string]any) map[string]any {
	body := fmt.Sprintf(`try {
  var r = context.fetch(%q%s);
  response.status = r.status;
  response.location = r.headers["location"] || "";
  try { response.tier = JSON.parse(r.body).tier; } catch (e) {}
} catch (e) {
  response.fetch_error = String(e.message);
  response.is_error = e instanceof Error;
}
return true;`, url, opts)
	return introspectionScript(name, body, extra)
}

// TestFetchRefusals binds scripts that try to reach what they must not
// and checks, in both isolation modes, that each call is refused with an
// Error the script catches, naming why.
func TestFetchRefusals(t *testing.T) {
	for _, iso := range []hooks.Isolation{hooks.IsolationProcess, hooks.IsolationInline} {
		t.Run(string(iso), func(t *testing.T) {
			up := newFetchUpstream(t)
			h := newHarness(t, withFetch(up.fetchOptions(false)), withIsolation(iso))
			loopbackURL := "https://" + net.JoinHostPort("127.0.0.1", up.port) + "/claims"
			v6URL := "https://" + net.JoinHostPort("::1", up.port) + "/claims"
			for i, tc := range []struct {
				name, url, opts string
				hosts           []string
				want            string // in the caught error's message
			}{
				{"fetch disabled", up.url("example.com", "/claims"), "", nil, "fetch is disabled"},
				{"host not allowed", up.url("example.com", "/claims"), "", []string{"api.example.org"}, "host not allowed"},
				{"wildcard does not match the apex", up.url("example.com", "/claims"), "", []string{"*.example.com"}, "host not allowed"},
				{"loopback literal without the flag", loopbackURL, "", []string{"127.0.0.1"}, "private address"},
				{"IPv6 loopback without the flag", v6URL, "", []string{"::1"}, "private address"},
				{"name resolving to loopback", up.url("example.com", "/claims"), "", []string{"example.com"}, "private address"},
				{"localhost", up.url("localhost", "/claims"), "", []string{"localhost"}, "private address"},
				{"name resolving to the metadata address", up.url("metadata.test", "/"), "", []string{"metadata.test"}, "private address"},
				{"name resolving to a private address", up.url("private.test", "/"), "", []string{"private.test"}, "private address"},
				{"name resolving to IPv6 loopback", up.url("v6local.test", "/"), "", []string{"v6local.test"}, "private address"},
				{"plain http", "http://example.com/claims", "", []string{"example.com"}, "https only"},
				{"plain http to loopback without the flag", "http://127.0.0.1:" + up.port + "/claims", "", []string{"127.0.0.1"}, "https only"},
				{"user info", "https://user:pw@example.com/", "", []string{"example.com"}, "invalid url"},
				{"forbidden header", up.url("example.com", "/claims"), `, {headers: {"Host": "internal"}}`, []string{"example.com"}, "header not allowed"},
				{"bad method", up.url("example.com", "/claims"), `, {method: "CONNECT"}`, []string{"example.com"}, "method not allowed"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					name := fmt.Sprintf("refuse-%s-%d", iso, i)
					extra := map[string]any{"timeout_ms": 2000}
					if tc.hosts != nil {
						extra["allowed_hosts"] = tc.hosts
					}
					h.createScript(fetchScript(name, tc.url, tc.opts, extra))
					h.createClient(map[string]any{"client_id": name, "client_secret": "s", "introspection_scripts": []string{name}})
					in := h.introspect(h.mustToken(name, "s", "").AccessToken)
					msg, _ := in["fetch_error"].(string)
					if !strings.Contains(msg, tc.want) || in["is_error"] != true || in["tier"] != nil {
						t.Fatalf("introspection = %v, want a caught Error with %q", in, tc.want)
					}
				})
			}
			if n := up.hitsOf("/claims"); n != 0 {
				t.Errorf("the upstream was reached %d times", n)
			}
		})
	}
}

// TestFetchAdminValidation checks allowed_hosts at the admin API.
func TestFetchAdminValidation(t *testing.T) {
	h := newHarness(t, withIsolation(hooks.IsolationInline))
	for i, tc := range []struct {
		hosts  []string
		status int
	}{
		{[]string{"api.example.com", "*.example.org", "127.0.0.1"}, http.StatusCreated},
		{[]string{"https://api.example.com"}, http.StatusBadRequest},
		{[]string{"api.example.com/path"}, http.StatusBadRequest},
		{[]string{"api.example.com:8443"}, http.StatusBadRequest},
		{[]string{"10.0.0.1"}, http.StatusBadRequest},
		{[]string{"169.254.169.254"}, http.StatusBadRequest},
		{[]string{"fd00:ec2::254"}, http.StatusBadRequest},
		{[]string{"*"}, http.StatusBadRequest},
		{[]string{"*.com"}, http.StatusBadRequest},
		{[]string{""}, http.StatusBadRequest},
	} {
		name := fmt.Sprintf("hosts-%d", i)
		r := h.admin(http.MethodPost, "/scripts", introspectionScript(name, "return true;", map[string]any{"allowed_hosts": tc.hosts}))
		if r.status != tc.status {
			t.Errorf("allowed_hosts %q: %d %s, want %d", tc.hosts, r.status, r.body, tc.status)
			continue
		}
		if r.status == http.StatusBadRequest && !strings.Contains(string(r.body), "allowed_hosts") {
			t.Errorf("allowed_hosts %q: %s does not name the field", tc.hosts, r.body)
		}
		if r.status == http.StatusCreated {
			got := h.admin(http.MethodGet, "/scripts/"+name, nil)
			if fmt.Sprint(got.json["allowed_hosts"]) != "[api.example.com *.example.org 127.0.0.1]" {
				t.Errorf("GET allowed_hosts = %v", got.json["allowed_hosts"])
			}
		}
	}
}

// TestFetch uses context.fetch as intended, in both isolation modes: a
// claim from an allowed upstream, the 3xx answered and not followed, the
// size cap, the per-call timeout, the response cache and the dry run.
func TestFetch(t *testing.T) {
	for _, iso := range []hooks.Isolation{hooks.IsolationProcess, hooks.IsolationInline} {
		t.Run(string(iso), func(t *testing.T) {
			up := newFetchUpstream(t)
			h := newHarness(t, withFetch(up.fetchOptions(true)), withIsolation(iso))
			hosts := map[string]any{"allowed_hosts": []string{"example.com"}, "timeout_ms": 3000}
			bind := func(doc map[string]any) string {
				name := doc["name"].(string)
				h.createScript(doc)
				h.createClient(map[string]any{"client_id": name, "client_secret": "s", "introspection_scripts": []string{name}})
				return h.mustToken(name, "s", "").AccessToken
			}

			t.Run("a claim from the upstream", func(t *testing.T) {
				tok := bind(fetchScript("claim", up.url("example.com", "/claims"), "", hosts))
				if in := h.introspect(tok); in["tier"] != "gold" || in["status"] != float64(200) {
					t.Fatalf("introspection = %v, want tier gold", in)
				}
				series := `keyhook_script_fetch_total{outcome="ok",script="claim"}`
				if v, ok := h.metric(series); !ok || v < 1 {
					t.Errorf("%s = %v, %v", series, v, ok)
				}
			})

			t.Run("a claim in an access token", func(t *testing.T) {
				h.createScript(map[string]any{"name": "tok-claim", "type": "update_token", "allowed_hosts": []string{"example.com"}, "timeout_ms": 3000,
					"source": fmt.Sprintf(`function modifyAccessToken(token, context) {
  token.claims.tier = JSON.parse(context.fetch(%q, {timeout_ms: 2000}).body).tier;
  return true;
}`, up.url("example.com", "/claims"))})
				h.createClient(map[string]any{"client_id": "tok-claim", "client_secret": "s", "update_token_scripts": []string{"tok-claim"}})
				if in := h.introspect(h.mustToken("tok-claim", "s", "").AccessToken); in["tier"] != "gold" {
					t.Fatalf("introspection = %v, want the fetched claim", in)
				}
			})

			t.Run("method, headers and body", func(t *testing.T) {
				tok := bind(introspectionScript("echo", fmt.Sprintf(`var r = context.fetch(%q, {method: "POST", headers: {"X-Api-Key": "k1"}, body: "ping"});
response.echo = [r.status, r.body, r.headers["x-method"], r.headers["x-seen"]].join(" ");
return true;`, up.url("example.com", "/echo")), hosts))
				if in := h.introspect(tok); in["echo"] != "200 ping POST k1" {
					t.Fatalf("introspection = %v", in)
				}
			})

			t.Run("a redirect is answered, not followed", func(t *testing.T) {
				tok := bind(fetchScript("redirect", up.url("example.com", "/redirect"), "", hosts))
				in := h.introspect(tok)
				if in["status"] != float64(302) || in["location"] != "http://169.254.169.254/latest/meta-data/" || in["fetch_error"] != nil {
					t.Fatalf("introspection = %v, want the 302 itself", in)
				}
			})

			t.Run("a response too large", func(t *testing.T) {
				tok := bind(fetchScript("big", up.url("example.com", "/big"), "", hosts))
				if in := h.introspect(tok); !strings.Contains(fmt.Sprint(in["fetch_error"]), "response too large") {
					t.Fatalf("introspection = %v, want response too large", in)
				}
			})

			t.Run("a slow upstream costs the call's timeout", func(t *testing.T) {
				tok := bind(fetchScript("slow", up.url("example.com", "/slow"), ", {timeout_ms: 300}", hosts))
				h.introspect(tok) // a warm worker and runtime: what is timed is the fetch
				start := time.Now()
				in := h.introspect(tok)
				if took := time.Since(start); took > 300*time.Millisecond+2*time.Second {
					t.Fatalf("introspection took %v", took)
				}
				if !strings.Contains(fmt.Sprint(in["fetch_error"]), "timeout") {
					t.Fatalf("introspection = %v, want a timeout", in)
				}
			})

			t.Run("a slow upstream costs at most the script's deadline", func(t *testing.T) {
				tok := bind(fetchScript("slow-deadline", up.url("example.com", "/slow"), "",
					map[string]any{"allowed_hosts": []string{"example.com"}, "timeout_ms": 400}))
				h.introspect(tok)
				start := time.Now()
				in := h.introspect(tok)
				if took := time.Since(start); took > 400*time.Millisecond+2*time.Second {
					t.Fatalf("introspection took %v", took)
				}
				if in["active"] != true || in["status"] != nil {
					t.Fatalf("introspection = %v", in)
				}
			})

			t.Run("max-age is cached", func(t *testing.T) {
				tok := bind(fetchScript("cached", up.url("example.com", "/cached"), "", hosts))
				for range 3 {
					if in := h.introspect(tok); in["tier"] != "cached" {
						t.Fatalf("introspection = %v", in)
					}
				}
				if n := up.hitsOf("/cached"); n != 1 {
					t.Fatalf("upstream called %d times, want 1", n)
				}
			})

			t.Run("no-store and private are not cached", func(t *testing.T) {
				for _, path := range []string{"/nostore", "/private"} {
					tok := bind(fetchScript("uncached"+strings.TrimPrefix(path, "/"), up.url("example.com", path), "", hosts))
					for range 2 {
						if in := h.introspect(tok); in["status"] != float64(200) {
							t.Fatalf("introspection = %v", in)
						}
					}
					if n := up.hitsOf(path); n != 2 {
						t.Fatalf("%s: upstream called %d times, want 2", path, n)
					}
				}
			})

			t.Run("the dry run fetches and logs the call", func(t *testing.T) {
				src := fmt.Sprintf(`function modifyResponse(response, context) {
  response.tier = JSON.parse(context.fetch(%q).body).tier;
  return true;
}`, up.url("example.com", "/claims")+"?secret=s3cr3t")
				h.createScript(introspectionScript("dry", "return true;", hosts))
				r := h.admin(http.MethodPost, "/scripts/dry/test", map[string]any{"source": src, "args": []any{map[string]any{}}})
				args, _ := r.json["args_after"].([]any)
				logs := fmt.Sprint(r.json["logs"])
				if r.status != http.StatusOK || len(args) != 1 || args[0].(map[string]any)["tier"] != "gold" {
					t.Fatalf("dry run: %d %s", r.status, r.body)
				}
				if !strings.Contains(logs, "fetch GET https://example.com:"+up.port+"/claims") || !strings.Contains(logs, "200") || strings.Contains(logs, "s3cr3t") {
					t.Fatalf("dry run logs = %s, want the call without its query", logs)
				}
			})
		})
	}
}

// TestFetchLoopbackFlag: with the server's loopback permission, plain
// http to a loopback upstream works; http elsewhere still does not.
func TestFetchLoopbackFlag(t *testing.T) {
	var hits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"tier":"loopback"}`)
	}))
	defer plain.Close()
	u, _ := url.Parse(plain.URL)
	up := newFetchUpstream(t)
	h := newHarness(t, withFetch(up.fetchOptions(true)), withIsolation(hooks.IsolationInline))
	h.createScript(fetchScript("loop", plain.URL+"/x", "", map[string]any{"allowed_hosts": []string{u.Hostname()}, "timeout_ms": 2000}))
	h.createClient(map[string]any{"client_id": "loop", "client_secret": "s", "introspection_scripts": []string{"loop"}})
	if in := h.introspect(h.mustToken("loop", "s", "").AccessToken); in["tier"] != "loopback" || hits.Load() != 1 {
		t.Fatalf("introspection = %v, want the loopback upstream's claim", in)
	}
	// Plain http goes only to a loopback host by name or literal, not to a
	// name that happens to resolve there (example.com, in this test).
	h.createScript(fetchScript("loop-name", "http://example.com:"+u.Port()+"/x", "", map[string]any{"allowed_hosts": []string{"example.com"}, "timeout_ms": 2000}))
	h.createClient(map[string]any{"client_id": "loop-name", "client_secret": "s", "introspection_scripts": []string{"loop-name"}})
	if in := h.introspect(h.mustToken("loop-name", "s", "").AccessToken); !strings.Contains(fmt.Sprint(in["fetch_error"]), "https only") || hits.Load() != 1 {
		t.Fatalf("introspection = %v, want https only", in)
	}
}

// TestFetchOfDiscardedCalls: calls whose answer is thrown away make no
// change upstream: a shadow candidate and a replay may GET but not POST
// (the live version already made the request's changes), while the live
// version and a dry run, which an admin asks for, send what the script
// says.
func TestFetchOfDiscardedCalls(t *testing.T) {
	up := newFetchUpstream(t)
	h := newHarness(t, withFetch(up.fetchOptions(true)))
	post := func(path string) string {
		return fmt.Sprintf("context.fetch(%q, {method: \"POST\", body: \"x\"});\n", up.url("example.com", path))
	}
	get := func(path string) string {
		return fmt.Sprintf("context.fetch(%q);\n", up.url("example.com", path))
	}
	fn := func(body string) string {
		return "function modifyResponse(response, context) {\n" + body + "return true;\n}"
	}
	h.createScript(introspectionScript("audit", post("/live")+"return true;", map[string]any{"allowed_hosts": []string{"example.com"},
		"timeout_ms": 5000, "record_inputs": 5, "candidate": map[string]any{"source": fn(post("/shadow-post") + get("/shadow-get")), "rollout": "shadow"}}))
	h.createClient(map[string]any{"client_id": "audit", "client_secret": "s", "introspection_scripts": []string{"audit"}})
	h.introspect(h.mustToken("audit", "s", "").AccessToken)
	if r := h.admin(http.MethodPost, "/scripts/audit/replay", map[string]any{"source": fn(get("/replay-get") + post("/replay-post"))}); r.status != http.StatusOK {
		t.Fatalf("replay: %d %s", r.status, r.body)
	} else if !strings.Contains(string(r.body), "may only GET or HEAD") {
		t.Errorf("replay answer %s, want the POST refused", r.body)
	}
	if r := h.admin(http.MethodPost, "/scripts/audit/test", map[string]any{"source": fn(post("/dry-run")), "args": []any{map[string]any{}}}); r.status != http.StatusOK {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		path string
		want int64
	}{
		{"/live", 1},
		{"/shadow-post", 0},
		{"/shadow-get", 0}, // the shadow's POST threw before its GET
		{"/replay-get", 1},
		{"/replay-post", 0},
		{"/dry-run", 1},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := up.hitsOf(tc.path); got != tc.want {
				t.Fatalf("%s reached %d times, want %d", tc.path, got, tc.want)
			}
		})
	}
}
