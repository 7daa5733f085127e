package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// latencyStage runs the four latency variants (direct and through the
// gateway, at c=1 and c=50) against the one replica, with pulsed at its
// defaults.
func (b *gatewayBench) latencyStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	if err := b.startGatewayPulsed(ctx, gwStageLatency, "", 1); err != nil {
		return err
	}
	watch, addrs, err := b.replicas(ctx, 1)
	if err != nil {
		return err
	}
	return b.rounds(ctx, gwStageLatency, gwLatencyVariants, 1, func(v gwVariant, r *gatewayRun) error {
		url := "http://" + addrs[0] + "/"
		if v.Path == pathGateway {
			url = b.gatewayURL()
		}
		return b.measure(ctx, watch, url, v, r)
	})
}

// balanceStage runs both balancing algorithms over gwBalanceReplicas
// replicas: for each run pulsed is started afresh with PULSE_BALANCE set,
// the gateway loaded at c=50, and pulsed stopped.
func (b *gatewayBench) balanceStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, gwBalanceReplicas); err != nil {
		return err
	}
	defer func() {
		if ctx.Err() != nil {
			return // interrupted: the final sweep removes the function
		}
		if err := b.scaleTo(ctx, 1); err != nil {
			b.log.Warn("scale back to 1", "err", err)
		}
	}()
	return b.rounds(ctx, gwStageBalance, gwBalanceVariants, gwBalanceReplicas, func(v gwVariant, r *gatewayRun) error {
		defer func() {
			st := b.stopGatewayPulsed()
			r.HAProxyKilled, r.StopError = st.Killed, st.Error
		}()
		if err := b.startGatewayPulsed(ctx, gwStageBalance, v.Balance, gwBalanceReplicas); err != nil {
			return err
		}
		r.PulsedRouteS = secondsSince(b.started)
		watch, _, err := b.replicas(ctx, gwBalanceReplicas)
		if err != nil {
			return err
		}
		return b.measure(ctx, watch, b.gatewayURL(), v, r)
	})
}

// rounds runs variants round after round, in a rotated order, and records
// each run.
func (b *gatewayBench) rounds(ctx context.Context, stage string, variants []gwVariant, replicas int, run func(gwVariant, *gatewayRun) error) error {
	for round := 1; round <= b.cfg.Rounds; round++ {
		b.log.Info("round", "stage", stage, "round", round, "of", b.cfg.Rounds)
		for slot, v := range rotate(variants, round-1) {
			r := gatewayRun{Stage: stage, Variant: v.Name, Path: v.Path, Conns: v.Conns, Threads: v.Threads, Balance: v.Balance,
				Replicas: replicas, Round: round, Slot: slot}
			err := run(v, &r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.Error = err.Error()
				b.log.Warn("run failed", "stage", r.Stage, "round", r.Round, "variant", r.Variant, "err", err)
			} else {
				b.log.Info("run", "stage", r.Stage, "round", r.Round, "variant", r.Variant, "rps", int(r.RPS), "p50_us", r.P50US, "p99_us", r.P99US,
					"haproxy_cpu_per_req_us", fmt.Sprintf("%.1f", r.HAProxyCPUPerReqUS), "errors", r.Errors, "other_core_pct", int(r.OtherCorePct))
			}
			b.rep.Runs = append(b.rep.Runs, r)
		}
	}
	return nil
}

// measure checks url with one POST, warms it up with wrk, then measures
// one wrk run of v, sampling the CPU of watch's groups (HAProxy,
// docker-proxy, the replicas, pulsed) and the host around it.
func (b *gatewayBench) measure(ctx context.Context, watch procWatch, url string, v gwVariant, r *gatewayRun) error {
	waited, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait)
	if err != nil {
		return err
	}
	r.QuietWaitS, r.QuietBusyPct = round3(waited.Seconds()), float64(int(busy+0.5))
	if busy >= quietCorePct {
		b.log.Warn("host still busy; running anyway", "variant", v.Name, "busy_core_pct", int(busy), "waited", waited.Round(time.Millisecond))
	}
	r.Start = time.Now().UTC().Format(time.RFC3339)
	r.Load1, _ = readLoad1("/proc")
	// Straight to the replica, every request carries the replica
	// credential, as HAProxy's do: the watchdog checks it on both paths.
	var hdr http.Header
	if v.Path == pathDirect {
		hdr = b.cred.header()
		if err := b.checkCredential(ctx, url); err != nil {
			return err
		}
	}
	if err := probe(ctx, url, b.body, hdr); err != nil {
		return err
	}
	w := wrkRun{Bin: b.env.tools.wrk, Script: b.script, URL: url, Threads: v.Threads, Conns: v.Conns, Body: b.body, Headers: hdr}
	if err := warmUp(ctx, w, b.cfg.Warmup); err != nil {
		return err
	}
	w.Duration = b.cfg.Duration
	reloads0, rerr0 := b.reloads(ctx)
	before, h0, t0, err := sampleGroups(watch)
	if err != nil {
		return err
	}
	res, wrkCPU, err := runWrk(ctx, w)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // requests in flight when wrk stopped
	after, h1, t1, err := sampleGroups(watch)
	if err != nil {
		return err
	}
	r.Reloads = -1 // unknown
	if reloads1, rerr1 := b.reloads(ctx); rerr0 == nil && rerr1 == nil {
		r.Reloads = reloads1 - reloads0
	}
	r.Requests, r.Seconds = res.Requests, float64(res.DurationUS)/1e6
	r.RPS = float64(res.Requests) / r.Seconds
	r.P50US, r.P90US, r.P99US, r.MaxUS, r.MeanUS = res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max, res.Latency.Mean
	r.Errors = res.errorCount()
	wall := t1.Sub(t0).Seconds()
	fillGroupCPU(r, before, after, b.env.clk, wall)
	r.HAProxyProcs = len(after[groupHAProxy])
	if r.HAProxyProcs == 0 && v.Path == pathGateway {
		return errors.New("no haproxy process of this pulsed found in /proc")
	}
	r.WrkCorePct = round3(100 * wrkCPU.Seconds() / wall)
	busyS := float64(h1.Busy-h0.Busy) / b.env.clk
	ours := (r.HAProxyCorePct + r.DockerProxyCorePct + r.ReplicaCorePct + r.PulsedCorePct + r.WrkCorePct) / 100 * wall
	r.HostCorePct = round3(100 * busyS / wall)
	r.OtherCorePct = round3(100 * (busyS - ours) / wall)
	r.StealCorePct = round3(100 * float64(h1.Steal-h0.Steal) / b.env.clk / wall)
	return nil
}

// checkCredential, once per run, POSTs to the replica at url without the
// replica credential: a replica that answers it (its watchdog does not
// check the credential) is noted in the report, since the direct baseline
// then lacks that check.
func (b *gatewayBench) checkCredential(ctx context.Context, url string) error {
	if b.checked {
		return nil
	}
	refused, err := refusesWithout(ctx, url, b.body)
	if err != nil {
		return err
	}
	b.checked = true
	if !refused {
		b.log.Warn("replica answered without the replica credential", "url", url)
		b.rep.Notes = append(b.rep.Notes, noCredentialCheck)
	}
	return nil
}
