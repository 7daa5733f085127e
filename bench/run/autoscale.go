package main

// The autoscale suite: the time from a load step to the first extra replica
// answering through HAProxy, stage by stage, and the cold start from zero.
//
// It runs on the lab stack (lab.go): the whole loop as it ships, pulsed,
// HAProxy, a lab Netdata with pulse.d.plugin, the alarms and the hook, its
// pulsed scaling only this run's functions. Two fork-mode functions run a
// static C handler that sleeps 100 ms and echoes: the step function
// (inflight, target 2, min 1, max 20) and the cold function (min 0), which
// the harness scales to zero itself (it has no scale.idle).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"time"

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
	step      string // the step function
	cold      string // the cold-start function
	body      string
	rep       *autoscaleReport
	stepSvcID string
}

// runAutoscale runs the autoscale suite.
func runAutoscale(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := []string{asStageStep, asStageCold}
	for _, st := range cfg.Only {
		if !slices.Contains(stages, st) {
			return fmt.Errorf("-only %s: no such stage of the autoscale suite; want some of %s,%s", st, asStageStep, asStageCold)
		}
	}
	if len(cfg.Only) > 0 {
		stages = cfg.Only
	}
	id, err := runID()
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
		body:     payload(cfg.BodyBytes),
		step:     asNamePrefix + id + "-step", cold: asNamePrefix + id + "-cold",
	}
	b.rep = &autoscaleReport{
		Config: autoscaleConfig{
			Quick: cfg.Quick, Trials: trials, StepFunction: b.step, ColdFunction: b.cold,
			Metric: asMetric, Target: asTarget, Min: asMin, Max: asMax, HandlerMS: asHandlerMS, TimeoutS: asTimeout.Seconds(),
			Steps: asSteps, HealthIntervalMS: 0, DrainGraceMS: ms(asDrainGrace),
			TaskPollMS: ms(asTaskPoll), HAProxyPollMS: ms(asHAProxyPoll), BodyBytes: cfg.BodyBytes,
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
	for _, f := range []func(context.Context) error{b.prepareShared, b.deploy, b.start} {
		if err := f(ctx); err != nil {
			return err
		}
	}

	log.Info("autoscale suite", "trials_per_step", trials, "step", b.step, "cold", b.cold)
	for i := 1; i <= trials && slices.Contains(stages, asStageStep); i++ {
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
	if slices.Contains(stages, asStageCold) {
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
	failed := slices.ContainsFunc(b.rep.Steps, func(t stepTrial) bool { return t.Error != "" }) ||
		slices.ContainsFunc(b.rep.Cold, func(c coldTrial) bool { return c.Error != "" })
	if !failed {
		return
	}
	if dir := b.pulseLab.keepLogs(suiteAutoscale, nil); dir != "" {
		b.rep.Notes = append(b.rep.Notes, "a trial failed: pulsed's log and the lab Netdata's error log are kept in "+dir)
	}
}

// servers returns the slots of fn's backend (the backup server left out)
// with their state, address and sessions.
func (b *autoscaleBench) servers(ctx context.Context, fn string) ([]slotInfo, error) {
	return readSlots(ctx, b.rt, gateway.BackendName(fn))
}

// waitQuiet waits until fn's utilisation was below asQuietPct for each of
// the last 3 seconds and its scale-up alarm is not critical.
func (b *autoscaleBench) waitQuiet(ctx context.Context, fn string) error {
	why := ""
	quiet := func() bool {
		d, err := b.nd.DataRange(ctx, utilChart(fn), -4, 0)
		if err != nil {
			why = err.Error()
			return false
		}
		vals := d.Column(contract.DimUtilization)
		if len(vals) < 3 {
			why = fmt.Sprintf("%d seconds of utilisation", len(vals))
			return false
		}
		if slices.ContainsFunc(vals[:3], func(v float64) bool { return v >= asQuietPct }) {
			why = fmt.Sprintf("utilisation %v", vals[:3])
			return false
		}
		st, err := b.alarmStatus(ctx, fn)
		if err != nil {
			why = err.Error()
			return false
		}
		why = "alarm " + st
		return st != "CRITICAL"
	}
	return poll(ctx, asQuietTimeout, 250*time.Millisecond, func(late bool) (bool, error) {
		if quiet() {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("%s not quiet after %s: %s", fn, asQuietTimeout, why)
		}
		return false, nil
	})
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
		if err := waitContainers(ctx, b.api, b.step, 1, asRouteTimeout); err != nil {
			return err
		}
		if err := b.waitServers(ctx, b.step, 1, true); err != nil {
			return err
		}
		if err := b.waitQuiet(ctx, b.step); err != nil {
			return err
		}
		svc, err := inspectService(ctx, b.api, b.step)
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

// coldTrials sends, per trial, one request to the cold function at zero
// replicas (scaled there through the Docker API, and gone from pulsed's
// catalog and HAProxy), and scales it back to zero after the last.
func (b *autoscaleBench) coldTrials(ctx context.Context, n int) error {
	for i := 1; i <= n; i++ {
		if err := b.forceZero(ctx); err != nil {
			return err
		}
		c := coldTrial{Trial: i}
		c.Load1, _ = readLoad1("/proc")
		start := time.Now()
		status, err := coldRequest(ctx, b.gwAddr, "/function/"+b.cold, b.body)
		c.LatencyS, c.Status = secondsSince(start), status
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

// forceZero scales the cold function to 0 and waits until pulsed's catalog
// has it at 0 desired replicas and none listed, HAProxy has no server for
// it but the backup, and no container of it runs.
func (b *autoscaleBench) forceZero(ctx context.Context) error {
	if err := b.sw.Scale(ctx, b.cold, 0, true); err != nil {
		return err
	}
	return poll(ctx, asZeroTimeout, 50*time.Millisecond, func(late bool) (bool, error) {
		f, err := b.catalogFunction(ctx, b.cold)
		if err == nil && f.Desired == 0 && len(f.Replicas) == 0 {
			if ss, serr := b.servers(ctx, b.cold); serr == nil && len(liveSlots(ss)) == 0 {
				return true, waitContainers(ctx, b.api, b.cold, 0, asRouteTimeout)
			}
		}
		if late {
			return false, fmt.Errorf("%s not at zero after %s (catalog: desired %d, %d replicas; %v)", b.cold, asZeroTimeout, f.Desired, len(f.Replicas), err)
		}
		return false, nil
	})
}

// coldRequest POSTs body on a new connection and returns the status once
// the whole answer is read, with an error unless it is 200 with body.
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
	status, outcome, msg, _ := roundTrip(c, bufio.NewReader(c), httpPost(path, body, true, nil), body)
	switch {
	case outcome != reqOK:
		return status, errors.New(msg)
	case status != http.StatusOK:
		return status, fmt.Errorf("status %d, want 200", status)
	}
	return status, nil
}

// autoscaleNotes are observations on the run worth reading with the
// numbers.
func autoscaleNotes(r autoscaleReport) []string {
	var notes, foreign, failed []string
	for _, s := range r.Summary.Steps {
		if s.FailedRequests > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d of %d requests of the load failed", s.Step, s.FailedRequests, s.Requests))
		}
		if n := s.Triggers[contract.TriggerResync]; n > 0 {
			notes = append(notes, fmt.Sprintf("%s: in %d trial(s) pulsed's periodic evaluation (every %s) decided before the alarm's hook arrived", s.Step, n, asResync))
		}
	}
	var loads []float64
	multi := 0
	for _, t := range r.Steps {
		if t.Foreign {
			foreign = append(foreign, fmt.Sprintf("%s trial %d: the service had %d replicas, not this pulsed's last decision: something else on the swarm scaled it", t.Step, t.Trial, t.ServiceReplicas))
		}
		if t.Error != "" {
			failed = append(failed, fmt.Sprintf("%s trial %d failed: %s", t.Step, t.Trial, t.Error))
		}
		if len(t.Decisions) > 1 {
			multi++
		}
		loads = append(loads, t.Load1)
	}
	notes = append(notes, foreign...)
	for _, c := range r.Cold {
		loads = append(loads, c.Load1)
	}
	if len(loads) > 0 && median(loads) > float64(r.Machine.CPUs) {
		notes = append(notes, fmt.Sprintf("the host was busy: its 1-minute load average at the trials' starts was %.1f (median; %.1f–%.1f) on %d CPUs, "+
			"which slows the engine's task starts most", median(loads), slices.Min(loads), slices.Max(loads), r.Machine.CPUs))
	}
	if multi > 0 {
		notes = append(notes, fmt.Sprintf("%d step trial(s) took more than one decision to reach their replica count (see the trial table)", multi))
	}
	return append(notes, failed...)
}
