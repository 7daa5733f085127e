// Package swarmaddr finds where a Swarm task's watchdog is reached from
// outside: the address of the node it runs on and the host port its watchdog
// port is published at (DESIGN.md §4, host-mode ports). The CLI (package
// function) and pulsed's replica catalog (package internal/catalog) both
// need it identically; it is pure and holds no Docker client.
package swarmaddr

import (
	"net"
	"strconv"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// Loopback is where a node is reached when it reports no usable address:
// on a single-node swarm initialised with --advertise-addr 127.0.0.1 that is
// where its published ports are.
const Loopback = "127.0.0.1"

// NodeAddr is where a node's published ports are reached: the address it
// registered with the swarm; a manager that reports 0.0.0.0 (or nothing) is
// reached at its manager address, and failing that at Loopback.
func NodeAddr(n swarm.Node) string {
	if a := n.Status.Addr; a != "" && a != "0.0.0.0" {
		return a
	}
	if m := n.ManagerStatus; m != nil {
		if h, _, err := net.SplitHostPort(m.Addr); err == nil && h != "" && h != "0.0.0.0" {
			return h
		}
	}
	return Loopback
}

// PublishedPort is the host port of a task's watchdog (target port
// contract.WatchdogPort, published in host mode), or 0 when it has none
// (yet). The engine lists a host-mode binding once per address family, so
// the first one is taken.
func PublishedPort(t swarm.Task) uint32 {
	for _, p := range t.Status.PortStatus.Ports {
		if p.TargetPort == contract.WatchdogPort && p.PublishMode == swarm.PortConfigPublishModeHost && p.PublishedPort != 0 {
			return p.PublishedPort
		}
	}
	return 0
}

// Addr is host:port of t's watchdog on a node reached at nodeAddr (see
// NodeAddr); ok is false when the task has no published port.
func Addr(nodeAddr string, t swarm.Task) (addr string, ok bool) {
	port := PublishedPort(t)
	if port == 0 {
		return "", false
	}
	return net.JoinHostPort(nodeAddr, strconv.FormatUint(uint64(port), 10)), true
}
