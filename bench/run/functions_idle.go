package main

// The functions suite's idle stage: the CPU that Docker's exec health
// checks cost, over idle windows with and without replicas.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
)

// idleStage measures the host's CPU over idle windows: no replica of
// either target, then idleReplicas of the 1 s one, then idleReplicas of the
// 250 ms one; a full run does that twice and ends with none again, so that
// baselines bracket every window.
func (b *functionsBench) idleStage(ctx context.Context) error {
	a, f := b.targets[0], b.targets[1]
	type step struct{ na, nf int }
	steps := []step{{0, 0}, {idleReplicas, 0}, {0, idleReplicas}}
	if !b.cfg.Quick {
		steps = append(steps, step{0, 0}, step{idleReplicas, 0}, step{0, idleReplicas}, step{0, 0})
	}
	for _, st := range steps {
		w := idleWindow{}
		var target *scaleTarget
		switch {
		case st.na > 0:
			w.Replicas, w.IntervalMS, target = st.na, a.intervalMS, &a
		case st.nf > 0:
			w.Replicas, w.IntervalMS, target = st.nf, f.intervalMS, &f
		}
		err := b.idleWindow(ctx, []scaleTarget{a, f}, []int{st.na, st.nf}, target, &w)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			w.Error = err.Error()
			b.log.Warn("idle window failed", "replicas", w.Replicas, "interval_ms", w.IntervalMS, "err", err)
		} else {
			b.log.Info("idle window", "replicas", w.Replicas, "interval_ms", w.IntervalMS, "busy_core_pct", fmt.Sprintf("%.1f", w.BusyCorePct))
		}
		b.rep.Idle = append(b.rep.Idle, w)
		if err != nil {
			return err
		}
	}
	return nil
}

// idleWindow scales targets to counts, waits until they are there and
// settled, then measures one window; target is the one with replicas up
// (nil for none), whose health logs give the probes' period.
func (b *functionsBench) idleWindow(ctx context.Context, targets []scaleTarget, counts []int, target *scaleTarget, w *idleWindow) error {
	for i, t := range targets {
		if err := b.sw.Scale(ctx, t.name, counts[i], true); err != nil {
			return err
		}
	}
	for i, t := range targets {
		if err := b.waitReplicas(ctx, t.name, counts[i]); err != nil {
			return err
		}
	}
	if err := sleepCtx(ctx, idleSettle); err != nil {
		return err
	}
	mine := map[string]bool{}
	if target != nil {
		ids, err := b.containers(ctx, target.name, false)
		if err != nil {
			return err
		}
		for _, id := range ids {
			mine[id] = true
		}
	}
	waited, other, err := waitQuietOthers(ctx, b.env.clk, idleQuietWaitFactor*b.cfg.QuietWait, mine)
	if err != nil {
		return err
	}
	w.QuietWaitS, w.QuietOtherPct = round3(waited.Seconds()), float64(int(other+0.5))
	if other >= quietCorePct {
		b.log.Warn("other processes still busy; measuring anyway", "other_core_pct", int(other), "waited", waited.Round(time.Millisecond))
	}
	w.Start = time.Now().UTC().Format(time.RFC3339)
	w.Load1, _ = readLoad1("/proc")
	e0, err := engineCPU("/proc", mine)
	if err != nil {
		return err
	}
	h0, err := readHostCPU("/proc")
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, b.cfg.IdleWindow); err != nil {
		return err
	}
	h1, err := readHostCPU("/proc")
	if err != nil {
		return err
	}
	wall := time.Since(t0).Seconds()
	e1, err := engineCPU("/proc", mine)
	if err != nil {
		return err
	}
	w.Seconds = round3(wall)
	w.BusyCPUS = round3(float64(h1.Busy-h0.Busy) / b.env.clk)
	w.BusyCorePct = round3(100 * w.BusyCPUS / wall)
	w.StealCorePct = round3(100 * float64(h1.Steal-h0.Steal) / b.env.clk / wall)
	if e1.Total >= e0.Total {
		w.EngineCPUS = round3(float64(e1.Total-e0.Total) / b.env.clk)
		w.EngineCorePct = round3(100 * w.EngineCPUS / wall)
		w.EngineProcs = e1.Procs
		w.OtherCorePct = round3(w.BusyCorePct - w.EngineCorePct)
	}
	if target != nil {
		w.ProbePeriodsMS, w.ProbeDurationsMS, err = b.healthLogs(ctx, target.name)
	}
	return err
}

// idleQuietWaitFactor times -quiet-wait is how long an idle window waits
// for other processes to calm down.
const idleQuietWaitFactor = 10

// waitQuietOthers is waitQuiet for the idle windows, whose replicas' probes
// keep the host busy by design: it samples 1 s windows until the CPU of
// processes other than the engine's is below quietCorePct or maxWait has
// passed, and returns how long it waited and that share in the last window
// (percent of one core).
func waitQuietOthers(ctx context.Context, clk float64, maxWait time.Duration, containers map[string]bool) (time.Duration, float64, error) {
	start := time.Now()
	for {
		e0, err := engineCPU("/proc", containers)
		if err != nil {
			return 0, 0, err
		}
		h0, err := readHostCPU("/proc")
		if err != nil {
			return 0, 0, err
		}
		t0 := time.Now()
		if err := sleepCtx(ctx, time.Second); err != nil {
			return 0, 0, err
		}
		h1, err := readHostCPU("/proc")
		if err != nil {
			return 0, 0, err
		}
		e1, err := engineCPU("/proc", containers)
		if err != nil {
			return 0, 0, err
		}
		busy := float64(h1.Busy-h0.Busy) - (float64(e1.Total) - float64(e0.Total))
		other := 100 * busy / clk / time.Since(t0).Seconds()
		if other < quietCorePct || time.Since(start) >= maxWait {
			return time.Since(start), other, nil
		}
	}
}

// engineCPU samples (under procDir) the CPU that the run's replicas cost the
// engine: dockerd's and containerd's own (not what they started: another
// client's port proxies, say), and the containerd shims of the given
// containers (IDs) with everything under them: the replicas, and the health
// probes (runc and the exec'd process, both reaped by the shim).
func engineCPU(procDir string, containers map[string]bool) (cpuSample, error) {
	return forestCPU(procDir, func(p procStat) (bool, bool) {
		switch {
		case p.Comm == "dockerd" || p.Comm == "containerd":
			return true, false
		case strings.HasPrefix(p.Comm, "containerd-shim"):
			ours := containers[cmdlineFlag(procDir, p.PID, "-id")]
			return ours, ours
		}
		return false, false
	})
}

// healthLogs reads the health logs of name's running containers: the
// spacing of consecutive probes and each probe's run time, in ms.
func (b *functionsBench) healthLogs(ctx context.Context, name string) (periods, durations []float64, err error) {
	ids, err := b.containers(ctx, name, false)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		cctx, cancel := call(ctx)
		c, err := b.api.ContainerInspect(cctx, id)
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("inspect container %s: %w", id, err)
		}
		if c.ContainerJSONBase == nil || c.State == nil || c.State.Health == nil {
			continue
		}
		p, d := probeTimes(c.State.Health.Log)
		periods, durations = append(periods, p...), append(durations, d...)
	}
	return periods, durations, nil
}

// probeTimes returns the spacing of consecutive probes (start to start) and
// each probe's run time, in ms, from a container's health log.
func probeTimes(log []*container.HealthcheckResult) (periods, durations []float64) {
	var starts []time.Time
	for _, l := range log {
		if l == nil || l.Start.IsZero() {
			continue
		}
		starts = append(starts, l.Start)
		if l.End.After(l.Start) {
			durations = append(durations, round3(ms(l.End.Sub(l.Start))))
		}
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(starts); i++ {
		periods = append(periods, round3(ms(starts[i].Sub(starts[i-1]))))
	}
	return periods, durations
}
