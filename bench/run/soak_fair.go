package main

// The soak suite's first part: the fair CPU comparison of the goal
// (whole-host CPU per request through the gateway ≤ 2.5× straight to the
// replica), measured the way its baseline was (a quiet host, 16 connections,
// one replica of an in-process hello) and as Pulse ships: pulsed at its
// defaults (no request log), the function pinned at exactly one replica
// (scale min = max = 1, so the autoscaler cannot change it). The same
// closed-loop client loads the gateway and the replica's published address
// interleaved stretches, each after a short unmeasured settle, in the
// Thue–Morse order (gateway, direct, direct, gateway, direct, gateway,
// gateway, direct), which cancels a drift of the host's state that is
// linear (or quadratic) in time; /proc/stat gives the whole host's busy CPU
// over each stretch and /proc/<pid>/stat the process groups'.

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"time"

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

// soakFair is the fair comparison's result.
type soakFair struct {
	Function  string   `json:"function"`
	Handler   string   `json:"handler"`
	Scale     string   `json:"scale"`
	PulsedEnv []string `json:"pulsed_env"` // what differs from a default install
	Conns     int      `json:"connections"`
	StretchS  float64  `json:"stretch_s"`
	SettleS   float64  `json:"settle_s"`
	// The host before the first stretch: how long the harness waited for
	// it to be quiet, and its busy CPU (% of one core) in the last second.
	QuietWaitS   float64       `json:"quiet_wait_s"`
	QuietBusyPct float64       `json:"quiet_busy_core_pct"`
	Stretches    []soakStretch `json:"stretches"`
	// CPU sums the stretches per path.
	CPU soakCPU `json:"cpu"`
	// PairRatios are, for each pair of stretches (1–2, 3–4, …), the
	// gateway stretch's CPU per request over the direct one's.
	PairRatios []float64 `json:"pair_ratios"`
	Requests   int64     `json:"requests"` // every request of the comparison, settles included
	Failed     int64     `json:"failed"`
	// HAProxy is a few fields of its `show info` after the comparison.
	HAProxy map[string]string `json:"haproxy_info,omitempty"`
}

// soakStretch is one measured stretch of the comparison.
type soakStretch struct {
	Path   string  `json:"path"` // pathGateway or pathDirect
	Addr   string  `json:"addr"`
	StartS float64 `json:"start_s"` // after the comparison's start
	EndS   float64 `json:"end_s"`
	// OK counts the requests answered 2xx with the body that ended in the
	// stretch (the CPU's divisor); the rest are by start time.
	OK       int64     `json:"ok"`
	Requests int64     `json:"requests"`
	Failed   int64     `json:"failed"`
	RPS      float64   `json:"rps"`
	P50MS    float64   `json:"p50_ms"`
	P99MS    float64   `json:"p99_ms"`
	US       float64   `json:"us_per_request"` // whole-host busy CPU
	BusyPct  float64   `json:"busy_pct"`       // of the whole host
	CPU      cpuWindow `json:"cpu"`
	// Through the gateway, HAProxy's counters over the stretch: client
	// connections accepted and requests (show info's CumConns, CumReq), and
	// connections it opened to the function's servers (show stat's connect).
	HAProxyConns   int64 `json:"haproxy_conns,omitempty"`
	HAProxyReqs    int64 `json:"haproxy_requests,omitempty"`
	ServerConnects int64 `json:"server_connects,omitempty"`
}

// pinned is the scale of the functions before the soak: exactly one
// replica, whatever the load.
func pinned() function.Scale {
	return function.Scale{Metric: soakMetric, Target: soakTarget, Min: 1, Max: 1}
}

// beforeSoak runs the parts before the soak on pulsed's first lifetime, at
// its defaults: the fair comparison, then health under saturation. It ends
// that lifetime and removes both functions.
func (b *soakBench) beforeSoak(ctx context.Context) error {
	bins := map[string][]byte{}
	for _, a := range []string{"inproc", "watchdog", "burnecho"} {
		var err error
		if bins[a], err = os.ReadFile(b.arts.path(a)); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		spec    function.Spec
		wd, bin []byte
	}{
		{function.Spec{Name: b.hello, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".", Timeout: soakTimeout, MaxBody: 1 << 20, Scale: pinned()},
			nil, bins["inproc"]},
		{function.Spec{Name: b.burn, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn", Timeout: soakTimeout, MaxBody: 1 << 20, Scale: pinned(),
			Env: map[string]string{"BURN_MS": strconv.Itoa(satBurnMS)}}, bins["watchdog"], bins["burnecho"]},
	} {
		if _, _, err := b.deployFunction(ctx, &d.spec, d.wd, d.bin, 0); err != nil {
			return err
		}
	}
	for _, fn := range []string{b.hello, b.burn} {
		wctx, cancel := context.WithTimeout(ctx, soakRoute)
		_, err := b.sw.WaitReady(wctx, fn, 1)
		cancel()
		if err != nil {
			return err
		}
	}
	changed, err := b.startPulsed(ctx)
	if err != nil {
		return err
	}
	b.rep.Fair = soakFair{Function: b.hello, Handler: inprocHandler, Scale: fmt.Sprintf("%s target %g min 1 max 1", soakMetric, float64(soakTarget)),
		PulsedEnv: changed, Conns: fairConns, StretchS: fairStretch.Seconds(), SettleS: fairSettle.Seconds()}
	b.rep.Saturation = soakSat{Function: b.burn, Handler: satHandler, BurnMS: satBurnMS, Conns: satConns, DurationS: satDuration.Seconds(), PulsedEnv: changed}
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

// fairCPU runs the fair comparison.
func (b *soakBench) fairCPU(ctx context.Context) error {
	fr := &b.rep.Fair
	f, err := b.catalogFunction(ctx, b.hello)
	if err != nil {
		return err
	}
	if len(f.Replicas) != 1 || !f.Replicas[0].Routed {
		return fmt.Errorf("%s: %d replicas in pulsed's catalog, want one routed", b.hello, len(f.Replicas))
	}
	direct, _ := loopbackAddr(f.Replicas[0].Addr)
	// The direct path carries the replica credential, as HAProxy's
	// requests do; a replica that does not check it is noted.
	if refused, err := refusesWithout(ctx, "http://"+direct+"/", b.body); err != nil {
		return err
	} else if !refused {
		b.log.Warn("replica answered without the replica credential", "addr", direct)
		b.rep.Notes = append(b.rep.Notes, "fair comparison: "+noCredentialCheck)
	}
	watch := b.procWatch()
	b.watchReplicas(ctx, b.hello, &watch)
	backend := gateway.BackendName(b.hello)

	waited, busy, err := waitQuiet(ctx, b.env.clk, fairQuietWait)
	if err != nil {
		return err
	}
	fr.QuietWaitS, fr.QuietBusyPct = round3(waited.Seconds()), round3(busy)
	b.log.Info("fair CPU comparison", "function", b.hello, "connections", fairConns, "stretches", 2*fairPairs, "each", fairStretch, "quiet_wait", waited.Round(time.Millisecond))
	t0 := time.Now()
	load := newClosedLoop(t0, b.body, b.cred.header())
	defer load.end() // a second end is a no-op
	var stretches []soakStretch
	for i := range 2 * fairPairs {
		st := soakStretch{Path: pathGateway, Addr: b.gwAddr}
		if fairDirect(i) {
			st.Path, st.Addr = pathDirect, direct
			load.set(fairConns, direct, "/", true)
		} else {
			load.set(fairConns, b.gwAddr, "/function/"+b.hello, false)
		}
		if err := sleepCtx(ctx, fairSettle); err != nil {
			return err
		}
		var c0, c1 haCounters
		if st.Path == pathGateway {
			c0, _ = b.haCounters(ctx, backend)
		}
		m0, start := b.mark(watch, true), time.Now()
		if err := sleepCtx(ctx, fairStretch); err != nil {
			return err
		}
		m1, end := b.mark(watch, true), time.Now()
		if st.Path == pathGateway {
			c1, _ = b.haCounters(ctx, backend)
			st.HAProxyConns, st.HAProxyReqs, st.ServerConnects = c1.conns-c0.conns, c1.reqs-c0.reqs, c1.connects-c0.connects
		}
		st.StartS, st.EndS = round3(start.Sub(t0).Seconds()), round3(end.Sub(t0).Seconds())
		st.CPU = windowOf(end.Sub(start).Seconds(), m0, m1)
		stretches = append(stretches, st)
		b.log.Info("stretch", "path", st.Path, "busy_ticks", st.CPU.Busy)
	}
	recs, fails := load.end()
	if out, err := b.rt.Exec(ctx, "show info"); err == nil {
		info := parseShowInfo(out)
		fr.HAProxy = map[string]string{}
		for _, k := range []string{"Version", "Nbthread", "Maxconn", "CumConns", "CumReq", "Idle_pct"} {
			fr.HAProxy[k] = info[k]
		}
	}
	summarizeFair(fr, stretches, recs, len(fails), b.env.clk)
	b.log.Info("fair CPU comparison done", "gateway_us", fr.CPU.GatewayUS, "direct_us", fr.CPU.DirectUS, "ratio", fr.CPU.Ratio, "failed", fr.Failed)
	return nil
}

// summarizeFair fills fr from the stretches and the client's records (clk
// ticks a second).
func summarizeFair(fr *soakFair, stretches []soakStretch, recs []loadReq, failed int, clk float64) {
	phases := make([]soakPhase, len(stretches))
	for i, st := range stretches {
		phases[i] = soakPhase{Name: st.Path, StartS: st.StartS, EndS: st.EndS, Conns: fr.Conns, Direct: st.Path == pathDirect}
	}
	mins := soakMinutes(recs, nil, phases, nil, nil)
	fr.CPU = soakCPU{Conns: fr.Conns, GatewayReplicas: "1"}
	fr.PairRatios = nil
	var pair [2]float64 // gateway, direct
	for i := range stretches {
		st := &stretches[i]
		direct := st.Path == pathDirect
		st.OK = okIn(recs, st.StartS, st.EndS, direct)
		st.Requests, st.Failed, st.RPS, st.P50MS, st.P99MS = mins[i].Requests, mins[i].Failed, mins[i].RPS, mins[i].P50MS, mins[i].P99MS
		st.US = cpuPerRequest(st.CPU.Busy, clk, st.OK)
		st.BusyPct = busyPct(st.CPU.Busy, st.CPU.Total)
		fr.CPU.add(direct, st.CPU)
		if direct {
			fr.CPU.DirectRequests += st.OK
			pair[1] = st.US
		} else {
			fr.CPU.GatewayRequests += st.OK
			pair[0] = st.US
		}
		if i%2 == 1 {
			if pair[0] > 0 && pair[1] > 0 {
				fr.PairRatios = append(fr.PairRatios, round3(pair[0]/pair[1]))
			}
			pair = [2]float64{}
		}
	}
	fr.CPU.finish(clk)
	fr.Stretches = stretches
	fr.Requests, fr.Failed = int64(len(recs)), int64(failed)
}

// fairDirect reports whether stretch i goes straight to the replica: the
// Thue–Morse sequence (the parity of i's one bits), so that every pair of
// stretches has one of each path and a drift over the comparison falls on
// both paths alike.
func fairDirect(i int) bool { return bits.OnesCount(uint(i))%2 == 1 }

// haCounters are HAProxy's cumulative counters the fair comparison reads.
type haCounters struct {
	conns, reqs, connects int64
}

// haCounters reads HAProxy's cumulative client connections and requests
// (show info) and the connections it opened to backend's servers (show
// stat).
func (b *soakBench) haCounters(ctx context.Context, backend string) (haCounters, error) {
	var c haCounters
	out, err := b.rt.Exec(ctx, "show info")
	if err != nil {
		return c, err
	}
	info := parseShowInfo(out)
	var errs []error
	for k, dst := range map[string]*int64{"CumConns": &c.conns, "CumReq": &c.reqs} {
		n, err := strconv.ParseInt(info[k], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("show info %s: %w", k, err))
		}
		*dst = n
	}
	rows, err := serverStats(ctx, b.rt, backend)
	if err != nil {
		return c, err
	}
	for _, r := range rows {
		c.connects += r.Connects
	}
	return c, errors.Join(errs...)
}

// --- rendering ---

func fairCaption(f soakFair) string {
	return fmt.Sprintf("The fair CPU comparison (the goal's figure), before the soak: pulsed at its defaults (no request log) but for %s, %s (%s) pinned at one replica "+
		"(scale %s), %d closed-loop connections of the same client through the gateway and straight to the replica's published address "+
		"(with the replica credential on every request, as HAProxy sends it: the direct baseline includes the watchdog's credential check), in %d interleaved "+
		"stretches (Thue–Morse order: a drift in time falls on both paths alike) of %.0f s measured after %.0f s of settling each; the host waited %.0f s to be quiet before (busy %.0f %% of a core then). "+
		"`ok` = requests answered 2xx with the body that ended in the stretch, the CPU's divisor; the rest by start time; whole-host CPU from /proc/stat; "+
		"through the gateway HAProxy's own counters over the stretch: connections accepted and requests (show info's CumConns and CumReq: every frontend and the CLI, "+
		"so Netdata's scrapes and pulsed's polls are in them) and connections opened to the replica (show stat's connect):",
		strings.Join(f.PulsedEnv, " "), f.Function, f.Handler, f.Scale, f.Conns, len(f.Stretches), f.StretchS, f.SettleS, f.QuietWaitS, f.QuietBusyPct)
}

var fairStretchHeader = []string{"stretch", "path", "from–to s", "ok", "failed", "rps", "p50 ms", "p99 ms", "host busy %", "whole-host CPU/req µs",
	"HAProxy conns (all)", "HAProxy requests (all)", "connects to the replica"}

func fairStretchRows(f soakFair) [][]string {
	var rows [][]string
	for i, st := range f.Stretches {
		ha := []string{"", "", ""}
		if st.Path == pathGateway {
			ha = []string{strconv.FormatInt(st.HAProxyConns, 10), strconv.FormatInt(st.HAProxyReqs, 10), strconv.FormatInt(st.ServerConnects, 10)}
		}
		rows = append(rows, append([]string{strconv.Itoa(i + 1), st.Path, fmt.Sprintf("%.1f–%.1f", st.StartS, st.EndS), strconv.FormatInt(st.OK, 10),
			strconv.FormatInt(st.Failed, 10), fmt.Sprintf("%.0f", st.RPS), fmt.Sprintf("%.2f", st.P50MS), fmt.Sprintf("%.2f", st.P99MS),
			fmt.Sprintf("%.0f", st.BusyPct), fmt.Sprintf("%.1f", st.US)}, ha...))
	}
	c := f.CPU
	if len(rows) > 0 {
		rows = append(rows, []string{"all", pathGateway, fmt.Sprintf("%.0f s", c.GatewayS), strconv.FormatInt(c.GatewayRequests, 10), "", "", "", "",
			fmt.Sprintf("%.0f", c.GatewayBusyPct), fmt.Sprintf("%.1f", c.GatewayUS), "", "", ""},
			[]string{"all", pathDirect, fmt.Sprintf("%.0f s", c.DirectS), strconv.FormatInt(c.DirectRequests, 10), "", "", "", "",
				fmt.Sprintf("%.0f", c.DirectBusyPct), fmt.Sprintf("%.1f", c.DirectUS), "", "", ""},
			[]string{"ratio", "gateway ÷ direct", "", "", "", "", "", "", "", fmt.Sprintf("%.2f× (without the client: %.2f×)", c.Ratio, c.ServerRatio), "", "", ""})
	}
	return rows
}

const fairCPUCaption = "Where the fair comparison's CPU per request went, per path (own utime + stime of each group from /proc over the stretches; " +
	"groups as in the soak's table below; harness = the load's client here: the request log is off and no poller runs):"
