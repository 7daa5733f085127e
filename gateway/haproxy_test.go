package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testport"
)

func TestParseProcsGolden(t *testing.T) {
	const version = "2.6.12-1+deb12u4"
	tests := []struct {
		file string
		want ProcList
	}{
		{"show_proc.txt", ProcList{
			Master:  ProcEntry{PID: 16853, Type: "master", Uptime: 2 * time.Second, Version: version},
			Workers: []ProcEntry{{PID: 16875, Type: "worker", Uptime: 2 * time.Second, Version: version}},
		}},
		// A reload while a request was in flight: the old worker stays
		// until its connection ends.
		{"show_proc_old_workers.txt", ProcList{
			Master:     ProcEntry{PID: 19336, Type: "master", Reloads: 1, Uptime: 7 * time.Second, Version: version},
			Workers:    []ProcEntry{{PID: 20669, Type: "worker", Uptime: 0, Version: version}},
			OldWorkers: []ProcEntry{{PID: 19339, Type: "worker", Reloads: 1, Uptime: 7 * time.Second, Version: version}},
		}},
		// Then a reload of a broken file: the master counts it as failed
		// and the current worker stays current.
		{"show_proc_failed_reload.txt", ProcList{
			Master:     ProcEntry{PID: 19336, Type: "master", Reloads: 2, FailedReloads: 1, Uptime: 8 * time.Second, Version: version},
			Workers:    []ProcEntry{{PID: 20669, Type: "worker", Reloads: 1, Uptime: time.Second, Version: version}},
			OldWorkers: []ProcEntry{{PID: 19339, Type: "worker", Reloads: 2, Uptime: 8 * time.Second, Version: version}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ParseProcs(f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseProcs(t *testing.T) {
	const head = "#<PID>          <type>          <reloads>       <uptime>        <version>\n"
	tests := []struct {
		name    string
		in      string
		want    ProcList
		wantErr string
	}{
		{name: "programs and an unknown section",
			in: head + "10 master 3 [failed: 0] 1d02h03m04s 2.6.12\n# workers\n11 worker 0 0d00h00m05s 2.6.12\n" +
				"# programs\n12 dataplane 1 0d00h01m00s -\n# old programs\n13 dataplane 2 0d00h02m00s -\n# future\n14 thing 0 0d00h00m00s x\n",
			want: ProcList{
				Master:      ProcEntry{PID: 10, Type: "master", Reloads: 3, Uptime: 26*time.Hour + 3*time.Minute + 4*time.Second, Version: "2.6.12"},
				Workers:     []ProcEntry{{PID: 11, Type: "worker", Uptime: 5 * time.Second, Version: "2.6.12"}},
				Programs:    []ProcEntry{{PID: 12, Type: "dataplane", Reloads: 1, Uptime: time.Minute, Version: "-"}},
				OldPrograms: []ProcEntry{{PID: 13, Type: "dataplane", Reloads: 2, Uptime: 2 * time.Minute, Version: "-"}},
			}},
		{name: "master without failed count", in: head + "10 master 0 0d00h00m01s 2.4\n# workers\n",
			want: ProcList{Master: ProcEntry{PID: 10, Type: "master", Uptime: time.Second, Version: "2.4"}}},
		{name: "empty", in: "", wantErr: "no master line"},
		{name: "no header", in: "10 master 0 0d00h00m01s 2.6\n", wantErr: "want the #<PID> header"},
		{name: "worker first", in: head + "11 worker 0 0d00h00m01s 2.6\n", wantErr: `want the master, got type "worker"`},
		{name: "second process outside a section", in: head + "10 master 0 0d00h00m01s 2.6\n11 worker 0 0d00h00m01s 2.6\n", wantErr: "before any section"},
		{name: "bad pid", in: head + "x master 0 0d00h00m01s 2.6\n", wantErr: `pid "x"`},
		{name: "bad failed count", in: head + "10 master 0 [failed: x] 0d00h00m01s 2.6\n", wantErr: "failed reloads"},
		{name: "bad uptime", in: head + "10 master 0 1h 2.6\n", wantErr: `uptime "1h"`},
		{name: "huge uptime", in: head + "10 master 0 999999999d00h00m01s 2.6\n", wantErr: "uptime"},
		{name: "connection refused text", in: "Can't find the target PID matching the prefix '@!1'\n", wantErr: "#<PID> header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcs(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseProcs(f *testing.F) {
	for _, name := range []string{"show_proc.txt", "show_proc_old_workers.txt", "show_proc_failed_reload.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("#<PID>\n1 master 0 [failed: 1] 0d00h00m00s v\n# programs\n2 p 0 0d00h00m00s -\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseProcs(strings.NewReader(in))
		if err != nil {
			if !reflect.DeepEqual(got, ProcList{}) {
				t.Fatalf("result %+v with error %v", got, err)
			}
			return
		}
		if got.Master.Type != "master" {
			t.Fatalf("master %+v", got.Master)
		}
		for _, l := range [][]ProcEntry{{got.Master}, got.Workers, got.OldWorkers, got.Programs, got.OldPrograms} {
			for _, e := range l {
				if e.PID <= 0 || e.Uptime < 0 || e.Type == "" {
					t.Fatalf("entry %+v", e)
				}
			}
		}
	})
}

func TestReloadedWorker(t *testing.T) {
	w := func(pids ...int) []ProcEntry {
		var out []ProcEntry
		for _, p := range pids {
			out = append(out, ProcEntry{PID: p, Type: "worker"})
		}
		return out
	}
	tests := []struct {
		name          string
		before, after ProcList
		want          int
		wantErr       string
	}{
		{"new worker, old one leaving", ProcList{Workers: w(10)}, ProcList{Workers: w(20), OldWorkers: w(10)}, 20, ""},
		{"new worker, old one gone", ProcList{Workers: w(10)}, ProcList{Workers: w(20)}, 20, ""},
		{"failed reload keeps the worker", ProcList{Workers: w(10)}, ProcList{Workers: w(10)}, 0, "still current"},
		{"no worker yet", ProcList{Workers: w(10)}, ProcList{OldWorkers: w(10)}, 0, "no new worker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reloadedWorker(tt.before, tt.after)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %d, %v; want %d, %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseHAProxyLine(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
		pid   int
	}{
		{"[NOTICE]   (23247) : New worker (23250) forked", slog.LevelInfo, "New worker (23250) forked", 23247},
		{"[WARNING]  (23247) : Former worker (23250) exited with code 0 (Exit)", slog.LevelWarn, "Former worker (23250) exited with code 0 (Exit)", 23247},
		{"[ALERT]    (23247) : config : parsing [h.cfg:17] : unknown keyword 'bogus_keyword' in 'backend' section", slog.LevelError,
			"config : parsing [h.cfg:17] : unknown keyword 'bogus_keyword' in 'backend' section", 23247},
		{"[ALERT] config : no pid", slog.LevelError, "config : no pid", 0},
		{"plain text", slog.LevelInfo, "plain text", 0},
	}
	for _, tt := range tests {
		level, msg, pid := parseHAProxyLine(tt.line)
		if level != tt.level || msg != tt.msg || pid != tt.pid {
			t.Errorf("%q: %v %q %d; want %v %q %d", tt.line, level, msg, pid, tt.level, tt.msg, tt.pid)
		}
	}
}

func TestHAProxyConfigValidate(t *testing.T) {
	ok := HAProxyConfig{ConfigFile: "/etc/pulse/haproxy.cfg", MasterSocket: "/run/pulse/master.sock", PIDFile: "/run/pulse/haproxy.pid"}
	if _, err := NewHAProxy(ok, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*HAProxyConfig)
		wantErr string
	}{
		{"no config", func(c *HAProxyConfig) { c.ConfigFile = "" }, "no config file"},
		{"no socket", func(c *HAProxyConfig) { c.MasterSocket = "" }, "no master socket"},
		{"long socket", func(c *HAProxyConfig) { c.MasterSocket = "/" + strings.Repeat("x", 100) }, "longer than"},
		{"comma in socket", func(c *HAProxyConfig) { c.MasterSocket = "/run/a,level,user" }, "','"},
		{"no pid file", func(c *HAProxyConfig) { c.PIDFile = "" }, "no pid file"},
		{"negative timeout", func(c *HAProxyConfig) { c.ReloadTimeout = -time.Second }, "reload timeout"},
		{"backoff order", func(c *HAProxyConfig) { c.RestartBackoff, c.MaxRestartBackoff = time.Second, time.Millisecond }, "max restart backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			if _, err := NewHAProxy(c, nil); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestHAProxyReloadUnderLoad reloads HAProxy five times under continuous
// keep-alive load from clients that never retry: with `option
// idle-close-on-response` not one request may fail, and each reload brings
// a new worker.
func TestHAProxyReloadUnderLoad(t *testing.T) {
	r1, _ := hxReplica(t, "r1", nil)
	r2, _ := hxReplica(t, "r2", nil)
	hx := hxSetup(t, hxSetupOptions{servers: hxServerLines(r1, r2)})
	hx.start(t)
	ctx := t.Context()

	load := hxStartLoad(t, hx, 4)
	hxEventually(t, 5*time.Second, "load flowing", func() bool { return load.ok.Load() >= 200 })

	var took []time.Duration
	pids := []int{hx.workerPID(t)}
	for i := 0; i < 5; i++ {
		begin := time.Now()
		if err := hx.hx.Reload(ctx); err != nil {
			t.Fatalf("reload %d: %v", i+1, err)
		}
		took = append(took, time.Since(begin))
		pid := hx.workerPID(t)
		if slices.Contains(pids, pid) {
			t.Fatalf("reload %d: worker pid %d is not new (had %v)", i+1, pid, pids)
		}
		pids = append(pids, pid)
		// Let the new worker take a share of the load before the next one.
		from := load.ok.Load()
		hxEventually(t, 5*time.Second, "load after the reload", func() bool { return load.ok.Load() >= from+200 })
	}
	load.halt()
	ok, failed := load.ok.Load(), load.failed.Load()
	t.Logf("5 reloads under load (4 keep-alive connections): %d requests ok, %d failed; reload to new worker up: %v; workers %v",
		ok, failed, took, pids)
	if failed != 0 {
		t.Fatalf("%d failed requests, first ones: %v", failed, load.samples())
	}
	if st := hx.hx.Stats(); st.Reloads != 5 || st.ReloadFailures != 0 || st.LastReload <= 0 {
		t.Fatalf("stats %+v", st)
	}
	// The old workers finish their connections and leave.
	hxEventually(t, 10*time.Second, "old workers gone", func() bool {
		procs, err := hx.hx.Procs(ctx)
		return err == nil && len(procs.OldWorkers) == 0 && len(procs.Workers) == 1
	})
}

// TestHAProxyReloadFailureKeepsOldWorker reloads a broken file: Reload
// reports it, and the old worker goes on serving.
func TestHAProxyReloadFailureKeepsOldWorker(t *testing.T) {
	r1, _ := hxReplica(t, "r1", nil)
	good := hxServerLines(r1)
	hx := hxSetup(t, hxSetupOptions{servers: good})
	hx.start(t)
	ctx := t.Context()
	pid := hx.workerPID(t)

	hx.writeConfig(t, good+"    no_such_keyword here\n")
	err := hx.hx.Reload(ctx)
	if !errors.Is(err, ErrReloadFailed) || !strings.Contains(err.Error(), "no_such_keyword") {
		t.Fatalf("reload of a broken file: %v; want ErrReloadFailed quoting HAProxy", err)
	}
	if got := hx.workerPID(t); got != pid {
		t.Fatalf("worker changed from %d to %d after a failed reload", pid, got)
	}
	c := hx.client(t)
	if st, body, err := c.get("/"); err != nil || st != http.StatusOK || body != "r1" {
		t.Fatalf("traffic after a failed reload: %d %q %v", st, body, err)
	}
	c.close() // else the old worker waits for its next request
	hx.writeConfig(t, good)
	if err := hx.hx.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if st := hx.hx.Stats(); st.Reloads != 1 || st.ReloadFailures != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHAProxyReloadAfterStartDirRemoved: pulsed started from a directory
// that is then removed (an upgrade replaced the checkout or the playbook's
// temporary directory) still reloads its HAProxy, whose master re-executes
// itself in its own directory on every reload.
func TestHAProxyReloadAfterStartDirRemoved(t *testing.T) {
	r1, _ := hxReplica(t, "r1", nil)
	hx := hxSetup(t, hxSetupOptions{servers: hxServerLines(r1)})
	gone := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(gone, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(gone)
	hx.start(t)
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	before := hx.workerPID(t)
	if err := hx.hx.Reload(t.Context()); err != nil {
		t.Fatalf("reload after pulsed's working directory was removed: %v", err)
	}
	if after := hx.workerPID(t); after == before {
		t.Fatalf("worker pid %d unchanged by the reload", after)
	}
}

// TestHAProxyStartFailure starts HAProxy on a broken file: Start and Run
// fail with HAProxy's alert, and nothing is left running.
func TestHAProxyStartFailure(t *testing.T) {
	hx := hxSetup(t, hxSetupOptions{servers: "    no_such_keyword here\n"})
	err := hx.hx.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "no_such_keyword") || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start on a broken file: %v; want the exit and HAProxy's alert", err)
	}
	if err := hx.hx.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "no_such_keyword") {
		t.Fatalf("Run on a broken file: %v", err)
	}
	if st := hx.hx.Stats(); st.PID != 0 || st.Starts != 0 {
		t.Fatalf("stats %+v", st)
	}
	if masters := hxMasters(t, hx.cfgPath); len(masters) != 0 {
		t.Fatalf("left running: %v", masters)
	}
}

// TestHAProxyRestartsAfterKill kills the master with SIGKILL: Run starts a
// new one and traffic flows again.
func TestHAProxyRestartsAfterKill(t *testing.T) {
	r1, _ := hxReplica(t, "r1", nil)
	hx := hxSetup(t, hxSetupOptions{servers: hxServerLines(r1)})
	ctx, cancel := context.WithCancel(t.Context())
	done := hx.run(t, ctx, hx.hx)
	hxEventually(t, 10*time.Second, "haproxy started by Run", func() bool { return hx.hx.Stats().PID != 0 })
	old := hx.hx.Stats().PID

	killed := time.Now()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hxEventually(t, 10*time.Second, "a new master", func() bool {
		st := hx.hx.Stats()
		return st.PID != 0 && st.PID != old
	})
	restarted := time.Since(killed)
	var flowing time.Duration
	hxEventually(t, 10*time.Second, "traffic through the new master", func() bool {
		c := hx.client(t)
		defer c.close()
		st, body, err := c.get("/")
		flowing = time.Since(killed)
		return err == nil && st == http.StatusOK && body == "r1"
	})
	st := hx.hx.Stats()
	t.Logf("SIGKILL to master: new master after %v, traffic after %v; stats %+v", restarted, flowing, st)
	if st.Restarts != 1 || st.UnexpectedExits != 1 || st.Starts != 2 || st.Adopted {
		t.Fatalf("stats %+v", st)
	}
	if readPIDFile(hx.cfg.PIDFile) != st.PID {
		t.Fatalf("pid file %d, master %d", readPIDFile(hx.cfg.PIDFile), st.PID)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if isHAProxyProcess(st.PID) {
		t.Fatalf("master %d still running after Run returned", st.PID)
	}
}

// TestHAProxyAdopt simulates a pulsed restart: the first supervisor leaves
// HAProxy running (LeaveRunning), a second one over the same pid file and
// socket adopts it instead of starting another, reloads it, restarts it when
// it dies, and stops it at the end.
func TestHAProxyAdopt(t *testing.T) {
	r1, _ := hxReplica(t, "r1", nil)
	hx := hxSetup(t, hxSetupOptions{servers: hxServerLines(r1), leaveRunning: true})

	ctx1, cancel1 := context.WithCancel(t.Context())
	done1 := hx.run(t, ctx1, hx.hx)
	hxEventually(t, 10*time.Second, "first pulsed started haproxy", func() bool { return hx.hx.Stats().PID != 0 })
	pid := hx.hx.Stats().PID
	cancel1()
	if err := <-done1; err != nil {
		t.Fatalf("first Run: %v", err)
	}
	if !isHAProxyProcess(pid) {
		t.Fatal("LeaveRunning: haproxy stopped with the first pulsed")
	}

	// The restarted pulsed.
	hx2 := hx.newSupervisor(t, false)
	if err := hx2.Start(t.Context()); !errors.Is(err, ErrHAProxyRunning) {
		t.Fatalf("Start next to a running haproxy: %v, want ErrHAProxyRunning", err)
	}
	ctx2, cancel2 := context.WithCancel(t.Context())
	done2 := hx.run(t, ctx2, hx2)
	hxEventually(t, 10*time.Second, "second pulsed adopted haproxy", func() bool { return hx2.Stats().PID != 0 })
	if st := hx2.Stats(); st.PID != pid || !st.Adopted || st.Starts != 0 {
		t.Fatalf("adopted: %+v, want pid %d", st, pid)
	}
	if masters := hxMasters(t, hx.cfgPath); !reflect.DeepEqual(masters, []int{pid}) {
		t.Fatalf("haproxy masters for %s: %v, want only %d", hx.cfgPath, masters, pid)
	}
	before := hx.workerPID(t)
	if err := hx2.Reload(t.Context()); err != nil {
		t.Fatalf("reload of the adopted haproxy: %v", err)
	}
	if after := hx.workerPID(t); after == before {
		t.Fatalf("worker pid %d unchanged by the reload", after)
	}
	if st, body, err := hx.client(t).get("/"); err != nil || st != http.StatusOK || body != "r1" {
		t.Fatalf("traffic through the adopted haproxy: %d %q %v", st, body, err)
	}

	// The adopted master dies: the second pulsed starts its own.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hxEventually(t, 10*time.Second, "restart of the adopted master", func() bool {
		st := hx2.Stats()
		return st.PID != 0 && st.PID != pid
	})
	st := hx2.Stats()
	if st.Adopted || st.Restarts != 1 || st.UnexpectedExits != 1 {
		t.Fatalf("after the adopted master died: %+v", st)
	}
	hxEventually(t, 10*time.Second, "traffic after the restart", func() bool {
		c := hx.client(t)
		defer c.close()
		code, _, err := c.get("/")
		return err == nil && code == http.StatusOK
	})

	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("second Run: %v", err)
	}
	hxEventually(t, 10*time.Second, "haproxy stopped", func() bool { return !isHAProxyProcess(st.PID) })
}

// --- helpers for tests against a real HAProxy ---

type hxSetupOptions struct {
	servers      string // server lines of backend fn_test
	leaveRunning bool
}

type hxInstance struct {
	dir, cfgPath string
	front        string // the frontend's 127.0.0.1:port
	port         int
	cfg          HAProxyConfig
	log          *slog.Logger
	hx           *HAProxy
	rt           *Runtime
}

// hxSetup writes a minimal configuration (a frontend on a free loopback
// port, backend fn_test, the stats socket at level admin) into a fresh
// short temporary directory (unix socket paths are short) and returns a
// supervisor for it; nothing runs yet. Cleanup stops whatever runs.
func hxSetup(t *testing.T, o hxSetupOptions) *hxInstance {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skipf("haproxy not installed (apt-get install haproxy): %v", err)
	}
	log := hxLogger(t)
	dir, err := os.MkdirTemp("", "phx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	port := testport.Port(t)
	i := &hxInstance{
		dir: dir, cfgPath: filepath.Join(dir, "haproxy.cfg"), port: port,
		front: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), log: log,
		rt: NewRuntime(filepath.Join(dir, "stats.sock"), 2*time.Second),
	}
	i.cfg = HAProxyConfig{
		Binary: bin, ConfigFile: i.cfgPath,
		MasterSocket: filepath.Join(dir, "master.sock"), PIDFile: filepath.Join(dir, "haproxy.pid"),
		StopTimeout: 5 * time.Second, KillTimeout: 2 * time.Second, PollInterval: 10 * time.Millisecond,
		RestartBackoff: 50 * time.Millisecond, MaxRestartBackoff: time.Second, MaxRestartFailures: 5,
		LeaveRunning: o.leaveRunning,
	}
	i.writeConfig(t, o.servers)
	// Whatever the supervisors' cleanup leaves behind: SIGKILL the process
	// group of the master in our pid file.
	t.Cleanup(func() {
		if pid := readPIDFile(i.cfg.PIDFile); pid != 0 && isHAProxyProcess(pid) {
			t.Errorf("haproxy %d still running after the test", pid)
			if pg, err := syscall.Getpgid(pid); err == nil && pg == pid {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
		}
	})
	i.hx = i.newSupervisor(t, o.leaveRunning)
	return i
}

// newSupervisor returns another HAProxy over the same files, as a restarted
// pulsed would build it; cleanup stops what it runs.
func (i *hxInstance) newSupervisor(t *testing.T, leaveRunning bool) *HAProxy {
	t.Helper()
	c := i.cfg
	c.LeaveRunning = leaveRunning
	h, err := NewHAProxy(c, i.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Stop(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return h
}

func (i *hxInstance) writeConfig(t *testing.T, servers string) {
	t.Helper()
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
    stats timeout 30s
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    option idle-close-on-response
frontend fe
    bind %s
    default_backend fn_test
backend fn_test
    balance roundrobin
    option httpchk GET %s
%s`, filepath.Join(i.dir, "stats.sock"), i.front, contract.HealthPath, servers)
	if err := os.WriteFile(i.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hxServerLines(addrs ...string) string {
	var b strings.Builder
	for n, a := range addrs {
		fmt.Fprintf(&b, "    server r%d %s check inter 1s\n", n+1, a)
	}
	return b.String()
}

func (i *hxInstance) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	begin := time.Now()
	if err := i.hx.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("haproxy up in %v", time.Since(begin))
}

// run runs h.Run(ctx) in a goroutine; the channel yields its result.
func (i *hxInstance) run(t *testing.T, ctx context.Context, h *HAProxy) <-chan error {
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		done <- h.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		select {
		case <-finished:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return")
		}
	})
	return done
}

func (i *hxInstance) workerPID(t *testing.T) int {
	t.Helper()
	procs, err := i.hx.Procs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(procs.Workers) != 1 {
		t.Fatalf("workers %+v, want one", procs.Workers)
	}
	return procs.Workers[0].PID
}

// client returns a raw client of the frontend; cleanup closes its
// connection (an idle keep-alive connection would hold a soft stop up).
func (i *hxInstance) client(t *testing.T) *hxClient {
	c := &hxClient{addr: i.front}
	t.Cleanup(c.close)
	return c
}

// hxReplica is a stand-in for a watchdog: 200 on the health path, and its
// name as the body of everything else (after extra, if given).
func hxReplica(t *testing.T, name string, extra http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	hits := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == contract.HealthPath {
			io.WriteString(w, "ok")
			return
		}
		if extra != nil {
			extra(w, r)
		}
		hits.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), hits
}

// hxClient is a raw HTTP/1.1 keep-alive client that never retries: one
// request, one answer or one error.
type hxClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

func (c *hxClient) get(path string) (int, string, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if err != nil {
			return 0, "", err
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: pulse.test\r\n\r\n", path); err != nil {
		c.close()
		return 0, "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return 0, "", err
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, string(body), nil
}

func (c *hxClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// hxLoad runs keep-alive clients in a loop and counts every answer: a
// socket error or a non-2xx status is a failure.
type hxLoad struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

func hxStartLoad(t *testing.T, hx *hxInstance, conns int) *hxLoad {
	l := &hxLoad{stop: make(chan struct{})}
	for range conns {
		l.wg.Add(1)
		c := hx.client(t)
		go func() {
			defer l.wg.Done()
			defer c.close()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				st, body, err := c.get("/")
				if err == nil && st >= 200 && st < 300 {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 10 {
					l.errs = append(l.errs, fmt.Sprintf("%d %q %v", st, body, err))
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.halt)
	return l
}

func (l *hxLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *hxLoad) samples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// hxEventually polls cond until it holds or the deadline passes.
func hxEventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hxMasters lists live haproxy masters whose command line names cfgPath: a
// process whose parent is not one of them.
func hxMasters(t *testing.T, cfgPath string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	parents := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isHAProxyProcess(pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), cfgPath) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		ppid, _ := strconv.Atoi(f[1])
		parents[pid] = ppid
	}
	var masters []int
	for pid, ppid := range parents {
		if _, ok := parents[ppid]; !ok {
			masters = append(masters, pid)
		}
	}
	slices.Sort(masters)
	return masters
}

// hxLogger logs to the test's output until the test ends (HAProxy's output
// goroutine may still write after that).
func hxLogger(t *testing.T) *slog.Logger {
	w := &hxTestWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type hxTestWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *hxTestWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
