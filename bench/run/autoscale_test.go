package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

func TestHealthWithHook(t *testing.T) {
	got, err := healthWithHook(alarms.Templates(), "/tmp/x/pulse-alarm-hook")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, hookInstalled) {
		t.Errorf("the installed hook is still named:\n%s", got)
	}
	if n := strings.Count(got, "exec: /tmp/x/pulse-alarm-hook\n"); n != 2 {
		t.Errorf("%d exec lines run the hook, want 2 (scale up and down):\n%s", n, got)
	}
	for _, tc := range []struct{ name, in string }{
		{"no exec line", "template: x\n on: y\n"},
		{"another program", "template: x\n exec: /bin/true\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := healthWithHook(tc.in, "/h"); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestFirstAbove(t *testing.T) {
	d := netdatalab.Data{Labels: []string{"time", "utilization"}, Rows: [][]float64{
		{105, 500}, {104, 500}, {103, 0}, {102, 300}, {101, 0},
	}}
	for _, tc := range []struct {
		name  string
		from  int64
		label string
		want  int64
		ok    bool
	}{
		{"before from is ignored", 103, "utilization", 104, true},
		{"oldest above", 100, "utilization", 102, true},
		{"none after", 106, "utilization", 0, false},
		{"no such label", 100, "inflight", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := firstAbove(d, tc.label, 100, tc.from)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %d %t, want %d %t", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFirstCritical(t *testing.T) {
	log := []netdatalab.AlarmLogEntry{
		{UniqueID: 9, Name: "pulse_scale_up", Family: "fn", When: 110, Status: "CRITICAL"},
		{UniqueID: 8, Name: "pulse_scale_up", Family: "fn", When: 108, Status: "CLEAR"},
		{UniqueID: 7, Name: "pulse_scale_up", Family: "other", When: 105, Status: "CRITICAL"},
		{UniqueID: 6, Name: "pulse_scale_down", Family: "fn", When: 105, Status: "CRITICAL"},
		{UniqueID: 5, Name: "pulse_scale_up", Chart: "pulse.fn_fn_utilization", When: 107, Status: "CRITICAL"},
		{UniqueID: 4, Name: "pulse_scale_up", Family: "fn", When: 100, Status: "CRITICAL"},
	}
	got, ok := firstCritical(log, "pulse_scale_up", "fn", 101)
	if !ok || got.UniqueID != 5 {
		t.Errorf("got %+v %t, want entry 5", got, ok)
	}
	if _, ok := firstCritical(log, "pulse_scale_up", "fn", 111); ok {
		t.Error("found one after the last")
	}
}

func TestFirstHook(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	logText := strings.Join([]string{
		`{"time":"2026-11-25T11:59:59.5Z","level":"DEBUG","msg":"alarm","function":"fn","alarm":"pulse_scale_up","status":"CRITICAL","when":1,"result":"accepted"}`,
		`not json "msg":"alarm"`,
		`{"time":"2026-11-25T12:00:01.1Z","level":"DEBUG","msg":"alarm","function":"other","alarm":"pulse_scale_up","status":"CRITICAL","when":2,"result":"accepted"}`,
		`{"time":"2026-11-25T12:00:01.2Z","level":"DEBUG","msg":"alarm","function":"fn","alarm":"pulse_scale_down","status":"WARNING","when":2,"result":"accepted"}`,
		`{"time":"2026-11-25T12:00:01.3Z","level":"INFO","msg":"scaled","function":"fn"}`,
		`{"time":"2026-11-25T12:00:01.4Z","level":"DEBUG","msg":"alarm","function":"fn","alarm":"pulse_scale_up","status":"CRITICAL","when":3,"result":"stale"}`,
		`{"time":"2026-11-25T12:00:02Z","level":"DEBUG","msg":"alarm","function":"fn","alarm":"pulse_scale_up","status":"CRITICAL","when":4,"result":"accepted"}`,
	}, "\n")
	at, result, ok := firstHook(strings.NewReader(logText), "fn", "pulse_scale_up", t0)
	if want := t0.Add(1400 * time.Millisecond); !ok || !at.Equal(want) || result != "stale" {
		t.Errorf("got %v %q %t, want %v \"stale\"", at, result, ok, want)
	}
	if _, _, ok := firstHook(strings.NewReader(logText), "fn", "pulse_scale_up", t0.Add(2*time.Second)); ok {
		t.Error("found a hook after the last")
	}
}

func TestDecisionsSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	evs := contract.ScaleEvents{Events: []contract.ScaleEvent{
		{Time: t0.Add(3 * time.Second), Function: "fn", From: 2, To: 5},
		{Time: t0.Add(-time.Second), Function: "fn", From: 5, To: 1},
		{Time: t0.Add(time.Second), Function: "fn", From: 1, To: 2},
		{Time: t0.Add(2 * time.Second), Function: "other", From: 1, To: 2},
	}}
	got := decisionsSince(evs, "fn", t0)
	if len(got) != 2 || got[0].To != 2 || got[1].To != 5 {
		t.Errorf("got %+v, want 1→2 then 2→5", got)
	}
}

func TestPutStages(t *testing.T) {
	times := map[string]float64{"scrape_s": 0.5, "alarm_s": 1.5, "hook_s": 2, "updated_s": 2.25, "scaled_s": 2.5, "task_running_s": 3.5, "traffic_s": 4}
	stages := func(r *report.Row) []float64 {
		putStages(r)
		var out []float64
		for _, s := range asStages {
			out = append(out, r.V("stage_"+s.to))
		}
		return out
	}
	alarm := report.NewRow("step").PutAll(times)
	alarm.Labels["trigger"] = "alarm"
	if got, want := stages(alarm), []float64{0.5, 1, 0.5, 0.25, 0.25, 1, 0.5}; !reflect.DeepEqual(got, want) {
		t.Errorf("alarm: got %v, want %v", got, want)
	}
	resync := report.NewRow("step").PutAll(times)
	resync.Labels["trigger"] = "resync"
	for i, v := range stages(resync) {
		if isNaN := math.IsNaN(v); isNaN != (i == 1 || i == 2 || i == 3) {
			t.Errorf("resync: stage %d (%s) = %v", i, asStages[i].name, v)
		}
	}
	if got := stages(report.NewRow("step").Put("traffic_s", 4)); !math.IsNaN(got[0]) || !math.IsNaN(got[6]) {
		t.Errorf("missing ends: got %v, want NaN", got)
	}
}

// testAutoscaleReport is five 5× trials (one failed, one first decision
// out of 5 ± 1, one of the periodic evaluation, one with a foreign
// change), one 1.5× trial and three cold starts (one answered 503).
func testAutoscaleReport() *report.Report {
	rep := &report.Report{Suite: suiteAutoscale, Started: "2026-01-02T03:04:05Z", Setup: "2 CPUs"}
	trial := func(step string, n int, total float64, to int, trigger string) *report.Row {
		r := report.NewRow("step", "step", step, "conns", 10, "trial", n).PutAll(map[string]float64{"scrape_s": 0.5, "alarm_s": 1, "hook_s": 1.2,
			"scaled_s": 1.5, "task_running_s": total - 0.5, "traffic_s": total, "first_replicas": float64(to), "decisions": 1, "requests": 100, "load1": 3})
		r.Labels["trigger"], r.Labels["decisions"] = trigger, fmt.Sprintf("1→%d %s @1.50", to, trigger)
		putStages(r)
		return r
	}
	failed := report.NewRow("step", "step", "5×", "conns", 10, "trial", 4).PutAll(map[string]float64{"requests": 50, "failed_requests": 2, "load1": 3})
	failed.Fail(errString("no new server took traffic"))
	foreign := trial("5×", 5, 2.5, 6, "alarm").PutAll(map[string]float64{"foreign_change": 1, "service_replicas": 7, "decisions": 2})
	for _, r := range []*report.Row{trial("5×", 1, 3, 5, "alarm"), trial("5×", 2, 3.5, 5, "alarm"), trial("5×", 3, 5, 2, "resync"), failed, foreign,
		trial("1.5×", 1, 4, 2, "alarm")} {
		rep.Add(r)
	}
	for i, lat := range []float64{0.8, 0.9, 30} {
		r := report.NewRow("cold", "from", "zero", "trial", i+1).Put("latency_s", lat).Put("status", 200).Put("load1", 3)
		if lat == 30 {
			r.Put("status", 503).Fail(errString("status 503, want 200"))
		}
		rep.Add(r)
	}
	return rep
}

func TestAutoscaleSummary(t *testing.T) {
	rep := testAutoscaleReport()
	autoscaleSummary(rep, 2)
	five, _ := report.Find(rep.Summary, "step", "5×")
	if got := totals(five, "traffic_s"); len(got) != 5 || !math.IsInf(got[3], 1) || report.Median(got) != 3.5 {
		t.Errorf("5× totals %v: want 5, the failed one +Inf, median 3.5", got)
	}
	if n := len(five.Values("stage_hook_s")); n != 3 {
		t.Errorf("5× alarm → hook over %d trials, want 3 (not the resync one nor the failed one)", n)
	}
	want := map[string]struct {
		status string
		value  float64
		note   string
	}{
		"5× step → first extra replica serving, median":          {report.Pass, 3.5, "5 trials, 1 without an extra replica serving"},
		"5× step → first extra replica serving, p95":             {report.Fail, 0, "5 trials, 1 without an extra replica serving"},
		"5× step: first decision 5 ± 1 replicas, trials outside": {report.Fail, 2, "first decisions: 2 ×1, 5 ×2, 6 ×1"},
		"cold start from zero: first request, median":            {report.Pass, 0.9, "3 trials"},
		"cold start: requests not answered 200":                  {report.Fail, 1, ""},
	}
	for _, g := range rep.Goals {
		w, ok := want[g.Name]
		delete(want, g.Name)
		if !ok || g.Status != w.status || g.Value != w.value || g.Note != w.note {
			t.Errorf("goal %q: %s %v %q, want %+v", g.Name, g.Status, g.Value, g.Note, w)
		}
	}
	for name := range want {
		t.Errorf("no goal %q", name)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, n := range []string{"5×: 2 of 450 requests of the load failed", "5×: in 1 trial(s) pulsed's periodic evaluation",
		"5× trial 5: the service had 7 replicas", "the host was busy: its 1-minute load average at the trials' starts was 3.0",
		"1 step trial(s) took more than one decision", "5× trial 4 failed: no new server took traffic", "cold start trial 3 failed: status 503"} {
		if !strings.Contains(notes, n) {
			t.Errorf("no note %q in:\n%s", n, notes)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("the report must marshal (no NaN or Inf): %v", err)
	}
}

func TestAutoscaleGoalsSkipped(t *testing.T) {
	rep := &report.Report{}
	rep.Add(report.NewRow("cold", "from", "zero", "trial", 1).Put("latency_s", 0.5).Put("status", 200))
	autoscaleSummary(rep, 2)
	var got []string
	for _, g := range rep.Goals {
		got = append(got, g.Status)
	}
	if want := []string{report.Skip, report.Skip, report.Skip, report.Pass, report.Pass}; !reflect.DeepEqual(got, want) {
		t.Errorf("goals %v, want the step's skipped, the cold start's passed", got)
	}
}

func TestStepLoadAndColdRequest(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if n.Add(1)%5 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	end := startStepLoad(addr, "/function/x", "hello", 1)
	time.Sleep(100 * time.Millisecond)
	req, failed, why := end()
	if req < 10 || failed == 0 || int64(why["503 Service Unavailable"]) != failed {
		t.Errorf("requests %d, failed %d (%v): want many, a fifth of them 503", req, failed, why)
	}
	n.Store(0)
	if st, err := coldRequest(context.Background(), addr, "/function/x", "hi"); st != 200 || err != nil {
		t.Errorf("cold request: %d %v", st, err)
	}
	n.Store(4)
	if st, err := coldRequest(context.Background(), addr, "/function/x", "hi"); st != 503 || err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("cold request answered 503: %d %v, want 503 and an error", st, err)
	}
}
