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

// Fork-mode process limit (issue 12, point 7: a function that exhausts its
// replica's pids limit must not take the watchdog down).
const (
	// EnvMaxProcesses caps the function processes a fork-mode watchdog
	// runs at once; requests beyond it wait for one to end, up to their
	// timeout. The watchdog keeps one OS thread ready per process (each
	// request drives its process with blocking system calls), all made at
	// start, so it never needs a new thread while a function holds every
	// pid of the replica. Fork mode only.
	EnvMaxProcesses = "PULSE_MAX_PROCESSES"
	// DefaultMaxProcesses is EnvMaxProcesses's default, lowered when the
	// replica's pids limit cannot hold that many threads and as many
	// processes: with GOMAXPROCS capped at 4, the watchdog then holds at
	// most 76 threads of the limit (74 measured with GOMAXPROCS 2).
	DefaultMaxProcesses = 64
	// MaxMaxProcesses is the largest EnvMaxProcesses accepted.
	MaxMaxProcesses = 1024
)
