package main

// The cluster suite's lab (lab/README.md): lab/lab.sh's nodes, their swarm,
// faults and cgroups.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/provision"
)

// labNode is a node: its container's (and host) name, address, and cgroup v1 path.
type labNode struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	cgroup string
}

// clusterLab is the running lab and the harness's clients of it.
type clusterLab struct {
	script              string
	env                 []string
	nodes               []labNode
	ssh                 provision.Config
	keyFile, knownHosts string
	host, mgr           *client.Client // this machine's engine; node1's over SSH (the manager)
	rem                 *provision.RemoteEngine
}

// Faults of a node (the API calls of docker kill and pause), and undoes.
const (
	faultKill  = "kill"
	faultPause = "pause"
)

var undoFault = map[string]string{faultKill: "start", faultPause: "unpause"}

// flockWait takes an exclusive flock on path, polling up to wait; what: what it guards.
func flockWait(ctx context.Context, log *slog.Logger, path, what string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for deadline, logged := time.Now().Add(wait), false; ; logged = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (%s is in use by another run; wait for it or stop it): %w", path, what, err)
		}
		if !logged {
			log.Info("waiting for a lock", "path", path, "for", what, "up_to", wait)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			f.Close()
			return nil, err
		}
	}
}

// newClusterLab describes the lab lab.sh starts in dir.
func newClusterLab(root, dir string, n int) *clusterLab {
	l := &clusterLab{script: filepath.Join(root, "lab", "lab.sh"),
		env:     append(os.Environ(), "PULSE_LAB_NODES="+strconv.Itoa(n), "PULSE_LAB_DIR="+dir),
		keyFile: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}
	for i := 1; i <= n; i++ {
		l.nodes = append(l.nodes, labNode{Name: fmt.Sprintf("pulse-lab-node%d", i), Addr: fmt.Sprintf("172.31.250.%d", 10+i)})
	}
	l.ssh = provision.Config{IdentityFiles: []string{l.keyFile}, KnownHosts: l.knownHosts}
	return l
}

// lab runs lab.sh arg; an interrupt or limit kills its process group.
func (l *clusterLab) lab(ctx context.Context, arg string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.script, arg)
	cmd.Env = l.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab %s: %w: %s", arg, err, report.Truncate(strings.TrimSpace(string(out)), 2000))
	}
	return nil
}

// target is root@n over SSH.
func target(n labNode) provision.Target {
	return provision.Target{User: "root", Host: n.Addr, Port: 22}
}

// up starts the lab afresh, node1 the swarm's manager over SSH, the others joined by AddNode.
func (l *clusterLab) up(ctx context.Context, log *slog.Logger) error {
	var err error
	if l.host, err = function.NewEngineClient(); err != nil {
		return err
	}
	if err := l.lab(ctx, "down", 2*time.Minute); err != nil {
		return err
	}
	if err := l.lab(ctx, "up", 10*time.Minute); err != nil {
		return err
	}
	for i := range l.nodes {
		if l.nodes[i].cgroup, err = l.nodeCgroup(ctx, l.nodes[i].Name); err != nil {
			return err
		}
	}
	if l.mgr, l.rem, err = provision.NewRemoteEngine(ctx, l.ssh, target(l.nodes[0]), nil); err != nil {
		return err
	}
	spec := swarm.Spec{Annotations: swarm.Annotations{Name: "default"}, Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: clusterHeartbeat}}
	cctx, cancel := call(ctx)
	_, err = l.mgr.SwarmInit(cctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: l.nodes[0].Addr, Spec: spec})
	cancel()
	if err != nil {
		return fmt.Errorf("swarm init on %s: %w", l.nodes[0].Name, err)
	}
	for _, n := range l.nodes[1:] {
		sc, err := provision.Dial(ctx, l.ssh, target(n))
		if err != nil {
			return err
		}
		res, err := provision.AddNode(ctx, l.mgr, sc, provision.AddOptions{})
		sc.Close()
		if err != nil {
			return err
		}
		log.Info("node joined", "node", res.Name, "role", res.Role, "took", res.Elapsed.Round(time.Millisecond))
	}
	return nil
}

// down thaws the nodes (a paused one may refuse removal) and removes the lab.
func (l *clusterLab) down() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if l.mgr != nil {
		l.mgr.Close()
		l.rem.Close()
		l.mgr, l.rem = nil, nil
	}
	if l.host != nil {
		for _, n := range l.nodes {
			cctx, ccancel := call(ctx)
			_ = l.host.ContainerUnpause(cctx, n.Name) // not paused: an error, ignored
			ccancel()
		}
		defer l.host.Close()
	}
	return l.lab(ctx, "down", 2*time.Minute)
}

// nodeCgroup is a node container's cgroup, from its init's /proc/<pid>/cgroup.
func (l *clusterLab) nodeCgroup(ctx context.Context, name string) (string, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	c, err := l.host.ContainerInspect(cctx, name)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", name, err)
	}
	if c.State == nil || c.State.Pid == 0 {
		return "", fmt.Errorf("%s is not running", name)
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.State.Pid), "cgroup"))
	if err != nil {
		return "", fmt.Errorf("cgroup of %s: %w", name, err)
	}
	return parseCgroupPath(string(b), "cpuacct")
}

// parseCgroupPath returns controller's path in a /proc/<pid>/cgroup file (v1).
func parseCgroupPath(s, controller string) (string, error) {
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && strings.Contains(","+f[1]+",", ","+controller+",") {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("no %s cgroup in %q (the lab needs cgroup v1)", controller, report.Truncate(s, 200))
}

// cgroupInt reads a number from n's cgroup (cpuacct.usage: ns of the node and its containers).
func (n labNode) cgroupInt(controller, file string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, n.cgroup, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// nodeStates maps the nodes' host names to their states, their IDs to their host names.
func (l *clusterLab) nodeStates(ctx context.Context) (map[string]swarm.NodeState, map[string]string, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	nodes, err := l.mgr.NodeList(cctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("node list: %w", err)
	}
	states, names := map[string]swarm.NodeState{}, map[string]string{}
	for _, n := range nodes {
		states[n.Description.Hostname], names[n.ID] = n.Status.State, n.Description.Hostname
	}
	return states, names, nil
}

// waitNodesReady waits up to limit until the manager lists every node Ready.
func (l *clusterLab) waitNodesReady(ctx context.Context, limit time.Duration) error {
	return poll(ctx, limit, 250*time.Millisecond, func(late bool) (bool, error) {
		states, _, err := l.nodeStates(ctx)
		var notReady []string
		for _, n := range l.nodes {
			if err != nil || states[n.Name] != swarm.NodeStateReady {
				notReady = append(notReady, fmt.Sprintf("%s %s", n.Name, states[n.Name]))
			}
		}
		if late && len(notReady) > 0 {
			return false, fmt.Errorf("nodes not Ready after %s: %s (last error: %v)", limit, strings.Join(notReady, ", "), err)
		}
		return len(notReady) == 0, nil
	})
}

// nodeOp kills, pauses, starts or unpauses n; an undone node's cgroup is read again.
func (l *clusterLab) nodeOp(ctx context.Context, op string, n *labNode) error {
	cctx, cancel := call(ctx)
	defer cancel()
	var err error
	switch op {
	case faultKill:
		err = l.host.ContainerKill(cctx, n.Name, "KILL")
	case faultPause:
		err = l.host.ContainerPause(cctx, n.Name)
	case "start":
		err = l.host.ContainerStart(cctx, n.Name, container.StartOptions{})
	default:
		err = l.host.ContainerUnpause(cctx, n.Name)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, n.Name, err)
	}
	if op != faultKill && op != faultPause {
		n.cgroup, err = l.nodeCgroup(ctx, n.Name)
	}
	return err
}

// labEngines is function.NodeEngines of the Ready nodes (or only), dialled as pulse does.
type labEngines struct {
	lab  *clusterLab
	only []labNode
}

// Engines dials the nodes.
func (e labEngines) Engines(ctx context.Context) ([]function.NodeEngine, error) {
	targets := e.only
	if targets == nil {
		states, _, err := e.lab.nodeStates(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range e.lab.nodes {
			if states[n.Name] == swarm.NodeStateReady {
				targets = append(targets, n)
			}
		}
	}
	out := make([]function.NodeEngine, len(targets))
	if err := parallel(targets, func(i int, n labNode) (err error) { out[i], err = e.lab.dial(ctx, n); return err }); err != nil {
		for _, ne := range out {
			if ne.Close != nil {
				_ = ne.Close()
			}
		}
		return nil, err
	}
	return out, nil
}

// dial reaches n's engine as pulse does.
func (l *clusterLab) dial(ctx context.Context, n labNode) (function.NodeEngine, error) {
	sc, err := provision.Dial(ctx, l.ssh, target(n))
	if err != nil {
		return function.NodeEngine{}, err
	}
	eng, err := sc.Engine(ctx)
	if err != nil {
		sc.Close()
		return function.NodeEngine{}, err
	}
	return function.NodeEngine{Node: n.Name, API: eng, Close: func() error { eng.Close(); return sc.Close() }}, nil
}

// parallel runs f for each node at once and joins their errors.
func parallel(nodes []labNode, f func(i int, n labNode) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = f(i, n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
