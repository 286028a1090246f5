package main

// keyhook script test: a script's fixtures run with no server, on the
// server's own script runtime and limits (docs/scripts.md, "Testing
// scripts offline").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
)

func newScriptCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	script := &cobra.Command{Use: "script", Short: "Test scripts offline, manage those of a running server"}
	group(script)
	script.AddCommand(newScriptTestCommand(env, stdout))
	script.AddCommand(newScriptRemoteCommands(env, stdout)...)
	return script
}

// scriptReport is the -o json answer of keyhook script test.
type scriptReport struct {
	Script   string                   `json:"script"`
	Passed   bool                     `json:"passed"`
	Fixtures []*scripts.FixtureReport `json:"fixtures"`
	Totals   struct {
		Fixtures int `json:"fixtures"`
		Passed   int `json:"passed"`
		Failed   int `json:"failed"`
	} `json:"totals"`
}

// runFixtures runs each fixture of s, the script of file, on rt and
// totals them (keyhook script test; import --bundle).
func runFixtures(ctx context.Context, rt hooks.Runtime, s *hooks.Script, file string, fs []*scripts.Fixture) *scriptReport {
	rep := &scriptReport{Script: file, Fixtures: []*scripts.FixtureReport{}}
	for _, f := range fs {
		r := scripts.RunFixture(ctx, rt, s, f)
		rep.Fixtures = append(rep.Fixtures, r)
		if r.Passed {
			rep.Totals.Passed++
		}
	}
	rep.Totals.Fixtures = len(fs)
	rep.Totals.Failed = rep.Totals.Fixtures - rep.Totals.Passed
	rep.Passed = rep.Totals.Failed == 0
	return rep
}

func newScriptTestCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	var (
		fixtures  []string
		isolation string
		output    string
	)
	cmd := &cobra.Command{
		Use:   "test FILE.js",
		Short: "Run a script on its fixtures (FILE.test.json, FILE.*.test.json) with no server",
		Args:  oneArg("a script file"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := applyEnv(c.Flags(), env); err != nil {
				return err
			}
			iso := hooks.Isolation(isolation)
			if iso != hooks.IsolationProcess && iso != hooks.IsolationInline {
				return flagError(c, "isolation", fmt.Errorf("%q is neither process nor inline", isolation))
			}
			if output != "text" && output != "json" {
				return flagError(c, "output", fmt.Errorf("%q is neither text nor json", output))
			}
			file := args[0]
			src, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			if len(fixtures) == 0 {
				if fixtures, err = scripts.Fixtures(file); err != nil {
					return err
				}
				if len(fixtures) == 0 {
					return fmt.Errorf("%s: no fixtures (looked for %s.test.json and %[2]s.*.test.json beside it)",
						file, strings.TrimSuffix(file, ".js"))
				}
			}
			var fs []*scripts.Fixture
			for _, p := range fixtures {
				f, err := scripts.ReadFixture(p)
				if err != nil {
					return err
				}
				fs = append(fs, f)
			}
			rt := scripts.New(scripts.Options{DefaultIsolation: iso, Workers: 1})
			defer rt.Close()
			s := scripts.OfflineScript(file, string(src), iso)
			if err := rt.Check(s.Name, s.Source); err != nil {
				var se *hooks.SyntaxError
				if errors.As(err, &se) {
					return fmt.Errorf("%s:%d:%d: syntax error: %s", file, se.Line, se.Column, se.Message)
				}
				return fmt.Errorf("%s: %v", file, err)
			}
			rep := runFixtures(c.Context(), rt, s, file, fs)
			if output == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printScriptReport(stdout, rep)
			}
			if !rep.Passed {
				return fmt.Errorf("%s: %d of %d fixtures failed", file, rep.Totals.Failed, rep.Totals.Fixtures)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&fixtures, "fixture", nil, "a fixture file to run (repeatable); default: those beside FILE.js")
	fl.StringVar(&isolation, "isolation", string(hooks.IsolationProcess), "where calls run: process or inline, as serve's --script-isolation")
	fl.StringVarP(&output, "output", "o", "text", "report format: text or json")
	return cmd
}

// flagError is a bad value of flag name: a usage error when it is on the
// command line, an error naming its environment variable when it came
// from there.
func flagError(c *cobra.Command, name string, err error) error {
	if c.Flags().Changed(name) {
		return &usageError{c, fmt.Errorf("--%s: %v", name, err)}
	}
	return fmt.Errorf("%s: %v", envName(name), err)
}

// printScriptReport writes a line per fixture, then its failures, the
// paths where it differs and its logs.
func printScriptReport(w io.Writer, rep *scriptReport) {
	for _, r := range rep.Fixtures {
		verdict := "PASS"
		if !r.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s %s (%s, %.3f ms)\n", verdict, r.Fixture, r.Function, r.DurationMS)
		for _, f := range r.Failures {
			fmt.Fprintf(w, "    %s\n", f)
		}
		for _, d := range r.Diff {
			fmt.Fprintf(w, "    %s\n", d)
		}
		for _, l := range r.Logs {
			fmt.Fprintf(w, "    log: %s\n", l)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", rep.Totals.Passed, rep.Totals.Failed)
}
