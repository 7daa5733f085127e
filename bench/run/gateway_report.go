package main

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
