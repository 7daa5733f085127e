package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
)

// engineOrSkip returns a client of the local engine in swarm mode. Without
// one the end-to-end tests skip — unless PULSE_TEST_REQUIRE_ENGINE is set
// (CI), where they fail.
func engineOrSkip(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var info swarm.Info
		if i, ierr := cli.Info(ctx); ierr == nil {
			info = i.Swarm
		} else {
			err = ierr
		}
		if err == nil && info.LocalNodeState != swarm.LocalNodeStateActive {
			err = errSwarmInactive
		}
	}
	if err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("Docker Engine in swarm mode needed: %v", err)
		}
		t.Skipf("no Docker Engine in swarm mode: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

type constErr string

func (e constErr) Error() string { return string(e) }

const errSwarmInactive = constErr("swarm inactive (docker swarm init --advertise-addr 127.0.0.1)")

// freeAddr returns a loopback address nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startPulsed builds and runs a pulsed of its own instance, on its own
// ports and state directory (a `make up` pulsed is neither used nor
// disturbed), until the test ends; it returns its API's URL.
func startPulsed(t *testing.T, instance string) (api, gateway string) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("pulsed needs haproxy: %v", err)
		}
		t.Skipf("pulsed needs haproxy: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pulsed")
	if out, err := exec.Command("go", "build", "-o", bin, "../pulsed").CombinedOutput(); err != nil {
		t.Fatalf("build pulsed: %v\n%s", err, out)
	}
	apiAddr, gwAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "pulsed.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("instance: %s\nstate_dir: %s\napi_listen: %s\ngateway_listen: %s\nadmin_listen: %s\n"+
		"autoscale: false\nleave_running: false\n", instance, filepath.Join(dir, "state"), apiAddr, gwAddr, freeAddr(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "pulsed.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfg)
	for _, kv := range os.Environ() { // only the file configures it
		if !strings.HasPrefix(kv, "PULSE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("pulsed's log:\n%s", b)
			}
		}
	})
	url := "http://" + apiAddr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, "http://" + gwAddr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("pulsed exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulsed not healthy at %s: %v", url, err)
		}
	}
}

// TestEndToEnd: for every template, new → build → deploy → invoke through
// the CLI against the real swarm, then rm leaves no service, container or
// image behind. A pulsed of the test's own instance routes the functions:
// deploy waits until its gateway routes them; the go function is also
// scaled with --wait.
func TestEndToEnd(t *testing.T) {
	cli := engineOrSkip(t)
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	dir := t.TempDir()
	cache := t.TempDir()
	instance := "e2e-" + tag
	api, gw := startPulsed(t, instance)
	// invoke goes through the pulsed's gateway: ready must mean routed.
	env := map[string]string{"PULSE_CACHE_DIR": cache, "PULSE_API": api, "PULSE_INSTANCE": instance, "PULSE_GATEWAY": gw}

	// A static executable for the bin template: the C echo.
	echo := filepath.Join(dir, "echo")
	src := filepath.Join(dir, "echo.c")
	if err := os.WriteFile(src, []byte(`#include <unistd.h>
int main(void){char b[4096];ssize_t n;while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", echo, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}

	cases := []struct {
		lang   string
		invoke []string
		check  func(t *testing.T, out string)
	}{
		{"go", []string{"-d", "pulse"}, func(t *testing.T, out string) {
			if out != "Hello, pulse" {
				t.Errorf("got %q", out)
			}
		}},
		{"c", []string{"-d", "pulse"}, func(t *testing.T, out string) {
			if out != "Hello, pulse\n" {
				t.Errorf("got %q", out)
			}
		}},
		{"cpp", []string{"-d", "body text", "-H", "X-Test=v1", "--query", "a=1", "--query", "b=x y", "--path", "/p"}, func(t *testing.T, out string) {
			var got struct {
				Method  string            `json:"method"`
				Path    string            `json:"path"`
				Query   map[string]string `json:"query"`
				Headers map[string]string `json:"headers"`
				Body    string            `json:"body"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("%q: %v", out, err)
			}
			if got.Method != "POST" || got.Path != "/p" || got.Body != "body text" ||
				got.Query["a"] != "1" || got.Query["b"] != "x y" || got.Headers["X-Test"] != "v1" {
				t.Errorf("echo %+v", got)
			}
		}},
		{"bin", []string{"-d", "raw bytes"}, func(t *testing.T, out string) {
			if out != "raw bytes" {
				t.Errorf("got %q", out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.lang, func(t *testing.T) {
			name := "e2e-" + tc.lang + "-" + tag
			t.Cleanup(func() { pulse(t, dir, env, "rm", name) })
			if code, _, errs := pulse(t, dir, env, "new", name, "--lang", tc.lang); code != 0 {
				t.Fatalf("new: %d %s", code, errs)
			}
			fdir := filepath.Join(dir, name)
			if tc.lang == "bin" {
				b, _ := os.ReadFile(echo)
				if err := os.WriteFile(filepath.Join(fdir, "fn"), b, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errs := pulse(t, fdir, env, "deploy", "--health-interval", "250ms")
			if code != 0 {
				t.Fatalf("deploy: exit %d\n%s\n%s", code, out, errs)
			}
			if !strings.Contains(out, name+": ready at 127.0.0.1:") || !strings.Contains(out, "(routed by the gateway)") {
				t.Errorf("deploy output:\n%s", out)
			}
			if tc.lang == "go" {
				code, out, errs = pulse(t, fdir, env, "scale", name, "2", "--wait")
				if code != 0 || strings.Count(out, "127.0.0.1:") != 2 {
					t.Errorf("scale --wait: exit %d\n%s\n%s", code, out, errs)
				}
				noPulsed := map[string]string{"PULSE_CACHE_DIR": cache, "PULSE_API": "http://" + freeAddr(t), "PULSE_INSTANCE": instance}
				code, _, errs = pulse(t, fdir, noPulsed, "scale", name, "1", "--wait")
				if want := "cannot read pulsed's replica catalog at " + noPulsed["PULSE_API"] + "/v1/replicas"; code != exitFailure ||
					!strings.Contains(errs, want) || !strings.Contains(errs, "config key api (PULSE_API)") {
					t.Errorf("scale --wait without pulsed: exit %d, stderr %s; want %q and the config key", code, errs, want)
				}
			}
			code, out, errs = pulse(t, fdir, env, append([]string{"invoke", "-v", name}, tc.invoke...)...)
			if code != 0 {
				t.Fatalf("invoke: exit %d %s", code, errs)
			}
			tc.check(t, out)

			code, out, _ = pulse(t, fdir, env, "ls", "--json")
			if code != 0 || !strings.Contains(out, `"name": "`+name+`"`) {
				t.Errorf("ls: %d %s", code, out)
			}
			if code, out, errs := pulse(t, fdir, env, "rm", name); code != 0 {
				t.Fatalf("rm: %d %s %s", code, out, errs)
			}
			assertGone(t, cli, name)
			// Straight to the swarm (no gateway): the CLI's own "not
			// deployed" answer.
			direct := maps.Clone(env)
			delete(direct, "PULSE_GATEWAY")
			if code, _, errs := pulse(t, fdir, direct, "invoke", name); code != exitFailure || !strings.Contains(errs, "pulse ls") {
				t.Errorf("invoke after rm: exit %d, %s", code, errs)
			}
		})
	}
}

// assertGone checks that nothing of function name is left on the engine.
func assertGone(t *testing.T, cli *client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil || len(svcs) != 0 {
		t.Errorf("services left: %v %v", svcs, err)
	}
	ctrs, err := cli.ContainerList(ctx, containerListAll(name))
	if err != nil || len(ctrs) != 0 {
		t.Errorf("containers left: %d %v", len(ctrs), err)
	}
	imgs, err := cli.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction+"="+name))})
	if err != nil || len(imgs) != 0 {
		t.Errorf("images left: %d %v", len(imgs), err)
	}
}

func containerListAll(service string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+service))}
}
