// Command greet is Pulse's function-to-function example: it calls the hello
// function through the gateway (PULSE_GATEWAY_URL, injected by `pulse
// deploy`) and wraps its answer.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/watchdog"
)

var client = &http.Client{Timeout: 10 * time.Second}

func main() {
	gateway := strings.TrimSuffix(os.Getenv("PULSE_GATEWAY_URL"), "/")
	target := os.Getenv("TARGET") // the function to call; hello by default
	if target == "" {
		target = "hello"
	}
	watchdog.Main(watchdog.Func(func(ctx context.Context, body []byte) ([]byte, error) {
		if gateway == "" {
			return nil, fmt.Errorf("PULSE_GATEWAY_URL is not set: deploy with a gateway configured (replica_gateway)")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway+"/function/"+target, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("calling %s through the gateway: %w", target, err)
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s answered %s: %s", target, resp.Status, answer)
		}
		return append([]byte("greet relays: "), answer...), nil
	}))
}
