package report

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMedianPercentile(t *testing.T) {
	for _, tt := range []struct {
		name string
		got  float64
		want float64
	}{
		{"median of an odd count is the middle", Median([]float64{5, 1, 3}), 3},
		{"median of an even count is the mean of the middle two", Median([]float64{4, 1, 3, 2}), 2.5},
		{"p90 of 10 is the 9th", Percentile([]float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, 90), 9},
		{"p50 of 10 is the 5th", Percentile([]float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, 50), 5},
		{"p90 of 3 is the max", Percentile([]float64{3, 1, 2}, 90), 3},
		{"tiny p is the min", Percentile([]float64{3, 1, 2}, 1), 1},
		{"p100 is the max", Percentile([]float64{3, 1, 2}, 100), 3},
		{"p90 of one is it", Percentile([]float64{7}, 90), 7},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if !math.IsNaN(Median(nil)) || !math.IsNaN(Percentile(nil, 90)) {
		t.Error("a statistic of nothing is not NaN")
	}
	xs := []float64{3, 1, 2}
	Median(xs)
	Percentile(xs, 50)
	if xs[0] != 3 {
		t.Error("a statistic sorted its input")
	}
}

// testRows: a ran three times, once with request errors; b failed once and
// ran once; c did not run; one row of another kind.
func testRows() []Row {
	var rows []Row
	add := func(r *Row) { rows = append(rows, *r) }
	add(NewRow("run", "variant", "a", "round", 1).Put("rps", 100).Put("p99_us", 900))
	a2 := NewRow("run", "variant", "a", "round", 2).Put("rps", 300).Put("p99_us", math.NaN())
	a2.Flag("%d request errors", 2)
	add(a2)
	add(NewRow("run", "variant", "a", "round", 3).Put("rps", 200).Put("p99_us", 1100))
	b1 := NewRow("run", "variant", "b", "round", 1)
	b1.Fail(errors.New("not ready after 15s"))
	add(b1)
	add(NewRow("run", "variant", "b", "round", 2).Put("rps", 210))
	rows = append(rows, Row{Kind: "run", Labels: map[string]string{"variant": "c"}, Skipped: "c did not build"})
	add(NewRow("trial", "variant", "a").Put("rps", 1e9))
	return rows
}

func TestSummarize(t *testing.T) {
	groups := Summarize(testRows(), "run", "variant")
	if len(groups) != 3 {
		t.Fatalf("%d groups, want 3 (a, b, c; the trial is another kind)", len(groups))
	}
	a, b, c := groups[0], groups[1], groups[2]
	if a.Runs != 3 || a.M("rps") != 200 || a.Min["rps"] != 100 || a.Max["rps"] != 300 {
		t.Errorf("a: runs %d, rps median %v min %v max %v; want 3, 200, 100, 300", a.Runs, a.M("rps"), a.Min["rps"], a.Max["rps"])
	}
	// A NaN is not measured: p99 has two values.
	if got := a.Values("p99_us"); !reflect.DeepEqual(got, []float64{900, 1100}) || a.M("p99_us") != 1000 {
		t.Errorf("a's p99 values %v median %v; want [900 1100], 1000", got, a.M("p99_us"))
	}
	if !reflect.DeepEqual(a.Flags, []string{"round 2: 2 request errors"}) {
		t.Errorf("a's flags %q", a.Flags)
	}
	if b.Runs != 1 || b.Failed != 1 || !reflect.DeepEqual(b.Flags, []string{"round 1: not ready after 15s"}) || b.M("rps") != 210 {
		t.Errorf("b: %+v", b)
	}
	if c.Runs != 0 || c.Skipped != "c did not build" || !math.IsNaN(c.M("rps")) {
		t.Errorf("c: %+v", c)
	}
	Sort(groups, "variant", []string{"c", "a"})
	if groups[0].Label("variant") != "c" || groups[1].Label("variant") != "a" || groups[2].Label("variant") != "b" {
		t.Errorf("sorted: %s %s %s, want c a b", groups[0].Label("variant"), groups[1].Label("variant"), groups[2].Label("variant"))
	}
	if _, err := json.Marshal(Report{Rows: testRows(), Summary: groups}); err != nil {
		t.Errorf("a report with unmeasured figures must marshal: %v", err)
	}
}

func TestGoals(t *testing.T) {
	groups := Summarize(testRows(), "run", "variant")
	clean := Summarize([]Row{*NewRow("run", "v", "x").Put("cpu", 10), *NewRow("run", "v", "y").Put("cpu", 11)}, "run", "v")
	g := NewGoal("goal", "µs", 250)
	for _, tt := range []struct {
		name   string
		got    Goal
		status string
		value  float64
		note   string
	}{
		{"a clean group under its limit passes", g.Over(clean, "v", "x", "cpu"), Pass, 10, ""},
		{"over its limit fails", NewGoal("goal", "µs", 9).Over(clean, "v", "x", "cpu"), Fail, 10, ""},
		{"a flagged group fails with its first flag", g.Over(groups, "variant", "a", "rps"), Fail, 200, "a had errors: round 2: 2 request errors"},
		{"a group with a failed run fails", g.Over(groups, "variant", "b", "rps"), Fail, 210, "b had errors: round 1: not ready after 15s"},
		{"a group that did not run is skipped", g.Over(groups, "variant", "c", "rps"), Skip, 0, "c did not run: c did not build"},
		{"a group not in the run is skipped", g.Over(groups, "variant", "z", "rps"), Skip, 0, "z was not in this run"},
		{"a scaled median", NewGoal("goal", "ms", 11000).OverScaled(clean, "v", "y", "cpu", 1000), Pass, 11000, ""},
		{"a ratio of medians", NewGoal("r", "×", 1.05).Ratio(clean, "v", "y", "x", "cpu"), Fail, 1.1, ""},
		{"a ratio over a flagged reference fails", NewGoal("r", "×", 5).Ratio(groups, "variant", "b", "a", "rps"), Fail, 1.05, "b had errors: round 1: not ready after 15s"},
		{"nothing measured fails without a value", g.Check(math.NaN()), Fail, 0, "nothing measured"},
		{"an info figure keeps its status", g.AsInfo().Check(1e6), Info, 1e6, ""},
	} {
		if tt.got.Status != tt.status || tt.got.Value != tt.value || tt.got.Note != tt.note {
			t.Errorf("%s: %s %v %q, want %s %v %q", tt.name, tt.got.Status, tt.got.Value, tt.got.Note, tt.status, tt.value, tt.note)
		}
	}
	if every := Summarize([]Row{{Kind: "run", Labels: map[string]string{"v": "x"}, Error: "boom"}}, "run", "v"); !g.Over(every, "v", "x", "cpu").NoValue {
		t.Error("a goal over a group whose every run failed has a value")
	}
}

func TestRender(t *testing.T) {
	groups := Summarize(testRows(), "run", "variant")
	rep := &Report{Suite: "demo", Started: "2026-01-02T03:04:05Z", Title: " (medians)", Setup: "2 CPUs",
		Tables: []Table{GroupTable("Per variant:", groups, "variant", Stat("rps", "rps", "%.0f"), Spread("p99 µs", "p99_us", "%.0f")),
			{Header: []string{"empty"}}},
		Goals: []Goal{NewGoal("rps ≤ 250", "requests", 250).Over(groups, "variant", "a", "rps"), NewGoal("info", "s", 0).AsInfo().Check(1.5),
			NewGoal("skipped", "µs", 1).Over(groups, "variant", "c", "rps")},
		Notes: []string{"a | b"}}
	md := rep.Render(true, "results/demo.json")
	for _, want := range []string{
		"Latest run: 2026-01-02 03:04 UTC, raw numbers in [`results/demo.json`](results/demo.json).\n2 CPUs.\n",
		"Per variant:\n\n| variant | rps | p99 µs |\n|---|---|---|\n| a | 200 | 900–1100 (flagged) |\n| b | 210 | – (flagged) |\n| c | skipped: c did not build |  |\n",
		"| rps ≤ 250 | 200 requests | ≤ 250 requests | FAIL | a had errors: round 2: 2 request errors |\n",
		"| info | 1.50 s | – | INFO |  |\n| skipped |  | ≤ 1.0 µs | SKIP | c did not run: c did not build |\n",
		"\nNotes on this run:\n- a | b\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| empty |") {
		t.Error("a table without rows is rendered")
	}
	text := rep.Render(false, "")
	if !strings.HasPrefix(text, "\ndemo benchmark, 2026-01-02T03:04:05Z (medians)\n2 CPUs\n") || !strings.Contains(text, "notes:\n  - a | b\n") {
		t.Errorf("text:\n%s", text)
	}
}

func TestSectionMarkers(t *testing.T) {
	// The README in the tree carries these exact lines: a change would
	// append a second section instead of replacing the first.
	begin, end := SectionMarkers("watchdog")
	if want := "<!-- bench:watchdog results: begin. Written by `go run ./bench/run -suite watchdog`; edits inside are lost. -->"; begin != want {
		t.Errorf("begin = %q, want %q", begin, want)
	}
	if want := "<!-- bench:watchdog results: end -->"; end != want {
		t.Errorf("end = %q, want %q", end, want)
	}
}

func TestReplaceSection(t *testing.T) {
	wBegin, wEnd := SectionMarkers("watchdog")
	fBegin, fEnd := SectionMarkers("functions")
	block := wBegin + "\nnew\n" + wEnd
	fBlock := fBegin + "\nnew\n" + fEnd
	for _, tt := range []struct {
		name, suite, doc, want string
		wantErr                bool
	}{
		{name: "empty", suite: "watchdog", doc: "", want: block + "\n"},
		{name: "append", suite: "watchdog", doc: "# Bench\ntext", want: "# Bench\ntext\n\n" + block + "\n"},
		{name: "replace", suite: "watchdog", doc: "# Bench\n\n" + wBegin + "\nold\nolder\n" + wEnd + "\n\nafter\n", want: "# Bench\n\n" + block + "\n\nafter\n"},
		{name: "end only", suite: "watchdog", doc: "x\n" + wEnd + "\n", wantErr: true},
		{name: "out of order", suite: "watchdog", doc: wEnd + "\n" + wBegin + "\n", wantErr: true},
		{name: "second suite appended after the first", suite: "functions", doc: "# Bench\n\n" + wBegin + "\nold\n" + wEnd + "\n",
			want: "# Bench\n\n" + wBegin + "\nold\n" + wEnd + "\n\n" + fBlock + "\n"},
		{name: "second suite replaced, first kept", suite: "functions", doc: wBegin + "\nw\n" + wEnd + "\n\n## F\n" + fBegin + "\nold\n" + fEnd + "\ntail\n",
			want: wBegin + "\nw\n" + wEnd + "\n\n## F\n" + fBlock + "\ntail\n"},
		{name: "first suite replaced, second kept", suite: "watchdog", doc: wBegin + "\nw\n" + wEnd + "\n" + fBegin + "\nf\n" + fEnd + "\n",
			want: block + "\n" + fBegin + "\nf\n" + fEnd + "\n"},
	} {
		got, err := ReplaceSection(tt.doc, tt.suite, "new\n")
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q (error %v)", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPublish(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	if err := os.WriteFile(readme, []byte("# Bench\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := New("demo", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	rep.Setup = "here"
	rep.Add(NewRow("run", "variant", "a").Put("rps", math.Inf(1)).Put("x", 1))
	path, err := rep.Publish(filepath.Join(dir, "results"), readme)
	if err != nil || path != filepath.Join(dir, "results", "demo-20260102T030405Z.json") {
		t.Fatalf("Publish = %q, %v", path, err)
	}
	var back Report
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &back) != nil || back.Rows[0].Values["x"] != 1 || len(back.Rows[0].Values) != 1 {
		t.Errorf("results file does not hold the row (infinite rps left out): %+v, %v", back, err)
	}
	doc, _ := os.ReadFile(readme)
	if !strings.Contains(string(doc), "raw numbers in [`results/demo-20260102T030405Z.json`]") {
		t.Errorf("README section:\n%s", doc)
	}
}
