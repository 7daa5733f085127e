package main

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

func TestSplitNetdataTree(t *testing.T) {
	procs := []netdatalab.Process{
		{PID: 10, Cmdline: []string{"/usr/sbin/netdata", "-D"}, RSSKB: 100000},
		{PID: 11, Cmdline: []string{"/usr/sbin/netdata", "--special-spawn-server"}, RSSKB: 5000},
		{PID: 12, Cmdline: []string{"/etc/netdata/custom-plugins.d/pulse.d.plugin", "1"}, RSSKB: 14000},
		{PID: 13, Cmdline: []string{"/usr/lib/netdata/plugins.d/apps.plugin", "1"}, RSSKB: 7000},
		{PID: 14, Cmdline: []string{"bash", "/usr/lib/netdata/plugins.d/tc-qos-helper.sh", "1"}, RSSKB: 3000},
	}
	got := splitNetdataTree(procs)
	want := netdataMemory{netdataKB: 105000, pluginKB: 14000, otherKB: 10000, pluginPIDs: []int{12}, netdataPIDs: []int{10, 11},
		others: []string{"apps.plugin", "tc-qos-helper.sh"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("splitNetdataTree =\n%+v\nwant\n%+v", got, want)
	}
}

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
	srv := httptest.NewServer(src)
	defer srv.Close()
	res, err := measureCollector(ctx, srv.URL, cred.path, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scraped != 2 || res.Failed != 0 {
		t.Errorf("with the credential: scraped %d, failed %d; want 2, 0", res.Scraped, res.Failed)
	}
	other := filepath.Join(tmp, "other-auth")
	if err := os.WriteFile(other, []byte("not-the-credential\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	res, err = measureCollector(ctx, srv.URL, other, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scraped != 0 || res.Failed == 0 {
		t.Errorf("with another credential: scraped %d, failed %d; want 0, some", res.Scraped, res.Failed)
	}
}

func TestCollectorGoals(t *testing.T) {
	ok := collectorReport{
		Cycles:  []collectorCycle{{Replicas: 100, P99MS: 900}, {Replicas: collectorReplicas, P99MS: 120}},
		Plugin:  collectorPlugin{Replicas: 100, CPUPct: 1.5, RSSMB: 12.34},
		Netdata: collectorNetdata{Replicas: 100, TotalRSSMB: 90, NetdataRSSMB: 75, PluginRSSMB: 15},
	}
	cycle := "collection cycle p99 ≤ 250 ms at 200 replicas"
	plugin := "pulse.d.plugin CPU ≤ 3 % of a core at 100 replicas"
	netdata := "netdata + pulse.d.plugin RSS ≤ 110 MB (lab Netdata, 100 replicas)"
	bad := ok
	bad.Cycles = []collectorCycle{{Replicas: collectorReplicas, P99MS: 120, Failed: 3}}
	bad.Plugin.Error = "plugin exited"
	bad.Netdata.Error = "9 function charts"
	skipped := ok
	skipped.Cycles = nil
	skipped.Plugin.CPUPct = 4
	skipped.Netdata.Skipped, skipped.Netdata.Error = "no netdata", "ignored"
	for _, tc := range []struct {
		name string
		rep  collectorReport
		want []goal
	}{
		{"pass", ok, []goal{
			{Name: cycle, Value: 120, Limit: 250, Unit: "ms", Status: pass},
			{Name: plugin, Value: 1.5, Limit: 3, Unit: "%", Status: pass, Note: "RSS 12.3 MB"},
			{Name: netdata, Value: 90, Limit: 110, Unit: "MB", Status: pass, Note: "netdata 75.0 MB + plugin 15.0 MB"},
		}},
		{"errors fail", bad, []goal{
			{Name: cycle, Value: 120, Limit: 250, Unit: "ms", Status: fail, Note: "3 failed scrapes"},
			{Name: plugin, Value: 1.5, Limit: 3, Unit: "%", Status: fail, Note: "plugin exited"},
			{Name: netdata, Value: 90, Limit: 110, Unit: "MB", Status: fail, Note: "9 function charts"},
		}},
		{"over the limit, no cycles, netdata skipped", skipped, []goal{
			{Name: plugin, Value: 4, Limit: 3, Unit: "%", Status: fail, Note: "RSS 12.3 MB"},
			{Name: netdata, Value: 90, Limit: 110, Unit: "MB", Status: skip, Note: "no netdata"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := collectorGoals(tc.rep); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
