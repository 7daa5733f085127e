package main

// The autoscale suite's step trials: a step of load on the step function
// and its way through the metrics, the alarm, the hook, the scaler and
// HAProxy.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/scaler"
)

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

// seen returns how many new replicas' servers took traffic, the address of
// the first and when, and when the last did.
func (o *stepObs) seen() (n int, addr string, first, last time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for a, t := range o.traffic {
		if first.IsZero() || t.Before(first) {
			addr, first = a, t
		}
		if t.After(last) {
			last = t
		}
	}
	return len(o.traffic), addr, first, last
}

func (b *autoscaleBench) stepTrial(ctx context.Context, st autoscaleStep, trial int) stepTrial {
	r := stepTrial{Step: st.Name, Conns: st.Conns, Trial: trial}
	if err := b.stepOnce(ctx, st, &r); err != nil {
		r.Error = err.Error()
		b.log.Warn("step trial failed", "step", st.Name, "trial", trial, "err", err)
		return r
	}
	deref := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	b.log.Info("step trial", "step", st.Name, "trial", trial, "traffic_s", deref(r.TrafficS), "scrape_s", deref(r.ScrapeS), "alarm_s", deref(r.AlarmS),
		"hook_s", deref(r.HookS), "scaled_s", deref(r.ScaledS), "running_s", deref(r.RunningS), "trigger", r.Trigger, "to", r.firstTo(), "failed", r.Failed)
	return r
}

func (b *autoscaleBench) stepOnce(ctx context.Context, st autoscaleStep, r *stepTrial) error {
	taskFilter := filters.NewArgs(filters.Arg("service", b.stepSvcID))
	knownTasks, err := taskIDs(ctx, b.api, taskFilter)
	if err != nil {
		return err
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
	wg.Go(func() { b.pollTasks(pctx, taskFilter, knownTasks, obs) })
	wg.Go(func() { b.pollServers(pctx, base, oldAddrs, obs) })

	r.Load1, _ = readLoad1("/proc")
	t0 := time.Now()
	r.Start = t0.UTC().Format(time.RFC3339Nano)
	endLoad := startStepLoad(b.gwAddr, "/function/"+b.step, b.body, st.Conns)
	stopLoad := sync.OnceFunc(func() { r.Requests, r.Failed, r.Why = endLoad() })
	defer stopLoad()

	// Wait for the first new server taking traffic, then (up to
	// asFullWait) for every replica of the first decision.
	want := 0
	var lastEvents time.Time
	for {
		n, _, first, last := obs.seen()
		now := time.Now()
		if first.IsZero() && now.Sub(t0) > asTrafficTimeout {
			obs.mu.Lock()
			running, lastErr := len(obs.running), obs.lastErr
			obs.mu.Unlock()
			return fmt.Errorf("no new server took traffic within %s (tasks running: %d, last error: %v)", asTrafficTimeout, running, lastErr)
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
			if want > 0 && n >= want {
				r.FullS = ptr(round3(last.Sub(t0).Seconds()))
				break
			}
			if now.Sub(first) > asFullWait {
				break
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	// Swarm's UpdatedAt, before anything else updates the service.
	svc, err := inspectService(ctx, b.api, b.step)
	inspected := time.Now()
	if err != nil {
		return err
	}
	stopLoad()
	// The server is known by its address: pulsed's catalog names its task.
	// The task poller may see the task a moment after HAProxy did.
	_, addr, at, _ := obs.seen()
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
	from := int64(math.Floor(t0s))
	relUnix := func(sec int64) *float64 { return ptr(round3(float64(sec) - t0s)) }

	r.TaskID = name
	r.TrafficS = rel(at)
	r.RunningS = rel(obs.running[name])
	r.CreatedS = rel(obs.created[name])
	r.Serving = len(obs.traffic)

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

	d, err := b.nd.DataRange(ctx, utilChart(b.step), from-2, 0)
	if err != nil {
		return fmt.Errorf("netdata data: %w", err)
	}
	if sec, ok := firstAbove(d, contract.DimUtilization, scaler.DefaultUpThreshold, from); ok {
		r.ScrapeS = relUnix(sec)
	}
	log, err := b.nd.AlarmLog(ctx, 0)
	if err != nil {
		return fmt.Errorf("netdata alarm log: %w", err)
	}
	if e, ok := firstCritical(log, alarmScaleUp, b.step, from); ok {
		r.AlarmS, r.AlarmValue = relUnix(e.When), e.Value
	}
	if f, err := os.Open(b.pulsedLog); err == nil {
		h, ok := firstHook(f, b.step, alarmScaleUp, t0)
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
	out := slices.DeleteFunc(slices.Clone(evs.Events), func(e contract.ScaleEvent) bool { return e.Function != fn || !e.Time.After(t0) })
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
		var h hookLine
		if !strings.Contains(sc.Text(), `"msg":"alarm"`) || json.Unmarshal(sc.Bytes(), &h) != nil {
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
	pollNewTasks(ctx, b.api, f, known, asTaskPoll, obs.note, func(tasks []swarm.Task, _ time.Time) bool {
		obs.mu.Lock()
		for _, t := range tasks {
			if _, ok := obs.created[t.ID]; !ok {
				obs.created[t.ID] = t.CreatedAt
			}
			if _, ok := obs.running[t.ID]; !ok && t.Status.State == swarm.TaskStateRunning {
				obs.running[t.ID] = t.Status.Timestamp
			}
		}
		obs.mu.Unlock()
		return false
	})
}

// pollServers reads the step function's slots every asHAProxyPoll and
// records when a slot pointed at an address not in old first took a
// session past its count in base (slot name → stot before the step), by
// address.
func (b *autoscaleBench) pollServers(ctx context.Context, base map[string]int64, old map[string]bool, obs *stepObs) {
	every(ctx, asHAProxyPoll, func() {
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
	})
}

// taskAt returns the task of fn's replica at addr in pulsed's catalog, ""
// if none.
func (b *autoscaleBench) taskAt(ctx context.Context, fn, addr string) string {
	f, _ := b.catalogFunction(ctx, fn)
	for _, r := range f.Replicas {
		if r.Addr == addr {
			return r.TaskID
		}
	}
	return ""
}

// startStepLoad starts conns connections of the closed-loop
// client (load.go: keep-alive, one request outstanding each, never
// retrying) POSTing body to path at addr. The function it returns stops
// the load (each connection finishes its request under way) and returns
// the requests answered, the failures and their reasons.
func startStepLoad(addr, path, body string, conns int) func() (requests, failed int64, why map[string]int64) {
	l := newClosedLoop(time.Now(), body, nil)
	l.set(conns, addr, path, false)
	return func() (int64, int64, map[string]int64) {
		recs, fails := l.end()
		why := map[string]int64{}
		for _, f := range fails {
			msg := f.Msg
			if f.Req.Err == reqErrStatus { // counted by status
				msg = fmt.Sprintf("%d %s", f.Req.Status, http.StatusText(int(f.Req.Status)))
			}
			why[msg]++
		}
		return int64(len(recs)), int64(len(fails)), why
	}
}
