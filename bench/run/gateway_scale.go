package main

import (
	"context"
	"encoding/json"
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

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// The gateway suite's scale stage: a new task turning running to its
// server taking traffic, followed through Swarm, pulsed's catalog and
// HAProxy's runtime API.

// scaleStage runs ScaleTrials +1 scales of the function (1 → 2) under a
// light background load through the gateway, and after each scales it back
// to 1.
func (b *gatewayBench) scaleStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	p, err := b.startPulsed(ctx, gwStageScale, "", 1)
	if err != nil {
		return err
	}
	cctx, cancel := call(ctx)
	svc, _, err := b.api.ServiceInspectWithRaw(cctx, b.name, swarm.ServiceInspectOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("inspect service %s: %w", b.name, err)
	}
	// Quiet once, before the background load: with it running the host is
	// busy by design, so each trial only records how busy.
	if _, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	} else if busy >= quietCorePct {
		b.log.Warn("host still busy; running anyway", "stage", gwStageScale, "busy_core_pct", int(busy))
	}
	reloads0, rerr0 := b.reloads(ctx, p)
	load := startBackgroundLoad("http://"+p.gateway+"/function/"+b.name, b.body, gwBackgroundClients, gwBackgroundPause)
	defer func() {
		why := load.end()
		b.rep.Background = gatewayBackground{OK: load.ok.Load(), Failed: load.failed.Load(), Why: why, Reloads: -1}
		if reloads1, rerr1 := b.reloads(context.WithoutCancel(ctx), p); rerr0 == nil && rerr1 == nil {
			b.rep.Background.Reloads = reloads1 - reloads0
		}
	}()
	for trial := 1; trial <= b.cfg.ScaleTrials; trial++ {
		r := gatewayScaleTrial{Trial: trial, From: 1, To: 2}
		// A scale usually lands on a steady swarm, which pulsed polls slowly:
		// wait until its catalog has not changed for longer than its settle
		// window, then scale at a random phase of its slow poll.
		waited, err := b.waitSteady(ctx, p)
		if err != nil {
			return err
		}
		phase := time.Duration(mrand.Int64N(int64(catalog.DefaultSlowPoll)))
		busy, err := hostBusy(ctx, b.env.clk, phase)
		if err != nil {
			return err
		}
		r.SteadyWaitS, r.PhaseS = round3(waited.Seconds()), round3(phase.Seconds())
		r.HostBusyPct = float64(int(busy + 0.5))
		r.Start = time.Now().UTC().Format(time.RFC3339)
		r.Load1, _ = readLoad1("/proc")
		ok0, failed0 := load.ok.Load(), load.failed.Load()
		err = b.scaleOnce(ctx, p, svc.ID, &r)
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: the final sweep removes the function
		}
		start := time.Now()
		back := b.scaleBack(ctx, p, r.From)
		r.DownS = round3(time.Since(start).Seconds())
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

// gwSteadyFor is how long pulsed's catalog must stay unchanged before a
// scale trial: past its settle window, when it polls a steady swarm slowly.
const gwSteadyFor = catalog.DefaultSettle + 500*time.Millisecond

// waitSteady polls pulsed's /v1/replicas every 100 ms until its version has
// not changed for gwSteadyFor (at most readyTimeout: then it goes on) and
// returns how long it waited.
func (b *gatewayBench) waitSteady(ctx context.Context, p *pulsedProc) (time.Duration, error) {
	start := time.Now()
	version, changed := "", start
	for time.Since(start) < readyTimeout {
		cat, err := b.catalog(ctx, p)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		now := time.Now()
		if err != nil || cat.Version != version {
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

// hostBusy returns the host's busy CPU over d, in percent of one core.
func hostBusy(ctx context.Context, clk float64, d time.Duration) (float64, error) {
	h0, err := readHostCPU("/proc")
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return 0, err
	}
	h1, err := readHostCPU("/proc")
	if err != nil {
		return 0, err
	}
	return 100 * float64(h1.Busy-h0.Busy) / clk / time.Since(t0).Seconds(), nil
}

// scaleBack scales to n and waits until n containers run and HAProxy has
// only n servers holding a replica (pulsed puts a drained slot back in
// maintenance once its replica is gone).
func (b *gatewayBench) scaleBack(ctx context.Context, p *pulsedProc, n int) error {
	if err := b.scaleTo(ctx, n); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		servers, err := p.rt.Servers(ctx, gateway.BackendName(b.name))
		if live, _ := countSlots(servers); err == nil && live == n {
			return nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	b.log.Warn("HAProxy still lists a removed replica's server 15 s after the scale-down", "function", b.name)
	return nil
}

// scaleObs is what the scale trial's pollers saw, guarded by mu.
type scaleObs struct {
	mu        sync.Mutex
	taskID    string
	running   time.Time            // the task's Status.Timestamp when first seen running
	seen      time.Time            // when the harness first saw it running
	desired   time.Time            // pulsed's catalog first showed the new replica count
	catalog   map[string]time.Time // new task → first listed
	addrs     map[string]string    // new task → its address in the catalog
	added     map[string]time.Time // slot → pointed at a new replica (left maintenance or re-pointed)
	ready     map[string]time.Time // slot → serving (ready and up)
	traffic   map[string]time.Time // slot → its stot first rose past the count before the scale
	stot      map[string]int64     // slot → sessions the new replica had taken then
	slotAddr  map[string]string    // slot → the address it pointed at when added
	lastError error
}

func (o *scaleObs) note(err error) {
	o.mu.Lock()
	o.lastError = err
	o.mu.Unlock()
}

// scaleOnce scales from r.From to r.To and follows the new task: Swarm's
// task list (when it turned running: its status timestamp), pulsed's
// catalog, and HAProxy's runtime API (its server added, ready and up, then
// taking sessions of the background load).
func (b *gatewayBench) scaleOnce(ctx context.Context, p *pulsedProc, serviceID string, r *gatewayScaleTrial) error {
	backend := gateway.BackendName(b.name)
	taskFilter := filters.NewArgs(filters.Arg("service", serviceID))
	knownTasks, err := taskIDs(ctx, b.api, taskFilter)
	if err != nil {
		return err
	}
	slots, err := readSlots(ctx, p.rt, backend)
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

	obs := &scaleObs{catalog: map[string]time.Time{}, addrs: map[string]string{}, added: map[string]time.Time{}, ready: map[string]time.Time{},
		traffic: map[string]time.Time{}, stot: map[string]int64{}, slotAddr: map[string]string{}}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	done := make(chan struct{}) // closed when a new server took traffic
	wg.Add(3)
	go func() { defer wg.Done(); b.pollTasks(pctx, taskFilter, knownTasks, obs) }()
	go func() { defer wg.Done(); b.pollCatalog(pctx, p, r.To, knownTasks, obs) }()
	go func() { defer wg.Done(); b.pollHAProxy(pctx, p, backend, base, obs, done) }()

	t0 := time.Now()
	if err := b.sw.Scale(ctx, b.name, r.To, true); err != nil {
		return err
	}
	r.ScaleCallS = round3(time.Since(t0).Seconds())
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
		have := obs.taskID != "" && !obs.catalog[obs.taskID].IsZero() && obs.addrs[obs.taskID] != ""
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
	if waitErr != nil || obs.taskID == "" {
		why := fmt.Sprintf("after %s, task running: %t, HAProxy servers added %v, ready %v, took traffic %v", time.Since(t0).Round(time.Millisecond),
			obs.taskID != "", slices.Sorted(maps.Keys(obs.added)), slices.Sorted(maps.Keys(obs.ready)), slices.Sorted(maps.Keys(obs.traffic)))
		if obs.lastError != nil {
			why += fmt.Sprintf(" (last error: %v)", obs.lastError)
		}
		return fmt.Errorf("the new replica did not take traffic: %s%s", fmtErr(waitErr), why)
	}
	// The new task's server: the slot pointed at its address (pulsed's
	// catalog has the address).
	slot := slotOf(obs.slotAddr, obs.addrs[obs.taskID])
	if len(obs.traffic) != 1 || slot == "" || obs.traffic[slot].IsZero() {
		return fmt.Errorf("the server that took traffic (%v) is not the new task %s's (at %q: %q)", slices.Sorted(maps.Keys(obs.traffic)), obs.taskID, obs.addrs[obs.taskID], slot)
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
	r.SeenS = since(obs.seen)
	r.CatalogS = since(obs.catalog[obs.taskID])
	r.Server = slot
	r.AddedS = since(obs.added[slot])
	r.ReadyS = since(obs.ready[slot])
	r.TrafficS = since(obs.traffic[slot])
	r.Stot = obs.stot[slot]
	if r.ReadyS <= 0 || r.TrafficS <= 0 {
		return fmt.Errorf("the new task's server was ready %.3f s and took traffic %.3f s after it turned running: not after it", r.ReadyS, r.TrafficS)
	}
	return nil
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error() + ": "
}

// pollTasks polls the service's tasks every gwTaskPoll for one not in
// known that is running, and records its ID, its status timestamp and when
// it was first seen.
func (b *gatewayBench) pollTasks(ctx context.Context, f filters.Args, known map[string]bool, obs *scaleObs) {
	tick := time.NewTicker(gwTaskPoll)
	defer tick.Stop()
	for {
		cctx, cancel := call(ctx)
		tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
		cancel()
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(fmt.Errorf("list tasks: %w", err))
		}
		for _, t := range tasks {
			if known[t.ID] || t.Status.State != swarm.TaskStateRunning {
				continue
			}
			obs.mu.Lock()
			if obs.taskID == "" {
				obs.taskID, obs.running, obs.seen = t.ID, t.Status.Timestamp, now
			}
			obs.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollCatalog polls pulsed's /v1/replicas every gwCatalogPoll and records
// when it first showed want desired replicas, and when each task not in
// known was first listed (not draining).
func (b *gatewayBench) pollCatalog(ctx context.Context, p *pulsedProc, want int, known map[string]bool, obs *scaleObs) {
	every(ctx, gwCatalogPoll, func() {
		cat, err := b.catalog(ctx, p)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		for _, fn := range cat.Functions {
			if fn.Name != b.name {
				continue
			}
			obs.mu.Lock()
			if obs.desired.IsZero() && fn.Desired >= want {
				obs.desired = now
			}
			obs.mu.Unlock()
			for _, rep := range fn.Replicas {
				if known[rep.TaskID] || rep.Draining {
					continue
				}
				obs.mu.Lock()
				if _, ok := obs.catalog[rep.TaskID]; !ok {
					obs.catalog[rep.TaskID] = now
				}
				obs.addrs[rep.TaskID] = rep.Addr
				obs.mu.Unlock()
			}
		}
	})
}

func (b *gatewayBench) catalog(ctx context.Context, p *pulsedProc) (contract.Catalog, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.api+contract.CatalogPath, nil)
	if err != nil {
		return contract.Catalog{}, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return contract.Catalog{}, fmt.Errorf("catalog: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return contract.Catalog{}, fmt.Errorf("catalog: %s", resp.Status)
	}
	var cat contract.Catalog
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&cat); err != nil {
		return contract.Catalog{}, fmt.Errorf("catalog: %w", err)
	}
	return cat, nil
}

// pollHAProxy polls `show servers state <backend>` every gwHAProxyPoll and
// records when each slot first was given a new replica (it left
// maintenance or was pointed at another address than in base, the slots
// before the scale) and first was serving (ready and up); once one is, it
// reads `show stat` too and records when that slot's total sessions (stot)
// first rose past its count in base, then closes done. Slots are named
// s1…sN whatever replica they hold, and their counters run on from one
// replica to the next.
func (b *gatewayBench) pollHAProxy(ctx context.Context, p *pulsedProc, backend string, base map[string]slotInfo, obs *scaleObs, done chan<- struct{}) {
	tick := time.NewTicker(gwHAProxyPoll)
	defer tick.Stop()
	statCmd := "show stat " + backend + " 4 -1" // type 4: servers only
	for {
		servers, err := p.rt.Servers(ctx, backend)
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
			if _, seen := obs.added[s.Name]; !seen && (s.Live() || !ok || s.Addr != was.Addr) {
				obs.added[s.Name], obs.slotAddr[s.Name] = now, s.Addr
			}
			if _, seen := obs.added[s.Name]; seen && s.Serving {
				if _, ok := obs.ready[s.Name]; !ok {
					obs.ready[s.Name] = now
				}
				obs.slotAddr[s.Name] = s.Addr
			}
			if _, ok := obs.ready[s.Name]; ok {
				anyReady = true
			}
		}
		obs.mu.Unlock()
		if anyReady {
			out, err := p.rt.Exec(ctx, statCmd)
			now := time.Now()
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
				if _, ok := obs.ready[st.Server]; !ok || st.Sessions <= base[st.Server].Stot {
					continue
				}
				if _, ok := obs.traffic[st.Server]; !ok {
					obs.traffic[st.Server], obs.stot[st.Server] = now, st.Sessions-base[st.Server].Stot
				}
				took = true
			}
			obs.mu.Unlock()
			if took {
				close(done)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// slotOf returns the slot whose address is addr in slotAddr, "" if none.
func slotOf(slotAddr map[string]string, addr string) string {
	if addr == "" {
		return ""
	}
	for name, a := range slotAddr {
		if a == addr {
			return name
		}
	}
	return ""
}
