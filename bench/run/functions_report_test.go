package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
)

// testRows collects rows built the way the suite builds them.
type testRows []report.Row

// add adds a row of kind with labels, figures and (if not "") an error.
func (rs *testRows) add(kind string, labels []any, values map[string]float64, err string) {
	r := report.NewRow(kind, labels...).PutAll(values)
	if err != "" {
		r.Fail(errString(err))
	}
	*rs = append(*rs, *r)
}

// build adds a successful build.
func (rs *testRows) build(tmpl string, trial int, cache string, s, image, fn float64) {
	rs.add("build", []any{"template", tmpl, "trial", trial, "cache", cache},
		map[string]float64{cache + "_s": s, "image_bytes": image, "function_bytes": fn, "watchdog_bytes": image - fn}, "")
}

// replica adds a scale or deploy trial that answered after ready seconds.
func (rs *testRows) replica(kind, k, v string, trial int, ready float64) {
	rs.add(kind, []any{k, v, "trial", trial}, map[string]float64{"ready_s": ready}, "")
}

// testFunctionsRows is a small run: two trials of go and c builds (one c
// build failed), cpp once over its limit, bin never; three scale trials
// per interval (one failed); deploys, one failed.
func testFunctionsRows() []report.Row {
	var rs testRows
	rs.build("go", 1, "cold", 0.9, 5_836_962, 5_836_962)
	rs.build("go", 1, "warm", 0.3, 5_836_962, 5_836_962)
	rs.build("go", 2, "cold", 0.5, 5_836_962, 5_836_962)
	rs.build("go", 2, "warm", 0.2, 5_836_962, 5_836_962)
	rs.build("c", 1, "cold", 0.4, 6_564_714, 678_600)
	rs.build("c", 1, "warm", 0.1, 6_564_714, 678_600)
	rs.add("build", []any{"template", "c", "trial", 2, "cache", "cold"}, map[string]float64{"cold_s": 0.2}, "build c: gcc: exit status 1")
	rs.build("cpp", 1, "cold", 0.8, 8_100_000, 2_213_886)
	rs.build("cpp", 1, "warm", 0.5, 8_100_000, 2_213_886)

	rs.replica("scale", "interval", "1s", 1, 1.551)
	rs.replica("scale", "interval", "250ms", 1, 0.81)
	rs.replica("scale", "interval", "1s", 2, 1.513)
	rs.add("scale", []any{"interval", "250ms", "trial", 2}, nil, "no new replica of x in the task list after 1m30s")
	rs.replica("scale", "interval", "1s", 3, 1.63)
	rs.replica("scale", "interval", "250ms", 3, 0.76)

	rs.replica("deploy", "template", "go", 1, 1.551)
	rs.replica("deploy", "template", "c", 1, 1.511)
	rs.replica("deploy", "template", "go", 2, 1.53)
	rs.add("deploy", []any{"template", "c", "trial", 2}, nil, `the function answered "x", which lacks the request body`)
	return rs
}

// testFunctionsReport is a whole report over testFunctionsRows.
func testFunctionsReport() *report.Report {
	rep := &report.Report{Suite: "functions", Started: "2026-01-02T03:04:05Z", Title: " (medians over trials)",
		Setup: "2 CPUs (AMD EPYC), kernel 6.1.0, Docker Engine 20.10.24+dfsg1 (API 1.41), 1-node swarm; 2 build and deploy trial(s) per template",
		Rows:  testFunctionsRows()}
	functionsSummary(rep, 0)
	return rep
}

func TestFunctionsSummary(t *testing.T) {
	rep := testFunctionsReport()
	find := func(kind, k, v string) report.Group {
		for _, g := range rep.Summary {
			if g.Label("kind") == kind && g.Label(k) == v {
				return g
			}
		}
		t.Fatalf("no %s group %s=%s", kind, k, v)
		return report.Group{}
	}
	if g := find("build", "template", "go"); g.Runs != 4 || g.M("cold_s") != 0.7 || g.M("warm_s") != 0.25 || g.M("image_bytes") != 5_836_962 {
		t.Errorf("go builds: runs %d, cold %v, warm %v, image %v", g.Runs, g.M("cold_s"), g.M("warm_s"), g.M("image_bytes"))
	}
	if g := find("scale", "interval", "1s"); g.M("ready_s") != 1.551 || g.Min["ready_s"] != 1.513 || g.Max["ready_s"] != 1.63 {
		t.Errorf("1s scales: ready %v (%v–%v)", g.M("ready_s"), g.Min["ready_s"], g.Max["ready_s"])
	}
	if g := find("scale", "interval", "250ms"); g.Runs != 2 || g.Failed != 1 || g.Flags[0] != "trial 2: no new replica of x in the task list after 1m30s" {
		t.Errorf("250ms scales: runs %d, failed %d, flags %q", g.Runs, g.Failed, g.Flags)
	}
	if g := find("deploy", "template", "c"); g.Runs != 1 || g.Failed != 1 || g.M("ready_s") != 1.511 {
		t.Errorf("c deploys: runs %d, failed %d, ready %v", g.Runs, g.Failed, g.M("ready_s"))
	}

	want := map[string]struct {
		status string
		value  float64
		note   string
	}{
		imageGoals[0].name: {report.Pass, 5.837, "function 5.84 MB, the watchdog linked in"},
		// Under the limit, but a build failed.
		imageGoals[1].name: {report.Fail, 6.565, "c had errors: cache cold, trial 2: build c: gcc: exit status 1"},
		imageGoals[2].name: {report.Fail, 8.1, "function 2.21 MB + watchdog 5.89 MB"},
		scaleGoalName:      {report.Fail, 1.551, "with a 250ms health interval: 0.79 s median; see the notes"},
	}
	if len(rep.Goals) != len(want) {
		t.Errorf("%d goals, want %d", len(rep.Goals), len(want))
	}
	for _, g := range rep.Goals {
		if w := want[g.Name]; g.Status != w.status || g.Value != w.value || g.Note != w.note {
			t.Errorf("goal %q: %s %v %q, want %s %v %q", g.Name, g.Status, g.Value, g.Note, w.status, w.value, w.note)
		}
	}
	wantNotes := []string{
		"scale +1: " + startIntervalNote,
		"build c: cache cold, trial 2: build c: gcc: exit status 1",
		`deploy c: trial 2: the function answered "x", which lacks the request body`,
		"scale 250ms: trial 2: no new replica of x in the task list after 1m30s",
	}
	if !reflect.DeepEqual(rep.Notes, wantNotes) {
		t.Errorf("notes:\n got %q\nwant %q", rep.Notes, wantNotes)
	}

	for golden, got := range map[string]string{
		"functions-results.md":  rep.Render(true, "results/functions-20260102T030405Z.json"),
		"functions-results.txt": rep.Render(false, ""),
	} {
		if *update {
			if err := os.WriteFile("testdata/"+golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if want := readTestdata(t, golden); got != want {
			t.Errorf("the rendering differs from testdata/%s (run go test ./bench/run -update):\n%s", golden, got)
		}
	}
	if got := rep.Render(false, ""); !strings.Contains(got, "2 (1 failed)") {
		t.Errorf("the rendering lacks the failed trials:\n%s", got)
	}
}

func TestFunctionsGoals(t *testing.T) {
	var skip, failed, oneFailed, pass testRows
	failed.add("build", []any{"template", "go", "trial", 1, "cache", "cold"}, nil, "x")
	failed.add("scale", []any{"interval", "1s", "trial", 1}, nil, "y")
	for i := 1; i <= 9; i++ {
		oneFailed.replica("scale", "interval", "1s", i, 0.9)
		pass.replica("scale", "interval", "1s", i, 0.6)
	}
	oneFailed.add("scale", []any{"interval", "1s", "trial", 10}, nil, "z")
	type verdict struct {
		status string
		value  float64
		note   string
	}
	for _, tt := range []struct {
		name string
		rows testRows
		want []verdict // go, c, cpp image; scale
	}{
		{"nothing ran", skip, []verdict{{report.Skip, 0, "go was not in this run"}, {report.Skip, 0, "c was not in this run"},
			{report.Skip, 0, "cpp was not in this run"}, {report.Skip, 0, "1s was not in this run"}}},
		{"every build and trial failed", failed, []verdict{{report.Fail, 0, "go: every run failed"}, {report.Skip, 0, "c was not in this run"},
			{report.Skip, 0, "cpp was not in this run"}, {report.Fail, 0, "1s: every run failed"}}},
		{"scale within the goal, one trial failed", oneFailed, []verdict{{report.Skip, 0, "go was not in this run"}, {report.Skip, 0, "c was not in this run"},
			{report.Skip, 0, "cpp was not in this run"}, {report.Fail, 0.9, "1s had errors: trial 10: z"}}},
		{"scale within the goal", pass, []verdict{{report.Skip, 0, "go was not in this run"}, {report.Skip, 0, "c was not in this run"},
			{report.Skip, 0, "cpp was not in this run"}, {report.Pass, 0.6, "see the notes"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := &report.Report{Rows: tt.rows}
			functionsSummary(rep, 0)
			var got []verdict
			for _, g := range rep.Goals {
				got = append(got, verdict{g.Status, g.Value, g.Note})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("goals:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestScaleNoteWithStartInterval(t *testing.T) {
	var rs testRows
	rs.replica("scale", "interval", "1s", 1, 0.52)
	rep := &report.Report{Rows: rs}
	functionsSummary(rep, 100*time.Millisecond)
	want := "scale +1: the services had a health start interval of 100ms: a new replica is probed that often until it is healthy"
	if !reflect.DeepEqual(rep.Notes, []string{want}) {
		t.Errorf("notes = %q\nwant [%q]", rep.Notes, want)
	}
}
