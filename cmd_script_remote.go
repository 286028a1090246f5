package main

// keyhook script put|list|get|delete|enable|disable|versions|rollback:
// the scripts of a running server through its admin API
// (docs/admin-api.md, "Scripts" and "Versions and rollback").

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"
)

var scriptColumns = []string{"name", "type", "enabled", "level", "timeout_ms", "version_number"}

func scriptPath(name string) string { return "/scripts/" + url.PathEscape(name) }

func newScriptRemoteCommands(env lookupEnv, stdout io.Writer) []*cobra.Command {
	simple := func(use, short, method, suffix string, body any, columns ...string) *cobra.Command {
		return remoteCommand(env, stdout, &cobra.Command{Use: use + " NAME", Short: short, Args: oneArg("a script name")},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), method, scriptPath(args[0])+suffix, body)
				if err != nil {
					return err
				}
				if method == http.MethodDelete {
					_, err = fmt.Fprintf(stdout, "deleted script %s\n", args[0])
					return err
				}
				return r.print(b, columns...)
			})
	}
	return []*cobra.Command{
		newScriptPutCommand(env, stdout),
		remoteCommand(env, stdout, &cobra.Command{Use: "list", Short: "List the scripts of a server", Args: noArgs},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), http.MethodGet, "/scripts", nil)
				if err != nil {
					return err
				}
				return r.print(b, scriptColumns...)
			}),
		simple("get", "Print a script of a server", http.MethodGet, "", nil),
		simple("delete", "Delete a script of a server", http.MethodDelete, "", nil),
		simple("enable", "Enable a script", http.MethodPatch, "", map[string]any{"enabled": true}),
		simple("disable", "Disable a script", http.MethodPatch, "", map[string]any{"enabled": false}),
		simple("versions", "List a script's versions, newest first", http.MethodGet, "/versions", nil,
			"number", "author", "created_at", "sha256"),
		remoteCommand(env, stdout, &cobra.Command{Use: "stats", Short: "Calls, errors, timeouts and latency of each script on the instance that answers", Args: noArgs},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), http.MethodGet, "/script-stats", nil)
				if err != nil {
					return err
				}
				if r.output == "text" { // a table of the list
					var m struct {
						Scripts json.RawMessage `json:"scripts"`
					}
					if err := jsonUnmarshal(b, &m); err != nil {
						return err
					}
					b = m.Scripts
				}
				return r.print(b, "name", "calls", "errors", "timeouts", "mean_ms", "p50_ms", "p99_ms")
			}),
		remoteCommand(env, stdout, &cobra.Command{Use: "rollback NAME VERSION", Short: "Make a version live again, as a new version", Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return &usageError{c, fmt.Errorf("%s wants a script name and a version number, got %d arguments", c.CommandPath(), len(args))}
			}
			if _, err := strconv.Atoi(args[1]); err != nil {
				return &usageError{c, fmt.Errorf("version %q is not a number", args[1])}
			}
			return nil
		}}, func(c *cobra.Command, r *remote, args []string) error {
			n, _ := strconv.Atoi(args[1])
			b, err := r.call(c.Context(), http.MethodPost, scriptPath(args[0])+"/rollback", map[string]any{"version": n})
			if err != nil {
				return err
			}
			return r.print(b)
		}),
	}
}

// newScriptPutCommand creates a script from a file, or replaces its source
// (and the settings given by flags) keeping the others: POST when absent,
// PATCH when it exists.
func newScriptPutCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	var typ string
	var level, timeout int
	cmd := remoteCommand(env, stdout, &cobra.Command{Use: "put NAME FILE.js", Short: "Create a script from a file, or replace its source keeping its other settings", Args: func(c *cobra.Command, args []string) error {
		if len(args) != 2 {
			return &usageError{c, fmt.Errorf("%s wants a script name and a file, got %d arguments", c.CommandPath(), len(args))}
		}
		return nil
	}}, func(c *cobra.Command, r *remote, args []string) error {
		if typ != "" && typ != "introspection" && typ != "update_token" && typ != "registration" {
			return badValue(c, "type", fmt.Errorf("%q is not introspection, update_token or registration", typ))
		}
		src, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		m := map[string]any{"source": string(src)}
		if typ != "" {
			m["type"] = typ
		}
		if given(c, env, "level") {
			m["level"] = level
		}
		if given(c, env, "timeout-ms") {
			m["timeout_ms"] = timeout
		}
		_, gerr := r.call(c.Context(), http.MethodGet, scriptPath(args[0]), nil)
		var ae *apiError
		var b []byte
		switch {
		case gerr == nil:
			b, err = r.call(c.Context(), http.MethodPatch, scriptPath(args[0]), m)
		case errors.As(gerr, &ae) && ae.status == http.StatusNotFound:
			if m["type"] == nil {
				m["type"] = "introspection"
			}
			m["name"] = args[0]
			b, err = r.call(c.Context(), http.MethodPost, "/scripts", m)
		default:
			return gerr
		}
		if err != nil {
			return err
		}
		return r.print(b, scriptColumns...)
	})
	fl := cmd.Flags()
	fl.StringVar(&typ, "type", "", "introspection, update_token or registration (default on create: introspection)")
	fl.IntVar(&level, "level", 0, "run order, lower first (default on create: the server's)")
	fl.IntVar(&timeout, "timeout-ms", 0, "time limit of a call (default on create: the server's)")
	return cmd
}
