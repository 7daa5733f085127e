// Command inproc is the watchdog benchmark's in-process variant: the same
// echo handler as bench/echo (bench/echohandler), served by the watchdog
// library in process. Built static and stripped, it is also the benchmark's
// stand-in for the size of a Go function's image (watchdog + Go hello in one
// binary).
//
// The watchdog reads its configuration from the environment (PULSE_FUNCTION,
// PULSE_LISTEN, ...; see package contract), serves until SIGTERM and exits.
package main

import (
	"github.com/pulsefaas/pulse/bench/echohandler"
	"github.com/pulsefaas/pulse/watchdog"
)

func main() {
	watchdog.Main(echohandler.New())
}
