package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// connectSingleNodeSwarm opens the engine client and checks, within callTimeout,
// that it manages a single-node swarm (need: why the suite needs one).
func connectSingleNodeSwarm(ctx context.Context, suite, need string) (api *client.Client, info system.Info, ver types.Version, err error) {
	if api, err = function.NewEngineClient(); err != nil {
		return nil, info, ver, err
	}
	defer func() {
		if err != nil {
			api.Close()
			api = nil
		}
	}()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if info, err = api.Info(cctx); err != nil {
		return api, info, ver, fmt.Errorf("docker info: %w (is the Docker Engine running and reachable?)", err)
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		return api, info, ver, fmt.Errorf("the engine is not a swarm manager (state %q): run docker swarm init --advertise-addr 127.0.0.1", info.Swarm.LocalNodeState)
	}
	if info.Swarm.Nodes != 1 {
		return api, info, ver, fmt.Errorf("the swarm has %d nodes: the %s suite needs a single-node swarm, %s", info.Swarm.Nodes, suite, need)
	}
	if ver, err = api.ServerVersion(cctx); err != nil {
		return api, info, ver, fmt.Errorf("docker version: %w", err)
	}
	return api, info, ver, nil
}

// loopbackAddr returns addr with a loopback host, and whether it rewrote it:
// a host-mode port of the single-node swarm is published on every address.
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

// engineCall runs f bounded by callTimeout; its error names what failed.
func engineCall[T any](ctx context.Context, what string, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	v, err := f(cctx)
	if err != nil {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return v, err
}

// engineDo is engineCall for a call that returns only an error.
func engineDo(ctx context.Context, what string, f func(context.Context) error) error {
	_, err := engineCall(ctx, what, func(c context.Context) (struct{}, error) { return struct{}{}, f(c) })
	return err
}

// listServices lists the engine's services.
func listServices(ctx context.Context, api *client.Client) ([]swarm.Service, error) {
	return engineCall(ctx, "list services", func(c context.Context) ([]swarm.Service, error) {
		return api.ServiceList(c, swarm.ServiceListOptions{})
	})
}

// serviceNames lists the engine's services by name, sorted: all, and functions.
func serviceNames(ctx context.Context, api *client.Client) (all, functions []string, err error) {
	svcs, err := listServices(ctx, api)
	for _, s := range svcs {
		all = append(all, s.Spec.Name)
		if _, ok := s.Spec.Labels[contract.LabelFunction]; ok {
			functions = append(functions, s.Spec.Name)
		}
	}
	slices.Sort(all)
	slices.Sort(functions)
	return all, functions, err
}

// inspectService reads the service name.
func inspectService(ctx context.Context, api *client.Client, name string) (swarm.Service, error) {
	return engineCall(ctx, "inspect service "+name, func(c context.Context) (swarm.Service, error) {
		svc, _, err := api.ServiceInspectWithRaw(c, name, swarm.ServiceInspectOptions{})
		return svc, err
	})
}

// taskIDs lists the IDs of the tasks f selects.
func taskIDs(ctx context.Context, api *client.Client, f filters.Args) (map[string]bool, error) {
	tasks, err := engineCall(ctx, "list tasks", func(c context.Context) ([]swarm.Task, error) {
		return api.TaskList(c, swarm.TaskListOptions{Filters: f})
	})
	ids := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		ids[t.ID] = true
	}
	return ids, err
}

// serviceContainers lists the IDs of the service name's running containers.
func serviceContainers(ctx context.Context, api *client.Client, name string) ([]string, error) {
	cs, err := engineCall(ctx, "list containers of "+name, func(c context.Context) ([]container.Summary, error) {
		return api.ContainerList(c, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelSwarmServiceName+"="+name))})
	})
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, err
}

// waitContainers waits up to timeout until exactly n containers of name run.
func waitContainers(ctx context.Context, api *client.Client, name string, n int, timeout time.Duration) error {
	return poll(ctx, timeout, 50*time.Millisecond, func(late bool) (bool, error) {
		ids, err := serviceContainers(ctx, api, name)
		if err == nil && late && len(ids) != n {
			err = fmt.Errorf("%s: %d containers running after %s, want %d", name, len(ids), timeout, n)
		}
		return err == nil && len(ids) == n, err
	})
}

// waitReplicas waits up to readyTimeout until name has exactly n ready
// replicas and no other running container (a drained one lingers).
func waitReplicas(ctx context.Context, sw *function.Swarm, api *client.Client, name string, n int) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := sw.WaitReady(wctx, name, n); err != nil {
		return err
	}
	return waitContainers(ctx, api, name, n, readyTimeout-time.Since(start))
}

// removeFunction removes a function (service, containers, image), if there;
// it also runs after an interrupt: only removeTimeout bounds it.
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
	_, err := rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:]), err
}

// benchInstance is a run's own Pulse instance (label pulse.instance): no
// other pulsed routes, scales or idles the run's functions.
func benchInstance(run string) string { return "bench-" + run }

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// every calls f at once and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for f(); ; f() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll calls try at once and then every interval until it is done, fails,
// or ctx ends; after timeout, late is set and try returns what it awaited.
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

// rewroteNote notes that replicas were not called at the engine's addresses.
const rewroteNote = "the swarm node's address is not loopback: replicas were called at 127.0.0.1 on their published ports instead"

// runStage runs the stage name with f, then after (if set), if stages lists
// it. A failed stage leaves a note; only an interrupt stops the suite.
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
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	log.Warn("stage stopped", "stage", name, "err", err)
	*notes = append(*notes, fmt.Sprintf("stage %s stopped: %v", name, err))
	return nil
}

// rotate returns vs rotated left by k: round k starts with variant k.
func rotate[T any](vs []T, k int) []T {
	if len(vs) == 0 {
		return nil
	}
	k %= len(vs)
	return append(append([]T(nil), vs[k:]...), vs[:k]...)
}

// engineSweep removes what a suite left on the engine: services and containers
// mine accepts, images images selects (and imageMine accepts), the credential.
type engineSweep struct {
	api       *client.Client
	log       *slog.Logger
	mine      func(name string) bool
	remove    func(ctx context.Context, service string) error
	images    filters.Args
	imageMine func(labels map[string]string) bool
	cred      *runCredential
}

// run removes everything the sweep matches and returns found with what it
// found and failed to do added; it logs what it removed.
func (s engineSweep) run(ctx context.Context, found []string) []string {
	warn := func(err error) {
		if err != nil {
			s.log.Warn("cleanup", "err", err)
			found = append(found, err.Error())
		}
	}
	svcs, err := listServices(ctx, s.api)
	warn(err)
	for _, sv := range svcs {
		if name := sv.Spec.Name; s.mine(name) {
			found = append(found, "service "+name)
			if err := s.remove(ctx, name); err != nil {
				warn(fmt.Errorf("remove %s: %w", name, err))
			}
		}
	}
	cs, err := engineCall(ctx, "list containers", func(c context.Context) ([]container.Summary, error) {
		return s.api.ContainerList(c, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelSwarmServiceName))})
	})
	warn(err)
	for _, c := range cs {
		if id := c.ID[:12]; s.mine(c.Labels[labelSwarmServiceName]) {
			found = append(found, "container "+id)
			warn(engineDo(ctx, "remove container "+id, func(cc context.Context) error {
				return s.api.ContainerRemove(cc, c.ID, container.RemoveOptions{Force: true})
			}))
		}
	}
	imgs, err := engineCall(ctx, "list images", func(c context.Context) ([]image.Summary, error) {
		return s.api.ImageList(c, image.ListOptions{All: true, Filters: s.images})
	})
	warn(err)
	for _, img := range imgs {
		if s.imageMine == nil || s.imageMine(img.Labels) {
			found = append(found, "image "+img.ID)
			warn(engineDo(ctx, "remove image "+img.ID, func(c context.Context) error {
				_, err := s.api.ImageRemove(c, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
				return err
			}))
		}
	}
	// The credential last: Docker keeps a secret while a service uses it.
	for _, f := range s.cred.remove(s.api) {
		s.log.Warn("cleanup", "what", f)
		found = append(found, f)
	}
	if len(found) > 0 {
		s.log.Info("cleanup: removed what was left", "found", strings.Join(found, "; "))
	}
	return found
}

// runCredential is a run's replica credential, made as pulsed does (the run
// is its own instance): a file for pulsed and the collector, and a secret.
type runCredential struct {
	instance, value string
	path            string // 0640 root:netdata where the netdata group exists, else in the run's directory
	rmFile          func()
}

// newRunCredential creates the credential file for instance (tmp is the
// run's directory) and, if api is not nil, the instance's secret.
func newRunCredential(ctx context.Context, api credential.SecretAPI, instance, tmp string) (*runCredential, error) {
	c := &runCredential{instance: instance, path: filepath.Join(tmp, "replica-auth")}
	c.rmFile = func() { _ = os.Remove(c.path) }
	if _, err := user.LookupGroup("netdata"); err == nil {
		if c.path, c.rmFile, err = netdatalab.ReplicaAuthFile(""); err != nil {
			return nil, fmt.Errorf("replica credential: %w", err)
		}
	}
	v, err := credential.ReadOrCreateReplicaAuth(c.path)
	if err == nil && api != nil {
		cctx, cancel := call(ctx)
		defer cancel()
		_, err = credential.EnsureReplicaAuthSecret(cctx, api, instance, v)
	}
	if err != nil {
		c.rmFile()
		return nil, fmt.Errorf("replica credential of instance %s: %w", instance, err)
	}
	c.value = v
	return c, nil
}

// header is the credential as a request header.
func (c *runCredential) header() http.Header {
	if c == nil {
		return nil
	}
	return http.Header{contract.HeaderReplicaAuth: {c.value}}
}

// pulsedEnv points pulsed's replica_auth_file at the credential file.
func (c *runCredential) pulsedEnv() string {
	return contract.EnvReplicaAuthFile + "=" + c.path
}

// remove removes the credential file and every secret labelled with the
// run's instance, after the run's services; it returns what it could not.
func (c *runCredential) remove(api credential.SecretAPI) []string {
	return c.removeWithin(30*time.Second, api)
}

// removeWithin is remove waiting up to wait for a secret still in use.
func (c *runCredential) removeWithin(wait time.Duration, api credential.SecretAPI) []string {
	if c == nil {
		return nil
	}
	defer c.rmFile()
	if api == nil {
		return nil
	}
	deadline := time.Now().Add(wait)
	list, err := engineCall(context.Background(), "secrets of instance "+c.instance+": list", func(ctx context.Context) ([]swarm.Secret, error) {
		return api.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+c.instance))})
	})
	if err != nil {
		return []string{err.Error()}
	}
	var left []string
	for _, s := range list {
		if s.Spec.Labels[contract.LabelInstance] != c.instance {
			continue
		}
		for {
			err := engineDo(context.Background(), "secret "+s.Spec.Name, func(ctx context.Context) error { return api.SecretRemove(ctx, s.ID) })
			if err == nil || errdefs.IsNotFound(err) {
				break
			}
			if inUse := errdefs.IsInvalidParameter(err) || strings.Contains(err.Error(), "in use"); !inUse || time.Now().After(deadline) {
				left = append(left, err.Error())
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return left
}
