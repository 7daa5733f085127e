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
	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
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

// testAutoscaleReport is five 5× trials (one failed, one first decision
// out of 5 ± 1, one of the periodic evaluation, one with a foreign
// change) and three cold starts (one answered 503).
func testAutoscaleReport() *report.Report {
	rep := &report.Report{Suite: suiteAutoscale, Started: "2026-01-02T03:04:05Z", Setup: "2 CPUs"}
	trial := func(n int, total float64, to int, trigger string) *report.Row {
		r := report.NewRow("step", "step", "5×", "conns", 10, "trial", n).PutAll(map[string]float64{"decided_s": 1.5, "traffic_s": total,
			"first_replicas": float64(to), "requests": 100, "failed_requests": 0, "load1": 3})
		r.Labels["trigger"] = trigger
		return r
	}
	failed := report.NewRow("step", "step", "5×", "conns", 10, "trial", 4).PutAll(map[string]float64{"requests": 50, "failed_requests": 2, "load1": 3})
	failed.Fail(errString("no new server took traffic"))
	foreign := trial(5, 2.5, 6, "alarm").PutAll(map[string]float64{"foreign_change": 1, "service_replicas": 7})
	for _, r := range []*report.Row{trial(1, 3, 5, "alarm"), trial(2, 3.5, 5, "alarm"), trial(3, 5, 2, "resync"), failed, foreign} {
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
	want := map[string]struct {
		status string
		value  float64
		note   string
	}{
		"5× step → first extra replica serving, median":          {report.Pass, 3.5, "5 trials, 1 without an extra replica serving"},
		"5× step → first extra replica serving, p95":             {report.Fail, 0, "5 trials, 1 without an extra replica serving"},
		"5× step: first decision 5 ± 1 replicas, trials outside": {report.Fail, 2, "first decisions: 5, 5, 2, 6"},
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
	for _, n := range []string{"5× trial 4: 2 of 50 requests of the load failed", "5× trial 3: pulsed's periodic evaluation",
		"5× trial 5: the service had 7 replicas", "the host was busy: its 1-minute load average at the trials' starts was 3.0",
		"5× trial 4 failed: no new server took traffic", "cold start trial 3 failed: status 503"} {
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

func TestColdRequest(t *testing.T) {
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
	if st, err := coldRequest(context.Background(), addr, "/function/x", "hi"); st != 200 || err != nil {
		t.Errorf("cold request: %d %v", st, err)
	}
	n.Store(4)
	if st, err := coldRequest(context.Background(), addr, "/function/x", "hi"); st != 503 || err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("cold request answered 503: %d %v, want 503 and an error", st, err)
	}
}
