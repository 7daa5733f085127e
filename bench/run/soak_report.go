package main

// The soak suite's analysis and report, pure: rows from the records and samples, then
// the tables, goals and notes; and the saturation's load and summary.

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"context"
	"maps"
	"strconv"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/gateway"
)

// soakRun is what the soak's load and pollers left.
type soakRun struct {
	t0     time.Time
	phases []soakPhase
	recs   []loadReq
	fails  []loadFail
	log    haLogResult
	stats  *statAcc
	kill   *soakKill
}

// analyzeSoak adds the soak's rows: per minute, server, failed request, and sum last.
func analyzeSoak(rep *report.Report, sum *report.Row, r soakRun) {
	reqs, failed := countByStart(r.recs, len(r.phases), func(s float64) int { return phaseAt(r.phases, s) })
	for i, p := range r.phases {
		rep.Add(report.NewRow("minute", "minute", i, "phase", p.Name).Put("conns", float64(p.Conns)).Put("requests", reqs[i]).Put("failed", failed[i]))
	}
	for _, row := range serverRows(r.stats) {
		rep.Add(row)
	}
	v := map[string]float64{"log_requests": float64(r.log.Requests), "failed": 0, "gateway_failed": 0, "direct_failed": 0, "in_flight_at_kill": 0}
	for _, q := range r.recs {
		v["requests"]++
		v[map[bool]string{true: pathDirect, false: pathGateway}[q.Direct]+"_requests"]++
	}
	failures := attributeFailures(r.fails, r.t0, r.log.Failed, r.stats, r.kill)
	var call float64
	if r.kill != nil {
		call = report.Round3(r.kill.CallAt.Sub(r.t0).Seconds())
		v["kill_call_s"], v["kill_end_s"], v["kill_failed"], v["kill_failed_on_killed"], v["kill_window_ms"] = call, report.Round3(r.kill.At.Sub(r.t0).Seconds()), 0, 0, 0
	}
	for _, f := range failures {
		rep.Add(f)
		inFlight := float64(btoi(f.Label("in_flight") != ""))
		v["failed"]++
		v[f.Label("path")+"_failed"]++
		v["in_flight_at_kill"] += inFlight
		if e := f.V("start_s") + f.V("latency_ms")/1000; r.kill != nil && f.Label("path") == pathGateway && e >= call && e <= call+soakKillSpan.Seconds() {
			v["kill_failed"]++
			v["kill_failed_on_killed"] += inFlight
			v["kill_window_ms"] = math.Max(v["kill_window_ms"], report.Round3(1000*(e-call)))
		}
	}
	rep.Add(sum.PutAll(v))
}

// countByStart counts the requests, and the failed ones, by bucket(start s) in [0, n).
func countByStart(recs []loadReq, n int, bucket func(startS float64) int) (requests, failed []float64) {
	requests, failed = make([]float64, n), make([]float64, n)
	for _, r := range recs {
		if i := bucket(float64(r.StartNS) / 1e9); i >= 0 && i < n {
			requests[i]++
			failed[i] += float64(btoi(r.Err != reqOK))
		}
	}
	return requests, failed
}

// fairRows are the stretches' rows (ok: answered 2xx and ended in the stretch) and each
// path's fair_cpu row; clk is ticks a second.
func fairRows(sts []stretch, recs []loadReq, clk float64) []*report.Row {
	_, failed := countByStart(recs, len(sts), func(s float64) int {
		return slices.IndexFunc(sts, func(st stretch) bool { return s >= st.from && s < st.to })
	})
	var out []*report.Row
	sum, ok, secs := map[string]map[string]float64{}, map[string]int64{}, map[string]float64{}
	for i, st := range sts {
		n := okIn(recs, st.from, st.to, st.path == pathDirect)
		out = append(out, report.NewRow("stretch", "stretch", i+1, "path", st.path).PutAll(map[string]float64{"start_s": st.from, "end_s": st.to,
			"ok": float64(n), "failed": failed[i], "busy_pct": busyPct(uint64(st.ticks["busy"]), uint64(st.ticks["total"])), "cpu_per_req_us": perRequest(st.ticks["busy"], clk, n)}))
		if sum[st.path] == nil {
			sum[st.path] = map[string]float64{}
		}
		for k, v := range st.ticks {
			sum[st.path][k] += v
		}
		ok[st.path], secs[st.path] = ok[st.path]+n, secs[st.path]+st.to-st.from
	}
	for _, p := range []string{pathGateway, pathDirect} {
		if t := sum[p]; t != nil {
			r := report.NewRow("fair_cpu", "path", p).Put("seconds", secs[p]).Put("requests", float64(ok[p])).Put("cpu_per_req_us", perRequest(t["busy"], clk, ok[p])).
				Put("busy_pct", busyPct(uint64(t["busy"]), uint64(t["total"])))
			for k, v := range t {
				r.Put(k+"_ticks", v)
			}
			if h := t[groupHarness]; h > 0 && h < t["busy"] {
				r.Put("server_cpu_per_req_us", perRequest(t["busy"]-h, clk, ok[p]))
			}
			out = append(out, r)
		}
	}
	return out
}

// okIn counts the requests answered 2xx that ended in [from, to) s, on the path.
func okIn(recs []loadReq, from, to float64, direct bool) int64 {
	var n int64
	for _, r := range recs {
		if end := r.StartNS + int64(r.LatencyUS)*1000; r.Err == reqOK && r.Direct == direct && end >= int64(from*1e9) && end < int64(to*1e9) {
			n++
		}
	}
	return n
}

// perRequest is µs of CPU per request from ticks, NaN without requests.
func perRequest(ticks, clk float64, requests int64) float64 {
	if requests <= 0 || clk <= 0 {
		return math.NaN()
	}
	return report.Round3(ticks / clk * 1e6 / float64(requests))
}

// soakTables fills rep's summary, tables, goals and notes from its rows.
func soakTables(rep *report.Report) {
	rows, st, n := rep.Rows, report.Stat, "%.0f"
	rep.Summary = report.Summarize(rows, "fair_cpu", "path")
	rep.Tables = append(rep.Tables,
		report.GroupTable(fmt.Sprintf("The fair CPU comparison (the goal's figure), before the soak: %d connections through the gateway and straight to the one "+
			"replica in interleaved stretches; ok = answered 2xx with the body and ended in the stretch (the CPU's divisor):", fairConns),
			report.Summarize(rows, "stretch", "stretch", "path"), "stretch", report.LabelCol("path", "path"), st("ok", "ok", n), st("failed", "failed", n),
			st("host busy %", "busy_pct", n), st("whole-host CPU/req µs", "cpu_per_req_us", "%.1f")),
		report.GroupTable("The soak per minute (requests by start time):", report.Summarize(rows, "minute", "minute", "phase"), "minute",
			report.LabelCol("phase", "phase"), st("conns", "conns", n), st("requests", "requests", n), st("failed", "failed", n)),
		report.GroupTable("Per HAProxy server (slot) of the function's backend, `show stat` counters summed over 1 s polls across reloads:",
			report.Summarize(rows, "server", "server"), "server", st("sessions", "sessions", n), st("connects", "connects", n),
			st("connect/stot %", "connect_pct", "%.3f")))
	rep.Goals = soakGoals(rows)
	rep.Notes = append(rep.Notes, soakNotes(rows)...)
}

// first is the first row of kind.
func first(rows []report.Row, kind string) (report.Row, bool) {
	rs := report.Of(rows, kind)
	if len(rs) == 0 {
		return report.Row{}, false
	}
	return rs[0], true
}

// soakGoals are the targets and the figures it asks reported (INFO).
func soakGoals(rows []report.Row) []report.Goal {
	fair := report.Summarize(rows, "fair_cpu", "path")
	gw, _ := report.Find(fair, "path", pathGateway)
	di, _ := report.Find(fair, "path", pathDirect)
	sts, secs := report.Of(rows, "stretch"), gw.M("seconds")
	if math.IsNaN(secs) {
		secs = 0
	}
	g := report.NewGoal(fmt.Sprintf("whole-host CPU per request through the gateway ÷ straight to the replica: pulsed at its defaults (no request log), "+
		"one replica (scale min = max = 1), c=%d, %.0f s per path in %d interleaved stretches", fairConns, secs, len(sts)), "×", 2.5)
	if math.IsNaN(gw.M("cpu_per_req_us") + di.M("cpu_per_req_us")) {
		g = g.Skipped("a path has no requests")
	} else {
		note := fmt.Sprintf("%.1f µs through the gateway (%.0f requests), %.1f µs direct (%.0f requests)", gw.M("cpu_per_req_us"), gw.M("requests"), di.M("cpu_per_req_us"), di.M("requests"))
		var pairs []float64
		for i := 0; i+1 < len(sts); i += 2 {
			if r := sts[i].V("cpu_per_req_us") / sts[i+1].V("cpu_per_req_us"); r > 0 && !math.IsInf(r, 0) {
				pairs = append(pairs, map[bool]float64{true: 1 / r, false: r}[sts[i].Label("path") == pathDirect])
			}
		}
		if len(pairs) > 0 {
			note += fmt.Sprintf("; per pair of stretches %.2f–%.2f×", slices.Min(pairs), slices.Max(pairs))
		}
		if a, b := gw.M("server_cpu_per_req_us"), di.M("server_cpu_per_req_us"); a > 0 && b > 0 {
			note += fmt.Sprintf("; without the client's CPU %.1f ÷ %.1f µs = %.2f×", a, b, a/b)
		}
		g = g.Noted("%s", note).Ratio(fair, "path", pathGateway, pathDirect, "cpu_per_req_us")
	}
	goals := []report.Goal{g}

	s, soaked := first(rows, "soak")
	g = report.NewGoal("soak: failed requests through the gateway (by start time), not counting those in flight on the killed replica at the kill", "requests", 0)
	if note := fmt.Sprintf("%.0f of %.0f failed; %.0f in flight on the killed replica at the kill", s.V("gateway_failed"), s.V("gateway_requests"), s.V("in_flight_at_kill")); !soaked {
		g = g.Skipped("the soak did not run")
	} else {
		if s.V("kill_end_s") > 0 {
			note += fmt.Sprintf(" (on it between the docker kill call at %s and the container's end at %s)", clock(s.V("kill_call_s")), clock(s.V("kill_end_s")))
		}
		g = g.Noted("%s", note).Check(s.V("gateway_failed") - s.V("in_flight_at_kill"))
	}
	goals = append(goals, g)

	g = report.NewGoal("soak: connect/stot of every server with ≥ 1000 sessions (worst)", "%", 1)
	var worst report.Row
	busy := 0
	for _, r := range report.Of(rows, "server") {
		if r.V("sessions") >= 1000 {
			if busy++; busy == 1 || r.V("connect_pct") > worst.V("connect_pct") {
				worst = r
			}
		}
	}
	if busy == 0 {
		g = g.Skipped("no server took 1000 sessions")
	} else {
		g = g.Noted("%s: %.0f connects / %.0f sessions; %d server(s) with ≥ 1000 sessions", worst.Label("server"), worst.V("connects"), worst.V("sessions"), busy).Check(worst.V("connect_pct"))
	}
	goals = append(goals, g)

	g = report.NewGoal("soak: error window after the kill (docker kill call → the last failed request's end)", "ms", 0).AsInfo()
	switch {
	case !(s.V("kill_call_s") > 0):
		g = g.Skipped("no replica was killed")
	case !(s.V("kill_failed") > 0):
		g = g.Noted("no request failed after the kill").Check(0)
	default:
		g = g.Noted("%.0f request(s) through the gateway failed in the %.0f s after the call, %.0f of them in flight on the killed replica; the container ended %.0f ms after the call",
			s.V("kill_failed"), soakKillSpan.Seconds(), s.V("kill_failed_on_killed"), 1000*(s.V("kill_end_s")-s.V("kill_call_s"))).Check(s.V("kill_window_ms"))
	}
	goals = append(goals, g)

	sat, ran := first(rows, "saturation")
	name := fmt.Sprintf("saturation (one replica, %d connections, %d ms of CPU each, %.0f s): ", satConns, satBurnMS, satDuration.Seconds())
	check := func(g report.Goal, metric string) report.Goal {
		if !ran {
			return g.Skipped("the saturation did not run")
		}
		return g.Check(sat.V(metric))
	}
	return append(goals,
		check(report.NewGoal(name+"DOWN transitions of the replica's slot (chkdown)", "transitions", 0).Noted("slot %s, %.0f sessions; failed checks %.0f; %.0f of %.0f polls found it DOWN",
			sat.Label("server"), sat.V("sessions"), sat.V("chkfail"), sat.V("down_polls"), sat.V("polls")), "chkdown"),
		check(report.NewGoal(name+"requests detoured through the cold-start path (backup server stot)", "requests", 0), "backup_sessions"),
		check(report.NewGoal(name+"failed requests", "requests", 0).Noted("%s", strings.TrimPrefix(sat.Label("failed_by_kind")+"; of "+report.Num("%.0f", sat.V("requests")), "; ")), "failed"),
		check(report.NewGoal(name+"latency p99", "ms", 0).AsInfo().Noted("p50 %.0f ms, max %.0f ms, %.1f answers/s; host %.0f %% busy",
			sat.V("p50_ms"), sat.V("max_ms"), sat.V("rps"), sat.V("host_busy_pct")), "p99_ms"))
}

// soakNotes flag what makes the soak's figures less than they claim.
func soakNotes(rows []report.Row) []string {
	var notes []string
	add := func(cond bool, format string, a ...any) {
		if cond {
			notes = append(notes, fmt.Sprintf(format, a...))
		}
	}
	for _, c := range report.Of(rows, "fair_cpu") {
		add(c.V("steal_ticks") > 0, "the hypervisor stole %.0f ticks in the fair comparison's %s stretches (left out of busy CPU)", c.V("steal_ticks"), c.Label("path"))
	}
	s, ok := first(rows, "soak")
	if !ok {
		return notes
	}
	add(!(s.V("kill_call_s") > 0), "no replica was killed (see the harness's log)")
	add(s.V("log_requests") < s.V("gateway_requests"), "HAProxy's log has %.0f request lines for %.0f requests through the gateway (it writes no line "+
		"for a keep-alive request it aborts for the client to retry); such failures are put down to a server by its error counters",
		s.V("log_requests"), s.V("gateway_requests"))
	add(s.V("direct_failed") > 0, "%.0f request(s) straight to the replica failed (not through the gateway, so not in its goal)", s.V("direct_failed"))
	add(!strings.HasPrefix(s.Label("rolling_update"), string(swarm.UpdateStateCompleted)), "the rolling update did not complete: %s", s.Label("rolling_update"))
	return notes
}

// Settings of the saturation.
const (
	satConns    = 64
	satBurnMS   = 15
	satDuration = 2 * time.Minute
	satPoll     = time.Second
)

// burnEchoC is the saturation's handler: read stdin, burn BURN_MS
// (default 15) ms of CPU, write what was read to stdout.
const burnEchoC = `#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(void){static char b[1<<20];size_t n=0;ssize_t r;
while(n<sizeof b&&(r=read(0,b+n,sizeof b-n))>0)n+=(size_t)r;
const char*v=getenv("BURN_MS");long ms=v?atol(v):15;struct timespec a,c;
clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&a);volatile unsigned long x=0;
for(;;){for(int i=0;i<100000;i++)x+=i;clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&c);
if((c.tv_sec-a.tv_sec)*1000+(c.tv_nsec-a.tv_nsec)/1000000>=ms)break;}
return write(1,b,n)==(ssize_t)n?0:1;}
`

// soakSat is a saturation's result: the client's requests, and HAProxy's
// counters over the load for the busiest slot (Server), every slot (Downs,
// CheckFails) and the backup server.
type soakSat struct {
	Requests, OK, Failed                        int64
	FailedByKind                                map[string]int
	RPS, P50MS, P99MS, MaxMS                    float64 // RPS: answers per second
	Server                                      string
	Sessions, Downs, CheckFails, BackupSessions int64
	Polls, DownPolls, PollErrs                  int     // 1 s polls of show stat; those finding a slot DOWN; failed
	HostBusyPct                                 float64 // of all cores
}

// saturation runs the saturation on pulsed's first lifetime and adds its
// row.
func (b *soakBench) saturation(ctx context.Context) error {
	var s soakSat
	acc := newStatAcc()
	poll := func() error {
		rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.burn))
		if err != nil {
			s.PollErrs++
			return err
		}
		acc.add(time.Now(), rows)
		s.Polls++
		s.DownPolls += btoi(slices.ContainsFunc(rows, func(r gateway.ServerStat) bool {
			return r.Server != gateway.BackupServerName && strings.HasPrefix(r.Status, "DOWN")
		}))
		return nil
	}
	if err := poll(); err != nil {
		return err
	}
	acc.restart()
	s.Polls, s.DownPolls = 0, 0
	b.log.Info("saturation", "function", b.burn, "connections", satConns, "burn_ms", satBurnMS, "for", satDuration)
	h0, t0 := markCPU(), time.Now()
	load := newClosedLoop(t0, b.body, nil)
	load.set(satConns, b.gwAddr, "/function/"+b.burn, false)
	lctx, cancel := context.WithTimeout(ctx, satDuration)
	every(lctx, satPoll, func() { _ = poll() })
	cancel()
	recs, fails := load.end()
	h1, wall := markCPU(), time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return err
	}
	_ = poll()
	summarizeSat(&s, recs, fails, acc, wall)
	s.HostBusyPct = busyPct(uint64(h1["busy"]-h0["busy"]), uint64(h1["total"]-h0["total"]))
	if s.PollErrs > 0 {
		b.rep.Note("%d `show stat` polls of the saturation failed", s.PollErrs)
	}
	b.rep.Add(satRow(s))
	return nil
}

// summarizeSat fills s from the client's records and HAProxy's counters
// over wall seconds.
func summarizeSat(s *soakSat, recs []loadReq, fails []loadFail, acc *statAcc, wall float64) {
	lat := report.Values(recs, func(r loadReq) float64 { return float64(r.LatencyUS) / 1000 })
	s.Requests, s.OK, s.P50MS, s.P99MS, s.MaxMS = int64(len(recs)), int64(len(recs)-len(fails)), 0, 0, 0
	if len(lat) > 0 { // NaN would not marshal
		s.P50MS, s.P99MS, s.MaxMS = report.Percentile(lat, 50), report.Percentile(lat, 99), report.Percentile(lat, 100)
	}
	if wall > 0 {
		s.RPS = report.Round3(float64(s.OK) / wall)
	}
	s.Failed, s.FailedByKind = int64(len(fails)), nil
	for _, f := range fails {
		if s.FailedByKind == nil {
			s.FailedByKind = map[string]int{}
		}
		key := reqErrName(f.Req.Err)
		if f.Req.Status != 0 {
			key += " " + strconv.Itoa(int(f.Req.Status))
		}
		s.FailedByKind[key]++
	}
	s.Server, s.Sessions, s.Downs, s.CheckFails, s.BackupSessions = "", 0, 0, 0, 0
	for name, t := range acc.total {
		if name == gateway.BackupServerName {
			s.BackupSessions = t.Sessions
			continue
		}
		s.Downs += t.Downs
		s.CheckFails += t.CheckFails
		if s.Server == "" || t.Sessions > s.Sessions || t.Sessions == s.Sessions && slotNumber(name) < slotNumber(s.Server) {
			s.Server, s.Sessions = name, t.Sessions
		}
	}
}

// satRow is the saturation's row.
func satRow(s soakSat) *report.Row {
	r := report.NewRow("saturation", "server", s.Server, "failed_by_kind", kinds(s.FailedByKind))
	return r.PutAll(map[string]float64{"requests": float64(s.Requests), "failed": float64(s.Failed), "rps": s.RPS, "p50_ms": s.P50MS,
		"p99_ms": s.P99MS, "max_ms": s.MaxMS, "sessions": float64(s.Sessions), "chkdown": float64(s.Downs), "chkfail": float64(s.CheckFails),
		"backup_sessions": float64(s.BackupSessions), "polls": float64(s.Polls), "down_polls": float64(s.DownPolls), "host_busy_pct": s.HostBusyPct})
}

// busyPct is busy ticks in % of total ticks (the whole host), 0 for none.
func busyPct(busy, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return report.Round3(100 * float64(busy) / float64(total))
}

// kinds is "kind ×n, …" of failures counted by kind.
func kinds(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
