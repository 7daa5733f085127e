package doctor

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDefaultProbes runs every check against this host: each must answer,
// and the Docker check must be OK whenever the engine answers a ping of
// its own.
func TestDefaultProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := DefaultProbes("")
	defer p.Close()

	results := Run(ctx, p)
	var out bytes.Buffer
	if err := Format(&out, results); err != nil {
		t.Fatal(err)
	}
	t.Logf("pulse doctor on this host:\n%s", out.String())

	if len(results) != len(checks) {
		t.Fatalf("got %d results, want %d", len(results), len(checks))
	}
	byName := map[string]Result{}
	for i, r := range results {
		if r.Check != checks[i].name {
			t.Errorf("result %d is %q, want %q", i, r.Check, checks[i].name)
		}
		switch r.Status {
		case OK, WARN, FAIL:
		default:
			t.Errorf("%s: status %q", r.Check, r.Status)
		}
		if r.Detail == "" {
			t.Errorf("%s: empty detail", r.Check)
		}
		byName[r.Check] = r
	}

	pingCtx, cancelPing := context.WithTimeout(ctx, 5*time.Second)
	defer cancelPing()
	if _, err := newDockerClient("").Ping(pingCtx); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("PULSE_TEST_REQUIRE_ENGINE is set and the engine does not answer: %v", err)
		}
		t.Logf("no engine (%v): the docker check is %s", err, byName[CheckDocker].Status)
		return
	}
	if r := byName[CheckDocker]; r.Status != OK {
		t.Errorf("the engine answers a ping, but the docker check says %+v", r)
	}
}

// TestDefaultProbesDockerHost: the probes talk to the engine they are
// given, not the environment's: an address where no engine listens fails
// the docker and swarm checks and says where it looked, even while the
// local engine answers.
func TestDefaultProbesDockerHost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	host := "tcp://" + addr

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := DefaultProbes(host)
	defer p.Close()
	byName := map[string]Result{}
	for _, r := range Run(ctx, p) {
		byName[r.Check] = r
	}
	d := byName[CheckDocker]
	if d.Status != FAIL || !strings.HasPrefix(d.Detail, "unreachable at "+host+": ") || !strings.Contains(d.Hint, "docker_host") {
		t.Errorf("docker check against %s: %+v; want FAIL, unreachable at %s, a hint naming docker_host", host, d, host)
	}
	if s := byName[CheckSwarm]; s.Status != FAIL || !strings.Contains(s.Detail, addr) {
		t.Errorf("swarm check against %s: %+v; want FAIL naming the address", host, s)
	}
}
