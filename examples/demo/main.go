// Command demo runs the hello function on this machine's Docker Engine, as
// `make up` does until `pulse deploy` exists: it assembles a FROM scratch
// image from the static binary bin/hello, loads it (no registry), and starts
// it with a read-only root filesystem as a non-root user.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	binPath := flag.String("bin", "bin/hello", "static binary of the in-process hello function")
	port := flag.Int("port", 8081, "loopback port to publish the function on")
	name := flag.String("name", "pulse-demo-hello", "container name")
	flag.Parse()

	prog, err := os.ReadFile(*binPath)
	if err != nil {
		return fmt.Errorf("read %s (run `make build` first): %w", *binPath, err)
	}
	img, err := function.Assemble(function.ImageSpec{
		Tag:          "pulse/hello:demo",
		Files:        []function.File{{Path: "/function", Mode: 0o755, Content: prog}},
		Entrypoint:   []string{"/function"},
		Env:          []string{contract.EnvFunction + "=hello"},
		User:         "65534:65534",
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
		Labels:       map[string]string{contract.LabelFunction: "hello"},
		Healthcheck: &function.Healthcheck{
			Test: []string{"CMD", "/function", "-healthcheck"}, Interval: 2 * time.Second,
			Timeout: time.Second, Retries: 3,
		},
	})
	if err != nil {
		return fmt.Errorf("assemble image: %w", err)
	}
	cli, err := function.NewEngineClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	if err := function.LoadImage(ctx, cli, img); err != nil {
		return err
	}
	// Replace an earlier demo container.
	_ = cli.ContainerRemove(ctx, *name, container.RemoveOptions{Force: true})
	cport := nat.Port(fmt.Sprintf("%d/tcp", contract.WatchdogPort))
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: img.ID, ExposedPorts: nat.PortSet{cport: {}}, Labels: map[string]string{"pulse.demo": "1"}},
		&container.HostConfig{
			ReadonlyRootfs: true,
			Tmpfs:          map[string]string{"/tmp": "rw,noexec,nosuid,size=16m"},
			PortBindings:   nat.PortMap{cport: {{HostIP: "127.0.0.1", HostPort: fmt.Sprint(*port)}}},
			RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		}, nil, nil, *name)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", *port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + strings.TrimPrefix(contract.HealthPath, "/"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the demo function did not become healthy; see `docker logs " + *name + "`")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	fmt.Printf("hello is running (image %s, %.1f MB, container %s)\n\n  curl %s -d Pulse\n  curl %s_/metrics\n\nStop it with: docker rm -f %s\n",
		img.ID[:19], float64(len(prog))/1e6, *name, url, url, *name)
	return nil
}
