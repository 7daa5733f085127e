package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// labReplica is a real HTTP server standing for a watchdog that requires
// the replica credential (403 without it). Its page says the function
// averaged a quarter of a request in flight: busy seconds grow by 0.25 per
// second of uptime, what a fast function under light load shows.
type labReplica struct {
	mu     sync.Mutex
	want   string
	denied int
	start  time.Time
}

func (r *labReplica) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := req.Header.Values(contract.HeaderReplicaAuth)
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(r.want)) != 1 {
		r.denied++
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"replica credential required"}`))
		return
	}
	up := time.Since(r.start).Seconds()
	fn := fmt.Sprintf("{%s=%q}", contract.MetricLabelFunction, "hello")
	fmt.Fprintf(w, "# TYPE %s counter\n%s{%s=%q,%s=\"200\"} %d\n", contract.MetricRequests, contract.MetricRequests,
		contract.MetricLabelFunction, "hello", contract.MetricLabelCode, int(up*100))
	fmt.Fprintf(w, "# TYPE %s counter\n%s%s %g\n", contract.MetricBusy, contract.MetricBusy, fn, up/4)
	fmt.Fprintf(w, "# TYPE %s gauge\n%s%s %g\n", contract.MetricUptime, contract.MetricUptime, fn, up)
	fmt.Fprintf(w, "# TYPE %s gauge\n%s%s %d\n", contract.MetricStartTime, contract.MetricStartTime, fn, r.start.Unix())
}

func (r *labReplica) set(want string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = want
}

// TestPluginInNetdata runs the built plugin in a real Netdata against a
// catalog listing one replica that requires the credential: the job's
// replica_auth_file (set through netdatalab) is presented, a rotation is
// followed without restarting anything, the refusal in between is in
// Netdata's log; the charts' titles arrive as sent (ASCII), and the
// in-flight chart shows a fraction of a request; pulsed's async queue
// reaches the queue charts (the oldest request's age in seconds).
func TestPluginInNetdata(t *testing.T) {
	if err := netdatalab.Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	plugin := filepath.Join(t.TempDir(), "pulse.d.plugin")
	build := exec.Command("go", "build", "-o", plugin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	replica := &labReplica{want: "first-credential", start: time.Now().Add(-time.Minute)}
	rsrv := httptest.NewServer(replica)
	defer rsrv.Close()
	// Swarm accepts a service named Odd_Name, which cannot name charts: it
	// is skipped, said once, and hello is still collected.
	cat := contract.Catalog{Version: "v1", Functions: []contract.CatalogFunction{{Name: "Odd_Name", Desired: 1}, {
		Name: "hello", Desired: 1, Labels: map[string]string{contract.LabelScaleTarget: "1"},
		Replicas: []contract.Replica{{TaskID: "t1", Addr: strings.TrimPrefix(rsrv.URL, "http://"), State: "running", Routed: true}},
	}}}
	// pulsed's async queues (issue 16), read at the catalog's base URL.
	queues := contract.Queues{Queues: []contract.QueueStatus{{Function: "hello", Depth: 7, Pending: 5, InFlight: 2, OldestAge: 2.5}}}
	psrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case contract.CatalogPath:
			w.Header().Set("ETag", `"v1"`)
			_ = json.NewEncoder(w).Encode(cat)
		case contract.QueuesPath:
			_ = json.NewEncoder(w).Encode(queues)
		default:
			http.NotFound(w, r)
		}
	}))
	defer psrv.Close()

	authFile, removeAuth, err := netdatalab.ReplicaAuthFile("first-credential")
	if err != nil {
		t.Fatal(err)
	}
	defer removeAuth()
	lab, err := netdatalab.Start(ctx, netdatalab.Config{Plugin: plugin, PluginConfig: netdatalab.JobConfig(
		psrv.URL+contract.CatalogPath, psrv.URL+"/no-haproxy", netdatalab.WithReplicaAuthFile(authFile))})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("lab error.log:\n%s", tail(lab.ErrorLog(), 30))
		}
	}()

	// scraped waits until the replicas chart's last "scraped" value is n.
	scraped := func(n float64, within time.Duration) {
		t.Helper()
		chart := contract.Chart("hello", contract.ChartReplicas)
		deadline := time.Now().Add(within)
		var last []float64
		for time.Now().Before(deadline) {
			d, err := lab.DataRange(ctx, chart, -3, 0)
			if last = d.Column(contract.DimScraped); err == nil && len(last) > 0 && last[0] == n {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s scraped = %v (newest first), want %v within %s", chart, last, n, within)
	}
	scraped(1, 60*time.Second)

	charts, err := lab.Charts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]string{}
	for _, s := range collector.ChartSpecs() {
		specs[s.IDSuffix] = contract.Chart("hello", s.IDSuffix)
	}
	// Netdata shows a title as the plugin sent it plus " (chart ID)".
	title := func(id string) string { return strings.TrimSuffix(charts[id].Title, " ("+id+")") }
	if got := title(specs[contract.ChartUtilization]); got != "Utilisation: demand / (ready replicas x target)" {
		t.Errorf("utilisation chart title %q", got)
	}
	if got := title(specs[contract.ChartLatency]); !strings.Contains(got, "inside the replica") {
		t.Errorf("latency chart title %q does not say where it is measured", got)
	}
	for _, id := range specs {
		if got := title(id); got == "" || strings.Contains(got, "_") {
			t.Errorf("chart %s title %q: missing, or mangled by the protocol", id, got)
		}
	}

	// A quarter of a request in flight reads as 0.25, not 0.
	d, err := lab.DataRange(ctx, specs[contract.ChartInflight], -5, 0)
	if err != nil {
		t.Fatal(err)
	}
	vals := d.Column(contract.DimInflight)
	if len(vals) == 0 || math.Abs(vals[0]-0.25) > 0.03 {
		t.Errorf("in flight %v (newest first), want 0.25", vals)
	}

	// The async queue as pulsed reported it: the age in seconds (collected
	// in ms), not in ms.
	d, err = lab.DataRange(ctx, specs[contract.ChartQueue], -5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if depth := d.Column(contract.DimDepth); len(depth) == 0 || depth[0] != 7 {
		t.Errorf("queue depth %v (newest first), want 7", depth)
	}
	d, err = lab.DataRange(ctx, specs[contract.ChartQueueAge], -5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if age := d.Column(contract.DimOldest); len(age) == 0 || math.Abs(age[0]-2.5) > 0.01 {
		t.Errorf("oldest queued %v s (newest first), want 2.5", age)
	}

	// Rotation, replicas first: 403, logged once by the plugin.
	replica.set("second-credential")
	scraped(0, 20*time.Second)
	if log := lab.ErrorLog(); !strings.Contains(log, "403 Forbidden") {
		t.Errorf("no 403 in Netdata's error.log:\n%s", tail(log, 20))
	}
	// Then the file: picked up without a restart.
	if err := os.WriteFile(authFile, []byte("second-credential\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	scraped(1, 20*time.Second)
	if n := strings.Count(lab.ErrorLog(), "answer 403 Forbidden"); n != 1 {
		t.Errorf("the 403 logged %d times, want once", n)
	}
	// The catalog was read every second meanwhile (no 304 from this
	// pulsed): Odd_Name was said once, and has no charts.
	skips := 0
	for _, line := range strings.Split(lab.ErrorLog(), "\n") {
		if strings.Contains(line, "skipping a catalog entry") && strings.Contains(line, "Odd_Name") {
			skips++
		}
	}
	if skips != 1 {
		t.Errorf("Odd_Name's skip logged %d times, want once:\n%s", skips, tail(lab.ErrorLog(), 20))
	}
	if charts, err := lab.Charts(ctx); err == nil {
		for id := range charts {
			if strings.Contains(strings.ToLower(id), "odd") {
				t.Errorf("chart %s for the skipped function", id)
			}
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
