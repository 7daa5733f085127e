package main

// The soak suite's report: the schedule, the per-second and per-minute
// series, connection reuse per server, the goals and the rendering; the
// attribution of failed requests to HAProxy's servers and the replicas
// behind them is in soak_attrib.go, CPU per request in soak_cpu.go.
// Everything here is pure.

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// soakReport is everything one run of the soak suite produced.
type soakReport struct {
	labHead
	Config soakConfig `json:"config"`

	// Fair and Saturation are the parts before the soak, on pulsed's first
	// lifetime at its defaults (no request log).
	Fair       soakFair `json:"fair_cpu"`
	Saturation soakSat  `json:"saturation"`

	T0       string        `json:"t0"` // the soak's start, RFC 3339 with nanoseconds; every _s of the soak is after it
	Phases   []soakPhase   `json:"phases"`
	Events   []soakEvent   `json:"events"`
	Seconds  []soakSecond  `json:"seconds"`
	Minutes  []soakMinute  `json:"minutes"`
	Servers  []soakServer  `json:"servers"`
	Failures []soakFailure `json:"failures"`
	Summary  soakSummary   `json:"summary"`
	// HAProxyEvents are the non-request lines HAProxy logged (servers
	// going down or up, ...), seconds after t0.
	HAProxyEvents []soakLogEvent `json:"haproxy_events,omitempty"`
	Picture       string         `json:"picture,omitempty"` // the PNG beside the JSON
	reportEnd
}

// soakConfig is the suite's configuration as recorded with the results.
type soakConfig struct {
	DurationS    float64  `json:"duration_s"`
	StepS        float64  `json:"step_s"`
	Function     string   `json:"function"`
	Handler      string   `json:"handler"`
	Metric       string   `json:"metric"`
	Target       float64  `json:"target"`
	Min          int      `json:"min"`
	Max          int      `json:"max"`
	TimeoutS     float64  `json:"timeout_s"`
	DrainGraceS  float64  `json:"drain_grace_s"`
	BodyBytes    int      `json:"body_bytes"`
	CompareConns int      `json:"compare_connections"`
	CatalogPollS float64  `json:"catalog_poll_s"`
	StatPollS    float64  `json:"stat_poll_s"`
	PulsedEnv    []string `json:"pulsed_env"`
	HAProxyLog   string   `json:"haproxy_log"`
}

// Phases of the schedule.
const (
	soakPhaseStep   = "step"        // through the gateway, connections stepping
	soakPhaseGwCPU  = "gateway CPU" // through the gateway, the CPU comparison's first half
	soakPhaseDirect = "direct CPU"  // straight to one replica, its second half
)

// soakPhase is one minute of load.
type soakPhase struct {
	Name   string  `json:"name"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	Conns  int     `json:"connections"`
	Direct bool    `json:"direct,omitempty"`
	Addr   string  `json:"addr,omitempty"` // direct: the replica's address
	Task   string  `json:"task,omitempty"` // direct: its task
}

// Events the picture marks.
const (
	soakEventUpdate     = "rolling update"
	soakEventUpdateDone = "rolling update done"
	soakEventKill       = "replica killed"
)

// soakEvent is something the harness did (or saw finish) during the load.
type soakEvent struct {
	Name   string  `json:"name"`
	AtS    float64 `json:"at_s"`
	Detail string  `json:"detail,omitempty"`
	Task   string  `json:"task,omitempty"`
	Addr   string  `json:"addr,omitempty"`
	Server string  `json:"server,omitempty"`
}

// soakLogEvent is a non-request line of HAProxy's log.
type soakLogEvent struct {
	AtS  float64 `json:"at_s"`
	Line string  `json:"line"`
}

// soakPattern is the connections of the stepping minutes, in order
// (repeated if the run is longer); the last stepping minute is always
// soakCompareConns so that the CPU comparison starts from a steady load.
var soakPattern = []int{4, 16, 32, 16, 48, 8, 32, 16}

const (
	soakStep         = time.Minute
	soakCompareConns = 16
	soakMinDuration  = 3 * time.Minute
	// Where in the stepping part the rolling update and the kill land:
	// for 8 stepping minutes, 4:30 (at 48 connections) and 6:30 (at 32).
	soakUpdateAt = 0.5625
	soakKillAt   = 0.8125
)

// soakSchedule returns the phases of a run of d (whole minutes, at least
// soakMinDuration): stepping minutes through the gateway, then a minute
// through the gateway and a minute straight to one replica at the same
// connections (the CPU comparison); and when, from t0, the rolling update
// and the kill happen.
func soakSchedule(d time.Duration) (phases []soakPhase, update, kill time.Duration, err error) {
	if d < soakMinDuration || d%soakStep != 0 {
		return nil, 0, 0, fmt.Errorf("soak duration %s: want whole minutes, at least %s", d, soakMinDuration)
	}
	n := int(d / soakStep)
	stepping := n - 2
	at := func(i int) float64 { return float64(i) * soakStep.Seconds() }
	for i := range stepping {
		c := soakPattern[i%len(soakPattern)]
		if i == stepping-1 {
			c = soakCompareConns
		}
		phases = append(phases, soakPhase{Name: soakPhaseStep, StartS: at(i), EndS: at(i + 1), Conns: c})
	}
	phases = append(phases,
		soakPhase{Name: soakPhaseGwCPU, StartS: at(stepping), EndS: at(stepping + 1), Conns: soakCompareConns},
		soakPhase{Name: soakPhaseDirect, StartS: at(stepping + 1), EndS: at(n), Conns: soakCompareConns, Direct: true})
	part := time.Duration(stepping) * soakStep
	round := func(f float64) time.Duration {
		return (time.Duration(f*float64(part)) + time.Second/2).Truncate(time.Second)
	}
	return phases, round(soakUpdateAt), round(soakKillAt), nil
}

// phaseIndex returns the index of the phase running at s seconds, or -1.
func phaseIndex(phases []soakPhase, s float64) int {
	return slices.IndexFunc(phases, func(p soakPhase) bool { return s >= p.StartS && s < p.EndS })
}

// phaseAt returns the phase running at s seconds, or nil.
func phaseAt(phases []soakPhase, s float64) *soakPhase {
	if i := phaseIndex(phases, s); i >= 0 {
		return &phases[i]
	}
	return nil
}

// --- the client's records ---

// soakSecond is one second of the run.
type soakSecond struct {
	T        int     `json:"t"`
	Conns    int     `json:"conns"` // offered connections
	Direct   bool    `json:"direct,omitempty"`
	Started  int     `json:"started"`
	Answered int     `json:"answered"`          // answers (any status) completed in this second
	Failed   int     `json:"failed"`            // of the requests started in this second
	Excused  int     `json:"excused,omitempty"` // of those, in flight on the killed replica at the kill
	P50MS    float64 `json:"p50_ms"`            // of the requests started in this second
	P99MS    float64 `json:"p99_ms"`
	// From pulsed's catalog (the last poll in the second): replicas
	// running and not draining, draining, and routed by the gateway.
	Replicas int `json:"replicas"`
	Draining int `json:"draining"`
	Routed   int `json:"routed"`
	Desired  int `json:"desired"`
	// The host: TIME_WAIT sockets and busy CPU (% of the whole host).
	TimeWait int     `json:"time_wait"`
	BusyPct  float64 `json:"busy_pct"`
}

// soakMinute summarises one phase.
type soakMinute struct {
	Phase       string  `json:"phase"`
	StartS      float64 `json:"start_s"`
	Conns       int     `json:"connections"`
	Direct      bool    `json:"direct,omitempty"`
	Requests    int64   `json:"requests"`
	Failed      int64   `json:"failed"`
	Excused     int64   `json:"excused"`
	RPS         float64 `json:"rps"` // answers per second
	P50MS       float64 `json:"p50_ms"`
	P99MS       float64 `json:"p99_ms"`
	MaxMS       float64 `json:"max_ms"`
	MaxReplicas int     `json:"max_replicas"`
	Events      string  `json:"events,omitempty"`
}

// soakTally is the requests that started in one bucket (a second, a
// phase): how many, failed, excused, answered (any status), and their
// latencies, sorted.
type soakTally struct {
	requests, failed, excused, answered int64
	lat                                 []int32
}

// ms is the nearest-rank p-th percentile of the latencies, in ms.
func (t soakTally) ms(p float64) float64 { return float64(nearestRank(t.lat, p)) / 1000 }

// tallyByStart counts recs into n buckets by start time; bucket returns a
// request's, outside [0, n) for none. excused holds the keys of the excused
// requests.
func tallyByStart(recs []loadReq, excused map[soakKey]bool, n int, bucket func(startNS int64) int) []soakTally {
	out := make([]soakTally, n)
	for _, r := range recs {
		i := bucket(r.StartNS)
		if i < 0 || i >= n {
			continue
		}
		t := &out[i]
		t.requests++
		t.lat = append(t.lat, r.LatencyUS)
		if r.Err != reqOK {
			t.failed++
			if excused[keyOf(r)] {
				t.excused++
			}
		}
		if r.Status != 0 {
			t.answered++
		}
	}
	for i := range out {
		slices.Sort(out[i].lat)
	}
	return out
}

// soakSeconds buckets the requests by second: started, failed and excused
// (by their start), latency percentiles (by start), answered (by their
// end); n is the number of seconds.
func soakSeconds(recs []loadReq, excused map[soakKey]bool, phases []soakPhase, n int) []soakSecond {
	second := func(ns int64) int { return int(ns / int64(time.Second)) }
	out := make([]soakSecond, n)
	for i, t := range tallyByStart(recs, excused, n, second) {
		out[i] = soakSecond{T: i, Started: int(t.requests), Failed: int(t.failed), Excused: int(t.excused), P50MS: t.ms(50), P99MS: t.ms(99)}
		if p := phaseAt(phases, float64(i)); p != nil {
			out[i].Conns, out[i].Direct = p.Conns, p.Direct
		}
	}
	for _, r := range recs {
		s, e := second(r.StartNS), second(r.StartNS+int64(r.LatencyUS)*1000)
		if r.Status != 0 && s >= 0 && s < n && e >= 0 && e < n {
			out[e].Answered++
		}
	}
	return out
}

// soakKey identifies a request among the records.
type soakKey struct {
	StartNS int64
	Port    uint16
}

func keyOf(r loadReq) soakKey { return soakKey{r.StartNS, r.Port} }

// soakMinutes summarises the requests per phase (by start time).
func soakMinutes(recs []loadReq, excused map[soakKey]bool, phases []soakPhase, secs []soakSecond, events []soakEvent) []soakMinute {
	ts := tallyByStart(recs, excused, len(phases), func(ns int64) int { return phaseIndex(phases, float64(ns)/1e9) })
	out := make([]soakMinute, len(phases))
	for i, p := range phases {
		t := ts[i]
		m := soakMinute{Phase: p.Name, StartS: p.StartS, Conns: p.Conns, Direct: p.Direct, Requests: t.requests, Failed: t.failed, Excused: t.excused,
			P50MS: t.ms(50), P99MS: t.ms(99), MaxMS: t.ms(100)}
		var evs []string
		for _, e := range events {
			if e.AtS >= p.StartS && e.AtS < p.EndS {
				evs = append(evs, fmt.Sprintf("%s @%s", e.Name, clock(e.AtS)))
			}
		}
		m.Events = strings.Join(evs, ", ")
		if d := p.EndS - p.StartS; d > 0 {
			m.RPS = math.Round(float64(t.answered) / d)
		}
		for _, s := range secs {
			if float64(s.T) >= p.StartS && float64(s.T) < p.EndS {
				m.MaxReplicas = max(m.MaxReplicas, s.Replicas+s.Draining)
			}
		}
		out[i] = m
	}
	return out
}

// okIn counts the requests answered 2xx with the right body that ended in
// [from, to) seconds, on the direct path or not.
func okIn(recs []loadReq, from, to float64, direct bool) int64 {
	var n int64
	lo, hi := int64(from*1e9), int64(to*1e9)
	for _, r := range recs {
		if r.Err != reqOK || r.Direct != direct {
			continue
		}
		if end := r.StartNS + int64(r.LatencyUS)*1000; end >= lo && end < hi {
			n++
		}
	}
	return n
}

// --- summary and goals ---

// soakSummary holds the figures the goals read.
type soakSummary struct {
	Requests        int64          `json:"requests"`
	GatewayRequests int64          `json:"gateway_requests"`
	DirectRequests  int64          `json:"direct_requests"`
	Failed          int64          `json:"failed"`         // every failed request, both paths
	GatewayFailed   int64          `json:"gateway_failed"` // through the gateway
	DirectFailed    int64          `json:"direct_failed"`
	InFlightAtKill  int64          `json:"in_flight_at_kill"` // failed, excused: in flight on the killed replica
	FailedByKind    map[string]int `json:"failed_by_kind,omitempty"`
	// The gateway's failures not excused, by server (unlogged ones under
	// "not in the log").
	FailedByServer map[string]int `json:"failed_by_server,omitempty"`

	Log          haLogResult `json:"haproxy_log"`
	DroppedLogs  int64       `json:"haproxy_dropped_logs"` // HAProxy's own count (show info)
	StatResets   int         `json:"stat_resets"`          // polls where HAProxy's counters restarted (a reload)
	Reloads      int64       `json:"reloads"`              // pulsed's HAProxy reloads during the load, -1 unknown
	WorstConnect *soakServer `json:"worst_connect,omitempty"`
	// ServersOver1000 counts the servers with at least 1000 sessions.
	ServersOver1000 int `json:"servers_over_1000"`

	CPU soakCPU `json:"cpu"`
	RSS soakRSS `json:"rss"`

	TimeWaitPeak   int     `json:"time_wait_peak"`
	TimeWaitPeakAt float64 `json:"time_wait_peak_at_s"`
	MaxReplicas    int     `json:"max_replicas"` // running, draining included
	MaxDesired     int     `json:"max_desired"`
	ScaleEvents    int     `json:"scale_events"`
	UpdateS        float64 `json:"rolling_update_s"` // start to done, 0 if not seen done
	UpdateState    string  `json:"rolling_update_state"`

	// The kill: the docker kill call and the container's end, seconds
	// after t0.
	KillCallS float64 `json:"kill_call_s,omitempty"`
	KillEndS  float64 `json:"kill_end_s,omitempty"`
	// The error window after the kill: the failures through the gateway
	// that ended in the minute after the call, those of them on the killed
	// replica, and the time from the call to the last one's end.
	KillFailed   int     `json:"kill_failed"`
	KillFailedOn int     `json:"kill_failed_on_killed_replica"`
	KillWindowMS float64 `json:"kill_error_window_ms"`

	kill *soakKill // the kill the failures were judged against (also in the events)
}

// soakRSS is resident memory after the load.
type soakRSS struct {
	HAProxyMB    float64 `json:"haproxy_mb"` // master and workers
	HAProxyProcs int     `json:"haproxy_processes"`
	HAProxyHWMMB float64 `json:"haproxy_peak_mb"`
	PulsedMB     float64 `json:"pulsed_mb"`
	PulsedHWMMB  float64 `json:"pulsed_peak_mb"`
}

// summarizeSoak counts the requests and failures into s.
func summarizeSoak(s *soakSummary, recs []loadReq, fails []soakFailure) {
	for _, r := range recs {
		s.Requests++
		if r.Direct {
			s.DirectRequests++
		} else {
			s.GatewayRequests++
		}
	}
	s.FailedByKind = map[string]int{}
	s.FailedByServer = map[string]int{}
	for _, f := range fails {
		s.Failed++
		s.FailedByKind[f.Error]++
		switch {
		case f.Direct:
			s.DirectFailed++
		case f.InFlight:
			s.GatewayFailed++
			s.InFlightAtKill++
		default:
			s.GatewayFailed++
			switch f.Via {
			case viaLog:
				s.FailedByServer[f.Server]++
			case viaCounters:
				s.FailedByServer[f.Server+" (not logged; from its counters)"]++
			default:
				s.FailedByServer["unknown (not logged)"]++
			}
		}
	}
}

// soakGoals are the targets, and the figures it asks to be
// reported in the same run (INFO: no limit).
func soakGoals(r soakReport) []goal {
	s := r.Summary
	var out []goal
	f := r.Fair
	c := f.CPU
	g := goal{Name: fmt.Sprintf("whole-host CPU per request through the gateway ÷ straight to the replica: pulsed at its defaults (no request log), "+
		"one replica (scale min = max = 1), c=%d, %.0f s per path in %d interleaved stretches", c.Conns, c.GatewayS, len(f.Stretches)), Limit: 2.5, Unit: "×"}
	if c.GatewayUS > 0 && c.DirectUS > 0 {
		g.Value, g.Status = c.Ratio, verdict(c.Ratio, 2.5)
		g.Note = fmt.Sprintf("%.1f µs through the gateway (%d requests), %.1f µs direct (%d requests)", c.GatewayUS, c.GatewayRequests, c.DirectUS, c.DirectRequests)
		if len(f.PairRatios) > 0 {
			g.Note += fmt.Sprintf("; per pair of stretches %.2f–%.2f×", slices.Min(f.PairRatios), slices.Max(f.PairRatios))
		}
		if c.ServerRatio > 0 {
			g.Note += fmt.Sprintf("; without the client's CPU %.1f ÷ %.1f µs = %.2f×", c.GatewayServerUS, c.DirectServerUS, c.ServerRatio)
		}
	} else {
		g.Status, g.Note = skip, "a path has no requests"
	}
	out = append(out, g)

	failed := float64(s.GatewayFailed - s.InFlightAtKill)
	g = goal{Name: "soak: failed requests through the gateway (by start time), not counting those in flight on the killed replica at the kill",
		Value: failed, Limit: 0, Unit: "requests", Status: verdict(failed, 0),
		Note: fmt.Sprintf("%d of %d failed; %d in flight on the killed replica at the kill", s.GatewayFailed, s.GatewayRequests, s.InFlightAtKill)}
	if s.KillEndS > 0 {
		g.Note += fmt.Sprintf(" (on it between the docker kill call at %s and the container's end at %s)", clock(s.KillCallS), clock(s.KillEndS))
	}
	if len(s.FailedByServer) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.FailedByServer)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.FailedByServer[k]))
		}
		g.Note += "; others by server: " + strings.Join(parts, ", ")
	}
	out = append(out, g)

	g = goal{Name: "soak: connect/stot of every server with ≥ 1000 sessions (worst)", Limit: 1, Unit: "%"}
	if w, n := worstConnect(r.Servers); w == nil {
		g.Status, g.Note = skip, "no server took 1000 sessions"
	} else {
		g.Value, g.Status = w.ConnectPct, verdict(w.ConnectPct, 1)
		g.Note = fmt.Sprintf("%s: %d connects / %d sessions; %d server(s) with ≥ 1000 sessions", w.Server, w.Connects, w.Sessions, n)
	}
	out = append(out, g)

	out = append(out, killGoal(s))
	return append(out, satGoals(r.Saturation)...)
}

// worstConnect returns the server with the highest connect/stot (the first
// of equals) among the n with at least 1000 sessions, without its holdings.
func worstConnect(ss []soakServer) (worst *soakServer, n int) {
	for _, sv := range ss {
		if sv.Sessions < 1000 {
			continue
		}
		n++
		if worst == nil || sv.ConnectPct > worst.ConnectPct {
			sv.Held = nil
			worst = &sv
		}
	}
	return worst, n
}

// killGoal is the error window after the kill, reported without a limit.
func killGoal(s soakSummary) goal {
	g := goal{Name: "soak: error window after the kill (docker kill call → the last failed request's end)", Unit: "ms", Status: info}
	switch {
	case s.KillCallS == 0:
		g.Status, g.Note = skip, "no replica was killed"
	case s.KillFailed == 0:
		g.Note = "no request failed after the kill"
	default:
		g.Value = s.KillWindowMS
		g.Note = fmt.Sprintf("%d request(s) through the gateway failed in the %.0f s after the call, %d of them in flight on the killed replica; the container ended %.0f ms after the call",
			s.KillFailed, soakKillSpan.Seconds(), s.KillFailedOn, 1000*(s.KillEndS-s.KillCallS))
	}
	return g
}

// satGoals are the saturation's goals.
func satGoals(s soakSat) []goal {
	name := fmt.Sprintf("saturation (one replica, %d connections, %d ms of CPU each, %.0f s): ", s.Conns, s.BurnMS, s.DurationS)
	if s.Requests == 0 {
		return []goal{{Name: name + "not run", Status: skip}}
	}
	return []goal{
		{Name: name + "DOWN transitions of the replica's slot (chkdown)", Value: float64(s.Downs), Unit: "transitions", Status: verdict(float64(s.Downs), 0),
			Note: fmt.Sprintf("slot %s, %d sessions; failed checks %d; %d of %d polls found it DOWN", s.Server, s.Sessions, s.CheckFails, s.DownPolls, s.Polls)},
		{Name: name + "requests detoured through the cold-start path (backup server stot)", Value: float64(s.BackupSessions), Unit: "requests",
			Status: verdict(float64(s.BackupSessions), 0)},
		{Name: name + "failed requests", Value: float64(s.Failed), Unit: "requests", Status: verdict(float64(s.Failed), 0),
			Note: strings.TrimPrefix(fmt.Sprintf("%s; of %d", kinds(s.FailedByKind), s.Requests), "; ")},
		{Name: name + "latency p99", Value: s.P99MS, Unit: "ms", Status: info,
			Note: fmt.Sprintf("p50 %.0f ms, max %.0f ms, %.1f answers/s", s.P50MS, s.MaxMS, s.RPS)},
	}
}

// soakKillSpan is how long after the kill call a failed request counts in
// its error window.
const soakKillSpan = time.Minute

// killWindow counts the failures through the gateway that ended within
// soakKillSpan of the kill call (seconds after t0), those of them in
// flight on the killed replica, and the window from the call to the last
// one's end.
func killWindow(fs []soakFailure, callS float64) (failed, on int, windowMS float64) {
	for _, f := range fs {
		end := f.StartS + f.LatencyMS/1000
		if f.Direct || end < callS || end > callS+soakKillSpan.Seconds() {
			continue
		}
		failed++
		if f.InFlight {
			on++
		}
		windowMS = math.Max(windowMS, round3(1000*(end-callS)))
	}
	return failed, on, windowMS
}

// --- rendering ---

func soakSetup(r soakReport) string {
	m := r.Machine
	c := r.Config
	return fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, %s, %s; before the soak, on a first pulsed at its defaults, the fair CPU comparison and health under saturation (below); "+
		"the soak: a second pulsed with the request log, %s of closed-loop keep-alive load (raw HTTP/1.1, no retries, %d-byte POST) on %s (%s), "+
		"scale %s target %g min %d max %d, timeout %gs, drain grace %gs, no Docker health check; autoscaler on (pulsed + lab Netdata + pulse.d.plugin + alarms + hook); pulsed: %s",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, r.Engine, r.HAProxy, r.Netdata, time.Duration(c.DurationS*float64(time.Second)), c.BodyBytes,
		c.Function, c.Handler, c.Metric, c.Target, c.Min, c.Max, c.TimeoutS, c.DrainGraceS, strings.Join(c.PulsedEnv, " "))
}

const (
	soakMinuteCaption = "The soak per minute (requests by start time; `rps` = answers per second; `replicas` = the most pulsed's catalog listed, draining included):"
	soakServerCaption = "Per HAProxy server of the function's backend (slots s<N>, re-pointed at replicas by pulsed): `show stat` counters " +
		"summed over 1 s polls across reloads, HAProxy's request log, and the replicas each slot held (pulsed's catalog and `show servers state`, polled every 500 ms):"
	soakFailCaption = "Failed requests (by start time), each matched to HAProxy's log line of it (client port and %tr) and so to the server, the replica's address and its task at that moment; " +
		"HAProxy writes no line for a keep-alive request it aborts because its server connection broke before any answer (it closes the client's connection for the client to retry), " +
		"so such a request is put down to the one server whose econ/eresp counters rose in the next 1 s `show stat` poll:"
)

var soakMinuteHeader = []string{"min", "phase", "conns", "requests", "failed", "in flight at kill", "rps", "p50 ms", "p99 ms", "max ms", "replicas", "events"}

func soakMinuteRows(ms []soakMinute) [][]string {
	var rows [][]string
	for i, m := range ms {
		phase := m.Phase
		rows = append(rows, []string{strconv.Itoa(i), phase, strconv.Itoa(m.Conns), strconv.FormatInt(m.Requests, 10), strconv.FormatInt(m.Failed, 10),
			strconv.FormatInt(m.Excused, 10), fmt.Sprintf("%.0f", m.RPS), fmt.Sprintf("%.2f", m.P50MS), fmt.Sprintf("%.2f", m.P99MS), fmt.Sprintf("%.1f", m.MaxMS),
			strconv.Itoa(m.MaxReplicas), m.Events})
	}
	return rows
}

var soakServerHeader = []string{"server", "sessions", "connects", "connect/stot %", "reuses", "econ", "eresp", "retries", "redispatches", "5xx", "checks down",
	"log requests", "log failed", "log retried", "replicas held (address, task, from–to s, sessions)"}

func soakServerRows(ss []soakServer) [][]string {
	var rows [][]string
	for _, s := range ss {
		var held []string
		for _, h := range s.Held {
			held = append(held, fmt.Sprintf("%s %s %.0f–%.0f %d", h.Addr, shortTask(h.Task), h.FromS, h.ToS, h.Sessions))
		}
		rows = append(rows, []string{s.Server, strconv.FormatInt(s.Sessions, 10), strconv.FormatInt(s.Connects, 10), fmt.Sprintf("%.3f", s.ConnectPct),
			strconv.FormatInt(s.Reuses, 10), strconv.FormatInt(s.ConnErrors, 10), strconv.FormatInt(s.RespErrors, 10), strconv.FormatInt(s.Retries, 10),
			strconv.FormatInt(s.Redisp, 10), strconv.FormatInt(s.HTTP5xx, 10), strconv.FormatInt(s.Downs, 10),
			strconv.FormatInt(s.LogRequests, 10), strconv.FormatInt(s.LogFailed, 10), strconv.FormatInt(s.LogRetried, 10), strings.Join(held, "; ")})
	}
	return rows
}

func shortTask(t string) string {
	if len(t) > 10 {
		return t[:10]
	}
	if t == "" {
		return "?"
	}
	return t
}

var soakFailHeader = []string{"start", "path", "client saw", "latency ms", "HAProxy server", "replica", "task", "HAProxy status", "termination", "timers ms", "in flight at kill"}

// soakFailMax bounds the failures listed in the README (the JSON has all).
const soakFailMax = 40

func soakFailRows(fs []soakFailure) [][]string {
	var rows [][]string
	for i, f := range fs {
		if i == soakFailMax {
			rows = append(rows, []string{fmt.Sprintf("… %d more in the JSON", len(fs)-soakFailMax)})
			break
		}
		path := pathGateway
		if f.Direct {
			path = pathDirect
		}
		saw := f.Error
		if f.Status != 0 {
			saw = strconv.Itoa(f.Status)
		}
		if f.Error != "status" {
			saw = truncate(f.Message, 60)
		}
		srv, st := "not logged, unknown", ""
		switch f.Via {
		case viaLog:
			srv, st = f.Server, strconv.Itoa(f.HAStatus)
		case viaCounters:
			srv, st = f.Server+" (not logged; its econ/eresp rose)", "none"
		}
		if f.Direct {
			srv = "–"
		}
		rows = append(rows, []string{clock(f.StartS), path, saw, fmt.Sprintf("%.1f", f.LatencyMS), srv, f.Addr, shortTask(f.Task), st, f.Term, f.Timers, yesNo(f.InFlight)})
	}
	return rows
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

var soakFigureHeader = []string{"figure", "value", "note"}

func soakFigureRows(r soakReport) [][]string {
	s := r.Summary
	c := s.CPU
	rows := [][]string{
		{"requests", fmt.Sprintf("%d (gateway %d, direct %d)", s.Requests, s.GatewayRequests, s.DirectRequests), ""},
		{"failed", fmt.Sprintf("%d (gateway %d, of which %d in flight on the killed replica at the kill; direct %d)", s.Failed, s.GatewayFailed, s.InFlightAtKill, s.DirectFailed),
			kinds(s.FailedByKind)},
		{"error window after the kill", fmt.Sprintf("%.0f ms", s.KillWindowMS), fmt.Sprintf("from the docker kill call to the last failed request's end; %d request(s) failed in the minute after the call, %d of them on the killed replica",
			s.KillFailed, s.KillFailedOn)},
		{fmt.Sprintf("soak-time whole-host CPU/request through the gateway, with the request log and %s replicas (informational)", c.GatewayReplicas), fmt.Sprintf("%.1f µs", c.GatewayUS),
			fmt.Sprintf("c=%d, %.0f s, %d requests, host %.0f %% busy", c.Conns, c.GatewayS, c.GatewayRequests, c.GatewayBusyPct)},
		{"soak-time whole-host CPU/request straight to one replica (informational)", fmt.Sprintf("%.1f µs", c.DirectUS), fmt.Sprintf("c=%d, %.0f s, %d requests, host %.0f %% busy", c.Conns, c.DirectS, c.DirectRequests, c.DirectBusyPct)},
		{"soak-time gateway ÷ direct (informational, not the goal: see the fair comparison)", fmt.Sprintf("%.2f×", c.Ratio), ""},
		{"TIME_WAIT sockets, peak", strconv.Itoa(s.TimeWaitPeak), fmt.Sprintf("at %s (polled every second)", clock(s.TimeWaitPeakAt))},
		{"HAProxy RSS after the load", fmt.Sprintf("%.1f MB", s.RSS.HAProxyMB), fmt.Sprintf("%d processes; peak %.1f MB", s.RSS.HAProxyProcs, s.RSS.HAProxyHWMMB)},
		{"pulsed RSS after the load", fmt.Sprintf("%.1f MB", s.RSS.PulsedMB), fmt.Sprintf("peak %.1f MB", s.RSS.PulsedHWMMB)},
		{"replicas, most at once", strconv.Itoa(s.MaxReplicas), fmt.Sprintf("draining included; most desired %d; %d scale decision(s)", s.MaxDesired, s.ScaleEvents)},
		{"rolling update", fmt.Sprintf("%.1f s", s.UpdateS), s.UpdateState},
		{"HAProxy log", fmt.Sprintf("%d request lines", s.Log.Requests), fmt.Sprintf("client's gateway requests %d; HAProxy's DroppedLogs %d; other lines %d", s.GatewayRequests, s.DroppedLogs, len(r.HAProxyEvents))},
		{"HAProxy reloads during the load", strconv.FormatInt(s.Reloads, 10), fmt.Sprintf("counter restarts seen %d", s.StatResets)},
	}
	return rows
}

func kinds(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func soakEventRows(es []soakEvent) [][]string {
	var rows [][]string
	for _, e := range es {
		task := e.Task
		if task != "" {
			task = shortTask(task)
		}
		rows = append(rows, []string{clock(e.AtS), e.Name, e.Server, e.Addr, task, e.Detail})
	}
	return rows
}

var soakEventHeader = []string{"at", "event", "server", "replica", "task", "detail"}

// renderSoak renders the report as text, or as the README's markdown with
// jsonPath and the picture beside it.
func renderSoak(r soakReport, md bool, jsonPath string) string {
	b := newReportDoc(md, "soak", "", r.Started, jsonPath, soakSetup(r))
	if md {
		png := strings.TrimSuffix(jsonPath, ".json") + ".png"
		fmt.Fprintf(b, "\n![soak run: offered connections, answers per second, failed requests, replicas and p99 latency over time](%s)\n", png)
	}
	b.section(fairCaption(r.Fair), fairStretchHeader, fairStretchRows(r.Fair))
	b.section(fairCPUCaption, soakCPUHeader, soakCPURows(r.Fair.CPU, r.Machine.ClockTicks))
	b.section(satCaption(r.Saturation), soakFigureHeader, satRows(r.Saturation))
	b.section("The soak's events (minutes:seconds after its load started):", soakEventHeader, soakEventRows(r.Events))
	b.section(soakMinuteCaption, soakMinuteHeader, soakMinuteRows(r.Minutes))
	b.section("The soak's figures:", soakFigureHeader, soakFigureRows(r))
	b.section(soakCPUCaption, soakCPUHeader, soakCPURows(r.Summary.CPU, r.Machine.ClockTicks))
	b.section(soakServerCaption, soakServerHeader, soakServerRows(r.Servers))
	b.section(soakFailCaption, soakFailHeader, soakFailRows(r.Failures))
	b.goals(r.Goals)
	b.notes(r.Notes)
	return b.String()
}

// killNote says what the kill did to the requests: how many failed on the
// killed replica, when they started against the kill, and how HAProxy
// reported them; "" when nothing failed there.
func killNote(fs []soakFailure, s soakSummary) string {
	n, before, logged := 0, 0, 0
	first, lastStart, last := math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, f := range fs {
		if !f.InFlight {
			continue
		}
		n++
		if f.StartS < s.KillCallS {
			before++
		}
		if f.Via == viaLog {
			logged++
		}
		first, lastStart, last = math.Min(first, f.StartS), math.Max(lastStart, f.StartS), math.Max(last, f.StartS+f.LatencyMS/1000)
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("the kill: %d request(s) failed on the killed replica, %d of them started before the docker kill call (%s) and %d while it was being killed "+
		"(up to its container's end, %.0f ms after the call); they started %+.0f to %+.0f ms from the call and had all failed by %+.0f ms; HAProxy logged %d of them and aborted %d "+
		"without a line (a keep-alive request whose server connection broke before any answer: it closes the client's connection for the client to retry)",
		n, before, clock(s.KillCallS), n-before, 1000*(s.KillEndS-s.KillCallS), 1000*(first-s.KillCallS), 1000*(lastStart-s.KillCallS), 1000*(last-s.KillCallS), logged, n-logged)
}
