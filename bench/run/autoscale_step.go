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
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/scaler"
)

// asStages are the step breakdown's stages, each between two times of a
// step row ("": t0); a row holds each stage's seconds as "stage_" + its end.
var asStages = []struct{ name, from, to string }{
	{"step → scrape", "", "scrape_s"},
	{"scrape → alarm", "scrape_s", "alarm_s"},
	{"alarm → hook", "alarm_s", "hook_s"},
	{"hook → update stored", "hook_s", "updated_s"},
	{"stored → ServiceUpdate returned", "updated_s", "scaled_s"},
	{"ServiceUpdate → task running", "scaled_s", "task_running_s"},
	{"task running → server took traffic", "task_running_s", "traffic_s"},
}

// stepObs is what the trial's pollers saw, guarded by mu.
type stepObs struct {
	mu      sync.Mutex
	created map[string]time.Time // new task → its CreatedAt
	running map[string]time.Time // new task → its status timestamp when seen running
	traffic map[string]time.Time // a new replica's address → when its server first took a session
	lastErr error
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

// stepTrial runs one load step from one replica: a "step" row of the
// seconds after t0 (the load's start) at which each stage was seen.
func (b *autoscaleBench) stepTrial(ctx context.Context, st autoscaleStep, trial int) *report.Row {
	r := report.NewRow("step", "step", st.Name, "conns", st.Conns, "trial", trial)
	if err := b.stepOnce(ctx, st, r); err != nil {
		r.Fail(err)
		b.log.Warn("step trial failed", "step", st.Name, "trial", trial, "err", err)
		return r
	}
	b.log.Info("step trial", "step", st.Name, "trial", trial, "traffic_s", r.V("traffic_s"), "scrape_s", r.V("scrape_s"), "alarm_s", r.V("alarm_s"),
		"hook_s", r.V("hook_s"), "scaled_s", r.V("scaled_s"), "running_s", r.V("task_running_s"), "trigger", r.Label("trigger"),
		"to", r.V("first_replicas"), "failed", r.V("failed_requests"))
	return r
}

// stepOnce starts the load and waits for the first new server taking
// traffic, then (up to asFullWait) for every replica of the first
// decision; then it reads when the other stages happened.
func (b *autoscaleBench) stepOnce(ctx context.Context, st autoscaleStep, r *report.Row) error {
	taskFilter := filters.NewArgs(filters.Arg("service", b.stepSvcID))
	knownTasks, err := taskIDs(ctx, b.api, taskFilter)
	if err != nil {
		return err
	}
	slots, err := readSlots(ctx, b.rt, gateway.BackendName(b.step))
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
	obs := &stepObs{created: map[string]time.Time{}, running: map[string]time.Time{}, traffic: map[string]time.Time{}}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { b.pollTasks(pctx, taskFilter, knownTasks, obs) })
	wg.Go(func() { b.pollServers(pctx, base, map[string]bool{live[0].Addr: true}, obs) })

	load1, _ := readLoad1("/proc")
	r.Put("load1", load1)
	t0 := time.Now()
	r.Labels["start"] = t0.UTC().Format(time.RFC3339Nano)
	at := func(metric string, t time.Time) {
		if !t.IsZero() {
			r.Put(metric, report.Round3(t.Sub(t0).Seconds()))
		}
	}
	endLoad := startStepLoad(b.gwAddr, "/function/"+b.step, b.body, st.Conns)
	stopLoad := sync.OnceFunc(func() {
		requests, failed, why := endLoad()
		r.Put("requests", float64(requests)).Put("failed_requests", float64(failed))
		if len(why) > 0 {
			r.Labels["failed_why"] = fmtCounts(why, "")
		}
	})
	defer stopLoad()
	err = poll(ctx, asTrafficTimeout, 20*time.Millisecond, func(late bool) (bool, error) {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if late && len(obs.traffic) == 0 {
			return false, fmt.Errorf("no new server took traffic within %s (tasks running: %d, last error: %v)", asTrafficTimeout, len(obs.running), obs.lastErr)
		}
		return len(obs.traffic) > 0, nil
	})
	if err != nil {
		return err
	}
	want := 0 // new replicas of the first decision
	_ = poll(ctx, asFullWait, 20*time.Millisecond, func(late bool) (bool, error) {
		if evs, err := b.events(ctx); want == 0 && err == nil && len(decisionsSince(evs, b.step, t0)) > 0 {
			want = decisionsSince(evs, b.step, t0)[0].To - 1
		}
		n, _, _, last := obs.seen()
		if want > 0 && n >= want {
			at("full_s", last)
		}
		return late || want > 0 && n >= want, nil
	})
	// Swarm's UpdatedAt, before anything else updates the service.
	svc, err := inspectService(ctx, b.api, b.step)
	inspected := time.Now()
	if err != nil {
		return err
	}
	stopLoad()
	// The server is known by its address: pulsed's catalog names its task.
	// The task poller may see the task a moment after HAProxy did.
	_, addr, first, _ := obs.seen()
	name := ""
	_ = poll(ctx, 25*asTaskPoll, asTaskPoll, func(late bool) (bool, error) {
		if name == "" {
			name = b.taskAt(ctx, b.step, addr)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		_, ok := obs.running[name]
		return ok || late, nil
	})
	stop()
	wg.Wait()
	r.Labels["task"] = name
	at("traffic_s", first)
	at("task_running_s", obs.running[name])
	at("task_created_s", obs.created[name])
	r.Put("new_servers_serving", float64(len(obs.traffic)))

	evs, err := b.events(ctx)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	ds := decisionsSince(evs, b.step, t0)
	stored := 0
	var text []string
	for _, e := range ds {
		text = append(text, fmt.Sprintf("%d→%d %s @%.2f", e.From, e.To, e.Trigger, e.Time.Sub(t0).Seconds()))
		if !e.Time.After(inspected) {
			stored++
		}
	}
	r.Put("decisions", float64(len(ds)))
	if rr := svc.Spec.Mode.Replicated; rr != nil && rr.Replicas != nil {
		r.Put("service_replicas", float64(*rr.Replicas))
		if stored > 0 && ds[stored-1].To != int(*rr.Replicas) {
			r.Put("foreign_change", 1) // someone else (another pulsed on this swarm?) changed the count
		}
	}
	if len(ds) > 0 {
		r.Labels["decisions"], r.Labels["trigger"], r.Labels["reason"] = strings.Join(text, ", "), ds[0].Trigger, ds[0].Reason
		r.Put("first_replicas", float64(ds[0].To))
		at("scaled_s", ds[0].Time)
		// UpdatedAt is the first decision's only when no later one came
		// before the inspection.
		if stored == 1 && !svc.UpdatedAt.After(ds[0].Time) && svc.UpdatedAt.After(t0) {
			at("updated_s", svc.UpdatedAt)
		}
	}

	// Netdata's times are whole seconds.
	from := t0.Unix()
	atUnix := func(metric string, sec int64) { r.Put(metric, report.Round3(float64(sec)-float64(t0.UnixNano())/1e9)) }
	d, err := b.nd.DataRange(ctx, utilChart(b.step), from-2, 0)
	if err != nil {
		return fmt.Errorf("netdata data: %w", err)
	}
	if sec, ok := firstAbove(d, contract.DimUtilization, scaler.DefaultUpThreshold, from); ok {
		atUnix("scrape_s", sec)
	}
	log, err := b.nd.AlarmLog(ctx, 0)
	if err != nil {
		return fmt.Errorf("netdata alarm log: %w", err)
	}
	if e, ok := firstCritical(log, alarmScaleUp, b.step, from); ok {
		atUnix("alarm_s", e.When)
		r.Put("alarm_value", e.Value)
	}
	if f, err := os.Open(b.pulsedLog); err == nil {
		hook, result, ok := firstHook(f, b.step, alarmScaleUp, t0)
		f.Close()
		if ok {
			at("hook_s", hook)
			r.Labels["hook_result"] = result
		}
	}
	if first.IsZero() {
		return errors.New("no new server took traffic")
	}
	putStages(r)
	return nil
}

// putStages puts the seconds of every stage of r whose both ends were
// seen. A decision of pulsed's periodic evaluation did not wait for the
// alarm and the hook: their stages are left out.
func putStages(r *report.Row) {
	resync := r.Label("trigger") != contract.TriggerAlarm && r.Label("trigger") != ""
	unseen := func(m string) bool { return resync && (m == "alarm_s" || m == "hook_s") }
	for _, s := range asStages {
		from := 0.0
		if s.from != "" {
			from = r.V(s.from)
		}
		if !unseen(s.from) && !unseen(s.to) {
			r.Put("stage_"+s.to, report.Round3(r.V(s.to)-from)) // NaN (an end unseen) is left out
		}
	}
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
	found, best := false, int64(0)
	for _, row := range d.Rows {
		if col < 1 || len(row) <= col {
			continue
		}
		if t := int64(row[0]); t >= from && row[col] > limit && (!found || t < best) {
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

// firstHook returns the time and result of the first webhook request
// pulsed logged (its debug JSON line "alarm") for fn's alarm, CRITICAL,
// after t0.
func firstHook(r io.Reader, fn, alarm string, t0 time.Time) (time.Time, string, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var h struct {
			Time                                 time.Time
			Msg, Function, Alarm, Status, Result string
		}
		if !strings.Contains(sc.Text(), `"msg":"alarm"`) || json.Unmarshal(sc.Bytes(), &h) != nil {
			continue
		}
		if h.Msg == "alarm" && h.Function == fn && h.Alarm == alarm && h.Status == "CRITICAL" && h.Time.After(t0) {
			return h.Time, h.Result, true
		}
	}
	return time.Time{}, "", false
}

// pollTasks polls the service's tasks every asTaskPoll and records, for
// every task not in known, its creation and when it turned running (its
// status timestamp).
func (b *autoscaleBench) pollTasks(ctx context.Context, f filters.Args, known map[string]bool, obs *stepObs) {
	note := func(err error) { obs.mu.Lock(); obs.lastErr = err; obs.mu.Unlock() }
	pollNewTasks(ctx, b.api, f, known, asTaskPoll, note, func(tasks []swarm.Task, _ time.Time) bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for _, t := range tasks {
			if _, ok := obs.created[t.ID]; !ok {
				obs.created[t.ID] = t.CreatedAt
			}
			if _, ok := obs.running[t.ID]; !ok && t.Status.State == swarm.TaskStateRunning {
				obs.running[t.ID] = t.Status.Timestamp
			}
		}
		return false
	})
}

// pollServers reads the step function's slots every asHAProxyPoll and
// records, by address, when a slot pointed at an address not in old first
// took a session past its count in base (slot name → stot before the step).
func (b *autoscaleBench) pollServers(ctx context.Context, base map[string]int64, old map[string]bool, obs *stepObs) {
	every(ctx, asHAProxyPoll, func() {
		slots, err := readSlots(ctx, b.rt, gateway.BackendName(b.step))
		now := time.Now()
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			obs.lastErr = err
		}
		for _, s := range newTraffic(slots, base, old) {
			if _, ok := obs.traffic[s.Addr]; !ok {
				obs.traffic[s.Addr] = now
			}
		}
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

// startStepLoad starts conns connections of the closed-loop client
// (load.go: keep-alive, one request outstanding each, never retrying)
// POSTing body to path at addr. The function it returns stops the load
// (each connection finishes its request under way) and returns the
// requests answered, the failures and their reasons.
func startStepLoad(addr, path, body string, conns int) func() (requests, failed int64, why map[string]int) {
	l := newClosedLoop(time.Now(), body, nil)
	l.set(conns, addr, path, false)
	return func() (int64, int64, map[string]int) {
		recs, fails := l.end()
		why := map[string]int{}
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
