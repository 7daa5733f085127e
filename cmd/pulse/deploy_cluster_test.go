package main

import (
	"strings"
	"testing"
)

// TestClusterGateway: with several nodes, a replica_gateway that only the
// node it names can reach is refused with the fix; one node keeps the
// single-node shortcuts.
func TestClusterGateway(t *testing.T) {
	for _, tc := range []struct {
		gateway string
		nodes   int
		refused bool
	}{
		{"http://172.17.0.1:8080", 1, false}, // one node: docker0 is right
		{"http://127.0.0.1:8080", 0, false},  // no swarm node list
		{"http://172.17.0.1:8080", 3, true},  // the default, in a cluster
		{"http://172.17.5.9:8080", 2, true},  // anywhere on docker0's subnet
		{"http://127.0.0.1:8080", 2, true},
		{"http://localhost:8080", 2, true},
		{"http://LocalHost.:8080", 2, true},
		{"http://172.18.0.1:8080", 2, true}, // docker_gwbridge
		{"http://[::1]:8080", 2, true},
		{"http://172.31.250.1:8080", 3, false}, // the control node as nodes see it
		{"https://gw.example.net", 3, false},
		{"", 3, false}, // no gateway URL: replicas get none
	} {
		err := clusterGateway(tc.gateway, tc.nodes)
		if (err != nil) != tc.refused {
			t.Errorf("%q with %d nodes: %v, want refused %v", tc.gateway, tc.nodes, err, tc.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), "PULSE_REPLICA_GATEWAY") || !strings.Contains(err.Error(), "reachable only on the node")) {
			t.Errorf("%q: message %q does not say what to fix", tc.gateway, err)
		}
	}
}
