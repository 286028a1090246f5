// Command keyhook is an OAuth 2.0 / OpenID Connect authorization server
// whose tokens and introspection answers are shaped by JavaScript hooks.
//
//	keyhook serve [flags]               run the server
//	keyhook import [--db DSN] FILE      import clients, scripts, users and config
//	keyhook export [--db DSN]           write them as YAML (secrets left out)
//	keyhook new-kek                     print a fresh key-encryption key
//	keyhook admin reset-secret [--db DSN | DB]
//	                                    give keyhook-admin a new secret
//	keyhook script test FILE.js         run a script on its fixtures, no server
//	keyhook client|script|user|config ...
//	                                    manage a running server (admin API)
//	keyhook token CLIENT_ID             get a token, decoded when a JWT
//	keyhook version                     print the build's version
//
// Every flag and its environment variable is listed in
// docs/configuration.md. Exit status: 0 on success, 1 on an error, 2 on a
// command line that is not understood.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(execute(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// Exit statuses of execute.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// execute runs the command line args and returns the exit status: help is
// printed to stdout; errors are one line "keyhook: ..." on stderr,
// followed by the usage when the command line was not understood.
func execute(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
	root := newRootCommand(env, stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "keyhook:", oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.cmd != nil {
			cmd = ue.cmd
		}
		fmt.Fprint(stderr, "\n"+cmd.UsageString())
		return exitUsage
	}
	return exitError
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func newRootCommand(env lookupEnv, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "keyhook",
		Short: "OAuth 2.0 / OpenID Connect authorization server with JavaScript hooks",
		Long: "keyhook is an OAuth 2.0 / OpenID Connect authorization server whose tokens and\n" +
			"introspection answers are shaped by JavaScript hooks bound to clients.\n\n" +
			"Every flag of serve falls back to the environment variable KEYHOOK_<FLAG>\n" +
			"(--script-workers: KEYHOOK_SCRIPT_WORKERS); a flag wins. Exit status: 0 on\n" +
			"success, 1 on an error, 2 on a command line that is not understood.\n" +
			"Reference: docs/configuration.md.",
		Version:       buildVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{c, err} })
	root.SetVersionTemplate("{{.Version}}\n")
	group(root)
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Print the usage of keyhook or of a command",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return &usageError{c.Root(), fmt.Errorf("unknown help topic %q", strings.Join(args, " "))}
			}
			return cmd.Help()
		},
	})
	admin := &cobra.Command{Use: "admin", Short: "Repair the admin access of a database"}
	group(admin)
	admin.AddCommand(newResetSecretCommand(env, stdout, stderr))
	root.AddCommand(
		newServeCommand(env, stdout, stderr),
		newImportCommand(env, stdout, stderr),
		newExportCommand(env, stdout, stderr),
		newKEKCommand(stdout),
		admin,
		newScriptCommand(env, stdout),
		newClientCommand(env, stdout),
		newUserCommand(env, stdout),
		newConfigCommand(env, stdout),
		newTokenCommand(env, stdout),
		newVersionCommand(stdout),
	)
	return root
}
