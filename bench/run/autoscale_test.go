package main

import (
	"context"
	"encoding/json"
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
	got, ok := firstHook(strings.NewReader(logText), "fn", "pulse_scale_up", t0)
	want := hookLine{Time: t0.Add(1400 * time.Millisecond), Msg: "alarm", Function: "fn", Alarm: "pulse_scale_up", Status: "CRITICAL", When: 3, Result: "stale"}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v %t, want %+v", got, ok, want)
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

func TestStageTimes(t *testing.T) {
	p := ptr
	alarm := stepTrial{ScrapeS: p(0.5), AlarmS: p(1.5), HookS: p(2), UpdatedS: p(2.25), ScaledS: p(2.5), RunningS: p(3.5), TrafficS: p(4), Trigger: "alarm"}
	if got, want := alarm.stageTimes(), []float64{0.5, 1, 0.5, 0.25, 0.25, 1, 0.5}; !reflect.DeepEqual(got, want) {
		t.Errorf("alarm: got %v, want %v", got, want)
	}
	resync := alarm
	resync.Trigger = "resync"
	got := resync.stageTimes()
	for i, v := range got {
		if isNaN := math.IsNaN(v); isNaN != (i == 1 || i == 2 || i == 3) {
			t.Errorf("resync: stage %d (%s) = %v", i, stepStages[i], v)
		}
	}
	missing := stepTrial{TrafficS: p(4)}
	if got := missing.stageTimes(); !math.IsNaN(got[0]) || !math.IsNaN(got[6]) {
		t.Errorf("missing ends: got %v, want NaN", got)
	}
}

func TestSummarizeAutoscaleAndGoals(t *testing.T) {
	p := ptr
	trial := func(step string, total float64, to int, trigger string) stepTrial {
		return stepTrial{Step: step, ScrapeS: p(0.5), AlarmS: p(1), HookS: p(1.2), ScaledS: p(1.5), RunningS: p(total - 0.5), TrafficS: p(total),
			Trigger: trigger, Decisions: []stepDecision{{To: to, Trigger: trigger}}, Requests: 100}
	}
	trials := []stepTrial{
		trial("5×", 3, 5, "alarm"), trial("5×", 3.5, 5, "alarm"), trial("5×", 5, 2, "resync"),
		{Step: "5×", Error: "no new server took traffic", Requests: 50, Failed: 2},
		trial("5×", 2.5, 6, "alarm"),
		trial("1.5×", 4, 2, "alarm"),
	}
	cold := []coldTrial{{LatencyS: 0.8, Status: 200}, {LatencyS: 0.9, Status: 200}, {LatencyS: 30, Status: 503, Error: "503"}}
	s := summarizeAutoscale(asSteps, trials, cold)
	five := s.Steps[0]
	if five.Trials != 5 || five.Failed != 1 || five.MedianS != 3.5 || !math.IsInf(float64(five.P95S), 1) || five.InRange != 3 || five.Want != 5 {
		t.Errorf("5×: %+v", five)
	}
	if !reflect.DeepEqual(five.FirstTo, map[int]int{2: 1, 5: 2, 6: 1}) || !reflect.DeepEqual(five.Triggers, map[string]int{"alarm": 3, "resync": 1}) {
		t.Errorf("5× decisions: %v %v", five.FirstTo, five.Triggers)
	}
	if five.StageN[2] != 3 || five.StageN[0] != 4 || five.Requests != 450 || five.FailedRequests != 2 {
		t.Errorf("5× stages: n %v, requests %d/%d", five.StageN, five.Requests, five.FailedRequests)
	}
	if s.Steps[1].Want != 2 || s.Steps[1].Trials != 1 {
		t.Errorf("1.5×: %+v", s.Steps[1])
	}
	if s.Cold.Trials != 3 || s.Cold.OK != 2 || s.Cold.MedianS != 0.9 {
		t.Errorf("cold: %+v", s.Cold)
	}
	goals := autoscaleGoals(s)
	var got []string
	for _, g := range goals {
		got = append(got, g.Status)
	}
	// median 3.5 ≤ 4; p95 a failed trial; 2 trials outside 5 ± 1; cold
	// median 0.9 ≤ 1; one cold request not 200.
	if want := []string{pass, fail, fail, pass, fail}; !reflect.DeepEqual(got, want) {
		t.Errorf("goals %v, want %v: %+v", got, want, goals)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("the summary must marshal (NaN and Inf as null): %v", err)
	}
	if !strings.Contains(string(b), `"p95_s":null`) {
		t.Errorf("an infinite p95 is not null: %s", b)
	}
	for _, md := range []bool{false, true} {
		out := renderAutoscale(autoscaleReport{Summary: s, reportEnd: reportEnd{Goals: goals}, Steps: trials}, md, "x.json")
		if !strings.Contains(out, "task running → server took traffic") || !strings.Contains(out, "failed") {
			t.Errorf("render (md %t) lacks the stage table:\n%s", md, out)
		}
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
	if req < 10 || failed == 0 || why["503 Service Unavailable"] != failed {
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
