package main

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

func TestSecCell(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{{0, "–"}, {0.004, "0.004"}, {0.0994, "0.099"}, {0.1, "0.10"}, {1.554, "1.55"}} {
		if got := secCell(tt.in); got != tt.want {
			t.Errorf("secCell(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestProbeTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	tests := []struct {
		name          string
		log           []*container.HealthcheckResult
		wantPeriods   []float64
		wantDurations []float64
	}{
		{name: "empty"},
		{name: "one probe", log: []*container.HealthcheckResult{{Start: at(0), End: at(50)}}, wantDurations: []float64{50}},
		{
			name: "out of order, a nil and an unfinished one",
			log: []*container.HealthcheckResult{
				{Start: at(1050), End: at(1100)},
				nil,
				{Start: at(0), End: at(40)},
				{Start: at(2110)}, // still running: no duration
			},
			wantPeriods:   []float64{1050, 1060},
			wantDurations: []float64{50, 40},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, d := probeTimes(tt.log)
			if !reflect.DeepEqual(p, tt.wantPeriods) || !reflect.DeepEqual(d, tt.wantDurations) {
				t.Errorf("probeTimes = %v, %v; want %v, %v", p, d, tt.wantPeriods, tt.wantDurations)
			}
		})
	}
}

func TestFirstPassingProbe(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	pass := func(end int) *container.HealthcheckResult {
		return &container.HealthcheckResult{Start: at(end - 50), End: at(end), ExitCode: 0}
	}
	failed := &container.HealthcheckResult{Start: at(400), End: at(450), ExitCode: 1}
	tests := []struct {
		name string
		h    *container.Health
		want float64
	}{
		{name: "no health", h: nil, want: 0},
		{name: "empty log", h: &container.Health{}, want: 0},
		{name: "first passes", h: &container.Health{Log: []*container.HealthcheckResult{pass(1460), pass(2510)}}, want: 1.46},
		{name: "a failure first", h: &container.Health{Log: []*container.HealthcheckResult{failed, pass(1500)}}, want: 1.5},
		// The engine keeps five: a full log may have lost the first.
		{name: "full log", h: &container.Health{Log: []*container.HealthcheckResult{pass(1000), pass(2000), pass(3000), pass(4000), pass(5000)}}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstPassingProbe(tt.h, t0); got != tt.want {
				t.Errorf("firstPassingProbe = %v, want %v", got, tt.want)
			}
		})
	}
}

// testFunctionsRuns is a small run: two trials of go and c builds (one c
// build failed), cpp once, bin never; three scale trials per interval (one
// failed); deploys; idle windows with a bracketing baseline.
func testFunctionsRuns() ([]buildTrial, []imageInfo, []scaleTrial, []deployTrial, []idleWindow) {
	builds := []buildTrial{
		{Template: "go", Trial: 1, Cache: "cold", Seconds: 0.9, ImageID: "sha256:aa", ImageBytes: 5_836_962, FunctionBytes: 5_836_962},
		{Template: "go", Trial: 1, Cache: "warm", Seconds: 0.3, ImageID: "sha256:aa", ImageBytes: 5_836_962, FunctionBytes: 5_836_962},
		{Template: "go", Trial: 2, Cache: "cold", Seconds: 0.5, ImageID: "sha256:aa", ImageBytes: 5_836_962, FunctionBytes: 5_836_962},
		{Template: "go", Trial: 2, Cache: "warm", Seconds: 0.2, ImageID: "sha256:aa", ImageBytes: 5_836_962, FunctionBytes: 5_836_962},
		{Template: "c", Trial: 1, Cache: "cold", Seconds: 0.4, ImageID: "sha256:cc", ImageBytes: 6_564_714, FunctionBytes: 678_600},
		{Template: "c", Trial: 1, Cache: "warm", Seconds: 0.1, ImageID: "sha256:cc", ImageBytes: 6_564_714, FunctionBytes: 678_600},
		{Template: "c", Trial: 2, Cache: "cold", Seconds: 0.2, Error: "build c: gcc: exit status 1"},
		{Template: "cpp", Trial: 1, Cache: "cold", Seconds: 0.8, ImageID: "sha256:c1", ImageBytes: 8_100_000, FunctionBytes: 2_213_886},
		{Template: "cpp", Trial: 1, Cache: "warm", Seconds: 0.5, ImageID: "sha256:c2", ImageBytes: 8_100_000, FunctionBytes: 2_213_886},
	}
	images := []imageInfo{
		{Template: "go", ID: "sha256:aa", EngineBytes: 5_836_962, FunctionBytes: 5_836_962},
		{Template: "c", ID: "sha256:cc", EngineBytes: 6_564_714, FunctionBytes: 678_600, WatchdogBytes: 5_886_114},
		{Template: "cpp", ID: "sha256:c2", Error: "load image: boom"},
	}
	scales := []scaleTrial{
		{Interval: "1s", IntervalMS: 1000, trialHead: trialHead{Trial: 1}, replicaTimes: replicaTimes{TaskCreatedS: 0.003, ContainerStartedS: 0.42, FirstProbeS: 1.46, EndpointS: 1.55}, ReadyS: 1.551},
		{Interval: "250ms", IntervalMS: 250, trialHead: trialHead{Trial: 1}, replicaTimes: replicaTimes{TaskCreatedS: 0.004, ContainerStartedS: 0.41, FirstProbeS: 0.71, EndpointS: 0.80}, ReadyS: 0.81},
		{Interval: "1s", IntervalMS: 1000, trialHead: trialHead{Trial: 2}, replicaTimes: replicaTimes{TaskCreatedS: 0.003, ContainerStartedS: 0.44, FirstProbeS: 1.48, EndpointS: 1.51}, ReadyS: 1.513},
		{Interval: "250ms", IntervalMS: 250, trialHead: trialHead{Trial: 2, Error: "no new replica of x in the task list after 1m30s"}},
		{Interval: "1s", IntervalMS: 1000, trialHead: trialHead{Trial: 3}, replicaTimes: replicaTimes{ContainerStartedS: 0.48, EndpointS: 1.62}, ReadyS: 1.63},
		{Interval: "250ms", IntervalMS: 250, trialHead: trialHead{Trial: 3}, replicaTimes: replicaTimes{TaskCreatedS: 0.003, ContainerStartedS: 0.40, FirstProbeS: 0.73, EndpointS: 0.75}, ReadyS: 0.76},
	}
	deploys := []deployTrial{
		{Template: "go", trialHead: trialHead{Trial: 1}, replicaTimes: replicaTimes{ContainerStartedS: 0.42, FirstProbeS: 1.47, EndpointS: 1.549}, DeployCallS: 0.004, FirstOKS: 1.551},
		{Template: "c", trialHead: trialHead{Trial: 1}, replicaTimes: replicaTimes{ContainerStartedS: 0.38, FirstProbeS: 1.42, EndpointS: 1.508}, DeployCallS: 0.005, FirstOKS: 1.511},
		{Template: "go", trialHead: trialHead{Trial: 2}, replicaTimes: replicaTimes{ContainerStartedS: 0.40, FirstProbeS: 1.45, EndpointS: 1.52}, DeployCallS: 0.006, FirstOKS: 1.53},
		{Template: "c", trialHead: trialHead{Trial: 2, Error: "the function answered \"x\", which lacks the request body"}},
	}
	idle := []idleWindow{
		{Replicas: 0, Seconds: 10, BusyCorePct: 10, EngineCorePct: 5, OtherCorePct: 5},
		{Replicas: 4, IntervalMS: 1000, Seconds: 10, BusyCorePct: 18, EngineCorePct: 11, OtherCorePct: 7, ProbePeriodsMS: []float64{1050, 1060, 1040}, ProbeDurationsMS: []float64{50, 60}},
		{Replicas: 4, IntervalMS: 250, Seconds: 10, BusyCorePct: 60, EngineCorePct: 45, OtherCorePct: 16},
		{Replicas: 0, Seconds: 10, BusyCorePct: 12, EngineCorePct: 7, OtherCorePct: 5},
	}
	return builds, images, scales, deploys, idle
}

func TestSummarizeFunctions(t *testing.T) {
	builds, images, scales, deploys, idle := testFunctionsRuns()

	gotBuilds := summarizeBuilds(functionTemplates, builds, images)
	wantBuilds := []buildSummary{
		{Template: "go", Trials: 4, ColdS: 0.7, ColdMinS: 0.5, ColdMaxS: 0.9, WarmS: 0.25, WarmMinS: 0.2, WarmMaxS: 0.3, SameID: true,
			ImageBytes: 5_836_962, FunctionBytes: 5_836_962},
		{Template: "c", Trials: 2, Failed: 1, Flags: []string{"trial 2 (cold): build c: gcc: exit status 1"},
			ColdS: 0.4, ColdMinS: 0.4, ColdMaxS: 0.4, WarmS: 0.1, WarmMinS: 0.1, WarmMaxS: 0.1, SameID: true,
			ImageBytes: 6_564_714, FunctionBytes: 678_600, WatchdogBytes: 5_886_114},
		// Its load failed: the build's count stands.
		{Template: "cpp", Trials: 2, ColdS: 0.8, ColdMinS: 0.8, ColdMaxS: 0.8, WarmS: 0.5, WarmMinS: 0.5, WarmMaxS: 0.5, SameID: false,
			ImageBytes: 8_100_000, FunctionBytes: 2_213_886, WatchdogBytes: 5_886_114},
	}
	if !reflect.DeepEqual(gotBuilds, wantBuilds) {
		t.Errorf("summarizeBuilds:\n got %+v\nwant %+v", gotBuilds, wantBuilds)
	}

	gotScale := summarizeScale(scales)
	wantScale := []scaleSummary{
		{Interval: "1s", IntervalMS: 1000, Trials: 3, ReadyS: 1.551, ReadyP90S: 1.63, ReadyMinS: 1.513, ReadyMaxS: 1.63, EndpointS: 1.55,
			TaskCreatedS: 0.003, ContainerStartedS: 0.44, FirstProbeS: 1.47},
		{Interval: "250ms", IntervalMS: 250, Trials: 2, Failed: 1, Flags: []string{"trial 2: no new replica of x in the task list after 1m30s"},
			ReadyS: 0.785, ReadyP90S: 0.81, ReadyMinS: 0.76, ReadyMaxS: 0.81, EndpointS: 0.775, TaskCreatedS: 0.0035, ContainerStartedS: 0.405, FirstProbeS: 0.72},
	}
	if !reflect.DeepEqual(gotScale, wantScale) {
		t.Errorf("summarizeScale:\n got %+v\nwant %+v", gotScale, wantScale)
	}

	// mid is a median of two as median computes it (a constant expression
	// would be exact, and differ in the last bit).
	mid := func(a, b float64) float64 { return (a + b) / 2 }
	gotDeploys := summarizeDeploys(functionTemplates, deploys)
	wantDeploys := []deploySummary{
		{Template: "go", Trials: 2, FirstOKS: 1.5405, MinS: 1.53, MaxS: 1.551, DeployCallS: 0.005, ContainerStartedS: mid(0.40, 0.42), FirstProbeS: 1.46, EndpointS: 1.5345},
		{Template: "c", Trials: 1, Failed: 1, Flags: []string{"trial 2: the function answered \"x\", which lacks the request body"},
			FirstOKS: 1.511, MinS: 1.511, MaxS: 1.511, DeployCallS: 0.005, ContainerStartedS: 0.38, FirstProbeS: 1.42, EndpointS: 1.508},
	}
	if !reflect.DeepEqual(gotDeploys, wantDeploys) {
		t.Errorf("summarizeDeploys:\n got %+v\nwant %+v", gotDeploys, wantDeploys)
	}

	gotIdle := summarizeIdle(idle)
	// Baseline 11 % (the mean of 10 and 12); at 1 s: +7 % over
	// 4 × 1000/1050 probes/s; at 250 ms, no health log: the nominal period,
	// and other processes 11 % busier than in the quietest window: its only
	// window is noisy, and taken for lack of another.
	pps := 4 * 1000 / 1050.0
	// The engine's processes: baseline 6 %, so +5 and +39.
	wantIdle := []idleSummary{
		{Replicas: 0, Windows: 2, BusyCorePct: 11, EngineCorePct: 6, OtherCorePct: 5, HostWindows: 2},
		{Replicas: 4, IntervalMS: 1000, Windows: 1, BusyCorePct: 18, ExtraCorePct: 7, ProbePeriodMS: 1050, ProbeDurationMS: 55,
			ProbesPerS: pps, CPUPerProbeMS: 70 / pps, CorePctPerReplica: 1.75,
			EngineCorePct: 11, EngineExtraCorePct: 5, EngineCPUPerProbeMS: 50 / pps, EngineCorePctPerReplica: 1.25, OtherCorePct: 7, HostWindows: 1},
		{Replicas: 4, IntervalMS: 250, Windows: 1, BusyCorePct: 60, ExtraCorePct: 49, ProbePeriodMS: 250, ProbePeriodNominal: true,
			ProbesPerS: 16, CPUPerProbeMS: 30.625, CorePctPerReplica: 12.25,
			EngineCorePct: 45, EngineExtraCorePct: 39, EngineCPUPerProbeMS: 24.375, EngineCorePctPerReplica: 9.75, OtherCorePct: 16, HostNoisy: true},
	}
	if !reflect.DeepEqual(gotIdle, wantIdle) {
		t.Errorf("summarizeIdle:\n got %+v\nwant %+v", gotIdle, wantIdle)
	}
}

func TestScaleNoteWithStartInterval(t *testing.T) {
	sums := functionsSummary{Scale: []scaleSummary{{Interval: "1s", IntervalMS: 1000, Trials: 10, ReadyS: 0.52, ContainerStartedS: 0.4, FirstProbeS: 0.45, EndpointS: 0.51}}}
	notes := functionsNotes(sums, functionsConfig{StartIntervalMS: 100})
	want := "scale +1: the services had a health start interval of 100 ms: a new replica is probed that often until it is healthy. " +
		"At the default 1 s interval the new container started 0.40 s after the scale, its first probe passed at 0.45 s and Swarm.Endpoints listed it at 0.51 s"
	if len(notes) != 1 || notes[0] != want {
		t.Errorf("notes = %q\nwant [%q]", notes, want)
	}
}

func TestIdleNotesQuietRun(t *testing.T) {
	sums := functionsSummary{Idle: []idleSummary{
		{Replicas: 0, Windows: 2, HostWindows: 2, BusyCorePct: 10, EngineCorePct: 6, OtherCorePct: 4},
		{Replicas: 4, IntervalMS: 1000, Windows: 2, HostWindows: 2, BusyCorePct: 18, EngineCorePct: 13, OtherCorePct: 5, ProbePeriodMS: 1050, ProbesPerS: 3.81,
			CPUPerProbeMS: 21, CorePctPerReplica: 2, EngineCPUPerProbeMS: 18.4, EngineCorePctPerReplica: 1.75},
	}}
	want := []string{"health checks every 1 s: the host's busy CPU: 21.0 ms per probe, 2.00 % of a core per idle replica (100 replicas: 2.00 cores); " +
		"the engine's part: 18.4 ms per probe, 1.75 % of a core per idle replica (100 replicas: 1.75 cores)"}
	if got := functionsNotes(sums, functionsConfig{}); !reflect.DeepEqual(got, want) {
		t.Errorf("notes = %q\nwant %q", got, want)
	}
}

func TestSummarizeIdleLeavesNoisyWindowsOut(t *testing.T) {
	// Other processes: 4 % in the quietest window; a burst of 30 % in the
	// first 1 s window. The host's figures take the second one alone, the
	// engine's part both.
	windows := []idleWindow{
		{Replicas: 0, BusyCorePct: 8, EngineCorePct: 4, OtherCorePct: 4},
		{Replicas: 4, IntervalMS: 1000, BusyCorePct: 52, EngineCorePct: 18, OtherCorePct: 34, ProbePeriodsMS: []float64{1000}},
		{Replicas: 0, BusyCorePct: 10, EngineCorePct: 4, OtherCorePct: 6},
		{Replicas: 4, IntervalMS: 1000, BusyCorePct: 26, EngineCorePct: 20, OtherCorePct: 6, ProbePeriodsMS: []float64{1000}},
	}
	got := summarizeIdle(windows)
	want := []idleSummary{
		{Replicas: 0, Windows: 2, HostWindows: 2, BusyCorePct: 9, EngineCorePct: 4, OtherCorePct: 5},
		{Replicas: 4, IntervalMS: 1000, Windows: 2, HostWindows: 1, BusyCorePct: 26, EngineCorePct: 19, OtherCorePct: 6,
			ExtraCorePct: 17, ProbePeriodMS: 1000, ProbesPerS: 4, CPUPerProbeMS: 42.5, CorePctPerReplica: 4.25,
			EngineExtraCorePct: 15, EngineCPUPerProbeMS: 37.5, EngineCorePctPerReplica: 3.75},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarizeIdle:\n got %+v\nwant %+v", got, want)
	}
	notes := functionsNotes(functionsSummary{Idle: got}, functionsConfig{})
	wantNotes := []string{
		"health checks every 1 s: the host's busy CPU: 42.5 ms per probe, 4.25 % of a core per idle replica (100 replicas: 4.25 cores); " +
			"the engine's part: 37.5 ms per probe, 3.75 % of a core per idle replica (100 replicas: 3.75 cores)",
		"health-check CPU: 1 of 4 idle windows are left out of the host's figures: processes other than the engine's part used over 10 % of a core more " +
			"in them than in the quietest window (all windows are in the JSON)",
	}
	if !reflect.DeepEqual(notes, wantNotes) {
		t.Errorf("notes:\n got %q\nwant %q", notes, wantNotes)
	}
	if rows := idleRows(got); rows[1][len(rows[1])-1] != "2 (host: 1)" {
		t.Errorf("windows cell = %q, want %q", rows[1][len(rows[1])-1], "2 (host: 1)")
	}
}

func TestSummarizeIdleWithoutBaseline(t *testing.T) {
	got := summarizeIdle([]idleWindow{
		{Replicas: 4, IntervalMS: 1000, BusyCorePct: 18, ProbePeriodsMS: []float64{1050}},
		{Replicas: 0, Error: "wait for x: 1 containers running, want 0"},
	})
	want := []idleSummary{
		{Replicas: 0, Failed: 1},
		// No baseline: no extra CPU to put down to the probes.
		{Replicas: 4, IntervalMS: 1000, Windows: 1, HostWindows: 1, BusyCorePct: 18, ProbePeriodMS: 1050},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarizeIdle:\n got %+v\nwant %+v", got, want)
	}
}

func TestFunctionsGoals(t *testing.T) {
	builds, images, scales, _, _ := testFunctionsRuns()
	sums := functionsSummary{
		Builds: summarizeBuilds(functionTemplates, builds, images),
		Scale:  summarizeScale(scales),
	}
	got := functionsGoals(sums)
	want := []goal{
		{Name: imageGoals[0].name, Unit: "MB", Limit: 7, Value: 5.837, Status: pass, Note: "function 5.84 MB, the watchdog linked in"},
		// Under the limit, but a build failed.
		{Name: imageGoals[1].name, Unit: "MB", Limit: 7, Value: 6.565, Status: fail, Note: "c had failed builds: trial 2 (cold): build c: gcc: exit status 1"},
		{Name: imageGoals[2].name, Unit: "MB", Limit: 8, Value: 8.1, Status: fail, Note: "function 2.21 MB + watchdog 5.89 MB"},
		{Name: scaleGoalName, Unit: "s", Limit: 1, Value: 1.551, Status: fail, Note: "with a 250ms health interval: 0.79 s median; see the notes"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("functionsGoals:\n got %+v\nwant %+v", got, want)
	}

	tests := []struct {
		name string
		sums functionsSummary
		want []goal
	}{
		{
			name: "nothing ran",
			sums: functionsSummary{},
			want: []goal{
				{Name: imageGoals[0].name, Unit: "MB", Limit: 7, Status: skip, Note: "go was not built in this run"},
				{Name: imageGoals[1].name, Unit: "MB", Limit: 7, Status: skip, Note: "c was not built in this run"},
				{Name: imageGoals[2].name, Unit: "MB", Limit: 8, Status: skip, Note: "cpp was not built in this run"},
				{Name: scaleGoalName, Unit: "s", Limit: 1, Status: skip, Note: "the scale stage did not run with the default interval"},
			},
		},
		{
			name: "every build and trial failed; a fast scale",
			sums: functionsSummary{
				Builds: []buildSummary{{Template: "go", Failed: 2, Flags: []string{"trial 1 (cold): x"}}},
				Scale: []scaleSummary{
					{Interval: "1s", IntervalMS: 1000, Failed: 1, Flags: []string{"trial 1: y"}},
				},
			},
			want: []goal{
				{Name: imageGoals[0].name, Unit: "MB", Limit: 7, Status: fail, Note: "go: every build failed"},
				{Name: imageGoals[1].name, Unit: "MB", Limit: 7, Status: skip, Note: "c was not built in this run"},
				{Name: imageGoals[2].name, Unit: "MB", Limit: 8, Status: skip, Note: "cpp was not built in this run"},
				{Name: scaleGoalName, Unit: "s", Limit: 1, Status: fail, Note: "every trial failed: trial 1: y"},
			},
		},
		{
			name: "scale within the goal, one trial failed",
			sums: functionsSummary{Scale: []scaleSummary{
				{Interval: "1s", IntervalMS: 1000, Trials: 9, Failed: 1, Flags: []string{"trial 4: z"}, ReadyS: 0.9},
			}},
			want: []goal{
				{Name: imageGoals[0].name, Unit: "MB", Limit: 7, Status: skip, Note: "go was not built in this run"},
				{Name: imageGoals[1].name, Unit: "MB", Limit: 7, Status: skip, Note: "c was not built in this run"},
				{Name: imageGoals[2].name, Unit: "MB", Limit: 8, Status: skip, Note: "cpp was not built in this run"},
				{Name: scaleGoalName, Unit: "s", Limit: 1, Value: 0.9, Status: fail, Note: "1 of 10 trials failed: trial 4: z"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := functionsGoals(tt.sums); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("functionsGoals:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// testFunctionsReport is a whole report over testFunctionsRuns.
func testFunctionsReport() functionsReport {
	builds, images, scales, deploys, idle := testFunctionsRuns()
	rep := functionsReport{
		runHead: runHead{Suite: "functions", Started: "2026-01-02T03:04:05Z"},
		Config: functionsConfig{
			Stages: functionStages, Templates: functionTemplates, DeployTemplates: functionTemplates,
			Trials: 2, ScaleTrials: 3, IdleWindowS: 10, IdleReplicas: 4, BodyBytes: 64,
		},
		Machine: machineInfo{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "6.1.0", Go: "go version go1.26.8 linux/amd64", GCC: "12.2.0", GXX: "12.2.0", ClockTicks: 100},
		Engine: engineInfo{Version: "20.10.24+dfsg1", APIVersion: "1.41", StorageDriver: "overlay2", CgroupVersion: "2", Nodes: 1,
			OtherServices: []string{"echo", "hello"}, GoCache: "/root/.cache/go-build"},
		Builds: builds, Images: images, Scales: scales, Deploys: deploys, Idle: idle,
	}
	rep.summarize()
	return rep
}

// TestRenderFunctionsMarkdown checks the README's functions section and the
// text for a terminal against golden files; run with -update to rewrite them
// after an intended change.
func TestRenderFunctionsMarkdown(t *testing.T) {
	rep := testFunctionsReport()
	text := renderFunctionsText(rep)
	for name, got := range map[string]string{
		"functions-results.md":  renderFunctionsMarkdown(rep, "results/functions-20260102T030405Z.json"),
		"functions-results.txt": text,
	} {
		golden := "testdata/" + name
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if want := readTestdata(t, name); got != want {
			t.Errorf("the rendering differs from %s (run go test ./bench/run -update):\n%s", golden, got)
		}
	}
	// The text rendering carries the same cells.
	for _, cell := range []string{
		"1s (default)", "1.55", "0.70 (0.50–0.90)", "linked in", "0 (baseline)", "(nominal)",
		scaleGoalName, "FAIL", "PASS", "2 other service(s) on the engine throughout (echo, hello)",
		"health checks every 1 s: the engine's part: 13.1 ms per probe, 1.25 % of a core per idle replica (100 replicas: 1.25 cores); " +
			"the host's busy CPU: 18.4 ms per probe, 1.75 % of a core per idle replica (100 replicas: 1.75 cores), noisy in this run",
		"in every window of some configuration other processes were busy", "1 (noisy)",
		"scale +1: " + startIntervalNote + ". At the default 1 s interval the new container started 0.44 s after the scale, its first probe passed at 1.47 s " +
			"and Swarm.Endpoints listed it at 1.55 s; with a 250ms interval the new replica answered after 0.79 s (median; p90 0.81 s)",
	} {
		if !strings.Contains(text, cell) {
			t.Errorf("renderFunctionsText lacks %q", cell)
		}
	}
}

// TestTrialJSON pins the trials' JSON field names and order: the embedded
// trialHead and replicaTimes write theirs where the fields stood before.
func TestTrialJSON(t *testing.T) {
	head := trialHead{Trial: 1, Start: "s", Load1: 0.5, QuietWaitS: 1, QuietBusyPct: 2, Error: "e"}
	times := replicaTimes{TaskCreatedS: 0.1, ContainerStartedS: 0.2, FirstProbeS: 0.3, EndpointS: 0.4}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{
			name: "scale",
			v: scaleTrial{Interval: "1s", IntervalMS: 1000, trialHead: head, ScaleCallS: 0.01, replicaTimes: times,
				ReadyS: 0.5, Polls: 3, Gets: 4, DownS: 0.6},
			want: `{"health_interval":"1s","health_interval_ms":1000,"trial":1,"start":"s","load1":0.5,"quiet_wait_s":1,"quiet_busy_pct":2,` +
				`"error":"e","scale_call_s":0.01,"task_created_s":0.1,"container_started_s":0.2,"first_probe_s":0.3,"endpoint_s":0.4,` +
				`"ready_s":0.5,"endpoint_polls":3,"health_gets":4,"down_s":0.6}`,
		},
		{
			name: "deploy",
			v: deployTrial{Template: "go", trialHead: head, LoadS: 0.02, DeployCallS: 0.01, replicaTimes: times,
				FirstOKS: 0.5, Polls: 3, Posts: 4, RemoveS: 0.6},
			want: `{"template":"go","trial":1,"start":"s","load1":0.5,"quiet_wait_s":1,"quiet_busy_pct":2,"error":"e",` +
				`"load_s":0.02,"deploy_call_s":0.01,"task_created_s":0.1,"container_started_s":0.2,"first_probe_s":0.3,"endpoint_s":0.4,` +
				`"first_ok_s":0.5,"endpoint_polls":3,"posts":4,"remove_s":0.6}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("JSON:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestFailedRows(t *testing.T) {
	got := [][]string{
		buildRows([]buildSummary{{Template: "c", Failed: 2}})[0],
		scaleRows([]scaleSummary{{Interval: "1s", IntervalMS: 1000, Failed: 3}})[0],
		deployRows([]deploySummary{{Template: "go", Failed: 1}})[0],
		idleRows([]idleSummary{{Replicas: 4, IntervalMS: 250, Failed: 2}})[0],
	}
	want := [][]string{
		{"c", "every build failed", "", "", "", "", "", "0", "2"},
		{"1s (default)", "every trial failed", "", "", "", "", "", "", "0", "3"},
		{"go", "every trial failed", "", "", "", "", "", "0", "1"},
		{"4", "250 ms", "every window failed", "", "", "", "", "", "", "", "", "0 (2 failed)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows:\n got %q\nwant %q", got, want)
	}
}
