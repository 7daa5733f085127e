package main

import (
	"context"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// The metrics test's load and tolerances.
const (
	metricsRate      = 50               // requests/s sent through the gateway
	metricsLoadTime  = 10 * time.Second // how long
	metricsTolerance = 0.10             // Netdata's requests/s against the sent rate
)

// TestMetricsNetdata is the collector's end-to-end test with the real
// Netdata, HAProxy and swarm: a lab Netdata runs the built pulse.d.plugin
// against an in-process pulsed; a function gets a known request rate
// through the gateway; /api/v1/charts and /api/v1/data must show every
// Pulse chart with the function's name as family and the sent rate within
// 10 %; scaling shows in the replicas chart; removing the function makes
// its charts obsolete (Netdata 1.37.1 then leaves them out of
// /api/v1/charts); and neither the netdata user nor the plugin's process
// can use the Docker socket.
func TestMetricsNetdata(t *testing.T) {
	if err := netdatalab.Available(); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("needs a lab Netdata: %v", err)
		}
		t.Skipf("needs a lab Netdata: %v", err)
	}
	nd, err := user.Lookup("netdata")
	if err != nil {
		t.Fatal(err)
	}
	ndUID, _ := strconv.Atoi(nd.Uid)
	dockerGIDs := socketGroups(t)
	t.Run("netdata user not in the docker group", func(t *testing.T) {
		gids, err := nd.GroupIds()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gids {
			if id, _ := strconv.Atoi(g); dockerGIDs[id] {
				t.Errorf("user netdata is in group %d, which can use the Docker socket (root on this host): gpasswd -d netdata docker", id)
			}
		}
	})

	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	plugin := filepath.Join(t.TempDir(), "pulse.d.plugin")
	goBuild(t, plugin, "../pulse.d.plugin")
	t.Logf("plugin built in %.1f s", time.Since(t0).Seconds())

	cfg := defaults()
	// pulsed, and so the catalog and the lab's charts, see only this
	// test's function.
	e.useInstance(&cfg)
	cfg.Autoscale = false // the rate is ours: no scaler acting on it
	cfg.ColdStartListen = ""
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen = freePort(t), freePort(t), freePort(t)
	cfg.CheckInterval = 500 * time.Millisecond
	cfg.LeaveRunning = false // HAProxy stops with pulsed
	name := "met-" + e.tag
	e.deployFunc(name, "test", deployment{fn: e.echoBin, labels: map[string]string{"pulse.test": e.tag}})
	stop := pulsedUnder(t, cfg)
	t.Cleanup(stop)
	waitRoute(t, cfg.GatewayListen, "/function/"+name)

	lab, err := netdatalab.Start(ctx, netdatalab.Config{Plugin: plugin, PluginConfig: netdatalab.JobConfig(
		"http://"+cfg.APIListen+contract.CatalogPath, "http://"+cfg.AdminListen+"/metrics",
		netdatalab.WithReplicaAuthFile(cfg.ReplicaAuthFile))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab Netdata's error.log (tail):\n%s", lastLines(lab.ErrorLog(), 40))
		}
		stopped := time.Now()
		if err := lab.Stop(); err != nil {
			t.Errorf("stop the lab Netdata: %v", err)
		}
		t.Logf("lab Netdata stopped in %.1f s", time.Since(stopped).Seconds())
	})

	t.Run("plugin runs as netdata without the docker group", func(t *testing.T) {
		procs := waitLabPlugin(t, lab)
		for _, p := range procs {
			if p.UID != ndUID {
				t.Errorf("pid %d %q runs as uid %d, want netdata (%d)", p.PID, p.Cmdline, p.UID, ndUID)
			}
			for _, g := range p.GIDs {
				if dockerGIDs[g] {
					t.Errorf("pid %d %q has group %d, which can use the Docker socket", p.PID, p.Cmdline, g)
				}
			}
		}
	})

	specs := collector.ChartSpecs()
	chartOf := func(suffix string) string { return contract.Chart(name, suffix) }
	charts := waitLabCharts(t, lab, 30*time.Second, func(cs map[string]netdatalab.Chart) bool {
		for _, s := range specs {
			if _, ok := cs[chartOf(s.IDSuffix)]; !ok {
				return false
			}
		}
		return true
	})
	t.Run("charts", func(t *testing.T) {
		for _, s := range specs {
			c := charts[chartOf(s.IDSuffix)]
			if c.Family != name || c.Context != s.Context {
				t.Errorf("%s: family %q context %q, want %q and %q", c.ID, c.Family, c.Context, name, s.Context)
			}
			if got, want := c.DimensionNames(), slices.Sorted(slices.Values(s.Dims)); !slices.Equal(got, want) {
				t.Errorf("%s: dimensions %v, want %v", c.ID, got, want)
			}
			for _, v := range s.Vars {
				if _, ok := c.Variables[v]; !ok {
					t.Errorf("%s: no chart variable %q (has %v)", c.ID, v, c.Variables)
				}
			}
		}
	})

	// A known rate through the gateway; Netdata's per-second values over
	// the middle of the run must match it.
	start := time.Now()
	l := startPacedLoad(cfg.GatewayListen, "/function/"+name, metricsRate, 4)
	time.Sleep(metricsLoadTime)
	sent, ok, why := l.end()
	t.Logf("paced load: %d sent in %s, %d answered 2xx, failures %v", sent, metricsLoadTime, ok, why)
	if ok != sent {
		t.Errorf("%d of %d requests failed: %v", sent-ok, sent, why)
	}
	// Netdata's point at second T is the rate over (T-1, T], interpolated
	// between collections: the points 2 to 9 seconds after the load's
	// first whole second lie within the load, clear of its start and end.
	// Single points vary (±10 %, up to ±40 % on a busy machine: the
	// interpolation uses go.d's tick times, not the scrapes'), their mean
	// much less. Summed over a window that starts and ends without load,
	// the points are the counter's increase: the requests, exactly.
	first := start.Unix()
	from, to := first+2, first+9
	wholeFrom, wholeTo := first-1, first+12
	time.Sleep(time.Until(time.Unix(wholeTo+2, 0))) // final once later cycles ran
	t.Run("requests/s", func(t *testing.T) {
		for _, c := range []struct{ suffix, dim string }{
			{contract.ChartRequests, contract.Dim2xx},
			{contract.ChartGatewayRequests, contract.DimRate},
		} {
			id := chartOf(c.suffix)
			d, err := lab.DataRange(ctx, id, from, to)
			if err != nil {
				t.Fatal(err)
			}
			vals := d.Column(c.dim)
			if len(vals) < int(to-from) {
				t.Fatalf("%s %s: %d values from %d to %d: %v", id, c.dim, len(vals), from, to, d.Rows)
			}
			got := meanOf(vals)
			t.Logf("%s %s: mean %.2f/s over %d s (sent %.2f/s): %v", id, c.dim, got, len(vals),
				l.rate(time.Unix(from-1, 0), time.Unix(to, 0)), vals)
			if got < metricsRate*(1-metricsTolerance) || got > metricsRate*(1+metricsTolerance) {
				t.Errorf("%s %s: %.2f requests/s, want %d ± %.0f %%", id, c.dim, got, metricsRate, 100*metricsTolerance)
			}
			whole, err := lab.DataRange(ctx, id, wholeFrom, wholeTo)
			if err != nil {
				t.Fatal(err)
			}
			total := sumOf(whole.Column(c.dim))
			t.Logf("%s %s: %.1f requests from %d to %d (sent %d)", id, c.dim, total, wholeFrom, wholeTo, sent)
			if diff := total - float64(sent); diff < -0.02*float64(sent) || diff > 0.02*float64(sent) {
				t.Errorf("%s %s: %.1f requests over the whole load, sent %d: want within 2 %%", id, c.dim, total, sent)
			}
		}
		d, err := lab.DataRange(ctx, chartOf(contract.ChartRequests), wholeFrom, wholeTo)
		if err != nil {
			t.Fatal(err)
		}
		for _, dim := range []string{contract.Dim3xx, contract.Dim4xx, contract.Dim5xx} {
			if s := sumOf(d.Column(dim)); s != 0 {
				t.Errorf("%s %s: %v, want none", chartOf(contract.ChartRequests), dim, d.Column(dim))
			}
		}
	})

	t.Run("replicas and utilisation variables", func(t *testing.T) {
		waitReplicasChart(t, ctx, lab, chartOf(contract.ChartReplicas), 1)
		waitUtilisationVars(t, ctx, lab, chartOf(contract.ChartUtilization), 1, 10, 1)
	})

	e.scale(name, 2)
	t.Run("scaled to 2", func(t *testing.T) {
		waitReplicasChart(t, ctx, lab, chartOf(contract.ChartReplicas), 2)
		waitUtilisationVars(t, ctx, lab, chartOf(contract.ChartUtilization), 2, 10, 1)
	})

	// Removed: go.d sends the charts again with the "obsolete" option, and
	// Netdata 1.37.1 leaves obsolete charts out of /api/v1/charts.
	removed := time.Now()
	if err := e.sw.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Run("charts obsolete after removal", func(t *testing.T) {
		cs := waitLabCharts(t, lab, 20*time.Second, func(cs map[string]netdatalab.Chart) bool {
			for _, s := range specs {
				if _, ok := cs[chartOf(s.IDSuffix)]; ok {
					return false
				}
			}
			return true
		})
		t.Logf("charts left /api/v1/charts %.1f s after the removal started", time.Since(removed).Seconds())
		if _, ok := cs[contract.ChartType+".collector"]; !ok {
			t.Errorf("the collector's own chart is gone too: %v", chartIDs(cs))
		}
		// Obsolete, not deleted: still there by ID, no longer collected.
		before := map[string]int64{}
		for _, s := range specs {
			c, err := lab.Chart(ctx, chartOf(s.IDSuffix))
			if err != nil {
				t.Fatalf("obsolete chart %s: %v", chartOf(s.IDSuffix), err)
			}
			if c.Family != name {
				t.Errorf("obsolete chart %s: family %q, want %q", c.ID, c.Family, name)
			}
			before[c.ID] = c.LastEntry
		}
		time.Sleep(2500 * time.Millisecond)
		for id, last := range before {
			c, err := lab.Chart(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if c.LastEntry != last {
				t.Errorf("obsolete chart %s still collected: last_entry %d, then %d", id, last, c.LastEntry)
			}
		}
		if c, err := lab.Chart(ctx, contract.ChartType+".collector"); err != nil || c.LastEntry <= time.Now().Unix()-3 {
			t.Errorf("the collector's chart stopped too (last_entry %d, error %v): the check above proves nothing", c.LastEntry, err)
		}
	})
}

// socketGroups returns the groups that can use the Docker socket: the
// docker group and the socket's group (when root's, 0 is left out: the
// netdata user must not be root either way, checked by its uid).
func socketGroups(t *testing.T) map[int]bool {
	t.Helper()
	gids := map[int]bool{}
	if g, err := user.LookupGroup("docker"); err == nil {
		id, _ := strconv.Atoi(g.Gid)
		gids[id] = true
	}
	for _, sock := range []string{"/var/run/docker.sock", "/run/docker.sock"} {
		if fi, err := os.Stat(sock); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Gid != 0 && fi.Mode()&0o060 != 0 {
				gids[int(st.Gid)] = true
			}
		}
	}
	return gids
}

// waitLabPlugin waits for the lab's plugin to run and returns every
// process of the lab, the plugin among them.
func waitLabPlugin(t *testing.T, lab *netdatalab.Netdata) []netdatalab.Process {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		procs, err := lab.Processes()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs {
			if len(p.Cmdline) > 0 && p.Cmdline[0] == lab.PluginPath() {
				return procs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s among the lab's processes %v", lab.PluginPath(), procs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitLabCharts polls /api/v1/charts until done holds.
func waitLabCharts(t *testing.T, lab *netdatalab.Netdata, within time.Duration, done func(map[string]netdatalab.Chart) bool) map[string]netdatalab.Chart {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cs, err := lab.Charts(context.Background())
		if err == nil && done(cs) {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("charts not as expected within %s (error %v): %v", within, err, chartIDs(cs))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitReplicasChart waits until the replicas chart's newest values are n
// running, desired and scraped.
func waitReplicasChart(t *testing.T, ctx context.Context, lab *netdatalab.Netdata, chart string, n float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last map[string]float64
	for {
		d, err := lab.DataRange(ctx, chart, -3, 0)
		if err == nil {
			last = map[string]float64{}
			for _, dim := range []string{contract.DimRunning, contract.DimDesired, contract.DimScraped} {
				if v := d.Column(dim); len(v) > 0 {
					last[dim] = v[0]
				}
			}
			if last[contract.DimRunning] == n && last[contract.DimDesired] == n && last[contract.DimScraped] == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: newest values %v (error %v), want running, desired and scraped %v", chart, last, err, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitUtilisationVars waits for the utilisation chart's variables.
func waitUtilisationVars(t *testing.T, ctx context.Context, lab *netdatalab.Netdata, chart string, replicas, target, floor float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, err := lab.Charts(ctx)
		c, ok := cs[chart]
		if err == nil && ok && c.Variables[contract.VarReplicas] == replicas && c.Variables[contract.VarTarget] == target &&
			c.Variables[contract.VarFloor] == floor {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: chart variables %v (found %v, error %v), want %s %v, %s %v and %s %v", chart, c.Variables, ok, err,
				contract.VarReplicas, replicas, contract.VarTarget, target, contract.VarFloor, floor)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// pacedLoad sends a fixed number of requests per second over keep-alive
// connections and never retries: a socket error or a non-2xx answer is a
// failure. A schedule of absolute send times keeps the rate exact while a
// request is slow (another connection takes the next one).
type pacedLoad struct {
	sent atomic.Int64
	mu   sync.Mutex
	okAt []time.Time // when each 2xx answer's request was sent
	why  map[string]int
	stop chan struct{}
	wg   sync.WaitGroup
}

func startPacedLoad(addr, path string, rate, conns int) *pacedLoad {
	l := &pacedLoad{stop: make(chan struct{}), why: map[string]int{}}
	work := make(chan time.Time, rate*10)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(work)
		start, every := time.Now(), time.Second/time.Duration(rate)
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * every)
			select {
			case <-l.stop:
				return
			case <-time.After(time.Until(at)):
			}
			select {
			case work <- at:
				l.sent.Add(1)
			default:
				l.failure("no free connection")
				l.sent.Add(1)
			}
		}
	}()
	for range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			p := &rawPoster{addr: addr}
			defer p.close()
			for at := range work {
				if failure := p.post(path, 5*time.Second); failure != "" {
					l.failure(failure)
					continue
				}
				l.mu.Lock()
				l.okAt = append(l.okAt, at)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *pacedLoad) failure(why string) {
	l.mu.Lock()
	l.why[why]++
	l.mu.Unlock()
}

// end stops the load and returns requests sent, answered 2xx, and the
// failures by reason.
func (l *pacedLoad) end() (sent, ok int64, why map[string]int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent.Load(), int64(len(l.okAt)), l.why
}

// rate is the 2xx answers per second among requests sent in (from, to].
func (l *pacedLoad) rate(from, to time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.okAt {
		if at.After(from) && !at.After(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

func meanOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	return sumOf(vs) / float64(len(vs))
}

func sumOf(vs []float64) float64 {
	var s float64
	for _, v := range vs {
		s += v
	}
	return s
}

func chartIDs(m map[string]netdatalab.Chart) []string { return slices.Sorted(maps.Keys(m)) }
