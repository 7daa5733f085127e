package contract

// Watchdog limits added for issue 12 (points 8 and 9).
const (
	// EnvMaxOverdue is how many in-process handlers may still be running
	// past their deadline (a goroutine cannot be killed) before the
	// watchdog fails its health check, so that the replica is replaced.
	// 0 turns the check off.
	EnvMaxOverdue = "PULSE_MAX_OVERDUE"
	// DefaultMaxOverdue is EnvMaxOverdue's default.
	DefaultMaxOverdue = 8

	// MetricOverdue counts in-process handlers still running past their
	// deadline (their client got a 504 at the deadline).
	MetricOverdue = "pulse_watchdog_overdue_handlers" // gauge
	// MetricOOMKilled counts fork-mode processes the kernel killed for
	// memory (their client got 500 "out of memory").
	MetricOOMKilled = "pulse_watchdog_oom_killed_total" // counter

	// HeaderRequestID is the request id HAProxy sets on every request; the
	// watchdog names it in the errors it returns and logs.
	HeaderRequestID = "X-Request-Id"
	// MaxReplicaAuthBytes is the largest credential file a watchdog reads.
	MaxReplicaAuthBytes = 4 << 10
)
