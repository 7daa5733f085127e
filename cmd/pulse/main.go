// Command pulse is Pulse's command-line interface: create, build, deploy,
// invoke, inspect, scale and remove functions on a Docker Swarm, and check
// the host (`pulse doctor`). Run `pulse --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.Getenv)
	stop()
	os.Exit(code)
}
