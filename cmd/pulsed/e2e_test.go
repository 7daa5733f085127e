package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/credential"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/internal/tailbuf"
	"github.com/pulsefaas/pulse/internal/testport"
)

// freePort returns a loopback address nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	return testport.Addr(t)
}

// load is a keep-alive client that never retries: every socket error and
// every non-2xx answer is a failure, recorded with its time.
type load struct {
	ok       atomic.Int64
	mu       sync.Mutex
	failures []time.Time
	why      map[string]int
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func startLoad(addr, path string, conns int) *load {
	l := &load{stop: make(chan struct{}), why: map[string]int{}}
	for i := 0; i < conns; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			p := &rawPoster{addr: addr}
			defer p.close()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if failure := p.post(path, 10*time.Second); failure != "" {
					l.fail(failure)
					if strings.HasPrefix(failure, "dial: ") {
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// rawPoster sends POSTs over one keep-alive connection, redialling after a
// socket error; it never retries a request (Go's http.Client may).
type rawPoster struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
}

// post sends one request and returns "" for a 2xx answer, else why it
// failed: "dial: …", "write: …", "read: …" or the non-2xx status.
func (p *rawPoster) post(path string, timeout time.Duration) string {
	if p.c == nil {
		c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
		if err != nil {
			return "dial: " + err.Error()
		}
		p.c, p.br = c, bufio.NewReader(c)
	}
	_ = p.c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(p.c, "POST %s HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi", path); err != nil {
		p.close()
		return "write: " + err.Error()
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.close()
		return "read: " + err.Error()
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		p.close()
	}
	if resp.StatusCode/100 != 2 {
		return resp.Status
	}
	return ""
}

func (p *rawPoster) close() {
	if p.c != nil {
		p.c.Close()
		p.c = nil
	}
}

func (l *load) fail(why string) {
	l.mu.Lock()
	if os.Getenv("PULSE_TEST_TRACE") != "" {
		fmt.Fprintf(os.Stderr, "%s FAILED %s\n", time.Now().Format("15:04:05.000"), why)
	}
	l.failures = append(l.failures, time.Now())
	l.why[why]++
	l.mu.Unlock()
}

func (l *load) end() (ok int64, failures []time.Time, why map[string]int) {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
	return l.ok.Load(), l.failures, l.why
}

type env struct {
	t       *testing.T
	cli     *client.Client
	sw      *function.Swarm
	tag     string
	wdBin   []byte
	echoBin []byte
	cred    string // the replica credential, after useInstance
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var info struct{ state string }
		if i, ierr := cli.Info(ctx); ierr == nil {
			info.state = string(i.Swarm.LocalNodeState)
		} else {
			err = ierr
		}
		cancel()
		if err == nil && info.state != "active" {
			err = fmt.Errorf("swarm is %q (docker swarm init --advertise-addr 127.0.0.1)", info.state)
		}
	}
	if err == nil {
		_, err = exec.LookPath("haproxy")
	}
	if err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("needs Docker in swarm mode and haproxy: %v", err)
		}
		t.Skipf("needs Docker in swarm mode and haproxy: %v", err)
	}
	cli.NegotiateAPIVersion(context.Background())
	t.Cleanup(func() { cli.Close() })
	dir := t.TempDir()
	wd := filepath.Join(dir, "pulse-watchdog")
	build := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2,watchdog_nohttp",
		"-ldflags", "-s -w", "-o", wd, "../pulse-watchdog")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the image has no libc
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build watchdog: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "echo.c")
	if err := os.WriteFile(src, []byte(`#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void){const char*v=getenv("VERSION");char b[4096];ssize_t n;printf("%s:",v?v:"");fflush(stdout);
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	echo := filepath.Join(dir, "echo")
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", echo, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	e := &env{t: t, cli: cli, sw: function.NewSwarm(cli, function.LocalDistributor{API: cli}, nil)}
	e.wdBin, _ = os.ReadFile(wd)
	e.echoBin, _ = os.ReadFile(echo)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	e.tag = hex.EncodeToString(b)
	return e
}

// useInstance gives cfg the test run's own instance (its tag, which
// deployFunc labels every function with), so a pulsed of `make up` and the
// test's never route or scale each other's functions.
//
// It also gives the instance its replica credential: a file in a directory
// the test's Netdata can read (pulsed's replica_auth_file) and the Docker
// secret that deploys attach, both removed at cleanup, after the functions
// (cleanups run last-registered first). The management token file is the
// test's own (missing: the key endpoints answer 503).
func (e *env) useInstance(cfg *Config) {
	e.t.Helper()
	cfg.Instance = e.tag
	path, remove, err := netdatalab.ReplicaAuthFile("")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(remove)
	cred, err := credential.ReadOrCreateReplicaAuth(path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		list, _ := e.cli.SecretList(context.Background(), swarm.SecretListOptions{
			Filters: filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+e.tag))})
		for _, s := range list {
			_ = e.cli.SecretRemove(context.Background(), s.ID)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := credential.EnsureReplicaAuthSecret(ctx, e.cli, e.tag, cred); err != nil {
		e.t.Fatal(err)
	}
	e.cred = cred
	cfg.ReplicaAuthFile = path
	cfg.APITokenFile = filepath.Join(e.t.TempDir(), "api-token")
}

// deploy deploys (or re-deploys) a fork-mode echo function whose answers
// start with version.
func (e *env) deploy(name, version string) {
	e.t.Helper()
	e.deployFunc(name, version, deployment{fn: e.echoBin, env: map[string]string{"VERSION": version}})
}

// deployment is what deployFunc varies: the function binary, its
// environment, scale policy (default inflight 10, 1–10) and extra service
// labels.
type deployment struct {
	fn     []byte
	env    map[string]string
	scale  function.Scale
	labels map[string]string
	// rateLimit: functions.yml's rate_limit (nil: none).
	rateLimit *contract.RateLimit
	// inproc: fn is a Go function with the watchdog linked in (in-process
	// mode, e.g. bench/inproc), the image's only file.
	inproc bool
}

// deployFunc deploys a fork-mode function of the run's instance running d.fn
// behind the test's watchdog, with no Docker health check (as `pulse deploy`
// on this engine), removes it at cleanup and waits for its first replicas.
func (e *env) deployFunc(name, tag string, d deployment) {
	e.t.Helper()
	if d.scale == (function.Scale{}) {
		d.scale = function.Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10}
	}
	spec := function.Spec{Name: name, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn",
		Timeout: 10 * time.Second, MaxBody: 1 << 20, Scale: d.scale, Env: d.env, Labels: d.labels, RateLimit: d.rateLimit}
	files := []function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: e.wdBin},
		{Path: function.FunctionPath, Mode: 0o755, Content: d.fn}}
	entry := function.WatchdogPath
	if d.inproc {
		spec.Lang, spec.Mode, spec.Handler = function.LangGo, contract.ModeInProcess, "."
		files, entry = []function.File{{Path: function.FunctionPath, Mode: 0o755, Content: d.fn}}, function.FunctionPath
	}
	env := spec.WatchdogEnv()
	for _, k := range slices.Sorted(maps.Keys(d.env)) {
		env = append(env, k+"="+d.env[k])
	}
	img, err := function.Assemble(function.ImageSpec{
		Tag:   "pulse/" + name + ":" + tag,
		Files: files, Entrypoint: []string{entry}, Env: env, User: function.ImageUser,
		Labels: map[string]string{contract.LabelFunction: name, "pulse.test": "1"},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := e.sw.Deploy(ctx, spec, img, function.DeployOptions{NoHealthcheck: true, DrainGrace: 3 * time.Second, Instance: e.tag})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = e.sw.Remove(ctx, name)
	})
	// An update keeps the replicas the function had (scaled since).
	if _, err := e.sw.WaitReady(ctx, name, res.Replicas); err != nil {
		e.t.Fatal(err)
	}
}

// goBuild builds pkg (relative to cmd/pulsed) statically into out.
func goBuild(t *testing.T, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *env) scale(name string, n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.sw.Scale(ctx, name, n, true); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.sw.WaitReady(ctx, name, n); err != nil {
		e.t.Fatal(err)
	}
}

// pulsedUnder runs pulsed in process until the returned stop is called. A
// cold-start or async listener left at its default port gets a free one: a pulsed
// installed on this machine (make up) holds the default, and the tests run
// next to it.
func pulsedUnder(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	if cfg.ColdStartListen == defaults().ColdStartListen {
		cfg.ColdStartListen = freePort(t)
	}
	if cfg.AsyncListen == defaults().AsyncListen {
		cfg.AsyncListen = freePort(t)
	}
	if cfg.AsyncDispatchListen == defaults().AsyncDispatchListen {
		cfg.AsyncDispatchListen = freePort(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// pulsed's log: on stderr with -v; otherwise its last 256 KiB are kept
	// and its last 200 lines shown when the test fails (what CI prints).
	tail := tailbuf.New(256 << 10)
	var out io.Writer = tail
	if testing.Verbose() {
		out = os.Stderr
	}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() {
		err := serve(ctx, cfg, log)
		if ctx.Err() == nil {
			// Said at once: a test waiting for pulsed's listeners would
			// otherwise only report that they never answered.
			t.Logf("pulsed ended before it was stopped: %v", err)
		}
		done <- err
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			// The gateway keeps a worker until its idle client connections
			// are used once more or time out (idle-close-on-response, 30 s):
			// the tests' own are closed first, so pulsed stops at once.
			http.DefaultClient.CloseIdleConnections()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pulsed: %v", err)
			}
		})
	}
	// Stopped even when the test ends early (t.Fatal before its own stop).
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("pulsed's last log lines (instance %s):\n%s", cfg.Instance, tail.LastLines(200))
		}
	})
	return stop
}

// waitRoute polls the gateway until path answers 200.
func waitRoute(t *testing.T, gw, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post("http://"+gw+path, "text/plain", strings.NewReader("x"))
		last := fmt.Sprint(err)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = fmt.Sprintf("%s %q", resp.Status, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200 through the gateway (last: %s)", path, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func masterReload(t *testing.T, sock string) {
	t.Helper()
	// The master re-executes itself on each reload and does not listen
	// meanwhile (longer on a busy host): dial until it answers.
	var c net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err = net.Dial("unix", sock); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "reload\n")
	_ = c.(*net.UnixConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

// TestGatewayZeroFailures: under continuous keep-alive load through the
// gateway, no request fails while a second function is deployed, the first
// is scaled 1 → 4 → 1, re-deployed with a changed image, a function is
// removed, HAProxy is reloaded 10 times, and pulsed is restarted.
func TestGatewayZeroFailures(t *testing.T) {
	e := newEnv(t)
	state := t.TempDir()
	cfg := defaults()
	e.useInstance(&cfg)
	cfg.Autoscale = false // these tests are about routing; a scaler would act on the swarm's functions
	cfg.StateDir = state
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen = freePort(t), freePort(t), freePort(t)
	cfg.CheckInterval = 500 * time.Millisecond
	cfg.LeaveRunning = true
	cfg.HAProxyLog = os.Getenv("PULSE_TEST_HAPROXY_LOG")
	t.Cleanup(func() { // stop the HAProxy we leave running across the restart
		raw, err := os.ReadFile(filepath.Join(state, "haproxy.pid"))
		if err == nil {
			var pid int
			fmt.Sscan(string(raw), &pid)
			if p, err := os.FindProcess(pid); err == nil && pid > 0 {
				_ = p.Kill()
			}
		}
	})
	a, b := "gwa-"+e.tag, "gwb-"+e.tag
	e.deploy(a, "v1")
	stop := pulsedUnder(t, cfg)
	waitRoute(t, cfg.GatewayListen, "/function/"+a)

	l := startLoad(cfg.GatewayListen, "/function/"+a, 8)
	type mark struct {
		name string
		at   time.Time
	}
	var marks []mark
	step := func(name string, f func()) {
		marks = append(marks, mark{name, time.Now()})
		if os.Getenv("PULSE_TEST_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "%s STEP %s\n", time.Now().Format("15:04:05.000"), name)
		}
		f()
		time.Sleep(500 * time.Millisecond)
	}
	step("deploy a second function", func() { e.deploy(b, "v1"); waitRoute(t, cfg.GatewayListen, "/function/"+b) })
	step("scale 1 → 4", func() { e.scale(a, 4) })
	step("scale 4 → 1", func() { e.scale(a, 1); time.Sleep(4 * time.Second) })
	step("rolling update", func() { e.deploy(a, "v2"); time.Sleep(4 * time.Second) })
	step("remove a function", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := e.sw.Remove(ctx, b); err != nil {
			t.Fatal(err)
		}
	})
	step("10 reloads", func() {
		for i := 0; i < 10; i++ {
			masterReload(t, filepath.Join(state, "master.sock"))
			time.Sleep(300 * time.Millisecond)
		}
	})
	step("restart pulsed", func() {
		stop()
		stop = pulsedUnder(t, cfg)
		time.Sleep(2 * time.Second)
	})
	ok, failures, why := l.end()
	if os.Getenv("PULSE_TEST_TRACE") != "" {
		fmt.Fprintf(os.Stderr, "%s LOAD ENDED\n", time.Now().Format("15:04:05.000"))
	}
	stop()
	t.Logf("%d requests answered 2xx, %d failed %v", ok, len(failures), why)
	if ok < 1000 {
		t.Errorf("only %d requests: the load did not run", ok)
	}
	if len(failures) > 0 {
		per := map[string]int{}
		for _, f := range failures {
			in := "before the steps"
			for _, m := range marks {
				if !f.Before(m.at) {
					in = m.name
				}
			}
			per[in]++
		}
		t.Errorf("%d failed requests: %v; by step: %v", len(failures), why, per)
	}
	// The re-deploy took effect.
	resp, err := http.Post("http://"+cfg.GatewayListen+"/function/"+a, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "v2:x" {
		t.Errorf("after the rolling update: %q", body)
	}
}

// TestGatewayReplicaKilled: killing a replica's container under load fails
// requests only within the first 2 s.
func TestGatewayReplicaKilled(t *testing.T) {
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	cfg.Autoscale = false // these tests are about routing; a scaler would act on the swarm's functions
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen = freePort(t), freePort(t), freePort(t)
	cfg.CheckInterval = 500 * time.Millisecond
	cfg.LeaveRunning = false
	name := "gwk-" + e.tag
	e.deploy(name, "v1")
	e.scale(name, 2)
	stop := pulsedUnder(t, cfg)
	defer stop()
	waitRoute(t, cfg.GatewayListen, "/function/"+name)

	l := startLoad(cfg.GatewayListen, "/function/"+name, 8)
	time.Sleep(time.Second)
	ctrs, err := e.cli.ContainerList(context.Background(), container.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+name))})
	if err != nil || len(ctrs) == 0 {
		t.Fatalf("containers: %v %d", err, len(ctrs))
	}
	killed := time.Now()
	if err := e.cli.ContainerKill(context.Background(), ctrs[0].ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	ok, failures, why := l.end()
	late := 0
	for _, f := range failures {
		if f.Sub(killed) > 2*time.Second {
			late++
		}
	}
	t.Logf("%d ok, %d failed (%d later than 2 s after the kill): %v", ok, len(failures), late, why)
	if late > 0 {
		t.Errorf("%d requests failed more than 2 s after the kill", late)
	}
}

// bridgeGateway is the host as a replica on the default bridge sees it.
func bridgeGateway(t *testing.T) string {
	t.Helper()
	if ifc, err := net.InterfaceByName("docker0"); err == nil {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	return "172.17.0.1"
}

// TestFunctionToFunction: the example greet calls hello through the
// gateway at PULSE_GATEWAY_URL, and the answer comes back through it.
func TestFunctionToFunction(t *testing.T) {
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	cfg.Autoscale = false // these tests are about routing; a scaler would act on the swarm's functions
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.AdminListen = freePort(t), freePort(t)
	_, port, _ := net.SplitHostPort(freePort(t))
	cfg.GatewayListen = "0.0.0.0:" + port // replicas reach it on the bridge
	cfg.LeaveRunning = false
	cfg.CheckFall = 4 // not the default: check_fall reaches HAProxy
	stop := pulsedUnder(t, cfg)
	defer stop()

	specs, err := function.LoadSpecs("../../examples/functions.yml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gwURL := "http://" + net.JoinHostPort(bridgeGateway(t), port)
	names := map[string]string{"hello": "hello-" + e.tag, "greet": "greet-" + e.tag}
	// hello first: greet is built to call it under its test name.
	for _, want := range []string{"hello", "greet"} {
		var s function.Spec
		for _, sp := range specs {
			if sp.Name == want {
				s = sp
			}
		}
		if s.Name == "" {
			t.Fatalf("examples/functions.yml has no %s", want)
		}
		// Unique names, so a running `make up` is not disturbed.
		s.Name = names[want]
		if want == "greet" {
			s.Env = map[string]string{"TARGET": names["hello"]}
		}
		img, _, err := function.Build(ctx, s, function.BuildOptions{CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := function.LoadImage(ctx, e.cli, img); err != nil {
			t.Fatal(err)
		}
		name := s.Name
		// Removed before pulsed stops (defers run before stop's): greet
		// keeps a keep-alive connection to the gateway, which would hold
		// HAProxy's stop for its 30 s keep-alive timeout.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_ = e.sw.Remove(ctx, name)
		}()
		if _, err := e.sw.Deploy(ctx, s, img, function.DeployOptions{GatewayURL: gwURL, HealthInterval: 250 * time.Millisecond, Instance: e.tag}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sw.WaitReady(ctx, s.Name, 1); err != nil {
			t.Fatal(err)
		}
	}
	gw := "127.0.0.1:" + port
	waitRoute(t, gw, "/function/"+names["hello"])
	if b, err := os.ReadFile(filepath.Join(cfg.StateDir, "haproxy.cfg")); err != nil || !strings.Contains(string(b), " fall 4 ") {
		t.Errorf("haproxy.cfg with check_fall 4: want every backend's default-server with fall 4 (%v)", err)
	}
	waitRoute(t, gw, "/function/"+names["greet"]) // 200 only once hello answers greet through the gateway
	resp, err := http.Post("http://"+gw+"/function/"+names["greet"], "text/plain", strings.NewReader("Pulse"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "greet relays: Hello, Pulse\n" {
		t.Fatalf("greet: %d %q", resp.StatusCode, body)
	}
}
