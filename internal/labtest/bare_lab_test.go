package labtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/internal/labtest"
	"github.com/pulsefaas/pulse/provision"
)

// TestBareLab: the bare variant is what a playbook installs Pulse onto (issue
// 15). Over SSH with the lab's key and the nodes' own host keys, each node
// has python3 with python3-apt (Ansible's apt module) and no Docker at all,
// its apt is configured with the host's apt-cacher-ng, and apt-get update and
// the install of a small package work through it: every request apt makes is
// a proxy request (an absolute URI). The second node's are served from what
// the first one's filled (the times logged; lab/README.md has docker.io's).
func TestBareLab(t *testing.T) {
	lab := labtest.UpBare(t, 2)
	t.Setenv("SSH_AUTH_SOCK", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := provision.Config{IdentityFiles: []string{lab.KeyFile}, KnownHosts: lab.KnownHosts}
	if lab.AptProxy == "" {
		t.Fatal("bare lab without an apt proxy")
	}
	for _, node := range lab.Nodes {
		c, err := provision.Dial(ctx, cfg, provision.Target{User: "root", Host: node.Addr, Port: 22})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		run := func(what, cmd string) string {
			t.Helper()
			start := time.Now()
			out, err := c.CombinedOutput(ctx, "sh", "-c", "export DEBIAN_FRONTEND=noninteractive; "+cmd)
			if err != nil {
				t.Fatalf("%s: %s: %v\n%s", node.Name, cmd, err, out)
			}
			t.Logf("%s: %s: %v", node.Name, what, time.Since(start).Round(time.Millisecond))
			return strings.TrimSpace(string(out))
		}

		if got := run("python3", `python3 -c 'import apt, sys; print("%d.%d" % sys.version_info[:2])'`); got != "3.11" {
			t.Errorf("%s: python3 with its apt module: %q, want 3.11 (bookworm's)", node.Name, got)
		}
		if got := run("no docker", `if command -v docker || command -v dockerd || command -v containerd ||
			dpkg-query -W docker.io >/dev/null 2>&1 || [ -e /var/run/docker.sock ]; then echo present; else echo absent; fi`); got != "absent" {
			t.Errorf("%s: docker: %q, want absent (a bare node has no Docker Engine)", node.Name, got)
		}
		if got, want := run("apt proxy", "apt-config dump Acquire::http::Proxy"), `Acquire::http::Proxy "`+lab.AptProxy+`";`; got != want {
			t.Errorf("%s: apt's proxy: %q, want %q", node.Name, got, want)
		}

		// Debug::Acquire::http prints each request apt sends: through a
		// proxy its line is "GET http://<mirror>/...", directly "GET /...".
		debug := "-q -o Debug::Acquire::http=true"
		proxied := func(what, out string) {
			t.Helper()
			var requests, direct int
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "GET ") {
					requests++
					if !strings.HasPrefix(line, "GET http://") {
						direct++
					}
				}
			}
			if requests == 0 || direct > 0 {
				t.Errorf("%s: %s sent %d requests, %d of them not to the proxy:\n%s", node.Name, what, requests, direct, out)
			}
		}
		proxied("apt-get update", run("apt-get update", "apt-get "+debug+" update"))
		out := run("apt-get install hello", "apt-get "+debug+" install -y --no-install-recommends hello && hello")
		proxied("apt-get install", out)
		if !strings.HasSuffix(out, "Hello, world!") {
			t.Errorf("%s: apt-get install hello && hello:\n%s", node.Name, out)
		}
	}
}
