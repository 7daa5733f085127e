package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pulsefaas/pulse/provision"
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
	// ctx is the command's context, for what is made lazily (the engine
	// over SSH).
	ctx context.Context
	// sshc carries cli when docker_host is ssh://; acceptNewHostKey and
	// identity are `pulse node add`'s flags (sshConfig).
	sshc             *provision.Client
	acceptNewHostKey bool
	identity         []string
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
	root.SetArgs(negativeArgs(root, args))
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	cmd, err := root.ExecuteContextC(ctx)
	if a.cli != nil {
		a.cli.Close()
	}
	if a.sshc != nil {
		a.sshc.Close()
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(s.err, "pulse:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		help := "'pulse --help'"
		if cmd != nil && cmd != root {
			help = "'" + cmd.CommandPath() + " --help'"
		}
		fmt.Fprintf(s.err, "Run %s for usage.\n", help)
		return exitUsage
	}
	return exitFailure
}

// negativeArgs lets a negative number be an argument: pflag reads "-1" as
// the shorthand flag -1, so `pulse scale x -1` would say "unknown shorthand
// flag" instead of what is wrong with the count. No pulse flag is a digit,
// so a token that is a negative whole number and not the value of the flag
// before it moves behind a "--" (keeping the arguments' order).
func negativeArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == root {
		return args
	}
	isNeg := func(a string) bool {
		if len(a) < 2 || a[0] != '-' {
			return false
		}
		for _, c := range a[1:] {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	takesValue := func(a string) bool {
		var f *pflag.Flag
		switch {
		case strings.HasPrefix(a, "--") && !strings.Contains(a, "="):
			f = cmd.Flags().Lookup(a[2:])
			if f == nil {
				f = cmd.InheritedFlags().Lookup(a[2:])
			}
		case len(a) == 2 && a[0] == '-' && a[1] != '-':
			f = cmd.Flags().ShorthandLookup(a[1:])
			if f == nil {
				f = cmd.InheritedFlags().ShorthandLookup(a[1:])
			}
		}
		return f != nil && f.NoOptDefVal == ""
	}
	var flags, positional, after []string
	moved := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			after = args[i+1:]
			i = len(args)
		case isNeg(a):
			moved = true
			positional = append(positional, a)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			flags = append(flags, a)
			if takesValue(a) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		case moved: // a positional argument after a negative number
			positional = append(positional, a)
		default:
			flags = append(flags, a) // in place: before any negative number
		}
	}
	if !moved {
		return args
	}
	res := append(flags, "--")
	res = append(res, positional...)
	return append(res, after...)
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
overridden by PULSE_DOCKER_HOST (unix://, tcp:// or ssh://[user@]host[:port]), PULSE_GATEWAY (default http://127.0.0.1:8080),
PULSE_REPLICA_GATEWAY, PULSE_CACHE_DIR, PULSE_API (pulsed's API, default
http://127.0.0.1:8090), PULSE_INSTANCE (default "default"), PULSE_TOKEN_FILE (pulsed's
management token, default /etc/pulse/api-token) and, for https:// URLs, PULSE_CA_FILE (a PEM
bundle of CAs) or PULSE_FINGERPRINT (the SHA-256 of the server's certificate). SSH (docker_host
ssh://, pulse node, images to every node): PULSE_SSH_KNOWN_HOSTS (default ~/.ssh/known_hosts),
PULSE_SSH_IDENTITY_FILES (comma-separated; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa) and
the SSH agent (SSH_AUTH_SOCK).`,
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
			a.ctx = cmd.Context()
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
		a.keyCmd(),
		a.queueCmd(),
		a.nodeCmd(),
		a.pushCmd(),
	)
	return root
}
