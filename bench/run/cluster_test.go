package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// testClusterReport is a run of every stage with one trial each but for
// the failover: the defaults' pause trials pass, one kill trial never
// restored (flagged), the faster setting's pause is over the limit; one
// layer B trial fell back to the full archive.
func testClusterReport() (*report.Report, clusterPlan) {
	rep := &report.Report{Suite: "cluster", Started: "2026-12-06T15:23:57Z", Setup: "2 CPUs (AMD EPYC), kernel 6.1.0; lab: 3 nodes"}
	var rows []*report.Row // added at the end, after their flags and errors
	add := func(kind string, kv map[string]float64, labels ...any) *report.Row {
		r := report.NewRow(kind, labels...).PutAll(kv)
		rows = append(rows, r)
		return r
	}
	fail := func(setting, fault string, round int, window, restored, failed float64) *report.Row {
		kv := map[string]float64{"error_window_s": window, "failed": failed, "left_haproxy_s": window + 0.1, "node_down_s": 5, "requests": 1000, "skipped": 0}
		if restored > 0 {
			kv["restored_s"], kv["routed_s"] = restored, restored-0.1
		}
		return add("failover", kv, "pulsed", setting, "fault", fault, "round", round, "node", "pulse-lab-node2")
	}
	fast := clusterFastCandidates[0].Name
	fail("defaults", faultKill, 1, 0, 6.4, 0)
	fail("defaults", faultPause, 1, 2.3, 6.3, 78)
	fail("defaults", faultPause, 2, 2.4, 6.6, 80)
	fail("defaults", faultKill, 2, 0.02, 0, 1).Flag("after 1m0s: 2 routed replicas have not answered")
	fail(fast, faultKill, 1, 0, 7.1, 0)
	fail(fast, faultPause, 1, 3.2, 8.5, 100)
	add("saturation", map[string]float64{"requests": 7096, "failed": 0, "chkdown": 0, "chkfail": 0, "detours": 0, "kept": 0}, "pulsed", "defaults").
		Flag("3 failed requests")
	add("saturation", map[string]float64{"requests": 7089, "failed": 0, "chkdown": 0, "chkfail": 0, "detours": 0, "kept": 1}, "pulsed", fast)
	prof := func(wall, node float64) map[string]float64 {
		return map[string]float64{"wall_s": wall, "host_cpu_s": node / 10, "node_cpu_s": node, "other_cpu_s": 0.01, "machine_cpu_s": node*1.1 + 0.01, "steal_cores": 0}
	}
	add("push", prof(0.37, 0.35), "nodes", 1, "round", 1)
	add("push", prof(0.73, 1.10), "nodes", 3, "round", 1)
	add("push", nil, "nodes", 3, "round", 2).Fail(errString("ssh 172.31.250.12: connection refused"))
	layer := func(variant string, nodes int, wall, sent, thin float64) *report.Row {
		kv := prof(wall, 0.3*float64(nodes))
		maps.Copy(kv, map[string]float64{"loads": float64(nodes), "thin_loads": thin, "sent_max_bytes": sent, "full_bytes": 6_661_000})
		return add("layer", kv, "variant", variant, "nodes", nodes, "round", 1)
	}
	layer(layerFull, 1, 0.35, 6_661_000, 0)
	layer(layerThin, 1, 0.21, 690_000, 1)
	layer(layerFull, 3, 0.72, 6_661_000, 0)
	layer(layerThin, 3, 0.34, 690_000, 3)
	layer(layerFull, 3, 0.70, 6_661_000, 0).Labels["round"] = "2"
	thin := layer(layerThin, 3, 0.50, 6_661_000, 2)
	thin.Labels["round"] = "2"
	thin.Fail(errString("pulse-lab-node3: sent the full archive"))
	for _, n := range []string{"pulse-lab-node1", "pulse-lab-node2", "pulse-lab-node3"} {
		add("idle", map[string]float64{"cpu_pct": 1, "mem_usage_mb": 230}, "what", n)
	}
	add("idle", map[string]float64{"cpu_pct": 0.23}, "what", "pulsed")
	add("idle", map[string]float64{"cpu_pct": 0.35}, "what", "HAProxy")
	add("idle", map[string]float64{"window_s": 60, "host_busy_pct": 26, "cpu_pct": 3.58, "mem_usage_mb": 690, "nodes_cpu_pct": 3,
		"pulsed_cpu_pct": 0.23, "haproxy_cpu_pct": 0.35}, "what", "total")
	for _, r := range rows {
		rep.Add(r)
	}
	return rep, clusterPlan{Trials: 5, IdleS: 60, SatS: 60, Fast: fast}
}

// TestClusterSummary summarises a run of every stage: the goals' verdicts,
// and the text and markdown renderings against golden files (run with
// -update to rewrite them after an intended change).
func TestClusterSummary(t *testing.T) {
	rep, plan := testClusterReport()
	clusterSummary(rep, plan)
	fast := clusterFastCandidates[0].Name
	want := map[string]string{
		"docker kill of a worker, pulsed defaults: error window by request start (start of the last failed request − fault)":                               report.Fail, // flagged
		"docker pause of a worker, pulsed defaults: error window by request start (start of the last failed request − fault)":                              report.Pass,
		"docker pause of a worker, pulsed defaults: every replica answering again through the gateway (3 routed, none on the node)":                        report.Pass,
		"docker kill of a worker, pulsed " + fast + ": error window by request start (start of the last failed request − fault)":                           report.Pass,
		"docker pause of a worker, pulsed " + fast + ": error window by request start (start of the last failed request − fault)":                          report.Fail,
		"docker pause of a worker, pulsed " + fast + ": every replica answering again through the gateway (3 routed, none on the node)":                    report.Fail,
		"image push to 3 nodes in parallel ≤ 1.3× one node (ClusterDistributor over provision SSH engines, 16 MiB payload, median of 5)":                   report.Fail,
		"a one-function-layer change moves ≤ 15 % of the full image's bytes to each node (image B after A through ClusterDistributor, to 1 and 3 node(s))": report.Fail,
		"one function layer changed, to 1 node(s): wall time of B (thin) ÷ A (full), medians of 5":                                                         report.Info,
		"idle: CPU of the 3 nodes + pulsed + HAProxy over 60 s (one function of 3 replicas)":                                                               report.Info,
	}
	for _, g := range rep.Goals {
		if w, ok := want[g.Name]; ok {
			delete(want, g.Name)
			if g.Status != w {
				t.Errorf("goal %q: %s (%v, %q), want %s", g.Name, g.Status, g.Value, g.Note, w)
			}
		}
	}
	for name := range want {
		t.Errorf("no goal %q", name)
	}
	if g := rep.Goals[9]; g.Value != 10.359 || !strings.Contains(g.Note, "6 of 7 loads thin; 1 of 3 trials failed") {
		t.Errorf("layer goal %+v: want the worst of the thin trials, 10.359 %%", g)
	}
	for golden, got := range map[string]string{
		"cluster-results.md":  rep.Render(true, "results/cluster-20261206T152357Z.json"),
		"cluster-results.txt": rep.Render(false, ""),
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

// TestClusterGoalsNotRun: a stage that did not run skips its goals.
func TestClusterGoalsNotRun(t *testing.T) {
	rep := &report.Report{Suite: "cluster"}
	clusterSummary(rep, clusterPlan{Trials: 1, IdleS: 10, SatS: 15})
	if len(rep.Goals) != 10 {
		t.Errorf("%d goals, want 10 (4 failover, push, layer, 2 layer times, 2 idle)", len(rep.Goals))
	}
	for _, g := range rep.Goals {
		if g.Status != report.Skip {
			t.Errorf("goal %q: %s, want SKIP", g.Name, g.Status)
		}
	}
}

// TestPutRequests: the error window is the start of the last failed
// request after the fault, 0 when only those in flight at it failed.
func TestPutRequests(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name           string
		reqs           []hostReq
		failed, window float64
	}{
		{"none failed", []hostReq{{Start: at(-100), Task: "a"}, {Start: at(500), Task: "b"}}, 0, 0},
		{"in flight at the fault only", []hostReq{{Start: at(-30), Err: "read"}, {Start: at(-10), Err: "read"}, {Start: at(10), Task: "a"}}, 2, 0},
		{"failures after the fault", []hostReq{{Start: at(-5), Err: "status 504"}, {Start: at(2500), Err: "status 504"}, {Start: at(1200), Err: "send"}, {Start: at(2600), Task: "c"}},
			3, 2.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := report.NewRow("failover")
			putRequests(r, tc.reqs, t0)
			if r.V("requests") != float64(len(tc.reqs)) || r.V("failed") != tc.failed || !sameFloat(r.V("error_window_s"), tc.window) {
				t.Errorf("requests %v failed %v window %v, want %d %v %v", r.V("requests"), r.V("failed"), r.V("error_window_s"), len(tc.reqs), tc.failed, tc.window)
			}
		})
	}
}

// sameFloat compares to the microsecond, NaN equal to NaN.
func sameFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) < 1e-6
}

// TestFailoverGoals: medians over the trials that measured, a flagged
// trial failing its setting's goals, a fault where no trial measured
// failing without a value.
func TestFailoverGoals(t *testing.T) {
	var rows []report.Row
	trial := func(fault string, kv map[string]float64, flag string) {
		r := report.NewRow("failover", "pulsed", "defaults", "fault", fault).PutAll(kv)
		if flag != "" {
			r.Flag("%s", flag)
		}
		rows = append(rows, *r)
	}
	trial(faultKill, map[string]float64{"failed": 1, "error_window_s": 0, "restored_s": 7, "skipped": 0}, "")
	trial(faultKill, map[string]float64{"failed": 3, "error_window_s": 0.1, "restored_s": 7.4, "skipped": 2}, "")
	trial(faultPause, map[string]float64{"failed": 200, "error_window_s": 2, "restored_s": 7.9}, "")
	trial(faultPause, map[string]float64{"failed": 190, "error_window_s": 2.2}, "after 1m0s: 2 routed replicas off the node")
	none := report.NewRow("failover", "pulsed", "x", "fault", faultPause)
	none.Fail(errString("no request answered in the 2s before the fault (200 tried)"))
	rows = append(rows, *none)
	fo := report.Summarize(rows, "failover", "pulsed", "fault")
	gs := clusterGoals(rows, fo, nil, nil, nil, clusterPlan{Trials: 2, Fast: "x"})
	for i, want := range []string{report.Pass, report.Pass, report.Fail, report.Fail, report.Skip, report.Skip, report.Fail, report.Fail} {
		if gs[i].Status != want {
			t.Errorf("goal %q: %s (%v, %q), want %s", gs[i].Name, gs[i].Status, gs[i].Value, gs[i].Note, want)
		}
	}
	if gs[0].Value != 0.05 || gs[1].Value != 7.2 || !strings.HasPrefix(gs[0].Note, "median of 2 (2 complete); 2 failed requests (1–3; up to 2 not sent, 256 in flight)") {
		t.Errorf("kill goals %+v", gs[:2])
	}
	if !strings.Contains(gs[2].Note, "pause had errors: after 1m0s") || !gs[6].NoValue {
		t.Errorf("pause goals %+v, %+v: want the flag in the note, no value where every trial failed", gs[2], gs[6])
	}
}

// TestPushGoal: the ratio of the medians, a failed trial failing it.
func TestPushGoal(t *testing.T) {
	var rows []report.Row
	trial := func(nodes int, wall float64, err string) {
		r := report.NewRow("push", "nodes", nodes).Put("wall_s", wall)
		if err != "" {
			r.Fail(errString(err))
		}
		rows = append(rows, *r)
	}
	for _, tr := range []struct {
		n    int
		wall float64
	}{{1, 0.4}, {3, 0.5}, {1, 0.5}, {3, 0.6}, {1, 0.45}} {
		trial(tr.n, tr.wall, "")
	}
	goal := func() report.Goal {
		return clusterGoals(rows, nil, report.Summarize(rows, "push", "nodes"), nil, nil, clusterPlan{Trials: 3})[4] // after the failover's 4
	}
	if g := goal(); g.Status != report.Pass || g.Value != 1.222 || g.Note != "0.55 s vs 0.45 s" {
		t.Errorf("push goal %+v, want PASS 1.222", g)
	}
	trial(3, 0, "ssh: refused")
	if g := goal(); g.Status != report.Fail {
		t.Errorf("push goal with a failed trial %+v, want FAIL", g)
	}
}

func TestParseCgroupPath(t *testing.T) {
	const proc = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
	if got, err := parseCgroupPath(proc, "cpuacct"); err != nil || got != "/docker/abc" {
		t.Errorf("cpuacct: %q, %v", got, err)
	}
	if _, err := parseCgroupPath("0::/system.slice\n", "cpuacct"); err == nil || !strings.Contains(err.Error(), "cgroup v1") {
		t.Errorf("cgroup v2 only: %v, want an error that says the lab needs cgroup v1", err)
	}
}

func TestFailoverObservations(t *testing.T) {
	rows := []gateway.ServerStat{
		{Server: "s1", Addr: "172.31.250.12:30001", Status: "UP 1/3"},
		{Server: "s2", Addr: "172.31.250.13:30002", Status: "UP"},
		{Server: "s3", Addr: "172.31.250.12:30003", Status: "DOWN"},
		{Server: "s4", Addr: "127.0.0.1:1", Status: "MAINT"},
	}
	if n := upAt(rows, "172.31.250.12"); n != 1 {
		t.Errorf("UP at node2: %d, want 1 (going down still takes requests)", n)
	}
	if n := upAt(rows, "172.31.250.11"); n != 0 {
		t.Errorf("UP at node1: %d, want 0", n)
	}
	rs := []contract.Replica{
		{TaskID: "a", Addr: "172.31.250.11:30001", Routed: true},
		{TaskID: "b", Addr: "172.31.250.12:30002", Routed: true},
		{TaskID: "c", Addr: "172.31.250.13:30003", Routed: true, Draining: true},
		{TaskID: "d", Addr: "172.31.250.13:30004", Routed: false},
		{TaskID: "e", Addr: "172.31.250.13:30005", Routed: true},
	}
	var got []string
	for _, r := range routedAway(rs, "172.31.250.12") {
		got = append(got, r.TaskID)
	}
	if strings.Join(got, ",") != "a,e" {
		t.Errorf("routed away from node2: %v, want a,e", got)
	}
	if taskOfHost("pbench-cl-1-host.2.x7k2q9") != "x7k2q9" || taskOfHost("x7k2q9") != "x7k2q9" {
		t.Error("taskOfHost")
	}
}

// TestHostLoad runs the failover's load against a real HTTP server that
// answers like a replica, then like a frozen node's gateway (504).
func TestHostLoad(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if s := int(status.Load()); s != 200 {
			w.WriteHeader(s)
			return
		}
		_, _ = w.Write([]byte("fn.1.task" + r.URL.Path[len(r.URL.Path)-1:] + ":" + string(body)))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	l := startHostLoad(addr, "/function/a", 200, 8)
	time.Sleep(200 * time.Millisecond)
	mark := time.Now()
	deadline := time.Now().Add(5 * time.Second)
	for len(l.answered(mark)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	status.Store(504)
	time.Sleep(100 * time.Millisecond)
	reqs, _ := l.end()
	ans := l.answered(mark)
	if first, ok := ans["taska"]; !ok || first.Before(mark) || len(ans) != 1 {
		t.Errorf("answered since the mark: %v, want taska after %v", ans, mark)
	}
	var ok, failed int
	for _, r := range reqs {
		switch {
		case r.Err == "" && r.Task == "taska":
			ok++
		case r.Err == "status 504":
			failed++
		default:
			t.Errorf("request %+v: want taska or status 504", r)
		}
	}
	if ok == 0 || failed == 0 {
		t.Errorf("%d answered, %d failed with 504; want some of each", ok, failed)
	}
}

func TestFlockWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.lock")
	log := slog.New(slog.DiscardHandler)
	unlock, err := flockWait(context.Background(), log, path, "the lab", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := flockWait(context.Background(), log, path, "the lab", 0); err == nil || !strings.Contains(err.Error(), "the lab is in use by another run") {
		t.Errorf("second lock while held: %v, want in use", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := flockWait(ctx, log, path, "the lab", time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("lock with a cancelled context while held: %v, want context.Canceled", err)
	}
	unlock()
	again, err := flockWait(context.Background(), log, path, "the lab", 0)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}
