package watchdog_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestForkPidsLimit: a function that fork-bombs its replica's pids limit
// does not take the watchdog down. The watchdog runs in a pids cgroup of
// its own, limited to what it uses when idle plus 20; the bomb fills it
// while clients keep sending requests. Throughout, /_/health answers 200,
// and every request gets 200 or a 503 JSON error with Retry-After (its
// process could not be started); the bomb's request gets the 504 of its
// timeout, which kills its process group, and then requests are served
// normally again.
//
// Before the watchdog reserved its threads, it died here of
// "runtime: failed to create new OS thread … fatal error: newosproc"
// whenever the Go runtime wanted one more thread while the bomb held
// every pid.
//
// The second case has more clients than process slots (and so than
// reserved threads), each request taking 200 ms: what keeps it alive is
// that requests beyond the slots wait without a thread.
func TestForkPidsLimit(t *testing.T) {
	cases := []struct {
		name    string
		env     []string
		clients int
		path    string
	}{
		{"default slots, 8 clients", nil, 8, "/"},
		{"4 slots, 24 slow clients", []string{"PULSE_MAX_PROCESSES=4"}, 24, "/?sleep"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { testForkPidsLimit(t, tc.env, tc.clients, tc.path) })
	}
}

func testForkPidsLimit(t *testing.T, env []string, clients int, path string) {
	cg := pidsCgroup(t)
	w := startCmd(t, []string{"/bin/sh", "-c", `echo $$ > "$1" && exec "$2"`, "sh", cg.procs, bin.watchdog},
		append([]string{"PULSE_MODE=fork", "PULSE_EXEC=" + bin.fn + " bomb", "PULSE_TIMEOUT=2s"}, env...)...)
	for i := 0; i < 3; i++ {
		if r := w.do("POST", "/", "warm", nil); r.status != 200 || r.body != "warm" {
			t.Fatalf("before the bomb: %d %q %v", r.status, short(r.body), r.err)
		}
	}
	idle := cg.read(t, "pids.current")
	threads := threadCount(t, w.cmd.Process.Pid)
	cg.write(t, "pids.max", strconv.Itoa(idle+20))
	t.Logf("watchdog: %d threads; cgroup: %d pids, limit %d", threads, idle, idle+20)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var healthOK, healthBad atomic.Int64
	var badHealth atomic.Value
	wg.Add(1)
	go func() { // health, every 10 ms
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if r := w.do("GET", "/_/health", "", nil); r.status == 200 {
				healthOK.Add(1)
			} else {
				healthBad.Add(1)
				badHealth.Store(fmt.Sprintf("%d %q %v", r.status, short(r.body), r.err))
			}
		}
	}()
	var ok200, refused503 atomic.Int64
	var mu sync.Mutex
	var bad []string
	// Clients keep their connections alive: thousands of short
	// connections a second would wrap the loopback's ephemeral ports
	// within TIME_WAIT, and the test would time out its own dials.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	for range clients {
		wg.Add(1)
		go func() { // clients: each keeps one request in flight
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := keepAliveDo(client, "http://"+w.addr+path, "hello")
				switch {
				case r.err == nil && r.status == 200 && r.body == "hello":
					ok200.Add(1)
				case r.err == nil && r.status == 503 && r.header.Get("Retry-After") != "" &&
					strings.Contains(r.body, `"error":"cannot start function: process limit reached`):
					refused503.Add(1)
				default:
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%d %v %q %q", r.status, r.err, r.header.Get("Retry-After"), short(r.body)))
					mu.Unlock()
				}
			}
		}()
	}

	start := time.Now()
	bomb := w.do("POST", "/?bomb", "", nil)
	took := time.Since(start)
	close(stop)
	wg.Wait()
	events := cg.readRaw(t, "pids.events")
	t.Logf("bomb answered %d after %v; clients: %d × 200, %d × 503; health: %d × 200; pids.events %q",
		bomb.status, took, ok200.Load(), refused503.Load(), healthOK.Load(), strings.TrimSpace(events))
	select {
	case <-w.done:
		t.Fatalf("the watchdog died: %v\n%s", w.err, tail(w.log(), 3000))
	default:
	}
	if bomb.status != 504 {
		t.Errorf("bomb: %d %q %v, want the 504 of its timeout", bomb.status, short(bomb.body), bomb.err)
	}
	if !strings.Contains(events, "max ") || strings.Contains(events, "max 0") {
		t.Errorf("the bomb never reached the pids limit: pids.events %q", events)
	}
	if n := healthBad.Load(); n > 0 {
		t.Errorf("health failed %d times during the bomb (last: %v)", n, badHealth.Load())
	}
	if len(bad) > 0 {
		t.Errorf("%d requests neither served nor refused cleanly during the bomb, first: %s", len(bad), bad[0])
	}
	if refused503.Load() == 0 {
		t.Errorf("no request was refused while the bomb held every pid")
	}

	// Served normally again once the bomb's group is killed and reaped.
	eventually(t, "the bomb's processes reaped", func() bool { return cg.read(t, "pids.current") <= idle+2 })
	if r := w.do("POST", "/", "after", nil); r.status != 200 || r.body != "after" {
		t.Fatalf("after the bomb: %d %q %v", r.status, short(r.body), r.err)
	}
	w.waitHealth(200)
	if n := threadCount(t, w.cmd.Process.Pid); n > threads {
		t.Errorf("the watchdog has %d threads after the bomb, %d before: it made threads under load", n, threads)
	}
	if strings.Contains(w.log(), "fatal error") {
		t.Errorf("fatal error in the log:\n%s", tail(w.log(), 3000))
	}
}

// TestForkMaxProcesses: PULSE_MAX_PROCESSES caps the processes running at
// once; requests beyond it wait their turn and are served, and the watchdog
// makes no thread beyond those it reserved at start.
func TestForkMaxProcesses(t *testing.T) {
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" sleep 1", "PULSE_MAX_PROCESSES=2", "PULSE_TIMEOUT=10s")
	pid := w.cmd.Process.Pid
	threads := threadCount(t, pid)
	const n = 6
	var wg sync.WaitGroup
	results := make([]resp, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.do("POST", "/", strconv.Itoa(i), nil)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	most := 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			most = max(most, len(children(pid)))
		}
	}
	took := time.Since(start)
	for i, r := range results {
		if r.err != nil || r.status != 200 || r.body != strconv.Itoa(i) {
			t.Errorf("request %d: %d %q %v", i, r.status, short(r.body), r.err)
		}
	}
	t.Logf("%d one-second requests, 2 at a time: %v; at most %d processes seen; threads %d, %d after",
		n, took, most, threads, threadCount(t, pid))
	if most > 2 {
		t.Errorf("%d processes at once, limit 2", most)
	}
	if took < 2900*time.Millisecond {
		t.Errorf("6 one-second requests took %v with 2 processes at a time: the cap is not enforced", took)
	}
	if after := threadCount(t, pid); after > threads {
		t.Errorf("threads: %d after, %d before", after, threads)
	}
}

// keepAliveDo posts body to url on one of client's kept-alive connections.
func keepAliveDo(client *http.Client, url, body string) resp {
	r, err := client.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return resp{err: err}
	}
	defer r.Body.Close()
	data, err := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: string(data), err: err}
}

// threadCount is the number of threads of pid.
func threadCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// pidsCgroup makes a pids cgroup, unlimited until the test writes
// pids.max, under the test process's own; removed at cleanup after the
// processes in it are gone.
func pidsCgroup(t *testing.T) cgroup {
	t.Helper()
	return makeCgroup(t, "pids", "pids.max")
}

// makeCgroup makes a cgroup of controller (v1), or one in the unified tree
// (v2) when the controller has no v1 hierarchy, under the test process's
// own, removed at cleanup (after the processes in it are gone). probe is a
// file the cgroup must have for the test to be meaningful.
func makeCgroup(t *testing.T, controller, probe string) cgroup {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip("no /proc/self/cgroup")
	}
	var dir string
	for _, line := range strings.Split(string(raw), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if strings.Contains(","+parts[1]+",", ","+controller+",") {
			dir = filepath.Join("/sys/fs/cgroup", controller, parts[2])
			break
		}
		if parts[0] == "0" && parts[1] == "" {
			dir = filepath.Join("/sys/fs/cgroup", parts[2])
		}
	}
	dir = filepath.Join(dir, fmt.Sprintf("pulse-watchdog-test-%s-%d", controller, os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a %s cgroup (needs root and a writable cgroup tree): %v", controller, err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for os.Remove(dir) != nil && time.Now().Before(deadline) {
			// Whatever is left (a bomb whose watchdog died) is killed.
			raw, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup %s left behind", dir)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, probe)); err != nil {
		t.Skipf("cgroup %s has no %s: %v", dir, probe, err)
	}
	return cgroup{dir: dir, procs: filepath.Join(dir, "cgroup.procs")}
}

func (cg cgroup) readRaw(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(cg.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func (cg cgroup) read(t *testing.T, file string) int {
	t.Helper()
	n, err := strconv.Atoi(string(bytes.TrimSpace([]byte(cg.readRaw(t, file)))))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return n
}

func (cg cgroup) write(t *testing.T, file, v string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cg.dir, file), []byte(v), 0o644); err != nil {
		t.Fatalf("write %s %s: %v", file, v, err)
	}
}

// TestForkPidsFit: under a small pids limit the watchdog runs as many
// processes at once as the limit holds beside its threads (each of them
// served, none refused), and refuses to start, saying what to change, when
// PULSE_MAX_PROCESSES asks for more than that.
func TestForkPidsFit(t *testing.T) {
	cg := pidsCgroup(t)
	cg.write(t, "pids.max", "40")
	w := startCmd(t, []string{"/bin/sh", "-c", `echo $$ > "$1" && exec "$2"`, "sh", cg.procs, bin.watchdog},
		"PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" sleep 1", "PULSE_TIMEOUT=10s")
	var procs int
	for _, line := range strings.Split(w.log(), "\n") {
		if i := strings.Index(line, `"max_processes":`); i >= 0 && strings.Contains(line, `"msg":"process limit"`) {
			fmt.Sscanf(line[i+len(`"max_processes":`):], "%d", &procs)
		}
	}
	threads := threadCount(t, w.cmd.Process.Pid)
	t.Logf("pids.max 40: %d processes at once, %d threads", procs, threads)
	if procs < 1 || threads+procs > 40 {
		t.Fatalf("%d processes and %d threads do not fit in 40 pids", procs, threads)
	}
	n := procs + 4
	var wg sync.WaitGroup
	results := make([]resp, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.do("POST", "/", strconv.Itoa(i), nil)
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.status != 200 || r.body != strconv.Itoa(i) {
			t.Errorf("request %d of %d: %d %q %v", i, n, r.status, short(r.body), r.err)
		}
	}

	cmd := exec.Command("/bin/sh", "-c", `echo $$ > "$1" && exec "$2"`, "sh", cg.procs, bin.watchdog)
	cmd.Env = []string{"PULSE_FUNCTION=test", "PULSE_LISTEN=127.0.0.1:0", "PULSE_MODE=fork",
		"PULSE_EXEC=" + bin.fn + " echo", "PULSE_MAX_PROCESSES=64"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errorsAs(err, &exit) || exit.ExitCode() != 1 ||
		!strings.Contains(string(out), "PULSE_MAX_PROCESSES=64: the replica's pids limit leaves") ||
		!strings.Contains(string(out), "set it to at most") {
		t.Errorf("PULSE_MAX_PROCESSES=64 under pids.max 40: %v\n%s", err, out)
	}
}
