package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Bundles (docs/configuration.md, "Bundles"): keyhook export --bundle DIR
// and keyhook import --bundle DIR, driven through the command line.

// seededDB is a SQLite database (or dsn) into which examples/seed.yaml was
// imported.
func seededDB(t *testing.T, dsn string) string {
	t.Helper()
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(t.TempDir(), "keyhook.db")
	}
	if code, _, stderr := runCLI(t, nil, "import", "--db", dsn, "examples/seed.yaml"); code != 0 {
		t.Fatalf("import examples/seed.yaml: %s", stderr)
	}
	return dsn
}

// exportDB is keyhook export of dsn (YAML with script versions): what a
// test compares to see that a command changed nothing.
func exportDB(t *testing.T, dsn string) string {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, "export", "--db", dsn)
	if code != 0 {
		t.Fatalf("export: %s", stderr)
	}
	return stdout
}

// exportBundleTo runs keyhook export --bundle dir on dsn.
func exportBundleTo(t *testing.T, dsn, dir string) string {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, "export", "--db", dsn, "--bundle", dir)
	if code != 0 {
		t.Fatalf("export --bundle: exit %d: %s", code, stderr)
	}
	return stdout
}

// readTree is every file under dir with its bytes and mode.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = fi.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = fi.Mode().String() + "\n" + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: %s differs:\n%s\n---\n%s", what, k, v, b[k])
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: %s appeared", what, k)
		}
	}
}

// scriptVersions are the version authors of each script, from keyhook
// export.
func scriptVersions(t *testing.T, dsn string) map[string][]string {
	t.Helper()
	var doc struct {
		Scripts []struct {
			Name     string `yaml:"name"`
			Versions []struct {
				Author string `yaml:"author"`
			} `yaml:"versions"`
		} `yaml:"scripts"`
	}
	if err := yaml.Unmarshal([]byte(exportDB(t, dsn)), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, s := range doc.Scripts {
		out[s.Name] = []string{}
		for _, v := range s.Versions {
			out[s.Name] = append(out[s.Name], v.Author)
		}
	}
	return out
}

// lastLine is the last line of s, with its newline: the error of a
// command, after the warnings it may log.
func lastLine(s string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	return strings.TrimSuffix(lines[len(lines)-1], "\n") + "\n"
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s holds no %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBundleRoundTrip: a bundle exported from a seeded database, imported
// into a new one and exported again gives the same files byte for byte;
// re-exporting an unchanged database changes no file; fixtures placed in
// the bundle are kept and run on import; no secret, password or user is
// written; files are 0644 and directories 0755; importing the same bundle
// twice changes nothing and records no script version.
func TestBundleRoundTrip(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, dsn string) {
		src := seededDB(t, dsn)
		a := filepath.Join(t.TempDir(), "bundle")
		out := exportBundleTo(t, src, a)
		if !strings.Contains(out, "exported bundle "+a+": config, 5 scripts, 6 clients (users and secrets left out)") ||
			!strings.Contains(out, "script liberty-fields: no fixtures") {
			t.Fatalf("export --bundle printed:\n%s", out)
		}
		first := readTree(t, a)
		for _, name := range []string{"keyhook.yaml", "scripts/liberty-fields.js", "scripts/department-claim.js"} {
			if !strings.HasPrefix(first[name], "-rw-r--r--\n") {
				t.Errorf("%s: %q", name, strings.SplitN(first[name], "\n", 2)[0])
			}
		}
		for _, name := range []string{"./", "scripts/"} {
			if first[name] != "drwxr-xr-x" {
				t.Errorf("%s: %s", name, first[name])
			}
		}
		yml := first["keyhook.yaml"]
		for _, secret := range []string{"demo-service-secret", "alice", "password:", "users:", "versions:", "keyhook-admin", "function modifyResponse"} {
			if strings.Contains(yml, secret) {
				t.Errorf("keyhook.yaml holds %q:\n%s", secret, yml)
			}
		}
		if !strings.Contains(yml, "source_file: scripts/liberty-fields.js") {
			t.Errorf("keyhook.yaml:\n%s", yml)
		}
		wantSrc, _ := os.ReadFile("examples/scripts/liberty_fields.js")
		if got := first["scripts/liberty-fields.js"]; got != "-rw-r--r--\n"+string(wantSrc) {
			t.Errorf("scripts/liberty-fields.js is not the script's source:\n%s", got)
		}

		// A fixture of the team's, kept by later exports and run by imports.
		fixture := filepath.Join(a, "scripts", "liberty-fields.test.json")
		copyFile(t, "examples/scripts/liberty_fields.test.json", fixture)
		first = readTree(t, a)
		exportBundleTo(t, src, a)
		sameTree(t, "re-export of an unchanged database", first, readTree(t, a))

		dst := "sqlite:" + filepath.Join(t.TempDir(), "copy.db")
		code, stdout, stderr := runCLI(t, nil, "import", "--db", dst, "--bundle", a)
		if code != 0 || !strings.Contains(stdout, "fixtures: 1 passed, 4 scripts without fixtures\n") ||
			!strings.Contains(stdout, "script liberty-fields: created\n") ||
			!strings.Contains(stdout, "bundle "+a+": 11 created, 0 updated, 0 deleted, 0 unchanged, 0 not in bundle\n") {
			t.Fatalf("import --bundle: exit %d\n%s\n%s", code, stdout, stderr)
		}
		versions := scriptVersions(t, dst)
		if got := strings.Join(versions["liberty-fields"], ","); got != "import" {
			t.Errorf("versions of liberty-fields after the import: %q", got)
		}

		b := filepath.Join(t.TempDir(), "again")
		if err := os.MkdirAll(filepath.Join(b, "scripts"), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, fixture, filepath.Join(b, "scripts", "liberty-fields.test.json"))
		exportBundleTo(t, dst, b)
		sameTree(t, "bundle of the imported database", first, readTree(t, b))

		code, stdout, stderr = runCLI(t, nil, "import", "--db", dst, "--bundle", a)
		if code != 0 || !strings.Contains(stdout, ": 0 created, 0 updated, 0 deleted, 11 unchanged, 0 not in bundle\n") ||
			!strings.Contains(stdout, "config: unchanged\n") {
			t.Fatalf("second import: exit %d\n%s\n%s", code, stdout, stderr)
		}
		if again := scriptVersions(t, dst); strings.Join(again["liberty-fields"], ",") != "import" {
			t.Errorf("an unchanged import recorded a version: %v", again)
		}
	})
}

// TestBundlePlan: import --bundle prints what changed per entry, --dry-run
// prints the same plan and leaves the database as it was, a changed script
// gets one new version authored "import", entries the bundle does not name
// are left alone (or deleted with --prune, never keyhook-admin).
func TestBundlePlan(t *testing.T) {
	dsn := seededDB(t, "")
	if code, _, stderr := runCLI(t, nil, "admin", "reset-secret", "--db", dsn); code != 0 {
		t.Fatal(stderr)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	exportBundleTo(t, dsn, dir)
	// A file of a script the database no longer has is left alone, and said.
	old := filepath.Join(dir, "scripts", "old.js")
	_ = os.WriteFile(old, []byte("// old\n"), 0o644)
	if out := exportBundleTo(t, dsn, dir); !strings.Contains(out, "scripts/old.js: no such script in the database (left alone)\n") {
		t.Errorf("export --bundle printed:\n%s", out)
	}
	if b, _ := os.ReadFile(old); string(b) != "// old\n" {
		t.Errorf("scripts/old.js: %q", b)
	}
	yml := filepath.Join(dir, "keyhook.yaml")
	editFile(t, filepath.Join(dir, "scripts", "liberty-fields.js"), `"Bearer"`, `"bearer"`)
	editFile(t, yml, "introspection_required_scope: \"\"", "introspection_required_scope: introspect")
	editFile(t, yml, "    client_id: demo-app\n", "    client_id: new-app\n")
	editFile(t, yml, "    enabled: true\n    level: 100\n    name: liberty-fields\n", "    enabled: false\n    level: 100\n    name: liberty-fields\n")

	want := []string{
		"config: updated (introspection_required_scope)",
		"script department-claim: unchanged",
		"script janssen-jwt-claims: unchanged",
		"script liberty-fields: updated (enabled, source)",
		"script onewelcome-user-details: unchanged",
		"script token-exchange-rules: unchanged",
		"client demo-app: not in bundle (left alone)",
		"client demo-gateway: unchanged",
		"client demo-jwt: unchanged",
		"client demo-password: unchanged",
		"client demo-resource-server: unchanged",
		"client demo-service: unchanged",
		"client new-app: created",
	}
	before := exportDB(t, dsn)
	versions := scriptVersions(t, dsn)
	code, stdout, stderr := runCLI(t, nil, "import", "--db", dsn, "--bundle", dir, "--dry-run")
	wantDry := "fixtures: 0 passed, 5 scripts without fixtures\n" + strings.Join(want, "\n") + "\n" +
		"bundle " + dir + ": 1 created, 1 updated, 0 deleted, 9 unchanged, 1 not in bundle (dry run: nothing written)\n"
	if code != 0 || stdout != wantDry {
		t.Fatalf("--dry-run: exit %d, stderr %s\ngot:\n%s\nwant:\n%s", code, stderr, stdout, wantDry)
	}
	if after := exportDB(t, dsn); after != before {
		t.Fatalf("--dry-run changed the database:\n%s\n---\n%s", before, after)
	}

	code, stdout, _ = runCLI(t, nil, "import", "--db", dsn, "--bundle", dir)
	if wantReal := strings.TrimSuffix(wantDry, " (dry run: nothing written)\n") + "\n"; code != 0 || stdout != wantReal {
		t.Fatalf("import: exit %d\ngot:\n%s\nwant:\n%s", code, stdout, wantReal)
	}
	after := scriptVersions(t, dsn)
	for name, authors := range after {
		wantAuthors := versions[name]
		if name == "liberty-fields" {
			wantAuthors = append(wantAuthors, "import")
		}
		if strings.Join(authors, ",") != strings.Join(wantAuthors, ",") {
			t.Errorf("versions of %s: %v, want %v", name, authors, wantAuthors)
		}
	}
	exp := exportDB(t, dsn)
	if !strings.Contains(exp, "introspection_required_scope: introspect") || !strings.Contains(exp, "client_id: demo-app") ||
		!strings.Contains(exp, "client_id: new-app") {
		t.Fatalf("after the import:\n%s", exp)
	}

	// --prune: in the plan, and done.
	for _, dry := range []bool{true, false} {
		args := []string{"import", "--db", dsn, "--bundle", dir, "--prune"}
		if dry {
			args = append(args, "--dry-run")
		}
		code, stdout, stderr = runCLI(t, nil, args...)
		if code != 0 || !strings.Contains(stdout, "client demo-app: deleted (not in bundle)\n") ||
			!strings.Contains(stdout, ": 0 created, 0 updated, 1 deleted, 11 unchanged, 0 not in bundle") ||
			strings.Contains(stdout, "keyhook-admin") {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, stdout, stderr)
		}
		exp := exportDB(t, dsn)
		if strings.Contains(exp, "client_id: demo-app") == !dry || !strings.Contains(exp, "client_id: keyhook-admin") {
			t.Fatalf("after %v:\n%s", args, exp)
		}
	}
}

// TestBundleAtomic: a bundle whose last entry the server refuses changes
// nothing, not even the entries before it, and the error names the file,
// line and field; a bundle whose fixtures fail is refused before the
// database is opened, saying which fixture failed and how.
func TestBundleAtomic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, dir string)
		stdout string
		stderr *regexp.Regexp
	}{
		{"last client invalid", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "scripts", "liberty-fields.js"), `"Bearer"`, `"bearer"`)
			editFile(t, filepath.Join(dir, "keyhook.yaml"), "      - client_credentials\n    introspection_scripts:\n      - liberty-fields",
				"      - telepathy\n    introspection_scripts:\n      - liberty-fields")
		}, "", regexp.MustCompile(`^keyhook: .*/keyhook\.yaml:\d+: clients\[5\]\.grant_types: unknown grant type "telepathy"\n$`)},
		{"failing fixture", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "scripts", "liberty-fields.js"), `"Bearer"`, `"bearer"`)
			copyFile(t, "examples/scripts/liberty_fields.test.json", filepath.Join(dir, "scripts", "liberty-fields.test.json"))
		}, `FAIL ` + "", regexp.MustCompile(`^keyhook: bundle .*: 1 fixtures failed; nothing imported\n$`)},
		{"fixture that does not parse", func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, "scripts", "liberty-fields.bad.test.json"), []byte(`{"function": "modifyResponse", "bogus": 1}`), 0o644)
		}, "", regexp.MustCompile(`liberty-fields\.bad\.test\.json: json: unknown field "bogus"\n$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := seededDB(t, "")
			dir := filepath.Join(t.TempDir(), "bundle")
			exportBundleTo(t, dsn, dir)
			tc.edit(t, dir)
			before := exportDB(t, dsn)
			code, stdout, stderr := runCLI(t, nil, "import", "--db", dsn, "--bundle", dir)
			if code != 1 || !tc.stderr.MatchString(lastLine(stderr)) || !strings.Contains(stdout, tc.stdout) {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if tc.name == "failing fixture" && !strings.Contains(stdout, `args_after[0].tokenType: expected "Bearer", got "bearer"`) {
				t.Errorf("the report does not say how the fixture failed:\n%s", stdout)
			}
			if after := exportDB(t, dsn); after != before {
				t.Fatalf("the refused import changed the database:\n%s\n---\n%s", before, after)
			}
		})
	}
}

// TestBundleHostile: what a careless or hostile bundle holds is refused
// with an error that says why, and nothing is imported.
func TestBundleHostile(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside.js")
	_ = os.WriteFile(outside, []byte("function modifyResponse(r) { return true; }"), 0o644)
	const yml = "scripts:\n  - name: s\n    type: introspection\n    source_file: %s\n"
	write := func(t *testing.T, dir, name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string) string // the --bundle argument
		stderr  string
	}{
		{"source_file with ..", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "../outside.js", 1))
			return dir
		}, `keyhook.yaml:4: scripts[0].source_file: "../outside.js": is outside the bundle's directory`},
		{"source_file with .. inside the path", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "scripts/../../outside.js", 1))
			return dir
		}, `is outside the bundle's directory`},
		{"absolute source_file", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", outside, 1))
			return dir
		}, `keyhook.yaml:4: scripts[0].source_file: "` + outside + `": must be a path relative to the bundle's directory`},
		{"symbolic link to a file outside", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "scripts/s.js", 1))
			_ = os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
			if err := os.Symlink(outside, filepath.Join(dir, "scripts", "s.js")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "scripts[0].source_file: scripts/s.js: is a symbolic link; a bundle holds plain files"},
		{"symbolic link to a directory outside", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "scripts/outside.js", 1))
			if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "scripts")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "scripts/outside.js: is a symbolic link"},
		{"keyhook.yaml a symbolic link", func(t *testing.T, dir string) string {
			other := filepath.Join(t.TempDir(), "k.yaml")
			_ = os.WriteFile(other, []byte("config: {}\n"), 0o644)
			if err := os.Symlink(other, filepath.Join(dir, "keyhook.yaml")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "keyhook.yaml: is a symbolic link"},
		{"huge script", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "scripts/s.js", 1))
			write(t, dir, "scripts/s.js", "//"+strings.Repeat("x", 2<<20))
			return dir
		}, "scripts[0].source_file: scripts/s.js: is 2097154 bytes, more than the 1048576 a bundle file may have"},
		{"script the server finds too large", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "scripts/s.js", 1))
			write(t, dir, "scripts/s.js", "//"+strings.Repeat("x", 100<<10)+"\nfunction modifyResponse(r) { return true; }\n")
			return dir
		}, `keyhook.yaml:2: scripts[0].source: scripts: source too large: script "s" is 102447 bytes, limit is 65536`},
		{"missing source file", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", strings.Replace(yml, "%s", "scripts/none.js", 1))
			return dir
		}, "scripts[0].source_file: scripts/none.js: no such file or directory"},
		{"unknown field", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", "clients:\n  - client_id: a\n    client_secrett: x\n")
			return dir
		}, "keyhook.yaml:3: clients[0].client_secrett: unknown field"},
		{"users", func(t *testing.T, dir string) string {
			write(t, dir, "keyhook.yaml", "users:\n  - username: mallory\n    password: pw-pw-pw-pw\n")
			return dir
		}, "keyhook.yaml:2: users: users are not part of a bundle (import them with keyhook import FILE)"},
		{"missing directory", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "none")
		}, "none: no such directory"},
		{"a file, not a directory", func(t *testing.T, dir string) string {
			write(t, dir, "f", "x")
			return filepath.Join(dir, "f")
		}, "f: is not a directory"},
		{"no keyhook.yaml", func(t *testing.T, dir string) string {
			return dir
		}, "keyhook.yaml: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			arg := tc.prepare(t, dir)
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "keyhook.db")
			code, stdout, stderr := runCLI(t, nil, "import", "--db", dsn, "--bundle", arg)
			if code != 1 || !strings.Contains(lastLine(stderr), tc.stderr) || strings.Contains(stderr, "panic") {
				t.Fatalf("exit %d, stdout %q\nstderr: %s\nwant: %s", code, stdout, stderr, tc.stderr)
			}
			if _, err := os.Stat(strings.TrimPrefix(dsn, "sqlite:")); err == nil {
				if exp := exportDB(t, dsn); strings.Contains(exp, "name: s\n") || strings.Contains(exp, "client_id: a\n") {
					t.Fatalf("a refused bundle was imported:\n%s", exp)
				}
			}
		})
	}
}

// TestBundleCommandLine: --bundle with a FILE, --dry-run or --prune
// without --bundle, or no FILE are usage errors (exit 2); an export into a
// file, or into a directory whose scripts/ is a file, is an error (exit 1)
// that writes nothing.
func TestBundleCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"import", "--bundle", "b", "f.yaml"}, 2, `keyhook: --bundle: takes no FILE argument, got "f.yaml"`},
		{[]string{"import", "--dry-run", "f.yaml"}, 2, "keyhook: --dry-run: needs --bundle"},
		{[]string{"import", "--prune", "f.yaml"}, 2, "keyhook: --prune: needs --bundle"},
		{[]string{"import"}, 2, "keyhook: keyhook import wants FILE or --bundle DIR, got 0 arguments"},
		{[]string{"export", "--bundle", "b", "extra"}, 2, "keyhook: keyhook export takes no arguments"},
		{[]string{"export", "--bundle", "file"}, 1, "keyhook: --bundle file: is not a directory"},
		{[]string{"export", "--bundle", "withfile"}, 1, "keyhook: --bundle withfile: withfile/scripts is not a directory"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Chdir(t.TempDir())
			_ = os.WriteFile("file", []byte("x"), 0o644)
			_ = os.MkdirAll("withfile", 0o755)
			_ = os.WriteFile("withfile/scripts", []byte("x"), 0o644)
			code, stdout, stderr := runCLI(t, nil, append(tc.args, "--db", "sqlite:keyhook.db")...)
			if code != tc.code || !strings.HasPrefix(stderr, tc.stderr) || stdout != "" {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if b, _ := os.ReadFile("file"); string(b) != "x" {
				t.Errorf("file was overwritten: %q", b)
			}
			if _, err := os.Stat("keyhook.db"); err == nil {
				t.Errorf("a database was opened")
			}
		})
	}
}

// TestBundleScriptSecrets: a script's secret values never reach the
// bundle, only their names; importing it where the values are stored
// keeps them, and where they are not is refused, naming the secret.
func TestBundleScriptSecrets(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "a.js"), []byte("function modifyResponse(r, c) { return true; }\n"), 0o644)
	seed := filepath.Join(dir, "seed.yaml")
	_ = os.WriteFile(seed, []byte("scripts:\n  - name: sec\n    type: introspection\n    source_file: a.js\n    secrets:\n      API_KEY: hunter2-value\n"), 0o644)
	dsn := "sqlite:" + filepath.Join(dir, "keyhook.db")
	if code, _, stderr := runCLI(t, nil, "import", "--db", dsn, seed); code != 0 {
		t.Fatal(stderr)
	}
	b := filepath.Join(dir, "bundle")
	exportBundleTo(t, dsn, b)
	for name, content := range readTree(t, b) {
		if strings.Contains(content, "hunter2") {
			t.Errorf("%s holds the secret's value", name)
		}
	}
	if yml := readTree(t, b)["keyhook.yaml"]; !strings.Contains(yml, "secrets:\n      API_KEY: (set)\n") {
		t.Errorf("keyhook.yaml does not name the secret:\n%s", yml)
	}
	code, stdout, stderr := runCLI(t, nil, "import", "--db", dsn, "--bundle", b)
	if code != 0 || !strings.Contains(stdout, "script sec: unchanged\n") {
		t.Fatalf("import where the secret is stored: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, _, stderr = runCLI(t, nil, "import", "--db", "sqlite:"+filepath.Join(dir, "new.db"), "--bundle", b)
	if code != 1 || !strings.Contains(lastLine(stderr), "scripts[0]: secrets.API_KEY: is (set), a reference to a stored value, and none is stored") {
		t.Fatalf("import where no secret is stored: exit %d\n%s", code, stderr)
	}
}
