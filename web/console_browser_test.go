package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyhook/keyhook/engine"
)

// TestConsoleInRealBrowser drives the admin console in headless Chromium
// against a real server: sign in with the bootstrap admin's credentials,
// open a script, type a syntax error and see it marked at its line, fix
// it, try it on a client's sample and see the field it adds in the diff,
// save, bind it to the client; then a real introspection of the client's
// token has the field, which it had not before. A client name and a log
// line holding markup are shown as text. Then a read-only delegated admin
// sees the script's calls but cannot save, and is told why.
func TestConsoleInRealBrowser(t *testing.T) {
	ctx := headlessFor(t, 3*time.Minute)
	h := newHarness(t)
	const evilName = `<img src=x onerror="document.title='pwned'">`
	shopSecret := h.createClient(map[string]any{"client_id": "shop", "client_name": evilName, "scope": "read",
		"attributes": map[string]any{"tenant": "acme"}})
	viewerSecret := h.createClient(map[string]any{"client_id": "viewer",
		"scope": "keyhook:scripts.read keyhook:clients.read"})
	const stored = "function modifyResponse(response, context) {\n" +
		"  context.log(\"client \" + context.client.client_name);\n" +
		"  return true;\n" +
		"}\n"
	h.createScript(map[string]any{"name": "add-tenant", "type": "introspection", "source": stored, "timeout_ms": 5000})
	token := h.mustToken("shop", shopSecret, "").AccessToken
	if in := h.introspect(token); in["active"] != true || in["tenant"] != nil {
		t.Fatalf("before: %v", in)
	}

	step := func(name string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, a); err != nil {
			t.Fatalf("browser, %s: %v", name, err)
		}
	}
	// until waits for a JavaScript condition to hold.
	until := func(name, cond string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(60*time.Second))); err != nil {
			// What the page says, to tell why.
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`["message", "signin-error", "check-status", "save-status", "bind-status"].
				map(id => id + ": " + document.getElementById(id).textContent).join("; ")`))
			t.Fatalf("browser, %s: %v (page: %s)", name, err, page)
		}
	}
	eval := func(name, expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("browser, %s: %v", name, err)
		}
		return v
	}
	signIn := func(id, secret string) {
		t.Helper()
		step("sign in as "+id, chromedp.Steps(
			chromedp.WaitVisible(chromedp.ID("client-id")),
			chromedp.SendKeys(chromedp.ID("client-id"), id),
			chromedp.SendKeys(chromedp.ID("client-secret"), secret),
			chromedp.Click(chromedp.ID("signin"))))
		until("signed in as "+id, `!document.getElementById("scripts-view").hidden &&
			!!document.querySelector('#scripts-table tr[data-script="add-tenant"] a')`)
	}

	step("open the console", chromedp.Navigate(h.url+"/admin"))
	signIn(engine.BootstrapAdminID, adminSecret)
	step("open the script", chromedp.Steps(
		chromedp.Click(chromedp.CSS(`#scripts-table tr[data-script="add-tenant"] a`)),
		chromedp.WaitVisible(chromedp.ID("source"))))
	until("the stored source compiles", `document.getElementById("check-status").textContent === "Compiles."`)

	// Type a new line 2 with a missing parenthesis.
	line2 := "  response.tenant = (context.client.attributes.tenant;"
	step("type a syntax error", chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](`(() => { const t = document.getElementById("source"); t.focus(); const p = t.value.indexOf("\n") + 1; t.setSelectionRange(p, p); })()`),
		chromedp.SendKeys(chromedp.ID("source"), line2+"\n")))
	wantStatus := fmt.Sprintf("Syntax error at line 2, column %d: ", strings.Index(line2, ";")+1)
	until("the error is marked at line 2", fmt.Sprintf(`document.getElementById("check-status").textContent.startsWith(%q) &&
		[...document.querySelectorAll("#gutter .ln.error")].map(e => e.dataset.line).join() === "2"`, wantStatus))

	// Fix it: a ")" before the ";".
	step("fix it", chromedp.Steps(
		chromedp.Evaluate[chromedp.Void](`(() => { const t = document.getElementById("source"); t.focus(); const p = t.value.indexOf(";"); t.setSelectionRange(p, p); })()`),
		chromedp.SendKeys(chromedp.ID("source"), ")")))
	until("the fix compiles", `document.getElementById("check-status").textContent === "Compiles." && !document.querySelector("#gutter .ln.error")`)
	fixed := strings.Replace(stored, "\n", "\n"+strings.Replace(line2, ";", ");", 1)+"\n", 1)
	if got := eval("source", `document.getElementById("source").value`); got != fixed {
		t.Fatalf("editor has %q, want %q", got, fixed)
	}

	step("try it on shop", chromedp.Steps(
		chromedp.SetValue(chromedp.ID("try-client"), "shop"),
		chromedp.Click(chromedp.ID("try")),
		chromedp.WaitVisible(chromedp.CSS(`#try-diff tr.diff-add[data-path="tenant"]`))))
	if row := eval("diff row", `document.querySelector('#try-diff tr.diff-add[data-path="tenant"]').textContent`); row != `+tenant"acme"` {
		t.Fatalf("diff row %q", row)
	}
	if n := eval("changed rows", `String(document.querySelectorAll("#try-diff tr.diff-add, #try-diff tr.diff-del, #try-diff tr.diff-chg").length)`); n != "1" {
		t.Fatalf("%s changed rows, want 1", n)
	}
	logs := eval("logs", `document.getElementById("try-logs").textContent`)
	duration := eval("duration", `document.getElementById("try-duration").textContent`)
	if !strings.Contains(logs, "client "+evilName) || !strings.HasPrefix(duration, "Ran in ") {
		t.Fatalf("logs %q, duration %q", logs, duration)
	}
	// The stored script is unchanged until saved.
	if r := h.admin(http.MethodGet, "/scripts/add-tenant", nil); r.str("source") != stored {
		t.Fatalf("a dry run changed the script: %s", r.body)
	}

	step("save", chromedp.Click(chromedp.ID("save")))
	until("saved", `document.getElementById("save-status").textContent === "Saved as version 2."`)
	step("bind to shop", chromedp.Steps(
		chromedp.SetValue(chromedp.ID("bind-client"), "shop"),
		chromedp.Click(chromedp.ID("bind"))))
	until("bound", `document.getElementById("bind-status").textContent === "Bound to shop."`)

	// A real introspection of the same token now has the field.
	if in := h.introspect(token); in["active"] != true || in["tenant"] != "acme" {
		t.Fatalf("after: %v", in)
	}

	step("the clients page shows the binding", chromedp.Steps(
		chromedp.Click(chromedp.ID("nav-clients")),
		chromedp.WaitVisible(chromedp.CSS(`#clients-table tr[data-client="shop"] td.bindings .chip`))))
	if name := eval("client name", `document.querySelector('#clients-table tr[data-client="shop"] td:nth-child(2)').textContent`); name != evilName {
		t.Fatalf("client name shown as %q", name)
	}
	if v := eval("markup", `String(document.images.length) + " " + document.title`); v != "0 keyhook console" {
		t.Fatalf("images and title: %q (markup from data ran)", v)
	}

	// A read-only delegated admin: sees the script and its one real call,
	// cannot save it.
	step("sign out", chromedp.Click(chromedp.ID("signout")))
	if v := eval("after sign-out", `String(sessionStorage.getItem("keyhook.console.token")) + " " +
		document.getElementById("client-id").value + document.getElementById("client-secret").value`); v != "null " {
		t.Fatalf("token or credentials kept after sign-out: %q", v)
	}
	signIn("viewer", viewerSecret)
	until("the script's call is counted", `(document.querySelector('#scripts-table tr[data-script="add-tenant"] td.stat-calls') || {}).textContent === "1"`)
	step("open the script as viewer", chromedp.Steps(
		chromedp.Click(chromedp.CSS(`#scripts-table tr[data-script="add-tenant"] a`)),
		chromedp.WaitVisible(chromedp.ID("source")),
		chromedp.SendKeys(chromedp.ID("source"), "// viewer\n"),
		chromedp.Click(chromedp.ID("save"))))
	until("the save is refused", `document.getElementById("save-status").textContent.startsWith("Not saved: ") &&
		document.getElementById("save-status").textContent.includes("keyhook:scripts.write")`)
	if r := h.admin(http.MethodGet, "/scripts/add-tenant", nil); r.str("source") != fixed {
		t.Fatalf("the viewer changed the script: %s", r.body)
	}
}
