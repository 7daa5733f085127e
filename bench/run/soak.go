package main

// The soak suite on the lab stack (lab.go), as bench/README.md describes it:
// the fair CPU comparison (soak_fair.go) and the saturation (soak_sat.go),
// then the soak itself, with HAProxy's request log (soak_log.go).

import (
	"cmp"
	"context"
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

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/watchdog"
)

const suiteSoak = "soak"

// Settings of the soak. The connections are the function's in-flight
// demand: 48 ask for 6 replicas. The rolling update and the kill land at
// soakUpdateAt and soakKillAt of the stepping part.
const (
	soakNamePrefix, soakRollEnv    = "pbench-soak-", "PULSE_BENCH_SOAK_GENERATION"
	soakMetric                     = "inflight"
	soakTarget, soakMin, soakMax   = 8, 1, 8
	soakTimeout                    = 10 * time.Second
	soakDefault, soakMinDuration   = 10 * time.Minute, 3 * time.Minute
	soakStep, soakCompareConns     = time.Minute, 16
	soakSamplePoll, soakHostPoll   = 500 * time.Millisecond, time.Second
	soakRoute, soakAlarmInit       = 90 * time.Second, 90 * time.Second
	soakStopGrace, soakUpdateWait  = 20 * time.Second, 3 * time.Minute
	soakLogLinger                  = 2 * time.Second // load end → the log socket closed
	soakUpdateAt, soakKillAt       = 0.5625, 0.8125
	soakPhaseStep, soakPhaseGwCPU  = "step", "gateway CPU"
	soakPhaseDirect                = "direct CPU"
	soakEventUpdate, soakEventKill = "rolling update", "replica killed"
	soakEventUpdateDone            = "rolling update done"
	soakFailMax                    = 40          // failures the table lists
	soakKillSpan                   = time.Minute // after the kill call, the failures in its error window
)

// soakPattern is the stepping minutes' connections, repeated for longer
// runs; the last stepping minute is soakCompareConns.
var soakPattern = []int{4, 16, 32, 16, 48, 8, 32, 16}

// soakPhase is one minute of load; a direct one loads the replica at Addr.
type soakPhase struct {
	Name         string
	StartS, EndS float64
	Conns        int
	Direct       bool
	Addr, Task   string
}

// soakEvent is something the harness did, or saw finish, during the load.
type soakEvent struct {
	Name               string
	AtS                float64
	Detail, Task, Addr string
}

// soakHostSample is one second of the host poller.
type soakHostSample struct {
	At       time.Time
	TimeWait int
	CPU      hostCPU
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

	mu          sync.Mutex // guards what follows
	evs         []soakEvent
	tl          soakTimeline
	stats       *statAcc
	host        []soakHostSample
	kill        *soakKill
	updateState string
	statErrs    int
	lastErr     error
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
	var head labHead
	var end reportEnd
	err = b.open(ctx, cfg.Suite, &head, &end)
	rep.Machine, rep.Notes = head.Machine, end.Notes
	if err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()
	err = b.build(ctx, &head, goStep(env.tools, env.tmp, "inproc", "./bench/inproc", inprocTags), cStep(env.tools, env.tmp, "burnecho", burnEchoC))
	for k, v := range map[string]any{"engine": head.Engine, "haproxy": head.HAProxy, "netdata": head.Netdata, "artifacts": head.Artifacts} {
		rep.Record(k, v)
	}
	if err != nil {
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
		rep.Note("%d `show stat` polls failed (last: %v)", b.statErrs, b.lastErr)
	}
	if slices.ContainsFunc(rep.Rows, func(r report.Row) bool { return r.V("failed") > 0 }) {
		lines, _ := rep.Records["haproxy_events"].([]string)
		if dir := b.keepLogs(suiteSoak, map[string]string{"haproxy-events.log": strings.Join(lines, "\n") + "\n"}); dir != "" {
			rep.Note("requests failed: pulsed's logs, the lab Netdata's error log and HAProxy's non-request log lines are kept in %s", dir)
		}
	}
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	m := head.Machine
	penv, _ := rep.Records["pulsed_env"].([]string)
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, %s, %s; before the soak, on a first pulsed at its defaults, the fair CPU comparison and "+
		"health under saturation; the soak: a second pulsed with the request log, %s of closed-loop keep-alive load (%d-byte POST) on %s (bench/inproc), "+
		"scale %s target %d min %d max %d, timeout %s, drain grace %s, no Docker health check, autoscaler on; pulsed: %s",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, head.Engine, head.HAProxy, head.Netdata, cfg.SoakDuration, cfg.BodyBytes, b.name,
		soakMetric, soakTarget, soakMin, soakMax, soakTimeout, watchdog.DefaultDrainGrace, strings.Join(penv, " "))
	soakTables(rep, b.picture(cfg, stdout))
	if cfg.SoakDuration < soakDefault {
		cfg.Readme = "-" // a short run leaves the README alone
	}
	return publishReport(cfg, stdout, rep)
}

// picture draws the report's picture beside its JSON and returns its path
// from the README, "" (and a note) when it could not be written.
func (b *soakBench) picture(cfg config, stdout io.Writer) string {
	png := filepath.Join(cfg.Out, cfg.Suite+"-"+b.env.started.UTC().Format("20060102T150405Z")+".png")
	img, err := renderSoakPlot(b.rep, cfg.SoakDuration)
	if err == nil {
		if err = os.MkdirAll(cfg.Out, 0o755); err == nil {
			err = credential.WriteFileAtomic(png, img, 0o644, -1)
		}
	}
	if err != nil {
		b.rep.Note("the picture could not be drawn: %v", err)
		return ""
	}
	fmt.Fprintf(stdout, "picture: %s\n", png)
	if rel, err := filepath.Rel(filepath.Dir(cfg.Readme), png); err == nil {
		return filepath.ToSlash(rel)
	}
	return filepath.Base(png)
}

// soakSchedule returns the phases of a run of d (whole minutes, at least
// soakMinDuration): stepping minutes through the gateway, then a minute
// through the gateway and one straight to a replica at the same
// connections; and when, from t0, the rolling update and the kill happen.
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

// start opens the request log's socket, starts pulsed's second lifetime
// with HAProxy's request log sent to it, and waits until the function is
// routed and its alarms are initialised.
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

// soak runs the schedule with its events and the pollers, and returns what
// the analysis needs.
func (b *soakBench) soak(ctx context.Context, phases []soakPhase, updateAt, killAt time.Duration) (soakRun, error) {
	reloads0, rerr0 := b.reloads(ctx)
	b.t0 = time.Now()
	b.rep.Record("t0", b.t0.UTC().Format(time.RFC3339Nano))
	pctx, stopPollers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopPollers(); wg.Wait() }()
	wg.Go(func() { every(pctx, soakSamplePoll, func() { b.pollSample(pctx) }) })
	wg.Go(func() { every(pctx, soakHostPoll, func() { b.pollHost(pctx) }) })
	wg.Go(func() { b.rollingUpdate(pctx, b.t0.Add(updateAt)) })
	wg.Go(func() { b.killOne(pctx, b.t0.Add(killAt)) })

	load := newClosedLoop(b.t0, b.body, b.cred.header())
	defer load.end() // a second end is a no-op
	marks := make([]cpuMark, len(phases)+1)
	watch := b.procWatch()
	at := func(s float64) time.Time { return b.t0.Add(time.Duration(s * float64(time.Second))) }
	for i := range phases {
		ph := &phases[i]
		if ph.Name != soakPhaseStep {
			b.watchReplicas(ctx, b.name, &watch) // before the boundary: it takes a few engine calls
		}
		if err := sleepCtx(ctx, time.Until(at(ph.StartS))); err != nil {
			return soakRun{}, err
		}
		marks[i] = b.mark(watch, ph.Name != soakPhaseStep)
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
			ph.Addr, _ = loopbackAddr(f.Replicas[i].Addr)
			ph.Task, addr, path = f.Replicas[i].TaskID, ph.Addr, "/"
		}
		load.set(ph.Conns, addr, path, ph.Direct)
		b.log.Info("phase", "phase", ph.Name, "at", clock(ph.StartS), "connections", ph.Conns, "addr", addr)
	}
	if err := sleepCtx(ctx, time.Until(at(phases[len(phases)-1].EndS))); err != nil {
		return soakRun{}, err
	}
	b.watchReplicas(ctx, b.name, &watch)
	marks[len(phases)] = b.mark(watch, true)
	recs, fails := load.end()
	b.log.Info("load done", "requests", len(recs), "failed", len(fails))

	stopPollers()
	wg.Wait()
	// What the load left: memory, counters, HAProxy's own log count.
	if ps, err := findHAProxies("/proc", b.stateDir); err == nil {
		var n, rss, hwm int64
		for _, p := range ps {
			if m, err := readStatus("/proc", p.PID); err == nil {
				n, rss, hwm = n+1, rss+m.RSSKB, hwm+m.HWMKB
			}
		}
		b.sum.PutAll(map[string]float64{"haproxy_procs": float64(n), "haproxy_rss_mb": kbToMB(rss), "haproxy_peak_mb": kbToMB(hwm)})
	}
	if m, err := readStatus("/proc", b.pulsed.pid()); err == nil {
		b.sum.Put("pulsed_rss_mb", kbToMB(m.RSSKB)).Put("pulsed_peak_mb", kbToMB(m.HWMKB))
	}
	if rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.name)); err == nil {
		b.stats.add(time.Now(), rows)
	}
	if out, err := b.rt.Exec(ctx, "show info"); err == nil {
		if n, err := strconv.ParseFloat(parseShowInfo(out)["DroppedLogs"], 64); err == nil {
			b.sum.Put("dropped_logs", n)
		}
	}
	if reloads1, rerr1 := b.reloads(ctx); rerr0 == nil && rerr1 == nil {
		b.sum.Put("reloads", float64(reloads1-reloads0))
	}
	if evs, err := b.events(ctx); err == nil {
		b.sum.Put("scale_events", float64(len(slices.DeleteFunc(evs.Events, func(e contract.ScaleEvent) bool { return e.Function != b.name || !e.Time.After(b.t0) }))))
	}
	b.sum.Labels["rolling_update"] = b.updateState
	r := soakRun{t0: b.t0, phases: phases, recs: recs, fails: fails, log: b.hlog.close(soakLogLinger), tl: b.tl, host: b.host,
		stats: b.stats, kill: b.kill, events: b.evs, clk: b.env.clk}
	for i, ph := range phases {
		if ph.Name != soakPhaseStep {
			r.cpu[btoi(ph.Direct)] = cpuTicks(r.cpu[btoi(ph.Direct)], marks[i], marks[i+1])
		}
	}
	return r, nil
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// event records e (at seconds after t0) and logs it.
func (b *soakBench) event(e soakEvent, at time.Time) {
	e.AtS = report.Round3(at.Sub(b.t0).Seconds())
	b.mu.Lock()
	b.evs = append(b.evs, e)
	b.mu.Unlock()
	b.log.Info("event", "event", e.Name, "at", clock(e.AtS), "task", e.Task, "detail", e.Detail)
}

// rollingUpdate redeploys the function with a changed environment at at
// (a start-first rolling update through function.Swarm.Deploy), then
// watches the service until Swarm reports the update done.
func (b *soakBench) rollingUpdate(ctx context.Context, at time.Time) {
	if sleepCtx(ctx, time.Until(at)) != nil {
		return
	}
	spec := b.spec
	spec.Env = map[string]string{soakRollEnv: "2"}
	start := time.Now()
	res, err := b.sw.Deploy(ctx, spec, b.img, function.DeployOptions{NoHealthcheck: true, Instance: benchInstance(b.run)})
	state := func(s string) { b.mu.Lock(); b.updateState = s; b.mu.Unlock() }
	if err != nil {
		b.event(soakEvent{Name: soakEventUpdate, Detail: "failed: " + err.Error()}, start)
		state("deploy failed: " + err.Error())
		return
	}
	b.event(soakEvent{Name: soakEventUpdate, Detail: fmt.Sprintf("Swarm.Deploy with %s=2: start-first, one replica at a time; %d replica(s)", soakRollEnv, res.Replicas)}, start)
	for deadline := start.Add(soakUpdateWait); time.Now().Before(deadline) && sleepCtx(ctx, 250*time.Millisecond) == nil; {
		svc, err := inspectService(ctx, b.api, b.name)
		if err != nil || svc.UpdateStatus == nil {
			continue
		}
		st := svc.UpdateStatus
		state(string(st.State) + ": " + st.Message)
		done := time.Now()
		if st.State == swarm.UpdateStateCompleted && st.CompletedAt != nil {
			done = *st.CompletedAt
		}
		if st.State == swarm.UpdateStateCompleted {
			b.sum.Put("rolling_update_s", report.Round3(done.Sub(start).Seconds())) // only this goroutine writes the row during the load
		}
		if slices.Contains([]swarm.UpdateState{swarm.UpdateStateCompleted, swarm.UpdateStatePaused, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused}, st.State) {
			b.event(soakEvent{Name: soakEventUpdateDone, Detail: string(st.State) + ": " + st.Message}, done)
			return
		}
	}
}

// killOne kills one routed replica's container, picked at random, with
// SIGKILL at at (docker kill), and records when the engine saw it end.
func (b *soakBench) killOne(ctx context.Context, at time.Time) {
	if sleepCtx(ctx, time.Until(at)) != nil {
		return
	}
	fail := func(why string) { b.event(soakEvent{Name: soakEventKill, Detail: "not done: " + why}, time.Now()) }
	f, err := b.catalogFunction(ctx, b.name)
	cands := slices.DeleteFunc(f.Replicas, func(r contract.Replica) bool { return !r.Routed || r.Draining })
	if err != nil || len(cands) == 0 {
		fail(fmt.Sprintf("no routed replica (%v)", err))
		return
	}
	victim := cands[mrand.IntN(len(cands))]
	cctx, cancel := call(ctx)
	defer cancel()
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.task.id="+victim.TaskID))})
	if err != nil || len(cs) != 1 {
		fail(fmt.Sprintf("container of task %s: %d found, %v", victim.TaskID, len(cs), err))
		return
	}
	called := time.Now()
	if err := b.api.ContainerKill(cctx, cs[0].ID, "SIGKILL"); err != nil {
		fail("kill: " + err.Error())
		return
	}
	returned, ended := time.Now(), called
	if ci, err := b.api.ContainerInspect(cctx, cs[0].ID); err == nil && ci.ContainerJSONBase != nil && ci.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, ci.State.FinishedAt); err == nil && t.After(called.Add(-time.Second)) {
			ended = t
		}
	}
	b.event(soakEvent{Name: soakEventKill, Task: victim.TaskID, Addr: victim.Addr,
		Detail: fmt.Sprintf("docker kill (SIGKILL) of one of %d routed replicas at %s; the call returned %.3f s later, the engine's FinishedAt %.3f s after the call",
			len(cands), clock(called.Sub(b.t0).Seconds()), returned.Sub(called).Seconds(), ended.Sub(called).Seconds())}, ended)
	b.mu.Lock()
	b.kill = &soakKill{CallAt: called, At: ended, Task: victim.TaskID, Addr: victim.Addr}
	b.mu.Unlock()
}

// pollSample reads pulsed's catalog and HAProxy's slots.
func (b *soakBench) pollSample(ctx context.Context) {
	smp := soakSample{At: time.Now()}
	f, ferr := b.catalogFunction(ctx, b.name)
	smp.Replicas, smp.Desired = f.Replicas, f.Desired
	var serr error
	smp.Slots, serr = readSlots(ctx, b.rt, gateway.BackendName(b.name))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tl = append(b.tl, smp)
	b.lastErr = cmp.Or(serr, ferr, b.lastErr)
}

// pollHost adds one `show stat` of the function's servers to the counters,
// and reads the TCP sockets in TIME_WAIT and the host's CPU.
func (b *soakBench) pollHost(ctx context.Context) {
	rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.name))
	s := soakHostSample{At: time.Now()}
	s.CPU, _ = readHostCPU("/proc")
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		t, _ := os.ReadFile(f)
		s.TimeWait += countTimeWait(string(t))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.host = append(b.host, s)
	if err != nil {
		b.statErrs, b.lastErr = b.statErrs+1, err
		return
	}
	b.stats.add(s.At, rows)
}

// countTimeWait counts the lines of a /proc/net/tcp table after its header
// whose state, the 4th column, is 06: TIME_WAIT.
func countTimeWait(table string) int {
	n := 0
	for i, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); i > 0 && len(f) > 3 && f[3] == "06" {
			n++
		}
	}
	return n
}

// parseShowInfo reads HAProxy's `show info` ("Name: value" lines).
func parseShowInfo(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// cleanup closes the log socket and cleans the lab up (pulseLab.cleanup).
func (b *soakBench) cleanup() []string {
	if b.hlog != nil {
		_ = b.hlog.conn.Close()
	}
	return b.pulseLab.cleanup()
}
