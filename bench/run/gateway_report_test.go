package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
)

// gwTestRun is a run row of the latency or balance stage.
func gwTestRun(variant string, round int, rps, p50, p99 float64) *report.Row {
	stage := map[bool]string{true: gwStageBalance, false: gwStageLatency}[gwVariantNamed(variant).Balance != ""]
	return report.NewRow("run", "stage", stage, "variant", variant, "round", round, "slot", 0).PutAll(map[string]float64{
		"rps": rps, "p50_us": p50, "p99_us": p99, "wrk_core_pct": 20, "other_core_pct": 4, "steal_core_pct": 1, "errors": 0, "reloads": 0})
}

// gwTestScale is a scale trial that went well.
func gwTestScale(trial int, ready, traffic float64) *report.Row {
	return report.NewRow("scale", "scale", gwScale, "trial", trial).PutAll(map[string]float64{"ready_s": ready, "traffic_s": traffic})
}

// testGatewayRows are two rounds of the four latency variants (gateway
// c=1 disturbed by a reload once, direct c=50 with request errors once,
// gateway c=50 failed once) and of the two balancing algorithms; four
// scale trials, one failed; the background load.
func testGatewayRows() []report.Row {
	reloaded := gwTestRun(gwGatewayLow, 2, 6200, 140, 400).Put("reloads", 1)
	errs := gwTestRun(gwDirectHigh, 2, 15000, 3000, 9000).Put("errors", 3)
	errs.Flag("3 request errors")
	failed := report.NewRow("run", "stage", gwStageLatency, "variant", gwGatewayHigh, "round", 2, "slot", 3)
	failed.Fail(errString("wrk: exit status 1"))
	timedOut := report.NewRow("scale", "scale", gwScale, "trial", 3)
	timedOut.Fail(errString("the new replica did not take traffic: timed out"))
	bg := report.NewRow("background", "stage", gwStageScale).PutAll(map[string]float64{"ok": 1700, "failed": 2})
	bg.Flag("503 Service Unavailable ×2")
	var rows []report.Row
	for _, r := range []*report.Row{
		gwTestRun(gwDirectLow, 1, 9000, 90, 300), gwTestRun(gwGatewayLow, 1, 6000, 130, 420),
		gwTestRun(gwDirectHigh, 1, 14000, 3300, 9800), gwTestRun(gwGatewayHigh, 1, 9000, 5000, 12000),
		reloaded, gwTestRun(gwDirectLow, 2, 9200, 86, 310), errs, failed,
		gwTestRun(gwLeastConn, 1, 10500, 3600, 11000), gwTestRun(gwRoundRobin, 1, 10000, 3800, 12500),
		gwTestRun(gwRoundRobin, 2, 10200, 3700, 12000), gwTestRun(gwLeastConn, 2, 10400, 3650, 11500),
		gwTestScale(1, 0.118, 0.122), gwTestScale(2, 0.099, 0.109), timedOut, gwTestScale(4, 0.072, 0.082), bg,
	} {
		rows = append(rows, *r)
	}
	return rows
}

// testGatewayReport is a report of testGatewayRows, summarised.
func testGatewayReport(rows []report.Row) *report.Report {
	rep := &report.Report{Suite: "gateway", Started: "2026-01-02T03:04:05Z", Setup: "2 CPUs (AMD EPYC), kernel 6.1.0, HAProxy 2.6.12", Rows: rows}
	gatewaySummary(rep)
	return rep
}

func TestGatewaySummary(t *testing.T) {
	rep := testGatewayReport(testGatewayRows())
	var order []string
	for _, g := range rep.Summary {
		order = append(order, g.Label("variant")+g.Label("scale"))
	}
	if want := []string{gwDirectLow, gwGatewayLow, gwDirectHigh, gwGatewayHigh, gwLeastConn, gwRoundRobin, gwScale}; !slices.Equal(order, want) {
		t.Errorf("groups %q, want %q", order, want)
	}
	find := func(k, v string) report.Group {
		g, ok := report.Find(rep.Summary, k, v)
		if !ok {
			t.Fatalf("no group %s=%s", k, v)
		}
		return g
	}
	if g := find("variant", gwDirectLow); g.Runs != 2 || g.M("p50_us") != 88 || g.M("rps") != 9100 {
		t.Errorf("direct c=1: runs %d, p50 %v, rps %v; want 2, 88, 9100", g.Runs, g.M("p50_us"), g.M("rps"))
	}
	if g := find("variant", gwGatewayLow); g.M("p50_us") != 135 || g.Min["p50_us"] != 130 || g.Max["p50_us"] != 140 {
		t.Errorf("gateway c=1: p50 %v (%v–%v), want 135 (130–140)", g.M("p50_us"), g.Min["p50_us"], g.Max["p50_us"])
	}
	// Per round: each run against its reference's in the same round; the
	// failed round 2 of gateway c=50 has no pair.
	for _, c := range []struct {
		variant, metric string
		want            []float64
	}{
		{gwGatewayLow, "vs_ref_p50_us", []float64{40, 54}},
		{gwGatewayHigh, "vs_ref_p50_us", []float64{1700}},
		{gwLeastConn, "vs_ref_p50_us", []float64{-200, -50}},
		{gwDirectLow, "vs_ref_p50_us", nil},
	} {
		if got := find("variant", c.variant).Values(c.metric); !slices.Equal(got, c.want) {
			t.Errorf("%s %s: %v, want %v", c.variant, c.metric, got, c.want)
		}
	}
	if g := find("variant", gwGatewayHigh); g.Runs != 1 || g.Failed != 1 || len(g.Flags) != 1 || g.Flags[0] != "round 2, slot 3: wrk: exit status 1" {
		t.Errorf("gateway c=50: runs %d, failed %d, flags %q", g.Runs, g.Failed, g.Flags)
	}
	if g := find("scale", gwScale); g.Runs != 3 || g.Failed != 1 || g.M("ready_s") != 0.099 || g.M("traffic_s") != 0.109 ||
		report.Percentile(g.Values("ready_s"), 90) != 0.118 {
		t.Errorf("scale: runs %d, failed %d, ready %v, traffic %v", g.Runs, g.Failed, g.M("ready_s"), g.M("traffic_s"))
	}
	for golden, got := range map[string]string{
		"gateway-results.md":  rep.Render(true, "results/gateway-20260102T030405Z.json"),
		"gateway-results.txt": rep.Render(false, ""),
	} {
		if *update {
			if err := os.WriteFile("testdata/"+golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if want := readTestdata(t, golden); got != want {
			t.Errorf("rendering differs from testdata/%s (run go test ./bench/run -update):\n%s", golden, got)
		}
	}
	for _, cell := range []string{
		"4 (flagged)", "3 (1 failed)", "0.072–0.118",
		"pulsed reloaded HAProxy during 1 of 11 runs",
		"scale stage background load: 1700 requests answered 200, 2 failed (503 Service Unavailable ×2)",
		"direct c=50: round 2, slot 0: 3 request errors", "gateway c=50: round 2, slot 3: wrk: exit status 1",
		"scale 1 → 2: trial 3: the new replica did not take traffic: timed out",
	} {
		if got := rep.Render(false, ""); !strings.Contains(got, cell) {
			t.Errorf("the rendering lacks %q", cell)
		}
	}
}

func TestGatewayGoals(t *testing.T) {
	rows := testGatewayRows()
	var clean []report.Row // no errors, no failed run or trial
	for _, r := range rows {
		if r.OK() && len(r.Flags) == 0 {
			clean = append(clean, r)
		}
	}
	slow := slices.Clone(clean)
	for i, r := range slow {
		r.Values = map[string]float64{}
		for k, v := range clean[i].Values {
			r.Values[k] = v
		}
		if r.Label("variant") == gwGatewayLow {
			r.Values["p50_us"] += 14 // added p50 61 µs
		}
		if r.Kind == "scale" {
			r.Values["ready_s"] += 0.42
		}
		slow[i] = r
	}
	latency := slices.DeleteFunc(slices.Clone(clean), func(r report.Row) bool { return r.Kind == "scale" })
	failedTrial := slices.DeleteFunc(slices.Clone(rows), func(r report.Row) bool { return r.Kind != "scale" || r.OK() })
	errs := gwTestRun(gwGatewayLow, 3, 1, 300, 1).Put("errors", 1)
	errs.Flag("1 request errors")
	type want struct {
		status string
		value  float64
		note   string
	}
	for _, c := range []struct {
		name     string
		rows     []report.Row
		lat, scl want
	}{
		{"both met", clean, want{report.Pass, 47, "p50 direct 88 µs, through HAProxy 135 µs; per round +40 to +54 µs"},
			want{report.Pass, 0.099, "server ready and up; first session 0.109 s (median of 3)"}},
		{"errors and a failed trial fail them", append(slices.Clone(rows), *errs),
			want{report.Fail, 52, "gateway c=1 had errors: round 3, slot 0: 1 request errors"},
			want{report.Fail, 0.099, "1 → 2 had errors: trial 3: the new replica did not take traffic: timed out"}},
		{"over the limits", slow, want{report.Fail, 61, "p50 direct 88 µs, through HAProxy 149 µs; per round +54 to +68 µs"},
			want{report.Fail, 0.519, "server ready and up; first session 0.109 s (median of 3)"}},
		{"the scale stage did not run", latency, want{report.Pass, 47, "p50 direct 88 µs, through HAProxy 135 µs; per round +40 to +54 µs"},
			want{report.Skip, 0, "the scale stage did not run"}},
		{"nothing ran but a failed trial", failedTrial, want{report.Skip, 0, "the latency stage did not run"},
			want{report.Fail, 0, "1 → 2: every run failed"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			goals := testGatewayReport(c.rows).Goals
			for i, w := range []want{c.lat, c.scl} {
				if g := goals[i]; g.Status != w.status || g.Value != w.value || g.Note != w.note {
					t.Errorf("%s: %s %v %q, want %s %v %q", g.Name, g.Status, g.Value, g.Note, w.status, w.value, w.note)
				}
			}
			if goals[0].Name != gwLatencyGoalName || goals[0].Limit != 60 || goals[0].Unit != "µs" ||
				goals[1].Name != gwScaleGoalName || goals[1].Limit != 0.5 || goals[1].Unit != "s" {
				t.Errorf("goals %+v", goals)
			}
		})
	}
}

// TestGatewayTrustNotes: a saturated wrk (90 % of a core per thread),
// other load and steal are noted; figures under the thresholds are not.
func TestGatewayTrustNotes(t *testing.T) {
	busy := func(variant string, wrk, other, steal float64) report.Row {
		return *gwTestRun(variant, 1, 1000, 100, 200).PutAll(map[string]float64{"wrk_core_pct": wrk, "other_core_pct": other, "steal_core_pct": steal})
	}
	rows := []report.Row{busy(gwDirectLow, 95, 25, 6), busy(gwGatewayLow, 85, 10, 2), busy(gwDirectHigh, 150, 4, 1), busy(gwGatewayHigh, 185, 4, 1)}
	want := []string{"direct c=1: wrk used 95 % of a core: its rps and latency are bounded by the load generator",
		"direct c=1: other processes used 25 % of a core during the runs (median)", "direct c=1: the hypervisor stole 6 % of a core (median)",
		"gateway c=50: wrk used 185 % of a core: its rps and latency are bounded by the load generator"}
	if got := testGatewayReport(rows).Notes; !slices.Equal(got, want) {
		t.Errorf("notes:\n got %q\nwant %q", got, want)
	}
}

// TestReadmeHasGatewaySection: the README carries the gateway suite's
// markers, so a run replaces its section instead of appending one.
func TestReadmeHasGatewaySection(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	begin, end := report.SectionMarkers("gateway")
	if i, j := strings.Index(string(b), begin), strings.Index(string(b), end); i < 0 || j < i {
		t.Errorf("bench/README.md lacks the gateway results markers %q … %q", begin, end)
	}
}
