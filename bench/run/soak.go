package main

// The soak suite. One run has three parts, on the lab stack (lab.go: pulsed,
// HAProxy, a lab Netdata with pulse.d.plugin, the alarms and the hook):
//
//  1. The fair CPU comparison (soak_fair.go): pulsed at its defaults (no
//     request log), an in-process Go echo pinned at one replica (scale min =
//     max = 1), 16 closed-loop connections through the gateway and straight
//     to that replica in interleaved stretches: whole-host CPU per request
//     on each path, and the per-process split.
//  2. Health under saturation (soak_sat.go), on the same pulsed: a
//     fork-mode C function burning 15 ms of CPU per request, pinned at one
//     replica, under 64 closed-loop connections for 2 minutes: its slot's
//     DOWN transitions, requests detoured through the cold-start path,
//     failed requests, latency.
//  3. The soak: pulsed started again with HAProxy's request log sent to a
//     UDP socket of the harness (haproxy_log), then ten minutes
//     (-soak-duration) of closed-loop load through the gateway with the
//     autoscaler on, the connections stepping up and down every minute, a
//     rolling update in the middle and one replica killed later; then a
//     minute through the gateway and a minute straight to one replica at the
//     same connections (the CPU per request with the request log and the
//     replicas the autoscaler keeps: informational). Every request is
//     recorded by the client; the request log names the server of each, and
//     pulsed's catalog and HAProxy's slots, polled every 500 ms, name the
//     replica and task behind the server at that moment.
//
// The comparison and the saturation come first because the host is
// quietest then: no TIME_WAIT sockets, draining replicas or HAProxy reloads
// left from the soak, and the harness does not yet hold (and garbage
// collect) millions of request records.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/watchdog"
)

const suiteSoak = "soak"

// Settings of the soak suite.
const (
	soakNamePrefix = "pbench-soak-"
	// The function's policy: the closed-loop connections are its
	// in-flight demand, so 48 connections ask for 6 replicas, 16 for 2.
	soakMetric     = "inflight"
	soakTarget     = 8
	soakMin        = 1
	soakMax        = 8
	soakTimeout    = 10 * time.Second
	soakDefault    = 10 * time.Minute
	soakSamplePoll = 500 * time.Millisecond // pulsed's catalog and HAProxy's slots
	soakHostPoll   = time.Second            // show stat, TIME_WAIT, /proc/stat
	soakRoute      = 90 * time.Second
	soakAlarmInit  = 90 * time.Second
	soakStopGrace  = 20 * time.Second
	soakUpdateWait = 3 * time.Minute // the rolling update's end is looked for this long
	soakLogLinger  = 2 * time.Second // load end → the log socket closed
	// soakRollEnv is the environment variable the rolling update changes.
	soakRollEnv = "PULSE_BENCH_SOAK_GENERATION"
)

// soakBench runs the soak suite.
type soakBench struct {
	pulseLab
	name  string // the soak's function
	hello string // the fair comparison's function
	burn  string // the saturation's function
	body  string
	rep   *soakReport
	hlog  *haLog

	spec function.Spec
	img  function.Image
	t0   time.Time

	mu       sync.Mutex
	samples  soakTimeline
	stats    *statAcc
	host     []soakHostSample
	statErrs int
	lastErr  error
}

// soakHostSample is one second of the host poller.
type soakHostSample struct {
	At       time.Time
	TimeWait int
	CPU      hostCPU
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
		body:     payload(cfg.BodyBytes), stats: newStatAcc(),
		name: soakNamePrefix + id + "-echo", hello: soakNamePrefix + id + "-hello", burn: soakNamePrefix + id + "-burn",
	}
	b.rep = &soakReport{
		Config: soakConfig{DurationS: cfg.SoakDuration.Seconds(), StepS: soakStep.Seconds(), Function: b.name,
			Handler: inprocHandler, Metric: soakMetric, Target: soakTarget, Min: soakMin, Max: soakMax,
			TimeoutS: soakTimeout.Seconds(), DrainGraceS: watchdog.DefaultDrainGrace.Seconds(), BodyBytes: cfg.BodyBytes, CompareConns: soakCompareConns,
			CatalogPollS: soakSamplePoll.Seconds(), StatPollS: soakHostPoll.Seconds()},
	}
	rep := b.rep
	if err := b.open(ctx, cfg.Suite, &rep.labHead, &rep.reportEnd); err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()
	// The in-process Go echo as an image's Go function, and the
	// saturation's C handler.
	if err := b.build(ctx, &rep.labHead, goStep(env.tools, env.tmp, "inproc", "./bench/inproc", inprocTags), cStep(env.tools, env.tmp, "burnecho", burnEchoC)); err != nil {
		return err
	}
	// Parts 1 and 2 on pulsed's first lifetime, at its defaults
	// (beforeSoak); part 3 on its second, with the request log (start).
	for _, step := range []func(context.Context) error{b.prepareShared, b.startNetdata, b.beforeSoak, b.deploy, b.start} {
		if err := step(ctx); err != nil {
			return err
		}
	}

	log.Info("soak", "function", b.name, "duration", cfg.SoakDuration, "rolling_update_at", updateAt, "kill_at", killAt)
	recs, fails, err := b.soak(ctx, phases, updateAt, killAt)
	if err != nil {
		return err
	}
	b.analyze(ctx, recs, fails)
	b.keepLogs()
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)

	base := filepath.Join(cfg.Out, cfg.Suite+"-"+env.started.Format("20060102T150405Z"))
	png, err := renderSoakPlot(*rep)
	if err != nil {
		rep.Notes = append(rep.Notes, "the picture could not be drawn: "+err.Error())
	} else {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return err
		}
		if err := credential.WriteFileAtomic(base+".png", png, 0o644, -1); err != nil {
			return err
		}
		rep.Picture = filepath.Base(base + ".png")
		fmt.Fprintf(stdout, "picture: %s\n", base+".png")
	}
	pub := cfg
	if cfg.SoakDuration < soakDefault {
		pub.Readme = "-" // a short run leaves the README alone
	}
	return publish(pub, stdout, env.started, rep, renderSoak(*rep, false, ""), func(rel string) string { return renderSoak(*rep, true, rel) })
}

// inprocHandler describes bench/inproc in the report.
const inprocHandler = "bench/inproc: the in-process Go echo (watchdog library)"

// deploy assembles the echo's image (as /function, the way function.Build
// lays out a Go function) and deploys it at one replica, as `pulse deploy`
// does on this engine: no Docker health check, the default drain grace.
func (b *soakBench) deploy(ctx context.Context) error {
	bin, err := os.ReadFile(b.arts.path("inproc"))
	if err != nil {
		return err
	}
	b.spec = function.Spec{
		Name: b.name, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".",
		Timeout: soakTimeout, MaxBody: 1 << 20,
		Scale: function.Scale{Metric: soakMetric, Target: soakTarget, Min: soakMin, Max: soakMax},
		Env:   map[string]string{soakRollEnv: "1"},
	}
	if b.img, _, err = b.deployFunction(ctx, &b.spec, nil, bin, 0); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, soakRoute)
	defer cancel()
	if _, err := b.sw.WaitReady(wctx, b.name, 1); err != nil {
		return err
	}
	b.log.Info("deployed", "function", b.name)
	return nil
}

// start opens the request log's socket, starts pulsed's second lifetime
// with HAProxy's request log sent to it, and waits until the function is
// routed and its alarms are initialised.
func (b *soakBench) start(ctx context.Context) error {
	var err error
	if b.hlog, err = listenHALog(gateway.BackendName(b.name)); err != nil {
		return err
	}
	changed, err := b.startPulsed(ctx, "PULSE_HAPROXY_LOG="+b.hlog.Target())
	if err != nil {
		return err
	}
	b.rep.Config.PulsedEnv = changed
	b.rep.Config.HAProxyLog = b.hlog.Target()
	if err := b.waitRouted(ctx, b.name, 1, b.body); err != nil {
		return err
	}
	b.log.Info("pulsed routing; waiting for the alarms to initialise", "api", b.apiAddr, "gateway", b.gwAddr)
	return b.waitAlarm(ctx, b.name, soakAlarmInit)
}

// soak runs the schedule with its events and the pollers, and returns the
// client's records.
func (b *soakBench) soak(ctx context.Context, phases []soakPhase, updateAt, killAt time.Duration) ([]loadReq, []loadFail, error) {
	reloads0, rerr0 := b.reloads(ctx)
	b.t0 = time.Now()
	b.rep.T0 = b.t0.UTC().Format(time.RFC3339Nano)
	pctx, stopPollers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.pollSamples(pctx) }()
	go func() { defer wg.Done(); b.pollHost(pctx) }()
	defer func() { stopPollers(); wg.Wait() }()

	load := newClosedLoop(b.t0, b.body, b.cred.header())
	defer load.end() // a second end is a no-op
	var evMu sync.Mutex
	event := func(e soakEvent) {
		evMu.Lock()
		b.rep.Events = append(b.rep.Events, e)
		evMu.Unlock()
		b.log.Info("event", "event", e.Name, "at", clock(e.AtS), "task", e.Task, "addr", e.Addr, "detail", e.Detail)
	}
	wg.Add(2)
	go func() { defer wg.Done(); b.rollingUpdate(pctx, b.t0.Add(updateAt), event) }()
	go func() { defer wg.Done(); b.killOne(pctx, b.t0.Add(killAt), event) }()

	marks := make([]cpuMark, len(phases)+1)
	watch := b.procWatch()
	for i := range phases {
		ph := &phases[i]
		if ph.Name != soakPhaseStep {
			b.watchReplicas(ctx, b.name, &watch) // before the boundary: it takes a few engine calls
		}
		if err := sleepUntil(ctx, b.t0.Add(time.Duration(ph.StartS*float64(time.Second)))); err != nil {
			return nil, nil, err
		}
		marks[i] = b.mark(watch, ph.Name != soakPhaseStep)
		if ph.Direct {
			addr, task, err := b.directTarget(ctx)
			if err != nil {
				return nil, nil, err
			}
			ph.Addr, ph.Task = addr, task
			load.set(ph.Conns, addr, "/", true)
		} else {
			load.set(ph.Conns, b.gwAddr, "/function/"+b.name, false)
		}
		b.log.Info("phase", "phase", ph.Name, "at", clock(ph.StartS), "connections", ph.Conns, "direct", ph.Direct, "addr", ph.Addr)
	}
	if err := sleepUntil(ctx, b.t0.Add(time.Duration(phases[len(phases)-1].EndS*float64(time.Second)))); err != nil {
		return nil, nil, err
	}
	b.watchReplicas(ctx, b.name, &watch)
	marks[len(phases)] = b.mark(watch, true)
	recs, fails := load.end()
	b.log.Info("load done", "requests", len(recs), "failed", len(fails))
	b.rep.Phases = phases

	// What the load left: memory, counters, HAProxy's own log count.
	b.rep.Summary.RSS = b.rss()
	b.pollStats(ctx)
	if out, err := b.rt.Exec(ctx, "show info"); err == nil {
		if n, err := strconv.ParseInt(parseShowInfo(out)["DroppedLogs"], 10, 64); err == nil {
			b.rep.Summary.DroppedLogs = n
		}
	}
	b.rep.Summary.Reloads = -1
	if reloads1, rerr1 := b.reloads(ctx); rerr0 == nil && rerr1 == nil {
		b.rep.Summary.Reloads = int64(reloads1 - reloads0)
	}
	// The CPU comparison with the request log and the replicas the
	// autoscaler keeps (informational).
	c := &b.rep.Summary.CPU
	for i, ph := range phases {
		if ph.Name != soakPhaseStep {
			c.add(ph.Direct, windowOf(ph.EndS-ph.StartS, marks[i], marks[i+1]))
			c.Conns = ph.Conns
		}
	}
	stopPollers()
	wg.Wait()
	return recs, fails, nil
}

// since is t in seconds after the soak's t0.
func (b *soakBench) since(t time.Time) float64 { return round3(t.Sub(b.t0).Seconds()) }

func sleepUntil(ctx context.Context, t time.Time) error {
	if d := time.Until(t); d > 0 {
		return sleepCtx(ctx, d)
	}
	return ctx.Err()
}

// groupDelta is each group's CPU between two samples, in ticks.
func groupDelta(before, after procCPU) map[string]uint64 {
	if before == nil || after == nil {
		return nil
	}
	out := map[string]uint64{}
	for g, m := range after {
		out[g], _, _ = cpuDelta(before[g], m)
	}
	return out
}

// routedReplicas returns the function's replicas that pulsed routes and
// does not drain.
func (b *soakBench) routedReplicas(ctx context.Context) ([]contract.Replica, error) {
	f, err := b.catalogFunction(ctx, b.name)
	return slices.DeleteFunc(f.Replicas, func(r contract.Replica) bool { return !r.Routed || r.Draining }), err
}

// directTarget picks the replica the direct minute loads: the first one
// routed and not draining.
func (b *soakBench) directTarget(ctx context.Context) (addr, task string, err error) {
	rs, err := b.routedReplicas(ctx)
	if err == nil && len(rs) == 0 {
		err = fmt.Errorf("no routed replica of %s for the direct minute", b.name)
	}
	if err != nil {
		return "", "", err
	}
	addr, _ = loopbackAddr(rs[0].Addr)
	return addr, rs[0].TaskID, nil
}

// rollingUpdate redeploys the function with a changed environment at at
// (a start-first rolling update through function.Swarm.Deploy), then
// watches the service until Swarm reports the update done.
func (b *soakBench) rollingUpdate(ctx context.Context, at time.Time, event func(soakEvent)) {
	if sleepUntil(ctx, at) != nil {
		return
	}
	spec := b.spec
	spec.Env = map[string]string{soakRollEnv: "2"}
	start := time.Now()
	res, err := b.sw.Deploy(ctx, spec, b.img, function.DeployOptions{NoHealthcheck: true, Instance: benchInstance(b.run)})
	if err != nil {
		event(soakEvent{Name: soakEventUpdate, AtS: b.since(start), Detail: "failed: " + err.Error()})
		b.rep.Summary.UpdateState = "deploy failed: " + err.Error()
		return
	}
	event(soakEvent{Name: soakEventUpdate, AtS: b.since(start),
		Detail: fmt.Sprintf("Swarm.Deploy with %s=2: start-first, one replica at a time; %d replica(s)", soakRollEnv, res.Replicas)})
	deadline := start.Add(soakUpdateWait)
	for time.Now().Before(deadline) {
		if sleepCtx(ctx, 250*time.Millisecond) != nil {
			return
		}
		svc, err := inspectService(ctx, b.api, b.name)
		if err != nil || svc.UpdateStatus == nil {
			continue
		}
		st := svc.UpdateStatus
		b.rep.Summary.UpdateState = string(st.State) + ": " + st.Message
		switch st.State {
		case swarm.UpdateStateCompleted:
			done := time.Now()
			if st.CompletedAt != nil {
				done = *st.CompletedAt
			}
			b.rep.Summary.UpdateS = round3(done.Sub(start).Seconds())
			event(soakEvent{Name: soakEventUpdateDone, AtS: b.since(done), Detail: st.Message})
			return
		case swarm.UpdateStatePaused, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused:
			event(soakEvent{Name: soakEventUpdateDone, AtS: b.since(time.Now()), Detail: string(st.State) + ": " + st.Message})
			return
		}
	}
}

// killOne kills one routed replica's container with SIGKILL at at (docker
// kill), and records when the engine saw it end.
func (b *soakBench) killOne(ctx context.Context, at time.Time, event func(soakEvent)) {
	if sleepUntil(ctx, at) != nil {
		return
	}
	fail := func(why string) {
		event(soakEvent{Name: soakEventKill, AtS: b.since(time.Now()), Detail: "not done: " + why})
	}
	cands, err := b.routedReplicas(ctx)
	if err == nil && len(cands) == 0 {
		err = errors.New("no routed replica")
	}
	if err != nil {
		fail(err.Error())
		return
	}
	victim := cands[mrand.IntN(len(cands))]
	cctx, cancel := call(ctx)
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.task.id="+victim.TaskID))})
	cancel()
	if err != nil || len(cs) != 1 {
		fail(fmt.Sprintf("container of task %s: %d found, %v", victim.TaskID, len(cs), err))
		return
	}
	server := ""
	b.mu.Lock()
	if n := len(b.samples); n > 0 {
		for _, s := range b.samples[n-1].Slots {
			if s.Live() && s.Addr == victim.Addr {
				server = s.Name
			}
		}
	}
	b.mu.Unlock()
	called := time.Now()
	cctx, cancel = call(ctx)
	err = b.api.ContainerKill(cctx, cs[0].ID, "SIGKILL")
	returned := time.Now()
	cancel()
	if err != nil {
		fail("kill: " + err.Error())
		return
	}
	ended := called
	cctx, cancel = call(ctx)
	if ci, err := b.api.ContainerInspect(cctx, cs[0].ID); err == nil && ci.ContainerJSONBase != nil && ci.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, ci.State.FinishedAt); err == nil && !t.IsZero() && t.After(called.Add(-time.Second)) {
			ended = t
		}
	}
	cancel()
	event(soakEvent{Name: soakEventKill, AtS: b.since(ended), Task: victim.TaskID, Addr: victim.Addr, Server: server,
		Detail: fmt.Sprintf("docker kill (SIGKILL) of one of %d routed replicas at %s; the call returned %.3f s later, the engine's FinishedAt %.3f s after the call",
			len(cands), clock(b.since(called)), returned.Sub(called).Seconds(), ended.Sub(called).Seconds())})
	b.mu.Lock()
	b.rep.Summary.kill = &soakKill{CallAt: called, At: ended, Task: victim.TaskID, Addr: victim.Addr}
	b.rep.Summary.KillCallS, b.rep.Summary.KillEndS = b.since(called), b.since(ended)
	b.mu.Unlock()
}

// keepLogs copies pulsed's logs, the lab Netdata's error log and HAProxy's
// non-request log lines out of the run's directory when a request failed,
// and notes where.
func (b *soakBench) keepLogs() {
	if b.rep.Summary.Failed == 0 && b.rep.Saturation.Failed == 0 && b.rep.Fair.Failed == 0 {
		return
	}
	var lines []string
	for _, e := range b.rep.HAProxyEvents {
		lines = append(lines, fmt.Sprintf("%.3f %s", e.AtS, e.Line))
	}
	if dir := b.pulseLab.keepLogs(suiteSoak, map[string]string{"haproxy-events.log": strings.Join(lines, "\n") + "\n"}); dir != "" {
		b.rep.Notes = append(b.rep.Notes, "requests failed: pulsed's logs, the lab Netdata's error log and HAProxy's non-request log lines are kept in "+dir)
	}
}

// cleanup closes the log socket and cleans the lab up (pulseLab.cleanup).
func (b *soakBench) cleanup() []string {
	if b.hlog != nil {
		_ = b.hlog.conn.Close()
	}
	return b.pulseLab.cleanup()
}
