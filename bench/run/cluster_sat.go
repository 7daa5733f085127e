package main

// The cluster suite's saturation: which health-check setting is fast enough
// for failover and still keeps a saturated replica in rotation. The soak's
// saturation workload (soak_sat.go: a fork-mode C handler burning 15 ms of
// CPU per request, 64 closed-loop connections through the gateway) on one
// replica in the lab, first with pulsed at its defaults, then with each of
// clusterFastCandidates in turn until one passes: not one failed health
// check (so no DOWN transition of the replica's server), no request
// detoured through the cold-start path, none failed. Meanwhile the harness
// asks the replica's health endpoint directly every 250 ms and times the
// answers: how late a saturated replica answers HAProxy's checks.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// clusterSat is one saturation run.
type clusterSat struct {
	Setting pulsedSetting `json:"setting"`
	Node    string        `json:"node"` // where the replica ran
	Sat     soakSat       `json:"saturation"`
	Health  healthTiming  `json:"health"`
	// Kept: no failed health check (so no DOWN transition either: the
	// margin matters more than one lucky minute), no detour, no failed
	// request.
	Kept  bool   `json:"kept"`
	Error string `json:"error,omitempty"`
}

// healthTiming is the direct health probes' latency.
type healthTiming struct {
	Probes int     `json:"probes"`
	Failed int     `json:"failed"` // no 200 within healthProbeLimit
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

const (
	healthProbeEvery = 250 * time.Millisecond
	healthProbeLimit = 10 * time.Second
)

// saturation runs pulsed's defaults, then the candidates until one keeps
// the replica in rotation; that one (if any) is the failover's faster row.
func (b *clusterBench) saturation(ctx context.Context) error {
	for _, s := range append([]pulsedSetting{clusterDefaults}, clusterFastCandidates...) {
		if b.setting.Name != s.Name || b.pulsed == nil {
			if err := b.startPulsed(ctx, s); err != nil {
				return err
			}
		}
		r := b.satRun(ctx, s)
		b.rep.Saturation = append(b.rep.Saturation, r)
		b.log.Info("saturation", "setting", s.Name, "kept", r.Kept, "chkdown", r.Sat.Downs, "chkfail", r.Sat.CheckFails,
			"failed", r.Sat.Failed, "health_p99_ms", r.Health.P99MS, "health_max_ms", r.Health.MaxMS, "err", r.Error)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.Error != "" && s.Name == clusterDefaults.Name {
			return fmt.Errorf("saturation at pulsed's defaults: %s", r.Error)
		}
		if r.Kept && s.Name != clusterDefaults.Name {
			b.rep.Fast = &s
			return nil
		}
	}
	return nil
}

// satRun deploys the burning function (one replica), saturates it for
// satWin, and removes it.
func (b *clusterBench) satRun(ctx context.Context, s pulsedSetting) clusterSat {
	r := clusterSat{Setting: s, Sat: soakSat{Function: b.burn, Handler: satHandler, BurnMS: satBurnMS, Conns: satConns,
		DurationS: b.satWin.Seconds(), PulsedEnv: s.Env}}
	fail := func(err error) clusterSat {
		r.Error = err.Error()
		return r
	}
	if err := b.deploy(ctx, b.burn, b.burnFn, 1, map[string]string{"BURN_MS": strconv.Itoa(satBurnMS)}); err != nil {
		return fail(err)
	}
	defer func() {
		if err := b.remove(context.WithoutCancel(ctx), b.burn); err != nil {
			b.rep.Notes = append(b.rep.Notes, "saturation: remove "+b.burn+": "+err.Error())
		}
	}()
	if err := b.waitServers(ctx, b.burn, 1, true); err != nil {
		return fail(err)
	}
	f, err := b.catalogFunction(ctx, b.burn)
	if err != nil || len(f.Replicas) != 1 {
		return fail(fmt.Errorf("the saturated replica in pulsed's catalog: %d replicas, %v", len(f.Replicas), err))
	}
	addr := f.Replicas[0].Addr
	r.Node = b.nodeAt(addr)
	if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return fail(err)
	}

	backend := gateway.BackendName(b.burn)
	acc := newStatAcc()
	count := func() {
		rows, err := serverStats(ctx, b.rt, backend)
		if err != nil {
			r.Sat.PollErrs++
			return
		}
		r.Sat.Polls++
		acc.add(time.Now(), rows)
		for _, row := range rows {
			if row.Server != gateway.BackupServerName && strings.HasPrefix(row.Status, "DOWN") {
				r.Sat.DownPolls++
				break
			}
		}
	}
	count()
	acc.restart()
	r.Sat.Polls, r.Sat.DownPolls = 0, 0
	body := payload(64)
	h0, _ := readHostCPU("/proc")
	t0 := time.Now()
	load := newClosedLoop(t0, body, nil)
	load.set(satConns, b.gwAddr, "/function/"+b.burn, false)
	lctx, cancel := context.WithTimeout(ctx, b.satWin)
	var health []float64
	var failedProbes int
	var wg sync.WaitGroup
	wg.Go(func() { health, failedProbes = b.probeHealth(lctx, addr) })
	every(lctx, satPoll, count)
	cancel()
	wg.Wait()
	recs, fails := load.end()
	h1, _ := readHostCPU("/proc")
	wall := time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	count()
	summarizeSat(&r.Sat, recs, fails, acc, wall)
	r.Sat.HostBusyPct = busyPct(h1.Busy-h0.Busy, h1.Total-h0.Total)
	if r.Sat.OK > 0 && b.env.clk > 0 {
		r.Sat.HostMSPerReq = round3(float64(h1.Busy-h0.Busy) / b.env.clk * 1000 / float64(r.Sat.OK))
	}
	r.Health = healthTiming{Probes: len(health) + failedProbes, Failed: failedProbes,
		P50MS: round3(percentile(health, 50)), P99MS: round3(percentile(health, 99)), MaxMS: round3(percentile(health, 100))}
	r.Kept = r.Sat.Downs == 0 && r.Sat.CheckFails == 0 && r.Sat.BackupSessions == 0 && r.Sat.Failed == 0 && r.Sat.OK > 0
	return r
}

// probeHealth GETs the replica's health endpoint at addr (with the run's
// credential) every healthProbeEvery until ctx ends, one at a time; it
// returns the answered probes' latencies in ms and how many failed.
func (b *clusterBench) probeHealth(ctx context.Context, addr string) (ms []float64, failed int) {
	c := &http.Client{Timeout: healthProbeLimit, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	url := "http://" + addr + contract.HealthPath
	every(ctx, healthProbeEvery, func() {
		if ctx.Err() != nil {
			return
		}
		req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, url, nil)
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
	for _, n := range b.lab.nodes {
		if n.Addr == h {
			return n.Name
		}
	}
	return h
}
