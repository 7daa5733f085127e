package main

// The functions suite's summary: its tables, goals and notes.

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/function"
)

// imageGoals are the image size limits, per template.
var imageGoals = []struct {
	template, name string
	limitMB        float64
}{
	{"go", "image ≤ 7 MB: Go hello (go template)", 7},
	{"c", "image ≤ 7 MB: C function + watchdog (c template)", 7},
	{"cpp", "image ≤ 8 MB: C++ params echo + watchdog (cpp template)", 8},
}

// scaleGoalName is the issue's +1 scale goal.
const scaleGoalName = "scale +1 → new replica answers ≤ 1 s (median, default health interval 1 s)"

// startIntervalNote explains why the health interval bounds a start.
const startIntervalNote = "Docker 20.10 (API 1.41) has no health start interval, so a new task's port is only visible " +
	"(the task running) once its first health probe has passed, one interval after its container started"

// otherSpreadPct is how much busier (% of a core) other processes may be
// than in the quietest idle window for a window to count in the host's figures.
const otherSpreadPct = 10

// functionsSummary sums rep's rows up into its summary, tables, goals and
// notes; startInterval is the services' health start interval.
func functionsSummary(rep *report.Report, startInterval time.Duration) {
	hostWindows(rep.Rows)
	var flags []string
	sum := func(kind string, by ...string) []report.Group {
		groups := report.Summarize(rep.Rows, kind, by...)
		for _, g := range groups {
			g.Labels["kind"] = kind
			for _, f := range g.Flags {
				flags = append(flags, kind+" "+g.Label(by[0])+": "+f)
			}
		}
		return groups
	}
	builds, images, deploys := sum("build", "template"), sum("image", "template"), sum("deploy", "template")
	scales, idle := sum("scale", "interval"), sum("idle", "interval", "replicas")
	report.Sort(idle, "replicas", []string{"0"})
	rep.Summary = slices.Concat(builds, images, deploys, scales, idle)
	rep.Tables = functionsTables(builds, deploys, scales, idle)
	rep.Goals = functionsGoals(builds, scales)
	rep.Notes = append(append(rep.Notes, functionsNotes(builds, images, scales, idle, startInterval)...), flags...)
}

// functionsTables are the suite's tables: builds, scales, deploys, idle CPU.
func functionsTables(builds, deploys, scales, idle []report.Group) []report.Table {
	trials := report.Col{Head: "trials", Cell: func(g report.Group) string {
		if g.Failed > 0 {
			return fmt.Sprintf("%d + %d failed", g.Runs, g.Failed)
		}
		return fmt.Sprint(g.Runs)
	}}
	replica := []report.Col{report.Stat("container started s", "container_started_s", "%.2f"),
		report.Stat("first probe passed s", "first_probe_s", "%.2f"), report.Stat("in Endpoints s", "endpoint_s", "%.2f"), trials}
	base, _ := report.Find(idle, "replicas", "0")
	cost := func(head, metric, format string, perReplica bool) report.Col {
		return report.Col{Head: head, Cell: func(g report.Group) string {
			perProbe, pct := probeCost(g, base, metric)
			if perReplica {
				perProbe = pct
			}
			return report.Num(format, perProbe)
		}}
	}
	return []report.Table{
		report.GroupTable("Build per template: cold into an empty Pulse cache dir, warm the same build again; MB as Build counts the image's files.",
			builds, "template", report.Stat("cold s", "cold_s", "%.2f"), report.Spread("cold range s", "cold_s", "%.2f"),
			report.Stat("warm s", "warm_s", "%.2f"), report.Scaled("image MB", "image_bytes", "%.2f", 1/mb),
			report.Scaled("function MB", "function_bytes", "%.2f", 1/mb),
			report.Scaled("watchdog MB", "watchdog_bytes", "%.2f", 1/mb),
			trials),
		report.GroupTable("Scale +1 → the new replica answers GET /_/health (go function): seconds from just before `Swarm.Scale` 1 → 2.",
			scales, "interval", slices.Concat([]report.Col{report.Stat("new replica 200 s", "ready_s", "%.2f"),
				{Head: "p90 s", Cell: func(g report.Group) string { return report.Num("%.2f", report.Percentile(g.Values("ready_s"), 90)) }},
				report.Spread("range s", "ready_s", "%.2f"), report.Stat("task created s", "task_created_s", "%.3f")}, replica)...),
		report.GroupTable("Deploy → first 200 to a POST: seconds from just before `Swarm.Deploy` of a fresh service (image loaded).",
			deploys, "template", slices.Concat([]report.Col{report.Stat("first 200 s", "ready_s", "%.2f"),
				report.Spread("range s", "ready_s", "%.2f"), report.Stat("Deploy returned s", "call_s", "%.3f")}, replica)...),
		report.GroupTable("Health-check CPU of idle replicas, % of a core, median of the windows; per probe and per replica over none.",
			idle, "replicas", report.LabelCol("health interval", "interval"), report.Stat("host busy %", "host_busy_pct", "%.1f"),
			report.Stat("engine's part %", "engine_core_pct", "%.1f"),
			report.Stat("probe period ms", "probe_period_ms", "%.0f"),
			cost("CPU per probe ms", "host_busy_pct", "%.1f", false), cost("engine's CPU per probe ms", "engine_core_pct", "%.1f", false),
			cost("% of a core per replica", "host_busy_pct", "%.2f", true),
			report.Col{Head: "windows (host)", Cell: func(g report.Group) string {
				return fmt.Sprintf("%d (%d)", g.Runs, len(g.Values("host_busy_pct")))
			}}),
	}
}

// functionsGoals checks the image sizes over the builds and the +1 scale
// over the default interval's trials; failed trials fail a goal.
func functionsGoals(builds, scales []report.Group) []report.Goal {
	var goals []report.Goal
	for _, ig := range imageGoals {
		g := report.NewGoal(ig.name, "MB", ig.limitMB)
		if b, ok := report.Find(builds, "template", ig.template); ok && b.M("watchdog_bytes") > 0 {
			g = g.Noted("function %.2f MB + watchdog %.2f MB", b.M("function_bytes")/mb, b.M("watchdog_bytes")/mb)
		} else if ok {
			g = g.Noted("function %.2f MB, the watchdog linked in", b.M("function_bytes")/mb)
		}
		goals = append(goals, g.OverScaled(builds, "template", ig.template, "image_bytes", 1/mb))
	}
	g := report.NewGoal(scaleGoalName, "s", 1).Noted("see the notes")
	if f, ok := report.Find(scales, "interval", fastInterval.String()); ok && f.Runs > 0 {
		g = g.Noted("with a %s health interval: %.2f s median; see the notes", fastInterval, f.M("ready_s"))
	}
	return append(goals, g.Over(scales, "interval", function.DefaultHealthInterval.String(), "ready_s"))
}

// functionsNotes explain the scale goal's figure and point out what to read
// with care: noisy or nominal health-check figures, differing images.
func functionsNotes(builds, images, scales, idle []report.Group, startInterval time.Duration) []string {
	var notes []string
	if s, ok := report.Find(scales, "interval", function.DefaultHealthInterval.String()); ok && s.Runs > 0 {
		why := startIntervalNote
		if startInterval > 0 {
			why = fmt.Sprintf("the services had a health start interval of %s: a new replica is probed that often until it is healthy", startInterval)
		}
		notes = append(notes, fmt.Sprintf("scale +1: %s. At the default 1 s interval the new container started %s s after the scale, its first probe "+
			"passed at %s s and Swarm.Endpoints listed it at %s s", why, report.Num("%.2f", s.M("container_started_s")),
			report.Num("%.2f", s.M("first_probe_s")), report.Num("%.2f", s.M("endpoint_s"))))
	}
	var all, in int
	for _, g := range idle {
		all, in = all+g.Runs, in+len(g.Values("host_busy_pct"))
		if g.M("host_noisy") == 1 {
			notes = append(notes, "health checks every "+g.Label("interval")+": other processes were busy in every window, so the host's figures carry that noise; the engine's part much less")
		}
		if _, nominal := probePeriod(g); nominal {
			notes = append(notes, "health checks every "+g.Label("interval")+": no health log to read, the probe rate is the nominal interval's")
		}
	}
	if in < all {
		notes = append(notes, fmt.Sprintf("health-check CPU: %d of %d idle windows are left out of the host's figures: other processes used over %d %% "+
			"of a core more in them than in the quietest window (all windows are in the JSON)", all-in, all, otherSpreadPct))
	}
	for _, b := range builds {
		if b.Runs > 0 && !sameImage(b) {
			notes = append(notes, "build "+b.Label("template")+": the builds gave different image IDs (the same source should give the same image)")
		}
		if img, ok := report.Find(images, "template", b.Label("template")); ok && img.Runs > 0 && b.Runs > 0 && img.M("engine_bytes") != b.M("image_bytes") {
			notes = append(notes, fmt.Sprintf("image %s: the engine counts %.0f bytes, Build %.0f", b.Label("template"), img.M("engine_bytes"), b.M("image_bytes")))
		}
	}
	return notes
}

// hostWindows gives the idle windows that count in the host's figures a
// host_busy_pct (rows share their Values maps with rep.Rows).
func hostWindows(rows []report.Row) {
	idle := slices.DeleteFunc(report.Of(rows, "idle"), func(r report.Row) bool { return !r.OK() })
	quietest := math.Inf(1)
	for _, r := range idle {
		if v := r.V("other_core_pct"); v < quietest {
			quietest = v
		}
	}
	// Over otherSpreadPct above the quietest is a neighbour's burst, not the
	// probes; a configuration with no window left takes them all, noisy.
	keys, byKey := report.GroupBy(idle, func(r report.Row) string { return r.Label("interval") })
	for _, k := range keys {
		in := slices.DeleteFunc(slices.Clone(byKey[k]), func(r report.Row) bool { return !(r.V("other_core_pct") <= quietest+otherSpreadPct) })
		noisy := len(in) == 0
		if noisy {
			in = byKey[k]
		}
		for _, r := range in {
			r.Put("host_busy_pct", r.V("busy_core_pct"))
			if noisy {
				r.Put("host_noisy", 1)
			}
		}
	}
}

// probePeriod is the median spacing of g's probes, or the nominal interval
// when the health logs had none; NaN for the baseline.
func probePeriod(g report.Group) (p float64, nominal bool) {
	if p := g.M("probe_period_ms"); !math.IsNaN(p) {
		return p, false
	}
	d, err := time.ParseDuration(g.Label("interval"))
	if err != nil {
		return math.NaN(), false
	}
	return ms(d), true
}

// probeCost is what g's probes cost by metric (% of a core) over base's: CPU
// ms per probe and % of a core per replica; NaN without a baseline.
func probeCost(g, base report.Group, metric string) (perProbeMS, perReplicaPct float64) {
	n, _ := strconv.Atoi(g.Label("replicas"))
	period, _ := probePeriod(g)
	extra := g.M(metric) - base.M(metric)
	return extra * 10 / (float64(n) * 1000 / period), extra / float64(n) // % / 100 × 1000 ms ÷ probes/s
}

// sameImage says the builds in g that did not fail gave one image ID.
func sameImage(g report.Group) bool {
	ids := map[string]bool{}
	for _, r := range g.Rows {
		if r.OK() {
			ids[r.Label("image")] = true
		}
	}
	return len(ids) == 1
}
