package main

// The cluster suite's lab (lab/README.md): three nodes started and removed
// by lab/lab.sh under the machine-wide lab lock, as internal/labtest does
// for tests; the swarm made on node1 (a 2 s dispatcher heartbeat) through
// its engine over SSH and the other nodes joined with provision.AddNode
// (what `pulse node add` runs); the nodes' faults (kill, pause) and their
// return through the host's engine; and each node container's cgroup, where
// its CPU and memory are read.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/provision"
)

// labNode is one node of the lab.
type labNode struct {
	Name string `json:"name"` // its container's name and host name
	Addr string `json:"addr"` // its address on the lab network
	// cgroup is the node container's cgroup path (v1, relative to each
	// controller's root), where its own processes and its engine's
	// containers nest.
	cgroup string
}

// clusterLab is the running lab and the harness's clients of it.
type clusterLab struct {
	dir, script string
	env         []string
	nodes       []labNode
	ssh         provision.Config
	keyFile     string
	knownHosts  string
	host        *client.Client // this machine's engine: the nodes' containers
	mgr         *client.Client // node1's engine over SSH (the swarm's manager)
	rem         *provision.RemoteEngine
}

// flockWait takes an exclusive flock on path, polling every second until
// wait has passed or ctx ends; what says what the lock guards, for the
// error.
func flockWait(ctx context.Context, log interface{ Info(string, ...any) }, path, what string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	logged := false
	for deadline := time.Now().Add(wait); ; {
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
			logged = true
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			f.Close()
			return nil, err
		}
	}
}

// newClusterLab describes the lab lab.sh will start in dir (the script's
// defaults: nodes pulse-lab-node1.. at 172.31.250.11..).
func newClusterLab(root, dir string, n int) *clusterLab {
	l := &clusterLab{
		dir: dir, script: filepath.Join(root, "lab", "lab.sh"),
		env:     append(os.Environ(), "PULSE_LAB_NODES="+strconv.Itoa(n), "PULSE_LAB_DIR="+dir),
		keyFile: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts"),
	}
	for i := 1; i <= n; i++ {
		l.nodes = append(l.nodes, labNode{Name: fmt.Sprintf("pulse-lab-node%d", i), Addr: fmt.Sprintf("172.31.250.%d", 10+i)})
	}
	l.ssh = provision.Config{IdentityFiles: []string{l.keyFile}, KnownHosts: l.knownHosts}
	return l
}

// lab runs lab.sh with arg, bounded by limit.
func (l *clusterLab) lab(ctx context.Context, arg string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.script, arg)
	cmd.Env = l.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// An interrupt or the bound ends the script's docker calls too.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab %s: %w: %s", arg, err, truncate(strings.TrimSpace(string(out)), 2000))
	}
	return nil
}

// up removes what a dead run may have left (the lab lock is held, so no
// one else's lab is running), starts the nodes, and reads their cgroups.
func (l *clusterLab) up(ctx context.Context) error {
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
	return nil
}

// down thaws a frozen node (a paused container may refuse removal) and
// removes the lab; it is bounded and runs after an interrupt too.
func (l *clusterLab) down() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if l.mgr != nil {
		l.mgr.Close()
		l.mgr = nil
	}
	if l.rem != nil {
		l.rem.Close()
		l.rem = nil
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

// nodeCgroup is a node container's cgroup, from its init's /proc/<pid>/cgroup
// as this host (the root cgroup namespace) sees it.
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

// parseCgroupPath returns the path of controller in a /proc/<pid>/cgroup
// file (cgroup v1: "id:controller,controller:path" lines).
func parseCgroupPath(s, controller string) (string, error) {
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == controller {
				return f[2], nil
			}
		}
	}
	return "", fmt.Errorf("no %s cgroup in %q (the lab needs cgroup v1)", controller, truncate(s, 200))
}

// cgroupFile is a file of controller's cgroup of n.
func cgroupFile(n labNode, controller, file string) string {
	return filepath.Join("/sys/fs/cgroup", controller, n.cgroup, file)
}

// readCgroupInt reads a cgroup file holding one number.
func readCgroupInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// nodeCPUNS is the CPU the node has used (itself, its engine and its
// containers: cpuacct.usage is hierarchical), in nanoseconds.
func nodeCPUNS(n labNode) (int64, error) {
	return readCgroupInt(cgroupFile(n, "cpuacct", "cpuacct.usage"))
}

// swarmUp makes node1 a manager with a 2 s dispatcher heartbeat, through
// its engine over SSH (the harness's own long-lived client), and joins the
// other nodes as workers.
func (l *clusterLab) swarmUp(ctx context.Context, log interface{ Info(string, ...any) }) error {
	var err error
	t := provision.Target{User: "root", Host: l.nodes[0].Addr, Port: 22}
	l.mgr, l.rem, err = provision.NewRemoteEngine(ctx, l.ssh, t, nil)
	if err != nil {
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
		sc, err := provision.Dial(ctx, l.ssh, provision.Target{User: "root", Host: n.Addr, Port: 22})
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

// nodeStates maps each node's host name to its state in the manager's node
// list (ready, down, ...).
func (l *clusterLab) nodeStates(ctx context.Context) (map[string]swarm.NodeState, map[string]string, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	nodes, err := l.mgr.NodeList(cctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("node list: %w", err)
	}
	states, names := map[string]swarm.NodeState{}, map[string]string{}
	for _, n := range nodes {
		states[n.Description.Hostname] = n.Status.State
		names[n.ID] = n.Description.Hostname
	}
	return states, names, nil
}

// waitNodesReady waits up to limit until every node is Ready.
func (l *clusterLab) waitNodesReady(ctx context.Context, limit time.Duration) error {
	return poll(ctx, limit, 250*time.Millisecond, func(late bool) (bool, error) {
		states, _, err := l.nodeStates(ctx)
		notReady := []string{}
		for _, n := range l.nodes {
			if err != nil || states[n.Name] != swarm.NodeStateReady {
				notReady = append(notReady, fmt.Sprintf("%s %s", n.Name, states[n.Name]))
			}
		}
		if len(notReady) == 0 {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("nodes not Ready after %s: %s (last error: %v)", limit, strings.Join(notReady, ", "), err)
		}
		return false, nil
	})
}

// Faults of a node and their undoing, on the host's engine (the API calls
// `docker kill`, `docker pause` and their undoing make).
const (
	faultKill  = "kill"
	faultPause = "pause"
)

// fault kills or pauses n's container.
func (l *clusterLab) fault(ctx context.Context, kind string, n labNode) error {
	cctx, cancel := call(ctx)
	defer cancel()
	var err error
	switch kind {
	case faultKill:
		err = l.host.ContainerKill(cctx, n.Name, "KILL")
	case faultPause:
		err = l.host.ContainerPause(cctx, n.Name)
	default:
		err = fmt.Errorf("unknown fault %q", kind)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, n.Name, err)
	}
	return nil
}

// restore undoes fault kind on n: start (its init brings sshd and the
// engine back with its swarm state) or unpause; then the node's cgroup is
// read again (a started container may get a new one).
func (l *clusterLab) restore(ctx context.Context, kind string, n *labNode) error {
	cctx, cancel := call(ctx)
	defer cancel()
	var err error
	if kind == faultKill {
		err = l.host.ContainerStart(cctx, n.Name, container.StartOptions{})
	} else {
		err = l.host.ContainerUnpause(cctx, n.Name)
	}
	if err != nil {
		return fmt.Errorf("undo %s of %s: %w", kind, n.Name, err)
	}
	n.cgroup, err = l.nodeCgroup(ctx, n.Name)
	return err
}

// labEngines is function.NodeEngines over the lab: the nodes the manager
// lists as Ready (or only those of only), each reached over SSH by dial.
type labEngines struct {
	lab  *clusterLab
	only []labNode // nil: every Ready node
	dial func(ctx context.Context, n labNode) (function.NodeEngine, error)
}

var _ function.NodeEngines = labEngines{}

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
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, n := range targets {
		wg.Go(func() { out[i], errs[i] = e.dial(ctx, n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, ne := range out {
			if ne.Close != nil {
				_ = ne.Close()
			}
		}
		return nil, err
	}
	return out, nil
}

// provisionDial reaches n's engine the way pulse does (provision.Dial,
// then Engine: x/crypto's default algorithms).
func (l *clusterLab) provisionDial(ctx context.Context, n labNode) (function.NodeEngine, error) {
	sc, err := provision.Dial(ctx, l.ssh, provision.Target{User: "root", Host: n.Addr, Port: 22})
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

// nodeExec runs a command in n as root (docker exec, for the harness's own
// preparation and clean-up, not for what Pulse does over SSH).
func nodeExec(ctx context.Context, n labNode, stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	argv := []string{"exec"}
	if stdin != nil {
		argv = append(argv, "-i")
	}
	cmd := exec.CommandContext(ctx, "docker", append(append(argv, n.Name), args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", n.Name, strings.Join(args, " "), err, truncate(strings.TrimSpace(string(out)), 500))
	}
	return string(out), nil
}
