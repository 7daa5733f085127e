package main

// The cluster suite's rendering, as text for a terminal or markdown for
// the README. Pure.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// renderCluster renders r; rel is the JSON's path relative to the README.
func renderCluster(r clusterReport, md bool, rel string) string {
	c := r.Config
	setup := fmt.Sprintf("%d CPUs (%s), kernel %s, %s; lab: %d nodes (%s), swarm heartbeat %.0f s; this host's %s; %s; pulsed on this host with docker_host ssh://root@%s",
		r.Machine.CPUs, shortCPU(r.Machine.CPUModel), r.Machine.Kernel, r.Machine.Go, c.Nodes, r.LabEngine, c.HeartbeatS, r.Engine, r.HAProxy, firstAddr(r.Nodes))
	d := newReportDoc(md, suiteCluster, "", r.Started, rel, setup)

	if len(r.FailoverSummary) > 0 {
		d.caption(fmt.Sprintf("Failover under load: %d requests a second (open loop, keep-alive, never retried) through the gateway to %s (%d replicas, one per node, function timeout %.0f s: HAProxy's server timeout %.0f s), "+
			"a worker killed or frozen; medians of %d trials each (lowest–highest in brackets), seconds after the fault; pulsed's health checks every %s, timeout %s, fall %d unless the setting says otherwise:",
			c.LoadRate, c.Function, c.Replicas, c.FunctionTimeoutS, c.ServerTimeoutS, c.Trials, c.CheckInterval, c.CheckTimeout, c.CheckFall))
		d.table([]string{"pulsed", "fault", "trials (complete)", "error window s", "every replica answering s", "failed requests", "out of HAProxy s", "node Down s", "replacement running s", "3 routed s", "fault call s"},
			failSummaryRows(r.FailoverSummary))
		d.section("Every failover trial (window: start of the last failed request − fault, 0 when none started after it; then the node's return and the 3→4→3 rebalance):",
			[]string{"pulsed", "fault", "round", "node", "error window s", "every replica answering s", "failed (started after fault)", "failures", "out of HAProxy s", "node Down s", "replacement running s", "3 routed s", "replacement on", "node back s", "rebalance s", "error"},
			failTrialRows(r.Failover))
	}
	if len(r.Saturation) > 0 {
		d.section(fmt.Sprintf("Health under saturation, for the faster setting (the soak's workload: %d closed-loop connections through the gateway to one replica of a fork-mode C handler burning %d ms of CPU per request, %.0f s each); "+
			"health probes: GET of the replica's health endpoint straight from this host every 250 ms:", satConns, satBurnMS, c.SatWindowS),
			[]string{"pulsed", "replica on", "requests", "failed", "p50 / p99 ms", "DOWN transitions", "failed checks", "detours", "health probes p50 / p99 / max ms", "kept in rotation"},
			satScreenRows(r.Saturation))
		if r.Fast != nil {
			d.caption(fmt.Sprintf("The faster setting measured above: %s (`%s`).", r.Fast.Name, strings.Join(r.Fast.Env, " ")))
		}
	}
	if p := r.Push; p != nil {
		d.section(fmt.Sprintf("Image push: a fresh image (%d MiB random payload, archive %.1f MB) per trial; %s. ×1 node: the same row's time over its one-node time. "+
			"dial: the Engines call (SSH handshakes, engine pings); slowest node: its inspect, load and check after that. "+
			"CPU in seconds per trial (medians): this process; the nodes' cgroups, split by process (sshd; docker CLI: dial-stdio, or the local `docker load`; dockerd, with the untar helper it reaps; containerd; "+
			"other, exited or nested: the rest of the cgroup); other processes: the machine's busy CPU that is neither (the host's engine for docker exec, the kernel's softirq, other work); "+
			"machine CPU: all of the machine's busy CPU over the trial, which its %d cores need at least machine CPU ÷ %d seconds of wall time for; busy cores: that over the trial's time:",
			p.PayloadBytes>>20, float64(p.ArchiveBytes)/mb, p.Dial, r.Machine.CPUs, r.Machine.CPUs),
			[]string{"kind", "variant", "nodes", "trials", "wall s (range)", "×1 node", "dial s", "slowest node s", "this process", "nodes", "sshd", "docker CLI", "dockerd", "containerd", "other, exited or nested", "other processes", "machine CPU s", "busy cores", "iowait cores", "disk writes MB"},
			pushRows(p.Summary))
		if rows := layerRows(p.Summary); len(rows) > 0 {
			images := "the images could not be assembled"
			if l := p.Layer; l != nil {
				images = fmt.Sprintf("a base layer (%.2f MB: %s) and a function layer (%.2f MB: %s); full archive %.2f MB, B's thin one %.2f MB",
					float64(l.BaseFileBytes)/mb, l.Base, float64(l.FunctionFileBytes)/mb, l.Function, float64(l.ArchiveBytes)/mb, float64(l.ThinBytes)/mb)
			}
			d.section("One function layer changed against a full image: per trial a fresh pair of two-layer images A and B in pulse build's fork-mode layout, "+images+". "+
				"A pushed to the nodes (full: no node holds its new base), then B through the same ClusterDistributor, which sends a node that lists an image with that base layer "+
				"only B's thin archive; dialled as above. ×A: B's time over A's to as many nodes; sent to a node: the most any node was sent in a trial (function.LoadReport); "+
				"CPU in seconds per trial (medians):", layerHeader, rows)
		} else if p.LayerChange != "" {
			d.caption("One function layer changed against a full image: " + p.LayerChange + ".")
		}
	}
	if i := r.Idle; i != nil {
		d.section(fmt.Sprintf("Idle for %.0f s: %d replicas of %s, pulsed (%s) routing them, nothing calling (CPU in %% of one core; memory from each node's cgroup; the whole machine was %.1f %% busy meanwhile):",
			i.WindowS, c.Replicas, c.Function, i.Setting, i.HostBusyPct),
			[]string{"what", "replicas", "CPU %", "memory.usage MB", "RSS MB", "page cache MB", "processes"}, clusterIdleRows(*i))
	}
	d.goals(r.Goals)
	d.notes(r.Notes)
	if len(r.Cleanup) > 0 {
		d.notes([]string{"clean-up: " + strings.Join(r.Cleanup, "; ")})
	}
	return d.String()
}

func shortCPU(model string) string {
	if strings.Contains(model, "EPYC") {
		return "AMD EPYC"
	}
	return model
}

func firstAddr(ns []labNode) string {
	if len(ns) == 0 {
		return "?"
	}
	return ns[0].Addr
}

// num formats seconds to two decimals, "–" when not measured.
func num(s secs) string {
	f := float64(s)
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 0):
		return "never"
	}
	return fmt.Sprintf("%.2f", f)
}

func failSummaryRows(ss []failSummary) [][]string {
	var rows [][]string
	for _, s := range ss {
		rows = append(rows, []string{s.Setting, s.Fault, fmt.Sprintf("%d (%d)", s.Trials, s.Complete),
			fmt.Sprintf("%s (%s–%s)", num(s.WindowS), num(s.WindowMin), num(s.WindowMax)),
			fmt.Sprintf("%s (%s–%s)", num(s.Restored), num(s.RestMin), num(s.RestMax)),
			fmt.Sprintf("%s (%d–%d)", strconv.FormatFloat(s.Failed, 'f', -1, 64), s.FailedMin, s.FailedMax),
			num(s.LeftS), num(s.DownS), num(s.RunningS), num(s.RoutedS), num(s.CallS)})
	}
	return rows
}

func failTrialRows(ts []failTrial) [][]string {
	var rows [][]string
	for _, t := range ts {
		rows = append(rows, []string{t.Setting, t.Fault, strconv.Itoa(t.Round + 1), t.Node, num(t.WindowS), num(t.RestoredS),
			fmt.Sprintf("%d (%d)", t.Failed, t.FailedAfter), kinds(t.FailedByKind), num(t.LeftS), num(t.DownS), num(t.RunningS), num(t.RoutedS),
			t.NewNode, num(t.BackS), num(t.RebalanceS), truncate(t.Error, 200)})
	}
	return rows
}

func satScreenRows(ss []clusterSat) [][]string {
	var rows [][]string
	for _, s := range ss {
		kept := "yes"
		if !s.Kept {
			kept = "no"
		}
		if s.Error != "" {
			kept = "error: " + truncate(s.Error, 160)
		}
		failed := strconv.FormatInt(s.Sat.Failed, 10)
		if len(s.Sat.FailedByKind) > 0 {
			failed += " (" + kinds(s.Sat.FailedByKind) + ")"
		}
		rows = append(rows, []string{s.Setting.Name, s.Node, strconv.FormatInt(s.Sat.Requests, 10), failed,
			fmt.Sprintf("%.0f / %.0f", s.Sat.P50MS, s.Sat.P99MS), strconv.FormatInt(s.Sat.Downs, 10), strconv.FormatInt(s.Sat.CheckFails, 10),
			strconv.FormatInt(s.Sat.BackupSessions, 10),
			fmt.Sprintf("%.0f / %.0f / %.0f (%d probes, %d failed)", s.Health.P50MS, s.Health.P99MS, s.Health.MaxMS, s.Health.Probes, s.Health.Failed), kept})
	}
	return rows
}

func pushRows(ss []pushSummary) [][]string {
	var rows [][]string
	f := func(v float64) string {
		if math.IsNaN(v) {
			return "–"
		}
		return fmt.Sprintf("%.2f", v)
	}
	for _, s := range ss {
		if s.Kind == pushKindLayer { // layerRows
			continue
		}
		ratio := ""
		if one := pushFind(ss, s.Kind, s.Variant, 1); one != nil && s.Nodes > 1 && one.WallS > 0 {
			ratio = fmt.Sprintf("%.2f×", s.WallS/one.WallS)
		}
		trials := strconv.Itoa(s.Trials)
		if s.Failed > 0 {
			trials += fmt.Sprintf(" (%d failed)", s.Failed)
		}
		if s.Failed == s.Trials {
			rows = append(rows, []string{s.Kind, s.Variant, strconv.Itoa(s.Nodes), trials})
			continue
		}
		dial, slowest := "", ""
		if s.Kind == pushKindPush {
			dial, slowest = f(s.DialS), f(s.SlowestS)
		}
		rows = append(rows, []string{s.Kind, s.Variant, strconv.Itoa(s.Nodes), trials, fmt.Sprintf("%s (%s–%s)", f(s.WallS), f(s.WallMin), f(s.WallMax)), ratio, dial, slowest,
			f(s.HostCPUS), f(s.NodeCPUS), f(s.ByGroup[nodeSSHD]), f(s.ByGroup[nodeDialStdio]), f(s.ByGroup[nodeDockerd]), f(s.ByGroup[nodeContainerd]),
			f(s.ByGroup[nodeGone] + s.ByGroup[nodeOther]), f(s.OtherCPUS), f(s.MachineCPUS), f(s.BusyCores), f(s.IOWaitCores), fmt.Sprintf("%.0f", s.DiskWriteMB)})
	}
	return rows
}

func clusterIdleRows(i clusterIdle) [][]string {
	var rows [][]string
	for _, n := range i.Nodes {
		rows = append(rows, []string{n.Node, strconv.Itoa(n.Tasks), fmt.Sprintf("%.2f", n.CPUPct), fmt.Sprintf("%.1f", n.MemMB), fmt.Sprintf("%.1f", n.RSSMB),
			fmt.Sprintf("%.1f", n.CacheMB), strconv.Itoa(n.Procs)})
	}
	rows = append(rows,
		[]string{"pulsed", "", fmt.Sprintf("%.2f", i.PulsedCPUPct), "", fmt.Sprintf("%.1f", i.PulsedRSSMB), "", "1"},
		[]string{"HAProxy", "", fmt.Sprintf("%.2f", i.HAProxyCPUPct), "", fmt.Sprintf("%.1f", i.HAProxyRSSMB), "", strconv.Itoa(i.HAProxyProcs)},
		[]string{"total", "", fmt.Sprintf("%.2f", i.TotalCPUPct), fmt.Sprintf("%.1f", i.NodesMemMB), fmt.Sprintf("%.1f", i.NodesRSSMB+i.PulsedRSSMB+i.HAProxyRSSMB), "", ""})
	return rows
}
