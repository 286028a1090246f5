package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/keyhook/keyhook/engine"
)

// Resource indicators (RFC 8707; docs/resource-indicators.md), driven
// through real HTTP on a real SQLite file.

const (
	resAPI    = "https://api.example.com"
	resFiles  = "https://files.example.com/v1"
	resLedger = "urn:example:ledger"
	resRedir  = "http://127.0.0.1:9/cb"
)

// resourceSetup registers alice, a confidential client "app" that may
// ask for three resources and gets JWT access tokens, and a client
// "plain" that may ask for none.
func resourceSetup(t *testing.T, h *harness, extra map[string]any) {
	t.Helper()
	if r := h.admin(http.MethodPost, "/users", map[string]any{"username": "alice", "password": "alice-pw"}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}
	doc := map[string]any{"client_id": "app", "client_secret": "app-secret", "scope": "openid read",
		"grant_types":       []string{"authorization_code", "refresh_token", "client_credentials"},
		"redirect_uris":     []string{resRedir},
		"allowed_resources": []string{resAPI, resFiles, resLedger}, "access_token_as_jwt": true}
	for k, v := range extra {
		doc[k] = v
	}
	h.createClient(doc)
	h.createClient(map[string]any{"client_id": "plain", "client_secret": "plain-secret", "scope": "read",
		"grant_types": []string{"authorization_code", "refresh_token", "client_credentials"}, "redirect_uris": []string{resRedir}})
}

// authURLResources is an authorization request of client for resources.
func authURLResources(h *harness, client string, resources ...string) string {
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {resRedir}, "scope": {"read"}, "state": {"s"}}
	for _, r := range resources {
		q.Add("resource", r)
	}
	return h.url + "/oauth2/authorize?" + q.Encode()
}

// resourceCode signs alice in for an authorization of client for
// resources and returns the code.
func resourceCode(t *testing.T, h *harness, client string, resources ...string) string {
	t.Helper()
	resp := login(t, browser(), authURLResources(h, client, resources...), "alice", "alice-pw")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if resp.StatusCode != http.StatusSeeOther || code == "" {
		t.Fatalf("login: %d to %s", resp.StatusCode, loc)
	}
	return code
}

// tokenFor posts a token request with resource parameters.
func tokenFor(h *harness, id, secret string, vals url.Values, resources ...string) *response {
	h.t.Helper()
	for _, r := range resources {
		vals.Add("resource", r)
	}
	return h.form("/oauth2/token", vals, id, secret)
}

func exchange(h *harness, code string, resources ...string) *response {
	h.t.Helper()
	return tokenFor(h, "app", "app-secret", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {resRedir}}, resources...)
}

func refresh(h *harness, rt string, resources ...string) *response {
	h.t.Helper()
	return tokenFor(h, "app", "app-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, resources...)
}

// jwtClaims are the claims of a compact JWS, read without verifying it
// (other tests verify keyhook's signatures).
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWS payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("JWS payload %s: %v", b, err)
	}
	return m
}

// audOf is an aud claim as a list.
func audOf(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, len(a))
		for i, x := range a {
			out[i], _ = x.(string)
		}
		return out
	}
	return nil
}

// wantAud checks the aud of a token answer in its JWT and its
// introspection answer.
func wantAud(t *testing.T, h *harness, r *response, want ...string) *tokenResp {
	t.Helper()
	tok := h.mustDecodeToken(r)
	if got := audOf(jwtClaims(t, tok.AccessToken)["aud"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("JWT aud %v, want %v", got, want)
	}
	if got := audOf(h.introspect(tok.AccessToken)["aud"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("introspection aud %v, want %v", got, want)
	}
	return tok
}

func TestResourceCodeFlowAndRefresh(t *testing.T) {
	h := newHarness(t)
	resourceSetup(t, h, nil)

	// Granted two; no resource at the token endpoint: aud is both.
	tok := wantAud(t, h, exchange(h, resourceCode(t, h, "app", resAPI, resFiles)), resAPI, resFiles)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	// The refresh token keeps both: each refresh may ask for either.
	rt := tok.RefreshToken
	for _, res := range []string{resFiles, resAPI, resFiles} {
		next := wantAud(t, h, refresh(h, rt, res), res)
		rt = next.RefreshToken
	}
	wantAud(t, h, refresh(h, rt), resAPI, resFiles) // rotated once more, still both
	if in := h.introspect(tok.RefreshToken); in["active"] != false {
		t.Fatalf("rotated refresh token still active: %v", in)
	}

	t.Run("token request narrows the code's resources", func(t *testing.T) {
		tok := wantAud(t, h, exchange(h, resourceCode(t, h, "app", resAPI, resLedger), resLedger), resLedger)
		// The refresh token still covers both.
		wantAud(t, h, refresh(h, tok.RefreshToken, resAPI), resAPI)
	})
	t.Run("refresh for a resource not granted", func(t *testing.T) {
		tok := h.mustDecodeToken(exchange(h, resourceCode(t, h, "app", resAPI)))
		// Allowed for the client, but not granted at authorization.
		wantError(t, refresh(h, tok.RefreshToken, resFiles), 400, "invalid_target")
		wantError(t, refresh(h, tok.RefreshToken, resAPI, resFiles), 400, "invalid_target")
		wantError(t, refresh(h, tok.RefreshToken, "https://evil.example"), 400, "invalid_target")
		// The refused requests did not use the refresh token.
		wantAud(t, h, refresh(h, tok.RefreshToken, resAPI), resAPI)
	})
	t.Run("code for a resource not granted", func(t *testing.T) {
		code := resourceCode(t, h, "app", resAPI)
		wantError(t, exchange(h, code, resFiles), 400, "invalid_target")
		// Refused before it was consumed: the code still works.
		wantAud(t, h, exchange(h, code, resAPI), resAPI)
	})
	t.Run("code granted without resources", func(t *testing.T) {
		code := resourceCode(t, h, "app")
		wantError(t, exchange(h, code, resAPI), 400, "invalid_target")
		tok := wantAud(t, h, exchange(h, code), "app") // as without RFC 8707: the client's id
		wantError(t, refresh(h, tok.RefreshToken, resAPI), 400, "invalid_target")
		wantAud(t, h, refresh(h, tok.RefreshToken), "app")
	})
	t.Run("resource removed from the client since authorization", func(t *testing.T) {
		tok := h.mustDecodeToken(exchange(h, resourceCode(t, h, "app", resAPI, resFiles)))
		if r := h.admin(http.MethodPatch, "/clients/app", map[string]any{"allowed_resources": []string{resAPI}}); r.status != 200 {
			t.Fatalf("patch: %d %s", r.status, r.body)
		}
		t.Cleanup(func() {
			h.admin(http.MethodPatch, "/clients/app", map[string]any{"allowed_resources": []string{resAPI, resFiles, resLedger}})
		})
		wantError(t, refresh(h, tok.RefreshToken, resFiles), 400, "invalid_target")
		// Without resource: what is still allowed of the grant.
		wantAud(t, h, refresh(h, tok.RefreshToken), resAPI)
	})
}

func TestResourceAuthorizationErrors(t *testing.T) {
	h := newHarness(t)
	resourceSetup(t, h, nil)
	many := make([]string, 21)
	for i := range many {
		many[i] = resAPI
	}
	for _, tc := range []struct {
		name      string
		client    string
		resources []string
	}{
		{"not allowed for the client", "app", []string{"https://other.example"}},
		{"one of two not allowed", "app", []string{resAPI, "https://other.example"}},
		{"client without allowed_resources", "plain", []string{resAPI}},
		{"relative", "app", []string{"/api"}},
		{"no scheme", "app", []string{"api.example.com"}},
		{"fragment", "app", []string{resAPI + "#x"}},
		{"empty", "app", []string{""}},
		{"space", "app", []string{"https://api.example.com/a b"}},
		{"too long", "app", []string{resAPI + "/" + strings.Repeat("a", 2048)}},
		{"too many", "app", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Invalid before the user is asked anything: back to the
			// client with invalid_target (RFC 8707 §2, RFC 6749 §4.1.2.1).
			resp, err := browser().Get(authURLResources(h, tc.client, tc.resources...))
			if err != nil {
				t.Fatal(err)
			}
			readAll(resp)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc.String(), resRedir+"?") ||
				loc.Query().Get("error") != "invalid_target" || loc.Query().Get("state") != "s" || loc.Query().Get("code") != "" {
				t.Fatalf("%d to %s", resp.StatusCode, loc)
			}
		})
	}
	t.Run("other parameters still may not repeat", func(t *testing.T) {
		resp, err := browser().Get(authURLResources(h, "app", resAPI) + "&scope=read")
		if err != nil {
			t.Fatal(err)
		}
		if page := readAll(resp); resp.StatusCode != 400 || !strings.Contains(page, "repeated") {
			t.Fatalf("%d %s", resp.StatusCode, page)
		}
	})
	t.Run("a repeated resource counts once", func(t *testing.T) {
		wantAud(t, h, exchange(h, resourceCode(t, h, "app", resAPI, resAPI)), resAPI)
	})
}

func TestResourceClientCredentials(t *testing.T) {
	h := newHarness(t)
	resourceSetup(t, h, nil)
	cc := func(id, secret string, resources ...string) *response {
		return tokenFor(h, id, secret, url.Values{"grant_type": {"client_credentials"}}, resources...)
	}
	wantAud(t, h, cc("app", "app-secret", resLedger), resLedger)
	wantAud(t, h, cc("app", "app-secret", resAPI, resFiles), resAPI, resFiles)
	wantAud(t, h, cc("app", "app-secret"), "app") // none asked: as before RFC 8707

	// A client without allowed_resources, and opaque tokens: unchanged.
	plain := h.mustDecodeToken(cc("plain", "plain-secret"))
	if in := h.introspect(plain.AccessToken); in["aud"] != "plain" {
		t.Fatalf("introspection %v", in)
	}
	many := make([]string, 21)
	for i := range many {
		many[i] = resAPI
	}
	for _, tc := range []struct {
		name, id, secret string
		resources        []string
	}{
		{"not allowed", "app", "app-secret", []string{"https://other.example"}},
		{"client without allowed_resources", "plain", "plain-secret", []string{resAPI}},
		{"relative", "app", "app-secret", []string{"api"}},
		{"fragment", "app", "app-secret", []string{resAPI + "#frag"}},
		{"control character", "app", "app-secret", []string{resAPI + "\n"}},
		{"too long", "app", "app-secret", []string{"https://" + strings.Repeat("a", 2050)}},
		{"too many", "app", "app-secret", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cc(tc.id, tc.secret, tc.resources...)
			wantError(t, r, 400, "invalid_target")
			if r.str("error_description") == "" {
				t.Fatalf("no description: %s", r.body)
			}
		})
	}
	t.Run("wrong client secret is still invalid_client", func(t *testing.T) {
		wantError(t, cc("app", "wrong", "https://other.example"), 401, "invalid_client")
	})
}

func TestResourceVisibleToScripts(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "res", "type": "update_token", "timeout_ms": 5000, "source": `
function modifyAccessToken(token, context) {
  token.claims.seen_resources = context.token.resources.join(" ");
  token.claims.seen_audience = context.token.audience.join(" ");
  return true;
}
function modifyRefreshToken(token, context) {
  token.claims.granted = context.token.resources.join(" ");
  return true;
}`})
	h.createScript(map[string]any{"name": "res-intro", "type": "introspection", "timeout_ms": 5000, "source": `
function modifyResponse(response, context) {
  response.granted = context.token.resources.join(" ");
  return true;
}`})
	resourceSetup(t, h, map[string]any{"update_token_scripts": []string{"res"}, "introspection_scripts": []string{"res-intro"}})
	tok := h.mustDecodeToken(exchange(h, resourceCode(t, h, "app", resAPI, resFiles), resFiles))
	c := jwtClaims(t, tok.AccessToken)
	if c["seen_resources"] != resFiles || c["seen_audience"] != resFiles {
		t.Fatalf("claims %v", c)
	}
	if in := h.introspect(tok.RefreshToken); in["granted"] != resAPI+" "+resFiles {
		t.Fatalf("refresh token introspection %v", in)
	}
	c = jwtClaims(t, h.mustDecodeToken(tokenFor(h, "app", "app-secret", url.Values{"grant_type": {"client_credentials"}})).AccessToken)
	if c["seen_resources"] != "" || c["seen_audience"] != "app" {
		t.Fatalf("claims without resources %v", c)
	}
}

func TestResourceReuseInterval(t *testing.T) {
	h := newHarness(t)
	resourceSetup(t, h, map[string]any{"refresh_token_reuse_interval": 60})
	tok := h.mustDecodeToken(exchange(h, resourceCode(t, h, "app", resAPI, resFiles)))
	first := h.mustDecodeToken(refresh(h, tok.RefreshToken, resAPI))
	// A retry of the same request within the interval: the same answer.
	if again := h.mustDecodeToken(refresh(h, tok.RefreshToken, resAPI)); again.AccessToken != first.AccessToken {
		t.Fatal("a retry within the reuse interval got another answer")
	}
	// The rotated token presented for another resource is no retry:
	// reuse, which ends the family.
	wantError(t, refresh(h, tok.RefreshToken, resFiles), 400, "invalid_grant")
	if in := h.introspect(first.AccessToken); in["active"] != false {
		t.Fatalf("family not revoked: %v", in)
	}
}

func TestResourceAllowedResourcesValidation(t *testing.T) {
	h := newHarness(t)
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = "https://api.example.com/" + strings.Repeat("x", i+1)
	}
	for _, tc := range []struct {
		name string
		list any
	}{
		{"relative", []string{"/api"}},
		{"no scheme", []string{"api.example.com"}},
		{"fragment", []string{"https://api.example.com/#x"}},
		{"empty", []string{""}},
		{"no host", []string{"https:///path"}},
		{"space", []string{"https://api.example.com/a b"}},
		{"non-ASCII", []string{"https://bücher.example"}},
		{"too long", []string{"https://api.example.com/" + strings.Repeat("a", 2048)}},
		{"duplicate", []string{resAPI, resAPI}},
		{"too many", tooMany},
		{"not a list", "https://api.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "c", "allowed_resources": tc.list})
			if r.status != 400 || !strings.Contains(string(r.body), "allowed_resources") {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	ok := []string{resAPI, resFiles, resLedger, "https://api.example.com/v2?tenant=1"}
	h.createClient(map[string]any{"client_id": "c", "allowed_resources": ok})
	r := h.admin(http.MethodGet, "/clients/c", nil)
	if got := r.json["allowed_resources"]; !reflect.DeepEqual(audOf(got), ok) {
		t.Fatalf("read back %v", got)
	}
	if r := h.admin(http.MethodPatch, "/clients/c", map[string]any{"allowed_resources": []string{"relative"}}); r.status != 400 ||
		!strings.Contains(string(r.body), "allowed_resources") {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "d"})
	if r := h.admin(http.MethodGet, "/clients/d", nil); !reflect.DeepEqual(r.json["allowed_resources"], []any{}) {
		t.Fatalf("default %v", r.json["allowed_resources"])
	}
}

// resourceRestart issues on one server and refreshes on a second on the
// same database: the client's allowed_resources, the code's and the
// refresh token's resources are all stored.
func resourceRestart(t *testing.T, dsn string) {
	a := newHarness(t, withDSN(dsn))
	resourceSetup(t, a, nil)
	code := resourceCode(t, a, "app", resAPI, resLedger)
	b := newHarness(t, withDSN(dsn))
	tok := wantAud(t, b, exchange(b, code), resAPI, resLedger)
	wantAud(t, b, refresh(b, tok.RefreshToken, resLedger), resLedger)
	wantAud(t, b, tokenFor(b, "app", "app-secret", url.Values{"grant_type": {"client_credentials"}}, resFiles), resFiles)
	wantError(t, tokenFor(b, "app", "app-secret", url.Values{"grant_type": {"client_credentials"}}, "https://other.example"), 400, "invalid_target")
}

func TestResourcePersistedSQLite(t *testing.T) {
	resourceRestart(t, "sqlite:"+filepath.Join(t.TempDir(), "keyhook.db"))
}

func TestResourcePersistedPostgres(t *testing.T) {
	resourceRestart(t, pgDSN(t))
}

// TestResourceSeedRoundTrip: export writes allowed_resources, import
// reads them back (the client keeps asking for them) and refuses a list
// the admin API refuses.
func TestResourceSeedRoundTrip(t *testing.T) {
	ctx := context.Background()
	a := newHarness(t)
	resourceSetup(t, a, nil)
	seed, err := a.eng.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(seed)
	if !strings.Contains(string(raw), `"allowed_resources":["`+resAPI+`","`+resFiles+`","`+resLedger+`"]`) {
		t.Fatalf("export lacks allowed_resources: %s", raw)
	}
	var again engine.Seed
	if err := json.Unmarshal(raw, &again); err != nil {
		t.Fatal(err)
	}
	for _, c := range again.Clients {
		if c.ClientID == "app" {
			c.ClientSecret = "app-secret" // exports leave secrets out
		}
	}
	b := newHarness(t)
	if _, err := b.eng.Import(ctx, &again); err != nil {
		t.Fatalf("import: %v", err)
	}
	wantAud(t, b, tokenFor(b, "app", "app-secret", url.Values{"grant_type": {"client_credentials"}}, resLedger), resLedger)

	bad := &engine.Seed{Clients: []*engine.ClientDoc{{ClientID: "bad", AllowedResources: []string{"https://x.example#f"}}}}
	if _, err := b.eng.Import(ctx, bad); err == nil || !strings.Contains(err.Error(), "allowed_resources") {
		t.Fatalf("import of a fragment: %v", err)
	}
}

// TestResourceDiscovery: protected_resources (RFC 9728 §4) lists the
// resources clients mark public with their public_resources attribute,
// and only resources those clients may ask for; without any, it is left
// out rather than listing every client's resources.
func TestResourceDiscovery(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "private", "allowed_resources": []string{"https://internal.example"}})
	if r := h.do(mustGet(h.url + "/.well-known/openid-configuration")); r.json == nil || r.json["protected_resources"] != nil {
		t.Fatalf("protected_resources without public resources: %d %s", r.status, r.body)
	}
	h.createClient(map[string]any{"client_id": "a", "allowed_resources": []string{resAPI, "https://secret.example"},
		"attributes": map[string]any{"public_resources": resAPI + " https://not-its-own.example"}})
	h.createClient(map[string]any{"client_id": "b", "allowed_resources": []string{resLedger},
		"attributes": map[string]any{"public_resources": resLedger}})
	if got, want := discovered(t, h, "protected_resources"), []string{resAPI, resLedger}; !reflect.DeepEqual(got, want) {
		t.Fatalf("protected_resources = %v, want %v", got, want)
	}
}

// TestResourcePasswordGrantAndOpaqueTokens: the password grant takes
// resource like client_credentials, its refresh token covers what was
// asked, and opaque access tokens answer the aud in introspection.
func TestResourcePasswordGrantAndOpaqueTokens(t *testing.T) {
	h := newHarness(t)
	resourceSetup(t, h, nil)
	h.createClient(map[string]any{"client_id": "opaque", "client_secret": "opaque-secret", "scope": "read",
		"grant_types": []string{"password", "refresh_token"}, "allowed_resources": []string{resAPI, resFiles, resLedger}})
	pw := func(resources ...string) *response {
		return tokenFor(h, "opaque", "opaque-secret", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, resources...)
	}
	introspectAud := func(r *response) (*tokenResp, []string) {
		t.Helper()
		tok := h.mustDecodeToken(r)
		if strings.Count(tok.AccessToken, ".") == 2 {
			t.Fatalf("not an opaque token: %s", tok.AccessToken)
		}
		return tok, audOf(h.introspect(tok.AccessToken)["aud"])
	}
	tok, aud := introspectAud(pw(resAPI, resFiles))
	if !reflect.DeepEqual(aud, []string{resAPI, resFiles}) {
		t.Fatalf("aud %v", aud)
	}
	rt := tok.RefreshToken
	if in := h.introspect(rt); in["aud"] != "opaque" {
		t.Fatalf("refresh token aud %v", in["aud"])
	}
	r := tokenFor(h, "opaque", "opaque-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, resFiles)
	if tok, aud = introspectAud(r); !reflect.DeepEqual(aud, []string{resFiles}) {
		t.Fatalf("refreshed aud %v", aud)
	}
	// resLedger is allowed for the client but was not asked with the password.
	wantError(t, tokenFor(h, "opaque", "opaque-secret", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, resLedger), 400, "invalid_target")
	wantError(t, pw("https://other.example"), 400, "invalid_target")
	// Checked before the password: a wrong resource costs no hashing and
	// says nothing about the password.
	wantError(t, tokenFor(h, "opaque", "opaque-secret", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wrong"}}, "relative"), 400, "invalid_target")
}

// TestResourceScriptSetsAudience: aud stays a claim update-token scripts
// may change, and what they set is the audience introspection answers.
func TestResourceScriptSetsAudience(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "first-only", "type": "update_token", "timeout_ms": 5000, "source": `
function modifyAccessToken(token, context) {
  if (context.token.resources.length > 1) token.claims.aud = context.token.resources[0];
  return true;
}`})
	resourceSetup(t, h, map[string]any{"update_token_scripts": []string{"first-only"}})
	wantAud(t, h, tokenFor(h, "app", "app-secret", url.Values{"grant_type": {"client_credentials"}}, resLedger, resAPI), resLedger)
	wantAud(t, h, tokenFor(h, "app", "app-secret", url.Values{"grant_type": {"client_credentials"}}, resFiles), resFiles)
}
