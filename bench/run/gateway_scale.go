package main

// The gateway suite's scale stage: a new task running → its server taking traffic.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// gwSteadyFor is how long pulsed's catalog must stay unchanged before a scale trial.
const gwSteadyFor = catalog.DefaultSettle + 500*time.Millisecond

// scaleStage runs ScaleTrials scales 1 → 2 (and back) under a light background load.
func (b *gatewayBench) scaleStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	if err := b.startGatewayPulsed(ctx, "", 1); err != nil {
		return err
	}
	svc, err := inspectService(ctx, b.api, b.name)
	if err != nil {
		return err
	}
	tasks := filters.NewArgs(filters.Arg("service", svc.ID))
	// Quiet once, before the background load (the host is busy with it).
	if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	}
	end := backgroundLoad(b.gatewayURL(), b.body)
	defer func() {
		ok, failed := end()
		bg := report.NewRow("background", "stage", gwStageScale).Put("ok", float64(ok)).Put("failed", 0)
		for _, why := range slices.Sorted(maps.Keys(failed)) {
			bg.Put("failed", bg.V("failed")+float64(failed[why])).Flag("%s ×%d", why, failed[why])
		}
		b.rep.Add(bg)
	}()
	for trial := 1; trial <= b.cfg.ScaleTrials; trial++ {
		// As on a steady swarm: past pulsed's settle window, at a random phase of its slow poll.
		if err := b.waitSteady(ctx); err != nil {
			return err
		}
		if err := sleepCtx(ctx, time.Duration(mrand.Int64N(int64(catalog.DefaultSlowPoll)))); err != nil {
			return err
		}
		r := report.NewRow("scale", "scale", gwScale, "trial", trial)
		err := b.scaleOnce(ctx, tasks, r)
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: the final sweep removes the function
		}
		back := b.scaleTo(ctx, 1)
		if back == nil { // pulsed puts a drained slot back in maintenance once its replica is gone
			back = b.waitServers(ctx, b.name, 1, false)
		}
		r.Fail(err)
		b.log.Info("scale +1", "trial", trial, "values", r.Values, "err", err)
		if b.rep.Add(r); back != nil {
			return fmt.Errorf("scale back to 1: %w", back)
		}
	}
	return nil
}

// waitSteady waits (at most readyTimeout) until pulsed's catalog is unchanged for gwSteadyFor.
func (b *gatewayBench) waitSteady(ctx context.Context) error {
	version, changed := "", time.Now()
	return poll(ctx, readyTimeout, 100*time.Millisecond, func(late bool) (bool, error) {
		var cat contract.Catalog
		err := b.getJSON(ctx, "http://"+b.apiAddr+contract.CatalogPath, false, &cat)
		if now := time.Now(); err != nil || cat.Version != version {
			version, changed = cat.Version, now
		} else if now.Sub(changed) >= gwSteadyFor {
			return true, nil
		}
		if late {
			b.log.Warn("pulsed's catalog kept changing; scaling anyway", "waited", readyTimeout)
		}
		return late, nil
	})
}

// slotObs is a slot given a new replica: its address, first ready and up, first session.
type slotObs struct {
	addr           string
	ready, traffic time.Time
}

// scaleOnce scales 1 → 2 and polls HAProxy until the new replica's slot is ready and up, then
// takes sessions; r gets both in seconds after the new task turned running.
func (b *gatewayBench) scaleOnce(ctx context.Context, tasks filters.Args, r *report.Row) error {
	backend := gateway.BackendName(b.name)
	known, err := taskIDs(ctx, b.api, tasks)
	if err != nil {
		return err
	}
	slots, err := readSlots(ctx, b.rt, backend)
	if err != nil {
		return err
	} else if live := liveSlots(slots); len(live) != 1 {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the scale, want 1", len(live))
	}
	base, obs, took := map[string]slotInfo{}, map[string]*slotObs{}, []string{}
	for _, s := range slots {
		base[s.Name] = s
	}
	if err := b.sw.Scale(ctx, b.name, 2, true); err != nil {
		return err
	}
	var last error
	err = poll(ctx, gwRunningTimeout+gwTrafficTimeout, gwHAProxyPoll, func(late bool) (bool, error) {
		if late {
			return false, fmt.Errorf("the new replica did not take traffic within %s (last error: %v)", gwRunningTimeout+gwTrafficTimeout, last)
		}
		servers, err := b.rt.Servers(ctx, backend)
		now, ready := time.Now(), false
		for _, s := range joinSlots(servers, nil) {
			was, ok := base[s.Name]
			o := obs[s.Name]
			if o == nil && !(ok && was.Live()) && (s.Live() || !ok || s.Addr != was.Addr) {
				o = &slotObs{addr: s.Addr}
				obs[s.Name] = o
			}
			if o != nil && s.Serving {
				o.ready, o.addr = cmp.Or(o.ready, now), s.Addr
			}
			ready = ready || (o != nil && !o.ready.IsZero())
		}
		if !ready {
			last = cmp.Or(err, last)
			return false, nil
		}
		stats, err := serverStats(ctx, b.rt, backend)
		now = time.Now()
		for _, st := range stats {
			if o := obs[st.Server]; o != nil && !o.ready.IsZero() && st.Sessions > base[st.Server].Stot {
				o.traffic, took = now, append(took, st.Server)
			}
		}
		last = cmp.Or(err, last)
		return len(took) > 0, nil
	})
	if err != nil {
		return err
	}
	// The new task, and its server: the one slot that took traffic, at the task's address.
	all, err := engineCall(ctx, "list tasks", func(c context.Context) ([]swarm.Task, error) {
		return b.api.TaskList(c, swarm.TaskListOptions{Filters: tasks})
	})
	if err != nil {
		return err
	}
	i := slices.IndexFunc(all, func(t swarm.Task) bool { return !known[t.ID] && t.Status.State == swarm.TaskStateRunning })
	if i < 0 {
		return errors.New("a new server took traffic, but no new task is running")
	}
	task := all[i]
	fn, err := b.catalogFunction(ctx, b.name)
	if err != nil {
		return err
	}
	j := slices.IndexFunc(fn.Replicas, func(rep contract.Replica) bool { return rep.TaskID == task.ID })
	if len(took) != 1 || j < 0 || obs[took[0]].addr != fn.Replicas[j].Addr {
		return fmt.Errorf("the servers that took traffic (%v) are not the new task %s's", took, task.ID)
	}
	s := obs[took[0]]
	r.Labels["task"], r.Labels["server"] = task.ID, took[0]
	r.Put("ready_s", s.ready.Sub(task.Status.Timestamp).Seconds()).Put("traffic_s", s.traffic.Sub(task.Status.Timestamp).Seconds())
	if !(r.V("ready_s") > 0 && r.V("traffic_s") > 0) {
		return fmt.Errorf("the new task's server was ready %.3f s and took traffic %.3f s after it turned running: not after it", r.V("ready_s"), r.V("traffic_s"))
	}
	return nil
}

// backgroundLoad starts keep-alive clients pausing between POSTs to url; end stops them and
// returns the requests answered 200 and the failures by reason.
func backgroundLoad(url, body string) (end func() (ok int64, failed map[string]int64)) {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		n   int64
		bad = map[string]int64{}
	)
	stop := make(chan struct{})
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: gwBackgroundClients}}
	for range gwBackgroundClients {
		wg.Go(func() {
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				case <-time.After(gwBackgroundPause):
				}
				why := ""
				if resp, err := c.Post(url, "application/octet-stream", strings.NewReader(body)); err != nil {
					why = "error: " + err.Error()
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						why = resp.Status
					}
				}
				mu.Lock()
				if why == "" {
					n++
				} else {
					bad[report.Truncate(why, 200)]++
				}
				mu.Unlock()
			}
		})
	}
	return func() (int64, map[string]int64) {
		close(stop)
		wg.Wait()
		return n, bad
	}
}
