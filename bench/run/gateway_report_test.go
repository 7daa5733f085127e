package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
)

// gwTestRun is a run row of the latency or balance stage.
func gwTestRun(variant string, round int, rps, p50, p99, hap float64) *report.Row {
	v := gwVariantNamed(variant)
	stage := map[bool]string{true: gwStageBalance, false: gwStageLatency}[v.Balance != ""]
	r := report.NewRow("run", "stage", stage, "variant", variant, "round", round, "slot", 0).PutAll(map[string]float64{
		"rps": rps, "p50_us": p50, "p99_us": p99, "docker_proxy_cpu_per_req_us": 45, "replica_cpu_per_req_us": 40,
		"wrk_core_pct": 20, "other_core_pct": 4, "steal_core_pct": 1, "errors": 0, "reloads": 0, "haproxy_churn": 0})
	if v.Path == pathGateway {
		r.Put("haproxy_cpu_per_req_us", hap)
	}
	return r
}

// gwTestScale is a scale trial that went well.
func gwTestScale(trial int, ready, traffic, catalog, late float64) *report.Row {
	return report.NewRow("scale", "scale", gwScale, "trial", trial).PutAll(map[string]float64{
		"ready_s": ready, "traffic_s": traffic, "added_s": ready, "catalog_s": catalog, "seen_s": 0.01, "scale_to_running_s": 0.74,
		"catalog_scale_s": 0.4 + late*0.45, "late_notice": late, "background_ok": 400, "background_failed": 0})
}

// testGatewayRows are two rounds of the four latency variants (gateway
// c=1 disturbed by a reload once, direct c=50 with request errors once,
// gateway c=50 failed once) and of the two balancing algorithms; four
// scale trials, one failed; the background load; pulsed's stops, one with
// its HAProxy lingering.
func testGatewayRows() []report.Row {
	reloaded := gwTestRun(gwGatewayLow, 2, 6200, 140, 400, 3).Put("reloads", 1).Put("haproxy_churn", 2)
	errs := gwTestRun(gwDirectHigh, 2, 15000, 3000, 9000, 0).Put("errors", 3)
	errs.Flag("3 request errors")
	failed := report.NewRow("run", "stage", gwStageLatency, "variant", gwGatewayHigh, "round", 2, "slot", 3)
	failed.Fail(errString("wrk: exit status 1"))
	timedOut := report.NewRow("scale", "scale", gwScale, "trial", 3).PutAll(map[string]float64{"background_ok": 380, "background_failed": 2})
	timedOut.Fail(errString("the new replica did not take traffic: timed out"))
	bg := report.NewRow("background", "stage", gwStageScale).PutAll(map[string]float64{"ok": 1700, "failed": 2, "reloads": 3})
	bg.Flag("503 Service Unavailable ×2")
	var rows []report.Row
	for _, r := range []*report.Row{
		gwTestRun(gwDirectLow, 1, 9000, 90, 300, 0), gwTestRun(gwGatewayLow, 1, 6000, 130, 420, 35),
		gwTestRun(gwDirectHigh, 1, 14000, 3300, 9800, 0), gwTestRun(gwGatewayHigh, 1, 9000, 5000, 12000, 42),
		reloaded, gwTestRun(gwDirectLow, 2, 9200, 86, 310, 0), errs, failed,
		gwTestRun(gwLeastConn, 1, 10500, 3600, 11000, 30), gwTestRun(gwRoundRobin, 1, 10000, 3800, 12500, 30),
		gwTestRun(gwRoundRobin, 2, 10200, 3700, 12000, 30), gwTestRun(gwLeastConn, 2, 10400, 3650, 11500, 30),
		gwTestScale(1, 0.118, 0.122, 0.112, 0), gwTestScale(2, 0.099, 0.109, 0.093, 1), timedOut, gwTestScale(4, 0.072, 0.082, 0.063, 0), bg,
		report.NewRow("pulsed_stop", "stage", gwStageLatency).PutAll(map[string]float64{"stop_s": 0.11, "haproxy_linger_s": 0.006}),
		report.NewRow("pulsed_stop", "stage", gwStageScale).PutAll(map[string]float64{"stop_s": 0.2, "haproxy_linger_s": 0}),
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
	// The reloaded run's HAProxy CPU is left out; its latency is not.
	g := find("variant", gwGatewayLow)
	if calm, disturbed := gwCalmHAProxy(g); !slices.Equal(calm, []float64{35}) || disturbed != 1 || g.M("p50_us") != 135 {
		t.Errorf("gateway c=1: calm HAProxy CPU %v, disturbed %d, p50 %v; want [35], 1, 135", calm, disturbed, g.M("p50_us"))
	}
	// Per round: each run against its reference's in the same round; the
	// failed round 2 of gateway c=50 has no pair.
	for _, c := range []struct {
		variant, metric string
		want            []float64
	}{
		{gwGatewayLow, "vs_ref_p50_us", []float64{40, 54}},
		{gwGatewayHigh, "vs_ref_rps", []float64{report.Round3(9000.0 / 14000)}},
		{gwLeastConn, "vs_ref_rps", []float64{1.05, report.Round3(10400.0 / 10200)}},
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
		"+47 µs p50 (+40–+54)", "0.621× rps", "1.035× rps (1.02–1.05)", "35.0 (1 reloaded)", "0 (flagged)", "3 (1 failed)",
		"HAProxy was reloaded (or its processes changed) during 1 of 11 runs",
		"scale stage background load: 1700 requests answered 200, 2 failed (503 Service Unavailable ×2)",
		"scale stage: pulsed reloaded HAProxy 3 time(s)", "direct c=50: round 2, slot 0: 3 request errors",
		"scale 1 → 2: trial 3: the new replica did not take traffic: timed out",
		"pulsed's HAProxy outlived it in 1 of 2 stops: still exiting in 1 (up to 6 ms later), still running 2 s later and killed in 0",
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
	errs := gwTestRun(gwGatewayLow, 3, 1, 300, 1, 1).Put("errors", 1)
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

func TestGatewayBalanceNote(t *testing.T) {
	for _, c := range []struct {
		ratio float64
		want  string
	}{
		{1.05, "leastconn is faster here (pulsed's default is roundrobin, chosen on the p99)"},
		{1.01, "within 3 % of each other"},
		{0.98, "within 3 % of each other"},
		{0.9, "roundrobin, pulsed's default, is faster here"},
	} {
		rep := testGatewayReport([]report.Row{*gwTestRun(gwLeastConn, 1, 100*c.ratio, 1, 1, 1), *gwTestRun(gwRoundRobin, 1, 100, 1, 1, 1)})
		if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], c.want) {
			t.Errorf("ratio %v: notes %q lack %q", c.ratio, rep.Notes, c.want)
		}
	}
}

func TestGatewayStopNotes(t *testing.T) {
	stop := func(stage string, linger, killed float64, err string) report.Row {
		r := report.NewRow("pulsed_stop", "stage", stage).PutAll(map[string]float64{"stop_s": 0.1, "haproxy_linger_s": linger, "haproxy_killed": killed})
		r.Error = err
		return *r
	}
	for _, c := range []struct {
		name string
		rows []report.Row
		want []string
	}{
		{"clean", []report.Row{stop("latency", 0, 0, ""), stop("scale", 0, 0, "")}, nil},
		{"haproxy lingering, killed once, a bad exit", []report.Row{stop("latency", 0.007, 0, ""),
			stop("balance", 0, 0, "pulsed exited with code 1 after SIGTERM; log: x"), stop("scale", 2, 1, "")},
			[]string{"pulsed stop (balance stage): pulsed exited with code 1 after SIGTERM; log: x",
				"pulsed's HAProxy outlived it in 2 of 3 stops: still exiting in 1 (up to 7 ms later), still running 2 s later and killed in 1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := testGatewayReport(c.rows).Notes; !slices.Equal(got, c.want) {
				t.Errorf("notes:\n got %q\nwant %q", got, c.want)
			}
		})
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
