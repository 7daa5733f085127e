package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// scaleStage runs ScaleTrials +1 scales of each target, alternating between
// them.
func (b *functionsBench) scaleStage(ctx context.Context) error {
	return eachTrial(b.cfg.ScaleTrials, b.targets, func(trial int, t scaleTarget) error {
		r := scaleTrial{Interval: t.interval.String(), IntervalMS: ms(t.interval), trialHead: trialHead{Trial: trial}}
		if err := b.quiet(ctx, &r.trialHead); err != nil {
			return err
		}
		err := b.scaleOnce(ctx, t, &r)
		// Back to one replica, whatever happened, before the next trial.
		start := time.Now()
		back := b.sw.Scale(ctx, t.name, 1, true)
		if back == nil {
			back = waitReplicas(ctx, b.sw, b.api, t.name, 1)
		}
		r.DownS = secondsSince(start)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logOutcome("scale +1", err, &r.Error, []any{"interval", r.Interval, "trial", trial},
			"ready_s", r.ReadyS, "endpoint_s", r.EndpointS, "container_started_s", r.ContainerStartedS)
		b.rep.Scales = append(b.rep.Scales, r)
		if back != nil {
			return fmt.Errorf("scale %s back to 1: %w", t.name, back)
		}
		return nil
	})
}

// scaleOnce scales t from 1 to 2 replicas and times the new one to its first
// 200 to GET /_/health.
func (b *functionsBench) scaleOnce(ctx context.Context, t scaleTarget, r *scaleTrial) error {
	eps, err := b.sw.Endpoints(ctx, t.name)
	if err != nil {
		return err
	}
	if len(eps) != 1 {
		return fmt.Errorf("%d replicas up before the scale, want 1", len(eps))
	}
	nr, err := b.timeReplica(ctx, t.name, map[string]bool{eps[0].TaskID: true}, func() error {
		return b.sw.Scale(ctx, t.name, 2, true)
	}, http.MethodGet, contract.HealthPath, "")
	r.ScaleCallS, r.replicaTimes, r.ReadyS, r.Polls, r.Gets = nr.callS, nr.replicaTimes, nr.okS, nr.polls, nr.requests
	return err
}

// newReplica is how a new replica started: in seconds from just before the
// call that started it, when the call returned (callS) and when the replica
// answered 200 (okS); the Endpoints polls and requests that took.
type newReplica struct {
	replicaTimes
	callS, okS      float64
	polls, requests int
}

// timeReplica calls start and times the replica of name it starts (a task
// not in known) to its first 200 to method path (with body, which the
// answer must hold).
func (b *functionsBench) timeReplica(ctx context.Context, name string, known map[string]bool, start func() error, method, path, body string) (newReplica, error) {
	var nr newReplica
	t0 := time.Now()
	if err := start(); err != nil {
		return nr, err
	}
	nr.callS = secondsSince(t0)
	ep, polls, err := b.waitNewEndpoint(ctx, name, known)
	nr.polls = polls
	if err != nil {
		return nr, err
	}
	nr.EndpointS = secondsSince(t0)
	// On the single-node swarm a host-mode port is published on every
	// address of this host.
	addr, rewrote := loopbackAddr(ep.Addr)
	b.rewrote = b.rewrote || rewrote
	nr.requests, err = b.waitOK(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nr, err
	}
	nr.okS = secondsSince(t0)
	b.taskTimes(ctx, ep.TaskID, t0, &nr.replicaTimes)
	return nr, nil
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
			return function.Endpoint{}, polls, err
		}
		for _, ep := range eps {
			if !known[ep.TaskID] {
				return ep, polls, nil
			}
		}
		select {
		case <-ctx.Done():
			return function.Endpoint{}, polls, fmt.Errorf("no new replica of %s in the task list after %s: %w", name, readyTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitOK sends method url (with body and the replica credential) every
// httpPoll until the answer is 200, and checks that the answer holds body.
// It returns the number of requests.
func (b *functionsBench) waitOK(ctx context.Context, method, url, body string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for n := 1; ; n++ {
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			return n, err
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
		}
		if err == nil {
			return n, nil
		}
		if serr := sleepCtx(ctx, httpPoll); serr != nil {
			return n, fmt.Errorf("%s %s: no 200 after %s (last: %v): %w", method, url, readyTimeout, err, serr)
		}
	}
}

// taskTimes reads into rt when the task was created, when its container
// started and when its first passing health probe ended, in seconds after
// t0; 0 for what the engine does not say.
func (b *functionsBench) taskTimes(ctx context.Context, taskID string, t0 time.Time, rt *replicaTimes) {
	cctx, cancel := call(ctx)
	defer cancel()
	task, _, err := b.api.TaskInspectWithRaw(cctx, taskID)
	if err != nil {
		b.log.Warn("inspect task", "task", taskID, "err", err)
		return
	}
	rt.TaskCreatedS = round3(task.CreatedAt.Sub(t0).Seconds())
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
		rt.ContainerStartedS = round3(ts.Sub(t0).Seconds())
	}
	rt.FirstProbeS = firstPassingProbe(c.State.Health, t0)
}

// firstPassingProbe returns when the first passing probe in h's log ended,
// in seconds after t0, or 0 if the log may have lost it (it keeps the last
// healthLogEntries) or has none.
func firstPassingProbe(h *container.Health, t0 time.Time) float64 {
	if h == nil || len(h.Log) >= healthLogEntries {
		return 0
	}
	for _, l := range h.Log {
		if l != nil && l.ExitCode == 0 && !l.End.IsZero() {
			return round3(l.End.Sub(t0).Seconds())
		}
	}
	return 0
}
