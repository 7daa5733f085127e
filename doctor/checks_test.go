package doctor

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"testing/fstest"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
)

// host returns one of the fake hosts under testdata/hosts.
func host(name string) Probes {
	return Probes{Root: os.DirFS("testdata/hosts/" + name)}
}

func runOne(t *testing.T, name string, p Probes) Result {
	t.Helper()
	for _, c := range checks {
		if c.name == name {
			return runCheck(context.Background(), p, c)
		}
	}
	t.Fatalf("no check %q", name)
	return Result{}
}

type checkCase struct {
	name  string
	check string
	p     Probes
	want  Result
}

func runCases(t *testing.T, cases []checkCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := runOne(t, tc.check, tc.p); got != tc.want {
				t.Errorf("\n got %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func withDocker(f func(d *fakeDocker)) Probes {
	d := engine()
	f(d)
	return Probes{Docker: d}
}

func TestDockerCheck(t *testing.T) {
	const startHint = "start the engine (systemctl start docker, or dockerd &), install it with apt-get install docker.io, or fix the engine's address (pulse's docker_host in its config, PULSE_DOCKER_HOST, else DOCKER_HOST)"
	runCases(t, []checkCase{
		{"engine 20.10", CheckDocker, withDocker(func(*fakeDocker) {}),
			Result{Check: "docker", Status: OK, Detail: "API 1.41 (engine 20.10.24+dfsg1)"}},
		{"newer engine", CheckDocker, withDocker(func(d *fakeDocker) {
			d.ping.APIVersion = "1.51"
			d.version = types.Version{Version: "28.5.2", APIVersion: "1.51"}
		}), Result{Check: "docker", Status: OK, Detail: "API 1.51 (engine 28.5.2)"}},
		{"older API", CheckDocker, withDocker(func(d *fakeDocker) {
			d.ping.APIVersion = "1.40"
			d.version = types.Version{Version: "19.03.15", APIVersion: "1.40"}
		}), Result{Check: "docker", Status: WARN, Detail: "API 1.40 (engine 19.03.15), older than API 1.41",
			Hint: "upgrade the engine to 20.10 or later (Debian 12: apt-get install docker.io)"}},
		{"no API in version, ping has it", CheckDocker, withDocker(func(d *fakeDocker) {
			d.version.APIVersion = ""
		}), Result{Check: "docker", Status: OK, Detail: "API 1.41 (engine 20.10.24+dfsg1)"}},
		{"unreachable", CheckDocker, withDocker(func(d *fakeDocker) {
			d.pingErr = errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
		}), Result{Check: "docker", Status: FAIL,
			Detail: "unreachable: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
			Hint:   startHint}},
		{"permission denied", CheckDocker, withDocker(func(d *fakeDocker) {
			d.pingErr = errors.New("permission denied while trying to connect to the Docker daemon socket")
		}), Result{Check: "docker", Status: FAIL,
			Detail: "unreachable: permission denied while trying to connect to the Docker daemon socket",
			Hint:   "run as root or as a member of the docker group (the socket is root-equivalent)"}},
		{"version fails", CheckDocker, withDocker(func(d *fakeDocker) {
			d.versionErr = errors.New("500 Internal Server Error")
		}), Result{Check: "docker", Status: WARN, Detail: "API 1.41 (version: 500 Internal Server Error)",
			Hint: "the engine answers ping but not /version; check its log"}},
		{"client could not be made", CheckDocker, Probes{Docker: brokenDocker{err: errors.New("docker client: unable to parse docker host `tcp:/x`")}},
			Result{Check: "docker", Status: FAIL, Detail: "unreachable: docker client: unable to parse docker host `tcp:/x`", Hint: startHint}},
		{"client could not be made for a host", CheckDocker, Probes{Docker: newDockerClient("tcp:/x")},
			Result{Check: "docker", Status: FAIL, Detail: "unreachable at tcp:/x: docker client for tcp:/x: unable to parse docker host `tcp:/x`", Hint: startHint}},
		{"no client", CheckDocker, Probes{},
			Result{Check: "docker", Status: FAIL, Detail: "no Docker client configured"}},
	})
}

func TestSwarmCheck(t *testing.T) {
	state := func(s swarm.LocalNodeState, errText string) Probes {
		return withDocker(func(d *fakeDocker) {
			d.info.Swarm = swarm.Info{LocalNodeState: s, Error: errText}
		})
	}
	runCases(t, []checkCase{
		{"single manager", CheckSwarm, withDocker(func(*fakeDocker) {}),
			Result{Check: "swarm", Status: OK, Detail: "active, manager; 1 node (1 ready, 1 manager)"}},
		{"three nodes ready", CheckSwarm, withDocker(func(d *fakeDocker) {
			d.nodes = []swarm.Node{
				node("laptop1", swarm.NodeStateReady, true),
				node("laptop2", swarm.NodeStateReady, false),
				node("laptop3", swarm.NodeStateReady, false),
			}
		}), Result{Check: "swarm", Status: OK, Detail: "active, manager; 3 nodes (3 ready, 1 manager)"}},
		{"a node down", CheckSwarm, withDocker(func(d *fakeDocker) {
			d.nodes = []swarm.Node{
				node("laptop1", swarm.NodeStateReady, true),
				node("laptop2", swarm.NodeStateDown, true),
			}
		}), Result{Check: "swarm", Status: WARN, Detail: "active, manager; 2 nodes (1 ready, 2 managers); not ready: laptop2 down",
			Hint: "docker node ls; replicas on a node that is down move to the others"}},
		{"node list fails", CheckSwarm, withDocker(func(d *fakeDocker) {
			d.nodesErr = errors.New("rpc error: code = Unknown desc = The swarm does not have a leader")
		}), Result{Check: "swarm", Status: WARN,
			Detail: "active, manager; node list: rpc error: code = Unknown desc = The swarm does not have a leader",
			Hint:   "docker node ls"}},
		{"worker", CheckSwarm, withDocker(func(d *fakeDocker) {
			d.info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateActive,
				RemoteManagers: []swarm.Peer{{Addr: "192.168.1.10:2377"}, {Addr: "192.168.1.11:2377"}}}
		}), Result{Check: "swarm", Status: WARN, Detail: "active, worker (managers: 192.168.1.10:2377, 192.168.1.11:2377)",
			Hint: "this node runs replicas; run pulse deploy and pulsed against a manager (DOCKER_HOST=ssh://<manager>)"}},
		{"inactive", CheckSwarm, state(swarm.LocalNodeStateInactive, ""),
			Result{Check: "swarm", Status: FAIL, Detail: "inactive: this engine is not part of a swarm",
				Hint: "docker swarm init --advertise-addr <addr> (an address the other nodes reach; 127.0.0.1 on one machine), or docker swarm join"}},
		{"pending", CheckSwarm, state(swarm.LocalNodeStatePending, ""),
			Result{Check: "swarm", Status: WARN, Detail: "pending: joining a swarm",
				Hint: "wait a few seconds and run pulse doctor again; if it stays pending: docker swarm leave --force, then join again"}},
		{"locked", CheckSwarm, state(swarm.LocalNodeStateLocked, ""),
			Result{Check: "swarm", Status: FAIL, Detail: "locked: the swarm's autolock key is needed", Hint: "docker swarm unlock"}},
		{"error", CheckSwarm, state(swarm.LocalNodeStateError, "manager stopped: can't initialize raft node"),
			Result{Check: "swarm", Status: FAIL, Detail: "error: manager stopped: can't initialize raft node",
				Hint: "docker swarm leave --force, then docker swarm init or join again"}},
		{"unknown state", CheckSwarm, state("frozen", ""),
			Result{Check: "swarm", Status: WARN, Detail: `unknown state "frozen"`, Hint: "docker info shows the swarm's state"}},
		{"info fails", CheckSwarm, withDocker(func(d *fakeDocker) { d.infoErr = errors.New("EOF") }),
			Result{Check: "swarm", Status: FAIL, Detail: "docker info: EOF",
				Hint: "start the engine (systemctl start docker, or dockerd &), install it with apt-get install docker.io, or fix the engine's address (pulse's docker_host in its config, PULSE_DOCKER_HOST, else DOCKER_HOST)"}},
		{"no client", CheckSwarm, Probes{},
			Result{Check: "swarm", Status: FAIL, Detail: "no Docker client configured"}},
	})
}

func TestReplicasCheck(t *testing.T) {
	runCases(t, []checkCase{
		{"none", CheckReplicas, withDocker(func(*fakeDocker) {}),
			Result{Check: "replicas", Status: OK, Detail: "none running on this node"}},
		{"one task", CheckReplicas, withDocker(func(d *fakeDocker) {
			d.containers = []container.Summary{replica("hello", true)}
		}), Result{Check: "replicas", Status: OK, Detail: "1 replica running on this node (hello 1)"}},
		{"tasks and a standalone container", CheckReplicas, withDocker(func(d *fakeDocker) {
			d.containers = []container.Summary{
				replica("hello", true), replica("echo", true), replica("hello", true), replica("demo", false),
			}
		}), Result{Check: "replicas", Status: OK,
			Detail: "4 replicas running on this node (demo 1, echo 1, hello 2); 1 outside swarm"}},
		{"list fails", CheckReplicas, withDocker(func(d *fakeDocker) { d.containersErr = errors.New("EOF") }),
			Result{Check: "replicas", Status: WARN, Detail: "container list: EOF",
				Hint: "start the engine (systemctl start docker, or dockerd &), install it with apt-get install docker.io, or fix the engine's address (pulse's docker_host in its config, PULSE_DOCKER_HOST, else DOCKER_HOST)"}},
		{"no client", CheckReplicas, Probes{},
			Result{Check: "replicas", Status: WARN, Detail: "no Docker client configured"}},
	})
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	fmt.Fprint(zw, s)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, data := range files {
		m[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return m
}

func TestKernelChecks(t *testing.T) {
	const meshWhy = "Swarm's routing mesh and service VIPs do not work"
	const meshHint = "fine for Pulse: it publishes host-mode ports and balances with HAProxy, not the routing mesh"
	const vxlanHint = "one node works without it; to try: ip link add vx0 type vxlan id 42 dstport 4789 && ip link del vx0"
	notSet := fstest.MapFS{"proc/config.gz": {Data: gz(t, "# CONFIG_IP_VS is not set\n# CONFIG_VXLAN is not set\n")}}
	odd := fstest.MapFS{"proc/config.gz": {Data: gz(t, "CONFIG_IP_VS=\"x\"\n")}}
	corrupt := mapFS(map[string]string{"proc/config.gz": "CONFIG_IP_VS=y\n"}) // not gzip
	runCases(t, []checkCase{
		{"ipvs: config.gz says not set", CheckIPVS, host("nomesh"),
			Result{Check: "ipvs", Status: WARN, Detail: "absent (CONFIG_IP_VS not set in /proc/config.gz): " + meshWhy, Hint: meshHint}},
		{"ipvs: /proc/net/ip_vs", CheckIPVS, host("modules"),
			Result{Check: "ipvs", Status: OK, Detail: "available (/proc/net/ip_vs)"}},
		{"ipvs: /sys/module/ip_vs", CheckIPVS, Probes{Root: mapFS(map[string]string{"sys/module/ip_vs/refcnt": "0\n"})},
			Result{Check: "ipvs", Status: OK, Detail: "available (/sys/module/ip_vs)"}},
		{"ipvs: /proc/modules", CheckIPVS, Probes{Root: mapFS(map[string]string{"proc/modules": "ip_vs 200704 0 - Live 0x0\n"})},
			Result{Check: "ipvs", Status: OK, Detail: "module ip_vs loaded (/proc/modules)"}},
		{"ipvs: ip_vs_rr is not ip_vs", CheckIPVS, Probes{Root: mapFS(map[string]string{"proc/modules": "ip_vs_rr 16384 0 - Live 0x0\n"})},
			Result{Check: "ipvs", Status: WARN,
				Detail: "unknown (no /proc/net/ip_vs, no ip_vs module, no kernel config); without IPVS " + meshWhy, Hint: meshHint}},
		{"ipvs: /boot config module", CheckIPVS, host("bootconfig"),
			Result{Check: "ipvs", Status: OK, Detail: "module (CONFIG_IP_VS=m in /boot/config-6.1.0-18-amd64), loaded on first use"}},
		{"ipvs: built in", CheckIPVS, Probes{Root: fstest.MapFS{"proc/config.gz": {Data: gz(t, "CONFIG_IP_VS=y\n")}}},
			Result{Check: "ipvs", Status: OK, Detail: "built in (CONFIG_IP_VS=y in /proc/config.gz)"}},
		{"ipvs: option missing from config", CheckIPVS, Probes{Root: fstest.MapFS{"proc/config.gz": {Data: gz(t, "CONFIG_NET=y\n")}}},
			Result{Check: "ipvs", Status: WARN, Detail: "absent (CONFIG_IP_VS not set in /proc/config.gz): " + meshWhy, Hint: meshHint}},
		{"ipvs: odd value", CheckIPVS, Probes{Root: odd},
			Result{Check: "ipvs", Status: WARN, Detail: `unknown (CONFIG_IP_VS="x" in /proc/config.gz); without IPVS ` + meshWhy, Hint: meshHint}},
		{"ipvs: nothing known", CheckIPVS, Probes{Root: fstest.MapFS{}},
			Result{Check: "ipvs", Status: WARN,
				Detail: "unknown (no /proc/net/ip_vs, no ip_vs module, no kernel config); without IPVS " + meshWhy, Hint: meshHint}},
		{"ipvs: corrupt config.gz", CheckIPVS, Probes{Root: corrupt},
			Result{Check: "ipvs", Status: WARN,
				Detail: "unknown (/proc/config.gz: gzip: invalid header); without IPVS " + meshWhy, Hint: meshHint}},
		{"ipvs: no root", CheckIPVS, Probes{},
			Result{Check: "ipvs", Status: WARN,
				Detail: "unknown (no host file system configured); without IPVS " + meshWhy, Hint: meshHint}},

		{"vxlan: /sys/module/vxlan", CheckVXLAN, host("nomesh"),
			Result{Check: "vxlan", Status: OK, Detail: "available (/sys/module/vxlan)"}},
		{"vxlan: /proc/modules", CheckVXLAN, host("modules"),
			Result{Check: "vxlan", Status: OK, Detail: "module vxlan loaded (/proc/modules)"}},
		{"vxlan: /boot config module", CheckVXLAN, host("bootconfig"),
			Result{Check: "vxlan", Status: OK, Detail: "module (CONFIG_VXLAN=m in /boot/config-6.1.0-18-amd64), loaded on first use"}},
		{"vxlan: built in", CheckVXLAN, Probes{Root: fstest.MapFS{"proc/config.gz": {Data: gz(t, "CONFIG_VXLAN=y\n")}}},
			Result{Check: "vxlan", Status: OK, Detail: "built in (CONFIG_VXLAN=y in /proc/config.gz)"}},
		{"vxlan: not set", CheckVXLAN, Probes{Root: notSet},
			Result{Check: "vxlan", Status: WARN,
				Detail: "absent (CONFIG_VXLAN not set in /proc/config.gz): multi-node overlay networks need it", Hint: vxlanHint}},
		{"vxlan: nothing known", CheckVXLAN, Probes{Root: fstest.MapFS{}},
			Result{Check: "vxlan", Status: WARN,
				Detail: "unknown (no vxlan module, no kernel config): multi-node overlay networks need it", Hint: vxlanHint}},
		{"vxlan: corrupt config.gz", CheckVXLAN, Probes{Root: corrupt},
			Result{Check: "vxlan", Status: WARN,
				Detail: "unknown (/proc/config.gz: gzip: invalid header): multi-node overlay networks need it", Hint: vxlanHint}},
	})
}

func TestLimitChecks(t *testing.T) {
	inotify := func(watches, instances string) Probes {
		return Probes{Root: mapFS(map[string]string{
			"proc/sys/fs/inotify/max_user_watches":   watches,
			"proc/sys/fs/inotify/max_user_instances": instances,
		})}
	}
	nofile := func(soft, hard uint64, err error) Probes {
		return Probes{NoFile: func() (uint64, uint64, error) { return soft, hard, err }}
	}
	const raiseHard = "raise the hard limit: LimitNOFILE=65536 in the systemd units (docker, pulsed, haproxy), or nofile in /etc/security/limits.conf; HAProxy fails to start with maxconn above about half of it"
	runCases(t, []checkCase{
		{"inotify: instances low", CheckInotify, host("nomesh"),
			Result{Check: "inotify", Status: WARN, Detail: "max_user_watches 192536, max_user_instances 128 (< 512)",
				Hint: "sysctl -w fs.inotify.max_user_instances=512, and put the same in /etc/sysctl.d/90-pulse.conf"}},
		{"inotify: both low", CheckInotify, host("bootconfig"),
			Result{Check: "inotify", Status: WARN, Detail: "max_user_watches 8192 (< 65536), max_user_instances 128 (< 512)",
				Hint: "sysctl -w fs.inotify.max_user_watches=65536 fs.inotify.max_user_instances=512, and put the same in /etc/sysctl.d/90-pulse.conf"}},
		{"inotify: enough", CheckInotify, host("modules"),
			Result{Check: "inotify", Status: OK, Detail: "max_user_watches 524288, max_user_instances 8192"}},
		{"inotify: at the limits", CheckInotify, inotify("65536\n", "512\n"),
			Result{Check: "inotify", Status: OK, Detail: "max_user_watches 65536, max_user_instances 512"}},
		{"inotify: garbage", CheckInotify, inotify("lots\n", "512\n"),
			Result{Check: "inotify", Status: WARN,
				Detail: `max_user_instances 512; /proc/sys/fs/inotify/max_user_watches: "lots" is not a number`,
				Hint:   "cat /proc/sys/fs/inotify/max_user_watches /proc/sys/fs/inotify/max_user_instances"}},
		{"inotify: missing", CheckInotify, Probes{Root: fstest.MapFS{}},
			Result{Check: "inotify", Status: WARN,
				Detail: "/proc/sys/fs/inotify/max_user_watches: file does not exist; /proc/sys/fs/inotify/max_user_instances: file does not exist",
				Hint:   "cat /proc/sys/fs/inotify/max_user_watches /proc/sys/fs/inotify/max_user_instances"}},
		{"inotify: no root", CheckInotify, Probes{},
			Result{Check: "inotify", Status: WARN, Detail: "no host file system configured"}},

		{"nofile: this host", CheckNoFile, nofile(20000, 20000, nil),
			Result{Check: "nofile", Status: WARN, Detail: "soft 20000, hard 20000 (< 65536)", Hint: raiseHard}},
		{"nofile: soft low, hard high", CheckNoFile, nofile(1024, 524288, nil),
			Result{Check: "nofile", Status: WARN, Detail: "soft 1024, hard 524288 (soft < 65536)",
				Hint: "ulimit -n 65536 in the shell that starts Pulse, or LimitNOFILE=65536 in its systemd unit"}},
		{"nofile: enough", CheckNoFile, nofile(1048576, 1048576, nil),
			Result{Check: "nofile", Status: OK, Detail: "soft 1048576, hard 1048576"}},
		{"nofile: unlimited", CheckNoFile, nofile(65536, ^uint64(0), nil),
			Result{Check: "nofile", Status: OK, Detail: "soft 65536, hard unlimited"}},
		{"nofile: getrlimit fails", CheckNoFile, nofile(0, 0, errors.New("operation not permitted")),
			Result{Check: "nofile", Status: WARN, Detail: "getrlimit RLIMIT_NOFILE: operation not permitted", Hint: "ulimit -n; ulimit -Hn"}},
		{"nofile: no probe", CheckNoFile, Probes{},
			Result{Check: "nofile", Status: WARN, Detail: "no RLIMIT_NOFILE probe configured"}},
	})
}

func TestToolChecks(t *testing.T) {
	tools := func(change func(m map[string]fakeCmd)) Probes {
		m := allTools()
		change(m)
		return Probes{Exec: fakeExec(m)}
	}
	all := tools(func(map[string]fakeCmd) {})
	hangingHAProxy := tools(func(m map[string]fakeCmd) { m["haproxy -v"] = fakeCmd{out: "hang"} })
	hangingHAProxy.CallTimeout = 50 * time.Millisecond
	const goHint = "install Go 1.21 or later from https://go.dev/dl/ into /usr/local/go (Debian 12's golang-go 1.19 is too old)"
	runCases(t, []checkCase{
		{"haproxy 2.6", CheckHAProxy, all, Result{Check: "haproxy", Status: OK, Detail: "2.6.12-1+deb12u4"}},
		{"haproxy 1.8", CheckHAProxy, tools(func(m map[string]fakeCmd) {
			m["haproxy -v"] = fakeCmd{out: "HA-Proxy version 1.8.19-1+deb10u3 2020/08/01\nCopyright 2000-2019 Willy Tarreau <willy@haproxy.org>\n"}
		}), Result{Check: "haproxy", Status: WARN, Detail: "1.8.19-1+deb10u3, older than 2.6: the gateway needs it",
			Hint: "apt-get install haproxy (2.6 or later; Debian 12 has 2.6)"}},
		{"haproxy in /usr/sbin only", CheckHAProxy, tools(func(m map[string]fakeCmd) {
			m["/usr/sbin/haproxy -v"] = m["haproxy -v"]
			delete(m, "haproxy -v")
		}), Result{Check: "haproxy", Status: WARN, Detail: "2.6.12-1+deb12u4 at /usr/sbin/haproxy, not on PATH",
			Hint: "export PATH=$PATH:/usr/sbin"}},
		{"haproxy absent", CheckHAProxy, tools(func(m map[string]fakeCmd) { delete(m, "haproxy -v") }),
			Result{Check: "haproxy", Status: WARN, Detail: "not installed: the gateway needs it",
				Hint: "apt-get install haproxy (2.6 or later; Debian 12 has 2.6)"}},
		{"haproxy fails", CheckHAProxy, tools(func(m map[string]fakeCmd) {
			m["haproxy -v"] = fakeCmd{out: "haproxy: error while loading shared libraries: libssl.so.3\n", err: errors.New("exit status 127")}
		}), Result{Check: "haproxy", Status: WARN,
			Detail: "haproxy -v: exit status 127: haproxy: error while loading shared libraries: libssl.so.3",
			Hint:   "apt-get install haproxy (2.6 or later; Debian 12 has 2.6)"}},
		{"haproxy hangs", CheckHAProxy, hangingHAProxy,
			Result{Check: "haproxy", Status: WARN, Detail: "haproxy -v: context deadline exceeded",
				Hint: "apt-get install haproxy (2.6 or later; Debian 12 has 2.6)"}},
		{"haproxy prints no version", CheckHAProxy, tools(func(m map[string]fakeCmd) { m["haproxy -v"] = fakeCmd{out: "hello\n"} }),
			Result{Check: "haproxy", Status: WARN, Detail: `no version in "hello"`,
				Hint: "apt-get install haproxy (2.6 or later; Debian 12 has 2.6)"}},

		{"netdata", CheckNetdata, all, Result{Check: "netdata", Status: OK, Detail: "1.37.1"}},
		{"netdata in /usr/sbin", CheckNetdata, tools(func(m map[string]fakeCmd) {
			m["/usr/sbin/netdata -v"] = m["netdata -v"]
			delete(m, "netdata -v")
		}), Result{Check: "netdata", Status: OK, Detail: "1.37.1 (/usr/sbin/netdata)"}},
		{"netdata exits 1 but says its version", CheckNetdata, tools(func(m map[string]fakeCmd) {
			m["netdata -v"] = fakeCmd{out: netdataOut, err: errors.New("exit status 1")}
		}), Result{Check: "netdata", Status: OK, Detail: "1.37.1"}},
		{"netdata absent", CheckNetdata, tools(func(m map[string]fakeCmd) { delete(m, "netdata -v") }),
			Result{Check: "netdata", Status: WARN, Detail: "not installed: no per-function dashboard, no alarms, so no autoscaling",
				Hint: "apt-get install netdata"}},

		{"go", CheckGo, all, Result{Check: "go", Status: OK, Detail: "1.26.8"}},
		{"go only in /usr/local/go", CheckGo, tools(func(m map[string]fakeCmd) {
			m["/usr/local/go/bin/go version"] = m["go version"]
			delete(m, "go version")
		}), Result{Check: "go", Status: WARN, Detail: "1.26.8 at /usr/local/go/bin/go, not on PATH",
			Hint: "export PATH=$PATH:/usr/local/go/bin"}},
		{"Debian's go", CheckGo, tools(func(m map[string]fakeCmd) {
			m["go version"] = fakeCmd{out: "go version go1.19.8 linux/amd64\n"}
		}), Result{Check: "go", Status: WARN, Detail: "1.19.8, older than 1.21: pulse build cannot compile Go functions", Hint: goHint}},
		{"go absent", CheckGo, tools(func(m map[string]fakeCmd) { delete(m, "go version") }),
			Result{Check: "go", Status: WARN, Detail: "not installed: pulse build cannot compile Go functions", Hint: goHint}},

		{"gcc", CheckGCC, all, Result{Check: "gcc", Status: OK, Detail: "12.2.0, static libc.a"}},
		{"gcc without libc6-dev", CheckGCC, tools(func(m map[string]fakeCmd) {
			m["gcc -print-file-name=libc.a"] = fakeCmd{out: "libc.a\n"}
		}), Result{Check: "gcc", Status: WARN, Detail: "12.2.0, no static libc.a: -static builds fail", Hint: "apt-get install libc6-dev"}},
		{"gcc cannot say", CheckGCC, tools(func(m map[string]fakeCmd) {
			m["gcc -print-file-name=libc.a"] = fakeCmd{err: errors.New("signal: killed")}
		}), Result{Check: "gcc", Status: WARN,
			Detail: "12.2.0; static libc.a unknown: gcc -print-file-name=libc.a: signal: killed", Hint: "apt-get install libc6-dev"}},
		{"gcc absent", CheckGCC, tools(func(m map[string]fakeCmd) { delete(m, "gcc --version") }),
			Result{Check: "gcc", Status: WARN, Detail: "not installed: pulse build cannot compile C functions", Hint: "apt-get install gcc libc6-dev"}},

		{"g++", CheckGXX, all, Result{Check: "g++", Status: OK, Detail: "12.2.0, static libstdc++.a"}},
		{"g++ without static libstdc++", CheckGXX, tools(func(m map[string]fakeCmd) {
			m["g++ -print-file-name=libstdc++.a"] = fakeCmd{out: "libstdc++.a\n"}
		}), Result{Check: "g++", Status: WARN, Detail: "12.2.0, no static libstdc++.a: -static builds fail",
			Hint: "apt-get install libstdc++-12-dev (or the one matching g++ --version)"}},
		{"g++ absent", CheckGXX, tools(func(m map[string]fakeCmd) { delete(m, "g++ --version") }),
			Result{Check: "g++", Status: WARN, Detail: "not installed: pulse build cannot compile C++ functions", Hint: "apt-get install g++"}},

		{"no runner", CheckGo, Probes{},
			Result{Check: "go", Status: WARN, Detail: "no command runner configured", Hint: goHint}},
	})
}

func TestProcessChecks(t *testing.T) {
	const pulsedHint = "start it: make up, or systemctl start pulsed (needed on the control node only)"
	runCases(t, []checkCase{
		{"pulsed by pid file", CheckPulsed, host("modules"),
			Result{Check: "pulsed", Status: OK, Detail: "running (pid 42 from /run/pulse/pulsed.pid)"}},
		{"pulsed by name", CheckPulsed, Probes{Root: mapFS(map[string]string{"proc/7/comm": "pulsed\n"})},
			Result{Check: "pulsed", Status: OK, Detail: "running (pid 7)"}},
		{"pulsed not running", CheckPulsed, host("nomesh"),
			Result{Check: "pulsed", Status: WARN, Detail: "not running", Hint: pulsedHint}},
		{"pulsed stale pid file", CheckPulsed, host("bootconfig"),
			Result{Check: "pulsed", Status: WARN, Detail: "not running; stale /run/pulse/pulsed.pid (pid 4242 is gone)",
				Hint: pulsedHint + "; remove the stale pid file"}},
		{"pulsed garbage pid file", CheckPulsed, Probes{Root: mapFS(map[string]string{"run/pulse/pulsed.pid": "pulsed\n", "proc/1/comm": "init\n"})},
			Result{Check: "pulsed", Status: WARN, Detail: `not running; /run/pulse/pulsed.pid holds "pulsed", not a pid`,
				Hint: pulsedHint + "; remove the stale pid file"}},
		{"pulsed restarted, pid file stale", CheckPulsed, Probes{Root: mapFS(map[string]string{"run/pulse/pulsed.pid": "4242\n", "proc/77/comm": "pulsed\n"})},
			Result{Check: "pulsed", Status: OK, Detail: "running (pid 77)"}},
		{"pulsed: no /proc", CheckPulsed, Probes{Root: fstest.MapFS{}},
			Result{Check: "pulsed", Status: WARN, Detail: "list /proc: open proc: file does not exist", Hint: pulsedHint}},
		{"pulsed: no root", CheckPulsed, Probes{},
			Result{Check: "pulsed", Status: WARN, Detail: "no host file system configured", Hint: pulsedHint}},

		{"haproxy master and worker", CheckHAProxyProc, host("nomesh"),
			Result{Check: "haproxy-proc", Status: OK, Detail: "running (2 processes: pids 8049, 8050)"}},
		{"haproxy many", CheckHAProxyProc, Probes{Root: mapFS(map[string]string{
			"proc/9/comm": "haproxy\n", "proc/10/comm": "haproxy\n", "proc/11/comm": "haproxy\n", "proc/100/comm": "haproxy\n",
		})}, Result{Check: "haproxy-proc", Status: OK, Detail: "running (4 processes: pids 9, 10, 11, ...)"}},
		{"haproxy not running", CheckHAProxyProc, host("bootconfig"),
			Result{Check: "haproxy-proc", Status: WARN, Detail: "not running",
				Hint: "pulsed starts and supervises it: start pulsed on the control node"}},

		{"netdata running", CheckNetdataProc, host("modules"),
			Result{Check: "netdata-proc", Status: OK, Detail: "running (pid 43)"}},
		{"netdata not running", CheckNetdataProc, host("nomesh"),
			Result{Check: "netdata-proc", Status: WARN, Detail: "not running",
				Hint: "start it: systemctl start netdata, or /usr/sbin/netdata -D"}},
	})
}

// TestRunFirstNotFound checks that fakeExec reports a missing command the way
// os/exec does, so runFirst treats both alike.
func TestRunFirstNotFound(t *testing.T) {
	for _, name := range []string{"pulse-doctor-no-such-tool", "/nonexistent/pulse-doctor-tool"} {
		_, errReal := execCommand(context.Background(), name)
		_, errFake := fakeExec(nil)(context.Background(), name)
		for _, err := range []error{errReal, errFake} {
			if !errors.Is(err, exec.ErrNotFound) && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %v is neither exec.ErrNotFound nor fs.ErrNotExist", name, err)
			}
		}
	}
}
