package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeysAtRest drives the key-encryption key (docs/keys.md) through the
// real binary: without one the server warns loudly and --require-kek
// refuses to start; with one the database holds no private key in the
// clear, and the sealed keys open only with the same key.
func TestKeysAtRest(t *testing.T) {
	seed, _ := filepath.Abs("examples/seed.yaml")
	newKEK := func() string {
		out, err := exec.Command(binary, "new-kek").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	writeKEK := func(dir, kek string) string {
		p := filepath.Join(dir, "kek")
		if err := os.WriteFile(p, []byte(kek+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// serveLog starts keyhook serve and returns it with its stderr file.
	serveLog := func(t *testing.T, dir, addr string, env []string, args ...string) (*server, string) {
		t.Helper()
		logPath := filepath.Join(t.TempDir(), "stderr")
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cmd := exec.Command(binary, append([]string{"serve", "--addr", addr, "--seed", seed}, args...)...)
		cmd.Stderr = f
		return startCommand(t, cmd, dir, addr, env), logPath
	}
	readLog := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	// refused runs keyhook serve that must exit with an error naming why.
	refused := func(t *testing.T, dir string, env []string, want string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, append([]string{"serve", "--addr", freeAddr(t)}, args...)...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("keyhook serve %v started (err %v); output:\n%s", args, err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Fatalf("keyhook serve %v: output does not say %q:\n%s", args, want, out)
		}
	}
	dbBytes := func(dir string) string {
		var all []byte
		for _, f := range []string{"keyhook.db", "keyhook.db-wal"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			all = append(all, b...)
		}
		return string(all)
	}
	// jwtKid issues a JWT access token of the seeded demo-jwt client and
	// returns the kid of its header.
	jwtKid := func(t *testing.T, addr string) string {
		t.Helper()
		st, m := token(t, addr, "demo-jwt", "demo-jwt-secret")
		at, _ := m["access_token"].(string)
		if st != 200 || strings.Count(at, ".") != 2 {
			t.Fatalf("demo-jwt token: %d %v", st, m)
		}
		var hdr struct{ Kid string }
		raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(at, ".")[0])
		_ = json.Unmarshal(raw, &hdr)
		return hdr.Kid
	}

	t.Run("require-kek refuses to start without one", func(t *testing.T) {
		dir := t.TempDir()
		refused(t, dir, nil, "--require-kek: no key-encryption key", "--require-kek")
		refused(t, dir, []string{"KEYHOOK_REQUIRE_KEK=true"}, "--require-kek: no key-encryption key")
		if _, err := os.Stat(filepath.Join(dir, "keyhook.db")); err == nil {
			t.Fatal("a database was created by a server that refused to start")
		}
		refused(t, dir, []string{"KEYHOOK_KEK=c2hvcnQ="}, "KEYHOOK_KEK: a key-encryption key must be 32 bytes")
		refused(t, dir, nil, "--kek-file", "--kek-file", filepath.Join(dir, "absent"))
	})

	t.Run("without a KEK the server warns", func(t *testing.T) {
		dir, addr := t.TempDir(), freeAddr(t)
		s, logPath := serveLog(t, dir, addr, nil)
		s.stop(t)
		if !strings.Contains(readLog(logPath), "UNENCRYPTED KEYS") {
			t.Fatalf("no warning about unencrypted keys:\n%s", readLog(logPath))
		}
		if !strings.Contains(dbBytes(dir), `"d":"`) {
			t.Fatal("a private JWK in the clear was expected without a KEK (is the test looking at the right file?)")
		}
	})

	t.Run("with a KEK no key is stored in the clear and only that KEK opens them", func(t *testing.T) {
		dir, addr := t.TempDir(), freeAddr(t)
		kekFile := writeKEK(t.TempDir(), newKEK())
		s, logPath := serveLog(t, dir, addr, nil, "--kek-file", kekFile, "--require-kek")
		kid := jwtKid(t, addr)
		s.stop(t)
		if log := readLog(logPath); strings.Contains(log, "UNENCRYPTED") {
			t.Fatalf("warned with a KEK:\n%s", log)
		}
		db := dbBytes(dir)
		if strings.Contains(db, `"d":"`) || !strings.Contains(db, "kek1:") {
			t.Fatal("the database holds a private key in the clear, or no sealed one")
		}
		refused(t, dir, nil, "none is configured")
		refused(t, dir, []string{"KEYHOOK_KEK=" + newKEK()}, "does not open it")
		// The same KEK from the environment opens the same key, which
		// still signs; the client_secret_jwt secret sealed under the
		// sealing key still opens too (demo-jwt-secret above).
		addr = freeAddr(t)
		kekText, _ := os.ReadFile(kekFile)
		s, _ = serveLog(t, dir, addr, []string{"KEYHOOK_KEK=" + strings.TrimSpace(string(kekText))})
		if got := jwtKid(t, addr); got != kid {
			t.Fatalf("kid after restart %q, want %q (the key was replaced, not opened)", got, kid)
		}
		s.stop(t)
	})

	t.Run("keys stored before the KEK are sealed in place at the first start with one", func(t *testing.T) {
		dir, addr := t.TempDir(), freeAddr(t)
		s, _ := serveLog(t, dir, addr, nil)
		oldKid := jwtKid(t, addr)
		s.stop(t)
		if !strings.Contains(dbBytes(dir), `"d":"`) {
			t.Fatal("expected a private JWK in the clear before the KEK")
		}
		kekFile := writeKEK(t.TempDir(), newKEK())
		addr = freeAddr(t)
		s, logPath := serveLog(t, dir, addr, nil, "--kek-file", kekFile)
		// The same key still signs, and demo-jwt's client_secret_jwt
		// secret (sealed under the resealed sealing key) still opens:
		// jwtKid authenticates demo-jwt with it.
		if got := jwtKid(t, addr); got != oldKid {
			t.Fatalf("kid %q after sealing, want %q", got, oldKid)
		}
		s.stop(t)
		if log := readLog(logPath); strings.Contains(log, "UNENCRYPTED") || !strings.Contains(log, "sealed a signing key") {
			t.Fatalf("start with a new KEK over plain keys logged:\n%s", log)
		}
		db := dbBytes(dir)
		if strings.Contains(db, `"d":"`) || !strings.Contains(db, "kek1:") {
			t.Fatal("a private key is still stored in the clear after the first start with a KEK")
		}
		refused(t, dir, nil, "none is configured")
	})
}
