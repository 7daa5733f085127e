package main

import (
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/pulsefaas/pulse/bench/report"
)

func TestProbeTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	tests := []struct {
		name          string
		log           []*container.HealthcheckResult
		wantPeriods   []float64
		wantDurations []float64
	}{
		{name: "empty"},
		{name: "one probe", log: []*container.HealthcheckResult{{Start: at(0), End: at(50)}}, wantDurations: []float64{50}},
		{
			name: "out of order, a nil and an unfinished one",
			log: []*container.HealthcheckResult{
				{Start: at(1050), End: at(1100)},
				nil,
				{Start: at(0), End: at(40)},
				{Start: at(2110)}, // still running: no duration
			},
			wantPeriods:   []float64{1050, 1060},
			wantDurations: []float64{50, 40},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, d := probeTimes(tt.log)
			if !reflect.DeepEqual(p, tt.wantPeriods) || !reflect.DeepEqual(d, tt.wantDurations) {
				t.Errorf("probeTimes = %v, %v; want %v, %v", p, d, tt.wantPeriods, tt.wantDurations)
			}
		})
	}
}

func TestFirstPassingProbe(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }
	pass := func(end int) *container.HealthcheckResult {
		return &container.HealthcheckResult{Start: at(end - 50), End: at(end), ExitCode: 0}
	}
	failed := &container.HealthcheckResult{Start: at(400), End: at(450), ExitCode: 1}
	none := math.NaN()
	tests := []struct {
		name string
		h    *container.Health
		want float64
	}{
		{name: "no health", h: nil, want: none},
		{name: "empty log", h: &container.Health{}, want: none},
		{name: "first passes", h: &container.Health{Log: []*container.HealthcheckResult{pass(1460), pass(2510)}}, want: 1.46},
		{name: "a failure first", h: &container.Health{Log: []*container.HealthcheckResult{failed, pass(1500)}}, want: 1.5},
		// The engine keeps five: a full log may have lost the first.
		{name: "full log", h: &container.Health{Log: []*container.HealthcheckResult{pass(1000), pass(2000), pass(3000), pass(4000), pass(5000)}}, want: none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstPassingProbe(tt.h, t0); got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Errorf("firstPassingProbe = %v, want %v", got, tt.want)
			}
		})
	}
}

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
func (rs *testRows) build(tmpl string, trial int, cache string, s float64, id string, image, fn float64) {
	rs.add("build", []any{"template", tmpl, "trial", trial, "cache", cache, "image", id},
		map[string]float64{cache + "_s": s, "image_bytes": image, "function_bytes": fn, "watchdog_bytes": image - fn}, "")
}

// replica adds a scale or deploy trial: its label, the engine's times
// (-1: not given), when it showed in Endpoints and answered.
func (rs *testRows) replica(kind, k, v string, trial int, task, started, probe, endpoint, ready float64) {
	vals := map[string]float64{"call_s": 0.005, "endpoint_s": endpoint, "ready_s": ready}
	for m, x := range map[string]float64{"task_created_s": task, "container_started_s": started, "first_probe_s": probe} {
		if x >= 0 {
			vals[m] = x
		}
	}
	rs.add(kind, []any{k, v, "trial", trial}, vals, "")
}

// idle adds an idle window.
func (rs *testRows) idle(replicas int, interval string, window int, busy, engine float64, probe map[string]float64) {
	vals := map[string]float64{"busy_core_pct": busy, "engine_core_pct": engine, "other_core_pct": busy - engine}
	for k, v := range probe {
		vals[k] = v
	}
	rs.add("idle", []any{"replicas", replicas, "interval", interval, "window", window}, vals, "")
}

// testFunctionsRows is a small run: two trials of go and c builds (one c
// build failed), cpp once with two image IDs, bin never; three scale
// trials per interval (one failed); deploys; idle windows with a
// bracketing baseline, the 250 ms one without a health log and noisy.
func testFunctionsRows() []report.Row {
	var rs testRows
	rs.build("go", 1, "cold", 0.9, "sha256:aa", 5_836_962, 5_836_962)
	rs.build("go", 1, "warm", 0.3, "sha256:aa", 5_836_962, 5_836_962)
	rs.build("go", 2, "cold", 0.5, "sha256:aa", 5_836_962, 5_836_962)
	rs.build("go", 2, "warm", 0.2, "sha256:aa", 5_836_962, 5_836_962)
	rs.build("c", 1, "cold", 0.4, "sha256:cc", 6_564_714, 678_600)
	rs.build("c", 1, "warm", 0.1, "sha256:cc", 6_564_714, 678_600)
	rs.add("build", []any{"template", "c", "trial", 2, "cache", "cold"}, map[string]float64{"cold_s": 0.2}, "build c: gcc: exit status 1")
	rs.build("cpp", 1, "cold", 0.8, "sha256:c1", 8_100_000, 2_213_886)
	rs.build("cpp", 1, "warm", 0.5, "sha256:c2", 8_100_000, 2_213_886)
	rs.add("image", []any{"template", "go"}, map[string]float64{"engine_bytes": 5_836_962, "load_s": 0.1}, "")
	rs.add("image", []any{"template", "c"}, map[string]float64{"engine_bytes": 6_564_000, "load_s": 0.1}, "")
	rs.add("image", []any{"template", "cpp"}, nil, "load image: boom")

	rs.replica("scale", "interval", "1s", 1, 0.003, 0.42, 1.46, 1.55, 1.551)
	rs.replica("scale", "interval", "250ms", 1, 0.004, 0.41, 0.71, 0.80, 0.81)
	rs.replica("scale", "interval", "1s", 2, 0.003, 0.44, 1.48, 1.51, 1.513)
	rs.add("scale", []any{"interval", "250ms", "trial", 2}, nil, "no new replica of x in the task list after 1m30s")
	rs.replica("scale", "interval", "1s", 3, -1, 0.48, -1, 1.62, 1.63)
	rs.replica("scale", "interval", "250ms", 3, 0.003, 0.40, 0.73, 0.75, 0.76)

	rs.replica("deploy", "template", "go", 1, 0.002, 0.42, 1.47, 1.549, 1.551)
	rs.replica("deploy", "template", "c", 1, 0.002, 0.38, 1.42, 1.508, 1.511)
	rs.replica("deploy", "template", "go", 2, 0.002, 0.40, 1.45, 1.52, 1.53)
	rs.add("deploy", []any{"template", "c", "trial", 2}, nil, `the function answered "x", which lacks the request body`)

	rs.idle(0, "–", 1, 10, 5, nil)
	rs.idle(4, "1s", 2, 18, 11, map[string]float64{"probe_period_ms": 1050, "probe_run_ms": 55})
	rs.idle(4, "250ms", 3, 60, 44, nil)
	rs.idle(0, "–", 4, 12, 7, nil)
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
	if g := find("build", "template", "go"); g.Runs != 4 || g.M("cold_s") != 0.7 || g.Min["cold_s"] != 0.5 || g.M("warm_s") != 0.25 || !sameImage(g) {
		t.Errorf("go builds: runs %d, cold %v (from %v), warm %v, same image %v", g.Runs, g.M("cold_s"), g.Min["cold_s"], g.M("warm_s"), sameImage(g))
	}
	if g := find("build", "template", "cpp"); sameImage(g) {
		t.Errorf("cpp builds gave two image IDs, sameImage says one")
	}
	// The engine's times are left out where it gave none.
	if g := find("scale", "interval", "1s"); g.M("ready_s") != 1.551 || g.M("task_created_s") != 0.003 || g.M("first_probe_s") != 1.47 ||
		report.Percentile(g.Values("ready_s"), 90) != 1.63 {
		t.Errorf("1s scales: ready %v, task created %v, first probe %v", g.M("ready_s"), g.M("task_created_s"), g.M("first_probe_s"))
	}
	if g := find("scale", "interval", "250ms"); g.Runs != 2 || g.Failed != 1 || g.Flags[0] != "trial 2: no new replica of x in the task list after 1m30s" {
		t.Errorf("250ms scales: runs %d, failed %d, flags %q", g.Runs, g.Failed, g.Flags)
	}

	// Idle: baseline 11 % (10 and 12), the engine's part 6 %. At 1 s: +7 %
	// over 4 × 1000/1050 probes/s. At 250 ms, no health log (the nominal
	// period) and other processes 11 % busier than in the quietest window:
	// its only window is noisy, and taken for lack of another.
	base, one, fast := find("idle", "replicas", "0"), find("idle", "interval", "1s"), find("idle", "interval", "250ms")
	if base.M("host_busy_pct") != 11 || base.M("engine_core_pct") != 6 || one.M("host_busy_pct") != 18 || fast.M("host_noisy") != 1 {
		t.Errorf("idle: baseline %v (engine %v), 1s %v, 250ms noisy %v", base.M("host_busy_pct"), base.M("engine_core_pct"), one.M("host_busy_pct"), fast.M("host_noisy"))
	}
	pps := 4 * 1000 / 1050.0
	for _, c := range []struct {
		g                 report.Group
		metric            string
		perProbe, replica float64
	}{
		{one, "host_busy_pct", 70 / pps, 1.75},
		{one, "engine_core_pct", 50 / pps, 1.25},
		{fast, "host_busy_pct", 30.625, 12.25},
		{fast, "engine_core_pct", 23.75, 9.5},
	} {
		if p, r := probeCost(c.g, base, c.metric); math.Abs(p-c.perProbe) > 1e-9 || math.Abs(r-c.replica) > 1e-9 {
			t.Errorf("%s %s: %v ms per probe, %v %% per replica; want %v, %v", c.g.Label("interval"), c.metric, p, r, c.perProbe, c.replica)
		}
	}
	if p, r := probeCost(base, base, "host_busy_pct"); !math.IsNaN(p) || !math.IsNaN(r) {
		t.Errorf("the baseline's probes cost %v, %v; want none", p, r)
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
	for _, note := range []string{
		"scale +1: " + startIntervalNote + ". At the default 1 s interval the new container started 0.44 s after the scale, its first probe passed at 1.47 s " +
			"and Swarm.Endpoints listed it at 1.55 s",
		"health checks every 250ms: other processes were busy in every window, so the host's figures carry that noise; the engine's part much less",
		"health checks every 250ms: no health log to read, the probe rate is the nominal interval's",
		"build cpp: the builds gave different image IDs (the same source should give the same image)",
		"image c: the engine counts 6564000 bytes, Build 6564714",
		"image cpp: load image: boom",
		`deploy c: trial 2: the function answered "x", which lacks the request body`,
		"scale 250ms: trial 2: no new replica of x in the task list after 1m30s",
	} {
		if !strings.Contains(strings.Join(rep.Notes, "\n"), note) {
			t.Errorf("no note %q in\n%s", note, strings.Join(rep.Notes, "\n"))
		}
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
}

func TestFunctionsGoals(t *testing.T) {
	var skip, failed, oneFailed, pass testRows
	failed.add("build", []any{"template", "go", "trial", 1, "cache", "cold"}, nil, "x")
	failed.add("scale", []any{"interval", "1s", "trial", 1}, nil, "y")
	for i := 1; i <= 9; i++ {
		oneFailed.replica("scale", "interval", "1s", i, 0.003, 0.4, 0.45, 0.5, 0.9)
		pass.replica("scale", "interval", "1s", i, 0.003, 0.4, 0.45, 0.5, 0.6)
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

func TestHostWindowsLeaveNoisyOut(t *testing.T) {
	// Other processes: 4 % in the quietest window, a burst of 34 % in the
	// first 1 s one: the host's figures take the second alone, the
	// engine's part both.
	var rs testRows
	rs.idle(0, "–", 1, 8, 4, nil)
	rs.idle(4, "1s", 2, 52, 18, map[string]float64{"probe_period_ms": 1000})
	rs.idle(0, "–", 3, 10, 4, nil)
	rs.idle(4, "1s", 4, 26, 20, map[string]float64{"probe_period_ms": 1000})
	rep := &report.Report{Rows: rs}
	functionsSummary(rep, 0)
	base, one := rep.Summary[0], rep.Summary[1]
	if base.M("host_busy_pct") != 9 || one.M("host_busy_pct") != 26 || one.M("engine_core_pct") != 19 || one.M("host_noisy") == 1 {
		t.Errorf("baseline %v, 1s %v (engine %v, noisy %v); want 9, 26 (19, not noisy)", base.M("host_busy_pct"), one.M("host_busy_pct"), one.M("engine_core_pct"), one.M("host_noisy"))
	}
	if p, r := probeCost(one, base, "host_busy_pct"); p != 42.5 || r != 4.25 {
		t.Errorf("1s probes: %v ms, %v %% per replica; want 42.5, 4.25", p, r)
	}
	want := "health-check CPU: 1 of 4 idle windows are left out of the host's figures: other processes used over 10 % of a core more " +
		"in them than in the quietest window (all windows are in the JSON)"
	if !reflect.DeepEqual(rep.Notes, []string{want}) {
		t.Errorf("notes %q, want [%q]", rep.Notes, want)
	}
	if row := rep.Tables[3].Rows[1]; row[len(row)-1] != "2 (1)" {
		t.Errorf("windows cell %q, want %q", row[len(row)-1], "2 (1)")
	}
}

func TestIdleWithoutBaseline(t *testing.T) {
	var rs testRows
	rs.idle(4, "1s", 1, 18, 10, map[string]float64{"probe_period_ms": 1050})
	rs.add("idle", []any{"replicas", 0, "interval", "–", "window", 2}, nil, "wait for x: 1 containers running, want 0")
	rep := &report.Report{Rows: rs}
	functionsSummary(rep, 0)
	base, one := rep.Summary[0], rep.Summary[1]
	if base.Label("replicas") != "0" || base.Runs != 0 || one.M("host_busy_pct") != 18 {
		t.Fatalf("groups %+v, want the failed baseline first", rep.Summary)
	}
	// No baseline: no extra CPU to put down to the probes.
	if p, r := probeCost(one, base, "host_busy_pct"); !math.IsNaN(p) || !math.IsNaN(r) {
		t.Errorf("probes cost %v, %v without a baseline; want none", p, r)
	}
}

func TestScaleNoteWithStartInterval(t *testing.T) {
	var rs testRows
	rs.replica("scale", "interval", "1s", 1, 0.002, 0.4, 0.45, 0.51, 0.52)
	rep := &report.Report{Rows: rs}
	functionsSummary(rep, 100*time.Millisecond)
	want := "scale +1: the services had a health start interval of 100ms: a new replica is probed that often until it is healthy. " +
		"At the default 1 s interval the new container started 0.40 s after the scale, its first probe passed at 0.45 s and Swarm.Endpoints listed it at 0.51 s"
	if !reflect.DeepEqual(rep.Notes, []string{want}) {
		t.Errorf("notes = %q\nwant [%q]", rep.Notes, want)
	}
}
