package main

// The gateway suite's scale stage: a new task turning running to its
// server taking traffic, followed through Swarm, pulsed's catalog and
// HAProxy's runtime API.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
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

// gwSteadyFor is how long pulsed's catalog must stay unchanged before a
// scale trial: past its settle window, when it polls a steady swarm slowly.
const gwSteadyFor = catalog.DefaultSettle + 500*time.Millisecond

// scaleStage runs ScaleTrials scales of the function 1 → 2 under a light
// background load through the gateway, scaling it back to 1 after each.
func (b *gatewayBench) scaleStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	if err := b.startGatewayPulsed(ctx, gwStageScale, "", 1); err != nil {
		return err
	}
	svc, err := inspectService(ctx, b.api, b.name)
	if err != nil {
		return err
	}
	// Quiet once, before the background load: with it the host is busy by
	// design, so each trial only records how busy.
	if _, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	} else if busy >= quietCorePct {
		b.log.Warn("host still busy; running anyway", "stage", gwStageScale, "busy_core_pct", int(busy))
	}
	reloads0, rerr0 := b.reloads(ctx)
	load := startBackgroundLoad(b.gatewayURL(), b.body)
	defer func() {
		ok, failed := load.end()
		bg := report.NewRow("background", "stage", gwStageScale).Put("ok", float64(ok)).Put("failed", float64(failed))
		for _, why := range slices.Sorted(maps.Keys(load.failed)) {
			bg.Flag("%s ×%d", why, load.failed[why])
		}
		if reloads1, rerr1 := b.reloads(context.WithoutCancel(ctx)); rerr0 == nil && rerr1 == nil {
			bg.Put("reloads", float64(reloads1-reloads0))
		}
		b.rep.Add(bg)
	}()
	for trial := 1; trial <= b.cfg.ScaleTrials; trial++ {
		// A scale usually lands on a steady swarm, which pulsed polls slowly:
		// wait until its catalog has not changed for longer than its settle
		// window, then scale at a random phase of its slow poll.
		waited, err := b.waitSteady(ctx)
		if err != nil {
			return err
		}
		phase := time.Duration(mrand.Int64N(int64(catalog.DefaultSlowPoll)))
		busy, err := hostBusy(ctx, b.env.clk, phase)
		if err != nil {
			return err
		}
		load1, _ := readLoad1("/proc")
		r := report.NewRow("scale", "scale", gwScale, "trial", trial)
		r.PutAll(map[string]float64{"steady_wait_s": waited.Seconds(), "phase_s": phase.Seconds(), "host_busy_pct": math.Round(busy), "load1": load1})
		ok0, failed0 := load.counts()
		err = b.scaleOnce(ctx, svc.ID, r)
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: the final sweep removes the function
		}
		start := time.Now()
		back := b.scaleBack(ctx)
		ok1, failed1 := load.counts()
		r.PutAll(map[string]float64{"down_s": time.Since(start).Seconds(), "background_ok": float64(ok1 - ok0), "background_failed": float64(failed1 - failed0)})
		if r.Fail(err); err != nil {
			b.log.Warn("scale trial failed", "trial", trial, "err", err)
		} else {
			b.log.Info("scale +1", "trial", trial, "ready_s", r.V("ready_s"), "traffic_s", r.V("traffic_s"), "catalog_s", r.V("catalog_s"),
				"scale_to_running_s", r.V("scale_to_running_s"), "background_failed", r.V("background_failed"))
		}
		if b.rep.Add(r); back != nil {
			return fmt.Errorf("scale back to 1: %w", back)
		}
	}
	return nil
}

// waitSteady polls pulsed's catalog every 100 ms until its version has not
// changed for gwSteadyFor (at most readyTimeout: then it goes on) and
// returns how long it waited.
func (b *gatewayBench) waitSteady(ctx context.Context) (time.Duration, error) {
	start, version, changed := time.Now(), "", time.Now()
	err := poll(ctx, readyTimeout, 100*time.Millisecond, func(late bool) (bool, error) {
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
	return time.Since(start), err
}

// scaleBack scales to 1 and waits until one container runs and HAProxy
// has one server holding a replica (pulsed puts a drained slot back in
// maintenance once its replica is gone).
func (b *gatewayBench) scaleBack(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	return poll(ctx, 15*time.Second, 20*time.Millisecond, func(late bool) (bool, error) {
		servers, err := b.rt.Servers(ctx, gateway.BackendName(b.name))
		if live, _ := countSlots(servers); err == nil && live == 1 {
			return true, nil
		} else if late {
			b.log.Warn("HAProxy still lists a removed replica's server 15 s after the scale-down", "function", b.name)
		}
		return late, nil
	})
}

// scaleObs is what a scale trial's pollers saw, each poller its own
// fields, read once they have stopped: the new task (pollTasks: its
// Status.Timestamp when first seen running, and when that was); when
// pulsed's catalog first showed 2 desired, first listed each new task and
// at what address (pollCatalog); the slots given a new replica
// (pollHAProxy).
type scaleObs struct {
	taskID                 string
	running, seen, desired time.Time
	listed                 map[string]time.Time
	addrs                  map[string]string
	slots                  map[string]*slotObs
	mu                     sync.Mutex // guards lastError
	lastError              error
}

// slotObs is one HAProxy slot given a new replica: when it was (it left
// maintenance or was re-pointed), first was serving (ready and up), and
// first had its stot past the count before the scale, by how much; addr
// is the address it pointed at when added or serving.
type slotObs struct {
	addr                  string
	added, ready, traffic time.Time
	stot                  int64
}

// note keeps a poller's error for the message of a failed trial.
func (o *scaleObs) note(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		o.mu.Lock()
		o.lastError = err
		o.mu.Unlock()
	}
}

// scaleOnce scales 1 → 2 and follows the new task into r: Swarm's task
// list (when it turned running: its status timestamp), pulsed's catalog,
// and HAProxy's runtime API (its server added, ready and up, then taking
// sessions of the background load). Times after the task turned running
// are from its status timestamp (the engine's clock, on this host).
func (b *gatewayBench) scaleOnce(ctx context.Context, serviceID string, r *report.Row) error {
	backend, taskFilter := gateway.BackendName(b.name), filters.NewArgs(filters.Arg("service", serviceID))
	known, err := taskIDs(ctx, b.api, taskFilter)
	if err != nil {
		return err
	}
	slots, err := readSlots(ctx, b.rt, backend)
	if err != nil {
		return err
	} else if live := liveSlots(slots); len(live) != 1 {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the scale, want 1", len(live))
	}
	// Every slot as it was: a new replica's server is a slot that leaves
	// maintenance or is pointed elsewhere, and takes sessions past its
	// count here.
	base := map[string]slotInfo{}
	for _, s := range slots {
		base[s.Name] = s
	}
	obs := &scaleObs{listed: map[string]time.Time{}, addrs: map[string]string{}, slots: map[string]*slotObs{}}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	took := make(chan struct{})
	wg.Go(func() {
		pollNewTasks(pctx, b.api, taskFilter, known, gwTaskPoll, func(err error) { obs.note(pctx, err) }, func(tasks []swarm.Task, now time.Time) bool {
			i := slices.IndexFunc(tasks, func(t swarm.Task) bool { return t.Status.State == swarm.TaskStateRunning })
			if i >= 0 {
				obs.taskID, obs.running, obs.seen = tasks[i].ID, tasks[i].Status.Timestamp, now
			}
			return i >= 0
		})
	})
	wg.Go(func() { b.pollCatalog(pctx, known, obs) })
	wg.Go(func() { b.pollHAProxy(pctx, backend, base, obs, took) })

	t0 := time.Now()
	if err := b.sw.Scale(ctx, b.name, 2, true); err != nil {
		return err
	}
	r.Put("scale_call_s", time.Since(t0).Seconds())
	var waitErr error
	select {
	case <-took: // the task and catalog pollers get a second more to see the task
		time.AfterFunc(time.Second, stop)
	case <-time.After(gwRunningTimeout + gwTrafficTimeout):
		waitErr = errors.New("timed out")
	case <-ctx.Done():
		waitErr = ctx.Err()
	}
	if waitErr != nil {
		stop()
	}
	wg.Wait() // the pollers' fields are read from here on
	if err := ctx.Err(); err != nil {
		return err
	}
	var ready, traffic []string
	for name, s := range obs.slots {
		if !s.ready.IsZero() {
			ready = append(ready, name)
		}
		if !s.traffic.IsZero() {
			traffic = append(traffic, name)
		}
	}
	if waitErr != nil || obs.taskID == "" {
		return fmt.Errorf("the new replica did not take traffic: %v after %s: task running: %t, HAProxy servers added %d, ready %v, took traffic %v (last error: %v)",
			cmp.Or(waitErr, errors.New("no task")), time.Since(t0).Round(time.Millisecond), obs.taskID != "", len(obs.slots), ready, traffic, obs.lastError)
	}
	// The new task's server: the slot pointed at its address in pulsed's
	// catalog.
	addr, slotAddr := obs.addrs[obs.taskID], map[string]string{}
	for name, s := range obs.slots {
		slotAddr[name] = s.addr
	}
	slot := slotOf(slotAddr, addr)
	if len(traffic) != 1 || slot == "" || obs.slots[slot].traffic.IsZero() {
		return fmt.Errorf("the server that took traffic (%v) is not the new task %s's (at %q: %q)", traffic, obs.taskID, addr, slot)
	}
	since := func(t time.Time) float64 {
		if t.IsZero() {
			return math.NaN()
		}
		return t.Sub(obs.running).Seconds()
	}
	r.Put("scale_to_running_s", obs.running.Sub(t0).Seconds())
	if !obs.desired.IsZero() { // late: pulsed noticed the new desired count only after the task was running
		r.Put("catalog_scale_s", obs.desired.Sub(t0).Seconds()).Put("late_notice", map[bool]float64{true: 1}[obs.desired.After(obs.running)])
	}
	s := obs.slots[slot]
	r.Labels["task"], r.Labels["server"] = obs.taskID, slot
	r.PutAll(map[string]float64{"seen_s": since(obs.seen), "catalog_s": since(obs.listed[obs.taskID]), "added_s": since(s.added),
		"ready_s": since(s.ready), "traffic_s": since(s.traffic), "stot": float64(s.stot)})
	if !(r.V("ready_s") > 0 && r.V("traffic_s") > 0) {
		return fmt.Errorf("the new task's server was ready %.3f s and took traffic %.3f s after it turned running: not after it", r.V("ready_s"), r.V("traffic_s"))
	}
	return nil
}

// pollCatalog polls pulsed's catalog every gwCatalogPoll until it has
// shown 2 desired replicas and the address of a task not in known.
func (b *gatewayBench) pollCatalog(ctx context.Context, known map[string]bool, obs *scaleObs) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	every(ctx, gwCatalogPoll, func() {
		fn, err := b.catalogFunction(ctx, b.name)
		now := time.Now()
		if obs.note(ctx, err); obs.desired.IsZero() && fn.Desired >= 2 {
			obs.desired = now
		}
		for _, rep := range fn.Replicas {
			if !known[rep.TaskID] && !rep.Draining {
				obs.listed[rep.TaskID], obs.addrs[rep.TaskID] = cmp.Or(obs.listed[rep.TaskID], now), rep.Addr
			}
		}
		if !obs.desired.IsZero() && slices.ContainsFunc(slices.Collect(maps.Values(obs.addrs)), func(a string) bool { return a != "" }) {
			stop()
		}
	})
}

// pollHAProxy polls `show servers state <backend>` every gwHAProxyPoll and
// records when each slot was first given a new replica (it left
// maintenance or was pointed at another address than in base, the slots
// before the scale) and first was serving (ready and up); once one is, it
// reads `show stat` too, records when that slot's total sessions (stot)
// first rose past its count in base, and closes took. Slots are named
// s1…sN whatever replica they hold; their counters run on from one replica
// to the next.
func (b *gatewayBench) pollHAProxy(ctx context.Context, backend string, base map[string]slotInfo, obs *scaleObs, took chan<- struct{}) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	every(ctx, gwHAProxyPoll, func() {
		servers, err := b.rt.Servers(ctx, backend)
		now, anyReady := time.Now(), false
		obs.note(ctx, err)
		for _, s := range joinSlots(servers, nil) {
			was, ok := base[s.Name]
			if ok && was.Live() {
				continue // held a replica before the scale
			}
			o := obs.slots[s.Name]
			if o == nil && (s.Live() || !ok || s.Addr != was.Addr) {
				o = &slotObs{addr: s.Addr, added: now}
				obs.slots[s.Name] = o
			}
			if o != nil && s.Serving {
				o.ready, o.addr = cmp.Or(o.ready, now), s.Addr
			}
			anyReady = anyReady || (o != nil && !o.ready.IsZero())
		}
		if !anyReady {
			return
		}
		stats, err := serverStats(ctx, b.rt, backend)
		now, done := time.Now(), false
		obs.note(ctx, err)
		for _, st := range stats {
			if o := obs.slots[st.Server]; o != nil && !o.ready.IsZero() && st.Sessions > base[st.Server].Stot {
				if o.traffic.IsZero() {
					o.traffic, o.stot = now, st.Sessions-base[st.Server].Stot
				}
				done = true
			}
		}
		if done {
			close(took)
			stop()
		}
	})
}

// backgroundLoad is the scale stage's light load through the gateway:
// keep-alive clients, each pausing between requests; a socket error or a
// non-200 answer is a failure, counted by reason.
type backgroundLoad struct {
	mu     sync.Mutex
	ok     int64
	failed map[string]int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

// startBackgroundLoad starts the background load on url.
func startBackgroundLoad(url, body string) *backgroundLoad {
	l := &backgroundLoad{failed: map[string]int64{}, stop: make(chan struct{})}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: gwBackgroundClients}}
	for range gwBackgroundClients {
		l.wg.Go(func() {
			defer c.CloseIdleConnections()
			for {
				select {
				case <-l.stop:
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
				l.mu.Lock()
				if why == "" {
					l.ok++
				} else {
					l.failed[report.Truncate(why, 200)]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// counts returns the requests answered 200 and those failed so far.
func (l *backgroundLoad) counts() (ok, failed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.failed {
		failed += n
	}
	return l.ok, failed
}

// end stops the load, closes its connections and returns its counts.
func (l *backgroundLoad) end() (ok, failed int64) {
	close(l.stop)
	l.wg.Wait()
	return l.counts()
}
