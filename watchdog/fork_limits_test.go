package watchdog_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rssKiB is VmRSS of pid, from /proc/<pid>/status.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestForkMemory: answers over the response limit and large answers under
// it leave the watchdog at its idle footprint; none of them is held in the
// Go heap. Three rounds, since what used to break was the second one.
func TestForkMemory(t *testing.T) {
	const limit = 50 << 20
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" bytes 104857600", // 100 MB, twice the limit
		"PULSE_MAX_RESPONSE=50MiB")
	pid := w.cmd.Process.Pid
	if r := w.do("GET", "/_/metrics", "", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	idle := rssKiB(t, pid)
	t.Logf("idle RSS %d KiB", idle)
	for round := 0; round < 3; round++ {
		r := w.do("POST", "/", "", nil)
		if r.status != 502 || jsonBody(t, r.body)["limit"] != float64(limit) {
			t.Fatalf("round %d: over the limit: %d %q", round, r.status, short(r.body))
		}
		after := rssKiB(t, pid)
		t.Logf("round %d: RSS after a 100 MB answer over the limit: %d KiB", round, after)
		if after > idle+8<<10 {
			t.Errorf("round %d: RSS %d KiB after an answer over the limit, idle was %d KiB", round, after, idle)
		}
	}

	// Under the limit: 40 MiB answered whole, then back to idle.
	w2 := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" bytes 41943040", "PULSE_MAX_RESPONSE=50MiB")
	pid2 := w2.cmd.Process.Pid
	w2.do("GET", "/_/metrics", "", nil)
	idle2 := rssKiB(t, pid2)
	for round := 0; round < 3; round++ {
		r := w2.do("POST", "/", "", nil)
		if r.err != nil || r.status != 200 || len(r.body) != 40<<20 || strings.Trim(r.body, "x") != "" {
			t.Fatalf("round %d: %d, %d bytes, %v", round, r.status, len(r.body), r.err)
		}
		after := rssKiB(t, pid2)
		t.Logf("round %d: RSS after a 40 MiB answer: %d KiB (idle %d KiB)", round, after, idle2)
		if after > idle2+8<<10 {
			t.Errorf("round %d: RSS %d KiB after a 40 MiB answer, idle was %d KiB", round, after, idle2)
		}
	}
}

// TestForkMemoryBody: a large request body (spooled, then written to the
// function's stdin) and its echo leave the watchdog at its idle footprint.
func TestForkMemoryBody(t *testing.T) {
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" echo", "PULSE_MAX_BODY=20MiB", "PULSE_MAX_RESPONSE=20MiB")
	pid := w.cmd.Process.Pid
	w.do("GET", "/_/metrics", "", nil)
	idle := rssKiB(t, pid)
	body := strings.Repeat("0123456789abcdef", 18<<16) // 18 MiB
	for round := 0; round < 3; round++ {
		r := w.do("POST", "/", body, nil)
		if r.err != nil || r.status != 200 || r.body != body {
			t.Fatalf("round %d: %d, %d bytes, %v", round, r.status, len(r.body), r.err)
		}
		after := rssKiB(t, pid)
		t.Logf("round %d: RSS after an 18 MiB body echoed: %d KiB (idle %d KiB)", round, after, idle)
		if after > idle+8<<10 {
			t.Errorf("round %d: RSS %d KiB after an 18 MiB body, idle was %d KiB", round, after, idle)
		}
	}
}

// TestForkOOM: a function the kernel kills for memory (its replica's
// cgroup limit) is reported as out of memory, counted, and the watchdog
// keeps serving. The watchdog runs in a memory cgroup of its own, limited
// to 64 MiB; the function touches 256 MiB.
func TestForkOOM(t *testing.T) {
	cg := memoryCgroup(t, 64<<20)
	w := startCmd(t, []string{"/bin/sh", "-c", `echo $$ > "$1" && exec "$2"`, "sh", cg.procs, bin.watchdog},
		"PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" hog 256")
	start := time.Now()
	r := w.do("POST", "/", "x", nil)
	if r.status != 500 {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	got := jsonBody(t, r.body)
	if got["error"] != "function failed: out of memory" || got["signal"] != "killed" || got["request_id"] == "" {
		t.Fatalf("body %s", r.body)
	}
	t.Logf("OOM answered in %v", time.Since(start))
	if n := w.metric(`pulse_watchdog_oom_killed_total{function="test"}`); n != 1 {
		t.Errorf("oom_killed_total = %v", n)
	}
	// A SIGKILL that is not the kernel's is not called out of memory.
	w2 := startCmd(t, []string{"/bin/sh", "-c", `echo $$ > "$1" && exec "$2"`, "sh", cg.procs, bin.watchdog},
		"PULSE_MODE=fork", `PULSE_EXEC=["/bin/sh","-c","kill -9 $$"]`)
	if r := w2.do("POST", "/", "", nil); r.status != 500 || jsonBody(t, r.body)["error"] != "function failed" || jsonBody(t, r.body)["signal"] != "killed" {
		t.Errorf("plain SIGKILL: %d %s", r.status, r.body)
	}
	// The watchdog lives on.
	if r := w.do("GET", "/_/health", "", nil); r.status != 200 {
		t.Fatalf("health after the OOM kill: %d", r.status)
	}
}

type cgroup struct{ dir, procs string }

// memoryCgroup makes a memory cgroup limited to limit bytes under the test
// process's own, removed at cleanup (after the processes in it are gone).
func memoryCgroup(t *testing.T, limit int64) cgroup {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc/self/cgroup")
	}
	var dir, limitFile string
	for _, line := range strings.Split(string(raw), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if strings.Contains(","+parts[1]+",", ",memory,") {
			dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes"
			break
		}
		if parts[0] == "0" && parts[1] == "" {
			dir, limitFile = filepath.Join("/sys/fs/cgroup", parts[2]), "memory.max"
		}
	}
	dir = filepath.Join(dir, fmt.Sprintf("pulse-watchdog-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup (needs root and a writable cgroup tree): %v", err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup %s left behind", dir)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatalf("limit the cgroup: %v", err)
	}
	// No swap, or the hog is swapped rather than killed (v1 only).
	_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)
	return cgroup{dir: dir, procs: filepath.Join(dir, "cgroup.procs")}
}

// TestForkDetachedGrandchild: a process that leaves the function's group
// (setsid) and holds its stdin, stdout and stderr without reading neither
// delays an answer past the exit grace nor a timeout past the timeout.
func TestForkDetachedGrandchild(t *testing.T) {
	big := strings.Repeat("i", 256<<10) // more than the stdin pipe holds
	cases := []struct {
		name   string
		how    string
		status int
		within time.Duration
	}{
		{"parent exits, answer after the exit grace", "exit", 200, 1800 * time.Millisecond},
		{"parent hangs, 504 at the timeout", "wait", 504, 2500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" detach "+pidFile+" "+tc.how, "PULSE_TIMEOUT=2s")
			t.Cleanup(func() {
				if raw, err := os.ReadFile(pidFile); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			start := time.Now()
			r := w.do("POST", "/", big, nil)
			took := time.Since(start)
			if r.err != nil || r.status != tc.status {
				t.Fatalf("got %d %q %v after %v", r.status, short(r.body), r.err, took)
			}
			if tc.status == 200 && r.body != "parent done\n" {
				t.Errorf("body %q", r.body)
			}
			if took > tc.within {
				t.Errorf("answered after %v, want within %v", took, tc.within)
			}
			t.Logf("answered %d after %v", r.status, took)
		})
	}
}
