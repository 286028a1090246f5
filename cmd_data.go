package main

// keyhook import and keyhook export: seed files and bundles on a
// database, offline (docs/configuration.md).

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newImportCommand(env lookupEnv, stdout, stderr io.Writer) *cobra.Command {
	o := defaultOptions()
	var b bundleFlags
	cmd := &cobra.Command{
		Use:   "import [--db DSN] FILE | import --bundle DIR [--dry-run] [--prune]",
		Short: "Import clients, scripts, users and config from a YAML file or a bundle (all or nothing)",
		Long: "Import clients, scripts, users and config from a YAML file: what exists is\n" +
			"replaced, what does not is created, in one transaction (an error changes nothing).\n" +
			"With --bundle, import a directory written by export --bundle, after running its\n" +
			"scripts' fixtures, and print what changed.",
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if err := applyEnv(c.Flags(), env); err != nil {
				return err
			}
			if err := b.check(c, args); err != nil {
				return err
			}
			if b.dir != "" {
				return importBundle(c, o, &b, env, stdout, stderr)
			}
			seed, err := readSeed(args[0])
			if err != nil {
				return err
			}
			return withData(c, o, env, stderr, func(a *app) error {
				st, err := a.eng.Import(c.Context(), seed.seed)
				if err != nil {
					return seed.explain(err)
				}
				fmt.Fprintf(stdout, "imported %s: %d created, %d replaced\n", args[0], st.Created, st.Replaced)
				return nil
			})
		},
	}
	dataFlags(cmd.Flags(), o)
	cmd.Flags().StringVar(&b.dir, "bundle", "", "import the bundle in DIR (keyhook.yaml and scripts/) instead of a FILE")
	cmd.Flags().BoolVar(&b.dryRun, "dry-run", false, "with --bundle: print what the import would change, and change nothing")
	cmd.Flags().BoolVar(&b.prune, "prune", false, "with --bundle: delete the scripts and clients the bundle does not name")
	return cmd
}

func newExportCommand(env lookupEnv, stdout, stderr io.Writer) *cobra.Command {
	o := defaultOptions()
	var dir string
	cmd := &cobra.Command{
		Use:   "export [--db DSN] [--bundle DIR]",
		Short: "Write clients, scripts, users and config as YAML, or a bundle directory (secrets left out)",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := applyEnv(c.Flags(), env); err != nil {
				return err
			}
			if dir != "" {
				return exportBundle(c, o, dir, env, stdout, stderr)
			}
			return withData(c, o, env, stderr, func(a *app) error {
				seed, err := a.eng.Export(c.Context())
				if err != nil {
					return err
				}
				return writeYAML(stdout, seed)
			})
		},
	}
	dataFlags(cmd.Flags(), o)
	cmd.Flags().StringVar(&dir, "bundle", "", "write a bundle into DIR (keyhook.yaml and scripts/NAME.js) instead of YAML on stdout")
	return cmd
}
