// keyhook admin console (docs/console.md). Everything it shows or changes
// goes through the admin API with the signed-in client's access token.
// Names, sources and logs are data anyone with write access may have
// written: they only ever go into the page as text (textContent), never
// as markup.
"use strict";

(function () {
  const TOKEN_KEY = "keyhook.console.token";
  const $ = (id) => document.getElementById(id);

  // el makes an element with text and attributes; children may be
  // elements or strings (made text nodes).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.includes("-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c);
    return e;
  }

  // The token lives in this tab's sessionStorage: it ends with the tab
  // and is never sent anywhere but this server.
  let session = null;
  try { session = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null"); } catch (_) { session = null; }

  class APIError extends Error {
    constructor(status, body) {
      super((body && (body.error_description || body.error)) || ("HTTP " + status));
      this.status = status;
      this.body = body;
    }
  }

  async function api(method, path, body, contentType) {
    if (!session) throw new APIError(401, { error: "not signed in" });
    const headers = { Authorization: "Bearer " + session.token, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = contentType || "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch("/admin/v1" + path, init);
    let data = null;
    const text = await r.text();
    if (text) { try { data = JSON.parse(text); } catch (_) { data = { error: text }; } }
    if (r.status === 401) {
      signOut("Your session ended: sign in again.");
    }
    if (!r.ok) throw new APIError(r.status, data);
    return data;
  }

  function say(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.className = isError ? "error" : "info";
    m.hidden = !text;
  }

  function show(view) {
    for (const v of ["signin-view", "clients-view", "scripts-view", "editor-view"]) {
      $(v).hidden = v !== view;
    }
    $("nav").hidden = view === "signin-view";
  }

  // --- sign in and out ---

  async function signIn(ev) {
    ev.preventDefault();
    const id = $("client-id").value, secret = $("client-secret").value;
    $("signin-error").hidden = true;
    // RFC 6749 §2.3.1: the id and secret are form-encoded, then Basic.
    const basic = btoa(encodeURIComponent(id) + ":" + encodeURIComponent(secret));
    let r, data = null;
    try {
      r = await fetch("/oauth2/token", {
        method: "POST", cache: "no-store", credentials: "omit",
        headers: { Authorization: "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded" },
        body: "grant_type=client_credentials",
      });
      data = await r.json();
    } catch (e) {
      return signInError("cannot reach the server: " + e.message);
    }
    if (!r.ok || !data.access_token) {
      return signInError((data && (data.error_description || data.error)) || ("HTTP " + r.status));
    }
    session = { token: data.access_token, client: id, scope: data.scope || "",
      expires: Date.now() + (data.expires_in || 0) * 1000 };
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(session));
    $("client-secret").value = "";
    say("");
    start();
  }

  function signInError(msg) {
    const e = $("signin-error");
    e.textContent = msg;
    e.hidden = false;
  }

  function signOut(msg) {
    session = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("signin-form").reset();
    current = null;
    show("signin-view");
    say(msg || "", !!msg);
  }

  function start() {
    $("whoami").textContent = session.client + " (" + session.scope + ")";
    showScripts();
  }

  // --- clients ---

  let clients = [], scripts = [];

  async function loadClients() {
    clients = await api("GET", "/clients");
    clients.sort((a, b) => a.client_id.localeCompare(b.client_id));
    return clients;
  }

  async function loadScripts() {
    scripts = await api("GET", "/scripts");
    scripts.sort((a, b) => a.name.localeCompare(b.name));
    return scripts;
  }

  function bindingField(type) {
    return type === "update_token" ? "update_token_scripts" : "introspection_scripts";
  }

  // setBinding binds (on) or unbinds the script to the client, with a
  // merge patch of the one list it changes.
  async function setBinding(clientID, script, on) {
    const c = await api("GET", "/clients/" + encodeURIComponent(clientID));
    const field = bindingField(script.type);
    let list = (c[field] || []).filter((n) => n !== script.name);
    if (on) list.push(script.name);
    return api("PATCH", "/clients/" + encodeURIComponent(clientID), { [field]: list }, "application/merge-patch+json");
  }

  async function showClients() {
    show("clients-view");
    say("");
    let cs, ss;
    try {
      [cs, ss] = await Promise.all([loadClients(), loadScripts().catch(() => [])]);
    } catch (e) { return say("Cannot list clients: " + e.message, true); }
    const tbody = $("clients-table").tBodies[0];
    tbody.replaceChildren();
    for (const c of cs) {
      const tr = el("tr", { "data-client": c.client_id });
      tr.append(el("td", { text: c.client_id }), el("td", { text: c.client_name || "" }), el("td", { text: c.scope || "" }));
      for (const field of ["introspection_scripts", "update_token_scripts"]) {
        const td = el("td", { class: "bindings" });
        for (const name of c[field] || []) {
          const s = ss.find((x) => x.name === name) || { name, type: field === "update_token_scripts" ? "update_token" : "introspection" };
          const unbind = el("button", { type: "button", class: "small", text: "unbind", title: "unbind " + name });
          unbind.addEventListener("click", () => act(() => setBinding(c.client_id, s, false), "Unbound " + name + " from " + c.client_id, showClients));
          td.append(el("span", { class: "chip" }, el("a", { href: "#", text: name, onclick: (ev) => { ev.preventDefault(); openScript(name); } }), " ", unbind));
        }
        tr.append(td);
      }
      const sel = el("select", { "aria-label": "script to bind" });
      for (const s of ss) sel.append(el("option", { value: s.name, text: s.name + " (" + s.type + ")" }));
      const bind = el("button", { type: "button", class: "small", text: "bind" });
      bind.addEventListener("click", () => {
        const s = ss.find((x) => x.name === sel.value);
        if (s) act(() => setBinding(c.client_id, s, true), "Bound " + s.name + " to " + c.client_id, showClients);
      });
      tr.append(el("td", {}, sel, " ", bind));
      tbody.append(tr);
    }
  }

  // act runs an API action and says how it went.
  async function act(fn, done, then) {
    try {
      await fn();
      if (then) await then();
      say(done);
    } catch (e) {
      say(e.message, true);
    }
  }

  // --- scripts ---

  function fmt(v) { return v === null || v === undefined ? "—" : (Math.round(v * 1000) / 1000).toString(); }

  async function showScripts() {
    show("scripts-view");
    say("");
    let ss, stats = null;
    try {
      ss = await loadScripts();
    } catch (e) { return say("Cannot list scripts: " + e.message, true); }
    try { stats = (await api("GET", "/script-stats")).scripts; } catch (_) { stats = null; }
    const tbody = $("scripts-table").tBodies[0];
    tbody.replaceChildren();
    for (const s of ss) {
      const st = stats && stats.find((x) => x.name === s.name);
      const open = el("a", { href: "#", text: s.name });
      open.addEventListener("click", (ev) => { ev.preventDefault(); openScript(s.name); });
      const cells = [s.type, s.enabled === false ? "no" : "yes", String(s.version_number || "")];
      const nums = st ? [String(st.calls), String(st.errors), String(st.timeouts), fmt(st.mean_ms), fmt(st.p50_ms), fmt(st.p99_ms)]
        : ["—", "—", "—", "—", "—", "—"];
      const tr = el("tr", { "data-script": s.name }, el("td", {}, open));
      for (const v of cells) tr.append(el("td", { text: v }));
      nums.forEach((v, i) => tr.append(el("td", { class: "num stat-" + ["calls", "errors", "timeouts", "mean", "p50", "p99"][i], text: v })));
      tbody.append(tr);
    }
  }

  const templates = {
    introspection: "function modifyResponse(response, context) {\n  // response is the introspection answer (RFC 7662); edit it in place.\n  return true;\n}\n",
    update_token: "function modifyAccessToken(token, context) {\n  // token.header and token.claims of the access token about to be issued.\n  return true;\n}\n",
  };

  async function newScript(ev) {
    ev.preventDefault();
    const name = $("new-script-name").value, type = $("new-script-type").value;
    try {
      await api("POST", "/scripts", { name, type, source: templates[type], timeout_ms: 1000 });
    } catch (e) { return say("Cannot create " + name + ": " + e.message, true); }
    $("new-script-name").value = "";
    openScript(name);
  }

  // --- the editor ---

  let current = null; // the script open in the editor, as last read or saved
  let checkTimer = null, checkSeq = 0;

  const functions = {
    introspection: ["modifyResponse"],
    update_token: ["modifyAccessToken", "modifyRefreshToken", "getAccessTokenLifetimeInSeconds",
      "getIdTokenLifetimeInSeconds", "getRefreshTokenLifetimeInSeconds"],
  };

  async function openScript(name) {
    say("");
    let s, cs;
    try {
      s = await api("GET", "/scripts/" + encodeURIComponent(name));
      cs = await loadClients().catch(() => []);
    } catch (e) { return say("Cannot open " + name + ": " + e.message, true); }
    current = s;
    show("editor-view");
    $("editor-name").textContent = s.name;
    $("editor-meta").textContent = s.type + ", version " + (s.version_number || "?");
    $("source").value = s.source;
    $("save-status").textContent = "";
    $("bind-status").textContent = "";
    $("try-result").hidden = true;
    for (const id of ["try-client", "bind-client"]) {
      const sel = $(id);
      sel.replaceChildren();
      for (const c of cs) sel.append(el("option", { value: c.client_id, text: c.client_id + (c.client_name ? " — " + c.client_name : "") }));
    }
    const fsel = $("try-function");
    fsel.replaceChildren();
    for (const f of functions[s.type] || ["modifyResponse"]) fsel.append(el("option", { value: f, text: f }));
    renderGutter(null);
    check();
  }

  // renderGutter numbers the editor's lines and marks the one with a
  // syntax error.
  function renderGutter(problem) {
    const n = $("source").value.split("\n").length;
    const g = $("gutter");
    g.replaceChildren();
    for (let i = 1; i <= n; i++) {
      const ln = el("div", { class: "ln", text: String(i), "data-line": String(i) });
      if (problem && problem.line === i) {
        ln.classList.add("error");
        ln.title = "column " + problem.column + ": " + problem.message;
      }
      g.append(ln);
    }
    g.scrollTop = $("source").scrollTop;
  }

  let lastProblem = null;

  function onEdit() {
    renderGutter(lastProblem);
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, 300);
    $("save-status").textContent = "";
  }

  // check asks the server to compile the editor's source (never to run
  // it) and marks the line of the first syntax error.
  async function check() {
    const seq = ++checkSeq;
    const status = $("check-status");
    let res;
    try {
      res = await api("POST", "/script-check", { source: $("source").value });
    } catch (e) {
      if (seq !== checkSeq) return;
      status.textContent = "Not checked: " + e.message;
      status.className = "status warn";
      return;
    }
    if (seq !== checkSeq) return; // an older answer than the text
    lastProblem = res.errors && res.errors.length ? res.errors[0] : null;
    renderGutter(lastProblem);
    if (lastProblem) {
      status.textContent = "Syntax error at line " + lastProblem.line + ", column " + lastProblem.column + ": " + lastProblem.message;
      status.className = "status error";
    } else {
      status.textContent = "Compiles.";
      status.className = "status ok";
    }
  }

  async function save() {
    const st = $("save-status");
    st.textContent = "Saving…";
    st.className = "status";
    try {
      current = await api("PATCH", "/scripts/" + encodeURIComponent(current.name), { source: $("source").value },
        "application/merge-patch+json");
    } catch (e) {
      st.textContent = "Not saved: " + e.message;
      st.className = "status error";
      return;
    }
    $("editor-meta").textContent = current.type + ", version " + (current.version_number || "?");
    st.textContent = "Saved as version " + current.version_number + ".";
    st.className = "status ok";
  }

  async function bind() {
    const st = $("bind-status"), client = $("bind-client").value;
    try {
      await setBinding(client, current, true);
    } catch (e) {
      st.textContent = "Not bound: " + e.message;
      st.className = "status error";
      return;
    }
    st.textContent = "Bound to " + client + ".";
    st.className = "status ok";
  }

  // flatten lists the leaves of v as path → JSON text, for the diff.
  function flatten(v, path, out) {
    if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0) {
      for (const k of Object.keys(v).sort()) flatten(v[k], path ? path + "." + k : k, out);
    } else {
      out.set(path || "(value)", JSON.stringify(v));
    }
    return out;
  }

  function renderDiff(before, after) {
    const tbody = $("try-diff").tBodies[0];
    tbody.replaceChildren();
    const a = new Map(), b = new Map();
    (before || []).forEach((v, i) => flatten(v, (before.length > 1 ? "args[" + i + "]" : ""), a));
    (after || []).forEach((v, i) => flatten(v, (after.length > 1 ? "args[" + i + "]" : ""), b));
    const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
    let changed = 0;
    for (const p of paths) {
      const x = a.get(p), y = b.get(p);
      let kind, sign, text;
      if (x === undefined) { kind = "add"; sign = "+"; text = y; }
      else if (y === undefined) { kind = "del"; sign = "−"; text = x; }
      else if (x !== y) { kind = "chg"; sign = "~"; text = x + " → " + y; }
      else { kind = "same"; sign = " "; text = x; }
      if (kind !== "same") changed++;
      tbody.append(el("tr", { class: "diff-" + kind, "data-path": p },
        el("td", { class: "sign", text: sign }), el("td", { class: "path", text: p }), el("td", { class: "value", text: text })));
    }
    if (!changed) tbody.prepend(el("tr", { class: "diff-none" }, el("td", { colSpan: 3, text: "No edits." })));
  }

  async function tryIt() {
    const client = $("try-client").value, fn = $("try-function").value;
    const out = $("try-result"), errp = $("try-error");
    if (!client) return say("Pick a client to try the script on.", true);
    let sample, res;
    try {
      sample = await api("GET", "/clients/" + encodeURIComponent(client) + "/sample?function=" + encodeURIComponent(fn));
      res = await api("POST", "/scripts/" + encodeURIComponent(current.name) + "/test",
        { function: sample.function, args: sample.args, context: sample.context, source: $("source").value });
    } catch (e) {
      return say("Cannot try it: " + e.message, true);
    }
    say("");
    out.hidden = false;
    $("try-duration").textContent = "Ran in " + fmt(res.duration_ms) + " ms.";
    $("try-return").textContent = "Returned " + JSON.stringify(res.result) + ".";
    errp.hidden = !res.error;
    errp.textContent = res.error || "";
    renderDiff(sample.args, res.error ? sample.args : res.args_after);
    $("try-logs").textContent = (res.logs || []).join("\n") || "(none)";
  }

  // --- wiring ---

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut(""));
    $("nav-clients").addEventListener("click", showClients);
    $("nav-scripts").addEventListener("click", showScripts);
    $("new-script-form").addEventListener("submit", newScript);
    $("source").addEventListener("input", onEdit);
    $("source").addEventListener("scroll", () => { $("gutter").scrollTop = $("source").scrollTop; });
    $("source").addEventListener("keydown", (ev) => {
      if (ev.key === "Tab" && !ev.shiftKey && !ev.ctrlKey && !ev.metaKey) {
        ev.preventDefault();
        const t = ev.target, s = t.selectionStart;
        t.setRangeText("  ", s, t.selectionEnd, "end");
        onEdit();
      }
    });
    $("save").addEventListener("click", save);
    $("bind").addEventListener("click", bind);
    $("try").addEventListener("click", tryIt);
    if (session && session.expires > Date.now()) start();
    else signOut("");
  });
})();
