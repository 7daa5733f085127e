package main

// The watchdog suite's summary: medians over rounds, the table, the goals
// and the notes on numbers to read with care.

import (
	"fmt"

	"github.com/pulsefaas/pulse/bench/report"
)

// Kinds of variant.
const (
	kindHTTP  = "http"  // a server under wrk
	kindFloor = "floor" // spawnloop: no server, no HTTP
)

// watchdogSummary summarises the rows by variant into rep: the variants'
// table, the binaries' sizes, the goals and the notes.
func watchdogSummary(rep *report.Report, variants []variant, built []artifact, sizes map[string]int64) {
	// Each variant's CPU/req over its reference's in the same round: the
	// two ran minutes apart at most, so the spread of these shows how much
	// to trust the ratio of the medians.
	for _, v := range variants {
		for _, r := range report.Of(rep.Rows, "run") {
			if r.Label("variant") != v.Name || !r.OK() {
				continue
			}
			for _, ref := range rep.Rows {
				if ref.Label("variant") == v.Ref && ref.Label("round") == r.Label("round") && ref.OK() {
					r.Put("ref_ratio", round3(r.V("cpu_per_req_us")/ref.V("cpu_per_req_us")))
				}
			}
		}
	}
	groups := report.Summarize(rep.Rows, "run", "variant")
	names := make([]string, len(variants))
	for i, v := range variants {
		names[i] = v.Name
	}
	report.Sort(groups, "variant", names)
	rep.Summary = groups
	refs := map[string]string{}
	for _, v := range variants {
		refs[v.Name] = v.Ref
	}
	mbCol := func(head, metric, anon string) report.Col {
		return report.Col{Head: head, Cell: func(g report.Group) string {
			s := report.Num("%.2f", g.M(metric)*1024/mb)
			if anon != "" && s != "–" {
				s += " (" + report.Num("%.2f", g.M(anon)*1024/mb) + ")"
			}
			return s
		}}
	}
	vsRef := report.Col{Head: "vs ref", Cell: func(g report.Group) string {
		ref, ok := report.Find(groups, "variant", refs[g.Label("variant")])
		if !ok || ref.Runs == 0 {
			return ""
		}
		s := fmt.Sprintf("%.3f× %s", g.M("cpu_per_req_us")/ref.M("cpu_per_req_us"), ref.Label("variant"))
		if lo, hi := g.Min["ref_ratio"], g.Max["ref_ratio"]; g.Runs > 1 {
			s += fmt.Sprintf(" (%.2f–%.2f)", lo, hi)
		}
		return s
	}}
	rep.Tables = append(rep.Tables, report.GroupTable("", groups, "variant",
		report.Stat("rps", "rps", "%.0f"), report.Stat("p50 µs", "p50_us", "%.0f"), report.Stat("p99 µs", "p99_us", "%.0f"),
		report.Stat("CPU/req µs", "cpu_per_req_us", "%.1f"), report.Spread("range µs", "cpu_per_req_us", "%.1f"), vsRef,
		report.Stat("own CPU/req µs", "self_cpu_per_req_us", "%.1f"),
		mbCol("fresh RSS MB (anon)", "rss_fresh_kb", "rss_fresh_anon_kb"), mbCol("idle after traffic RSS MB (anon)", "rss_idle_kb", "rss_idle_anon_kb"),
		mbCol("loaded RSS MB", "rss_loaded_kb", ""), report.Stat("wrk core %", "wrk_core_pct", "%.0f"),
		report.Stat("other %", "other_core_pct", "%.0f"), report.Stat("errors", "errors", "%.0f")))
	sizeTable := report.Table{Header: []string{"binary", "bytes", "MB", "built from"},
		Note: "RSS counts the binary's file-backed pages (shared by every replica of an image on a node) " +
			"plus the private part (RssAnon), shown in brackets in the variant table."}
	for _, a := range built {
		if a.Error != "" {
			sizeTable.Rows = append(sizeTable.Rows, []string{a.Name, "did not build", "", a.Source})
			continue
		}
		sizeTable.Rows = append(sizeTable.Rows, []string{a.Name, fmt.Sprint(a.Bytes), fmt.Sprintf("%.2f", float64(a.Bytes)/mb), a.Source})
	}
	rep.Tables = append(rep.Tables, sizeTable)
	rep.Goals = watchdogGoals(groups, sizes)
	rep.Notes = append(rep.Notes, anomalies(groups, "variant")...)
}

// watchdogGoals are the targets for the watchdog.
func watchdogGoals(groups []report.Group, sizes map[string]int64) []report.Goal {
	g := report.NewGoal
	ratio := func(a, b string) report.Goal {
		return g(a+" CPU/req ≤ "+map[bool]string{true: "1.05", false: "1.1"}[a == "inproc"]+"× "+b, "×",
			map[bool]float64{true: 1.05, false: 1.1}[a == "inproc"]).Ratio(groups, "variant", a, b, "cpu_per_req_us")
	}
	rss := func(name, variant, metric, note string) report.Goal {
		return g(name, "MB", 6).Noted("%s", note).OverScaled(groups, "variant", variant, metric, 1024/mb)
	}
	const upstream = "the watchdog process; the upstream is the function"
	goals := []report.Goal{
		ratio("inproc", "bare"),
		g("http CPU/req ≤ 0.04 ms (watchdog + upstream)", "µs", 40).Noted("OpenFaaS of-watchdog: 130 µs").Over(groups, "variant", "http", "cpu_per_req_us"),
		ratio("fork-cat", "spawnloop-cat"),
		ratio("fork-cecho", "spawnloop-cecho"),
		rss("inproc idle RSS ≤ 6 MB (fresh, health checks only)", "inproc", "rss_fresh_kb", ""),
		rss("inproc idle RSS ≤ 6 MB (after traffic)", "inproc", "rss_idle_kb", ""),
		rss("http watchdog idle RSS ≤ 6 MB (fresh, health checks only)", "http", "rss_fresh_kb", upstream),
		rss("http watchdog idle RSS ≤ 6 MB (after traffic)", "http", "rss_idle_kb", upstream),
		rss("fork watchdog idle RSS ≤ 6 MB (fresh, health checks only)", "fork-cecho", "rss_fresh_kb", ""),
		rss("fork watchdog idle RSS ≤ 6 MB (after traffic)", "fork-cecho", "rss_idle_kb", ""),
	}
	img := g("image ≤ 7 MB (proxy: inproc binary)", "MB", 7).Noted("static stripped watchdog + Go echo; a FROM scratch image adds only metadata")
	if n, ok := sizes["inproc"]; ok {
		img = img.Check(float64(n) / mb)
	} else {
		img = img.Skipped("inproc did not build")
	}
	return append(goals, img)
}

// Thresholds above which anomalies writes a note.
const (
	wrkSaturatedPct = 90 // wrk's core: throughput and latency are wrk's limit
	otherLoadPct    = 20 // foreign CPU during the window
	stealPct        = 5  // hypervisor steal
	cpuSpreadFrac   = 0.10
)

// anomalies returns notes on numbers to read with care, for groups named
// by their label k: a saturated wrk, other load, steal, a wide CPU/req
// spread, and every flag.
func anomalies(groups []report.Group, k string) []string {
	var notes []string
	for _, g := range groups {
		if g.Runs == 0 {
			continue
		}
		name := g.Label(k)
		if v := g.M("wrk_core_pct"); v >= wrkSaturatedPct {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f%% of a core: its rps and latency are bounded by the load generator; compare CPU/req", name, v))
		}
		if v := g.M("other_core_pct"); v >= otherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f%% of a core during the runs (median)", name, v))
		}
		if v := g.M("steal_core_pct"); v >= stealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f%% of a core (median)", name, v))
		}
		if lo, hi, m := g.Min["cpu_per_req_us"], g.Max["cpu_per_req_us"], g.M("cpu_per_req_us"); g.Runs > 1 && hi-lo > cpuSpreadFrac*m {
			notes = append(notes, fmt.Sprintf("%s: CPU/req ranged %.1f–%.1f µs across rounds (median %.1f)", name, lo, hi, m))
		}
		for _, f := range g.Flags {
			notes = append(notes, name+": "+f)
		}
	}
	return notes
}
