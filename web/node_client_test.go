package web_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// nodeCheckDir is the openid-client check (examples/clients/node).
var nodeCheckDir = filepath.Join("..", "examples", "clients", "node")

// skipOrFail skips with a visible reason, or fails when
// KEYHOOK_REQUIRE_NODE is set (CI sets it: there the check must run).
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("KEYHOOK_REQUIRE_NODE") != "" {
		t.Fatalf(format+" (KEYHOOK_REQUIRE_NODE is set)", args...)
	}
	t.Skipf(format, args...)
}

// nodeModules installs the check's locked dependencies with npm ci when
// they are missing (node_modules is not committed).
func nodeModules(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(nodeCheckDir, "node_modules", "openid-client", "package.json")); err == nil {
		return
	}
	if _, err := exec.LookPath("npm"); err != nil {
		skipOrFail(t, "npm is not installed: the openid-client check did not run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = nodeCheckDir
	if out, err := cmd.CombinedOutput(); err != nil {
		skipOrFail(t, "npm ci in examples/clients/node failed (is the npm registry reachable?): %v\n%s", err, out)
	}
}

// privateJWK is the private JWK of key with kid, as the check imports it.
func privateJWK(t *testing.T, key any, kid, alg string) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNodeOpenIDClient runs examples/clients/node/check.mjs, which uses
// openid-client v6 unmodified, against a real server: discovery,
// client_credentials with client_secret_basic, client_secret_post and
// private_key_jwt (Ed25519, the library's default alg for such a key, and
// ES256), introspection, revocation and refresh rotation.
func TestNodeOpenIDClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not installed: the openid-client check did not run")
	}
	if out, err := exec.Command(node, "-e", "process.exit(Number(process.versions.node.split('.')[0]) >= 20 ? 0 : 1)").CombinedOutput(); err != nil {
		skipOrFail(t, "node 20 or later is needed for the openid-client check: %v %s", err, out)
	}
	nodeModules(t)

	h := newHarness(t)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	basic := h.createClient(map[string]any{"client_id": "node-basic", "scope": "openid api"})
	post := h.createClient(map[string]any{"client_id": "node-post", "scope": "openid api", "token_endpoint_auth_method": "client_secret_post"})
	h.createClient(map[string]any{"client_id": "node-ed25519", "scope": "openid api", "token_endpoint_auth_method": "private_key_jwt",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: edPub, KeyID: "ed", Use: "sig"}}}})
	h.createClient(map[string]any{"client_id": "node-es256", "scope": "openid api", "token_endpoint_auth_method": "private_key_jwt",
		"token_endpoint_auth_signing_alg": "ES256",
		"jwks":                            jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ecKey.Public(), KeyID: "ec", Use: "sig", Algorithm: "ES256"}}}})
	pw := h.createClient(map[string]any{"client_id": "node-app", "scope": "openid api", "grant_types": []string{"password", "refresh_token"}})
	if r := h.admin("POST", "/users", map[string]any{"username": "nina", "password": "nina-pw"}); r.status != 201 {
		t.Fatalf("user: %d %s", r.status, r.body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs", h.url)
	cmd.Dir = nodeCheckDir
	cmd.Env = append(os.Environ(),
		"BASIC_CLIENT_ID=node-basic", "BASIC_CLIENT_SECRET="+basic,
		"POST_CLIENT_ID=node-post", "POST_CLIENT_SECRET="+post,
		"ED25519_CLIENT_ID=node-ed25519", "ED25519_KEY="+privateJWK(t, edKey, "ed", ""),
		"ES256_CLIENT_ID=node-es256", "ES256_KEY="+privateJWK(t, ecKey, "ec", "ES256"),
		"PASSWORD_CLIENT_ID=node-app", "PASSWORD_CLIENT_SECRET="+pw,
		"USERNAME=nina", "PASSWORD=nina-pw", "SCOPE=openid api",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("node check.mjs %s:\n%s", h.url, out.String())
	if err != nil {
		t.Fatalf("the openid-client check failed: %v", err)
	}
	// Every check ran and passed (a script that stopped early would not
	// print them all).
	for _, name := range []string{"discovery", "client_credentials with client_secret_basic", "client_credentials with client_secret_post",
		"client_credentials with private_key_jwt Ed25519 (alg Ed25519)", "client_credentials with private_key_jwt ES256 (alg ES256)",
		"introspection of an active token", "revocation", "password grant and refresh_token rotation", "a scope not allowed is invalid_scope", "a wrong secret is invalid_client"} {
		if !strings.Contains(out.String(), "ok    "+name) {
			t.Errorf("no passing check %q", name)
		}
	}
}
