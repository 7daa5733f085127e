package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

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
