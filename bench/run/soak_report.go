package main

// The soak suite's report: the schedule, the per-second and per-minute
// series, the attribution of failed requests to HAProxy's servers and the
// replicas behind them, connection reuse per server, CPU per request, the
// goals and the rendering. Everything here is pure.

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
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

// phaseAt returns the phase running at s seconds, or nil.
func phaseAt(phases []soakPhase, s float64) *soakPhase {
	for i := range phases {
		if s >= phases[i].StartS && s < phases[i].EndS {
			return &phases[i]
		}
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

// soakSeconds buckets the requests by second: started, answered (by their
// end), failed and excused (by their start), latency percentiles (by
// start). excused holds the indexes of excused requests in recs' order
// given by key; n is the number of seconds.
func soakSeconds(recs []soakReq, excused map[soakKey]bool, phases []soakPhase, n int) []soakSecond {
	out := make([]soakSecond, n)
	lat := make([][]int32, n)
	for i := range out {
		out[i].T = i
		if p := phaseAt(phases, float64(i)); p != nil {
			out[i].Conns, out[i].Direct = p.Conns, p.Direct
		}
	}
	for _, r := range recs {
		s := int(r.StartNS / int64(time.Second))
		if s < 0 || s >= n {
			continue
		}
		out[s].Started++
		lat[s] = append(lat[s], r.LatencyUS)
		if r.Err != soakOK {
			out[s].Failed++
			if excused[keyOf(r)] {
				out[s].Excused++
			}
		}
		if r.Status != 0 {
			if e := int((r.StartNS + int64(r.LatencyUS)*1000) / int64(time.Second)); e >= 0 && e < n {
				out[e].Answered++
			}
		}
	}
	for i := range out {
		slices.Sort(lat[i])
		out[i].P50MS = float64(nearestRank(lat[i], 50)) / 1000
		out[i].P99MS = float64(nearestRank(lat[i], 99)) / 1000
	}
	return out
}

// soakKey identifies a request among the records.
type soakKey struct {
	StartNS int64
	Port    uint16
}

func keyOf(r soakReq) soakKey { return soakKey{r.StartNS, r.Port} }

// soakMinutes summarises the requests per phase (by start time).
func soakMinutes(recs []soakReq, excused map[soakKey]bool, phases []soakPhase, secs []soakSecond, events []soakEvent) []soakMinute {
	out := make([]soakMinute, len(phases))
	lat := make([][]int32, len(phases))
	answered := make([]int64, len(phases))
	for i, p := range phases {
		out[i] = soakMinute{Phase: p.Name, StartS: p.StartS, Conns: p.Conns, Direct: p.Direct}
		for _, e := range events {
			if e.AtS >= p.StartS && e.AtS < p.EndS {
				if out[i].Events != "" {
					out[i].Events += ", "
				}
				out[i].Events += fmt.Sprintf("%s @%s", e.Name, clock(e.AtS))
			}
		}
	}
	idx := func(ns int64) int {
		s := float64(ns) / 1e9
		for i, p := range phases {
			if s >= p.StartS && s < p.EndS {
				return i
			}
		}
		return -1
	}
	for _, r := range recs {
		i := idx(r.StartNS)
		if i < 0 {
			continue
		}
		out[i].Requests++
		lat[i] = append(lat[i], r.LatencyUS)
		if r.Err != soakOK {
			out[i].Failed++
			if excused[keyOf(r)] {
				out[i].Excused++
			}
		}
		if r.Status != 0 {
			answered[i]++
		}
	}
	for i, p := range phases {
		slices.Sort(lat[i])
		out[i].P50MS = float64(nearestRank(lat[i], 50)) / 1000
		out[i].P99MS = float64(nearestRank(lat[i], 99)) / 1000
		out[i].MaxMS = float64(nearestRank(lat[i], 100)) / 1000
		if d := p.EndS - p.StartS; d > 0 {
			out[i].RPS = math.Round(float64(answered[i]) / d)
		}
		for _, s := range secs {
			if float64(s.T) >= p.StartS && float64(s.T) < p.EndS {
				out[i].MaxReplicas = max(out[i].MaxReplicas, s.Replicas+s.Draining)
			}
		}
	}
	return out
}

// clock formats seconds as m:ss.s.
func clock(s float64) string {
	m := int(s) / 60
	return fmt.Sprintf("%d:%04.1f", m, s-float64(m*60))
}

// okIn counts the requests answered 2xx with the right body that ended in
// [from, to) seconds, on the direct path or not.
func okIn(recs []soakReq, from, to float64, direct bool) int64 {
	var n int64
	lo, hi := int64(from*1e9), int64(to*1e9)
	for _, r := range recs {
		if r.Err != soakOK || r.Direct != direct {
			continue
		}
		if end := r.StartNS + int64(r.LatencyUS)*1000; end >= lo && end < hi {
			n++
		}
	}
	return n
}

// --- who held which server ---

// soakSample is one poll of pulsed's catalog and HAProxy's slots.
type soakSample struct {
	At       time.Time
	Slots    []slotInfo         // the backend's slots (HAProxy)
	Replicas []contract.Replica // the function's replicas (pulsed's catalog)
	Desired  int
	OK       bool // both reads succeeded
}

// soakTimeline is the samples in time order.
type soakTimeline []soakSample

// replicaAt returns the address a server (slot) pointed at, at t, and the
// task there: from the last sample at or before t where the slot held a
// replica, else the first one after (a slot is only re-pointed while in
// maintenance, when it gets no request).
func (tl soakTimeline) replicaAt(server string, t time.Time) (addr, task string) {
	i := sort.Search(len(tl), func(i int) bool { return tl[i].At.After(t) })
	try := func(j int) bool {
		if j < 0 || j >= len(tl) {
			return false
		}
		for _, s := range tl[j].Slots {
			if s.Name == server && s.Live() {
				addr = s.Addr
				task = tl.taskOf(j, addr)
				return true
			}
		}
		return false
	}
	// Back to the last sample before t where it was live, at most 10 s;
	// then forward, at most 10 s.
	for j := i - 1; j >= 0 && t.Sub(tl[j].At) < 10*time.Second; j-- {
		if try(j) {
			return addr, task
		}
	}
	for j := i; j < len(tl) && tl[j].At.Sub(t) < 10*time.Second; j++ {
		if try(j) {
			return addr, task
		}
	}
	return "", ""
}

// taskAt returns the task at addr in the catalog nearest t.
func (tl soakTimeline) taskAt(addr string, t time.Time) string {
	if len(tl) == 0 || addr == "" {
		return ""
	}
	i := sort.Search(len(tl), func(i int) bool { return tl[i].At.After(t) })
	return tl.taskOf(max(i-1, 0), addr)
}

// taskOf returns the task at addr in sample j's catalog, else in the
// nearest sample that lists it.
func (tl soakTimeline) taskOf(j int, addr string) string {
	for d := 0; d < len(tl); d++ {
		for _, k := range []int{j - d, j + d} {
			if k < 0 || k >= len(tl) {
				continue
			}
			for _, r := range tl[k].Replicas {
				if r.Addr == addr {
					return r.TaskID
				}
			}
		}
	}
	return ""
}

// soakHolding is one replica's time in a slot.
type soakHolding struct {
	Addr     string  `json:"addr"`
	Task     string  `json:"task,omitempty"`
	FromS    float64 `json:"from_s"`
	ToS      float64 `json:"to_s"`
	Sessions int64   `json:"sessions"` // stot while it held the slot (from the 1 s stat polls)
	Connects int64   `json:"connects"`
}

// holdings returns, per slot, the replicas it held over the samples.
func (tl soakTimeline) holdings(t0 time.Time) map[string][]soakHolding {
	out := map[string][]soakHolding{}
	for j, smp := range tl {
		at := smp.At.Sub(t0).Seconds()
		for _, s := range smp.Slots {
			if !s.Live() {
				continue
			}
			hs := out[s.Name]
			if n := len(hs); n > 0 && hs[n-1].Addr == s.Addr {
				hs[n-1].ToS = round3(at)
				continue
			}
			out[s.Name] = append(hs, soakHolding{Addr: s.Addr, Task: tl.taskOf(j, s.Addr), FromS: round3(at), ToS: round3(at)})
		}
	}
	return out
}

// --- connection reuse per server ---

// statAcc accumulates HAProxy's per-server counters over polls: a counter
// that went down was reset (a reload started a new worker), so its new
// value is all new.
type statAcc struct {
	last  map[string]gateway.ServerStat
	total map[string]*gateway.ServerStat
	// per server and address: what it counted while pointed there.
	byAddr map[string]map[string]*gateway.ServerStat
	resets int
	// errs are the polls where a server's error counters rose.
	errs []soakStatErr
	// polls are the times of every poll, in order.
	polls []time.Time
}

// soakStatErr is one server's error counters rising between two polls.
type soakStatErr struct {
	At         time.Time // the poll that saw it
	Server     string
	Addr       string
	ConnErrors int64 // econ
	RespErrors int64 // eresp
	HTTP5xx    int64
}

func newStatAcc() *statAcc {
	return &statAcc{last: map[string]gateway.ServerStat{}, total: map[string]*gateway.ServerStat{}, byAddr: map[string]map[string]*gateway.ServerStat{}}
}

// restart forgets what was counted so far: the totals count from the last
// poll on.
func (a *statAcc) restart() {
	a.total, a.byAddr = map[string]*gateway.ServerStat{}, map[string]map[string]*gateway.ServerStat{}
	a.resets, a.errs, a.polls = 0, nil, nil
}

// add takes one poll's rows of the backend, made at at.
func (a *statAcc) add(at time.Time, rows []gateway.ServerStat) {
	a.polls = append(a.polls, at)
	reset := false
	for _, r := range rows {
		prev, seen := a.last[r.Server]
		d := func(cur, old int64) int64 {
			if !seen {
				return cur
			}
			if cur < old {
				reset = true
				return cur
			}
			return cur - old
		}
		delta := gateway.ServerStat{
			Sessions: d(r.Sessions, prev.Sessions), Connects: d(r.Connects, prev.Connects), Reuses: d(r.Reuses, prev.Reuses),
			CheckFails: d(r.CheckFails, prev.CheckFails), Downs: d(r.Downs, prev.Downs), ConnErrors: d(r.ConnErrors, prev.ConnErrors),
			RespErrors: d(r.RespErrors, prev.RespErrors), Retries: d(r.Retries, prev.Retries), Redispatches: d(r.Redispatches, prev.Redispatches),
			HTTP5xx: d(r.HTTP5xx, prev.HTTP5xx),
		}
		a.last[r.Server] = r
		t := a.total[r.Server]
		if t == nil {
			t = &gateway.ServerStat{Backend: r.Backend, Server: r.Server}
			a.total[r.Server] = t
		}
		addStat(t, delta)
		t.Status, t.Addr = r.Status, r.Addr
		m := a.byAddr[r.Server]
		if m == nil {
			m = map[string]*gateway.ServerStat{}
			a.byAddr[r.Server] = m
		}
		if m[r.Addr] == nil {
			m[r.Addr] = &gateway.ServerStat{Backend: r.Backend, Server: r.Server, Addr: r.Addr}
		}
		addStat(m[r.Addr], delta)
		if seen && (delta.ConnErrors > 0 || delta.RespErrors > 0 || delta.HTTP5xx > 0) {
			a.errs = append(a.errs, soakStatErr{At: at, Server: r.Server, Addr: r.Addr, ConnErrors: delta.ConnErrors, RespErrors: delta.RespErrors, HTTP5xx: delta.HTTP5xx})
		}
	}
	if reset {
		a.resets++
	}
}

func addStat(t *gateway.ServerStat, d gateway.ServerStat) {
	t.Sessions += d.Sessions
	t.Connects += d.Connects
	t.Reuses += d.Reuses
	t.CheckFails += d.CheckFails
	t.Downs += d.Downs
	t.ConnErrors += d.ConnErrors
	t.RespErrors += d.RespErrors
	t.Retries += d.Retries
	t.Redispatches += d.Redispatches
	t.HTTP5xx += d.HTTP5xx
}

// soakServer is one HAProxy server of the function's backend over the run.
type soakServer struct {
	Server     string  `json:"server"`
	Sessions   int64   `json:"sessions"` // stot
	Connects   int64   `json:"connects"`
	Reuses     int64   `json:"reuses"`
	ConnectPct float64 `json:"connect_pct"` // 100 × connect / stot
	ConnErrors int64   `json:"econ"`
	RespErrors int64   `json:"eresp"`
	Retries    int64   `json:"wretr"`
	Redisp     int64   `json:"wredis"`
	HTTP5xx    int64   `json:"hrsp_5xx"`
	Downs      int64   `json:"chkdown"`
	CheckFails int64   `json:"chkfail"`
	Status     string  `json:"status"` // at the end
	// From HAProxy's log.
	LogRequests int64 `json:"log_requests"`
	LogFailed   int64 `json:"log_failed"`
	LogRetried  int64 `json:"log_retried"`
	// The replicas it held.
	Held []soakHolding `json:"held,omitempty"`
}

// soakServers joins the counters, the log's totals and the holdings, in
// slot order (the backup server last); servers that never took a session
// nor held a replica are left out.
func soakServers(a *statAcc, log map[string]*haServer, held map[string][]soakHolding) []soakServer {
	names := map[string]bool{}
	for n := range a.total {
		names[n] = true
	}
	for n := range log {
		names[n] = true
	}
	for n := range held {
		names[n] = true
	}
	var out []soakServer
	for n := range names {
		s := soakServer{Server: n}
		if t := a.total[n]; t != nil {
			s.Sessions, s.Connects, s.Reuses = t.Sessions, t.Connects, t.Reuses
			s.ConnErrors, s.RespErrors, s.Retries, s.Redisp, s.HTTP5xx, s.Downs, s.CheckFails = t.ConnErrors, t.RespErrors, t.Retries, t.Redispatches, t.HTTP5xx, t.Downs, t.CheckFails
			s.Status = t.Status
			if t.Sessions > 0 {
				s.ConnectPct = round3(100 * float64(t.Connects) / float64(t.Sessions))
			}
		}
		if l := log[n]; l != nil {
			s.LogRequests, s.LogFailed, s.LogRetried = l.Requests, l.Failed, l.Retried
		}
		for _, h := range held[n] {
			if st := a.byAddr[n][h.Addr]; st != nil {
				h.Sessions, h.Connects = st.Sessions, st.Connects
			}
			s.Held = append(s.Held, h)
		}
		if s.Sessions == 0 && s.LogRequests == 0 && len(s.Held) == 0 {
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y soakServer) int {
		xi, yi := slotNumber(x.Server), slotNumber(y.Server)
		if xi != yi {
			return xi - yi
		}
		return strings.Compare(x.Server, y.Server)
	})
	return out
}

// slotNumber is N of s<N>, a large number for other names.
func slotNumber(name string) int {
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "s")); err == nil && strings.HasPrefix(name, "s") {
		return n
	}
	return 1 << 30
}

// --- failed requests ---

// soakKill is the kill the failures are judged against. Killing takes a
// while (the engine's docker kill, the process's end, its sockets closing,
// the container's end): a replica is being killed from the call to the
// container's end, and a request that was on it in that span was in flight
// at the kill.
type soakKill struct {
	CallAt time.Time // just before the docker kill call
	At     time.Time // the container's end (the engine's FinishedAt)
	Task   string
	Addr   string
}

// inFlight reports whether a request from start to end on the killed
// replica overlapped the kill.
func (k *soakKill) inFlight(start, end time.Time) bool {
	from := k.CallAt
	if from.IsZero() || from.After(k.At) {
		from = k.At
	}
	return !start.After(k.At) && !end.Before(from)
}

// soakFailure is one failed request, attributed.
type soakFailure struct {
	StartS     float64 `json:"start_s"`
	LatencyMS  float64 `json:"latency_ms"`
	Direct     bool    `json:"direct,omitempty"`
	Error      string  `json:"error"`
	Status     int     `json:"status,omitempty"`
	Message    string  `json:"message"`
	ClientPort int     `json:"client_port,omitempty"`
	// From HAProxy's log line of the request (gateway requests), or, for
	// a request HAProxy did not log, from its error counters (Via).
	Logged    bool   `json:"logged"`
	Via       string `json:"via,omitempty"`
	Server    string `json:"server,omitempty"`
	Addr      string `json:"addr,omitempty"`
	Task      string `json:"task,omitempty"`
	HAStatus  int    `json:"haproxy_status,omitempty"`
	Term      string `json:"termination,omitempty"`
	Timers    string `json:"timers,omitempty"` // TR/Tw/Tc/Tr/Ta ms
	Retries   int    `json:"retries,omitempty"`
	InFlight  bool   `json:"in_flight_at_kill,omitempty"`
	AcceptErr int64  `json:"accept_minus_start_ms,omitempty"`
}

// Where a failure's server came from.
const (
	viaLog      = "log"
	viaCounters = "counters"
)

// attributeFailures matches every failed request to HAProxy's log line of
// it (same client port, %tr within a second of the start, the nearest
// one, each line used once) and names the server, the replica's address
// and its task there at that moment. HAProxy logs nothing for a request it
// aborts on purpose (a keep-alive request whose server connection broke
// before any answer: it closes the client's connection so that the client
// retries); such a failure is put down to the server whose error counters
// (econ, eresp) rose in the first `show stat` poll after the request
// ended, when exactly one did. Requests in flight on the killed replica at
// the kill (on it at any time between the docker kill call and the
// container's end) are marked. It returns the
// failures in start order and the keys of the marked ones.
func attributeFailures(fails []soakFail, t0 time.Time, lines []haLogLine, errs []soakStatErr, polls []time.Time, tl soakTimeline, kill *soakKill) ([]soakFailure, map[soakKey]bool) {
	byPort := map[int][]int{}
	for i, l := range lines {
		if l.Failed() {
			byPort[l.ClientPort] = append(byPort[l.ClientPort], i)
		}
	}
	used := make([]bool, len(lines))
	sorted := slices.Clone(fails)
	slices.SortFunc(sorted, func(a, b soakFail) int { return int(a.Req.StartNS - b.Req.StartNS) })
	excused := map[soakKey]bool{}
	var out []soakFailure
	for _, f := range sorted {
		r := f.Req
		start := t0.Add(time.Duration(r.StartNS))
		end := start.Add(time.Duration(r.LatencyUS) * time.Microsecond)
		o := soakFailure{StartS: round3(float64(r.StartNS) / 1e9), LatencyMS: round3(float64(r.LatencyUS) / 1000), Direct: r.Direct,
			Error: soakErrName(r.Err), Status: int(r.Status), Message: f.Msg, ClientPort: int(r.Port)}
		if !r.Direct && r.Port != 0 {
			best, bestD := -1, time.Duration(math.MaxInt64)
			for _, i := range byPort[int(r.Port)] {
				if used[i] {
					continue
				}
				d := lines[i].Accept.Sub(start)
				if d < 0 {
					d = -d
				}
				if d <= time.Second && d < bestD {
					best, bestD = i, d
				}
			}
			if best >= 0 {
				used[best] = true
				l := lines[best]
				o.Logged, o.Via, o.Server, o.HAStatus, o.Term, o.Retries = true, viaLog, l.Server, l.Status, l.Term, l.Retries
				o.Timers = fmt.Sprintf("%d/%d/%d/%d/%d", l.TR, l.Tw, l.Tc, l.Tr, l.Ta)
				o.AcceptErr = l.Accept.Sub(start).Milliseconds()
				o.Addr, o.Task = tl.replicaAt(l.Server, l.Accept)
			}
		}
		if !r.Direct && !o.Logged {
			if e, ok := counterSuspect(errs, polls, end); ok {
				o.Via, o.Server, o.Addr = viaCounters, e.Server, e.Addr
				o.Task = tl.taskAt(e.Addr, e.At)
			}
		}
		if kill != nil && o.Server != "" && (o.Task == kill.Task && kill.Task != "" || o.Addr == kill.Addr && kill.Addr != "") &&
			kill.inFlight(start, end) {
			o.InFlight = true
			excused[keyOf(r)] = true
		}
		out = append(out, o)
	}
	return out, excused
}

// counterSuspect returns the one server whose econ or eresp rose in the
// first poll at or after end (HAProxy counts a failure when it gives up on
// the request, which is before the client sees its connection close).
func counterSuspect(errs []soakStatErr, polls []time.Time, end time.Time) (soakStatErr, bool) {
	i := sort.Search(len(polls), func(i int) bool { return !polls[i].Before(end) })
	if i == len(polls) {
		return soakStatErr{}, false
	}
	var found []soakStatErr
	for _, e := range errs {
		if e.At.Equal(polls[i]) && (e.ConnErrors > 0 || e.RespErrors > 0) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		return soakStatErr{}, false
	}
	return found[0], true
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

// soakCPU is a CPU comparison: the whole host's busy CPU per request over
// windows through the gateway and windows straight to one replica, at the
// same connections.
type soakCPU struct {
	Conns             int     `json:"connections"`
	GatewayS          float64 `json:"gateway_s"`
	DirectS           float64 `json:"direct_s"`
	GatewayTicks      uint64  `json:"gateway_busy_ticks"`
	DirectTicks       uint64  `json:"direct_busy_ticks"`
	GatewayTotalTicks uint64  `json:"gateway_total_ticks"` // busy, idle and stolen
	DirectTotalTicks  uint64  `json:"direct_total_ticks"`
	GatewayRequests   int64   `json:"gateway_requests"`
	DirectRequests    int64   `json:"direct_requests"`
	GatewayUS         float64 `json:"gateway_us_per_request"`
	DirectUS          float64 `json:"direct_us_per_request"`
	Ratio             float64 `json:"ratio"`
	GatewayBusyPct    float64 `json:"gateway_busy_pct"` // of the whole host
	DirectBusyPct     float64 `json:"direct_busy_pct"`
	GatewayReplicas   string  `json:"gateway_replicas"` // during the gateway minute, e.g. "2" or "2–3"
	// The same without the client: the whole host's busy CPU less the
	// harness's (the load's client, and in the soak the log receiver and
	// the pollers), per request; 0 without the groups.
	GatewayServerUS float64 `json:"gateway_server_us_per_request,omitempty"`
	DirectServerUS  float64 `json:"direct_server_us_per_request,omitempty"`
	ServerRatio     float64 `json:"server_ratio,omitempty"`
	StealTicks      uint64  `json:"steal_ticks"`
	// Groups is where the CPU went, per process group (own utime + stime
	// from /proc; "other" is the host's busy CPU less the groups: the
	// kernel's softirq work, dockerd, ...).
	Groups []soakCPUGroup `json:"groups,omitempty"`
	// The raw ticks per group and window.
	GatewayGroupTicks map[string]uint64 `json:"gateway_group_ticks,omitempty"`
	DirectGroupTicks  map[string]uint64 `json:"direct_group_ticks,omitempty"`
	// What "other" holds: the processes outside the groups by command
	// name, and the host's irq + softirq ticks (/proc/stat; a tick in
	// softirq is also charged to the process it interrupted, so these
	// overlap the groups).
	GatewayOtherTicks map[string]uint64 `json:"gateway_other_process_ticks,omitempty"`
	DirectOtherTicks  map[string]uint64 `json:"direct_other_process_ticks,omitempty"`
	GatewayIRQTicks   uint64            `json:"gateway_irq_ticks"`
	DirectIRQTicks    uint64            `json:"direct_irq_ticks"`
}

// cpuMark is the host's CPU and, if read, the process groups' at one
// moment.
type cpuMark struct {
	host           hostCPU
	groups, others procCPU
}

// mark reads the host's CPU, then (groups) the CPU of w's groups, of the
// harness and of the lab Netdata.
func (l *pulseLab) mark(w procWatch, groups bool) cpuMark {
	var m cpuMark
	m.host, _ = readHostCPU("/proc")
	if groups {
		m.groups, m.others = l.sampleGroups(w)
	}
	return m
}

// cpuWindow is the CPU of one window of a comparison, in ticks.
type cpuWindow struct {
	Seconds float64           `json:"seconds"`
	Busy    uint64            `json:"busy_ticks"`
	IRQ     uint64            `json:"irq_ticks"` // irq + softirq, part of busy
	Total   uint64            `json:"total_ticks"`
	Steal   uint64            `json:"steal_ticks"`
	Groups  map[string]uint64 `json:"group_ticks,omitempty"`
	// Others are the processes outside the groups that used CPU, by
	// command name.
	Others map[string]uint64 `json:"other_process_ticks,omitempty"`
}

// windowOf is the CPU between two marks, seconds apart.
func windowOf(seconds float64, from, to cpuMark) cpuWindow {
	w := cpuWindow{Seconds: seconds, Busy: to.host.Busy - from.host.Busy, IRQ: to.host.IRQ - from.host.IRQ, Total: to.host.Total - from.host.Total,
		Steal: to.host.Steal - from.host.Steal, Groups: groupDelta(from.groups, to.groups)}
	for comm, t := range groupDelta(from.others, to.others) {
		if t > 0 {
			if w.Others == nil {
				w.Others = map[string]uint64{}
			}
			w.Others[comm] = t
		}
	}
	return w
}

// add counts a window on the direct side or the gateway's.
func (c *soakCPU) add(direct bool, w cpuWindow) {
	s, busy, irq, total, groups, others := &c.GatewayS, &c.GatewayTicks, &c.GatewayIRQTicks, &c.GatewayTotalTicks, &c.GatewayGroupTicks, &c.GatewayOtherTicks
	if direct {
		s, busy, irq, total, groups, others = &c.DirectS, &c.DirectTicks, &c.DirectIRQTicks, &c.DirectTotalTicks, &c.DirectGroupTicks, &c.DirectOtherTicks
	}
	*s += w.Seconds
	*busy += w.Busy
	*irq += w.IRQ
	*total += w.Total
	c.StealTicks += w.Steal
	sum := func(dst *map[string]uint64, src map[string]uint64) {
		if src != nil && *dst == nil {
			*dst = map[string]uint64{}
		}
		for k, t := range src {
			(*dst)[k] += t
		}
	}
	sum(groups, w.Groups)
	sum(others, w.Others)
}

// finish works the per-request figures out once the requests are set.
func (c *soakCPU) finish(clk float64) {
	c.GatewayUS = cpuPerRequest(c.GatewayTicks, clk, c.GatewayRequests)
	c.DirectUS = cpuPerRequest(c.DirectTicks, clk, c.DirectRequests)
	c.GatewayBusyPct = busyPct(c.GatewayTicks, c.GatewayTotalTicks)
	c.DirectBusyPct = busyPct(c.DirectTicks, c.DirectTotalTicks)
	c.Groups = cpuGroups(*c, clk)
	c.Ratio, c.GatewayServerUS, c.DirectServerUS, c.ServerRatio = 0, 0, 0, 0
	if c.GatewayUS > 0 && c.DirectUS > 0 {
		c.Ratio = round3(c.GatewayUS / c.DirectUS)
	}
	gh, dh := c.GatewayGroupTicks[groupHarness], c.DirectGroupTicks[groupHarness]
	if gh > 0 && dh > 0 && gh < c.GatewayTicks && dh < c.DirectTicks {
		c.GatewayServerUS = cpuPerRequest(c.GatewayTicks-gh, clk, c.GatewayRequests)
		c.DirectServerUS = cpuPerRequest(c.DirectTicks-dh, clk, c.DirectRequests)
		if c.GatewayServerUS > 0 && c.DirectServerUS > 0 {
			c.ServerRatio = round3(c.GatewayServerUS / c.DirectServerUS)
		}
	}
}

// busyPct is busy ticks in % of total ticks (the whole host), 0 for none.
func busyPct(busy, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return round3(100 * float64(busy) / float64(total))
}

// soakCPUGroup is one process group's CPU per request in each window.
type soakCPUGroup struct {
	Group     string  `json:"group"`
	GatewayUS float64 `json:"gateway_us_per_request"`
	DirectUS  float64 `json:"direct_us_per_request"`
}

// Process groups of the CPU breakdown besides the gateway suite's.
const (
	groupHarness = "harness" // this program: the load's client, HAProxy's log receiver, the pollers
	groupNetdata = "netdata" // the lab Netdata and its plugins
	groupOther   = "other"   // the host's busy CPU less the groups
)

// soakGroupOrder is the breakdown's row order.
var soakGroupOrder = []string{groupHAProxy, groupDockerProxy, groupReplicas, groupHarness, groupPulsed, groupNetdata, groupOther}

// cpuGroups turns the windows' ticks per group into µs per request, with
// "other" the host's busy ticks less the groups' (negative when the
// processes' own times, accounted per task, add up to more than the host's
// busy time in /proc/stat).
func cpuGroups(c soakCPU, clk float64) []soakCPUGroup {
	if len(c.GatewayGroupTicks) == 0 && len(c.DirectGroupTicks) == 0 {
		return nil
	}
	perReq := func(ticks float64, requests int64) float64 {
		if requests <= 0 || clk <= 0 {
			return 0
		}
		return round3(ticks / clk * 1e6 / float64(requests))
	}
	rest := func(total uint64, m map[string]uint64) float64 {
		sum := 0.0
		for _, v := range m {
			sum += float64(v)
		}
		return float64(total) - sum
	}
	var out []soakCPUGroup
	for _, g := range soakGroupOrder {
		gw, di := float64(c.GatewayGroupTicks[g]), float64(c.DirectGroupTicks[g])
		if g == groupOther {
			gw, di = rest(c.GatewayTicks, c.GatewayGroupTicks), rest(c.DirectTicks, c.DirectGroupTicks)
		}
		out = append(out, soakCPUGroup{Group: g, GatewayUS: perReq(gw, c.GatewayRequests), DirectUS: perReq(di, c.DirectRequests)})
	}
	return out
}

var soakCPUHeader = []string{"process group", "through the gateway µs/req", "straight to one replica µs/req"}

func soakCPURows(c soakCPU, clk float64) [][]string {
	var rows [][]string
	us := func(ticks uint64, requests int64) string {
		return fmt.Sprintf("%.1f", cpuPerRequest(ticks, clk, requests))
	}
	for _, g := range c.Groups {
		rows = append(rows, []string{g.Group, fmt.Sprintf("%.1f", g.GatewayUS), fmt.Sprintf("%.1f", g.DirectUS)})
		if g.Group != groupOther {
			continue
		}
		for _, comm := range topOthers(c, soakTopOthers) {
			rows = append(rows, []string{"· other: " + comm, us(c.GatewayOtherTicks[comm], c.GatewayRequests), us(c.DirectOtherTicks[comm], c.DirectRequests)})
		}
	}
	if len(rows) > 0 {
		rows = append(rows, []string{"whole host", fmt.Sprintf("%.1f", c.GatewayUS), fmt.Sprintf("%.1f", c.DirectUS)})
		if c.GatewayIRQTicks+c.DirectIRQTicks > 0 {
			rows = append(rows, []string{"of which irq + softirq (/proc/stat)", us(c.GatewayIRQTicks, c.GatewayRequests), us(c.DirectIRQTicks, c.DirectRequests)})
		}
	}
	return rows
}

// soakTopOthers is how many processes outside the groups the CPU tables
// name.
const soakTopOthers = 4

// topOthers returns the n commands outside the groups that used the most
// CPU over both paths, most first.
func topOthers(c soakCPU, n int) []string {
	total := map[string]uint64{}
	for _, m := range []map[string]uint64{c.GatewayOtherTicks, c.DirectOtherTicks} {
		for comm, t := range m {
			total[comm] += t
		}
	}
	comms := slices.Collect(mapKeys(total))
	slices.SortFunc(comms, func(a, b string) int {
		if total[a] != total[b] {
			return cmp.Compare(total[b], total[a])
		}
		return strings.Compare(a, b)
	})
	return comms[:min(n, len(comms))]
}

const soakCPUCaption = "Informational, not the goal: where the CPU per request went in the soak's two CPU minutes, with HAProxy's request log on and through the gateway the replicas the autoscaler kept (own utime + stime of each group from /proc; haproxy = pulsed's HAProxy master and workers; " +
	"docker-proxy = the engine's userland proxy of the replicas' published ports, if the engine runs one (without it the kernel NATs a loopback call to a published port); replicas = the replicas' processes; " +
	"harness = this program: the load's client, HAProxy's log receiver and the pollers; netdata = the lab Netdata and its plugins; other = the host's busy CPU less the groups: " +
	"dockerd, containerd, other processes (the busiest named below it), and time no process is charged with (softirq work done while a CPU was idle); negative when the processes' own times add up to more than /proc/stat's busy time. The kernel's network work on loopback " +
	"(and the NAT to a published port) is mostly charged to the process that sends; irq + softirq, from /proc/stat, is within the groups' times where it interrupted one of their processes):"

// cpuPerRequest is µs of CPU per request from busy ticks.
func cpuPerRequest(ticks uint64, clk float64, requests int64) float64 {
	if requests <= 0 || clk <= 0 {
		return 0
	}
	return round3(float64(ticks) / clk * 1e6 / float64(requests))
}

// soakRSS is resident memory after the load.
type soakRSS struct {
	HAProxyMB    float64 `json:"haproxy_mb"` // master and workers
	HAProxyProcs int     `json:"haproxy_processes"`
	HAProxyHWMMB float64 `json:"haproxy_peak_mb"`
	PulsedMB     float64 `json:"pulsed_mb"`
	PulsedHWMMB  float64 `json:"pulsed_peak_mb"`
}

// summarizeSoak counts the requests and failures.
func summarizeSoak(recs []soakReq, fails []soakFailure) soakSummary {
	var s soakSummary
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
	return s
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
		for _, k := range slices.Sorted(mapKeys(s.FailedByServer)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.FailedByServer[k]))
		}
		g.Note += "; others by server: " + strings.Join(parts, ", ")
	}
	out = append(out, g)

	g = goal{Name: "soak: connect/stot of every server with ≥ 1000 sessions (worst)", Limit: 1, Unit: "%"}
	worst := -1.0
	n := 0
	for _, sv := range r.Servers {
		if sv.Sessions < 1000 {
			continue
		}
		n++
		if sv.ConnectPct > worst {
			worst = sv.ConnectPct
			g.Note = fmt.Sprintf("%s: %d connects / %d sessions", sv.Server, sv.Connects, sv.Sessions)
		}
	}
	if n == 0 {
		g.Status, g.Note = skip, "no server took 1000 sessions"
	} else {
		g.Value, g.Status = worst, verdict(worst, 1)
		g.Note += fmt.Sprintf("; %d server(s) with ≥ 1000 sessions", n)
	}
	out = append(out, g)

	out = append(out, killGoal(s))
	return append(out, satGoals(r.Saturation)...)
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

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
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
		path := "gateway"
		if f.Direct {
			path = "direct"
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
	for _, k := range slices.Sorted(mapKeys(m)) {
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
	b := &reportDoc{md: md}
	if md {
		png := strings.TrimSuffix(jsonPath, ".json") + ".png"
		fmt.Fprintf(b, "Latest run: %s, raw numbers in [`%s`](%s).\n%s.\n\n![soak run: offered connections, answers per second, failed requests, replicas and p99 latency over time](%s)\n",
			readmeTime(r.Started), jsonPath, jsonPath, soakSetup(r), png)
	} else {
		fmt.Fprintf(b, "\nsoak benchmark, %s\n%s\n", r.Started, soakSetup(r))
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
	b.WriteString("\n")
	b.table(goalHeader, goalRows(r.Goals))
	writeNotes(&b.Builder, r.Notes, md)
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
