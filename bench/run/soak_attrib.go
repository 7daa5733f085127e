package main

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// The soak's attribution: which replica held which HAProxy server when,
// and what each failed request is put down to.

// --- who held which server ---

// soakSample is one poll of pulsed's catalog and HAProxy's slots.
type soakSample struct {
	At       time.Time
	Slots    []slotInfo         // the backend's slots (HAProxy)
	Replicas []contract.Replica // the function's replicas (pulsed's catalog)
	Desired  int
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
		a.last[r.Server] = r
		var delta gateway.ServerStat
		cur, old, d := statCounters(&r), statCounters(&prev), statCounters(&delta)
		for i := range d {
			switch {
			case !seen:
				*d[i] = *cur[i]
			case *cur[i] < *old[i]: // reset: the new value is all new
				*d[i], reset = *cur[i], true
			default:
				*d[i] = *cur[i] - *old[i]
			}
		}
		if a.total[r.Server] == nil {
			a.total[r.Server] = &gateway.ServerStat{Backend: r.Backend, Server: r.Server}
			a.byAddr[r.Server] = map[string]*gateway.ServerStat{}
		}
		t := a.total[r.Server]
		t.Status, t.Addr = r.Status, r.Addr
		if a.byAddr[r.Server][r.Addr] == nil {
			a.byAddr[r.Server][r.Addr] = &gateway.ServerStat{Backend: r.Backend, Server: r.Server, Addr: r.Addr}
		}
		for _, sum := range []*gateway.ServerStat{t, a.byAddr[r.Server][r.Addr]} {
			for i, c := range statCounters(sum) {
				*c += *d[i]
			}
		}
		if seen && (delta.ConnErrors > 0 || delta.RespErrors > 0) {
			a.errs = append(a.errs, soakStatErr{At: at, Server: r.Server, Addr: r.Addr, ConnErrors: delta.ConnErrors, RespErrors: delta.RespErrors})
		}
	}
	if reset {
		a.resets++
	}
}

// statCounters are the counters of s that the accumulator sums.
func statCounters(s *gateway.ServerStat) []*int64 {
	return []*int64{&s.Sessions, &s.Connects, &s.Reuses, &s.CheckFails, &s.Downs, &s.ConnErrors, &s.RespErrors, &s.Retries, &s.Redispatches, &s.HTTP5xx}
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
	names := slices.Concat(slices.Collect(maps.Keys(a.total)), slices.Collect(maps.Keys(log)), slices.Collect(maps.Keys(held)))
	slices.SortFunc(names, func(x, y string) int { return cmp.Or(cmp.Compare(slotNumber(x), slotNumber(y)), strings.Compare(x, y)) })
	var out []soakServer
	for _, n := range slices.Compact(names) {
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
func attributeFailures(fails []loadFail, t0 time.Time, lines []haLogLine, errs []soakStatErr, polls []time.Time, tl soakTimeline, kill *soakKill) ([]soakFailure, map[soakKey]bool) {
	byPort := map[int][]int{}
	for i, l := range lines {
		if l.Failed() {
			byPort[l.ClientPort] = append(byPort[l.ClientPort], i)
		}
	}
	used := make([]bool, len(lines))
	sorted := slices.Clone(fails)
	slices.SortFunc(sorted, func(a, b loadFail) int { return int(a.Req.StartNS - b.Req.StartNS) })
	excused := map[soakKey]bool{}
	var out []soakFailure
	for _, f := range sorted {
		r := f.Req
		start := t0.Add(time.Duration(r.StartNS))
		end := start.Add(time.Duration(r.LatencyUS) * time.Microsecond)
		o := soakFailure{StartS: round3(float64(r.StartNS) / 1e9), LatencyMS: round3(float64(r.LatencyUS) / 1000), Direct: r.Direct,
			Error: reqErrName(r.Err), Status: int(r.Status), Message: f.Msg, ClientPort: int(r.Port)}
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
