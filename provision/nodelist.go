package provision

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// NodeInfo is one node as ListNodes reports it.
type NodeInfo struct {
	Name          string
	ID            string
	Role          string // worker, manager
	Leader        bool
	Status        string // ready, down, unknown, disconnected
	Availability  string // active, pause, drain
	Addr          string
	EngineVersion string
	SSH           string // contract.LabelNodeSSH; "" when the node has none
	Self          bool   // the manager the CLI talks to
}

// ListNodes lists the swarm's nodes, sorted by name.
func ListNodes(ctx context.Context, mgr ManagerAPI) ([]NodeInfo, error) {
	mi, err := callInfo(ctx, mgr)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	if mi.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !mi.Swarm.ControlAvailable {
		return nil, fmt.Errorf("list nodes: %w: %s is in swarm state %q; point docker_host at a swarm manager",
			ErrNotManager, mi.Name, mi.Swarm.LocalNodeState)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nodes, err := mgr.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make([]NodeInfo, len(nodes))
	for i, n := range nodes {
		out[i] = nodeInfo(n, mi.Swarm.NodeID)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func nodeInfo(n swarm.Node, self string) NodeInfo {
	ni := NodeInfo{
		Name: n.Description.Hostname, ID: n.ID, Role: string(n.Spec.Role),
		Status: string(n.Status.State), Availability: string(n.Spec.Availability),
		Addr: n.Status.Addr, EngineVersion: n.Description.Engine.EngineVersion,
		SSH: n.Spec.Labels[contract.LabelNodeSSH], Self: n.ID == self,
	}
	if n.ManagerStatus != nil {
		ni.Leader = n.ManagerStatus.Leader
		if ni.Addr == "" || ni.Addr == "0.0.0.0" {
			if h, _, err := net.SplitHostPort(n.ManagerStatus.Addr); err == nil {
				ni.Addr = h
			}
		}
	}
	return ni
}
