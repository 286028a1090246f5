package web_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/keyhook/keyhook/engine"
)

// dpopKey is a client's DPoP key pair (RFC 9449 §4).
type dpopKey struct {
	priv crypto.Signer
	alg  string
}

func newDPoPKey(t *testing.T, alg string) *dpopKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil || priv == nil {
		t.Fatalf("key %s: %v", alg, err)
	}
	return &dpopKey{priv: priv, alg: alg}
}

// publicJWK is the key's public JWK as a JSON object.
func (k *dpopKey) publicJWK(t *testing.T) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: k.priv.Public()})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// thumbprint is RFC 7638's SHA-256 thumbprint, computed here from the
// required members in lexical order, not by the server's library.
func (k *dpopKey) thumbprint(t *testing.T) string {
	t.Helper()
	j := k.publicJWK(t)
	var members []string
	switch j["kty"] {
	case "EC":
		members = []string{"crv", "kty", "x", "y"}
	case "RSA":
		members = []string{"e", "kty", "n"}
	case "OKP":
		members = []string{"crv", "kty", "x"}
	}
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = `"` + m + `":"` + j[m].(string) + `"`
	}
	sum := sha256.Sum256([]byte("{" + strings.Join(parts, ",") + "}"))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// sign makes a compact JWS of header and claims with k.
func (k *dpopKey) sign(t *testing.T, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	var sig []byte
	var err error
	switch k.alg {
	case "ES256":
		sum := sha256.Sum256([]byte(input))
		r, s, e := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), sum[:])
		sig, err = make([]byte, 64), e
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case "RS256":
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	case "PS256":
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPSS(rand.Reader, k.priv.(*rsa.PrivateKey), crypto.SHA256, sum[:], nil)
	case "EdDSA":
		sig = ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(input))
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// proofParts are the header and claims of a good proof for method and
// htu at now; tests break them.
func (k *dpopKey) proofParts(t *testing.T, method, htu string, now time.Time) (map[string]any, map[string]any) {
	t.Helper()
	header := map[string]any{"typ": "dpop+jwt", "alg": k.alg, "jwk": k.publicJWK(t)}
	claims := map[string]any{"jti": b64([]byte(time.Now().String() + randomHex(t))), "htm": method, "htu": htu, "iat": now.Unix()}
	return header, claims
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// proof is a good proof for method and htu, with the access token's
// hash when at is not empty.
func (k *dpopKey) proof(t *testing.T, h *harness, method, htu, at string) string {
	t.Helper()
	header, claims := k.proofParts(t, method, htu, h.clock.now())
	if at != "" {
		claims["ath"] = athOf(at)
	}
	return k.sign(t, header, claims)
}

func athOf(at string) string {
	sum := sha256.Sum256([]byte(at))
	return b64(sum[:])
}

// dpopForm POSTs a form to path with Basic credentials (id != "") and
// the DPoP headers given.
func (h *harness) dpopForm(path string, vals url.Values, id, secret string, proofs ...string) *response {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.url+path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return h.do(req)
}

// resource calls a protected resource of the server with an access
// token under scheme and the DPoP headers given.
func (h *harness) resource(method, path, scheme, token string, proofs ...string) *response {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.url+path, nil)
	req.Header.Set("Authorization", scheme+" "+token)
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return h.do(req)
}

var ccGrant = url.Values{"grant_type": {"client_credentials"}}

// TestDPoPBindsTokens: a token request with a proof gets token_type
// DPoP, a JWT access token with cnf.jkt the key's thumbprint, and an
// introspection answer with cnf.jkt and token_type DPoP, for every
// algorithm discovery lists; without a proof, bearer tokens as before.
func TestDPoPBindsTokens(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "opaque", "client_secret": "opaque-secret"})
	h.createClient(map[string]any{"client_id": "jwt", "client_secret": "jwt-secret", "access_token_as_jwt": true})
	for _, alg := range engine.DPoPSigningAlgs {
		for _, client := range []string{"opaque", "jwt"} {
			t.Run(alg+" "+client, func(t *testing.T) {
				k := newDPoPKey(t, alg)
				r := h.dpopForm("/oauth2/token", ccGrant, client, client+"-secret", k.proof(t, h, "POST", h.url+"/oauth2/token", ""))
				tok := h.mustDecodeToken(r)
				if tok.TokenType != "DPoP" {
					t.Fatalf("token_type %q, want DPoP", tok.TokenType)
				}
				want := map[string]any{"jkt": k.thumbprint(t)}
				if client == "jwt" {
					if cnf := jwtClaims(t, tok.AccessToken)["cnf"]; !reflect.DeepEqual(cnf, want) {
						t.Fatalf("JWT cnf %v, want %v", cnf, want)
					}
				}
				in := h.introspect(tok.AccessToken)
				if in["active"] != true || in["token_type"] != "DPoP" || !reflect.DeepEqual(in["cnf"], want) {
					t.Fatalf("introspection %v, want token_type DPoP and cnf %v", in, want)
				}
			})
		}
	}
	t.Run("without a proof, a bearer token", func(t *testing.T) {
		for _, client := range []string{"opaque", "jwt"} {
			tok := h.mustToken(client, client+"-secret", "")
			if tok.TokenType != "Bearer" {
				t.Fatalf("token_type %q", tok.TokenType)
			}
			if in := h.introspect(tok.AccessToken); in["token_type"] != "Bearer" || in["cnf"] != nil {
				t.Fatalf("introspection %v", in)
			}
			if client == "jwt" && jwtClaims(t, tok.AccessToken)["cnf"] != nil {
				t.Fatalf("a bearer JWT with cnf")
			}
		}
	})
	t.Run("discovery", func(t *testing.T) {
		r := h.do(mustReq(t, http.MethodGet, h.url+"/.well-known/oauth-authorization-server"))
		got, _ := r.json["dpop_signing_alg_values_supported"].([]any)
		var names []string
		for _, a := range got {
			names = append(names, a.(string))
		}
		if !reflect.DeepEqual(names, []string{"ES256", "RS256", "PS256", "EdDSA"}) {
			t.Fatalf("dpop_signing_alg_values_supported %v", r.json["dpop_signing_alg_values_supported"])
		}
	})
}

func mustReq(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestDPoPProofRejected: every way a proof can be wrong is 400
// invalid_dpop_proof at the token endpoint, and no token is issued.
func TestDPoPProofRejected(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret"})
	k := newDPoPKey(t, "ES256")
	other := newDPoPKey(t, "ES256")
	htu := h.url + "/oauth2/token"
	u, _ := url.Parse(h.url)
	good := func() (map[string]any, map[string]any) { return k.proofParts(t, "POST", htu, h.clock.now()) }
	hs256 := func(header, claims map[string]any) string {
		hb, _ := json.Marshal(header)
		cb, _ := json.Marshal(claims)
		input := b64(hb) + "." + b64(cb)
		m := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	for _, tc := range []struct {
		name   string
		proofs func() []string
	}{
		{"no typ", func() []string { h, c := good(); delete(h, "typ"); return []string{k.sign(t, h, c)} }},
		{"typ JWT", func() []string { h, c := good(); h["typ"] = "JWT"; return []string{k.sign(t, h, c)} }},
		{"alg none", func() []string {
			h, c := good()
			h["alg"] = "none"
			hb, _ := json.Marshal(h)
			cb, _ := json.Marshal(c)
			return []string{b64(hb) + "." + b64(cb) + "."}
		}},
		{"HS256 with a symmetric jwk", func() []string {
			h, c := good()
			h["alg"], h["jwk"] = "HS256", map[string]any{"kty": "oct", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}
			return []string{hs256(h, c)}
		}},
		{"private key in jwk", func() []string {
			h, c := good()
			b, _ := json.Marshal(jose.JSONWebKey{Key: k.priv})
			var priv map[string]any
			_ = json.Unmarshal(b, &priv)
			if priv["d"] == nil {
				t.Fatal("the private JWK has no d")
			}
			h["jwk"] = priv
			return []string{k.sign(t, h, c)}
		}},
		{"no jwk", func() []string { h, c := good(); delete(h, "jwk"); return []string{k.sign(t, h, c)} }},
		{"signed by another key", func() []string { h, c := good(); return []string{other.sign(t, h, c)} }},
		{"htm GET", func() []string { h, c := good(); c["htm"] = "GET"; return []string{k.sign(t, h, c)} }},
		{"htm post", func() []string { h, c := good(); c["htm"] = "post"; return []string{k.sign(t, h, c)} }},
		{"htu another path", func() []string {
			h, c := good()
			c["htu"] = h2(u, "/oauth2/introspect")
			return []string{k.sign(t, h, c)}
		}},
		{"htu another host", func() []string {
			h, c := good()
			c["htu"] = "http://localhost:" + u.Port() + "/oauth2/token"
			return []string{k.sign(t, h, c)}
		}},
		{"htu another scheme", func() []string {
			h, c := good()
			c["htu"] = "https://" + u.Host + "/oauth2/token"
			return []string{k.sign(t, h, c)}
		}},
		{"htu another port", func() []string {
			h, c := good()
			c["htu"] = "http://" + u.Hostname() + ":1/oauth2/token"
			return []string{k.sign(t, h, c)}
		}},
		{"htu relative", func() []string { h, c := good(); c["htu"] = "/oauth2/token"; return []string{k.sign(t, h, c)} }},
		{"htu with user info", func() []string {
			h, c := good()
			c["htu"] = "http://evil@" + u.Host + "/oauth2/token"
			return []string{k.sign(t, h, c)}
		}},
		{"no htu", func() []string { h, c := good(); delete(c, "htu"); return []string{k.sign(t, h, c)} }},
		{"iat too old", func() []string {
			h, c := good()
			c["iat"] = h2iat(t, c) - 120
			return []string{k.sign(t, h, c)}
		}},
		{"iat too new", func() []string {
			h, c := good()
			c["iat"] = h2iat(t, c) + 120
			return []string{k.sign(t, h, c)}
		}},
		{"iat a string", func() []string { h, c := good(); c["iat"] = "now"; return []string{k.sign(t, h, c)} }},
		{"no iat", func() []string { h, c := good(); delete(c, "iat"); return []string{k.sign(t, h, c)} }},
		{"no jti", func() []string { h, c := good(); delete(c, "jti"); return []string{k.sign(t, h, c)} }},
		{"jti too long", func() []string {
			h, c := good()
			c["jti"] = strings.Repeat("j", 257)
			return []string{k.sign(t, h, c)}
		}},
		{"two DPoP headers", func() []string {
			return []string{k.proof(t, h, "POST", htu, ""), k.proof(t, h, "POST", htu, "")}
		}},
		{"two proofs in one header", func() []string {
			return []string{k.proof(t, h, "POST", htu, "") + ", " + k.proof(t, h, "POST", htu, "")}
		}},
		{"oversized header", func() []string {
			h, c := good()
			c["pad"] = strings.Repeat("x", engine.MaxDPoPProofBytes)
			return []string{k.sign(t, h, c)}
		}},
		{"not a JWS", func() []string { return []string{"not-a-proof"} }},
		{"a JWS in JSON serialization", func() []string { return []string{`{"payload":"e30","signatures":[]}`} }},
		{"claims not an object", func() []string {
			h, _ := good()
			hb, _ := json.Marshal(h)
			input := b64(hb) + "." + b64([]byte(`["jti"]`))
			sum := sha256.Sum256([]byte(input))
			r, s, _ := ecdsa.Sign(rand.Reader, k.priv.(*ecdsa.PrivateKey), sum[:])
			sig := make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
			return []string{input + "." + b64(sig)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", tc.proofs()...)
			wantError(t, r, http.StatusBadRequest, "invalid_dpop_proof")
			// Refused for the reason the case is about, not an earlier one.
			why, ok := rejectedFor[tc.name]
			if !ok || !strings.Contains(r.str("error_description"), why) {
				t.Fatalf("error_description %q, want it to say %q", r.str("error_description"), why)
			}
			if r.str("access_token") != "" {
				t.Fatal("a token was issued")
			}
		})
	}

	t.Run("a replayed proof", func(t *testing.T) {
		p := k.proof(t, h, "POST", htu, "")
		h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", p))
		wantError(t, h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", p), http.StatusBadRequest, "invalid_dpop_proof")
	})

	// RFC 9449 §4.3: htu is compared without query and fragment, after
	// RFC 3986 normalisation.
	for name, htu := range map[string]string{
		"htu with query and fragment": h.url + "/oauth2/token?x=1#frag",
		"htu in upper case":           strings.ToUpper("http://"+u.Host) + "/oauth2/token",
		"htu with a needless escape":  h.url + "/oauth2/%74oken",
	} {
		t.Run(name+" is accepted", func(t *testing.T) {
			header, claims := k.proofParts(t, "POST", htu, h.clock.now())
			r := h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.sign(t, header, claims))
			if tok := h.mustDecodeToken(r); tok.TokenType != "DPoP" {
				t.Fatalf("token_type %q", tok.TokenType)
			}
		})
	}
	t.Run("iat within the window either way is accepted", func(t *testing.T) {
		for _, d := range []int64{-50, 50} {
			header, claims := good()
			claims["iat"] = h2iat(t, claims) + d
			h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.sign(t, header, claims)))
		}
	})
}

// rejectedFor is what each case of TestDPoPProofRejected is refused for.
var rejectedFor = map[string]string{
	"no typ": "typ", "typ JWT": "typ", "alg none": "not a JWS", "HS256 with a symmetric jwk": "not a JWS",
	"private key in jwk": "not a JWS", "no jwk": "jwk header", "signed by another key": "signature",
	"htm GET": "htm", "htm post": "htm", "htu another path": "htu", "htu another host": "htu",
	"htu another scheme": "htu", "htu another port": "htu", "htu relative": "htu", "htu with user info": "htu",
	"no htu": "htu", "iat too old": "iat", "iat too new": "iat", "iat a string": "claims", "no iat": "iat",
	"no jti": "jti", "jti too long": "jti", "two DPoP headers": "exactly one", "two proofs in one header": "not a JWS",
	"oversized header": "longer than", "not a JWS": "not a JWS", "a JWS in JSON serialization": "not a JWS",
	"claims not an object": "claims",
}

func h2(u *url.URL, path string) string { return u.Scheme + "://" + u.Host + path }

func h2iat(t *testing.T, c map[string]any) int64 {
	t.Helper()
	v, ok := c["iat"].(int64)
	if !ok {
		t.Fatalf("iat %T", c["iat"])
	}
	return v
}

// TestDPoPNonce: with --dpop-nonce, a proof without the server's nonce
// is answered use_dpop_nonce with a DPoP-Nonce header, and a new proof
// with that nonce gets its token; a made-up nonce does not.
func TestDPoPNonce(t *testing.T) {
	h := newHarness(t, withEngine(func(c *engine.Config) { c.DPoPNonce = true }))
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret"})
	// Stopped at the start of a five-minute nonce window, so that the
	// steps below land in known windows.
	h.clock.freeze()
	now := h.clock.now()
	h.clock.advance(time.Unix(now.Unix()-now.Unix()%300+300, 0).Sub(now))
	k := newDPoPKey(t, "ES256")
	htu := h.url + "/oauth2/token"

	r := h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.proof(t, h, "POST", htu, ""))
	wantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
	nonce := r.header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce header")
	}
	withNonce := func(n string) string {
		header, claims := k.proofParts(t, "POST", htu, h.clock.now())
		claims["nonce"] = n
		return k.sign(t, header, claims)
	}
	wantError(t, h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", withNonce("made-up")), http.StatusBadRequest, "use_dpop_nonce")
	r = h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", withNonce(nonce))
	if tok := h.mustDecodeToken(r); tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q", tok.TokenType)
	}
	if r.header.Get("DPoP-Nonce") == "" {
		t.Fatal("a successful answer without DPoP-Nonce")
	}
	t.Run("at a protected resource", func(t *testing.T) {
		admin := h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, engine.BootstrapAdminID, adminSecret, func() string {
			header, claims := k.proofParts(t, "POST", htu, h.clock.now())
			claims["nonce"] = nonce
			return k.sign(t, header, claims)
		}()))
		clients := h.url + "/admin/v1/clients"
		r := h.resource(http.MethodGet, "/admin/v1/clients", "DPoP", admin.AccessToken, k.proof(t, h, "GET", clients, admin.AccessToken))
		wantError(t, r, http.StatusUnauthorized, "use_dpop_nonce")
		if ch := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "DPoP ") || !strings.Contains(ch, `error="use_dpop_nonce"`) || r.header.Get("DPoP-Nonce") == "" {
			t.Fatalf("WWW-Authenticate %q, DPoP-Nonce %q", ch, r.header.Get("DPoP-Nonce"))
		}
		header, claims := k.proofParts(t, "GET", clients, h.clock.now())
		claims["ath"], claims["nonce"] = athOf(admin.AccessToken), r.header.Get("DPoP-Nonce")
		if r := h.resource(http.MethodGet, "/admin/v1/clients", "DPoP", admin.AccessToken, k.sign(t, header, claims)); r.status != http.StatusOK {
			t.Fatalf("with the nonce: %d %s", r.status, r.body)
		}
	})
	// A nonce lasts its window and the next, no longer.
	h.clock.advance(6 * time.Minute)
	h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", withNonce(nonce)))
	h.clock.advance(6 * time.Minute)
	wantError(t, h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", withNonce(nonce)), http.StatusBadRequest, "use_dpop_nonce")
}

// TestDPoPBoundAccessTokensClient: a client registered with
// dpop_bound_access_tokens gets no token without a proof (RFC 9449 §5.2).
func TestDPoPBoundAccessTokensClient(t *testing.T) {
	h := newHarness(t)
	h.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret", "dpop_bound_access_tokens": true})
	if r := h.admin(http.MethodGet, "/clients/app", nil); r.json["dpop_bound_access_tokens"] != true {
		t.Fatalf("admin API: %s", r.body)
	}
	wantError(t, h.form("/oauth2/token", ccGrant, "app", "app-secret"), http.StatusBadRequest, "invalid_dpop_proof")
	k := newDPoPKey(t, "ES256")
	tok := h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.proof(t, h, "POST", h.url+"/oauth2/token", "")))
	if tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q", tok.TokenType)
	}
	// Turned off, bearer tokens again.
	if r := h.admin(http.MethodPatch, "/clients/app", map[string]any{"dpop_bound_access_tokens": false}); r.status != http.StatusOK {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	h.mustToken("app", "app-secret", "")
}

// dpopRedeem redeems a code of the public client spa with a proof by k
// (none when k is nil).
func dpopRedeem(t *testing.T, h *harness, cfg *oauth2.Config, k *dpopKey) *response {
	t.Helper()
	v := oauth2.GenerateVerifier()
	code := issueCode(t, cfg, v)
	vals := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {cfg.RedirectURL},
		"code_verifier": {v}, "client_id": {cfg.ClientID}}
	if k == nil {
		return h.form("/oauth2/token", vals, "", "")
	}
	return h.dpopForm("/oauth2/token", vals, "", "", k.proof(t, h, "POST", h.url+"/oauth2/token", ""))
}

// TestDPoPPublicClientRefresh: a public client's refresh token is bound
// to the key of its proof (RFC 9449 §5): a refresh with another key or
// none is invalid_grant, and with the same key gets a bound token; a
// confidential client's refresh token is not bound.
func TestDPoPPublicClientRefresh(t *testing.T) {
	h := newHarness(t)
	web, _, spa := codeClientSetup(t, h)
	k := newDPoPKey(t, "ES256")
	tok := h.mustDecodeToken(dpopRedeem(t, h, spa, k))
	if tok.TokenType != "DPoP" || tok.RefreshToken == "" {
		t.Fatalf("code exchange: %+v", tok)
	}
	if in := h.introspect(tok.RefreshToken); !reflect.DeepEqual(in["cnf"], map[string]any{"jkt": k.thumbprint(t)}) {
		t.Fatalf("refresh token introspection %v", in)
	}
	refresh := func(rt string, key *dpopKey) *response {
		vals := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"spa"}}
		if key == nil {
			return h.form("/oauth2/token", vals, "", "")
		}
		return h.dpopForm("/oauth2/token", vals, "", "", key.proof(t, h, "POST", h.url+"/oauth2/token", ""))
	}
	wantError(t, refresh(tok.RefreshToken, nil), http.StatusBadRequest, "invalid_grant")
	wantError(t, refresh(tok.RefreshToken, newDPoPKey(t, "ES256")), http.StatusBadRequest, "invalid_grant")
	next := h.mustDecodeToken(refresh(tok.RefreshToken, k))
	if next.TokenType != "DPoP" {
		t.Fatalf("refreshed token_type %q", next.TokenType)
	}
	// The refused attempts did not burn the refresh token's family.
	if in := h.introspect(next.AccessToken); in["active"] != true || !reflect.DeepEqual(in["cnf"], map[string]any{"jkt": k.thumbprint(t)}) {
		t.Fatalf("refreshed token %v", in)
	}

	t.Run("confidential client", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := issueCode(t, web, v)
		vals := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {web.RedirectURL}, "code_verifier": {v}}
		first := h.mustDecodeToken(h.dpopForm("/oauth2/token", vals, "web", "web-secret", k.proof(t, h, "POST", h.url+"/oauth2/token", "")))
		if first.TokenType != "DPoP" {
			t.Fatalf("token_type %q", first.TokenType)
		}
		if in := h.introspect(first.RefreshToken); in["cnf"] != nil {
			t.Fatalf("a confidential client's refresh token is bound: %v", in)
		}
		again := h.mustDecodeToken(h.form("/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}, "web", "web-secret"))
		if again.TokenType != "Bearer" {
			t.Fatalf("token_type %q", again.TokenType)
		}
	})
}

// TestDPoPResources: userinfo and the admin API take a bound token only
// as Authorization: DPoP with a proof by its key naming the request and
// the token (RFC 9449 §7); a bound token as Bearer, or a bearer token as
// DPoP, is 401 with a DPoP challenge.
func TestDPoPResources(t *testing.T) {
	h := newHarness(t)
	_, _, spa := codeClientSetup(t, h)
	k := newDPoPKey(t, "ES256")
	tok := h.mustDecodeToken(dpopRedeem(t, h, spa, k))
	bearerTok := h.mustDecodeToken(dpopRedeem(t, h, spa, nil))
	ui := h.url + "/oauth2/userinfo"

	r := h.resource(http.MethodGet, "/oauth2/userinfo", "DPoP", tok.AccessToken, k.proof(t, h, "GET", ui, tok.AccessToken))
	if r.status != http.StatusOK || r.str("sub") != "alice" {
		t.Fatalf("userinfo with DPoP: %d %s", r.status, r.body)
	}
	r = h.resource(http.MethodPost, "/oauth2/userinfo", "dpop", tok.AccessToken, k.proof(t, h, "POST", ui, tok.AccessToken))
	if r.status != http.StatusOK {
		t.Fatalf("userinfo POST with dpop: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name, scheme, token string
		proofs              func() []string
		code                string
	}{
		{"bound token as Bearer", "Bearer", tok.AccessToken, func() []string { return nil }, "invalid_token"},
		{"bound token as Bearer with a proof", "Bearer", tok.AccessToken,
			func() []string { return []string{k.proof(t, h, "GET", ui, tok.AccessToken)} }, "invalid_token"},
		{"no proof", "DPoP", tok.AccessToken, func() []string { return nil }, "invalid_dpop_proof"},
		{"no ath", "DPoP", tok.AccessToken, func() []string { return []string{k.proof(t, h, "GET", ui, "")} }, "invalid_dpop_proof"},
		{"ath of another token", "DPoP", tok.AccessToken,
			func() []string { return []string{k.proof(t, h, "GET", ui, bearerTok.AccessToken)} }, "invalid_dpop_proof"},
		{"htm POST", "DPoP", tok.AccessToken, func() []string { return []string{k.proof(t, h, "POST", ui, tok.AccessToken)} }, "invalid_dpop_proof"},
		{"htu of the token endpoint", "DPoP", tok.AccessToken,
			func() []string { return []string{k.proof(t, h, "GET", h.url+"/oauth2/token", tok.AccessToken)} }, "invalid_dpop_proof"},
		{"another key", "DPoP", tok.AccessToken,
			func() []string { return []string{newDPoPKey(t, "ES256").proof(t, h, "GET", ui, tok.AccessToken)} }, "invalid_token"},
		{"bearer token as DPoP", "DPoP", bearerTok.AccessToken,
			func() []string { return []string{k.proof(t, h, "GET", ui, bearerTok.AccessToken)} }, "invalid_token"},
		{"unknown token", "DPoP", "nope", func() []string { return []string{k.proof(t, h, "GET", ui, "nope")} }, "invalid_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.resource(http.MethodGet, "/oauth2/userinfo", tc.scheme, tc.token, tc.proofs()...)
			wantError(t, r, http.StatusUnauthorized, tc.code)
			if ch := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "DPoP ") || !strings.Contains(ch, `error="`+tc.code+`"`) ||
				!strings.Contains(ch, `algs="ES256 RS256 PS256 EdDSA"`) {
				t.Fatalf("WWW-Authenticate %q", ch)
			}
		})
	}
	t.Run("a replayed proof", func(t *testing.T) {
		p := k.proof(t, h, "GET", ui, tok.AccessToken)
		if r := h.resource(http.MethodGet, "/oauth2/userinfo", "DPoP", tok.AccessToken, p); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		wantError(t, h.resource(http.MethodGet, "/oauth2/userinfo", "DPoP", tok.AccessToken, p), http.StatusUnauthorized, "invalid_dpop_proof")
	})
	t.Run("a bearer token stays a bearer token", func(t *testing.T) {
		if r := h.resource(http.MethodGet, "/oauth2/userinfo", "Bearer", bearerTok.AccessToken); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})

	t.Run("admin API", func(t *testing.T) {
		ak := newDPoPKey(t, "EdDSA")
		admin := h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, engine.BootstrapAdminID, adminSecret,
			ak.proof(t, h, "POST", h.url+"/oauth2/token", "")))
		wantError(t, h.adminAs(admin.AccessToken, http.MethodGet, "/clients", nil), http.StatusUnauthorized, "invalid_token")
		r := h.resource(http.MethodGet, "/admin/v1/clients", "DPoP", admin.AccessToken,
			ak.proof(t, h, "GET", h.url+"/admin/v1/clients", admin.AccessToken))
		if r.status != http.StatusOK {
			t.Fatalf("admin API with DPoP: %d %s", r.status, r.body)
		}
		// A token without openid at userinfo: 403, challenged as DPoP.
		r = h.resource(http.MethodGet, "/oauth2/userinfo", "DPoP", admin.AccessToken, ak.proof(t, h, "GET", ui, admin.AccessToken))
		wantError(t, r, http.StatusForbidden, "insufficient_scope")
		if ch := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "DPoP ") {
			t.Fatalf("WWW-Authenticate %q", ch)
		}
	})

	t.Run("introspection caller", func(t *testing.T) {
		h.createClient(map[string]any{"client_id": "rs", "client_secret": "rs-secret", "scope": "introspect"})
		ck := newDPoPKey(t, "RS256")
		rs := h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, "rs", "rs-secret", ck.proof(t, h, "POST", h.url+"/oauth2/token", "")))
		wantError(t, h.formBearer("/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, rs.AccessToken), http.StatusUnauthorized, "invalid_token")
		req, _ := http.NewRequest(http.MethodPost, h.url+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "DPoP "+rs.AccessToken)
		req.Header.Set("DPoP", ck.proof(t, h, "POST", h.url+"/oauth2/introspect", rs.AccessToken))
		r := h.do(req)
		if r.status != http.StatusOK || r.json["token_type"] != "DPoP" || !reflect.DeepEqual(r.json["cnf"], map[string]any{"jkt": k.thumbprint(t)}) {
			t.Fatalf("introspection with a DPoP caller: %d %s", r.status, r.body)
		}
	})
}

// TestDPoPScriptsCannotUnbind: scripts see context.token.cnf, and can
// neither remove, change nor add cnf in an access token or an
// introspection answer, nor turn token_type back to Bearer.
func TestDPoPScriptsCannotUnbind(t *testing.T) {
	h := newHarness(t)
	h.createScript(map[string]any{"name": "unbind", "type": "update_token", "timeout_ms": 5000, "source": `
function modifyAccessToken(token, context) {
  token.claims.seen_jkt = context.token.cnf ? context.token.cnf.jkt : "none";
  if (context.token.cnf) { delete token.claims.cnf; } else { token.claims.cnf = {jkt: "forged"}; }
  return true;
}`})
	h.createScript(map[string]any{"name": "unbind-intro", "type": "introspection", "timeout_ms": 5000, "source": `
function modifyResponse(response, context) {
  response.seen_jkt = context.token.cnf ? context.token.cnf.jkt : "none";
  if (response.cnf) { response.cnf = {jkt: "forged"}; response.token_type = "Bearer"; } else { response.cnf = {jkt: "forged"}; }
  return true;
}`})
	for _, id := range []string{"jwt", "opaque"} {
		h.createClient(map[string]any{"client_id": id, "client_secret": id + "-secret", "access_token_as_jwt": id == "jwt",
			"update_token_scripts": []string{"unbind"}, "introspection_scripts": []string{"unbind-intro"}})
		t.Run(id, func(t *testing.T) {
			k := newDPoPKey(t, "ES256")
			want := map[string]any{"jkt": k.thumbprint(t)}
			tok := h.mustDecodeToken(h.dpopForm("/oauth2/token", ccGrant, id, id+"-secret", k.proof(t, h, "POST", h.url+"/oauth2/token", "")))
			if id == "jwt" {
				cl := jwtClaims(t, tok.AccessToken)
				if !reflect.DeepEqual(cl["cnf"], want) || cl["seen_jkt"] != k.thumbprint(t) {
					t.Fatalf("JWT claims %v", cl)
				}
			}
			in := h.introspect(tok.AccessToken)
			if !reflect.DeepEqual(in["cnf"], want) || in["token_type"] != "DPoP" || in["seen_jkt"] != k.thumbprint(t) {
				t.Fatalf("introspection %v", in)
			}
			plain := h.mustToken(id, id+"-secret", "")
			if id == "jwt" {
				if cl := jwtClaims(t, plain.AccessToken); cl["cnf"] != nil || cl["seen_jkt"] != "none" {
					t.Fatalf("bearer JWT claims %v", cl)
				}
			}
			if in := h.introspect(plain.AccessToken); in["cnf"] != nil || in["token_type"] != "Bearer" {
				t.Fatalf("bearer introspection %v", in)
			}
		})
	}
}

// TestDPoPReplayAcrossInstances: two instances on one PostgreSQL
// database share the replay cache and the nonces: a proof taken by one
// is refused by the other, and a nonce of one is good on the other.
func TestDPoPReplayAcrossInstances(t *testing.T) {
	dsn := pgDSN(t)
	const issuer = "https://as.example"
	opt := withEngine(func(c *engine.Config) { c.Issuer = issuer })
	a := newHarness(t, withDSN(dsn), opt)
	b := newHarness(t, withDSN(dsn), opt)
	a.createClient(map[string]any{"client_id": "app", "client_secret": "app-secret"})
	k := newDPoPKey(t, "ES256")
	p := k.proof(t, a, "POST", issuer+"/oauth2/token", "")
	if tok := a.mustDecodeToken(a.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", p)); tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q", tok.TokenType)
	}
	wantError(t, b.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", p), http.StatusBadRequest, "invalid_dpop_proof")
	// A proof that names the instance's own address rather than the
	// issuer is refused: the Host header does not decide htu.
	wantError(t, b.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.proof(t, b, "POST", b.url+"/oauth2/token", "")),
		http.StatusBadRequest, "invalid_dpop_proof")

	t.Run("nonces", func(t *testing.T) {
		na := newHarness(t, withDSN(dsn), opt, withEngine(func(c *engine.Config) { c.DPoPNonce = true }))
		nb := newHarness(t, withDSN(dsn), opt, withEngine(func(c *engine.Config) { c.DPoPNonce = true }))
		r := na.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.proof(t, na, "POST", issuer+"/oauth2/token", ""))
		wantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
		header, claims := k.proofParts(t, "POST", issuer+"/oauth2/token", nb.clock.now())
		claims["nonce"] = r.header.Get("DPoP-Nonce")
		nb.mustDecodeToken(nb.dpopForm("/oauth2/token", ccGrant, "app", "app-secret", k.sign(t, header, claims)))
	})
}

// TestDPoPAuthorizationCodeBinding: dpop_jkt in the authorization
// request, or a proof at the pushed authorization request endpoint,
// binds the code to a key (RFC 9449 §10): it is redeemed only with a
// proof by that key, and a refused redemption leaves it to the client.
func TestDPoPAuthorizationCodeBinding(t *testing.T) {
	h := newHarness(t)
	spa, web := parSetup(t, h)
	k := newDPoPKey(t, "ES256")
	tokenURL := h.url + "/oauth2/token"
	redeem := func(cfg *oauth2.Config, code, verifier string, key *dpopKey) *response {
		vals := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {cfg.RedirectURL}}
		id, secret := cfg.ClientID, cfg.ClientSecret
		if verifier != "" {
			vals.Set("code_verifier", verifier)
		}
		if secret == "" {
			vals.Set("client_id", id)
			id = ""
		}
		if key == nil {
			return h.form("/oauth2/token", vals, id, secret)
		}
		return h.dpopForm("/oauth2/token", vals, id, secret, key.proof(t, h, "POST", tokenURL, ""))
	}

	t.Run("dpop_jkt at the authorization endpoint", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		u := spa.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("dpop_jkt", k.thumbprint(t)))
		resp := login(t, browser(), u, "alice", "alice-pw")
		code := codeFrom(t, resp, spa.RedirectURL).Get("code")
		wantError(t, redeem(spa, code, v, nil), http.StatusBadRequest, "invalid_grant")
		wantError(t, redeem(spa, code, v, newDPoPKey(t, "ES256")), http.StatusBadRequest, "invalid_grant")
		tok := h.mustDecodeToken(redeem(spa, code, v, k))
		if tok.TokenType != "DPoP" {
			t.Fatalf("token_type %q", tok.TokenType)
		}
	})
	t.Run("a malformed dpop_jkt", func(t *testing.T) {
		u := spa.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("dpop_jkt", "short"))
		resp, err := browser().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		readAll(resp)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil || loc.Query().Get("error") != "invalid_request" || !strings.Contains(loc.Query().Get("error_description"), "dpop_jkt") {
			t.Fatalf("want invalid_request for dpop_jkt, got %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("a proof at the pushed authorization request endpoint", func(t *testing.T) {
		vals := url.Values{"response_type": {"code"}, "redirect_uri": {webRedirect}, "scope": {"openid email"}, "state": {"s"}}
		uri := mustPush(t, h.dpopForm(parPath, vals, "web", webSecret, k.proof(t, h, "POST", h.url+parPath, "")))
		c := browser()
		code := codeFrom(t, postLogin(t, c, h, formOf(t, c, authorizeURL(h, "web", uri, nil))), webRedirect).Get("code")
		wantError(t, redeem(web, code, "", nil), http.StatusBadRequest, "invalid_grant")
		if tok := h.mustDecodeToken(redeem(web, code, "", k)); tok.TokenType != "DPoP" {
			t.Fatalf("token_type %q", tok.TokenType)
		}
	})
	t.Run("pushed errors", func(t *testing.T) {
		vals := url.Values{"response_type": {"code"}, "redirect_uri": {webRedirect}, "scope": {"openid"},
			"dpop_jkt": {newDPoPKey(t, "ES256").thumbprint(t)}}
		wantError(t, h.dpopForm(parPath, vals, "web", webSecret, k.proof(t, h, "POST", h.url+parPath, "")), http.StatusBadRequest, "invalid_dpop_proof")
		vals.Del("dpop_jkt")
		wantError(t, h.dpopForm(parPath, vals, "web", webSecret, k.proof(t, h, "POST", tokenURL, "")), http.StatusBadRequest, "invalid_dpop_proof")
	})
}
