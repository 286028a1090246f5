// Command keyhook is an OAuth 2.0 / OpenID Connect authorization server
// whose tokens and introspection answers are shaped by JavaScript hooks.
//
//	keyhook serve [flags]               run the server
//	keyhook import [--db DSN] FILE      import clients, scripts, users and config
//	keyhook export [--db DSN]           write them as YAML (secrets left out)
//	keyhook new-kek                     print a fresh key-encryption key
//	keyhook admin reset-secret [--db DSN | DB]
//	                                    give keyhook-admin a new secret
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
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// lookupEnv reads an environment variable; main passes os.LookupEnv,
// tests a map, so that they run commands in-process without os.Setenv.
type lookupEnv func(name string) (string, bool)

// Exit statuses of run.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a command line that is not understood: an unknown command
// or flag, a missing or extra argument. run prints the command's usage
// with it and exits 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

// run runs the command line args and returns the exit status: help is
// printed to stdout; errors are one line "keyhook: ..." on stderr,
// followed by the usage when the command line was not understood.
func run(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) int {
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
		newVersionCommand(stdout),
	)
	return root
}

// group makes cmd a command that only holds others: run alone or with an
// unknown command, it is a usage error (cobra would print the help and
// succeed).
func group(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return &usageError{c, errors.New("a command is needed")}
		}
		return &usageError{c, fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())}
	}
}

// noArgs refuses arguments.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{c, fmt.Errorf("%s takes no arguments, got %q", c.CommandPath(), args[0])}
	}
	return nil
}

// oneArg wants one argument, named name in the message.
func oneArg(name string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return &usageError{c, fmt.Errorf("%s wants %s, got %d arguments", c.CommandPath(), name, len(args))}
		}
		return nil
	}
}

// envName is the environment variable of a flag: KEYHOOK_ and its name in
// capitals with _ for - (--script-workers: KEYHOOK_SCRIPT_WORKERS).
func envName(flag string) string {
	return "KEYHOOK_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv gives each flag of fs the command line did not set the value
// of its environment variable, when that is set and not empty: a flag
// wins over the environment, which wins over the default.
func applyEnv(fs *pflag.FlagSet, env lookupEnv) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v, ok := env(name)
		if !ok || v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("%s: %q is not a valid --%s: %v", name, v, f.Name, serr)
		}
	})
	return err
}

// newLogger writes to w at level in format (text or json).
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
}
