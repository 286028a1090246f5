package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keyhook/keyhook/storage"
)

// runCLI runs keyhook with args in-process, with the environment env.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, mapEnv(env), &out, &errb)
	return code, out.String(), errb.String()
}

// TestCommandLine: help goes to stdout with status 0; a command line that
// is not understood (unknown command or flag, a flag of another
// command, a missing or extra argument) exits 2 with the usage on
// stderr, and runs nothing.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // wanted in stdout ("" : stdout empty)
		stderr     string // wanted in stderr ("" : stderr empty)
		stderrLast string // the usage that follows the error
	}{
		{args: []string{"help"}, stdout: "Available Commands:"},
		{args: []string{"--help"}, stdout: "Available Commands:"},
		{args: []string{"-h"}, stdout: "Available Commands:"},
		{args: []string{"help", "serve"}, stdout: "--bootstrap-admin-secret"},
		{args: []string{"help", "admin", "reset-secret"}, stdout: "keyhook-admin"},
		{args: []string{"help", "bogus"}, code: 2, stderr: `keyhook: unknown help topic "bogus"`, stderrLast: "Available Commands:"},
		{args: []string{"serve", "--help"}, stdout: "--log-format"},
		{args: []string{"import", "--help"}, stdout: "keyhook import [--db DSN] FILE"},
		{args: []string{"admin", "reset-secret", "--help"}, stdout: "reset-secret [--db DSN | DB]"},
		{args: nil, code: 2, stderr: "keyhook: a command is needed", stderrLast: "Available Commands:"},
		{args: []string{"bogus"}, code: 2, stderr: `keyhook: unknown command "bogus"`, stderrLast: "Available Commands:"},
		{args: []string{"--bogus"}, code: 2, stderr: "keyhook: unknown flag: --bogus"},
		{args: []string{"serve", "--bogus"}, code: 2, stderr: "keyhook: unknown flag: --bogus", stderrLast: "--addr"},
		{args: []string{"serve", "extra"}, code: 2, stderr: "keyhook: keyhook serve takes no arguments"},
		// Each command has its own flags only: serve's are refused by
		// the others, which used to accept and ignore them.
		{args: []string{"export", "--seed", "x", "--addr", "y"}, code: 2, stderr: "keyhook: unknown flag: --seed", stderrLast: "--db"},
		{args: []string{"import", "--issuer", "https://x", "f.yaml"}, code: 2, stderr: "keyhook: unknown flag: --issuer"},
		{args: []string{"import", "--addr", "127.0.0.1:1", "f.yaml"}, code: 2, stderr: "keyhook: unknown flag: --addr"},
		{args: []string{"new-kek", "--db", "sqlite:x.db"}, code: 2, stderr: "keyhook: unknown flag: --db"},
		{args: []string{"version", "--log-level", "debug"}, code: 2, stderr: "keyhook: unknown flag: --log-level"},
		{args: []string{"admin", "reset-secret", "--seed", "x"}, code: 2, stderr: "keyhook: unknown flag: --seed"},
		{args: []string{"import"}, code: 2, stderr: "keyhook: keyhook import wants FILE"},
		{args: []string{"import", "a.yaml", "b.yaml"}, code: 2, stderr: "keyhook: keyhook import wants FILE"},
		{args: []string{"new-kek", "extra"}, code: 2, stderr: "keyhook: keyhook new-kek takes no arguments"},
		{args: []string{"admin"}, code: 2, stderr: "keyhook: a command is needed", stderrLast: "reset-secret"},
		{args: []string{"admin", "bogus"}, code: 2, stderr: `keyhook: unknown command "bogus" for "keyhook admin"`},
		{args: []string{"admin", "reset-secret", "--db", "sqlite:a.db", "sqlite:b.db"}, code: 2, stderr: "not both"},
		{args: []string{"admin", "reset-secret", "sqlite:a.db", "sqlite:b.db"}, code: 2, stderr: "at most one database"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", stdout, tc.stdout}, {"stderr", stderr, tc.stderr}} {
				if c.want == "" && c.got != "" {
					t.Errorf("%s is not empty:\n%s", c.name, c.got)
				}
				if !strings.Contains(c.got, c.want) {
					t.Errorf("%s lacks %q:\n%s", c.name, c.want, c.got)
				}
			}
			if tc.code == 2 {
				if !strings.HasPrefix(stderr, tc.stderr) && !strings.HasPrefix(stderr, "keyhook: ") {
					t.Errorf("stderr does not start with the error: %s", stderr)
				}
				if !strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, tc.stderrLast) {
					t.Errorf("no usage (with %q) after the error:\n%s", tc.stderrLast, stderr)
				}
			}
			if files, _ := os.ReadDir(dir); len(files) != 0 {
				t.Errorf("the command left %v behind", files)
			}
		})
	}
}

// TestVersion: keyhook version and --version print the build's version
// and Go version, from a test build too.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "keyhook ") || !strings.Contains(stdout, runtime.Version()) ||
			strings.Count(stdout, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// TestServeEnvironment: each serve flag falls back to KEYHOOK_<FLAG>, a
// flag wins, and a value that does not parse is refused naming the
// variable.
func TestServeEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(*options) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(o *options) bool {
			return o.addr == "127.0.0.1:8080" && o.db == "sqlite:keyhook.db" && o.issuer == "http://127.0.0.1:8080" &&
				o.logLevel == "info" && o.logFormat == "text" && o.seed == "" && o.scriptIsolation == "process" && !o.requireKEK && !o.scriptFetchAllowLoopback
		}, ""},
		{"environment", nil, map[string]string{"KEYHOOK_ADDR": "127.0.0.1:9", "KEYHOOK_LOG_FORMAT": "json", "KEYHOOK_LOG_LEVEL": "debug",
			"KEYHOOK_SEED": "s.yaml", "KEYHOOK_SCRIPT_WORKERS": "3", "KEYHOOK_REQUIRE_KEK": "true", "KEYHOOK_JWKS_URI_ALLOW_PRIVATE": "1",
			"KEYHOOK_SCRIPT_FETCH_ALLOW_LOOPBACK": "true",
			"KEYHOOK_DB":                          "postgres://u@db.example/keyhook", "KEYHOOK_MEMORY_TARGET_MB": "0"},
			func(o *options) bool {
				return o.addr == "127.0.0.1:9" && o.issuer == "http://127.0.0.1:9" && o.logFormat == "json" && o.logLevel == "debug" &&
					o.seed == "s.yaml" && o.scriptWorkers == 3 && o.requireKEK && o.jwksURIAllowPrivate && o.scriptFetchAllowLoopback &&
					o.db == "postgres://u@db.example/keyhook" && o.memoryTargetMB == 0
			}, ""},
		{"a flag wins", []string{"--addr", "127.0.0.1:10", "--log-format", "text", "--script-workers", "4"},
			map[string]string{"KEYHOOK_ADDR": "127.0.0.1:9", "KEYHOOK_LOG_FORMAT": "json", "KEYHOOK_SCRIPT_WORKERS": "3"},
			func(o *options) bool {
				return o.addr == "127.0.0.1:10" && o.logFormat == "text" && o.scriptWorkers == 4
			}, ""},
		{"an empty variable is unset", nil, map[string]string{"KEYHOOK_ADDR": ""},
			func(o *options) bool { return o.addr == "127.0.0.1:8080" }, ""},
		{"a variable that does not parse", nil, map[string]string{"KEYHOOK_SCRIPT_WORKERS": "many"}, nil, "KEYHOOK_SCRIPT_WORKERS"},
		{"a boolean that does not parse", nil, map[string]string{"KEYHOOK_REQUIRE_KEK": "maybe"}, nil, "KEYHOOK_REQUIRE_KEK"},
		{"--log-format", []string{"--log-format", "xml"}, nil, nil, "--log-format"},
		{"KEYHOOK_LOG_FORMAT", nil, map[string]string{"KEYHOOK_LOG_FORMAT": "xml"}, nil, "--log-format"},
		{"--log-level", []string{"--log-level", "loud"}, nil, nil, "--log-level"},
		{"--db", []string{"--db", "mysql://x"}, nil, nil, "--db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseServe(tc.args, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("%+v %v", o, err)
			}
		})
	}
}

// dirDigest is the names and contents of the files in dir.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		fmt.Fprintf(h, "%s %d %x\n", f.Name(), len(b), sha256.Sum256(b))
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestFailedStartChangesNothing: keyhook serve checks the listeners, the
// key-encryption key, the seed file and the DSN before it opens the
// database, so that a start that fails leaves no database behind, nor
// changes one that exists (no bootstrap secret, no seed import), and says
// why in one line.
func TestFailedStartChangesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	free := func(t *testing.T) string { return freeAddr(t) }
	seed, _ := filepath.Abs("examples/seed.yaml")
	writeFile := func(t *testing.T, name, text string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		// args for keyhook serve; the database is sqlite:DIR/keyhook.db
		args func(t *testing.T) []string
		env  map[string]string
		// existing: the database exists already (made by keyhook import).
		existing bool
		want     []string // in the one line of stderr
	}{
		{name: "busy --addr", args: func(t *testing.T) []string { return []string{"--addr", busyAddr, "--seed", seed} },
			want: []string{"--addr", busyAddr, "address already in use"}},
		{name: "busy --addr with an existing database", existing: true,
			args: func(t *testing.T) []string { return []string{"--addr", busyAddr, "--seed", seed} },
			want: []string{"--addr", busyAddr}},
		{name: "busy KEYHOOK_ADDR", args: func(t *testing.T) []string { return nil }, env: map[string]string{"KEYHOOK_ADDR": busyAddr},
			want: []string{"--addr", busyAddr}},
		{name: "busy --metrics-addr", existing: true,
			args: func(t *testing.T) []string { return []string{"--addr", free(t), "--metrics-addr", busyAddr} },
			want: []string{"--metrics-addr", busyAddr}},
		{name: "missing seed file",
			args: func(t *testing.T) []string { return []string{"--addr", free(t), "--seed", "/nonexistent/seed.yaml"} },
			want: []string{"--seed", "/nonexistent/seed.yaml", "no such file"}},
		{name: "seed file that is not YAML", existing: true, args: func(t *testing.T) []string {
			return []string{"--addr", free(t), "--seed", writeFile(t, "bad.yaml", "clients:\n  - client_id: a\n   grant_types: [x\n")}
		}, want: []string{"--seed", "bad.yaml:"}},
		{name: "seed with a wrong type", args: func(t *testing.T) []string {
			return []string{"--addr", free(t), "--seed",
				writeFile(t, "typed.yaml", "clients:\n  - client_id: a\n  - client_id: b\n    grant_types: client_credentials\n")}
		}, want: []string{"--seed", "typed.yaml:4: clients[1].grant_types: want a list, not string"}},
		{name: "seed with an unknown field", args: func(t *testing.T) []string {
			return []string{"--addr", free(t), "--seed", writeFile(t, "unknown.yaml", "users:\n  - username: a\n    passwrd: x\n")}
		}, want: []string{"unknown.yaml:3: users[0].passwrd: unknown field"}},
		{name: "seed with a client without client_id", args: func(t *testing.T) []string {
			return []string{"--addr", free(t), "--seed", writeFile(t, "noid.yaml", "clients:\n  - client_id: a\n  - client_name: b\n")}
		}, want: []string{"noid.yaml:3: clients[1].client_id: is required in a seed"}},
		{name: "seed with a missing script source", args: func(t *testing.T) []string {
			return []string{"--addr", free(t), "--seed", writeFile(t, "src.yaml", "scripts:\n  - name: a\n    type: introspection\n    source_file: absent.js\n")}
		}, want: []string{"src.yaml:4: scripts[0].source_file:", "absent.js"}},
		{name: "malformed DSN", args: func(t *testing.T) []string {
			return []string{"--addr", free(t), "--db", "postgres://keyhook:hunter2@db.example:port/keyhook"}
		}, want: []string{"--db"}},
		{name: "unsupported DSN", args: func(t *testing.T) []string { return []string{"--addr", free(t), "--db", "mysql://db/keyhook"} },
			want: []string{"--db", "unsupported DSN"}},
		{name: "KEK file missing", existing: true,
			args: func(t *testing.T) []string { return []string{"--addr", free(t), "--kek-file", "/nonexistent/kek"} },
			want: []string{"--kek-file"}},
		{name: "bad KEYHOOK_LOGIN_FAILURES", args: func(t *testing.T) []string { return []string{"--addr", free(t)} },
			env: map[string]string{"KEYHOOK_LOGIN_FAILURES": "lots"}, want: []string{"KEYHOOK_LOGIN_FAILURES"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			if tc.existing {
				if code, _, stderr := runCLI(t, nil, "import", "--db", "sqlite:keyhook.db", writeFile(t, "one.yaml",
					"clients:\n  - client_id: existing\n    client_secret: existing-secret\n")); code != 0 {
					t.Fatalf("making the database: %s", stderr)
				}
			}
			before := dirDigest(t, dir)
			code, stdout, stderr := runCLI(t, tc.env, append([]string{"serve"}, tc.args(t)...)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q stderr %q", code, stdout, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q (a bootstrap secret?)", stdout)
			}
			if !strings.HasPrefix(stderr, "keyhook: ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line \"keyhook: ...\":\n%s", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
			if strings.Contains(stderr, "hunter2") {
				t.Errorf("stderr shows the database password: %s", stderr)
			}
			if after := dirDigest(t, dir); after != before {
				files, _ := os.ReadDir(dir)
				t.Errorf("the failed start changed the directory: %v", files)
			}
		})
	}
}

// TestImportAllOrNothing: an import that fails at its third client leaves
// the database as it was: no config, script or client of the file, on
// SQLite and (with KEYHOOK_TEST_PG) PostgreSQL; the error points at the
// file's line and field.
func TestImportAllOrNothing(t *testing.T) {
	const doc = `config:
  access_token_lifetime: 777
scripts:
  - name: atomic-script
    type: introspection
    source: "function modifyResponse(r) { return true }"
clients:
  - client_id: atomic-one
    client_secret: atomic-one-secret
  - client_id: atomic-two
    client_secret: atomic-two-secret
  - client_id: atomic-three
    client_secret: atomic-three-secret
    grant_types: [client_credentials, telepathy]
users:
  - username: atomic-user
    password: atomic-password
`
	file := filepath.Join(t.TempDir(), "atomic.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	forEachDatabase(t, func(t *testing.T, dsn string) {
		code, _, stderr := runCLI(t, nil, "import", "--db", dsn, file)
		if code != 1 {
			t.Fatalf("import exit %d: %s", code, stderr)
		}
		want := file + `:14: clients[2].grant_types: unknown grant type "telepathy"`
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); lines[len(lines)-1] != "keyhook: "+want {
			t.Errorf("last line of stderr %q, want %q", lines[len(lines)-1], "keyhook: "+want)
		}
		code, exp, stderr := runCLI(t, nil, "export", "--db", dsn)
		if code != 0 {
			t.Fatalf("export: %s", stderr)
		}
		for _, w := range []string{"atomic-", "777"} {
			if strings.Contains(exp, w) {
				t.Errorf("the failed import left %q in the database:\n%s", w, exp)
			}
		}
	})
}

// forEachDatabase runs fn on a new SQLite database and, when
// KEYHOOK_TEST_PG names a PostgreSQL server, on a new database there.
func forEachDatabase(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, "sqlite:"+filepath.Join(t.TempDir(), "keyhook.db")) })
	t.Run("postgres", func(t *testing.T) {
		base := strings.TrimSpace(os.Getenv("KEYHOOK_TEST_PG"))
		if base == "" {
			t.Skip("KEYHOOK_TEST_PG is not set")
		}
		dsn, drop, err := storage.NewTestDSN(context.Background(), base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := drop(); err != nil {
				t.Errorf("drop: %v", err)
			}
		})
		fn(t, dsn)
	})
}

// TestExportRoundTrip: keyhook export writes integers as integers (not
// 1.2096e+06 nor 3600.0), and its output imports back to the same export.
func TestExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed.yaml")
	if err := os.WriteFile(seed, []byte(`config:
  refresh_token_lifetime: 1209600
  access_token_lifetime: 3600
scripts:
  - name: lifetimes
    type: update_token
    level: 1000000
    timeout_ms: 250
    source: "function updateToken(t) { return true }"
clients:
  - client_id: round-trip
    client_secret: round-trip-secret
    access_token_lifetime: 3600
    refresh_token_lifetime: 2000000
    grant_types: [client_credentials]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	export := func(dsn string) string {
		t.Helper()
		code, out, stderr := runCLI(t, nil, "export", "--db", dsn)
		if code != 0 {
			t.Fatalf("export: %s", stderr)
		}
		return out
	}
	first := "sqlite:" + filepath.Join(dir, "first.db")
	if code, _, stderr := runCLI(t, nil, "import", "--db", first, seed); code != 0 {
		t.Fatalf("import: %s", stderr)
	}
	exp := export(first)
	for _, w := range []string{"\n  access_token_lifetime: 3600\n", "\n  refresh_token_lifetime: 1209600\n",
		"\n    access_token_lifetime: 3600\n", "\n    refresh_token_lifetime: 2000000\n", "\n    level: 1000000\n", "\n    timeout_ms: 250\n"} {
		if !strings.Contains(exp, w) {
			t.Errorf("export lacks %q:\n%s", strings.TrimSpace(w), exp)
		}
	}
	for _, bad := range []string{"e+", ".0\n", `"3600"`} {
		if strings.Contains(exp, bad) {
			t.Errorf("export has %q:\n%s", bad, exp)
		}
	}
	file := filepath.Join(dir, "export.yaml")
	if err := os.WriteFile(file, []byte(exp), 0o600); err != nil {
		t.Fatal(err)
	}
	second := "sqlite:" + filepath.Join(dir, "second.db")
	if code, _, stderr := runCLI(t, nil, "import", "--db", second, file); code != 0 {
		t.Fatalf("import of the export: %s", stderr)
	}
	if again := export(second); again != exp {
		t.Errorf("export after the round trip differs:\n%s\nwas:\n%s", again, exp)
	}
}

// TestConfigurationDocumented: docs/configuration.md names every command,
// every flag of each, and the environment variable of each flag that has
// one, so that the reference stays true to the code.
func TestConfigurationDocumented(t *testing.T) {
	raw, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "keyhook" && !strings.Contains(doc, c.CommandPath()) {
			t.Errorf("docs/configuration.md does not name %q", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" || f.Name == "version" {
				return
			}
			if !strings.Contains(doc, "`--"+f.Name) {
				t.Errorf("%s --%s is not in docs/configuration.md", c.CommandPath(), f.Name)
			}
			if !strings.Contains(doc, "`"+envName(f.Name)+"`") {
				t.Errorf("%s --%s: %s is not in docs/configuration.md", c.CommandPath(), f.Name, envName(f.Name))
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand(mapEnv(nil), io.Discard, io.Discard))
	// The OTEL_* variables keyhook serve reads itself (docs/operations.md,
	// "Tracing") have no flag; each is listed all the same.
	_, _ = otelFromEnv(func(name string) (string, bool) {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("%s is not in docs/configuration.md", name)
		}
		if name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
			return "http://collector:4318", true
		}
		return "", false
	})
}
