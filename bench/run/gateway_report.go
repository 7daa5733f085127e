package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// gatewayReport is everything one run of the gateway suite produced: the
// raw runs and trials, their summaries and the goals. It is written as JSON
// and rendered as tables.
type gatewayReport struct {
	runHead
	Config    gatewayConfig `json:"config"`
	Machine   machineInfo   `json:"machine"`
	Engine    gatewayEngine `json:"engine"`
	HAProxy   string        `json:"haproxy"`
	Artifacts []artifact    `json:"artifacts"`

	Runs       []gatewayRun        `json:"runs,omitempty"`
	Scales     []gatewayScaleTrial `json:"scale_trials,omitempty"`
	Background gatewayBackground   `json:"scale_background_load"`

	// PulsedStops records every stop of pulsed: its exit, and whether its
	// HAProxy outlived it.
	PulsedStops []gatewayPulsedStop `json:"pulsed_stops,omitempty"`

	Summary gatewaySummary `json:"summary"`
	// reportEnd's Cleanup lists what the final sweep found left behind and removed:
	// haproxy processes of the run, anything of the run's on the engine
	// (normally nothing).
	reportEnd
}

// gatewayConfig is the suite's configuration as recorded with the results.
type gatewayConfig struct {
	Quick       bool     `json:"quick"`
	Stages      []string `json:"stages"`
	Rounds      int      `json:"rounds"`
	DurationS   float64  `json:"duration_s"`
	WarmupS     float64  `json:"warmup_s"`
	QuietWaitS  float64  `json:"quiet_wait_s"`
	BodyBytes   int      `json:"body_bytes"`
	ScaleTrials int      `json:"scale_trials"`
	// wrk: connections and threads of the c=1 and c=50 loads.
	LowConns        int `json:"low_connections"`
	LowThreads      int `json:"low_threads"`
	HighConns       int `json:"high_connections"`
	HighThreads     int `json:"high_threads"`
	BalanceReplicas int `json:"balance_replicas"`
	// The replicas' Docker health interval and drain grace.
	HealthIntervalMS float64 `json:"health_interval_ms"`
	DrainGraceMS     float64 `json:"drain_grace_ms"`
	// The scale stage's polling periods and background load.
	TaskPollMS        float64 `json:"task_poll_ms"`
	CatalogPollMS     float64 `json:"catalog_poll_ms"`
	HAProxyPollMS     float64 `json:"haproxy_poll_ms"`
	BackgroundClients int     `json:"background_clients"`
	BackgroundPauseMS float64 `json:"background_pause_ms"`
	// Function is the function's name; everything the run created on the
	// engine starts with it (or carries its run label).
	Function   string `json:"function"`
	ImageBytes int64  `json:"image_archive_bytes,omitempty"`
}

// gatewayEngine describes the Docker Engine the suite ran on.
type gatewayEngine struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
	Nodes      int    `json:"swarm_nodes"`
	NodeAddr   string `json:"node_addr"`
	// OtherServices were on the engine throughout; OtherFunctions are
	// those of them that are Pulse functions, which pulsed routes (and
	// HAProxy health-checks) too.
	OtherServices  []string `json:"other_services,omitempty"`
	OtherFunctions []string `json:"other_functions,omitempty"`
}

// gatewayRun is one measured wrk run of the latency or balance stage.
type gatewayRun struct {
	Stage    string  `json:"stage"`
	Variant  string  `json:"variant"`
	Path     string  `json:"path"` // direct or gateway
	Conns    int     `json:"connections"`
	Threads  int     `json:"threads"`
	Balance  string  `json:"balance,omitempty"` // balance stage: PULSE_BALANCE
	Replicas int     `json:"replicas"`
	Round    int     `json:"round"`
	Slot     int     `json:"slot"`
	Start    string  `json:"start"`
	Load1    float64 `json:"load1"`
	// QuietWaitS is how long the run waited for the host to be quiet,
	// QuietBusyPct the host's busy share in the last sample of that wait.
	QuietWaitS   float64 `json:"quiet_wait_s"`
	QuietBusyPct float64 `json:"quiet_busy_pct"`
	// Error is set when the run failed; then it has no numbers.
	Error string `json:"error,omitempty"`

	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50US    int64   `json:"p50_us"`
	P90US    int64   `json:"p90_us"`
	P99US    int64   `json:"p99_us"`
	MaxUS    int64   `json:"max_us"`
	MeanUS   float64 `json:"mean_us"`
	// Errors counts wrk's socket errors and statuses >= 400.
	Errors int64 `json:"errors"`

	// CPU per request and in percent of one core over the window, per
	// group of processes (own utime + stime from /proc/<pid>/stat):
	// HAProxy's master and workers, the engine's docker-proxy of the
	// replicas' ports, the replicas' processes, pulsed.
	HAProxyCPUPerReqUS     float64 `json:"haproxy_cpu_per_req_us"`
	HAProxyCorePct         float64 `json:"haproxy_core_pct"`
	HAProxyProcs           int     `json:"haproxy_procs"`
	DockerProxyCPUPerReqUS float64 `json:"docker_proxy_cpu_per_req_us"`
	DockerProxyCorePct     float64 `json:"docker_proxy_core_pct"`
	ReplicaCPUPerReqUS     float64 `json:"replica_cpu_per_req_us"`
	ReplicaCorePct         float64 `json:"replica_core_pct"`
	PulsedCPUPerReqUS      float64 `json:"pulsed_cpu_per_req_us"`
	PulsedCorePct          float64 `json:"pulsed_core_pct"`
	// LostProcs counts sampled processes that exited during the window
	// (their CPU in it is lost). HAProxyChurn counts haproxy processes
	// that exited or started in it, Reloads pulsed's reloads of HAProxy in
	// it (/healthz; -1 unknown): pulsed reloads HAProxy whenever a function
	// is added to or removed from the engine, anyone's. Either makes the
	// run's HAProxy CPU incomplete (an exiting worker takes its CPU with it).
	LostProcs    int     `json:"lost_procs,omitempty"`
	HAProxyChurn int     `json:"haproxy_churn,omitempty"`
	Reloads      int     `json:"reloads"`
	WrkCorePct   float64 `json:"wrk_core_pct"`
	HostCorePct  float64 `json:"host_core_pct"`
	OtherCorePct float64 `json:"other_core_pct"` // host busy minus every group above and wrk
	StealCorePct float64 `json:"steal_core_pct"`

	// Balance stage: how long pulsed took from its start to routing to
	// every replica, what went wrong when it was stopped, and haproxy
	// processes that were still there haproxyLinger after it (killed).
	PulsedRouteS  float64 `json:"pulsed_route_s,omitempty"`
	StopError     string  `json:"stop_error,omitempty"`
	HAProxyKilled []int   `json:"haproxy_killed,omitempty"`
}

// gatewayPulsedStop is one stop of pulsed: SIGTERM, its exit, and how long
// haproxy processes of its state directory were still there after it
// exited (pulsed stops HAProxy on SIGTERM); those still there after
// haproxyLinger were killed.
type gatewayPulsedStop struct {
	Stage          string  `json:"stage"`
	Balance        string  `json:"balance,omitempty"`
	Exit           int     `json:"exit"`
	StopS          float64 `json:"stop_s"` // SIGTERM → pulsed exited
	HAProxyLingerS float64 `json:"haproxy_linger_s,omitempty"`
	Killed         []int   `json:"haproxy_killed,omitempty"`
	Error          string  `json:"error,omitempty"`
}

// gatewayScaleTrial is one +1 scale. Times after the new task turned
// running are in seconds from its status timestamp (the engine's clock,
// the same host's); the rest as named.
type gatewayScaleTrial struct {
	Trial int     `json:"trial"`
	From  int     `json:"from"`
	To    int     `json:"to"`
	Start string  `json:"start"`
	Load1 float64 `json:"load1"`
	// SteadyWaitS is how long the trial waited for pulsed's catalog to be
	// unchanged for its settle window and half a second; PhaseS the random
	// pause after that (0 to pulsed's slow poll), over which HostBusyPct is
	// the host's busy CPU in percent of one core, the background load
	// included.
	SteadyWaitS float64 `json:"steady_wait_s"`
	PhaseS      float64 `json:"phase_s"`
	HostBusyPct float64 `json:"host_busy_pct"`
	Error       string  `json:"error,omitempty"`
	TaskID      string  `json:"task_id,omitempty"`
	Server      string  `json:"server,omitempty"` // the HAProxy slot (s<N>) pointed at it

	ScaleCallS float64 `json:"scale_call_s"` // Swarm.Scale returned, from just before it
	// ScaleToRunningS is from just before Swarm.Scale to the task's
	// running timestamp: container start and its first health probe.
	ScaleToRunningS float64 `json:"scale_to_running_s"`
	// CatalogScaleS is from just before Swarm.Scale to pulsed's catalog
	// first showing the new desired replica count; LateNotice says that was
	// after the task was already running (pulsed polls a steady swarm
	// slowly, so it noticed the scale only then).
	CatalogScaleS float64 `json:"catalog_scale_s,omitempty"`
	LateNotice    bool    `json:"late_notice,omitempty"`
	SeenS         float64 `json:"seen_s"`    // the harness's task list poll first showed it running
	CatalogS      float64 `json:"catalog_s"` // pulsed's /v1/replicas first listed it
	AddedS        float64 `json:"added_s"`   // HAProxy's slot first pointed at it (left maintenance or re-pointed), in any state
	ReadyS        float64 `json:"ready_s"`   // its slot ready and up (ServerState.Serving)
	TrafficS      float64 `json:"traffic_s"` // its slot's stot first above the count before the scale
	Stot          int64   `json:"stot,omitempty"`
	// Requests of the background load during the trial, scale-down
	// included.
	BackgroundOK     int64 `json:"background_ok"`
	BackgroundFailed int64 `json:"background_failed"`
	// DownS is how long the scale back took (not a measurement).
	DownS float64 `json:"down_s,omitempty"`
}

// gatewayBackground is the scale stage's background load over the whole
// stage, and pulsed's reloads of HAProxy meanwhile (-1 unknown).
type gatewayBackground struct {
	OK      int64            `json:"ok"`
	Failed  int64            `json:"failed"`
	Why     map[string]int64 `json:"why,omitempty"`
	Reloads int              `json:"reloads"`
}

// gatewaySummary holds the medians.
type gatewaySummary struct {
	Variants []gatewayVariantSummary `json:"variants,omitempty"`
	Latency  gatewayLatency          `json:"latency"`
	Balance  gatewayBalance          `json:"balance"`
	Scale    gatewayScaleSummary     `json:"scale"`
}

// gatewayVariantSummary is one variant over its rounds: medians of the
// successful runs.
type gatewayVariantSummary struct {
	Stage    string   `json:"stage"`
	Variant  string   `json:"variant"`
	Path     string   `json:"path"`
	Conns    int      `json:"connections"`
	Balance  string   `json:"balance,omitempty"`
	Replicas int      `json:"replicas"`
	Runs     int      `json:"runs"`
	Failed   int      `json:"failed"`
	Flags    []string `json:"flags,omitempty"`

	Errors                 int64   `json:"errors"`
	RPS                    float64 `json:"rps"`
	RPSMin                 float64 `json:"rps_min"`
	RPSMax                 float64 `json:"rps_max"`
	P50US                  float64 `json:"p50_us"`
	P50MinUS               float64 `json:"p50_min_us"`
	P50MaxUS               float64 `json:"p50_max_us"`
	P99US                  float64 `json:"p99_us"`
	HAProxyCPUPerReqUS     float64 `json:"haproxy_cpu_per_req_us"`
	DockerProxyCPUPerReqUS float64 `json:"docker_proxy_cpu_per_req_us"`
	ReplicaCPUPerReqUS     float64 `json:"replica_cpu_per_req_us"`
	// Disturbed counts the runs during which HAProxy was reloaded (or its
	// processes changed); HAProxyCPUPerReqUS is the median of the others.
	Disturbed    int     `json:"disturbed_runs,omitempty"`
	WrkCorePct   float64 `json:"wrk_core_pct"`
	OtherCorePct float64 `json:"other_core_pct"`
	StealCorePct float64 `json:"steal_core_pct"`
	PulsedRouteS float64 `json:"pulsed_route_s,omitempty"`
}

func (s gatewayVariantSummary) flagged() bool { return len(s.Flags) > 0 }

// gatewayLatency compares the two paths of the latency stage.
type gatewayLatency struct {
	// OK: both c=1 variants have runs.
	OK bool `json:"ok"`
	// c=1: the medians of each path's p50 and p99 and their difference
	// (through HAProxy minus direct); AddedP50RoundsUS pairs the two
	// within each round.
	DirectP50US      float64   `json:"direct_p50_us"`
	GatewayP50US     float64   `json:"gateway_p50_us"`
	AddedP50US       float64   `json:"added_p50_us"`
	AddedP50RoundsUS []float64 `json:"added_p50_rounds_us,omitempty"`
	DirectP99US      float64   `json:"direct_p99_us"`
	GatewayP99US     float64   `json:"gateway_p99_us"`
	AddedP99US       float64   `json:"added_p99_us"`
	// c=50: throughput of each path, through HAProxy over direct, and
	// per round.
	HighOK         bool      `json:"high_ok"`
	DirectRPS      float64   `json:"direct_rps"`
	GatewayRPS     float64   `json:"gateway_rps"`
	RPSRatio       float64   `json:"rps_ratio"`
	RPSRatioRounds []float64 `json:"rps_ratio_rounds,omitempty"`
	DirectHighP99  float64   `json:"direct_c50_p99_us"`
	GatewayHighP99 float64   `json:"gateway_c50_p99_us"`
}

// gatewayBalance compares the balancing algorithms over 3 replicas.
type gatewayBalance struct {
	OK             bool      `json:"ok"`
	LeastConnRPS   float64   `json:"leastconn_rps"`
	RoundRobinRPS  float64   `json:"roundrobin_rps"`
	LeastConnP99   float64   `json:"leastconn_p99_us"`
	RoundRobinP99  float64   `json:"roundrobin_p99_us"`
	RPSRatio       float64   `json:"rps_ratio"` // leastconn over roundrobin
	RPSRatioRounds []float64 `json:"rps_ratio_rounds,omitempty"`
}

// gatewayScaleSummary summarizes the scale trials; times from the new
// task's running timestamp.
type gatewayScaleSummary struct {
	Trials           int      `json:"trials"`
	Failed           int      `json:"failed"`
	Flags            []string `json:"flags,omitempty"`
	ReadyS           float64  `json:"ready_s"`
	ReadyP90S        float64  `json:"ready_p90_s"`
	ReadyMinS        float64  `json:"ready_min_s"`
	ReadyMaxS        float64  `json:"ready_max_s"`
	TrafficS         float64  `json:"traffic_s"`
	SeenS            float64  `json:"seen_s"`
	CatalogS         float64  `json:"catalog_s"`
	AddedS           float64  `json:"added_s"`
	ScaleToRunningS  float64  `json:"scale_to_running_s"`
	CatalogScaleS    float64  `json:"catalog_scale_s"`
	BackgroundOK     int64    `json:"background_ok"`
	BackgroundFailed int64    `json:"background_failed"`
	// Late are the trials in which pulsed's catalog noticed the scale only
	// after the new task was running; LateReadyS and EarlyReadyS are the
	// median ready times of those and of the others.
	Late        int     `json:"late_notice_trials"`
	LateReadyS  float64 `json:"late_notice_ready_s,omitempty"`
	EarlyReadyS float64 `json:"early_notice_ready_s,omitempty"`
}

// summarizeGatewayRuns summarizes the runs per variant, in variants'
// order; variants that did not run are left out.
func summarizeGatewayRuns(variants []gwVariant, runs []gatewayRun) []gatewayVariantSummary {
	var out []gatewayVariantSummary
	for _, v := range variants {
		s := gatewayVariantSummary{Variant: v.Name, Path: v.Path, Conns: v.Conns, Balance: v.Balance}
		var ok, calm []gatewayRun // calm: HAProxy neither reloaded nor its processes changed
		for _, r := range runs {
			if r.Variant != v.Name {
				continue
			}
			s.Stage, s.Replicas = r.Stage, r.Replicas
			if !tally(fmt.Sprintf("round %d", r.Round), r.Error, 200, &s.Runs, &s.Failed, &s.Flags) {
				continue
			}
			s.Errors += r.Errors
			if r.Errors > 0 {
				s.Flags = append(s.Flags, fmt.Sprintf("round %d: %d request errors", r.Round, r.Errors))
			}
			ok = append(ok, r)
			if r.Reloads != 0 || r.HAProxyChurn > 0 {
				s.Disturbed++
			} else {
				calm = append(calm, r)
			}
		}
		if s.Runs+s.Failed == 0 {
			continue
		}
		if s.Runs > 0 {
			med := func(f func(gatewayRun) float64) float64 { return median(values(ok, f)) }
			rps, p50 := values(ok, func(r gatewayRun) float64 { return r.RPS }), values(ok, func(r gatewayRun) float64 { return float64(r.P50US) })
			s.RPS, s.RPSMin, s.RPSMax = median(rps), slices.Min(rps), slices.Max(rps)
			s.P50US, s.P50MinUS, s.P50MaxUS = median(p50), slices.Min(p50), slices.Max(p50)
			s.P99US = med(func(r gatewayRun) float64 { return float64(r.P99US) })
			// -1 (shown as "–") when every run was disturbed: JSON has no NaN.
			s.HAProxyCPUPerReqUS = medianOr(-1, values(calm, func(r gatewayRun) float64 { return r.HAProxyCPUPerReqUS }))
			s.DockerProxyCPUPerReqUS = med(func(r gatewayRun) float64 { return r.DockerProxyCPUPerReqUS })
			s.ReplicaCPUPerReqUS = med(func(r gatewayRun) float64 { return r.ReplicaCPUPerReqUS })
			s.WrkCorePct = med(func(r gatewayRun) float64 { return r.WrkCorePct })
			s.OtherCorePct = med(func(r gatewayRun) float64 { return r.OtherCorePct })
			s.StealCorePct = med(func(r gatewayRun) float64 { return r.StealCorePct })
			s.PulsedRouteS = medianOr(0, positive(values(ok, func(r gatewayRun) float64 { return r.PulsedRouteS })))
		}
		out = append(out, s)
	}
	return out
}

// pairByRound returns f(a, b) for each round in which both a and b ran
// without error, in round order.
func pairByRound(runs []gatewayRun, a, b string, f func(x, y gatewayRun) float64) []float64 {
	byRound := map[int]map[string]gatewayRun{}
	for _, r := range runs {
		if r.Error != "" || (r.Variant != a && r.Variant != b) {
			continue
		}
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]gatewayRun{}
		}
		byRound[r.Round][r.Variant] = r
	}
	var out []float64
	for _, k := range slices.Sorted(maps.Keys(byRound)) {
		x, okx := byRound[k][a]
		y, oky := byRound[k][b]
		if okx && oky {
			out = append(out, round3(f(x, y)))
		}
	}
	return out
}

func findVariant(sums []gatewayVariantSummary, name string) (gatewayVariantSummary, bool) {
	i := slices.IndexFunc(sums, func(s gatewayVariantSummary) bool { return s.Variant == name })
	if i < 0 {
		return gatewayVariantSummary{}, false
	}
	return sums[i], true
}

// bothRan returns the summaries of variants a and b, and whether both had
// a run without error.
func bothRan(sums []gatewayVariantSummary, a, b string) (x, y gatewayVariantSummary, ok bool) {
	x, okx := findVariant(sums, a)
	y, oky := findVariant(sums, b)
	return x, y, okx && oky && x.Runs > 0 && y.Runs > 0
}

// Variant names the comparisons read.
const (
	gwDirectLow   = "direct c=1"
	gwGatewayLow  = "gateway c=1"
	gwDirectHigh  = "direct c=50"
	gwGatewayHigh = "gateway c=50"
	gwLeastConn   = "leastconn"
	gwRoundRobin  = "roundrobin"
)

// compareGatewayLatency compares the paths of the latency stage.
func compareGatewayLatency(sums []gatewayVariantSummary, runs []gatewayRun) gatewayLatency {
	var l gatewayLatency
	if d, g, ok := bothRan(sums, gwDirectLow, gwGatewayLow); ok {
		l.OK = true
		l.DirectP50US, l.GatewayP50US, l.AddedP50US = d.P50US, g.P50US, g.P50US-d.P50US
		l.DirectP99US, l.GatewayP99US, l.AddedP99US = d.P99US, g.P99US, g.P99US-d.P99US
		l.AddedP50RoundsUS = pairByRound(runs, gwGatewayLow, gwDirectLow, func(x, y gatewayRun) float64 { return float64(x.P50US - y.P50US) })
	}
	if d, g, ok := bothRan(sums, gwDirectHigh, gwGatewayHigh); ok && d.RPS > 0 {
		l.HighOK = true
		l.DirectRPS, l.GatewayRPS, l.RPSRatio = d.RPS, g.RPS, round3(g.RPS/d.RPS)
		l.DirectHighP99, l.GatewayHighP99 = d.P99US, g.P99US
		l.RPSRatioRounds = pairByRound(runs, gwGatewayHigh, gwDirectHigh, func(x, y gatewayRun) float64 { return x.RPS / y.RPS })
	}
	return l
}

// compareGatewayBalance compares the balancing algorithms.
func compareGatewayBalance(sums []gatewayVariantSummary, runs []gatewayRun) gatewayBalance {
	var b gatewayBalance
	lc, rr, ok := bothRan(sums, gwLeastConn, gwRoundRobin)
	if !ok || rr.RPS <= 0 {
		return b
	}
	b.OK = true
	b.LeastConnRPS, b.RoundRobinRPS, b.RPSRatio = lc.RPS, rr.RPS, round3(lc.RPS/rr.RPS)
	b.LeastConnP99, b.RoundRobinP99 = lc.P99US, rr.P99US
	b.RPSRatioRounds = pairByRound(runs, gwLeastConn, gwRoundRobin, func(x, y gatewayRun) float64 { return x.RPS / y.RPS })
	return b
}

// summarizeGateway summarizes the runs and trials.
func summarizeGateway(runs []gatewayRun, scales []gatewayScaleTrial) gatewaySummary {
	sums := summarizeGatewayRuns(append(slices.Clone(gwLatencyVariants), gwBalanceVariants...), runs)
	return gatewaySummary{
		Variants: sums,
		Latency:  compareGatewayLatency(sums, runs),
		Balance:  compareGatewayBalance(sums, runs),
		Scale:    summarizeGatewayScale(scales),
	}
}

// summarizeGatewayScale summarizes the scale trials.
func summarizeGatewayScale(trials []gatewayScaleTrial) gatewayScaleSummary {
	var s gatewayScaleSummary
	var ok, late, early []gatewayScaleTrial
	for _, t := range trials {
		s.BackgroundOK += t.BackgroundOK
		s.BackgroundFailed += t.BackgroundFailed
		if !tally(fmt.Sprintf("trial %d", t.Trial), t.Error, 300, &s.Trials, &s.Failed, &s.Flags) {
			continue
		}
		ok = append(ok, t)
		if t.LateNotice {
			late = append(late, t)
		} else if t.CatalogScaleS > 0 {
			early = append(early, t)
		}
	}
	if s.Trials == 0 {
		return s
	}
	ready := func(t gatewayScaleTrial) float64 { return t.ReadyS }
	med := func(f func(gatewayScaleTrial) float64) float64 { return medianOr(0, positive(values(ok, f))) }
	readies := values(ok, ready)
	s.ReadyS, s.ReadyP90S = median(readies), percentile(readies, 90)
	s.ReadyMinS, s.ReadyMaxS = slices.Min(readies), slices.Max(readies)
	s.TrafficS = median(values(ok, func(t gatewayScaleTrial) float64 { return t.TrafficS }))
	s.SeenS = median(values(ok, func(t gatewayScaleTrial) float64 { return t.SeenS }))
	s.ScaleToRunningS = median(values(ok, func(t gatewayScaleTrial) float64 { return t.ScaleToRunningS }))
	s.CatalogS = med(func(t gatewayScaleTrial) float64 { return t.CatalogS })
	s.AddedS = med(func(t gatewayScaleTrial) float64 { return t.AddedS })
	s.CatalogScaleS = med(func(t gatewayScaleTrial) float64 { return t.CatalogScaleS })
	s.Late = len(late)
	s.LateReadyS, s.EarlyReadyS = medianOr(0, values(late, ready)), medianOr(0, values(early, ready))
	return s
}

// Goals of the gateway suite (from the issue).
const (
	gwLatencyGoalName = "added p50 latency through HAProxy at c=1 ≤ 60 µs"
	gwLatencyGoalUS   = 60
	gwScaleGoalName   = "task running → its server takes traffic ≤ 0.5 s (median)"
	gwScaleGoalS      = 0.5
)

// gatewayGoals checks the summaries against the goals. A goal over
// a variant with errors, or with failed trials, fails.
func gatewayGoals(s gatewaySummary) []goal {
	lat := goal{Name: gwLatencyGoalName, Unit: "µs", Limit: gwLatencyGoalUS}
	d, okd := findVariant(s.Variants, gwDirectLow)
	g, okg := findVariant(s.Variants, gwGatewayLow)
	switch {
	case !okd || !okg:
		lat.Status, lat.Note = skip, "the latency stage did not run"
	case !s.Latency.OK:
		lat.Status, lat.Note = fail, "every run of a c=1 variant failed"
	default:
		lat.Value = round3(s.Latency.AddedP50US)
		lat.Status = verdict(lat.Value, lat.Limit)
		lat.Note = fmt.Sprintf("p50 direct %.0f µs, through HAProxy %.0f µs", s.Latency.DirectP50US, s.Latency.GatewayP50US)
		if n := len(s.Latency.AddedP50RoundsUS); n > 1 {
			lat.Note += fmt.Sprintf("; per round %+.0f to %+.0f µs", slices.Min(s.Latency.AddedP50RoundsUS), slices.Max(s.Latency.AddedP50RoundsUS))
		}
		for _, v := range []gatewayVariantSummary{d, g} {
			if v.flagged() {
				lat.Status, lat.Note = fail, v.Variant+" had errors: "+v.Flags[0]
				break
			}
		}
	}

	sc := goal{Name: gwScaleGoalName, Unit: "s", Limit: gwScaleGoalS}
	x := s.Scale
	switch {
	case x.Trials+x.Failed == 0:
		sc.Status, sc.Note = skip, "the scale stage did not run"
	case x.Trials == 0:
		sc.Status, sc.Note = fail, "every trial failed: "+x.Flags[0]
	default:
		sc.Value = round3(x.ReadyS)
		sc.Status = verdict(sc.Value, sc.Limit)
		sc.Note = fmt.Sprintf("server ready and up; first session %.3f s (median of %d)", x.TrafficS, x.Trials)
		if x.Failed > 0 {
			sc.Status, sc.Note = fail, fmt.Sprintf("%d of %d trials failed: %s", x.Failed, x.Failed+x.Trials, x.Flags[0])
		}
	}
	return []goal{lat, sc}
}

// Thresholds above which gatewayNotes writes a note.
const (
	gwWrkSaturatedPct = 90
	gwOtherLoadPct    = 20
	gwStealPct        = 5
	gwP50SpreadUS     = 20 // per-round added p50 spread
	gwBalanceTie      = 0.03
)

// gatewayNotes are the notes that follow from the report: the balancing
// algorithm, what is on the request path, noise, failures.
func gatewayNotes(r gatewayReport) []string {
	var notes []string
	s := r.Summary
	if b := s.Balance; b.OK {
		n := fmt.Sprintf("balance over %d replicas at c=%d: leastconn %.0f rps (p99 %.0f µs), roundrobin %.0f rps (p99 %.0f µs); leastconn/roundrobin %.3f×",
			r.Config.BalanceReplicas, r.Config.HighConns, b.LeastConnRPS, b.LeastConnP99, b.RoundRobinRPS, b.RoundRobinP99, b.RPSRatio)
		if len(b.RPSRatioRounds) > 1 {
			n += fmt.Sprintf(" (per round %.2f–%.2f)", slices.Min(b.RPSRatioRounds), slices.Max(b.RPSRatioRounds))
		}
		switch {
		case b.RPSRatio >= 1+gwBalanceTie:
			n += ": leastconn is faster here (pulsed's default is roundrobin, chosen on the p99)"
		case b.RPSRatio > 1-gwBalanceTie:
			n += fmt.Sprintf(": within %.0f %% of each other on equal replicas and equal requests (leastconn would also steer around a slow or busy replica; pulsed's default is roundrobin, chosen on the p99)", 100*gwBalanceTie)
		default:
			n += ": roundrobin, pulsed's default, is faster here"
		}
		notes = append(notes, n)
	}
	if l := s.Latency; l.OK && len(l.AddedP50RoundsUS) > 1 && slices.Max(l.AddedP50RoundsUS)-slices.Min(l.AddedP50RoundsUS) > gwP50SpreadUS {
		notes = append(notes, fmt.Sprintf("added p50 at c=1 varied from %+.0f to %+.0f µs across rounds", slices.Min(l.AddedP50RoundsUS), slices.Max(l.AddedP50RoundsUS)))
	}
	for _, v := range s.Variants {
		if v.Runs > 0 && v.DockerProxyCPUPerReqUS > 0 && v.Path == pathDirect {
			n := fmt.Sprintf("both paths reach the replica through the engine's docker-proxy (its published port, called on loopback, where Docker's iptables rules do not apply): %.1f µs of CPU per request at %s",
				v.DockerProxyCPUPerReqUS, v.Variant)
			if h := gwHAProxyAt(s.Variants, v.Conns); h > 0 {
				n += fmt.Sprintf(", HAProxy %.1f µs through the gateway at the same load", h)
			}
			notes = append(notes, n)
			break
		}
	}
	disturbed, total := 0, 0
	for _, v := range s.Variants {
		disturbed += v.Disturbed
		total += v.Runs
	}
	if disturbed > 0 {
		notes = append(notes, fmt.Sprintf("HAProxy was reloaded during %d of %d runs: pulsed reloads it whenever a function is added to or removed from the engine, "+
			"anyone's (other functions came and went during this run); those runs' HAProxy CPU is left out of the medians (an exiting worker takes its CPU "+
			"with it) and their latencies are disturbed", disturbed, total))
	}
	if bg := r.Background; bg.Reloads > 0 {
		notes = append(notes, fmt.Sprintf("scale stage: pulsed reloaded HAProxy %d time(s) during it (other functions came and went), which also kept its catalog "+
			"polling fast more often than on a steady swarm: fewer trials noticed late than there would otherwise be", bg.Reloads))
	}
	if n := len(r.Engine.OtherFunctions); n > 0 {
		notes = append(notes, fmt.Sprintf("%d other function(s) on the engine (%s): pulsed routed them too, and HAProxy health-checked their replicas throughout", n, strings.Join(r.Engine.OtherFunctions, ", ")))
	}
	for _, v := range s.Variants {
		if v.Runs == 0 {
			continue
		}
		if v.WrkCorePct >= gwWrkSaturatedPct*float64(max(1, threadsOf(r, v))) {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f %% of a core: its rps and latency are bounded by the load generator", v.Variant, v.WrkCorePct))
		}
		if v.OtherCorePct >= gwOtherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f %% of a core during the runs (median)", v.Variant, v.OtherCorePct))
		}
		if v.StealCorePct >= gwStealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f %% of a core (median)", v.Variant, v.StealCorePct))
		}
		for _, f := range v.Flags {
			notes = append(notes, v.Variant+": "+f)
		}
	}
	if x := s.Scale; x.Trials > 0 {
		notes = append(notes, fmt.Sprintf("scale +1: from the task's running timestamp, the harness's 20 ms task poll saw it at %.3f s, pulsed's catalog listed it at %s, "+
			"HAProxy had its server at %s, ready and up at %.3f s, and its first session at %.3f s (medians); the scale itself took %.2f s to the task running "+
			"(container start and its first health probe)", x.SeenS, secOrDash(x.CatalogS, " s"), secOrDash(x.AddedS, " s"), x.ReadyS, x.TrafficS, x.ScaleToRunningS))
		if x.Late > 0 {
			n := fmt.Sprintf("scale +1: in %d of %d trials pulsed's catalog noticed the scale (the new desired count) only after the new task was already running: "+
				"on a steady swarm pulsed polls every second, and the harness scales through the Docker API as `pulse scale` does (pulsed's own scaler and deploy "+
				"API can ask for a poll at once), so the first poll after the scale can come after the task turned running (here %.2f s after the scale); "+
				"those trials took %.3f s to ready (median)",
				x.Late, x.Trials, x.ScaleToRunningS, x.LateReadyS)
			if x.EarlyReadyS > 0 {
				n += fmt.Sprintf(", the others, where fast polling was on when the task turned running, %.3f s", x.EarlyReadyS)
			}
			notes = append(notes, n)
		}
	}
	if bg := r.Background; bg.OK+bg.Failed > 0 {
		n := fmt.Sprintf("scale stage background load: %d requests answered 200, %d failed", bg.OK, bg.Failed)
		if bg.Failed > 0 {
			var why []string
			for _, k := range slices.Sorted(maps.Keys(bg.Why)) {
				why = append(why, fmt.Sprintf("%s ×%d", k, bg.Why[k]))
			}
			n += " (" + strings.Join(why, "; ") + ")"
		}
		notes = append(notes, n)
	}
	for _, f := range s.Scale.Flags {
		notes = append(notes, "scale +1: "+f)
	}
	return append(notes, pulsedStopNotes(r.PulsedStops)...)
}

// pulsedStopNotes sums up the stops of pulsed.
func pulsedStopNotes(stops []gatewayPulsedStop) []string {
	if len(stops) == 0 {
		return nil
	}
	var notes []string
	clean, lingered, killed := 0, 0, 0
	var longest, slowest float64
	for _, st := range stops {
		if st.Error == "" && st.Exit == 0 {
			clean++
		} else {
			notes = append(notes, fmt.Sprintf("pulsed stop (%s stage): %s", st.Stage, truncate(st.Error, 300)))
		}
		switch {
		case len(st.Killed) > 0:
			killed++
		case st.HAProxyLingerS > 0:
			lingered++
			longest = max(longest, st.HAProxyLingerS)
		}
		slowest = max(slowest, st.StopS)
	}
	n := fmt.Sprintf("pulsed stopped with SIGTERM %d time(s), exit 0 in %d, each within %.2f s", len(stops), clean, slowest)
	if lingered+killed == 0 {
		n += "; its HAProxy was always gone when pulsed exited"
	}
	if lingered > 0 {
		n += fmt.Sprintf("; in %d its HAProxy was still exiting after pulsed had exited (up to %.0f ms later)", lingered, 1000*longest)
	}
	if killed > 0 {
		n += fmt.Sprintf("; in %d its HAProxy was still running %g s after pulsed had exited and was killed", killed, haproxyLinger.Seconds())
	}
	if lingered+killed > 0 {
		n += " (pulsed's serve returns without waiting for its HAProxy supervisor to finish stopping HAProxy, so the process can exit before HAProxy is stopped, or even told to stop)"
	}
	return append([]string{n}, notes...)
}

// gwHAProxyAt is HAProxy's CPU per request through the gateway at conns.
func gwHAProxyAt(sums []gatewayVariantSummary, conns int) float64 {
	for _, s := range sums {
		if s.Path == pathGateway && s.Conns == conns && s.Balance == "" && s.Runs > 0 {
			return s.HAProxyCPUPerReqUS
		}
	}
	return 0
}

func threadsOf(r gatewayReport, v gatewayVariantSummary) int {
	if v.Conns == r.Config.HighConns {
		return r.Config.HighThreads
	}
	return r.Config.LowThreads
}

// secOrDash is v seconds to a thousandth with unit after it, "–" for 0
// (not measured).
func secOrDash(v float64, unit string) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", v) + unit
}
