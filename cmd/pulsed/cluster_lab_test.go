package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/labtest"
	"github.com/pulsefaas/pulse/provision"
)

// clusterLab is Pulse on the lab (internal/labtest): node1 is the swarm's
// manager (a 2 s dispatcher heartbeat), the other nodes join it with `pulse
// node add`; the control plane runs on this host, as on a control node:
// pulsed drives node1's engine over SSH (docker_host ssh://) and its
// HAProxy reaches the replicas at the nodes' addresses. Functions are
// deployed with their images put on every node (ClusterDistributor over
// SSH), and their replicas reach the gateway at the lab's host address.
type clusterLab struct {
	t      *testing.T
	lab    *labtest.Lab
	e      *env // e.cli: node1's engine over SSH
	rem    *provision.RemoteEngine
	ssh    provision.Config
	cfg    Config
	gw     string // the gateway, from this host
	rt     *gateway.Runtime
	pulse  string // the CLI binary
	home   string // the CLI's HOME
	stop   func() // stops pulsed
	hostFn []byte // the test function: answers "<its host name>:<body>"
}

// newClusterLab starts the lab's nodes, makes node1 a manager, joins the
// nodes listed in join (by index) and starts pulsed against it.
func newClusterLab(t *testing.T, join ...int) *clusterLab {
	t.Helper()
	c := prepareClusterLab(t, join...)
	c.stop = pulsedUnder(t, c.cfg)
	t.Cleanup(func() { c.stop() })
	return c
}

// prepareClusterLab is newClusterLab up to pulsed's configuration (c.cfg),
// without starting it.
func prepareClusterLab(t *testing.T, join ...int) *clusterLab {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("needs haproxy: %v", err)
		}
		t.Skipf("needs haproxy: %v", err)
	}
	lab := labtest.Up(t, 3)
	t.Setenv("SSH_AUTH_SOCK", "") // the lab's key only
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := &clusterLab{t: t, lab: lab, home: t.TempDir(),
		ssh: provision.Config{IdentityFiles: []string{lab.KeyFile}, KnownHosts: lab.KnownHosts}}
	n1 := lab.Nodes[0]

	dir := t.TempDir()
	wd := filepath.Join(dir, "pulse-watchdog")
	build := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2,watchdog_nohttp", "-ldflags", "-s -w", "-o", wd, "../pulse-watchdog")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build watchdog: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "host.c")
	if err := os.WriteFile(src, []byte(`#include <stdio.h>
#include <unistd.h>
int main(void){char h[256]={0};char b[4096];ssize_t n;gethostname(h,sizeof h-1);printf("%s:",h);fflush(stdout);
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	hostBin := filepath.Join(dir, "host")
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", hostBin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	c.hostFn, _ = os.ReadFile(hostBin)
	c.pulse = filepath.Join(dir, "pulse")
	goBuild(t, c.pulse, "../pulse")

	// The swarm, on node1, through its engine over SSH.
	sc, err := provision.Dial(ctx, c.ssh, provision.Target{User: "root", Host: n1.Addr, Port: 22})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := sc.Engine(ctx)
	if err != nil {
		sc.Close()
		t.Fatal(err)
	}
	spec := swarm.Spec{Annotations: swarm.Annotations{Name: "default"}, Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: 2 * time.Second}}
	_, err = eng.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: n1.Addr, Spec: spec})
	eng.Close()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range join {
		c.cli("node", "add", "root@"+lab.Nodes[i].Addr)
	}

	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	cli, rem, err := provision.NewRemoteEngine(ctx, c.ssh, provision.Target{User: "root", Host: n1.Addr, Port: 22}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); rem.Close() })
	c.rem = rem
	c.e = &env{t: t, cli: cli, sw: function.NewSwarm(cli, function.ClusterDistributor{Nodes: labEngines{c}}, nil)}
	c.e.wdBin, _ = os.ReadFile(wd)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	c.e.tag = hex.EncodeToString(b)

	cfg := defaults()
	c.e.useInstance(&cfg)
	cfg.DockerHost = "ssh://root@" + n1.Addr
	cfg.SSHKnownHosts, cfg.SSHIdentityFiles = lab.KnownHosts, []string{lab.KeyFile}
	cfg.Autoscale = false // routing and failover; the scaler is TestClusterLoadStep's
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.AdminListen = freePort(t), freePort(t)
	_, port, _ := net.SplitHostPort(freePort(t))
	cfg.GatewayListen = "0.0.0.0:" + port // the replicas reach it at lab.Host
	cfg.LeaveRunning = false
	c.cfg = cfg
	c.gw = "127.0.0.1:" + port
	c.rt = gateway.NewRuntime(filepath.Join(cfg.StateDir, "haproxy.sock"), 2*time.Second)
	return c
}

// cli runs the pulse CLI against the lab's manager; it must succeed.
func (c *clusterLab) cli(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.pulse, args...)
	cmd.Env = append(os.Environ(), "HOME="+c.home, "XDG_CONFIG_HOME="+c.home, "SSH_AUTH_SOCK=", "DOCKER_HOST=",
		"PULSE_DOCKER_HOST=ssh://root@"+c.lab.Nodes[0].Addr,
		"PULSE_SSH_KNOWN_HOSTS="+c.lab.KnownHosts, "PULSE_SSH_IDENTITY_FILES="+c.lab.KeyFile)
	if c.cfg.APIListen != "" { // pulsed runs
		cmd.Env = append(cmd.Env, "PULSE_API=http://"+c.cfg.APIListen)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	c.t.Logf("pulse %s (%v):\n%s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), out)
	if err != nil {
		c.t.Fatalf("pulse %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// labEngines is function.NodeEngines for the lab's swarm: every node the
// manager lists, reached over SSH.
type labEngines struct{ c *clusterLab }

func (l labEngines) Engines(ctx context.Context) ([]function.NodeEngine, error) {
	nodes, err := l.c.e.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, err
	}
	var out []function.NodeEngine
	for _, n := range nodes {
		sc, err := provision.Dial(ctx, l.c.ssh, provision.Target{User: "root", Host: n.Status.Addr, Port: 22})
		if err != nil {
			return out, err
		}
		eng, err := sc.Engine(ctx)
		if err != nil {
			sc.Close()
			return out, err
		}
		out = append(out, function.NodeEngine{Node: n.Description.Hostname, API: eng, Close: func() error { eng.Close(); return sc.Close() }})
	}
	return out, nil
}

// deploy deploys the host-name function with replicas min..max (a
// function timeout of 3 s: a request in flight to a frozen node fails then).
func (c *clusterLab) deploy(name string, min, max int) {
	c.t.Helper()
	spec := function.Spec{Name: name, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn",
		Timeout: 3 * time.Second, MaxBody: 1 << 20, Scale: function.Scale{Metric: "inflight", Target: 10, Min: min, Max: max}}
	img, err := function.Assemble(function.ImageSpec{
		Tag:        "pulse/" + name + ":" + c.e.tag,
		Files:      []function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: c.e.wdBin}, {Path: function.FunctionPath, Mode: 0o755, Content: c.hostFn}},
		Entrypoint: []string{function.WatchdogPath}, Env: spec.WatchdogEnv(), User: function.ImageUser,
		Labels: map[string]string{contract.LabelFunction: name, "pulse.test": "1"},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := c.e.sw.Deploy(ctx, spec, img, function.DeployOptions{NoHealthcheck: true, DrainGrace: 2 * time.Second, Instance: c.e.tag,
		GatewayURL: "http://" + net.JoinHostPort(c.lab.Host, strings.TrimPrefix(c.cfg.GatewayListen, "0.0.0.0:"))})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = c.e.sw.Remove(ctx, name)
	})
	if _, err := c.e.sw.WaitReady(ctx, name, res.Replicas); err != nil {
		c.t.Fatal(err)
	}
}

// nodeOf maps each task's ID to the lab node it runs on. A replica's host
// name (what the function answers) is its task's name, service.slot.taskid
// (function.hostnameTemplate): taskOf reads the ID back.
func (c *clusterLab) nodeOf(ctx context.Context, service string) map[string]string {
	c.t.Helper()
	nodes, err := c.e.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	byID := map[string]string{}
	for _, n := range nodes {
		byID[n.ID] = n.Description.Hostname
	}
	tasks, err := c.e.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service))})
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]string{}
	for _, tk := range tasks {
		out[tk.ID] = byID[tk.NodeID]
	}
	return out
}

// taskOf is the task ID in a replica's host name.
func taskOf(host string) string {
	return host[strings.LastIndexByte(host, '.')+1:]
}

// replicas is the function's routed replicas in pulsed's catalog.
func (c *clusterLab) replicas(name string) []contract.Replica {
	c.t.Helper()
	resp, err := http.Get("http://" + c.cfg.APIListen + contract.CatalogPath)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var cat contract.Catalog
	if err := json.NewDecoder(resp.Body).Decode(&cat); err != nil {
		c.t.Fatal(err)
	}
	var out []contract.Replica
	for _, f := range cat.Functions {
		if f.Name == name {
			for _, r := range f.Replicas {
				if r.Routed && !r.Draining {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// serversUp is how many of the gateway's servers at addr's host are UP.
func (c *clusterLab) serversUp(host string) int {
	stats, err := c.rt.ServerStats(context.Background())
	if err != nil {
		c.t.Logf("show stat: %v", err)
		return -1
	}
	n := 0
	for _, s := range stats {
		if h, _, _ := net.SplitHostPort(s.Addr); h == host && strings.HasPrefix(s.Status, "UP") {
			n++
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Now()
}

// hostLoad is a never-retrying keep-alive client that records each
// request's start, outcome and the host name its answer carries.
type hostLoad struct {
	mu   sync.Mutex
	reqs []hostReq
	stop chan struct{}
	wg   sync.WaitGroup
}

type hostReq struct {
	start, end time.Time
	host       string // "" when it failed
	why        string
}

func startHostLoad(addr, path string, conns int) *hostLoad {
	l := &hostLoad{stop: make(chan struct{})}
	for range conns {
		l.wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				r := hostReq{start: time.Now()}
				r.host, r.why = func() (string, string) {
					if c == nil {
						var err error
						if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
							c = nil
							return "", "dial: " + err.Error()
						}
						br = bufio.NewReader(c)
					}
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi", path); err != nil {
						c.Close()
						c = nil
						return "", "write: " + err.Error()
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						c.Close()
						c = nil
						return "", "read: " + err.Error()
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.Close {
						c.Close()
						c = nil
					}
					if resp.StatusCode != 200 {
						return "", fmt.Sprintf("%s %q", resp.Status, body)
					}
					host, _, ok := strings.Cut(string(body), ":")
					if !ok {
						return "", fmt.Sprintf("answer %q", body)
					}
					return host, ""
				}()
				r.end = time.Now()
				l.mu.Lock()
				l.reqs = append(l.reqs, r)
				l.mu.Unlock()
				if r.why != "" {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	return l
}

func (l *hostLoad) end() []hostReq {
	close(l.stop)
	l.wg.Wait()
	return l.reqs
}

// failuresAfter counts the requests that started after t and failed, with
// their reasons.
func failuresAfter(reqs []hostReq, t time.Time) (n int, why map[string]int) {
	why = map[string]int{}
	for _, r := range reqs {
		if r.why != "" && r.start.After(t) {
			n++
			why[r.why]++
		}
	}
	return n, why
}

// lastFailureStart is the start of the last failed request (zero: none).
func lastFailureStart(reqs []hostReq) time.Time {
	var last time.Time
	for _, r := range reqs {
		if r.why != "" && r.start.After(last) {
			last = r.start
		}
	}
	return last
}

// TestClusterLab is the cluster on the lab, one story so the lab comes up
// once: a function with 3 replicas lands on 3 nodes and the gateway on this
// host reaches all of them (the node each answer came from is told by the
// replica's host name); a worker killed under load, then a worker frozen:
// every request that starts after its replicas left the gateway succeeds,
// and the replicas answer again on the other nodes; the killed node, back,
// takes the next scale-up's task, which answers through the gateway; a
// node added while the function runs (pulse node add) gets its image and
// serves after the next scale-up; pulsed's SSH connection to the manager,
// cut, is dialled again.
func TestClusterLab(t *testing.T) {
	c := newClusterLab(t, 1) // node1 (manager) and node2; node3 joins later
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n1, n2, n3 := c.lab.Nodes[0], c.lab.Nodes[1], c.lab.Nodes[2]
	name := "spread-" + c.e.tag
	path := "/function/" + name

	// Two nodes; the function on both.
	c.deploy(name, 2, 6)
	waitRoute(t, c.gw, path)
	for _, r := range c.replicas(name) {
		if h, _, _ := net.SplitHostPort(r.Addr); h != n1.Addr && h != n2.Addr {
			t.Errorf("replica %s at %s: want a lab node's address (%s or %s)", r.TaskID, r.Addr, n1.Addr, n2.Addr)
		}
	}

	// node3 added under load: it gets the image, then serves once scaled.
	l := startHostLoad(c.gw, path, 4)
	// (advertising its interface by name: the lab's nodes have one, eth0)
	out := c.cli("node", "add", "root@"+n3.Addr, "--advertise-addr", "eth0")
	if !strings.Contains(out, "joined as a worker") || !strings.Contains(out, "copied") {
		t.Errorf("node add of %s while %s runs: want it joined with the function's image copied", n3.Name, name)
	}
	c.cli("scale", name, "3")
	waitUntil(t, "3 routed replicas", time.Minute, func() bool { return len(c.replicas(name)) == 3 })
	time.Sleep(2 * time.Second)
	reqs := l.end()
	if n, why := failuresAfter(reqs, time.Time{}); n > 0 {
		t.Errorf("adding %s and scaling to 3: %d of %d requests failed: %v", n3.Name, n, len(reqs), why)
	}

	// 3 replicas on 3 nodes, each reached through the gateway.
	hosts := c.nodeOf(ctx, name)
	seen := map[string]int{}
	for range 60 {
		resp, err := http.Post("http://"+c.gw+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h, _, _ := strings.Cut(string(b), ":")
		seen[hosts[taskOf(h)]]++
	}
	t.Logf("answers by node: %v", seen)
	if len(seen) != 3 || seen[n1.Name] == 0 || seen[n2.Name] == 0 || seen[n3.Name] == 0 {
		t.Fatalf("answers by node %v: want all of %s, %s, %s", seen, n1.Name, n2.Name, n3.Name)
	}

	// Around the gateway, on every node: a replica's published port
	// answers 403 to a request without the replica credential.
	for _, r := range c.replicas(name) {
		resp, err := http.Post("http://"+r.Addr+"/", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatalf("direct to %s: %v", r.Addr, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("direct to the replica at %s, without the credential: %d %q, want 403", r.Addr, resp.StatusCode, b)
		}
	}

	// Function to function from every node: greet's 3 replicas (one per
	// node) call hello through the gateway at PULSE_GATEWAY_URL, the lab's
	// host address.
	c.functionToFunction(ctx)

	// A worker killed under load.
	fault := func(what string, node labtest.Node, do func(context.Context, labtest.Node) error) {
		t.Helper()
		l := startHostLoad(c.gw, path, 4)
		time.Sleep(2 * time.Second)
		at := time.Now()
		if err := do(ctx, node); err != nil {
			t.Fatal(err)
		}
		left := waitUntil(t, node.Name+"'s servers out of the gateway", 30*time.Second, func() bool { return c.serversUp(node.Addr) == 0 })
		back := waitUntil(t, "3 replicas routed on the other nodes", 90*time.Second, func() bool {
			rs := c.replicas(name)
			for _, r := range rs {
				if h, _, _ := net.SplitHostPort(r.Addr); h == node.Addr {
					return false
				}
			}
			return len(rs) == 3
		})
		time.Sleep(3 * time.Second) // the new replicas under load
		reqs := l.end()
		n, why := failuresAfter(reqs, left)
		total, _ := failuresAfter(reqs, time.Time{})
		window := time.Duration(0)
		if last := lastFailureStart(reqs); !last.IsZero() {
			window = last.Sub(at)
		}
		t.Logf("%s %s: %d requests, %d failed (error window by start %v), out of the gateway +%v, 3 replicas routed +%v",
			what, node.Name, len(reqs), total, window.Round(time.Millisecond), left.Sub(at).Round(time.Millisecond), back.Sub(at).Round(time.Millisecond))
		if n > 0 {
			t.Errorf("%s %s: %d requests that started after its replicas left the gateway failed: %v", what, node.Name, n, why)
		}
		ok := 0
		for _, r := range reqs {
			if r.why == "" && r.start.After(back) {
				ok++
			}
		}
		if ok == 0 {
			t.Errorf("%s %s: no request answered after the replicas were back", what, node.Name)
		}
	}
	fault("killed", n2, c.lab.Kill)

	// node2 back: the next scale-up's task lands on it and answers.
	if err := c.lab.Start(ctx, n2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, n2.Name+" ready again", 90*time.Second, func() bool {
		nodes, err := c.e.cli.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			return false
		}
		for _, n := range nodes {
			if n.Description.Hostname == n2.Name {
				return n.Status.State == swarm.NodeStateReady
			}
		}
		return false
	})
	c.cli("scale", name, "4")
	waitUntil(t, "4 routed replicas", time.Minute, func() bool { return len(c.replicas(name)) == 4 })
	hosts = c.nodeOf(ctx, name)
	waitUntil(t, "an answer from "+n2.Name, 20*time.Second, func() bool {
		resp, err := http.Post("http://"+c.gw+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h, _, _ := strings.Cut(string(b), ":")
		return hosts[taskOf(h)] == n2.Name
	})
	c.cli("scale", name, "3")
	waitUntil(t, "3 routed replicas", time.Minute, func() bool { return len(c.replicas(name)) == 3 })

	// A worker frozen under load (its kernel still accepts connections;
	// requests in flight fail at the function's 3 s timeout).
	t.Cleanup(func() { _ = c.lab.Unpause(context.Background(), n3) })
	fault("frozen", n3, c.lab.Pause)
	if err := c.lab.Unpause(ctx, n3); err != nil {
		t.Fatal(err)
	}

	// The SSH connections to the manager cut (its sshd's session processes
	// killed): pulsed's engine client and the test's dial again, and
	// pulsed's catalog follows a scale made after the cut.
	dials := c.rem.Dials()
	killed, err := c.lab.Exec(ctx, n1, "sh", "-c", "pkill -e -f '^[s]shd: root@' || true")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("on %s: %s", n1.Name, strings.TrimSpace(killed))
	if strings.Count(killed, "killed") < 2 {
		t.Fatalf("cutting the SSH connections: want pulsed's and the test's killed, got %q", killed)
	}
	// Bounded: the keepalive ends a dead connection within 20 s, and a
	// request must not wait out the test (an open lost with its
	// connection once did: TestSessionOpenEndsWithConnection).
	lctx, lcancel := context.WithTimeout(ctx, time.Minute)
	if _, err := c.e.cli.NodeList(lctx, swarm.NodeListOptions{}); err != nil {
		t.Errorf("the test's engine client after the cut: %v", err)
	}
	lcancel()
	c.cli("scale", name, "2")
	waitUntil(t, "2 routed replicas after the SSH connection was cut", time.Minute, func() bool { return len(c.replicas(name)) == 2 })
	if c.rem.Dials() <= dials {
		t.Errorf("the test's engine connection: %d dials before the cut, %d after; want a new one", dials, c.rem.Dials())
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for _, r := range c.replicas(name) {
			if !yield(r.Node) {
				return
			}
		}
	}); len(got) != 2 {
		t.Errorf("replicas after the cut: %v", got)
	}
}

// functionToFunction deploys the examples hello and greet (3 replicas, one
// per node) and checks that each greet replica reaches hello through the
// gateway: every answer is greet's relay of hello's, and HAProxy sent
// requests to greet replicas on 3 node addresses. It removes both after.
func (c *clusterLab) functionToFunction(ctx context.Context) {
	t := c.t
	t.Helper()
	specs, err := function.LoadSpecs("../../examples/functions.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{"hello": "hello-" + c.e.tag, "greet": "greet-" + c.e.tag}
	gwURL := "http://" + net.JoinHostPort(c.lab.Host, strings.TrimPrefix(c.cfg.GatewayListen, "0.0.0.0:"))
	for _, want := range []string{"hello", "greet"} {
		i := slices.IndexFunc(specs, func(s function.Spec) bool { return s.Name == want })
		if i < 0 {
			t.Fatalf("examples/functions.yml has no %s", want)
		}
		s := specs[i]
		s.Name = names[want]
		if want == "greet" {
			s.Env = map[string]string{"TARGET": names["hello"]}
			s.Scale.Min, s.Scale.Max = 3, 3
		}
		img, _, err := function.Build(ctx, s, function.BuildOptions{CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		name := s.Name
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_ = c.e.sw.Remove(ctx, name)
		})
		res, err := c.e.sw.Deploy(ctx, s, img, function.DeployOptions{GatewayURL: gwURL, NoHealthcheck: true, Instance: c.e.tag})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.e.sw.WaitReady(ctx, s.Name, res.Replicas); err != nil {
			t.Fatal(err)
		}
	}
	greet := "/function/" + names["greet"]
	waitRoute(t, c.gw, "/function/"+names["hello"])
	waitUntil(t, "greet's 3 replicas routed", time.Minute, func() bool { return len(c.replicas(names["greet"])) == 3 })
	waitRoute(t, c.gw, greet)
	for i := range 30 {
		resp, err := http.Post("http://"+c.gw+greet, "text/plain", strings.NewReader("Pulse"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "greet relays: Hello, Pulse\n" {
			t.Fatalf("greet, request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	stats, err := c.rt.ServerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int64{}
	for _, s := range stats {
		if strings.Contains(s.Backend, names["greet"]) && s.Sessions > 0 {
			h, _, _ := net.SplitHostPort(s.Addr)
			served[h] += s.Sessions
		}
	}
	t.Logf("greet's requests by node address: %v", served)
	if len(served) != 3 {
		t.Errorf("greet's requests by node address %v: want its replicas on 3 nodes each to have answered", served)
	}
	// Removed now (their containers gone: Remove waits), greet first: a
	// greet replica keeps a keep-alive connection to the gateway, and one on
	// a node the next steps kill would die without closing it, holding a
	// stopping HAProxy worker, and so pulsed's stop at the end, for the
	// gateway's 30 s keep-alive timeout.
	for _, want := range []string{"greet", "hello"} {
		if err := c.e.sw.Remove(ctx, names[want]); err != nil {
			t.Errorf("removing %s: %v", names[want], err)
		}
	}
}

// TestClusterLoadStep: the scaler on the cluster. A 5× load step on a
// function with one replica scales it up in one decision; the new replicas
// land on the other nodes too, the gateway routes every one of them (UP in
// HAProxy at their nodes' addresses) and the collector scrapes every one
// (the replicas chart's scraped dimension), with no failed request.
func TestClusterLoadStep(t *testing.T) {
	c := prepareClusterLab(t, 1, 2)
	l := startAutoLab(t, c.e, c.cfg)
	c.cfg = l.cfg
	fn := "cl-step-" + c.e.tag
	l.deployReady(fn, stepScale)
	before := c.replicas(fn)
	if len(before) != 1 {
		t.Fatalf("replicas before the step: %+v, want 1", before)
	}

	load := startLoad(l.cfg.GatewayListen, "/function/"+fn, 10)
	l.waitFor("the first scale-up decision", 30*time.Second, func() bool { return ups(l.events(fn)) > 0 })
	first := l.events(fn)[0]
	t.Logf("step → decision %d → %d (%s)", first.From, first.To, first.Reason)
	waitUntil(t, fmt.Sprintf("%d routed replicas", first.To), time.Minute, func() bool { return len(c.replicas(fn)) >= first.To })
	nodes := map[string]int{}
	addrs := map[string]int{}
	for _, r := range c.replicas(fn) {
		nodes[r.Node]++
		h, _, _ := net.SplitHostPort(r.Addr)
		addrs[h]++
	}
	t.Logf("replicas by node address: %v", addrs)
	if len(nodes) != 3 {
		t.Errorf("%d replicas on %d nodes (%v): want the new ones spread over all 3", first.To, len(nodes), addrs)
	}
	waitUntil(t, "every replica UP in the gateway", 30*time.Second, func() bool {
		up := 0
		for h := range addrs {
			up += c.serversUp(h)
		}
		return up >= first.To
	})
	chart := contract.Chart(fn, contract.ChartReplicas)
	var scraped []float64
	waitUntil(t, "the collector scraping every replica", 30*time.Second, func() bool {
		d, err := l.nd.DataRange(context.Background(), chart, -3, 0)
		if err != nil {
			return false
		}
		scraped = d.Column(contract.DimScraped)
		return len(scraped) > 0 && int(scraped[0]) >= first.To
	})
	t.Logf("%s %s, newest first: %v", chart, contract.DimScraped, scraped)
	ok, failures, why := load.end()
	t.Logf("under the step: %d ok, %d failed %v", ok, len(failures), why)
	if len(failures) > 0 {
		t.Errorf("%d failed requests under the step: %v", len(failures), why)
	}
}
