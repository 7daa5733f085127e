// Package contract holds the names and wire values that cross process
// boundaries in Pulse: the watchdog's environment, its reserved HTTP paths,
// its metric names, the Swarm service labels, pulsed's API paths and JSON,
// and the Netdata names. It also holds the defaults that the watchdog
// applies and the CLI writes into a function's spec and service, and
// ParseSize, which reads a size for both (defaults.go: they were the
// watchdog's before issue 13; the watchdog's names for them alias or wrap
// these).
// It imports only the standard library so every component (watchdog, CLI,
// pulsed, collector) can depend on it without pulling in anything else;
// tests on each side check that they agree with it.
package contract

// Watchdog environment variables. `pulse deploy` sets them on the service;
// the watchdog reads them at start and exits with a message naming the
// variable when a value is malformed.
const (
	// EnvFunction is the function's name; it labels every metric series.
	EnvFunction = "PULSE_FUNCTION"
	// EnvMode selects how requests reach the function: ModeInProcess,
	// ModeFork or ModeHTTP.
	EnvMode = "PULSE_MODE"
	// EnvExec is the command the watchdog runs in fork and http mode: either
	// whitespace-separated words or a JSON array of strings. There is no
	// shell in a Pulse image, so there is no quoting and no expansion.
	EnvExec = "PULSE_EXEC"
	// EnvUpstream is the 127.0.0.1 address the http-mode process listens on.
	EnvUpstream = "PULSE_UPSTREAM"
	// EnvListen is the watchdog's listen address.
	EnvListen = "PULSE_LISTEN"
	// EnvTimeout is the exec timeout: the longest one request may take. The
	// same value (service label LabelTimeout) sets the gateway's timeout.
	EnvTimeout = "PULSE_TIMEOUT"
	// EnvMaxBody caps a request body (bytes, or with a unit: 10MiB).
	EnvMaxBody = "PULSE_MAX_BODY"
	// EnvMaxResponse caps a response body.
	EnvMaxResponse = "PULSE_MAX_RESPONSE"
	// EnvMaxInflight caps concurrent requests; above it the answer is 429.
	EnvMaxInflight = "PULSE_MAX_INFLIGHT"
	// EnvReadTimeout, EnvWriteTimeout and EnvIdleTimeout are the HTTP
	// server's connection timeouts.
	EnvReadTimeout  = "PULSE_READ_TIMEOUT"
	EnvWriteTimeout = "PULSE_WRITE_TIMEOUT"
	EnvIdleTimeout  = "PULSE_IDLE_TIMEOUT"
	// EnvMaxHeaderBytes caps the size of request headers.
	EnvMaxHeaderBytes = "PULSE_MAX_HEADER_BYTES"
	// EnvDrainGrace is how long the watchdog keeps serving after SIGTERM
	// while failing its health check, so the gateway can take it out first.
	EnvDrainGrace = "PULSE_DRAIN_GRACE"
	// EnvLogLevel is debug, info, warn or error.
	EnvLogLevel = "PULSE_LOG_LEVEL"
	// EnvGatewayURL is the gateway's base URL as seen from inside a replica,
	// for functions that call other functions.
	EnvGatewayURL = "PULSE_GATEWAY_URL"
)

// Watchdog modes (values of EnvMode).
const (
	ModeInProcess = "inproc"
	ModeFork      = "fork"
	ModeHTTP      = "http"
)

// The watchdog's own HTTP endpoints live under ReservedPrefix so they never
// shadow a function's paths. The gateway refuses this prefix from outside.
const (
	ReservedPrefix = "/_/"
	HealthPath     = "/_/health"
	MetricsPath    = "/_/metrics"
	// WatchdogPort is the port the watchdog listens on inside a replica.
	WatchdogPort = 8080
)

// HeaderFunction carries the function's name from HAProxy to the
// cold-start path (the backup server). HAProxy sets it on every request of
// a backend (it cannot know the server yet), overwriting a client's value;
// the cold-start path and the watchdog both remove it, so a function never
// sees it, whichever way the request came.
const HeaderFunction = "X-Pulse-Function"

// Watchdog metric names. Every series carries MetricLabelFunction.
const (
	MetricRequests         = "pulse_function_requests_total"           // counter, label code
	MetricDuration         = "pulse_function_request_duration_seconds" // histogram
	MetricInflight         = "pulse_function_inflight_requests"        // gauge
	MetricStartTime        = "pulse_watchdog_start_time_seconds"       // gauge, unix time
	MetricInfo             = "pulse_watchdog_info"                     // gauge = 1, labels mode, version
	MetricUpstreamRestarts = "pulse_watchdog_upstream_restarts_total"  // counter (http mode)
	MetricKilled           = "pulse_watchdog_killed_total"             // counter, label reason

	// MetricBusy is the time requests spent in the watchdog, summed over
	// requests, those in progress counted up to the scrape. Its rate is the
	// average number of requests in flight: summed over replicas scraped a
	// few milliseconds apart it has no skew, where the gauges' sum counts a
	// request that moved between replicas meanwhile twice.
	MetricBusy = "pulse_function_busy_seconds_total" // counter
	// MetricUptime is the watchdog's monotonic clock at the same instant
	// as MetricBusy: the exact interval to divide the busy time by.
	MetricUptime = "pulse_watchdog_uptime_seconds" // gauge

	MetricLabelFunction = "function"
	MetricLabelCode     = "code"
	MetricLabelMode     = "mode"
	MetricLabelVersion  = "version"
	MetricLabelReason   = "reason"
)

// Reasons a watchdog killed a function process (MetricKilled's reason label).
const (
	KillTimeout       = "timeout"
	KillResponseLimit = "response_limit"
	KillDisconnect    = "disconnect"
)

// DurationBuckets are the upper bounds, in seconds, of MetricDuration's
// histogram: from a quarter of a millisecond to ten minutes.
var DurationBuckets = []float64{
	0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
}

// Swarm service labels set by `pulse deploy` and read by pulsed.
const (
	LabelFunction    = "pulse.function"
	LabelTimeout     = "pulse.timeout"
	LabelMaxBody     = "pulse.max-body"
	LabelScaleMetric = "pulse.scale.metric"
	LabelScaleTarget = "pulse.scale.target"
	LabelScaleMin    = "pulse.scale.min"
	LabelScaleMax    = "pulse.scale.max"
	LabelScaleIdle   = "pulse.scale.idle"
	// LabelInstance names the Pulse install a function belongs to: `pulse
	// deploy` sets it from the CLI's instance key, and a pulsed routes,
	// watches and scales only the functions whose label equals its own
	// instance key. Two installs, or a test, share one swarm without
	// touching each other's functions.
	LabelInstance = "pulse.instance"
	// LabelSpecDigest is the SHA-256 of the service spec `pulse deploy`
	// asked for, without the replica count (the scaler's): a deploy whose
	// spec has the same digest leaves the service alone and says so
	// ("unchanged"), so deploying again changes nothing.
	LabelSpecDigest = "pulse.spec"
)

// DefaultInstance is the instance of the CLI and of pulsed when their
// configuration names none.
const DefaultInstance = "default"

// maxInstance is the longest instance name: as a DNS label, so it fits
// wherever an install's name goes.
const maxInstance = 63

// InstanceSyntax says what ValidInstance accepts, for error messages.
const InstanceSyntax = "1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"

// ValidInstance reports whether v can name an instance (InstanceSyntax).
// Such a value is safe as a label value and in Docker's label filter
// (label=pulse.instance=<v>), which has no quoting.
func ValidInstance(v string) bool {
	if v == "" || len(v) > maxInstance {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !alnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return alnum(v[0]) && alnum(v[len(v)-1])
}
