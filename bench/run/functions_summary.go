package main

import (
	"fmt"
	"math"
	"slices"
)

// summarize sums the trials up, checks the goals and adds the notes that
// follow.
func (r *functionsReport) summarize() {
	r.Summary = functionsSummary{
		Builds:  summarizeBuilds(functionTemplates, r.Builds, r.Images),
		Scale:   summarizeScale(r.Scales),
		Deploys: summarizeDeploys(functionTemplates, r.Deploys),
		Idle:    summarizeIdle(r.Idle),
	}
	r.Goals = functionsGoals(r.Summary)
	r.Notes = append(r.Notes, functionsNotes(r.Summary, r.Config)...)
}

// medianTimes is the median of each of a group's replica times; the
// engine's records are left out where it gave none (0).
func medianTimes(ts []replicaTimes) replicaTimes {
	med := func(f func(replicaTimes) float64) float64 { return medianOr(0, positive(values(ts, f))) }
	return replicaTimes{
		TaskCreatedS:      med(func(t replicaTimes) float64 { return t.TaskCreatedS }),
		ContainerStartedS: med(func(t replicaTimes) float64 { return t.ContainerStartedS }),
		FirstProbeS:       med(func(t replicaTimes) float64 { return t.FirstProbeS }),
		EndpointS:         median(values(ts, func(t replicaTimes) float64 { return t.EndpointS })),
	}
}

// summarizeBuilds summarizes the builds per template, in templates' order;
// templates with no build are left out. images are the templates' loaded
// images (their engine sizes).
func summarizeBuilds(templates []string, trials []buildTrial, images []imageInfo) []buildSummary {
	_, groups := groupBy(trials, func(b buildTrial) string { return b.Template })
	var out []buildSummary
	for _, tmpl := range templates {
		if len(groups[tmpl]) == 0 {
			continue
		}
		s := buildSummary{Template: tmpl}
		var cold, warm []float64
		ids := map[string]bool{}
		for _, b := range groups[tmpl] {
			if !tally(fmt.Sprintf("trial %d (%s)", b.Trial, b.Cache), b.Error, 300, &s.Trials, &s.Failed, &s.Flags) {
				continue
			}
			ids[b.ImageID] = true
			s.ImageBytes, s.FunctionBytes, s.WatchdogBytes = b.ImageBytes, b.FunctionBytes, b.ImageBytes-b.FunctionBytes
			if b.Cache == "cold" {
				cold = append(cold, b.Seconds)
			} else {
				warm = append(warm, b.Seconds)
			}
		}
		if len(cold) > 0 {
			s.ColdS, s.ColdMinS, s.ColdMaxS = median(cold), slices.Min(cold), slices.Max(cold)
		}
		if len(warm) > 0 {
			s.WarmS, s.WarmMinS, s.WarmMaxS = median(warm), slices.Min(warm), slices.Max(warm)
		}
		s.SameID = len(ids) == 1
		for _, img := range images {
			if img.Template == tmpl && img.Error == "" && img.EngineBytes > 0 {
				s.ImageBytes, s.FunctionBytes, s.WatchdogBytes = img.EngineBytes, img.FunctionBytes, img.WatchdogBytes
			}
		}
		out = append(out, s)
	}
	return out
}

// summarizeScale summarizes the +1 scale trials per health interval, in the
// order the intervals first ran.
func summarizeScale(trials []scaleTrial) []scaleSummary {
	intervals, groups := groupBy(trials, func(t scaleTrial) string { return t.Interval })
	var out []scaleSummary
	for _, iv := range intervals {
		s := scaleSummary{Interval: iv, IntervalMS: groups[iv][len(groups[iv])-1].IntervalMS}
		var ready []float64
		var times []replicaTimes
		for _, t := range groups[iv] {
			if tally(fmt.Sprintf("trial %d", t.Trial), t.Error, 300, &s.Trials, &s.Failed, &s.Flags) {
				ready, times = append(ready, t.ReadyS), append(times, t.replicaTimes)
			}
		}
		if s.Trials > 0 {
			s.ReadyS, s.ReadyP90S = median(ready), percentile(ready, 90)
			s.ReadyMinS, s.ReadyMaxS = slices.Min(ready), slices.Max(ready)
			m := medianTimes(times)
			s.EndpointS, s.TaskCreatedS, s.ContainerStartedS, s.FirstProbeS = m.EndpointS, m.TaskCreatedS, m.ContainerStartedS, m.FirstProbeS
		}
		out = append(out, s)
	}
	return out
}

// summarizeDeploys summarizes the deploy trials per template, in templates'
// order; templates with no trial are left out.
func summarizeDeploys(templates []string, trials []deployTrial) []deploySummary {
	_, groups := groupBy(trials, func(t deployTrial) string { return t.Template })
	var out []deploySummary
	for _, tmpl := range templates {
		if len(groups[tmpl]) == 0 {
			continue
		}
		s := deploySummary{Template: tmpl}
		var ok, call []float64
		var times []replicaTimes
		for _, t := range groups[tmpl] {
			if tally(fmt.Sprintf("trial %d", t.Trial), t.Error, 300, &s.Trials, &s.Failed, &s.Flags) {
				ok, call, times = append(ok, t.FirstOKS), append(call, t.DeployCallS), append(times, t.replicaTimes)
			}
		}
		if s.Trials > 0 {
			s.FirstOKS, s.MinS, s.MaxS, s.DeployCallS = median(ok), slices.Min(ok), slices.Max(ok), median(call)
			m := medianTimes(times)
			s.EndpointS, s.ContainerStartedS, s.FirstProbeS = m.EndpointS, m.ContainerStartedS, m.FirstProbeS
		}
		out = append(out, s)
	}
	return out
}

// otherSpreadPct is how much busier than in the quietest idle window other
// processes may be (in % of a core) for a window to count in the host's
// figures.
const otherSpreadPct = 10

// summarizeIdle summarizes the idle windows per configuration (replicas and
// health interval), the 0-replica baseline first. Each configuration's CPU
// over the baseline is put down to its health probes: the replicas
// themselves are idle.
func summarizeIdle(windows []idleWindow) []idleSummary {
	type key struct {
		replicas int
		interval float64
	}
	keys, groups := groupBy(windows, func(w idleWindow) key { return key{w.Replicas, w.IntervalMS} })
	// The baseline (no replica) first.
	slices.SortStableFunc(keys, func(a, b key) int { return min(a.replicas, 1) - min(b.replicas, 1) })
	// The host's figures leave out windows where other processes were
	// busier than in the quietest window by more than otherSpreadPct: a
	// neighbour's burst, not the probes.
	quietest := math.Inf(1)
	for _, w := range windows {
		if w.Error == "" {
			quietest = min(quietest, w.OtherCorePct)
		}
	}
	baseline, engineBaseline := math.NaN(), math.NaN()
	var out []idleSummary
	for _, k := range keys {
		s := idleSummary{Replicas: k.replicas, IntervalMS: k.interval}
		var busy, engine, other, allBusy, allOther, periods, durations []float64
		for _, w := range groups[k] {
			if w.Error != "" {
				s.Failed++
				continue
			}
			s.Windows++
			engine = append(engine, w.EngineCorePct)
			allBusy, allOther = append(allBusy, w.BusyCorePct), append(allOther, w.OtherCorePct)
			if w.OtherCorePct <= quietest+otherSpreadPct {
				busy, other = append(busy, w.BusyCorePct), append(other, w.OtherCorePct)
			}
			periods = append(periods, w.ProbePeriodsMS...)
			durations = append(durations, w.ProbeDurationsMS...)
		}
		s.HostWindows = len(busy)
		if s.Windows > 0 && s.HostWindows == 0 {
			busy, other, s.HostNoisy = allBusy, allOther, true
		}
		if s.Windows > 0 {
			s.BusyCorePct, s.EngineCorePct, s.OtherCorePct = mean(busy), mean(engine), mean(other)
		}
		if k.replicas == 0 {
			if s.Windows > 0 {
				baseline, engineBaseline = s.BusyCorePct, s.EngineCorePct
			}
			out = append(out, s)
			continue
		}
		s.ProbePeriodMS, s.ProbeDurationMS = median(periods), medianOr(0, durations)
		if len(periods) == 0 {
			s.ProbePeriodMS, s.ProbePeriodNominal = k.interval, true
		}
		if s.Windows > 0 && !math.IsNaN(baseline) && s.ProbePeriodMS > 0 {
			s.ExtraCorePct = s.BusyCorePct - baseline
			s.ProbesPerS = float64(k.replicas) * 1000 / s.ProbePeriodMS
			s.EngineExtraCorePct = s.EngineCorePct - engineBaseline
			// Extra core % / 100 is CPU seconds per second; × 1000 ms.
			s.CPUPerProbeMS = s.ExtraCorePct * 10 / s.ProbesPerS
			s.CorePctPerReplica = s.ExtraCorePct / float64(k.replicas)
			s.EngineCPUPerProbeMS = s.EngineExtraCorePct * 10 / s.ProbesPerS
			s.EngineCorePctPerReplica = s.EngineExtraCorePct / float64(k.replicas)
		}
		out = append(out, s)
	}
	return out
}
