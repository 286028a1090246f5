package main

// keyhook client: the clients of a running server through its admin API
// (docs/admin-api.md, "Clients").

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

var clientColumns = []string{"client_id", "client_name", "scope", "grant_types", "access_token_as_jwt", "introspection_scripts", "update_token_scripts"}

func newClientCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	cl := &cobra.Command{Use: "client", Short: "Manage the clients of a running server"}
	group(cl)
	var name, scope, grants string
	var jwt bool
	fields := func(c *cobra.Command, m map[string]any) {
		if given(c, env, "name") {
			m["client_name"] = name
		}
		if given(c, env, "scope") {
			m["scope"] = scope
		}
		if given(c, env, "grant-types") {
			m["grant_types"] = strings.Split(grants, ",")
		}
		if given(c, env, "jwt") {
			m["access_token_as_jwt"] = jwt
		}
	}
	withFields := func(cmd *cobra.Command) *cobra.Command {
		fl := cmd.Flags()
		fl.StringVar(&name, "name", "", "client_name")
		fl.StringVar(&scope, "scope", "", "scopes the client may get, space-separated")
		fl.StringVar(&grants, "grant-types", "", "grant types, comma-separated")
		fl.BoolVar(&jwt, "jwt", false, "JWT access tokens (access_token_as_jwt)")
		return cmd
	}
	path := func(id string) string { return "/clients/" + url.PathEscape(id) }
	cl.AddCommand(
		withFields(remoteCommand(env, stdout, &cobra.Command{Use: "create [CLIENT_ID]", Short: "Create a client (the server picks its id when none is given); its secret is printed once", Args: atMostOneArg("a client id")},
			func(c *cobra.Command, r *remote, args []string) error {
				m := map[string]any{}
				if len(args) == 1 {
					m["client_id"] = args[0]
				}
				fields(c, m)
				b, err := r.call(c.Context(), http.MethodPost, "/clients", m)
				if err != nil {
					return err
				}
				return r.print(b, clientColumns...)
			})),
		remoteCommand(env, stdout, &cobra.Command{Use: "list", Short: "List the clients", Args: noArgs},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), http.MethodGet, "/clients", nil)
				if err != nil {
					return err
				}
				return r.print(b, clientColumns...)
			}),
		remoteCommand(env, stdout, &cobra.Command{Use: "get CLIENT_ID", Short: "Print a client", Args: oneArg("a client id")},
			func(c *cobra.Command, r *remote, args []string) error {
				b, err := r.call(c.Context(), http.MethodGet, path(args[0]), nil)
				if err != nil {
					return err
				}
				return r.print(b)
			}),
		withFields(remoteCommand(env, stdout, &cobra.Command{Use: "update CLIENT_ID", Short: "Change the members given by flags (PATCH)", Args: oneArg("a client id")},
			func(c *cobra.Command, r *remote, args []string) error {
				m := map[string]any{}
				fields(c, m)
				if len(m) == 0 {
					return &usageError{c, fmt.Errorf("nothing to change: give --name, --scope, --grant-types or --jwt")}
				}
				b, err := r.call(c.Context(), http.MethodPatch, path(args[0]), m)
				if err != nil {
					return err
				}
				return r.print(b)
			})),
		remoteCommand(env, stdout, &cobra.Command{Use: "delete CLIENT_ID", Short: "Delete a client and its tokens", Args: oneArg("a client id")},
			func(c *cobra.Command, r *remote, args []string) error {
				if _, err := r.call(c.Context(), http.MethodDelete, path(args[0]), nil); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "deleted client %s\n", args[0])
				return nil
			}),
		newBindCommand(env, stdout, true),
		newBindCommand(env, stdout, false),
	)
	return cl
}

// newBindCommand is client bind (or unbind): the script added to (removed
// from) the client's introspection_scripts or update_token_scripts, sent
// whole by PATCH as a merge patch replaces arrays (docs/admin-api.md).
func newBindCommand(env lookupEnv, stdout io.Writer, bind bool) *cobra.Command {
	use, short := "bind", "Bind a script to a client"
	if !bind {
		use, short = "unbind", "Unbind a script from a client"
	}
	var updateToken bool
	cmd := remoteCommand(env, stdout, &cobra.Command{Use: use + " CLIENT_ID SCRIPT", Short: short, Args: func(c *cobra.Command, args []string) error {
		if len(args) != 2 {
			return &usageError{c, fmt.Errorf("%s wants a client id and a script name, got %d arguments", c.CommandPath(), len(args))}
		}
		return nil
	}}, func(c *cobra.Command, r *remote, args []string) error {
		member := "introspection_scripts"
		if updateToken {
			member = "update_token_scripts"
		}
		p := "/clients/" + url.PathEscape(args[0])
		b, err := r.call(c.Context(), http.MethodGet, p, nil)
		if err != nil {
			return err
		}
		var cur map[string]any
		if err := jsonUnmarshal(b, &cur); err != nil {
			return err
		}
		names := []string{}
		found := false
		for _, v := range asList(cur[member]) {
			if v == args[1] {
				found = true
				if !bind {
					continue
				}
			}
			names = append(names, v)
		}
		switch {
		case bind && found, !bind && !found:
			return r.print(b)
		case bind:
			names = append(names, args[1])
		}
		b, err = r.call(c.Context(), http.MethodPatch, p, map[string]any{member: names})
		if err != nil {
			return err
		}
		return r.print(b)
	})
	cmd.Flags().BoolVar(&updateToken, "update-token", false, "the update_token_scripts rather than the introspection_scripts")
	return cmd
}

func asList(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
