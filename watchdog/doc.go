// Package watchdog is the process that runs every Pulse function replica:
// an HTTP server that hands requests to the function — linked in (an
// http.Handler), one process per request (fork mode), or a long-running
// process behind a loopback proxy (http mode) — within limits, with health,
// Prometheus metrics and a graceful drain. See README.md.
//
// Build tags trim what a function image does not need: watchdog_nofork and
// watchdog_nohttp leave out fork and http mode (an in-process Go function
// is built with both, a C function with watchdog_nohttp).
//
// The defaults the CLI also writes into a function's service (the timeout,
// the body cap, the in-flight cap, the drain grace) and ParseSize are
// package contract's (defaults.go); the names here alias or wrap them.
package watchdog
