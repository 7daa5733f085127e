package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// --- the analysis ---

// analyze turns the records and the pollers' samples into the report.
func (b *soakBench) analyze(ctx context.Context, recs []loadReq, fails []loadFail) {
	rep := b.rep
	logs := b.hlog.close(soakLogLinger)
	b.mu.Lock()
	tl := slices.Clone(b.samples)
	host := slices.Clone(b.host)
	kill := rep.Summary.kill
	stats := b.stats
	statErrs, lastErr := b.statErrs, b.lastErr
	b.mu.Unlock()

	failures, excused := attributeFailures(fails, b.t0, logs.Notable, stats.errs, stats.polls, tl, kill)
	for i := range failures {
		if failures[i].Direct {
			if p := phaseAt(rep.Phases, failures[i].StartS); p != nil {
				failures[i].Addr, failures[i].Task = p.Addr, p.Task
			}
		}
	}
	n := int(rep.Config.DurationS)
	secs := soakSeconds(recs, excused, rep.Phases, n)
	fillSeconds(secs, b.t0, tl, host)
	rep.Seconds = secs
	rep.Minutes = soakMinutes(recs, excused, rep.Phases, secs, rep.Events)
	rep.Failures = failures
	rep.Servers = soakServers(stats, logs.ByServer, tl.holdings(b.t0))
	for _, e := range logs.Events {
		rep.HAProxyEvents = append(rep.HAProxyEvents, soakLogEvent{AtS: b.since(e.At), Line: e.Line})
	}

	s := &rep.Summary
	summarizeSoak(s, recs, failures)
	s.Log = logs
	s.StatResets = stats.resets
	s.WorstConnect, s.ServersOver1000 = worstConnect(rep.Servers)
	for _, sec := range secs {
		if sec.TimeWait > s.TimeWaitPeak {
			s.TimeWaitPeak, s.TimeWaitPeakAt = sec.TimeWait, float64(sec.T)
		}
	}
	for _, smp := range tl {
		s.MaxReplicas = max(s.MaxReplicas, len(smp.Replicas))
		s.MaxDesired = max(s.MaxDesired, smp.Desired)
	}
	if evs, err := b.events(ctx); err == nil {
		for _, e := range evs.Events {
			if e.Function == b.name && e.Time.After(b.t0) {
				s.ScaleEvents++
			}
		}
	}
	// The CPU comparison's requests and replicas.
	c := &s.CPU
	for _, ph := range rep.Phases {
		switch ph.Name {
		case soakPhaseGwCPU:
			c.GatewayRequests = okIn(recs, ph.StartS, ph.EndS, false)
			lo, hi := 1<<30, 0
			for _, sec := range secs {
				if float64(sec.T) >= ph.StartS && float64(sec.T) < ph.EndS {
					lo, hi = min(lo, sec.Replicas), max(hi, sec.Replicas)
				}
			}
			c.GatewayReplicas = strconv.Itoa(hi)
			if lo != hi && lo != 1<<30 {
				c.GatewayReplicas = fmt.Sprintf("%d–%d", lo, hi)
			}
		case soakPhaseDirect:
			c.DirectRequests = okIn(recs, ph.StartS, ph.EndS, true)
		}
	}
	c.finish(rep.Machine.ClockTicks)
	if s.KillCallS > 0 {
		s.KillFailed, s.KillFailedOn, s.KillWindowMS = killWindow(failures, s.KillCallS)
	}
	rep.Goals = soakGoals(*rep)
	rep.Notes = append(rep.Notes, soakNotes(*rep)...)
	if statErrs > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d `show stat` polls failed (last: %v)", statErrs, lastErr))
	}
}

// fillSeconds adds the pollers' samples to the seconds: the catalog's
// replicas (the last sample in or before each second), TIME_WAIT and the
// host's busy CPU.
func fillSeconds(secs []soakSecond, t0 time.Time, tl soakTimeline, host []soakHostSample) {
	j, k := -1, 0
	for i := range secs {
		end := t0.Add(time.Duration(i+1) * time.Second)
		for j+1 < len(tl) && tl[j+1].At.Before(end) {
			j++
		}
		if j >= 0 {
			secs[i].Desired = tl[j].Desired
			for _, r := range tl[j].Replicas {
				if r.Draining {
					secs[i].Draining++
				} else {
					secs[i].Replicas++
				}
				if r.Routed {
					secs[i].Routed++
				}
			}
		}
		for k+1 < len(host) && host[k+1].At.Before(end) {
			k++
		}
		if k < len(host) && host[k].At.Before(end) {
			secs[i].TimeWait = host[k].TimeWait
			if k == 0 {
				continue
			}
			if d := host[k].CPU.Total - host[k-1].CPU.Total; d > 0 {
				secs[i].BusyPct = round3(100 * float64(host[k].CPU.Busy-host[k-1].CPU.Busy) / float64(d))
			}
		}
	}
}

// soakNotes are observations worth reading with the numbers.
func soakNotes(r soakReport) []string {
	var notes []string
	s := r.Summary
	if s.kill == nil {
		notes = append(notes, "no replica was killed (see the events)")
	}
	if n := killNote(r.Failures, s); n != "" {
		notes = append(notes, n)
	}
	if s.Log.Requests < s.GatewayRequests {
		notes = append(notes, fmt.Sprintf("HAProxy's log has %d request lines for %d requests through the gateway: %d fewer (HAProxy's DroppedLogs: %d; "+
			"HAProxy writes no line for a keep-alive request it aborts for the client to retry); such failures are put down to a server by its error counters",
			s.Log.Requests, s.GatewayRequests, s.GatewayRequests-s.Log.Requests, s.DroppedLogs))
	}
	if s.Reloads > 0 {
		notes = append(notes, fmt.Sprintf("pulsed reloaded HAProxy %d time(s) during the load (a backend's slots grew, or a function came or went); "+
			"the per-server counters were summed across the new workers", s.Reloads))
	}
	if s.DirectFailed > 0 {
		notes = append(notes, fmt.Sprintf("%d request(s) straight to the replica failed (not through the gateway, so not in its goal)", s.DirectFailed))
	}
	if st := r.Fair.CPU.StealTicks + s.CPU.StealTicks; st > 0 {
		notes = append(notes, fmt.Sprintf("the hypervisor stole %d ticks during the fair comparison's stretches and %d during the soak's CPU minutes (left out of busy CPU)",
			r.Fair.CPU.StealTicks, s.CPU.StealTicks))
	}
	if r.Fair.Failed > 0 {
		notes = append(notes, fmt.Sprintf("%d request(s) of the fair comparison failed", r.Fair.Failed))
	}
	if r.Fair.QuietBusyPct >= quietCorePct {
		notes = append(notes, fmt.Sprintf("the host was still %.0f %% of a core busy after %.0f s of waiting when the fair comparison began", r.Fair.QuietBusyPct, r.Fair.QuietWaitS))
	}
	if r.Saturation.PollErrs > 0 {
		notes = append(notes, fmt.Sprintf("%d `show stat` polls of the saturation failed", r.Saturation.PollErrs))
	}
	if s.UpdateS == 0 {
		notes = append(notes, "the rolling update was not seen done: "+s.UpdateState)
	}
	notes = append(notes, "the soak-time CPU through the gateway includes HAProxy's request log (one UDP datagram per request) and the harness parsing it, "+
		"which the soak needs for the attribution, and the replicas the autoscaler kept for 16 connections; the goal's figure is the fair comparison's, with neither")
	return notes
}
