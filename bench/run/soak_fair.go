package main

// The soak's first part, the CPU goal's figure: pulsed at its defaults (no
// request log), an in-process hello pinned at one replica, fairConns
// connections through the gateway and straight to the replica in
// interleaved stretches (Thue–Morse order: a drift of the host falls on both
// paths alike); the whole host's busy CPU per request answered, and each
// process group's. Also the CPU accounting the soak's CPU minutes share.

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
)

// Settings of the fair comparison.
const (
	fairConns     = 16
	fairPairs     = 4                // gateway + direct stretches
	fairStretch   = 15 * time.Second // measured, per stretch
	fairSettle    = 2 * time.Second  // unmeasured, after each switch of path
	fairQuietWait = 30 * time.Second // before the first stretch, for the host to be quiet
)

// beforeSoak runs the fair comparison, then the saturation, on pulsed's
// first lifetime at its defaults; then ends it and removes both functions.
func (b *soakBench) beforeSoak(ctx context.Context) error {
	pinned := function.Scale{Metric: soakMetric, Target: soakTarget, Min: 1, Max: 1}
	if _, err := b.deployPinned(ctx, &function.Spec{Name: b.hello, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".", Scale: pinned}, "", "inproc"); err != nil {
		return err
	}
	if _, err := b.deployPinned(ctx, &function.Spec{Name: b.burn, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn", Scale: pinned,
		Env: map[string]string{"BURN_MS": strconv.Itoa(satBurnMS)}}, "watchdog", "burnecho"); err != nil {
		return err
	}
	env, err := b.startPulsed(ctx)
	if err != nil {
		return err
	}
	b.rep.Record("pulsed_env_before_soak", env)
	for _, fn := range []string{b.hello, b.burn} {
		if err := b.waitRouted(ctx, fn, 1, b.body); err != nil {
			return err
		}
	}
	if err := b.fairCPU(ctx); err != nil {
		return err
	}
	if err := b.saturation(ctx); err != nil {
		return err
	}
	b.rep.Cleanup = append(b.rep.Cleanup, b.stopPulsed()...)
	for _, fn := range []string{b.hello, b.burn} {
		if err := b.remove(ctx, fn); err != nil {
			return err
		}
	}
	return nil
}

// deployPinned deploys spec (the artifacts wd, "" for none, and fn) with
// the soak's timeout and body limit, and waits for its first replica.
func (b *soakBench) deployPinned(ctx context.Context, spec *function.Spec, wd, fn string) (function.Image, error) {
	spec.Timeout, spec.MaxBody = soakTimeout, 1<<20
	bins := map[string][]byte{}
	for _, a := range slices.DeleteFunc([]string{wd, fn}, func(a string) bool { return a == "" }) {
		var err error
		if bins[a], err = os.ReadFile(b.arts.path(a)); err != nil {
			return function.Image{}, fmt.Errorf("deploy %s: %w", spec.Name, err)
		}
	}
	img, _, err := b.deployFunction(ctx, spec, bins[wd], bins[fn], 0)
	if err != nil {
		return img, err
	}
	wctx, cancel := context.WithTimeout(ctx, soakRoute)
	defer cancel()
	_, err = b.sw.WaitReady(wctx, spec.Name, 1)
	return img, err
}

// stretch is one measured stretch of the fair comparison: its path, its
// span in seconds after the comparison's start, its CPU ticks and, through
// the gateway, HAProxy's counters over it.
type stretch struct {
	path     string
	from, to float64
	ticks    map[string]float64
	ha       map[string]float64
}

// fairCPU runs the fair comparison and adds its rows.
func (b *soakBench) fairCPU(ctx context.Context) error {
	f, err := b.catalogFunction(ctx, b.hello)
	if err != nil {
		return err
	}
	if len(f.Replicas) != 1 || !f.Replicas[0].Routed {
		return fmt.Errorf("%s: %d replicas in pulsed's catalog, want one routed", b.hello, len(f.Replicas))
	}
	direct, _ := loopbackAddr(f.Replicas[0].Addr)
	// The direct path carries the replica credential, as HAProxy's requests do.
	if refused, err := refusesWithout(ctx, "http://"+direct+"/", b.body); err != nil {
		return err
	} else if !refused {
		b.rep.Note("fair comparison: %s", noCredentialCheck)
	}
	watch := b.procWatch()
	b.watchReplicas(ctx, b.hello, &watch)
	waited, busy, err := waitQuiet(ctx, b.env.clk, fairQuietWait)
	if err != nil {
		return err
	}
	b.rep.Record("fair_quiet", map[string]float64{"waited_s": report.Round3(waited.Seconds()), "busy_core_pct": report.Round3(busy)})
	if busy >= quietCorePct {
		b.rep.Note("the host was still %.0f %% of a core busy after %.0f s of waiting when the fair comparison began", busy, waited.Seconds())
	}
	b.log.Info("fair CPU comparison", "function", b.hello, "connections", fairConns, "stretches", 2*fairPairs, "each", fairStretch)
	t0 := time.Now()
	load := newClosedLoop(t0, b.body, b.cred.header())
	defer load.end() // a second end is a no-op
	var sts []stretch
	for i := range 2 * fairPairs {
		st := stretch{path: pathGateway}
		if fairDirect(i) {
			st.path = pathDirect
			load.set(fairConns, direct, "/", true)
		} else {
			load.set(fairConns, b.gwAddr, "/function/"+b.hello, false)
		}
		if err := sleepCtx(ctx, fairSettle); err != nil {
			return err
		}
		c0 := b.haCounters(ctx, st.path)
		m0, start := b.mark(watch, true), time.Now()
		if err := sleepCtx(ctx, fairStretch); err != nil {
			return err
		}
		m1, end := b.mark(watch, true), time.Now()
		if c1 := b.haCounters(ctx, st.path); c0 != nil && c1 != nil {
			st.ha = map[string]float64{}
			for k, v := range c1 {
				st.ha[k] = v - c0[k]
			}
		}
		st.from, st.to, st.ticks = report.Round3(start.Sub(t0).Seconds()), report.Round3(end.Sub(t0).Seconds()), cpuTicks(nil, m0, m1)
		sts = append(sts, st)
	}
	recs, fails := load.end()
	if len(fails) > 0 {
		b.rep.Note("%d request(s) of the fair comparison failed", len(fails))
	}
	for _, r := range fairRows(sts, recs, b.env.clk) {
		b.rep.Add(r)
	}
	return nil
}

// fairDirect reports whether stretch i goes straight to the replica: the
// Thue–Morse sequence (the parity of i's one bits).
func fairDirect(i int) bool { return bits.OnesCount(uint(i))%2 == 1 }

// haCounters reads, on the gateway's path, HAProxy's cumulative client
// connections and requests (show info's CumConns, CumReq: every frontend
// and the CLI) and the connections it opened to the hello's servers (show
// stat's connect); nil on the direct path or when one could not be read.
func (b *soakBench) haCounters(ctx context.Context, path string) map[string]float64 {
	if path != pathGateway {
		return nil
	}
	out, err := b.rt.Exec(ctx, "show info")
	rows, serr := serverStats(ctx, b.rt, gateway.BackendName(b.hello))
	if err != nil || serr != nil {
		return nil
	}
	info := parseShowInfo(out)
	c := map[string]float64{}
	for k, name := range map[string]string{"CumConns": "haproxy_conns", "CumReq": "haproxy_requests"} {
		if c[name], err = strconv.ParseFloat(info[k], 64); err != nil {
			return nil
		}
	}
	for _, r := range rows {
		c["server_connects"] += float64(r.Connects)
	}
	return c
}

// fairRows are the stretches' rows (requests by start time; ok = answered
// 2xx with the body and ended in the stretch, the CPU's divisor) and each
// path's fair_cpu row over its stretches; clk is the clock's ticks a second.
func fairRows(sts []stretch, recs []loadReq, clk float64) []*report.Row {
	ts := tallyByStart(recs, nil, len(sts), func(ns int64) int {
		return slices.IndexFunc(sts, func(st stretch) bool { return float64(ns)/1e9 >= st.from && float64(ns)/1e9 < st.to })
	})
	var out []*report.Row
	sum, ok, secs := map[string]map[string]float64{}, map[string]int64{}, map[string]float64{}
	for i, st := range sts {
		n := okIn(recs, st.from, st.to, st.path == pathDirect)
		r := report.NewRow("stretch", "stretch", i+1, "path", st.path).PutAll(ts[i].values(st.to - st.from)).PutAll(st.ha)
		out = append(out, r.PutAll(map[string]float64{"start_s": st.from, "end_s": st.to, "ok": float64(n),
			"busy_pct": busyPct(uint64(st.ticks["busy"]), uint64(st.ticks["total"])), "cpu_per_req_us": perRequest(st.ticks["busy"], clk, n)}))
		sum[st.path], ok[st.path], secs[st.path] = addTicks(sum[st.path], st.ticks), ok[st.path]+n, secs[st.path]+st.to-st.from
	}
	for _, p := range []string{pathGateway, pathDirect} {
		if sum[p] != nil {
			out = append(out, cpuRow("fair_cpu", p, sum[p], secs[p], ok[p], clk))
		}
	}
	return out
}

// cpuMark is the host's CPU and, if read, the process groups' at one
// moment.
type cpuMark struct {
	host           hostCPU
	groups, others procCPU
}

// mark reads the host's CPU, then (groups) the CPU of w's groups, of the
// harness and of the lab Netdata, and of every other process.
func (l *pulseLab) mark(w procWatch, groups bool) cpuMark {
	var m cpuMark
	m.host, _ = readHostCPU("/proc")
	if groups {
		m.groups, m.others = l.sampleGroups(w)
	}
	return m
}

// cpuTicks adds the CPU between two marks to t, in ticks by name: busy,
// irq (irq + softirq, part of busy), total, steal, each process group's,
// and "other:<command>" for each process outside them.
func cpuTicks(t map[string]float64, from, to cpuMark) map[string]float64 {
	d := map[string]float64{"busy": float64(to.host.Busy - from.host.Busy), "irq": float64(to.host.IRQ - from.host.IRQ),
		"total": float64(to.host.Total - from.host.Total), "steal": float64(to.host.Steal - from.host.Steal)}
	for _, p := range []struct {
		prefix        string
		before, after procCPU
	}{{"", from.groups, to.groups}, {"other:", from.others, to.others}} {
		for g, m := range p.after {
			if v, _, _ := cpuDelta(p.before[g], m); v > 0 || p.prefix == "" {
				d[p.prefix+g] = float64(v)
			}
		}
	}
	return addTicks(t, d)
}

// addTicks adds the ticks of d to t.
func addTicks(t, d map[string]float64) map[string]float64 {
	if t == nil {
		t = map[string]float64{}
	}
	for k, v := range d {
		t[k] += v
	}
	return t
}

// soakGroups are the process groups of the CPU table, in order.
var soakGroups = []string{groupHAProxy, groupDockerProxy, groupReplicas, groupHarness, groupPulsed, groupNetdata}

// cpuRow is one path's row of kind over seconds: its ticks (<name>_ticks)
// and, per request answered, the whole host's CPU (cpu_per_req_us), each
// group's and process's (<name>_us), the rest (other_us: negative when the
// processes' own times add up to more than /proc/stat's busy time), irq +
// softirq, and the host without the harness (server_cpu_per_req_us).
func cpuRow(kind, path string, t map[string]float64, seconds float64, requests int64, clk float64) *report.Row {
	r := report.NewRow(kind, "path", path).Put("seconds", seconds).Put("requests", float64(requests))
	per := func(ticks float64) float64 { return perRequest(ticks, clk, requests) }
	rest, grouped := t["busy"], false
	for k, v := range t {
		r.Put(k+"_ticks", v)
		if slices.Contains(soakGroups, k) || strings.HasPrefix(k, "other:") {
			r.Put(k+"_us", per(v))
		}
		if slices.Contains(soakGroups, k) {
			rest, grouped = rest-v, true
		}
	}
	r.Put("cpu_per_req_us", per(t["busy"])).Put("irq_us", per(t["irq"])).Put("busy_pct", busyPct(uint64(t["busy"]), uint64(t["total"])))
	if grouped {
		r.Put("other_us", per(rest))
	}
	if h := t[groupHarness]; h > 0 && h < t["busy"] {
		r.Put("server_cpu_per_req_us", per(t["busy"]-h))
	}
	return r
}

// perRequest is µs of CPU per request from ticks, NaN without requests.
func perRequest(ticks, clk float64, requests int64) float64 {
	if requests <= 0 || clk <= 0 {
		return math.NaN()
	}
	return report.Round3(ticks / clk * 1e6 / float64(requests))
}
