package main

// keyhook user and keyhook config: the users and the server properties
// of a running server through its admin API (docs/admin-api.md, "Users"
// and "Config").

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func newUserCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	u := &cobra.Command{Use: "user", Short: "Manage the users of a running server"}
	group(u)
	var password string
	var claims []string
	create := remoteCommand(env, stdout, &cobra.Command{Use: "create USERNAME", Short: "Create a user", Args: oneArg("a username")},
		func(c *cobra.Command, r *remote, args []string) error {
			if password == "" {
				return &usageError{c, fmt.Errorf("--password is needed")}
			}
			doc := map[string]any{"username": args[0], "password": password}
			if len(claims) > 0 {
				m, err := keyValues(claims)
				if err != nil {
					return &usageError{c, fmt.Errorf("--claim: %v", err)}
				}
				doc["claims"] = m
			}
			b, err := r.call(c.Context(), http.MethodPost, "/users", doc)
			if err != nil {
				return err
			}
			return r.print(b)
		})
	create.Flags().StringVar(&password, "password", "", "the user's password")
	create.Flags().StringArrayVar(&claims, "claim", nil, "a claim of the user as NAME=VALUE (VALUE as JSON when it parses, else a string); repeatable")
	u.AddCommand(create,
		remoteCommand(env, stdout, &cobra.Command{Use: "list", Short: "List the users", Args: noArgs},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), http.MethodGet, "/users", nil)
				if err != nil {
					return err
				}
				return r.print(b, "username", "disabled", "claims")
			}),
		remoteCommand(env, stdout, &cobra.Command{Use: "delete USERNAME", Short: "Delete a user", Args: oneArg("a username")},
			func(c *cobra.Command, r *remote, args []string) error {
				if _, err := r.call(c.Context(), http.MethodDelete, "/users/"+url.PathEscape(args[0]), nil); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "deleted user %s\n", args[0])
				return nil
			}),
	)
	return u
}

func newConfigCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	cf := &cobra.Command{Use: "config", Short: "Read and set the server properties of a running server"}
	group(cf)
	cf.AddCommand(
		remoteCommand(env, stdout, &cobra.Command{Use: "get [KEY]", Short: "Print the server properties, or one", Args: cobra.MaximumNArgs(1)},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), http.MethodGet, "/config", nil)
				if err != nil {
					return err
				}
				if len(args) == 1 {
					var m map[string]json.RawMessage
					if err := jsonUnmarshal(b, &m); err != nil {
						return err
					}
					v, ok := m[args[0]]
					if !ok {
						return fmt.Errorf("no property %q", args[0])
					}
					var s string
					if json.Unmarshal(v, &s) == nil && r.output == "text" {
						_, err = fmt.Fprintln(stdout, s)
						return err
					}
					_, err = fmt.Fprintf(stdout, "%s\n", v)
					return err
				}
				return r.print(b)
			}),
		remoteCommand(env, stdout, &cobra.Command{Use: "set KEY=VALUE...", Short: "Set server properties (VALUE as JSON when it parses, else a string)"},
			func(c *cobra.Command, r *remote, args []string) error {
				if len(args) == 0 {
					return &usageError{c, fmt.Errorf("%s wants KEY=VALUE arguments", c.CommandPath())}
				}
				m, err := keyValues(args)
				if err != nil {
					return &usageError{c, err}
				}
				b, err := r.call(c.Context(), http.MethodPut, "/config", m)
				if err != nil {
					return err
				}
				return r.print(b)
			}),
	)
	return cf
}

// keyValues reads KEY=VALUE arguments into a JSON object: VALUE as JSON
// when it parses (600, true, null, ["a"]), else as a string.
func keyValues(args []string) (map[string]any, error) {
	m := map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", a)
		}
		var j any
		if json.Unmarshal([]byte(v), &j) == nil {
			m[k] = j
		} else {
			m[k] = v
		}
	}
	return m, nil
}
