package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyhook/keyhook/engine"
)

func newResetSecretCommand(env lookupEnv, stdout, stderr io.Writer) *cobra.Command {
	o := defaultOptions()
	cmd := &cobra.Command{
		Use:   "reset-secret [--db DSN | DB]",
		Short: "Give the bootstrap admin client keyhook-admin a new secret and print it once",
		Long: "Give the bootstrap admin client keyhook-admin a new generated secret and print it,\n" +
			"alone on a line, once; the old secret stops working. The client is created as\n" +
			"keyhook serve creates it when it is absent. For the admin who lost the secret:\n" +
			"run it where the database is reachable (a running server sees the change within\n" +
			"seconds).",
		Args: func(c *cobra.Command, args []string) error {
			switch {
			case len(args) > 1:
				return &usageError{c, fmt.Errorf("%s takes at most one database", c.CommandPath())}
			case len(args) == 1 && c.Flags().Changed("db"):
				return &usageError{c, fmt.Errorf("%s: give the database with --db or as an argument, not both", c.CommandPath())}
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				if err := c.Flags().Set("db", args[0]); err != nil {
					return err
				}
			}
			return withData(c, o, env, stderr, func(a *app) error {
				secret, err := a.eng.ResetAdminSecret(c.Context())
				if err != nil {
					return fmt.Errorf("%s: %w", engine.BootstrapAdminID, err)
				}
				fmt.Fprintln(stdout, secret)
				return nil
			})
		},
	}
	dataFlags(cmd.Flags(), o)
	return cmd
}

func newKEKCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "new-kek",
		Short: "Print a fresh key-encryption key (docs/keys.md)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdout, engine.NewKEK())
			return nil
		},
	}
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the VCS revision and the Go version of this build",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdout, buildVersion())
			return nil
		},
	}
}

// buildVersion describes the binary from its build information: the
// module version ("(devel)" for a build from a checkout), the VCS
// revision and time when the build recorded them, and the Go version.
func buildVersion() string {
	version, rev, when, dirty := "(devel)", "", "", false
	if info, ok := debug.ReadBuildInfo(); ok {
		if v := info.Main.Version; v != "" {
			version = v
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "keyhook %s", version)
	if rev != "" {
		fmt.Fprintf(&b, " revision %s", rev)
		if dirty {
			b.WriteString(" (modified)")
		}
		if when != "" {
			fmt.Fprintf(&b, " %s", when)
		}
	}
	fmt.Fprintf(&b, " %s", runtime.Version())
	return b.String()
}
