package main

// The autoscale suite: the time from a load step to the first extra replica
// answering through HAProxy, and the cold start from zero, on the lab stack
// (lab.go) with two fork-mode functions whose static C handler sleeps
// 100 ms and echoes: the step function and the cold one (min 0), which the
// harness scales to zero itself (bench/README.md).

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/scaler"
)

const suiteAutoscale = "autoscale"

var autoscaleStages = []string{"step", "cold"}

// Settings of the autoscale suite.
const (
	asNamePrefix = "pbench-as-"
	// The step function's policy: the 5× step's 10 connections of one
	// outstanding request each are 5 × (1 replica × target 2); max 20 so
	// that a jump to max cannot pass for 5 ± 1.
	asMetric, asTarget, asMin, asMax = "inflight", 2, 1, 20
	asStep, asStepConns              = "5×", 10
	// The functions' timeout is also pulsed's cold-start hold, so HAProxy
	// waits as long as pulsed holds a request.
	asTimeout    = 30 * time.Second
	asDrainGrace = time.Second
	// pulsed: a short stabilisation window (the harness scales back to 1
	// itself), the periodic evaluation at its default.
	asScaleWindow = 20 * time.Second
	asResync      = scaler.DefaultResync
	asHAProxyPoll = 15 * time.Millisecond
	// Limits.
	asTrafficTimeout = 30 * time.Second // t0 → an extra replica serving
	asQuietTimeout   = 60 * time.Second // utilisation back near 0, alarm not critical
	asQuietPct       = 20               // "near 0": every second of the last 3 below this
	asAlarmInit      = 90 * time.Second // Netdata start → the alarms initialised
	asColdTimeout    = 40 * time.Second // the cold request (pulsed holds it up to 30 s)
	asZeroTimeout    = 60 * time.Second // scaled to 0 → pulsed's catalog and HAProxy without replicas
	asRouteTimeout   = 60 * time.Second
	asStopGrace      = 20 * time.Second
)

// sleepEchoC is the functions' handler: 100 ms, then stdin to stdout.
const sleepEchoC = `#include <time.h>
#include <unistd.h>
int main(void){struct timespec d={0,100000000};nanosleep(&d,0);char b[4096];ssize_t n;
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`

// autoscaleBench runs the autoscale suite on the lab stack (lab.go).
type autoscaleBench struct {
	pulseLab
	step, cold string // the functions
	body       string
	pulsedEnv  []string // pulsed's settings changed from its defaults
}

// runAutoscale runs the autoscale suite.
func runAutoscale(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := cfg.stages(autoscaleStages)
	id, err := runID()
	if err != nil {
		return err
	}
	if err := netdatalab.Available(); err != nil {
		return err
	}
	b := &autoscaleBench{
		pulseLab: newPulseLab(log, env, id, asNamePrefix, env.tools.haproxy, asRouteTimeout, asStopGrace),
		body:     payload(cfg.BodyBytes), step: asNamePrefix + id + "-step", cold: asNamePrefix + id + "-cold",
	}
	rep := report.New(cfg.Suite, env.started)
	m, versions, err := b.open(ctx, rep)
	if err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()
	if err := b.build(ctx, rep, cStep(env.tools, env.tmp, "sleepecho", sleepEchoC)); err != nil {
		return err
	}
	for _, f := range []func(context.Context) error{b.prepareShared, b.deploy, b.start} {
		if err := f(ctx); err != nil {
			return err
		}
	}
	rep.Record("functions", map[string]string{"step": b.step, "cold": b.cold})
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s; %d step trial(s) (%s = %d connections); function: fork mode, "+
		"a static C handler sleeping 100 ms then echoing, scale %s target %d min %d max %d, no Docker health check; pulsed: %s",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, versions, cfg.ScaleTrials, asStep, asStepConns,
		asMetric, asTarget, asMin, asMax, strings.Join(b.pulsedEnv, " "))

	for i := 1; i <= cfg.ScaleTrials && slices.Contains(stages, "step"); i++ {
		if err := b.settle(ctx); err != nil {
			return err
		}
		r := report.NewRow("step", "step", asStep, "conns", asStepConns, "trial", i)
		r.Fail(b.stepTrial(ctx, r))
		b.log.Info("step trial", "trial", i, "traffic_s", r.V("traffic_s"), "decided_s", r.V("decided_s"),
			"to", r.V("first_replicas"), "trigger", r.Label("trigger"), "failed_requests", r.V("failed_requests"), "err", r.Error)
		rep.Add(r)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if slices.Contains(stages, "cold") {
		if err := b.coldTrials(ctx, rep, cfg.ScaleTrials); err != nil {
			return err
		}
	}
	if slices.ContainsFunc(rep.Rows, func(r report.Row) bool { return r.Error != "" }) {
		if dir := b.keepLogs(suiteAutoscale); dir != "" {
			rep.Note("a trial failed: pulsed's log and the lab Netdata's error log are kept in %s", dir)
		}
	}
	autoscaleSummary(rep, m.CPUs)
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// deploy assembles the image (watchdog + the C handler, fork mode) and
// deploys the step function at 1 replica and the cold one at 0.
func (b *autoscaleBench) deploy(ctx context.Context) error {
	wd, err := b.arts.read("watchdog")
	if err != nil {
		return err
	}
	fn, err := b.arts.read("sleepecho")
	if err != nil {
		return err
	}
	for _, sc := range []function.Scale{{Metric: asMetric, Target: asTarget, Min: asMin, Max: asMax}, {Metric: asMetric, Target: asTarget, Max: 2}} {
		spec := function.Spec{Name: b.step, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn", Timeout: asTimeout, MaxBody: 1 << 20, Scale: sc}
		if sc.Min == 0 {
			spec.Name = b.cold
		}
		if _, _, err := b.deployFunction(ctx, &spec, wd, fn, asDrainGrace); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, asRouteTimeout)
	defer cancel()
	_, err = b.sw.WaitReady(wctx, b.step, 1)
	return err
}

// start starts the lab Netdata and pulsed (a short stabilisation window)
// and waits until the step function is routed and its alarms are
// initialised.
func (b *autoscaleBench) start(ctx context.Context) error {
	err := b.startNetdata(ctx)
	if err == nil {
		b.pulsedEnv, err = b.startPulsed(ctx, "PULSE_SCALE_WINDOW="+asScaleWindow.String(), "PULSE_RESYNC_INTERVAL="+asResync.String())
	}
	if err == nil {
		err = b.waitRouted(ctx, b.step, 1, b.body)
	}
	if err == nil {
		b.log.Info("pulsed routing; waiting for the alarms to initialise", "api", b.apiAddr, "gateway", b.gwAddr)
		err = b.waitAlarm(ctx, b.step, asAlarmInit)
	}
	return err
}

// waitQuiet waits until fn's utilisation was below asQuietPct for each of
// the last 3 seconds and its scale-up alarm is not critical.
func (b *autoscaleBench) waitQuiet(ctx context.Context, fn string) error {
	var why error
	return poll(ctx, asQuietTimeout, 250*time.Millisecond, func(late bool) (bool, error) {
		d, err := b.nd.DataRange(ctx, utilChart(fn), -4, 0)
		vals, st := d.Column(contract.DimUtilization), ""
		switch {
		case err != nil:
			why = err
		case len(vals) < 3 || slices.ContainsFunc(vals[:3], func(v float64) bool { return v >= asQuietPct }):
			why = fmt.Errorf("utilisation %v", vals)
		default:
			if st, err = b.alarmStatus(ctx, fn); err == nil && st != "CRITICAL" {
				return true, nil
			}
			why = cmp.Or(err, fmt.Errorf("alarm %s", st))
		}
		if late {
			return false, fmt.Errorf("%s not quiet after %s: %w", fn, asQuietTimeout, why)
		}
		return false, nil
	})
}

// settle brings the step function to one replica on a quiet swarm: load
// gone from the last 3 s of utilisation, the scale-up alarm not critical,
// the service at 1 replica with one container and one HAProxy server.
func (b *autoscaleBench) settle(ctx context.Context) error {
	for range 3 {
		if err := b.waitQuiet(ctx, b.step); err != nil {
			return err
		}
		if err := b.sw.Scale(ctx, b.step, 1, true); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, asRouteTimeout)
		_, err := b.sw.WaitReady(wctx, b.step, 1)
		cancel()
		if err == nil {
			err = waitContainers(ctx, b.api, b.step, 1, asRouteTimeout)
		}
		if err == nil {
			err = b.waitServers(ctx, b.step, 1, true)
		}
		if err == nil {
			err = b.waitQuiet(ctx, b.step)
		}
		if err != nil {
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

// stepTrial runs one load step from one replica into r: it starts the load
// at t0 and waits for a new replica's server taking traffic (a slot pointed
// at another address whose sessions rise past what that slot counted
// before the step: traffic_s), then reads pulsed's first decision
// (decided_s, first_replicas) and checks that no one else scaled.
func (b *autoscaleBench) stepTrial(ctx context.Context, r *report.Row) error {
	backend := gateway.BackendName(b.step)
	slots, err := readSlots(ctx, b.rt, backend)
	if err != nil {
		return err
	}
	live := liveSlots(slots)
	if len(live) != 1 {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the step, want 1", len(live))
	}
	base := map[string]int64{}
	for _, s := range slots {
		base[s.Name] = s.Stot
	}
	load1, _ := readLoad1("/proc")
	r.Put("load1", load1)
	t0 := time.Now()
	load := newClosedLoop(t0, b.body, nil)
	load.set(asStepConns, b.gwAddr, "/function/"+b.step, false)
	stopLoad := sync.OnceFunc(func() {
		recs, fails := load.end()
		r.Put("requests", float64(len(recs))).Put("failed_requests", float64(len(fails)))
	})
	defer stopLoad()
	var lastErr error
	err = poll(ctx, asTrafficTimeout, asHAProxyPoll, func(late bool) (bool, error) {
		ss, err := readSlots(ctx, b.rt, backend)
		lastErr = cmp.Or(err, lastErr)
		if len(newTraffic(ss, base, map[string]bool{live[0].Addr: true})) > 0 {
			r.Put("traffic_s", report.Round3(time.Since(t0).Seconds()))
			return true, nil
		}
		if late {
			return false, fmt.Errorf("no new server took traffic within %s (last error: %v)", asTrafficTimeout, lastErr)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	svc, err := inspectService(ctx, b.api, b.step) // before anything else updates it
	inspected := time.Now()
	stopLoad()
	if err != nil {
		return err
	}
	evs, err := b.events(ctx)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	ds := slices.DeleteFunc(decisionsSince(evs, b.step, t0), func(e contract.ScaleEvent) bool { return e.Time.After(inspected) })
	if len(ds) > 0 {
		r.Labels["trigger"] = ds[0].Trigger
		r.Put("first_replicas", float64(ds[0].To)).Put("decided_s", report.Round3(ds[0].Time.Sub(t0).Seconds()))
	}
	if rr := svc.Spec.Mode.Replicated; rr != nil && rr.Replicas != nil {
		r.Put("service_replicas", float64(*rr.Replicas))
		if len(ds) > 0 && ds[len(ds)-1].To != int(*rr.Replicas) {
			r.Put("foreign_change", 1) // someone else (another pulsed on this swarm?) changed the count
		}
	}
	return nil
}

// decisionsSince returns fn's scale events after t0, oldest first.
func decisionsSince(evs contract.ScaleEvents, fn string, t0 time.Time) []contract.ScaleEvent {
	out := slices.DeleteFunc(slices.Clone(evs.Events), func(e contract.ScaleEvent) bool { return e.Function != fn || !e.Time.After(t0) })
	slices.SortStableFunc(out, func(a, b contract.ScaleEvent) int { return a.Time.Compare(b.Time) })
	return out
}

// coldTrials sends, per trial, one request to the cold function at zero
// replicas, adding a "cold" row, and scales it back to zero after the last.
func (b *autoscaleBench) coldTrials(ctx context.Context, rep *report.Report, n int) error {
	for i := 1; i <= n; i++ {
		if err := b.forceZero(ctx); err != nil {
			return err
		}
		r := report.NewRow("cold", "from", "zero", "trial", i)
		load1, _ := readLoad1("/proc")
		start := time.Now()
		status, err := coldRequest(ctx, b.gwAddr, "/function/"+b.cold, b.body)
		r.Put("latency_s", report.Round3(time.Since(start).Seconds())).Put("status", float64(status)).Put("load1", load1).Fail(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Info("cold start", "trial", i, "latency_s", r.V("latency_s"), "status", status, "err", err)
		rep.Add(r)
	}
	return b.forceZero(ctx)
}

// forceZero scales the cold function to 0 through the Docker API and waits
// until pulsed's catalog has it at 0 desired replicas and none listed,
// HAProxy has no server for it but the backup, and no container of it runs.
func (b *autoscaleBench) forceZero(ctx context.Context) error {
	if err := b.sw.Scale(ctx, b.cold, 0, true); err != nil {
		return err
	}
	return poll(ctx, asZeroTimeout, 50*time.Millisecond, func(late bool) (bool, error) {
		f, err := b.catalogFunction(ctx, b.cold)
		if err == nil && f.Desired == 0 && len(f.Replicas) == 0 {
			if ss, serr := readSlots(ctx, b.rt, gateway.BackendName(b.cold)); serr == nil && len(liveSlots(ss)) == 0 {
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

// autoscaleSummary summarises the rows into rep: the tables of the steps
// and the cold starts, the goals and the notes; cpus is the host's.
func autoscaleSummary(rep *report.Report, cpus int) {
	steps, cold := report.Summarize(rep.Rows, "step", "step", "conns"), report.Summarize(rep.Rows, "cold", "from")
	rep.Summary = slices.Concat(steps, cold)
	rep.Tables = append(rep.Tables,
		report.GroupTable("Load step → the first extra replica answering through HAProxy: from one replica, a closed-loop load through the gateway "+
			"starts at t0; the total ends when HAProxy's `show stat` first shows a new replica's server with sessions; `decided` is pulsed's "+
			"first scale decision. Failed trials count as infinitely slow.", steps, "step",
			append(timeCols("traffic_s"), report.Stat("decided (median s)", "decided_s", "%.2f"))...),
		report.GroupTable("Cold start from zero: one POST through the gateway on a new connection to the cold function at zero replicas, "+
			"timed to the end of its answer.", cold, "from", timeCols("latency_s")...))

	five, ok := report.Find(steps, "step", asStep)
	t := totals(five, "traffic_s")
	note := fmt.Sprintf("%d trials, %d without an extra replica serving", len(t), five.Failed)
	outside, first := len(t), []string{}
	for _, r := range five.Rows {
		if v, ok := r.Values["first_replicas"]; ok {
			first = append(first, fmt.Sprint(v))
			if v >= 4 && v <= 6 {
				outside--
			}
		}
	}
	c, cok := report.Find(cold, "from", "zero")
	ct := totals(c, "latency_s")
	rep.Goals = []report.Goal{
		report.NewGoal("5× step → first extra replica serving, median", "s", 4).Noted("%s", note).Check(report.Median(t)),
		report.NewGoal("5× step → first extra replica serving, p95", "s", 6).Noted("%s", note).Check(report.Percentile(t, 95)),
		report.NewGoal("5× step: first decision 5 ± 1 replicas, trials outside", "trials", 0).
			Noted("first decisions: %s", cmp.Or(strings.Join(first, ", "), "none")).Check(float64(outside)),
		report.NewGoal("cold start from zero: first request, median", "s", 1).Noted("%d trials", len(ct)).Check(report.Median(ct)),
		report.NewGoal("cold start: requests not answered 200", "requests", 0).Check(float64(c.Failed)),
	}
	for i := range rep.Goals {
		if i < 3 && !ok {
			rep.Goals[i] = rep.Goals[i].Skipped("the step stage did not run")
		} else if i >= 3 && !cok {
			rep.Goals[i] = rep.Goals[i].Skipped("the cold stage did not run")
		}
	}

	var loads []float64
	for _, r := range rep.Rows {
		what := cmp.Or(r.Label("step"), "cold start") + " trial " + r.Label("trial")
		if r.V("foreign_change") == 1 {
			rep.Note("%s: the service had %.0f replicas, not this pulsed's last decision: something else on the swarm scaled it", what, r.V("service_replicas"))
		}
		if r.V("failed_requests") > 0 {
			rep.Note("%s: %.0f of %.0f requests of the load failed", what, r.V("failed_requests"), r.V("requests"))
		}
		if r.Label("trigger") == contract.TriggerResync {
			rep.Note("%s: pulsed's periodic evaluation (every %s) decided before the alarm's hook arrived", what, asResync)
		}
		if r.Error != "" {
			rep.Note("%s failed: %s", what, r.Error)
		}
		if v, ok := r.Values["load1"]; ok {
			loads = append(loads, v)
		}
	}
	if len(loads) > 0 && report.Median(loads) > float64(cpus) {
		rep.Note("the host was busy: its 1-minute load average at the trials' starts was %.1f (median; %.1f–%.1f) on %d CPUs, "+
			"which slows the engine's task starts most", report.Median(loads), slices.Min(loads), slices.Max(loads), cpus)
	}
}

// timeCols are the columns of a group's trial times (metric; a failed
// trial's +Inf): trials, median and p95.
func timeCols(metric string) []report.Col {
	col := func(head string, f func([]float64) float64) report.Col {
		return report.Col{Head: head, Cell: func(g report.Group) string {
			if v := f(totals(g, metric)); !math.IsInf(v, 1) {
				return report.Num("%.2f", v)
			}
			return "failed"
		}}
	}
	return []report.Col{
		{Head: "trials (failed)", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d)", g.Runs+g.Failed, g.Failed) }},
		col("median s", report.Median),
		col("p95 s", func(t []float64) float64 { return report.Percentile(t, 95) }),
	}
}

// totals are metric of every trial of g that ran, +Inf for one that failed
// (so that failed trials count against the goals).
func totals(g report.Group, metric string) []float64 {
	var out []float64
	for _, r := range g.Rows {
		if v := r.V(metric); r.OK() && !math.IsNaN(v) {
			out = append(out, v)
		} else if r.Skipped == "" {
			out = append(out, math.Inf(1))
		}
	}
	return out
}
