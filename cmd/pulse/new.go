package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/function"
)

func (a *app) newCmd() *cobra.Command {
	var lang, mode, dir string
	cmd := &cobra.Command{
		Use:   "new NAME --lang go|c|cpp|bin",
		Short: "Create a function from a template",
		Long: `Create directory NAME with a functions.yml and a ready-to-build function:
  go    in-process Go function (linked with the watchdog)
  c     C, one process per request (stdin → stdout), statically linked
  cpp   C++ that echoes back the query parameters, headers and body it receives
  bin   any static executable you provide: fork mode, or --mode http for a server`,
		Example:           "  pulse new hello --lang go\n  pulse new echo --lang cpp\n  pulse new api --lang bin --mode http",
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if lang == "" {
				return usagef("--lang is required: go, c, cpp or bin")
			}
			files, err := function.Scaffold(dir, args[0], lang, mode)
			if err != nil {
				return usageError{err}
			}
			for _, f := range files {
				fmt.Fprintln(a.out, "created", f)
			}
			fmt.Fprintf(a.out, "\nNext:\n  cd %s && pulse build && pulse deploy\n", filepath.Join(dir, args[0]))
			return nil
		},
	}
	cmd.Flags().StringVarP(&lang, "lang", "l", "", "template: go, c, cpp or bin")
	cmd.Flags().StringVar(&mode, "mode", "", "bin only: fork (default) or http")
	cmd.Flags().StringVar(&dir, "dir", ".", "where to create the function's directory")
	_ = cmd.RegisterFlagCompletionFunc("lang", cobra.FixedCompletions([]string{"go", "c", "cpp", "bin"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"fork", "http"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// exactArgs is cobra.ExactArgs with a message naming what is missing.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return argsError(cmd, names, len(args))
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs with a message naming what is missing.
func minArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return argsError(cmd, names, len(args))
		}
		return nil
	}
}

// maxArgs is cobra.MaximumNArgs with a message naming what is allowed.
func maxArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return argsError(cmd, names, len(args))
		}
		return nil
	}
}

// argsError says what the command takes, how it was called, its usage line
// and an example.
func argsError(cmd *cobra.Command, names string, got int) error {
	msg := fmt.Sprintf("%s takes %s (got %d argument(s)); usage: %s", cmd.Name(), names, got, cmd.UseLine())
	if ex := firstExample(cmd); ex != "" {
		msg += "; e.g. " + ex
	}
	return usageError{errors.New(msg)}
}

func firstExample(cmd *cobra.Command) string {
	ex, _, _ := strings.Cut(cmd.Example, "\n")
	return strings.TrimSpace(ex)
}

// withSubcommands makes cmd a command group of subs (add, ls, rm): called
// alone or with an unknown command it is a usage error naming them, with
// cmd's first example.
func withSubcommands(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	names := make([]string, len(subs))
	for i, sub := range subs {
		names[i], _, _ = strings.Cut(sub.Use, " ")
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q: want %s", args[0], cmd.CommandPath(), want)
		}
		return nil
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return usagef("%s needs a command: %s; e.g. %s", cmd.CommandPath(), want, firstExample(cmd))
	}
	cmd.AddCommand(subs...)
	return cmd
}
