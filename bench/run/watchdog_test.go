package main

import (
	"os"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
)

// testVariants is a small suite: a reference, a variant compared with it,
// one with request errors, one that did not build.
var testVariants = []variant{
	{Name: "bare", Kind: kindHTTP},
	{Name: "inproc", Kind: kindHTTP},
	{Name: "fork-cat", Kind: kindHTTP},
	{Name: "spawnloop-cat", Kind: kindFloor},
	{Name: "http", Kind: kindHTTP},
}

// testWatchdogReport is a report of three rounds over testVariants: inproc
// failed once, fork-cat had request errors, http did not build.
func testWatchdogReport() *report.Report {
	rep := &report.Report{Suite: "watchdog", Started: "2026-01-02T03:04:05Z", Setup: "2 CPUs (AMD EPYC), kernel 6.1.0"}
	row := func(v string, round int, kv map[string]float64) {
		rep.Add(report.NewRow("run", "variant", v, "round", round).PutAll(kv))
	}
	http := func(requests, cpu, fresh, idle, wrk float64) map[string]float64 {
		return map[string]float64{"requests": requests, "cpu_per_req_us": cpu, "rss_fresh_kb": fresh, "rss_idle_kb": idle,
			"wrk_core_pct": wrk, "other_core_pct": 2, "steal_core_pct": 0, "errors": 0}
	}
	rep.Add(&report.Row{Kind: "run", Labels: map[string]string{"variant": "http"}, Skipped: "watchdog did not build"})
	row("bare", 1, http(200000, 10, 4800, 5000, 95))
	row("bare", 2, http(210000, 12, 4900, 5100, 97))
	row("bare", 3, http(205000, 11, 5000, 5200, 96))
	row("inproc", 1, http(195000, 10.5, 5300, 5500, 50))
	row("inproc", 2, http(197500, 12.6, 5400, 5600, 50))
	failed := report.NewRow("run", "variant", "inproc", "round", 3)
	failed.Fail(errString("ready: not ready after 15s"))
	rep.Add(failed)
	fork := report.NewRow("run", "variant", "fork-cat", "round", 1).PutAll(http(7500, 800, 5700, 6000, 10))
	fork.Flag("2 request errors")
	rep.Add(fork)
	row("spawnloop-cat", 1, map[string]float64{"requests": 6500, "cpu_per_req_us": 700, "other_core_pct": 25, "errors": 0})
	return rep
}

type errString string

func (e errString) Error() string { return string(e) }

func TestWatchdogSummary(t *testing.T) {
	rep := testWatchdogReport()
	watchdogSummary(rep, testVariants, map[string]int64{"inproc": 6377634})

	var order []string
	for _, g := range rep.Summary {
		order = append(order, g.Label("variant"))
	}
	if want := "bare inproc fork-cat spawnloop-cat http"; strings.Join(order, " ") != want {
		t.Errorf("groups in order %q, want the variants' %q", strings.Join(order, " "), want)
	}
	bare, _ := report.Find(rep.Summary, "variant", "bare")
	if bare.Runs != 3 || bare.M("requests") != 205000 || bare.Min["cpu_per_req_us"] != 10 || bare.Max["cpu_per_req_us"] != 12 {
		t.Errorf("bare: runs %d, rps %v, CPU/req %v–%v; want 3, 205000, 10–12", bare.Runs, bare.M("requests"), bare.Min["cpu_per_req_us"], bare.Max["cpu_per_req_us"])
	}
	inproc, _ := report.Find(rep.Summary, "variant", "inproc")
	if inproc.Failed != 1 || len(inproc.Flags) != 1 || inproc.Flags[0] != "round 3: ready: not ready after 15s" {
		t.Errorf("inproc: failed %d, flags %q", inproc.Failed, inproc.Flags)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, n := range []string{"bare: wrk used 96% of a core", "spawnloop-cat: other processes used 25% of a core",
		"bare: CPU/req ranged 10.0–12.0 µs", "fork-cat: round 1: 2 request errors"} {
		if !strings.Contains(notes, n) {
			t.Errorf("no note %q in:\n%s", n, notes)
		}
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
