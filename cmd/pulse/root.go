package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// version is set at link time (-X main.version=…).
var version = "dev"

type streams struct {
	in       io.Reader
	out, err io.Writer
}

// app is what every command shares: streams, configuration, and the
// lazily-made engine client.
type app struct {
	streams
	env     func(string) string
	cfgPath string
	cfg     Config
	cli     *client.Client
}

// usageError marks a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, s streams, env func(string) string) int {
	a := &app{streams: s, env: env}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	err := root.ExecuteContext(ctx)
	if a.cli != nil {
		a.cli.Close()
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(s.err, "pulse:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintln(s.err, "Run 'pulse --help' or 'pulse <command> --help' for usage.")
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognises cobra's own command-line errors, which it does not
// type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "bad flag syntax"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "pulse",
		Short: "Functions as a Service on your own hardware, on Docker Swarm",
		Long: `Pulse builds functions into tiny FROM scratch images, runs them as Swarm services,
and scales them from Netdata's alarms.

Configuration: --config FILE, else $XDG_CONFIG_HOME/pulse/config.yaml if it exists,
overridden by PULSE_DOCKER_HOST, PULSE_GATEWAY, PULSE_REPLICA_GATEWAY, PULSE_CACHE_DIR,
PULSE_API (pulsed's API, default http://127.0.0.1:8090) and PULSE_INSTANCE (default "default").`,
		Example: `  pulse new hello --lang go
  cd hello && pulse build && pulse deploy
  pulse invoke hello -d world`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(a.cfgPath, a.env)
			if err != nil {
				return usageError{err}
			}
			a.cfg = cfg
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.cfgPath, "config", "", "configuration file (YAML)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		a.newCmd(),
		a.buildCmd(),
		a.deployCmd(),
		a.invokeCmd(),
		a.lsCmd(),
		a.describeCmd(),
		a.scaleCmd(),
		a.logsCmd(),
		a.rmCmd(),
		a.doctorCmd(),
	)
	return root
}
