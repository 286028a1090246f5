package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeedOnlyIntoEmptyDatabase: --seed imports its file into a database
// without scripts, users or clients other than keyhook-admin, and leaves
// any other alone, so that restarting `make run` never undoes an admin's
// changes.
func TestSeedOnlyIntoEmptyDatabase(t *testing.T) {
	seed, _ := filepath.Abs("examples/seed.yaml")
	const adminSecret = "seed-test-admin-secret"
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		seeded  bool // demo-service exists after the start with --seed
	}{
		{"new database", func(*testing.T, string) {}, true},
		{"database with only the bootstrap admin", func(t *testing.T, dir string) {
			addr := freeAddr(t)
			start(t, dir, addr, nil, "--addr", addr, "--bootstrap-admin-secret", adminSecret).stop(t)
		}, true},
		{"seeded database where an admin deleted a seeded client", func(t *testing.T, dir string) {
			addr := freeAddr(t)
			s := start(t, dir, addr, nil, "--addr", addr, "--seed", seed, "--bootstrap-admin-secret", adminSecret)
			_, tok := token(t, addr, "keyhook-admin", adminSecret)
			req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/admin/v1/clients/demo-service", nil)
			req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusNoContent {
				t.Fatalf("delete demo-service: %v %v", resp, err)
			}
			resp.Body.Close()
			s.stop(t)
		}, false},
		{"database with a client of its own", func(t *testing.T, dir string) {
			own := filepath.Join(dir, "own.yaml")
			_ = os.WriteFile(own, []byte("clients:\n  - client_id: own\n    client_secret: own-secret\n"), 0o600)
			if code, _, stderr := runCLI(t, nil, "import", "--db", "sqlite:"+filepath.Join(dir, "keyhook.db"), own); code != 0 {
				t.Fatal(stderr)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(t, dir)
			addr := freeAddr(t)
			s := start(t, dir, addr, nil, "--addr", addr, "--seed", seed, "--bootstrap-admin-secret", adminSecret)
			defer s.stop(t)
			st, m := token(t, addr, "demo-service", "demo-service-secret")
			if seeded := st == http.StatusOK; seeded != tc.seeded {
				t.Fatalf("demo-service after the start with --seed: %d %v, want seeded=%v", st, m, tc.seeded)
			}
		})
	}
}

// TestResetAdminSecret: keyhook admin reset-secret prints a new secret
// for keyhook-admin once, creating the client in a new database; the
// database comes from the argument, --db or KEYHOOK_DB; only the newest
// secret works afterwards.
func TestResetAdminSecret(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dsn string) {
		var secrets []string
		for _, inv := range []struct {
			args []string
			env  map[string]string
		}{
			{[]string{"admin", "reset-secret", dsn}, nil}, // creates keyhook-admin
			{[]string{"admin", "reset-secret", "--db", dsn}, nil},
			{[]string{"admin", "reset-secret"}, map[string]string{"KEYHOOK_DB": dsn}},
		} {
			code, stdout, stderr := runCLI(t, inv.env, inv.args...)
			secret := strings.TrimSpace(stdout)
			if code != 0 || strings.Count(stdout, "\n") != 1 || len(secret) < 32 || strings.ContainsAny(secret, " =") {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q", inv.args, code, stdout, stderr)
			}
			for _, old := range secrets {
				if old == secret {
					t.Fatalf("%v printed a secret printed before", inv.args)
				}
			}
			secrets = append(secrets, secret)
		}
		addr := freeAddr(t)
		s := start(t, t.TempDir(), addr, nil, "--addr", addr, "--db", dsn)
		defer s.stop(t)
		if s.secret() != "" {
			t.Fatalf("serve printed bootstrap credentials again: %v", s.lines)
		}
		for i, secret := range secrets {
			st, m := token(t, addr, "keyhook-admin", secret)
			newest := i == len(secrets)-1
			if newest && (st != http.StatusOK || m["scope"] != "keyhook:admin") {
				t.Errorf("the newest secret: %d %v", st, m)
			}
			if !newest && st != http.StatusUnauthorized {
				t.Errorf("secret %d of %d still works: %d", i+1, len(secrets), st)
			}
		}
	})
}

// TestMakeRunAddress: make run tells the server the address of ADDR=, or
// else of KEYHOOK_ADDR in the environment (make -n prints the command).
func TestMakeRunAddress(t *testing.T) {
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"default", nil, nil, "--addr '127.0.0.1:8080' --db 'sqlite:keyhook.db'"},
		{"KEYHOOK_ADDR", nil, []string{"KEYHOOK_ADDR=0.0.0.0:9090"}, "--addr '0.0.0.0:9090'"},
		{"ADDR= wins", []string{"ADDR=127.0.0.1:7070"}, []string{"KEYHOOK_ADDR=0.0.0.0:9090"}, "--addr '127.0.0.1:7070'"},
		{"KEYHOOK_DB", nil, []string{"KEYHOOK_DB=postgres://u@h/db?a=1&b=2"}, "--db 'postgres://u@h/db?a=1&b=2'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(mk, append([]string{"-n", "run"}, tc.args...)...)
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "KEYHOOK_") && !strings.HasPrefix(kv, "ADDR=") && !strings.HasPrefix(kv, "DB=") &&
					!strings.HasPrefix(kv, "MAKEFLAGS=") {
					env = append(env, kv)
				}
			}
			cmd.Env = append(env, tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "keyhook serve ") || !strings.Contains(string(out), tc.want) {
				t.Fatalf("make -n run: %v\n%s\nwant %q", err, out, tc.want)
			}
		})
	}
}

// TestSeedRefusedAtFirstStart: a seed whose entries parse but which the
// engine refuses (an unknown grant type) stops the first start before any
// bootstrap secret is printed or stored, and nothing of the seed is
// written; the next start with a good seed creates the admin and seeds.
func TestSeedRefusedAtFirstStart(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dsn string) {
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		_ = os.WriteFile(bad, []byte("clients:\n  - client_id: first\n    client_secret: first-secret\n"+
			"  - client_id: second\n    grant_types: [telepathy]\n"), 0o600)
		code, stdout, stderr := runCLI(t, nil, "serve", "--addr", "127.0.0.1:0", "--db", dsn, "--seed", bad, "--script-isolation", "inline")
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || stdout != "" || lines[len(lines)-1] != "keyhook: --seed: "+bad+`:5: clients[1].grant_types: unknown grant type "telepathy"` {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
		}
		code, exp, stderr := runCLI(t, nil, "export", "--db", dsn)
		if code != 0 || strings.Contains(exp, "client_id") {
			t.Fatalf("after the refused start: exit %d, stderr %s, export:\n%s", code, stderr, exp)
		}
		seed, _ := filepath.Abs("examples/seed.yaml")
		addr := freeAddr(t)
		s := start(t, t.TempDir(), addr, nil, "--addr", addr, "--db", dsn, "--seed", seed)
		defer s.stop(t)
		if st, _ := token(t, addr, "keyhook-admin", s.secret()); st != http.StatusOK {
			t.Fatalf("bootstrap admin after the second start: %d (%v)", st, s.lines)
		}
		if st, _ := token(t, addr, "demo-service", "demo-service-secret"); st != http.StatusOK {
			t.Fatalf("seed after the second start: %d", st)
		}
	})
}
