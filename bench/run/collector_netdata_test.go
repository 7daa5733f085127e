package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
)

// TestCollectorPresentsCredential runs the collector suite's wiring on two
// real watchdogs that check the run's replica credential: the readiness
// wait and probe carry it, a request without it is refused, and the
// collector in process, given the credential file, scrapes both; given
// another credential, it scrapes none.
func TestCollectorPresentsCredential(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "watchdog")
	cmd := exec.Command("go", "build", "-tags", "nethttpomithttp2,watchdog_nohttp", "-o", bin, "../../cmd/pulse-watchdog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build watchdog: %v\n%s", err, out)
	}
	ctx := context.Background()
	cred, err := newRunCredential(ctx, nil, "", tmp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cred.remove(nil) })
	replicas, stop, err := startCollectorWatchdogs(ctx, bin, cat, tmp, cred, 2)
	t.Cleanup(stop)
	if err != nil {
		t.Fatal(err)
	}
	if refused, err := refusesWithout(ctx, "http://"+replicas[0].addr+"/", "hi"); err != nil || !refused {
		t.Errorf("a request without the credential: refused %t, %v; want refused (the watchdog checks %s)", refused, err, contract.EnvReplicaAuthFile)
	}
	src := &benchCatalog{}
	src.set(replicas)
	srv := httptest.NewServer(src.handler())
	defer srv.Close()
	rows, err := measureCollector(ctx, srv.URL, cred.path, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := rows[0]; len(rows) != 1 || r.V("scraped") != 2 || r.V("failed_scrapes") != 0 || len(r.Flags) != 0 {
		t.Errorf("with the credential: %+v; want one cycle, 2 scraped, none failed", rows)
	}
	if src.catalogN.Load() == 0 {
		t.Error("the collector did not read the catalog")
	}
	other := filepath.Join(tmp, "other-auth")
	if err := os.WriteFile(other, []byte("not-the-credential\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	rows, err = measureCollector(ctx, srv.URL, other, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := rows[0]; r.V("scraped") != 0 || r.V("failed_scrapes") == 0 || len(r.Flags) != 1 {
		t.Errorf("with another credential: %+v; want 0 scraped, some failed, flagged", r)
	}
}

// testCollectorRows are 100 cycles at 200 replicas (p99 120 ms), the
// plugin at 1.5 % of a core and 12.34 MB, and the lab Netdata at 75 + 15 MB.
func testCollectorRows() []report.Row {
	var rows []report.Row
	for i := 1; i <= 100; i++ {
		rows = append(rows, *report.NewRow("cycle", "replicas", collectorReplicas, "cycle", i).Put("ms", 120*float64(i)/99).
			Put("scraped", collectorReplicas).Put("failed_scrapes", 0))
	}
	rows = append(rows, *report.NewRow("plugin", "replicas", 100).Put("cpu_core_pct", 1.5).Put("rss_kb", 12.34*mb/1024),
		*report.NewRow("netdata", "netdata", "lab").Put("total_rss_kb", 90*mb/1024).Put("plugin_rss_kb", 15*mb/1024))
	return rows
}

func TestCollectorGoals(t *testing.T) {
	cycle := "collection cycle p99 ≤ 250 ms at 200 replicas"
	plugin := "pulse.d.plugin CPU ≤ 3 % of a core at 100 replicas"
	netdata := "netdata + pulse.d.plugin RSS ≤ 110 MB (lab Netdata, 100 replicas)"
	type goal struct {
		name, status string
		value        float64
		note         string
	}
	for _, tc := range []struct {
		name   string
		change func(rows []report.Row) []report.Row
		want   []goal
	}{
		{"pass", func(rows []report.Row) []report.Row { return rows }, []goal{
			{cycle, report.Pass, 120, ""},
			{plugin, report.Pass, 1.5, "RSS 12.3 MB"},
			{netdata, report.Pass, 90, "netdata 75.0 MB + plugin 15.0 MB"},
		}},
		{"errors fail", func(rows []report.Row) []report.Row {
			for i := range rows {
				switch r := &rows[i]; {
				case r.Label("replicas") == "200" && r.Label("cycle") == "7":
					r.Put("failed_scrapes", 3).Flag("3 failed scrapes")
				case r.Kind == "plugin":
					r.Fail(errString("plugin exited"))
				case r.Kind == "netdata":
					r.Flag("9 function charts")
				}
			}
			return rows
		}, []goal{
			{cycle, report.Fail, 120, "3 failed scrapes"},
			{plugin, report.Fail, 0, "100: every run failed"},
			{netdata, report.Fail, 90, "lab had errors: 9 function charts"},
		}},
		{"over the limit, no cycles, netdata skipped", func(rows []report.Row) []report.Row {
			rows = slices.DeleteFunc(rows, func(r report.Row) bool { return r.Kind == "cycle" })
			rows[0].Put("cpu_core_pct", 4)
			rows[1] = report.Row{Kind: "netdata", Labels: map[string]string{"netdata": "lab"}, Skipped: "no netdata"}
			return rows
		}, []goal{
			{cycle, report.Skip, 0, "not measured"},
			{plugin, report.Fail, 4, "RSS 12.3 MB"},
			{netdata, report.Skip, 0, "lab did not run: no netdata"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &report.Report{Rows: tc.change(testCollectorRows())}
			collectorSummary(rep)
			var got []goal
			for _, g := range rep.Goals {
				got = append(got, goal{g.Name, g.Status, g.Value, g.Note})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
