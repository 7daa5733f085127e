package collector

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// fnWant is one function's expected chart values.
type fnWant struct {
	c2xx, c3xx, c4xx, c5xx, throttled, timedOut int64
	avgUS, p95US                                int64
	inflight                                    float64 // requests: ×inflightDiv in the map
	running, desired, scraped                   int64
	gw                                          *gwWant    // nil: HAProxy did not report the backend
	queue                                       *queueWant // nil: pulsed's queues not read
	util                                        *int64     // nil: not known yet
	ready, target                               int64
	floor                                       int64 // 0: the default, 1
}

type gwWant struct{ sessions, queue, rate, err5xx, throttled int64 }

// queueWant is the queue charts' values: oldestMS ×queueAgeDiv, the
// counters as totals.
type queueWant struct{ depth, pending, inFlight, oldestMS, enqueued, done, failed, retried int64 }

func ptr(v int64) *int64 { return &v }

// wantMap is Collect's whole expected map.
func wantMap(fns map[string]fnWant, listed, scraped, failed int64) map[string]int64 {
	m := map[string]int64{
		collectorKey(dimListed): listed, collectorKey(dimScraped): scraped, collectorKey(dimFailed): failed,
	}
	for fn, w := range fns {
		put := func(suffix, dim string, v int64) { m[dimKey(fn, suffix, dim)] = v }
		put(contract.ChartRequests, contract.Dim2xx, w.c2xx)
		put(contract.ChartRequests, contract.Dim3xx, w.c3xx)
		put(contract.ChartRequests, contract.Dim4xx, w.c4xx)
		put(contract.ChartRequests, contract.Dim5xx, w.c5xx)
		put(contract.ChartErrors, contract.DimThrottled, w.throttled)
		put(contract.ChartErrors, contract.DimTimedOut, w.timedOut)
		put(contract.ChartLatency, contract.DimAvg, w.avgUS)
		put(contract.ChartLatency, contract.DimP95, w.p95US)
		put(contract.ChartInflight, contract.DimInflight, int64(w.inflight*inflightDiv))
		put(contract.ChartReplicas, contract.DimRunning, w.running)
		put(contract.ChartReplicas, contract.DimDesired, w.desired)
		put(contract.ChartReplicas, contract.DimScraped, w.scraped)
		if w.gw != nil {
			put(contract.ChartGatewayDemand, contract.DimSessions, w.gw.sessions)
			put(contract.ChartGatewayDemand, contract.DimQueue, w.gw.queue)
			put(contract.ChartGatewayRequests, contract.DimRate, w.gw.rate)
			put(contract.ChartGatewayRequests, contract.DimGateway5xx, w.gw.err5xx)
			put(contract.ChartGatewayRequests, contract.DimThrottled, w.gw.throttled)
		}
		if q := w.queue; q != nil {
			put(contract.ChartQueue, contract.DimDepth, q.depth)
			put(contract.ChartQueue, contract.DimPending, q.pending)
			put(contract.ChartQueue, contract.DimInFlight, q.inFlight)
			put(contract.ChartQueueAge, contract.DimOldest, q.oldestMS)
			put(contract.ChartAsyncRequests, contract.DimEnqueued, q.enqueued)
			put(contract.ChartAsyncRequests, contract.DimDone, q.done)
			put(contract.ChartAsyncRequests, contract.DimFailed, q.failed)
			put(contract.ChartAsyncRequests, contract.DimRetried, q.retried)
		}
		if w.util != nil {
			put(contract.ChartUtilization, contract.DimUtilization, *w.util)
			// The demand chart holds what the utilisation divides:
			// demand = utilisation × max(ready, 1) × target, both ×100.
			put(contract.ChartDemand, contract.DimDemand, *w.util*max(w.ready, 1)*w.target/100)
		}
		m[varKey(fn, contract.ChartUtilization, contract.VarReplicas)] = w.ready
		m[varKey(fn, contract.ChartUtilization, contract.VarTarget)] = w.target
		floor := w.floor
		if floor == 0 {
			floor = 1
		}
		m[varKey(fn, contract.ChartUtilization, contract.VarFloor)] = floor
	}
	return m
}

// diffMaps describes how got differs from want.
func diffMaps(got, want map[string]int64) string {
	var d string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			d += fmt.Sprintf("  missing %s (want %d)\n", k, want[k])
		} else if g != want[k] {
			d += fmt.Sprintf("  %s = %d, want %d\n", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			d += fmt.Sprintf("  unexpected %s = %d\n", k, got[k])
		}
	}
	return d
}

func fn(name string, desired int, labels map[string]string, rs ...contract.Replica) contract.CatalogFunction {
	return contract.CatalogFunction{Name: name, ServiceID: "svc-" + name, Labels: labels, Desired: desired, Replicas: rs}
}

func running(task string) contract.Replica {
	return contract.Replica{TaskID: task, Addr: "10.0.0.1:" + task, State: "running"}
}

func TestAggregator(t *testing.T) {
	page1, err := readReplica(parseGolden(t, "watchdog_metrics.txt"), "hello")
	if err != nil {
		t.Fatal(err)
	}
	page2, err := readReplica(parseGolden(t, "watchdog_metrics_2.txt"), "hello")
	if err != nil {
		t.Fatal(err)
	}
	restarted := page1
	restarted.start += 100
	busy := func(inflight, total float64) replicaMetrics {
		return replicaMetrics{classes: [6]float64{2: total}, total: total, inflight: inflight, start: 1}
	}
	// timed: busy(inflight, total) with the busy seconds at the watchdog's
	// clock uptime.
	timed := func(inflight, total, busySec, uptime float64) replicaMetrics {
		m := busy(inflight, total)
		m.busy, m.uptime, m.hasBusy = busySec, uptime, true
		return m
	}
	t0 := time.Unix(1_800_000_000, 0)
	draining := running("r3")
	draining.Draining = true
	starting := running("r4")
	starting.State = "starting"
	hello := func(rs ...contract.Replica) contract.Catalog {
		return contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 2, nil, rs...)}}
	}
	rps := map[string]string{contract.LabelScaleMetric: "rps", contract.LabelScaleTarget: "5", contract.LabelScaleMin: "2"}
	queue := map[string]string{contract.LabelScaleMetric: "queue", contract.LabelScaleTarget: "10"}
	queued := func(rs ...contract.Replica) contract.Catalog {
		return contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 1, queue, rs...)}}
	}
	qs := func(s ...contract.QueueStatus) map[string]contract.QueueStatus {
		m := map[string]contract.QueueStatus{}
		for _, q := range s {
			m[q.Function] = q
		}
		return m
	}
	// page2 − page1 on one replica: 10 × 2xx, a 413, 11 durations summing
	// to 0.083925299 s (avg 7629.6 µs); the 95th percentile (rank 10.45)
	// falls in (10 ms, 25 ms] holding the 11th: 10 + 15 × 0.45 ms.
	const deltaAvgUS, deltaP95US = 7630, 16750

	type step struct {
		in      cycleInput
		backend map[string]backendStats // nil: HAProxy unreachable
	}
	for _, tc := range []struct {
		name                   string
		steps                  []step
		want                   map[string]fnWant
		listed, scraped, fails int64
		logs                   int // warnings logged over all steps
	}{
		{
			name: "first cycle sets the baseline",
			steps: []step{{in: cycleInput{catalog: hello(running("r1"), running("r2"), draining),
				scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page1, {"hello", "r2"}: page1}},
				backend: map[string]backendStats{"hello": {sessions: 4, queue: 3, requests: 25, resp5xx: 4}}}},
			// Gateway demand 4 sessions (the 3 queued included) over 2 × 10.
			want: map[string]fnWant{"hello": {running: 2, desired: 2, scraped: 2, ready: 2, target: 10,
				gw: &gwWant{sessions: 4, queue: 3}, util: ptr(2000)}},
			listed: 2, scraped: 2,
		},
		{
			name: "second cycle adds the replicas' deltas",
			steps: []step{
				{in: cycleInput{catalog: hello(running("r1"), running("r2")),
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page1, {"hello", "r2"}: page1}}},
				{in: cycleInput{catalog: hello(running("r1"), running("r2")),
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page2, {"hello", "r2"}: page1}}},
			},
			want: map[string]fnWant{"hello": {c2xx: 10, c4xx: 1, avgUS: deltaAvgUS, p95US: deltaP95US, inflight: 1,
				running: 2, desired: 2, scraped: 2, ready: 2, target: 10, util: ptr(500)}},
			listed: 2, scraped: 2,
		},
		{
			name: "a restarted replica counts from its new values",
			steps: []step{
				{in: cycleInput{catalog: hello(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page2}}},
				{in: cycleInput{catalog: hello(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: restarted}}},
			},
			// The whole of page1: 23 × 2xx, a 429, a 504; latency over its 25
			// (p95: rank 23.75 in (0.5 s, 1 s] holding the 24th).
			want: map[string]fnWant{"hello": {c2xx: 23, c4xx: 1, c5xx: 1, throttled: 1, timedOut: 1, avgUS: 91271, p95US: 875000,
				running: 1, desired: 2, scraped: 1, ready: 1, target: 10, util: ptr(0)}},
			listed: 1, scraped: 1,
		},
		{
			name: "a vanished replica changes no total; a new one counts from zero",
			steps: []step{
				{in: cycleInput{catalog: hello(running("r1"), running("r2")),
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page1, {"hello", "r2"}: page2}}},
				{in: cycleInput{catalog: hello(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page2}}},
				{in: cycleInput{catalog: hello(running("r1"), running("r5")),
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page2, {"hello", "r5"}: busy(2, 7)}}},
			},
			want: map[string]fnWant{"hello": {c2xx: 10 + 7, c4xx: 1, inflight: 1 + 2,
				running: 2, desired: 2, scraped: 2, ready: 2, target: 10, util: ptr(1500)}},
			listed: 2, scraped: 2,
		},
		{
			name: "a failed scrape is counted and resumes from the last answer",
			steps: []step{
				{in: cycleInput{catalog: hello(running("r1"), starting),
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: page1, {"hello", "r4"}: busy(0, 1)}}},
				{in: cycleInput{catalog: hello(running("r1"), starting), scraped: map[replicaKey]replicaMetrics{{"hello", "r4"}: busy(0, 3)}}},
			},
			// r1 failed; r4 answers but is not running yet: scraped, not ready.
			want:   map[string]fnWant{"hello": {c2xx: 2, running: 1, desired: 2, scraped: 1, ready: 0, target: 10, util: ptr(0)}},
			listed: 2, scraped: 1, fails: 1,
		},
		{
			name: "saturated: the gateway sees more than the replicas serve",
			steps: []step{{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
				fn("hello", 1, map[string]string{contract.LabelScaleTarget: "2", contract.LabelScaleMin: "0"}, running("r1"))}},
				scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(2, 50)}},
				backend: map[string]backendStats{"hello": {sessions: 10, queue: 8, requests: 50}}}},
			// 100 × 10 / (1 × 2): 500 %, where the replica alone says 100 %.
			// Min 0 (scale to zero) still has floor 1: the autoscaler's.
			want: map[string]fnWant{"hello": {inflight: 2, running: 1, desired: 1, scraped: 1, ready: 1, target: 2,
				gw: &gwWant{sessions: 10, queue: 8}, util: ptr(50000)}},
			listed: 1, scraped: 1,
		},
		{
			name: "rps: the larger of the replicas' and the gateway's rate",
			steps: []step{
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 2, rps, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(0, 100), {"hello", "r2"}: busy(0, 100)}},
					backend: map[string]backendStats{"hello": {requests: 1000, resp5xx: 10}}},
				{in: cycleInput{now: t0.Add(2 * time.Second), catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 2, rps, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(0, 110), {"hello", "r2"}: busy(0, 110)}},
					backend: map[string]backendStats{"hello": {requests: 1030, resp5xx: 11}}},
			},
			// Replicas 20 / 2 s = 10 rps, gateway 30 / 2 s = 15 rps: 100 × 15 / (2 × 5).
			want: map[string]fnWant{"hello": {c2xx: 20, running: 2, desired: 2, scraped: 2, ready: 2, target: 5, floor: 2,
				gw: &gwWant{rate: 30, err5xx: 1}, util: ptr(15000)}},
			listed: 2, scraped: 2,
		},
		{
			name: "rps: what the rate limit throttled is charted and is not demand",
			steps: []step{
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 2, rps, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(0, 100), {"hello", "r2"}: busy(0, 100)}},
					backend: map[string]backendStats{"hello": {requests: 1000, denied: 500}}},
				{in: cycleInput{now: t0.Add(2 * time.Second), catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 2, rps, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(0, 110), {"hello", "r2"}: busy(0, 110)}},
					backend: map[string]backendStats{"hello": {requests: 1230, denied: 700}}},
			},
			// 230 requests at the gateway in 2 s, 200 of them throttled: 30
			// passed on (15 rps), not 115 rps. Replicas 10 rps: 100 × 15 / (2 × 5).
			want: map[string]fnWant{"hello": {c2xx: 20, running: 2, desired: 2, scraped: 2, ready: 2, target: 5, floor: 2,
				gw: &gwWant{rate: 30, throttled: 200}, util: ptr(15000)}},
			listed: 2, scraped: 2,
		},
		{
			// 10 requests always in flight on 2 replicas of target 2, scraped
			// a few ms apart: the gauges add up to 11 (one request counted on
			// both), the busy seconds to 5 + 5 over the watchdogs' 1 s
			// (their own clocks, not the collector's 1.2 s between cycles).
			name: "busy seconds: the average in flight, not the gauges' sum",
			steps: []step{
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
					fn("hello", 2, map[string]string{contract.LabelScaleTarget: "2"}, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: timed(5, 100, 50, 100), {"hello", "r2"}: timed(5, 100, 60, 200)}}},
				{in: cycleInput{now: t0.Add(1200 * time.Millisecond), catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
					fn("hello", 2, map[string]string{contract.LabelScaleTarget: "2"}, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: timed(6, 150, 55, 101), {"hello", "r2"}: timed(5, 150, 65, 201)}}},
			},
			// 100 × 10 / (2 × 2) = 250 %, where the gauges say 275 %.
			want: map[string]fnWant{"hello": {c2xx: 100, inflight: 10, running: 2, desired: 2, scraped: 2, ready: 2, target: 2,
				util: ptr(25000)}},
			listed: 2, scraped: 2,
		},
		{
			// A watchdog restarted between the scrapes (new start time), up
			// for 0.5 s of the 1 s interval: all of its busy time is in
			// the interval; a new replica up for 2 s, longer than the
			// interval, was not read before: its gauge.
			name: "busy seconds: replicas new in the interval",
			steps: []step{
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
					fn("hello", 1, map[string]string{contract.LabelScaleTarget: "2"}, running("r1"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: timed(5, 100, 50, 100)}}},
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
					fn("hello", 2, map[string]string{contract.LabelScaleTarget: "2"}, running("r1"), running("r2"))}},
					scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: func() replicaMetrics {
						m := timed(3, 10, 1.5, 0.5)
						m.start = 2
						return m
					}(), {"hello", "r2"}: timed(4, 20, 7, 2)}}},
			},
			// r1 1.5 / 1 s + r2's gauge 4: 100 × 5.5 / (2 × 2) = 137.5 %;
			// both replicas' answers are new (30).
			want: map[string]fnWant{"hello": {c2xx: 30, inflight: 5.5, running: 2, desired: 2, scraped: 2, ready: 2, target: 2,
				util: ptr(13750)}},
			listed: 2, scraped: 2,
		},
		{
			name: "rps: unknown on the first cycle",
			steps: []step{{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{fn("hello", 1, rps, running("r1"))}},
				scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(0, 100)}},
				backend: map[string]backendStats{"hello": {requests: 1000}}}},
			want: map[string]fnWant{"hello": {running: 1, desired: 1, scraped: 1, ready: 1, target: 5, floor: 2,
				gw: &gwWant{}}},
			listed: 1, scraped: 1,
		},
		{
			name: "no ready replica: demand is measured against one",
			steps: []step{{in: cycleInput{catalog: hello(running("r1")), scraped: map[replicaKey]replicaMetrics{}},
				backend: map[string]backendStats{"hello": {sessions: 3}}}},
			want: map[string]fnWant{"hello": {running: 1, desired: 2, ready: 0, target: 10,
				gw: &gwWant{sessions: 3}, util: ptr(3000)}},
			listed: 1, fails: 1,
		},
		{
			name: "a HAProxy reload resets its counters: they count from the new values",
			steps: []step{
				{in: cycleInput{catalog: hello()}, backend: map[string]backendStats{"hello": {requests: 100, resp5xx: 5}}},
				{in: cycleInput{catalog: hello()}, backend: map[string]backendStats{"hello": {requests: 140, resp5xx: 6}}},
				{in: cycleInput{catalog: hello()}, backend: map[string]backendStats{"hello": {requests: 4, resp5xx: 1}}},
			},
			want: map[string]fnWant{"hello": {desired: 2, target: 10, gw: &gwWant{rate: 40 + 4, err5xx: 1 + 1}, util: ptr(0)}},
		},
		{
			name: "HAProxy away for a cycle: no gateway values, totals continue",
			steps: []step{
				{in: cycleInput{catalog: hello()}, backend: map[string]backendStats{"hello": {requests: 100}}},
				{in: cycleInput{catalog: hello()}},
				{in: cycleInput{catalog: hello()}},
				{in: cycleInput{catalog: hello()}, backend: map[string]backendStats{"hello": {requests: 130}}},
			},
			want: map[string]fnWant{"hello": {desired: 2, target: 10, gw: &gwWant{rate: 30}, util: ptr(0)}},
		},
		{
			// The gateway's 50 sessions are not the queue's demand.
			name: "queue: demand is the queue's depth",
			steps: []step{
				{in: cycleInput{catalog: queued(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(4, 10)},
					queuesOK: true, queues: qs(contract.QueueStatus{Function: "hello", Depth: 20, Pending: 20, Enqueued: 100, Done: 60, Failed: 2, Retried: 5})}},
				{in: cycleInput{catalog: queued(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(4, 10)},
					queuesOK: true, queues: qs(contract.QueueStatus{Function: "hello", Depth: 30, Pending: 25, InFlight: 5, OldestAge: 12.3456,
						Enqueued: 130, Done: 70, Failed: 3, Retried: 9})},
					backend: map[string]backendStats{"hello": {sessions: 50}}},
			},
			// 100 × 30 / (1 × 10) = 300 %; demand 30.
			want: map[string]fnWant{"hello": {inflight: 4, running: 1, desired: 1, scraped: 1, ready: 1, target: 10,
				gw:    &gwWant{sessions: 50},
				queue: &queueWant{depth: 30, pending: 25, inFlight: 5, oldestMS: 12346, enqueued: 30, done: 10, failed: 1, retried: 4},
				util:  ptr(30000)}},
			listed: 1, scraped: 1,
		},
		{
			name: "queue: no queue data this cycle, demand unknown",
			steps: []step{
				{in: cycleInput{catalog: queued(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(4, 10)},
					queuesOK: true, queues: qs(contract.QueueStatus{Function: "hello", Depth: 30})}},
				{in: cycleInput{catalog: queued(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(4, 10)}},
					backend: map[string]backendStats{"hello": {sessions: 50}}},
			},
			want: map[string]fnWant{"hello": {inflight: 4, running: 1, desired: 1, scraped: 1, ready: 1, target: 10,
				gw: &gwWant{sessions: 50}}},
			listed: 1, scraped: 1,
		},
		{
			name: "queue: a function without a queue entry reads 0",
			steps: []step{{in: cycleInput{catalog: queued(running("r1")), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: busy(0, 10)},
				queuesOK: true, queues: qs(contract.QueueStatus{Function: "other", Depth: 7})}}},
			want: map[string]fnWant{"hello": {running: 1, desired: 1, scraped: 1, ready: 1, target: 10,
				queue: &queueWant{}, util: ptr(0)}},
			listed: 1, scraped: 1,
		},
		{
			// Counters continue over a gap, count from the new values
			// after pulsed restarts, and a queue first seen after the
			// first read counts from zero. An inflight function charts
			// its queue too, and scales on in flight.
			name: "queue counters: gaps, a pulsed restart, a new queue",
			steps: []step{
				{in: cycleInput{catalog: hello(), queuesOK: true}},
				{in: cycleInput{catalog: hello(), queuesOK: true, queues: qs(contract.QueueStatus{Function: "hello", Enqueued: 10, Done: 8})}},
				{in: cycleInput{catalog: hello()}},
				{in: cycleInput{catalog: hello(), queuesOK: true, queues: qs(contract.QueueStatus{Function: "hello", Depth: 1, Pending: 1, Enqueued: 15, Done: 9, Retried: 1})}},
				{in: cycleInput{catalog: hello(), queuesOK: true, queues: qs(contract.QueueStatus{Function: "hello", Depth: 2, InFlight: 2, OldestAge: 0.5, Enqueued: 3, Done: 1, Failed: 1, Retried: 2})}},
			},
			// 10 + 5 + 3 enqueued, 8 + 1 + 1 done, 1 failed, 1 + 2
			// retried: after the restart (enqueued and done went down)
			// all of the new values are new, retried's 2 too.
			want: map[string]fnWant{"hello": {desired: 2, target: 10, util: ptr(0),
				queue: &queueWant{depth: 2, inFlight: 2, oldestMS: 500, enqueued: 18, done: 10, failed: 1, retried: 3}}},
		},
		{
			name: "malformed scale labels: defaults, logged once",
			steps: []step{
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
					fn("hello", 1, map[string]string{contract.LabelScaleTarget: "lots"})}}}},
				{in: cycleInput{catalog: contract.Catalog{Version: "v", Functions: []contract.CatalogFunction{
					fn("hello", 1, map[string]string{contract.LabelScaleTarget: "lots"})}}}},
			},
			want: map[string]fnWant{"hello": {desired: 1, target: 10, util: ptr(0)}},
			logs: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &logRecorder{}
			a := newAggregator(slog.New(rec))
			var got map[string]int64
			for i, s := range tc.steps {
				in := s.in
				if in.now.IsZero() {
					in.now = t0.Add(time.Duration(i) * time.Second)
				}
				in.backends, in.haproxyOK = s.backend, s.backend != nil
				got = map[string]int64{}
				a.cycle(in, got)
			}
			if d := diffMaps(got, wantMap(tc.want, tc.listed, tc.scraped, tc.fails)); d != "" {
				t.Errorf("last cycle's map:\n%s", d)
			}
			if n := len(rec.messages(slog.LevelWarn)); n != tc.logs {
				t.Errorf("%d warnings: %q", n, rec.messages(slog.LevelWarn))
			}
		})
	}
}

func TestLatency(t *testing.T) {
	b := func(counts ...float64) (h [bucketCount]float64) {
		copy(h[:], counts)
		for i := len(counts); i < bucketCount; i++ {
			h[i] = counts[len(counts)-1]
		}
		return h
	}
	for _, tc := range []struct {
		name     string
		hist     [bucketCount]float64
		sum      float64
		avg, p95 float64
	}{
		{"no requests", [bucketCount]float64{}, 0, 0, 0},
		{"all in the first bucket", b(100), 0.01, 0.0001, 0.95 * 0.00025},
		{"spread", b(0, 0, 50, 100), 0.1, 0.001, 0.001 + 0.0015*0.9},
		{"beyond the last bound", func() (h [bucketCount]float64) { h[bucketCount-1] = 4; return h }(), 4000, 1000, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			avg, p95 := latency(tc.hist, tc.sum)
			if diff(avg, tc.avg) > 1e-12 || diff(p95, tc.p95) > 1e-12 {
				t.Errorf("latency = %g, %g; want %g, %g", avg, p95, tc.avg, tc.p95)
			}
		})
	}
}

func diff(a, b float64) float64 {
	if a > b {
		return a - b
	}
	return b - a
}
