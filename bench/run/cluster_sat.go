package main

// The cluster suite's idle and saturation stages (bench/README.md); the
// saturation's workload is the soak's (soak_sat.go).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// idle measures the lab's idle cost: a row per node, pulsed, HAProxy and
// their total (CPU in % of one core, memory in MB).
func (b *clusterBench) idle(ctx context.Context) error {
	if err := b.usePulsed(ctx, clusterDefaults); err != nil {
		return err
	}
	spread, _, err := b.taskSpread(ctx)
	if err != nil {
		return err
	}
	if _, _, err := waitQuiet(ctx, b.env.clk, 10*time.Second); err != nil { // settle: the deploy's and pulsed's start-up work done
		return err
	}
	c0, err := b.idleSample()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sleepCtx(ctx, time.Duration(b.plan.IdleS*float64(time.Second))); err != nil {
		return err
	}
	c1, err := b.idleSample()
	if err != nil {
		return err
	}
	window := time.Since(start).Seconds()
	total := report.NewRow("idle", "what", "total").Put("window_s", window).Put("host_busy_pct", 100*float64(c1.host.Busy-c0.host.Busy)/b.env.clk/window)
	for _, n := range b.lab.nodes {
		r := report.NewRow("idle", "what", n.Name).Put("replicas", float64(spread[n.Name])).
			Put("cpu_pct", 100*float64(c1.nodes[n.Name]-c0.nodes[n.Name])/1e9/window).Put("processes", float64(len(nodeProcs(n))))
		if v, err := n.cgroupInt("memory", "memory.usage_in_bytes"); err == nil {
			r.Put("mem_usage_mb", float64(v)/mb)
		}
		if s, err := os.ReadFile(n.cgroupFile("memory", "memory.stat")); err == nil {
			st := parseMemoryStat(string(s))
			r.Put("rss_mb", float64(st["total_rss"])/mb).Put("cache_mb", float64(st["total_cache"])/mb)
		}
		for _, m := range []string{"cpu_pct", "mem_usage_mb", "rss_mb"} {
			total.Values["nodes_"+m] += r.Values[m]
		}
		b.rep.Add(r)
	}
	pct := func(k string) float64 {
		d, _, _ := cpuDelta(c0.procs[k], c1.procs[k])
		return 100 * float64(d) / b.env.clk / window
	}
	var haKB int64
	for p := range c1.procs["haproxy"] {
		if m, err := readStatus("/proc", p.PID); err == nil {
			haKB += m.RSSKB
		}
	}
	pm, _ := readStatus("/proc", b.pulsed.pid())
	b.rep.Add(report.NewRow("idle", "what", "pulsed").PutAll(map[string]float64{"cpu_pct": pct("pulsed"), "rss_mb": kbToMB(pm.RSSKB), "processes": 1}))
	b.rep.Add(report.NewRow("idle", "what", "HAProxy").PutAll(map[string]float64{"cpu_pct": pct("haproxy"), "rss_mb": kbToMB(haKB), "processes": float64(len(c1.procs["haproxy"]))}))
	total.PutAll(map[string]float64{"pulsed_cpu_pct": pct("pulsed"), "haproxy_cpu_pct": pct("haproxy"), "pulsed_rss_mb": kbToMB(pm.RSSKB), "haproxy_rss_mb": kbToMB(haKB),
		"cpu_pct": total.V("nodes_cpu_pct") + pct("pulsed") + pct("haproxy"), "mem_usage_mb": total.V("nodes_mem_usage_mb"),
		"rss_mb": total.V("nodes_rss_mb") + kbToMB(pm.RSSKB) + kbToMB(haKB)})
	b.rep.Add(total)
	b.log.Info("idle", "cpu_pct", total.V("cpu_pct"), "nodes_mem_mb", total.V("mem_usage_mb"), "host_busy_pct", total.V("host_busy_pct"))
	return nil
}

// idleSample is a reading of the nodes' CPU (ns), pulsed's and HAProxy's
// processes' and the host's (ticks).
type idleSample struct {
	nodes map[string]int64
	procs map[string]map[procKey]uint64
	host  hostCPU
}

// idleSample reads it.
func (b *clusterBench) idleSample() (idleSample, error) {
	s := idleSample{nodes: map[string]int64{}, procs: map[string]map[procKey]uint64{"pulsed": {}, "haproxy": {}}}
	var err error
	for _, n := range b.lab.nodes {
		if s.nodes[n.Name], err = n.cgroupInt("cpuacct", "cpuacct.usage"); err != nil {
			return s, fmt.Errorf("cpu of %s: %w", n.Name, err)
		}
	}
	if st, err := readStat("/proc", b.pulsed.pid()); err == nil {
		s.procs["pulsed"][procKey{st.PID, st.StartTime}] = st.UTime + st.STime
	}
	hs, err := findHAProxies("/proc", b.stateDir)
	if err != nil {
		return s, err
	}
	for _, p := range hs {
		if st, err := readStat("/proc", p.PID); err == nil {
			s.procs["haproxy"][p] = st.UTime + st.STime
		}
	}
	s.host, err = readHostCPU("/proc")
	return s, err
}

// parseMemoryStat reads a cgroup v1 memory.stat ("name value" lines).
func parseMemoryStat(s string) map[string]int64 {
	m := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				m[k] = n
			}
		}
	}
	return m
}

// Settings of the saturation's health probes.
const (
	healthProbeEvery = 250 * time.Millisecond
	healthProbeLimit = 10 * time.Second
)

// saturation runs pulsed's defaults, then the candidates until one keeps
// the replica in rotation: the failover's second setting.
func (b *clusterBench) saturation(ctx context.Context) error {
	for _, s := range append([]pulsedSetting{clusterDefaults}, clusterFastCandidates...) {
		if err := b.usePulsed(ctx, s); err != nil {
			return err
		}
		r := report.NewRow("saturation", "pulsed", s.Name)
		r.Fail(b.satRun(ctx, r))
		b.rep.Add(r)
		b.log.Info("saturation", "setting", s.Name, "kept", r.V("kept"), "chkdown", r.V("chkdown"), "chkfail", r.V("chkfail"),
			"failed", r.V("failed"), "health_p99_ms", r.V("health_p99_ms"), "health_max_ms", r.V("health_max_ms"), "err", r.Error)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case r.Error != "" && s.Name == clusterDefaults.Name:
			return fmt.Errorf("saturation at pulsed's defaults: %s", r.Error)
		case r.V("kept") == 1 && s.Name != clusterDefaults.Name:
			b.plan.Fast = s.Name
			return nil
		}
	}
	return nil
}

// satRun saturates one replica of the burning function into r, summing
// HAProxy's counters over the load, and times its health endpoint.
func (b *clusterBench) satRun(ctx context.Context, r *report.Row) error {
	if err := b.deploy(ctx, b.burn, b.burnFn, 1, map[string]string{"BURN_MS": strconv.Itoa(satBurnMS)}); err != nil {
		return err
	}
	defer func() {
		if err := b.remove(context.WithoutCancel(ctx), b.burn); err != nil {
			b.rep.Note("saturation: remove %s: %v", b.burn, err)
		}
	}()
	if err := b.waitServers(ctx, b.burn, 1, true); err != nil {
		return err
	}
	f, err := b.catalogFunction(ctx, b.burn)
	if err != nil || len(f.Replicas) != 1 {
		return fmt.Errorf("the saturated replica in pulsed's catalog: %d replicas, %v", len(f.Replicas), err)
	}
	addr := f.Replicas[0].Addr
	r.Labels["node"] = b.nodeAt(addr)
	if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	}
	last, sums := map[string]gateway.ServerStat{}, map[string]*[3]int64{}
	count := func() {
		rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.burn))
		if err != nil {
			r.Values["poll_errors"]++
			return
		}
		for _, s := range rows {
			prev := last[s.Server]
			last[s.Server] = s
			if sums[s.Server] == nil {
				sums[s.Server] = &[3]int64{}
			}
			for i, c := range [][2]int64{{s.Downs, prev.Downs}, {s.CheckFails, prev.CheckFails}, {s.Sessions, prev.Sessions}} {
				if c[0] < c[1] { // restarted (a reload): all new
					c[1] = 0
				}
				sums[s.Server][i] += c[0] - c[1]
			}
		}
	}
	count()
	clear(sums)
	h0, _ := readHostCPU("/proc")
	t0 := time.Now()
	load := newClosedLoop(t0, payload(64), nil)
	load.set(satConns, b.gwAddr, "/function/"+b.burn, false)
	lctx, cancel := context.WithTimeout(ctx, time.Duration(b.plan.SatS*float64(time.Second)))
	var health []float64
	var probeFails int
	var wg sync.WaitGroup
	wg.Go(func() { health, probeFails = b.probeHealth(lctx, addr) })
	every(lctx, time.Second, count)
	cancel()
	wg.Wait()
	recs, fails := load.end()
	h1, _ := readHostCPU("/proc")
	if err := ctx.Err(); err != nil {
		return err
	}
	count()
	lat := make([]float64, len(recs))
	for i, q := range recs {
		lat[i] = float64(q.LatencyUS) / 1000
	}
	failed := map[string]int{}
	for _, f := range fails {
		if k := reqErrName(f.Req.Err); f.Req.Status == 0 {
			failed[k]++
		} else {
			failed[k+" "+strconv.Itoa(int(f.Req.Status))]++
		}
	}
	for _, k := range slices.Sorted(maps.Keys(failed)) {
		r.Flag("%d failed requests: %s", failed[k], k)
	}
	var downs, checkFails, detours float64
	for name, s := range sums {
		if name == gateway.BackupServerName {
			detours += float64(s[2])
		} else {
			downs, checkFails = downs+float64(s[0]), checkFails+float64(s[1])
		}
	}
	ok := len(recs) - len(fails)
	r.PutAll(map[string]float64{"chkdown": downs, "chkfail": checkFails, "detours": detours,
		"requests": float64(len(recs)), "failed": float64(len(fails)),
		"p50_ms": report.Percentile(lat, 50), "p99_ms": report.Percentile(lat, 99), "max_ms": report.Percentile(lat, 100),
		"health_probes": float64(len(health) + probeFails), "health_failed": float64(probeFails),
		"health_p50_ms": report.Percentile(health, 50), "health_p99_ms": report.Percentile(health, 99), "health_max_ms": report.Percentile(health, 100),
		"host_busy_pct": 100 * float64(h1.Busy-h0.Busy) / float64(h1.Total-h0.Total), "host_ms_per_request": float64(h1.Busy-h0.Busy) / b.env.clk * 1000 / float64(ok)})
	if downs+checkFails+detours == 0 && len(fails) == 0 && ok > 0 {
		r.Put("kept", 1)
	} else {
		r.Put("kept", 0)
	}
	return nil
}

// probeHealth GETs the health endpoint at addr every healthProbeEvery until
// ctx ends: the answers' latencies in ms, and the failures.
func (b *clusterBench) probeHealth(ctx context.Context, addr string) (ms []float64, failed int) {
	c := &http.Client{Timeout: healthProbeLimit, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	every(ctx, healthProbeEvery, func() {
		if ctx.Err() != nil {
			return
		}
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, "http://"+addr+contract.HealthPath, nil)
		if err != nil {
			failed++
			return
		}
		addHeaders(req, b.cred.header())
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			failed++
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			failed++
			return
		}
		ms = append(ms, float64(time.Since(start))/float64(time.Millisecond))
	})
	return ms, failed
}

// nodeAt names the node whose address is addr's host.
func (b *clusterBench) nodeAt(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	if i := slices.IndexFunc(b.lab.nodes, func(n labNode) bool { return n.Addr == h }); i >= 0 {
		return b.lab.nodes[i].Name
	}
	return h
}
