package collector

import "github.com/pulsefaas/pulse/contract"

// ChartSpec describes one of the charts every function gets, without go.d's
// module API, for other packages' tests (the health templates in alarms/
// must name contexts, dimensions and variables that exist). The module's
// charts are built from the same templates, so the two cannot drift.
type ChartSpec struct {
	Context  string   // contract.Ctx*
	IDSuffix string   // contract.Chart*: the chart ID is contract.ChartID(function, IDSuffix)
	Dims     []string // dimension names as Netdata shows them (contract.Dim*)
	Vars     []string // chart variable names (contract.Var*)
}

// ChartSpecs returns the per-function charts, in dashboard order.
func ChartSpecs() []ChartSpec {
	specs := make([]ChartSpec, len(functionCharts))
	for i, t := range functionCharts {
		specs[i] = t.spec()
	}
	return specs
}

// chartTemplate is one per-function chart: what ChartSpec says plus how
// Netdata draws it. The module file turns it into a go.d chart.
type chartTemplate struct {
	ctx, suffix  string
	title, units string
	kind         string // "line", "area" or "stacked"
	priority     int
	dims         []dimTemplate
	vars         []string
}

// dimTemplate is one dimension. Values are collected as integers: div
// turns them back into fractions (latency in µs shown as ms, utilisation
// ×100 shown as percent).
type dimTemplate struct {
	name        string
	incremental bool // a monotonic total; Netdata draws its per-second rate
	div         int  // 0 means 1
}

func (t chartTemplate) spec() ChartSpec {
	s := ChartSpec{Context: t.ctx, IDSuffix: t.suffix, Vars: append([]string(nil), t.vars...)}
	for _, d := range t.dims {
		s.Dims = append(s.Dims, d.name)
	}
	return s
}

// chartPriority is the first chart's priority; the others follow in order,
// so a function's charts appear as functionCharts lists them.
const chartPriority = 70000

// Titles and units are ASCII: Netdata's plugins.d protocol mangles other
// bytes (a "×" arrived as "__").

// Divisors of the collected integers.
const (
	latencyDiv     = 1000 // collected in µs, shown in ms
	inflightDiv    = 1000 // collected × 1000: a fast function averages well under 1 in flight
	utilizationDiv = 100  // collected as percent × 100
	demandDiv      = 100  // collected × 100
	queueAgeDiv    = 1000 // collected in ms, shown in seconds
)

var functionCharts = []chartTemplate{
	{ctx: contract.CtxRequests, suffix: contract.ChartRequests, title: "Requests answered by the replicas, by status class",
		units: "requests/s", kind: "stacked", dims: []dimTemplate{
			{name: contract.Dim2xx, incremental: true}, {name: contract.Dim3xx, incremental: true},
			{name: contract.Dim4xx, incremental: true}, {name: contract.Dim5xx, incremental: true}}},
	{ctx: contract.CtxErrors, suffix: contract.ChartErrors, title: "Throttled (429) and timed-out (504) requests",
		units: "requests/s", kind: "line", dims: []dimTemplate{
			{name: contract.DimThrottled, incremental: true}, {name: contract.DimTimedOut, incremental: true}}},
	{ctx: contract.CtxLatency, suffix: contract.ChartLatency, title: "Time inside the replica (watchdog: request received to response written) over the last interval; clients also wait for the network and the gateway",
		units: "milliseconds", kind: "line", dims: []dimTemplate{
			{name: contract.DimAvg, div: latencyDiv}, {name: contract.DimP95, div: latencyDiv}}},
	{ctx: contract.CtxInflight, suffix: contract.ChartInflight, title: "Requests in flight in the replicas, average over the interval",
		units: "requests", kind: "line", dims: []dimTemplate{{name: contract.DimInflight, div: inflightDiv}}},
	{ctx: contract.CtxUtilization, suffix: contract.ChartUtilization, title: "Utilisation: demand / (ready replicas x target)",
		units: "percentage", kind: "line", dims: []dimTemplate{{name: contract.DimUtilization, div: utilizationDiv}},
		vars: []string{contract.VarReplicas, contract.VarTarget, contract.VarFloor}},
	{ctx: contract.CtxReplicas, suffix: contract.ChartReplicas, title: "Replicas",
		units: "replicas", kind: "line", dims: []dimTemplate{
			{name: contract.DimRunning}, {name: contract.DimDesired}, {name: contract.DimScraped}}},
	{ctx: contract.CtxGatewayDemand, suffix: contract.ChartGatewayDemand, title: "Gateway sessions and queue (HAProxy backend)",
		units: "sessions", kind: "line", dims: []dimTemplate{{name: contract.DimSessions}, {name: contract.DimQueue}}},
	{ctx: contract.CtxGatewayRequests, suffix: contract.ChartGatewayRequests, title: "Gateway requests passed to the replicas, 5xx answers, and requests throttled by the rate limit (HAProxy backend)",
		units: "requests/s", kind: "line", dims: []dimTemplate{
			{name: contract.DimRate, incremental: true}, {name: contract.DimGateway5xx, incremental: true},
			{name: contract.DimThrottled, incremental: true}}},
	{ctx: contract.CtxDemand, suffix: contract.ChartDemand, title: "Demand in the scale metric: in-flight requests or requests/s (the larger of what the replicas and the gateway see), or queued async requests",
		units: "requests", kind: "line", dims: []dimTemplate{{name: contract.DimDemand, div: demandDiv}}},
	{ctx: contract.CtxQueue, suffix: contract.ChartQueue, title: "Async queue (pulsed): requests not finished (depth) = waiting (pending) + being dispatched or waiting for a retry (in flight)",
		units: "requests", kind: "line", dims: []dimTemplate{
			{name: contract.DimDepth}, {name: contract.DimPending}, {name: contract.DimInFlight}}},
	{ctx: contract.CtxQueueAge, suffix: contract.ChartQueueAge, title: "Age of the oldest async request not finished (pulsed)",
		units: "seconds", kind: "line", dims: []dimTemplate{{name: contract.DimOldest, div: queueAgeDiv}}},
	{ctx: contract.CtxAsyncRequests, suffix: contract.ChartAsyncRequests, title: "Async requests enqueued, done, failed (given up) and retried (pulsed)",
		units: "requests/s", kind: "line", dims: []dimTemplate{
			{name: contract.DimEnqueued, incremental: true}, {name: contract.DimDone, incremental: true},
			{name: contract.DimFailed, incremental: true}, {name: contract.DimRetried, incremental: true}}},
}

// The collector's own chart: replicas listed, scraped and failed in the
// last cycle, and of the failed those that answered 403 (the replica
// credential is missing or not theirs). It keeps one chart updated while no function exists, which
// go.d needs: a job whose Collect updates no chart is slowed down (its
// interval grows by half a second per five empty runs, up to 10 minutes),
// and a function deployed after an idle hour would then get its charts a
// minute late. Its family ("pulse.d") cannot be a function name.
const (
	collectorChartID = "collector"
	collectorCtx     = contract.ChartType + ".collector"
	collectorFamily  = contract.PluginName
	dimListed        = "listed"
	dimScraped       = "scraped"
	dimFailed        = "failed"
	dimForbidden     = "forbidden"
)

var collectorChart = chartTemplate{
	ctx: collectorCtx, suffix: collectorChartID, title: "Pulse collector: replicas in the catalog and scrapes",
	units: "replicas", kind: "line", priority: chartPriority + 1000,
	dims: []dimTemplate{{name: dimListed}, {name: dimScraped}, {name: dimFailed}, {name: dimForbidden}},
}

func init() {
	for i := range functionCharts {
		functionCharts[i].priority = chartPriority + i
	}
}

// dimKey is the key of a function's dimension in Collect's map: unique per
// function, chart and dimension.
func dimKey(function, suffix, dim string) string {
	return contract.ChartID(function, suffix) + "_" + dim
}

// varKey is the key of a chart variable's value in Collect's map.
func varKey(function, suffix, name string) string {
	return contract.ChartID(function, suffix) + "_var_" + name
}

// collectorKey is the key of a dimension of the collector's own chart.
func collectorKey(dim string) string { return "collector_" + dim }
