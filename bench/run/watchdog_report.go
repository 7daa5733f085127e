package main

// The watchdog suite's results: every run, the summaries over rounds, the
// goals they are checked against, and their rendering.

import (
	"fmt"
	"math"
	"slices"
)

// Kinds of variant.
const (
	kindHTTP  = "http"  // a server under wrk
	kindFloor = "floor" // spawnloop: no server, no HTTP
)

// runResult is one variant's numbers in one round. For a floor, Requests
// counts iterations and the latency, RSS and wrk fields are zero.
type runResult struct {
	Variant string  `json:"variant"`
	Round   int     `json:"round"`
	Slot    int     `json:"slot"` // position in the round's order, from 0
	Start   string  `json:"start"`
	Load1   float64 `json:"load1"` // one-minute load average just before
	// Error is set when the run failed; then it has no numbers.
	Error string `json:"error,omitempty"`

	Requests int64   `json:"requests"`
	Seconds  float64 `json:"seconds"`
	RPS      float64 `json:"rps"`
	P50US    int64   `json:"p50_us,omitempty"`
	P90US    int64   `json:"p90_us,omitempty"`
	P99US    int64   `json:"p99_us,omitempty"`
	MaxUS    int64   `json:"max_us,omitempty"`
	MeanUS   float64 `json:"mean_us,omitempty"`
	// Errors counts wrk's socket errors and statuses >= 400.
	Errors     int64  `json:"errors"`
	ProbeError string `json:"probe_error,omitempty"`

	// CPUSeconds is the CPU of the server and everything it started
	// (utime + stime + cutime + cstime over the process tree) while wrk
	// ran; for a floor, spawnloop's own getrusage figure.
	CPUSeconds  float64 `json:"cpu_s"`
	CPUPerReqUS float64 `json:"cpu_per_req_us"`
	// SelfCPUPerReqUS is the root process's own share: the watchdog
	// without the processes it started (spawnloop without its children).
	SelfCPUPerReqUS float64 `json:"self_cpu_per_req_us"`
	TreeProcs       int     `json:"tree_procs,omitempty"` // live processes in the tree after the load

	// The root's VmRSS and its private part (RssAnon): fresh is right
	// after the readiness GETs, before any other request (a replica that
	// has only been health-checked); idle is after the probe POST, before
	// load (idle after traffic).
	RSSFreshKB     int64 `json:"rss_fresh_kb,omitempty"`
	RSSFreshAnonKB int64 `json:"rss_fresh_anon_kb,omitempty"`
	RSSIdleKB      int64 `json:"rss_idle_kb,omitempty"`
	RSSIdleAnonKB  int64 `json:"rss_idle_anon_kb,omitempty"`
	RSSLoadedKB    int64 `json:"rss_loaded_kb,omitempty"` // root's VmHWM after load

	// QuietWaitS is how long the run waited for the host to be quiet
	// before it started; QuietBusyPct is the host's busy share (percent of
	// one core) in the last sample of that wait.
	QuietWaitS   float64 `json:"quiet_wait_s"`
	QuietBusyPct float64 `json:"quiet_busy_pct"`

	// Core percentages over the measured window; 100 is one core.
	ServerCorePct float64 `json:"server_core_pct"`
	WrkCorePct    float64 `json:"wrk_core_pct,omitempty"`
	OtherCorePct  float64 `json:"other_core_pct"` // host busy minus server tree minus wrk
	StealCorePct  float64 `json:"steal_core_pct"`

	ExitCode  *int   `json:"exit_code,omitempty"` // the server's, after SIGTERM
	StopError string `json:"stop_error,omitempty"`
}

// summary is one variant over all rounds: medians of the successful runs.
type summary struct {
	Variant string `json:"variant"`
	Kind    string `json:"kind"`
	Ref     string `json:"ref,omitempty"`
	Skipped string `json:"skipped,omitempty"`
	Runs    int    `json:"runs"`
	Failed  int    `json:"failed"`
	// Flags say why the variant's numbers are not clean: failed runs,
	// request errors, a failed probe, an unclean exit.
	Flags []string `json:"flags,omitempty"`

	Errors          int64   `json:"errors"`
	RPS             float64 `json:"rps"`
	P50US           float64 `json:"p50_us"`
	P99US           float64 `json:"p99_us"`
	CPUPerReqUS     float64 `json:"cpu_per_req_us"`
	CPUPerReqMinUS  float64 `json:"cpu_per_req_min_us"`
	CPUPerReqMaxUS  float64 `json:"cpu_per_req_max_us"`
	SelfCPUPerReqUS float64 `json:"self_cpu_per_req_us"`
	RSSFreshKB      float64 `json:"rss_fresh_kb"`
	RSSFreshAnonKB  float64 `json:"rss_fresh_anon_kb"`
	RSSIdleKB       float64 `json:"rss_idle_kb"`
	RSSIdleAnonKB   float64 `json:"rss_idle_anon_kb"`
	RSSLoadedKB     float64 `json:"rss_loaded_kb"`
	WrkCorePct      float64 `json:"wrk_core_pct"`
	OtherCorePct    float64 `json:"other_core_pct"`
	StealCorePct    float64 `json:"steal_core_pct"`

	// RefRatio is this variant's median CPU/req over its reference's.
	RefRatio float64 `json:"ref_ratio,omitempty"`
	// RoundRatios pairs the two within each round (they ran minutes apart
	// at most); their spread shows how much to trust RefRatio.
	RoundRatios []float64 `json:"round_ratios,omitempty"`
}

func (s summary) flagged() bool { return len(s.Flags) > 0 }

// summarize turns the runs into one summary per variant, in the variants'
// order. skipped maps a variant to the reason it did not run.
func summarize(variants []variant, runs []runResult, skipped map[string]string) []summary {
	byVariant := map[string][]runResult{}
	for _, r := range runs {
		byVariant[r.Variant] = append(byVariant[r.Variant], r)
	}
	out := make([]summary, 0, len(variants))
	index := map[string]int{}
	for _, v := range variants {
		s := summary{Variant: v.Name, Kind: v.Kind, Ref: v.Ref, Skipped: skipped[v.Name]}
		var rps, p50, p99, cpu, self, fresh, freshAnon, idle, anon, loaded, wrk, other, steal []float64
		for _, r := range byVariant[v.Name] {
			if !tally(fmt.Sprintf("round %d", r.Round), r.Error, 200, &s.Runs, &s.Failed, &s.Flags) {
				continue
			}
			s.Errors += r.Errors
			if r.Errors > 0 {
				s.Flags = append(s.Flags, fmt.Sprintf("round %d: %d request errors", r.Round, r.Errors))
			}
			if r.ProbeError != "" {
				s.Flags = append(s.Flags, fmt.Sprintf("round %d: %s", r.Round, truncate(r.ProbeError, 200)))
			}
			if r.StopError != "" {
				s.Flags = append(s.Flags, fmt.Sprintf("round %d: %s", r.Round, r.StopError))
			} else if r.ExitCode != nil && *r.ExitCode != 0 {
				s.Flags = append(s.Flags, fmt.Sprintf("round %d: exit code %d after SIGTERM", r.Round, *r.ExitCode))
			}
			rps = append(rps, r.RPS)
			p50 = append(p50, float64(r.P50US))
			p99 = append(p99, float64(r.P99US))
			cpu = append(cpu, r.CPUPerReqUS)
			self = append(self, r.SelfCPUPerReqUS)
			fresh = append(fresh, float64(r.RSSFreshKB))
			freshAnon = append(freshAnon, float64(r.RSSFreshAnonKB))
			idle = append(idle, float64(r.RSSIdleKB))
			anon = append(anon, float64(r.RSSIdleAnonKB))
			loaded = append(loaded, float64(r.RSSLoadedKB))
			wrk = append(wrk, r.WrkCorePct)
			other = append(other, r.OtherCorePct)
			steal = append(steal, r.StealCorePct)
		}
		if s.Runs > 0 {
			s.RPS, s.P50US, s.P99US = median(rps), median(p50), median(p99)
			s.CPUPerReqUS, s.CPUPerReqMinUS, s.CPUPerReqMaxUS = median(cpu), slices.Min(cpu), slices.Max(cpu)
			s.SelfCPUPerReqUS = median(self)
			s.RSSFreshKB, s.RSSFreshAnonKB = median(fresh), median(freshAnon)
			s.RSSIdleKB, s.RSSIdleAnonKB, s.RSSLoadedKB = median(idle), median(anon), median(loaded)
			s.WrkCorePct, s.OtherCorePct, s.StealCorePct = median(wrk), median(other), median(steal)
		}
		index[v.Name] = len(out)
		out = append(out, s)
	}
	for i := range out {
		s := &out[i]
		j, ok := index[s.Ref]
		if !ok || s.Runs == 0 || out[j].Runs == 0 || out[j].CPUPerReqUS <= 0 {
			continue
		}
		s.RefRatio = s.CPUPerReqUS / out[j].CPUPerReqUS
		s.RoundRatios = roundRatios(byVariant[s.Variant], byVariant[s.Ref])
	}
	return out
}

// roundRatios divides a's CPU/req by b's round by round, where both ran.
func roundRatios(a, b []runResult) []float64 {
	bs := map[int]float64{}
	for _, r := range b {
		if r.Error == "" && r.CPUPerReqUS > 0 {
			bs[r.Round] = r.CPUPerReqUS
		}
	}
	var out []float64
	for _, r := range a {
		if d, ok := bs[r.Round]; ok && r.Error == "" {
			out = append(out, round3(r.CPUPerReqUS/d))
		}
	}
	return out
}

// goalSpec defines a goal over the summaries and artifact sizes.
type goalSpec struct {
	name    string
	unit    string
	limit   float64
	variant string // the summary it reads; "" for a size goal
	measure func(s summary) float64
	size    string // the artifact whose size it reads
	note    string
}

// watchdogGoals are the targets for the watchdog.
var watchdogGoals = []goalSpec{
	{name: "inproc CPU/req ≤ 1.05× bare", unit: "×", limit: 1.05, variant: "inproc", measure: refRatio},
	{name: "http CPU/req ≤ 0.04 ms (watchdog + upstream)", unit: "µs", limit: 40, variant: "http", measure: cpuPerReq,
		note: "OpenFaaS of-watchdog: 130 µs"},
	{name: "fork-cat CPU/req ≤ 1.1× spawnloop-cat", unit: "×", limit: 1.1, variant: "fork-cat", measure: refRatio},
	{name: "fork-cecho CPU/req ≤ 1.1× spawnloop-cecho", unit: "×", limit: 1.1, variant: "fork-cecho", measure: refRatio},
	{name: "inproc idle RSS ≤ 6 MB (fresh, health checks only)", unit: "MB", limit: 6, variant: "inproc", measure: freshRSS},
	{name: "inproc idle RSS ≤ 6 MB (after traffic)", unit: "MB", limit: 6, variant: "inproc", measure: idleRSS},
	{name: "http watchdog idle RSS ≤ 6 MB (fresh, health checks only)", unit: "MB", limit: 6, variant: "http", measure: freshRSS,
		note: "the watchdog process; the upstream is the function"},
	{name: "http watchdog idle RSS ≤ 6 MB (after traffic)", unit: "MB", limit: 6, variant: "http", measure: idleRSS,
		note: "the watchdog process; the upstream is the function"},
	{name: "fork watchdog idle RSS ≤ 6 MB (fresh, health checks only)", unit: "MB", limit: 6, variant: "fork-cecho", measure: freshRSS},
	{name: "fork watchdog idle RSS ≤ 6 MB (after traffic)", unit: "MB", limit: 6, variant: "fork-cecho", measure: idleRSS},
	{name: "image ≤ 7 MB (proxy: inproc binary)", unit: "MB", limit: 7, size: "inproc",
		note: "static stripped watchdog + Go echo; a FROM scratch image adds only metadata"},
}

func refRatio(s summary) float64  { return s.RefRatio }
func cpuPerReq(s summary) float64 { return s.CPUPerReqUS }
func freshRSS(s summary) float64  { return s.RSSFreshKB * 1024 / mb }
func idleRSS(s summary) float64   { return s.RSSIdleKB * 1024 / mb }

// evaluateGoals checks specs against the summaries and the artifact sizes
// (bytes by artifact name; absent if it did not build). A goal over a
// flagged variant, or over a ratio whose reference is flagged, fails: its
// numbers came with errors.
func evaluateGoals(specs []goalSpec, sums []summary, sizes map[string]int64) []goal {
	byName := map[string]summary{}
	for _, s := range sums {
		byName[s.Variant] = s
	}
	out := make([]goal, 0, len(specs))
	for _, sp := range specs {
		g := goal{Name: sp.name, Unit: sp.unit, Limit: sp.limit, Note: sp.note}
		if sp.size != "" {
			n, ok := sizes[sp.size]
			if !ok {
				g.Status, g.Note = skip, sp.size+" did not build"
			} else {
				g.Value = round3(float64(n) / mb)
				g.Status = verdict(g.Value, g.Limit)
			}
			out = append(out, g)
			continue
		}
		s, ok := byName[sp.variant]
		switch {
		case !ok:
			g.Status, g.Note = skip, sp.variant+" was not in this run"
		case s.Skipped != "":
			g.Status, g.Note = skip, sp.variant+" did not run: "+s.Skipped
		case s.Runs == 0:
			g.Status, g.Note = fail, sp.variant+": every run failed"
		default:
			g.Value = round3(sp.measure(s))
			g.Status = verdict(g.Value, g.Limit)
			if s.flagged() {
				g.Status, g.Note = fail, sp.variant+" had errors: "+s.Flags[0]
			} else if ref, ok := byName[s.Ref]; ok && sp.unit == "×" && ref.flagged() {
				g.Status, g.Note = fail, s.Ref+" had errors: "+ref.Flags[0]
			} else if math.IsNaN(g.Value) || g.Value == 0 {
				g.Status, g.Note = skip, "no value (reference did not run)"
			}
		}
		out = append(out, g)
	}
	return out
}

// report is everything one run of the suite produced; it is written as
// JSON and rendered as tables.
type report struct {
	runHead
	Config    reportConfig `json:"config"`
	Machine   machineInfo  `json:"machine"`
	Artifacts []artifact   `json:"artifacts"`
	Runs      []runResult  `json:"runs"`
	Summary   []summary    `json:"summary"`
	reportEnd
}

// reportConfig is the config as recorded with the results.
type reportConfig struct {
	Quick     bool     `json:"quick"`
	Rounds    int      `json:"rounds"`
	DurationS float64  `json:"duration_s"`
	WarmupS   float64  `json:"warmup_s"`
	QuietWait float64  `json:"quiet_wait_s"`
	Threads   int      `json:"wrk_threads"`
	Conns     int      `json:"wrk_connections"`
	ForkConns int      `json:"wrk_connections_fork"`
	BodyBytes int      `json:"body_bytes"`
	Only      []string `json:"only,omitempty"`
}

func newReportConfig(c config) reportConfig {
	return reportConfig{
		Quick: c.Quick, Rounds: c.Rounds, DurationS: c.Duration.Seconds(), WarmupS: c.Warmup.Seconds(),
		QuietWait: c.QuietWait.Seconds(),
		Threads:   c.Threads, Conns: c.Conns, ForkConns: c.ForkConns, BodyBytes: c.BodyBytes, Only: c.Only,
	}
}

// Thresholds above which anomalies() writes a note.
const (
	wrkSaturatedPct = 90 // wrk's core: throughput and latency are wrk's limit
	otherLoadPct    = 20 // foreign CPU during the window
	stealPct        = 5  // hypervisor steal
	cpuSpreadFrac   = 0.10
)

// anomalies returns notes on numbers to read with care.
func anomalies(sums []summary) []string {
	var notes []string
	for _, s := range sums {
		if s.Runs == 0 {
			continue
		}
		if s.WrkCorePct >= wrkSaturatedPct {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f%% of a core: its rps and latency are bounded by the load generator; compare CPU/req", s.Variant, s.WrkCorePct))
		}
		if s.OtherCorePct >= otherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f%% of a core during the runs (median)", s.Variant, s.OtherCorePct))
		}
		if s.StealCorePct >= stealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f%% of a core (median)", s.Variant, s.StealCorePct))
		}
		if s.Runs > 1 && (s.CPUPerReqMaxUS-s.CPUPerReqMinUS) > cpuSpreadFrac*s.CPUPerReqUS {
			notes = append(notes, fmt.Sprintf("%s: CPU/req ranged %.1f–%.1f µs across rounds (median %.1f)", s.Variant, s.CPUPerReqMinUS, s.CPUPerReqMaxUS, s.CPUPerReqUS))
		}
		for _, f := range s.Flags {
			notes = append(notes, s.Variant+": "+f)
		}
	}
	return notes
}

var tableHeader = []string{
	"variant", "rps", "p50 µs", "p99 µs", "CPU/req µs", "range µs", "vs ref",
	"own CPU/req µs", "fresh RSS MB (anon)", "idle after traffic RSS MB (anon)", "loaded RSS MB",
	"wrk core %", "other %", "errors",
}

// tableRows renders the summaries as table cells.
func tableRows(sums []summary) [][]string {
	var rows [][]string
	for _, s := range sums {
		row := []string{s.Variant}
		switch {
		case s.Skipped != "":
			row = append(row, "skipped: "+s.Skipped)
		case s.Runs == 0:
			row = append(row, "every run failed")
		default:
			dash := "–"
			p50, p99, fresh, idle, loaded, wrk := dash, dash, dash, dash, dash, dash
			if s.Kind == kindHTTP {
				p50, p99 = fmt.Sprintf("%.0f", s.P50US), fmt.Sprintf("%.0f", s.P99US)
				fresh = fmt.Sprintf("%.2f (%.2f)", s.RSSFreshKB*1024/mb, s.RSSFreshAnonKB*1024/mb)
				idle = fmt.Sprintf("%.2f (%.2f)", s.RSSIdleKB*1024/mb, s.RSSIdleAnonKB*1024/mb)
				loaded = fmt.Sprintf("%.2f", s.RSSLoadedKB*1024/mb)
				wrk = fmt.Sprintf("%.0f", s.WrkCorePct)
			}
			ref := ""
			if s.RefRatio > 0 {
				ref = fmt.Sprintf("%.3f× %s", s.RefRatio, s.Ref)
				if len(s.RoundRatios) > 1 {
					ref += fmt.Sprintf(" (%.2f–%.2f)", slices.Min(s.RoundRatios), slices.Max(s.RoundRatios))
				}
			}
			errs := fmt.Sprintf("%d", s.Errors)
			if s.flagged() {
				errs += " (flagged)"
			}
			row = append(row,
				fmt.Sprintf("%.0f", s.RPS), p50, p99,
				fmt.Sprintf("%.1f", s.CPUPerReqUS),
				fmt.Sprintf("%.1f–%.1f", s.CPUPerReqMinUS, s.CPUPerReqMaxUS),
				ref,
				fmt.Sprintf("%.1f", s.SelfCPUPerReqUS),
				fresh, idle, loaded, wrk,
				fmt.Sprintf("%.0f", math.Round(s.OtherCorePct)+0), // +0 turns -0 into 0
				errs)
		}
		for len(row) < len(tableHeader) {
			row = append(row, "")
		}
		rows = append(rows, row)
	}
	return rows
}

// rssNote, under the goals, says what an RSS figure holds.
const rssNote = "RSS counts the binary's file-backed pages (shared by every replica of an image on a node) " +
	"plus the private part (RssAnon), shown in brackets in the variant table."

var sizeHeader = []string{"binary", "bytes", "MB", "built from"}

func sizeRows(arts []artifact) [][]string {
	var rows [][]string
	for _, a := range arts {
		if a.Error != "" {
			rows = append(rows, []string{a.Name, "did not build", "", a.Source})
			continue
		}
		rows = append(rows, []string{a.Name, fmt.Sprintf("%d", a.Bytes), fmt.Sprintf("%.2f", float64(a.Bytes)/mb), a.Source})
	}
	return rows
}

// setup is one line on where and how the numbers were measured.
func setup(r report) string {
	m, c := r.Machine, r.Config
	return fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, clock %g Hz; "+
		"%d round(s) × %gs measured (+%gs warm-up), wrk %d thread(s), %d connections (fork mode %d), %d-byte body",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Wrk, m.ClockTicks,
		c.Rounds, c.DurationS, c.WarmupS, c.Threads, c.Conns, c.ForkConns, c.BodyBytes)
}

// renderText renders the report for a terminal.
func renderText(r report) string { return renderWatchdog(r, false, "") }

// renderMarkdown renders the README's results section; jsonPath is the
// results file relative to the README.
func renderMarkdown(r report, jsonPath string) string { return renderWatchdog(r, true, jsonPath) }

func renderWatchdog(r report, md bool, jsonPath string) string {
	b := newReportDoc(md, "watchdog", " (medians over rounds)", r.Started, jsonPath, setup(r))
	b.WriteString("\n")
	b.table(tableHeader, tableRows(r.Summary))
	b.goals(r.Goals)
	if md {
		b.WriteString("\n")
	}
	b.WriteString(rssNote + "\n\n")
	b.table(sizeHeader, sizeRows(r.Artifacts))
	b.notes(r.Notes)
	return b.String()
}
