package main

// The cluster suite's failover stage: a worker killed or frozen under an open-loop load.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/bench/report"
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

// failover runs, per setting, rounds of a kill and a pause, on the workers in turn.
func (b *clusterBench) failover(ctx context.Context) error {
	settings := []pulsedSetting{clusterDefaults}
	if i := slices.IndexFunc(clusterFastCandidates, func(s pulsedSetting) bool { return s.Name == b.plan.Fast }); i >= 0 {
		settings = append(settings, clusterFastCandidates[i])
	} else {
		b.rep.Note("failover: no faster health-check setting kept a saturated replica in rotation (or the saturation stage did not run): pulsed's defaults only")
	}
	workers, faults := b.lab.nodes[1:], []string{faultKill, faultPause}
	for _, s := range settings {
		if err := b.usePulsed(ctx, s); err != nil {
			return err
		}
		for round := range b.plan.Trials {
			for _, kind := range rotate(faults, round) {
				if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
					return err
				}
				node := &workers[(round+slices.Index(faults, kind))%len(workers)]
				r := report.NewRow("failover", "pulsed", s.Name, "fault", kind, "round", round+1, "node", node.Name)
				back := b.failTrial(ctx, r, kind, node)
				b.rep.Add(r)
				b.log.Info("failover trial", "setting", s.Name, "fault", kind, "node", node.Name, "window_s", r.V("error_window_s"),
					"restored_s", r.V("restored_s"), "failed", r.V("failed"), "err", r.Error, "flags", r.Flags)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !back {
					return fmt.Errorf("%s of %s: the cluster did not come back: %s%v", kind, node.Name, r.Error, r.Flags)
				}
			}
		}
	}
	return nil
}

// failTrial runs one fault of node under load into r and undoes it; false: the cluster is not back.
func (b *clusterBench) failTrial(ctx context.Context, r *report.Row, kind string, node *labNode) bool {
	load := startHostLoad(b.gwAddr, "/function/"+b.host, clusterLoadRate, clusterLoadMax)
	steady := time.Now()
	if err := sleepCtx(ctx, failSteady); err != nil {
		load.end()
		r.Fail(err)
		return true
	}
	if len(load.answered(steady)) == 0 {
		reqs, _ := load.end()
		r.Fail(fmt.Errorf("no request answered in the %s before the fault (%d tried)", failSteady, len(reqs)))
		return true
	}
	t0 := time.Now()
	if err := b.lab.nodeOp(ctx, kind, node); err != nil {
		load.end()
		r.Fail(err)
		return false
	}
	werr := b.watchRecovery(ctx, r, t0, *node, load)
	if werr == nil {
		_ = sleepCtx(ctx, failAfter)
	} else {
		r.Flag("%v", werr)
	}
	reqs, skipped := load.end()
	putRequests(r, reqs, t0)
	r.Put("skipped", float64(skipped))
	err := b.lab.nodeOp(context.WithoutCancel(ctx), undoFault[kind], node)
	if err == nil {
		err = b.lab.waitNodesReady(ctx, failNodeUp)
	}
	if err == nil {
		err = b.rebalance(ctx)
	}
	if err != nil {
		r.Flag("%v", err)
	}
	return err == nil
}

// putRequests puts the load's figures into r; error window: last failed start − t0 (fault), ≥ 0.
func putRequests(r *report.Row, reqs []hostReq, t0 time.Time) {
	var failed, window float64
	for _, q := range reqs {
		if q.Err != "" {
			failed, window = failed+1, max(window, report.Round3(q.Start.Sub(t0).Seconds()))
		}
	}
	r.PutAll(map[string]float64{"requests": float64(len(reqs)), "failed": failed, "error_window_s": window})
}

// watchRecovery polls until the node is out of HAProxy and Down and 3 replicas off it answered.
func (b *clusterBench) watchRecovery(ctx context.Context, r *report.Row, t0 time.Time, node labNode, load *hostLoad) error {
	at := func() float64 { return report.Round3(time.Since(t0).Seconds()) }
	seen := func(m string) bool { _, ok := r.Values[m]; return ok }
	var tasks []contract.Replica
	var last []string
	return poll(ctx, failBound, failPoll, func(late bool) (bool, error) {
		last = last[:0]
		if !seen("left_haproxy_s") {
			if rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.host)); err != nil {
				last = append(last, err.Error())
			} else if upAt(rows, node.Addr) == 0 {
				r.Put("left_haproxy_s", at())
			} else {
				last = append(last, "servers at the node still UP")
			}
		}
		if !seen("node_down_s") {
			if states, _, err := b.lab.nodeStates(ctx); err != nil {
				last = append(last, err.Error())
			} else if states[node.Name] == swarm.NodeStateDown {
				r.Put("node_down_s", at())
			} else {
				last = append(last, fmt.Sprintf("node %s", states[node.Name]))
			}
		}
		if !seen("routed_s") {
			if f, err := b.catalogFunction(ctx, b.host); err != nil {
				last = append(last, err.Error())
			} else if tasks = routedAway(f.Replicas, node.Addr); len(tasks) == clusterReplicas {
				r.Put("routed_s", at())
			} else {
				last = append(last, fmt.Sprintf("%d routed replicas off the node", len(tasks)))
			}
		}
		if seen("routed_s") && !seen("restored_s") {
			answered, latest, missing := load.answered(t0), t0.Add(time.Duration(r.V("routed_s")*float64(time.Second))), 0
			for _, t := range tasks {
				if when, ok := answered[t.TaskID]; !ok {
					missing++
				} else if when.After(latest) {
					latest = when
				}
			}
			if missing == 0 {
				r.Put("restored_s", report.Round3(latest.Sub(t0).Seconds()))
			} else {
				last = append(last, fmt.Sprintf("%d routed replicas have not answered", missing))
			}
		}
		if late && len(last) > 0 {
			return false, fmt.Errorf("after %s: %s", failBound, strings.Join(last, "; "))
		}
		return len(last) == 0, nil
	})
}

// upAt counts the servers at host's address UP (going down included).
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

// waitTasks waits until exactly n tasks of the function run, and counts them by node.
func (b *clusterBench) waitTasks(ctx context.Context, n int) (spread map[string]int, err error) {
	err = poll(ctx, failRespawn, 200*time.Millisecond, func(late bool) (bool, error) {
		cctx, cancel := call(ctx)
		tasks, err := b.lab.mgr.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", b.host), filters.Arg("desired-state", "running"))})
		cancel()
		_, names, nerr := b.lab.nodeStates(ctx)
		running := 0
		spread = map[string]int{}
		for _, t := range tasks {
			if t.Status.State == swarm.TaskStateRunning {
				spread[names[t.NodeID]]++
				running++
			}
		}
		if err = errors.Join(err, nerr); err == nil && running == n {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("%s: %d tasks running after %s, want %d (%v)", b.host, running, failRespawn, n, err)
		}
		return false, nil
	})
	return spread, err
}

// rebalance spreads the replicas one per node again (scaling 3→4→3) until pulsed routes them.
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

// hostReq is a request of the failover's load: the task that answered, or why it failed.
type hostReq struct {
	Start, End time.Time
	Task, Err  string
}

// hostLoad is an open-loop keep-alive load, never retried; beyond maxInflight, skipped.
type hostLoad struct {
	mu      sync.Mutex
	reqs    []hostReq
	skipped int
	stop    chan struct{}
	wg      sync.WaitGroup
	client  *http.Client
}

// hostLoadBody is what every request sends.
const hostLoadBody = "hi"

// startHostLoad starts rate POSTs a second to path at addr.
func startHostLoad(addr, path string, rate, maxInflight int) *hostLoad {
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, MaxIdleConnsPerHost: maxInflight}
	l := &hostLoad{stop: make(chan struct{}), client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	slots := make(chan struct{}, maxInflight)
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
				l.wg.Go(func() {
					r := l.one("http://" + addr + path)
					l.mu.Lock()
					l.reqs = append(l.reqs, r)
					l.mu.Unlock()
					<-slots
				})
			default:
				l.mu.Lock()
				l.skipped++
				l.mu.Unlock()
			}
		}
	})
	return l
}

// one sends a request (no GetBody: the transport never sends it again).
func (l *hostLoad) one(url string) (r hostReq) {
	r = hostReq{Start: time.Now(), Err: "send"}
	defer func() { r.End = time.Now() }()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(hostLoadBody))
	if err != nil {
		return r
	}
	req.GetBody = nil
	resp, err := l.client.Do(req)
	if err != nil {
		return r
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	host, got, ok := strings.Cut(string(body), ":")
	switch {
	case err != nil:
		r.Err = "read"
	case resp.StatusCode != http.StatusOK:
		r.Err = fmt.Sprintf("status %d", resp.StatusCode)
	case !ok || got != hostLoadBody || host == "":
		r.Err = "answer"
	default:
		r.Task, r.Err = taskOfHost(host), ""
	}
	return r
}

// taskOfHost is the task ID in a replica's host name (name.slot.taskid).
func taskOfHost(host string) string { return host[strings.LastIndexByte(host, '.')+1:] }

// answered is when each task first answered a request started since t.
func (l *hostLoad) answered(t time.Time) map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for _, r := range l.reqs {
		if _, seen := out[r.Task]; r.Err == "" && !seen && !r.Start.Before(t) {
			out[r.Task] = r.End
		}
	}
	return out
}

// end stops the load and returns every request and the skipped count.
func (l *hostLoad) end() ([]hostReq, int) {
	close(l.stop)
	l.wg.Wait()
	l.client.CloseIdleConnections()
	return l.reqs, l.skipped
}
