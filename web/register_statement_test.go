package web_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/keyhook/keyhook/engine"
)

// signStatement signs claims as a software statement with key under kid.
func signStatement(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSoftwareStatements(t *testing.T) {
	trusted, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &trusted.PublicKey, KeyID: "vendor-1", Algorithm: "ES256", Use: "sig"}}}
	h := newHarness(t, withEngine(func(c *engine.Config) { c.SoftwareStatementKeys = keys }))
	iat := h.initialToken(map[string]any{"max_uses": 20})
	now := h.clock.now().Unix()
	good := map[string]any{"iss": "https://vendor.example", "iat": now, "exp": now + 600,
		"software_id": "orders-app", "client_name": "Orders (vendor)", "grant_types": []string{"client_credentials"}, "scope": "orders"}

	r := h.mustRegister(iat, map[string]any{"software_statement": signStatement(t, trusted, "vendor-1", good),
		"client_name": "my own name", "scope": "orders", "redirect_uris": []string{"https://app.example/cb"}})
	if r.str("client_name") != "Orders (vendor)" || r.str("scope") != "orders" {
		t.Fatalf("the statement's values do not take precedence: %s", r.body)
	}
	if gt, _ := json.Marshal(r.json["grant_types"]); string(gt) != `["client_credentials"]` {
		t.Fatalf("grant_types %s", gt)
	}

	with := func(change map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		for k, v := range change {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		statement any
		code      string
	}{
		{"an unknown kid", signStatement(t, trusted, "vendor-2", good), "unapproved_software_statement"},
		{"no kid", signStatement(t, trusted, "", good), "unapproved_software_statement"},
		{"a stranger's signature under a trusted kid", signStatement(t, stranger, "vendor-1", good), "invalid_software_statement"},
		{"expired", signStatement(t, trusted, "vendor-1", with(map[string]any{"exp": now - 1})), "invalid_software_statement"},
		{"issued in the future", signStatement(t, trusted, "vendor-1", with(map[string]any{"iat": now + 3600})), "invalid_software_statement"},
		{"no iss", signStatement(t, trusted, "vendor-1", with(map[string]any{"iss": nil})), "invalid_software_statement"},
		{"not a JWT", "not-a-jwt", "invalid_software_statement"},
		{"unsigned", "eyJhbGciOiJub25lIiwia2lkIjoidmVuZG9yLTEifQ.eyJpc3MiOiJ4In0.", "invalid_software_statement"},
		{"not a string", map[string]any{"iss": "x"}, "invalid_software_statement"},
		{"a keyhook scope", signStatement(t, trusted, "vendor-1", with(map[string]any{"scope": "keyhook:admin"})), "invalid_client_metadata"},
		{"bound scripts", signStatement(t, trusted, "vendor-1", with(map[string]any{"update_token_scripts": []string{"x"}})), "invalid_client_metadata"},
		{"a nested statement", signStatement(t, trusted, "vendor-1", with(map[string]any{"software_statement": "x"})), "invalid_software_statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{"software_statement": tc.statement}),
				http.StatusBadRequest, tc.code)
		})
	}
	// The statement's lifetime is on the server's clock.
	h.clock.advance(601 * time.Second)
	wantError(t, h.registerCall(http.MethodPost, engine.PathRegister, iat, map[string]any{
		"software_statement": signStatement(t, trusted, "vendor-1", good)}), http.StatusBadRequest, "invalid_software_statement")
}
