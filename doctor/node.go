package doctor

import (
	"context"
	"fmt"
)

// nodeChecks are the checks that say something of a machine joining the
// swarm to run replicas (`pulse node add`), with the worst status each may
// give there. Pulse publishes host-mode ports and balances with HAProxy on
// the control node, so a node needs an engine and host ports that work;
// what its kernel and packages lack is the playbook's to fix, and is
// reported as a WARN that says how. Left out:
//
//   - swarm: node add itself decides on the swarm state (a node about to
//     join is inactive, which doctor calls a FAIL);
//   - ipvs: without the routing mesh, which Pulse does not use, it can only
//     say "fine for Pulse";
//   - vxlan: Pulse's tasks join no overlay network (host-mode ports on the
//     default bridge), so it warns of nothing Pulse does;
//   - nofile: the limit of the process that asks, meaningless over SSH;
//     the limits that bite are the control node's daemons';
//   - the tools and processes: the control node's (pulse doctor there).
var nodeChecks = []struct {
	name  string
	worst Status
	// failHint replaces a FAIL's hint, which may speak of this host.
	failHint string
}{
	// Nothing joins without an engine that answers.
	{CheckDocker, FAIL, "the node needs Docker Engine 20.10 or later running (apt-get install docker.io; systemctl start docker) " +
		"and the docker command on the SSH user's PATH, with the right to use the engine (root, or the docker group)"},
	// On the control node, HAProxy's client sockets to every replica share
	// the kernel's range with dockerd's host ports, and the userland proxy
	// copies every request to 127.0.0.1: FAILs there. A node's host
	// namespace opens few client sockets, and the control node reaches its
	// replicas at its swarm address, never its loopback: worth fixing
	// (the playbook), not worth refusing the node.
	{CheckHostPorts, WARN, ""},
	{CheckUserlandProxy, WARN, ""},
	// dockerd and the replicas' runtimes hold inotify instances.
	{CheckInotify, WARN, ""},
}

// NodeFiles are the files the node checks read through Probes.Root, as
// patterns of provision.(*Client).Snapshot, which reads them from a node
// in one SSH session: `pulse node add` gives RunNode that snapshot. A
// node check that reads a file these do not name gets an error saying so
// (provision.ErrNotCaptured), and provision's TestSnapshotCoversNodeChecks
// fails: add the file here.
func NodeFiles() []string {
	files := []string{
		// findDockerd and findProcesses: dockerd's pid, every process's name.
		"proc/[0-9]*/comm",
		// checkHostPorts: dockerd's range, in its mount namespace, and the
		// kernel's.
		"proc/{pid:dockerd}/root/" + portRangeFile,
		portRangeFile,
		reservedPortsFile,
		// checkUserlandProxy: dockerd's flags and configuration, and the
		// parents of docker-proxy processes.
		"proc/{pid:dockerd}/cmdline",
		daemonJSONFile,
		"{flag:dockerd:config-file}",
		"proc/{pid:docker-proxy}/stat",
	}
	files = append(files, dockerPIDFiles...)
	for _, l := range inotifyLimits {
		files = append(files, inotifyDir+l.name)
	}
	return files
}

// RunNode runs the node checks (see nodeChecks) concurrently, as Run does
// every check, and returns one Result each, in this order: docker,
// host-ports, userland-proxy, inotify. p is the node's: its engine, its
// files (a snapshot of NodeFiles) and a Runner of commands on it. A FAIL
// of a check that only warns on a node is reported as a WARN, its detail
// and hint unchanged; an engine that does not answer is a FAIL whose hint
// speaks of the node, not of this host's docker_host.
func RunNode(ctx context.Context, p Probes) []Result {
	cs := make([]check, len(nodeChecks))
	for i, nc := range nodeChecks {
		cs[i] = checkNamed(nc.name)
	}
	results := runChecks(ctx, p, cs)
	for i, nc := range nodeChecks {
		r := &results[i]
		if r.Status == FAIL && nc.worst == WARN {
			r.Status = WARN
		}
		if r.Status == FAIL && nc.failHint != "" {
			r.Hint = nc.failHint
		}
	}
	return results
}

// checkNamed is the check called name; there is one for each Check*.
func checkNamed(name string) check {
	for _, c := range checks {
		if c.name == name {
			return c
		}
	}
	panic(fmt.Sprintf("doctor: no check %q", name))
}
