package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pulsefaas/pulse/internal/credential"
)

// runHead begins every suite's report: the suite, and when it started
// and finished (RFC 3339).
type runHead struct {
	Suite    string `json:"suite"`
	Started  string `json:"started"`
	Finished string `json:"finished"`
}

func newRunHead(suite string, started time.Time) runHead {
	return runHead{Suite: suite, Started: started.Format(time.RFC3339)}
}

// reportEnd ends every suite's report: the verdicts, notes, and what the
// final sweep found left behind and removed.
type reportEnd struct {
	Goals   []goal   `json:"goals"`
	Notes   []string `json:"notes,omitempty"`
	Cleanup []string `json:"cleanup,omitempty"`
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

var goalHeader = []string{"goal", "value", "limit", "result", "note"}

// rssNote, under the goals, says what an RSS figure holds.
const rssNote = "RSS counts the binary's file-backed pages (shared by every replica of an image on a node) " +
	"plus the private part (RssAnon), shown in brackets in the variant table."

// goalRows are the goals as table rows: a goal without a value (skipped,
// or every trial failed) shows none, one without a limit (INFO) no limit.
func goalRows(goals []goal) [][]string {
	rows := make([][]string, 0, len(goals))
	for _, g := range goals {
		value, limit := "", "–"
		if g.Status != skip && !g.NoValue {
			value = formatWithUnit(g.Value, g.Unit)
		}
		if g.Status != info {
			limit = "≤ " + formatWithUnit(g.Limit, g.Unit)
		}
		rows = append(rows, []string{g.Name, value, limit, g.Status, g.Note})
	}
	return rows
}

// formatWithUnit formats a goal's value or limit: counts whole, ratios and
// percentages to a thousandth, times to what they are measured in.
func formatWithUnit(v float64, unit string) string {
	switch unit {
	case "×":
		return fmt.Sprintf("%.3f×", v)
	case "%":
		return fmt.Sprintf("%.3f %%", v)
	case "µs", "ms":
		return fmt.Sprintf("%.1f %s", v, unit)
	case "requests", "trials", "transitions":
		return fmt.Sprintf("%.0f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

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
	var b strings.Builder
	fmt.Fprintf(&b, "%d CPUs (%s), kernel %s, %s, %s, clock %g Hz; ", m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Wrk, m.ClockTicks)
	fmt.Fprintf(&b, "%d round(s) × %gs measured (+%gs warm-up), wrk %d thread(s), %d connections (fork mode %d), %d-byte body",
		c.Rounds, c.DurationS, c.WarmupS, c.Threads, c.Conns, c.ForkConns, c.BodyBytes)
	return b.String()
}

// textTable writes a table aligned with spaces, for a terminal.
// writeNotes writes a run's notes after its tables: under "notes:" for a
// terminal, under "Notes on this run:" in the README (md); nothing without
// notes.
func writeNotes(b *strings.Builder, notes []string, md bool) {
	if len(notes) == 0 {
		return
	}
	head, item := "\nnotes:\n", "  - "
	if md {
		head, item = "\nNotes on this run:\n", "- "
	}
	b.WriteString(head)
	for _, n := range notes {
		b.WriteString(item + n + "\n")
	}
}

func textTable(b *strings.Builder, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

// reportDoc is a suite's report being written: as text for a terminal, or
// as markdown for the README (md).
type reportDoc struct {
	strings.Builder
	md bool
}

// newReportDoc starts a suite's report. For the README (md): the run's
// time, a link to its raw numbers at jsonPath and the setup line; for a
// terminal: the suite's title (what qualifies it, e.g. " (medians over
// rounds)"), the run's start and the setup line.
func newReportDoc(md bool, suite, what, started, jsonPath, setup string) *reportDoc {
	d := &reportDoc{md: md}
	if md {
		fmt.Fprintf(d, "Latest run: %s, raw numbers in [`%s`](%s).\n%s.\n", readmeTime(started), jsonPath, jsonPath, setup)
	} else {
		fmt.Fprintf(d, "\n%s benchmark, %s%s\n%s\n", suite, started, what, setup)
	}
	return d
}

// goals writes the goals' table after a blank line.
func (d *reportDoc) goals(goals []goal) {
	d.WriteString("\n")
	d.table(goalHeader, goalRows(goals))
}

// notes writes the run's notes (see writeNotes).
func (d *reportDoc) notes(notes []string) { writeNotes(&d.Builder, notes, d.md) }

// table writes a table in the document's format.
func (d *reportDoc) table(header []string, rows [][]string) {
	if d.md {
		markdownTable(&d.Builder, header, rows)
	} else {
		textTable(&d.Builder, header, rows)
	}
}

// section writes caption and then the table of rows, after a blank line;
// nothing without rows.
func (d *reportDoc) section(caption string, header []string, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	d.caption(caption)
	d.table(header, rows)
}

// caption writes a table's caption after a blank line.
func (d *reportDoc) caption(caption string) {
	sep := "\n"
	if d.md {
		sep = "\n\n"
	}
	d.WriteString("\n" + caption + sep)
}

// markdownTable writes a GitHub-flavoured markdown table.
func markdownTable(b *strings.Builder, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

// readmeTime is an RFC 3339 time as the README shows it.
func readmeTime(rfc3339 string) string {
	if t, err := time.Parse(time.RFC3339, rfc3339); err == nil {
		return t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return rfc3339
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
	b.WriteString("\n")
	b.table(goalHeader, goalRows(r.Goals))
	if md {
		b.WriteString("\n")
	}
	b.WriteString(rssNote + "\n\n")
	b.table(sizeHeader, sizeRows(r.Artifacts))
	b.notes(r.Notes)
	return b.String()
}

// sectionMarkers are the lines between which a suite's results section of
// the README lies.
func sectionMarkers(suite string) (begin, end string) {
	return "<!-- bench:" + suite + " results: begin. Written by `go run ./bench/run -suite " + suite + "`; edits inside are lost. -->",
		"<!-- bench:" + suite + " results: end -->"
}

// replaceSection replaces the text between suite's markers in doc with
// body, or appends a marked section if doc has none. Other suites' sections
// are left as they are.
func replaceSection(doc, suite, body string) (string, error) {
	begin, end := sectionMarkers(suite)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	switch {
	case i < 0 && j < 0:
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		if doc != "" {
			doc += "\n"
		}
		return doc + block + "\n", nil
	case i < 0 || j < i:
		return "", fmt.Errorf("%s results markers are unpaired or out of order", suite)
	}
	return doc[:i] + block + doc[j+len(end):], nil
}

// updateReadme rewrites suite's results section of the README at path.
func updateReadme(path, suite, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("update %s: %w", path, err)
	}
	doc, err := replaceSection(string(old), suite, body)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	if err := credential.WriteFileAtomic(path, []byte(doc), 0o644, -1); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeJSON writes v, indented, to path, creating its directory.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := credential.WriteFileAtomic(path, append(b, '\n'), 0o644, -1); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
