package collector

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/netdata/go.d.plugin/pkg/prometheus"

	"github.com/pulsefaas/pulse/contract"
)

// replicaMetrics is what the collector reads from one watchdog's /_/metrics
// page. Counters are as the page has them (totals since the watchdog
// started).
type replicaMetrics struct {
	classes   [6]float64 // requests by status class: [2] = 2xx … [5] = 5xx ([0], [1]: other)
	total     float64    // every request answered
	throttled float64    // 429
	timedOut  float64    // 504
	// buckets[i] is the cumulative count of requests that took at most
	// contract.DurationBuckets[i]; buckets[len] is +Inf.
	buckets  [bucketCount]float64
	sum      float64 // seconds
	count    float64
	inflight float64
	start    float64 // the watchdog's start time, Unix seconds
	// busy and uptime (contract.MetricBusy, MetricUptime), read together
	// by the watchdog: Δbusy / Δuptime is the average in flight between
	// two scrapes. hasBusy is false for a watchdog without them (older
	// than the counter): its in-flight gauge is used instead.
	busy, uptime float64
	hasBusy      bool
}

const bucketCount = 21 // len(contract.DurationBuckets) + 1 (+Inf)

// bucketIndex maps a histogram bucket's upper bound to its index.
var bucketIndex = func() map[float64]int {
	if len(contract.DurationBuckets)+1 != bucketCount {
		panic("collector: bucketCount out of step with contract.DurationBuckets")
	}
	m := make(map[float64]int, bucketCount)
	for i, b := range contract.DurationBuckets {
		m[b] = i
	}
	m[math.Inf(1)] = bucketCount - 1
	return m
}()

// errNotWatchdog reports a page without the watchdog's request counter for
// the expected function: something else answers on the replica's address
// (a host port reused by another function's replica, say).
var errNotWatchdog = errors.New("no " + contract.MetricRequests + " series for the function")

// readReplica extracts a function's series from a parsed watchdog page.
// Series labelled with another function are ignored.
func readReplica(mfs prometheus.MetricFamilies, function string) (replicaMetrics, error) {
	var r replicaMetrics
	mine := func(m prometheus.Metric) bool {
		return m.Labels().Get(contract.MetricLabelFunction) == function
	}
	reqs := mfs.GetCounter(contract.MetricRequests)
	if reqs == nil {
		return r, errNotWatchdog
	}
	found := false
	for _, m := range reqs.Metrics() {
		if !mine(m) {
			continue
		}
		found = true
		v := m.Counter().Value()
		if !validCount(v) {
			return r, fmt.Errorf("%s: value %g", contract.MetricRequests, v)
		}
		code, err := strconv.Atoi(m.Labels().Get(contract.MetricLabelCode))
		if err != nil || code < 0 || code > 999 {
			continue // not a status code: counted in no class
		}
		r.total += v
		if c := code / 100; c >= 2 && c <= 5 {
			r.classes[c] += v
		}
		switch code {
		case 429:
			r.throttled += v
		case 504:
			r.timedOut += v
		}
	}
	if !found {
		return r, errNotWatchdog
	}
	if h := mfs.GetHistogram(contract.MetricDuration); h != nil {
		for _, m := range h.Metrics() {
			if !mine(m) {
				continue
			}
			hist := m.Histogram()
			for _, b := range hist.Buckets() {
				i, ok := bucketIndex[b.UpperBound()]
				if ok && validCount(b.CumulativeCount()) {
					r.buckets[i] = b.CumulativeCount()
				}
			}
			if validCount(hist.Sum()) && validCount(hist.Count()) {
				r.sum, r.count = hist.Sum(), hist.Count()
			}
		}
	}
	if g := mfs.GetGauge(contract.MetricInflight); g != nil {
		for _, m := range g.Metrics() {
			if mine(m) && validCount(m.Gauge().Value()) {
				r.inflight = m.Gauge().Value()
			}
		}
	}
	var busy, uptime float64
	var haveBusy, haveUptime bool
	if c := mfs.GetCounter(contract.MetricBusy); c != nil {
		for _, m := range c.Metrics() {
			if v := m.Counter().Value(); mine(m) && validCount(v) {
				busy, haveBusy = v, true
			}
		}
	}
	if g := mfs.GetGauge(contract.MetricUptime); g != nil {
		for _, m := range g.Metrics() {
			if v := m.Gauge().Value(); mine(m) && validCount(v) {
				uptime, haveUptime = v, true
			}
		}
	}
	if haveBusy && haveUptime {
		r.busy, r.uptime, r.hasBusy = busy, uptime, true
	}
	if g := mfs.GetGauge(contract.MetricStartTime); g != nil {
		for _, m := range g.Metrics() {
			if v := m.Gauge().Value(); mine(m) && !math.IsNaN(v) && !math.IsInf(v, 0) {
				r.start = v
			}
		}
	}
	return r, nil
}

// validCount reports whether v can be a count: finite, not negative.
func validCount(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }

// backendStats is one HAProxy backend's line on the exporter page.
type backendStats struct {
	sessions float64 // current sessions: the queued ones included (measured on 2.6)
	queue    float64 // current queue
	requests float64 // HTTP requests, total (the denied ones included)
	resp5xx  float64 // 5xx responses, total
	denied   float64 // requests denied by the backend's rules (the rate limit's 429), total
}

// HAProxy exporter metric names and the label holding the backend's name.
const (
	haproxySessions  = "haproxy_backend_current_sessions"
	haproxyQueue     = "haproxy_backend_current_queue"
	haproxyRequests  = "haproxy_backend_http_requests_total"
	haproxyResponses = "haproxy_backend_http_responses_total"
	haproxyDenied    = "haproxy_backend_requests_denied_total"
	haproxyProxy     = "proxy"
	haproxyCode      = "code"
	// backendPrefix is the prefix of every function's backend name
	// (gateway.BackendName, which the collector does not import).
	backendPrefix = "fn_"
)

// errNotHAProxy reports a page without HAProxy's backend metrics.
var errNotHAProxy = errors.New("no " + haproxySessions + " series: not HAProxy's exporter page (scope backend)")

// readBackends extracts every function backend's stats from HAProxy's
// exporter page, by function name. Other proxies are ignored.
func readBackends(mfs prometheus.MetricFamilies) (map[string]backendStats, error) {
	sess := mfs.Get(haproxySessions)
	if sess == nil {
		return nil, errNotHAProxy
	}
	out := map[string]backendStats{}
	each := func(name string, f func(b *backendStats, m prometheus.Metric, v float64)) {
		mf := mfs.Get(name)
		if mf == nil {
			return
		}
		for _, m := range mf.Metrics() {
			fn, ok := strings.CutPrefix(m.Labels().Get(haproxyProxy), backendPrefix)
			if !ok || fn == "" {
				continue
			}
			v, ok := metricValue(m)
			if !ok || !validCount(v) {
				continue
			}
			b := out[fn]
			f(&b, m, v)
			out[fn] = b
		}
	}
	each(haproxySessions, func(b *backendStats, _ prometheus.Metric, v float64) { b.sessions = v })
	each(haproxyQueue, func(b *backendStats, _ prometheus.Metric, v float64) { b.queue = v })
	each(haproxyRequests, func(b *backendStats, _ prometheus.Metric, v float64) { b.requests = v })
	each(haproxyDenied, func(b *backendStats, _ prometheus.Metric, v float64) { b.denied = v })
	each(haproxyResponses, func(b *backendStats, m prometheus.Metric, v float64) {
		if m.Labels().Get(haproxyCode) == "5xx" {
			b.resp5xx = v
		}
	})
	return out, nil
}

// metricValue is a gauge's, counter's or untyped series' value.
func metricValue(m prometheus.Metric) (float64, bool) {
	switch {
	case m.Gauge() != nil:
		return m.Gauge().Value(), true
	case m.Counter() != nil:
		return m.Counter().Value(), true
	case m.Untyped() != nil:
		return m.Untyped().Value(), true
	}
	return 0, false
}
