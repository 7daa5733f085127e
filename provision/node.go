package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
)

// ManagerAPI is what node operations need of the swarm manager's engine
// (the one the CLI talks to). *client.Client implements it.
type ManagerAPI interface {
	Info(ctx context.Context) (system.Info, error)
	SwarmInspect(ctx context.Context) (swarm.Swarm, error)
	NodeList(ctx context.Context, opts swarm.NodeListOptions) ([]swarm.Node, error)
	NodeInspectWithRaw(ctx context.Context, nodeID string) (swarm.Node, []byte, error)
	NodeUpdate(ctx context.Context, nodeID string, version swarm.Version, spec swarm.NodeSpec) error
	NodeRemove(ctx context.Context, nodeID string, opts swarm.NodeRemoveOptions) error
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
}

// NodeAPI is what node operations need of the node's own engine (over
// SSH). *client.Client implements it.
type NodeAPI interface {
	Info(ctx context.Context) (system.Info, error)
	SwarmJoin(ctx context.Context, req swarm.JoinRequest) error
	SwarmLeave(ctx context.Context, force bool) error
}

// MinEngineVersion is the oldest Docker Engine a node may run: the version
// Pulse is tested on (the lab's Debian bookworm docker.io). Older engines
// lack health start intervals and were never tried.
const MinEngineVersion = "20.10"

// Defaults of the bounded waits.
const (
	DefaultReadyTimeout = time.Minute
	DefaultDrainTimeout = 2 * time.Minute
	pollInterval        = 250 * time.Millisecond
)

// Sentinel errors of the node operations.
var (
	// ErrOtherSwarm means the node is already a member of another swarm.
	ErrOtherSwarm = errors.New("node is in another swarm")
	// ErrNotManager means the engine the CLI talks to is not a swarm manager.
	ErrNotManager = errors.New("not a swarm manager")
	// ErrNoNode means no swarm node matches the name given.
	ErrNoNode = errors.New("no such node")
	// ErrRefused means the operation would break the swarm (the last
	// manager, or the manager the CLI talks to).
	ErrRefused = errors.New("refused")
	// ErrEngine means the node's engine is unfit (version, OS, state).
	ErrEngine = errors.New("node engine unfit")
)

// AddOptions tune AddNode.
type AddOptions struct {
	Manager bool              // join as a manager (default: worker)
	Labels  map[string]string // node labels to set besides contract.LabelNodeSSH
	// AdvertiseAddr is the address the node advertises to the swarm (an IP
	// address or an interface name of the node, as docker swarm join takes
	// it); default: the address SSH reached it at. Set it when the swarm
	// should use another network than the one SSH came in by.
	AdvertiseAddr string
	// ReadyTimeout bounds the wait until the manager lists the node Ready;
	// default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Progress, when set, is told each step as a line without a newline.
	Progress func(string)
	// Prepare, when set, runs once the node is Ready and labelled, with its
	// engine, before it takes tasks: a node that joins here joins drained
	// and is made active only after Prepare succeeds (the CLI gives it the
	// images of the functions already deployed). When Prepare fails, the
	// node stays drained. A node already in the swarm keeps its
	// availability.
	Prepare func(ctx context.Context, node *client.Client) error
}

// AddResult is what AddNode did.
type AddResult struct {
	Name          string // the node's hostname, as the swarm lists it
	ID            string
	Role          string // "worker" or "manager"
	EngineVersion string
	Addr          string // the address the node advertises to the swarm
	Joined        bool   // false: it was in this swarm already
	Labeled       bool   // false: its labels were already those wanted
	Note          string // what the caller should know (a role that differs)
	Elapsed       time.Duration
}

// AddNode makes node a member of the manager's swarm, ready and labelled:
// its engine (over SSH) must be Linux and at least MinEngineVersion; an
// inactive engine joins with the manager's token, advertising the address
// SSH reached it at; one already in this swarm is left as it is (Joined
// false); one in another swarm is ErrOtherSwarm. Then it waits, bounded,
// until the manager lists it Ready and sets its labels: contract.LabelNodeSSH
// (the SSH target, for later commands) and opts.Labels.
func AddNode(ctx context.Context, mgr ManagerAPI, node *Client, opts AddOptions) (AddResult, error) {
	start := time.Now()
	t := node.Target()
	eng, err := node.Engine(ctx)
	if err != nil {
		return AddResult{}, fmt.Errorf("add node %s: %w; the node needs Docker Engine %s or later, and %s must be allowed to use it (root, or the docker group)",
			t.Host, err, MinEngineVersion, t.User)
	}
	defer eng.Close()
	addr := opts.AdvertiseAddr
	if addr == "" {
		if addr, err = advertiseAddr(ctx, node); err != nil {
			return AddResult{}, fmt.Errorf("add node %s: %w", t.Host, err)
		}
	} else if err := CheckAdvertiseAddr(addr); err != nil {
		return AddResult{}, fmt.Errorf("add node %s: %w", t.Host, err)
	}
	var prepare func(context.Context) error
	if opts.Prepare != nil {
		prepare = func(ctx context.Context) error { return opts.Prepare(ctx, eng) }
	}
	res, err := addNode(ctx, mgr, eng, t, addr, opts, prepare)
	res.Elapsed = time.Since(start)
	return res, err
}

// CheckAdvertiseAddr accepts an IP address or a network interface name
// (what docker swarm join's --advertise-addr takes, without a port: the
// swarm port stays 2377).
func CheckAdvertiseAddr(a string) error {
	if net.ParseIP(a) != nil {
		return nil
	}
	if len(a) == 0 || len(a) > 15 {
		return fmt.Errorf("advertise address %q: want the node's IP address or an interface name (e.g. eth1)", a)
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("advertise address %q: want the node's IP address or an interface name (e.g. eth1)", a)
		}
	}
	return nil
}

// advertiseAddr is the address the node advertises to the swarm: the
// target's when it is an IP address, else the one the SSH connection
// reached (the server side of $SSH_CONNECTION), so the swarm uses the
// address the control node knows works.
func advertiseAddr(ctx context.Context, c *Client) (string, error) {
	if net.ParseIP(c.target.Host) != nil {
		return c.target.Host, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := c.Run(ctx, "echo $SSH_CONNECTION", nil)
	if err != nil {
		return "", fmt.Errorf("find the node's address: %w", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 || net.ParseIP(f[2]) == nil {
		return "", fmt.Errorf("find the node's address: $SSH_CONNECTION is %q; use the node's IP address as the target", strings.TrimSpace(string(out)))
	}
	return f[2], nil
}

func addNode(ctx context.Context, mgr ManagerAPI, eng NodeAPI, t Target, addr string, opts AddOptions, prepare func(context.Context) error) (AddResult, error) {
	fail := func(err error) (AddResult, error) { return AddResult{}, fmt.Errorf("add node %s: %w", t.Host, err) }
	progress := func(format string, a ...any) {
		if opts.Progress != nil {
			opts.Progress(fmt.Sprintf(format, a...))
		}
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	ni, err := callInfo(ctx, eng)
	if err != nil {
		return fail(fmt.Errorf("the node's engine: %w", err))
	}
	if err := checkEngine(ni); err != nil {
		return fail(err)
	}
	mi, sw, err := managerSwarm(ctx, mgr)
	if err != nil {
		return fail(err)
	}
	role := "worker"
	if opts.Manager {
		role = "manager"
	}
	res := AddResult{Name: ni.Name, EngineVersion: ni.ServerVersion, Addr: addr, Role: role}
	progress("engine %s (%s), swarm %s", ni.ServerVersion, ni.OperatingSystem, ni.Swarm.LocalNodeState)
	switch st := ni.Swarm.LocalNodeState; st {
	case swarm.LocalNodeStateActive:
		if err := sameSwarm(ctx, mgr, ni, sw, mi.Name); err != nil {
			return fail(err)
		}
		res.Role = "worker"
		if ni.Swarm.ControlAvailable {
			res.Role = "manager"
		}
		if res.Role != role {
			res.Note = fmt.Sprintf("it is a %s, not a %s: change that with `docker node %s %s` on the manager", res.Role, role, map[bool]string{true: "promote", false: "demote"}[opts.Manager], ni.Name)
		}
		progress("already in this swarm as a %s: nothing to join", res.Role)
	case swarm.LocalNodeStateInactive:
		req := swarm.JoinRequest{
			ListenAddr:    "0.0.0.0:2377",
			AdvertiseAddr: addr,
			RemoteAddrs:   managerAddrs(mi),
			JoinToken:     sw.JoinTokens.Worker,
		}
		if opts.Manager {
			req.JoinToken = sw.JoinTokens.Manager
		}
		if prepare != nil {
			req.Availability = swarm.NodeAvailabilityDrain // no task before prepare
		}
		if len(req.RemoteAddrs) == 0 {
			return fail(fmt.Errorf("the manager %s lists no manager address to join", mi.Name))
		}
		drained := ""
		if prepare != nil {
			drained = ", drained until prepared"
		}
		progress("joining as a %s via %s, advertising %s%s", role, strings.Join(req.RemoteAddrs, ","), addr, drained)
		jctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
		err := eng.SwarmJoin(jctx, req)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("join the swarm at %s: %w; the node must reach the manager on TCP 2377 (and 7946 TCP/UDP, 4789 UDP between nodes)",
				strings.Join(req.RemoteAddrs, ","), err))
		}
		res.Joined = true
		if ni, err = callInfo(ctx, eng); err != nil {
			return fail(fmt.Errorf("the node's engine after joining: %w", err))
		}
	case swarm.LocalNodeStateLocked:
		// An autolocked manager after a restart: leaving would cost the
		// swarm a manager, unlocking is the fix.
		return fail(fmt.Errorf("%w: its swarm state is %q: unlock it with `docker swarm unlock` on the node (the key: `docker swarm unlock-key` on a manager), then add it again",
			ErrEngine, st))
	default:
		return fail(fmt.Errorf("%w: its swarm state is %q (%s); if it does not settle (it must reach the manager on TCP 2377), run `docker swarm leave --force` on the node, then add it again",
			ErrEngine, st, ni.Swarm.Error))
	}
	res.ID = ni.Swarm.NodeID
	if res.ID == "" {
		return fail(fmt.Errorf("%w: the node's engine reports no swarm node ID", ErrEngine))
	}
	n, err := waitReady(ctx, mgr, res.ID, opts.ReadyTimeout)
	if err != nil {
		return fail(err)
	}
	if n.Description.Hostname != "" {
		res.Name = n.Description.Hostname
	}
	want := maps.Clone(opts.Labels)
	if want == nil {
		want = map[string]string{}
	}
	want[contract.LabelNodeSSH] = t.String()
	// A node joined drained is marked until it is made active, so a later
	// add after a failed prepare (or a timeout after the join) activates it.
	preparing := n.Spec.Labels[contract.LabelNodePreparing] != ""
	if res.Joined && prepare != nil {
		want[contract.LabelNodePreparing] = "1"
		preparing = true
	}
	if res.Labeled, err = setLabels(ctx, mgr, res.ID, want); err != nil {
		return fail(err)
	}
	if res.Labeled {
		progress("ready; labelled %s", formatLabels(want))
	} else {
		progress("ready; labels already %s", formatLabels(want))
	}
	if prepare == nil {
		return res, nil
	}
	if err := prepare(ctx); err != nil {
		if preparing {
			return fail(fmt.Errorf("prepare (the node stays drained): %w; once fixed, add it again, or run `docker node update --availability active %s` on the manager", err, res.Name))
		}
		return fail(fmt.Errorf("prepare: %w", err))
	}
	if preparing {
		if _, err := updateNode(ctx, mgr, res.ID, func(s *swarm.NodeSpec) bool {
			_, marked := s.Labels[contract.LabelNodePreparing]
			if s.Availability == swarm.NodeAvailabilityActive && !marked {
				return false
			}
			s.Availability = swarm.NodeAvailabilityActive
			delete(s.Labels, contract.LabelNodePreparing)
			return true
		}); err != nil {
			return fail(fmt.Errorf("make it active after preparing: %w", err))
		}
		progress("prepared; active")
	}
	return res, nil
}

// sameSwarm says whether an active node is in the manager's swarm: a
// manager knows its cluster ID; a worker does not (Docker tells workers
// nothing of the cluster), so it is in the swarm when the manager lists its
// node ID (random, unique).
func sameSwarm(ctx context.Context, mgr ManagerAPI, ni system.Info, sw swarm.Swarm, mgrName string) error {
	if c := ni.Swarm.Cluster; c != nil && c.ID != "" {
		if c.ID == sw.ID {
			return nil
		}
		return fmt.Errorf("%w: it is a manager of swarm %s, not of %s's swarm %s; to move it, run `docker swarm leave --force` on the node (its services' tasks there stop), then add it again",
			ErrOtherSwarm, shortNodeID(c.ID), mgrName, shortNodeID(sw.ID))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, _, err := mgr.NodeInspectWithRaw(ctx, ni.Swarm.NodeID)
	switch {
	case err == nil:
		return nil
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("look the node up on the manager: %w", err)
	}
	managers := make([]string, len(ni.Swarm.RemoteManagers))
	for i, p := range ni.Swarm.RemoteManagers {
		managers[i] = p.Addr
	}
	return fmt.Errorf("%w: it is a worker of a swarm whose managers are at %s, and %s's swarm does not list it (node %s); to move it, run `docker swarm leave` on the node (its tasks there stop), then add it again",
		ErrOtherSwarm, strings.Join(managers, ","), mgrName, shortNodeID(ni.Swarm.NodeID))
}

// callInfo is Info with its own timeout.
func callInfo(ctx context.Context, api interface {
	Info(context.Context) (system.Info, error)
}) (system.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return api.Info(ctx)
}

// checkEngine refuses an engine Pulse cannot use.
func checkEngine(ni system.Info) error {
	if ni.OSType != "linux" {
		return fmt.Errorf("%w: its engine runs %q containers; Pulse's images are linux ones", ErrEngine, ni.OSType)
	}
	if !versionAtLeast(ni.ServerVersion, MinEngineVersion) {
		return fmt.Errorf("%w: Docker Engine %q is older than %s; upgrade it on the node (the playbook installs %s)", ErrEngine, ni.ServerVersion, MinEngineVersion, MinEngineVersion)
	}
	return nil
}

// versionAtLeast compares the major and minor numbers of an engine version
// ("20.10.24+dfsg1") with min ("20.10").
func versionAtLeast(v, min string) bool {
	digits := func(s string) (int, bool) {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(s[:i])
		return n, err == nil
	}
	parse := func(s string) (int, int, bool) {
		f := strings.SplitN(s, ".", 3)
		if len(f) < 2 {
			return 0, 0, false
		}
		major, ok1 := digits(f[0])
		minor, ok2 := digits(f[1])
		return major, minor, ok1 && ok2
	}
	vM, vm, ok := parse(v)
	mM, mm, _ := parse(min)
	return ok && (vM > mM || vM == mM && vm >= mm)
}

// managerSwarm reads the manager's Info and swarm (join tokens); it must be
// an active manager.
func managerSwarm(ctx context.Context, mgr ManagerAPI) (system.Info, swarm.Swarm, error) {
	mi, err := callInfo(ctx, mgr)
	if err != nil {
		return mi, swarm.Swarm{}, fmt.Errorf("the manager's engine: %w", err)
	}
	if mi.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !mi.Swarm.ControlAvailable {
		return mi, swarm.Swarm{}, fmt.Errorf("%w: the engine pulse talks to (%s, docker_host) is in swarm state %q and is not a manager; point docker_host at a swarm manager (or run `docker swarm init` there)",
			ErrNotManager, mi.Name, mi.Swarm.LocalNodeState)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sw, err := mgr.SwarmInspect(ctx)
	if err != nil {
		return mi, sw, fmt.Errorf("the manager's swarm: %w", err)
	}
	return mi, sw, nil
}

// managerAddrs are the managers' swarm addresses, the manager's own first.
func managerAddrs(mi system.Info) []string {
	var addrs []string
	for _, p := range mi.Swarm.RemoteManagers {
		if p.NodeID == mi.Swarm.NodeID {
			addrs = append([]string{p.Addr}, addrs...)
		} else {
			addrs = append(addrs, p.Addr)
		}
	}
	if len(addrs) == 0 && mi.Swarm.NodeAddr != "" {
		addrs = []string{net.JoinHostPort(mi.Swarm.NodeAddr, "2377")}
	}
	return addrs
}

// waitReady polls the manager until it lists node id Ready.
func waitReady(ctx context.Context, mgr ManagerAPI, id string, timeout time.Duration) (swarm.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		n, _, err := mgr.NodeInspectWithRaw(ctx, id)
		switch {
		case err == nil && n.Status.State == swarm.NodeStateReady:
			return n, nil
		case err == nil:
			last = fmt.Sprintf("status %s %s", n.Status.State, n.Status.Message)
		case cerrdefs.IsNotFound(err):
			last = "not listed yet"
		case ctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return swarm.Node{}, fmt.Errorf("the manager does not list node %s Ready within %v (last: %s); see `docker node ps %s` and the node's dockerd log",
				shortNodeID(id), timeout, strings.TrimSpace(last), shortNodeID(id))
		case <-time.After(pollInterval):
		}
	}
}

// updateNode applies change to node id's spec with the version just read,
// re-reading and retrying when another update came first. change returns
// false when there is nothing to change.
func updateNode(ctx context.Context, mgr ManagerAPI, id string, change func(*swarm.NodeSpec) bool) (bool, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var n swarm.Node
		n, _, err = mgr.NodeInspectWithRaw(cctx, id)
		if err != nil {
			cancel()
			return false, fmt.Errorf("inspect node %s: %w", shortNodeID(id), err)
		}
		spec := n.Spec
		spec.Labels = maps.Clone(spec.Labels)
		if !change(&spec) {
			cancel()
			return false, nil
		}
		err = mgr.NodeUpdate(cctx, id, n.Version, spec)
		cancel()
		if err == nil {
			return true, nil
		}
		if !strings.Contains(err.Error(), "update out of sequence") {
			break
		}
	}
	return false, fmt.Errorf("update node %s: %w", shortNodeID(id), err)
}

// setLabels sets want on node id; false when it had them already.
func setLabels(ctx context.Context, mgr ManagerAPI, id string, want map[string]string) (bool, error) {
	return updateNode(ctx, mgr, id, func(s *swarm.NodeSpec) bool {
		changed := false
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		for k, v := range want {
			if old, ok := s.Labels[k]; !ok || old != v {
				s.Labels[k] = v
				changed = true
			}
		}
		return changed
	})
}

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

func shortNodeID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
