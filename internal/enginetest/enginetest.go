// Package enginetest gives tests a client of the local Docker Engine, which
// must be a swarm manager: the test is skipped otherwise, or failed when
// PULSE_TEST_REQUIRE_ENGINE is set (CI sets it, so engine tests cannot skip
// there silently).
package enginetest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// SwarmManager returns a client (API version negotiated, closed at the
// test's end) of the local engine, a swarm manager.
func SwarmManager(t testing.TB) *client.Client {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = api.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Negotiate once, before the client is shared: the first calls of
	// several goroutines race on it otherwise.
	api.NegotiateAPIVersion(ctx)
	info, err := api.Info(ctx)
	if err != nil {
		skip(fmt.Sprintf("Docker daemon unreachable: %v", err))
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		skip(fmt.Sprintf("the engine is not a swarm manager (state %q); run docker swarm init --advertise-addr 127.0.0.1", info.Swarm.LocalNodeState))
	}
	return api
}
