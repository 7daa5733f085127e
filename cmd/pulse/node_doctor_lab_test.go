package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/doctor"
	"github.com/pulsefaas/pulse/internal/labtest"
	"github.com/pulsefaas/pulse/provision"
)

// TestNodeDoctorLab: doctor's node checks on a real node over SSH (one lab
// node: sshd, Docker Engine 20.10, a stock Debian setup) say what the node
// itself says from inside: its engine's version, its dockerd's pid and port
// range, the userland proxy it runs by default (seen in its iptables rules
// through a command over SSH), its inotify limits. Then `pulse node add` of
// the node, a swarm manager already (re-adding a member), prints the same
// lines on stderr and adds it: the WARNs do not stop it. Without a docker
// command on the node, its engine is a FAIL and node add refuses it before
// anything else, saying what to fix.
func TestNodeDoctorLab(t *testing.T) {
	lab := labtest.Up(t, 1)
	t.Setenv("SSH_AUTH_SOCK", "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1 := lab.Nodes[0]
	inside := func(args ...string) string {
		t.Helper()
		out, err := lab.Exec(ctx, n1, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	cfg := provision.Config{IdentityFiles: []string{lab.KeyFile}, KnownHosts: lab.KnownHosts}
	target := provision.Target{User: "root", Host: n1.Addr, Port: 22}
	c, err := provision.Dial(ctx, cfg, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	results, err := nodeDoctor(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node checks over SSH in %v", time.Since(start).Round(time.Millisecond))
	byCheck := map[string]doctor.Result{}
	for _, r := range results {
		t.Logf("%s: %s %s (%s)", r.Check, r.Status, r.Detail, r.Hint)
		byCheck[r.Check] = r
	}
	if len(results) != 4 || len(byCheck) != 4 {
		t.Fatalf("%d results, want docker, host-ports, userland-proxy, inotify", len(results))
	}

	version := inside("docker", "version", "--format", "{{.Server.Version}}")
	if r := byCheck[doctor.CheckDocker]; r.Status != doctor.OK ||
		r.Detail != fmt.Sprintf("API 1.41 (engine %s) at ssh://%s", version, target) || !strings.HasPrefix(version, "20.10.24") {
		t.Errorf("docker: %+v; want OK with engine %s (20.10.24) at ssh://%s", r, version, target)
	}
	pid := inside("cat", "/var/run/docker.pid")
	kernel := strings.Join(strings.Fields(inside("cat", "/proc/sys/net/ipv4/ip_local_port_range")), "-")
	if r := byCheck[doctor.CheckHostPorts]; r.Status != doctor.WARN ||
		!strings.HasPrefix(r.Detail, fmt.Sprintf("dockerd (pid %s) assigns host ports from %s, the kernel's client range; ", pid, kernel)) ||
		!strings.Contains(r.Hint, "playbook") {
		t.Errorf("host-ports: %+v; want a WARN for dockerd %s in the kernel's range %s", r, pid, kernel)
	}
	if r := byCheck[doctor.CheckUserlandProxy]; r.Status != doctor.WARN ||
		r.Detail != "on (Docker's default: no /etc/docker/daemon.json): Docker's nat OUTPUT rule leaves 127.0.0.0/8 to the proxy; a docker-proxy process copies every request to 127.0.0.1:<host port>" {
		t.Errorf("userland-proxy: %+v; want a WARN: on by default, seen in iptables over SSH", r)
	}
	watches, instances := inside("cat", "/proc/sys/fs/inotify/max_user_watches"), inside("cat", "/proc/sys/fs/inotify/max_user_instances")
	if r := byCheck[doctor.CheckInotify]; !strings.HasPrefix(r.Detail, "max_user_watches "+watches) || !strings.Contains(r.Detail, "max_user_instances "+instances) {
		t.Errorf("inotify: %+v; want the node's %s and %s", r, watches, instances)
	}

	// The CLI: node1 is the swarm's manager, and added again.
	eng, err := c.Engine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if _, err := eng.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: n1.Addr}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PULSE_DOCKER_HOST":        "ssh://root@" + n1.Addr,
		"PULSE_SSH_KNOWN_HOSTS":    lab.KnownHosts,
		"PULSE_SSH_IDENTITY_FILES": lab.KeyFile,
		"SSH_AUTH_SOCK":            "",
		"DOCKER_HOST":              "",
	}
	code, stdout, stderr := pulse(t, t.TempDir(), env, "node", "add", "root@"+n1.Addr)
	t.Logf("pulse node add root@%s: exit %d\n%s%s", n1.Addr, code, stdout, stderr)
	if code != exitOK || !strings.Contains(stdout, n1.Name+": already in this swarm as a manager") {
		t.Fatalf("node add: exit %d, stdout %q", code, stdout)
	}
	for _, check := range []string{doctor.CheckDocker, doctor.CheckHostPorts, doctor.CheckUserlandProxy, doctor.CheckInotify} {
		r := byCheck[check]
		line := fmt.Sprintf("%s: doctor: %s: %s ", n1.Addr, check, r.Status)
		if check != doctor.CheckInotify { // its numbers are the host's, and may change
			line += r.Detail
		}
		if !strings.Contains(stderr, line) {
			t.Errorf("stderr lacks %q", line)
		}
	}

	// No docker command on the node: refused before any swarm call (the
	// manager's address does not even exist).
	docker := inside("sh", "-c", "command -v docker")
	inside("mv", docker, docker+".off")
	t.Cleanup(func() { lab.Exec(context.Background(), n1, "mv", docker+".off", docker) })
	env["PULSE_DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
	code, stdout, stderr = pulse(t, t.TempDir(), env, "node", "add", "root@"+n1.Addr)
	t.Logf("pulse node add root@%s without docker on it: exit %d\n%s%s", n1.Addr, code, stdout, stderr)
	wantLine := fmt.Sprintf("%s: doctor: docker: FAIL unreachable at ssh://%s: ", n1.Addr, target)
	wantErr := fmt.Sprintf("node %s not added: docker: unreachable at ssh://%s: ", target, target)
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, wantLine) || !strings.Contains(stderr, wantErr) ||
		!strings.Contains(stderr, "docker: command not found") || !strings.Contains(stderr, "the node needs Docker Engine") || !strings.Contains(stderr, "fix it on the node, then run pulse node add again") ||
		strings.Contains(stderr, "swarm active") {
		t.Errorf("node add without docker: exit %d, stdout %q; want exit 1, %q and %q, nothing else done", code, stdout, wantLine, wantErr)
	}
}
