package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

func contextWithTimeout(cmd *cobra.Command, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), d)
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// completeFunctions completes deployed function names.
func (a *app) completeFunctions(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cfg, err := loadConfig(a.cfgPath, a.env)
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	a.cfg = cfg
	sw, err := a.swarm()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	list, err := sw.List(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names := make([]string, len(list))
	for i, s := range list {
		names[i] = s.Name
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) lsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List deployed functions",
		Example: "  pulse ls\n  pulse ls --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sw, err := a.swarm()
			if err != nil {
				return err
			}
			list, err := sw.List(cmd.Context())
			if err != nil {
				return explain(err, "")
			}
			if asJSON {
				if err := a.printJSON(list); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tREPLICAS\tIMAGE\tSIZE\tENDPOINTS")
				for _, s := range list {
					fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%.1f MB\t%s\n", s.Name, s.Running, s.Desired, shortID(s.Image),
						float64(s.ImageSize)/1e6, strings.Join(s.Endpoints, ","))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			a.printSkipped(cmd.Context())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printSkipped says, on stderr, which function services pulsed does not
// route and why (contract.Catalog.Skipped): a service with a bad label is
// deployed but never answers through the gateway. A pulsed that cannot be
// read is said in one line; ls itself reads Swarm, not pulsed.
func (a *app) printSkipped(ctx context.Context) {
	api, err := a.api()
	if err != nil {
		fmt.Fprintf(a.err, "note: not checking pulsed's catalog for skipped services: %v\n", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cc := &catalogClient{api: api}
	cat, pending, err := cc.fetch(ctx)
	switch {
	case err != nil:
		fmt.Fprintf(a.err, "note: %v: cannot say which services the gateway skips\n", err)
		return
	case pending != "":
		fmt.Fprintf(a.err, "note: %s\n", pending)
		return
	}
	for _, s := range skippedLines(cat) {
		fmt.Fprintln(a.err, s)
	}
}

// skippedLines are printSkipped's lines for a catalog.
func skippedLines(cat contract.Catalog) []string {
	var out []string
	for _, s := range cat.Skipped {
		out = append(out, fmt.Sprintf("skipped by the gateway: %s (service %s): %s; fix it and run pulse deploy again, or pulse rm %s",
			sanitize(s.Name, 63), shortID(sanitize(s.ServiceID, 64)), sanitize(s.Reason, 500), sanitize(s.Name, 63)))
	}
	return out
}

// describeScale says a scale policy in words.
func describeScale(p function.ScalePolicy) string {
	var parts []string
	if p.Metric != "" {
		parts = append(parts, fmt.Sprintf("on %s, target %s per replica", p.Metric, strconv.FormatFloat(p.Target, 'f', -1, 64)))
	} else {
		parts = append(parts, "no metric (not autoscaled)")
	}
	parts = append(parts, fmt.Sprintf("%d to %d replicas", p.Min, p.Max))
	if p.Idle != "" {
		parts = append(parts, "to zero after "+p.Idle+" idle")
	} else {
		parts = append(parts, "never to zero when idle")
	}
	return strings.Join(parts, "; ")
}

// describeLimits says a service's limits in words.
func describeLimits(l function.ResourceLimits) string {
	var parts []string
	if l.MemoryBytes > 0 {
		parts = append(parts, "memory "+formatBytes(l.MemoryBytes))
	}
	if l.CPUs > 0 {
		parts = append(parts, strconv.FormatFloat(l.CPUs, 'f', -1, 64)+" CPU")
	}
	if l.Pids > 0 {
		parts = append(parts, fmt.Sprintf("%d processes", l.Pids))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// formatBytes writes a size in the largest binary unit that divides it, as
// functions.yml writes limits (64MiB), else in MiB with a decimal.
func formatBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	if n >= 1<<20 {
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

func (a *app) describeCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "describe NAME",
		Short:             "Show a function's settings, replicas and recent tasks",
		Example:           "  pulse describe hello\n  pulse describe hello --json",
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			sw, err := a.swarm()
			if err != nil {
				return err
			}
			d, err := sw.Describe(cmd.Context(), args[0])
			if err != nil {
				return explain(err, args[0])
			}
			if asJSON {
				return a.printJSON(d)
			}
			fmt.Fprintf(a.out, "Name:      %s\nService:   %s\nImage:     %s (%.1f MB)\nReplicas:  %d running / %d desired\nTimeout:   %s\n",
				d.Name, d.ServiceID, d.Image, float64(d.ImageSize)/1e6, d.Running, d.Desired, d.Timeout)
			fmt.Fprintf(a.out, "Scale:     %s\nLimits:    %s\n", describeScale(d.Scale), describeLimits(d.Limits))
			if r := d.RateLimit; r != nil {
				fmt.Fprintf(a.out, "Rate:      %d requests per %s, by %s (the gateway answers 429 above it)\n", r.Requests, r.Per, r.By)
			} else if v, ok := d.Labels[contract.LabelRateLimit]; ok {
				fmt.Fprintf(a.out, "Rate:      label %s=%q is not a rate limit: pulsed skips this function; deploy it again\n", contract.LabelRateLimit, v)
			}
			if d.Async != nil {
				fmt.Fprintf(a.out, "Async:     %s\n", d.Async)
			} else {
				fmt.Fprintf(a.out, "Async:     label %s=%q is not an async policy: pulsed skips this function; deploy it again\n", contract.LabelAsync, d.Labels[contract.LabelAsync])
			}
			if d.UpdateState != "" {
				fmt.Fprintf(a.out, "Update:    %s %s\n", d.UpdateState, d.UpdateMessage)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\nTASK\tNODE\tSTATE\tDESIRED\tSINCE\tENDPOINT\tERROR")
			for _, t := range d.Tasks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Node, t.State, t.DesiredState,
					t.Since.Format(time.RFC3339), t.Endpoint, t.Error)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) scaleCmd() *cobra.Command {
	var (
		force   bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "scale NAME REPLICAS",
		Short: "Set a function's replica count (within its scale.min and scale.max)",
		Long: `Set a function's replica count at the service's version read (a concurrent change is
read again and retried). With --wait, wait as pulse deploy does: until Swarm runs exactly
REPLICAS replicas, none stopping, and pulsed's gateway routes each; exit 1 with Swarm's
reason or, on the timeout, what is missing and the last task error.`,
		Example:           "  pulse scale hello 3\n  pulse scale hello 3 --wait\n  pulse scale hello 0 --force --wait --timeout 30s",
		Args:              exactArgs(2, "NAME and REPLICAS"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			switch {
			case err != nil:
				return usagef("REPLICAS %q: want a whole number ≥ 0", args[1])
			case n < 0:
				return usagef("REPLICAS %d: replicas must be ≥ 0 (0 stops every replica)", n)
			}
			sw, err := a.swarm()
			if err != nil {
				return err
			}
			if err := sw.Scale(cmd.Context(), args[0], n, force); err != nil {
				return explain(err, args[0])
			}
			fmt.Fprintf(a.out, "%s: scaled to %d\n", args[0], n)
			if !wait {
				return nil
			}
			return a.waitReady(cmd.Context(), sw, args[0], n, timeout)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "allow a count outside scale.min and scale.max")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the replicas run and the gateway routes them (as pulse deploy does)")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultWaitTimeout, "with --wait: how long to wait")
	return cmd
}

func (a *app) logsCmd() *cobra.Command {
	var (
		follow bool
		since  string
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Show a function's logs (watchdog and function stderr)",
		Long: `Show a function's logs: every replica's, current and recent, each line prefixed by its
task and node and stamped with the engine's time. --tail N prints only the last N lines
of all replicas together (then, with -f, the new ones as they come).`,
		Example:           "  pulse logs hello\n  pulse logs hello -f --since 10m\n  pulse logs hello --tail 20 -f",
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("tail") && tail < 0 {
				return usagef("--tail %d: want a number of lines ≥ 0", tail)
			}
			sw, err := a.swarm()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("tail") {
				return explain(sw.Logs(cmd.Context(), args[0], follow, since, a.out), args[0])
			}
			return explain(a.tailLogs(cmd.Context(), sw, args[0], follow, since, tail), args[0])
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().StringVar(&since, "since", "", "only lines since a time (RFC 3339) or a duration ago (10m)")
	cmd.Flags().IntVarP(&tail, "tail", "n", 0, "print only the last N lines (all replicas together)")
	return cmd
}

func (a *app) rmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "rm NAME...",
		Aliases:           []string{"remove"},
		Short:             "Remove functions: their services, containers and images",
		Example:           "  pulse rm hello",
		Args:              minArgs(1, "NAME..."),
		ValidArgsFunction: a.completeFunctions,
		RunE: func(cmd *cobra.Command, args []string) error {
			sw, err := a.swarm()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := sw.Remove(cmd.Context(), n); err != nil {
					return explain(err, n)
				}
				fmt.Fprintf(a.out, "%s: removed\n", n)
			}
			return nil
		},
	}
	return cmd
}
