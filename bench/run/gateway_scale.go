package main

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// The gateway suite's scale stage: a new task turning running to its
// server taking traffic, followed through Swarm, pulsed's catalog and
// HAProxy's runtime API.

// gwSteadyFor is how long pulsed's catalog must stay unchanged before a
// scale trial: past its settle window, when it polls a steady swarm slowly.
const gwSteadyFor = catalog.DefaultSettle + 500*time.Millisecond

// scaleStage runs ScaleTrials +1 scales of the function (1 → 2) under a
// light background load through the gateway, and after each scales it back
// to 1.
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
	// Quiet once, before the background load: with it running the host is
	// busy by design, so each trial only records how busy.
	if _, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	} else if busy >= quietCorePct {
		b.log.Warn("host still busy; running anyway", "stage", gwStageScale, "busy_core_pct", int(busy))
	}
	reloads0, rerr0 := b.reloads(ctx)
	load := startBackgroundLoad(b.gatewayURL(), b.body, gwBackgroundClients, gwBackgroundPause)
	defer func() {
		why := load.end()
		b.rep.Background = gatewayBackground{OK: load.ok.Load(), Failed: load.failed.Load(), Why: why, Reloads: -1}
		if reloads1, rerr1 := b.reloads(context.WithoutCancel(ctx)); rerr0 == nil && rerr1 == nil {
			b.rep.Background.Reloads = reloads1 - reloads0
		}
	}()
	for trial := 1; trial <= b.cfg.ScaleTrials; trial++ {
		r := gatewayScaleTrial{Trial: trial, From: 1, To: 2}
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
		r.SteadyWaitS, r.PhaseS, r.HostBusyPct = round3(waited.Seconds()), round3(phase.Seconds()), float64(int(busy+0.5))
		r.Start = time.Now().UTC().Format(time.RFC3339)
		r.Load1, _ = readLoad1("/proc")
		ok0, failed0 := load.ok.Load(), load.failed.Load()
		err = b.scaleOnce(ctx, svc.ID, &r)
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: the final sweep removes the function
		}
		start := time.Now()
		back := b.scaleBack(ctx, r.From)
		r.DownS = secondsSince(start)
		r.BackgroundOK, r.BackgroundFailed = load.ok.Load()-ok0, load.failed.Load()-failed0
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.Error = err.Error()
			b.log.Warn("scale trial failed", "trial", trial, "err", err)
		} else {
			b.log.Info("scale +1", "trial", trial, "ready_s", r.ReadyS, "traffic_s", r.TrafficS, "catalog_s", r.CatalogS,
				"added_s", r.AddedS, "scale_to_running_s", r.ScaleToRunningS, "background_failed", r.BackgroundFailed)
		}
		b.rep.Scales = append(b.rep.Scales, r)
		if back != nil {
			return fmt.Errorf("scale back to %d: %w", r.From, back)
		}
	}
	return nil
}

// waitSteady polls pulsed's catalog every 100 ms until its version has not
// changed for gwSteadyFor (at most readyTimeout: then it goes on) and
// returns how long it waited.
func (b *gatewayBench) waitSteady(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	version, changed := "", start
	for time.Since(start) < readyTimeout {
		var cat contract.Catalog
		err := b.getJSON(ctx, "http://"+b.apiAddr+contract.CatalogPath, false, &cat)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		now := time.Now()
		if err != nil {
			version, changed = "", now
		} else if cat.Version != version {
			version, changed = cat.Version, now
		} else if now.Sub(changed) >= gwSteadyFor {
			return now.Sub(start), nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
	b.log.Warn("pulsed's catalog kept changing; scaling anyway", "waited", readyTimeout)
	return time.Since(start), nil
}

// scaleBack scales to n and waits until n containers run and HAProxy has
// only n servers holding a replica (pulsed puts a drained slot back in
// maintenance once its replica is gone).
func (b *gatewayBench) scaleBack(ctx context.Context, n int) error {
	if err := b.scaleTo(ctx, n); err != nil {
		return err
	}
	return poll(ctx, 15*time.Second, 20*time.Millisecond, func(late bool) (bool, error) {
		servers, err := b.rt.Servers(ctx, gateway.BackendName(b.name))
		if live, _ := countSlots(servers); err == nil && live == n {
			return true, nil
		}
		if late {
			b.log.Warn("HAProxy still lists a removed replica's server 15 s after the scale-down", "function", b.name)
		}
		return late, nil
	})
}

// scaleObs is what the scale trial's pollers saw, guarded by mu.
type scaleObs struct {
	mu        sync.Mutex
	taskID    string
	running   time.Time            // the task's Status.Timestamp when first seen running
	seen      time.Time            // when the harness first saw it running
	desired   time.Time            // pulsed's catalog first showed the new replica count
	listed    map[string]time.Time // new task → first listed in the catalog
	addrs     map[string]string    // new task → its address in the catalog
	slots     map[string]*slotObs  // HAProxy slot → what it did once pointed at a new replica
	lastError error
}

// slotObs is one HAProxy slot pointed at a new replica: when it was
// (it left maintenance or was re-pointed), when it was first serving
// (ready and up), and when its stot first rose past the count before the
// scale (stot: the sessions the new replica had taken then). addr is the
// address it pointed at when added or serving.
type slotObs struct {
	addr                  string
	added, ready, traffic time.Time
	stot                  int64
}

func (o *scaleObs) note(err error) {
	o.mu.Lock()
	o.lastError = err
	o.mu.Unlock()
}

// slotNames returns the names of the slots for which has holds, sorted.
func (o *scaleObs) slotNames(has func(*slotObs) bool) []string {
	var out []string
	for name, s := range o.slots {
		if has(s) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// scaleOnce scales from r.From to r.To and follows the new task: Swarm's
// task list (when it turned running: its status timestamp), pulsed's
// catalog, and HAProxy's runtime API (its server added, ready and up, then
// taking sessions of the background load).
func (b *gatewayBench) scaleOnce(ctx context.Context, serviceID string, r *gatewayScaleTrial) error {
	backend := gateway.BackendName(b.name)
	taskFilter := filters.NewArgs(filters.Arg("service", serviceID))
	knownTasks, err := taskIDs(ctx, b.api, taskFilter)
	if err != nil {
		return err
	}
	slots, err := readSlots(ctx, b.rt, backend)
	if err != nil {
		return err
	}
	if live := liveSlots(slots); len(live) != r.From {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the scale, want %d", len(live), r.From)
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
	done := make(chan struct{}) // closed when a new server took traffic
	wg.Go(func() { b.pollTasks(pctx, taskFilter, knownTasks, obs) })
	wg.Go(func() { b.pollCatalog(pctx, r.To, knownTasks, obs) })
	wg.Go(func() { b.pollHAProxy(pctx, backend, base, obs, done) })

	t0 := time.Now()
	if err := b.sw.Scale(ctx, b.name, r.To, true); err != nil {
		return err
	}
	r.ScaleCallS = secondsSince(t0)
	limit := time.NewTimer(gwRunningTimeout + gwTrafficTimeout)
	defer limit.Stop()
	var waitErr error
	select {
	case <-done:
	case <-limit.C:
		waitErr = errors.New("timed out")
	case <-ctx.Done():
		waitErr = ctx.Err()
	}
	// The task and catalog pollers may see the task a little after HAProxy
	// did: give them a moment before stopping them.
	for i := 0; waitErr == nil && i < 50; i++ {
		obs.mu.Lock()
		have := obs.taskID != "" && !obs.listed[obs.taskID].IsZero() && obs.addrs[obs.taskID] != ""
		obs.mu.Unlock()
		if have {
			break
		}
		time.Sleep(gwTaskPoll)
	}
	stop()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	r.TaskID = obs.taskID
	tookTraffic := obs.slotNames(func(s *slotObs) bool { return !s.traffic.IsZero() })
	if waitErr != nil || obs.taskID == "" {
		why := fmt.Sprintf("after %s, task running: %t, HAProxy servers added %v, ready %v, took traffic %v", time.Since(t0).Round(time.Millisecond),
			obs.taskID != "", obs.slotNames(func(*slotObs) bool { return true }), obs.slotNames(func(s *slotObs) bool { return !s.ready.IsZero() }), tookTraffic)
		if obs.lastError != nil {
			why += fmt.Sprintf(" (last error: %v)", obs.lastError)
		}
		if waitErr != nil {
			why = waitErr.Error() + ": " + why
		}
		return fmt.Errorf("the new replica did not take traffic: %s", why)
	}
	// The new task's server: the slot pointed at its address (pulsed's
	// catalog has the address).
	addr, slotAddr := obs.addrs[obs.taskID], map[string]string{}
	for name, s := range obs.slots {
		slotAddr[name] = s.addr
	}
	slot := slotOf(slotAddr, addr)
	if len(tookTraffic) != 1 || slot == "" || obs.slots[slot].traffic.IsZero() {
		return fmt.Errorf("the server that took traffic (%v) is not the new task %s's (at %q: %q)", tookTraffic, obs.taskID, addr, slot)
	}
	since := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return round3(t.Sub(obs.running).Seconds())
	}
	r.ScaleToRunningS = round3(obs.running.Sub(t0).Seconds())
	if !obs.desired.IsZero() {
		r.CatalogScaleS = round3(obs.desired.Sub(t0).Seconds())
		r.LateNotice = obs.desired.After(obs.running)
	}
	s := obs.slots[slot]
	r.SeenS, r.CatalogS = since(obs.seen), since(obs.listed[obs.taskID])
	r.Server, r.AddedS, r.ReadyS, r.TrafficS, r.Stot = slot, since(s.added), since(s.ready), since(s.traffic), s.stot
	if r.ReadyS <= 0 || r.TrafficS <= 0 {
		return fmt.Errorf("the new task's server was ready %.3f s and took traffic %.3f s after it turned running: not after it", r.ReadyS, r.TrafficS)
	}
	return nil
}

// pollTasks polls the service's tasks every gwTaskPoll until one not in
// known is running, and records its ID, its status timestamp and when it
// was first seen.
func (b *gatewayBench) pollTasks(ctx context.Context, f filters.Args, known map[string]bool, obs *scaleObs) {
	pollNewTasks(ctx, b.api, f, known, gwTaskPoll, obs.note, func(tasks []swarm.Task, now time.Time) bool {
		for _, t := range tasks {
			if t.Status.State == swarm.TaskStateRunning {
				obs.mu.Lock()
				if obs.taskID == "" {
					obs.taskID, obs.running, obs.seen = t.ID, t.Status.Timestamp, now
				}
				obs.mu.Unlock()
				return true
			}
		}
		return false
	})
}

// pollCatalog polls pulsed's catalog every gwCatalogPoll and records when
// it first showed want desired replicas, and when each task not in known
// was first listed (not draining).
func (b *gatewayBench) pollCatalog(ctx context.Context, want int, known map[string]bool, obs *scaleObs) {
	every(ctx, gwCatalogPoll, func() {
		fn, err := b.catalogFunction(ctx, b.name)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if obs.desired.IsZero() && fn.Desired >= want {
			obs.desired = now
		}
		for _, rep := range fn.Replicas {
			if known[rep.TaskID] || rep.Draining {
				continue
			}
			if _, ok := obs.listed[rep.TaskID]; !ok {
				obs.listed[rep.TaskID] = now
			}
			obs.addrs[rep.TaskID] = rep.Addr
		}
	})
}

// pollHAProxy polls `show servers state <backend>` every gwHAProxyPoll and
// records when each slot first was given a new replica (it left
// maintenance or was pointed at another address than in base, the slots
// before the scale) and first was serving (ready and up); once one is, it
// reads `show stat` too and records when that slot's total sessions (stot)
// first rose past its count in base, then closes done. Slots are named
// s1…sN whatever replica they hold, and their counters run on from one
// replica to the next.
func (b *gatewayBench) pollHAProxy(ctx context.Context, backend string, base map[string]slotInfo, obs *scaleObs, done chan<- struct{}) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	every(ctx, gwHAProxyPoll, func() {
		servers, err := b.rt.Servers(ctx, backend)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		anyReady := false
		obs.mu.Lock()
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
				if o.ready.IsZero() {
					o.ready = now
				}
				o.addr = s.Addr
			}
			anyReady = anyReady || (o != nil && !o.ready.IsZero())
		}
		obs.mu.Unlock()
		if !anyReady {
			return
		}
		out, err := b.rt.Exec(ctx, "show stat "+backend+" 4 -1") // type 4: servers only
		now = time.Now()
		var stats []gateway.ServerStat
		if err == nil {
			stats, err = gateway.ParseServerStat(strings.NewReader(out))
		}
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		took := false
		obs.mu.Lock()
		for _, st := range stats {
			o := obs.slots[st.Server]
			if o == nil || o.ready.IsZero() || st.Sessions <= base[st.Server].Stot {
				continue
			}
			if o.traffic.IsZero() {
				o.traffic, o.stot = now, st.Sessions-base[st.Server].Stot
			}
			took = true
		}
		obs.mu.Unlock()
		if took {
			close(done)
			stop()
		}
	})
}
