package main

// The functions suite's scale and idle stages over two go functions (the
// scale targets), and the timing of a new replica, shared with deploy.

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// idleQuietWaitFactor times -quiet-wait is how long an idle window waits
// for other processes to calm down.
const idleQuietWaitFactor = 10

// deployTargets deploys the scale targets, one replica each, and waits
// until they are ready.
func (b *functionsBench) deployTargets(ctx context.Context) error {
	for _, t := range b.targets {
		img, err := b.image(ctx, t.name)
		if err != nil {
			return err
		}
		if _, err := b.sw.Deploy(ctx, b.specs[t.name], img, b.deployOptions(t.interval)); err != nil {
			return fmt.Errorf("deploy %s: %w", t.name, err)
		}
	}
	for _, t := range b.targets {
		if err := waitReplicas(ctx, b.sw, b.api, t.name, 1); err != nil {
			return err
		}
	}
	return nil
}

// scaleStage runs ScaleTrials +1 scales of each target, alternating between
// them; after each, whatever happened, the target goes back to one replica.
func (b *functionsBench) scaleStage(ctx context.Context) error {
	return eachTrial(b.cfg.ScaleTrials, b.targets, func(trial int, t scaleTarget) error {
		r := report.NewRow("scale", "interval", t.interval, "trial", trial)
		if err := b.quiet(ctx, r); err != nil {
			return err
		}
		err := b.scaleOnce(ctx, t, r)
		start := time.Now()
		back := b.sw.Scale(ctx, t.name, 1, true)
		if back == nil {
			back = waitReplicas(ctx, b.sw, b.api, t.name, 1)
		}
		r.Put("down_s", secondsSince(start))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if b.add(r, err); back != nil {
			return fmt.Errorf("scale %s back to 1: %w", t.name, back)
		}
		return nil
	})
}

// scaleOnce scales t from 1 to 2 replicas and times the new one to its first
// 200 to GET /_/health.
func (b *functionsBench) scaleOnce(ctx context.Context, t scaleTarget, r *report.Row) error {
	eps, err := b.sw.Endpoints(ctx, t.name)
	if err != nil {
		return fmt.Errorf("endpoints of %s: %w", t.name, err)
	}
	if len(eps) != 1 {
		return fmt.Errorf("%d replicas up before the scale, want 1", len(eps))
	}
	return b.timeReplica(ctx, r, t.name, map[string]bool{eps[0].TaskID: true}, func() error {
		return b.sw.Scale(ctx, t.name, 2, true)
	}, http.MethodGet, contract.HealthPath, "")
}

// timeReplica calls start and times the replica of name it starts (a task
// not in known) to its first 200 to method path; r gets its times (s).
func (b *functionsBench) timeReplica(ctx context.Context, r *report.Row, name string, known map[string]bool, start func() error, method, path, body string) error {
	t0 := time.Now()
	if err := start(); err != nil {
		return err
	}
	r.Put("call_s", secondsSince(t0))
	ep, polls, err := b.waitNewEndpoint(ctx, name, known)
	if r.Put("endpoint_polls", float64(polls)); err != nil {
		return err
	}
	r.Put("endpoint_s", secondsSince(t0))
	addr, rewrote := loopbackAddr(ep.Addr)
	b.rewrote = b.rewrote || rewrote
	n, err := b.waitOK(ctx, method, "http://"+addr+path, body)
	if r.Put("requests", float64(n)); err != nil {
		return err
	}
	r.Put("ready_s", secondsSince(t0))
	b.taskTimes(ctx, ep.TaskID, t0, r)
	return nil
}

// waitNewEndpoint polls Endpoints every endpointPoll until it lists a task
// not in known, and returns it with the number of polls.
func (b *functionsBench) waitNewEndpoint(ctx context.Context, name string, known map[string]bool) (function.Endpoint, int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(endpointPoll)
	defer tick.Stop()
	for polls := 1; ; polls++ {
		eps, err := b.sw.Endpoints(ctx, name)
		if err != nil && ctx.Err() == nil {
			return function.Endpoint{}, polls, fmt.Errorf("endpoints of %s: %w", name, err)
		}
		if i := slices.IndexFunc(eps, func(ep function.Endpoint) bool { return !known[ep.TaskID] }); i >= 0 {
			return eps[i], polls, nil
		}
		select {
		case <-ctx.Done():
			return function.Endpoint{}, polls, fmt.Errorf("no new replica of %s in the task list after %s: %w", name, readyTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitOK sends method url (with body and the replica credential) every
// httpPoll until the answer is 200 and holds body; it returns the requests.
func (b *functionsBench) waitOK(ctx context.Context, method, url, body string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for n := 1; ; n++ {
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			return n, fmt.Errorf("%s %s: %w", method, url, err)
		}
		addHeaders(req, b.cred.header())
		var answer []byte
		resp, err := b.http.Do(req)
		if err == nil {
			answer, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s: %q", resp.Status, truncate(strings.TrimSpace(string(answer)), 200))
			}
		}
		if err == nil && !strings.Contains(string(answer), body) {
			return n, fmt.Errorf("the function answered %q, which lacks the request body %q", truncate(string(answer), 200), body)
		} else if err == nil {
			return n, nil
		}
		if serr := sleepCtx(ctx, httpPoll); serr != nil {
			return n, fmt.Errorf("%s %s: no 200 after %s (last: %v): %w", method, url, readyTimeout, err, serr)
		}
	}
}

// taskTimes puts into r when the task was created, its container started
// and its first health probe passed, in s after t0, where the engine says.
func (b *functionsBench) taskTimes(ctx context.Context, taskID string, t0 time.Time, r *report.Row) {
	cctx, cancel := call(ctx)
	defer cancel()
	task, _, err := b.api.TaskInspectWithRaw(cctx, taskID)
	if err != nil {
		b.log.Warn("inspect task", "task", taskID, "err", err)
		return
	}
	r.Put("task_created_s", task.CreatedAt.Sub(t0).Seconds())
	cs := task.Status.ContainerStatus
	if cs == nil || cs.ContainerID == "" {
		return
	}
	c, err := b.api.ContainerInspect(cctx, cs.ContainerID)
	if err != nil || c.ContainerJSONBase == nil || c.State == nil {
		b.log.Warn("inspect container", "container", cs.ContainerID, "err", err)
		return
	}
	if ts, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil {
		r.Put("container_started_s", ts.Sub(t0).Seconds())
	}
	r.Put("first_probe_s", firstPassingProbe(c.State.Health, t0))
}

// firstPassingProbe is when the first passing probe in h's log ended, in s
// after t0; NaN if there is none or a full log may have lost it.
func firstPassingProbe(h *container.Health, t0 time.Time) float64 {
	if h == nil || len(h.Log) >= healthLogEntries {
		return math.NaN()
	}
	for _, l := range h.Log {
		if l != nil && l.ExitCode == 0 && !l.End.IsZero() {
			return l.End.Sub(t0).Seconds()
		}
	}
	return math.NaN()
}

// idleStage measures idle windows: none of either target, idleReplicas of
// the 1 s one, of the 250 ms one; a full run twice, then none again.
func (b *functionsBench) idleStage(ctx context.Context) error {
	ups := []int{-1, 0, 1} // the target with replicas up in each window; -1: none
	if !b.cfg.Quick {
		ups = append(ups, -1, 0, 1, -1)
	}
	for i, up := range ups {
		r := report.NewRow("idle", "replicas", 0, "interval", "–", "window", i+1)
		if up >= 0 {
			r.Labels["replicas"], r.Labels["interval"] = fmt.Sprint(idleReplicas), b.targets[up].interval.String()
		}
		err := b.idleWindow(ctx, up, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if b.add(r, err); err != nil {
			return err
		}
	}
	return nil
}

// idleWindow scales target up to idleReplicas (none for -1) and the other to
// none, lets them settle and measures one window into r.
func (b *functionsBench) idleWindow(ctx context.Context, up int, r *report.Row) error {
	counts := make([]int, len(b.targets))
	if up >= 0 {
		counts[up] = idleReplicas
	}
	for i, t := range b.targets {
		if err := b.sw.Scale(ctx, t.name, counts[i], true); err != nil {
			return fmt.Errorf("scale %s to %d: %w", t.name, counts[i], err)
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
	load1, _ := readLoad1("/proc")
	r.Put("quiet_wait_s", waited.Seconds()).Put("quiet_other_pct", math.Round(other)).Put("load1", load1)
	c, err := sampleIdleCPU(ctx, b.cfg.IdleWindow, mine)
	if err != nil {
		return err
	}
	clk := b.env.clk
	busy := float64(c.host1.Busy-c.host0.Busy) / clk
	r.PutAll(map[string]float64{"seconds": c.wall, "busy_cpu_s": busy, "busy_core_pct": 100 * busy / c.wall,
		"steal_core_pct": 100 * float64(c.host1.Steal-c.host0.Steal) / clk / c.wall})
	if c.engine1.Total >= c.engine0.Total {
		engine := float64(c.engine1.Total-c.engine0.Total) / clk
		r.PutAll(map[string]float64{"engine_cpu_s": engine, "engine_core_pct": 100 * engine / c.wall,
			"engine_procs": float64(c.engine1.Procs), "other_core_pct": 100 * (busy - engine) / c.wall})
	}
	if up < 0 {
		return nil
	}
	periods, durations, err := b.healthLogs(ctx, b.targets[up].name)
	r.Put("probe_period_ms", report.Median(periods)).Put("probe_run_ms", report.Median(durations)).Put("probes_logged", float64(len(durations)))
	return err
}

// idleCPU is the host's and the engine's CPU (engineCPU) at the start and
// end of a window of wall seconds.
type idleCPU struct {
	host0, host1     hostCPU
	engine0, engine1 cpuSample
	wall             float64
}

// sampleIdleCPU samples the host's and the engine's CPU over d.
func sampleIdleCPU(ctx context.Context, d time.Duration, containers map[string]bool) (c idleCPU, err error) {
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

// waitQuietOthers is waitQuiet for the idle windows, whose probes keep the
// engine busy by design: it waits for processes other than its part.
func waitQuietOthers(ctx context.Context, clk float64, maxWait time.Duration, containers map[string]bool) (time.Duration, float64, error) {
	start := time.Now()
	for {
		c, err := sampleIdleCPU(ctx, time.Second, containers)
		if err != nil {
			return 0, 0, err
		}
		busy := float64(c.host1.Busy-c.host0.Busy) - (float64(c.engine1.Total) - float64(c.engine0.Total))
		if other := 100 * busy / clk / c.wall; other < quietCorePct || time.Since(start) >= maxWait {
			return time.Since(start), other, nil
		}
	}
}

// engineCPU samples the CPU of dockerd's and containerd's own processes and
// of the given containers' shims with everything under them (replicas, probes).
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
		if c.ContainerJSONBase != nil && c.State != nil && c.State.Health != nil {
			p, d := probeTimes(c.State.Health.Log)
			periods, durations = append(periods, p...), append(durations, d...)
		}
	}
	return periods, durations, nil
}

// probeTimes is the spacing of consecutive probes (start to start) and each
// probe's run time, in ms, from a container's health log.
func probeTimes(log []*container.HealthcheckResult) (periods, durations []float64) {
	var starts []time.Time
	for _, l := range log {
		if l == nil || l.Start.IsZero() {
			continue
		}
		starts = append(starts, l.Start)
		if l.End.After(l.Start) {
			durations = append(durations, ms(l.End.Sub(l.Start)))
		}
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(starts); i++ {
		periods = append(periods, ms(starts[i].Sub(starts[i-1])))
	}
	return periods, durations
}
