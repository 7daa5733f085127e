package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/provision"
)

func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Add, list and remove the swarm's nodes (over SSH)",
		Long: `The swarm is the one of docker_host, which must be a manager (docker_host may be
ssh://[user@]host[:port]). Nodes are reached over SSH with keys (the SSH agent, ssh_identity_files
or --identity); host keys are always checked against ssh_known_hosts (default ~/.ssh/known_hosts):
a host seen for the first time is asked about on a terminal, or needs --accept-new-host-key.
Each node gets the label ` + contract.LabelNodeSSH + `=user@host:port, which pulse deploy and pulse push use
to put images on it.`,
		Example: "  pulse node add root@10.0.0.12\n  pulse node ls\n  pulse node rm node3",
	}
	return withSubcommands(cmd, a.nodeAddCmd(), a.nodeLsCmd(), a.nodeRmCmd())
}

func (a *app) nodeAddCmd() *cobra.Command {
	var (
		manager   bool
		labels    []string
		timeout   time.Duration
		advertise string
	)
	cmd := &cobra.Command{
		Use:   "add [user@]host[:port]...",
		Short: "Join machines to the swarm over SSH and label them",
		Long: `For each target: connect over SSH and run pulse doctor's node checks on it, one line each on stderr
(its engine; dockerd's host-port range against the kernel's client range, and the userland proxy; inotify
limits): a FAIL stops here, with what to fix; a WARN says what the node's setup (Pulse's playbook)
should change, and the node is added anyway. Then check its Docker Engine (Linux, ` + provision.MinEngineVersion + ` or later), join it
to docker_host's swarm with the manager's join token (advertising the address SSH reached it at, or --advertise-addr)
unless it is a member already, wait until the manager lists it Ready, and label it
` + contract.LabelNodeSSH + `=user@host:port (and --label's). A new node joins drained and gets the image of every
deployed function it lacks (copied from docker_host's engine, checked by ID) before it is made active,
so no task lands where its image is missing. A node in another swarm is refused: it must leave first.
Adding a member again changes nothing but missing labels and images.`,
		Example: "  pulse node add root@10.0.0.12 root@10.0.0.13\n  pulse node add admin@node4:2222 --manager --label zone=b --accept-new-host-key",
		Args:    minArgs(1, "[user@]host[:port]..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets := make([]provision.Target, len(args))
			for i, s := range args {
				t, err := provision.ParseTarget(s)
				if err != nil {
					return usageError{err}
				}
				targets[i] = t
			}
			if advertise != "" {
				if len(targets) > 1 {
					return usagef("--advertise-addr %s: one node at a time (each node has its own address)", advertise)
				}
				if err := provision.CheckAdvertiseAddr(advertise); err != nil {
					return usageError{err}
				}
			}
			lm := map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				switch {
				case !ok || k == "":
					return usagef("--label %q: want key=value", l)
				case k == contract.LabelNodeSSH:
					return usagef("--label %s: pulse sets that label itself (to the SSH target)", k)
				}
				lm[k] = v
			}
			mgr, err := a.engine()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			cfg := a.sshConfig()
			for _, t := range targets {
				progress := func(line string) { fmt.Fprintf(a.err, "%s: %s\n", t.Host, line) }
				c, err := provision.Dial(ctx, cfg, t)
				if err != nil {
					return err
				}
				checks, err := nodeDoctor(ctx, c)
				if err != nil {
					c.Close()
					return err
				}
				printNodeResults(a.err, t.Host, checks)
				if err := nodeFailures(t, checks); err != nil {
					c.Close()
					return err
				}
				res, err := provision.AddNode(ctx, mgr, c, provision.AddOptions{Manager: manager, Labels: lm, AdvertiseAddr: advertise, ReadyTimeout: timeout, Progress: progress,
					Prepare: a.catchUp(t.Host)})
				c.Close()
				if err != nil {
					return err
				}
				switch {
				case res.Joined:
					fmt.Fprintf(a.out, "%s: joined as a %s (node %s, %s, engine %s) in %v\n", res.Name, res.Role, shortID(res.ID), t, res.EngineVersion, res.Elapsed.Round(time.Millisecond))
				default:
					fmt.Fprintf(a.out, "%s: already in this swarm as a %s (node %s, %s): nothing to join\n", res.Name, res.Role, shortID(res.ID), t)
				}
				if res.Note != "" {
					fmt.Fprintf(a.err, "%s: note: %s\n", res.Name, res.Note)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&manager, "manager", false, "join as a manager (default: a worker)")
	cmd.Flags().StringVar(&advertise, "advertise-addr", "", "the address the node advertises to the swarm: its IP address or interface name on the network the nodes share (default: the address SSH reached it at; one node at a time)")
	cmd.Flags().BoolVar(&a.acceptNewHostKey, "accept-new-host-key", false, "trust and record the key of a host known_hosts does not list yet (a changed key is always refused)")
	cmd.Flags().StringArrayVar(&a.identity, "identity", nil, "private key file to offer, before ssh_identity_files (repeatable)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "node label key=value (repeatable)")
	cmd.Flags().DurationVar(&timeout, "timeout", provision.DefaultReadyTimeout, "how long to wait for the join and until the node is Ready")
	return cmd
}

func (a *app) nodeLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the swarm's nodes",
		Long: `One line per node: name (* marks the manager pulse talks to), node ID, role (leader marked),
status, availability, address, engine version and the SSH target of its ` + contract.LabelNodeSSH + ` label
("-": none, so pulse cannot put images on it: pulse node add it).`,
		Example: "  pulse node ls\n  pulse node ls --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mgr, err := a.engine()
			if err != nil {
				return err
			}
			nodes, err := provision.ListNodes(cmd.Context(), mgr)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(nodes)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tID\tROLE\tSTATUS\tAVAILABILITY\tADDRESS\tENGINE\tSSH")
			for _, n := range nodes {
				name, role, ssh := n.Name, n.Role, n.SSH
				if n.Self {
					name += " *"
				}
				if n.Leader {
					role += " (leader)"
				}
				if ssh == "" {
					ssh = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, shortID(n.ID), role, n.Status, n.Availability, n.Addr, n.EngineVersion, ssh)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) nodeRmCmd() *cobra.Command {
	var (
		force   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rm NAME|host...",
		Short: "Drain nodes and take them out of the swarm",
		Long: `For each node (its name, ID, SSH target or host, or address): refuse the manager pulse talks
to and the last manager; demote a manager; drain it and wait until its tasks have moved; make it
leave the swarm over SSH (its ` + contract.LabelNodeSSH + ` label); remove it from the node list.
--force removes a node that cannot be reached without making it leave.`,
		Example: "  pulse node rm node3\n  pulse node rm 10.0.0.13 --force",
		Args:    minArgs(1, "NAME..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			mgr, err := a.engine()
			if err != nil {
				return err
			}
			dial := provision.EngineDialer(a.sshConfig())
			for _, name := range args {
				progress := func(line string) { fmt.Fprintf(a.err, "%s: %s\n", name, line) }
				res, err := provision.RemoveNode(cmd.Context(), mgr, name, dial, provision.RemoveOptions{Force: force, DrainTimeout: timeout, Progress: progress})
				if err != nil {
					return err
				}
				how := "left the swarm and removed"
				if !res.Left {
					how = "removed from the swarm without leaving (--force)"
				}
				fmt.Fprintf(a.out, "%s: %s (node %s) in %v\n", res.Name, how, shortID(res.ID), res.Elapsed.Round(time.Millisecond))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove a node that cannot be reached over SSH without making it leave")
	cmd.Flags().DurationVar(&timeout, "drain-timeout", provision.DefaultDrainTimeout, "how long to wait for the node's tasks to move")
	return cmd
}
