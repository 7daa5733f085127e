package collector

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// FuzzParseCatalog: whatever answers on the catalog URL, parseCatalog
// returns an error or a catalog whose names can be chart IDs and families.
func FuzzParseCatalog(f *testing.F) {
	f.Add(golden(f, "catalog.json"))
	f.Add([]byte(`{"version":"x","functions":[{"name":"a","desired":1,"replicas":[{"task_id":"t","addr":"h:1","state":"running"}]}]}`))
	f.Add([]byte(`{"version":"","functions":null}`))
	f.Add([]byte(`<html></html>`))
	f.Add([]byte(`{"version":"x","functions":[{"name":"Odd_Name"},{"name":"a"},{"name":"a"},{"name":"b","replicas":[{"task_id":"t","addr":"h:1"},{"task_id":"t","addr":"h:2"},{"addr":"h:3"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cat, skipped, err := parseCatalog(body)
		if err != nil {
			return
		}
		for _, s := range skipped {
			if s.entry == "" || s.reason == "" || len(s.entry) > 3*maxLoggedName+40 {
				t.Fatalf("skipped entry %+v", s)
			}
		}
		if cat.Version == "" {
			t.Fatal("accepted a catalog without version")
		}
		names := map[string]bool{}
		for _, fn := range cat.Functions {
			if !validFunctionName(fn.Name) || names[fn.Name] || fn.Desired < 0 {
				t.Fatalf("accepted function %q (desired %d)", fn.Name, fn.Desired)
			}
			names[fn.Name] = true
			tasks := map[string]bool{}
			for _, r := range fn.Replicas {
				if r.TaskID == "" || r.Addr == "" || tasks[r.TaskID] {
					t.Fatalf("accepted replica %+v", r)
				}
				tasks[r.TaskID] = true
			}
		}
		if _, err := json.Marshal(cat); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReadBackends: any page on the HAProxy URL yields an error or stats
// that are valid counts, for names that came after "fn_".
func FuzzReadBackends(f *testing.F) {
	f.Add(golden(f, "haproxy_metrics.txt"))
	f.Add([]byte("haproxy_backend_current_sessions{proxy=\"fn_a\"} 1\nhaproxy_backend_http_requests_total{proxy=\"fn_a\"} -3\n"))
	f.Add([]byte("haproxy_backend_current_sessions{proxy=\"fn_\"} NaN\nhaproxy_backend_current_queue{proxy=\"fn_b\"} +Inf\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		mfs, err := parsePage(page)
		if err != nil {
			return
		}
		bs, err := readBackends(mfs)
		if err != nil {
			return
		}
		for name, b := range bs {
			if name == "" {
				t.Fatal("empty function name")
			}
			for _, v := range []float64{b.sessions, b.queue, b.requests, b.resp5xx} {
				if !validCount(v) || math.IsNaN(v) {
					t.Fatalf("%s: %+v", name, b)
				}
			}
		}
	})
}

// FuzzReadReplica: any page on a replica's address yields an error or
// valid counts, which the aggregator turns into non-negative totals.
func FuzzReadReplica(f *testing.F) {
	f.Add(golden(f, "watchdog_metrics.txt"), golden(f, "watchdog_metrics_2.txt"))
	f.Add([]byte("pulse_function_requests_total{function=\"hello\",code=\"200\"} 1e300\n"), []byte("pulse_function_requests_total{function=\"hello\",code=\"x\"} 1\n"))
	f.Fuzz(func(t *testing.T, page1, page2 []byte) {
		a := newAggregator(nil)
		for i, page := range [][]byte{page1, page2} {
			mfs, err := parsePage(page)
			if err != nil {
				continue
			}
			m, err := readReplica(mfs, "hello")
			if err != nil {
				continue
			}
			for _, v := range append(append([]float64{m.total, m.throttled, m.timedOut, m.sum, m.count, m.inflight}, m.classes[:]...), m.buckets[:]...) {
				if !validCount(v) || math.IsNaN(v) {
					t.Fatalf("invalid value in %+v", m)
				}
			}
			mx := map[string]int64{}
			in := cycleInput{catalog: catalogOf("v", fn("hello", 1, nil, running("r1"))), scraped: map[replicaKey]replicaMetrics{{"hello", "r1"}: m}}
			in.now = time.Unix(1_800_000_000+int64(i), 0)
			a.cycle(in, mx)
			for k, v := range mx {
				if v < 0 {
					t.Fatalf("%s = %d", k, v)
				}
			}
		}
	})
}

// FuzzParseQueues: whatever answers on pulsed's queues URL, parseQueues
// returns an error or queues whose names can be chart IDs and families,
// which the aggregator turns into non-negative chart values, two cycles
// running (totals, rates and the demand of a function scaled on queue).
func FuzzParseQueues(f *testing.F) {
	f.Add([]byte(`{"queues":[{"function":"a","depth":3,"pending":2,"in_flight":1,"oldest_age_seconds":1.5,"enqueued":9,"done":5,"failed":1,"retried":2}]}`),
		[]byte(`{"queues":[{"function":"a","depth":0,"enqueued":2}]}`))
	f.Add([]byte(`{"queues":null}`), []byte(`{"queues":[{"function":"a","depth":18446744073709551615,"enqueued":18446744073709551615,"oldest_age_seconds":1e308}]}`))
	f.Add([]byte(`{"queues":[{"function":"Odd_Name"},{"function":"a"},{"function":"a"}]}`), []byte(`<html></html>`))
	f.Add([]byte(`{"queues":[{"function":"a","oldest_age_seconds":-5}]}`), []byte(`{"version":"x","functions":[]}`))
	f.Fuzz(func(t *testing.T, body1, body2 []byte) {
		a := newAggregator(nil)
		labels := map[string]string{contract.LabelScaleMetric: contract.ScaleMetricQueue, contract.LabelScaleTarget: "0.5"}
		for i, body := range [][]byte{body1, body2} {
			qs, skipped, err := parseQueues(body)
			in := cycleInput{now: time.Unix(1_800_000_000+int64(i), 0), queuesOK: err == nil, queues: qs}
			if err == nil {
				for _, s := range skipped {
					if s.entry == "" || s.reason == "" || len(s.entry) > maxLoggedName+40 {
						t.Fatalf("skipped entry %+v", s)
					}
				}
				for name, q := range qs {
					if !validFunctionName(name) || q.Function != name {
						t.Fatalf("accepted queue %q: %+v", name, q)
					}
					in.catalog.Functions = append(in.catalog.Functions, fn(name, 1, labels, running("r1")))
				}
			}
			mx := map[string]int64{}
			a.cycle(in, mx)
			for k, v := range mx {
				if v < 0 {
					t.Fatalf("%s = %d", k, v)
				}
			}
		}
	})
}
