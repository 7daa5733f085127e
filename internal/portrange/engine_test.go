package portrange

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/pulsefaas/pulse/function"
)

const fixHint = "run Pulse's playbook (make up, or ansible/site.yml on a cluster) (dockerd then assigns host ports from /etc/pulse/docker-port-range, which the kernel reserves)"

// TestEngineHostPortsReserved is the real-engine check of the host settings
// Pulse's playbook (role docker) makes: every host port the local dockerd assigns
// lies in net.ipv4.ip_local_reserved_ports, and client sockets get ports
// outside them. It starts two containers publishing 100 ephemeral ports each
// (the second one after the first, so dockerd's counter has moved on) and
// removes them and their image at the end. (300 ports each took 21 s and
// 35 s to start and about 50 s to remove on 2 busy cores: dockerd runs
// iptables a few times per port.)
func TestEngineHostPortsReserved(t *testing.T) {
	api := localEngine(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	reserved := readReserved(t)
	docker := dockerdRange(t)
	if open := reserved.Outside(docker); len(open) > 0 {
		t.Errorf("dockerd takes host ports from %s, and %d of them are not in net.ipv4.ip_local_reserved_ports (%q): client sockets take them too; %s",
			docker, open.Len(), reserved, fixHint)
	}

	img := waitImage(ctx, t, api)
	const perContainer = 100
	var assigned []int
	for i := range 2 {
		ports := publishEphemeral(ctx, t, api, img, i, perContainer)
		if len(ports) != perContainer {
			t.Fatalf("container %d: %d host ports assigned, want %d", i, len(ports), perContainer)
		}
		assigned = append(assigned, ports...)
	}
	var outside []string
	lo, hi := MaxPort, 0
	for _, p := range assigned {
		lo, hi = min(lo, p), max(hi, p)
		if !reserved.Contains(p) {
			outside = append(outside, strconv.Itoa(p))
		}
	}
	t.Logf("dockerd assigned %d host ports in %d-%d; its range %s; reserved %q", len(assigned), lo, hi, docker, reserved)
	if n := len(outside); n > 0 {
		if n > 10 {
			outside = append(outside[:10], "...")
		}
		t.Errorf("%d of %d host ports lie outside net.ipv4.ip_local_reserved_ports (%q): %s; %s",
			n, len(assigned), reserved, strings.Join(outside, ", "), fixHint)
	}

	// Client sockets: connect() and bind to port 0 on loopback take
	// ephemeral ports, never one of dockerd's or a reserved one. connect()
	// walks the range from an offset hashed from the destination, so each
	// try goes to a new listener (a new destination port). With Linux's
	// default range and nothing reserved, 28 of 64 connects landed in
	// 49152-60999 on the test machine (listeners, SO_REUSEADDR, take the
	// lower half of the range first).
	var clash []string
	for range 64 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			ln.Close()
			t.Fatal(err)
		}
		for _, a := range []net.Addr{ln.Addr(), c.LocalAddr()} {
			if p := a.(*net.TCPAddr).Port; docker.Contains(p) || reserved.Contains(p) {
				clash = append(clash, strconv.Itoa(p))
			}
		}
		c.Close()
		ln.Close()
	}
	if n := len(clash); n > 0 {
		if n > 10 {
			clash = append(clash[:10], "...")
		}
		t.Errorf("%d of 128 client sockets (64 connect, 64 listen on port 0) got ports in dockerd's range %s or the reserved ports %q: %s; %s",
			n, docker, reserved, strings.Join(clash, ", "), fixHint)
	}
}

// localEngine returns a client of the local engine, or skips (fails when
// PULSE_TEST_REQUIRE_ENGINE is set) when there is none. The engine must run
// on this host: the test compares its ports with this kernel's settings.
func localEngine(t *testing.T) *client.Client {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		skip("DOCKER_HOST=" + h + " is not a local engine")
	}
	api, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = api.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := api.Info(ctx); err != nil {
		skip(fmt.Sprintf("docker info: %v", err))
	}
	return api
}

// dockerdRange returns the port range the local dockerd reads: its view of
// ip_local_port_range through its mount namespace (/proc/<pid>/root), where
// the playbook's dockerd wrapper bind-mounts /etc/pulse/docker-port-range. Without
// the right to read that view (not root): the script's file if there is
// one, else the kernel's range, which is what dockerd reads without it.
func dockerdRange(t *testing.T) Range {
	t.Helper()
	const kernel = "/proc/sys/net/ipv4/ip_local_port_range"
	paths := []string{"/etc/pulse/docker-port-range", kernel}
	if b, err := os.ReadFile("/run/docker.pid"); err == nil {
		paths = append([]string{"/proc/" + strings.TrimSpace(string(b)) + "/root" + kernel}, paths...)
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("dockerd's port range: %v", err)
			continue
		}
		r, err := ParseRange(string(b))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return r
	}
	t.Fatal("cannot tell dockerd's port range")
	return Range{}
}

func readReserved(t *testing.T) List {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_reserved_ports")
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseList(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitImage loads a FROM scratch image whose program waits for SIGTERM, and
// removes it at the end of the test.
func waitImage(ctx context.Context, t *testing.T, api *client.Client) string {
	t.Helper()
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "wait.c"), filepath.Join(dir, "wait")
	if err := os.WriteFile(src, []byte("#include <signal.h>\n#include <unistd.h>\n"+
		"static void bye(int s){(void)s;_exit(0);}\nint main(void){signal(SIGTERM,bye);for(;;)pause();}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "gcc", "-static", "-Os", "-s", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := function.Assemble(function.ImageSpec{
		Files:      []function.File{{Path: "/wait", Mode: 0o755, Content: prog}},
		Entrypoint: []string{"/wait"}, User: function.ImageUser,
		Labels: map[string]string{"pulse.test": "portrange"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := function.LoadImage(ctx, api, img); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := api.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup: remove image %s: %v", img.ID, err)
		}
	})
	return img.ID
}

// publishEphemeral starts a container exposing n ports, each published on a
// host port dockerd picks, and returns those host ports (IPv4). The
// container is removed at the end of the test, before the image.
func publishEphemeral(ctx context.Context, t *testing.T, api *client.Client, img string, i, n int) []int {
	t.Helper()
	exposed := nat.PortSet{}
	for p := range n {
		exposed[nat.Port(fmt.Sprintf("%d/tcp", 20000+p))] = struct{}{}
	}
	created, err := api.ContainerCreate(ctx,
		&container.Config{Image: img, ExposedPorts: exposed, Labels: map[string]string{"pulse.test": "portrange"}},
		&container.HostConfig{PublishAllPorts: true, NetworkMode: "bridge", AutoRemove: false},
		nil, nil, fmt.Sprintf("pulse-test-portrange-%d-%d", os.Getpid(), i))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := api.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true}); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("cleanup: remove container %s: %v", created.ID, err)
		}
	})
	start := time.Now()
	if err := api.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start a container publishing %d ports: %v", n, err)
	}
	t.Logf("container %d with %d published ports started in %s", i, n, time.Since(start).Round(time.Millisecond))
	insp, err := api.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, bindings := range insp.NetworkSettings.Ports {
		for _, b := range bindings {
			if strings.Contains(b.HostIP, ":") {
				continue // the same port on IPv6
			}
			p, err := strconv.Atoi(b.HostPort)
			if err != nil {
				t.Fatalf("host port %q: %v", b.HostPort, err)
			}
			ports = append(ports, p)
		}
	}
	return ports
}
