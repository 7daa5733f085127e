// Command pulse-watchdog is PID 1 of a Pulse function replica: it serves the
// function over HTTP in fork or http mode, with limits, health, metrics and a
// graceful drain. Its configuration is the PULSE_* environment (see
// watchdog/README.md).
package main

import "github.com/pulsefaas/pulse/watchdog"

func main() { watchdog.Main(nil) }
