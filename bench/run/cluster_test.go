package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// The stored results of the cluster suite the golden files are rendered
// from: the push stage alone, with the layer-change row (cluster-results.*),
// and the last full run, every stage, from before that row
// (cluster-full-results.*).
const (
	clusterGolden     = "cluster-20261206T145838Z.json"
	clusterGoldenFull = "cluster-20261206T143127Z.json"
)

// TestClusterGolden renders stored results of the cluster suite
// (bench/results) as text and markdown and checks them against golden
// files; run with -update to rewrite them after an intended change. The
// goals are computed again from the stored summaries and must be those
// stored.
func TestClusterGolden(t *testing.T) {
	for _, tc := range []struct{ json, golden string }{{clusterGolden, "cluster-results"}, {clusterGoldenFull, "cluster-full-results"}} {
		t.Run(tc.golden, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "results", tc.json))
			if err != nil {
				t.Fatal(err)
			}
			var r clusterReport
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			stored := r.Goals
			if again := clusterGoals(r); !reflect.DeepEqual(again, stored) {
				t.Errorf("goals computed from the stored summaries:\n%+v\nstored:\n%+v", again, stored)
			}
			for ext, md := range map[string]bool{".txt": false, ".md": true} {
				got := renderCluster(r, md, "results/"+tc.json)
				golden := filepath.Join("testdata", tc.golden+ext)
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if got != string(want) {
					t.Errorf("%s renders differently from %s (run go test ./bench/run -update after an intended change):\n%s", tc.json, golden, got)
				}
			}
		})
	}
}

func names(gs []goal) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Name + " " + g.Status
	}
	return out
}

func TestSummarizeFailTrial(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name          string
		reqs          []hostReq
		failed, after int
		last, window  float64 // NaN: none
		kinds         map[string]int
	}{
		{"none failed", []hostReq{{Start: at(-100), Task: "a"}, {Start: at(500), Task: "b"}}, 0, 0, math.NaN(), 0, nil},
		{"in flight at the fault only", []hostReq{{Start: at(-30), Err: "read"}, {Start: at(-10), Err: "read"}, {Start: at(10), Task: "a"}},
			2, 0, -0.01, 0, map[string]int{"read": 2}},
		{"failures after the fault", []hostReq{{Start: at(-5), Err: "status 504"}, {Start: at(2500), Err: "status 504"}, {Start: at(1200), Err: "dial"}, {Start: at(2600), Task: "c"}},
			3, 2, 2.5, 2.5, map[string]int{"status 504": 2, "dial": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr failTrial
			summarizeFailTrial(&tr, tc.reqs, t0)
			if tr.Requests != len(tc.reqs) || tr.Failed != tc.failed || tr.FailedAfter != tc.after || !reflect.DeepEqual(tr.FailedByKind, tc.kinds) {
				t.Errorf("requests %d failed %d after %d kinds %v, want %d %d %d %v", tr.Requests, tr.Failed, tr.FailedAfter, tr.FailedByKind, len(tc.reqs), tc.failed, tc.after, tc.kinds)
			}
			if !sameFloat(float64(tr.LastFailStartS), tc.last) || !sameFloat(float64(tr.WindowS), tc.window) {
				t.Errorf("last failed start %v, window %v; want %v, %v", tr.LastFailStartS, tr.WindowS, tc.last, tc.window)
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

func TestSummarizeFailover(t *testing.T) {
	nan := secs(math.NaN())
	trials := []failTrial{
		{Setting: "defaults", Fault: faultKill, Failed: 1, WindowS: 0, RestoredS: 7, LeftS: 0.2, DownS: 5, RoutedS: 7, CallS: 0.2},
		{Setting: "defaults", Fault: faultPause, Failed: 200, WindowS: 6, RestoredS: 8.5, LeftS: 6, DownS: 5.5, RoutedS: 8, CallS: 0.1},
		{Setting: "defaults", Fault: faultKill, Failed: 3, WindowS: 0.1, RestoredS: 7.4, LeftS: 0.4, DownS: 6, RoutedS: 7.3, CallS: 0.3},
		// Never restored: counts as infinitely slow; its window still counts.
		{Setting: "defaults", Fault: faultKill, Failed: 2, WindowS: 0.05, RestoredS: nan, LeftS: 0.3, DownS: 5.5, RoutedS: nan, CallS: 0.25, Error: "after 1m0s: 2 routed replicas off the node"},
	}
	got := summarizeFailover(trials)
	if len(got) != 2 || got[0].Fault != faultKill || got[1].Fault != faultPause {
		t.Fatalf("groups %+v, want kill then pause", got)
	}
	k := got[0]
	if k.Trials != 3 || k.Complete != 2 || float64(k.WindowS) != 0.05 || float64(k.Restored) != 7.4 || !math.IsInf(float64(k.RestMax), 1) ||
		k.Failed != 2 || k.FailedMin != 1 || k.FailedMax != 3 || float64(k.LeftS) != 0.3 || float64(k.RoutedS) != 7.15 {
		t.Errorf("kill: %+v", k)
	}
	gs := clusterGoals(clusterReport{FailoverSummary: got})
	want := []string{pass, pass, fail, fail}
	for i, g := range gs {
		if g.Status != want[i] {
			t.Errorf("goal %q: %s, want %s", g.Name, g.Status, want[i])
		}
	}
	// A summary with no finite value renders and marshals without NaN.
	none := summarizeFailover([]failTrial{{Setting: "defaults", Fault: faultPause, WindowS: nan, RestoredS: nan, LeftS: nan, DownS: nan, RoutedS: nan, Error: "no request answered"}})
	if _, err := json.Marshal(none); err != nil {
		t.Errorf("marshal: %v", err)
	}
	if g := clusterGoals(clusterReport{FailoverSummary: none}); g[0].Status != fail || !g[0].NoValue {
		t.Errorf("goal without a value: %+v", g[0])
	}
}

func TestSummarizePush(t *testing.T) {
	trial := func(nodes int, wall float64, err string) pushTrial {
		tr := pushTrial{Kind: pushKindPush, Variant: pushDefault, Nodes: nodes, WallS: wall, HostCPUS: 0.03 * float64(nodes), Error: err}
		for i := range nodes {
			tr.NodeCPU = append(tr.NodeCPU, pushNodeCPU{Node: "n" + string(rune('1'+i)), CPUS: 0.35, ByGroup: map[string]float64{nodeSSHD: 0.1, nodeDockerd: 0.2, nodeGone: 0.05}})
		}
		return tr
	}
	ss := summarizePush([]pushTrial{trial(1, 0.4, ""), trial(3, 0.8, ""), trial(1, 0.5, ""), trial(3, 0.9, ""), trial(1, 0.45, ""), trial(3, 0, "ssh: refused")})
	one, three := pushFind(ss, pushKindPush, pushDefault, 1), pushFind(ss, pushKindPush, pushDefault, 3)
	if one == nil || three == nil || one.WallS != 0.45 || three.WallS != 0.85 || three.Failed != 1 || three.Trials != 3 ||
		math.Abs(three.NodeCPUS-1.05) > 1e-9 || math.Abs(three.ByGroup[nodeDockerd]-0.6) > 1e-9 {
		t.Fatalf("summaries %+v", ss)
	}
	g := clusterGoals(clusterReport{Push: &clusterPush{PayloadBytes: 16 << 20, Summary: ss}})
	if len(g) != 1 || g[0].Status != fail || g[0].Value != round3(0.85/0.45) {
		t.Errorf("push goal %+v", g)
	}
	// Every trial failed: counted, no figures, no NaN in JSON.
	all := summarizePush([]pushTrial{trial(3, 0, "x"), trial(3, 0, "y")})
	if all[0].Failed != 2 || all[0].WallS != 0 {
		t.Errorf("all failed: %+v", all[0])
	}
	if _, err := json.Marshal(all); err != nil {
		t.Error(err)
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

func TestParseMemoryStatAndDiskWrites(t *testing.T) {
	st := parseMemoryStat(strings.NewReader("cache 100\nrss 20\ntotal_cache 4096\ntotal_rss 8192\nbogus\n"))
	if st["total_rss"] != 8192 || st["total_cache"] != 4096 || len(st) != 4 {
		t.Errorf("memory.stat: %v", st)
	}
	const diskstats = `   7       0 loop0 10 0 80 0 5 0 999 0 0 0 0
 254       0 vda 100 0 800 0 50 10 2048 0 0 0 0
 254       1 vda1 90 0 700 0 45 9 2000 0 0 0 0
 252       0 zram0 1 0 8 0 1 0 8 0 0 0 0
   8      16 sdb 1 0 8 0 1 0 4 0 0 0 0
`
	got, err := parseDiskWrites(strings.NewReader(diskstats), func(name string) bool { return name == "vda" || name == "sdb" })
	if err != nil || got != (2048+4)*512 {
		t.Errorf("disk writes %d, %v; want %d", got, err, (2048+4)*512)
	}
}

func TestReadHostStat(t *testing.T) {
	h, err := readHostStat(filepath.Join("testdata", "proc"))
	if err != nil {
		t.Fatal(err)
	}
	// testdata/proc/stat: cpu  20830 0 12404 102298 278 0 2689 36 0 0
	if h.IOWait != 278 || h.Busy != 20830+12404+2689 || h.Steal != 36 {
		t.Errorf("host stat %+v", h)
	}
}

func TestNodeGroup(t *testing.T) {
	for comm, want := range map[string]string{"sshd": nodeSSHD, "docker": nodeDialStdio, "dockerd": nodeDockerd, "containerd": nodeContainerd,
		"containerd-shim": nodeContainerd, "containerd-shim-runc-v2": nodeContainerd, "init.sh": nodeOther, "exe": nodeOther} {
		if got := nodeGroup(comm); got != want {
			t.Errorf("%s: %s, want %s", comm, got, want)
		}
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
	l.mark(mark)
	deadline := time.Now().Add(5 * time.Second)
	for len(l.answered()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	status.Store(504)
	time.Sleep(100 * time.Millisecond)
	reqs, _ := l.end()
	ans := l.answered()
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
