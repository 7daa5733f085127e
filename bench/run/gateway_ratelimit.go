package main

// The gateway suite's rate-limit stage: a function with functions.yml's
// rate_limit loaded far above its limit through pulsed's HAProxy; what it
// answers against the limit (issue 16).

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// Settings of the rate-limit stage.
const (
	gwStageRateLimit = "ratelimit"
	gwRateLimit      = 500 // requests per second, by function
	gwRateConns      = 8   // wrk's connections: offered load well above the limit
	gwRateGoalName   = "answered rate under a rate limit within 10 % of the limit"
)

// rateLimitStage deploys a copy of the echo with rate_limit gwRateLimit/1s,
// starts pulsed, and per round warms the limit's window up, then runs wrk
// at full speed: answered (2xx) and offered requests per second.
func (b *gatewayBench) rateLimitStage(ctx context.Context) error {
	name := b.name + "-rl"
	bin, err := b.arts.read("inproc")
	if err != nil {
		return err
	}
	spec := function.Spec{Name: name, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".", Timeout: 10 * time.Second,
		MaxBody: 1 << 20, Scale: function.Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10}, Labels: benchLabels(b.run),
		RateLimit: &contract.RateLimit{Requests: gwRateLimit, Per: time.Second, By: contract.RateByFunction}}
	img, err := benchImage(spec, nil, bin)
	if err != nil {
		return err
	}
	if _, err := b.sw.Deploy(ctx, spec, img, function.DeployOptions{HealthInterval: gwHealthInterval, DrainGrace: gwDrainGrace, Instance: benchInstance(b.run)}); err != nil {
		return err
	}
	defer func() {
		if err := b.remove(context.WithoutCancel(ctx), name); err != nil {
			b.log.Warn("remove", "function", name, "err", err)
		}
	}()
	if err := waitReplicas(ctx, b.sw, b.api, name, 1); err != nil {
		return err
	}
	if err := b.startGatewayPulsed(ctx, "", 1); err != nil {
		return err
	}
	defer b.stop()
	url := "http://" + b.gwAddr + "/function/" + name
	variant := fmt.Sprintf("%d/s, c=%d", gwRateLimit, gwRateConns)
	for round := 1; round <= b.cfg.Rounds; round++ {
		r := report.NewRow("ratelimit", "stage", gwStageRateLimit, "variant", variant, "round", round)
		err := func() error {
			if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
				return err
			}
			time.Sleep(2 * time.Second) // the previous round's window is over: probe gets its 200
			if err := probe(ctx, url, b.body, nil); err != nil {
				return err
			}
			w := wrkRun{Bin: b.env.tools.wrk, Script: b.script, URL: url, Threads: 1, Conns: gwRateConns, Body: b.body}
			// The warm-up fills the limit's window: the run measures the
			// steady state, not the first period's burst.
			if err := warmUp(ctx, w, max(b.cfg.Warmup, 2*time.Second)); err != nil {
				return err
			}
			w.Duration = b.cfg.Duration
			res, wrkCPU, err := runWrk(ctx, w)
			if err != nil {
				return err
			}
			secs := float64(res.DurationUS) / 1e6
			if n := res.errorCount() - res.Errors.Status; n > 0 {
				r.Flag("%d socket errors", n)
			}
			r.PutAll(map[string]float64{
				"answered_rps": float64(res.Requests-res.Errors.Status) / secs, "offered_rps": float64(res.Requests) / secs,
				"limit_rps": gwRateLimit, "wrk_core_pct": 100 * wrkCPU.Seconds() / secs,
			})
			return nil
		}()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.Values = nil
			r.Fail(err)
			b.log.Warn("run failed", "stage", gwStageRateLimit, "round", round, "err", err)
		} else {
			b.log.Info("run", "stage", gwStageRateLimit, "round", round, "values", r.Values)
		}
		b.rep.Add(r)
	}
	return nil
}

// rateLimitGoal: the answered rate's distance from the limit, in percent of
// it (median over rounds). The load must have offered at least twice the
// limit, without socket errors, for the figure to say anything.
func rateLimitGoal(groups []report.Group) report.Goal {
	g := report.NewGoal(gwRateGoalName, "%", 10)
	grp, ok := report.Find(groups, "stage", gwStageRateLimit)
	switch {
	case !ok:
		return g.Skipped("the rate-limit stage did not run")
	case grp.Runs == 0:
		return g.Failed("every round failed")
	case grp.M("offered_rps") < 2*gwRateLimit:
		return g.Failed(fmt.Sprintf("the load offered %.0f/s, under twice the limit (%d/s)", grp.M("offered_rps"), gwRateLimit))
	}
	answered := grp.M("answered_rps")
	g = g.Noted("%.1f/s answered of %.0f/s offered, limit %d/s (median of %d rounds)", answered, grp.M("offered_rps"), gwRateLimit, grp.Runs).
		Check(100 * math.Abs(answered-gwRateLimit) / gwRateLimit)
	if grp.Flagged() {
		g.Status, g.Note = report.Fail, g.Note+"; "+grp.Flags[0]
	}
	return g
}
