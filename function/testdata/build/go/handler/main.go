// Command hello is a test fixture: an in-process Go function in a module of
// its own, built by `pulse build` against the SDK embedded in Pulse.
package main

import (
	"context"

	"github.com/pulsefaas/pulse/watchdog"
)

func main() {
	watchdog.Main(watchdog.Func(func(_ context.Context, body []byte) ([]byte, error) {
		return append([]byte("hello, "), body...), nil
	}))
}
