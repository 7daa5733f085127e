package doctor

import (
	"maps"
	"testing"
)

// portsHost is a host whose dockerd (pid 900, in /run/docker.pid) reads
// dockerRange through its mount namespace, and whose kernel has the client
// range kernelRange and the reserved ports reserved.
func portsHost(dockerRange, kernelRange, reserved string) map[string]string {
	return map[string]string{
		"run/docker.pid":                 "900\n",
		"proc/900/comm":                  "dockerd\n",
		"proc/900/cmdline":               "/usr/sbin/dockerd\x00",
		"proc/900/stat":                  "900 (dockerd) S 1 900 900 0 -1",
		"proc/900/root/" + portRangeFile: dockerRange + "\n",
		portRangeFile:                    kernelRange + "\n",
		reservedPortsFile:                reserved + "\n",
	}
}

// with returns a copy of m changed by the pairs (name, content; content
// "-" removes the file).
func with(m map[string]string, pairs ...string) map[string]string {
	c := maps.Clone(m)
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "-" {
			delete(c, pairs[i])
		} else {
			c[pairs[i]] = pairs[i+1]
		}
	}
	return c
}

func TestHostPortsCheck(t *testing.T) {
	const fixed = "49152 60999" // /etc/pulse/docker-port-range, as dockerd reads it
	const kernel = "32768\t60999"
	const narrowHint = "widen net.ipv4.ip_local_port_range, or give dockerd a smaller range: set pulse_docker_port_range in the playbook's inventory and run it (make up)"
	const noDockerdHint = "run pulse doctor on every node; start dockerd with Pulse's playbook (make up, or ansible/site.yml on a cluster)"
	good := portsHost(fixed, kernel, "49152-60999")
	p := func(m map[string]string) Probes { return Probes{Root: mapFS(m)} }
	runCases(t, []checkCase{
		{"the playbook ran", CheckHostPorts, p(good),
			Result{Check: "host-ports", Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-49151 (16384 ports)"}},
		{"other reservations too", CheckHostPorts, p(with(good, reservedPortsFile, "8080,49152-60999\n")),
			Result{Check: "host-ports", Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-49151 (16384 ports)"}},
		{"a reservation in the clients' range", CheckHostPorts, p(with(good, reservedPortsFile, "40000,49152-60999\n")),
			Result{Check: "host-ports", Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-39999,40001-49151 (16383 ports)"}},
		{"stock host", CheckHostPorts, p(portsHost(kernel, kernel, "")),
			Result{Check: "host-ports", Status: FAIL,
				Detail: `dockerd (pid 900) assigns host ports from 32768-60999, the kernel's client range; 28232 of them not reserved (net.ipv4.ip_local_reserved_ports: none): under client load a new replica can fail with "bind: address already in use"`,
				Hint:   dockerHostHint}},
		{"reserved ports alone: dockerd still walks the whole range", CheckHostPorts, p(portsHost(kernel, kernel, "49152-60999")),
			Result{Check: "host-ports", Status: FAIL,
				Detail: `dockerd (pid 900) assigns host ports from 32768-60999, the kernel's client range; 16384 of them not reserved (net.ipv4.ip_local_reserved_ports: 49152-60999): under client load a new replica can fail with "bind: address already in use"`,
				Hint:   dockerHostHint}},
		{"own range, not reserved", CheckHostPorts, p(portsHost(fixed, kernel, "")),
			Result{Check: "host-ports", Status: FAIL,
				Detail: `dockerd (pid 900) assigns host ports from 49152-60999; 11848 of them not reserved (net.ipv4.ip_local_reserved_ports: none): under client load a new replica can fail with "bind: address already in use"`,
				Hint:   dockerHostHint}},
		{"partly reserved", CheckHostPorts, p(portsHost(fixed, kernel, "49152-55000")),
			Result{Check: "host-ports", Status: FAIL,
				Detail: `dockerd (pid 900) assigns host ports from 49152-60999; 5999 of them not reserved (net.ipv4.ip_local_reserved_ports: 49152-55000): under client load a new replica can fail with "bind: address already in use"`,
				Hint:   dockerHostHint}},
		{"no client port left", CheckHostPorts, p(portsHost(fixed, "49152\t60999", "49152-60999")),
			Result{Check: "host-ports", Status: FAIL,
				Detail: "no client ports left: the kernel's range 49152-60999 is all reserved (49152-60999)", Hint: narrowHint}},
		{"few client ports", CheckHostPorts, p(portsHost(fixed, "47000\t60999", "49152-60999")),
			Result{Check: "host-ports", Status: WARN,
				Detail: "dockerd 49152-60999 (reserved), clients 47000-49151 (2152 ports): fewer than 4096", Hint: narrowHint}},
		{"no pid file: the lowest dockerd", CheckHostPorts, p(with(good, "run/docker.pid", "-", "proc/950/comm", "dockerd\n",
			"proc/950/root/"+portRangeFile, kernel)),
			Result{Check: "host-ports", Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-49151 (16384 ports)"}},
		{"stale pid file: found by name", CheckHostPorts, p(with(good, "run/docker.pid", "77\n", "proc/77/comm", "sleep\n")),
			Result{Check: "host-ports", Status: OK, Detail: "dockerd 49152-60999 (reserved), clients 32768-49151 (16384 ports)"}},
		{"no dockerd", CheckHostPorts, p(map[string]string{"proc/1/comm": "init\n"}),
			Result{Check: "host-ports", Status: WARN, Detail: "no dockerd runs on this host: nothing to check", Hint: noDockerdHint}},
		{"dockerd's view unreadable", CheckHostPorts, p(with(good, "proc/900/root/"+portRangeFile, "-")),
			Result{Check: "host-ports", Status: WARN,
				Detail: "dockerd (pid 900): /proc/900/root/proc/sys/net/ipv4/ip_local_port_range: file does not exist", Hint: dockerHostHint}},
		{"bad range file", CheckHostPorts, p(with(good, "proc/900/root/"+portRangeFile, "49152-60999")),
			Result{Check: "host-ports", Status: WARN,
				Detail: `/proc/900/root/proc/sys/net/ipv4/ip_local_port_range: port range syntax: "49152-60999": want two port numbers`,
				Hint:   dockerHostHint}},
		{"bad reserved list", CheckHostPorts, p(with(good, reservedPortsFile, "8080,x")),
			Result{Check: "host-ports", Status: WARN,
				Detail: `/proc/sys/net/ipv4/ip_local_reserved_ports: port range syntax: "x" is not a port number (in entry "x")`,
				Hint:   "cat /proc/sys/net/ipv4/ip_local_reserved_ports"}},
		{"no host file system", CheckHostPorts, Probes{},
			Result{Check: "host-ports", Status: WARN, Detail: "dockerd: no host file system configured", Hint: dockerHostHint}},
	})
}

// iptables -t nat -S OUTPUT on this host, as dockerd 20.10 leaves it.
const (
	iptablesWithProxy    = "-P OUTPUT ACCEPT\n-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n"
	iptablesWithoutProxy = "-P OUTPUT ACCEPT\n-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n"
)

func TestUserlandProxyCheck(t *testing.T) {
	const restartHint = "restart dockerd: run Pulse's playbook (make up, or ansible/site.yml on a cluster)"
	const dnat = ": 127.0.0.1:<host port> reaches replicas through iptables DNAT"
	const copies = "; a docker-proxy process copies every request to 127.0.0.1:<host port>"
	base := portsHost("49152 60999", "32768\t60999", "49152-60999")
	off := with(base, daemonJSONFile, `{"storage-driver": "overlay2", "userland-proxy": false}`)
	proxies := with(base, "proc/31/comm", "docker-proxy\n", "proc/31/stat", "31 (docker-proxy) S 900 31 31 0 -1",
		"proc/32/comm", "docker-proxy\n", "proc/32/stat", "32 (docker-proxy) S 900 32 32 0 -1")
	iptables := func(out string) Runner {
		return fakeExec(map[string]fakeCmd{"iptables -w -t nat -S OUTPUT": {out: out}})
	}
	p := func(m map[string]string, exec Runner) Probes { return Probes{Root: mapFS(m), Exec: exec} }
	runCases(t, []checkCase{
		{"off", CheckUserlandProxy, p(off, iptables(iptablesWithoutProxy)),
			Result{Check: "userland-proxy", Status: OK, Detail: `off ("userland-proxy": false in /etc/docker/daemon.json)` + dnat}},
		{"off, iptables not installed", CheckUserlandProxy, p(off, fakeExec(nil)),
			Result{Check: "userland-proxy", Status: OK, Detail: `off ("userland-proxy": false in /etc/docker/daemon.json)` + dnat}},
		{"off, no Exec", CheckUserlandProxy, p(off, nil),
			Result{Check: "userland-proxy", Status: OK, Detail: `off ("userland-proxy": false in /etc/docker/daemon.json)` + dnat}},
		{"no daemon.json", CheckUserlandProxy, p(base, iptables(iptablesWithProxy)),
			Result{Check: "userland-proxy", Status: FAIL,
				Detail: "on (Docker's default: no /etc/docker/daemon.json): Docker's nat OUTPUT rule leaves 127.0.0.0/8 to the proxy" + copies,
				Hint:   dockerHostHint}},
		{"daemon.json without the key, proxies running", CheckUserlandProxy,
			p(with(proxies, daemonJSONFile, `{"mtu": 1400}`), fakeExec(nil)),
			Result{Check: "userland-proxy", Status: FAIL,
				Detail: `on (Docker's default: /etc/docker/daemon.json does not set "userland-proxy"): 2 docker-proxy processes running (pids 31, 32)` + copies,
				Hint:   dockerHostHint}},
		{"true", CheckUserlandProxy, p(with(base, daemonJSONFile, `{"userland-proxy": true}`), fakeExec(nil)),
			Result{Check: "userland-proxy", Status: FAIL,
				Detail: `on ("userland-proxy": true in /etc/docker/daemon.json)` + copies, Hint: dockerHostHint}},
		{"off in daemon.json, dockerd not restarted", CheckUserlandProxy, p(off, iptables(iptablesWithProxy)),
			Result{Check: "userland-proxy", Status: FAIL,
				Detail: `off ("userland-proxy": false in /etc/docker/daemon.json), but the running dockerd (pid 900) still uses it: Docker's nat OUTPUT rule leaves 127.0.0.0/8 to the proxy`,
				Hint:   restartHint}},
		{"off in daemon.json, docker-proxy still running", CheckUserlandProxy,
			p(with(proxies, daemonJSONFile, `{"userland-proxy": false}`), iptables(iptablesWithoutProxy)),
			Result{Check: "userland-proxy", Status: FAIL,
				Detail: `off ("userland-proxy": false in /etc/docker/daemon.json), but the running dockerd (pid 900) still uses it: 2 docker-proxy processes running (pids 31, 32)`,
				Hint:   restartHint}},
		{"a nested engine's docker-proxy does not count", CheckUserlandProxy,
			p(with(off, "proc/40/comm", "docker-proxy\n", "proc/40/stat", "40 (docker-proxy) S 1234 40 40 0 -1"), iptables(iptablesWithoutProxy)),
			Result{Check: "userland-proxy", Status: OK, Detail: `off ("userland-proxy": false in /etc/docker/daemon.json)` + dnat}},
		{"flag", CheckUserlandProxy, p(with(base, "proc/900/cmdline", "dockerd\x00--userland-proxy=false\x00"), iptables(iptablesWithoutProxy)),
			Result{Check: "userland-proxy", Status: OK, Detail: "off (dockerd --userland-proxy=false)" + dnat}},
		{"bare boolean flag", CheckUserlandProxy, p(with(off, "proc/900/cmdline", "dockerd\x00--userland-proxy\x00"), fakeExec(nil)),
			Result{Check: "userland-proxy", Status: FAIL, Detail: "on (dockerd --userland-proxy=true)" + copies, Hint: dockerHostHint}},
		{"--config-file", CheckUserlandProxy,
			p(with(base, "proc/900/cmdline", "dockerd\x00--config-file\x00/etc/docker/pulse.json\x00", "etc/docker/pulse.json", `{"userland-proxy":false}`), nil),
			Result{Check: "userland-proxy", Status: OK, Detail: `off ("userland-proxy": false in /etc/docker/pulse.json)` + dnat}},
		{"invalid daemon.json", CheckUserlandProxy, p(with(base, daemonJSONFile, `{"userland-proxy": false,}`), nil),
			Result{Check: "userland-proxy", Status: WARN,
				Detail: "/etc/docker/daemon.json: invalid character '}' looking for beginning of object key string",
				Hint:   "fix the file (dockerd does not start with an invalid one), then run Pulse's playbook (make up)"}},
		{"not a boolean", CheckUserlandProxy, p(with(base, daemonJSONFile, `{"userland-proxy": "no"}`), nil),
			Result{Check: "userland-proxy", Status: WARN,
				Detail: `/etc/docker/daemon.json: "userland-proxy": "no" is not a boolean`,
				Hint:   "fix the file (dockerd does not start with an invalid one), then run Pulse's playbook (make up)"}},
		{"no dockerd", CheckUserlandProxy, p(map[string]string{"proc/1/comm": "init\n"}, nil),
			Result{Check: "userland-proxy", Status: WARN, Detail: "no dockerd runs on this host: nothing to check",
				Hint: "run pulse doctor on every node; start dockerd with Pulse's playbook (make up, or ansible/site.yml on a cluster)"}},
		{"no host file system", CheckUserlandProxy, Probes{},
			Result{Check: "userland-proxy", Status: WARN, Detail: "no host file system configured"}},
	})
}

func TestLoopbackSkipsDNAT(t *testing.T) {
	for _, tc := range []struct {
		name         string
		rules        string
		skips, found bool
	}{
		{"with the proxy", iptablesWithProxy, true, true},
		{"without", iptablesWithoutProxy, false, true},
		{"both (a stale rule)", iptablesWithProxy + "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n", true, true},
		{"--dst spelling", "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER ! --dst 127.0.0.0/8\n", true, true},
		{"no Docker rule", "-P OUTPUT ACCEPT\n-A OUTPUT -d 10.0.0.0/8 -j ACCEPT\n", false, false},
		{"another chain's jump", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n", false, false},
		{"empty", "", false, false},
	} {
		skips, found := loopbackSkipsDNAT(tc.rules)
		if skips != tc.skips || found != tc.found {
			t.Errorf("%s: loopbackSkipsDNAT = %v, %v; want %v, %v", tc.name, skips, found, tc.skips, tc.found)
		}
	}
}

func TestParseDaemonJSONProxy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want proxySetting
		err  bool
	}{
		{`{"userland-proxy": false}`, proxyOff, false},
		{`{"userland-proxy": true, "mtu": 1400}`, proxyOn, false},
		{`{"data-root": "/var/lib/docker", "log-opts": {"max-size": "10m"}}`, proxyUnset, false},
		{`{}`, proxyUnset, false},
		{`{"userland-proxy": "false"}`, proxyUnset, true},
		{`{"userland-proxy": null}`, proxyUnset, false}, // JSON null leaves the default
		{`[]`, proxyUnset, true},
		{``, proxyUnset, true},
	} {
		got, err := parseDaemonJSONProxy([]byte(tc.in))
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("parseDaemonJSONProxy(%s) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFlagValueAndParentPID(t *testing.T) {
	args := []string{"-H", "fd://", "--config-file", "/etc/d.json", "--userland-proxy=false", "--debug"}
	if v, ok := flagValue(args, "config-file", false); !ok || v != "/etc/d.json" {
		t.Errorf("config-file = %q, %v", v, ok)
	}
	if v, ok := flagValue(args, "userland-proxy", true); !ok || v != "false" {
		t.Errorf("userland-proxy = %q, %v", v, ok)
	}
	if v, ok := flagValue(args, "debug", true); !ok || v != "true" {
		t.Errorf("debug = %q, %v", v, ok)
	}
	if _, ok := flagValue(args, "iptables", true); ok {
		t.Error("iptables found")
	}
	if _, ok := flagValue([]string{"--config-file"}, "config-file", false); ok {
		t.Error("a value flag without its value found")
	}
	root := mapFS(map[string]string{
		"proc/5/stat": "5 (a) b) c) S 77 5 5 0 -1",
		"proc/6/stat": "6 (odd",
	})
	for pid, want := range map[int]int{5: 77, 6: 0, 7: 0} {
		if got := parentPID(root, pid); got != want {
			t.Errorf("parentPID(%d) = %d, want %d", pid, got, want)
		}
	}
}
