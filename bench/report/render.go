package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pulsefaas/pulse/internal/credential"
)

// Report is everything one run of a suite produced. It is written as JSON
// (bench/results/<suite>-<time>.json) and rendered, the same way for every
// suite, as text for a terminal and as the suite's README section.
type Report struct {
	Suite    string `json:"suite"`
	Started  string `json:"started"`
	Finished string `json:"finished"`
	// Title qualifies the suite in the terminal's heading (" (medians
	// over rounds)"); Setup is one line on where and how it measured.
	Title string `json:"-"`
	Setup string `json:"setup"`
	// Config is the suite's configuration, Machine the host's, Records
	// what else the suite keeps with its figures (artifacts, the engine).
	Config  any            `json:"config"`
	Machine any            `json:"machine"`
	Records map[string]any `json:"records,omitempty"`
	// Rows are every measured run and trial; Summary their groups.
	Rows    []Row   `json:"rows"`
	Summary []Group `json:"summary,omitempty"`
	// Tables are what the text and README show, in order, before Goals.
	Tables  []Table  `json:"tables"`
	Goals   []Goal   `json:"goals"`
	Notes   []string `json:"notes,omitempty"`
	Cleanup []string `json:"cleanup,omitempty"`
}

// New starts a suite's report.
func New(suite string, started time.Time) *Report {
	return &Report{Suite: suite, Started: started.UTC().Format(time.RFC3339)}
}

// Record keeps v under name in the report's records.
func (r *Report) Record(name string, v any) {
	if r.Records == nil {
		r.Records = map[string]any{}
	}
	r.Records[name] = v
}

// Note adds a note.
func (r *Report) Note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

// Add adds a row.
func (r *Report) Add(row *Row) { r.Rows = append(r.Rows, *row) }

// Table is a table of cells: a caption before it and a note after it, both
// optional.
type Table struct {
	Caption string     `json:"caption,omitempty"`
	Header  []string   `json:"header"`
	Rows    [][]string `json:"rows"`
	Note    string     `json:"note,omitempty"`
}

// Col is one column of a table of groups.
type Col struct {
	Head string
	Cell func(Group) string
}

// Stat is a column of metric's median, formatted; "–" when not measured.
func Stat(head, metric, format string) Col {
	return Col{head, func(g Group) string { return Num(format, g.M(metric)) }}
}

// Scaled is Stat of the median times f (kB as MB, s as ms).
func Scaled(head, metric, format string, f float64) Col {
	return Col{head, func(g Group) string { return Num(format, g.M(metric)*f) }}
}

// Spread is a column of metric's lowest–highest, formatted.
func Spread(head, metric, format string) Col {
	return Col{head, func(g Group) string {
		lo, ok := g.Min[metric]
		if !ok {
			return "–"
		}
		return Num(format, lo) + "–" + Num(format, g.Max[metric])
	}}
}

// LabelCol is a column of the groups' label k.
func LabelCol(head, k string) Col { return Col{head, func(g Group) string { return g.Labels[k] }} }

// Num formats v, "–" for NaN; a rounded -0 shows as 0.
func Num(format string, v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	s := fmt.Sprintf(format, v)
	if strings.HasPrefix(s, "-") && strings.Trim(s, "-0.") == "" {
		s = s[1:]
	}
	return s
}

// GroupTable is a table with a row per group: the key column (label k),
// then cols. A group that did not run, or whose every run failed, says so
// in its second cell; a flagged group's last cell is marked.
func GroupTable(caption string, groups []Group, k string, cols ...Col) Table {
	t := Table{Caption: caption, Header: []string{k}}
	for _, c := range cols {
		t.Header = append(t.Header, c.Head)
	}
	for _, g := range groups {
		row := []string{g.Labels[k]}
		switch {
		case g.Runs == 0 && g.Skipped != "":
			row = append(row, "skipped: "+g.Skipped)
		case g.Runs == 0:
			row = append(row, "every run failed")
		default:
			for _, c := range cols {
				row = append(row, c.Cell(g))
			}
			if g.Flagged() {
				row[len(row)-1] += " (flagged)"
			}
		}
		for len(row) < len(t.Header) {
			row = append(row, "")
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// Render renders the report for a terminal (md false) or as its README
// section (md true), whose link to the JSON results is jsonPath.
func (r *Report) Render(md bool, jsonPath string) string {
	d := &doc{md: md}
	if started := r.Started; md {
		if t, err := time.Parse(time.RFC3339, started); err == nil {
			started = t.UTC().Format("2006-01-02 15:04 UTC")
		}
		fmt.Fprintf(d, "Latest run: %s, raw numbers in [`%s`](%s).\n%s.\n", started, jsonPath, jsonPath, r.Setup)
	} else {
		fmt.Fprintf(d, "\n%s benchmark, %s%s\n%s\n", r.Suite, r.Started, r.Title, r.Setup)
	}
	for _, t := range r.Tables {
		d.table(t)
	}
	goals := Table{Header: []string{"goal", "value", "limit", "result", "note"}}
	for _, g := range r.Goals {
		value, limit := "", "–"
		if g.Status != Skip && !g.NoValue {
			value = FormatWithUnit(g.Value, g.Unit)
		}
		if g.Status != Info {
			limit = "≤ " + FormatWithUnit(g.Limit, g.Unit)
		}
		goals.Rows = append(goals.Rows, []string{g.Name, value, limit, g.Status, g.Note})
	}
	d.table(goals)
	if len(r.Notes) > 0 {
		head, item := "\nnotes:\n", "  - "
		if md {
			head, item = "\nNotes on this run:\n", "- "
		}
		d.WriteString(head)
		for _, n := range r.Notes {
			d.WriteString(item + n + "\n")
		}
	}
	return d.String()
}

// doc is a report being rendered.
type doc struct {
	strings.Builder
	md bool
}

// table writes a table after a blank line, with its caption and note: a
// GitHub-flavoured markdown one, or one aligned with spaces for a
// terminal. A table without rows is left out.
func (d *doc) table(t Table) {
	if len(t.Rows) == 0 {
		return
	}
	d.WriteString("\n")
	if t.Caption != "" {
		d.WriteString(t.Caption + "\n")
		if d.md {
			d.WriteString("\n")
		}
	}
	if !d.md {
		tw := tabwriter.NewWriter(d, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
		for _, row := range t.Rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		_ = tw.Flush()
	} else {
		d.WriteString("| " + strings.Join(t.Header, " | ") + " |\n")
		d.WriteString("|" + strings.Repeat("---|", len(t.Header)) + "\n")
		for _, row := range t.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = strings.ReplaceAll(c, "|", `\|`)
			}
			d.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
	}
	if t.Note != "" {
		d.WriteString("\n" + t.Note + "\n")
	}
}

// SectionMarkers are the lines between which a suite's results section of
// the README lies.
func SectionMarkers(suite string) (begin, end string) {
	return "<!-- bench:" + suite + " results: begin. Written by `go run ./bench/run -suite " + suite + "`; edits inside are lost. -->",
		"<!-- bench:" + suite + " results: end -->"
}

// ReplaceSection replaces the text between suite's markers in doc with
// body, or appends a marked section if doc has none. Other suites' sections
// are left as they are.
func ReplaceSection(doc, suite, body string) (string, error) {
	begin, end := SectionMarkers(suite)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	block := begin + "\n" + strings.TrimRight(body, "\n") + "\n" + end
	switch {
	case i < 0 && j < 0:
		if doc != "" {
			doc = strings.TrimSuffix(doc, "\n") + "\n\n"
		}
		return doc + block + "\n", nil
	case i < 0 || j < i:
		return "", fmt.Errorf("%s results markers are unpaired or out of order", suite)
	}
	return doc[:i] + block + doc[j+len(end):], nil
}

// Publish writes the report to <out>/<suite>-<started>.json and returns
// its path; when readme is not "", it also rewrites the suite's section of
// the README at that path.
func (r *Report) Publish(out, readme string) (string, error) {
	t, err := time.Parse(time.RFC3339, r.Started)
	if err != nil {
		return "", fmt.Errorf("publish: start %q: %w", r.Started, err)
	}
	path := filepath.Join(out, r.Suite+"-"+t.UTC().Format("20060102T150405Z")+".json")
	if err := WriteJSON(path, r); err != nil || readme == "" {
		return path, err
	}
	rel, err := filepath.Rel(filepath.Dir(readme), path)
	if err != nil {
		rel = path
	}
	old, err := os.ReadFile(readme)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return path, fmt.Errorf("update %s: %w", readme, err)
	}
	doc, err := ReplaceSection(string(old), r.Suite, r.Render(true, filepath.ToSlash(rel)))
	if err != nil {
		return path, fmt.Errorf("update %s: %w", readme, err)
	}
	if err := credential.WriteFileAtomic(readme, []byte(doc), 0o644, -1); err != nil {
		return path, fmt.Errorf("write %s: %w", readme, err)
	}
	return path, nil
}

// WriteJSON writes v, indented, to path, creating its directory.
func WriteJSON(path string, v any) error {
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
