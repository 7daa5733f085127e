package main

// The gateway suite's summary: its tables, goals and notes.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/pulsefaas/pulse/bench/report"
)

// Goals of the gateway suite (from the issue).
const (
	gwLatencyGoalName = "added p50 latency through HAProxy at c=1 ≤ 60 µs"
	gwScaleGoalName   = "task running → its server takes traffic ≤ 0.5 s (median)"
)

// Thresholds above which gatewayNotes writes a note.
const (
	gwWrkSaturatedPct = 90 // of a core per wrk thread
	gwOtherLoadPct    = 20
	gwStealPct        = 5
	gwP50SpreadUS     = 20 // per-round added p50 spread
	gwBalanceTie      = 0.03
)

// gatewaySummary summarises rep's rows into its tables, goals and notes.
// First each run with a reference variant gets its difference from the
// reference's run in the same round (vs_ref_p50_us, vs_ref_rps).
func gatewaySummary(rep *report.Report) {
	rep.Title = " (medians over rounds)"
	runs := report.Of(rep.Rows, "run")
	for _, r := range runs {
		for _, ref := range runs {
			if r.OK() && ref.OK() && ref.Label("round") == r.Label("round") && ref.Label("variant") == gwVariantNamed(r.Label("variant")).Ref {
				r.Put("vs_ref_p50_us", r.V("p50_us")-ref.V("p50_us")).Put("vs_ref_rps", report.Round3(r.V("rps")/ref.V("rps")))
			}
		}
	}
	groups, names := report.Summarize(rep.Rows, "run", "stage", "variant"), []string{}
	for _, v := range gwVariants {
		names = append(names, v.Name)
	}
	report.Sort(groups, "variant", names)
	scale := report.Summarize(rep.Rows, "scale", "scale")
	rep.Summary = slices.Concat(groups, scale)
	vsRef := report.Col{Head: "vs ref", Cell: func(g report.Group) string {
		v := gwVariantNamed(g.Label("variant"))
		ref, ok := report.Find(groups, "variant", v.Ref)
		if !ok || ref.Runs == 0 {
			return ""
		}
		metric, format, s := "vs_ref_rps", "%.2f", fmt.Sprintf("%.3f× rps", g.M("rps")/ref.M("rps"))
		if v.Conns == gwLowConns {
			metric, format, s = "vs_ref_p50_us", "%+.0f", fmt.Sprintf("%+.0f µs p50", g.M("p50_us")-ref.M("p50_us"))
		}
		if x := g.Values(metric); len(x) > 1 {
			s += fmt.Sprintf(" ("+format+"–"+format+")", slices.Min(x), slices.Max(x))
		}
		return s
	}}
	haproxy := report.Col{Head: "HAProxy CPU/req µs", Cell: func(g report.Group) string {
		calm, disturbed := gwCalmHAProxy(g)
		return report.Num("%.1f", report.Median(calm)) + map[bool]string{true: fmt.Sprintf(" (%d reloaded)", disturbed)}[disturbed > 0]
	}}
	sum := func(head, metric string) report.Col { // over every row, failed ones included
		return report.Col{Head: head, Cell: func(g report.Group) string {
			total := 0.0
			for _, r := range g.Rows {
				total += r.Values[metric]
			}
			return fmt.Sprintf("%.0f", total)
		}}
	}
	rep.Tables = append(rep.Tables, report.GroupTable(fmt.Sprintf("Direct vs through HAProxy (`gateway`), one replica; the balancing algorithms, "+
		"%d replicas through HAProxy at c=%d, pulsed restarted with `PULSE_BALANCE` for every run. `vs ref`: p50 through HAProxy minus direct at c=1, "+
		"rps over direct (or roundrobin's) at c=50, from the medians, per-round range in brackets. CPU/req: each process group's own CPU from /proc.",
		gwBalanceReplicas, gwHighConns), groups, "variant",
		report.Stat("rps", "rps", "%.0f"), report.Stat("p50 µs", "p50_us", "%.0f"), report.Spread("p50 range µs", "p50_us", "%.0f"),
		report.Stat("p99 µs", "p99_us", "%.0f"), vsRef, haproxy, report.Stat("docker-proxy CPU/req µs", "docker_proxy_cpu_per_req_us", "%.1f"),
		report.Stat("replica CPU/req µs", "replica_cpu_per_req_us", "%.1f"), report.Stat("wrk core %", "wrk_core_pct", "%.0f"),
		report.Stat("other %", "other_core_pct", "%.0f"), sum("errors", "errors")),
		report.GroupTable(fmt.Sprintf("Task running → its server takes traffic, scaled 1 → 2 under a light background load through the gateway: "+
			"seconds from the new task's running timestamp to HAProxy's `show servers state` (polled every %g ms) showing its server ready and up; "+
			"`first session`: its stot above its count before the scale; `in catalog`: pulsed's /v1/replicas listing the task; `scale → in catalog`: "+
			"from the scale to /v1/replicas showing the new desired count, `noticed late` when after the task was running.", ms(gwHAProxyPoll)),
			scale, "scale", report.Col{Head: "trials", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d failed)", g.Runs, g.Failed) }},
			report.Stat("ready and up, median s", "ready_s", "%.3f"),
			report.Col{Head: "p90 s", Cell: func(g report.Group) string { return report.Num("%.3f", report.Percentile(g.Values("ready_s"), 90)) }},
			report.Spread("range s", "ready_s", "%.3f"), report.Stat("first session s", "traffic_s", "%.3f"),
			report.Stat("in catalog s", "catalog_s", "%.3f"), report.Stat("server added s", "added_s", "%.3f"),
			report.Stat("scale → task running s", "scale_to_running_s", "%.2f"), report.Stat("scale → in catalog s", "catalog_scale_s", "%.3f"),
			sum("noticed late", "late_notice"), sum("background failed", "background_failed")))
	rep.Goals = gatewayGoals(groups, scale)
	rep.Notes = append(rep.Notes, gatewayNotes(rep.Rows, groups, scale)...)
}

// gwCalmHAProxy is HAProxy's CPU per request in g's runs during which
// pulsed did not reload it nor did its processes change (an exiting worker
// takes its CPU with it; an unknown reload count counts as a reload), and
// the number of runs that were not calm.
func gwCalmHAProxy(g report.Group) (calm []float64, disturbed int) {
	for _, r := range g.Rows {
		v, ok := r.Values["haproxy_cpu_per_req_us"]
		switch {
		case !r.OK():
		case r.V("reloads") != 0 || r.V("haproxy_churn") != 0:
			disturbed++
		case ok:
			calm = append(calm, v)
		}
	}
	return calm, disturbed
}

// gatewayGoals checks the groups against the goals. A goal over a
// variant with errors, or over failed trials, fails.
func gatewayGoals(groups, scale []report.Group) []report.Goal {
	lat := report.NewGoal(gwLatencyGoalName, "µs", 60)
	d, okd := report.Find(groups, "variant", gwDirectLow)
	g, okg := report.Find(groups, "variant", gwGatewayLow)
	switch {
	case !okd || !okg:
		lat = lat.Skipped("the latency stage did not run")
	case d.Runs == 0 || g.Runs == 0:
		lat = lat.Failed("every run of a c=1 variant failed")
	default:
		lat = lat.Noted("p50 direct %.0f µs, through HAProxy %.0f µs", d.M("p50_us"), g.M("p50_us")).Check(g.M("p50_us") - d.M("p50_us"))
		if x := g.Values("vs_ref_p50_us"); len(x) > 1 {
			lat.Note += fmt.Sprintf("; per round %+.0f to %+.0f µs", slices.Min(x), slices.Max(x))
		}
		for _, v := range []report.Group{g, d} {
			if v.Flagged() {
				lat.Status, lat.Note = report.Fail, v.Label("variant")+" had errors: "+v.Flags[0]
			}
		}
	}
	sc := report.NewGoal(gwScaleGoalName, "s", 0.5)
	if s, ok := report.Find(scale, "scale", gwScale); !ok {
		sc = sc.Skipped("the scale stage did not run")
	} else {
		sc = sc.Noted("server ready and up; first session %.3f s (median of %d)", s.M("traffic_s"), s.Runs).Over(scale, "scale", gwScale, "ready_s")
	}
	return []report.Goal{lat, sc}
}

// gatewayNotes are the notes on the run: which balancing algorithm was
// faster; noise (spread, reloads, wrk saturated, other load, steal);
// failures; the background load; pulsed's stops.
func gatewayNotes(rows []report.Row, groups, scale []report.Group) []string {
	var notes []string
	lc, _ := report.Find(groups, "variant", gwLeastConn)
	rr, _ := report.Find(groups, "variant", gwRoundRobin)
	if ratio := lc.M("rps") / rr.M("rps"); lc.Runs > 0 && rr.Runs > 0 {
		verdict := "roundrobin, pulsed's default, is faster here"
		if ratio >= 1+gwBalanceTie {
			verdict = "leastconn is faster here (pulsed's default is roundrobin, chosen on the p99)"
		} else if ratio > 1-gwBalanceTie {
			verdict = fmt.Sprintf("within %.0f %% of each other on equal replicas and equal requests (leastconn would also steer around a slow "+
				"or busy replica; pulsed's default is roundrobin, chosen on the p99)", 100*gwBalanceTie)
		}
		notes = append(notes, fmt.Sprintf("balance: leastconn %.3f× roundrobin's rps, p99 %.0f against %.0f µs: %s", ratio, lc.M("p99_us"), rr.M("p99_us"), verdict))
	}
	if g, _ := report.Find(groups, "variant", gwGatewayLow); len(g.Values("vs_ref_p50_us")) > 1 {
		if x := g.Values("vs_ref_p50_us"); slices.Max(x)-slices.Min(x) > gwP50SpreadUS {
			notes = append(notes, fmt.Sprintf("added p50 at c=1 varied from %+.0f to %+.0f µs across rounds", slices.Min(x), slices.Max(x)))
		}
	}
	disturbed, total := 0, 0
	for _, g := range groups {
		_, n := gwCalmHAProxy(g)
		disturbed, total = disturbed+n, total+g.Runs
	}
	if disturbed > 0 {
		notes = append(notes, fmt.Sprintf("HAProxy was reloaded (or its processes changed) during %d of %d runs: pulsed reloads it whenever a function "+
			"is added to or removed from the engine, anyone's; their HAProxy CPU is left out and their latencies are disturbed", disturbed, total))
	}
	for _, g := range slices.Concat(groups, scale) {
		name := cmp.Or(g.Label("variant"), "scale "+g.Label("scale"))
		if v := g.M("wrk_core_pct"); v >= gwWrkSaturatedPct*float64(max(1, gwVariantNamed(name).Threads)) {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f %% of a core: its rps and latency are bounded by the load generator", name, v))
		}
		if v := g.M("other_core_pct"); v >= gwOtherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f %% of a core during the runs (median)", name, v))
		}
		if v := g.M("steal_core_pct"); v >= gwStealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f %% of a core (median)", name, v))
		}
		for _, f := range g.Flags {
			notes = append(notes, name+": "+f)
		}
	}
	for _, bg := range report.Of(rows, "background") {
		n := fmt.Sprintf("scale stage background load: %.0f requests answered 200, %.0f failed", bg.V("ok"), bg.V("failed"))
		notes = append(notes, n+map[bool]string{true: " (" + strings.Join(bg.Flags, "; ") + ")"}[len(bg.Flags) > 0])
		if v := bg.V("reloads"); v > 0 {
			notes = append(notes, fmt.Sprintf("scale stage: pulsed reloaded HAProxy %.0f time(s) during it (other functions came and went), "+
				"which kept its catalog polling fast more often than on a steady swarm: fewer trials noticed late than otherwise", v))
		}
	}
	lingered, killed, longest, stops := 0, 0, 0.0, report.Of(rows, "pulsed_stop")
	for _, st := range stops {
		if st.Error != "" {
			notes = append(notes, fmt.Sprintf("pulsed stop (%s stage): %s", st.Label("stage"), report.Truncate(st.Error, 300)))
		}
		if st.V("haproxy_killed") > 0 {
			killed++
		} else if v := st.V("haproxy_linger_s"); v > 0 {
			lingered, longest = lingered+1, max(longest, v)
		}
	}
	if lingered+killed > 0 {
		notes = append(notes, fmt.Sprintf("pulsed's HAProxy outlived it in %d of %d stops: still exiting in %d (up to %.0f ms later), "+
			"still running %g s later and killed in %d", lingered+killed, len(stops), lingered, 1000*longest, haproxyLinger.Seconds(), killed))
	}
	return notes
}
