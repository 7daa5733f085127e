package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
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

// localSwarm deploys on the single-node swarm of api, loading images
// straight into its engine.
func localSwarm(api *client.Client) *function.Swarm {
	return function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
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

// Time limits of the engine's work.
const (
	callTimeout    = 30 * time.Second // one call
	readyTimeout   = 90 * time.Second // replicas ready after a deploy or scale
	removeTimeout  = 2 * time.Minute  // one function removed
	cleanupTimeout = 3 * time.Minute  // a suite's final sweep
)

// labelSwarmServiceName is the label Swarm puts on a task's container.
const labelSwarmServiceName = "com.docker.swarm.service.name"

// call bounds one call to the engine.
func call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// serviceNames lists the engine's services by name, sorted: all of them,
// and those that are Pulse functions.
func serviceNames(ctx context.Context, api *client.Client) (all, functions []string, err error) {
	cctx, cancel := call(ctx)
	defer cancel()
	svcs, err := api.ServiceList(cctx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	for _, s := range svcs {
		all = append(all, s.Spec.Name)
		if _, ok := s.Spec.Labels[contract.LabelFunction]; ok {
			functions = append(functions, s.Spec.Name)
		}
	}
	slices.Sort(all)
	slices.Sort(functions)
	return all, functions, nil
}

// inspectService reads the service name.
func inspectService(ctx context.Context, api *client.Client, name string) (swarm.Service, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	svc, _, err := api.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return swarm.Service{}, fmt.Errorf("inspect service %s: %w", name, err)
	}
	return svc, nil
}

// taskIDs lists the IDs of the tasks f selects.
func taskIDs(ctx context.Context, api *client.Client, f filters.Args) (map[string]bool, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	tasks, err := api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	ids := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		ids[t.ID] = true
	}
	return ids, nil
}

// serviceContainers lists the IDs of the service name's running
// containers.
func serviceContainers(ctx context.Context, api *client.Client, name string) ([]string, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	cs, err := api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelSwarmServiceName+"="+name))})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", name, err)
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, nil
}

// waitContainers waits up to timeout until exactly n containers of the
// service name run.
func waitContainers(ctx context.Context, api *client.Client, name string, n int, timeout time.Duration) error {
	return poll(ctx, timeout, 50*time.Millisecond, func(late bool) (bool, error) {
		ids, err := serviceContainers(ctx, api, name)
		switch {
		case err != nil:
			return false, err
		case len(ids) == n:
			return true, nil
		case late:
			return false, fmt.Errorf("%s: %d containers running after %s, want %d", name, len(ids), timeout, n)
		}
		return false, nil
	})
}

// waitReplicas waits up to readyTimeout until name has exactly n ready
// replicas (WaitReady) and no other container of it is still running (one
// scaled away drains and stops after its task left the list).
func waitReplicas(ctx context.Context, sw *function.Swarm, api *client.Client, name string, n int) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := sw.WaitReady(wctx, name, n); err != nil {
		return err
	}
	return waitContainers(ctx, api, name, n, readyTimeout-time.Since(start))
}

// pollNewTasks lists the tasks f selects every d until ctx ends or seen
// says it is done; seen gets those not in known, with the time they were
// listed; note gets a failed listing.
func pollNewTasks(ctx context.Context, api *client.Client, f filters.Args, known map[string]bool, d time.Duration, note func(error), seen func(tasks []swarm.Task, now time.Time) (done bool)) {
	ctx, done := context.WithCancel(ctx)
	defer done()
	every(ctx, d, func() {
		cctx, cancel := call(ctx)
		tasks, err := api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
		cancel()
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			note(fmt.Errorf("list tasks: %w", err))
		}
		if seen(slices.DeleteFunc(tasks, func(t swarm.Task) bool { return known[t.ID] }), now) {
			done()
		}
	})
}

// removeFunction removes a function (service, containers, image); one
// already gone is no error. Removal also runs after an interrupt: it is not
// cut short by ctx, only bounded by removeTimeout.
func removeFunction(ctx context.Context, sw *function.Swarm, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
	defer cancel()
	if err := sw.Remove(ctx, name); err != nil && !errors.Is(err, function.ErrNotFound) {
		return err
	}
	return nil
}

// runID returns 6 random hex digits.
func runID() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// benchInstance is a run's own Pulse instance (label pulse.instance): a
// pulsed of `make up` does not route, scale or idle the run's functions, and
// the run's pulsed acts only on them.
func benchInstance(run string) string { return "bench-" + run }

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// every calls f at once and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll calls try at once and then every interval until it is done, fails,
// or ctx ends. Once timeout has passed, try is called with late set and
// then returns the error that says what it waited for.
func poll(ctx context.Context, timeout, interval time.Duration, try func(late bool) (done bool, err error)) error {
	deadline := time.Now().Add(timeout)
	for {
		if done, err := try(time.Now().After(deadline)); done || err != nil {
			return err
		}
		if err := sleepCtx(ctx, interval); err != nil {
			return err
		}
	}
}

// sleepCtx waits for d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rewroteNote is the note of a run whose replicas were not called at the
// addresses the engine gave.
const rewroteNote = "the swarm node's address is not loopback: replicas were called at 127.0.0.1 on their published ports instead"

// runStage runs a suite's stage name with f if stages asks for it, then
// after (if set). A stage that fails leaves a note in notes and the suite
// goes on; an interrupt stops the suite (the error returned).
func runStage(ctx context.Context, log *slog.Logger, stages []string, name string, notes *[]string, f func(context.Context) error, after func()) error {
	if !slices.Contains(stages, name) {
		return nil
	}
	log.Info("stage", "stage", name)
	err := f(ctx)
	if after != nil {
		after()
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	log.Warn("stage stopped", "stage", name, "err", err)
	*notes = append(*notes, fmt.Sprintf("stage %s stopped: %v", name, err))
	return nil
}

// rotate returns vs rotated left by k: round k starts with variant k, so
// every variant runs early and late in some round.
func rotate[T any](vs []T, k int) []T {
	if len(vs) == 0 {
		return nil
	}
	k %= len(vs)
	return append(append([]T(nil), vs[k:]...), vs[:k]...)
}
