package provision

import (
	"context"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// RemoveOptions tune RemoveNode.
type RemoveOptions struct {
	// DrainTimeout bounds the wait until the node's tasks have left;
	// default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Force removes a node that cannot be reached over SSH (or has no SSH
	// label) from the swarm without making it leave.
	Force    bool
	Progress func(string)
}

// RemoveResult is what RemoveNode did.
type RemoveResult struct {
	Name    string
	ID      string
	Left    bool // the node left the swarm itself (false: removed with Force)
	Elapsed time.Duration
}

// NodeDialer reaches a node's engine over SSH; close releases it.
type NodeDialer func(ctx context.Context, t Target) (api NodeAPI, close func(), err error)

// EngineDialer is the NodeDialer of Dial and Client.Engine with cfg.
func EngineDialer(cfg Config) NodeDialer {
	return func(ctx context.Context, t Target) (NodeAPI, func(), error) {
		c, err := Dial(ctx, cfg, t)
		if err != nil {
			return nil, nil, err
		}
		eng, err := c.Engine(ctx)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		return eng, func() { eng.Close(); c.Close() }, nil
	}
}

// RemoveNode takes the node named name (hostname, ID, SSH target or host,
// or address) out of the swarm: it refuses the manager the CLI talks to and
// the last manager; demotes a manager; drains the node and waits, bounded,
// until its tasks have left; makes it leave over SSH (its
// contract.LabelNodeSSH label); then removes it from the manager's list.
func RemoveNode(ctx context.Context, mgr ManagerAPI, name string, dial NodeDialer, opts RemoveOptions) (RemoveResult, error) {
	start := time.Now()
	res, err := removeNode(ctx, mgr, name, dial, opts)
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("remove node %s: %w", name, err)
	}
	return res, nil
}

func removeNode(ctx context.Context, mgr ManagerAPI, name string, dial NodeDialer, opts RemoveOptions) (RemoveResult, error) {
	progress := func(format string, a ...any) {
		if opts.Progress != nil {
			opts.Progress(fmt.Sprintf(format, a...))
		}
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	nodes, err := ListNodes(ctx, mgr)
	if err != nil {
		return RemoveResult{}, err
	}
	n, err := findNode(nodes, name)
	if err != nil {
		return RemoveResult{}, err
	}
	res := RemoveResult{Name: n.Name, ID: n.ID}
	if n.Self {
		return res, fmt.Errorf("%w: %s is the manager pulse talks to (docker_host); point docker_host at another manager first", ErrRefused, n.Name)
	}
	if n.Role == string(swarm.NodeRoleManager) {
		managers := 0
		for _, o := range nodes {
			if o.Role == string(swarm.NodeRoleManager) {
				managers++
			}
		}
		if managers <= 1 {
			return res, fmt.Errorf("%w: %s is the swarm's last manager", ErrRefused, n.Name)
		}
	}
	// Reach it first: a node that cannot leave is not drained for nothing.
	var api NodeAPI
	var closeAPI func()
	var reachErr error
	if n.SSH == "" {
		reachErr = fmt.Errorf("it has no %s label (it was not added with `pulse node add`)", contract.LabelNodeSSH)
	} else if t, err := ParseTarget(n.SSH); err != nil {
		reachErr = fmt.Errorf("its %s label: %w", contract.LabelNodeSSH, err)
	} else if api, closeAPI, err = dial(ctx, t); err != nil {
		reachErr = err
	}
	if closeAPI != nil {
		defer closeAPI()
	}
	if reachErr != nil && !opts.Force {
		return res, fmt.Errorf("cannot make it leave the swarm: %w; run `docker swarm leave` on the node yourself, or add --force to remove it from the swarm without that (if it comes back it must leave before it can join again)", reachErr)
	}
	if n.Role == string(swarm.NodeRoleManager) {
		progress("demoting (a manager)")
		if _, err := updateNode(ctx, mgr, n.ID, func(s *swarm.NodeSpec) bool {
			if s.Role == swarm.NodeRoleWorker {
				return false
			}
			s.Role = swarm.NodeRoleWorker
			return true
		}); err != nil {
			return res, err
		}
	}
	if _, err := updateNode(ctx, mgr, n.ID, func(s *swarm.NodeSpec) bool {
		if s.Availability == swarm.NodeAvailabilityDrain {
			return false
		}
		s.Availability = swarm.NodeAvailabilityDrain
		return true
	}); err != nil {
		return res, err
	}
	progress("draining")
	// From here on the node is drained (and demoted, if it was a
	// manager): an error says so, and how to go on or back.
	drained := func(err error) error {
		return fmt.Errorf("%w; node %s is now drained: run pulse node rm again to finish, or `docker node update --availability active %s` to keep it", err, n.Name, n.Name)
	}
	if err := waitDrained(ctx, mgr, n.ID, opts.DrainTimeout); err != nil {
		return res, drained(err)
	}
	if api != nil {
		if err := leave(ctx, api, n.Role == string(swarm.NodeRoleManager), opts.DrainTimeout); err != nil {
			return res, drained(err)
		}
		res.Left = true
		progress("left the swarm")
	} else {
		progress("not reachable (%v): removing it without leaving (--force)", reachErr)
	}
	// Forced: the node has left (or cannot be asked to), and a node that
	// left stays "ready" in the list until its heartbeat times out.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := mgr.NodeRemove(rctx, n.ID, swarm.NodeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return res, fmt.Errorf("remove %s from the swarm: %w", shortNodeID(n.ID), err)
	}
	return res, nil
}

// findNode finds the one node name designates.
func findNode(nodes []NodeInfo, name string) (NodeInfo, error) {
	var found []NodeInfo
	for _, n := range nodes {
		if n.Name == name || n.ID == name || n.SSH == name || n.Addr == name ||
			(n.SSH != "" && sshHost(n.SSH) == name) || (len(name) >= 6 && strings.HasPrefix(n.ID, name)) {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		return NodeInfo{}, fmt.Errorf("%w %q in the swarm (it has: %s); `pulse node ls` lists them", ErrNoNode, name, strings.Join(names, ", "))
	}
	ids := make([]string, len(found))
	for i, n := range found {
		ids[i] = n.Name + " " + shortNodeID(n.ID)
	}
	return NodeInfo{}, fmt.Errorf("%q names %d nodes (%s): give a node ID", name, len(found), strings.Join(ids, ", "))
}

func sshHost(s string) string {
	t, err := parseTarget(s, func() (string, error) { return "", nil })
	if err != nil {
		return ""
	}
	return t.Host
}

// waitDrained waits until no task of node id runs or is meant to.
func waitDrained(ctx context.Context, mgr ManagerAPI, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	left := 0
	for {
		tasks, err := mgr.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("node", id))})
		if err == nil {
			left = 0
			for _, t := range tasks {
				if t.DesiredState == swarm.TaskStateRunning || isActiveTask(t.Status.State) {
					left++
				}
			}
			if left == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d task(s) still on node %s after %v of draining; see `docker node ps %s`", left, shortNodeID(id), timeout, shortNodeID(id))
		case <-time.After(pollInterval):
		}
	}
}

func isActiveTask(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateAssigned, swarm.TaskStateAccepted, swarm.TaskStatePreparing,
		swarm.TaskStateReady, swarm.TaskStateStarting, swarm.TaskStateRunning:
		return true
	}
	return false
}

// leave makes the node leave its swarm. A demoted manager may still see
// itself as a manager for a moment, when leave without force is refused:
// that is retried until timeout.
func leave(ctx context.Context, api NodeAPI, wasManager bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := api.SwarmLeave(ctx, false)
		switch {
		case err == nil:
			return nil
		case strings.Contains(err.Error(), "not part of a swarm"):
			return nil
		case !wasManager || ctx.Err() != nil:
			return fmt.Errorf("leave the swarm (on the node): %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leave the swarm (on the node): %w", err)
		case <-time.After(pollInterval):
		}
	}
}
