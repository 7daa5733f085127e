package provision

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"github.com/pulsefaas/pulse/contract"
)

// fakeManager is a swarm manager's engine holding nodes in memory.
type fakeManager struct {
	mu      sync.Mutex
	info    system.Info
	sw      swarm.Swarm
	nodes   map[string]swarm.Node
	tasks   []swarm.Task
	removed []string
	updates int
}

func (m *fakeManager) Info(context.Context) (system.Info, error) { return m.info, nil }
func (m *fakeManager) SwarmInspect(context.Context) (swarm.Swarm, error) {
	return m.sw, nil
}
func (m *fakeManager) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []swarm.Node
	for _, n := range m.nodes {
		out = append(out, n)
	}
	return out, nil
}
func (m *fakeManager) NodeInspectWithRaw(_ context.Context, id string) (swarm.Node, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.nodes[id]
	if !ok {
		return n, nil, cerrdefs.ErrNotFound
	}
	return n, nil, nil
}
func (m *fakeManager) NodeUpdate(_ context.Context, id string, v swarm.Version, spec swarm.NodeSpec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[id]
	if n.Version != v {
		return errors.New("update out of sequence")
	}
	n.Spec, n.Version.Index = spec, n.Version.Index+1
	m.nodes[id] = n
	m.updates++
	return nil
}
func (m *fakeManager) NodeRemove(_ context.Context, id string, _ swarm.NodeRemoveOptions) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, id)
	m.removed = append(m.removed, id)
	return nil
}
func (m *fakeManager) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	return m.tasks, nil
}

var _ ManagerAPI = (*fakeManager)(nil)

// fakeNode is a node's engine; joining adds it to mgr as Ready.
type fakeNode struct {
	info    system.Info
	mgr     *fakeManager
	joined  *swarm.JoinRequest
	left    bool
	joinErr error
}

func (n *fakeNode) Info(context.Context) (system.Info, error) { return n.info, nil }
func (n *fakeNode) SwarmJoin(_ context.Context, req swarm.JoinRequest) error {
	if n.joinErr != nil {
		return n.joinErr
	}
	n.joined = &req
	n.info.Swarm.LocalNodeState = swarm.LocalNodeStateActive
	n.info.Swarm.NodeID = "node2id0000000000"
	n.info.Swarm.Cluster = &swarm.ClusterInfo{ID: n.mgr.sw.ID}
	n.mgr.mu.Lock()
	n.mgr.nodes["node2id0000000000"] = swarm.Node{ID: "node2id0000000000", Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: "10.0.0.2"},
		Description: swarm.NodeDescription{Hostname: "node2"}, Spec: swarm.NodeSpec{Role: swarm.NodeRoleWorker, Availability: req.Availability}}
	n.mgr.mu.Unlock()
	return nil
}
func (n *fakeNode) SwarmLeave(context.Context, bool) error { n.left = true; return nil }

func newFakeManager() *fakeManager {
	m := &fakeManager{
		info: system.Info{Name: "node1", Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateActive, ControlAvailable: true, NodeID: "node1id000000000",
			RemoteManagers: []swarm.Peer{{NodeID: "node1id000000000", Addr: "10.0.0.1:2377"}}}},
		sw:    swarm.Swarm{ClusterInfo: swarm.ClusterInfo{ID: "cluster1"}, JoinTokens: swarm.JoinTokens{Worker: "SWMTKN-worker", Manager: "SWMTKN-manager"}},
		nodes: map[string]swarm.Node{},
	}
	m.nodes["node1id000000000"] = swarm.Node{ID: "node1id000000000", Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: "10.0.0.1"},
		Description: swarm.NodeDescription{Hostname: "node1"}, Spec: swarm.NodeSpec{Role: swarm.NodeRoleManager}, ManagerStatus: &swarm.ManagerStatus{Leader: true}}
	return m
}

func inactiveNode(m *fakeManager) *fakeNode {
	return &fakeNode{mgr: m, info: system.Info{Name: "node2", OSType: "linux", ServerVersion: "20.10.24+dfsg1",
		Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}}}
}

// TestAddNodeDecisions: what AddNode does for each state of the node's
// engine, against fakes: join an inactive one with the right token and
// addresses, leave a member of this swarm alone, refuse the rest with the
// fix.
func TestAddNodeDecisions(t *testing.T) {
	target := Target{User: "root", Host: "10.0.0.2", Port: 22}
	tests := []struct {
		name    string
		opts    AddOptions
		prepare func(context.Context) error
		setup   func(*fakeManager, *fakeNode)
		want    AddResult
		join    *swarm.JoinRequest
		wantErr []string
		is      error
		// availability is the node's after AddNode; "" for unchanged.
		availability swarm.NodeAvailability
	}{
		{name: "inactive joins as a worker", want: AddResult{Name: "node2", ID: "node2id0000000000", Role: "worker", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2", Joined: true, Labeled: true},
			join: &swarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.0.0.2", RemoteAddrs: []string{"10.0.0.1:2377"}, JoinToken: "SWMTKN-worker"}},
		{name: "inactive joins drained, is prepared, then active", prepare: func(context.Context) error { return nil },
			want:         AddResult{Name: "node2", ID: "node2id0000000000", Role: "worker", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2", Joined: true, Labeled: true},
			join:         &swarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.0.0.2", RemoteAddrs: []string{"10.0.0.1:2377"}, JoinToken: "SWMTKN-worker", Availability: swarm.NodeAvailabilityDrain},
			availability: swarm.NodeAvailabilityActive},
		{name: "prepare fails: stays drained", prepare: func(context.Context) error { return errors.New("no space left on device") },
			wantErr: []string{"prepare (the node stays drained): no space left on device", "docker node update --availability active node2"}},
		{name: "a member a failed prepare left drained is activated", prepare: func(context.Context) error { return nil },
			setup: func(m *fakeManager, n *fakeNode) {
				n.SwarmJoin(context.Background(), swarm.JoinRequest{})
				n.joined = nil
				n.info.Swarm.Cluster = nil // a worker
				nd := withLabel(m.nodes["node2id0000000000"], contract.LabelNodePreparing, "1")
				nd.Spec.Availability = swarm.NodeAvailabilityDrain
				m.nodes["node2id0000000000"] = nd
			},
			want:         AddResult{Name: "node2", ID: "node2id0000000000", Role: "worker", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2", Labeled: true},
			availability: swarm.NodeAvailabilityActive},
		{name: "a member drained by hand stays drained", prepare: func(context.Context) error { return nil },
			setup: func(m *fakeManager, n *fakeNode) {
				n.SwarmJoin(context.Background(), swarm.JoinRequest{})
				n.joined = nil
				n.info.Swarm.Cluster = nil
				nd := m.nodes["node2id0000000000"]
				nd.Spec.Availability = swarm.NodeAvailabilityDrain
				m.nodes["node2id0000000000"] = nd
			},
			want:         AddResult{Name: "node2", ID: "node2id0000000000", Role: "worker", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2", Labeled: true},
			availability: swarm.NodeAvailabilityDrain},
		{name: "inactive joins as a manager", opts: AddOptions{Manager: true},
			want: AddResult{Name: "node2", ID: "node2id0000000000", Role: "manager", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2", Joined: true, Labeled: true},
			join: &swarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.0.0.2", RemoteAddrs: []string{"10.0.0.1:2377"}, JoinToken: "SWMTKN-manager"}},
		{name: "already in this swarm", opts: AddOptions{Manager: true}, setup: func(m *fakeManager, n *fakeNode) {
			n.SwarmJoin(context.Background(), swarm.JoinRequest{})
			n.joined = nil
			m.nodes["node2id0000000000"] = withLabel(m.nodes["node2id0000000000"], contract.LabelNodeSSH, target.String())
		}, want: AddResult{Name: "node2", ID: "node2id0000000000", Role: "worker", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2",
			Note: "it is a worker, not a manager: change that with `docker node promote node2` on the manager"}},
		{name: "another swarm", setup: func(_ *fakeManager, n *fakeNode) {
			n.info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateActive, NodeID: "x", Cluster: &swarm.ClusterInfo{ID: "cluster2"}}
		}, is: ErrOtherSwarm, wantErr: []string{"add node 10.0.0.2: node is in another swarm: it is a manager of swarm cluster2, not of node1's swarm cluster1", "docker swarm leave --force"}},
		{name: "a worker of another swarm", setup: func(_ *fakeManager, n *fakeNode) {
			n.info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateActive, NodeID: "strangerid00000", RemoteManagers: []swarm.Peer{{Addr: "10.9.9.9:2377"}}}
		}, is: ErrOtherSwarm, wantErr: []string{"it is a worker of a swarm whose managers are at 10.9.9.9:2377, and node1's swarm does not list it (node strangerid00)", "docker swarm leave"}},
		{name: "a worker of this swarm", setup: func(m *fakeManager, n *fakeNode) {
			n.SwarmJoin(context.Background(), swarm.JoinRequest{})
			n.joined = nil
			n.info.Swarm.Cluster = nil // what Docker tells a worker
		}, want: AddResult{Name: "node2", ID: "node2id0000000000", Role: "worker", EngineVersion: "20.10.24+dfsg1", Addr: "10.0.0.2", Labeled: true}},
		{name: "pending", setup: func(_ *fakeManager, n *fakeNode) {
			n.info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStatePending, Error: "timeout"}
		}, is: ErrEngine, wantErr: []string{`its swarm state is "pending" (timeout)`, "docker swarm leave --force"}},
		{name: "locked", setup: func(_ *fakeManager, n *fakeNode) {
			n.info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateLocked}
		}, is: ErrEngine, wantErr: []string{`its swarm state is "locked": unlock it with ` + "`docker swarm unlock`"}},
		{name: "old engine", setup: func(_ *fakeManager, n *fakeNode) { n.info.ServerVersion = "19.03.15" },
			is: ErrEngine, wantErr: []string{`Docker Engine "19.03.15" is older than 20.10`}},
		{name: "windows engine", setup: func(_ *fakeManager, n *fakeNode) { n.info.OSType = "windows" },
			is: ErrEngine, wantErr: []string{`runs "windows" containers`}},
		{name: "manager is not a manager", setup: func(m *fakeManager, _ *fakeNode) {
			m.info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
		}, is: ErrNotManager, wantErr: []string{`swarm state "inactive" and is not a manager`, "docker swarm init"}},
		{name: "join fails", setup: func(_ *fakeManager, n *fakeNode) { n.joinErr = errors.New("connection refused") },
			wantErr: []string{"join the swarm at 10.0.0.1:2377: connection refused", "TCP 2377"}},
		{name: "never ready", opts: AddOptions{ReadyTimeout: 300 * time.Millisecond}, setup: func(m *fakeManager, n *fakeNode) {
			n.SwarmJoin(context.Background(), swarm.JoinRequest{})
			n.joined = nil
			nd := m.nodes["node2id0000000000"]
			nd.Status = swarm.NodeStatus{State: swarm.NodeStateDown, Message: "heartbeat failure"}
			m.nodes["node2id0000000000"] = nd
		}, wantErr: []string{"does not list node node2id00000 Ready within 300ms (last: status down heartbeat failure)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeManager()
			n := inactiveNode(m)
			if tc.setup != nil {
				tc.setup(m, n)
			}
			var lines []string
			tc.opts.Progress = func(s string) { lines = append(lines, s) }
			got, err := addNode(context.Background(), m, n, target, "10.0.0.2", tc.opts, tc.prepare)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("err = nil, want %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v\nwant it to contain %q", err, w)
					}
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("err = %v, want errors.Is %v", err, tc.is)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("result\n %+v\nwant\n %+v", got, tc.want)
			}
			if (n.joined == nil) != (tc.join == nil) || n.joined != nil && !equalJoin(*n.joined, *tc.join) {
				t.Errorf("join request %+v, want %+v", n.joined, tc.join)
			}
			if l := m.nodes[got.ID].Spec.Labels[contract.LabelNodeSSH]; l != "root@10.0.0.2:22" {
				t.Errorf("label %s = %q, want root@10.0.0.2:22", contract.LabelNodeSSH, l)
			}
			if len(lines) == 0 {
				t.Error("no progress lines")
			}
			if _, marked := m.nodes[got.ID].Spec.Labels[contract.LabelNodePreparing]; marked {
				t.Errorf("label %s left on the node after a successful add", contract.LabelNodePreparing)
			}
			if av := m.nodes[got.ID].Spec.Availability; av != tc.availability {
				t.Errorf("availability %q, want %q", av, tc.availability)
			}
		})
	}
}

func equalJoin(a, b swarm.JoinRequest) bool {
	return a.ListenAddr == b.ListenAddr && a.AdvertiseAddr == b.AdvertiseAddr && a.JoinToken == b.JoinToken && a.Availability == b.Availability &&
		strings.Join(a.RemoteAddrs, ",") == strings.Join(b.RemoteAddrs, ",")
}

func withLabel(n swarm.Node, k, v string) swarm.Node {
	n.Spec.Labels = map[string]string{k: v}
	return n
}

// TestRemoveNodeDecisions: RemoveNode refuses what would break the swarm
// or cannot be done, and otherwise drains, makes the node leave and removes
// it.
func TestRemoveNodeDecisions(t *testing.T) {
	worker := func(id, host, ssh string) swarm.Node {
		n := swarm.Node{ID: id, Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: "10.0.0.9"},
			Description: swarm.NodeDescription{Hostname: host}, Spec: swarm.NodeSpec{Role: swarm.NodeRoleWorker, Availability: swarm.NodeAvailabilityActive}}
		if ssh != "" {
			n.Spec.Labels = map[string]string{contract.LabelNodeSSH: ssh}
		}
		return n
	}
	tests := []struct {
		name     string
		arg      string
		nodes    []swarm.Node
		tasks    []swarm.Task
		force    bool
		dialErr  error
		wantErr  []string
		is       error
		wantLeft bool
	}{
		{name: "by hostname", arg: "node3", nodes: []swarm.Node{worker("node3id000000", "node3", "root@10.0.0.3:22")}, wantLeft: true},
		{name: "by SSH host", arg: "10.0.0.3", nodes: []swarm.Node{worker("node3id000000", "node3", "root@10.0.0.3:22")}, wantLeft: true},
		{name: "the manager pulse talks to", arg: "node1", is: ErrRefused, wantErr: []string{"node1 is the manager pulse talks to (docker_host)"}},
		{name: "unknown", arg: "node9", is: ErrNoNode, wantErr: []string{`no such node "node9" in the swarm (it has: node1)`}},
		{name: "ambiguous", arg: "twin", nodes: []swarm.Node{worker("aaaaaaaaaaaa1", "twin", ""), worker("bbbbbbbbbbbb2", "twin", "")},
			wantErr: []string{`"twin" names 2 nodes`, "give a node ID"}},
		{name: "no SSH label", arg: "node3", nodes: []swarm.Node{worker("node3id000000", "node3", "")},
			wantErr: []string{"it has no pulse.ssh label", "--force"}},
		{name: "no SSH label, forced", arg: "node3", force: true, nodes: []swarm.Node{worker("node3id000000", "node3", "")}},
		{name: "unreachable", arg: "node3", dialErr: errors.New("ssh root@10.0.0.3:22: connection refused"), nodes: []swarm.Node{worker("node3id000000", "node3", "root@10.0.0.3:22")},
			wantErr: []string{"cannot make it leave the swarm: ssh root@10.0.0.3:22: connection refused"}},
		{name: "tasks never leave", arg: "node3", nodes: []swarm.Node{worker("node3id000000", "node3", "root@10.0.0.3:22")},
			tasks:   []swarm.Task{{DesiredState: swarm.TaskStateShutdown, Status: swarm.TaskStatus{State: swarm.TaskStateRunning}}},
			wantErr: []string{"1 task(s) still on node node3id00000 after 300ms of draining", "node node3 is now drained: run pulse node rm again to finish, or `docker node update --availability active node3` to keep it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeManager()
			for _, n := range tc.nodes {
				m.nodes[n.ID] = n
			}
			m.tasks = tc.tasks
			node := &fakeNode{mgr: m}
			dial := func(context.Context, Target) (NodeAPI, func(), error) {
				if tc.dialErr != nil {
					return nil, nil, tc.dialErr
				}
				return node, func() {}, nil
			}
			res, err := RemoveNode(context.Background(), m, tc.arg, dial, RemoveOptions{Force: tc.force, DrainTimeout: 300 * time.Millisecond})
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("err = nil, want %q", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v\nwant it to contain %q", err, w)
					}
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("err = %v, want errors.Is %v", err, tc.is)
				}
				if len(m.removed) > 0 {
					t.Errorf("removed %v after an error", m.removed)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Left != tc.wantLeft || node.left != tc.wantLeft {
				t.Errorf("left = %v (node %v), want %v", res.Left, node.left, tc.wantLeft)
			}
			if len(m.removed) != 1 || m.removed[0] != "node3id000000" {
				t.Errorf("removed %v, want [node3id000000]", m.removed)
			}
		})
	}
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{
		"20.10.24+dfsg1": true, "20.10": true, "28.5.2": true, "24.0.7": true, "20.9.1": false, "19.03.15": false, "": false, "dev": false,
	} {
		if got := versionAtLeast(v, MinEngineVersion); got != want {
			t.Errorf("versionAtLeast(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestAddNodeNoDocker: against the in-process SSH server (no docker on
// it), AddNode fails at the engine, saying what the node needs.
func TestAddNodeNoDocker(t *testing.T) {
	f := newFixture(t)
	f.cfg.AcceptNewHostKey = true
	c, err := f.dial(t, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = AddNode(ctx, newFakeManager(), c, AddOptions{})
	wantContains(t, err, "add node 127.0.0.1", `"docker system dial-stdio"`, "exit status 127", "docker: not found",
		"the node needs Docker Engine 20.10 or later, and pulse must be allowed to use it")
}

// TestRemoveNodeUnknownHostKey: RemoveNode dials the node over SSH before
// it changes anything; an unknown host key (the in-process server) stops
// it with the fix, and the node is neither drained nor removed.
func TestRemoveNodeUnknownHostKey(t *testing.T) {
	f := newFixture(t)
	m := newFakeManager()
	target := f.srv.target()
	m.nodes["node3id000000"] = swarm.Node{ID: "node3id000000", Status: swarm.NodeStatus{State: swarm.NodeStateReady},
		Description: swarm.NodeDescription{Hostname: "node3"},
		Spec:        swarm.NodeSpec{Role: swarm.NodeRoleWorker, Annotations: swarm.Annotations{Labels: map[string]string{contract.LabelNodeSSH: target.String()}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := RemoveNode(ctx, m, "node3", EngineDialer(f.cfg), RemoveOptions{})
	wantContains(t, err, "remove node node3: cannot make it leave the swarm", "unknown host key", "--accept-new-host-key", "--force")
	if m.updates != 0 || len(m.removed) != 0 {
		t.Errorf("%d updates, removed %v: want none", m.updates, m.removed)
	}
}
