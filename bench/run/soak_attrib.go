package main

// The soak's attribution: which replica held which HAProxy server (slot)
// when, HAProxy's per-server counters summed across reloads, and what each
// failed request is put down to.

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

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// soakSample is one poll of pulsed's catalog and HAProxy's slots.
type soakSample struct {
	At       time.Time
	Slots    []slotInfo         // the backend's slots (HAProxy)
	Replicas []contract.Replica // the function's replicas (pulsed's catalog)
	Desired  int
}

// soakTimeline is the samples in time order.
type soakTimeline []soakSample

// replicaAt returns the address server (a slot) pointed at, at t, and
// the task there: from the last sample at or before t where it held a
// replica, else the first after (a slot is only re-pointed while in
// maintenance, when it gets no request); within 10 s.
func (tl soakTimeline) replicaAt(server string, t time.Time) (addr, task string) {
	i := sort.Search(len(tl), func(i int) bool { return tl[i].At.After(t) })
	near := func(j int) bool { return j >= 0 && j < len(tl) && tl[j].At.Sub(t).Abs() < 10*time.Second }
	var order []int
	for j := i - 1; near(j); j-- {
		order = append(order, j)
	}
	for j := i; near(j); j++ {
		order = append(order, j)
	}
	for _, j := range order {
		for _, s := range tl[j].Slots {
			if s.Name == server && s.Live() {
				return s.Addr, tl.taskAt(s.Addr, tl[j].At)
			}
		}
	}
	return "", ""
}

// taskAt returns the task at addr in the catalog at t, else in the nearest
// sample that lists it.
func (tl soakTimeline) taskAt(addr string, t time.Time) string {
	j := max(sort.Search(len(tl), func(i int) bool { return tl[i].At.After(t) })-1, 0)
	for d := 0; d < len(tl) && addr != ""; d++ {
		for _, k := range []int{j - d, j + d} {
			if k >= 0 && k < len(tl) {
				if i := slices.IndexFunc(tl[k].Replicas, func(r contract.Replica) bool { return r.Addr == addr }); i >= 0 {
					return tl[k].Replicas[i].TaskID
				}
			}
		}
	}
	return ""
}

// statAcc accumulates HAProxy's per-server counters over polls: a counter
// that went down was reset (a reload started a new worker), so its new
// value is all new.
type statAcc struct {
	last   map[string]gateway.ServerStat
	total  map[string]*gateway.ServerStat
	resets int
	errs   []soakStatErr // the polls where a server's error counters rose
	polls  []time.Time
}

// soakStatErr is one server's error counters (econ, eresp) rising between
// two polls; At is the poll that saw it.
type soakStatErr struct {
	At                     time.Time
	Server, Addr           string
	ConnErrors, RespErrors int64
}

// newStatAcc is an empty accumulator.
func newStatAcc() *statAcc {
	return &statAcc{last: map[string]gateway.ServerStat{}, total: map[string]*gateway.ServerStat{}}
}

// restart forgets what was counted so far: the totals count from the last
// poll on.
func (a *statAcc) restart() {
	a.total, a.resets, a.errs, a.polls = map[string]*gateway.ServerStat{}, 0, nil, nil
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
			case *cur[i] < *old[i]:
				*d[i], reset = *cur[i], true
			default:
				*d[i] = *cur[i] - *old[i]
			}
		}
		t := a.total[r.Server]
		if t == nil {
			t = &gateway.ServerStat{Backend: r.Backend, Server: r.Server}
			a.total[r.Server] = t
		}
		t.Status, t.Addr = r.Status, r.Addr
		for i, c := range statCounters(t) {
			*c += *d[i]
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

// serverRows are a row per HAProxy server of the function's backend that
// took a session, in slot order: its counters and the log's.
func serverRows(a *statAcc, log map[string]*[3]int64) []*report.Row {
	names := slices.Concat(slices.Collect(maps.Keys(a.total)), slices.Collect(maps.Keys(log)))
	slices.SortFunc(names, func(x, y string) int { return cmp.Or(cmp.Compare(slotNumber(x), slotNumber(y)), strings.Compare(x, y)) })
	var out []*report.Row
	for _, n := range slices.Compact(names) {
		r := report.NewRow("server", "server", n)
		if t := a.total[n]; t != nil {
			r.Labels["status"] = t.Status
			for i, c := range statCounters(t) {
				r.Put([]string{"sessions", "connects", "reuses", "chkfail", "chkdown", "econ", "eresp", "wretr", "wredis", "hrsp_5xx"}[i], float64(*c))
			}
			if t.Sessions > 0 {
				r.Put("connect_pct", report.Round3(100*float64(t.Connects)/float64(t.Sessions)))
			}
		}
		if l := log[n]; l != nil {
			r.Put("log_requests", float64(l[0])).Put("log_failed", float64(l[1])).Put("log_retried", float64(l[2]))
		}
		if r.V("sessions") > 0 || r.V("log_requests") > 0 {
			out = append(out, r)
		}
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

// soakKill is the kill the failures are judged against: a replica is
// being killed from the docker kill call to the container's end (the
// engine's FinishedAt).
type soakKill struct {
	CallAt, At time.Time
	Task, Addr string
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

// soakKey identifies a request among the records.
type soakKey struct {
	StartNS int64
	Port    uint16
}

// keyOf is r's key.
func keyOf(r loadReq) soakKey { return soakKey{r.StartNS, r.Port} }

// Where a failure's server came from.
const (
	viaLog      = "log"
	viaCounters = "counters"
)

// attributeFailures matches every failed request through the gateway to
// HAProxy's log line of it (same client port, %tr within a second of the
// start, the nearest, each line used once), which names the server; the
// timeline gives the replica's address and task there then. HAProxy logs
// nothing for a keep-alive request it aborts because its server connection
// broke before any answer (it closes the client's connection for the client
// to retry): such a failure is put down to the one server whose econ or
// eresp rose in the first poll after the request ended, if exactly one did.
// A failure on the killed replica that overlapped the kill is marked in
// flight. It returns a row per failure, in start order, and the keys of
// those in flight at the kill.
func attributeFailures(fails []loadFail, t0 time.Time, lines []haLogLine, errs []soakStatErr, polls []time.Time, tl soakTimeline, kill *soakKill) ([]*report.Row, map[soakKey]bool) {
	byPort := map[int][]int{}
	for i, l := range lines {
		if l.Failed() {
			byPort[l.ClientPort] = append(byPort[l.ClientPort], i)
		}
	}
	used := make([]bool, len(lines))
	sorted := slices.Clone(fails)
	slices.SortFunc(sorted, func(a, b loadFail) int { return cmp.Compare(a.Req.StartNS, b.Req.StartNS) })
	excused := map[soakKey]bool{}
	var out []*report.Row
	for _, f := range sorted {
		r := f.Req
		start := t0.Add(time.Duration(r.StartNS))
		end := start.Add(time.Duration(r.LatencyUS) * time.Microsecond)
		o := report.NewRow("failure", "path", map[bool]string{true: pathDirect, false: pathGateway}[r.Direct], "error", reqErrName(r.Err), "message", f.Msg)
		o.Put("start_s", report.Round3(float64(r.StartNS)/1e9)).Put("latency_ms", report.Round3(float64(r.LatencyUS)/1000)).Put("client_port", float64(r.Port))
		if r.Status != 0 {
			o.Put("status", float64(r.Status))
		}
		best, bestD := -1, time.Duration(math.MaxInt64)
		for _, i := range byPort[int(r.Port)] {
			if d := lines[i].Accept.Sub(start).Abs(); !used[i] && d <= time.Second && d < bestD && !r.Direct && r.Port != 0 {
				best, bestD = i, d
			}
		}
		var server, addr, task string
		if best >= 0 {
			used[best] = true
			l := lines[best]
			addr, task = tl.replicaAt(l.Server, l.Accept)
			server, o.Labels["via"], o.Labels["term"] = l.Server, viaLog, l.Term
			o.Labels["timers"] = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(l.Timers)), "/"), "[]")
			o.Put("haproxy_status", float64(l.Status)).Put("retries", float64(l.Retries)).Put("accept_minus_start_ms", float64(l.Accept.Sub(start).Milliseconds()))
		} else if e, ok := counterSuspect(errs, polls, end); ok && !r.Direct {
			server, addr, task, o.Labels["via"] = e.Server, e.Addr, tl.taskAt(e.Addr, e.At), viaCounters
		}
		if server != "" {
			o.Labels["server"], o.Labels["addr"], o.Labels["task"] = server, addr, task
			if kill != nil && (task == kill.Task && task != "" || addr == kill.Addr && addr != "") && kill.inFlight(start, end) {
				o.Labels["in_flight"] = "yes"
				excused[keyOf(r)] = true
			}
		}
		out = append(out, o)
	}
	return out, excused
}

// counterSuspect returns the one server whose econ or eresp rose in the
// first poll at or after end (HAProxy counts a failure when it gives up on
// the request, before the client sees its connection close).
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
