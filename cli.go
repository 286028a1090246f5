package main

// The pieces every command shares: the injected environment, usage
// errors (exit 2), argument checks, flags from the environment, and the
// logger.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// lookupEnv reads an environment variable; main passes os.LookupEnv,
// tests a map, so that they run commands in-process without os.Setenv.
type lookupEnv func(name string) (string, bool)

// usageError is a command line that is not understood: an unknown command
// or flag, a missing or extra argument. execute prints the command's usage
// with it and exits 2.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

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

// atMostOneArg takes one optional argument, named name in the message.
func atMostOneArg(name string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > 1 {
			return &usageError{c, fmt.Errorf("%s wants at most %s, got %d arguments", c.CommandPath(), name, len(args))}
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
