package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
)

// testAsyncReport is a made-up run of the async suite: two rounds of each
// stage, one async round with a lost request, one scaled burst that failed.
func testAsyncReport() *report.Report {
	rep := &report.Report{Suite: suiteAsync, Started: "2026-12-07T10:00:00Z", Setup: "2 CPUs (test)"}
	for _, r := range []*report.Row{
		report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", aqSync, "round", 1, "slot", 0).
			PutAll(map[string]float64{"rps": 9000, "p50_us": 800, "p99_us": 3000, "errors": 0, "wrk_core_pct": 30}),
		report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", aqAsync, "round", 1, "slot", 1).
			PutAll(map[string]float64{"rps": 900, "p50_us": 8000, "p99_us": 30000, "errors": 0, "wrk_core_pct": 5, "accepted": 4500,
				"enqueued": 4504, "done": 4504, "failed": 0, "depth_end": 1200, "drain_s": 2.4, "drain_rps": 500, "dispatch_rps": 600}),
		report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", aqAsync, "round", 2, "slot", 0).
			PutAll(map[string]float64{"rps": 1000, "p50_us": 7000, "p99_us": 60000, "errors": 0, "wrk_core_pct": 6, "accepted": 5000,
				"enqueued": 5003, "done": 5002, "failed": 1, "depth_end": 1000, "drain_s": 2, "drain_rps": 500, "dispatch_rps": 650}),
		report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", aqSync, "round", 2, "slot", 1).
			PutAll(map[string]float64{"rps": 10000, "p50_us": 700, "p99_us": 2500, "errors": 0, "wrk_core_pct": 32}),
		report.NewRow("burst", "stage", aqStageScale, "variant", aqScaled, "round", 1, "slot", 0).
			PutAll(map[string]float64{"accepted": 400, "enqueued": 400, "done": 400, "failed": 0, "burst_s": 1.2, "peak_depth": 390,
				"decided_s": 2.1, "first_routed_s": 3.2, "first_desired_s": 2.2, "peak_replicas": 4, "peak_desired": 4, "drain_s": 9.5}),
		report.NewRow("burst", "stage", aqStageScale, "variant", aqSingle, "round", 1, "slot", 1).
			PutAll(map[string]float64{"accepted": 400, "enqueued": 400, "done": 400, "failed": 0, "burst_s": 1.1, "peak_depth": 395,
				"peak_replicas": 1, "peak_desired": 1, "drain_s": 20.6}),
		report.NewRow("burst", "stage", aqStageScale, "variant", aqSingle, "round", 2, "slot", 0).
			PutAll(map[string]float64{"accepted": 400, "enqueued": 400, "done": 400, "failed": 0, "burst_s": 1.0, "peak_depth": 398,
				"peak_replicas": 1, "peak_desired": 1, "drain_s": 20.9}),
	} {
		rep.Add(r)
	}
	failed := report.NewRow("burst", "stage", aqStageScale, "variant", aqScaled, "round", 2, "slot", 1)
	failed.Fail(errString("queue not empty after 3m0s"))
	rep.Add(failed)
	rows := rep.Rows
	rows[2].Flag("%d enqueued, %d done, %d failed", 5003, 5002, 1)
	return rep
}

// TestAsyncSummary renders the made-up run and checks it against golden
// files (go test ./bench/run -update rewrites them after an intended change),
// then checks the goals' verdicts.
func TestAsyncSummary(t *testing.T) {
	rep := testAsyncReport()
	asyncSummary(rep)
	for ext, got := range map[string]string{".txt": rep.Render(false, ""), ".md": rep.Render(true, "results/async-20261207T100000Z.json")} {
		golden := filepath.Join("testdata", suiteAsync+"-results"+ext)
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if want := readTestdata(t, suiteAsync+"-results"+ext); got != want {
			t.Errorf("renders differently from %s (run go test ./bench/run -update after an intended change):\n%s", golden, got)
		}
	}
	want := map[string]string{
		aqGoalP99:       report.Fail, // round 2 was flagged
		aqGoalDone:      report.Fail, // one failed, one not done
		aqGoalP50Ratio:  report.Info,
		aqGoalRpsRatio:  report.Info,
		aqGoalDrain:     report.Info,
		aqGoalSpeedup:   report.Fail, // a scaled burst failed
		aqGoalFirst:     report.Fail, // the failed burst counts as infinitely slow: median of 3.2 and +Inf
		aqGoalBurstDone: report.Fail, // a run failed
	}
	if len(rep.Goals) != len(want) {
		t.Fatalf("%d goals, want %d", len(rep.Goals), len(want))
	}
	for _, g := range rep.Goals {
		if g.Status != want[g.Name] {
			t.Errorf("goal %q: %s (%s), want %s", g.Name, g.Status, g.Note, want[g.Name])
		}
	}
}

func TestAsyncGoalsPass(t *testing.T) {
	rep := &report.Report{Suite: suiteAsync}
	for round := 1; round <= 2; round++ {
		rep.Add(report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", aqSync, "round", round).PutAll(map[string]float64{"rps": 9000, "p50_us": 800, "p99_us": 3000}))
		rep.Add(report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", aqAsync, "round", round).PutAll(map[string]float64{"rps": 900, "p50_us": 8000,
			"p99_us": 40000, "accepted": 100, "enqueued": 101, "done": 101, "failed": 0, "depth_end": 10, "drain_s": 0.1, "drain_rps": 100, "dispatch_rps": 500}))
		rep.Add(report.NewRow("burst", "stage", aqStageScale, "variant", aqScaled, "round", round).PutAll(map[string]float64{"accepted": 400, "enqueued": 400,
			"done": 400, "failed": 0, "first_routed_s": 3.5, "drain_s": 10}))
		rep.Add(report.NewRow("burst", "stage", aqStageScale, "variant", aqSingle, "round", round).PutAll(map[string]float64{"accepted": 400, "enqueued": 400,
			"done": 400, "failed": 0, "drain_s": 20}))
	}
	asyncSummary(rep)
	for _, g := range rep.Goals {
		if g.Status != report.Pass && g.Status != report.Info {
			t.Errorf("goal %q: %s (%v, %s), want PASS or INFO", g.Name, g.Status, g.Value, g.Note)
		}
	}
}
