// Package ansible_test runs Pulse's playbook (site.yml, in this directory)
// against real machines: the lab's bare nodes (lab/README.md), Debian with
// sshd and python3 and nothing else.
package ansible_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/internal/labtest"
	"github.com/pulsefaas/pulse/internal/testport"
)

// TestSiteOnBareLab is issue 15's proof on real machines. site.yml on two bare
// nodes (a control node and a worker) installs everything and forms the
// cluster; the state is checked on the nodes themselves (daemons, files and
// their modes, kernel settings, firewall rules, the swarm), not from Ansible's
// counters; a second run changes nothing. A function deployed through the CLI
// from this host (docker_host ssh://, as a user's laptop would) answers
// through the gateway with its invoke key. Then the playbook runs again with a
// newer Pulse and a third node in the inventory, while a client that never
// retries sends requests through the gateway: none fails, pulsed runs the new
// version, the key and the function survive, the new node joins, and scaled to
// three the function answers from a replica on every node.
func TestSiteOnBareLab(t *testing.T) {
	need(t, "ansible-playbook", "ansible")
	lab := labtest.UpBare(t, 3, 1) // the control node boots systemd, the others run without
	s := &site{t: t, lab: lab, dir: t.TempDir()}
	s.bin = filepath.Join(s.dir, "bin")
	control := lab.Nodes[0]

	first := s.play("first run: 2 bare nodes", "pulse-test-1", 2)
	for host, r := range first {
		if r.changed == 0 {
			t.Errorf("first run on %s: changed=0, want the install", host)
		}
	}
	s.checkNodes(lab.Nodes[:2], "pulse-test-1")
	for host, r := range s.play("second run, nothing changed", "pulse-test-1", 2) {
		if r.changed != 0 {
			t.Errorf("second run on %s: changed=%d, want 0 (the tasks that changed are in the log above)", host, r.changed)
		}
	}

	// The CLI on this host, as on a user's machine: the manager's engine
	// over SSH, pulsed's API through an SSH tunnel (it listens on the
	// control node's loopback), the gateway at the control node's address.
	cli := s.cli(control)
	fn := s.whoami()
	cli.run("deploy", "-f", filepath.Join(fn, "functions.yml"))
	key := strings.TrimSpace(cli.run("key", "add", "whoami", "--id", "site-test"))
	gw := "http://" + net.JoinHostPort(control.Addr, "8080")
	if code, _ := invoke(t, gw, ""); code != http.StatusUnauthorized {
		t.Errorf("whoami without its key answered %d, want 401", code)
	}
	if code, body := invoke(t, gw, key); code != http.StatusOK {
		t.Fatalf("whoami with its key answered %d %q, want 200", code, body)
	}

	// Upgrade (a newer Pulse) and a third node, under load.
	load := startLoad(t, gw, key)
	third := s.play("upgrade to a newer Pulse, a third node added", "pulse-test-2", 3)
	n, failed, errs := load.stop()
	t.Logf("through the gateway during the upgrade run: %d requests, %d failed %v", n, failed, errs)
	if n < 100 || failed != 0 {
		t.Errorf("during the upgrade: %d requests, %d failed (%v); want none failed of at least 100", n, failed, errs)
	}
	if r := third[lab.Nodes[2].Name]; r.changed == 0 {
		t.Errorf("the added node: changed=0, want the install")
	}
	s.checkNodes(lab.Nodes, "pulse-test-2")
	if code, _ := invoke(t, gw, ""); code != http.StatusUnauthorized {
		t.Errorf("after the upgrade whoami without its key answered %d, want 401 (the key store survives)", code)
	}
	if code, body := invoke(t, gw, key); code != http.StatusOK {
		t.Errorf("after the upgrade whoami with its key answered %d %q, want 200 (the key store survives)", code, body)
	}

	// Replicas on every node, each answering through the gateway.
	cli.run("scale", "whoami", "3", "--wait")
	// A replica's host name is its task's name (whoami.SLOT.TASKID).
	nodesOf := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s.exec(control, "docker", "service", "ps", "whoami", "--no-trunc",
		"-f", "desired-state=running", "--format", "{{.Node}} {{.Name}}.{{.ID}}")), "\n") {
		node, host, _ := strings.Cut(line, " ")
		nodesOf[host] = node
	}
	answered := map[string]int{}
	for i := 0; i < 60 && len(answered) < 3; i++ {
		code, body := invoke(t, gw, key)
		if code != http.StatusOK {
			t.Fatalf("whoami answered %d %q", code, body)
		}
		answered[nodesOf[strings.TrimSpace(body)]]++
	}
	for _, node := range lab.Nodes {
		if answered[node.Name] == 0 {
			t.Errorf("no answer from a replica on %s: answers by node %v, replicas %v", node.Name, answered, nodesOf)
		}
	}
	if t.Failed() {
		t.Logf("whoami's tasks:\n%s", s.exec(control, "docker", "service", "ps", "whoami", "--no-trunc",
			"--format", "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}"))
	}
}

// site is one lab and the playbook's runs on it.
type site struct {
	t   *testing.T
	lab *labtest.Lab
	dir string // the inventory, the binaries, the CLI's files
	bin string // the binaries the playbook builds (pulse_build_dir)
}

// recap is one host's line of the play recap.
type recap struct{ ok, changed, failed, unreachable int }

var recapLine = regexp.MustCompile(`^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// play runs site.yml against the first n nodes (the first is the control
// node, the others workers), with Pulse built as version, and returns the
// recap by host.
func (s *site) play(what, version string, n int) map[string]recap {
	t := s.t
	t.Helper()
	inv := filepath.Join(s.dir, "inventory.yml")
	if err := os.WriteFile(inv, s.inventory(n), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-playbook", "-i", inv, "site.yml", "-e", "pulse_build_dir="+s.bin)
	cmd.Env = append(os.Environ(), "VERSION="+version, "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(time.Second)
	logName := filepath.Join(s.dir, strings.NewReplacer(" ", "-", ",", "", ":", "").Replace(what)+".log")
	_ = os.WriteFile(logName, out, 0o600)
	if err != nil {
		t.Fatalf("%s: ansible-playbook: %v after %v\n%s", what, err, took, tail(out, 80))
	}
	got := map[string]recap{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := recapLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		num := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		got[m[1]] = recap{ok: num(2), changed: num(3), unreachable: num(4), failed: num(5)}
	}
	var line []string
	for _, node := range s.lab.Nodes[:n] {
		r, ok := got[node.Name]
		if !ok || r.failed != 0 || r.unreachable != 0 {
			t.Fatalf("%s: recap of %s: %+v (found %v)\n%s", what, node.Name, r, ok, tail(out, 80))
		}
		line = append(line, fmt.Sprintf("%s changed=%d", node.Name, r.changed))
	}
	t.Logf("%s: %v, %s", what, took, strings.Join(line, ", "))
	if changedTasks := changedLines(out); len(changedTasks) > 0 && len(changedTasks) < 40 {
		t.Logf("%s: changed tasks:\n%s", what, strings.Join(changedTasks, "\n"))
	}
	return got
}

// inventory is the lab's inventory with the first n nodes.
func (s *site) inventory(n int) []byte {
	var b strings.Builder
	host := func(node labtest.Node, labels string) {
		fmt.Fprintf(&b, "        %s:\n          ansible_host: %s\n          pulse_advertise_addr: %s\n", node.Name, node.Addr, node.Addr)
		if labels != "" {
			fmt.Fprintf(&b, "          pulse_node_labels: {%s}\n", labels)
		}
	}
	b.WriteString("all:\n  children:\n    managers:\n      hosts:\n")
	host(s.lab.Nodes[0], "")
	b.WriteString("    workers:\n      hosts:\n")
	for i, node := range s.lab.Nodes[1:n] {
		host(node, fmt.Sprintf("zone: z%d", i+1))
	}
	if n == 1 {
		b.WriteString("        {}\n")
	}
	fmt.Fprintf(&b, "  vars:\n    ansible_user: root\n    ansible_ssh_common_args: -F %s\n    pulse_examples: false\n", s.lab.SSHConfig)
	return []byte(b.String())
}

// changedLines are the "changed: [host]" lines of a run, with their task.
func changedLines(out []byte) []string {
	var lines []string
	task := ""
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "TASK ["), strings.HasPrefix(l, "RUNNING HANDLER ["):
			task = strings.TrimRight(l, " *")
		case strings.HasPrefix(l, "changed: "):
			lines = append(lines, "  "+task+" "+l)
		}
	}
	return lines
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// exec runs a command on a node (the test's own look at it, not Pulse's way
// in) and fails the test when it fails.
func (s *site) exec(node labtest.Node, args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := s.lab.Exec(ctx, node, args...)
	if err != nil {
		s.t.Fatalf("%s: %s: %v\n%s", node.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// checkNodes checks what the playbook leaves on the nodes, on the nodes:
// every node's kernel settings, limits, Docker Engine and firewall rules; the
// control node's daemons, files and modes, and the swarm of exactly nodes.
func (s *site) checkNodes(nodes []labtest.Node, version string) {
	t := s.t
	t.Helper()
	for _, node := range nodes {
		sh := func(script string) string { return strings.TrimSpace(s.exec(node, "sh", "-c", script)) }
		for key, want := range map[string]string{
			"fs.inotify.max_user_instances":    "1024",
			"fs.inotify.max_user_watches":      "524288",
			"net.ipv4.ip_local_reserved_ports": "49152-60999",
		} {
			if got := sh("sysctl -n " + key); got != want {
				t.Errorf("%s: %s = %q, want %q", node.Name, key, got, want)
			}
			if got := sh("grep -h '^" + key + "' /etc/sysctl.d/60-pulse.conf"); got != key+"="+want {
				t.Errorf("%s: /etc/sysctl.d/60-pulse.conf has %q, want %s=%s (kept across reboots)", node.Name, got, key, want)
			}
		}
		// dockerd: running (a unit where there is systemd), host ports from
		// the reserved range, no userland proxy.
		if node.Systemd {
			if got := sh("systemctl is-active docker; systemctl is-enabled docker; systemctl cat docker | grep -c '^ExecStart=/usr/local/lib/pulse/dockerd-port-range '"); got != "active\nenabled\n1" {
				t.Errorf("%s: docker.service active, enabled, through the port-range wrapper: %q", node.Name, got)
			}
		}
		if got := sh(`pid=$(cat /run/docker.pid) && tr -s ' \t' ' ' </proc/$pid/root/proc/sys/net/ipv4/ip_local_port_range`); got != "49152 60999" {
			t.Errorf("%s: dockerd's port range %q, want 49152 60999", node.Name, got)
		}
		if got := sh(`docker info --format '{{.Swarm.LocalNodeState}}' && grep -c '"userland-proxy": false' /etc/docker/daemon.json`); got != "active\n1" {
			t.Errorf("%s: swarm state and daemon.json's userland-proxy: %q, want active and false", node.Name, got)
		}
		if got := sh("grep -c 'nofile' /etc/security/limits.d/60-pulse.conf"); got == "0" {
			t.Errorf("%s: no open-file limit in /etc/security/limits.d/60-pulse.conf", node.Name)
		}
		// Replica host ports: new connections only from the control node.
		rules := sh("iptables -w -S DOCKER-USER")
		allow := fmt.Sprintf("-A DOCKER-USER -s %s/32 -p tcp -m conntrack --ctstate NEW --ctorigdstport 49152:60999 -m comment --comment pulse-replicas -j RETURN", nodes[0].Addr)
		drop := "-A DOCKER-USER -p tcp -m conntrack --ctstate NEW --ctorigdstport 49152:60999 -m comment --comment pulse-replicas -j DROP"
		if i, j := slices.Index(strings.Split(rules, "\n"), allow), slices.Index(strings.Split(rules, "\n"), drop); i < 0 || j < i {
			t.Errorf("%s: DOCKER-USER lacks the allow-then-drop rules for replica ports:\n%s", node.Name, rules)
		}
	}

	control := nodes[0]
	sh := func(script string) string { return strings.TrimSpace(s.exec(control, "sh", "-c", script)) }
	// Daemons: units under systemd, else each from its pid file. HAProxy is
	// pulsed's child either way.
	pidOf := map[string]string{
		"pulsed": "head -1 /run/pulse/pulsed.pid", "netdata": "head -1 /run/netdata.pid", "haproxy": "head -1 /var/lib/pulse/haproxy.pid",
	}
	if control.Systemd {
		pidOf["pulsed"] = "systemctl show -p MainPID --value pulsed"
		pidOf["netdata"] = "systemctl show -p MainPID --value netdata"
		if got := sh("systemctl is-active pulsed netdata; systemctl is-enabled pulsed netdata"); got != "active\nactive\nenabled\nenabled" {
			t.Errorf("%s: pulsed and netdata active and enabled: %q", control.Name, got)
		}
	}
	for name, pid := range pidOf {
		if got := sh(fmt.Sprintf(`pid=$(%s) && cat /proc/$pid/comm`, pid)); got != name {
			t.Errorf("%s: %s names %q, want a running %s", control.Name, pid, got, name)
		}
	}
	if got := sh("ps -o user= -C pulse.d.plugin | sort -u"); got != "netdata" {
		t.Errorf("%s: Pulse's collector runs as %q, want netdata", control.Name, got)
	}
	if got := sh("id -nG netdata"); slices.Contains(strings.Fields(got), "docker") {
		t.Errorf("%s: netdata is in the docker group (%s): it would be root-equivalent", control.Name, got)
	}
	// The running pulsed is the installed one, of this version.
	if got := sh(`curl -fsS http://127.0.0.1:8090/healthz >/dev/null && /usr/local/bin/pulsed --version &&
		readlink /proc/$(` + pidOf["pulsed"] + `)/exe`); got != "pulsed "+version+"\n/usr/local/bin/pulsed" {
		t.Errorf("%s: pulsed --version and the running pulsed's executable: %q, want pulsed %s and /usr/local/bin/pulsed", control.Name, got, version)
	}
	// Files and modes: secrets root's alone or the netdata group's.
	for path, want := range map[string]string{
		"/etc/pulse/api-token":                         "600 root root",
		"/etc/pulse/alarm-token":                       "640 root netdata",
		"/etc/pulse/replica-auth":                      "640 root netdata",
		"/etc/pulse/pulsed.yaml":                       "644 root root",
		"/var/lib/pulse":                               "750 root root",
		"/root/.ssh/pulse_nodes":                       "600 root root",
		"/etc/netdata/custom-plugins.d/pulse.d.plugin": "750 root netdata",
	} {
		if got := sh("stat -c '%a %U %G' " + path); got != want {
			t.Errorf("%s: %s is %q, want %q", control.Name, path, got, want)
		}
	}
	// The swarm: every node ready; the others labelled with the SSH address
	// the control node reaches them at (the control node is docker_host).
	want := []string{fmt.Sprintf("%s ready active pulse.ssh=", control.Name)}
	for _, node := range nodes[1:] {
		want = append(want, fmt.Sprintf("%s ready active pulse.ssh=root@%s:22", node.Name, node.Addr))
	}
	var got []string
	for _, id := range strings.Fields(sh("docker node ls -q")) {
		got = append(got, sh(`docker node inspect -f '{{.Description.Hostname}} {{.Status.State}} {{.Spec.Availability}} pulse.ssh={{index .Spec.Labels "pulse.ssh"}}' `+id))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: swarm nodes\n%s\nwant\n%s", control.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The swarm's settings: docker swarm init's defaults but the 2 s
	// heartbeat, none left at the zero the module's partial spec gave
	// (task history 0 hid why a deploy failed; certificates expired at once).
	const spec = `{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}} {{.Swarm.Cluster.Spec.Raft.SnapshotInterval}} ` +
		`{{.Swarm.Cluster.Spec.Raft.HeartbeatTick}} {{.Swarm.Cluster.Spec.Raft.ElectionTick}} {{.Swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod}} ` +
		`{{.Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}`
	if got, want := sh("docker info -f '"+spec+"'"), "5 10000 1 10 2s 2160h0m0s"; got != want {
		t.Errorf("%s: swarm settings (task history, snapshot interval, heartbeat and election ticks, dispatcher heartbeat, certificate expiry) %q, want %q", control.Name, got, want)
	}
}

// whoami writes a Go function that answers its replica's host name (its
// container's short ID), and its functions.yml.
func (s *site) whoami() string {
	dir := filepath.Join(s.dir, "fn")
	files := map[string]string{
		"functions.yml": "version: 1\nfunctions:\n  whoami:\n    lang: go\n    handler: ./whoami\n    scale: {metric: inflight, target: 50, min: 2, max: 3}\n",
		"whoami/go.mod": "module whoami\n\ngo 1.26\n\nrequire github.com/pulsefaas/pulse v0.0.0\n",
		"whoami/main.go": `package main

import (
	"context"
	"os"

	"github.com/pulsefaas/pulse/watchdog"
)

func main() {
	watchdog.Main(watchdog.Func(func(context.Context, []byte) ([]byte, error) {
		h, err := os.Hostname()
		return []byte(h + "\n"), err
	}))
}
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	return dir
}

// cliEnv is the CLI on this host, configured for the lab's control node.
type cliEnv struct {
	t   *testing.T
	bin string
	env []string
}

func (s *site) cli(control labtest.Node) *cliEnv {
	t := s.t
	t.Helper()
	// pulsed's API is on the control node's loopback: an SSH tunnel to it.
	port := freePort(t)
	tunnel := exec.Command("ssh", "-F", s.lab.SSHConfig, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:8090", port), control.Name)
	tunnel.Stderr = os.Stderr
	if err := tunnel.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tunnel.Process.Kill(); _ = tunnel.Wait() })
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(api + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulsed's API through the SSH tunnel: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	token := filepath.Join(s.dir, "api-token")
	if err := os.WriteFile(token, []byte(s.exec(control, "cat", "/etc/pulse/api-token")), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := "http://" + net.JoinHostPort(control.Addr, "8080")
	return &cliEnv{t: t, bin: filepath.Join(s.bin, "pulse"), env: append(os.Environ(),
		"SSH_AUTH_SOCK=",
		"PULSE_DOCKER_HOST=ssh://root@"+control.Addr,
		"PULSE_SSH_KNOWN_HOSTS="+s.lab.KnownHosts,
		"PULSE_SSH_IDENTITY_FILES="+s.lab.KeyFile,
		"PULSE_GATEWAY="+gw,
		"PULSE_REPLICA_GATEWAY="+gw,
		"PULSE_API="+api,
		"PULSE_TOKEN_FILE="+token,
		"PULSE_CACHE_DIR="+filepath.Join(s.dir, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"),
	)}
}

func (c *cliEnv) run(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = c.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("pulse %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	c.t.Logf("pulse %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	return testport.Port(t)
}

// invoke is one POST to whoami through the gateway, on a new connection.
func invoke(t *testing.T, gw, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw+"/function/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// load sends requests through the gateway on keep-alive connections, each
// written by hand and never retried (Go's http.Client would resend some
// silently): a request that gets no 200 answer counts as failed, and its
// connection is replaced.
type load struct {
	stopc  chan struct{}
	wg     sync.WaitGroup
	n, bad atomic.Int64
	mu     sync.Mutex
	errs   map[string]int
}

func startLoad(t *testing.T, gw, key string) *load {
	t.Helper()
	addr := strings.TrimPrefix(gw, "http://")
	req := []byte("POST /function/whoami HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + key + "\r\nContent-Length: 0\r\n\r\n")
	l := &load{stopc: make(chan struct{}), errs: map[string]int{}}
	fail := func(why string) {
		l.bad.Add(1)
		l.mu.Lock()
		l.errs[why]++
		l.mu.Unlock()
	}
	for range 2 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for {
				select {
				case <-l.stopc:
					return
				case <-time.After(10 * time.Millisecond): // about 100 requests/s per connection at most
				}
				if conn == nil {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						l.n.Add(1)
						fail("dial: " + err.Error())
						continue
					}
					conn, br = c, bufio.NewReader(c)
				}
				l.n.Add(1)
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				resp, err := func() (*http.Response, error) {
					if _, err := conn.Write(req); err != nil {
						return nil, err
					}
					return http.ReadResponse(br, nil)
				}()
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				switch {
				case err != nil:
					fail(strings.TrimPrefix(fmt.Sprintf("%T", err), "*"))
				case resp.StatusCode != http.StatusOK:
					fail(resp.Status)
				}
				if err != nil || resp.Close {
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	return l
}

func (l *load) stop() (n, failed int64, errs map[string]int) {
	close(l.stopc)
	l.wg.Wait()
	return l.n.Load(), l.bad.Load(), l.errs
}
