package main

// The functions suite's summary: its tables, goals and notes.

import (
	"fmt"
	"slices"
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

// functionsSummary sums the rows up; startInterval is the services' health start interval.
func functionsSummary(rep *report.Report, startInterval time.Duration) {
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
	builds, deploys, scales := sum("build", "template"), sum("deploy", "template"), sum("scale", "interval")
	rep.Summary = slices.Concat(builds, deploys, scales)
	trials := report.Col{Head: "trials", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d failed)", g.Runs, g.Failed) }}
	rep.Tables = []report.Table{
		report.GroupTable("Build per template: cold into an empty Pulse cache dir, warm the same build again; MB as Build counts the image's files.",
			builds, "template", report.Stat("cold s", "cold_s", "%.2f"), report.Stat("warm s", "warm_s", "%.2f"),
			report.Scaled("image MB", "image_bytes", "%.2f", 1/mb), report.Scaled("function MB", "function_bytes", "%.2f", 1/mb),
			report.Scaled("watchdog MB", "watchdog_bytes", "%.2f", 1/mb), trials),
		report.GroupTable("Scale +1 → the new replica answers GET /_/health (go function): seconds from just before `Swarm.Scale` 1 → 2.",
			scales, "interval", report.Stat("new replica 200 s", "ready_s", "%.2f"), report.Spread("range s", "ready_s", "%.2f"), trials),
		report.GroupTable("Deploy → first 200 to a POST: seconds from just before `Swarm.Deploy` of a fresh service (image loaded).",
			deploys, "template", report.Stat("first 200 s", "ready_s", "%.2f"), report.Spread("range s", "ready_s", "%.2f"), trials),
	}
	rep.Goals = functionsGoals(builds, scales)
	rep.Notes = append(append(rep.Notes, functionsNotes(scales, startInterval)...), flags...)
}

// functionsGoals checks the image sizes and the +1 scale; failed trials fail a goal.
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

// functionsNotes explain what bounds a new replica's start (the scale goal).
func functionsNotes(scales []report.Group, startInterval time.Duration) []string {
	s, ok := report.Find(scales, "interval", function.DefaultHealthInterval.String())
	if !ok || s.Runs == 0 {
		return nil
	}
	if startInterval > 0 {
		return []string{fmt.Sprintf("scale +1: the services had a health start interval of %s: a new replica is probed that often until it is healthy", startInterval)}
	}
	return []string{"scale +1: " + startIntervalNote}
}
