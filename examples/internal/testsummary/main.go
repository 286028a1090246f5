// Command testsummary runs `go test -json …` and prints what a plain
// `go test` prints (a line per package, and the output of failing tests),
// then the tests that were skipped, with the reason each gave, and the
// tests that failed. make test runs the suite through it, so a test that
// skipped because something was missing (PostgreSQL, Chromium, node) is
// visible rather than silent.
//
//	go run ./examples/internal/testsummary [-skips FILE] -- go test -json ./...
//
// It exits with the command's status, or 1 when a test failed while the
// command reported success. Standard library only.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output, build-fail
}

type testKey struct{ pkg, test string }

// outcome is a skipped or failed test.
type outcome struct {
	pkg, test, reason string
}

// summary reads the event stream.
type summary struct {
	w       io.Writer
	module  string
	buf     map[testKey][]string
	skipped []outcome
	failed  []outcome
	fail    bool // a test, package or build failed
}

func newSummary(w io.Writer, module string) *summary {
	return &summary{w: w, module: module, buf: map[testKey][]string{}}
}

// short names a package as a path in the module ("./web").
func (s *summary) short(pkg string) string {
	if s.module != "" && pkg == s.module {
		return "."
	}
	if s.module != "" && strings.HasPrefix(pkg, s.module+"/") {
		return "./" + strings.TrimPrefix(pkg, s.module+"/")
	}
	return pkg
}

// noise is what -json adds that a plain go test does not print.
func noise(line string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

var location = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// reason is what a skipped test said: its output without the framing
// lines and the file:line prefix, on one line.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || noise(t) || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, location.ReplaceAllString(t, ""))
	}
	r := strings.Join(parts, "; ")
	if r == "" {
		return "no reason given"
	}
	if rs := []rune(r); len(rs) > 160 {
		r = string(rs[:160]) + "…"
	}
	return r
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.w, e.Output)
		return
	case "build-fail":
		s.fail = true
		s.failed = append(s.failed, outcome{pkg: s.short(e.ImportPath), reason: "build failed"})
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			if e.Output != "PASS\n" && !noise(e.Output) {
				fmt.Fprint(s.w, e.Output)
			}
		case "fail":
			s.fail = true
		}
		return
	}
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "output":
		s.buf[k] = append(s.buf[k], e.Output)
	case "pass":
		delete(s.buf, k)
	case "skip":
		s.skipped = append(s.skipped, outcome{s.short(e.Package), e.Test, reason(s.buf[k])})
		delete(s.buf, k)
	case "fail":
		s.fail = true
		for _, l := range s.buf[k] {
			if !noise(l) {
				fmt.Fprint(s.w, l)
			}
		}
		delete(s.buf, k)
		s.failed = append(s.failed, outcome{pkg: s.short(e.Package), test: e.Test})
	}
}

// report lists the skipped tests, the subtests of one test together when
// there are many of them, and the failed tests.
func (s *summary) report(w io.Writer) {
	if len(s.skipped) == 0 {
		fmt.Fprintln(w, "SKIPPED: nothing")
	}
	groups := map[testKey][]outcome{}
	var order []testKey
	for _, o := range s.skipped {
		top, _, _ := strings.Cut(o.test, "/")
		k := testKey{o.pkg, top}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], o)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].pkg != order[j].pkg {
			return order[i].pkg < order[j].pkg
		}
		return order[i].test < order[j].test
	})
	for _, k := range order {
		g := groups[k]
		if len(g) > 3 {
			fmt.Fprintf(w, "SKIPPED: %s %s: %d subtests (first: %s: %s)\n", k.pkg, k.test, len(g), g[0].test, g[0].reason)
			continue
		}
		for _, o := range g {
			fmt.Fprintf(w, "SKIPPED: %s %s (%s)\n", o.pkg, o.test, o.reason)
		}
	}
	for _, o := range s.failed {
		if o.test == "" {
			fmt.Fprintf(w, "FAILED: %s (%s)\n", o.pkg, o.reason)
		} else {
			fmt.Fprintf(w, "FAILED: %s %s\n", o.pkg, o.test)
		}
	}
}

// read consumes the event stream; a line that is not an event (a
// panic's output, say) is printed as it came.
func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(s.w, sc.Text())
			continue
		}
		s.handle(e)
	}
	return sc.Err()
}

// modulePath reads the module line of ./go.mod, to shorten package names.
func modulePath() string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	return ""
}

func main() {
	skips := flag.String("skips", "", "also write the SKIPPED and FAILED lines to this file")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testsummary [-skips FILE] -- go test -json [flags] [packages]")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	s := newSummary(os.Stdout, modulePath())
	readErr := s.read(out)
	runErr := cmd.Wait()

	var report strings.Builder
	s.report(&report)
	fmt.Print(report.String())
	if *skips != "" {
		if err := os.WriteFile(*skips, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
		}
	}
	if readErr != nil {
		fmt.Fprintln(os.Stderr, "testsummary: reading the test output:", readErr)
		os.Exit(1)
	}
	if exit, ok := runErr.(*exec.ExitError); ok {
		if code := exit.ExitCode(); code > 0 {
			os.Exit(code)
		}
		os.Exit(1) // killed by a signal
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", runErr)
		os.Exit(1)
	}
	if s.fail {
		os.Exit(1)
	}
}
