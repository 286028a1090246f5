package web_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestScriptContextHidesCredentials reproduces a script that copies
// context.request into a token claim and into an introspection answer, so
// that whoever reads the token learns the credentials of the request that
// made it: no credential header or parameter may reach context.request,
// while ordinary custom parameters and headers still do (scripts rely on
// them, docs/sandbox.md).
func TestScriptContextHidesCredentials(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "copy-request-at-issue", "type": "update_token", "source": `
function modifyAccessToken(token, context) { token.claims.seen_at_issue = JSON.stringify(context.request); return true; }`})
	h.createScript(introspectionScript("copy-request-at-introspection",
		`response.seen_at_introspection = JSON.stringify(context.request); return true;`, nil))
	scripts := map[string]any{
		"update_token_scripts":  []string{"copy-request-at-issue"},
		"introspection_scripts": []string{"copy-request-at-introspection"},
	}
	value := func(name string) string { return "credential-value-of-" + strings.ToLower(name) }
	client := func(id, secret, method string) {
		doc := map[string]any{"client_id": id, "client_secret": secret, "scope": "read", "token_endpoint_auth_method": method}
		for k, v := range scripts {
			doc[k] = v
		}
		h.createClient(doc)
	}
	client("leaky", "leaky-secret", "client_secret_basic")
	// The client_secret row sends this client's real secret in the form.
	client("leaky-post", value("client_secret"), "client_secret_post")

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("leaky:leaky-secret"))
	for _, tc := range []struct {
		header, param string
		// introspectionOnly: the token endpoint would refuse the request
		// before any script runs (a second client authentication method).
		introspectionOnly bool
	}{
		{header: "Cookie"},
		{header: "Proxy-Authorization"},
		{header: "DPoP"},
		{header: "X-Api-Key"},
		{header: "Api-Key"},
		{header: "X-Auth-Token"},
		{header: "X-Access-Token"},
		{header: "X-Amz-Security-Token"},
		{header: "X-Csrf-Token"},
		{header: "X-Xsrf-Token"},
		{header: "Set-Cookie"},
		{header: "X-Forwarded-Authorization"},
		{header: "X-Original-Authorization"},
		// By the name rule: fragments and the -key suffix.
		{header: "X-Upstream-Authorization"},
		{header: "X-Session-Id"},
		{header: "X-Client-Secret"},
		{header: "X-Db-Password"},
		{header: "X-Refresh-Token"},
		{header: "X-Goog-Apikey"},
		{header: "X-Client-Credentials"},
		{header: "X-Functions-Key"},
		{header: "X_Api_Key"},
		{param: "client_secret"},
		{param: "client_assertion", introspectionOnly: true},
		{param: "password"},
		{param: "code"},
		{param: "code_verifier"},
		{param: "refresh_token"},
		{param: "token"},
		{param: "assertion"},
		{param: "subject_token"},
		{param: "actor_token"},
		{param: "device_code"},
		{param: "user_code"},
		{param: "csrf"},
		{param: "csrf_token"},
		{param: "id_token_hint"},
		{param: "access_token"},
		{param: "new_password"},
		{param: "app_secret"},
	} {
		name := tc.header + tc.param
		secret := value(name)
		if tc.header == "DPoP" {
			// The token endpoint checks a proof before any script runs:
			// a real one, which scripts must not see either (RFC 9449).
			secret = newDPoPKey(t, "ES256").proof(t, h, "POST", h.url+"/oauth2/token", "")
		}
		t.Run(name, func(t *testing.T) {
			// Everything a request carries that no script may see.
			never := []string{secret, basic, strings.TrimPrefix(basic, "Basic "), "leaky-secret", h.adminToken, adminSecret}
			// What scripts must still see.
			visible := []string{`"custom_param":"visible-param-value"`, `"x-tenant-hint":"visible-header-value"`}
			send := func(path string, vals url.Values, auth string) *response {
				t.Helper()
				vals.Set("custom_param", "visible-param-value")
				if tc.param != "" && vals.Get(tc.param) == "" {
					vals.Set(tc.param, secret)
				}
				req, _ := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(vals.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Tenant-Hint", "visible-header-value")
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				if tc.header != "" {
					// Set as is, not canonicalized: X_Api_Key stays so.
					req.Header[tc.header] = []string{secret}
				}
				return h.do(req)
			}
			check := func(where string, body []byte, visible ...string) {
				t.Helper()
				for _, v := range never {
					if strings.Contains(string(body), v) {
						t.Errorf("%s: a script saw %q: %s", where, v, body)
					}
				}
				for _, v := range visible {
					if !strings.Contains(string(body), strings.ReplaceAll(v, `"`, `\"`)) {
						t.Errorf("%s: a script did not see %s: %s", where, v, body)
					}
				}
			}

			tok := h.mustToken("leaky", "leaky-secret", "").AccessToken
			if !tc.introspectionOnly {
				vals, auth := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}, basic
				if tc.param == "client_secret" {
					vals.Set("client_id", "leaky-post")
					auth = ""
				}
				r := send("/oauth2/token", vals, auth)
				tr := h.mustDecodeToken(r)
				check("token response", r.body)
				tok = tr.AccessToken
				in := h.introspect(tok)
				raw, _ := json.Marshal(in)
				check("claims stored at issue", raw, append(visible, `"grant_type":"client_credentials"`, `"scope":"read"`)...)
			}
			r := send("/oauth2/introspect", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, "Bearer "+h.adminToken)
			if r.status != http.StatusOK || r.json["active"] != true {
				t.Fatalf("introspection: %d %s", r.status, r.body)
			}
			never = append(never, tok)
			seen, _ := json.Marshal(r.json["seen_at_introspection"])
			check("introspection answer", r.body)
			check("introspection script", seen, append(visible, `"token_type_hint":"access_token"`)...)
		})
	}
}

// jwtHeader is the decoded JOSE header of a compact JWS, read without
// go-jose so that fields go-jose would refuse (crit, b64) are still seen.
func jwtHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	part, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatalf("JWS header %q: %v", part, err)
	}
	var hdr map[string]any
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatalf("JWS header %s: %v", b, err)
	}
	return hdr
}

// TestScriptCannotForgeJWTHeader reproduces scripts that rewrite the JOSE
// header of an access token or ID token so that a relying party fetches
// keys from an attacker (jku, x5u, jwk, x5c), misreads the payload (cty,
// zip, b64, crit) or picks the wrong key or algorithm (alg, kid, typ):
// RFC 7515 §4.1, RFC 7797 §3, RFC 8725 §3.1. Such edits are ignored; the
// token keeps the server's header and verifies against the JWKS.
func TestScriptCannotForgeJWTHeader(t *testing.T) {
	h := newHarness(t)
	passwordSetup(t, h)
	for _, tc := range []struct {
		field, value string // value is JavaScript
	}{
		{"alg", `"none"`},
		{"kid", `"forged-kid"`},
		{"typ", `"JWT+forged"`},
		{"cty", `"JWT"`},
		{"jku", `"https://evil.example/jwks"`},
		{"x5u", `"https://evil.example/cert.pem"`},
		{"x5c", `["MIIBforged"]`},
		{"jwk", `{"kty": "oct", "k": "c2VjcmV0"}`},
		{"crit", `["exp"]`},
		{"zip", `"DEF"`},
		{"b64", `false`},
	} {
		t.Run(tc.field, func(t *testing.T) {
			name := "forge-" + tc.field
			forge := fmt.Sprintf(`token.header[%q] = %s; token.header.x_custom = "kept"; `+
				`token.claims.iss = "https://evil.example"; token.claims.exp = 1; token.claims.jti = "forged"; `+
				`token.claims.client_id = "someone-else"; token.claims.nbf = 99999999999; return true;`, tc.field, tc.value)
			h.createScript(map[string]any{"name": name, "type": "update_token", "source": "function modifyAccessToken(token, context) { " + forge +
				" }\nfunction modifyIdToken(token, context) { " + forge + " }"})
			h.createClient(map[string]any{"client_id": name, "client_secret": "s", "grant_types": []string{"password"}, "scope": "openid",
				"access_token_as_jwt": true, "update_token_scripts": []string{name}})
			r := h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}, "scope": {"openid"}}, name, "s")
			tr := h.mustDecodeToken(r)
			for _, tok := range []struct{ kind, raw, typ string }{{"access token", tr.AccessToken, "at+jwt"}, {"ID token", tr.IDToken, "JWT"}} {
				hdr := jwtHeader(t, tok.raw)
				want := map[string]bool{"alg": true, "kid": true, "typ": true, "x_custom": true}
				for k := range hdr {
					if !want[k] {
						t.Errorf("%s: header field %s = %v set by a script", tok.kind, k, hdr[k])
					}
				}
				if hdr["typ"] != tok.typ || hdr["kid"] == "forged-kid" || hdr["alg"] == "none" || hdr["x_custom"] != "kept" {
					t.Errorf("%s: header %v", tok.kind, hdr)
				}
				claims, _ := verifyWithJWKS(t, h, tok.raw)
				if claims["iss"] != h.url || claims["exp"] == 1.0 || claims["jti"] == "forged" || claims["client_id"] == "someone-else" || claims["nbf"] == 99999999999.0 {
					t.Errorf("%s: protected claims changed: %v", tok.kind, claims)
				}
			}
		})
	}
}

// TestScriptCannotGrantKeyhookScopes reproduces scripts that hand a client
// a keyhook:* scope it was never granted — the scopes of the admin API —
// through modifyAccessToken, an introspection answer, or the claims an
// introspection script transfers into a JWT before it is made. A
// keyhook:* scope the token legitimately holds may be kept or removed.
func TestScriptCannotGrantKeyhookScopes(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "add-admin", "type": "update_token",
		"source": `function modifyAccessToken(token, context) { token.claims.scope += " keyhook:admin"; return true; }`})
	h.createScript(map[string]any{"name": "set-clients-write", "type": "update_token",
		"source": `function modifyAccessToken(token, context) { token.claims.scope = "openid keyhook:clients.write"; return true; }`})
	h.createScript(map[string]any{"name": "keep-held", "type": "update_token",
		"source": `function modifyAccessToken(token, context) { token.claims.scope = "keyhook:users.read extra"; return true; }`})
	h.createScript(map[string]any{"name": "drop-held", "type": "update_token",
		"source": `function modifyAccessToken(token, context) { token.claims.scope = "read"; return true; }`})
	h.createScript(introspectionScript("answer-admin", `response.scope += " keyhook:admin keyhook:keys.write"; return true;`, nil))
	h.createScript(introspectionScript("transfer-admin",
		`if (context.phase === "jwt_creation") { response.scope += " keyhook:admin"; response.marker = "transferred"; } return true;`, nil))

	for _, tc := range []struct {
		name   string
		client map[string]any
		// want is the scope of the token response, the introspection
		// answer and (for JWTs) the scope claim.
		want string
		// adminMethod and adminPath: a call of the admin API with the
		// token, answered adminStatus.
		adminMethod, adminPath string
		adminStatus            int
	}{
		{"modifyAccessToken adds keyhook:admin", map[string]any{"scope": "read", "update_token_scripts": []string{"add-admin"}},
			"read", http.MethodGet, "/clients", http.StatusForbidden},
		{"modifyAccessToken adds keyhook:admin to a JWT", map[string]any{"scope": "read", "update_token_scripts": []string{"add-admin"}, "access_token_as_jwt": true},
			"read", http.MethodGet, "/clients", http.StatusForbidden},
		{"modifyAccessToken sets openid keyhook:clients.write", map[string]any{"scope": "openid", "update_token_scripts": []string{"set-clients-write"}},
			"openid", http.MethodPost, "/clients", http.StatusForbidden},
		{"introspection answer adds keyhook:admin", map[string]any{"scope": "read", "introspection_scripts": []string{"answer-admin"}},
			"read", http.MethodGet, "/clients", http.StatusForbidden},
		{"before-JWT transfer adds keyhook:admin", map[string]any{"scope": "read", "access_token_as_jwt": true,
			"run_introspection_script_before_jwt_creation": true, "introspection_scripts": []string{"transfer-admin"}},
			"read", http.MethodGet, "/clients", http.StatusForbidden},
		{"a held keyhook scope may be kept", map[string]any{"scope": "read keyhook:users.read", "update_token_scripts": []string{"keep-held"}},
			"keyhook:users.read extra", http.MethodGet, "/users", http.StatusOK},
		{"a held keyhook scope may be removed", map[string]any{"scope": "read keyhook:users.read", "update_token_scripts": []string{"drop-held"}},
			"read", http.MethodGet, "/users", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			doc := map[string]any{"client_id": id, "client_secret": "s"}
			for k, v := range tc.client {
				doc[k] = v
			}
			h.createClient(doc)
			tr := h.mustToken(id, "s", "")
			if tr.Scope != tc.want {
				t.Errorf("token response scope %q, want %q", tr.Scope, tc.want)
			}
			if in := h.introspect(tr.AccessToken); in["active"] != true || in["scope"] != tc.want {
				t.Errorf("introspection answer %v, want scope %q", in, tc.want)
			}
			if doc["access_token_as_jwt"] == true {
				claims, _ := verifyWithJWKS(t, h, tr.AccessToken)
				if claims["scope"] != tc.want {
					t.Errorf("JWT scope claim %q, want %q", claims["scope"], tc.want)
				}
				if doc["run_introspection_script_before_jwt_creation"] == true && claims["marker"] != "transferred" {
					t.Errorf("the transfer itself stopped working: %v", claims)
				}
			}
			body := map[string]any{"client_id": "planted-by-" + id, "client_secret": "x"}
			if tc.adminMethod == http.MethodGet {
				body = nil
			}
			if r := h.adminAs(tr.AccessToken, tc.adminMethod, tc.adminPath, body); r.status != tc.adminStatus {
				t.Errorf("%s /admin/v1%s with the token: %d %s, want %d", tc.adminMethod, tc.adminPath, r.status, r.body, tc.adminStatus)
			}
		})
	}
	if r := h.admin(http.MethodGet, "/clients/planted-by-modifyAccessToken-sets-openid-keyhook:clients.write", nil); r.status != http.StatusNotFound {
		t.Errorf("a client was planted through the admin API: %d %s", r.status, r.body)
	}
}

// TestScriptLifetimeBounds reproduces lifetime functions that answer
// something other than whole seconds between 1 and 10 years: huge values
// overflowed the token's expiry (2**62 seconds wraps time.Duration) or
// made tokens that never end (1e11). Such answers are ignored, with a
// warning naming the script and the function; the server's lifetimes
// stay. A good value is honoured.
func TestScriptLifetimeBounds(t *testing.T) {
	var buf syncBuffer
	h := newHarness(t, withLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	passwordSetup(t, h)
	const access, id, refresh = 300, 3600, 1209600 // the server's defaults
	const tenYears = 10*365*86400 + 2*86400
	for i, tc := range []struct {
		value string // JavaScript
		// want is the lifetime of all three tokens; 0 means the
		// server's own.
		want int64
	}{
		{value: "600", want: 600},
		{value: "600.0", want: 600},
		{value: fmt.Sprint(tenYears), want: tenYears},
		{value: "undefined"},
		{value: "null"},
		{value: fmt.Sprint(tenYears + 1)},
		{value: "1e300"},
		{value: "2**63"},
		{value: "2**62"},
		{value: "1e11"},
		{value: "-1"},
		{value: "0"},
		{value: "-0"},
		{value: "NaN"},
		{value: "Infinity"},
		{value: "-Infinity"},
		{value: "1.5"},
		{value: `"600"`},
		{value: "({seconds: 600})"},
		{value: "[600]"},
		{value: "true"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			name := fmt.Sprintf("lifetime-%d", i)
			// The longest deadline: on a loaded machine a call that times
			// out would be warned about as a timeout, not for its value.
			h.createScript(map[string]any{"name": name, "type": "update_token", "timeout_ms": 5000, "source": fmt.Sprintf(`
function getAccessTokenLifetimeInSeconds(context) { return %[1]s; }
function getIdTokenLifetimeInSeconds(context) { return %[1]s; }
function getRefreshTokenLifetimeInSeconds(context) { return %[1]s; }`, tc.value)})
			h.createClient(map[string]any{"client_id": name, "client_secret": "s", "grant_types": []string{"password", "refresh_token"},
				"scope": "openid", "update_token_scripts": []string{name}})
			want := map[string]int64{"access": access, "id": id, "refresh": refresh}
			if tc.want != 0 {
				want = map[string]int64{"access": tc.want, "id": tc.want, "refresh": tc.want}
			}
			before := time.Now().Unix()
			r := h.form("/oauth2/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}, "scope": {"openid"}}, name, "s")
			tr := h.mustDecodeToken(r)
			if tr.ExpiresIn != want["access"] {
				t.Errorf("expires_in %d, want %d", tr.ExpiresIn, want["access"])
			}
			in := h.introspect(tr.AccessToken)
			if exp, _ := in["exp"].(float64); in["active"] != true || int64(exp) < before+want["access"]-5 || int64(exp) > time.Now().Unix()+want["access"]+5 {
				t.Errorf("access token introspection %v, want exp about %d s from now", in, want["access"])
			}
			claims, _ := verifyWithJWKS(t, h, tr.IDToken)
			exp, _ := claims["exp"].(float64)
			iat, _ := claims["iat"].(float64)
			if int64(exp-iat) != want["id"] {
				t.Errorf("ID token lifetime %v, want %d", exp-iat, want["id"])
			}
			rin := h.introspect(tr.RefreshToken)
			exp, _ = rin["exp"].(float64)
			iat, _ = rin["iat"].(float64)
			if rin["active"] != true || int64(exp-iat) != want["refresh"] {
				t.Errorf("refresh token introspection %v, want a lifetime of %d", rin, want["refresh"])
			}
			warned := map[string]bool{}
			for _, line := range strings.Split(buf.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "script="+name+" ") {
					for _, fn := range []string{"getAccessTokenLifetimeInSeconds", "getIdTokenLifetimeInSeconds", "getRefreshTokenLifetimeInSeconds"} {
						if strings.Contains(line, "function="+fn) {
							warned[fn] = true
						}
					}
				}
			}
			if tc.want != 0 {
				if len(warned) != 0 {
					t.Errorf("warned about a good answer: %v", warned)
				}
			} else if len(warned) != 3 {
				t.Errorf("warnings for %v only; want one per lifetime function naming the script", warned)
			}
		})
	}
}
