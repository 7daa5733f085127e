package main

import (
	"fmt"
	"slices"
	"strings"
)

// Health intervals of the scale trials.
const (
	defaultIntervalMS = 1000 // DeployOptions.HealthInterval 0: function.DefaultHealthInterval
	fastIntervalMS    = 250
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

// functionsGoals checks the summaries against the goals. A goal over
// a template or an interval with failed trials fails.
func functionsGoals(s functionsSummary) []goal {
	var out []goal
	for _, ig := range imageGoals {
		g := goal{Name: ig.name, Unit: "MB", Limit: ig.limitMB}
		i := slices.IndexFunc(s.Builds, func(b buildSummary) bool { return b.Template == ig.template })
		switch {
		case i < 0:
			g.Status, g.Note = skip, ig.template+" was not built in this run"
		case s.Builds[i].Trials == 0:
			g.Status, g.Note = fail, ig.template+": every build failed"
		case s.Builds[i].Failed > 0:
			g.Value = round3(float64(s.Builds[i].ImageBytes) / mb)
			g.Status, g.Note = fail, ig.template+" had failed builds: "+s.Builds[i].Flags[0]
		default:
			b := s.Builds[i]
			g.Value = round3(float64(b.ImageBytes) / mb)
			g.Status = verdict(g.Value, g.Limit)
			g.Note = fmt.Sprintf("function %.2f MB", float64(b.FunctionBytes)/mb)
			if b.WatchdogBytes > 0 {
				g.Note += fmt.Sprintf(" + watchdog %.2f MB", float64(b.WatchdogBytes)/mb)
			} else {
				g.Note += ", the watchdog linked in"
			}
		}
		out = append(out, g)
	}

	g := goal{Name: scaleGoalName, Unit: "s", Limit: 1}
	i := slices.IndexFunc(s.Scale, func(x scaleSummary) bool { return x.IntervalMS == defaultIntervalMS })
	switch {
	case i < 0:
		g.Status, g.Note = skip, "the scale stage did not run with the default interval"
	case s.Scale[i].Trials == 0:
		g.Status, g.Note = fail, "every trial failed: "+s.Scale[i].Flags[0]
	default:
		x := s.Scale[i]
		g.Value = round3(x.ReadyS)
		g.Status = verdict(g.Value, g.Limit)
		g.Note = "see the notes"
		if j := slices.IndexFunc(s.Scale, func(y scaleSummary) bool { return y.IntervalMS == fastIntervalMS && y.Trials > 0 }); j >= 0 {
			g.Note = fmt.Sprintf("with a %s health interval: %.2f s median; see the notes", s.Scale[j].Interval, s.Scale[j].ReadyS)
		}
		if x.Failed > 0 {
			g.Status, g.Note = fail, fmt.Sprintf("%d of %d trials failed: %s", x.Failed, x.Failed+x.Trials, x.Flags[0])
		}
	}
	return append(out, g)
}

// functionsNotes are the notes that follow from the summaries: the health
// checks' cost at scale, failures.
func functionsNotes(s functionsSummary, c functionsConfig) []string {
	var notes []string
	var fast []string
	for _, x := range s.Scale {
		if x.IntervalMS != defaultIntervalMS && x.Trials > 0 {
			fast = append(fast, fmt.Sprintf("; with a %s interval the new replica answered after %.2f s (median; p90 %.2f s)", x.Interval, x.ReadyS, x.ReadyP90S))
		}
	}
	why := startIntervalNote
	if c.StartIntervalMS > 0 {
		why = fmt.Sprintf("the services had a health start interval of %s: a new replica is probed that often until it is healthy", msLabel(c.StartIntervalMS))
	}
	for _, x := range s.Scale {
		if x.IntervalMS == defaultIntervalMS && x.Trials > 0 {
			notes = append(notes, fmt.Sprintf("scale +1: %s. At the default 1 s interval the new container started %s s after the scale, its first probe passed at %s s "+
				"and Swarm.Endpoints listed it at %.2f s", why, secCell(x.ContainerStartedS), secCell(x.FirstProbeS), x.EndpointS)+strings.Join(fast, ""))
		}
	}
	noisy := slices.ContainsFunc(s.Idle, func(x idleSummary) bool { return x.HostNoisy })
	var left, all int
	for _, x := range s.Idle {
		all += x.Windows
		if !x.HostNoisy {
			left += x.Windows - x.HostWindows
		}
		if x.Replicas == 0 || x.ProbesPerS == 0 {
			continue
		}
		iv := msLabel(x.IntervalMS)
		host := fmt.Sprintf("the host's busy CPU: %.1f ms per probe, %.2f %% of a core per idle replica (100 replicas: %.2f cores)",
			x.CPUPerProbeMS, x.CorePctPerReplica, x.CorePctPerReplica)
		engine := fmt.Sprintf("the engine's part: %.1f ms per probe, %.2f %% of a core per idle replica (100 replicas: %.2f cores)",
			x.EngineCPUPerProbeMS, x.EngineCorePctPerReplica, x.EngineCorePctPerReplica)
		if noisy {
			notes = append(notes, fmt.Sprintf("health checks every %s: %s; %s, noisy in this run (see below)", iv, engine, host))
		} else {
			notes = append(notes, fmt.Sprintf("health checks every %s: %s; %s", iv, host, engine))
		}
		if x.ProbePeriodNominal {
			notes = append(notes, fmt.Sprintf("health checks every %s: no health log to read, the probe rate is the nominal interval's", iv))
		}
		if x.Failed > 0 {
			notes = append(notes, fmt.Sprintf("idle windows with %d replicas at %s: %d failed", x.Replicas, iv, x.Failed))
		}
	}
	if left > 0 {
		notes = append(notes, fmt.Sprintf("health-check CPU: %d of %d idle windows are left out of the host's figures: processes other than the engine's part "+
			"used over %d %% of a core more in them than in the quietest window (all windows are in the JSON)", left, all, otherSpreadPct))
	}
	if noisy {
		notes = append(notes, "health-check CPU: in every window of some configuration other processes were busy, so its host figures carry that noise; "+
			"the engine's part much less (another client's calls to dockerd still reach it)")
	}
	for _, d := range s.Deploys {
		for _, f := range d.Flags {
			notes = append(notes, "deploy "+d.Template+": "+f)
		}
	}
	for _, x := range s.Scale {
		for _, f := range x.Flags {
			notes = append(notes, "scale +1 at "+x.Interval+": "+f)
		}
	}
	for _, b := range s.Builds {
		if b.Trials > 0 && !b.SameID {
			notes = append(notes, "build "+b.Template+": the builds gave different image IDs (the same source should give the same image)")
		}
		for _, f := range b.Flags {
			notes = append(notes, "build "+b.Template+": "+f)
		}
	}
	return notes
}
