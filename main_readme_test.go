package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadme runs the shell blocks of the README sections "Try it" and
// "Script workflow" as printed, each as on a fresh checkout, and checks
// what they answer. They run in one copy of the repository (so make run
// builds there, once, and keyhook.db, keyhook.log and the binary land
// there), which loses its database, log and CLI token cache between the
// sections. The one change made to the blocks is the address: the test's
// own free port for 127.0.0.1:8080, given to make run through
// KEYHOOK_ADDR as the README says.
func TestReadme(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "make", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README walkthroughs need %s on PATH", tool)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyRepository(t, dir)
	t.Cleanup(func() { killIn(dir) })

	t.Run("Try it", func(t *testing.T) {
		got := runReadmeSection(t, dir, string(readme), "Try it")
		for _, want := range []string{
			`"token_type":"Bearer"`,      // tokens
			`"scope":"api.read"`,         // the first request's scope
			`"realmName":"BasicRealm"`,   // liberty-fields in introspection
			"\n200\n",                    // revocation
			`{"active":false}`,           // the revoked token
			`"id_token":`,                // password grant with openid
			`"client_id":"demo-service"`, // the admin API read with $ADMIN
			`"access_token_lifetime":60`, // the PATCH answer
			`"expires_in":60`,            // and the next token
		} {
			if !strings.Contains(got, want) {
				t.Errorf("the walkthrough's output lacks %s:\n%s", want, got)
			}
		}
		if !strings.Contains(got, "\neyJ") {
			t.Errorf("no JWT introspection answer (eyJ...) in the output:\n%s", got)
		}
		if strings.Contains(got, `"error"`) {
			t.Errorf("the walkthrough's output has an error answer:\n%s", got)
		}
	})

	// A script written, tested offline, stored and bound with the CLI,
	// its effect on a real introspection answer, and where to watch it.
	t.Run("Script workflow", func(t *testing.T) {
		got := runReadmeSection(t, dir, string(readme), "Script workflow")
		for _, want := range []string{
			"PASS my-scripts/permissions.test.json", // the offline test
			"1 passed",
			"introspection_scripts:",     // client bind's answer
			`"permissions":["api:read"]`, // the real introspection answer
			`"realmName":"BasicRealm"`,   // beside what liberty-fields adds
			"NUMBER", "keyhook-admin",    // script versions
			"P99_MS",       // script stats
			"console: 200", // the console answers
		} {
			if !strings.Contains(got, want) {
				t.Errorf("the workflow's output lacks %s:\n%s", want, got)
			}
		}
		// The one introspection called the script once, without error.
		if !regexp.MustCompile(`(?m)^permissions\s+1\s+0\s+0\s`).MatchString(got) {
			t.Errorf("script stats do not show permissions' one call:\n%s", got)
		}
		if strings.Contains(got, `"error"`) || strings.Contains(got, "keyhook: ") {
			t.Errorf("the workflow's output has an error:\n%s", got)
		}
	})
}

// runReadmeSection runs the shell blocks of README section title as
// printed in dir, a copy of the repository, as on a fresh checkout: no
// database, log or CLI token cache from an earlier section. It answers
// their output.
func runReadmeSection(t *testing.T, dir, readme, title string) string {
	t.Helper()
	script := walkthrough(t, readme, title)
	if !strings.Contains(script, "make run") {
		t.Fatalf("README %q no longer starts the server:\n%s", title, script)
	}
	for _, f := range []string{"keyhook.db", "keyhook.db-wal", "keyhook.db-shm", "keyhook.db-keyhook-tokens", "keyhook.log", ".cache"} {
		if err := os.RemoveAll(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	script = strings.ReplaceAll(script, "127.0.0.1:8080", addr)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// -m: job control as in an interactive shell, so `kill %1` stops
	// make run and the server it started.
	cmd := exec.CommandContext(ctx, "bash", "-m", "-e", "-u", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	// The CLI's token cache goes to the copy (XDG_CACHE_HOME); the Go
	// build cache stays the one this test was built with, as a user's
	// would: under a fresh one, each walkthrough's `make` compiled every
	// dependency again, minutes of CI.
	cmd.Env = append(environWithout("KEYHOOK_"), "KEYHOOK_ADDR="+addr, "XDG_CACHE_HOME="+filepath.Join(dir, ".cache"),
		"GOCACHE="+goCache(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	log, _ := os.ReadFile(filepath.Join(dir, "keyhook.log"))
	if err != nil {
		t.Fatalf("README %q failed: %v\noutput:\n%s\nkeyhook.log:\n%s", title, err, out.String(), log)
	}
	return out.String()
}

// walkthrough is the shell blocks of the README section title, joined.
func walkthrough(t *testing.T, readme, title string) string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var script strings.Builder
	for {
		_, rest, ok := strings.Cut(section, "```sh\n")
		if !ok {
			break
		}
		block, after, ok := strings.Cut(rest, "```")
		if !ok {
			t.Fatalf("an unclosed shell block in README %q", title)
		}
		script.WriteString(block)
		section = after
	}
	return script.String()
}

// copyRepository copies the files git knows of (tracked, or new and not
// ignored) into dir.
func copyRepository(t *testing.T, dir string) {
	t.Helper()
	list, err := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (the walkthrough test copies a git checkout)", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		data, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// goCache is the Go build cache of the go command on PATH.
func goCache(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// environWithout is the environment without the variables starting with
// prefix (a developer's KEYHOOK_DB must not send the walkthrough
// elsewhere).
func environWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// killIn kills every process whose working directory is dir: what a
// failed walkthrough left running (make run and its server).
func killIn(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if cwd, err := os.Readlink(filepath.Join(p, "cwd")); err == nil && cwd == dir {
			if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}
