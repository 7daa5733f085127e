package main

// The autoscale suite: the time from a load step to the first extra replica
// answering through HAProxy, stage by stage, and the cold start from zero.
//
// It runs the whole loop as it ships, on loopback ports the kernel picks:
// pulsed (cmd/pulsed, a process with its own state directory, HAProxy,
// scaler, cold-start listener and alarm token), a private Netdata
// (internal/netdatalab) with only pulse.d.plugin pointed at that pulsed's
// catalog and HAProxy exporter and the health templates of alarms/ whose
// exec: line runs the built pulse-alarm-hook against that pulsed. Two fork
// mode functions run a static C handler that sleeps 100 ms and echoes: the
// step function (inflight, target 2, min 1, max 20) and the cold function
// (min 0).
//
// Others (a `make up` instance, tests) may run functions on the same swarm:
// pulsed runs with a selector (PULSE_SELECTOR=<run label>=<run>), so it
// routes, watches and scales only this run's functions. The harness scales
// the cold function to zero itself (it has no scale.idle).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/scaler"
)

const suiteAutoscale = "autoscale"

// Stages of the autoscale suite (-only).
const (
	asStageStep = "step" // the load steps
	asStageCold = "cold" // the cold starts
)

// Settings of the autoscale suite.
const (
	asNamePrefix = "pbench-as-"
	// The step function's policy: 10 connections of one outstanding
	// request each are 5 × (1 replica × target 2); max 20 so that a jump
	// to max cannot pass for 5 ± 1.
	asMetric    = "inflight"
	asTarget    = 2
	asMin       = 1
	asMax       = 20
	asHandlerMS = 100
	// The functions' timeout: the spec's default, which is also pulsed's
	// cold-start hold (coldstart_timeout), so HAProxy waits as long as
	// pulsed holds a request.
	asTimeout = 30 * time.Second
	// Replicas: no Docker health check, as `pulse deploy` gives them on
	// this engine (API 1.41 has no health start interval, and Swarm reports a
	// task running only after its first passing probe); drain grace as in
	// the gateway suite.
	asDrainGrace = time.Second
	// pulsed: a short stabilisation window (the harness scales back to 1
	// itself); the periodic evaluation at pulsed's default, so that the
	// alarm path as it ships is what is measured.
	asScaleWindow = 20 * time.Second
	asResync      = scaler.DefaultResync
	// Pollers.
	asTaskPoll    = 20 * time.Millisecond
	asHAProxyPoll = 15 * time.Millisecond
	// Limits.
	asTrafficTimeout = 30 * time.Second // t0 → an extra replica serving
	asFullWait       = 5 * time.Second  // first → every replica of the first decision serving
	asQuietTimeout   = 60 * time.Second // utilisation back near 0, alarm not critical
	asQuietPct       = 20               // "near 0": every second of the last 3 below this
	asAlarmInit      = 90 * time.Second // Netdata start → the alarms initialised
	asColdTimeout    = 40 * time.Second // the cold request (pulsed holds it up to 30 s)
	asZeroTimeout    = 60 * time.Second // scaled to 0 → pulsed's catalog and HAProxy without replicas
	asRouteTimeout   = 60 * time.Second
	asStopGrace      = 20 * time.Second
	// The alarm the step trials follow.
	asAlarmUp = "pulse_scale_up"
)

// asSteps are the load steps, each a number of closed-loop connections.
var asSteps = []autoscaleStep{
	{Name: "5×", Conns: 10, Ratio: 5},
	{Name: "1.5×", Conns: 3, Ratio: 1.5},
}

// sleepEchoC is the step and cold functions' handler: 100 ms, then stdin
// to stdout.
const sleepEchoC = `#include <time.h>
#include <unistd.h>
int main(void){struct timespec d={0,` + "100000000" + `};nanosleep(&d,0);char b[4096];ssize_t n;
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`

// autoscaleBench runs the autoscale suite on the lab stack (lab.go).
type autoscaleBench struct {
	pulseLab
	cfg       config
	step      string // the step function
	cold      string // the cold-start function
	body      string
	rep       *autoscaleReport
	stepSvcID string
}

// runAutoscale runs the autoscale suite.
func runAutoscale(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	id, err := gwRunID()
	if err != nil {
		return err
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		return fmt.Errorf("haproxy not found in PATH: %w", err)
	}
	if err := netdatalab.Available(); err != nil {
		return err
	}
	trials := cfg.ScaleTrials
	b := &autoscaleBench{
		pulseLab: newPulseLab(log, env, id, asNamePrefix, haproxy, asRouteTimeout, asStopGrace),
		cfg:      cfg, body: payload(cfg.BodyBytes),
		step: asNamePrefix + id + "-step", cold: asNamePrefix + id + "-cold",
	}
	b.rep = &autoscaleReport{
		Config: autoscaleConfig{
			Quick: cfg.Quick, Trials: trials, StepFunction: b.step, ColdFunction: b.cold,
			Metric: asMetric, Target: asTarget, Min: asMin, Max: asMax, HandlerMS: asHandlerMS, TimeoutS: asTimeout.Seconds(),
			Steps: asSteps, HealthIntervalMS: 0, DrainGraceMS: gwMS(asDrainGrace),
			TaskPollMS: gwMS(asTaskPoll), HAProxyPollMS: gwMS(asHAProxyPoll), BodyBytes: cfg.BodyBytes,
		},
	}
	rep := b.rep
	if err := b.open(ctx, cfg.Suite, &rep.labHead, &rep.reportEnd); err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()
	if err := b.build(ctx, &rep.labHead, cStep(env.tools, env.tmp, "sleepecho", sleepEchoC)); err != nil {
		return err
	}
	if err := b.prepareShared(ctx); err != nil {
		return err
	}
	if err := b.deploy(ctx); err != nil {
		return err
	}
	if err := b.start(ctx); err != nil {
		return err
	}

	stages := map[string]bool{asStageStep: true, asStageCold: true}
	if len(cfg.Only) > 0 {
		clear(stages)
		for _, st := range cfg.Only {
			if st != asStageStep && st != asStageCold {
				return fmt.Errorf("-only %s: no such stage of the autoscale suite; want some of %s,%s", st, asStageStep, asStageCold)
			}
			stages[st] = true
		}
	}
	log.Info("autoscale suite", "trials_per_step", trials, "step", b.step, "cold", b.cold)
	for i := 1; i <= trials && stages[asStageStep]; i++ {
		for _, st := range rotate(asSteps, i-1) {
			if err := b.settle(ctx); err != nil {
				return err
			}
			r := b.stepTrial(ctx, st, i)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Steps = append(rep.Steps, r)
		}
	}
	if stages[asStageCold] {
		if err := b.coldTrials(ctx, trials); err != nil {
			return err
		}
	}
	b.keepLogs()

	rep.Summary = summarizeAutoscale(asSteps, rep.Steps, rep.Cold)
	rep.Goals = autoscaleGoals(rep.Summary)
	rep.Notes = append(rep.Notes, autoscaleNotes(*rep)...)
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderAutoscale(*rep, false, ""), func(rel string) string { return renderAutoscale(*rep, true, rel) })
}

// deploy assembles the image (watchdog + the C handler, fork mode) and
// deploys the step function at 1 replica and the cold one at 0.
func (b *autoscaleBench) deploy(ctx context.Context) error {
	wd, err := os.ReadFile(b.arts.path("watchdog"))
	if err != nil {
		return err
	}
	fn, err := os.ReadFile(b.arts.path("sleepecho"))
	if err != nil {
		return err
	}
	for _, d := range []struct {
		name  string
		scale function.Scale
	}{
		{b.step, function.Scale{Metric: asMetric, Target: asTarget, Min: asMin, Max: asMax}},
		{b.cold, function.Scale{Metric: asMetric, Target: asTarget, Min: 0, Max: 2}},
	} {
		spec := function.Spec{Name: d.name, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn",
			Timeout: asTimeout, MaxBody: 1 << 20, Scale: d.scale}
		_, res, err := b.deployFunction(ctx, &spec, wd, fn, asDrainGrace)
		if err != nil {
			return err
		}
		if d.name == b.step {
			b.stepSvcID = res.ServiceID
		}
	}
	wctx, cancel := context.WithTimeout(ctx, asRouteTimeout)
	defer cancel()
	if _, err := b.sw.WaitReady(wctx, b.step, 1); err != nil {
		return err
	}
	b.log.Info("deployed", "step", b.step, "cold", b.cold)
	return nil
}

// start starts the lab Netdata and pulsed (with a short stabilisation
// window, the periodic evaluation at its default, debug logs for the hook's
// line), and waits until the step function is routed and its alarms are
// initialised.
func (b *autoscaleBench) start(ctx context.Context) error {
	if err := b.startNetdata(ctx); err != nil {
		return err
	}
	changed, err := b.startPulsed(ctx,
		"PULSE_SCALE_WINDOW="+asScaleWindow.String(),
		"PULSE_RESYNC_INTERVAL="+asResync.String(),
		"PULSE_LOG_LEVEL=debug",
	)
	if err != nil {
		return err
	}
	b.rep.Config.PulsedEnv = changed
	if err := b.waitRouted(ctx, b.step, 1, b.body); err != nil {
		return err
	}
	b.log.Info("pulsed routing; waiting for the alarms to initialise", "api", b.apiAddr, "gateway", b.gwAddr)
	return b.waitAlarm(ctx, b.step, asAlarmInit)
}

// keepLogs copies pulsed's log and the lab Netdata's error log out of the
// run's directories when a trial failed, and notes where.
func (b *autoscaleBench) keepLogs() {
	failed := false
	for _, t := range b.rep.Steps {
		failed = failed || t.Error != ""
	}
	for _, c := range b.rep.Cold {
		failed = failed || c.Error != ""
	}
	if !failed {
		return
	}
	if dir := b.pulseLab.keepLogs(suiteAutoscale, nil); dir != "" {
		b.rep.Notes = append(b.rep.Notes, "a trial failed: pulsed's log and the lab Netdata's error log are kept in "+dir)
	}
}

// --- observing ---

// servers returns the slots of fn's backend (the backup server left out)
// with their state, address and sessions.
func (b *autoscaleBench) servers(ctx context.Context, fn string) ([]slotInfo, error) {
	return readSlots(ctx, b.rt, gateway.BackendName(fn))
}

// quiet reports whether fn's utilisation was below asQuietPct for each of
// the last 3 seconds and its scale-up alarm is not critical.
func (b *autoscaleBench) quiet(ctx context.Context, fn string) (bool, string) {
	d, err := b.nd.DataRange(ctx, utilChart(fn), -4, 0)
	if err != nil {
		return false, err.Error()
	}
	vals := d.Column(contract.DimUtilization)
	if len(vals) < 3 {
		return false, fmt.Sprintf("%d seconds of utilisation", len(vals))
	}
	for _, v := range vals[:3] {
		if v >= asQuietPct {
			return false, fmt.Sprintf("utilisation %v", vals[:3])
		}
	}
	st, err := b.alarmStatus(ctx, fn)
	if err != nil {
		return false, err.Error()
	}
	if st == "CRITICAL" {
		return false, "alarm " + st
	}
	return true, ""
}

func (b *autoscaleBench) waitQuiet(ctx context.Context, fn string) error {
	deadline := time.Now().Add(asQuietTimeout)
	for {
		ok, why := b.quiet(ctx, fn)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not quiet after %s: %s", fn, asQuietTimeout, why)
		}
		if err := gwSleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// settle brings the step function to one replica on a quiet swarm: load
// gone from the last 3 s of utilisation, the scale-up alarm not critical,
// the service at 1 replica with one container and one HAProxy server.
func (b *autoscaleBench) settle(ctx context.Context) error {
	for attempt := 0; attempt < 3; attempt++ {
		if err := b.waitQuiet(ctx, b.step); err != nil {
			return err
		}
		if err := b.sw.Scale(ctx, b.step, 1, true); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, asRouteTimeout)
		_, err := b.sw.WaitReady(wctx, b.step, 1)
		cancel()
		if err != nil {
			return err
		}
		if err := b.waitContainers(ctx, b.step, 1); err != nil {
			return err
		}
		if err := b.waitServers(ctx, b.step, 1, true); err != nil {
			return err
		}
		if err := b.waitQuiet(ctx, b.step); err != nil {
			return err
		}
		svc, err := b.inspect(ctx, b.step)
		if err != nil {
			return err
		}
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil && *r.Replicas == 1 {
			return nil
		}
		b.log.Warn("the scaler changed the replicas while settling; again", "function", b.step)
	}
	return errors.New("could not settle the step function at 1 replica")
}

func (b *autoscaleBench) inspect(ctx context.Context, name string) (swarm.Service, error) {
	cctx, cancel := gwCall(ctx)
	defer cancel()
	svc, _, err := b.api.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return swarm.Service{}, fmt.Errorf("inspect %s: %w", name, err)
	}
	return svc, nil
}

func (b *autoscaleBench) waitContainers(ctx context.Context, fn string, n int) error {
	deadline := time.Now().Add(asRouteTimeout)
	for {
		cctx, cancel := gwCall(ctx)
		cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", gwLabelServiceName+"="+fn))})
		cancel()
		if err != nil {
			return fmt.Errorf("list containers of %s: %w", fn, err)
		}
		if len(cs) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d containers running after %s, want %d", fn, len(cs), asRouteTimeout, n)
		}
		if err := gwSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// --- the step trial ---

// stepObs is what the trial's pollers saw, guarded by mu.
type stepObs struct {
	mu      sync.Mutex
	created map[string]time.Time // new task → its CreatedAt
	running map[string]time.Time // new task → its status timestamp when seen running
	traffic map[string]time.Time // a new replica's address → when its server first took a session
	lastErr error
}

func (o *stepObs) note(err error) {
	o.mu.Lock()
	o.lastErr = err
	o.mu.Unlock()
}

// firstTraffic returns the address of the new replica whose server took
// traffic first, and when.
func (o *stepObs) firstTraffic() (string, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	name, at := "", time.Time{}
	for n, t := range o.traffic {
		if at.IsZero() || t.Before(at) {
			name, at = n, t
		}
	}
	return name, at
}

func (b *autoscaleBench) stepTrial(ctx context.Context, st autoscaleStep, trial int) stepTrial {
	r := stepTrial{Step: st.Name, Conns: st.Conns, Trial: trial}
	if err := b.stepOnce(ctx, st, &r); err != nil {
		r.Error = err.Error()
		b.log.Warn("step trial failed", "step", st.Name, "trial", trial, "err", err)
	} else {
		b.log.Info("step trial", "step", st.Name, "trial", trial, "traffic_s", deref(r.TrafficS), "scrape_s", deref(r.ScrapeS), "alarm_s", deref(r.AlarmS),
			"hook_s", deref(r.HookS), "scaled_s", deref(r.ScaledS), "running_s", deref(r.RunningS), "trigger", r.Trigger, "to", r.firstTo(), "failed", r.Failed)
	}
	return r
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func (b *autoscaleBench) stepOnce(ctx context.Context, st autoscaleStep, r *stepTrial) error {
	taskFilter := filters.NewArgs(filters.Arg("service", b.stepSvcID))
	cctx, cancel := gwCall(ctx)
	tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: taskFilter})
	cancel()
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	knownTasks := map[string]bool{}
	for _, t := range tasks {
		knownTasks[t.ID] = true
	}
	slots, err := b.servers(ctx, b.step)
	if err != nil {
		return err
	}
	live := liveSlots(slots)
	if len(live) != 1 {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the step, want 1", len(live))
	}
	// A new replica is a slot pointed at another address whose sessions
	// rise past what that slot had counted before the step.
	base := map[string]int64{}
	for _, s := range slots {
		base[s.Name] = s.Stot
	}
	oldAddrs := map[string]bool{live[0].Addr: true}

	obs := &stepObs{created: map[string]time.Time{}, running: map[string]time.Time{}, traffic: map[string]time.Time{}}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Add(2)
	go func() { defer wg.Done(); b.pollTasks(pctx, taskFilter, knownTasks, obs) }()
	go func() { defer wg.Done(); b.pollServers(pctx, base, oldAddrs, obs) }()

	r.Load1, _ = readLoad1("/proc")
	t0 := time.Now()
	r.Start = t0.UTC().Format(time.RFC3339Nano)
	load := startStepLoad(b.gwAddr, "/function/"+b.step, b.body, st.Conns)
	loadStopped := false
	stopLoad := func() {
		if !loadStopped {
			loadStopped = true
			r.Requests, r.Failed, r.Why = load.end()
		}
	}
	defer stopLoad()

	// Wait for the first new server taking traffic, then (up to
	// asFullWait) for every replica of the first decision.
	var first time.Time
	want := 0
	var lastEvents time.Time
	for {
		name, at := obs.firstTraffic()
		now := time.Now()
		if first.IsZero() && name != "" {
			first = at
		}
		if first.IsZero() && now.Sub(t0) > asTrafficTimeout {
			obs.mu.Lock()
			why := fmt.Sprintf("no new server took traffic within %s (tasks running: %d, last error: %v)", asTrafficTimeout, len(obs.running), obs.lastErr)
			obs.mu.Unlock()
			return errors.New(why)
		}
		if !first.IsZero() {
			if now.Sub(lastEvents) > 200*time.Millisecond {
				lastEvents = now
				if evs, err := b.events(ctx); err == nil {
					if ds := decisionsSince(evs, b.step, t0); len(ds) > 0 {
						want = ds[0].To - 1 // new replicas of the first decision
					}
				}
			}
			obs.mu.Lock()
			n := len(obs.traffic)
			obs.mu.Unlock()
			if (want > 0 && n >= want) || now.Sub(first) > asFullWait {
				if want > 0 && n >= want {
					obs.mu.Lock()
					last := time.Time{}
					for _, t := range obs.traffic {
						if t.After(last) {
							last = t
						}
					}
					obs.mu.Unlock()
					r.FullS = ptr(round3(last.Sub(t0).Seconds()))
				}
				break
			}
		}
		if err := gwSleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	// Swarm's UpdatedAt, before anything else updates the service.
	svc, err := b.inspect(ctx, b.step)
	inspected := time.Now()
	if err != nil {
		return err
	}
	stopLoad()
	// The server is known by its address: pulsed's catalog names its task.
	// The task poller may see the task a moment after HAProxy did.
	addr, at := obs.firstTraffic()
	name := ""
	for i := 0; i < 25; i++ {
		if name == "" {
			name = b.taskAt(ctx, b.step, addr)
		}
		obs.mu.Lock()
		_, ok := obs.running[name]
		obs.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(asTaskPoll)
	}
	stop()
	wg.Wait()

	rel := func(t time.Time) *float64 {
		if t.IsZero() {
			return nil
		}
		return ptr(round3(t.Sub(t0).Seconds()))
	}
	t0s := float64(t0.UnixNano()) / 1e9
	relUnix := func(sec int64) *float64 { return ptr(round3(float64(sec) - t0s)) }

	obs.mu.Lock()
	r.TaskID = name
	r.TrafficS = rel(at)
	r.RunningS = rel(obs.running[name])
	r.CreatedS = rel(obs.created[name])
	r.Serving = len(obs.traffic)
	obs.mu.Unlock()

	evs, err := b.events(ctx)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	ds := decisionsSince(evs, b.step, t0)
	stored := 0
	for _, e := range ds {
		r.Decisions = append(r.Decisions, stepDecision{AtS: round3(e.Time.Sub(t0).Seconds()), From: e.From, To: e.To, Trigger: e.Trigger, Reason: e.Reason})
		if !e.Time.After(inspected) {
			stored++
		}
	}
	if rr := svc.Spec.Mode.Replicated; rr != nil && rr.Replicas != nil {
		r.ServiceReplicas = int(*rr.Replicas)
		if stored > 0 && ds[stored-1].To != r.ServiceReplicas {
			r.Foreign = true // someone else (another pulsed on this swarm?) changed the count
		}
	}
	if len(ds) > 0 {
		r.ScaledS = rel(ds[0].Time)
		r.Trigger = ds[0].Trigger
		// UpdatedAt is the first decision's only when no later one came
		// before the inspection.
		if stored == 1 && !svc.UpdatedAt.After(ds[0].Time) && svc.UpdatedAt.After(t0) {
			r.UpdatedS = rel(svc.UpdatedAt)
		}
	}

	d, err := b.nd.DataRange(ctx, utilChart(b.step), int64(math.Floor(t0s))-2, 0)
	if err != nil {
		return fmt.Errorf("netdata data: %w", err)
	}
	if sec, ok := firstAbove(d, contract.DimUtilization, scaler.DefaultUpThreshold, int64(math.Floor(t0s))); ok {
		r.ScrapeS = relUnix(sec)
	}
	log, err := b.nd.AlarmLog(ctx, 0)
	if err != nil {
		return fmt.Errorf("netdata alarm log: %w", err)
	}
	if e, ok := firstCritical(log, asAlarmUp, b.step, int64(math.Floor(t0s))); ok {
		r.AlarmS, r.AlarmValue = relUnix(e.When), e.Value
	}
	if f, err := os.Open(b.pulsedLog); err == nil {
		h, ok := firstHook(f, b.step, asAlarmUp, t0)
		f.Close()
		if ok {
			r.HookS, r.HookResult = rel(h.Time), h.Result
		}
	}
	if r.TrafficS == nil {
		return errors.New("no new server took traffic")
	}
	return nil
}

// decisionsSince returns fn's scale events after t0, oldest first.
func decisionsSince(evs contract.ScaleEvents, fn string, t0 time.Time) []contract.ScaleEvent {
	var out []contract.ScaleEvent
	for _, e := range evs.Events {
		if e.Function == fn && e.Time.After(t0) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b contract.ScaleEvent) int { return a.Time.Compare(b.Time) })
	return out
}

// firstAbove returns the time of the oldest row at or after second from
// whose label column is above limit.
func firstAbove(d netdatalab.Data, label string, limit float64, from int64) (int64, bool) {
	col := slices.Index(d.Labels, label)
	if col < 1 {
		return 0, false
	}
	found, best := false, int64(0)
	for _, row := range d.Rows {
		if len(row) <= col {
			continue
		}
		t := int64(row[0])
		if t >= from && row[col] > limit && (!found || t < best) {
			found, best = true, t
		}
	}
	return best, found
}

// firstCritical returns the oldest CRITICAL entry of alarm on fn's chart
// (family = the function's name) whose when is at or after from.
func firstCritical(log []netdatalab.AlarmLogEntry, alarm, fn string, from int64) (netdatalab.AlarmLogEntry, bool) {
	var best netdatalab.AlarmLogEntry
	found := false
	for _, e := range log {
		if e.Name != alarm || e.Status != "CRITICAL" || e.When < from || (e.Family != fn && e.Chart != utilChart(fn)) {
			continue
		}
		if !found || e.When < best.When || (e.When == best.When && e.UniqueID < best.UniqueID) {
			best, found = e, true
		}
	}
	return best, found
}

// hookLine is pulsed's debug log line of an alarm webhook request.
type hookLine struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Function string    `json:"function"`
	Alarm    string    `json:"alarm"`
	Status   string    `json:"status"`
	When     int64     `json:"when"`
	Result   string    `json:"result"`
}

// firstHook returns the first webhook request pulsed logged (JSON lines,
// msg "alarm") for fn's alarm, CRITICAL, after t0.
func firstHook(r io.Reader, fn, alarm string, t0 time.Time) (hookLine, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"msg":"alarm"`) {
			continue
		}
		var h hookLine
		if json.Unmarshal(line, &h) != nil {
			continue
		}
		if h.Msg == "alarm" && h.Function == fn && h.Alarm == alarm && h.Status == "CRITICAL" && h.Time.After(t0) {
			return h, true
		}
	}
	return hookLine{}, false
}

// pollTasks polls the service's tasks every asTaskPoll and records, for
// every task not in known, its creation and when it turned running (its
// status timestamp).
func (b *autoscaleBench) pollTasks(ctx context.Context, f filters.Args, known map[string]bool, obs *stepObs) {
	tick := time.NewTicker(asTaskPoll)
	defer tick.Stop()
	for {
		cctx, cancel := gwCall(ctx)
		tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
		cancel()
		if err != nil && ctx.Err() == nil {
			obs.note(fmt.Errorf("list tasks: %w", err))
		}
		obs.mu.Lock()
		for _, t := range tasks {
			if known[t.ID] {
				continue
			}
			if _, ok := obs.created[t.ID]; !ok {
				obs.created[t.ID] = t.CreatedAt
			}
			if _, ok := obs.running[t.ID]; !ok && t.Status.State == swarm.TaskStateRunning {
				obs.running[t.ID] = t.Status.Timestamp
			}
		}
		obs.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollServers reads the step function's slots every asHAProxyPoll and
// records when a slot pointed at an address not in old first took a
// session past its count in base (slot name → stot before the step), by
// address.
func (b *autoscaleBench) pollServers(ctx context.Context, base map[string]int64, old map[string]bool, obs *stepObs) {
	tick := time.NewTicker(asHAProxyPoll)
	defer tick.Stop()
	for {
		slots, err := b.servers(ctx, b.step)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		obs.mu.Lock()
		for _, s := range newTraffic(slots, base, old) {
			if _, ok := obs.traffic[s.Addr]; !ok {
				obs.traffic[s.Addr] = now
			}
		}
		obs.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// taskAt returns the task of fn's replica at addr in pulsed's catalog, ""
// if none.
func (b *autoscaleBench) taskAt(ctx context.Context, fn, addr string) string {
	f, err := b.catalogFunction(ctx, fn)
	if err != nil {
		return ""
	}
	for _, r := range f.Replicas {
		if r.Addr == addr {
			return r.TaskID
		}
	}
	return ""
}

// --- the load ---

// stepLoad is a closed-loop load: conns keep-alive connections, each
// sending one POST, reading its answer, and sending the next. A failed
// request is counted, never retried; its connection is replaced.
type stepLoad struct {
	addr, req, body string
	ok, failed      atomic.Int64
	stopping        atomic.Bool
	wg              sync.WaitGroup
	mu              sync.Mutex
	why             map[string]int64
	conns           map[net.Conn]bool
}

// httpPost is a whole HTTP/1.1 POST of body to path, with hdr's headers
// (the replica credential when it goes straight to a replica).
func httpPost(path, body string, close bool, hdr http.Header) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n", path, len(body))
	if close {
		b.WriteString("Connection: close\r\n")
	}
	_ = hdr.Write(&b) // sorted "Name: value\r\n" lines; a strings.Builder does not fail
	b.WriteString("\r\n" + body)
	return b.String()
}

func startStepLoad(addr, path, body string, conns int) *stepLoad {
	l := &stepLoad{addr: addr, req: httpPost(path, body, false, nil), body: body, why: map[string]int64{}, conns: map[net.Conn]bool{}}
	for range conns {
		l.wg.Add(1)
		go l.worker()
	}
	return l
}

func (l *stepLoad) fail(why string) {
	if l.stopping.Load() {
		return // cut off by end
	}
	l.failed.Add(1)
	l.mu.Lock()
	l.why[truncate(why, 200)]++
	l.mu.Unlock()
}

func (l *stepLoad) track(c net.Conn, on bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		if l.stopping.Load() {
			return false
		}
		l.conns[c] = true
	} else {
		delete(l.conns, c)
	}
	return true
}

func (l *stepLoad) worker() {
	defer l.wg.Done()
	var c net.Conn
	var br *bufio.Reader
	drop := func() {
		if c != nil {
			l.track(c, false)
			c.Close()
			c = nil
		}
	}
	defer drop()
	for !l.stopping.Load() {
		if c == nil {
			conn, err := net.DialTimeout("tcp", l.addr, 2*time.Second)
			if err != nil {
				l.fail("dial: " + err.Error())
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !l.track(conn, true) {
				conn.Close()
				return
			}
			c, br = conn, bufio.NewReader(conn)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		status, outcome, msg, done := roundTrip(c, br, l.req, l.body)
		switch outcome {
		case soakOK:
			l.ok.Add(1)
		case soakErrStatus:
			l.fail(fmt.Sprintf("%d %s", status, http.StatusText(status))) // counted by status
		default:
			l.fail(msg)
		}
		if done {
			drop()
		}
	}
}

// end stops the load (requests in flight are cut off and not counted) and
// returns the requests answered, the failures and their reasons.
func (l *stepLoad) end() (requests, failed int64, why map[string]int64) {
	l.mu.Lock()
	l.stopping.Store(true)
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failed.Load()
	return l.ok.Load() + f, f, maps.Clone(l.why)
}

// --- cold start ---

// coldTrials sends, per trial, one request to the cold function at zero
// replicas, then scales it back to zero through the Docker API.
func (b *autoscaleBench) coldTrials(ctx context.Context, n int) error {
	for i := 1; i <= n; i++ {
		if err := b.forceZero(ctx); err != nil {
			return err
		}
		c := coldTrial{Trial: i}
		c.Load1, _ = readLoad1("/proc")
		start := time.Now()
		status, err := coldRequest(ctx, b.gwAddr, "/function/"+b.cold, b.body)
		c.LatencyS, c.Status = round3(time.Since(start).Seconds()), status
		if err != nil {
			c.Error = err.Error()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Info("cold start", "trial", i, "latency_s", c.LatencyS, "status", c.Status, "err", c.Error)
		b.rep.Cold = append(b.rep.Cold, c)
	}
	return b.forceZero(ctx)
}

// waitZero waits until pulsed's catalog has the cold function at 0 desired
// replicas and none listed, HAProxy has no server for it but the backup,
// and no container of it runs.
func (b *autoscaleBench) waitZero(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		f, err := b.catalogFunction(ctx, b.cold)
		if err == nil && f.Desired == 0 && len(f.Replicas) == 0 {
			ss, err := b.servers(ctx, b.cold)
			if err == nil && len(liveSlots(ss)) == 0 {
				return b.waitContainers(ctx, b.cold, 0)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not at zero after %s (catalog: desired %d, %d replicas; %v)", b.cold, limit, f.Desired, len(f.Replicas), err)
		}
		if err := gwSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *autoscaleBench) forceZero(ctx context.Context) error {
	if err := b.sw.Scale(ctx, b.cold, 0, true); err != nil {
		return err
	}
	return b.waitZero(ctx, asZeroTimeout)
}

// coldRequest POSTs body on a new connection and returns the status once
// the whole answer is read.
func coldRequest(ctx context.Context, addr, path, body string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, asColdTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := io.WriteString(c, httpPost(path, body, true, nil)); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, truncate(strings.TrimSpace(string(got)), 200))
	}
	if string(got) != body {
		return resp.StatusCode, fmt.Errorf("wrong body %q", truncate(string(got), 80))
	}
	return resp.StatusCode, nil
}

// autoscaleNotes are observations on the run worth reading with the
// numbers.
func autoscaleNotes(r autoscaleReport) []string {
	var notes []string
	for _, s := range r.Summary.Steps {
		if s.FailedRequests > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d of %d requests of the load failed", s.Step, s.FailedRequests, s.Requests))
		}
		if n := s.Triggers[contract.TriggerResync]; n > 0 {
			notes = append(notes, fmt.Sprintf("%s: in %d trial(s) pulsed's periodic evaluation (every %s) decided before the alarm's hook arrived", s.Step, n, asResync))
		}
	}
	for _, t := range r.Steps {
		if t.Foreign {
			notes = append(notes, fmt.Sprintf("%s trial %d: the service had %d replicas, not this pulsed's last decision: something else on the swarm scaled it", t.Step, t.Trial, t.ServiceReplicas))
		}
	}
	var loads []float64
	for _, t := range r.Steps {
		loads = append(loads, t.Load1)
	}
	for _, c := range r.Cold {
		loads = append(loads, c.Load1)
	}
	if len(loads) > 0 && median(loads) > float64(r.Machine.CPUs) {
		notes = append(notes, fmt.Sprintf("the host was busy: its 1-minute load average at the trials' starts was %.1f (median; %.1f–%.1f) on %d CPUs, "+
			"which slows the engine's task starts most", median(loads), slices.Min(loads), slices.Max(loads), r.Machine.CPUs))
	}
	multi := 0
	for _, t := range r.Steps {
		if len(t.Decisions) > 1 {
			multi++
		}
	}
	if multi > 0 {
		notes = append(notes, fmt.Sprintf("%d step trial(s) took more than one decision to reach their replica count (see the trial table)", multi))
	}
	for _, t := range r.Steps {
		if t.Error != "" {
			notes = append(notes, fmt.Sprintf("%s trial %d failed: %s", t.Step, t.Trial, t.Error))
		}
	}
	return notes
}
