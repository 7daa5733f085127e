package main

// The cluster suite's report: what it records, the summaries and the goals.
// Everything here is pure; the rendering is in cluster_render.go.

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/pulsefaas/pulse/gateway"
)

// clusterReport is everything one run of the cluster suite produced.
type clusterReport struct {
	runHead
	Machine   machineInfo   `json:"machine"`
	Engine    string        `json:"engine"`     // this host's
	LabEngine string        `json:"lab_engine"` // the nodes'
	HAProxy   string        `json:"haproxy"`
	Artifacts []artifact    `json:"artifacts"`
	Nodes     []labNode     `json:"nodes"`
	Config    clusterConfig `json:"config"`

	Idle            *clusterIdle   `json:"idle,omitempty"`
	Push            *clusterPush   `json:"push,omitempty"`
	Saturation      []clusterSat   `json:"saturation,omitempty"`
	Fast            *pulsedSetting `json:"fast_setting,omitempty"` // the faster setting the saturation kept; nil: none
	Failover        []failTrial    `json:"failover,omitempty"`
	FailoverSummary []failSummary  `json:"failover_summary,omitempty"`
	reportEnd
}

// clusterConfig is the suite's configuration as recorded with the results.
type clusterConfig struct {
	Nodes            int             `json:"nodes"`
	HeartbeatS       float64         `json:"heartbeat_s"`
	Function         string          `json:"function"`
	Handler          string          `json:"handler"`
	Replicas         int             `json:"replicas"`
	FunctionTimeoutS float64         `json:"function_timeout_s"`
	ServerTimeoutS   float64         `json:"server_timeout_s"`  // HAProxy's: the function's + its margin
	ConnectTimeoutS  float64         `json:"connect_timeout_s"` // HAProxy's
	CheckFall        int             `json:"check_fall"`
	CheckInterval    string          `json:"check_interval_default"`
	CheckTimeout     string          `json:"check_timeout_default"`
	LoadRate         int             `json:"load_rate"`
	LoadMaxInflight  int             `json:"load_max_inflight"`
	Trials           int             `json:"trials"`
	DiagTrials       int             `json:"diagnostic_trials"`
	PollS            float64         `json:"poll_s"`
	Fault            string          `json:"fault"`
	Restore          string          `json:"restore"`
	FastCandidates   []pulsedSetting `json:"fast_candidates"`
	IdleWindowS      float64         `json:"idle_window_s"`
	SatWindowS       float64         `json:"saturation_window_s"`
	LabUpS           float64         `json:"lab_up_s"`
}

// Goal limits from the issue.
const (
	goalWindowS   = 3.0 // error window by request start, after a worker's fault
	goalRestoredS = 8.0 // every replica answering again through the gateway
	goalPushRatio = 1.3 // image to 3 nodes ÷ to 1 node
)

func newClusterReport(env suiteEnv, b *clusterBench) *clusterReport {
	d := gateway.DefaultRenderConfig()
	r := &clusterReport{runHead: newRunHead(suiteCluster, env.started)}
	r.Config = clusterConfig{
		Nodes: clusterNodes, HeartbeatS: clusterHeartbeat.Seconds(), Function: b.host,
		Handler:  "watchdog (fork mode) + a static C handler answering \"<host name>:<body>\" (the host name is the task's name)",
		Replicas: clusterReplicas, FunctionTimeoutS: clusterFnTimeout.Seconds(),
		ServerTimeoutS: (clusterFnTimeout + d.TimeoutMargin).Seconds(), ConnectTimeoutS: d.ConnectTimeout.Seconds(),
		CheckFall: d.CheckFall, CheckInterval: d.CheckInterval.String(), CheckTimeout: d.CheckTimeout.String(),
		LoadRate: clusterLoadRate, LoadMaxInflight: clusterLoadMax, Trials: b.trials, DiagTrials: b.diagTrials, PollS: failPoll.Seconds(),
		Fault: "the API calls of `docker kill` (SIGKILL) and `docker pause` on the node's container, on this host's engine; " +
			"the time of a fault is when the call was made",
		Restore: "docker start or unpause, wait until the manager lists every node Ready, then scale the function 3→4→3 " +
			"(Swarm places the 4th task on the node without one and removes a task from a node with two) and wait until pulsed routes " +
			"3 replicas on 3 nodes; Swarm does not move running tasks back by itself",
		FastCandidates: clusterFastCandidates, IdleWindowS: b.idleWindow.Seconds(), SatWindowS: b.satWin.Seconds(),
	}
	return r
}

// finish computes the summaries and goals from what was measured.
func (r *clusterReport) finish() {
	r.FailoverSummary = summarizeFailover(r.Failover)
	if r.Push != nil {
		r.Push.Summary = summarizePush(r.Push.Trials)
	}
	r.Goals = clusterGoals(*r)
}

// --- failover ---

// failTrial is one fault under load.
type failTrial struct {
	Setting string `json:"setting"`
	Fault   string `json:"fault"`
	Round   int    `json:"round"`
	Node    string `json:"node"`
	// CallS is how long the kill or pause call took (its start is the
	// fault's time, every _s below is after it).
	CallS        float64        `json:"call_s"`
	Requests     int            `json:"requests"`
	Skipped      int            `json:"skipped,omitempty"` // not sent: the load's in-flight limit was reached
	Failed       int            `json:"failed"`
	FailedAfter  int            `json:"failed_started_after_fault"`
	FailedByKind map[string]int `json:"failed_by_kind,omitempty"`
	// LastFailStartS is the start of the last failed request (negative: it
	// started before the fault); null when none failed. WindowS is it, or
	// 0 when no request that started after the fault failed.
	LastFailStartS secs `json:"last_failed_start_s"`
	WindowS        secs `json:"error_window_s"`
	// LeftS: no server of the function at the node's address UP in
	// HAProxy; DownS: the manager lists the node Down; RoutedS: pulsed
	// routes 3 replicas, none on the node; RestoredS: and each of them
	// has answered a request (started after the fault) through the
	// gateway. null: not seen within the trial's bound.
	LeftS     secs   `json:"left_haproxy_s"`
	DownS     secs   `json:"node_down_s"`
	RoutedS   secs   `json:"routed_s"`
	RestoredS secs   `json:"restored_s"`
	NewNode   string `json:"new_replica_node,omitempty"` // where the replacement runs
	// RunningS is when Swarm reported the replacement running (its task
	// status's time); RoutedS − RunningS is pulsed's part.
	RunningS secs `json:"replacement_running_s"`
	// BackS is how long the node took to be Ready again after start or
	// unpause; RebalanceS the 3→4→3 after it.
	BackS      secs   `json:"node_back_s"`
	RebalanceS secs   `json:"rebalance_s"`
	Error      string `json:"error,omitempty"`
}

// failSummary is the medians of one setting's trials of one fault.
type failSummary struct {
	Setting   string  `json:"setting"`
	Fault     string  `json:"fault"`
	Trials    int     `json:"trials"`
	Complete  int     `json:"complete"` // trials without an error
	WindowS   secs    `json:"error_window_s"`
	WindowMin secs    `json:"error_window_min_s"`
	WindowMax secs    `json:"error_window_max_s"`
	Restored  secs    `json:"restored_s"`
	RestMin   secs    `json:"restored_min_s"`
	RestMax   secs    `json:"restored_max_s"`
	Failed    float64 `json:"failed"`
	FailedMin int     `json:"failed_min"`
	FailedMax int     `json:"failed_max"`
	LeftS     secs    `json:"left_haproxy_s"`
	DownS     secs    `json:"node_down_s"`
	RoutedS   secs    `json:"routed_s"`
	RunningS  secs    `json:"replacement_running_s"`
	CallS     secs    `json:"call_s"`
}

// summarizeFailTrial fills tr's request figures from the load's records,
// t0 being the fault.
func summarizeFailTrial(tr *failTrial, reqs []hostReq, t0 time.Time) {
	tr.Requests, tr.Failed, tr.FailedAfter, tr.FailedByKind = len(reqs), 0, 0, nil
	tr.LastFailStartS, tr.WindowS = secs(math.NaN()), 0
	var last time.Time
	for _, r := range reqs {
		if r.Err == "" {
			continue
		}
		tr.Failed++
		if tr.FailedByKind == nil {
			tr.FailedByKind = map[string]int{}
		}
		tr.FailedByKind[r.Err]++
		if !r.Start.Before(t0) {
			tr.FailedAfter++
		}
		if last.IsZero() || r.Start.After(last) {
			last = r.Start
		}
	}
	if !last.IsZero() {
		d := round3(last.Sub(t0).Seconds())
		tr.LastFailStartS, tr.WindowS = secs(d), secs(math.Max(0, d))
	}
}

// r3 rounds a finite s to the millisecond, as the JSON holds it, so that
// the report renders the same from the run and from its JSON.
func r3(s secs) secs {
	if f := float64(s); !math.IsNaN(f) && !math.IsInf(f, 0) {
		return secs(round3(f))
	}
	return s
}

// summarizeFailover groups the trials by setting and fault, in the order
// they ran.
func summarizeFailover(trials []failTrial) []failSummary {
	keys, groups := groupBy(trials, func(t failTrial) string { return t.Setting + "\x00" + t.Fault })
	var out []failSummary
	for _, k := range keys {
		ts := groups[k]
		s := failSummary{Setting: ts[0].Setting, Fault: ts[0].Fault, Trials: len(ts)}
		var ok []failTrial
		for _, t := range ts {
			if t.Error == "" {
				ok = append(ok, t)
			}
		}
		s.Complete = len(ok)
		// A trial that failed counts only where it measured something.
		win := finite(values(ts, func(t failTrial) float64 { return float64(t.WindowS) }))
		rest := values(ts, func(t failTrial) float64 { return inf(float64(t.RestoredS)) })
		failed := values(ts, func(t failTrial) float64 { return float64(t.Failed) })
		s.WindowS, s.WindowMin, s.WindowMax = r3(secs(medianOr(math.NaN(), win))), secs(minOf(win)), secs(maxOf(win))
		s.Restored, s.RestMin, s.RestMax = r3(secs(medianOr(math.NaN(), rest))), secs(minOf(rest)), secs(maxOf(rest))
		s.Failed = medianOr(math.NaN(), failed)
		if len(failed) > 0 {
			s.FailedMin, s.FailedMax = int(minOf(failed)), int(maxOf(failed))
		}
		med := func(f func(failTrial) secs) secs {
			return r3(secs(medianOr(math.NaN(), finite(values(ts, func(t failTrial) float64 { return float64(f(t)) })))))
		}
		s.LeftS = med(func(t failTrial) secs { return t.LeftS })
		s.DownS = med(func(t failTrial) secs { return t.DownS })
		s.RoutedS = med(func(t failTrial) secs { return t.RoutedS })
		s.RunningS = med(func(t failTrial) secs { return t.RunningS })
		s.CallS = med(func(t failTrial) secs { return secs(t.CallS) })
		out = append(out, s)
	}
	return out
}

// finite is xs without NaN and infinities.
func finite(xs []float64) []float64 {
	return slices.DeleteFunc(slices.Clone(xs), func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) })
}

// inf is x, or +Inf when x is NaN: a trial that never restored counts as
// infinitely slow in the median.
func inf(x float64) float64 {
	if math.IsNaN(x) {
		return math.Inf(1)
	}
	return x
}

func minOf(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Min(xs)
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return slices.Max(xs)
}

// --- goals ---

// clusterGoals are the goals: for each pulsed setting measured and
// each fault, the error window and the time until every replica answers
// again; the push ratio; the bytes a one-function-layer change sends (and
// its times, reported only); the idle cost, reported only.
func clusterGoals(r clusterReport) []goal {
	var gs []goal
	for _, s := range r.FailoverSummary {
		what := fmt.Sprintf("%s a worker, pulsed %s", faultVerb(s.Fault), s.Setting)
		note := fmt.Sprintf("median of %d (%d complete); %.0f failed requests (%d–%d); servers out of HAProxy +%s, node Down +%s",
			s.Trials, s.Complete, s.Failed, s.FailedMin, s.FailedMax, fmtS(s.LeftS), fmtS(s.DownS))
		gs = append(gs,
			secsGoal(what+": error window by request start (start of the last failed request − fault)", s.WindowS, goalWindowS,
				note+fmt.Sprintf("; range %s–%s", fmtS(s.WindowMin), fmtS(s.WindowMax))),
			secsGoal(what+": every replica answering again through the gateway (3 routed, none on the node)", s.Restored, goalRestoredS,
				fmt.Sprintf("median of %d; range %s–%s; 3 routed +%s", s.Trials, fmtS(s.RestMin), fmtS(s.RestMax), fmtS(s.RoutedS))))
	}
	if r.Push != nil {
		one, three := pushFind(r.Push.Summary, pushKindPush, pushDefault, 1), pushFind(r.Push.Summary, pushKindPush, pushDefault, clusterNodes)
		if one != nil && three != nil {
			ratio := three.WallS / one.WallS
			g := goal{Name: fmt.Sprintf("image push to %d nodes in parallel ≤ 1.3× one node (ClusterDistributor over provision SSH engines, %d MiB payload, median of %d)",
				clusterNodes, r.Push.PayloadBytes>>20, three.Trials), Value: round3(ratio), Limit: goalPushRatio, Unit: "×",
				Note: fmt.Sprintf("%.2f s vs %.2f s", three.WallS, one.WallS)}
			if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
				g.Status, g.NoValue, g.Value = fail, true, 0
			} else {
				g.Status = verdict(ratio, goalPushRatio)
			}
			gs = append(gs, g)
		}
		gs = append(gs, layerGoals(r.Push.Summary)...)
	}
	if i := r.Idle; i != nil {
		gs = append(gs, goal{Name: fmt.Sprintf("idle: CPU of the %d nodes + pulsed + HAProxy over %.0f s (one function of 3 replicas)", len(i.Nodes), i.WindowS),
			Value: i.TotalCPUPct, Unit: "%", Status: info, Note: fmt.Sprintf("of one core; nodes %.2f %%, pulsed %.2f %%, HAProxy %.2f %%", i.NodesCPUPct, i.PulsedCPUPct, i.HAProxyCPUPct)},
			goal{Name: "idle: memory of the nodes (memory.usage_in_bytes, page cache included)", Value: i.NodesMemMB, Unit: "MB", Status: info,
				Note: fmt.Sprintf("RSS %.1f MB; pulsed %.1f MB, HAProxy %.1f MB RSS", i.NodesRSSMB, i.PulsedRSSMB, i.HAProxyRSSMB)})
	}
	return gs
}

// secsGoal is a goal in seconds; a median that is NaN (nothing measured) or
// infinite (a trial never got there) fails without a value.
func secsGoal(name string, v secs, limit float64, note string) goal {
	g := goal{Name: name, Value: round3(float64(v)), Limit: limit, Unit: "s", Note: note}
	switch f := float64(v); {
	case math.IsNaN(f) || math.IsInf(f, 0):
		g.Status, g.NoValue, g.Value = fail, true, 0
	default:
		g.Status = verdict(f, limit)
	}
	return g
}

func faultVerb(f string) string {
	if f == faultPause {
		return "docker pause of"
	}
	return "docker kill of"
}

// fmtS formats seconds, "–" when not measured.
func fmtS(s secs) string {
	f := float64(s)
	switch {
	case math.IsNaN(f):
		return "–"
	case math.IsInf(f, 0):
		return "never"
	}
	return fmt.Sprintf("%.2f s", f)
}

// --- push ---

// Kinds and variants of the push trials.
const (
	pushKindPush = "push"  // function.ClusterDistributor.EnsureAll: dial, inspect, load, check
	pushKindSSH  = "ssh"   // the SSH transport alone: the archive's bytes to `cat > /dev/null`
	pushKindLoad = "local" // `docker load -i` of the archive inside the node (docker exec): no SSH
	// pushKindLayer is the row "one function layer changed against a full
	// image" (cluster_layer.go): a push like pushKindPush's of a two-layer
	// image, variant layerFull or layerThin.
	pushKindLayer = "layer"
	pushDefault   = "provision (x/crypto default cipher order: aes128-gcm)"
	pushLimited   = "provision, at most 2 loads at once"
	pushLocal     = "docker load in the node"
)

// clusterPush is the push stage's results.
type clusterPush struct {
	PayloadBytes int    `json:"payload_bytes"`
	ArchiveBytes int    `json:"archive_bytes"`
	Dial         string `json:"dial"`
	// LayerChange is why the row "one function layer changed against a
	// full image" was not measured: runs from before images had two
	// layers say so; empty when it was (Layer, the pushKindLayer trials).
	LayerChange string           `json:"layer_change,omitempty"`
	Layer       *pushLayerImages `json:"layer_images,omitempty"`
	Trials      []pushTrial      `json:"trials"`
	Summary     []pushSummary    `json:"summary"`
}

// pushTrial is one push (or one of its parts) to Nodes nodes.
type pushTrial struct {
	Kind    string `json:"kind"`
	Variant string `json:"variant"`
	Nodes   int    `json:"nodes"`
	Round   int    `json:"round"`
	// WallS is the operation's time: EnsureAll (its Engines call, SSH
	// dials and engine pings included: DialS), the transfers, the loads.
	WallS float64   `json:"wall_s"`
	DialS float64   `json:"dial_s,omitempty"`
	NodeS []float64 `json:"node_s,omitempty"` // each node's part (NodeResult.Elapsed), by node name
	// Loads are the push's results on each node, by node name.
	Loads []pushLoad `json:"loads,omitempty"`
	// The profile over SpanS (the operation and its readings): CPU of this
	// process, of each node, the machine's busy, iowait and stolen time in
	// cores, busy time of neither (other processes: the host's engine for
	// docker exec, other work on the machine) and disk writes.
	SpanS       float64       `json:"span_s"`
	HostCPUS    float64       `json:"host_cpu_s"`
	NodeCPU     []pushNodeCPU `json:"node_cpu"`
	BusyCores   float64       `json:"busy_cores"`
	IOWaitCores float64       `json:"iowait_cores"`
	StealCores  float64       `json:"steal_cores"`
	OtherCPUS   float64       `json:"other_cpu_s"`
	DiskWriteMB float64       `json:"disk_write_mb"`
	Error       string        `json:"error,omitempty"`
}

// pushLoad is what function.ClusterDistributor did on one node: its
// outcome, and how the image was sent (function.LoadReport).
type pushLoad struct {
	Node      string `json:"node"`
	Outcome   string `json:"outcome"`
	Thin      bool   `json:"thin"`
	SentBytes int64  `json:"sent_bytes"`
	FullBytes int64  `json:"full_bytes"`
	Fallback  string `json:"fallback,omitempty"`
}

// pushNodeCPU is one node's CPU in a trial, and by process group.
type pushNodeCPU struct {
	Node    string             `json:"node"`
	CPUS    float64            `json:"cpu_s"`
	ByGroup map[string]float64 `json:"by_group"`
}

// pushSummary is the medians of one kind, variant and node count.
type pushSummary struct {
	Kind    string  `json:"kind"`
	Variant string  `json:"variant"`
	Nodes   int     `json:"nodes"`
	Trials  int     `json:"trials"`
	Failed  int     `json:"failed"`
	WallS   float64 `json:"wall_s"`
	WallMin float64 `json:"wall_min_s"`
	WallMax float64 `json:"wall_max_s"`
	DialS   float64 `json:"dial_s"`
	// SlowestS is the slowest node's part (inspect, load, check: after
	// the dials).
	SlowestS float64 `json:"slowest_node_s,omitempty"`
	HostCPUS float64 `json:"host_cpu_s"`
	NodeCPUS float64 `json:"node_cpu_s"` // all nodes
	// ByGroup sums the nodes' groups (medians of the sums).
	ByGroup     map[string]float64 `json:"by_group"`
	BusyCores   float64            `json:"busy_cores"`
	IOWaitCores float64            `json:"iowait_cores"`
	OtherCPUS   float64            `json:"other_cpu_s"`
	// MachineCPUS is the whole machine's busy CPU over the trial in
	// seconds: divided by its cores, the least wall time it allows.
	MachineCPUS float64 `json:"machine_cpu_s"`
	DiskWriteMB float64 `json:"disk_write_mb"`
	// Loads counts the nodes' loads of every trial, ThinLoads those that
	// were thin; SentMaxBytes is the most a node was sent in a trial that
	// did not fail, FullBytes the largest full archive among them.
	Loads        int   `json:"loads,omitempty"`
	ThinLoads    int   `json:"thin_loads,omitempty"`
	SentMaxBytes int64 `json:"sent_max_bytes,omitempty"`
	FullBytes    int64 `json:"full_bytes,omitempty"`
}

// summarizePush groups the trials by kind, variant and nodes, in the order
// they first ran; a failed trial is counted, not summed.
func summarizePush(trials []pushTrial) []pushSummary {
	keys, groups := groupBy(trials, func(t pushTrial) string { return fmt.Sprintf("%s\x00%s\x00%d", t.Kind, t.Variant, t.Nodes) })
	var out []pushSummary
	for _, k := range keys {
		ts := groups[k]
		s := pushSummary{Kind: ts[0].Kind, Variant: ts[0].Variant, Nodes: ts[0].Nodes, Trials: len(ts), ByGroup: map[string]float64{}}
		var ok []pushTrial
		for _, t := range ts {
			for _, l := range t.Loads {
				s.Loads++
				if l.Thin {
					s.ThinLoads++
				}
				if t.Error == "" {
					s.SentMaxBytes, s.FullBytes = max(s.SentMaxBytes, l.SentBytes), max(s.FullBytes, l.FullBytes)
				}
			}
			if t.Error != "" {
				s.Failed++
				continue
			}
			ok = append(ok, t)
		}
		if len(ok) == 0 { // every trial failed: no figures (JSON has no NaN)
			out = append(out, s)
			continue
		}
		med := func(f func(pushTrial) float64) float64 { return round3(medianOr(math.NaN(), values(ok, f))) }
		s.WallS = med(func(t pushTrial) float64 { return t.WallS })
		walls := values(ok, func(t pushTrial) float64 { return t.WallS })
		s.WallMin, s.WallMax = minOf(walls), maxOf(walls)
		s.DialS = med(func(t pushTrial) float64 { return t.DialS })
		s.SlowestS = med(func(t pushTrial) float64 { return maxOf(append([]float64{0}, t.NodeS...)) })
		s.MachineCPUS = med(func(t pushTrial) float64 { return t.BusyCores * t.SpanS })
		s.HostCPUS = med(func(t pushTrial) float64 { return t.HostCPUS })
		s.NodeCPUS = med(func(t pushTrial) float64 { return nodeSum(t, "") })
		for _, g := range nodeGroups {
			s.ByGroup[g] = med(func(t pushTrial) float64 { return nodeSum(t, g) })
		}
		s.BusyCores = med(func(t pushTrial) float64 { return t.BusyCores })
		s.IOWaitCores = med(func(t pushTrial) float64 { return t.IOWaitCores })
		s.OtherCPUS = med(func(t pushTrial) float64 { return t.OtherCPUS })
		s.DiskWriteMB = med(func(t pushTrial) float64 { return t.DiskWriteMB })
		out = append(out, s)
	}
	return out
}

// nodeSum is the CPU of t's nodes: all of it, or group's.
func nodeSum(t pushTrial, group string) float64 {
	var s float64
	for _, n := range t.NodeCPU {
		if group == "" {
			s += n.CPUS
		} else {
			s += n.ByGroup[group]
		}
	}
	return s
}

// pushFind is the summary of kind, variant and nodes, nil if none.
func pushFind(ss []pushSummary, kind, variant string, nodes int) *pushSummary {
	for i := range ss {
		if ss[i].Kind == kind && ss[i].Variant == variant && ss[i].Nodes == nodes {
			return &ss[i]
		}
	}
	return nil
}

// --- idle ---

// clusterIdle is the lab's idle cost.
type clusterIdle struct {
	WindowS       float64    `json:"window_s"`
	Setting       string     `json:"pulsed_setting"`
	Nodes         []idleNode `json:"nodes"`
	NodesCPUPct   float64    `json:"nodes_cpu_pct"`
	PulsedCPUPct  float64    `json:"pulsed_cpu_pct"`
	HAProxyCPUPct float64    `json:"haproxy_cpu_pct"`
	TotalCPUPct   float64    `json:"total_cpu_pct"` // of one core: nodes + pulsed + HAProxy
	NodesMemMB    float64    `json:"nodes_mem_mb"`
	NodesRSSMB    float64    `json:"nodes_rss_mb"`
	PulsedRSSMB   float64    `json:"pulsed_rss_mb"`
	HAProxyRSSMB  float64    `json:"haproxy_rss_mb"`
	HAProxyProcs  int        `json:"haproxy_processes"`
	// HostBusyPct is the whole machine's busy CPU over the window, in % of
	// one core: the lab and whatever else ran.
	HostBusyPct float64 `json:"host_busy_pct"`
}

// idleNode is one node's idle cost: CPU in % of one core, memory from its
// cgroup (memory.usage_in_bytes, page cache included; total_rss and
// total_cache of memory.stat), in MB.
type idleNode struct {
	Node    string  `json:"node"`
	Tasks   int     `json:"tasks"` // the function's replicas on it
	CPUPct  float64 `json:"cpu_pct"`
	MemMB   float64 `json:"mem_usage_mb"`
	RSSMB   float64 `json:"rss_mb"`
	CacheMB float64 `json:"cache_mb"`
	Procs   int     `json:"processes"`
}
