// Command hello is Pulse's demo function: an in-process Go function linked
// with the watchdog into one static binary.
package main

import (
	"context"

	"github.com/pulsefaas/pulse/watchdog"
)

func main() {
	watchdog.Main(watchdog.Func(func(_ context.Context, body []byte) ([]byte, error) {
		if len(body) == 0 {
			body = []byte("world")
		}
		return append(append([]byte("Hello, "), body...), '\n'), nil
	}))
}
