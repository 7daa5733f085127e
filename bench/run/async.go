package main

// The async suite (issue 16): what async invoke costs at the gateway against
// a sync invoke of the same function, how fast pulsed's dispatcher drains
// what was enqueued (enqueue), and how scaling on queue depth, through the
// real Netdata + collector + alarms + scaler, drains a burst against one
// replica (queuescale). bench/README.md describes both.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

const suiteAsync = "async"

// Stages of the async suite, in the order they run.
var asyncStages = []string{aqStageEnqueue, aqStageScale}

// Settings of the async suite.
const (
	aqStageEnqueue, aqStageScale = "enqueue", "queuescale"
	aqNamePrefix                 = "pbench-aq-" // + the run's ID: every function the suite creates
	aqSync, aqAsync              = "sync", "async"
	aqConns                      = 8 // wrk's connections in the enqueue stage, both variants
	aqEchoConcurrency            = 4 // the echo's async concurrency per replica (the default)
	aqDrainPoll                  = 20 * time.Millisecond
	aqDrainTimeout               = 180 * time.Second // end of the load → queue empty
	// The queuescale stage: a burst of aqBurst async requests, sent by
	// aqBurstSenders keep-alive clients as fast as they are answered, to a
	// function whose handler sleeps 100 ms, dispatched aqSlowConcurrency at
	// a time per replica; scaled on queue depth (target aqScaleTarget per
	// replica, up to aqScaleMax) or held at one replica.
	aqBurst, aqBurstSenders          = 400, 16
	aqSlowConcurrency, aqScaleTarget = 2, 10
	aqScaleMax                       = 4
	aqScaled, aqSingle               = "scale on queue (max 4)", "one replica (max 1)"
	aqScalePoll                      = 100 * time.Millisecond
	aqBurstTimeout                   = 180 * time.Second // burst start → queue empty
	aqScaleWindow                    = 20 * time.Second  // pulsed's stabilisation window (the harness scales back itself)
	aqRouteTimeout, aqStopGrace      = 60 * time.Second, 20 * time.Second
	aqQuietTimeout, aqAlarmInit      = 90 * time.Second, 90 * time.Second
	aqQuietPct                       = 20
)

// Goals of the async suite (bench/README.md says why these limits).
const (
	aqGoalP99       = "async enqueue p99 ≤ 50 ms at c=8"
	aqGoalDone      = "enqueue stage: async requests not done (enqueued − done, + failed)"
	aqGoalP50Ratio  = "async enqueue p50 ÷ sync invoke p50 at c=8"
	aqGoalRpsRatio  = "async enqueue throughput ÷ sync invoke throughput at c=8"
	aqGoalDrain     = "dispatcher: backlog drained after the load, requests/s"
	aqGoalSpeedup   = "queue scaling drains the burst ≥ 1.5× faster than one replica (drain time scaled ÷ one replica ≤ 0.667)"
	aqGoalFirst     = "burst start → first extra replica routed ≤ 4 s (median)"
	aqGoalBurstDone = "queuescale stage: async requests not done (enqueued − done, + failed)"
	aqSpeedupLimit  = 1 / 1.5
)

// asyncBench runs the async suite on the lab stack (lab.go).
type asyncBench struct {
	pulseLab
	cfg                  config
	rep                  *report.Report
	echo, scaled, single string // the functions
	body, script         string
	pulsedEnv            []string // the queuescale pulsed's settings changed from its defaults
	series               map[string][]aqSample
}

// aqSample is one poll of a burst: seconds since its start, queue depth,
// desired replicas (pulsed's catalog) and routed ones.
type aqSample struct {
	T       float64 `json:"t_s"`
	Depth   uint64  `json:"depth"`
	Desired int     `json:"desired"`
	Routed  int     `json:"routed"`
}

// runAsync runs the async suite.
func runAsync(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := cfg.stages(asyncStages)
	id, err := runID()
	if err != nil {
		return err
	}
	if slices.Contains(stages, aqStageScale) {
		if err := netdatalab.Available(); err != nil {
			return err
		}
	}
	b := &asyncBench{
		pulseLab: newPulseLab(log, env, id, aqNamePrefix, env.tools.haproxy, aqRouteTimeout, aqStopGrace),
		cfg:      cfg, body: payload(cfg.BodyBytes), script: filepath.Join(env.root, "bench", "wrk", "post.lua"),
		echo: aqNamePrefix + id + "-echo", scaled: aqNamePrefix + id + "-scaled", single: aqNamePrefix + id + "-single",
		series: map[string][]aqSample{},
	}
	rep := report.New(cfg.Suite, env.started)
	b.rep = rep
	m, versions, err := b.open(ctx, rep)
	if err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()
	if err := b.build(ctx, rep, goStep(env.tools, env.tmp, "inproc", "./bench/inproc", inprocTags), cStep(env.tools, env.tmp, "sleepecho", sleepEchoC)); err != nil {
		return err
	}
	if err := b.prepareShared(ctx); err != nil {
		return err
	}
	rep.Record("functions", map[string]string{"echo": b.echo, "scaled": b.scaled, "single": b.single})
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, %s; enqueue: bench/inproc (Go echo) at 1 replica, async concurrency %d, "+
		"%d round(s) × %gs measured (+%gs warm-up), wrk -t1 -c%d, %d-byte body; queuescale: %d round(s) of a burst of %d async requests "+
		"(%d senders) to a fork-mode C handler sleeping 100 ms, async concurrency %d per replica, scale queue target %d min 1 max %d against max 1",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Wrk, versions, aqEchoConcurrency, cfg.Rounds, cfg.Duration.Seconds(), cfg.Warmup.Seconds(),
		aqConns, cfg.BodyBytes, cfg.Rounds, aqBurst, aqBurstSenders, aqSlowConcurrency, aqScaleTarget, aqScaleMax)
	log.Info("async suite", "stages", strings.Join(stages, ","), "run", id)
	stop := func() { rep.Cleanup = append(rep.Cleanup, b.stopPulsed()...) }
	for i, f := range []func(context.Context) error{b.enqueueStage, b.queueScaleStage} {
		if err := runStage(ctx, log, stages, asyncStages[i], &rep.Notes, f, stop); err != nil {
			return err
		}
	}
	if len(b.pulsedEnv) > 0 {
		rep.Setup += "; queuescale pulsed: " + strings.Join(b.pulsedEnv, " ")
	}
	rep.Record("queuescale_series", b.series)
	if slices.ContainsFunc(rep.Rows, func(r report.Row) bool { return r.Error != "" || len(r.Flags) > 0 }) {
		if dir := b.keepLogs(suiteAsync); dir != "" {
			rep.Note("a run failed or was flagged: pulsed's logs and the lab Netdata's error log are kept in %s", dir)
		}
	}
	asyncSummary(rep)
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// asyncEnv gives pulsed free loopback ports for its async listener and the
// gateway's dispatch frontend (never the defaults a real install uses).
func asyncEnv() ([]string, error) {
	a, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return []string{"PULSE_ASYNC_LISTEN=" + a, "PULSE_ASYNC_DISPATCH_LISTEN=" + d}, nil
}

// enqueueStage deploys the echo, starts pulsed (autoscaler off) and runs,
// round after round in a rotated order, wrk's sync invoke and async enqueue.
func (b *asyncBench) enqueueStage(ctx context.Context) error {
	bin, err := b.arts.read("inproc")
	if err != nil {
		return err
	}
	spec := function.Spec{Name: b.echo, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".", Timeout: 10 * time.Second,
		MaxBody: 1 << 20, Scale: function.Scale{Metric: "inflight", Target: 10, Min: 1, Max: 1}}
	if _, _, err := b.deployFunction(ctx, &spec, nil, bin, time.Second); err != nil {
		return err
	}
	defer func() {
		if err := b.remove(context.WithoutCancel(ctx), b.echo); err != nil {
			b.log.Warn("remove", "function", b.echo, "err", err)
		}
	}()
	if err := waitReplicas(ctx, b.sw, b.api, b.echo, 1); err != nil {
		return err
	}
	env, err := asyncEnv()
	if err != nil {
		return err
	}
	if err := b.launchPulsed(ctx, "log_level: info\n", env...); err != nil {
		return err
	}
	if err := b.waitRouted(ctx, b.echo, 1, b.body); err != nil {
		return err
	}
	for round := 1; round <= b.cfg.Rounds; round++ {
		for slot, v := range rotate([]string{aqSync, aqAsync}, round-1) {
			r := report.NewRow("enqueue", "stage", aqStageEnqueue, "variant", v, "round", round, "slot", slot)
			err := b.measureEnqueue(ctx, v, r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.Values = nil
				r.Fail(err)
				b.log.Warn("run failed", "stage", aqStageEnqueue, "round", round, "variant", v, "err", err)
			} else {
				b.log.Info("run", "stage", aqStageEnqueue, "round", round, "variant", v, "values", r.Values)
			}
			b.rep.Add(r)
		}
	}
	return nil
}

// measureEnqueue puts one wrk run of variant v into r: for async also the
// queue's counters over it and the drain after it.
func (b *asyncBench) measureEnqueue(ctx context.Context, v string, r *report.Row) error {
	if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	}
	url := "http://" + b.gwAddr + "/function/" + b.echo
	if v == aqAsync {
		url = "http://" + b.gwAddr + contract.AsyncFunctionPrefix + b.echo
		if err := asyncProbe(ctx, url, b.body, b.echo); err != nil {
			return err
		}
	} else if err := probe(ctx, url, b.body, nil); err != nil {
		return err
	}
	w := wrkRun{Bin: b.env.tools.wrk, Script: b.script, URL: url, Threads: 1, Conns: aqConns, Body: b.body}
	if err := warmUp(ctx, w, b.cfg.Warmup); err != nil {
		return err
	}
	var q0 contract.QueueStatus
	if v == aqAsync { // the warm-up's requests are dispatched before the measured run
		var err error
		if q0, _, err = b.waitDrained(ctx, b.echo, aqDrainTimeout); err != nil {
			return fmt.Errorf("after the warm-up: %w", err)
		}
	}
	w.Duration = b.cfg.Duration
	start := time.Now()
	res, wrkCPU, err := runWrk(ctx, w)
	if err != nil {
		return err
	}
	end := time.Now()
	secs := float64(res.DurationUS) / 1e6
	if n := res.errorCount(); n > 0 {
		r.Flag("%d request errors (%d status ≥ 400)", n, res.Errors.Status)
	}
	r.PutAll(map[string]float64{
		"rps": float64(res.Requests) / secs, "p50_us": float64(res.Latency.P50), "p99_us": float64(res.Latency.P99),
		"errors": float64(res.errorCount()), "wrk_core_pct": 100 * wrkCPU.Seconds() / end.Sub(start).Seconds(),
	})
	if v != aqAsync {
		return nil
	}
	qEnd, err := b.queue(ctx, b.echo)
	if err != nil {
		return err
	}
	q1, empty, err := b.waitDrained(ctx, b.echo, aqDrainTimeout)
	if err != nil {
		return err
	}
	drain := empty.Sub(end).Seconds()
	enq, done, failed := q1.Enqueued-q0.Enqueued, q1.Done-q0.Done, q1.Failed-q0.Failed
	accepted := res.Requests - res.Errors.Status
	r.PutAll(map[string]float64{
		"accepted": float64(accepted), "enqueued": float64(enq), "done": float64(done), "failed": float64(failed),
		"retried": float64(q1.Retried - q0.Retried), "depth_end": float64(qEnd.Depth), "drain_s": report.Round3(drain),
		"dispatch_rps": float64(done) / empty.Sub(start).Seconds(),
	})
	if qEnd.Depth > 0 && drain > 0 {
		r.Put("drain_rps", float64(qEnd.Depth)/drain)
	}
	if int64(enq) < accepted {
		r.Flag("lost: wrk had %d requests answered 2xx, pulsed counted %d enqueued", accepted, enq)
	}
	if done != enq || failed > 0 {
		r.Flag("%d enqueued, %d done, %d failed", enq, done, failed)
	}
	return nil
}

// asyncProbe POSTs body to url (an async-function URL of fn) and checks the
// answer: 202, the request id in the header and in the JSON body.
func asyncProbe(ctx context.Context, url, body, fn string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("async probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var acc contract.AsyncAccepted
	if err := json.Unmarshal(raw, &acc); err != nil || resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("async probe %s: got %d %q, want 202 with %T", url, resp.StatusCode, report.Truncate(string(raw), 200), acc)
	}
	if id := resp.Header.Get(contract.HeaderAsyncRequestID); id == "" || id != acc.RequestID || acc.Function != fn {
		return fmt.Errorf("async probe %s: header id %q, body %+v", url, id, acc)
	}
	return nil
}

// queue returns fn's queue as pulsed's /v1/queues lists it (zero before
// its first request).
func (b *asyncBench) queue(ctx context.Context, fn string) (contract.QueueStatus, error) {
	var qs contract.Queues
	if err := b.getJSON(ctx, "http://"+b.apiAddr+contract.QueuesPath, false, &qs); err != nil {
		return contract.QueueStatus{}, err
	}
	for _, q := range qs.Queues {
		if q.Function == fn {
			return q, nil
		}
	}
	return contract.QueueStatus{Function: fn}, nil
}

// waitDrained polls fn's queue until its depth is 0 and returns it with
// the time it was first seen empty.
func (b *asyncBench) waitDrained(ctx context.Context, fn string, timeout time.Duration) (contract.QueueStatus, time.Time, error) {
	var q contract.QueueStatus
	var at time.Time
	err := poll(ctx, timeout, aqDrainPoll, func(late bool) (bool, error) {
		var err error
		q, err = b.queue(ctx, fn)
		at = time.Now()
		if err == nil && q.Depth == 0 {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("%s's queue not empty after %s (last: %+v, %v)", fn, timeout, q, err)
		}
		return false, nil
	})
	return q, at, err
}

// queueScaleStage deploys the two slow functions, starts the lab Netdata
// and pulsed with the autoscaler, and runs a burst on each per round.
func (b *asyncBench) queueScaleStage(ctx context.Context) error {
	wd, err := b.arts.read("watchdog")
	if err != nil {
		return err
	}
	fn, err := b.arts.read("sleepecho")
	if err != nil {
		return err
	}
	for name, maxR := range map[string]int{b.scaled: aqScaleMax, b.single: 1} {
		spec := function.Spec{Name: name, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn", Timeout: 30 * time.Second, MaxBody: 1 << 20,
			Scale: function.Scale{Metric: contract.ScaleMetricQueue, Target: aqScaleTarget, Min: 1, Max: maxR},
			Async: &contract.AsyncPolicy{Retries: 3, MaxAge: time.Hour, Concurrency: aqSlowConcurrency}}
		if _, _, err := b.deployFunction(ctx, &spec, wd, fn, time.Second); err != nil {
			return err
		}
	}
	defer func() {
		for _, name := range []string{b.scaled, b.single} {
			if err := b.remove(context.WithoutCancel(ctx), name); err != nil {
				b.log.Warn("remove", "function", name, "err", err)
			}
		}
	}()
	for _, name := range []string{b.scaled, b.single} {
		if err := waitReplicas(ctx, b.sw, b.api, name, 1); err != nil {
			return err
		}
	}
	if err := b.startNetdata(ctx); err != nil {
		return err
	}
	defer func() {
		if b.nd != nil {
			if err := b.nd.Stop(); err != nil {
				b.rep.Cleanup = append(b.rep.Cleanup, "lab netdata: "+err.Error())
			}
			b.nd = nil
		}
	}()
	env, err := asyncEnv()
	if err != nil {
		return err
	}
	if b.pulsedEnv, err = b.startPulsed(ctx, append([]string{"PULSE_SCALE_WINDOW=" + aqScaleWindow.String(), "PULSE_IDLE_CHECK=24h"}, env...)...); err != nil {
		return err
	}
	for _, name := range []string{b.scaled, b.single} {
		if err := b.waitRouted(ctx, name, 1, b.body); err != nil {
			return err
		}
	}
	if err := b.waitAlarm(ctx, b.scaled, aqAlarmInit); err != nil {
		return err
	}
	for round := 1; round <= b.cfg.Rounds; round++ {
		for slot, v := range rotate([]string{aqScaled, aqSingle}, round-1) {
			name := map[string]string{aqScaled: b.scaled, aqSingle: b.single}[v]
			r := report.NewRow("burst", "stage", aqStageScale, "variant", v, "round", round, "slot", slot)
			err := b.settle(ctx, name)
			if err == nil {
				err = b.burst(ctx, name, fmt.Sprintf("%s round %d", v, round), r)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.Fail(err)
			b.log.Info("burst", "round", round, "variant", v, "values", r.Values, "flags", r.Flags, "err", err)
			b.rep.Add(r)
		}
	}
	return nil
}

// settle brings fn to one routed replica with an empty queue, its
// utilisation near 0 for 3 s and its scale-up alarm not critical.
func (b *asyncBench) settle(ctx context.Context, fn string) error {
	if _, _, err := b.waitDrained(ctx, fn, aqBurstTimeout); err != nil {
		return err
	}
	if err := b.waitUtilQuiet(ctx, fn); err != nil {
		return err
	}
	if err := b.sw.Scale(ctx, fn, 1, true); err != nil {
		return err
	}
	if err := waitReplicas(ctx, b.sw, b.api, fn, 1); err != nil {
		return err
	}
	return b.waitServers(ctx, fn, 1, true)
}

// waitUtilQuiet waits until fn's utilisation was below aqQuietPct for
// each of the last 3 seconds and its scale-up alarm is not critical.
func (b *asyncBench) waitUtilQuiet(ctx context.Context, fn string) error {
	var why error
	return poll(ctx, aqQuietTimeout, 250*time.Millisecond, func(late bool) (bool, error) {
		d, err := b.nd.DataRange(ctx, utilChart(fn), -4, 0)
		vals := d.Column(contract.DimUtilization)
		switch {
		case err != nil:
			why = err
		case len(vals) < 3 || slices.ContainsFunc(vals[:3], func(v float64) bool { return v >= aqQuietPct }):
			why = fmt.Errorf("utilisation %v", vals)
		default:
			st, err := b.alarmStatus(ctx, fn)
			if err == nil && st != "CRITICAL" {
				return true, nil
			}
			why = cmp.Or(err, fmt.Errorf("alarm %s", st))
		}
		if late {
			return false, fmt.Errorf("%s not quiet after %s: %w", fn, aqQuietTimeout, why)
		}
		return false, nil
	})
}

// burst sends aqBurst async requests to fn as fast as aqBurstSenders
// keep-alive clients are answered, then polls the queue and pulsed's
// catalog until the queue is empty; it puts into r the burst's times,
// the first scale-up, the peak replicas and the counters.
func (b *asyncBench) burst(ctx context.Context, fn, key string, r *report.Row) error {
	q0, err := b.queue(ctx, fn)
	if err != nil {
		return err
	}
	url := "http://" + b.gwAddr + contract.AsyncFunctionPrefix + fn
	t0 := time.Now()
	var samples []aqSample
	var mu sync.Mutex
	pctx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() { // the queue and the replicas over time, while the burst goes on too
		defer close(polled)
		every(pctx, aqScalePoll, func() {
			q, qerr := b.queue(pctx, fn)
			f, ferr := b.catalogFunction(pctx, fn)
			if qerr != nil || ferr != nil {
				return
			}
			routed := 0
			for _, rep := range f.Replicas {
				if rep.Routed && !rep.Draining {
					routed++
				}
			}
			mu.Lock()
			samples = append(samples, aqSample{T: report.Round3(time.Since(t0).Seconds()), Depth: q.Depth, Desired: f.Desired, Routed: routed})
			mu.Unlock()
		})
	}()
	defer func() { stopPoll(); <-polled }()
	accepted, refused := sendBurst(ctx, url, b.body, aqBurst, aqBurstSenders)
	sent := time.Since(t0).Seconds()
	q1, empty, err := b.waitDrained(ctx, fn, aqBurstTimeout-time.Since(t0))
	if err != nil {
		return err
	}
	stopPoll()
	<-polled
	mu.Lock()
	b.series[key] = samples
	mu.Unlock()
	enq, done, failed := q1.Enqueued-q0.Enqueued, q1.Done-q0.Done, q1.Failed-q0.Failed
	r.PutAll(map[string]float64{
		"accepted": float64(accepted), "enqueued": float64(enq), "done": float64(done), "failed": float64(failed),
		"retried": float64(q1.Retried - q0.Retried), "burst_s": report.Round3(sent), "drain_s": report.Round3(empty.Sub(t0).Seconds()),
	})
	peak, peakDesired, peakDepth := 0, 0, uint64(0)
	for _, s := range samples {
		peak, peakDesired, peakDepth = max(peak, s.Routed), max(peakDesired, s.Desired), max(peakDepth, s.Depth)
		if s.Routed > 1 && absent(r, "first_routed_s") {
			r.Put("first_routed_s", s.T)
		}
		if s.Desired > 1 && absent(r, "first_desired_s") {
			r.Put("first_desired_s", s.T)
		}
	}
	r.Put("peak_replicas", float64(peak)).Put("peak_desired", float64(peakDesired)).Put("peak_depth", float64(peakDepth))
	if evs, err := b.events(ctx); err == nil {
		if ds := decisionsSince(evs, fn, t0); len(ds) > 0 && ds[0].To > ds[0].From {
			r.Put("decided_s", report.Round3(ds[0].Time.Sub(t0).Seconds()))
			r.Labels["trigger"] = ds[0].Trigger
		}
	}
	if refused > 0 {
		r.Flag("%d of %d burst requests not accepted (202)", refused, aqBurst)
	}
	if enq < uint64(accepted) {
		r.Flag("lost: %d accepted (202), pulsed counted %d enqueued", accepted, enq)
	}
	if done != enq || failed > 0 {
		r.Flag("%d enqueued, %d done, %d failed", enq, done, failed)
	}
	return nil
}

// absent says whether r has no figure metric yet.
func absent(r *report.Row, metric string) bool {
	_, ok := r.Values[metric]
	return !ok
}

// sendBurst POSTs body to url n times from senders keep-alive clients, each
// sending its next request as soon as the last is answered; it returns how
// many were answered 202 and how many were not.
func sendBurst(ctx context.Context, url, body string, n, senders int) (accepted, refused int) {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: senders}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next, ok, bad atomic.Int64
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
				if err != nil {
					bad.Add(1)
					continue
				}
				resp, err := c.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(ok.Load()), int(bad.Load())
}

// asyncSummary sums the rows up: the tables, the goals and the notes.
func asyncSummary(rep *report.Report) {
	rep.Title = " (medians over rounds)"
	enq := report.Summarize(rep.Rows, "enqueue", "stage", "variant")
	report.Sort(enq, "variant", []string{aqSync, aqAsync})
	bursts := report.Summarize(rep.Rows, "burst", "stage", "variant")
	report.Sort(bursts, "variant", []string{aqScaled, aqSingle})
	rep.Summary = slices.Concat(enq, bursts)
	runs := report.Col{Head: "runs (failed)", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d)", g.Runs+g.Failed, g.Failed) }}
	rep.Tables = append(rep.Tables,
		report.GroupTable(fmt.Sprintf("The same echo function through the gateway, wrk -t1 -c%d: `sync` = POST /function/NAME (200 with the echo), "+
			"`async` = POST /async-function/NAME (202 once stored, synced to disk); the dispatcher runs alongside. After the async load: "+
			"the depth left, the time from the load's end until /v1/queues shows depth 0, the rate that backlog drained at, and done ÷ "+
			"(load start → empty).", aqConns), enq, "variant",
			report.Stat("rps", "rps", "%.0f"), report.Scaled("p50 ms", "p50_us", "%.2f", 1e-3), report.Scaled("p99 ms", "p99_us", "%.2f", 1e-3), report.Stat("wrk core %", "wrk_core_pct", "%.0f"),
			report.Stat("depth at end", "depth_end", "%.0f"), report.Stat("drain s", "drain_s", "%.2f"),
			report.Stat("drained/s", "drain_rps", "%.0f"), report.Stat("dispatched/s", "dispatch_rps", "%.0f"),
			sumCol("enqueued", "enqueued"), sumCol("done", "done"), sumCol("failed", "failed"), runs),
		report.GroupTable(fmt.Sprintf("A burst of %d async requests (%d senders) to a function sleeping 100 ms per request, async concurrency %d "+
			"per replica, from one replica: scaled on queue depth (target %d, max %d) by the real Netdata + collector + alarms + scaler, or "+
			"held at one replica. Times from the burst's start; replicas are pulsed's catalog (routed), polled every %g ms.",
			aqBurst, aqBurstSenders, aqSlowConcurrency, aqScaleTarget, aqScaleMax, ms(aqScalePoll)), bursts, "variant",
			report.Stat("burst sent s", "burst_s", "%.2f"), report.Stat("peak depth", "peak_depth", "%.0f"),
			report.Stat("decided s", "decided_s", "%.2f"), report.Stat("first extra replica routed s", "first_routed_s", "%.2f"),
			report.Stat("peak replicas", "peak_replicas", "%.0f"), report.Stat("queue empty s", "drain_s", "%.2f"),
			report.Spread("range s", "drain_s", "%.2f"), sumCol("enqueued", "enqueued"), sumCol("done", "done"), sumCol("failed", "failed"), runs))
	rep.Goals = asyncGoals(rep.Rows, enq, bursts)
	rep.Notes = append(rep.Notes, asyncNotes(enq, bursts)...)
}

// sumCol is metric summed over a group's rows that ran.
func sumCol(head, metric string) report.Col {
	return report.Col{Head: head, Cell: func(g report.Group) string {
		v, any := sumOf(g, metric)
		if !any {
			return ""
		}
		return report.Num("%.0f", v)
	}}
}

// sumOf is metric summed over g's rows that have it, and whether any has.
func sumOf(g report.Group, metric string) (float64, bool) {
	s, any := 0.0, false
	for _, r := range g.Rows {
		if v, ok := r.Values[metric]; ok {
			s, any = s+v, true
		}
	}
	return s, any
}

// notDone is the goal of a stage's requests all done: enqueued − done +
// failed, summed over the group's rows; a lost request (a 202 the counters
// do not have) fails it too.
func notDone(name string, g report.Group, ok bool, stage string) report.Goal {
	goal := report.NewGoal(name, "requests", 0)
	enq, has := sumOf(g, "enqueued")
	switch {
	case !ok:
		return goal.Skipped("the " + stage + " stage did not run")
	case !has:
		return goal.Failed("no run counted its requests")
	}
	done, _ := sumOf(g, "done")
	failed, _ := sumOf(g, "failed")
	acc, _ := sumOf(g, "accepted")
	goal = goal.Noted("%.0f accepted (202), %.0f enqueued, %.0f done, %.0f failed over %d run(s)", acc, enq, done, failed, g.Runs).Check(enq - done + failed)
	if acc > enq {
		goal.Status, goal.Note = report.Fail, goal.Note+": accepted requests missing from the counters"
	}
	if g.Failed > 0 {
		goal.Status, goal.Note = report.Fail, fmt.Sprintf("%s; %d run(s) failed", goal.Note, g.Failed)
	}
	return goal
}

// asyncGoals checks the suite's goals.
func asyncGoals(rows []report.Row, enq, bursts []report.Group) []report.Goal {
	p99 := report.NewGoal(aqGoalP99, "ms", 50).OverScaled(enq, "variant", aqAsync, "p99_us", 1e-3)
	a, aok := report.Find(enq, "variant", aqAsync)
	s, sok := report.Find(enq, "variant", aqSync)
	p50r := report.NewGoal(aqGoalP50Ratio, "×", 0).AsInfo().Ratio(enq, "variant", aqAsync, aqSync, "p50_us")
	rpsr := report.NewGoal(aqGoalRpsRatio, "×", 0).AsInfo().Ratio(enq, "variant", aqAsync, aqSync, "rps")
	if aok && sok && a.Runs > 0 && s.Runs > 0 {
		p50r = p50r.Noted("p50 async %.2f ms, sync %.2f ms", a.M("p50_us")/1e3, s.M("p50_us")/1e3)
		rpsr = rpsr.Noted("async %.0f/s, sync %.0f/s", a.M("rps"), s.M("rps"))
	}
	for _, g := range []*report.Goal{&p50r, &rpsr} {
		if g.Status == report.Fail && !g.NoValue { // a flagged group: the figure stands, the note says why
			g.Status = report.Info
		}
	}
	drain := report.NewGoal(aqGoalDrain, "req/s", 0).AsInfo()
	if !aok {
		drain = drain.Skipped("the enqueue stage did not run")
	} else {
		drain = drain.Noted("depth %.0f at the load's end drained in %.2f s; done ÷ (load start → empty) %.0f/s (medians)",
			a.M("depth_end"), a.M("drain_s"), a.M("dispatch_rps")).Check(a.M("drain_rps"))
	}
	goals := []report.Goal{p99, notDone(aqGoalDone, a, aok, aqStageEnqueue), p50r, rpsr, drain}

	// queuescale: the scaled drain time over the one-replica one, per round
	// paired, the goal on the medians.
	speed := report.NewGoal(aqGoalSpeedup, "×", report.Round3(aqSpeedupLimit)).Ratio(bursts, "variant", aqScaled, aqSingle, "drain_s")
	sc, scok := report.Find(bursts, "variant", aqScaled)
	si, siok := report.Find(bursts, "variant", aqSingle)
	if scok && siok && sc.Runs > 0 && si.Runs > 0 {
		var per []string
		for _, r := range report.Of(rows, "burst") {
			if r.Label("variant") != aqScaled || !r.OK() {
				continue
			}
			for _, o := range report.Of(rows, "burst") {
				if o.Label("variant") == aqSingle && o.Label("round") == r.Label("round") && o.OK() {
					per = append(per, fmt.Sprintf("%.2f×", o.V("drain_s")/r.V("drain_s")))
				}
			}
		}
		speed.Note = strings.TrimPrefix(fmt.Sprintf("%s; queue empty after %.2f s scaled, %.2f s at one replica: %.2f× faster (per round %s)",
			speed.Note, sc.M("drain_s"), si.M("drain_s"), si.M("drain_s")/sc.M("drain_s"), strings.Join(per, ", ")), "; ")
	}
	first := report.NewGoal(aqGoalFirst, "s", 4)
	if !scok {
		first = first.Skipped("the queuescale stage did not run")
	} else {
		t := totals(sc, "first_routed_s")
		first = first.Noted("%d burst(s); pulsed decided after %.2f s, peak %.0f replicas (medians)", len(t), sc.M("decided_s"), sc.M("peak_replicas")).
			Check(report.Median(t))
	}
	var all report.Group
	all.Labels = map[string]string{}
	for _, g := range bursts {
		all.Rows, all.Runs, all.Failed = append(all.Rows, g.Rows...), all.Runs+g.Runs, all.Failed+g.Failed
	}
	return append(goals, speed, first, notDone(aqGoalBurstDone, all, scok || siok, aqStageScale))
}

// asyncNotes flag what makes a figure less than it claims.
func asyncNotes(enq, bursts []report.Group) []string {
	var notes []string
	for _, g := range slices.Concat(enq, bursts) {
		name := g.Label("variant")
		if v := g.M("wrk_core_pct"); v >= gwWrkSaturatedPct {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f %% of a core: its rps and latency are bounded by the load generator", name, v))
		}
		for _, f := range g.Flags {
			notes = append(notes, name+": "+f)
		}
		for _, r := range g.Rows {
			if r.Error != "" {
				notes = append(notes, fmt.Sprintf("%s round %s failed: %s", name, r.Label("round"), r.Error))
			}
			if r.Label("trigger") == contract.TriggerResync {
				notes = append(notes, fmt.Sprintf("%s round %s: pulsed's periodic evaluation decided before the alarm's hook arrived", name, r.Label("round")))
			}
		}
	}
	return notes
}
