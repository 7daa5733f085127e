package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
