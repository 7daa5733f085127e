package main

// The cluster suite's report: its rows summarised into tables, goals and
// notes.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/gateway"
)

// clusterPlan is how many trials and how long the windows were, and the
// faster health-check setting the saturation kept ("" for none).
type clusterPlan struct {
	Trials     int     `json:"trials"`
	DiagTrials int     `json:"diagnostic_trials"`
	IdleS      float64 `json:"idle_window_s"`
	SatS       float64 `json:"saturation_window_s"`
	Fast       string  `json:"fast_setting,omitempty"`
}

// where is the groups whose label k is v.
func where(groups []report.Group, k, v string) []report.Group {
	return slices.DeleteFunc(slices.Clone(groups), func(g report.Group) bool { return g.Label(k) != v })
}

// clusterSummary summarises rep's rows by stage into its summary, tables,
// goals and notes.
func clusterSummary(rep *report.Report, plan clusterPlan) {
	fo := report.Summarize(rep.Rows, "failover", "pulsed", "fault")
	sat := report.Summarize(rep.Rows, "saturation", "pulsed")
	push := report.Summarize(rep.Rows, "push", "test", "variant", "nodes")
	layer := report.Summarize(rep.Rows, "layer", "variant", "nodes")
	idle := report.Summarize(rep.Rows, "idle", "what")
	rep.Summary = slices.Concat(fo, sat, push, layer, idle)

	s2 := func(head, m string) report.Col { return report.Stat(head, m, "%.2f") }
	rng := func(head, m, f string) report.Col {
		return report.Col{Head: head, Cell: func(g report.Group) string {
			return report.Num(f, g.M(m)) + " (" + report.Spread("", m, f).Cell(g) + ")"
		}}
	}
	cell := func(head string, f func(g report.Group) string) report.Col { return report.Col{Head: head, Cell: f} }
	trials := cell("trials", func(g report.Group) string {
		if g.Failed > 0 {
			return fmt.Sprintf("%d (%d failed)", len(g.Rows), g.Failed)
		}
		return strconv.Itoa(len(g.Rows))
	})
	ratio := func(head, k, ref string, in []report.Group) report.Col { // the median wall time over the group's alike but for k=ref
		return cell(head, func(g report.Group) string {
			for _, o := range in {
				if o.Label(k) == ref && g.Label(k) != ref && alike(o, g, k) {
					return report.Num("%.2f×", g.M("wall_s")/o.M("wall_s"))
				}
			}
			return ""
		})
	}
	d := gateway.DefaultRenderConfig()
	rep.Tables = append(rep.Tables, report.GroupTable(fmt.Sprintf("Failover under load: %d requests a second (open loop, keep-alive, never retried) through the gateway "+
		"to the 3-replica function (one replica per node, function timeout %.0f s: HAProxy's server timeout %.0f s), a worker killed or frozen; "+
		"medians (lowest–highest) of each setting's trials, seconds after the fault; error window: start of the last failed request − fault, 0 when none "+
		"that started after it failed:", clusterLoadRate, clusterFnTimeout.Seconds(), (clusterFnTimeout+d.TimeoutMargin).Seconds()), fo, "pulsed",
		report.LabelCol("fault", "fault"), cell("trials (complete)", func(g report.Group) string { return fmt.Sprintf("%d (%d)", len(g.Rows), complete(g)) }),
		rng("error window s", "error_window_s", "%.2f"), rng("every replica answering s", "restored_s", "%.2f"), rng("failed requests", "failed", "%.0f"),
		s2("out of HAProxy s", "left_haproxy_s"), s2("node Down s", "node_down_s"), s2("replacement running s", "replacement_running_s"),
		s2("3 routed s", "routed_s"), s2("fault call s", "call_s")))

	satTable := report.GroupTable(fmt.Sprintf("Health under saturation (the soak's workload: %d closed-loop connections through the gateway to one replica of a fork-mode C handler "+
		"burning %d ms of CPU per request, %.0f s per setting); health probes: GET of the replica's health endpoint straight from this host every 250 ms:",
		satConns, satBurnMS, plan.SatS), sat, "pulsed",
		cell("replica on", func(g report.Group) string { return g.Rows[0].Label("node") }), report.Stat("requests", "requests", "%.0f"),
		report.Stat("failed", "failed", "%.0f"), cell("p50 / p99 ms", func(g report.Group) string {
			return report.Num("%.0f", g.M("p50_ms")) + " / " + report.Num("%.0f", g.M("p99_ms"))
		}), report.Stat("DOWN transitions", "chkdown", "%.0f"), report.Stat("failed checks", "chkfail", "%.0f"), report.Stat("detours", "detours", "%.0f"),
		cell("health probes p50 / p99 / max ms", func(g report.Group) string {
			return fmt.Sprintf("%s / %s / %s (%s probes, %s failed)", report.Num("%.0f", g.M("health_p50_ms")), report.Num("%.0f", g.M("health_p99_ms")),
				report.Num("%.0f", g.M("health_max_ms")), report.Num("%.0f", g.M("health_probes")), report.Num("%.0f", g.M("health_failed")))
		}), cell("kept in rotation", func(g report.Group) string { return map[bool]string{true: "yes", false: "no"}[g.M("kept") == 1] }))
	if i := slices.IndexFunc(clusterFastCandidates, func(s pulsedSetting) bool { return s.Name == plan.Fast }); i >= 0 {
		satTable.Note = fmt.Sprintf("The faster setting, the failover's second: %s (`%s`).", plan.Fast, strings.Join(clusterFastCandidates[i].Env, " "))
	}
	rep.Tables = append(rep.Tables, satTable)

	cpu := []report.Col{s2("this process CPU s", "host_cpu_s"), s2("nodes CPU s", "node_cpu_s")}
	rep.Tables = append(rep.Tables, report.GroupTable(fmt.Sprintf("Image push: a fresh image (%d MiB random payload) per trial; every trial dials the nodes it pushes to "+
		"(SSH handshake and engine ping, in parallel, as pulse does for the nodes other than docker_host's); medians; ×1 node: the time over the one-node time. "+
		"dial: the Engines call; slowest node: its inspect, load and check after that. CPU in seconds per trial: this process; the nodes' cgroups, split by process "+
		"(sshd; docker CLI: dial-stdio or the local `docker load`; dockerd with the untar helper it reaps; the rest of the cgroup: containerd, other, exited or nested); "+
		"other processes: the machine's busy CPU that is neither; machine CPU: all of it, which needs at least machine CPU ÷ cores of wall time; busy cores: that over the trial:",
		clusterPayload>>20), push, "test", append([]report.Col{report.LabelCol("variant", "variant"), report.LabelCol("nodes", "nodes"), trials,
		rng("wall s", "wall_s", "%.2f"), ratio("×1 node", "nodes", "1", push), s2("dial s", "dial_s"), s2("slowest node s", "slowest_node_s")}, append(cpu,
		s2("sshd", "node_sshd_cpu_s"), s2("docker CLI", "node_docker_cli_cpu_s"), s2("dockerd", "node_dockerd_cpu_s"),
		cell("rest of the nodes", func(g report.Group) string {
			return report.Num("%.2f", g.M("node_containerd_cpu_s")+g.M("node_other_cpu_s")+g.M("node_gone_cpu_s"))
		}), s2("other processes", "other_cpu_s"), s2("machine CPU s", "machine_cpu_s"), s2("busy cores", "busy_cores"), s2("iowait cores", "iowait_cores"))...)...))

	layerCaption := "One function layer changed against a full image: per trial a fresh pair of two-layer images A and B in pulse build's fork-mode layout"
	if len(layer) > 0 {
		g := layer[0]
		layerCaption += fmt.Sprintf(": a base layer (the fork-mode watchdog, %.2f MB, with %d random bytes appended, new in each trial) and a function layer "+
			"(the static C handler, %.2f MB, with %d random bytes appended, other ones in B); full archive %.2f MB, B's thin one %.2f MB",
			g.M("base_file_bytes")/mb, layerNonce, g.M("function_file_bytes")/mb, layerNonce, g.M("archive_bytes")/mb, g.M("thin_bytes")/mb)
	}
	rep.Tables = append(rep.Tables, report.GroupTable(layerCaption+". A pushed to the nodes (full: no node holds its new base), then B through the same "+
		"ClusterDistributor, which sends a node that lists an image with that base layer only B's thin archive; dialled as above. ×A: B's time over A's; "+
		"sent to a node: the most any node was sent in a trial (function.LoadReport); CPU in seconds per trial:", layer, "variant",
		report.LabelCol("nodes", "nodes"), trials, rng("wall s", "wall_s", "%.2f"), ratio("×A", "variant", layerFull, layer), s2("dial s", "dial_s"),
		s2("slowest node s", "slowest_node_s"), cell("sent to a node MB (most)", func(g report.Group) string { return report.Num("%.3f", g.Max["sent_max_bytes"]/mb) }),
		cell("full archive MB", func(g report.Group) string { return report.Num("%.3f", g.Max["full_bytes"]/mb) }),
		cell("sent % of full", func(g report.Group) string {
			return report.Num("%.1f", 100*g.Max["sent_max_bytes"]/g.Max["full_bytes"])
		}),
		cell("thin loads", func(g report.Group) string {
			return fmt.Sprintf("%.0f of %.0f", sum(g.Rows, "thin_loads"), sum(g.Rows, "loads"))
		}),
		cpu[0], cpu[1], s2("machine CPU s", "machine_cpu_s")))

	tot, _ := report.Find(idle, "what", "total")
	rep.Tables = append(rep.Tables, report.GroupTable(fmt.Sprintf("Idle for %.0f s: the 3-replica function, pulsed (defaults) routing it, nothing calling "+
		"(CPU in %% of one core; memory from each node's cgroup; the whole machine was %.1f %% busy meanwhile):", tot.M("window_s"), tot.M("host_busy_pct")), idle, "what",
		report.Stat("replicas", "replicas", "%.0f"), s2("CPU %", "cpu_pct"), report.Stat("memory.usage MB", "mem_usage_mb", "%.1f"),
		report.Stat("RSS MB", "rss_mb", "%.1f"), report.Stat("page cache MB", "cache_mb", "%.1f"), report.Stat("processes", "processes", "%.0f")))

	rep.Goals = clusterGoals(rep.Rows, fo, push, layer, idle, plan)
	for _, g := range rep.Summary {
		for _, f := range g.Flags {
			rep.Note("%s: %s", labelText(g.Labels), f)
		}
	}
}

// alike says a and b have the same labels but k.
func alike(a, b report.Group, k string) bool {
	for l, v := range a.Labels {
		if l != k && b.Labels[l] != v {
			return false
		}
	}
	return true
}

// labelText is "k v, k v" of labels, sorted by key.
func labelText(labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+" "+labels[k])
	}
	return strings.Join(parts, ", ")
}

// complete counts the group's trials that neither failed nor were flagged.
func complete(g report.Group) int {
	n := 0
	for _, r := range g.Rows {
		if r.OK() && len(r.Flags) == 0 {
			n++
		}
	}
	return n
}

// sum is metric's sum over rows, failed ones included.
func sum(rows []report.Row, metric string) float64 {
	s := 0.0
	for _, r := range rows {
		s += r.Values[metric]
	}
	return s
}

// clusterGoals are the goals: for each pulsed setting and fault, the
// error window and the time until every replica answers again; the push
// ratio; the bytes a one-function-layer change sends (and its times,
// reported); the idle cost, reported.
func clusterGoals(rows []report.Row, fo, push, layer, idle []report.Group, plan clusterPlan) []report.Goal {
	var goals []report.Goal
	for _, s := range slices.DeleteFunc([]string{clusterDefaults.Name, plan.Fast}, func(s string) bool { return s == "" }) {
		sub := where(fo, "pulsed", s)
		for _, f := range []string{faultKill, faultPause} {
			what := fmt.Sprintf("docker %s of a worker, pulsed %s", f, s)
			g, _ := report.Find(sub, "fault", f)
			n, sec := len(g.Rows), func(m string) string { return report.Num("%.2f s", g.M(m)) }
			goals = append(goals, report.NewGoal(what+": error window by request start (start of the last failed request − fault)", "s", 3).
				Noted("median of %d (%d complete); %s failed requests (%s–%s); servers out of HAProxy +%s, node Down +%s; range %s–%s", n, complete(g),
					report.Num("%.0f", g.M("failed")), report.Num("%.0f", g.Min["failed"]), report.Num("%.0f", g.Max["failed"]), sec("left_haproxy_s"), sec("node_down_s"),
					report.Num("%.2f s", g.Min["error_window_s"]), report.Num("%.2f s", g.Max["error_window_s"])).Over(sub, "fault", f, "error_window_s"),
				report.NewGoal(what+": every replica answering again through the gateway (3 routed, none on the node)", "s", 8).
					Noted("median of %d; range %s–%s; 3 routed +%s", n, report.Num("%.2f s", g.Min["restored_s"]), report.Num("%.2f s", g.Max["restored_s"]), sec("routed_s")).
					Over(sub, "fault", f, "restored_s"))
		}
	}
	def := where(where(push, "test", "push"), "variant", pushDefault)
	one, _ := report.Find(def, "nodes", "1")
	all, _ := report.Find(def, "nodes", strconv.Itoa(clusterNodes))
	goals = append(goals, report.NewGoal(fmt.Sprintf("image push to %d nodes in parallel ≤ 1.3× one node (ClusterDistributor over provision SSH engines, %d MiB payload, median of %d)",
		clusterNodes, clusterPayload>>20, plan.Trials), "×", 1.3).Noted("%s vs %s", report.Num("%.2f s", all.M("wall_s")), report.Num("%.2f s", one.M("wall_s"))).
		Ratio(def, "nodes", strconv.Itoa(clusterNodes), "1", "wall_s"), layerGoal(rows))
	for _, n := range []string{strconv.Itoa(clusterNodes), "1"} {
		sub := where(layer, "nodes", n)
		a, _ := report.Find(sub, "variant", layerFull)
		b, _ := report.Find(sub, "variant", layerThin)
		goals = append(goals, asInfo(report.NewGoal(fmt.Sprintf("one function layer changed, to %s node(s): wall time of B (thin) ÷ A (full), medians of %d", n, plan.Trials), "×", 0).
			AsInfo().Noted("%s vs %s", report.Num("%.2f s", b.M("wall_s")), report.Num("%.2f s", a.M("wall_s"))).Ratio(sub, "variant", layerThin, layerFull, "wall_s")))
	}
	tot, _ := report.Find(idle, "what", "total")
	return append(goals,
		asInfo(report.NewGoal(fmt.Sprintf("idle: CPU of the %d nodes + pulsed + HAProxy over %.0f s (one function of 3 replicas)", clusterNodes, plan.IdleS), "%", 0).AsInfo().
			Noted("of one core; nodes %.2f %%, pulsed %.2f %%, HAProxy %.2f %%", tot.M("nodes_cpu_pct"), tot.M("pulsed_cpu_pct"), tot.M("haproxy_cpu_pct")).
			Over(idle, "what", "total", "cpu_pct")),
		asInfo(report.NewGoal("idle: memory of the nodes (memory.usage_in_bytes, page cache included)", "MB", 0).AsInfo().
			Noted("RSS %.1f MB; pulsed %.1f MB, HAProxy %.1f MB RSS", tot.M("nodes_rss_mb"), tot.M("pulsed_rss_mb"), tot.M("haproxy_rss_mb")).
			Over(idle, "what", "total", "mem_usage_mb")))
}

// asInfo keeps a figure without a limit INFO when its figures had errors
// (the note says which).
func asInfo(g report.Goal) report.Goal {
	if g.Status == report.Fail {
		g.Status = report.Info
	}
	return g
}

// layerGoal is the limit on a one-function-layer change: the most
// any node was sent of B in % of the full archive, over every B trial
// (bytes are exact, so the worst counts); it fails when a trial failed or a
// load was not thin.
func layerGoal(rows []report.Row) report.Goal {
	var trials, failed, loads, thin int
	var worst, sent, full float64
	counts := map[string]bool{}
	for _, r := range report.Of(rows, "layer") {
		if r.Label("variant") != layerThin {
			continue
		}
		trials, loads, thin, counts[r.Label("nodes")] = trials+1, loads+int(r.Values["loads"]), thin+int(r.Values["thin_loads"]), true
		if !r.OK() {
			failed++
		} else if pct := 100 * r.V("sent_max_bytes") / r.V("full_bytes"); r.V("full_bytes") > 0 && pct >= worst {
			worst, sent, full = pct, r.V("sent_max_bytes"), r.V("full_bytes")
		}
	}
	names := strings.Join(slices.Sorted(maps.Keys(counts)), " and ")
	if trials == 0 {
		names = "1 and " + strconv.Itoa(clusterNodes)
	}
	g := report.NewGoal(fmt.Sprintf("a one-function-layer change moves ≤ 15 %% of the full image's bytes to each node (image B after A through ClusterDistributor, to %s node(s))", names), "%", 15)
	note := fmt.Sprintf("at most %.3f MB of the full %.3f MB sent to a node; %d of %d loads thin; %d of %d trials failed", sent/mb, full/mb, thin, loads, failed, trials)
	switch {
	case trials == 0:
		return g.Skipped("the layer-change trials did not run")
	case failed == trials:
		return g.Failed(note)
	case failed > 0 || thin < loads:
		g = g.Noted("%s", note).Check(worst)
		g.Status = report.Fail
		return g
	}
	return g.Noted("%s", note).Check(worst)
}
