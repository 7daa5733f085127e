package contract

// Netdata names shared by the collector (which emits the charts), the health
// templates in alarms/ (which watch them) and the scaler (which reads them
// back through Netdata's API). Every function gets one chart per context;
// the chart's family is the exact function name, which Netdata hands to the
// alarm hook as its ninth argument (chart IDs lose characters, families do
// not).
const (
	// PluginName is the Netdata plugin binary's name (pulse.d.plugin): it
	// coexists with a stock go.d.plugin.
	PluginName = "pulse.d"
	// CollectorModule is the go.d module name and CollectorJob the name of
	// the job the shipped configuration defines. With the job named like the
	// module, every chart's type is ChartType ("pulse"), so chart IDs are
	// "pulse.<id>" and the dashboard groups them under one menu.
	CollectorModule = "pulse"
	CollectorJob    = "pulse"
	ChartType       = "pulse"
	// DashboardMenuTitle is the menu heading for ChartType's charts.
	DashboardMenuTitle = "Pulse functions"
)

// Chart contexts, one chart of each per function. The chart ID is
// ChartID(function, suffix) under ChartType.
const (
	// CtxRequests: requests/s answered by the replicas, by status class.
	// Dimensions Dim2xx, Dim3xx, Dim4xx, Dim5xx.
	CtxRequests = "pulse.requests"
	// CtxErrors: throttled (429) and timed-out (504) requests/s.
	// Dimensions DimThrottled, DimTimedOut.
	CtxErrors = "pulse.errors"
	// CtxInflight: requests in flight summed over the replicas, each the
	// average since its previous scrape (contract.MetricBusy).
	// Dimension DimInflight.
	CtxInflight = "pulse.inflight"
	// CtxLatency: milliseconds, average and p95 from the duration
	// histogram over the last collection interval. Dimensions DimAvg, DimP95.
	CtxLatency = "pulse.latency"
	// CtxReplicas: replicas running (in the catalog and not draining),
	// desired (the service's replica count) and scraped (answered the last
	// scrape). Dimensions DimRunning, DimDesired, DimScraped.
	CtxReplicas = "pulse.replicas"
	// CtxGatewayDemand: HAProxy's view of the backend: current sessions and
	// queued requests. Dimensions DimSessions, DimQueue.
	CtxGatewayDemand = "pulse.gateway_demand"
	// CtxGatewayRequests: requests/s HAProxy passed on to the backend's
	// replicas, the 5xx it answered, and the requests its rate limit
	// denied (429: not passed on, not demand). Dimensions DimRate,
	// DimGateway5xx, DimThrottled.
	CtxGatewayRequests = "pulse.gateway_requests"
	// CtxUtilization: percent, the value the scaling alarms watch (DESIGN
	// §5): 100 × demand / (ready replicas × target). Dimension
	// DimUtilization; chart variables VarReplicas, VarTarget and VarFloor.
	CtxUtilization = "pulse.utilization"
	// CtxDemand: the demand the utilisation divides, in the function's
	// scale metric: in-flight requests or requests/s (the metric summed
	// over the replicas, or the gateway's view of it if larger), or queued
	// async requests (the queue's depth, ScaleMetricQueue). The scaler
	// sizes from it (desired = demand / target), which unlike the
	// utilisation does not depend on how many replicas were ready when it
	// was measured. Dimension DimDemand.
	CtxDemand = "pulse.demand"
	// CtxQueue: the function's async queue as pulsed reports it
	// (QueuesPath): requests not finished (DimDepth) = waiting for
	// dispatch (DimPending) + being dispatched or waiting for a retry
	// (DimInFlight). 0 for a function without a queue; no value (a gap)
	// in a cycle where pulsed's queues could not be read, or when pulsed
	// serves none (404: async off, or an older pulsed).
	CtxQueue = "pulse.queue"
	// CtxQueueAge: seconds, the age of the oldest async request not
	// finished (0: none). Dimension DimOldest. Gaps as CtxQueue.
	CtxQueueAge = "pulse.queue_age"
	// CtxAsyncRequests: async requests/s enqueued, done, failed (given
	// up) and retried (dispatched again), from pulsed's counters.
	// Dimensions DimEnqueued, DimDone, DimFailed, DimRetried. Gaps as
	// CtxQueue.
	CtxAsyncRequests = "pulse.async_requests"
)

// Chart ID suffixes: the chart ID of function f for a context is
// ChartID(f, suffix).
const (
	ChartRequests        = "requests"
	ChartErrors          = "errors"
	ChartInflight        = "inflight"
	ChartLatency         = "latency"
	ChartReplicas        = "replicas"
	ChartGatewayDemand   = "gateway_demand"
	ChartGatewayRequests = "gateway_requests"
	ChartUtilization     = "utilization"
	ChartDemand          = "demand"
	ChartQueue           = "queue"
	ChartQueueAge        = "queue_age"
	ChartAsyncRequests   = "async_requests"
)

// ChartID is the chart ID (without the type) of a function's chart. Netdata
// turns characters outside [A-Za-z0-9_.-] into '_'; function names are
// lower-case letters, digits and '-', so the ID stays readable.
func ChartID(function, suffix string) string { return "fn_" + function + "_" + suffix }

// Chart is the full chart name Netdata's API takes and its alarms carry:
// type.id.
func Chart(function, suffix string) string { return ChartType + "." + ChartID(function, suffix) }

// Dimension names, as Netdata shows them and as health templates use them.
const (
	Dim2xx         = "2xx"
	Dim3xx         = "3xx"
	Dim4xx         = "4xx"
	Dim5xx         = "5xx"
	DimThrottled   = "throttled"
	DimTimedOut    = "timed_out"
	DimInflight    = "inflight"
	DimAvg         = "avg"
	DimP95         = "p95"
	DimRunning     = "running"
	DimDesired     = "desired"
	DimScraped     = "scraped"
	DimSessions    = "sessions"
	DimQueue       = "queue"
	DimRate        = "rate"
	DimGateway5xx  = "5xx"
	DimUtilization = "utilization"
	DimDemand      = "demand"
	DimDepth       = "depth"
	DimPending     = "pending"
	DimInFlight    = "in_flight"
	DimOldest      = "oldest"
	DimEnqueued    = "enqueued"
	DimDone        = "done"
	DimFailed      = "failed"
	DimRetried     = "retried"
)

// Chart variables on the CtxUtilization chart.
const (
	// VarReplicas is the number of ready replicas the utilisation was
	// computed over.
	VarReplicas = "replicas"
	// VarTarget is the per-replica target of the scaling metric.
	VarTarget = "target"
	// VarFloor is the fewest replicas the autoscaler keeps: max(scale.min,
	// 1). Only scale to zero (the gateway's idle path) goes below it, so
	// the scale-down alarm stays quiet for a function already there.
	VarFloor = "floor"
)

// Scaling metrics (values of LabelScaleMetric); ScaleMetricQueue (async.go)
// is the third.
const (
	ScaleMetricInflight = "inflight"
	ScaleMetricRPS      = "rps"
)

// Health alarm names (the templates in alarms/). The scaler learns the
// direction from the name; it re-reads the truth before acting.
const (
	AlarmScaleUp   = "pulse_scale_up"
	AlarmScaleDown = "pulse_scale_down"
)
