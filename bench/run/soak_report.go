package main

// The soak suite's analysis and report, pure: the client's records and the
// pollers' samples become rows (per minute, per server, per failed request,
// each path's CPU, the soak's figures) and a per-second series, then the
// tables, goals and notes.

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
)

// soakRun is what the soak's load and pollers left.
type soakRun struct {
	t0     time.Time
	phases []soakPhase
	events []soakEvent
	recs   []loadReq
	fails  []loadFail
	log    haLogResult
	tl     soakTimeline
	host   []soakHostSample
	stats  *statAcc
	kill   *soakKill
	cpu    [2]map[string]float64 // the CPU minutes' ticks: through the gateway, direct
	clk    float64
}

// analyzeSoak adds the soak's rows to rep, sum (its figures, partly filled
// by the run) last, and records its per-second series.
func analyzeSoak(rep *report.Report, sum *report.Row, r soakRun) {
	failures, excused := attributeFailures(r.fails, r.t0, r.log.Notable, r.stats.errs, r.stats.polls, r.tl, r.kill)
	for _, e := range r.events {
		rep.Add(report.NewRow("event", "event", e.Name, "addr", e.Addr, "task", e.Task, "detail", e.Detail).Put("at_s", e.AtS))
	}
	sec := soakSeconds(r.recs, excused, r.phases, r.t0, r.tl, r.host)
	rep.Record("seconds", sec)
	v := map[string]float64{"log_lines": float64(r.log.Lines), "log_requests": float64(r.log.Requests), "log_other_backends": float64(r.log.Others),
		"log_unkept": float64(r.log.Unkept), "haproxy_events": float64(len(r.log.Events)), "stat_resets": float64(r.stats.resets),
		"failed": 0, "gateway_failed": 0, "direct_failed": 0, "in_flight_at_kill": 0}
	if len(sec["time_wait"]) > 0 {
		i := slices.Index(sec["time_wait"], slices.Max(sec["time_wait"]))
		v["time_wait_peak"], v["time_wait_peak_at_s"] = sec["time_wait"][i], float64(i)
	}
	// most is the highest of f(second) over the seconds in [from, to).
	most := func(from, to float64, f func(i int) float64) float64 {
		m := math.Inf(-1)
		for i := int(from); i < min(int(to), len(sec["running"])); i++ {
			m = math.Max(m, f(i))
		}
		return m
	}
	ts := tallyByStart(r.recs, excused, len(r.phases), func(ns int64) int { return phaseAt(r.phases, float64(ns)/1e9) })
	for i, p := range r.phases {
		var evs []string
		for _, e := range r.events {
			if e.AtS >= p.StartS && e.AtS < p.EndS {
				evs = append(evs, fmt.Sprintf("%s @%s", e.Name, clock(e.AtS)))
			}
		}
		rep.Add(report.NewRow("minute", "minute", i, "phase", p.Name, "events", strings.Join(evs, ", "), "addr", p.Addr, "task", p.Task).
			PutAll(ts[i].values(p.EndS-p.StartS)).Put("start_s", p.StartS).Put("conns", float64(p.Conns)).Put("max_replicas", most(p.StartS, p.EndS, func(i int) float64 { return sec["running"][i] + sec["draining"][i] })))
	}
	for _, row := range serverRows(r.stats, r.log.ByServer) {
		rep.Add(row)
	}
	byKind, byServer := map[string]int{}, map[string]int{}
	for _, q := range r.recs {
		v["requests"]++
		v[map[bool]string{true: "direct_requests", false: "gateway_requests"}[q.Direct]]++
	}
	for _, f := range failures {
		if i := phaseAt(r.phases, f.V("start_s")); f.Label("path") == pathDirect && i >= 0 {
			f.Labels["addr"], f.Labels["task"] = r.phases[i].Addr, r.phases[i].Task
		}
		rep.Add(f)
		byKind[f.Label("error")]++
		v["failed"]++
		switch {
		case f.Label("path") == pathDirect:
			v["direct_failed"]++
		case f.Label("in_flight") != "":
			v["gateway_failed"]++
			v["in_flight_at_kill"]++
		default:
			v["gateway_failed"]++
			byServer[map[string]string{viaLog: f.Label("server"), viaCounters: f.Label("server") + " (not logged; from its counters)", "": "unknown (not logged)"}[f.Label("via")]]++
		}
	}
	for i, path := range []string{pathGateway, pathDirect} {
		if p := r.phases[len(r.phases)-2+i]; r.cpu[i] != nil {
			c := cpuRow("soak_cpu", path, r.cpu[i], p.EndS-p.StartS, okIn(r.recs, p.StartS, p.EndS, i == 1), r.clk)
			if lo, hi := -most(p.StartS, p.EndS, func(i int) float64 { return -sec["running"][i] }), most(p.StartS, p.EndS, func(i int) float64 { return sec["running"][i] }); i == 0 {
				c.Labels["replicas"] = map[bool]string{true: fmt.Sprint(hi), false: fmt.Sprintf("%g–%g", lo, hi)}[lo == hi]
			}
			rep.Add(c)
		}
	}
	for _, smp := range r.tl {
		v["max_replicas"], v["max_desired"] = max(v["max_replicas"], float64(len(smp.Replicas))), max(v["max_desired"], float64(smp.Desired))
	}
	if r.kill != nil {
		call := report.Round3(r.kill.CallAt.Sub(r.t0).Seconds())
		v["kill_call_s"], v["kill_end_s"] = call, report.Round3(r.kill.At.Sub(r.t0).Seconds())
		for _, f := range failures {
			if e := f.V("start_s") + f.V("latency_ms")/1000; f.Label("path") == pathGateway && e >= call && e <= call+soakKillSpan.Seconds() {
				v["kill_failed"]++
				v["kill_failed_on_killed"] += float64(btoi(f.Label("in_flight") != ""))
				v["kill_window_ms"] = math.Max(v["kill_window_ms"], report.Round3(1000*(e-call)))
			}
		}
	}
	sum.Labels["failed_by_kind"], sum.Labels["failed_by_server"] = countList(byKind), countList(byServer)
	var lines []string
	for _, e := range r.log.Events {
		lines = append(lines, fmt.Sprintf("%.3f %s", e.At.Sub(r.t0).Seconds(), e.Line))
	}
	rep.Record("haproxy_events", lines)
	rep.Add(sum.PutAll(v))
}

// countList is "key n, …" of counts, keys in order.
func countList(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// soakTally is the requests that started in one bucket: how many, failed,
// excused, answered (any status), and their latencies, sorted.
type soakTally struct {
	requests, failed, excused, answered int64
	lat                                 []int32
}

// ms is the nearest-rank p-th percentile of the latencies, in ms.
func (t soakTally) ms(p float64) float64 { return float64(report.NearestRank(t.lat, p)) / 1000 }

// values are the tally's figures over d seconds; no latency without
// requests.
func (t soakTally) values(d float64) map[string]float64 {
	v := map[string]float64{"requests": float64(t.requests), "failed": float64(t.failed), "excused": float64(t.excused), "rps": math.Round(float64(t.answered) / d)}
	if t.requests > 0 {
		v["p50_ms"], v["p99_ms"], v["max_ms"] = t.ms(50), t.ms(99), t.ms(100)
	}
	return v
}

// tallyByStart counts recs into n buckets by start time; bucket returns a
// request's, outside [0, n) for none. excused holds the keys of the excused
// requests.
func tallyByStart(recs []loadReq, excused map[soakKey]bool, n int, bucket func(startNS int64) int) []soakTally {
	out := make([]soakTally, n)
	for _, r := range recs {
		if i := bucket(r.StartNS); i >= 0 && i < n {
			t := &out[i]
			t.requests, t.lat = t.requests+1, append(t.lat, r.LatencyUS)
			if r.Err != reqOK {
				t.failed, t.excused = t.failed+1, t.excused+int64(btoi(excused[keyOf(r)]))
			}
			t.answered += int64(btoi(r.Status != 0))
		}
	}
	for i := range out {
		slices.Sort(out[i].lat)
	}
	return out
}

// soakSeconds is the run's per-second series: the offered connections, the
// requests started, failed and excused, their p50 and p99 (0 for none;
// requests by start), the answers (by end); the catalog's replicas running,
// draining, routed and desired (its last sample in each second), TIME_WAIT
// and the host's busy CPU %.
func soakSeconds(recs []loadReq, excused map[soakKey]bool, phases []soakPhase, t0 time.Time, tl soakTimeline, host []soakHostSample) map[string][]float64 {
	n := int(phases[len(phases)-1].EndS)
	sec := map[string][]float64{}
	for _, k := range []string{"conns", "direct", "requests", "failed", "excused", "p50_ms", "p99_ms", "answered", "running", "draining", "routed", "desired", "time_wait", "busy_pct"} {
		sec[k] = make([]float64, n)
	}
	second := func(ns int64) int { return int(ns / int64(time.Second)) }
	for _, r := range recs {
		if e := second(r.StartNS + int64(r.LatencyUS)*1000); r.Status != 0 && r.StartNS >= 0 && second(r.StartNS) < n && e < n {
			sec["answered"][e]++
		}
	}
	j, k := -1, 0
	for i, t := range tallyByStart(recs, excused, n, second) {
		sec["requests"][i], sec["failed"][i], sec["excused"][i] = float64(t.requests), float64(t.failed), float64(t.excused)
		if t.requests > 0 {
			sec["p50_ms"][i], sec["p99_ms"][i] = t.ms(50), t.ms(99)
		}
		if p := phaseAt(phases, float64(i)); p >= 0 {
			sec["conns"][i], sec["direct"][i] = float64(phases[p].Conns), float64(btoi(phases[p].Direct))
		}
		end := t0.Add(time.Duration(i+1) * time.Second)
		for j+1 < len(tl) && tl[j+1].At.Before(end) {
			j++
		}
		for k+1 < len(host) && host[k+1].At.Before(end) {
			k++
		}
		if j >= 0 {
			sec["desired"][i] = float64(tl[j].Desired)
			for _, r := range tl[j].Replicas {
				sec[map[bool]string{true: "draining", false: "running"}[r.Draining]][i]++
				sec["routed"][i] += float64(btoi(r.Routed))
			}
		}
		if k < len(host) && host[k].At.Before(end) {
			sec["time_wait"][i] = float64(host[k].TimeWait)
			if k > 0 {
				sec["busy_pct"][i] = busyPct(host[k].CPU.Busy-host[k-1].CPU.Busy, host[k].CPU.Total-host[k-1].CPU.Total)
			}
		}
	}
	return sec
}

// okIn counts the requests answered 2xx with the right body that ended in
// [from, to) seconds, on the direct path or not.
func okIn(recs []loadReq, from, to float64, direct bool) int64 {
	var n int64
	for _, r := range recs {
		if end := r.StartNS + int64(r.LatencyUS)*1000; r.Err == reqOK && r.Direct == direct && end >= int64(from*1e9) && end < int64(to*1e9) {
			n++
		}
	}
	return n
}

// soakTables fills rep's summary, tables, goals and notes from its rows;
// picture is the PNG's path from the README, "" for none.
func soakTables(rep *report.Report, picture string) {
	rows, st, n := rep.Rows, report.Stat, "%.0f"
	rep.Summary = report.Summarize(rows, "fair_cpu", "path")
	caption := fmt.Sprintf("The fair CPU comparison (the goal's figure), before the soak: %d connections through the gateway and straight to the one replica in "+
		"interleaved stretches; ok = answered 2xx with the body and ended in the stretch (the CPU's divisor); HAProxy's counters over each gateway stretch:", fairConns)
	if picture != "" {
		caption = "![soak run: offered connections, answers per second, failed requests, replicas and p99 latency over time](" + picture + ")\n\n" + caption
	}
	rep.Tables = append(rep.Tables, report.GroupTable(caption, report.Summarize(rows, "stretch", "stretch", "path"), "stretch", report.LabelCol("path", "path"),
		st("ok", "ok", n), st("failed", "failed", n), st("rps", "rps", n), st("p50 ms", "p50_ms", "%.2f"), st("p99 ms", "p99_ms", "%.2f"),
		st("host busy %", "busy_pct", n), st("whole-host CPU/req µs", "cpu_per_req_us", "%.1f"), st("HAProxy conns (all)", "haproxy_conns", n),
		st("HAProxy requests (all)", "haproxy_requests", n), st("connects to the replica", "server_connects", n)), cpuTable(rows),
		report.GroupTable(fmt.Sprintf("Health under saturation, before the soak: one fork-mode replica burning %d ms of CPU per request, %d connections through "+
			"the gateway for %s; HAProxy's counters from `show stat` every second:", satBurnMS, satConns, satDuration), report.Summarize(rows, "saturation", "server"),
			"server", st("requests", "requests", n), st("failed", "failed", n), st("p50 ms", "p50_ms", n), st("p99 ms", "p99_ms", n), st("max ms", "max_ms", n),
			st("DOWN transitions", "chkdown", n), st("failed checks", "chkfail", n), st("polls finding it DOWN", "down_polls", n),
			st("detours (backup stot)", "backup_sessions", n), st("5xx", "hrsp_5xx", n), st("host busy %", "host_busy_pct", n), st("host ms/req", "host_ms_per_req", "%.1f")))
	events := report.Table{Caption: "The soak's events (minutes:seconds after its load started):", Header: []string{"at", "event", "replica", "task", "detail"}}
	for _, e := range report.Of(rows, "event") {
		events.Rows = append(events.Rows, []string{clock(e.V("at_s")), e.Label("event"), e.Label("addr"), short(e.Label("task")), e.Label("detail")})
	}
	rep.Tables = append(rep.Tables, events, report.GroupTable("The soak per minute (requests by start time; rps = answers per second; replicas = the most in pulsed's catalog, draining included):",
		report.Summarize(rows, "minute", "minute", "phase", "events"), "minute", report.LabelCol("phase", "phase"), st("conns", "conns", n),
		st("requests", "requests", n), st("failed", "failed", n), st("in flight at kill", "excused", n), st("rps", "rps", n), st("p50 ms", "p50_ms", "%.2f"),
		st("p99 ms", "p99_ms", "%.2f"), st("max ms", "max_ms", "%.1f"), st("replicas", "max_replicas", n), report.LabelCol("events", "events")),
		soakFigures(rows), report.GroupTable("Per HAProxy server (slot) of the function's backend: `show stat` counters summed over 1 s polls across reloads, and HAProxy's request log:",
			report.Summarize(rows, "server", "server"), "server", st("sessions", "sessions", n), st("connects", "connects", n), st("connect/stot %", "connect_pct", "%.3f"),
			st("econ", "econ", n), st("eresp", "eresp", n), st("retries", "wretr", n), st("redispatches", "wredis", n), st("5xx", "hrsp_5xx", n),
			st("checks down", "chkdown", n), st("log requests", "log_requests", n), st("log failed", "log_failed", n)))
	fails := report.Table{Caption: "Failed requests (by start time), matched to HAProxy's log line (client port and %tr), else to the one server whose econ/eresp rose " +
		"in the next `show stat` poll (HAProxy logs no line for a keep-alive request it aborts for the client to retry):",
		Header: []string{"start", "path", "client saw", "latency ms", "HAProxy server", "replica", "task", "HAProxy status", "termination", "timers ms", "in flight at kill"}}
	for i, f := range report.Of(rows, "failure") {
		if i == soakFailMax {
			fails.Note = fmt.Sprintf("… %d more in the JSON", len(report.Of(rows, "failure"))-soakFailMax)
			break
		}
		server := map[string]string{viaLog: f.Label("server"), viaCounters: f.Label("server") + " (not logged; its econ/eresp rose)", "": "not logged, unknown"}[f.Label("via")]
		fails.Rows = append(fails.Rows, []string{clock(f.V("start_s")), f.Label("path"), truncate(strings.Join(strings.Fields(f.Label("message")), " "), 60), report.Num("%.1f", f.V("latency_ms")),
			map[bool]string{true: "–", false: server}[f.Label("path") == pathDirect], f.Label("addr"), short(f.Label("task")), report.Num(n, f.V("haproxy_status")),
			f.Label("term"), f.Label("timers"), f.Label("in_flight")})
	}
	rep.Tables = append(rep.Tables, fails)
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

// short is a task ID's first 10 characters.
func short(task string) string { return task[:min(len(task), 10)] }

// cpuTable is where the CPU per request went, by process group, on each
// path of the fair comparison and of the soak's CPU minutes.
func cpuTable(rows []report.Row) report.Table {
	t := report.Table{Header: []string{"µs of CPU per request"}, Caption: "Where the CPU per request went (own utime + stime of each process group from /proc; " +
		"harness = this program; other = the host's busy CPU (/proc/stat) less the groups, its busiest processes named); the soak's CPU minutes are informational, " +
		"with the request log on and the replicas the autoscaler kept:"}
	cols := append(report.Of(rows, "fair_cpu"), report.Of(rows, "soak_cpu")...)
	total := map[string]float64{}
	for _, c := range cols {
		t.Header = append(t.Header, strings.TrimSuffix(c.Kind, "_cpu")+" "+c.Label("path")+map[bool]string{true: " (" + c.Label("replicas") + " replicas)"}[c.Label("replicas") != ""])
		for k, v := range c.Values {
			if strings.HasPrefix(k, "other:") && strings.HasSuffix(k, "_ticks") {
				total[strings.TrimSuffix(k, "_ticks")] += v
			}
		}
	}
	others := slices.SortedFunc(maps.Keys(total), func(a, b string) int { return cmp.Or(cmp.Compare(total[b], total[a]), strings.Compare(a, b)) })
	metrics := append(append(slices.Clone(soakGroups), "other"), others[:min(4, len(others))]...)
	name := map[string]string{"whole host": "cpu_per_req_us", "of which irq + softirq": "irq_us", "whole host without the harness": "server_cpu_per_req_us",
		"host busy %": "busy_pct", "requests": "requests"}
	for _, m := range append(metrics, "whole host", "of which irq + softirq", "whole host without the harness", "host busy %", "requests") {
		row := []string{strings.Replace(m, "other:", "· other: ", 1)}
		for _, c := range cols {
			row = append(row, report.Num(map[bool]string{true: "%.0f", false: "%.1f"}[m == "requests" || m == "host busy %"], c.V(cmp.Or(name[m], m+"_us"))))
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// soakFigures is the table of the soak's figures without a goal.
func soakFigures(rows []report.Row) report.Table {
	s, _ := first(rows, "soak")
	n := func(m string) string { return report.Num("%.0f", s.V(m)) }
	mb := func(m string) string { return report.Num("%.1f MB", s.V(m)) }
	t := report.Table{Caption: "The soak's figures:", Header: []string{"figure", "value", "note"}, Rows: [][]string{
		{"requests", n("requests"), "gateway " + n("gateway_requests") + ", direct " + n("direct_requests")},
		{"failed", n("failed"), fmt.Sprintf("gateway %s, of which %s in flight on the killed replica at the kill; direct %s; %s",
			n("gateway_failed"), n("in_flight_at_kill"), n("direct_failed"), s.Label("failed_by_kind"))},
		{"error window after the kill", report.Num("%.0f ms", s.V("kill_window_ms")),
			fmt.Sprintf("%s failed in the minute after the docker kill call, %s of them on the killed replica", n("kill_failed"), n("kill_failed_on_killed"))},
		{"TIME_WAIT sockets, peak", n("time_wait_peak"), "at " + clock(s.V("time_wait_peak_at_s"))},
		{"HAProxy RSS after the load", mb("haproxy_rss_mb"), n("haproxy_procs") + " processes; peak " + mb("haproxy_peak_mb")},
		{"pulsed RSS after the load", mb("pulsed_rss_mb"), "peak " + mb("pulsed_peak_mb")},
		{"replicas, most at once", n("max_replicas"), fmt.Sprintf("draining included; most desired %s; %s scale decision(s)", n("max_desired"), n("scale_events"))},
		{"rolling update", report.Num("%.1f s", s.V("rolling_update_s")), s.Label("rolling_update")},
		{"HAProxy log", n("log_requests") + " request lines", fmt.Sprintf("client's gateway requests %s; HAProxy's DroppedLogs %s; other lines %s",
			n("gateway_requests"), n("dropped_logs"), n("haproxy_events"))},
		{"HAProxy reloads during the load", n("reloads"), "counter restarts seen " + n("stat_resets")},
	}}
	if c := report.Summarize(rows, "soak_cpu", "path"); len(c) == 2 {
		t.Rows = append(t.Rows, []string{"soak-time whole-host CPU/request, gateway ÷ direct (informational: see the CPU table)",
			report.Num("%.2f×", c[0].M("cpu_per_req_us")/c[1].M("cpu_per_req_us")), "with the request log and the replicas the autoscaler kept"})
	}
	if len(s.Values) == 0 {
		t.Rows = nil
	}
	return t
}

// soakGoals are the targets, and the figures it asks to be
// reported in the same run (INFO: no limit).
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
		if l := s.Label("failed_by_server"); l != "" {
			note += "; others by server: " + l
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
		check(report.NewGoal(name+"latency p99", "ms", 0).AsInfo().Noted("p50 %.0f ms, max %.0f ms, %.1f answers/s", sat.V("p50_ms"), sat.V("max_ms"), sat.V("rps")), "p99_ms"))
}

// soakNotes are notes on the soak's figures: what the kill did, the log's
// completeness, reloads, failures straight to a replica, the rolling update
// not seen done, steal.
func soakNotes(rows []report.Row) []string {
	s, ok := first(rows, "soak")
	if !ok {
		return nil
	}
	var notes []string
	add := func(cond bool, format string, a ...any) {
		if cond {
			notes = append(notes, fmt.Sprintf(format, a...))
		}
	}
	add(!(s.V("kill_call_s") > 0), "no replica was killed (see the events)")
	if n := killNote(report.Of(rows, "failure"), s.V("kill_call_s"), s.V("kill_end_s")); n != "" {
		notes = append(notes, n)
	}
	add(s.V("log_requests") < s.V("gateway_requests"), "HAProxy's log has %.0f request lines for %.0f requests through the gateway (HAProxy's DroppedLogs: %s; "+
		"it writes no line for a keep-alive request it aborts for the client to retry); such failures are put down to a server by its error counters",
		s.V("log_requests"), s.V("gateway_requests"), report.Num("%.0f", s.V("dropped_logs")))
	add(s.V("reloads") > 0, "pulsed reloaded HAProxy %.0f time(s) during the load; the per-server counters were summed across the new workers", s.V("reloads"))
	add(s.V("direct_failed") > 0, "%.0f request(s) straight to the replica failed (not through the gateway, so not in its goal)", s.V("direct_failed"))
	add(!(s.V("rolling_update_s") > 0), "the rolling update was not seen done: %s", s.Label("rolling_update"))
	var steal []string
	for _, c := range append(report.Of(rows, "fair_cpu"), report.Of(rows, "soak_cpu")...) {
		if c.V("steal_ticks") > 0 {
			steal = append(steal, fmt.Sprintf("%.0f in the %s %s", c.V("steal_ticks"), strings.TrimSuffix(c.Kind, "_cpu"), c.Label("path")))
		}
	}
	add(len(steal) > 0, "the hypervisor stole ticks (left out of busy CPU): %s", strings.Join(steal, ", "))
	return notes
}

// killNote says what the kill did: how many requests failed on the killed
// replica, when they started against the call (callS, endS: the call and
// the container's end, seconds after t0) and how HAProxy reported them;
// "" when none failed there.
func killNote(fs []report.Row, callS, endS float64) string {
	n, before, logged := 0, 0, 0
	lo, lastStart, last := math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, f := range fs {
		if s := f.V("start_s"); f.Label("in_flight") != "" {
			n, before, logged = n+1, before+btoi(s < callS), logged+btoi(f.Label("via") == viaLog)
			lo, lastStart, last = math.Min(lo, s), math.Max(lastStart, s), math.Max(last, s+f.V("latency_ms")/1000)
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("the kill: %d request(s) failed on the killed replica, %d of them started before the docker kill call (%s) and %d while it was being killed "+
		"(up to its container's end, %.0f ms after the call); they started %+.0f to %+.0f ms from the call and had all failed by %+.0f ms; HAProxy logged %d of them "+
		"and aborted %d without a line", n, before, clock(callS), n-before, 1000*(endS-callS), 1000*(lo-callS), 1000*(lastStart-callS), 1000*(last-callS), logged, n-logged)
}
