package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

var goalHeader = []string{"goal", "value", "limit", "result", "note"}

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

// notes writes a run's notes after its tables: under "notes:" for a
// terminal, under "Notes on this run:" in the README; nothing without
// notes.
func (d *reportDoc) notes(notes []string) {
	if len(notes) == 0 {
		return
	}
	head, item := "\nnotes:\n", "  - "
	if d.md {
		head, item = "\nNotes on this run:\n", "- "
	}
	d.WriteString(head)
	for _, n := range notes {
		d.WriteString(item + n + "\n")
	}
}

// table writes a table: a GitHub-flavoured markdown one, or one aligned
// with spaces for a terminal.
func (d *reportDoc) table(header []string, rows [][]string) {
	if !d.md {
		tw := tabwriter.NewWriter(d, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		_ = tw.Flush()
		return
	}
	d.WriteString("| " + strings.Join(header, " | ") + " |\n")
	d.WriteString("|" + strings.Repeat("---|", len(header)) + "\n")
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		d.WriteString("| " + strings.Join(cells, " | ") + " |\n")
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

// readmeTime is an RFC 3339 time as the README shows it.
func readmeTime(rfc3339 string) string {
	if t, err := time.Parse(time.RFC3339, rfc3339); err == nil {
		return t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return rfc3339
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

// clock formats seconds as m:ss.s.
func clock(s float64) string {
	m := int(s) / 60
	return fmt.Sprintf("%d:%04.1f", m, s-float64(m*60))
}
