package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// queueScale is the policy of the queue-scaled function: 10 queued requests
// per replica, 1 to 4 replicas; a burst of 300 asks for 30, so the scaler
// goes to max.
var queueScale = function.Scale{Metric: contract.ScaleMetricQueue, Target: 10, Min: 1, Max: 4}

// queueSample is one second of the timeline: pulsed's queue and the
// catalog's view of the service.
type queueSample struct {
	at               time.Duration
	q                contract.QueueStatus
	desired, running int
}

func (s queueSample) String() string {
	return fmt.Sprintf("t+%4.1fs depth %3d (pending %3d, in flight %2d) done %3d failed %d | replicas desired %d running %d",
		s.at.Seconds(), s.q.Depth, s.q.Pending, s.q.InFlight, s.q.Done, s.q.Failed, s.desired, s.running)
}

// TestAsyncScalesOnQueueDepth on the real loop: a burst of 300 async
// requests to a 100 ms function scaled on its queue (target 10, 1–4
// replicas, 2 dispatches per replica) deepens the queue; the collector's
// demand (the depth) raises its utilisation, Netdata's alarm and pulsed's
// scaler add replicas while the queue is deep, and the queue drains with
// every request done.
func TestAsyncScalesOnQueueDepth(t *testing.T) {
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen, cfg.ColdStartListen = freePort(t), freePort(t), freePort(t), freePort(t)
	// The management token reads the requests' states (GET /v1/async/ID).
	token := e.tag + "-api-token-0123456789"
	if err := os.WriteFile(cfg.APITokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := startAutoLab(t, e, cfg)
	fn := "as-queue-" + e.tag
	policy := contract.AsyncPolicy{Retries: 3, MaxAge: 10 * time.Minute, Concurrency: 2}
	e.deployFunc(fn, "test", deployment{fn: l.sleepy, scale: queueScale,
		labels: map[string]string{"pulse.test": e.tag, contract.LabelAsync: policy.String()}})
	waitRoute(t, cfg.GatewayListen, "/function/"+fn)
	l.waitCharts(fn)

	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	sample := func(start time.Time) queueSample {
		t.Helper()
		s := queueSample{at: time.Since(start)}
		for _, q := range getQueues(t, api, cfg.APIListen).Queues {
			if q.Function == fn {
				s.q = q
			}
		}
		resp, err := api.Get("http://" + cfg.APIListen + contract.CatalogPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c contract.Catalog
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			t.Fatalf("GET %s: %v", contract.CatalogPath, err)
		}
		for _, f := range c.Functions {
			if f.Name != fn {
				continue
			}
			s.desired = f.Desired
			for _, r := range f.Replicas {
				if !r.Draining {
					s.running++
				}
			}
		}
		return s
	}

	// The burst: 300 requests from 10 senders, each on its own connection,
	// never retried: every one must be accepted.
	const total, senders = 300, 10
	start := time.Now()
	var mu sync.Mutex
	var ids, refused []string
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for n := i; n < total; n += senders {
				code, id, body, err := rawAsync(cfg.GatewayListen, fn, "", fmt.Sprintf("request %d", n))
				mu.Lock()
				if err != nil || code != http.StatusAccepted || id == "" {
					refused = append(refused, fmt.Sprintf("request %d: %d %q %v", n, code, body, err))
				} else {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("burst: %d accepted in %.1fs", len(ids), time.Since(start).Seconds())
	if len(refused) > 0 {
		t.Fatalf("%d of %d async requests not accepted, e.g. %v", len(refused), total, refused[:min(5, len(refused))])
	}

	// The timeline, every second, until the queue is empty with every
	// request ended.
	var timeline []queueSample
	peakDeep := 0 // most running replicas seen while the queue was deep
	var peakInFlight uint64
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s := sample(start)
		timeline = append(timeline, s)
		t.Log(s)
		if float64(s.q.Depth) >= queueScale.Target {
			peakDeep = max(peakDeep, s.running)
		}
		peakInFlight = max(peakInFlight, s.q.InFlight)
		if s.q.Depth == 0 && s.q.Done+s.q.Failed >= total {
			break
		}
		if time.Now().After(deadline) {
			l.logSeries(fn, 60)
			t.Fatalf("the queue did not drain within 3 min: %s", s)
		}
		time.Sleep(time.Second)
	}
	drained := timeline[len(timeline)-1]
	t.Logf("drained %.1fs after the burst began; peak running replicas while the queue held ≥ %v: %d",
		drained.at.Seconds(), queueScale.Target, peakDeep)
	l.logSeries(fn, int64(drained.at.Seconds())+5)
	if d, err := l.nd.DataRange(t.Context(), contract.Chart(fn, contract.ChartQueue), -int64(drained.at.Seconds())-5, 0); err == nil {
		t.Logf("%s %s, newest first: %v", contract.ChartQueue, contract.DimDepth, d.Column(contract.DimDepth))
	}

	if peakDeep < 2 {
		t.Errorf("running replicas while the queue was deep: at most %d, want more than 1", peakDeep)
	}
	// The dispatcher followed the replicas: more than one replica's
	// dispatches at once, never more than max replicas' worth.
	if c := uint64(policy.Concurrency); peakInFlight <= c || peakInFlight > c*uint64(queueScale.Max) {
		t.Errorf("peak dispatches in flight %d; want more than %d (one replica's) and at most %d", peakInFlight, c, c*uint64(queueScale.Max))
	}
	if drained.q.Done != total || drained.q.Failed != 0 || drained.q.Enqueued != total {
		t.Errorf("queue counters %+v; want enqueued = done = %d, failed 0", drained.q, total)
	}
	// Every request, by its id: done with the function's 200.
	notDone := 0
	for _, id := range ids {
		st, code := getAsync(api, cfg.APIListen, token, id)
		if code != http.StatusOK || st.State != contract.AsyncDone || st.Status != http.StatusOK {
			if notDone++; notDone <= 5 {
				t.Errorf("request %s: %d %+v; want done 200", id, code, st)
			}
		}
	}
	if notDone > 0 {
		t.Errorf("%d of %d requests not done 200", notDone, total)
	}

	// The scaler's own account: a scale-up from 1, within the policy.
	evs := l.events(fn)
	for _, ev := range evs {
		t.Logf("scale event t+%.1fs %d → %d (%s; %s)", ev.Time.Sub(start).Seconds(), ev.From, ev.To, ev.Trigger, ev.Reason)
	}
	if ups(evs) == 0 {
		t.Fatalf("no scale-up among the scaler's events %+v", evs)
	}
	if first := evs[0]; first.From != 1 || first.To <= 1 || first.To > queueScale.Max {
		t.Errorf("first decision %d → %d; want 1 → 2..%d", first.From, first.To, queueScale.Max)
	}
	// Netdata's scale-up alarm on the queue's utilisation reached pulsed
	// through the hook (the first decision may come from it or from the
	// periodic evaluation, whichever ran first).
	l.waitFor("a scale-up alarm from Netdata through the hook", 20*time.Second, func() bool {
		n := 0.0
		for _, r := range []string{"accepted", "duplicate", "reordered", "stale"} {
			n += l.metric(`pulsed_scaler_alarms_total{result="` + r + `"}`)
		}
		return n > 0
	})
	for _, ev := range evs {
		if ev.To > queueScale.Max {
			t.Errorf("decision %d → %d beyond max %d", ev.From, ev.To, queueScale.Max)
		}
	}
}
