package collector

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
)

// buildWatchdog builds cmd/pulse-watchdog into dir.
func buildWatchdog(t *testing.T, dir string) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go toolchain to build the watchdog")
		}
	}
	out := filepath.Join(dir, "pulse-watchdog")
	cmd := exec.Command(goBin, "build", "-o", out, "../cmd/pulse-watchdog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build watchdog: %v\n%s", err, b)
	}
	return out
}

// startWatchdog starts a fork-mode watchdog running cat on an ephemeral
// loopback port, requiring the replica credential in authFile, and returns
// its address and process; the test's cleanup kills it.
func startWatchdog(t *testing.T, bin, function, authFile string) (string, *os.Process) {
	t.Helper()
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skip("no cat")
	}
	if cat, err = filepath.EvalSymlinks(cat); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{
		contract.EnvFunction + "=" + function, contract.EnvMode + "=" + contract.ModeFork, contract.EnvExec + "=" + cat,
		contract.EnvListen + "=127.0.0.1:0", contract.EnvDrainGrace + "=0s", contract.EnvMaxBody + "=1KiB",
		contract.EnvReplicaAuthFile + "=" + authFile,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "watchdog listening" {
				addr <- rec.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		return a, cmd.Process
	case <-time.After(10 * time.Second):
		t.Fatal("watchdog did not report its address")
		return "", nil
	}
}

// TestCollectRealWatchdogs runs the collector against three real watchdog
// processes (two replicas of hello, one of echo) that require the replica
// credential, listed by an httptest catalog, with HAProxy unreachable.
func TestCollectRealWatchdogs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	bin := buildWatchdog(t, t.TempDir())
	authFile := credentialFileOf(t, "0123456789abcdef0123456789abcdef")
	h1, _ := startWatchdog(t, bin, "hello", authFile)
	h2, h2proc := startWatchdog(t, bin, "hello", authFile)
	e1, _ := startWatchdog(t, bin, "echo", authFile)
	cat := catalogOf("v1",
		fn("echo", 1, nil, contract.Replica{TaskID: "e1", Addr: e1, State: "running"}),
		fn("hello", 3, map[string]string{contract.LabelScaleTarget: "4"},
			contract.Replica{TaskID: "h1", Addr: h1, State: "running"},
			contract.Replica{TaskID: "h2", Addr: h2, State: "running"}),
	)
	pulsed := &fakePulsed{cat: cat}
	srv := httptest.NewServer(pulsed)
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	noHAProxy := closed.Addr().String()
	closed.Close()

	cfg := defaultConfig()
	cfg.CatalogURL, cfg.HAProxyURL = srv.URL+contract.CatalogPath, "http://"+noHAProxy+"/metrics"
	cfg.Timeout = web.Duration{Duration: 800 * time.Millisecond}

	// Another install's credential: every replica refuses the collector,
	// which says so.
	cfg.ReplicaAuthFile = credentialFileOf(t, "another-install")
	rec := &logRecorder{}
	wrong, err := NewCollector(cfg, slogOf(rec))
	if err != nil {
		t.Fatal(err)
	}
	mx, _ := wrong.Collect(context.Background())
	wrong.Close()
	if got, forbidden := mx[collectorKey(dimFailed)], mx[collectorKey(dimForbidden)]; got != 3 || forbidden != 3 {
		t.Errorf("with a wrong credential %d replicas failed, %d of them 403; want 3 and 3", got, forbidden)
	}
	// HAProxy is read alongside the replicas: the two warnings come in
	// either order.
	if w := rec.messages(slog.LevelWarn); len(w) != 2 || !oneContains(w, "403") || !oneContains(w, "HAProxy") {
		t.Errorf("with a wrong credential: warnings %q, want HAProxy's and the 403", w)
	}

	cfg.ReplicaAuthFile = authFile
	rec = &logRecorder{}
	c, err := NewCollector(cfg, slogOf(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	post := func(addr string, n, size int) {
		t.Helper()
		for range n {
			req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(strings.Repeat("x", size)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(contract.HeaderReplicaAuth, "0123456789abcdef0123456789abcdef") // as the gateway adds it
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden {
				t.Fatalf("the watchdog refused the credential: %s", resp.Status)
			}
		}
	}
	ctx := context.Background()
	post(h1, 2, 10) // before the baseline: not counted
	if mx, _ := c.Collect(ctx); mx[dimKey("hello", contract.ChartReplicas, contract.DimScraped)] != 2 {
		t.Fatalf("first cycle scraped %d hello replicas, want 2; log: %q", mx[dimKey("hello", contract.ChartReplicas, contract.DimScraped)], rec.messages(-8))
	}
	post(h1, 5, 10)
	post(h2, 3, 10)
	post(h1, 1, 2048) // over PULSE_MAX_BODY: 413
	post(e1, 4, 10)
	mx, fns := c.Collect(ctx)
	if strings.Join(fns, ",") != "echo,hello" {
		t.Errorf("functions %v", fns)
	}
	// Latency and the average in flight depend on the machine: checked for
	// plausibility, then set. The requests were sent one at a time, so each
	// function averaged above 0 and at most 1 in flight since the baseline
	// (the watchdogs' busy seconds), though the gauges read 0 now.
	for _, f := range []string{"hello", "echo"} {
		avg, p95 := mx[dimKey(f, contract.ChartLatency, contract.DimAvg)], mx[dimKey(f, contract.ChartLatency, contract.DimP95)]
		if avg <= 0 || p95 <= 0 || avg > 5e6 || p95 > 5e6 {
			t.Errorf("%s latency avg %d µs, p95 %d µs: want within (0, 5 s]", f, avg, p95)
		}
		mx[dimKey(f, contract.ChartLatency, contract.DimAvg)], mx[dimKey(f, contract.ChartLatency, contract.DimP95)] = 0, 0
		checkAverageDemand(t, mx, f, map[string]int64{"hello": 2 * 4, "echo": 10}[f])
	}
	want := wantMap(map[string]fnWant{
		"hello": {c2xx: 8, c4xx: 1, running: 2, desired: 3, scraped: 2, ready: 2, target: 4, util: ptr(0)},
		"echo":  {c2xx: 4, running: 1, desired: 1, scraped: 1, ready: 1, target: 10, util: ptr(0)},
	}, 3, 3, 0)
	want[collectorKey(dimForbidden)] = 0
	if d := diffMaps(mx, want); d != "" {
		t.Errorf("second cycle:\n%s", d)
	}

	// A replica dies: counted as failed, totals unchanged, one warning in
	// all (HAProxy's).
	if err := syscall.Kill(-h2proc.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = h2proc.Wait()
	post(h1, 2, 10)
	mx, _ = c.Collect(ctx)
	mx[dimKey("hello", contract.ChartLatency, contract.DimAvg)], mx[dimKey("hello", contract.ChartLatency, contract.DimP95)] = 0, 0
	checkAverageDemand(t, mx, "hello", 1*4)
	// echo had no request since: its average in flight is 0.
	want = wantMap(map[string]fnWant{
		"hello": {c2xx: 10, c4xx: 1, running: 2, desired: 3, scraped: 1, ready: 1, target: 4, util: ptr(0)},
		"echo":  {c2xx: 4, running: 1, desired: 1, scraped: 1, ready: 1, target: 10, util: ptr(0)},
	}, 3, 2, 1)
	want[collectorKey(dimForbidden)] = 0 // the dead replica failed otherwise
	if d := diffMaps(mx, want); d != "" {
		t.Errorf("third cycle:\n%s", d)
	}
	if w := rec.messages(0); len(w) != 1 || !strings.Contains(w[0], "HAProxy") {
		t.Errorf("info and above: %q, want HAProxy's warning only", w)
	}
}

// checkAverageDemand checks that f's demand (the average in flight, from the
// busy seconds) is within (0, 1] and its utilisation is that demand over
// capacity (ready replicas × target), then zeroes both for the map diff.
func checkAverageDemand(t *testing.T, mx map[string]int64, f string, capacity int64) {
	t.Helper()
	dk, uk := dimKey(f, contract.ChartDemand, contract.DimDemand), dimKey(f, contract.ChartUtilization, contract.DimUtilization)
	d, u := mx[dk], mx[uk]
	if d <= 0 || d > demandDiv {
		t.Errorf("%s demand %d (×%d), want within (0, 1] in flight", f, d, demandDiv)
	}
	// utilisation = 100 × demand / capacity, from the demand before it was
	// rounded to d: within half a unit of d, so within these bounds.
	per := 100.0 / float64(capacity) * utilizationDiv / demandDiv
	if lo, hi := (float64(d)-0.5)*per-0.5, (float64(d)+0.5)*per+0.5; float64(u) < lo || float64(u) > hi {
		t.Errorf("%s utilisation %d, want within [%.1f, %.1f] for demand %d over capacity %d", f, u, lo, hi, d, capacity)
	}
	// The in-flight chart shows the same average with more precision
	// (×inflightDiv, each rounded): a fraction of one request in flight
	// reads above 0.
	ik := dimKey(f, contract.ChartInflight, contract.DimInflight)
	if i := mx[ik]; i <= 0 || math.Abs(float64(i)-float64(d)*inflightDiv/demandDiv) > inflightDiv/demandDiv/2+1 {
		t.Errorf("%s in flight %d (×%d), want above 0 and the demand %d (×%d)", f, i, inflightDiv, d, demandDiv)
	}
	mx[dk], mx[uk], mx[ik] = 0, 0, 0
}

// oneContains reports whether one of msgs contains sub.
func oneContains(msgs []string, sub string) bool {
	for _, m := range msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}
