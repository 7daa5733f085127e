package swarmaddr

import (
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

func TestNodeAddr(t *testing.T) {
	tests := []struct {
		name string
		node swarm.Node
		want string
	}{
		{"registered address", swarm.Node{Status: swarm.NodeStatus{Addr: "192.168.1.7"}}, "192.168.1.7"},
		{"IPv6 address", swarm.Node{Status: swarm.NodeStatus{Addr: "fd00::7"}}, "fd00::7"},
		{
			"manager reporting 0.0.0.0",
			swarm.Node{Status: swarm.NodeStatus{Addr: "0.0.0.0"}, ManagerStatus: &swarm.ManagerStatus{Addr: "10.0.0.5:2377"}},
			"10.0.0.5",
		},
		{
			"manager reporting nothing usable",
			swarm.Node{Status: swarm.NodeStatus{Addr: "0.0.0.0"}, ManagerStatus: &swarm.ManagerStatus{Addr: "0.0.0.0:2377"}},
			Loopback,
		},
		{"nothing known", swarm.Node{}, Loopback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NodeAddr(tt.node); got != tt.want {
				t.Errorf("NodeAddr() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddr(t *testing.T) {
	port := func(target, published uint32, mode swarm.PortConfigPublishMode) swarm.PortConfig {
		return swarm.PortConfig{Protocol: swarm.PortConfigProtocolTCP, TargetPort: target, PublishedPort: published, PublishMode: mode}
	}
	task := func(ports ...swarm.PortConfig) swarm.Task {
		return swarm.Task{Status: swarm.TaskStatus{PortStatus: swarm.PortStatus{Ports: ports}}}
	}
	host := swarm.PortConfigPublishModeHost
	tests := []struct {
		name     string
		nodeAddr string
		task     swarm.Task
		wantPort uint32
		wantAddr string
	}{
		{"no ports", "10.0.0.1", task(), 0, ""},
		{"one host port", "10.0.0.1", task(port(contract.WatchdogPort, 32768, host)), 32768, "10.0.0.1:32768"},
		{"once per address family", "10.0.0.1", task(port(contract.WatchdogPort, 32768, host), port(contract.WatchdogPort, 32768, host)), 32768, "10.0.0.1:32768"},
		{"another target first", "10.0.0.1", task(port(9090, 32000, host), port(contract.WatchdogPort, 32769, host)), 32769, "10.0.0.1:32769"},
		{"ingress mode is not reachable here", "10.0.0.1", task(port(contract.WatchdogPort, 30000, swarm.PortConfigPublishModeIngress)), 0, ""},
		{"not assigned yet", "10.0.0.1", task(port(contract.WatchdogPort, 0, host)), 0, ""},
		{"IPv6 node", "fd00::7", task(port(contract.WatchdogPort, 32770, host)), 32770, "[fd00::7]:32770"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PublishedPort(tt.task); got != tt.wantPort {
				t.Errorf("PublishedPort() = %d, want %d", got, tt.wantPort)
			}
			addr, ok := Addr(tt.nodeAddr, tt.task)
			if addr != tt.wantAddr || ok != (tt.wantAddr != "") {
				t.Errorf("Addr() = %q, %v, want %q", addr, ok, tt.wantAddr)
			}
		})
	}
}
