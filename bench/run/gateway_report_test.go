package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// testGatewayRuns is a small run: two rounds of the four latency variants
// (gateway c=50 failed once, direct c=50 had request errors once) and of
// the two balancing algorithms; four scale trials, one failed.
func testGatewayRuns() ([]gatewayRun, []gatewayScaleTrial) {
	lat := func(variant, path string, conns, round int, rps float64, p50, p99 int64, hap, dp, rep float64) gatewayRun {
		return gatewayRun{Stage: gwStageLatency, Variant: variant, Path: path, Conns: conns, Replicas: 1, Round: round,
			RPS: rps, P50US: p50, P99US: p99, HAProxyCPUPerReqUS: hap, DockerProxyCPUPerReqUS: dp, ReplicaCPUPerReqUS: rep,
			WrkCorePct: 20, OtherCorePct: 4, StealCorePct: 1}
	}
	bal := func(alg string, round int, rps float64, p50, p99 int64) gatewayRun {
		return gatewayRun{Stage: gwStageBalance, Variant: alg, Balance: alg, Path: pathGateway, Conns: 50, Replicas: 3, Round: round,
			RPS: rps, P50US: p50, P99US: p99, HAProxyCPUPerReqUS: 30, DockerProxyCPUPerReqUS: 40, ReplicaCPUPerReqUS: 25,
			WrkCorePct: 30, OtherCorePct: 5, PulsedRouteS: 0.35}
	}
	errs := lat(gwDirectHigh, pathDirect, 50, 2, 15000, 3000, 9000, 0, 44, 23)
	reloaded := lat(gwGatewayLow, pathGateway, 1, 2, 6200, 140, 400, 3, 48, 58) // HAProxy reloaded: its CPU is incomplete
	reloaded.Reloads, reloaded.HAProxyChurn, reloaded.LostProcs = 1, 2, 1
	errs.Errors = 3
	runs := []gatewayRun{
		lat(gwDirectLow, pathDirect, 1, 1, 9000, 90, 300, 0, 45, 43),
		lat(gwGatewayLow, pathGateway, 1, 1, 6000, 130, 420, 35, 49, 60),
		lat(gwDirectHigh, pathDirect, 50, 1, 14000, 3300, 9800, 0, 44.4, 23.4),
		lat(gwGatewayHigh, pathGateway, 50, 1, 9000, 5000, 12000, 42, 52.5, 29.9),
		reloaded,
		lat(gwDirectLow, pathDirect, 1, 2, 9200, 86, 310, 0, 46, 41),
		errs,
		{Stage: gwStageLatency, Variant: gwGatewayHigh, Path: pathGateway, Conns: 50, Replicas: 1, Round: 2, Error: "wrk: exit status 1"},
		bal(gwLeastConn, 1, 10500, 3600, 11000),
		bal(gwRoundRobin, 1, 10000, 3800, 12500),
		bal(gwRoundRobin, 2, 10200, 3700, 12000),
		bal(gwLeastConn, 2, 10400, 3650, 11500),
	}
	scales := []gatewayScaleTrial{
		{Trial: 1, From: 1, To: 2, ScaleToRunningS: 0.77, CatalogScaleS: 0.4, SeenS: 0.011, CatalogS: 0.112, AddedS: 0.118, ReadyS: 0.118, TrafficS: 0.122, BackgroundOK: 400},
		{Trial: 2, From: 1, To: 2, ScaleToRunningS: 0.71, CatalogScaleS: 0.85, LateNotice: true, SeenS: 0.009, CatalogS: 0.093, AddedS: 0.099, ReadyS: 0.099, TrafficS: 0.109, BackgroundOK: 410},
		{Trial: 3, From: 1, To: 2, Error: "the new replica did not take traffic: timed out", BackgroundOK: 380, BackgroundFailed: 2},
		{Trial: 4, From: 1, To: 2, ScaleToRunningS: 0.74, CatalogScaleS: 0.3, SeenS: 0.015, CatalogS: 0.063, AddedS: 0.072, ReadyS: 0.072, TrafficS: 0.082, BackgroundOK: 395},
	}
	return runs, scales
}

func TestSummarizeGateway(t *testing.T) {
	runs, scales := testGatewayRuns()
	s := summarizeGateway(runs, scales)

	mid := func(a, b float64) float64 { return (a + b) / 2 }
	wantVariants := []gatewayVariantSummary{
		{Stage: gwStageLatency, Variant: gwDirectLow, Path: pathDirect, Conns: 1, Replicas: 1, Runs: 2,
			RPS: 9100, RPSMin: 9000, RPSMax: 9200, P50US: 88, P50MinUS: 86, P50MaxUS: 90, P99US: 305,
			DockerProxyCPUPerReqUS: 45.5, ReplicaCPUPerReqUS: 42, WrkCorePct: 20, OtherCorePct: 4, StealCorePct: 1},
		{Stage: gwStageLatency, Variant: gwGatewayLow, Path: pathGateway, Conns: 1, Replicas: 1, Runs: 2,
			RPS: 6100, RPSMin: 6000, RPSMax: 6200, P50US: 135, P50MinUS: 130, P50MaxUS: 140, P99US: 410,
			HAProxyCPUPerReqUS: 35, DockerProxyCPUPerReqUS: 48.5, ReplicaCPUPerReqUS: 59, Disturbed: 1, WrkCorePct: 20, OtherCorePct: 4, StealCorePct: 1},
		{Stage: gwStageLatency, Variant: gwDirectHigh, Path: pathDirect, Conns: 50, Replicas: 1, Runs: 2, Errors: 3, Flags: []string{"round 2: 3 request errors"},
			RPS: 14500, RPSMin: 14000, RPSMax: 15000, P50US: 3150, P50MinUS: 3000, P50MaxUS: 3300, P99US: 9400,
			DockerProxyCPUPerReqUS: mid(44, 44.4), ReplicaCPUPerReqUS: mid(23, 23.4), WrkCorePct: 20, OtherCorePct: 4, StealCorePct: 1},
		{Stage: gwStageLatency, Variant: gwGatewayHigh, Path: pathGateway, Conns: 50, Replicas: 1, Runs: 1, Failed: 1, Flags: []string{"round 2: wrk: exit status 1"},
			RPS: 9000, RPSMin: 9000, RPSMax: 9000, P50US: 5000, P50MinUS: 5000, P50MaxUS: 5000, P99US: 12000,
			HAProxyCPUPerReqUS: 42, DockerProxyCPUPerReqUS: 52.5, ReplicaCPUPerReqUS: 29.9, WrkCorePct: 20, OtherCorePct: 4, StealCorePct: 1},
		{Stage: gwStageBalance, Variant: gwLeastConn, Path: pathGateway, Conns: 50, Balance: gwLeastConn, Replicas: 3, Runs: 2,
			RPS: 10450, RPSMin: 10400, RPSMax: 10500, P50US: 3625, P50MinUS: 3600, P50MaxUS: 3650, P99US: 11250,
			HAProxyCPUPerReqUS: 30, DockerProxyCPUPerReqUS: 40, ReplicaCPUPerReqUS: 25, WrkCorePct: 30, OtherCorePct: 5, PulsedRouteS: 0.35},
		{Stage: gwStageBalance, Variant: gwRoundRobin, Path: pathGateway, Conns: 50, Balance: gwRoundRobin, Replicas: 3, Runs: 2,
			RPS: 10100, RPSMin: 10000, RPSMax: 10200, P50US: 3750, P50MinUS: 3700, P50MaxUS: 3800, P99US: 12250,
			HAProxyCPUPerReqUS: 30, DockerProxyCPUPerReqUS: 40, ReplicaCPUPerReqUS: 25, WrkCorePct: 30, OtherCorePct: 5, PulsedRouteS: 0.35},
	}
	if !reflect.DeepEqual(s.Variants, wantVariants) {
		t.Errorf("variants:\n got %+v\nwant %+v", s.Variants, wantVariants)
	}

	wantLatency := gatewayLatency{
		OK: true, DirectP50US: 88, GatewayP50US: 135, AddedP50US: 47, AddedP50RoundsUS: []float64{40, 54},
		DirectP99US: 305, GatewayP99US: 410, AddedP99US: 105,
		// Round 2 of gateway c=50 failed: one pair.
		HighOK: true, DirectRPS: 14500, GatewayRPS: 9000, RPSRatio: round3(9000.0 / 14500), RPSRatioRounds: []float64{round3(9000.0 / 14000)},
		DirectHighP99: 9400, GatewayHighP99: 12000,
	}
	if !reflect.DeepEqual(s.Latency, wantLatency) {
		t.Errorf("latency:\n got %+v\nwant %+v", s.Latency, wantLatency)
	}

	wantBalance := gatewayBalance{OK: true, LeastConnRPS: 10450, RoundRobinRPS: 10100, LeastConnP99: 11250, RoundRobinP99: 12250,
		RPSRatio: round3(10450.0 / 10100), RPSRatioRounds: []float64{1.05, round3(10400.0 / 10200)}}
	if !reflect.DeepEqual(s.Balance, wantBalance) {
		t.Errorf("balance:\n got %+v\nwant %+v", s.Balance, wantBalance)
	}

	wantScale := gatewayScaleSummary{Trials: 3, Failed: 1, Flags: []string{"trial 3: the new replica did not take traffic: timed out"},
		ReadyS: 0.099, ReadyP90S: 0.118, ReadyMinS: 0.072, ReadyMaxS: 0.118, TrafficS: 0.109, SeenS: 0.011, CatalogS: 0.093, AddedS: 0.099,
		ScaleToRunningS: 0.74, CatalogScaleS: 0.4, BackgroundOK: 1585, BackgroundFailed: 2, Late: 1, LateReadyS: 0.099, EarlyReadyS: 0.095}
	if !reflect.DeepEqual(s.Scale, wantScale) {
		t.Errorf("scale:\n got %+v\nwant %+v", s.Scale, wantScale)
	}
}

func TestSummarizeGatewayNothing(t *testing.T) {
	s := summarizeGateway(nil, nil)
	if len(s.Variants) != 0 || s.Latency.OK || s.Latency.HighOK || s.Balance.OK || s.Scale.Trials+s.Scale.Failed != 0 {
		t.Errorf("summary of nothing: %+v", s)
	}
	// Every run of a variant failed: it is listed, with no numbers.
	s = summarizeGateway([]gatewayRun{
		{Stage: gwStageLatency, Variant: gwDirectLow, Path: pathDirect, Conns: 1, Replicas: 1, Round: 1, Error: "boom"},
		{Stage: gwStageLatency, Variant: gwGatewayLow, Path: pathGateway, Conns: 1, Replicas: 1, Round: 1, P50US: 100},
	}, nil)
	if len(s.Variants) != 2 || s.Variants[0].Runs != 0 || s.Variants[0].Failed != 1 || s.Latency.OK {
		t.Errorf("one variant failed: %+v", s)
	}
}

func TestGatewayGoals(t *testing.T) {
	runs, scales := testGatewayRuns()
	ok := summarizeGateway(runs, []gatewayScaleTrial{scales[0], scales[3]})
	flagged := summarizeGateway(append(runs, gatewayRun{Stage: gwStageLatency, Variant: gwGatewayLow, Path: pathGateway, Conns: 1, Round: 3, P50US: 300, Errors: 1}), scales)
	slow := ok
	slow.Latency.AddedP50US, slow.Scale.ReadyS = 61, 0.51
	allFailed := summarizeGateway(nil, scales[2:3])
	tests := []struct {
		name string
		s    gatewaySummary
		want []goal
	}{
		{
			name: "both met", s: ok,
			want: []goal{
				{Name: gwLatencyGoalName, Unit: "µs", Limit: 60, Value: 47, Status: pass, Note: "p50 direct 88 µs, through HAProxy 135 µs; per round +40 to +54 µs"},
				{Name: gwScaleGoalName, Unit: "s", Limit: 0.5, Value: 0.095, Status: pass, Note: "server ready and up; first session 0.102 s (median of 2)"},
			},
		},
		{
			name: "errors and a failed trial fail them", s: flagged,
			want: []goal{
				{Name: gwLatencyGoalName, Unit: "µs", Limit: 60, Value: 52, Status: fail, Note: "gateway c=1 had errors: round 3: 1 request errors"},
				{Name: gwScaleGoalName, Unit: "s", Limit: 0.5, Value: 0.099, Status: fail, Note: "1 of 4 trials failed: trial 3: the new replica did not take traffic: timed out"},
			},
		},
		{
			name: "over the limits", s: slow,
			want: []goal{
				{Name: gwLatencyGoalName, Unit: "µs", Limit: 60, Value: 61, Status: fail, Note: "p50 direct 88 µs, through HAProxy 135 µs; per round +40 to +54 µs"},
				{Name: gwScaleGoalName, Unit: "s", Limit: 0.5, Value: 0.51, Status: fail, Note: "server ready and up; first session 0.102 s (median of 2)"},
			},
		},
		{
			name: "nothing ran", s: gatewaySummary{},
			want: []goal{
				{Name: gwLatencyGoalName, Unit: "µs", Limit: 60, Status: skip, Note: "the latency stage did not run"},
				{Name: gwScaleGoalName, Unit: "s", Limit: 0.5, Status: skip, Note: "the scale stage did not run"},
			},
		},
		{
			name: "every trial failed", s: allFailed,
			want: []goal{
				{Name: gwLatencyGoalName, Unit: "µs", Limit: 60, Status: skip, Note: "the latency stage did not run"},
				{Name: gwScaleGoalName, Unit: "s", Limit: 0.5, Status: fail, Note: "every trial failed: trial 3: the new replica did not take traffic: timed out"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gatewayGoals(tt.s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("gatewayGoals:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPulsedStopNotes(t *testing.T) {
	tests := []struct {
		name  string
		stops []gatewayPulsedStop
		want  []string
	}{
		{name: "none"},
		{
			name:  "clean",
			stops: []gatewayPulsedStop{{Stage: "latency", StopS: 0.12}, {Stage: "scale", StopS: 0.3}},
			want:  []string{"pulsed stopped with SIGTERM 2 time(s), exit 0 in 2, each within 0.30 s; its HAProxy was always gone when pulsed exited"},
		},
		{
			name: "haproxy lingering, killed once, a bad exit",
			stops: []gatewayPulsedStop{
				{Stage: "latency", StopS: 0.1, HAProxyLingerS: 0.007},
				{Stage: "balance", Balance: "roundrobin", StopS: 0.2, Exit: 1, Error: "pulsed exited with code 1 after SIGTERM; log: x"},
				{Stage: "scale", StopS: 0.1, HAProxyLingerS: 2, Killed: []int{42}},
			},
			want: []string{
				"pulsed stopped with SIGTERM 3 time(s), exit 0 in 2, each within 0.20 s; in 1 its HAProxy was still exiting after pulsed had exited (up to 7 ms later); " +
					"in 1 its HAProxy was still running 2 s after pulsed had exited and was killed (pulsed's serve returns without waiting for its HAProxy supervisor " +
					"to finish stopping HAProxy, so the process can exit before HAProxy is stopped, or even told to stop)",
				"pulsed stop (balance stage): pulsed exited with code 1 after SIGTERM; log: x",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pulsedStopNotes(tt.stops); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("pulsedStopNotes:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// testGatewayReport is a whole report over testGatewayRuns.
func testGatewayReport() gatewayReport {
	runs, scales := testGatewayRuns()
	rep := gatewayReport{
		runHead: runHead{Suite: "gateway", Started: "2026-01-02T03:04:05Z"},
		Config: gatewayConfig{
			Stages: gatewayStages, Rounds: 2, DurationS: 5, WarmupS: 1, BodyBytes: 64, ScaleTrials: 4,
			LowConns: 1, LowThreads: 1, HighConns: 50, HighThreads: 2, BalanceReplicas: 3, HealthIntervalMS: 250, DrainGraceMS: 1000,
			TaskPollMS: 20, CatalogPollMS: 20, HAProxyPollMS: 10, BackgroundClients: 2, BackgroundPauseMS: 10, Function: "pbench-gw-abcdef-echo",
		},
		Machine: machineInfo{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "6.1.0", Go: "go version go1.26.8 linux/amd64", Wrk: "wrk 4.1.0 [epoll]", ClockTicks: 100},
		Engine: gatewayEngine{Version: "20.10.24+dfsg1", APIVersion: "1.41", Nodes: 1, NodeAddr: "127.0.0.1",
			OtherServices: []string{"echo", "hello"}, OtherFunctions: []string{"echo", "hello"}},
		HAProxy:    "HAProxy 2.6.12-1+deb12u4",
		Runs:       runs,
		Scales:     scales,
		Background: gatewayBackground{OK: 1700, Failed: 2, Why: map[string]int64{"503 Service Unavailable": 2}, Reloads: 3},
		PulsedStops: []gatewayPulsedStop{
			{Stage: "latency", StopS: 0.11, HAProxyLingerS: 0.006},
			{Stage: "balance", Balance: "leastconn", StopS: 0.1},
			{Stage: "balance", Balance: "roundrobin", StopS: 0.1},
			{Stage: "balance", Balance: "roundrobin", StopS: 0.1},
			{Stage: "balance", Balance: "leastconn", StopS: 0.1},
			{Stage: "scale", StopS: 0.2},
		},
	}
	rep.Summary = summarizeGateway(runs, scales)
	rep.Goals = gatewayGoals(rep.Summary)
	rep.Notes = gatewayNotes(rep)
	return rep
}

// TestRenderGatewayMarkdown checks the README's gateway section and the
// text rendering against golden files; run with -update to rewrite them
// after an intended change.
func TestRenderGatewayMarkdown(t *testing.T) {
	rep := testGatewayReport()
	got := renderGatewayMarkdown(rep, "results/gateway-20260102T030405Z.json")
	golden := "testdata/gateway-results.md"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "gateway-results.md"); got != want {
		t.Errorf("renderGatewayMarkdown differs from %s (run go test ./bench/run -update):\n%s", golden, got)
	}
	// The text rendering carries the same cells, laid out for a terminal.
	text := renderGatewayText(rep)
	if *update {
		if err := os.WriteFile("testdata/gateway-results.txt", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := readTestdata(t, "gateway-results.txt"); text != want {
		t.Errorf("renderGatewayText differs from testdata/gateway-results.txt (run go test ./bench/run -update):\n%s", text)
	}
	for _, cell := range []string{
		"gateway c=1", "135", "+47", "+40–+54", "0.621×", "leastconn", "3 (flagged)", "1 (1 failed)", "1585 / 2",
		gwLatencyGoalName, gwScaleGoalName, "FAIL", "PASS", "2 other service(s) on the engine throughout (echo, hello)",
		"leastconn/roundrobin 1.035× (per round 1.02–1.05): leastconn is faster here (pulsed's default is roundrobin, chosen on the p99)",
		"both paths reach the replica through the engine's docker-proxy",
		"scale stage background load: 1700 requests answered 200, 2 failed (503 Service Unavailable ×2)",
		"in 1 its HAProxy was still exiting after pulsed had exited (up to 6 ms later)",
		"35.0 (1 reloaded)", "HAProxy was reloaded during 1 of 11 runs", "scale stage: pulsed reloaded HAProxy 3 time(s) during it",
		"in 1 of 3 trials pulsed's catalog noticed the scale (the new desired count) only after the new task was already running",
		"those trials took 0.099 s to ready (median), the others, where fast polling was on when the task turned running, 0.095 s",
	} {
		if !strings.Contains(text, cell) {
			t.Errorf("renderGatewayText lacks %q", cell)
		}
	}
}

func TestGatewayBalanceNote(t *testing.T) {
	for _, tt := range []struct {
		ratio float64
		want  string
	}{
		{1.05, "leastconn is faster here (pulsed's default is roundrobin, chosen on the p99)"},
		{1.01, "within 3 % of each other"},
		{0.98, "within 3 % of each other"},
		{0.9, "roundrobin, pulsed's default, is faster here"},
	} {
		r := gatewayReport{Config: gatewayConfig{BalanceReplicas: 3, HighConns: 50}}
		r.Summary.Balance = gatewayBalance{OK: true, LeastConnRPS: 100 * tt.ratio, RoundRobinRPS: 100, RPSRatio: tt.ratio}
		notes := gatewayNotes(r)
		if len(notes) == 0 || !strings.Contains(notes[0], tt.want) {
			t.Errorf("ratio %v: notes %q lack %q", tt.ratio, notes, tt.want)
		}
	}
}

// TestReadmeHasGatewaySection: the README carries the gateway suite's
// markers, so a run replaces its section instead of appending one.
func TestReadmeHasGatewaySection(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := sectionMarkers("gateway")
	doc := string(b)
	if i, j := strings.Index(doc, begin), strings.Index(doc, end); i < 0 || j < i {
		t.Errorf("bench/README.md lacks the gateway results markers %q … %q", begin, end)
	}
}
