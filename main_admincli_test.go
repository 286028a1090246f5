package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		{args: []string{"client", "create", "--name", "Picked by the server", "-o", "json"}, stdout: []string{`"client_secret": "`, `"client_name": "Picked by the server"`}},
		{args: []string{"client", "create", "a", "b"}, code: 2, stderr: "wants at most a client id, got 2 arguments"},
		{args: []string{"client", "list"}, stdout: []string{"CLIENT_ID", "svc", "Service", "keyhook-admin", "Picked by the server"}},
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
		{args: []string{"script", "stats"}, stdout: []string{"NAME", "CALLS", "P99_MS", "tag"}},
		{args: []string{"script", "stats", "-o", "json"}, stdout: []string{`"name": "tag"`, `"calls": 0`}},
		{args: []string{"client", "bind", "svc", "tag"}, stdout: []string{"introspection_scripts:", "tag"}},
		{args: []string{"client", "get", "svc", "-o", "json"}, stdout: []string{`"introspection_scripts": [`, `"tag"`}},
		{args: []string{"client", "unbind", "svc", "tag"}, stdout: []string{"introspection_scripts:"}},
		{args: []string{"client", "get", "svc", "-o", "json"}, stdout: []string{`"introspection_scripts": []`}},
		{args: []string{"script", "put", "up", up, "--type", "update_token"}, stdout: []string{"update_token"}},
		{args: []string{"client", "bind", "svc", "up", "--update-token", "-o", "json"}, stdout: []string{`"update_token_scripts": [`, `"up"`}},
		{args: []string{"client", "unbind", "svc", "up", "--update-token", "-o", "json"}, stdout: []string{`"update_token_scripts": []`}},
		{args: []string{"client", "bind", "svc", "missing"}, code: 1, stderr: `keyhook: introspection_scripts: script "missing" does not exist`},
		{args: []string{"user", "create", "alice", "--password", "pw-alice-1"}, stdout: []string{"alice"}},
		{args: []string{"user", "create", "bob", "--password", "pw-bob-123", "--claim", "department=sales", "--claim", "level=3", "-o", "json"},
			stdout: []string{`"department": "sales"`, `"level": 3`}},
		{args: []string{"user", "create", "carol", "--password", "pw-carol-1", "--claim", "nodepartment"}, code: 2, stderr: `--claim: "nodepartment" is not KEY=VALUE`},
		{args: []string{"user", "list"}, stdout: []string{"USERNAME", "alice", "bob", "sales"}},
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

// TestAdminCLITokenCache: the admin token of one run is reused by the next
// (the cache file is private and holds no secret); a token the server
// refuses, an expired one and a file others may read are not used; and
// another secret or server never gets a cached token.
func TestAdminCLITokenCache(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	start(t, dir, addr, nil, "--addr", addr, "--bootstrap-admin-secret", "admin-secret")
	cacheHome := filepath.Join(dir, "cache")
	env := map[string]string{"KEYHOOK_URL": "http://" + addr, "KEYHOOK_CLIENT_SECRET": "admin-secret", "XDG_CACHE_HOME": cacheHome}
	path := filepath.Join(cacheHome, "keyhook", "admin-tokens.json")
	key := tokenCacheKey("http://"+addr, "keyhook-admin", "admin-secret")
	read := func() map[string]cachedToken {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]cachedToken{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	list := func(env map[string]string, args ...string) string {
		t.Helper()
		code, _, errs := runCLI(t, env, append([]string{"client", "list"}, args...)...)
		if code != 0 {
			t.Fatalf("client list: %d %s", code, errs)
		}
		return errs
	}
	list(env)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v, want 0700", di.Mode().Perm())
	}
	if raw, _ := os.ReadFile(path); strings.Contains(string(raw), "admin-secret") {
		t.Errorf("the cache holds the secret: %s", raw)
	}
	first := read()[key]
	if first.AccessToken == "" || first.ExpiresAt <= time.Now().Unix() {
		t.Fatalf("no usable token cached: %+v", read())
	}

	// The second run uses it: a new fetch would have cached a new token.
	list(env)
	if got := read()[key]; got != first {
		t.Errorf("second run fetched a new token: %+v, had %+v", got, first)
	}

	write := func(m map[string]cachedToken, mode os.FileMode) {
		t.Helper()
		b, _ := json.Marshal(m)
		if err := os.WriteFile(path, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		entry cachedToken
		mode  os.FileMode
		warn  string
	}{
		{name: "refused by the server", entry: cachedToken{AccessToken: "not-a-token-of-this-server", ExpiresAt: time.Now().Add(time.Hour).Unix()}, mode: 0o600},
		{name: "about to expire", entry: cachedToken{AccessToken: first.AccessToken, ExpiresAt: time.Now().Add(10 * time.Second).Unix()}, mode: 0o600},
		{name: "file others may read", entry: cachedToken{AccessToken: "planted", ExpiresAt: time.Now().Add(time.Hour).Unix()}, mode: 0o644, warn: "not a private file"},
	} {
		write(map[string]cachedToken{key: tc.entry}, tc.mode)
		errs := list(env)
		if !strings.Contains(errs, tc.warn) {
			t.Errorf("%s: stderr %q lacks %q", tc.name, errs, tc.warn)
		}
		if tc.warn != "" {
			if got := read()[key]; got != tc.entry {
				t.Errorf("%s: the file was rewritten: %+v", tc.name, got)
			}
			continue
		}
		if got := read()[key]; got.AccessToken == tc.entry.AccessToken || got.AccessToken == "" {
			t.Errorf("%s: still cached %+v", tc.name, got)
		}
	}

	// Another secret, or another server, has its own entry: a wrong
	// secret is refused though a token is cached for the right one.
	write(map[string]cachedToken{key: first}, 0o600)
	bad := map[string]string{"KEYHOOK_URL": env["KEYHOOK_URL"], "KEYHOOK_CLIENT_SECRET": "wrong", "XDG_CACHE_HOME": cacheHome}
	if code, _, errs := runCLI(t, bad, "client", "list"); code != 1 || !strings.Contains(errs, "admin token for keyhook-admin") {
		t.Errorf("wrong secret with a cached token: %d %s", code, errs)
	}

	// --token-cache off neither reads nor writes a file.
	os.Remove(path)
	list(env, "--token-cache", "off")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("--token-cache off wrote %s: %v", path, err)
	}
}
