package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// functionsReport is everything one run of the functions suite produced: the
// raw trials, their summaries and the goals. It is written as JSON and
// rendered as tables.
type functionsReport struct {
	runHead
	Config  functionsConfig `json:"config"`
	Machine machineInfo     `json:"machine"`
	Engine  engineInfo      `json:"engine"`

	Builds  []buildTrial  `json:"builds,omitempty"`
	Images  []imageInfo   `json:"images,omitempty"`
	Scales  []scaleTrial  `json:"scale_trials,omitempty"`
	Deploys []deployTrial `json:"deploy_trials,omitempty"`
	Idle    []idleWindow  `json:"idle_windows,omitempty"`

	Summary functionsSummary `json:"summary"`
	// reportEnd's Cleanup lists what the final sweep found left on the engine and
	// removed (normally nothing: each stage removes what it created).
	reportEnd
}

// functionsConfig is the suite's configuration as recorded with the results.
type functionsConfig struct {
	Quick           bool     `json:"quick"`
	Stages          []string `json:"stages"`
	Templates       []string `json:"templates"`
	DeployTemplates []string `json:"deploy_templates"`
	Trials          int      `json:"trials"`
	ScaleTrials     int      `json:"scale_trials"`
	IdleWindowS     float64  `json:"idle_window_s"`
	IdleReplicas    int      `json:"idle_replicas"`
	QuietWaitS      float64  `json:"quiet_wait_s"`
	BodyBytes       int      `json:"body_bytes"`
	// EndpointPollMS is the period of the Endpoints polls; HTTPPollMS the
	// pause between two requests to a replica that is not answering yet.
	EndpointPollMS float64 `json:"endpoint_poll_ms"`
	HTTPPollMS     float64 `json:"http_poll_ms"`
	// DrainGraceMS is the services' drain grace (PULSE_DRAIN_GRACE), short
	// so that removals and scale-downs between trials are quick. It plays
	// no part in a start.
	DrainGraceMS float64 `json:"drain_grace_ms"`
	// StartIntervalMS is the services' health start interval: what pulse
	// deploy sets for this engine (function.StartIntervalFor), 0 for none.
	StartIntervalMS float64 `json:"health_start_interval_ms"`
	// NamePrefix starts the name of every function, service and image the
	// run created.
	NamePrefix string `json:"name_prefix"`
}

// engineInfo describes the Docker Engine the suite ran on.
type engineInfo struct {
	Version       string   `json:"version"`
	APIVersion    string   `json:"api_version"`
	StorageDriver string   `json:"storage_driver"`
	CgroupVersion string   `json:"cgroup_version,omitempty"`
	Nodes         int      `json:"swarm_nodes"`
	NodeAddr      string   `json:"node_addr"`
	OtherServices []string `json:"other_services,omitempty"` // services not ours, running throughout
	GoCache       string   `json:"gocache"`                  // Go's build cache, used as it was
}

// buildTrial is one Build of one template.
type buildTrial struct {
	Template string `json:"template"`
	Trial    int    `json:"trial"`
	// Cache is "cold" (an empty Pulse cache dir) or "warm" (the same build
	// again, with the cache the cold one filled).
	Cache         string  `json:"cache"`
	Seconds       float64 `json:"seconds"`
	ImageID       string  `json:"image_id,omitempty"`
	ImageBytes    int64   `json:"image_bytes,omitempty"`    // BuildInfo.ImageSize
	FunctionBytes int64   `json:"function_bytes,omitempty"` // BuildInfo.BinarySize
	ArchiveBytes  int64   `json:"archive_bytes,omitempty"`
	Error         string  `json:"error,omitempty"`
}

// imageInfo is one template's image as loaded into the engine.
type imageInfo struct {
	Template string `json:"template"`
	Function string `json:"function"`
	ID       string `json:"id"`
	Tag      string `json:"tag"`
	// EngineBytes is the size the engine reports (docker image ls).
	EngineBytes   int64   `json:"engine_bytes"`
	FunctionBytes int64   `json:"function_bytes"`
	WatchdogBytes int64   `json:"watchdog_bytes"` // 0 for go: the watchdog is linked in
	ArchiveBytes  int64   `json:"archive_bytes"`
	LoadS         float64 `json:"load_s"`
	Error         string  `json:"error,omitempty"`
}

// trialHead begins a scale or deploy trial: when it started, after how
// long a wait for the host to be quiet, and how it failed.
type trialHead struct {
	Trial        int     `json:"trial"`
	Start        string  `json:"start"`
	Load1        float64 `json:"load1"`
	QuietWaitS   float64 `json:"quiet_wait_s"`
	QuietBusyPct float64 `json:"quiet_busy_pct"`
	Error        string  `json:"error,omitempty"`
}

// replicaTimes are a new replica's times in a scale or deploy trial. The
// task, container and probe times come from the engine's records of the
// replica, read after the trial.
type replicaTimes struct {
	TaskCreatedS      float64 `json:"task_created_s,omitempty"`      // the task's CreatedAt
	ContainerStartedS float64 `json:"container_started_s,omitempty"` // the container's StartedAt
	FirstProbeS       float64 `json:"first_probe_s,omitempty"`       // end of its first passing health probe
	EndpointS         float64 `json:"endpoint_s"`                    // the new task in Endpoints
}

// scaleTrial is one +1 scale: every time in seconds from just before the
// Swarm.Scale call.
type scaleTrial struct {
	Interval   string  `json:"health_interval"`
	IntervalMS float64 `json:"health_interval_ms"`
	trialHead
	ScaleCallS float64 `json:"scale_call_s"` // Swarm.Scale returned
	replicaTimes
	ReadyS float64 `json:"ready_s"` // its GET /_/health answered 200
	Polls  int     `json:"endpoint_polls"`
	Gets   int     `json:"health_gets"`
	// DownS is how long the scale back took, until one container was
	// left (not a measurement).
	DownS float64 `json:"down_s,omitempty"`
}

// deployTrial is one deploy of a fresh service: times in seconds from just
// before Swarm.Deploy.
type deployTrial struct {
	Template string `json:"template"`
	trialHead
	// LoadS is the image load before the trial (not timed with it).
	LoadS       float64 `json:"load_s,omitempty"`
	DeployCallS float64 `json:"deploy_call_s"`
	replicaTimes
	FirstOKS float64 `json:"first_ok_s"` // the first 200 to a POST
	Polls    int     `json:"endpoint_polls"`
	Posts    int     `json:"posts"`
	RemoveS  float64 `json:"remove_s,omitempty"` // Swarm.Remove afterwards (not a measurement)
}

// idleWindow is the host's CPU over one idle window with some replicas of
// the go function up and nothing calling them.
type idleWindow struct {
	Replicas   int     `json:"replicas"`
	IntervalMS float64 `json:"health_interval_ms,omitempty"`
	Start      string  `json:"start"`
	Load1      float64 `json:"load1"`
	// QuietWaitS is how long the window waited for processes other than
	// the engine's to use under 25 % of a core; QuietOtherPct is their share
	// in the last second of that wait.
	QuietWaitS    float64 `json:"quiet_wait_s"`
	QuietOtherPct float64 `json:"quiet_other_pct"`
	Seconds       float64 `json:"seconds"`
	BusyCPUS      float64 `json:"busy_cpu_s"` // host busy CPU (all cores) over the window
	BusyCorePct   float64 `json:"busy_core_pct"`
	StealCorePct  float64 `json:"steal_core_pct"`
	// EngineCPUS is the CPU of dockerd and containerd themselves and of
	// the shims of this run's replicas with everything under them (the
	// replicas and their probes) over the window, from /proc/<pid>/stat:
	// what the replicas cost the engine, and little else. The rest of the
	// host's busy CPU is other processes' (other clients' containers
	// included).
	EngineCPUS    float64 `json:"engine_cpu_s"`
	EngineCorePct float64 `json:"engine_core_pct"`
	EngineProcs   int     `json:"engine_procs,omitempty"`
	OtherCorePct  float64 `json:"other_core_pct"` // host busy minus EngineCorePct
	// The spacing of consecutive health probes and each probe's run time,
	// from the containers' health logs (the engine keeps the last five).
	ProbePeriodsMS   []float64 `json:"probe_periods_ms,omitempty"`
	ProbeDurationsMS []float64 `json:"probe_durations_ms,omitempty"`
	Error            string    `json:"error,omitempty"`
}

// functionsSummary holds the medians.
type functionsSummary struct {
	Builds  []buildSummary  `json:"builds,omitempty"`
	Scale   []scaleSummary  `json:"scale,omitempty"`
	Deploys []deploySummary `json:"deploys,omitempty"`
	Idle    []idleSummary   `json:"idle,omitempty"`
}

type buildSummary struct {
	Template string   `json:"template"`
	Trials   int      `json:"trials"` // successful cold and warm pairs' builds
	Failed   int      `json:"failed"`
	Flags    []string `json:"flags,omitempty"`
	ColdS    float64  `json:"cold_s"`
	ColdMinS float64  `json:"cold_min_s"`
	ColdMaxS float64  `json:"cold_max_s"`
	WarmS    float64  `json:"warm_s"`
	WarmMinS float64  `json:"warm_min_s"`
	WarmMaxS float64  `json:"warm_max_s"`
	// SameID: every build of the template gave the same image ID.
	SameID bool `json:"same_id"`
	// ImageBytes is the engine's size of the image when it was loaded,
	// else the build's count (the same number: the files' sizes).
	ImageBytes    int64 `json:"image_bytes"`
	FunctionBytes int64 `json:"function_bytes"`
	WatchdogBytes int64 `json:"watchdog_bytes"`
}

type scaleSummary struct {
	Interval          string   `json:"health_interval"`
	IntervalMS        float64  `json:"health_interval_ms"`
	Trials            int      `json:"trials"`
	Failed            int      `json:"failed"`
	Flags             []string `json:"flags,omitempty"`
	ReadyS            float64  `json:"ready_s"`
	ReadyP90S         float64  `json:"ready_p90_s"`
	ReadyMinS         float64  `json:"ready_min_s"`
	ReadyMaxS         float64  `json:"ready_max_s"`
	EndpointS         float64  `json:"endpoint_s"`
	TaskCreatedS      float64  `json:"task_created_s"`
	ContainerStartedS float64  `json:"container_started_s"`
	FirstProbeS       float64  `json:"first_probe_s"`
}

type deploySummary struct {
	Template          string   `json:"template"`
	Trials            int      `json:"trials"`
	Failed            int      `json:"failed"`
	Flags             []string `json:"flags,omitempty"`
	FirstOKS          float64  `json:"first_ok_s"`
	MinS              float64  `json:"min_s"`
	MaxS              float64  `json:"max_s"`
	DeployCallS       float64  `json:"deploy_call_s"`
	ContainerStartedS float64  `json:"container_started_s"`
	FirstProbeS       float64  `json:"first_probe_s"`
	EndpointS         float64  `json:"endpoint_s"`
}

type idleSummary struct {
	Replicas   int     `json:"replicas"`
	IntervalMS float64 `json:"health_interval_ms,omitempty"`
	Windows    int     `json:"windows"`
	Failed     int     `json:"failed"`
	// BusyCorePct is the host's busy CPU in percent of one core (mean of
	// the windows); ExtraCorePct is that over the 0-replica baseline.
	BusyCorePct  float64 `json:"busy_core_pct"`
	ExtraCorePct float64 `json:"extra_core_pct"`
	// ProbePeriodMS is the median spacing of a replica's probes (Docker
	// waits the interval after each probe ends, so it is the interval plus
	// a probe's run time); ProbePeriodNominal says the health logs had none
	// and the interval was taken.
	ProbePeriodMS      float64 `json:"probe_period_ms,omitempty"`
	ProbePeriodNominal bool    `json:"probe_period_nominal,omitempty"`
	ProbeDurationMS    float64 `json:"probe_duration_ms,omitempty"`
	ProbesPerS         float64 `json:"probes_per_s,omitempty"`
	CPUPerProbeMS      float64 `json:"cpu_per_probe_ms,omitempty"`
	CorePctPerReplica  float64 `json:"core_pct_per_replica,omitempty"`
	// The same from the engine's part alone (idleWindow.EngineCPUS): a
	// cross-check that other processes' load does not move.
	EngineCorePct           float64 `json:"engine_core_pct"`
	EngineExtraCorePct      float64 `json:"engine_extra_core_pct,omitempty"`
	EngineCPUPerProbeMS     float64 `json:"engine_cpu_per_probe_ms,omitempty"`
	EngineCorePctPerReplica float64 `json:"engine_core_pct_per_replica,omitempty"`
	// OtherCorePct is the rest of the host's busy CPU (mean of the
	// windows): load that is not the engine's part.
	OtherCorePct float64 `json:"other_core_pct"`
	// HostWindows counts the windows in the host's figures (BusyCorePct,
	// OtherCorePct and what follows from them): those where other processes
	// used at most otherSpreadPct more than in the quietest window of the
	// run. HostNoisy says there was none, so all of them were taken.
	HostWindows int  `json:"host_windows"`
	HostNoisy   bool `json:"host_noisy,omitempty"`
}

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
