package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeclarationsUpToDate: scripts/keyhook.d.ts is what the generator
// writes from the Go types today.
func TestDeclarationsUpToDate(t *testing.T) {
	want, err := generate("../../hooks")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../keyhook.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("scripts/keyhook.d.ts is not what the script API's Go types generate: run go generate ./scripts")
	}
}

// tsc runs the TypeScript compiler (5.x, through npx) on files with
// JavaScript checked, and returns its output and whether it passed. It
// skips the test when node is missing, unless KEYHOOK_REQUIRE_NODE is set.
func tsc(t *testing.T, files ...string) (string, bool) {
	t.Helper()
	npx, err := exec.LookPath("npx")
	if err != nil {
		if os.Getenv("KEYHOOK_REQUIRE_NODE") != "" {
			t.Fatalf("KEYHOOK_REQUIRE_NODE is set and npx is missing: %v", err)
		}
		t.Skip("node (npx) is not installed; set KEYHOOK_REQUIRE_NODE to fail instead")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Each script is a program of its own: moduleDetection force keeps
	// the functions of one from clashing with another's. The file names
	// are absolute, since tsc resolves a reference path of a file named
	// relatively (b/x.js with ../../k.d.ts) against the wrong directory.
	// The DOM library is in, as editors load it, so that a name of ours
	// that clashes with one of its globals (RequestInfo does) fails here.
	args := []string{"-y", "-p", "typescript@5", "tsc", "--noEmit", "--strict", "--allowJs", "--checkJs",
		"--noImplicitAny", "false", "--lib", "es2020,dom", "--moduleDetection", "force"}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, abs)
	}
	out, err := exec.CommandContext(ctx, npx, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("tsc: %v\n%s", ctx.Err(), out)
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	return string(out), err == nil
}

// TestDeclarationsTypeCheck: keyhook.d.ts compiles; a script using every
// part of the API as docs/scripts.md describes it type-checks against it,
// and so do the example scripts, which reference it on their first line;
// writes to context are refused.
func TestDeclarationsTypeCheck(t *testing.T) {
	examples, err := filepath.Glob("../../examples/scripts/*.js")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no example scripts (%v)", err)
	}
	for _, ex := range examples {
		src, err := os.ReadFile(ex)
		if err != nil {
			t.Fatal(err)
		}
		if first, _, _ := strings.Cut(string(src), "\n"); first != `/// <reference path="../../scripts/keyhook.d.ts" />` {
			t.Errorf("%s does not start with the reference to scripts/keyhook.d.ts", ex)
		}
	}
	if out, ok := tsc(t, append([]string{"../keyhook.d.ts", "testdata/typed.js"}, examples...)...); !ok {
		t.Fatalf("tsc refuses the declarations or a script using them:\n%s", out)
	}
	out, ok := tsc(t, "../keyhook.d.ts", "testdata/readonly.js")
	for _, line := range []string{"readonly.js(11,", "readonly.js(12,", "readonly.js(13,"} {
		if ok || !strings.Contains(out, line) {
			t.Errorf("tsc does not refuse the write at %s:\n%s", line, out)
		}
	}
	if n := strings.Count(out, "error TS"); n != 3 {
		t.Errorf("tsc finds %d errors in testdata/readonly.js, want its 3 writes:\n%s", n, out)
	}
}
