package main

// The functions suite's tables and their rendering, for a terminal and the
// README.

import (
	"fmt"
	"math"
	"strings"
)

// Table headers of the functions suite.
var (
	buildHeader = []string{"template", "cold build s (range)", "warm build s (range)", "image MB", "function MB", "watchdog MB", "same image ID", "builds", "failed"}
	scaleHeader = []string{"health interval", "new replica 200, median s", "p90 s", "range s", "task created s", "container started s",
		"first probe passed s", "in Endpoints s", "trials", "failed"}
	deployHeader = []string{"template", "deploy → first 200, median s", "range s", "Deploy returned s", "container started s",
		"first probe passed s", "in Endpoints s", "trials", "failed"}
	idleHeader = []string{"replicas", "health interval", "host busy, % of a core", "engine's part", "host over baseline", "probe period ms", "probe run ms",
		"probes/s", "CPU per probe ms", "engine's CPU per probe ms", "% of a core per replica", "windows"}
)

func secRange(lo, hi float64) string { return fmt.Sprintf("%.2f–%.2f", lo, hi) }

// secCell formats seconds: "–" for none, three decimals under 0.1 s.
func secCell(v float64) string {
	switch {
	case v == 0:
		return "–"
	case math.Abs(v) < 0.1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// failedRow is the row of a template or interval whose every trial failed
// (what says so): trials 0 and failed last, in a table of n columns.
func failedRow(n int, label, what string, failed int) []string {
	row := make([]string, n)
	row[0], row[1], row[n-2], row[n-1] = label, what, "0", fmt.Sprint(failed)
	return row
}

func buildRows(sums []buildSummary) [][]string {
	var rows [][]string
	for _, s := range sums {
		if s.Trials == 0 {
			rows = append(rows, failedRow(len(buildHeader), s.Template, "every build failed", s.Failed))
			continue
		}
		same, wd := "yes", "linked in"
		if !s.SameID {
			same = "no"
		}
		if s.WatchdogBytes > 0 {
			wd = fmt.Sprintf("%.2f", float64(s.WatchdogBytes)/mb)
		}
		rows = append(rows, []string{
			s.Template,
			fmt.Sprintf("%.2f (%s)", s.ColdS, secRange(s.ColdMinS, s.ColdMaxS)),
			fmt.Sprintf("%.2f (%s)", s.WarmS, secRange(s.WarmMinS, s.WarmMaxS)),
			fmt.Sprintf("%.2f", float64(s.ImageBytes)/mb),
			fmt.Sprintf("%.2f", float64(s.FunctionBytes)/mb),
			wd, same, fmt.Sprint(s.Trials), fmt.Sprint(s.Failed),
		})
	}
	return rows
}

// msLabel writes a duration in ms as the tables do: "250 ms", "1 s".
func msLabel(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%g s", v/1000)
	}
	return fmt.Sprintf("%g ms", v)
}

// intervalLabel names a health interval for the tables.
func intervalLabel(s scaleSummary) string {
	if s.IntervalMS == defaultIntervalMS {
		return s.Interval + " (default)"
	}
	return s.Interval
}

func scaleRows(sums []scaleSummary) [][]string {
	var rows [][]string
	for _, s := range sums {
		if s.Trials == 0 {
			rows = append(rows, failedRow(len(scaleHeader), intervalLabel(s), "every trial failed", s.Failed))
			continue
		}
		rows = append(rows, []string{
			intervalLabel(s), fmt.Sprintf("%.2f", s.ReadyS), fmt.Sprintf("%.2f", s.ReadyP90S), secRange(s.ReadyMinS, s.ReadyMaxS),
			secCell(s.TaskCreatedS), secCell(s.ContainerStartedS), secCell(s.FirstProbeS), fmt.Sprintf("%.2f", s.EndpointS),
			fmt.Sprint(s.Trials), fmt.Sprint(s.Failed),
		})
	}
	return rows
}

func deployRows(sums []deploySummary) [][]string {
	var rows [][]string
	for _, s := range sums {
		if s.Trials == 0 {
			rows = append(rows, failedRow(len(deployHeader), s.Template, "every trial failed", s.Failed))
			continue
		}
		rows = append(rows, []string{
			s.Template, fmt.Sprintf("%.2f", s.FirstOKS), secRange(s.MinS, s.MaxS), secCell(s.DeployCallS),
			secCell(s.ContainerStartedS), secCell(s.FirstProbeS), fmt.Sprintf("%.2f", s.EndpointS),
			fmt.Sprint(s.Trials), fmt.Sprint(s.Failed),
		})
	}
	return rows
}

func idleRows(sums []idleSummary) [][]string {
	var rows [][]string
	for _, s := range sums {
		windows := fmt.Sprint(s.Windows)
		switch {
		case s.HostNoisy:
			windows += " (noisy)"
		case s.HostWindows < s.Windows:
			windows += fmt.Sprintf(" (host: %d)", s.HostWindows)
		}
		if s.Failed > 0 {
			windows += fmt.Sprintf(" (%d failed)", s.Failed)
		}
		if s.Replicas == 0 {
			rows = append(rows, []string{"0 (baseline)", "–", fmt.Sprintf("%.1f", s.BusyCorePct), fmt.Sprintf("%.1f", s.EngineCorePct), "", "", "", "", "", "", "", windows})
			continue
		}
		if s.Windows == 0 {
			rows = append(rows, []string{fmt.Sprint(s.Replicas), msLabel(s.IntervalMS), "every window failed", "", "", "", "", "", "", "", "", windows})
			continue
		}
		period := fmt.Sprintf("%.0f", s.ProbePeriodMS)
		if s.ProbePeriodNominal {
			period += " (nominal)"
		}
		probeRun := "–"
		if s.ProbeDurationMS > 0 {
			probeRun = fmt.Sprintf("%.0f", s.ProbeDurationMS)
		}
		rows = append(rows, []string{
			fmt.Sprint(s.Replicas), msLabel(s.IntervalMS),
			fmt.Sprintf("%.1f", s.BusyCorePct), fmt.Sprintf("%.1f", s.EngineCorePct), fmt.Sprintf("%+.1f", s.ExtraCorePct),
			period, probeRun, fmt.Sprintf("%.2f", s.ProbesPerS),
			fmt.Sprintf("%.1f", s.CPUPerProbeMS), fmt.Sprintf("%.1f", s.EngineCPUPerProbeMS), fmt.Sprintf("%.2f", s.CorePctPerReplica), windows,
		})
	}
	return rows
}

// functionsSetup is one line on where and how the numbers were measured.
func functionsSetup(r functionsReport) string {
	m, e, c := r.Machine, r.Engine, r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "%d CPUs (%s), kernel %s, %s, gcc %s, g++ %s, Docker Engine %s (API %s, %s storage", m.CPUs, m.CPUModel, m.Kernel, m.Go, m.GCC, m.GXX, e.Version, e.APIVersion, e.StorageDriver)
	if e.CgroupVersion != "" {
		fmt.Fprintf(&b, ", cgroup v%s", e.CgroupVersion)
	}
	fmt.Fprintf(&b, "), %d-node swarm, clock %g Hz; ", e.Nodes, m.ClockTicks)
	fmt.Fprintf(&b, "%d build and deploy trial(s) per template, %d scale trial(s) per health interval, %g s idle windows with %d replicas, %d-byte body",
		c.Trials, c.ScaleTrials, c.IdleWindowS, c.IdleReplicas, c.BodyBytes)
	if n := len(e.OtherServices); n > 0 {
		fmt.Fprintf(&b, "; %d other service(s) on the engine throughout (%s)", n, strings.Join(e.OtherServices, ", "))
	}
	return b.String()
}

// renderFunctionsText renders the report for a terminal.
func renderFunctionsText(r functionsReport) string { return renderFunctions(r, false, "") }

// renderFunctionsMarkdown renders the README's functions section; jsonPath
// is the results file relative to the README.
func renderFunctionsMarkdown(r functionsReport, jsonPath string) string {
	return renderFunctions(r, true, jsonPath)
}

func renderFunctions(r functionsReport, md bool, jsonPath string) string {
	b := newReportDoc(md, "functions", " (medians over trials)", r.Started, jsonPath, functionsSetup(r))
	b.section("Build and image size per template: `function.Build` of the scaffolded template; cold is an empty Pulse cache dir "+
		"(the SDK written, the watchdog compiled), with Go's own build cache as it was ("+r.Engine.GoCache+", not emptied); "+
		"warm is the same build again. Image MB is the engine's size of the loaded image.",
		buildHeader, buildRows(r.Summary.Builds))
	b.section("Scale +1 → the new replica answers: seconds from just before `Swarm.Scale` (1 → 2) to its `GET /_/health` answering 200, "+
		"the go function; the task, container and probe columns are the engine's timestamps of the new replica, "+
		"`in Endpoints` is when `Swarm.Endpoints`, polled every 20 ms, first listed it.",
		scaleHeader, scaleRows(r.Summary.Scale))
	b.section(fmt.Sprintf("Deploy → first 200: seconds from just before `Swarm.Deploy` of a fresh service (image already loaded, "+
		"default health interval) to the first 200 to a POST with a %d-byte body.", r.Config.BodyBytes),
		deployHeader, deployRows(r.Summary.Deploys))
	b.section(fmt.Sprintf("Health-check CPU: the host's busy CPU (/proc/stat, all processes) over %g s with nothing calling the functions, "+
		"mean of the windows; the engine's part is dockerd's and containerd's own CPU and the shims of these replicas with everything under them "+
		"(/proc/<pid>/stat): what the replicas cost the engine. "+
		"What %d replicas of the go function add over none is put down to their exec health probes (period and run time from the containers' health logs). "+
		"The host's figures leave out windows where other processes were over 10 %% of a core busier than in the quietest one (windows: `host: n`).",
		r.Config.IdleWindowS, r.Config.IdleReplicas),
		idleHeader, idleRows(r.Summary.Idle))
	b.goals(r.Goals)
	b.notes(r.Notes)
	return b.String()
}
