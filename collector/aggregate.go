package collector

import (
	"log/slog"
	"math"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// replicaKey names a replica: its function and task.
type replicaKey struct{ function, task string }

// cycleInput is one collection cycle's observations.
type cycleInput struct {
	now     time.Time
	catalog contract.Catalog
	// scraped holds the replicas that answered; a listed replica missing
	// here failed.
	scraped map[replicaKey]replicaMetrics
	// backends is HAProxy's view by function; haproxyOK says whether the
	// page was read this cycle.
	backends  map[string]backendStats
	haproxyOK bool
	// queues is pulsed's async queues by function; queuesOK says whether
	// they were read this cycle (false too when pulsed serves none).
	queues   map[string]contract.QueueStatus
	queuesOK bool
}

// Indexes of a function's monotonic totals.
const (
	acc2xx = iota // acc2xx + k is class (2+k)xx, k < 4
	acc3xx
	acc4xx
	acc5xx
	accThrottled
	accTimedOut
	accGatewayRequests
	accGateway5xx
	accGatewayThrottled
	accEnqueued // pulsed's async counters
	accDone
	accFailed
	accRetried
	accCount
)

// functionState is what the collector remembers about a function between
// cycles. Its totals only ever grow: a replica restarting (counters reset)
// or vanishing changes what is added, never what was added, so Netdata's
// incremental dimensions over them never see a negative rate.
type functionState struct {
	acc       [accCount]int64
	gwPrev    backendStats
	gwHave    bool
	qPrev     [4]uint64 // last queue counters read: enqueued, done, failed, retried (kept while absent)
	qHave     bool
	policyErr string // the scale-label problem last logged
}

// aggregator turns cycles into Collect's map. It is pure apart from its
// memory and the logger: no I/O.
type aggregator struct {
	log       *slog.Logger
	replicas  map[replicaKey]replicaMetrics // last answer of every listed replica
	functions map[string]*functionState     // kept after a function goes: a redeploy continues its totals
	last      time.Time                     // previous cycle
	primed    bool                          // a cycle has run: replicas seen later count from zero
	gwPrimed  bool                          // HAProxy was read once: backends seen later count from zero
	qPrimed   bool                          // the queues were read once: queues seen later count from zero
}

func newAggregator(log *slog.Logger) *aggregator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &aggregator{log: log, replicas: map[replicaKey]replicaMetrics{}, functions: map[string]*functionState{}}
}

// cycleStats is the collector's own chart's values.
type cycleStats struct{ listed, scraped, failed int }

// cycle adds one cycle's observations and writes every function's values
// into mx.
func (a *aggregator) cycle(in cycleInput, mx map[string]int64) cycleStats {
	var elapsed float64 // seconds since the previous cycle; 0 on the first
	if !a.last.IsZero() && in.now.After(a.last) {
		elapsed = in.now.Sub(a.last).Seconds()
	}
	var st cycleStats
	listed := make(map[replicaKey]bool)
	for _, f := range in.catalog.Functions {
		fs := a.functions[f.Name]
		if fs == nil {
			fs = &functionState{}
			a.functions[f.Name] = fs
		}
		var (
			running, scraped, ready int
			inflight, requests      float64 // requests: answered this interval, by replicas seen before
			hist                    [bucketCount]float64
			sum                     float64
		)
		for _, r := range f.Replicas {
			key := replicaKey{f.Name, r.TaskID}
			listed[key] = true
			if r.Draining {
				continue
			}
			st.listed++
			isRunning := r.State == "running"
			if isRunning {
				running++
			}
			m, ok := in.scraped[key]
			if !ok {
				st.failed++
				continue
			}
			scraped++
			if isRunning {
				ready++
			}
			prev, had := a.replicas[key]
			a.replicas[key] = m
			inflight += averageInflight(prev, had, m, elapsed)
			var d replicaMetrics
			switch {
			case had:
				d = replicaDelta(prev, m)
			case a.primed:
				d = m // a new replica: everything it answered is new
			default:
				continue // the first cycle only sets the baseline
			}
			for c := 2; c <= 5; c++ {
				fs.acc[acc2xx+c-2] += roundCount(d.classes[c])
			}
			fs.acc[accThrottled] += roundCount(d.throttled)
			fs.acc[accTimedOut] += roundCount(d.timedOut)
			requests += d.total
			for i := range hist {
				hist[i] += d.buckets[i]
			}
			sum += d.sum
		}
		st.scraped += scraped

		// HAProxy's view.
		var gwDemand, gwRate float64
		gwRateKnown := false
		b, gwOK := in.backends[f.Name]
		gwOK = gwOK && in.haproxyOK
		if gwOK {
			var d backendStats
			switch {
			case fs.gwHave:
				d = backendStats{requests: counterDelta(fs.gwPrev.requests, b.requests), resp5xx: counterDelta(fs.gwPrev.resp5xx, b.resp5xx),
					denied: counterDelta(fs.gwPrev.denied, b.denied)}
				// What the rate limit denied never reached a replica: it is
				// charted as throttled and is not demand, so a function is
				// never scaled up by its own limit.
				d.requests = math.Max(0, d.requests-d.denied)
				if elapsed > 0 {
					gwRate, gwRateKnown = d.requests/elapsed, true
				}
			case a.gwPrimed:
				d = b
				d.requests = math.Max(0, d.requests-d.denied)
			}
			fs.acc[accGatewayRequests] += roundCount(d.requests)
			fs.acc[accGateway5xx] += roundCount(d.resp5xx)
			fs.acc[accGatewayThrottled] += roundCount(d.denied)
			fs.gwPrev, fs.gwHave = b, true
			// Sessions include the queued requests (HAProxy 2.6 counts a
			// queued stream as a backend session), so they are the demand.
			gwDemand = math.Max(b.sessions, b.queue)
		}

		// pulsed's view of the async queue. A function without an entry
		// has none: depth 0, counters unchanged.
		q, hasQueue := in.queues[f.Name]
		if in.queuesOK && hasQueue {
			cur := [4]uint64{q.Enqueued, q.Done, q.Failed, q.Retried}
			var d [4]uint64
			switch {
			case fs.qHave:
				d = queueDelta(fs.qPrev, cur)
			case a.qPrimed:
				d = cur // a queue new since the last read: all of it is new
			}
			for i, v := range d {
				fs.acc[accEnqueued+i] = addCount(fs.acc[accEnqueued+i], v)
			}
			fs.qPrev, fs.qHave = cur, true
		}

		// Charts.
		put := func(suffix, dim string, v int64) { mx[dimKey(f.Name, suffix, dim)] = v }
		put(contract.ChartRequests, contract.Dim2xx, fs.acc[acc2xx])
		put(contract.ChartRequests, contract.Dim3xx, fs.acc[acc3xx])
		put(contract.ChartRequests, contract.Dim4xx, fs.acc[acc4xx])
		put(contract.ChartRequests, contract.Dim5xx, fs.acc[acc5xx])
		put(contract.ChartErrors, contract.DimThrottled, fs.acc[accThrottled])
		put(contract.ChartErrors, contract.DimTimedOut, fs.acc[accTimedOut])
		avg, p95 := latency(hist, sum)
		put(contract.ChartLatency, contract.DimAvg, micros(avg))
		put(contract.ChartLatency, contract.DimP95, micros(p95))
		put(contract.ChartInflight, contract.DimInflight, roundCount(inflight*inflightDiv))
		put(contract.ChartReplicas, contract.DimRunning, int64(running))
		put(contract.ChartReplicas, contract.DimDesired, int64(f.Desired))
		put(contract.ChartReplicas, contract.DimScraped, int64(scraped))
		if gwOK {
			put(contract.ChartGatewayDemand, contract.DimSessions, roundCount(b.sessions))
			put(contract.ChartGatewayDemand, contract.DimQueue, roundCount(b.queue))
			put(contract.ChartGatewayRequests, contract.DimRate, fs.acc[accGatewayRequests])
			put(contract.ChartGatewayRequests, contract.DimGateway5xx, fs.acc[accGateway5xx])
			put(contract.ChartGatewayRequests, contract.DimThrottled, fs.acc[accGatewayThrottled])
		}
		if in.queuesOK {
			put(contract.ChartQueue, contract.DimDepth, addCount(0, q.Depth))
			put(contract.ChartQueue, contract.DimPending, addCount(0, q.Pending))
			put(contract.ChartQueue, contract.DimInFlight, addCount(0, q.InFlight))
			put(contract.ChartQueueAge, contract.DimOldest, roundCount(q.OldestAge*queueAgeDiv))
			put(contract.ChartAsyncRequests, contract.DimEnqueued, fs.acc[accEnqueued])
			put(contract.ChartAsyncRequests, contract.DimDone, fs.acc[accDone])
			put(contract.ChartAsyncRequests, contract.DimFailed, fs.acc[accFailed])
			put(contract.ChartAsyncRequests, contract.DimRetried, fs.acc[accRetried])
		}

		// Utilisation (DESIGN §5).
		pol := a.policy(f, fs)
		var demand float64
		known := true
		switch pol.Metric {
		case contract.ScaleMetricRPS:
			known = elapsed > 0
			if known {
				demand = requests / elapsed
			}
			if gwRateKnown {
				demand, known = math.Max(demand, gwRate), true
			}
		case contract.ScaleMetricQueue:
			// The requests not finished: waiting, being dispatched, or
			// waiting for a retry. Only pulsed knows them: without its
			// queues this cycle (unreadable, or async off) the demand is
			// unknown, not 0, so no alarm sees a function go idle.
			known = in.queuesOK
			demand = float64(q.Depth)
		default:
			demand = math.Max(inflight, gwDemand)
		}
		mx[varKey(f.Name, contract.ChartUtilization, contract.VarReplicas)] = int64(ready)
		mx[varKey(f.Name, contract.ChartUtilization, contract.VarTarget)] = int64(math.Ceil(pol.Target))
		mx[varKey(f.Name, contract.ChartUtilization, contract.VarFloor)] = int64(pol.Floor())
		if known {
			put(contract.ChartUtilization, contract.DimUtilization, roundCount(utilization(demand, ready, pol.Target)*utilizationDiv))
			put(contract.ChartDemand, contract.DimDemand, roundCount(demand*demandDiv))
		}
	}
	for key := range a.replicas {
		if !listed[key] {
			delete(a.replicas, key)
		}
	}
	a.last = in.now
	a.primed = true
	if in.haproxyOK {
		a.gwPrimed = true
	}
	if in.queuesOK {
		a.qPrimed = true
	}
	mx[collectorKey(dimListed)] = int64(st.listed)
	mx[collectorKey(dimScraped)] = int64(st.scraped)
	mx[collectorKey(dimFailed)] = int64(st.failed)
	return st
}

// policy reads a function's scaling policy from its labels, logging a
// malformed label once (until it changes).
func (a *aggregator) policy(f contract.CatalogFunction, fs *functionState) scalelabels.Policy {
	pol, err := scalelabels.Parse(f.Labels)
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != fs.policyErr {
		if msg != "" {
			a.log.Warn("malformed scale labels; using the defaults for them", "function", f.Name, "err", err)
		}
		fs.policyErr = msg
	}
	return pol
}

// utilization is DESIGN §5's value in percent: 100 × demand / (ready ×
// target). With no ready replica, demand is measured against one, so a
// function whose replicas all failed still reads as overloaded.
func utilization(demand float64, ready int, target float64) float64 {
	den := float64(ready)
	if den == 0 {
		if demand <= 0 {
			return 0
		}
		den = 1
	}
	return 100 * demand / (den * target)
}

// averageInflight is a replica's requests in flight over the interval
// since the previous cycle (elapsed seconds long), for the demand. Summed
// over replicas the gauges are not of one instant: scraped a few
// milliseconds apart, a request that ended on one replica and was sent
// again to another is counted on both, which lifted a load of exactly 10 in
// flight to 11 (110 %) now and then. The busy seconds have no such skew:
//   - a replica read before in the same run: its busy seconds' increase over
//     its own clock's;
//   - a replica that started within the interval (new, or restarted): all
//     its busy time falls in the interval, so it is divided by the whole
//     interval, as the others' are (the average of a replica up for half
//     of it would otherwise count double next to the others');
//   - otherwise (a watchdog without busy seconds, the first cycle, a
//     replica up for longer but not read before): the gauge.
func averageInflight(prev replicaMetrics, had bool, cur replicaMetrics, elapsed float64) float64 {
	if !cur.hasBusy {
		return cur.inflight
	}
	if had && prev.hasBusy && cur.start == prev.start {
		if dt := cur.uptime - prev.uptime; dt > 0 && cur.busy >= prev.busy {
			return (cur.busy - prev.busy) / dt
		}
		return cur.inflight
	}
	if elapsed > 0 && cur.uptime <= elapsed {
		return cur.busy / elapsed
	}
	return cur.inflight
}

// replicaDelta is what a replica answered between two scrapes. A restart
// (new start time, or a total that went down) resets its counters: then the
// new values are all new. A single series going down counts from its new
// value too.
func replicaDelta(prev, cur replicaMetrics) replicaMetrics {
	if cur.start != prev.start || cur.total < prev.total || cur.count < prev.count {
		return cur
	}
	d := replicaMetrics{
		total: counterDelta(prev.total, cur.total), throttled: counterDelta(prev.throttled, cur.throttled),
		timedOut: counterDelta(prev.timedOut, cur.timedOut),
		sum:      counterDelta(prev.sum, cur.sum), count: counterDelta(prev.count, cur.count),
		inflight: cur.inflight, start: cur.start,
	}
	for i := range d.classes {
		d.classes[i] = counterDelta(prev.classes[i], cur.classes[i])
	}
	for i := range d.buckets {
		d.buckets[i] = counterDelta(prev.buckets[i], cur.buckets[i])
	}
	return d
}

// counterDelta is a counter's increase; a counter that went down was reset
// and counts from its new value.
func counterDelta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// latency returns the average and the 95th percentile, in seconds, of the
// requests in hist (cumulative bucket counts, +Inf last) whose durations
// add up to sum. The percentile is interpolated linearly inside its bucket,
// as Prometheus's histogram_quantile does; above the last finite bound it
// is that bound. No requests: 0 and 0.
func latency(hist [bucketCount]float64, sum float64) (avg, p95 float64) {
	total := hist[bucketCount-1]
	if total <= 0 {
		return 0, 0
	}
	avg = sum / total
	rank := 0.95 * total
	bounds := contract.DurationBuckets
	for i, cum := range hist {
		if cum < rank {
			continue
		}
		if i == bucketCount-1 {
			return avg, bounds[len(bounds)-1]
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = bounds[i-1], hist[i-1]
		}
		if cum <= below {
			return avg, bounds[i]
		}
		return avg, lower + (bounds[i]-lower)*(rank-below)/(cum-below)
	}
	return avg, bounds[len(bounds)-1]
}

func roundCount(v float64) int64 {
	if v <= 0 || math.IsNaN(v) {
		return 0
	}
	if v >= math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return int64(math.Round(v))
}

// queueDelta is what pulsed's queue counters (enqueued, done, failed,
// retried) counted between two reads. One that went down means pulsed
// restarted (its counters count since it started): then the new values are
// all new.
func queueDelta(prev, cur [4]uint64) [4]uint64 {
	for i := range cur {
		if cur[i] < prev[i] {
			return cur
		}
	}
	var d [4]uint64
	for i := range cur {
		d[i] = cur[i] - prev[i]
	}
	return d
}

// addCount adds v to the total acc, saturating at roundCount's cap (a
// hostile or broken pulsed cannot wrap a total negative).
func addCount(acc int64, v uint64) int64 {
	const limit = math.MaxInt64 / 2
	if v >= limit || acc >= limit-int64(v) {
		return limit
	}
	return acc + int64(v)
}

// micros is seconds as whole microseconds, the latency dimensions' unit
// before their divisor.
func micros(s float64) int64 { return roundCount(s * 1e6) }
