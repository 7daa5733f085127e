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

// idleQuietWaitFactor times -quiet-wait is how long an idle window waits
// for other processes to calm down.
const idleQuietWaitFactor = 10

// idleStage measures the host's CPU over idle windows: no replica of
// either target, then idleReplicas of the 1 s one, then idleReplicas of the
// 250 ms one; a full run does that twice and ends with none again, so that
// baselines bracket every window.
func (b *functionsBench) idleStage(ctx context.Context) error {
	// The target with replicas up in each window; -1: none.
	ups := []int{-1, 0, 1}
	if !b.cfg.Quick {
		ups = append(ups, -1, 0, 1, -1)
	}
	for _, up := range ups {
		var w idleWindow
		if up >= 0 {
			w.Replicas, w.IntervalMS = idleReplicas, ms(b.targets[up].interval)
		}
		err := b.idleWindow(ctx, up, &w)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logOutcome("idle window", err, &w.Error, []any{"replicas", w.Replicas, "interval_ms", w.IntervalMS},
			"busy_core_pct", fmt.Sprintf("%.1f", w.BusyCorePct))
		b.rep.Idle = append(b.rep.Idle, w)
		if err != nil {
			return err
		}
	}
	return nil
}

// idleWindow scales the targets to idleReplicas of target up (none for -1)
// and none of the other, waits until they are there and settled, then
// measures one window; the health logs of up's replicas give the probes'
// period.
func (b *functionsBench) idleWindow(ctx context.Context, up int, w *idleWindow) error {
	counts := make([]int, len(b.targets))
	if up >= 0 {
		counts[up] = idleReplicas
	}
	for i, t := range b.targets {
		if err := b.sw.Scale(ctx, t.name, counts[i], true); err != nil {
			return err
		}
	}
	for i, t := range b.targets {
		if err := waitReplicas(ctx, b.sw, b.api, t.name, counts[i]); err != nil {
			return err
		}
	}
	if err := sleepCtx(ctx, idleSettle); err != nil {
		return err
	}
	mine := map[string]bool{}
	if up >= 0 {
		ids, err := serviceContainers(ctx, b.api, b.targets[up].name)
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
	c, err := sampleIdleCPU(ctx, b.cfg.IdleWindow, mine)
	if err != nil {
		return err
	}
	clk := b.env.clk
	w.Seconds = round3(c.wall)
	w.BusyCPUS = round3(float64(c.host1.Busy-c.host0.Busy) / clk)
	w.BusyCorePct = round3(100 * w.BusyCPUS / c.wall)
	w.StealCorePct = round3(100 * float64(c.host1.Steal-c.host0.Steal) / clk / c.wall)
	if c.engine1.Total >= c.engine0.Total {
		w.EngineCPUS = round3(float64(c.engine1.Total-c.engine0.Total) / clk)
		w.EngineCorePct = round3(100 * w.EngineCPUS / c.wall)
		w.EngineProcs = c.engine1.Procs
		w.OtherCorePct = round3(w.BusyCorePct - w.EngineCorePct)
	}
	if up >= 0 {
		w.ProbePeriodsMS, w.ProbeDurationsMS, err = b.healthLogs(ctx, b.targets[up].name)
	}
	return err
}

// idleCPU is the host's CPU and the engine's (engineCPU) at the start and
// end of a window of wall seconds.
type idleCPU struct {
	host0, host1     hostCPU
	engine0, engine1 cpuSample
	wall             float64
}

// sampleIdleCPU samples the host's and the engine's CPU over d.
func sampleIdleCPU(ctx context.Context, d time.Duration, containers map[string]bool) (idleCPU, error) {
	var c idleCPU
	var err error
	if c.engine0, err = engineCPU("/proc", containers); err != nil {
		return c, err
	}
	if c.host0, err = readHostCPU("/proc"); err != nil {
		return c, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return c, err
	}
	if c.host1, err = readHostCPU("/proc"); err != nil {
		return c, err
	}
	c.wall = time.Since(t0).Seconds()
	c.engine1, err = engineCPU("/proc", containers)
	return c, err
}

// waitQuietOthers is waitQuiet for the idle windows, whose replicas' probes
// keep the host busy by design: it samples 1 s windows until the CPU of
// processes other than the engine's is below quietCorePct or maxWait has
// passed, and returns how long it waited and that share in the last window
// (percent of one core).
func waitQuietOthers(ctx context.Context, clk float64, maxWait time.Duration, containers map[string]bool) (time.Duration, float64, error) {
	start := time.Now()
	for {
		c, err := sampleIdleCPU(ctx, time.Second, containers)
		if err != nil {
			return 0, 0, err
		}
		busy := float64(c.host1.Busy-c.host0.Busy) - (float64(c.engine1.Total) - float64(c.engine0.Total))
		other := 100 * busy / clk / c.wall
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
	ids, err := serviceContainers(ctx, b.api, name)
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
