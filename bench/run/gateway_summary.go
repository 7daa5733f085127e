package main

import (
	"fmt"
	"maps"
	"slices"
)

// summarizeGatewayRuns summarizes the runs per variant, in variants'
// order; variants that did not run are left out.
func summarizeGatewayRuns(variants []gwVariant, runs []gatewayRun) []gatewayVariantSummary {
	var out []gatewayVariantSummary
	for _, v := range variants {
		s := gatewayVariantSummary{Variant: v.Name, Path: v.Path, Conns: v.Conns, Balance: v.Balance}
		var ok, calm []gatewayRun // calm: HAProxy neither reloaded nor its processes changed
		for _, r := range runs {
			if r.Variant != v.Name {
				continue
			}
			s.Stage, s.Replicas = r.Stage, r.Replicas
			if !tally(fmt.Sprintf("round %d", r.Round), r.Error, 200, &s.Runs, &s.Failed, &s.Flags) {
				continue
			}
			s.Errors += r.Errors
			if r.Errors > 0 {
				s.Flags = append(s.Flags, fmt.Sprintf("round %d: %d request errors", r.Round, r.Errors))
			}
			ok = append(ok, r)
			if r.Reloads != 0 || r.HAProxyChurn > 0 {
				s.Disturbed++
			} else {
				calm = append(calm, r)
			}
		}
		if s.Runs+s.Failed == 0 {
			continue
		}
		if s.Runs > 0 {
			med := func(f func(gatewayRun) float64) float64 { return median(values(ok, f)) }
			rps, p50 := values(ok, func(r gatewayRun) float64 { return r.RPS }), values(ok, func(r gatewayRun) float64 { return float64(r.P50US) })
			s.RPS, s.RPSMin, s.RPSMax = median(rps), slices.Min(rps), slices.Max(rps)
			s.P50US, s.P50MinUS, s.P50MaxUS = median(p50), slices.Min(p50), slices.Max(p50)
			s.P99US = med(func(r gatewayRun) float64 { return float64(r.P99US) })
			// -1 (shown as "–") when every run was disturbed: JSON has no NaN.
			s.HAProxyCPUPerReqUS = medianOr(-1, values(calm, func(r gatewayRun) float64 { return r.HAProxyCPUPerReqUS }))
			s.DockerProxyCPUPerReqUS = med(func(r gatewayRun) float64 { return r.DockerProxyCPUPerReqUS })
			s.ReplicaCPUPerReqUS = med(func(r gatewayRun) float64 { return r.ReplicaCPUPerReqUS })
			s.WrkCorePct = med(func(r gatewayRun) float64 { return r.WrkCorePct })
			s.OtherCorePct = med(func(r gatewayRun) float64 { return r.OtherCorePct })
			s.StealCorePct = med(func(r gatewayRun) float64 { return r.StealCorePct })
			s.PulsedRouteS = medianOr(0, positive(values(ok, func(r gatewayRun) float64 { return r.PulsedRouteS })))
		}
		out = append(out, s)
	}
	return out
}

// pairByRound returns f(a, b) for each round in which both a and b ran
// without error, in round order.
func pairByRound(runs []gatewayRun, a, b string, f func(x, y gatewayRun) float64) []float64 {
	byRound := map[int]map[string]gatewayRun{}
	for _, r := range runs {
		if r.Error != "" || (r.Variant != a && r.Variant != b) {
			continue
		}
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]gatewayRun{}
		}
		byRound[r.Round][r.Variant] = r
	}
	var out []float64
	for _, k := range slices.Sorted(maps.Keys(byRound)) {
		x, okx := byRound[k][a]
		y, oky := byRound[k][b]
		if okx && oky {
			out = append(out, round3(f(x, y)))
		}
	}
	return out
}

func findVariant(sums []gatewayVariantSummary, name string) (gatewayVariantSummary, bool) {
	i := slices.IndexFunc(sums, func(s gatewayVariantSummary) bool { return s.Variant == name })
	if i < 0 {
		return gatewayVariantSummary{}, false
	}
	return sums[i], true
}

// bothRan returns the summaries of variants a and b, and whether both had
// a run without error.
func bothRan(sums []gatewayVariantSummary, a, b string) (x, y gatewayVariantSummary, ok bool) {
	x, okx := findVariant(sums, a)
	y, oky := findVariant(sums, b)
	return x, y, okx && oky && x.Runs > 0 && y.Runs > 0
}

// Variant names the comparisons read.
const (
	gwDirectLow   = "direct c=1"
	gwGatewayLow  = "gateway c=1"
	gwDirectHigh  = "direct c=50"
	gwGatewayHigh = "gateway c=50"
	gwLeastConn   = "leastconn"
	gwRoundRobin  = "roundrobin"
)

// compareGatewayLatency compares the paths of the latency stage.
func compareGatewayLatency(sums []gatewayVariantSummary, runs []gatewayRun) gatewayLatency {
	var l gatewayLatency
	if d, g, ok := bothRan(sums, gwDirectLow, gwGatewayLow); ok {
		l.OK = true
		l.DirectP50US, l.GatewayP50US, l.AddedP50US = d.P50US, g.P50US, g.P50US-d.P50US
		l.DirectP99US, l.GatewayP99US, l.AddedP99US = d.P99US, g.P99US, g.P99US-d.P99US
		l.AddedP50RoundsUS = pairByRound(runs, gwGatewayLow, gwDirectLow, func(x, y gatewayRun) float64 { return float64(x.P50US - y.P50US) })
	}
	if d, g, ok := bothRan(sums, gwDirectHigh, gwGatewayHigh); ok && d.RPS > 0 {
		l.HighOK = true
		l.DirectRPS, l.GatewayRPS, l.RPSRatio = d.RPS, g.RPS, round3(g.RPS/d.RPS)
		l.DirectHighP99, l.GatewayHighP99 = d.P99US, g.P99US
		l.RPSRatioRounds = pairByRound(runs, gwGatewayHigh, gwDirectHigh, func(x, y gatewayRun) float64 { return x.RPS / y.RPS })
	}
	return l
}

// compareGatewayBalance compares the balancing algorithms.
func compareGatewayBalance(sums []gatewayVariantSummary, runs []gatewayRun) gatewayBalance {
	var b gatewayBalance
	lc, rr, ok := bothRan(sums, gwLeastConn, gwRoundRobin)
	if !ok || rr.RPS <= 0 {
		return b
	}
	b.OK = true
	b.LeastConnRPS, b.RoundRobinRPS, b.RPSRatio = lc.RPS, rr.RPS, round3(lc.RPS/rr.RPS)
	b.LeastConnP99, b.RoundRobinP99 = lc.P99US, rr.P99US
	b.RPSRatioRounds = pairByRound(runs, gwLeastConn, gwRoundRobin, func(x, y gatewayRun) float64 { return x.RPS / y.RPS })
	return b
}

// summarizeGateway summarizes the runs and trials.
func summarizeGateway(runs []gatewayRun, scales []gatewayScaleTrial) gatewaySummary {
	sums := summarizeGatewayRuns(append(slices.Clone(gwLatencyVariants), gwBalanceVariants...), runs)
	return gatewaySummary{
		Variants: sums,
		Latency:  compareGatewayLatency(sums, runs),
		Balance:  compareGatewayBalance(sums, runs),
		Scale:    summarizeGatewayScale(scales),
	}
}

// summarizeGatewayScale summarizes the scale trials.
func summarizeGatewayScale(trials []gatewayScaleTrial) gatewayScaleSummary {
	var s gatewayScaleSummary
	var ok, late, early []gatewayScaleTrial
	for _, t := range trials {
		s.BackgroundOK += t.BackgroundOK
		s.BackgroundFailed += t.BackgroundFailed
		if !tally(fmt.Sprintf("trial %d", t.Trial), t.Error, 300, &s.Trials, &s.Failed, &s.Flags) {
			continue
		}
		ok = append(ok, t)
		if t.LateNotice {
			late = append(late, t)
		} else if t.CatalogScaleS > 0 {
			early = append(early, t)
		}
	}
	if s.Trials == 0 {
		return s
	}
	ready := func(t gatewayScaleTrial) float64 { return t.ReadyS }
	med := func(f func(gatewayScaleTrial) float64) float64 { return medianOr(0, positive(values(ok, f))) }
	readies := values(ok, ready)
	s.ReadyS, s.ReadyP90S = median(readies), percentile(readies, 90)
	s.ReadyMinS, s.ReadyMaxS = slices.Min(readies), slices.Max(readies)
	s.TrafficS = median(values(ok, func(t gatewayScaleTrial) float64 { return t.TrafficS }))
	s.SeenS = median(values(ok, func(t gatewayScaleTrial) float64 { return t.SeenS }))
	s.ScaleToRunningS = median(values(ok, func(t gatewayScaleTrial) float64 { return t.ScaleToRunningS }))
	s.CatalogS = med(func(t gatewayScaleTrial) float64 { return t.CatalogS })
	s.AddedS = med(func(t gatewayScaleTrial) float64 { return t.AddedS })
	s.CatalogScaleS = med(func(t gatewayScaleTrial) float64 { return t.CatalogScaleS })
	s.Late = len(late)
	s.LateReadyS, s.EarlyReadyS = medianOr(0, values(late, ready)), medianOr(0, values(early, ready))
	return s
}
