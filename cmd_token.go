package main

// keyhook token CLIENT_ID: an access token by client_credentials (RFC 6749
// section 4.4) from a running server, with a JWT's header and claims
// decoded (RFC 7519, RFC 9068) to see what the scripts made of it.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func newTokenCommand(env lookupEnv, stdout io.Writer) *cobra.Command {
	var secret, scope string
	cmd := remoteCommand(env, stdout, &cobra.Command{Use: "token CLIENT_ID", Short: "Get a client_credentials token and print it, decoded when a JWT", Args: oneArg("a client id")},
		func(c *cobra.Command, r *remote, args []string) error {
			if secret == "" {
				// The documented name (docs/configuration.md) beside the
				// flag's own KEYHOOK_SECRET.
				secret, _ = env("KEYHOOK_TOKEN_SECRET")
			}
			m, err := r.clientCredentials(c.Context(), args[0], secret, scope)
			if err != nil {
				return err
			}
			if r.output == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(m)
			}
			tok, _ := m["access_token"].(string)
			fmt.Fprintln(stdout, tok)
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				return nil
			}
			for i, title := range []string{"header", "claims"} {
				raw, err := base64.RawURLEncoding.DecodeString(parts[i])
				var buf bytes.Buffer
				if err != nil || json.Indent(&buf, raw, "", "  ") != nil {
					return nil
				}
				fmt.Fprintf(stdout, "%s:\n%s\n", title, buf.String())
			}
			return nil
		})
	cmd.Flags().StringVar(&secret, "secret", "", "the client's secret (also KEYHOOK_TOKEN_SECRET)")
	cmd.Flags().StringVar(&scope, "scope", "", "scopes to ask for, space-separated")
	return cmd
}
