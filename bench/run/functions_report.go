package main

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
