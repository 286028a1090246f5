package web_test

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// headless starts Chromium (chromium(t) skips without it) with a fresh
// profile and returns a tab's context, ended with the test.
func headless(t *testing.T) context.Context {
	t.Helper()
	return headlessFor(t, 60*time.Second)
}

// headlessFor is headless with a context that ends after d.
func headlessFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, d)
	t.Cleanup(cancelT)
	return ctx
}

// spaPage is a single-page app in the style of oidc-client-ts: discovery,
// authorization code with PKCE S256 (the verifier from crypto.getRandomValues,
// the challenge from crypto.subtle), and on return the checks of iss
// (RFC 9207 §2.4) and state, the code exchange and a userinfo call with
// fetch() across origins. It writes what it got, or its error, into the
// page as JSON. /probe calls userinfo from a page whose origin no client
// lists, and writes whether the browser let it read the answer.
var spaPage = template.Must(template.New("spa").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>SPA</title></head><body>
<script>
const ISSUER = {{.Issuer}}, CLIENT = "spa-app", REDIRECT = location.origin + "/callback";
const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
function report(id, value) {
  const p = document.createElement("pre");
  p.id = id;
  p.textContent = JSON.stringify(value);
  document.body.appendChild(p);
}
async function discover() {
  const r = await fetch(ISSUER + "/.well-known/openid-configuration");
  return r.json();
}
async function start() {
  const meta = await discover();
  const verifier = random(), state = random(), nonce = random();
  sessionStorage.setItem("login", JSON.stringify({verifier, state, nonce}));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const q = new URLSearchParams({response_type: "code", client_id: CLIENT, redirect_uri: REDIRECT,
    scope: "openid profile email", state, nonce, code_challenge: challenge, code_challenge_method: "S256"});
  location.assign(meta.authorization_endpoint + "?" + q);
}
async function callback() {
  const meta = await discover();
  const saved = JSON.parse(sessionStorage.getItem("login"));
  const p = new URLSearchParams(location.search);
  if (p.get("iss") !== meta.issuer) throw new Error("iss is " + p.get("iss") + ", not " + meta.issuer);
  if (p.get("state") !== saved.state) throw new Error("state does not match");
  if (p.has("error")) throw new Error(p.get("error") + ": " + p.get("error_description"));
  const tr = await fetch(meta.token_endpoint, {method: "POST",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({grant_type: "authorization_code", code: p.get("code"), redirect_uri: REDIRECT,
      client_id: CLIENT, code_verifier: saved.verifier})});
  const tok = await tr.json();
  if (!tr.ok) throw new Error("token endpoint: " + JSON.stringify(tok));
  const ur = await fetch(meta.userinfo_endpoint, {headers: {Authorization: "Bearer " + tok.access_token}});
  const userinfo = await ur.json();
  if (!ur.ok) throw new Error("userinfo: " + JSON.stringify(userinfo));
  const idPart = tok.id_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const id = JSON.parse(atob(idPart));
  report("result", {userinfo, scope: tok.scope, id_nonce_ok: id.nonce === saved.nonce, id_sub: id.sub});
}
async function probe() {
  try {
    await fetch(ISSUER + "/oauth2/userinfo", {headers: {Authorization: "Bearer x"}});
    report("result", {read: true});
  } catch (e) {
    report("result", {read: false, error: String(e)});
  }
}
const run = {"/callback": callback, "/probe": probe}[location.pathname] || start;
run().catch((e) => report("failed", {error: String(e)}));
</script></body></html>
`))

// textOf is a script that reads the text of the element id, "" when absent.
func textOf(id string) string {
	return `(document.getElementById("` + id + `") || {}).textContent || ""`
}

func serveSPA(issuer string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = spaPage.Execute(w, map[string]string{"Issuer": issuer})
	}))
}

// TestSPAInRealBrowser runs a single-page app in headless Chromium
// against keyhook from another origin: the app's own JavaScript does the
// authorization code flow with PKCE, checks iss and state, and calls the
// token and userinfo endpoints with fetch() (a CORS request, and a
// preflighted one for the Authorization header), which works only because
// the client lists the app's origin in allowed_cors_origins. A page of an
// unlisted origin cannot read userinfo's answer.
func TestSPAInRealBrowser(t *testing.T) {
	ctx := headless(t)
	h := newHarness(t)
	spa := serveSPA(h.url)
	defer spa.Close()
	stranger := serveSPA(h.url)
	defer stranger.Close()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw",
		"claims": map[string]any{"email": "alice@example.com", "name": "Alice Example"}}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "spa-app", "client_name": "Browser SPA", "token_endpoint_auth_method": "none",
		"grant_types": []string{"authorization_code"}, "redirect_uris": []string{spa.URL + "/callback"},
		"scope": "openid profile email", "allowed_cors_origins": []string{spa.URL}})

	read := func(name string) (string, string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#result, #failed"))); err != nil {
			t.Fatalf("browser, %s: %v", name, err)
		}
		failed, _ := chromedp.Run(ctx, chromedp.Evaluate[string](textOf("failed")))
		result, _ := chromedp.Run(ctx, chromedp.Evaluate[string](textOf("result")))
		return result, failed
	}
	// The SPA sends the browser to the login form, or reports why not.
	if err := chromedp.Do(ctx, chromedp.Navigate(spa.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#username, #failed"))); err != nil {
		t.Fatalf("browser, open the SPA: %v", err)
	}
	if failed, _ := chromedp.Run(ctx, chromedp.Evaluate[string](textOf("failed"))); failed != "" {
		t.Fatalf("the SPA failed before signing in: %s", failed)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("username"), "alice"), chromedp.SendKeys(chromedp.ID("password"), "alice-pw"),
		chromedp.Click(chromedp.ID("submit"))); err != nil {
		t.Fatalf("browser, sign in through the SPA: %v", err)
	}
	result, failed := read("the SPA's result")
	if failed != "" {
		t.Fatalf("the SPA failed: %s", failed)
	}
	var got struct {
		Userinfo map[string]any `json:"userinfo"`
		Scope    string         `json:"scope"`
		NonceOK  bool           `json:"id_nonce_ok"`
		Sub      string         `json:"id_sub"`
	}
	if err := json.Unmarshal([]byte(result), &got); err != nil {
		t.Fatalf("result %q: %v", result, err)
	}
	if got.Userinfo["sub"] != "alice" || got.Userinfo["email"] != "alice@example.com" || got.Userinfo["name"] != "Alice Example" ||
		!got.NonceOK || got.Sub != "alice" {
		t.Fatalf("the SPA got %s", result)
	}

	t.Run("an unlisted origin cannot read the answers", func(t *testing.T) {
		if err := chromedp.Do(ctx, chromedp.Navigate(stranger.URL+"/probe")); err != nil {
			t.Fatal(err)
		}
		result, failed := read("the probe's result")
		var probe struct {
			Read bool `json:"read"`
		}
		if err := json.Unmarshal([]byte(result), &probe); err != nil || probe.Read || failed != "" {
			t.Fatalf("probe: %s %s", result, failed)
		}
	})
}
