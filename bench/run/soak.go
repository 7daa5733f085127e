package main

// The soak suite (bench/README.md): the fair CPU comparison and the saturation (its load and summary in soak_report.go),
// then the soak with HAProxy's request log (soak_attrib.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/watchdog"
)

const suiteSoak = "soak"

// clock formats seconds as m:ss.s.
func clock(s float64) string { return fmt.Sprintf("%d:%04.1f", int(s)/60, s-float64(int(s)/60*60)) }

// Settings of the soak; the update and the kill land at soakUpdateAt, soakKillAt of the stepping part.
const (
	soakNamePrefix, soakRollEnv   = "pbench-soak-", "PULSE_BENCH_SOAK_GENERATION"
	soakMetric                    = "inflight"
	soakTarget, soakMin, soakMax  = 8, 1, 8
	soakTimeout                   = 10 * time.Second
	soakDefault, soakMinDuration  = 10 * time.Minute, 3 * time.Minute
	soakStep, soakCompareConns    = time.Minute, 16
	soakStatPoll, soakLogLinger   = time.Second, 2 * time.Second // the linger: load end → the log socket closed
	soakRoute, soakAlarmInit      = 90 * time.Second, 90 * time.Second
	soakStopGrace, soakUpdateWait = 20 * time.Second, 3 * time.Minute
	soakUpdateAt, soakKillAt      = 0.5625, 0.8125
	soakPhaseStep, soakPhaseGwCPU = "step", "gateway CPU"
	soakPhaseDirect               = "direct CPU"
	soakKillSpan                  = time.Minute // after the kill call, the failures in its error window
)

// Settings of the fair comparison: fairPairs of gateway and direct stretches.
const (
	fairConns, fairPairs    = 16, 4
	fairStretch, fairSettle = 15 * time.Second, 2 * time.Second
	fairQuietWait           = 30 * time.Second // before the first stretch, for the host to be quiet
)

// soakPattern is the stepping minutes' connections, repeated; the last is soakCompareConns.
var soakPattern = []int{4, 16, 32, 16, 48, 8, 32, 16}

// soakPhase is one minute of load; a direct one loads one replica.
type soakPhase struct {
	Name         string
	StartS, EndS float64
	Conns        int
	Direct       bool
}

// soakBench runs the soak suite.
type soakBench struct {
	pulseLab
	name, hello, burn string // the soak's, the fair comparison's, the saturation's functions
	body              string
	rep               *report.Report
	sum               *report.Row // the soak's figures
	hlog              *haLog
	spec              function.Spec
	img               function.Image
	t0                time.Time

	mu       sync.Mutex // guards what follows
	stats    *statAcc
	kill     *soakKill
	statErrs int
}

// runSoak runs the soak suite.
func runSoak(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	phases, updateAt, killAt, err := soakSchedule(cfg.SoakDuration)
	if err != nil {
		return err
	}
	id, err := runID()
	if err != nil {
		return err
	}
	if err := netdatalab.Available(); err != nil {
		return err
	}
	b := &soakBench{
		pulseLab: newPulseLab(log, env, id, soakNamePrefix, env.tools.haproxy, soakRoute, soakStopGrace),
		body:     payload(cfg.BodyBytes), stats: newStatAcc(), rep: report.New(cfg.Suite, env.started), sum: report.NewRow("soak"),
		name: soakNamePrefix + id + "-echo", hello: soakNamePrefix + id + "-hello", burn: soakNamePrefix + id + "-burn",
	}
	rep := b.rep
	m, versions, err := b.open(ctx, rep)
	if err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()
	if err := b.build(ctx, rep, goStep(env.tools, env.tmp, "inproc", "./bench/inproc", inprocTags), cStep(env.tools, env.tmp, "burnecho", burnEchoC)); err != nil {
		return err
	}
	b.spec = function.Spec{Name: b.name, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".",
		Scale: function.Scale{Metric: soakMetric, Target: soakTarget, Min: soakMin, Max: soakMax}, Env: map[string]string{soakRollEnv: "1"}}
	deploy := func(ctx context.Context) (err error) {
		b.img, err = b.deployPinned(ctx, &b.spec, "", "inproc")
		return err
	}
	for _, step := range []func(context.Context) error{b.prepareShared, b.startNetdata, b.beforeSoak, deploy, b.start} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	log.Info("soak", "function", b.name, "duration", cfg.SoakDuration, "rolling_update_at", updateAt, "kill_at", killAt)
	run, err := b.soak(ctx, phases, updateAt, killAt)
	if err != nil {
		return err
	}
	analyzeSoak(rep, b.sum, run)
	if b.statErrs > 0 {
		rep.Note("%d `show stat` polls of the soak failed: the attribution and the per-server counters miss them", b.statErrs)
	}
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	penv, _ := rep.Records["pulsed_env"].([]string)
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s; before the soak, on a first pulsed at its defaults, the fair CPU comparison and "+
		"health under saturation; the soak: a second pulsed with the request log, %s of closed-loop keep-alive load (%d-byte POST) on %s (bench/inproc), "+
		"scale %s target %d min %d max %d, timeout %s, drain grace %s, no Docker health check, autoscaler on; pulsed: %s",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, versions, cfg.SoakDuration, cfg.BodyBytes, b.name,
		soakMetric, soakTarget, soakMin, soakMax, soakTimeout, watchdog.DefaultDrainGrace, strings.Join(penv, " "))
	soakTables(rep)
	if cfg.SoakDuration < soakDefault {
		cfg.Readme = "-" // a short run leaves the README alone
	}
	return publishReport(cfg, stdout, rep)
}

// beforeSoak runs the fair comparison and the saturation on a first pulsed at its defaults.
func (b *soakBench) beforeSoak(ctx context.Context) error {
	pinned := function.Scale{Metric: soakMetric, Target: soakTarget, Min: 1, Max: 1}
	if _, err := b.deployPinned(ctx, &function.Spec{Name: b.hello, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".", Scale: pinned}, "", "inproc"); err != nil {
		return err
	}
	if _, err := b.deployPinned(ctx, &function.Spec{Name: b.burn, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn", Scale: pinned,
		Env: map[string]string{"BURN_MS": strconv.Itoa(satBurnMS)}}, "watchdog", "burnecho"); err != nil {
		return err
	}
	if _, err := b.startPulsed(ctx); err != nil {
		return err
	}
	for _, fn := range []string{b.hello, b.burn} {
		if err := b.waitRouted(ctx, fn, 1, b.body); err != nil {
			return err
		}
	}
	if err := b.fairCPU(ctx); err != nil {
		return err
	}
	if err := b.saturation(ctx); err != nil {
		return err
	}
	b.rep.Cleanup = append(b.rep.Cleanup, b.stopPulsed()...)
	return errors.Join(b.remove(ctx, b.hello), b.remove(ctx, b.burn))
}

// deployPinned deploys spec (artifacts wd, "" for none, and fn) and waits for a replica.
func (b *soakBench) deployPinned(ctx context.Context, spec *function.Spec, wd, fn string) (function.Image, error) {
	spec.Timeout, spec.MaxBody = soakTimeout, 1<<20
	bins := map[string][]byte{}
	for _, a := range slices.DeleteFunc([]string{wd, fn}, func(a string) bool { return a == "" }) {
		var err error
		if bins[a], err = b.arts.read(a); err != nil {
			return function.Image{}, fmt.Errorf("deploy %s: %w", spec.Name, err)
		}
	}
	img, _, err := b.deployFunction(ctx, spec, bins[wd], bins[fn], 0)
	if err != nil {
		return img, err
	}
	wctx, cancel := context.WithTimeout(ctx, soakRoute)
	defer cancel()
	_, err = b.sw.WaitReady(wctx, spec.Name, 1)
	return img, err
}

// stretch is one measured stretch of the fair comparison: path, span (s), CPU ticks.
type stretch struct {
	path     string
	from, to float64
	ticks    map[string]float64
}

// fairCPU runs the fair comparison: fairConns connections through the gateway and straight
// to the one replica in interleaved stretches (Thue–Morse order), and adds its rows.
func (b *soakBench) fairCPU(ctx context.Context) error {
	f, err := b.catalogFunction(ctx, b.hello)
	if err != nil {
		return err
	}
	if len(f.Replicas) != 1 || !f.Replicas[0].Routed {
		return fmt.Errorf("%s: %d replicas in pulsed's catalog, want one routed", b.hello, len(f.Replicas))
	}
	direct, _ := loopbackAddr(f.Replicas[0].Addr)
	// The direct path carries the replica credential, as HAProxy's requests do.
	if refused, err := refusesWithout(ctx, "http://"+direct+"/", b.body); err != nil {
		return err
	} else if !refused {
		b.rep.Note("fair comparison: %s", noCredentialCheck)
	}
	waited, busy, err := waitQuiet(ctx, b.env.clk, fairQuietWait)
	if err != nil {
		return err
	}
	if busy >= quietCorePct {
		b.rep.Note("the host was still %.0f %% of a core busy after %.0f s of waiting when the fair comparison began", busy, waited.Seconds())
	}
	b.log.Info("fair CPU comparison", "function", b.hello, "connections", fairConns, "stretches", 2*fairPairs, "each", fairStretch)
	t0 := time.Now()
	load := newClosedLoop(t0, b.body, b.cred.header())
	defer load.end() // a second end is a no-op
	var sts []stretch
	for i := range 2 * fairPairs {
		st := stretch{path: pathGateway}
		if fairDirect(i) {
			st.path = pathDirect
			load.set(fairConns, direct, "/", true)
		} else {
			load.set(fairConns, b.gwAddr, "/function/"+b.hello, false)
		}
		if err := sleepCtx(ctx, fairSettle); err != nil {
			return err
		}
		m0, start := markCPU(), time.Now()
		if err := sleepCtx(ctx, fairStretch); err != nil {
			return err
		}
		m1 := markCPU()
		st.from, st.to, st.ticks = report.Round3(start.Sub(t0).Seconds()), report.Round3(time.Since(t0).Seconds()), map[string]float64{}
		for k, v := range m1 {
			st.ticks[k] = v - m0[k]
		}
		sts = append(sts, st)
	}
	recs, fails := load.end()
	if len(fails) > 0 {
		b.rep.Note("%d request(s) of the fair comparison failed", len(fails))
	}
	for _, r := range fairRows(sts, recs, b.env.clk) {
		b.rep.Add(r)
	}
	return nil
}

// fairDirect reports whether stretch i goes straight to the replica (Thue–Morse).
func fairDirect(i int) bool { return bits.OnesCount(uint(i))%2 == 1 }

// markCPU reads, in ticks, the host's busy, total and stolen CPU and this program's own.
func markCPU() map[string]float64 {
	h, _ := readHostCPU("/proc")
	m := map[string]float64{"busy": float64(h.Busy), "total": float64(h.Total), "steal": float64(h.Steal)}
	if st, err := readStat("/proc", os.Getpid()); err == nil {
		m[groupHarness] = float64(st.UTime + st.STime)
	}
	return m
}

// soakSchedule returns the phases of a run of d (stepping minutes, then a minute through the
// gateway and one direct at the same connections) and when the update and the kill happen.
func soakSchedule(d time.Duration) (phases []soakPhase, update, kill time.Duration, err error) {
	if d < soakMinDuration || d%soakStep != 0 {
		return nil, 0, 0, fmt.Errorf("soak duration %s: want whole minutes, at least %s", d, soakMinDuration)
	}
	n := int(d / soakStep)
	stepping := n - 2
	at := func(i int) float64 { return float64(i) * soakStep.Seconds() }
	for i := range stepping {
		c := soakPattern[i%len(soakPattern)]
		if i == stepping-1 {
			c = soakCompareConns
		}
		phases = append(phases, soakPhase{Name: soakPhaseStep, StartS: at(i), EndS: at(i + 1), Conns: c})
	}
	phases = append(phases,
		soakPhase{Name: soakPhaseGwCPU, StartS: at(stepping), EndS: at(stepping + 1), Conns: soakCompareConns},
		soakPhase{Name: soakPhaseDirect, StartS: at(stepping + 1), EndS: at(n), Conns: soakCompareConns, Direct: true})
	part := time.Duration(stepping) * soakStep
	round := func(f float64) time.Duration {
		return (time.Duration(f*float64(part)) + time.Second/2).Truncate(time.Second)
	}
	return phases, round(soakUpdateAt), round(soakKillAt), nil
}

// phaseAt returns the index of the phase running at s seconds, or -1.
func phaseAt(phases []soakPhase, s float64) int {
	return slices.IndexFunc(phases, func(p soakPhase) bool { return s >= p.StartS && s < p.EndS })
}

// start starts the second pulsed with HAProxy's request log sent to a socket here, and
// waits until the function is routed and its alarms are initialised.
func (b *soakBench) start(ctx context.Context) error {
	var err error
	if b.hlog, err = listenHALog(gateway.BackendName(b.name)); err != nil {
		return err
	}
	env, err := b.startPulsed(ctx, "PULSE_HAPROXY_LOG="+b.hlog.Target())
	if err != nil {
		return err
	}
	b.rep.Record("pulsed_env", env)
	if err := b.waitRouted(ctx, b.name, 1, b.body); err != nil {
		return err
	}
	return b.waitAlarm(ctx, b.name, soakAlarmInit)
}

// soak runs the schedule with the rolling update, the kill and the `show stat` poller.
func (b *soakBench) soak(ctx context.Context, phases []soakPhase, updateAt, killAt time.Duration) (soakRun, error) {
	b.t0 = time.Now()
	pctx, stopPollers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopPollers(); wg.Wait() }()
	wg.Go(func() { every(pctx, soakStatPoll, func() { b.pollStats(pctx) }) })
	wg.Go(func() { b.rollingUpdate(pctx, b.t0.Add(updateAt)) })
	wg.Go(func() { b.killOne(pctx, b.t0.Add(killAt)) })
	load := newClosedLoop(b.t0, b.body, b.cred.header())
	defer load.end() // a second end is a no-op
	at := func(s float64) time.Time { return b.t0.Add(time.Duration(s * float64(time.Second))) }
	for _, ph := range phases {
		if err := sleepCtx(ctx, time.Until(at(ph.StartS))); err != nil {
			return soakRun{}, err
		}
		addr, path := b.gwAddr, "/function/"+b.name
		if ph.Direct {
			f, err := b.catalogFunction(ctx, b.name)
			i := slices.IndexFunc(f.Replicas, func(r contract.Replica) bool { return r.Routed && !r.Draining })
			if err == nil && i < 0 {
				err = fmt.Errorf("no routed replica of %s for the direct minute", b.name)
			}
			if err != nil {
				return soakRun{}, err
			}
			addr, _ = loopbackAddr(f.Replicas[i].Addr)
			path = "/"
		}
		load.set(ph.Conns, addr, path, ph.Direct)
		b.log.Info("phase", "phase", ph.Name, "at", clock(ph.StartS), "connections", ph.Conns, "addr", addr)
	}
	if err := sleepCtx(ctx, time.Until(at(phases[len(phases)-1].EndS))); err != nil {
		return soakRun{}, err
	}
	recs, fails := load.end()
	b.log.Info("load done", "requests", len(recs), "failed", len(fails))
	stopPollers()
	wg.Wait()
	b.pollStats(ctx)
	return soakRun{t0: b.t0, phases: phases, recs: recs, fails: fails, log: b.hlog.close(soakLogLinger), stats: b.stats, kill: b.kill}, nil
}

// rollingUpdate redeploys the function with a changed environment at at and waits for
// Swarm's update to end (only this goroutine writes the soak's row during the load).
func (b *soakBench) rollingUpdate(ctx context.Context, at time.Time) {
	if sleepCtx(ctx, time.Until(at)) != nil {
		return
	}
	spec := b.spec
	spec.Env = map[string]string{soakRollEnv: "2"}
	b.log.Info("rolling update", "at", clock(time.Since(b.t0).Seconds()))
	b.sum.Labels["rolling_update"] = "not seen done"
	if _, err := b.sw.Deploy(ctx, spec, b.img, function.DeployOptions{NoHealthcheck: true, Instance: benchInstance(b.run)}); err != nil {
		b.sum.Labels["rolling_update"] = "deploy failed: " + err.Error()
		return
	}
	ended := []swarm.UpdateState{swarm.UpdateStateCompleted, swarm.UpdateStatePaused, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused}
	for deadline := time.Now().Add(soakUpdateWait); time.Now().Before(deadline) && sleepCtx(ctx, 250*time.Millisecond) == nil; {
		if svc, err := inspectService(ctx, b.api, b.name); err == nil && svc.UpdateStatus != nil && slices.Contains(ended, svc.UpdateStatus.State) {
			b.sum.Labels["rolling_update"] = string(svc.UpdateStatus.State) + ": " + svc.UpdateStatus.Message
			return
		}
	}
}

// killOne SIGKILLs a random routed replica's container at at, noting when it ended.
func (b *soakBench) killOne(ctx context.Context, at time.Time) {
	if sleepCtx(ctx, time.Until(at)) != nil {
		return
	}
	f, err := b.catalogFunction(ctx, b.name)
	cands := slices.DeleteFunc(f.Replicas, func(r contract.Replica) bool { return !r.Routed || r.Draining })
	if err != nil || len(cands) == 0 {
		b.log.Warn("kill: no routed replica", "err", err)
		return
	}
	victim := cands[mrand.IntN(len(cands))]
	cctx, cancel := call(ctx)
	defer cancel()
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.task.id="+victim.TaskID))})
	if err != nil || len(cs) != 1 {
		b.log.Warn("kill: the replica's container", "task", victim.TaskID, "found", len(cs), "err", err)
		return
	}
	called := time.Now()
	if err := b.api.ContainerKill(cctx, cs[0].ID, "SIGKILL"); err != nil {
		b.log.Warn("kill", "err", err)
		return
	}
	ended := called
	if ci, err := b.api.ContainerInspect(cctx, cs[0].ID); err == nil && ci.ContainerJSONBase != nil && ci.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, ci.State.FinishedAt); err == nil && t.After(called.Add(-time.Second)) {
			ended = t
		}
	}
	b.log.Info("replica killed", "task", victim.TaskID, "addr", victim.Addr, "at", clock(called.Sub(b.t0).Seconds()), "ended_after", ended.Sub(called))
	b.mu.Lock()
	b.kill = &soakKill{CallAt: called, At: ended, Addr: victim.Addr}
	b.mu.Unlock()
}

// pollStats adds one `show stat` of the function's servers to the counters.
func (b *soakBench) pollStats(ctx context.Context) {
	rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.name))
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.statErrs++
		return
	}
	b.stats.add(time.Now(), rows)
}

// cleanup closes the log socket and cleans the lab up (pulseLab.cleanup).
func (b *soakBench) cleanup() []string {
	if b.hlog != nil {
		_ = b.hlog.conn.Close()
	}
	return b.pulseLab.cleanup()
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
