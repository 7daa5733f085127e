package main

// The gateway suite's tables and their rendering, for a terminal and the
// README.

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Table headers of the gateway suite.
var (
	gwPathHeader = []string{"variant", "replicas", "rps", "rps range", "p50 µs", "p50 range µs", "p99 µs",
		"HAProxy CPU/req µs", "docker-proxy CPU/req µs", "replica CPU/req µs", "wrk core %", "other %", "errors", "runs"}
	gwCompareHeader = []string{"measure", "direct", "through HAProxy", "difference", "per round"}
	gwScaleHeader   = []string{"trials", "ready and up, median s", "p90 s", "range s", "first session s", "in task list s", "in catalog s",
		"server added s", "scale → task running s", "scale → in catalog s", "noticed late", "background ok / failed", "failed"}
)

func gwRange(lo, hi float64, format string) string {
	return fmt.Sprintf(format+"–"+format, lo, hi)
}

func gwPathRows(sums []gatewayVariantSummary, stage string) [][]string {
	var rows [][]string
	for _, s := range sums {
		if s.Stage != stage {
			continue
		}
		runs := fmt.Sprint(s.Runs)
		if s.Failed > 0 {
			runs += fmt.Sprintf(" (%d failed)", s.Failed)
		}
		if s.Runs == 0 {
			row := []string{s.Variant, fmt.Sprint(s.Replicas), "every run failed"}
			for len(row) < len(gwPathHeader)-1 {
				row = append(row, "")
			}
			rows = append(rows, append(row, runs))
			continue
		}
		errs := fmt.Sprint(s.Errors)
		if s.flagged() {
			errs += " (flagged)"
		}
		hap := "–"
		if s.Path == pathGateway && s.HAProxyCPUPerReqUS >= 0 {
			hap = fmt.Sprintf("%.1f", s.HAProxyCPUPerReqUS)
		}
		if s.Disturbed > 0 {
			hap += fmt.Sprintf(" (%d reloaded)", s.Disturbed)
		}
		rows = append(rows, []string{
			s.Variant, fmt.Sprint(s.Replicas),
			fmt.Sprintf("%.0f", s.RPS), gwRange(s.RPSMin, s.RPSMax, "%.0f"),
			fmt.Sprintf("%.0f", s.P50US), gwRange(s.P50MinUS, s.P50MaxUS, "%.0f"), fmt.Sprintf("%.0f", s.P99US),
			hap, fmt.Sprintf("%.1f", s.DockerProxyCPUPerReqUS), fmt.Sprintf("%.1f", s.ReplicaCPUPerReqUS),
			fmt.Sprintf("%.0f", s.WrkCorePct), fmt.Sprintf("%.0f", math.Round(s.OtherCorePct)+0), errs, runs,
		})
	}
	return rows
}

func gwCompareRows(l gatewayLatency) [][]string {
	perRound := func(xs []float64, format string) string {
		if len(xs) < 2 {
			return ""
		}
		return gwRange(slices.Min(xs), slices.Max(xs), format)
	}
	var rows [][]string
	if l.OK {
		rows = append(rows,
			[]string{"p50 at c=1, µs", fmt.Sprintf("%.0f", l.DirectP50US), fmt.Sprintf("%.0f", l.GatewayP50US), fmt.Sprintf("%+.0f", l.AddedP50US), perRound(l.AddedP50RoundsUS, "%+.0f")},
			[]string{"p99 at c=1, µs", fmt.Sprintf("%.0f", l.DirectP99US), fmt.Sprintf("%.0f", l.GatewayP99US), fmt.Sprintf("%+.0f", l.AddedP99US), ""},
		)
	}
	if l.HighOK {
		rows = append(rows,
			[]string{"rps at c=50", fmt.Sprintf("%.0f", l.DirectRPS), fmt.Sprintf("%.0f", l.GatewayRPS), fmt.Sprintf("%.3f×", l.RPSRatio), perRound(l.RPSRatioRounds, "%.2f×")},
			[]string{"p99 at c=50, µs", fmt.Sprintf("%.0f", l.DirectHighP99), fmt.Sprintf("%.0f", l.GatewayHighP99), fmt.Sprintf("%+.0f", l.GatewayHighP99-l.DirectHighP99), ""},
		)
	}
	return rows
}

func gwScaleRows(s gatewayScaleSummary) [][]string {
	if s.Trials+s.Failed == 0 {
		return nil
	}
	bg := fmt.Sprintf("%d / %d", s.BackgroundOK, s.BackgroundFailed)
	if s.Trials == 0 {
		return [][]string{{"0", "every trial failed", "", "", "", "", "", "", "", "", "", bg, fmt.Sprint(s.Failed)}}
	}
	return [][]string{{
		fmt.Sprint(s.Trials), fmt.Sprintf("%.3f", s.ReadyS), fmt.Sprintf("%.3f", s.ReadyP90S), gwRange(s.ReadyMinS, s.ReadyMaxS, "%.3f"),
		fmt.Sprintf("%.3f", s.TrafficS), fmt.Sprintf("%.3f", s.SeenS), secOrDash(s.CatalogS, ""), secOrDash(s.AddedS, ""),
		fmt.Sprintf("%.2f", s.ScaleToRunningS), secOrDash(s.CatalogScaleS, ""), fmt.Sprintf("%d of %d", s.Late, s.Trials), bg, fmt.Sprint(s.Failed),
	}}
}

// gatewaySetup is one line on where and how the numbers were measured.
func gatewaySetup(r gatewayReport) string {
	m, e, c := r.Machine, r.Engine, r.Config
	var b strings.Builder
	fmt.Fprintf(&b, "%d CPUs (%s), kernel %s, %s, %s, %s, Docker Engine %s (API %s), %d-node swarm, clock %g Hz; ",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, r.HAProxy, m.Wrk, e.Version, e.APIVersion, e.Nodes, m.ClockTicks)
	fmt.Fprintf(&b, "%d round(s) × %gs measured (+%gs warm-up), wrk -t%d -c%d and -t%d -c%d, %d-byte body; %d scale trial(s); replicas: bench/inproc (Go echo, in process), health interval %g ms",
		c.Rounds, c.DurationS, c.WarmupS, c.LowThreads, c.LowConns, c.HighThreads, c.HighConns, c.BodyBytes, c.ScaleTrials, c.HealthIntervalMS)
	if n := len(e.OtherServices); n > 0 {
		fmt.Fprintf(&b, "; %d other service(s) on the engine throughout (%s)", n, strings.Join(e.OtherServices, ", "))
	}
	return b.String()
}

// Captions of the gateway suite's tables.
func gatewayCaptions(r gatewayReport) (latency, compare, balance, scale string) {
	c := r.Config
	latency = fmt.Sprintf("Direct vs through HAProxy, one replica: wrk POSTs to the replica's published port (`direct`, with the replica credential "+
		"on every request: the baseline includes the watchdog's credential check, as the gateway path does) and to `/function/<name>` on pulsed's "+
		"gateway (`gateway`), %d round(s) with the four variants in a rotated order; medians over rounds. CPU per request is each group's own "+
		"utime + stime from /proc over the run: HAProxy's master and workers, the engine's docker-proxy of the replica's port, the replica's process.", c.Rounds)
	compare = "Added by HAProxy: through HAProxy minus direct, from the medians above; `per round` pairs the two paths within each round."
	balance = fmt.Sprintf("Balancing algorithm, %d replicas, through HAProxy at c=%d: pulsed restarted with `PULSE_BALANCE` for every run, the two algorithms "+
		"alternating, %d round(s).", c.BalanceReplicas, c.HighConns, c.Rounds)
	scale = fmt.Sprintf("Task running → its server takes traffic: the function scaled 1 → 2 under a light background load through the gateway (%d keep-alive "+
		"clients, %g ms between requests), each trial on a steady swarm (pulsed's catalog unchanged past its settle window) at a random phase of pulsed's 1 s poll; seconds from the new task's status timestamp when it turned running to HAProxy's runtime API "+
		"(`show servers state`, polled every %g ms) showing its server (the slot s<N> pulsed pointed at its address) ready and up; `first session` is when "+
		"`show stat` first showed that slot's stot above its count before the scale. The task list (%g ms) and pulsed's /v1/replicas (%g ms) were polled alongside; "+
		"`scale → in catalog` is from the scale to /v1/replicas showing the new desired count, `noticed late` counts the trials where that came after the task was running.",
		c.BackgroundClients, c.BackgroundPauseMS, c.HAProxyPollMS, c.TaskPollMS, c.CatalogPollMS)
	return latency, compare, balance, scale
}

func renderGateway(r gatewayReport, md bool, jsonPath string) string {
	b := newReportDoc(md, "gateway", " (medians over rounds)", r.Started, jsonPath, gatewaySetup(r))
	cl, cc, cb, cs := gatewayCaptions(r)
	b.section(cl, gwPathHeader, gwPathRows(r.Summary.Variants, gwStageLatency))
	b.section(cc, gwCompareHeader, gwCompareRows(r.Summary.Latency))
	b.section(cb, gwPathHeader, gwPathRows(r.Summary.Variants, gwStageBalance))
	b.section(cs, gwScaleHeader, gwScaleRows(r.Summary.Scale))
	b.goals(r.Goals)
	b.notes(r.Notes)
	return b.String()
}

// renderGatewayText renders the report for a terminal.
func renderGatewayText(r gatewayReport) string { return renderGateway(r, false, "") }

// renderGatewayMarkdown renders the README's gateway section; jsonPath is
// the results file relative to the README.
func renderGatewayMarkdown(r gatewayReport, jsonPath string) string {
	return renderGateway(r, true, jsonPath)
}
