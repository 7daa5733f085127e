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

// gatewaySummary sums the rows up (each run gets vs_ref_p50_us: p50 − its reference's).
func gatewaySummary(rep *report.Report) {
	rep.Title = " (medians over rounds)"
	runs := report.Of(rep.Rows, "run")
	for _, r := range runs {
		for _, ref := range runs {
			if r.OK() && ref.OK() && ref.Label("round") == r.Label("round") && ref.Label("variant") == gwVariantNamed(r.Label("variant")).Ref {
				r.Put("vs_ref_p50_us", r.V("p50_us")-ref.V("p50_us"))
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
	rep.Tables = append(rep.Tables, report.GroupTable(fmt.Sprintf("Direct vs through HAProxy (`gateway`), one replica; the balancing algorithms over %d replicas "+
		"at c=%d. `other %%`: the host's busy CPU less wrk and the measured stack.", gwBalanceReplicas, gwHighConns), groups, "variant",
		report.Stat("rps", "rps", "%.0f"), report.Stat("p50 µs", "p50_us", "%.0f"), report.Spread("p50 range µs", "p50_us", "%.0f"),
		report.Stat("p99 µs", "p99_us", "%.0f"), report.Stat("wrk core %", "wrk_core_pct", "%.0f"),
		report.Stat("other %", "other_core_pct", "%.0f")),
		report.GroupTable(fmt.Sprintf("Task running → its server ready and up in HAProxy (polled every %g ms), scaled 1 → 2 under a light load; "+
			"`first session`: its stot above its count before the scale.", ms(gwHAProxyPoll)),
			scale, "scale", report.Col{Head: "trials", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d failed)", g.Runs, g.Failed) }},
			report.Stat("ready and up, median s", "ready_s", "%.3f"), report.Spread("range s", "ready_s", "%.3f"),
			report.Stat("first session s", "traffic_s", "%.3f")))
	rep.Goals = gatewayGoals(groups, scale)
	rep.Notes = append(rep.Notes, gatewayNotes(rep.Rows, groups, scale)...)
}

// gatewayGoals checks the goals; errors or failed trials fail one.
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

// Thresholds above which gatewayNotes writes a note.
const (
	gwWrkSaturatedPct = 90 // of a core per wrk thread
	gwOtherLoadPct    = 20
	gwStealPct        = 5
)

// gatewayNotes flag figures to read with care (reloads, wrk saturated, load, steal, errors).
func gatewayNotes(rows []report.Row, groups, scale []report.Group) []string {
	var notes []string
	runs := slices.DeleteFunc(report.Of(rows, "run"), func(r report.Row) bool { return !r.OK() })
	if n := len(slices.DeleteFunc(slices.Clone(runs), func(r report.Row) bool { return r.V("reloads") == 0 })); n > 0 { // unknown: reloaded
		notes = append(notes, fmt.Sprintf("pulsed reloaded HAProxy during %d of %d runs (it does whenever a function is added to or removed "+
			"from the engine, anyone's): their latencies may be disturbed", n, len(runs)))
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
	}
	return notes
}
