package doctor

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// TestRunNode: the node checks in their order, a FAIL of a check that only
// warns on a node reported as a WARN with its detail and hint, and an
// engine that does not answer still a FAIL, with the node's fix.
func TestRunNode(t *testing.T) {
	const kernel = "32768\t60999"
	stock := with(portsHost(kernel, kernel, ""),
		inotifyDir+"max_user_watches", "8192\n", inotifyDir+"max_user_instances", "128\n")
	prepared := with(portsHost("49152 60999", kernel, "49152-60999"),
		daemonJSONFile, `{"userland-proxy": false}`,
		inotifyDir+"max_user_watches", "524288\n", inotifyDir+"max_user_instances", "512\n")
	down := engine()
	down.pingErr = errors.New("Cannot connect to the Docker daemon")
	tests := []struct {
		name string
		p    Probes
		want []Result
	}{
		{"a stock Debian node", Probes{Root: mapFS(stock), Docker: engine()}, []Result{
			{Check: CheckDocker, Status: OK, Detail: "API 1.41 (engine 20.10.24+dfsg1)"},
			{Check: CheckHostPorts, Status: WARN,
				Detail: `dockerd (pid 900) assigns host ports from 32768-60999, the kernel's client range; 28232 of them not reserved (net.ipv4.ip_local_reserved_ports: none): under client load a new replica can fail with "bind: address already in use"`,
				Hint:   dockerHostHint},
			{Check: CheckUserlandProxy, Status: WARN,
				Detail: "on (Docker's default: no /etc/docker/daemon.json); a docker-proxy process copies every request to 127.0.0.1:<host port>",
				Hint:   dockerHostHint},
			{Check: CheckInotify, Status: WARN, Detail: "max_user_watches 8192 (< 65536), max_user_instances 128 (< 512)",
				Hint: "sysctl -w fs.inotify.max_user_watches=65536 fs.inotify.max_user_instances=512, and put the same in /etc/sysctl.d/90-pulse.conf"},
		}},
		{"a node set up by the playbook", Probes{Root: mapFS(prepared), Docker: engine()}, []Result{
			{Check: CheckDocker, Status: OK, Detail: "API 1.41 (engine 20.10.24+dfsg1)"},
			{Check: CheckHostPorts, Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-49151 (16384 ports)"},
			{Check: CheckUserlandProxy, Status: OK,
				Detail: `off ("userland-proxy": false in /etc/docker/daemon.json): 127.0.0.1:<host port> reaches replicas through iptables DNAT`},
			{Check: CheckInotify, Status: OK, Detail: "max_user_watches 524288, max_user_instances 512"},
		}},
		{"the engine does not answer", Probes{Root: mapFS(prepared), Docker: down}, []Result{
			{Check: CheckDocker, Status: FAIL, Detail: "unreachable: Cannot connect to the Docker daemon",
				Hint: "the node needs Docker Engine 20.10 or later running (apt-get install docker.io; systemctl start docker) and the docker command on the SSH user's PATH, with the right to use the engine (root, or the docker group)"},
			{Check: CheckHostPorts, Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-49151 (16384 ports)"},
			{Check: CheckUserlandProxy, Status: OK,
				Detail: `off ("userland-proxy": false in /etc/docker/daemon.json): 127.0.0.1:<host port> reaches replicas through iptables DNAT`},
			{Check: CheckInotify, Status: OK, Detail: "max_user_watches 524288, max_user_instances 512"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := RunNode(context.Background(), tc.p)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// TestNodeChecksExist: every node check is one of Run's, so RunNode
// cannot panic on a renamed check, and none is listed twice.
func TestNodeChecksExist(t *testing.T) {
	seen := map[string]bool{}
	for _, nc := range nodeChecks {
		if seen[nc.name] {
			t.Errorf("%s listed twice", nc.name)
		}
		seen[nc.name] = true
		found := false
		for _, c := range checks {
			found = found || c.name == nc.name
		}
		if !found {
			t.Errorf("node check %q is not one of Run's checks", nc.name)
		}
		if nc.worst != FAIL && nc.worst != WARN {
			t.Errorf("%s: worst status %q", nc.name, nc.worst)
		}
	}
}
