package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// libertySource is examples/scripts/liberty_fields.js, inline so that
// the tests do not change with the example.
const libertySource = `function modifyResponse(response, context) {
  response.grant_type = context.token.grant_type;
  response.realmName = context.config.realm || "BasicRealm";
  response.uniqueSecurityName = context.token.username || context.token.subject;
  response.tokenType = "Bearer";
  context.log("realm", response.realmName);
  return true;
}
`

// libertyFixture is a fixture of libertySource; realm is the realmName
// it expects.
func libertyFixture(realm string) string {
	return `{
  "function": "modifyResponse",
  "args": [{"active": true}],
  "context": {"phase": "introspection", "token": {"username": "alice", "grant_type": "password"},
              "config": {"realm": "R"}},
  "timeout_ms": 5000,
  "expect": {"result": true, "error": null, "logs": ["realm R"],
             "args_after": [{"active": true, "grant_type": "password", "realmName": "` + realm + `",
                             "tokenType": "Bearer", "uniqueSecurityName": "alice"}]}
}`
}

// TestScriptTest: keyhook script test runs a script's fixtures with no
// server (docs/scripts.md, "Testing scripts offline").
func TestScriptTest(t *testing.T) {
	tests := []struct {
		name   string
		source string
		files  map[string]string // beside s.js
		args   []string          // after "script test"; s.js is appended
		exit   int
		stdout []string // each must appear
		stderr []string
		absent []string // must not appear in stdout
	}{
		{
			name: "pass", source: libertySource,
			files:  map[string]string{"s.test.json": libertyFixture("R")},
			exit:   exitOK,
			stdout: []string{"PASS ", "s.test.json (modifyResponse", "log: realm R", "1 passed, 0 failed"},
		},
		{
			name: "pass inline", source: libertySource, args: []string{"--isolation", "inline"},
			files:  map[string]string{"s.test.json": libertyFixture("R")},
			exit:   exitOK,
			stdout: []string{"PASS ", "1 passed, 0 failed"},
		},
		{
			name: "wrong expected field", source: libertySource,
			files: map[string]string{"s.test.json": libertyFixture("R"), "s.wrong.test.json": libertyFixture("X")},
			exit:  exitError,
			stdout: []string{"PASS ", "FAIL ", "s.wrong.test.json", `args_after[0].realmName: expected "X", got "R"`,
				"1 passed, 1 failed"},
			stderr: []string{"1 of 2 fixtures failed"},
		},
		{
			name:   "throws",
			source: `function modifyResponse(r, c) { throw new Error("no tenant"); }`,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"expect": {"result": true, "args_after": [{}], "error": null}}`},
			exit:   exitError,
			stdout: []string{"FAIL ", "unexpected error: ", "exception", "no tenant"},
		},
		{
			name:   "expected throw",
			source: `function modifyResponse(r, c) { throw new Error("no tenant"); }`,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"expect": {"error": "no tenant"}}`},
			exit:   exitOK,
			stdout: []string{"PASS ", "1 passed, 0 failed"},
		},
		{
			name:   "expected throw that does not come",
			source: libertySource,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"context": {"token": {}}, "expect": {"error": "no tenant"}}`},
			exit:   exitError,
			stdout: []string{"FAIL ", `expected an error containing "no tenant", the call succeeded`},
		},
		{
			name:   "loops past its deadline",
			source: `function modifyResponse(r, c) { for (;;) {} }`,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 100,
				"expect": {"result": true, "args_after": [{}], "error": null}}`},
			exit:   exitError,
			stdout: []string{"FAIL ", "unexpected error: ", "timeout"},
		},
		{
			name:   "function not defined",
			source: libertySource,
			files: map[string]string{"s.test.json": `{"function": "modifyAccessToken", "args": [{}], "timeout_ms": 5000,
				"expect": {"result": true, "args_after": [{}], "error": null}}`},
			exit:   exitError,
			stdout: []string{"FAIL ", "the script does not define modifyAccessToken"},
		},
		{
			name:   "syntax error",
			source: "function modifyResponse(r, c) {\n  r.a = 1;\n  return r..x;\n}\n",
			files:  map[string]string{"s.test.json": libertyFixture("R")},
			exit:   exitError,
			stderr: []string{"s.js:3:11: syntax error"},
		},
		{
			name:   "unknown fixture field",
			source: libertySource,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"expect": {"error": "x"}, "expected": {}}`},
			exit:   exitError,
			stderr: []string{"s.test.json", `unknown field "expected"`},
		},
		{
			name:   "unknown expect field",
			source: libertySource,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"expect": {"error": "x", "stdout": []}}`},
			exit:   exitError,
			stderr: []string{"s.test.json", `unknown field "stdout"`},
		},
		{
			name:   "unknown context field",
			source: libertySource,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"context": {"secrets": {"k": "v"}}, "expect": {"error": "x"}}`},
			exit:   exitError,
			stderr: []string{"s.test.json", `unknown field "context.secrets"`},
		},
		{
			name:   "no expectation of the edits",
			source: libertySource,
			files: map[string]string{"s.test.json": `{"function": "modifyResponse", "args": [{}], "timeout_ms": 5000,
				"expect": {"result": true}}`},
			exit:   exitError,
			stderr: []string{"s.test.json", `"expect.args_after" is needed`},
		},
		{
			name:   "no fixtures",
			source: libertySource,
			files:  map[string]string{"other.test.json": libertyFixture("R")},
			exit:   exitError,
			stderr: []string{"no fixtures"},
		},
		{
			name:   "--fixture selects",
			source: libertySource,
			files:  map[string]string{"s.test.json": libertyFixture("X"), "good.json": libertyFixture("R")},
			args:   []string{"--fixture", "DIR/good.json"},
			exit:   exitOK,
			stdout: []string{"PASS ", "good.json", "1 passed, 0 failed"},
			absent: []string{"s.test.json"},
		},
		{
			name:   "no script",
			source: libertySource,
			args:   []string{"a.js"},
			exit:   exitUsage,
			stderr: []string{"wants a script file, got 2 arguments"},
		},
		{
			name:   "bad isolation",
			source: libertySource,
			files:  map[string]string{"s.test.json": libertyFixture("R")},
			args:   []string{"--isolation", "thread"},
			exit:   exitUsage,
			stderr: []string{`--isolation: "thread" is neither process nor inline`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "s.js"), tt.source)
			for name, body := range tt.files {
				writeFile(t, filepath.Join(dir, name), body)
			}
			args := []string{"script", "test"}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "DIR", dir))
			}
			args = append(args, filepath.Join(dir, "s.js"))
			var stdout, stderr bytes.Buffer
			got := execute(context.Background(), args, mapEnv(nil), &stdout, &stderr)
			if got != tt.exit {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", got, tt.exit, &stdout, &stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, &stdout)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, &stderr)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("stdout has %q:\n%s", s, &stdout)
				}
			}
		})
	}
}

// TestScriptTestJSON: -o json is one object with a report per fixture
// and the paths that differ.
func TestScriptTestJSON(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "s.js"), libertySource)
	writeFile(t, filepath.Join(dir, "s.a.test.json"), libertyFixture("R"))
	writeFile(t, filepath.Join(dir, "s.b.test.json"), libertyFixture("X"))
	var stdout, stderr bytes.Buffer
	if got := execute(context.Background(), []string{"script", "test", "-o", "json", filepath.Join(dir, "s.js")},
		mapEnv(nil), &stdout, &stderr); got != exitError {
		t.Fatalf("exit %d, want %d; stderr: %s", got, exitError, &stderr)
	}
	var rep struct {
		Script   string `json:"script"`
		Passed   *bool  `json:"passed"`
		Fixtures []struct {
			Fixture   string   `json:"fixture"`
			Function  string   `json:"function"`
			Passed    bool     `json:"passed"`
			Result    any      `json:"result"`
			ArgsAfter []any    `json:"args_after"`
			Error     *string  `json:"error"`
			Logs      []string `json:"logs"`
			Duration  float64  `json:"duration_ms"`
			Failures  []string `json:"failures"`
			Diff      []struct {
				Path     string `json:"path"`
				Expected any    `json:"expected"`
				Got      any    `json:"got"`
			} `json:"diff"`
		} `json:"fixtures"`
		Totals map[string]int `json:"totals"`
	}
	dec := json.NewDecoder(&stdout)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.Passed == nil || *rep.Passed || len(rep.Fixtures) != 2 ||
		rep.Totals["fixtures"] != 2 || rep.Totals["passed"] != 1 || rep.Totals["failed"] != 1 {
		t.Fatalf("report: %+v", rep)
	}
	a, b := rep.Fixtures[0], rep.Fixtures[1]
	if !strings.HasSuffix(a.Fixture, "s.a.test.json") || !a.Passed || a.Function != "modifyResponse" ||
		a.Result != true || len(a.ArgsAfter) != 1 || a.Error != nil || len(a.Logs) != 1 || len(a.Diff) != 0 {
		t.Errorf("passing fixture: %+v", a)
	}
	if !strings.HasSuffix(b.Fixture, "s.b.test.json") || b.Passed || len(b.Diff) != 1 ||
		b.Diff[0].Path != "args_after[0].realmName" || b.Diff[0].Expected != "X" || b.Diff[0].Got != "R" {
		t.Errorf("failing fixture: %+v", b)
	}
}

// TestExampleScriptFixtures: every script of examples/scripts/ passes its
// fixtures, so that make test runs them (docs/scripts.md, "Examples").
func TestExampleScriptFixtures(t *testing.T) {
	files, err := filepath.Glob("examples/scripts/*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := execute(context.Background(), []string{"script", "test", f}, mapEnv(nil), &stdout, &stderr); got != exitOK {
				t.Errorf("keyhook script test %s: exit %d\n%s%s", f, got, &stdout, &stderr)
			}
		})
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
