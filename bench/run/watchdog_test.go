package main

import (
	"os"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
)

// testVariants is a small suite: a reference, a variant compared with it,
// one with request errors, one that did not build.
var testVariants = []variant{
	{Name: "bare", Kind: kindHTTP},
	{Name: "inproc", Kind: kindHTTP, Ref: "bare"},
	{Name: "fork-cat", Kind: kindHTTP, Ref: "spawnloop-cat"},
	{Name: "spawnloop-cat", Kind: kindFloor},
	{Name: "http", Kind: kindHTTP, Ref: "bare"},
}

// testWatchdogReport is a report of three rounds over testVariants: inproc
// failed once, fork-cat had request errors, http did not build.
func testWatchdogReport() *report.Report {
	rep := &report.Report{Suite: "watchdog", Started: "2026-01-02T03:04:05Z", Setup: "2 CPUs (AMD EPYC), kernel 6.1.0"}
	row := func(v string, round int, kv map[string]float64) {
		rep.Add(report.NewRow("run", "variant", v, "round", round).PutAll(kv))
	}
	http := func(rps, p50, cpu, fresh, idle, wrk float64) map[string]float64 {
		return map[string]float64{"rps": rps, "p50_us": p50, "p99_us": 10 * p50, "cpu_per_req_us": cpu, "self_cpu_per_req_us": cpu,
			"rss_fresh_kb": fresh, "rss_fresh_anon_kb": fresh / 5, "rss_idle_kb": idle, "rss_idle_anon_kb": idle / 5,
			"rss_loaded_kb": 2 * idle, "wrk_core_pct": wrk, "errors": 0}
	}
	rep.Add(&report.Row{Kind: "run", Labels: map[string]string{"variant": "http"}, Skipped: "watchdog did not build"})
	row("bare", 1, http(40000, 200, 10, 4800, 5000, 95))
	row("bare", 2, http(42000, 210, 12, 4900, 5100, 97))
	row("bare", 3, http(41000, 220, 11, 5000, 5200, 96))
	row("inproc", 1, http(39000, 230, 10.5, 5300, 5500, 50))
	row("inproc", 2, http(39500, 240, 12.6, 5400, 5600, 50))
	failed := report.NewRow("run", "variant", "inproc", "round", 3)
	failed.Fail(errString("ready: not ready after 15s"))
	rep.Add(failed)
	fork := report.NewRow("run", "variant", "fork-cat", "round", 1).PutAll(http(1500, 2000, 800, 5700, 6000, 10))
	fork.Flag("2 request errors")
	rep.Add(fork)
	row("spawnloop-cat", 1, map[string]float64{"rps": 1300, "cpu_per_req_us": 700, "self_cpu_per_req_us": 50, "errors": 0})
	return rep
}

type errString string

func (e errString) Error() string { return string(e) }

func TestWatchdogSummary(t *testing.T) {
	rep := testWatchdogReport()
	built := []artifact{{Name: "inproc", Source: "./bench/inproc", Bytes: 6377634}, {Name: "watchdog", Source: "./cmd/pulse-watchdog", Error: "exit status 1"}}
	watchdogSummary(rep, testVariants, built, map[string]int64{"inproc": 6377634})

	var order []string
	for _, g := range rep.Summary {
		order = append(order, g.Label("variant"))
	}
	if want := "bare inproc fork-cat spawnloop-cat http"; join(order) != want {
		t.Errorf("groups in order %q, want the variants' %q", join(order), want)
	}
	bare, _ := report.Find(rep.Summary, "variant", "bare")
	if bare.Runs != 3 || bare.M("rps") != 41000 || bare.Min["cpu_per_req_us"] != 10 || bare.Max["cpu_per_req_us"] != 12 {
		t.Errorf("bare: runs %d, rps %v, CPU/req %v–%v; want 3, 41000, 10–12", bare.Runs, bare.M("rps"), bare.Min["cpu_per_req_us"], bare.Max["cpu_per_req_us"])
	}
	inproc, _ := report.Find(rep.Summary, "variant", "inproc")
	if inproc.Failed != 1 || len(inproc.Flags) != 1 || inproc.Flags[0] != "round 3: ready: not ready after 15s" {
		t.Errorf("inproc: failed %d, flags %q", inproc.Failed, inproc.Flags)
	}
	// Per-round ratios: 10.5/10 and 12.6/12.
	if inproc.Min["ref_ratio"] != 1.05 || inproc.Max["ref_ratio"] != 1.05 {
		t.Errorf("inproc per-round ratios %v–%v, want 1.05", inproc.Min["ref_ratio"], inproc.Max["ref_ratio"])
	}

	want := map[string]struct {
		status string
		value  float64
		note   string
	}{
		// inproc has a failed run: its figures are flagged.
		"inproc CPU/req ≤ 1.05× bare":                  {report.Fail, 1.05, "inproc had errors: round 3: ready: not ready after 15s"},
		"fork-cat CPU/req ≤ 1.1× spawnloop-cat":        {report.Fail, 1.143, "fork-cat had errors: round 1: 2 request errors"},
		"fork-cecho CPU/req ≤ 1.1× spawnloop-cecho":    {report.Skip, 0, "fork-cecho was not in this run"},
		"http CPU/req ≤ 0.04 ms (watchdog + upstream)": {report.Skip, 0, "http did not run: watchdog did not build"},
		"image ≤ 7 MB (proxy: inproc binary)":          {report.Pass, 6.378, "static stripped watchdog + Go echo; a FROM scratch image adds only metadata"},
	}
	for _, g := range rep.Goals {
		w, ok := want[g.Name]
		if !ok {
			continue
		}
		delete(want, g.Name)
		if g.Status != w.status || g.Value != w.value || g.Note != w.note {
			t.Errorf("goal %q: %s %v %q, want %s %v %q", g.Name, g.Status, g.Value, g.Note, w.status, w.value, w.note)
		}
	}
	for name := range want {
		t.Errorf("no goal %q", name)
	}
	for golden, got := range map[string]string{
		"results.md":           rep.Render(true, "results/watchdog-20260102T030405Z.json"),
		"watchdog-results.txt": rep.Render(false, ""),
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
}

func join(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
