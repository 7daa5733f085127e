package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Goals of the gateway suite (from the issue).
const (
	gwLatencyGoalName = "added p50 latency through HAProxy at c=1 ≤ 60 µs"
	gwLatencyGoalUS   = 60
	gwScaleGoalName   = "task running → its server takes traffic ≤ 0.5 s (median)"
	gwScaleGoalS      = 0.5
)

// gatewayGoals checks the summaries against the goals. A goal over
// a variant with errors, or with failed trials, fails.
func gatewayGoals(s gatewaySummary) []goal {
	lat := goal{Name: gwLatencyGoalName, Unit: "µs", Limit: gwLatencyGoalUS}
	d, okd := findVariant(s.Variants, gwDirectLow)
	g, okg := findVariant(s.Variants, gwGatewayLow)
	switch {
	case !okd || !okg:
		lat.Status, lat.Note = skip, "the latency stage did not run"
	case !s.Latency.OK:
		lat.Status, lat.Note = fail, "every run of a c=1 variant failed"
	default:
		lat.Value = round3(s.Latency.AddedP50US)
		lat.Status = verdict(lat.Value, lat.Limit)
		lat.Note = fmt.Sprintf("p50 direct %.0f µs, through HAProxy %.0f µs", s.Latency.DirectP50US, s.Latency.GatewayP50US)
		if n := len(s.Latency.AddedP50RoundsUS); n > 1 {
			lat.Note += fmt.Sprintf("; per round %+.0f to %+.0f µs", slices.Min(s.Latency.AddedP50RoundsUS), slices.Max(s.Latency.AddedP50RoundsUS))
		}
		for _, v := range []gatewayVariantSummary{d, g} {
			if v.flagged() {
				lat.Status, lat.Note = fail, v.Variant+" had errors: "+v.Flags[0]
				break
			}
		}
	}

	sc := goal{Name: gwScaleGoalName, Unit: "s", Limit: gwScaleGoalS}
	x := s.Scale
	switch {
	case x.Trials+x.Failed == 0:
		sc.Status, sc.Note = skip, "the scale stage did not run"
	case x.Trials == 0:
		sc.Status, sc.Note = fail, "every trial failed: "+x.Flags[0]
	default:
		sc.Value = round3(x.ReadyS)
		sc.Status = verdict(sc.Value, sc.Limit)
		sc.Note = fmt.Sprintf("server ready and up; first session %.3f s (median of %d)", x.TrafficS, x.Trials)
		if x.Failed > 0 {
			sc.Status, sc.Note = fail, fmt.Sprintf("%d of %d trials failed: %s", x.Failed, x.Failed+x.Trials, x.Flags[0])
		}
	}
	return []goal{lat, sc}
}

// Thresholds above which gatewayNotes writes a note.
const (
	gwWrkSaturatedPct = 90
	gwOtherLoadPct    = 20
	gwStealPct        = 5
	gwP50SpreadUS     = 20 // per-round added p50 spread
	gwBalanceTie      = 0.03
)

// gatewayNotes are the notes that follow from the report: the balancing
// algorithm, what is on the request path, noise, failures.
func gatewayNotes(r gatewayReport) []string {
	var notes []string
	s := r.Summary
	if b := s.Balance; b.OK {
		n := fmt.Sprintf("balance over %d replicas at c=%d: leastconn %.0f rps (p99 %.0f µs), roundrobin %.0f rps (p99 %.0f µs); leastconn/roundrobin %.3f×",
			r.Config.BalanceReplicas, r.Config.HighConns, b.LeastConnRPS, b.LeastConnP99, b.RoundRobinRPS, b.RoundRobinP99, b.RPSRatio)
		if len(b.RPSRatioRounds) > 1 {
			n += fmt.Sprintf(" (per round %.2f–%.2f)", slices.Min(b.RPSRatioRounds), slices.Max(b.RPSRatioRounds))
		}
		switch {
		case b.RPSRatio >= 1+gwBalanceTie:
			n += ": leastconn is faster here (pulsed's default is roundrobin, chosen on the p99)"
		case b.RPSRatio > 1-gwBalanceTie:
			n += fmt.Sprintf(": within %.0f %% of each other on equal replicas and equal requests (leastconn would also steer around a slow or busy replica; pulsed's default is roundrobin, chosen on the p99)", 100*gwBalanceTie)
		default:
			n += ": roundrobin, pulsed's default, is faster here"
		}
		notes = append(notes, n)
	}
	if l := s.Latency; l.OK && len(l.AddedP50RoundsUS) > 1 && slices.Max(l.AddedP50RoundsUS)-slices.Min(l.AddedP50RoundsUS) > gwP50SpreadUS {
		notes = append(notes, fmt.Sprintf("added p50 at c=1 varied from %+.0f to %+.0f µs across rounds", slices.Min(l.AddedP50RoundsUS), slices.Max(l.AddedP50RoundsUS)))
	}
	for _, v := range s.Variants {
		if v.Runs > 0 && v.DockerProxyCPUPerReqUS > 0 && v.Path == pathDirect {
			n := fmt.Sprintf("both paths reach the replica through the engine's docker-proxy (its published port, called on loopback, where Docker's iptables rules do not apply): %.1f µs of CPU per request at %s",
				v.DockerProxyCPUPerReqUS, v.Variant)
			if h := gwHAProxyAt(s.Variants, v.Conns); h > 0 {
				n += fmt.Sprintf(", HAProxy %.1f µs through the gateway at the same load", h)
			}
			notes = append(notes, n)
			break
		}
	}
	disturbed, total := 0, 0
	for _, v := range s.Variants {
		disturbed += v.Disturbed
		total += v.Runs
	}
	if disturbed > 0 {
		notes = append(notes, fmt.Sprintf("HAProxy was reloaded during %d of %d runs: pulsed reloads it whenever a function is added to or removed from the engine, "+
			"anyone's (other functions came and went during this run); those runs' HAProxy CPU is left out of the medians (an exiting worker takes its CPU "+
			"with it) and their latencies are disturbed", disturbed, total))
	}
	if bg := r.Background; bg.Reloads > 0 {
		notes = append(notes, fmt.Sprintf("scale stage: pulsed reloaded HAProxy %d time(s) during it (other functions came and went), which also kept its catalog "+
			"polling fast more often than on a steady swarm: fewer trials noticed late than there would otherwise be", bg.Reloads))
	}
	if n := len(r.Engine.OtherFunctions); n > 0 {
		notes = append(notes, fmt.Sprintf("%d other function(s) on the engine (%s): pulsed routed them too, and HAProxy health-checked their replicas throughout", n, strings.Join(r.Engine.OtherFunctions, ", ")))
	}
	for _, v := range s.Variants {
		if v.Runs == 0 {
			continue
		}
		if v.WrkCorePct >= gwWrkSaturatedPct*float64(max(1, threadsOf(r, v))) {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f %% of a core: its rps and latency are bounded by the load generator", v.Variant, v.WrkCorePct))
		}
		if v.OtherCorePct >= gwOtherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f %% of a core during the runs (median)", v.Variant, v.OtherCorePct))
		}
		if v.StealCorePct >= gwStealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f %% of a core (median)", v.Variant, v.StealCorePct))
		}
		for _, f := range v.Flags {
			notes = append(notes, v.Variant+": "+f)
		}
	}
	if x := s.Scale; x.Trials > 0 {
		notes = append(notes, fmt.Sprintf("scale +1: from the task's running timestamp, the harness's 20 ms task poll saw it at %.3f s, pulsed's catalog listed it at %s, "+
			"HAProxy had its server at %s, ready and up at %.3f s, and its first session at %.3f s (medians); the scale itself took %.2f s to the task running "+
			"(container start and its first health probe)", x.SeenS, secOrDash(x.CatalogS, " s"), secOrDash(x.AddedS, " s"), x.ReadyS, x.TrafficS, x.ScaleToRunningS))
		if x.Late > 0 {
			n := fmt.Sprintf("scale +1: in %d of %d trials pulsed's catalog noticed the scale (the new desired count) only after the new task was already running: "+
				"on a steady swarm pulsed polls every second, and the harness scales through the Docker API as `pulse scale` does (pulsed's own scaler and deploy "+
				"API can ask for a poll at once), so the first poll after the scale can come after the task turned running (here %.2f s after the scale); "+
				"those trials took %.3f s to ready (median)",
				x.Late, x.Trials, x.ScaleToRunningS, x.LateReadyS)
			if x.EarlyReadyS > 0 {
				n += fmt.Sprintf(", the others, where fast polling was on when the task turned running, %.3f s", x.EarlyReadyS)
			}
			notes = append(notes, n)
		}
	}
	if bg := r.Background; bg.OK+bg.Failed > 0 {
		n := fmt.Sprintf("scale stage background load: %d requests answered 200, %d failed", bg.OK, bg.Failed)
		if bg.Failed > 0 {
			var why []string
			for _, k := range slices.Sorted(maps.Keys(bg.Why)) {
				why = append(why, fmt.Sprintf("%s ×%d", k, bg.Why[k]))
			}
			n += " (" + strings.Join(why, "; ") + ")"
		}
		notes = append(notes, n)
	}
	for _, f := range s.Scale.Flags {
		notes = append(notes, "scale +1: "+f)
	}
	return append(notes, pulsedStopNotes(r.PulsedStops)...)
}

// pulsedStopNotes sums up the stops of pulsed.
func pulsedStopNotes(stops []gatewayPulsedStop) []string {
	if len(stops) == 0 {
		return nil
	}
	var notes []string
	clean, lingered, killed := 0, 0, 0
	var longest, slowest float64
	for _, st := range stops {
		if st.Error == "" && st.Exit == 0 {
			clean++
		} else {
			notes = append(notes, fmt.Sprintf("pulsed stop (%s stage): %s", st.Stage, truncate(st.Error, 300)))
		}
		switch {
		case len(st.Killed) > 0:
			killed++
		case st.HAProxyLingerS > 0:
			lingered++
			longest = max(longest, st.HAProxyLingerS)
		}
		slowest = max(slowest, st.StopS)
	}
	n := fmt.Sprintf("pulsed stopped with SIGTERM %d time(s), exit 0 in %d, each within %.2f s", len(stops), clean, slowest)
	if lingered+killed == 0 {
		n += "; its HAProxy was always gone when pulsed exited"
	}
	if lingered > 0 {
		n += fmt.Sprintf("; in %d its HAProxy was still exiting after pulsed had exited (up to %.0f ms later)", lingered, 1000*longest)
	}
	if killed > 0 {
		n += fmt.Sprintf("; in %d its HAProxy was still running %g s after pulsed had exited and was killed", killed, haproxyLinger.Seconds())
	}
	if lingered+killed > 0 {
		n += " (pulsed's serve returns without waiting for its HAProxy supervisor to finish stopping HAProxy, so the process can exit before HAProxy is stopped, or even told to stop)"
	}
	return append([]string{n}, notes...)
}

// gwHAProxyAt is HAProxy's CPU per request through the gateway at conns.
func gwHAProxyAt(sums []gatewayVariantSummary, conns int) float64 {
	for _, s := range sums {
		if s.Path == pathGateway && s.Conns == conns && s.Balance == "" && s.Runs > 0 {
			return s.HAProxyCPUPerReqUS
		}
	}
	return 0
}

func threadsOf(r gatewayReport, v gatewayVariantSummary) int {
	if v.Conns == r.Config.HighConns {
		return r.Config.HighThreads
	}
	return r.Config.LowThreads
}

// secOrDash is v seconds to a thousandth with unit after it, "–" for 0
// (not measured).
func secOrDash(v float64, unit string) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", v) + unit
}
