package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminCLI runs each remote command (docs/configuration.md, "Managing
// a running server") once against a real server, in order, then the
// hostile and usage cases.
func TestAdminCLI(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	start(t, dir, addr, nil, "--addr", addr, "--bootstrap-admin-secret", "admin-secret")
	env := map[string]string{"KEYHOOK_URL": "http://" + addr, "KEYHOOK_CLIENT_SECRET": "admin-secret"}
	v1 := filepath.Join(dir, "tag.js")
	v2 := filepath.Join(dir, "tag2.js")
	os.WriteFile(v1, []byte("function modifyResponse(response, context) { response.tag = 'one'; return response; }\n"), 0o600)
	os.WriteFile(v2, []byte("function modifyResponse(response, context) { response.tag = 'two'; return response; }\n"), 0o600)
	up := filepath.Join(dir, "up.js")
	os.WriteFile(up, []byte("function modifyAccessToken(token, context) { token.claims.tag = 'up'; return token; }\n"), 0o600)
	for _, tc := range []struct {
		args   []string
		env    map[string]string // added to env
		code   int
		stdout []string // each wanted in stdout
		stderr string   // wanted in stderr
	}{
		{args: []string{"client", "create", "svc", "--name", "Service", "--scope", "read", "--jwt"}, stdout: []string{"client_secret:", "svc"}},
		{args: []string{"client", "list"}, stdout: []string{"CLIENT_ID", "svc", "Service", "keyhook-admin"}},
		{args: []string{"client", "get", "svc", "-o", "json"}, stdout: []string{`"client_id": "svc"`, `"access_token_as_jwt": true`}},
		{args: []string{"client", "update", "svc", "--name", "Renamed"}, stdout: []string{"Renamed"}},
		{args: []string{"client", "update", "svc"}, env: map[string]string{"KEYHOOK_SCOPE": "read write"}, stdout: []string{"Renamed", "read write"}},
		{args: []string{"client", "update", "svc"}, code: 2, stderr: "nothing to change"},
		{args: []string{"script", "put", "tag", v1, "--level", "5"}, stdout: []string{"tag", "introspection", "5"}},
		{args: []string{"script", "put", "tag", v2}, env: map[string]string{"KEYHOOK_TIMEOUT_MS": "250"}, stdout: []string{"tag"}},
		{args: []string{"script", "list"}, stdout: []string{"NAME", "tag"}},
		{args: []string{"script", "get", "tag", "-o", "json"}, stdout: []string{"'two'", `"level": 5`, `"timeout_ms": 250`}},
		{args: []string{"script", "disable", "tag"}, stdout: []string{"enabled:", "false"}},
		{args: []string{"script", "enable", "tag"}, stdout: []string{"true"}},
		{args: []string{"script", "versions", "tag"}, stdout: []string{"NUMBER", "AUTHOR", "keyhook-admin"}},
		{args: []string{"script", "rollback", "tag", "1"}, stdout: []string{"'one'"}},
		{args: []string{"client", "bind", "svc", "tag"}, stdout: []string{"introspection_scripts:", "tag"}},
		{args: []string{"client", "get", "svc", "-o", "json"}, stdout: []string{`"introspection_scripts": [`, `"tag"`}},
		{args: []string{"client", "unbind", "svc", "tag"}, stdout: []string{"introspection_scripts:"}},
		{args: []string{"client", "get", "svc", "-o", "json"}, stdout: []string{`"introspection_scripts": []`}},
		{args: []string{"script", "put", "up", up, "--type", "update_token"}, stdout: []string{"update_token"}},
		{args: []string{"client", "bind", "svc", "up", "--update-token", "-o", "json"}, stdout: []string{`"update_token_scripts": [`, `"up"`}},
		{args: []string{"client", "unbind", "svc", "up", "--update-token", "-o", "json"}, stdout: []string{`"update_token_scripts": []`}},
		{args: []string{"client", "bind", "svc", "missing"}, code: 1, stderr: `keyhook: introspection_scripts: script "missing" does not exist`},
		{args: []string{"user", "create", "alice", "--password", "pw-alice-1"}, stdout: []string{"alice"}},
		{args: []string{"user", "list"}, stdout: []string{"USERNAME", "alice"}},
		{args: []string{"user", "delete", "alice"}, stdout: []string{"deleted user alice"}},
		{args: []string{"config", "set", "access_token_lifetime=600", "introspection_required_scope=read"}, stdout: []string{"600"}},
		{args: []string{"config", "get", "access_token_lifetime"}, stdout: []string{"600"}},
		{args: []string{"config", "get", "-o", "json"}, stdout: []string{`"introspection_required_scope": "read"`}},
		{args: []string{"token", "keyhook-admin", "-o", "json"}, env: map[string]string{"KEYHOOK_SECRET": "admin-secret"}, stdout: []string{"access_token"}},
		{args: []string{"script", "delete", "tag"}, stdout: []string{"deleted script tag"}},
		{args: []string{"client", "delete", "svc"}, stdout: []string{"deleted client svc"}},
		{args: []string{"client", "get", "svc"}, code: 1, stderr: "keyhook: "},
		// Hostile and usage cases.
		{args: []string{"client", "list"}, env: map[string]string{"KEYHOOK_CLIENT_SECRET": "wrong"}, code: 1, stderr: "keyhook: admin token for keyhook-admin: "},
		{args: []string{"client", "list", "--url", "http://" + freeAddr(t)}, code: 1, stderr: "keyhook: admin token for keyhook-admin: cannot reach http://"},
		{args: []string{"client", "frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"script", "put", "tag"}, code: 2, stderr: "wants a script name and a file"},
		{args: []string{"script", "rollback", "tag", "x"}, code: 2, stderr: "not a number"},
		{args: []string{"config", "set", "novalue"}, code: 2, stderr: "not KEY=VALUE"},
		{args: []string{"client", "list", "-o", "yaml"}, code: 2, stderr: "neither text nor json"},
	} {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		for k, v := range tc.env {
			e[k] = v
		}
		code, out, errs := runCLI(t, e, tc.args...)
		name := strings.Join(tc.args, " ")
		if code != tc.code {
			t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", name, code, tc.code, out, errs)
		}
		for _, w := range tc.stdout {
			if !strings.Contains(out, w) {
				t.Errorf("%s: stdout lacks %q:\n%s", name, w, out)
			}
		}
		if !strings.Contains(errs, tc.stderr) {
			t.Errorf("%s: stderr lacks %q:\n%s", name, tc.stderr, errs)
		}
		if tc.code == 1 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%s: error on more than one line:\n%s", name, errs)
		}
	}
}

// TestAdminCLIToken: keyhook token decodes a JWT access token's header and
// claims (RFC 9068).
func TestAdminCLIToken(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	start(t, dir, addr, nil, "--addr", addr, "--bootstrap-admin-secret", "admin-secret")
	env := map[string]string{"KEYHOOK_URL": "http://" + addr, "KEYHOOK_CLIENT_SECRET": "admin-secret"}
	code, out, errs := runCLI(t, env, "client", "create", "jwt-svc", "--jwt", "-o", "json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errs)
	}
	i := strings.Index(out, `"client_secret": "`)
	if i < 0 {
		t.Fatalf("no secret: %s", out)
	}
	secret := strings.SplitN(out[i+len(`"client_secret": "`):], `"`, 2)[0]
	env["KEYHOOK_TOKEN_SECRET"] = secret
	code, out, errs = runCLI(t, env, "token", "jwt-svc")
	if code != 0 {
		t.Fatalf("token: %d %s", code, errs)
	}
	for _, w := range []string{"header:", `"alg"`, "claims:", `"client_id": "jwt-svc"`} {
		if !strings.Contains(out, w) {
			t.Errorf("token output lacks %q:\n%s", w, out)
		}
	}
	env["KEYHOOK_TOKEN_SECRET"] = "wrong"
	if code, _, errs = runCLI(t, env, "token", "jwt-svc"); code != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("wrong secret: %d %s", code, errs)
	}
}
