package web_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// assertionClaims are valid RFC 7523 §3 claims for client id with aud.
func assertionClaims(id string, aud any) map[string]any {
	now := time.Now()
	return map[string]any{"iss": id, "sub": id, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString([]byte(id + randomSuffix()))}
}

func assertionValues(a string, extra url.Values) url.Values {
	v := url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	for k, vs := range extra {
		v[k] = vs
	}
	return v
}

// TestJWKSURIRegistration: a jwks_uri must be https, or http to a loopback
// host, and an address literal must not be private or link-local
// (docs/client-auth.md).
func TestJWKSURIRegistration(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		uri    string
		status int
	}{
		{"https://keys.example/jwks", http.StatusCreated},
		{"https://93.184.215.14/jwks", http.StatusCreated},
		{"http://127.0.0.1:9000/jwks", http.StatusCreated},
		{"http://localhost:9000/jwks", http.StatusCreated},
		{"http://[::1]:9000/jwks", http.StatusCreated},
		{"https://127.0.0.1:9000/jwks", http.StatusCreated},
		{"http://keys.example/jwks", http.StatusBadRequest},
		{"http://93.184.215.14/jwks", http.StatusBadRequest},
		{"https://169.254.169.254/latest/meta-data/", http.StatusBadRequest},
		{"https://10.0.0.7/jwks", http.StatusBadRequest},
		{"https://192.168.1.1/jwks", http.StatusBadRequest},
		{"https://[fd00::1]/jwks", http.StatusBadRequest},
		{"https://[fe80::1]/jwks", http.StatusBadRequest},
		{"https://[::ffff:10.0.0.7]/jwks", http.StatusBadRequest},
		{"https://100.100.100.200/jwks", http.StatusBadRequest},
		{"https://0.0.0.0/jwks", http.StatusBadRequest},
		{"https://user:pw@keys.example/jwks", http.StatusBadRequest},
		{"ftp://keys.example/jwks", http.StatusBadRequest},
		{"/jwks", http.StatusBadRequest},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			r := h.admin(http.MethodPost, "/clients", map[string]any{"client_id": "pk-" + string(rune('a'+i)),
				"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": tc.uri})
			if r.status != tc.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == http.StatusBadRequest && (r.str("error") != "invalid_request" || !strings.HasPrefix(r.str("error_description"), "jwks_uri")) {
				t.Fatalf("got %s, want invalid_request naming jwks_uri", r.body)
			}
		})
	}
}

// TestAssertionAudience: the aud of a client assertion is the issuer or
// the token endpoint URL, a string or an array of only those (RFC 7523 §3),
// on every endpoint that authenticates clients.
func TestAssertionAudience(t *testing.T) {
	h := newHarness(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.createClient(map[string]any{"client_id": "pk", "token_endpoint_auth_method": "private_key_jwt", "scope": "a",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Use: "sig"}}}})
	tokenURL := h.url + "/oauth2/token"
	for _, tc := range []struct {
		name     string
		endpoint string
		aud      any
		ok       bool
	}{
		{"issuer", "/oauth2/token", h.url, true},
		{"token endpoint", "/oauth2/token", tokenURL, true},
		{"array of the issuer", "/oauth2/token", []string{h.url}, true},
		{"array of both", "/oauth2/token", []string{h.url, tokenURL}, true},
		{"issuer at revocation", "/oauth2/revoke", h.url, true},
		{"token endpoint at introspection", "/oauth2/introspect", tokenURL, true},
		{"the PAR endpoint, elsewhere than at it (RFC 9126 §2 is for the push)", "/oauth2/token", h.url + "/oauth2/par", false},
		{"an array with the PAR endpoint, at the token endpoint", "/oauth2/token", []string{h.url, h.url + "/oauth2/par"}, false},
		{"array with another audience", "/oauth2/token", []string{tokenURL, "https://rs.example"}, false},
		{"another audience", "/oauth2/token", "https://rs.example", false},
		{"empty array", "/oauth2/token", []string{}, false},
		{"empty string", "/oauth2/token", "", false},
		{"issuer with a trailing slash", "/oauth2/token", h.url + "/", false},
		{"the introspection endpoint", "/oauth2/introspect", h.url + "/oauth2/introspect", false},
		{"the revocation endpoint", "/oauth2/revoke", h.url + "/oauth2/revoke", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := signAssertion(t, key, jose.ES256, "k", assertionClaims("pk", tc.aud))
			extra := url.Values{"token": {"unknown-token"}}
			if tc.endpoint == "/oauth2/token" {
				extra = url.Values{"grant_type": {"client_credentials"}}
			}
			r := h.form(tc.endpoint, assertionValues(a, extra), "", "")
			if tc.ok {
				if r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.body)
				}
				return
			}
			// Without Basic, invalid_client is 400 except at the
			// introspection endpoint (RFC 6749 §5.2, RFC 7662 §2.1).
			status := http.StatusBadRequest
			if tc.endpoint == "/oauth2/introspect" {
				status = http.StatusUnauthorized
			}
			wantError(t, r, status, "invalid_client")
		})
	}
}

// TestClientSecretJWTSecretLength: a client_secret_jwt secret is at least
// as long as the hash output of its alg (RFC 7518 §3.2), at registration,
// on replacement, and when generated.
func TestClientSecretJWTSecretLength(t *testing.T) {
	h := newHarness(t)
	secret := func(n int) string { return strings.Repeat("s", n) }
	t.Run("registration", func(t *testing.T) {
		for i, tc := range []struct {
			alg    string
			n      int
			status int
		}{
			{"", 31, http.StatusBadRequest},
			{"", 32, http.StatusCreated},
			{"HS256", 31, http.StatusBadRequest},
			{"HS256", 32, http.StatusCreated},
			{"HS384", 47, http.StatusBadRequest},
			{"HS384", 48, http.StatusCreated},
			{"HS512", 63, http.StatusBadRequest},
			{"HS512", 64, http.StatusCreated},
		} {
			doc := map[string]any{"client_id": "hs-" + string(rune('a'+i)), "token_endpoint_auth_method": "client_secret_jwt",
				"client_secret": secret(tc.n)}
			if tc.alg != "" {
				doc["token_endpoint_auth_signing_alg"] = tc.alg
			}
			r := h.admin(http.MethodPost, "/clients", doc)
			if r.status != tc.status {
				t.Errorf("%s with %d bytes: got %d %s, want %d", tc.alg, tc.n, r.status, r.body, tc.status)
			}
			if tc.status == http.StatusBadRequest && !strings.HasPrefix(r.str("error_description"), "client_secret") {
				t.Errorf("%s with %d bytes: %s does not name client_secret", tc.alg, tc.n, r.body)
			}
		}
	})
	t.Run("a generated secret works with its alg", func(t *testing.T) {
		for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512} {
			id := "gen-" + string(alg)
			s := h.createClient(map[string]any{"client_id": id, "token_endpoint_auth_method": "client_secret_jwt", "token_endpoint_auth_signing_alg": string(alg)})
			a := signAssertion(t, []byte(s), alg, "", assertionClaims(id, h.url))
			if r := h.form("/oauth2/token", assertionValues(a, url.Values{"grant_type": {"client_credentials"}}), "", ""); r.status != http.StatusOK {
				t.Fatalf("%s with a generated secret of %d bytes: %d %s", alg, len(s), r.status, r.body)
			}
		}
	})
	t.Run("a rotated secret works with HS512", func(t *testing.T) {
		h.createClient(map[string]any{"client_id": "rot", "token_endpoint_auth_method": "client_secret_jwt", "client_secret": secret(32)})
		r := h.admin(http.MethodPost, "/clients/rot/secret", nil)
		a := signAssertion(t, []byte(r.str("client_secret")), jose.HS512, "", assertionClaims("rot", h.url))
		if r := h.form("/oauth2/token", assertionValues(a, url.Values{"grant_type": {"client_credentials"}}), "", ""); r.status != http.StatusOK {
			t.Fatalf("HS512 with a rotated secret: %d %s", r.status, r.body)
		}
	})
	t.Run("replacement keeping a secret too short for the new alg", func(t *testing.T) {
		h.createClient(map[string]any{"client_id": "keep", "token_endpoint_auth_method": "client_secret_jwt", "client_secret": secret(40)})
		r := h.admin(http.MethodPut, "/clients/keep", map[string]any{"token_endpoint_auth_method": "client_secret_jwt", "token_endpoint_auth_signing_alg": "HS512"})
		if r.status != http.StatusBadRequest || !strings.HasPrefix(r.str("error_description"), "client_secret") {
			t.Fatalf("got %d %s, want 400 naming client_secret", r.status, r.body)
		}
		r = h.admin(http.MethodPut, "/clients/keep", map[string]any{"token_endpoint_auth_method": "client_secret_jwt", "token_endpoint_auth_signing_alg": "HS256"})
		if r.status != http.StatusOK {
			t.Fatalf("HS256 keeps the 40-byte secret: %d %s", r.status, r.body)
		}
	})
}

// signEd25519 signs claims as a compact JWS with RFC 9864's alg name
// "Ed25519" (go-jose only writes "EdDSA").
func signEd25519(key ed25519.PrivateKey, alg, kid string, claims map[string]any) string {
	hdr, _ := json.Marshal(map[string]any{"alg": alg, "kid": kid, "typ": "JWT"})
	payload, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input)))
}

// TestEd25519Assertions: private_key_jwt accepts RFC 9864's "Ed25519"
// and its older alias "EdDSA" (RFC 8037 §3.1) with an Ed25519 key, as one
// algorithm, and refuses what does not verify.
func TestEd25519Assertions(t *testing.T) {
	h := newHarness(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for _, reg := range []struct{ id, alg, jwkAlg string }{
		{"ed-any", "", ""},
		{"ed-new", "Ed25519", "Ed25519"},
		{"ed-old", "EdDSA", "EdDSA"},
	} {
		doc := map[string]any{"client_id": reg.id, "token_endpoint_auth_method": "private_key_jwt", "scope": "a",
			"jwks": map[string]any{"keys": []any{map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig",
				"alg": reg.jwkAlg, "x": base64.RawURLEncoding.EncodeToString(pub)}}}}
		if reg.alg != "" {
			doc["token_endpoint_auth_signing_alg"] = reg.alg
		}
		if reg.jwkAlg == "" {
			delete(doc["jwks"].(map[string]any)["keys"].([]any)[0].(map[string]any), "alg")
		}
		h.createClient(doc)
	}
	token := func(a string) *response {
		return h.form("/oauth2/token", assertionValues(a, url.Values{"grant_type": {"client_credentials"}}), "", "")
	}
	for _, id := range []string{"ed-any", "ed-new", "ed-old"} {
		for _, alg := range []string{"Ed25519", "EdDSA"} {
			t.Run(id+" "+alg, func(t *testing.T) {
				if r := token(signEd25519(priv, alg, "ed", assertionClaims(id, h.url+"/oauth2/token"))); r.status != http.StatusOK {
					t.Fatalf("got %d %s", r.status, r.body)
				}
			})
		}
	}
	tampered := signEd25519(priv, "Ed25519", "ed", assertionClaims("ed-new", h.url+"/oauth2/token"))
	parts := strings.Split(tampered, ".")
	forged, _ := json.Marshal(assertionClaims("ed-old", h.url+"/oauth2/token"))
	for name, a := range map[string]string{
		"another key":      signEd25519(other, "Ed25519", "ed", assertionClaims("ed-new", h.url+"/oauth2/token")),
		"payload swapped":  parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2],
		"short signature":  parts[0] + "." + parts[1] + "." + parts[2][:20],
		"no signature":     parts[0] + "." + parts[1] + ".",
		"four segments":    tampered + ".x",
		"another audience": signEd25519(priv, "Ed25519", "ed", assertionClaims("ed-new", "https://rs.example")),
		"crit header":      critEd25519(priv, h.url+"/oauth2/token"),
		"replayed jti":     tampered,
		"malformed header": "e30K." + parts[1] + "." + parts[2],
	} {
		t.Run(name, func(t *testing.T) {
			if name == "replayed jti" {
				if r := token(a); r.status != http.StatusOK {
					t.Fatalf("first use: %d %s", r.status, r.body)
				}
			}
			wantError(t, token(a), http.StatusBadRequest, "invalid_client")
		})
	}
}

// critEd25519 is a valid assertion but for a crit header keyhook does not
// understand (RFC 7515 §4.1.11: it must be refused).
func critEd25519(key ed25519.PrivateKey, aud string) string {
	hdr, _ := json.Marshal(map[string]any{"alg": "Ed25519", "kid": "ed", "crit": []string{"exp"}, "exp": 1})
	payload, _ := json.Marshal(assertionClaims("ed-new", aud))
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(input)))
}
