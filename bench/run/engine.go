package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/function"
)

// connectSingleNodeSwarm opens the engine client and checks that the
// engine is the manager of a single-node swarm, where every replica runs on
// this host; need says why the suite needs that. It returns the engine's
// info and version, read within timeout.
func connectSingleNodeSwarm(ctx context.Context, suite, need string, timeout time.Duration) (*client.Client, system.Info, types.Version, error) {
	api, err := function.NewEngineClient()
	if err != nil {
		return nil, system.Info{}, types.Version{}, err
	}
	fail := func(err error) (*client.Client, system.Info, types.Version, error) {
		api.Close()
		return nil, system.Info{}, types.Version{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := api.Info(cctx)
	if err != nil {
		return fail(fmt.Errorf("docker info: %w (is the Docker Engine running and reachable?)", err))
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		return fail(fmt.Errorf("the engine is not a swarm manager (state %q): run docker swarm init --advertise-addr 127.0.0.1", info.Swarm.LocalNodeState))
	}
	if info.Swarm.Nodes != 1 {
		return fail(fmt.Errorf("the swarm has %d nodes: the %s suite needs a single-node swarm, %s", info.Swarm.Nodes, suite, need))
	}
	ver, err := api.ServerVersion(cctx)
	if err != nil {
		return fail(fmt.Errorf("docker version: %w", err))
	}
	return api, info, ver, nil
}

// loopbackAddr returns addr with a loopback host, and whether it had to
// rewrite it: on the single-node swarm a host-mode port is published on
// every address of this host.
func loopbackAddr(addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return addr, false
	}
	return net.JoinHostPort("127.0.0.1", port), true
}
