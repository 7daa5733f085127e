// Package labtest gives tests the lab (lab/README.md): real nodes on this
// machine, each with its own address, sshd and Docker Engine, started by
// lab/lab.sh. Up starts the lab for one test (about 20 s, or 2 minutes more
// when the node image is not cached) and removes it when the test ends:
// nothing of the lab outlives the run but the node image. Nodes are
// pulse-lab-node1.. at 172.31.250.11.. (lab.sh's default subnet); one lab
// runs at a time (the package tests run one package at a time, -p 1).
//
// UpBare starts bare nodes instead (lab.sh's bare variant): Debian with sshd
// and python3 and no Docker Engine, their apt through the host's
// apt-cacher-ng, for what installs Pulse onto fresh machines.
//
// The lab needs root and the host's engine; without them a test is skipped,
// or failed when PULSE_TEST_REQUIRE_ENGINE is set (CI), like enginetest.
package labtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Node is one lab node.
type Node struct {
	Name string // its container's name and host name: pulse-lab-node1, ...
	Addr string // its address on the lab network, which the host reaches
	// Systemd: the node booted with systemd as PID 1 (UpBare's systemd
	// nodes); the others have no service manager.
	Systemd bool
}

// Lab is a running lab.
type Lab struct {
	Nodes      []Node
	Dir        string // PULSE_LAB_DIR: the key, known_hosts, ssh_config
	KeyFile    string // the private key every node's root accepts
	KnownHosts string // every node's host key, read from inside the node
	SSHConfig  string // for ssh -F
	// Host is this machine's address on the lab network, where the nodes
	// reach services of the host (a gateway the control plane runs here).
	Host string
	// AptProxy is the apt proxy bare nodes' apt-get goes through (the
	// host's apt-cacher-ng, http://Host:3142); empty for the default nodes.
	AptProxy string
}

// Up starts a lab of n nodes (lab.sh reuses nodes already running) and
// removes it at the end of t.
func Up(t testing.TB, n int) *Lab {
	t.Helper()
	return up(t, n, "node")
}

// UpBare starts a lab of n bare nodes (no Docker Engine; apt through
// Lab.AptProxy) and removes it at the end of t. The nodes numbered in
// systemd (1 is the first) boot with systemd as PID 1. The first start builds
// their image (1 to 5 minutes) if it is not cached.
func UpBare(t testing.TB, n int, systemd ...int) *Lab {
	t.Helper()
	return up(t, n, "bare", systemd...)
}

func up(t testing.TB, n int, variant string, systemd ...int) *Lab {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		skip("the lab needs root (debootstrap, docker-in-docker)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		skip(fmt.Sprintf("the lab needs the host's Docker Engine: %v", err))
	}
	script, err := Script()
	if err != nil {
		t.Fatal(err)
	}
	// One lab at a time on a machine: its nodes, network and addresses
	// have fixed names. Another test binary's lab (a second checkout's
	// tests) is waited for, up to lockWait.
	unlock, err := lock(lockPath, lockWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock) // registered first: runs after the lab is down
	dir := filepath.Join(os.TempDir(), "pulse-lab-test")
	var sd []string
	for _, i := range systemd {
		sd = append(sd, strconv.Itoa(i))
	}
	env := append(os.Environ(), "PULSE_LAB_NODES="+strconv.Itoa(n), "PULSE_LAB_DIR="+dir, "PULSE_LAB_VARIANT="+variant,
		"PULSE_LAB_SYSTEMD_NODES="+strings.Join(sd, " "))
	run := func(ctx context.Context, arg string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, script, arg)
		cmd.Env = env
		return cmd.CombinedOutput()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if out, err := run(ctx, "up"); err != nil {
		down, _ := run(context.Background(), "down")
		t.Fatalf("lab up: %v\n%s%s", err, out, down)
	}
	t.Logf("lab of %d nodes (%s) up in %v", n, variant, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := run(ctx, "down"); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	l := &Lab{
		Dir: dir, KeyFile: filepath.Join(dir, "id_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"), SSHConfig: filepath.Join(dir, "ssh_config"),
		Host: "172.31.250.1",
	}
	if variant == "bare" {
		l.AptProxy = "http://" + l.Host + ":3142"
		if p := os.Getenv("PULSE_LAB_APT_PROXY"); p != "" { // lab.sh's too
			l.AptProxy = p
		}
	}
	for i := 1; i <= n; i++ {
		l.Nodes = append(l.Nodes, Node{Name: fmt.Sprintf("pulse-lab-node%d", i), Addr: fmt.Sprintf("172.31.250.%d", 10+i),
			Systemd: slices.Contains(systemd, i)})
	}
	return l
}

// Exec runs a command in a node as root (docker exec: for the test's own
// checks and faults, not for what Pulse does over SSH).
func (l *Lab) Exec(ctx context.Context, node Node, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", append([]string{"exec", node.Name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", node.Name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Kill, Pause, Unpause and Start are a node's faults and its return: the
// node's container killed (its processes gone at once, its state kept),
// frozen (its kernel still answers TCP, its processes nothing), thawed,
// started again (init.sh brings sshd and its engine back, with its swarm
// state).
func (l *Lab) Kill(ctx context.Context, n Node) error    { return l.docker(ctx, "kill", n.Name) }
func (l *Lab) Pause(ctx context.Context, n Node) error   { return l.docker(ctx, "pause", n.Name) }
func (l *Lab) Unpause(ctx context.Context, n Node) error { return l.docker(ctx, "unpause", n.Name) }
func (l *Lab) Start(ctx context.Context, n Node) error   { return l.docker(ctx, "start", n.Name) }

func (l *Lab) docker(ctx context.Context, args ...string) error {
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Script is lab/lab.sh's absolute path, found from this file's directory.
func Script() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("labtest: cannot find the repository")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "lab", "lab.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("labtest: %w", err)
	}
	return filepath.Abs(p)
}

// The machine-wide lab lock.
const (
	lockPath = "/tmp/pulse-lab.lock"
	lockWait = 15 * time.Minute
)

// lock takes an exclusive flock on path, polling until wait has passed.
func lock(path string, wait time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("labtest: lock: %w", err)
	}
	for deadline := time.Now().Add(wait); ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("labtest: lock %s (another lab is running): %w", path, err)
		}
		time.Sleep(time.Second)
	}
}
