package main

import (
	"math"
	"reflect"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "odd", in: []float64{5, 1, 3}, want: 3},
		{name: "even", in: []float64{4, 1, 3, 2}, want: 2.5},
		{name: "one", in: []float64{7}, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

// testVariants is a small suite: a reference, a variant compared with it,
// one with request errors, one that did not build.
var testVariants = []variant{
	{Name: "bare", Kind: kindHTTP},
	{Name: "inproc", Kind: kindHTTP, Ref: "bare"},
	{Name: "fork-cat", Kind: kindHTTP, Ref: "spawnloop-cat"},
	{Name: "spawnloop-cat", Kind: kindFloor},
	{Name: "http", Kind: kindHTTP, Ref: "bare"},
}

func testRuns() []runResult {
	zero := 0
	return []runResult{
		{Variant: "bare", Round: 1, RPS: 40000, P50US: 200, P99US: 2000, CPUPerReqUS: 10, SelfCPUPerReqUS: 10, RSSFreshKB: 4800, RSSFreshAnonKB: 900, RSSIdleKB: 5000, RSSIdleAnonKB: 1000, RSSLoadedKB: 9000, WrkCorePct: 95, ExitCode: &zero},
		{Variant: "bare", Round: 2, RPS: 42000, P50US: 210, P99US: 2100, CPUPerReqUS: 12, SelfCPUPerReqUS: 12, RSSFreshKB: 4900, RSSFreshAnonKB: 950, RSSIdleKB: 5100, RSSIdleAnonKB: 1100, RSSLoadedKB: 9100, WrkCorePct: 97, ExitCode: &zero},
		{Variant: "bare", Round: 3, RPS: 41000, P50US: 220, P99US: 2200, CPUPerReqUS: 11, SelfCPUPerReqUS: 11, RSSFreshKB: 5000, RSSFreshAnonKB: 1000, RSSIdleKB: 5200, RSSIdleAnonKB: 1200, RSSLoadedKB: 9200, WrkCorePct: 96, ExitCode: &zero},
		{Variant: "inproc", Round: 1, RPS: 39000, P50US: 230, P99US: 2300, CPUPerReqUS: 10.5, SelfCPUPerReqUS: 10.5, RSSFreshKB: 5300, RSSFreshAnonKB: 1100, RSSIdleKB: 5500, RSSIdleAnonKB: 1300, RSSLoadedKB: 9500, ExitCode: &zero},
		{Variant: "inproc", Round: 2, RPS: 39500, P50US: 240, P99US: 2400, CPUPerReqUS: 12.6, SelfCPUPerReqUS: 12.6, RSSFreshKB: 5400, RSSFreshAnonKB: 1200, RSSIdleKB: 5600, RSSIdleAnonKB: 1400, RSSLoadedKB: 9600, ExitCode: &zero},
		{Variant: "inproc", Round: 3, Error: "ready: not ready after 15s"},
		{Variant: "fork-cat", Round: 1, RPS: 1500, P50US: 2000, P99US: 6000, CPUPerReqUS: 800, SelfCPUPerReqUS: 100, RSSFreshKB: 5700, RSSFreshAnonKB: 1000, RSSIdleKB: 6000, RSSIdleAnonKB: 1200, RSSLoadedKB: 12000, Errors: 2, ExitCode: &zero},
		{Variant: "spawnloop-cat", Round: 1, RPS: 1300, CPUPerReqUS: 700, SelfCPUPerReqUS: 50},
	}
}

func TestSummarize(t *testing.T) {
	got := summarize(testVariants, testRuns(), map[string]string{"http": "watchdog did not build"})
	want := []summary{
		{Variant: "bare", Kind: kindHTTP, Runs: 3, RPS: 41000, P50US: 210, P99US: 2100, CPUPerReqUS: 11, CPUPerReqMinUS: 10, CPUPerReqMaxUS: 12,
			SelfCPUPerReqUS: 11, RSSFreshKB: 4900, RSSFreshAnonKB: 950, RSSIdleKB: 5100, RSSIdleAnonKB: 1100, RSSLoadedKB: 9100, WrkCorePct: 96},
		{Variant: "inproc", Kind: kindHTTP, Ref: "bare", Runs: 2, Failed: 1, Flags: []string{"round 3: ready: not ready after 15s"},
			RPS: 39250, P50US: 235, P99US: 2350, CPUPerReqUS: 11.55, CPUPerReqMinUS: 10.5, CPUPerReqMaxUS: 12.6,
			SelfCPUPerReqUS: 11.55, RSSFreshKB: 5350, RSSFreshAnonKB: 1150, RSSIdleKB: 5550, RSSIdleAnonKB: 1350, RSSLoadedKB: 9550,
			RefRatio: 11.55 / 11, RoundRatios: []float64{1.05, 1.05}},
		{Variant: "fork-cat", Kind: kindHTTP, Ref: "spawnloop-cat", Runs: 1, Errors: 2, Flags: []string{"round 1: 2 request errors"},
			RPS: 1500, P50US: 2000, P99US: 6000, CPUPerReqUS: 800, CPUPerReqMinUS: 800, CPUPerReqMaxUS: 800,
			SelfCPUPerReqUS: 100, RSSFreshKB: 5700, RSSFreshAnonKB: 1000, RSSIdleKB: 6000, RSSIdleAnonKB: 1200, RSSLoadedKB: 12000, RefRatio: 800.0 / 700, RoundRatios: []float64{1.143}},
		{Variant: "spawnloop-cat", Kind: kindFloor, Runs: 1, RPS: 1300, CPUPerReqUS: 700, CPUPerReqMinUS: 700, CPUPerReqMaxUS: 700, SelfCPUPerReqUS: 50},
		{Variant: "http", Kind: kindHTTP, Ref: "bare", Skipped: "watchdog did not build"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarize:\n got %+v\nwant %+v", got, want)
	}
}

func TestEvaluateGoals(t *testing.T) {
	sums := summarize(testVariants, testRuns(), map[string]string{"http": "watchdog did not build"})
	specs := []goalSpec{
		{name: "inproc ratio", unit: "×", limit: 1.05, variant: "inproc", measure: refRatio},
		{name: "inproc ratio tight", unit: "×", limit: 1.0, variant: "inproc", measure: refRatio},
		{name: "fork ratio", unit: "×", limit: 1.2, variant: "fork-cat", measure: refRatio},
		{name: "http cpu", unit: "µs", limit: 40, variant: "http", measure: cpuPerReq},
		{name: "bare rss", unit: "MB", limit: 6, variant: "bare", measure: idleRSS},
		{name: "bare rss tight", unit: "MB", limit: 5.1, variant: "bare", measure: idleRSS},
		{name: "bare fresh rss", unit: "MB", limit: 5.1, variant: "bare", measure: freshRSS},
		{name: "absent", unit: "µs", limit: 1, variant: "nope", measure: cpuPerReq},
		{name: "image", unit: "MB", limit: 7, size: "inproc"},
		{name: "image of nothing", unit: "MB", limit: 7, size: "watchdog"},
	}
	got := evaluateGoals(specs, sums, map[string]int64{"inproc": 6_377_634})
	want := []goal{
		// inproc has a failed run, so its numbers are flagged.
		{Name: "inproc ratio", Unit: "×", Limit: 1.05, Value: 1.05, Status: fail, Note: "inproc had errors: round 3: ready: not ready after 15s"},
		{Name: "inproc ratio tight", Unit: "×", Limit: 1.0, Value: 1.05, Status: fail, Note: "inproc had errors: round 3: ready: not ready after 15s"},
		{Name: "fork ratio", Unit: "×", Limit: 1.2, Value: 1.143, Status: fail, Note: "fork-cat had errors: round 1: 2 request errors"},
		{Name: "http cpu", Unit: "µs", Limit: 40, Status: skip, Note: "http did not run: watchdog did not build"},
		{Name: "bare rss", Unit: "MB", Limit: 6, Value: 5.222, Status: pass},
		// After traffic it is over 5.1 MB; fresh it is under.
		{Name: "bare rss tight", Unit: "MB", Limit: 5.1, Value: 5.222, Status: fail},
		{Name: "bare fresh rss", Unit: "MB", Limit: 5.1, Value: 5.018, Status: pass},
		{Name: "absent", Unit: "µs", Limit: 1, Status: skip, Note: "nope was not in this run"},
		{Name: "image", Unit: "MB", Limit: 7, Value: 6.378, Status: pass},
		{Name: "image of nothing", Unit: "MB", Limit: 7, Status: skip, Note: "watchdog did not build"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("evaluateGoals:\n got %+v\nwant %+v", got, want)
	}
}

func TestEvaluateGoalsClean(t *testing.T) {
	sums := []summary{
		{Variant: "bare", Runs: 3, CPUPerReqUS: 10},
		{Variant: "inproc", Ref: "bare", Runs: 3, CPUPerReqUS: 10.4, RefRatio: 1.04},
		{Variant: "fork", Ref: "floor", Runs: 3, CPUPerReqUS: 900, RefRatio: 1.2},
		{Variant: "floor", Runs: 3, CPUPerReqUS: 750, Flags: []string{"round 1: boom"}},
	}
	specs := []goalSpec{
		{name: "inproc", unit: "×", limit: 1.05, variant: "inproc", measure: refRatio, note: "n"},
		{name: "fork", unit: "×", limit: 1.1, variant: "fork", measure: refRatio},
	}
	got := evaluateGoals(specs, sums, nil)
	want := []goal{
		{Name: "inproc", Unit: "×", Limit: 1.05, Value: 1.04, Status: pass, Note: "n"},
		{Name: "fork", Unit: "×", Limit: 1.1, Value: 1.2, Status: fail, Note: "floor had errors: round 1: boom"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("evaluateGoals:\n got %+v\nwant %+v", got, want)
	}
}

func TestPercentile(t *testing.T) {
	ten := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	tests := []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{name: "p90 of 10 is the 9th", in: ten, p: 90, want: 9},
		{name: "p50 of 10 is the 5th", in: ten, p: 50, want: 5},
		{name: "p100 is the max", in: ten, p: 100, want: 10},
		{name: "tiny p is the min", in: ten, p: 1, want: 1},
		{name: "p90 of 3 is the max", in: []float64{3, 1, 2}, p: 90, want: 3},
		{name: "one", in: []float64{7}, p: 90, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
		})
	}
	if !math.IsNaN(percentile(nil, 90)) || !math.IsNaN(mean(nil)) {
		t.Error("percentile or mean of nothing is not NaN")
	}
	if got := ten[0]; got != 10 {
		t.Error("percentile sorted its input")
	}
	if got := mean([]float64{1, 2, 6}); got != 3 {
		t.Errorf("mean = %v, want 3", got)
	}
}
