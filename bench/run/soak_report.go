package main

// The soak suite's report: the schedule, the per-second and per-minute
// series, connection reuse per server, the goals and the rendering; the
// attribution of failed requests to HAProxy's servers and the replicas
// behind them is in soak_attrib.go, CPU per request in soak_cpu.go.
// Everything here is pure.

import (
	"fmt"
	"math"
	"slices"
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
