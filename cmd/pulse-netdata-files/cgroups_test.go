package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// TestCgroupScript runs the naming script as Netdata does (path, name) on
// the cgroup names Docker makes, and on others, which the stock script
// answers.
func TestCgroupScript(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, CgroupNameScript)
	if err := os.WriteFile(script, cgroupNameScript, 0o755); err != nil {
		t.Fatal(err)
	}
	stock := filepath.Join(dir, "stock.sh") // stands for Netdata's cgroup-name.sh
	if err := os.WriteFile(stock, []byte("#!/bin/sh\necho \"stock:$1:$2\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		path, name, want string
		code             int
	}{
		{"/docker/" + id, "docker_" + id, hiddenCgroupPrefix + "0123456789ab", 3},
		{"/system.slice/docker-" + id + ".scope", "system.slice_docker-" + id + ".scope", hiddenCgroupPrefix + "0123456789ab", 3},
		{"/docker", "docker", "stock:/docker:docker", 0},
		{"/system.slice/docker.service", "system.slice_docker.service", "stock:/system.slice/docker.service:system.slice_docker.service", 0},
		{"/docker/abc", "docker_abc", "stock:/docker/abc:docker_abc", 0}, // not a container ID
		{"/user.slice", "user.slice", "stock:/user.slice:user.slice", 0},
	} {
		cmd := exec.Command(script, tc.path, tc.name)
		cmd.Env = append(os.Environ(), "PULSE_STOCK_CGROUP_NAME="+stock)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want || code != tc.code {
			t.Errorf("%s: %q, exit %d; want %q, exit %d", tc.name, got, code, tc.want, tc.code)
		}
	}
}

// cgroupControllers are the cgroup hierarchies Netdata may read: v1's and,
// on a hybrid system, the unified one (which Netdata 1.37 prefers there).
var cgroupControllers = []string{"cpuacct", "cpu", "memory", "blkio", "pids", "devices", "unified"}

// fakeCgroup makes cgroup rel (e.g. "docker/<id>") in every v1 hierarchy
// and moves a new sleep process into it, as a container's would be; the
// test's cleanup removes both.
func fakeCgroup(t *testing.T, rel string) {
	t.Helper()
	sleep := exec.Command("sleep", "600")
	sleep.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	var made []string
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
		for i := len(made) - 1; i >= 0; i-- {
			for range 50 { // the kernel frees a cgroup shortly after its last task
				if err := os.Remove(made[i]); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	for _, c := range cgroupControllers {
		root := filepath.Join("/sys/fs/cgroup", c)
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			continue
		}
		d := filepath.Join(root, rel)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("make cgroup %s: %v", d, err)
		}
		made = append(made, d)
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o644); err != nil {
			t.Fatalf("move sleep into %s: %v", d, err)
		}
	}
}

// TestCgroupsInNetdata checks the netdata.conf block and the script in a
// real Netdata with its cgroups collector on, against a container-like
// cgroup (docker/<64 hex digits>, what Docker makes with the cgroupfs
// driver) and a scope that is no container. Netdata's stock configuration
// shows the container as a section named by its hex ID, which proves the
// setup; with the block the container is kept out and the scope stays.
func TestCgroupsInNetdata(t *testing.T) {
	if err := netdatalab.Available(); err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpuacct/cgroup.procs"); err != nil {
		t.Skip("needs cgroup v1's cpuacct hierarchy (Netdata reads it):", err)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	scope := "pulselab" + id[:8] + ".scope"
	fakeCgroup(t, filepath.Join("docker", id))
	fakeCgroup(t, scope)

	// The script where user netdata can run it, as the installer puts it.
	etc, err := os.MkdirTemp("", "pulse-netdata-files-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(etc)
	if err := os.Chmod(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, CgroupNameScript), cgroupNameScript, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	start := func(conf string) *netdatalab.Netdata {
		t.Helper()
		lab, err := netdatalab.Start(ctx, netdatalab.Config{Cgroups: true, NetdataConf: conf})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lab.Stop() })
		return lab
	}
	stockLab := start("")
	pulseLab := start(confBlock(etc))

	// sections returns the cgroup chart types of lab mentioning any of
	// the words.
	sections := func(lab *netdatalab.Netdata, words ...string) []string {
		charts, err := lab.Charts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		var out []string
		for chartID := range charts {
			typ, _, _ := strings.Cut(chartID, ".")
			for _, w := range words {
				if strings.Contains(typ, w) && !seen[typ] {
					seen[typ] = true
					out = append(out, typ)
				}
			}
		}
		return out
	}
	waitFor := func(lab *netdatalab.Netdata, word string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for len(sections(lab, word)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no cgroup charts for %s after 60 s; error.log tail:\n%s", word, tail(lab.ErrorLog(), 20))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitFor(stockLab, id[:12]) // stock: the container, by hex ID
	waitFor(pulseLab, strings.TrimSuffix(scope, ".scope"))
	// Both labs have discovered both cgroups by now (the scope and the
	// container are found in the same pass); a few more passes (every
	// second) for a late rename.
	time.Sleep(3 * time.Second)
	if got := sections(pulseLab, id[:12], hiddenCgroupPrefix); len(got) > 0 {
		t.Errorf("with Pulse's block the container still has charts: %v", got)
	}
	if got := sections(pulseLab, strings.TrimSuffix(scope, ".scope")); len(got) == 0 {
		t.Error("with Pulse's block the scope lost its charts")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
