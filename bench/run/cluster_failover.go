package main

// The cluster suite's failover: a worker killed, and a worker frozen, under
// steady load through the gateway to the 3-replica function (one replica
// per node), with pulsed at its defaults and then with the faster health
// checks the saturation kept (if any). Every 100 ms from the fault on, the
// harness reads HAProxy's servers (show stat), pulsed's catalog and the
// manager's node list; the load's records say which replica answered each
// request and which requests failed. Then the node comes back, Ready, and
// the replicas are spread again (3→4→3) before the next trial.

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// Settings of the failover.
const (
	failPoll    = 100 * time.Millisecond
	failSteady  = 2 * time.Second  // load before the fault
	failAfter   = 2 * time.Second  // load after every replica answers again
	failBound   = time.Minute      // the longest a trial waits for the cluster to recover
	failNodeUp  = 90 * time.Second // a node Ready again after start or unpause
	failRespawn = 90 * time.Second // a scale's tasks running
)

// failover runs the trials: for each setting (pulsed's defaults, then the
// faster one the saturation kept), trials rounds of a kill and a pause,
// the order alternating per round, each on one of the workers in turn.
func (b *clusterBench) failover(ctx context.Context) error {
	settings := []pulsedSetting{clusterDefaults}
	if b.rep.Fast != nil {
		settings = append(settings, *b.rep.Fast)
	} else {
		b.rep.Notes = append(b.rep.Notes, "failover: no faster health-check setting kept a saturated replica in rotation (or the saturation stage did not run): pulsed's defaults only")
	}
	workers := b.lab.nodes[1:]
	for _, s := range settings {
		if b.setting.Name != s.Name || b.pulsed == nil {
			if err := b.startPulsed(ctx, s); err != nil {
				return err
			}
		}
		for r := range b.trials {
			for _, kind := range rotate([]string{faultKill, faultPause}, r) {
				if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
					return err
				}
				// Each fault on each worker in turn, round by round.
				node := &workers[(r+slices.Index([]string{faultKill, faultPause}, kind))%len(workers)]
				tr, back := b.failTrial(ctx, s.Name, kind, r, node)
				b.rep.Failover = append(b.rep.Failover, tr)
				b.log.Info("failover trial", "setting", s.Name, "fault", kind, "node", tr.Node, "window_s", tr.WindowS,
					"restored_s", tr.RestoredS, "failed", tr.Failed, "left_s", tr.LeftS, "down_s", tr.DownS, "err", tr.Error)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !back {
					return fmt.Errorf("%s of %s: the cluster did not come back: %s", kind, tr.Node, tr.Error)
				}
			}
		}
	}
	return nil
}

// failTrial runs one fault of node under load and brings the cluster back;
// back says the cluster is as before the trial (no fault made, or undone and
// the replicas spread again).
func (b *clusterBench) failTrial(ctx context.Context, setting, kind string, round int, node *labNode) (tr failTrial, back bool) {
	nan := secs(math.NaN())
	tr = failTrial{Setting: setting, Fault: kind, Round: round, Node: node.Name,
		LastFailStartS: nan, WindowS: nan, LeftS: nan, DownS: nan, RoutedS: nan, RestoredS: nan, RunningS: nan, BackS: nan, RebalanceS: nan}
	path := "/function/" + b.host
	load := startHostLoad(b.gwAddr, path, clusterLoadRate, clusterLoadMax)
	steady := time.Now()
	if err := sleepCtx(ctx, failSteady); err != nil {
		load.end()
		tr.Error = err.Error()
		return tr, true
	}
	if load.okSince(steady) == 0 {
		reqs, _ := load.end()
		tr.Error = fmt.Sprintf("no request answered in the %s before the fault (%d tried)", failSteady, len(reqs))
		return tr, true
	}
	t0 := time.Now()
	load.mark(t0)
	err := b.lab.fault(ctx, kind, *node)
	tr.CallS = secondsSince(t0)
	if err != nil {
		load.end()
		tr.Error = err.Error()
		return tr, false
	}
	obs, werr := b.watchRecovery(ctx, t0, *node, load)
	if werr == nil {
		_ = sleepCtx(ctx, failAfter)
	}
	reqs, skipped := load.end()
	summarizeFailTrial(&tr, reqs, t0)
	tr.Skipped = skipped
	tr.LeftS, tr.DownS, tr.RoutedS, tr.RestoredS, tr.NewNode = r3(obs.left), r3(obs.down), r3(obs.routed), r3(obs.restored), obs.newNode
	if !obs.newRunning.IsZero() {
		tr.RunningS = r3(secs(obs.newRunning.Sub(t0).Seconds()))
	}
	if werr != nil {
		tr.Error = werr.Error()
	}
	// Back: the node, then the spread.
	start := time.Now()
	if err := b.lab.restore(context.WithoutCancel(ctx), kind, node); err != nil {
		tr.Error = strings.TrimPrefix(tr.Error+"; "+err.Error(), "; ")
		return tr, false
	}
	if err := b.lab.waitNodesReady(ctx, failNodeUp); err != nil {
		tr.Error = strings.TrimPrefix(tr.Error+"; "+err.Error(), "; ")
		return tr, false
	}
	tr.BackS = secs(secondsSince(start))
	start = time.Now()
	if err := b.rebalance(ctx); err != nil {
		tr.Error = strings.TrimPrefix(tr.Error+"; "+err.Error(), "; ")
		return tr, false
	}
	tr.RebalanceS = secs(secondsSince(start))
	return tr, true
}

// recovery is what the pollers saw after a fault, seconds after it (NaN:
// not seen).
type recovery struct {
	left, down, routed, restored secs
	newNode                      string
	newRunning                   time.Time // when Swarm reported the replacement running
}

// watchRecovery polls every failPoll, up to failBound, until the node's
// servers are out of HAProxy, the manager lists it Down, pulsed routes 3
// replicas none of which is on it, and each has answered through the
// gateway.
func (b *clusterBench) watchRecovery(ctx context.Context, t0 time.Time, node labNode, load *hostLoad) (recovery, error) {
	nan := secs(math.NaN())
	obs := recovery{left: nan, down: nan, routed: nan, restored: nan}
	at := func() secs { return secs(time.Since(t0).Seconds()) }
	backend := gateway.BackendName(b.host)
	var tasks []contract.Replica
	var last []string
	err := poll(ctx, failBound, failPoll, func(late bool) (bool, error) {
		last = last[:0]
		if math.IsNaN(float64(obs.left)) {
			if rows, err := serverStats(ctx, b.rt, backend); err != nil {
				last = append(last, err.Error())
			} else if upAt(rows, node.Addr) == 0 {
				obs.left = at()
			} else {
				last = append(last, "servers at the node still UP")
			}
		}
		if math.IsNaN(float64(obs.down)) {
			if states, _, err := b.lab.nodeStates(ctx); err != nil {
				last = append(last, err.Error())
			} else if states[node.Name] == swarm.NodeStateDown {
				obs.down = at()
			} else {
				last = append(last, fmt.Sprintf("node %s", states[node.Name]))
			}
		}
		if math.IsNaN(float64(obs.routed)) {
			if f, err := b.catalogFunction(ctx, b.host); err != nil {
				last = append(last, err.Error())
			} else if rs := routedAway(f.Replicas, node.Addr); len(rs) == clusterReplicas {
				obs.routed, tasks = at(), rs
			} else {
				last = append(last, fmt.Sprintf("%d routed replicas off the node", len(rs)))
			}
		}
		if !math.IsNaN(float64(obs.routed)) && math.IsNaN(float64(obs.restored)) {
			answered := load.answered()
			latest := t0.Add(time.Duration(float64(obs.routed) * float64(time.Second)))
			missing := 0
			for _, r := range tasks {
				if t, ok := answered[r.TaskID]; !ok {
					missing++
				} else if t.After(latest) {
					latest = t
				}
			}
			if missing == 0 {
				obs.restored = secs(latest.Sub(t0).Seconds())
			} else {
				last = append(last, fmt.Sprintf("%d routed replicas have not answered", missing))
			}
		}
		if len(last) == 0 {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("after %s: %s", failBound, strings.Join(last, "; "))
		}
		return false, nil
	})
	if len(tasks) > 0 {
		obs.newNode, obs.newRunning = b.newReplica(ctx, tasks)
	}
	return obs, err
}

// upAt counts the servers at host's address that are UP (going down, "UP
// 1/3", included: they still take requests).
func upAt(rows []gateway.ServerStat, host string) int {
	n := 0
	for _, s := range rows {
		if h, _, err := net.SplitHostPort(s.Addr); err == nil && h == host && strings.HasPrefix(s.Status, "UP") {
			n++
		}
	}
	return n
}

// routedAway is the routed, not draining, replicas not at host's address.
func routedAway(rs []contract.Replica, host string) []contract.Replica {
	var out []contract.Replica
	for _, r := range rs {
		if h, _, err := net.SplitHostPort(r.Addr); r.Routed && !r.Draining && err == nil && h != host {
			out = append(out, r)
		}
	}
	return out
}

// newReplica names the node of the replica among rs that Swarm created
// last (the replacement), "" if unknown, and when Swarm reported it running
// (its status's time: the manager's clock, this machine's).
func (b *clusterBench) newReplica(ctx context.Context, rs []contract.Replica) (string, time.Time) {
	cctx, cancel := call(ctx)
	defer cancel()
	tasks, err := b.lab.mgr.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", b.host))})
	if err != nil {
		return "", time.Time{}
	}
	_, names, _ := b.lab.nodeStates(ctx)
	var newest swarm.Task
	for _, t := range tasks {
		for _, r := range rs {
			if r.TaskID == t.ID && t.CreatedAt.After(newest.CreatedAt) {
				newest = t
			}
		}
	}
	var running time.Time
	if newest.Status.State == swarm.TaskStateRunning {
		running = newest.Status.Timestamp
	}
	return names[newest.NodeID], running
}

// taskSpread maps each node's host name to the number of the function's
// tasks that should run and do run there.
func (b *clusterBench) taskSpread(ctx context.Context) (map[string]int, int, error) {
	cctx, cancel := call(ctx)
	tasks, err := b.lab.mgr.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", b.host), filters.Arg("desired-state", "running"))})
	cancel()
	if err != nil {
		return nil, 0, fmt.Errorf("tasks of %s: %w", b.host, err)
	}
	_, names, err := b.lab.nodeStates(ctx)
	if err != nil {
		return nil, 0, err
	}
	spread, running := map[string]int{}, 0
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning {
			spread[names[t.NodeID]]++
			running++
		}
	}
	return spread, running, nil
}

// waitTasks waits until n tasks of the function run (and no more).
func (b *clusterBench) waitTasks(ctx context.Context, n int) (map[string]int, error) {
	var spread map[string]int
	err := poll(ctx, failRespawn, 200*time.Millisecond, func(late bool) (bool, error) {
		s, running, err := b.taskSpread(ctx)
		if err == nil && running == n {
			spread = s
			return true, nil
		}
		if late {
			return false, fmt.Errorf("%s: %d tasks running after %s, want %d (%v)", b.host, running, failRespawn, n, err)
		}
		return false, nil
	})
	return spread, err
}

// rebalance spreads the function's 3 replicas over the 3 nodes again:
// Swarm does not move running tasks back to a node that returns, so it
// scales 3→4 (the 4th task goes to the node without one) and back to 3
// (Swarm removes a task from a node with the most), up to 3 times; then,
// with pulsed running, it waits until HAProxy serves exactly 3 replicas.
func (b *clusterBench) rebalance(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		spread, err := b.waitTasks(ctx, clusterReplicas)
		if err != nil {
			return err
		}
		if len(spread) == clusterNodes {
			break
		}
		if attempt == 3 {
			return fmt.Errorf("%s: tasks spread %v after 3 rebalances, want one per node", b.host, spread)
		}
		for _, n := range []int{clusterReplicas + 1, clusterReplicas} {
			cctx, cancel := context.WithTimeout(ctx, failRespawn)
			err := b.sw.Scale(cctx, b.host, n, true)
			cancel()
			if err != nil {
				return err
			}
			if _, err := b.waitTasks(ctx, n); err != nil {
				return err
			}
		}
	}
	if b.pulsed == nil {
		return nil
	}
	if err := b.waitServers(ctx, b.host, clusterReplicas, true); err != nil {
		return err
	}
	return poll(ctx, clusterRoute, 100*time.Millisecond, func(late bool) (bool, error) {
		f, err := b.catalogFunction(ctx, b.host)
		hosts := map[string]bool{}
		for _, r := range f.Replicas {
			if h, _, _ := net.SplitHostPort(r.Addr); r.Routed && !r.Draining {
				hosts[h] = true
			}
		}
		if err == nil && len(hosts) == clusterNodes && len(f.Replicas) == clusterReplicas {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("pulsed routes %s at %d node addresses (%d replicas) after %s, want %d (%v)", b.host, len(hosts), len(f.Replicas), clusterRoute, clusterNodes, err)
		}
		return false, nil
	})
}
