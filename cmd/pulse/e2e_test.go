package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestEndToEnd: for every template, new → build → deploy → invoke through
// the CLI against the real swarm, then rm leaves no service, container or
// image behind.
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
	env := map[string]string{"PULSE_CACHE_DIR": cache}

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
			if !strings.Contains(out, name+": ready at 127.0.0.1:") {
				t.Errorf("deploy output:\n%s", out)
			}
			code, out, errs = pulse(t, fdir, env, append([]string{"invoke", name}, tc.invoke...)...)
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
			if code, _, errs := pulse(t, fdir, env, "invoke", name); code != exitFailure || !strings.Contains(errs, "pulse ls") {
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
