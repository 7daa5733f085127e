package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
)

// Stages of the gateway suite, in the order they run.
const (
	gwStageLatency = "latency" // direct vs through HAProxy, c=1 and c=50
	gwStageBalance = "balance" // leastconn vs roundrobin over 3 replicas
	gwStageScale   = "scale"   // task running → its server takes traffic
)

var gatewayStages = []string{gwStageLatency, gwStageBalance, gwStageScale}

// Settings of the gateway suite.
const (
	// gwNamePrefix starts the name of every function the suite creates,
	// followed by the run's ID; gwRunLabel is the service and image label
	// holding the ID, gwTestLabel marks everything as a test's.
	gwNamePrefix = "pbench-gw-"
	gwRunLabel   = "pulse-bench.run"
	gwTestLabel  = "pulse.test"
	// gwHealthInterval is the replicas' Docker health interval: a new
	// task turns running only after its first passing probe, so a short
	// one makes the scale trials quick. It plays no part in what the scale
	// stage measures, which starts when the task is running.
	gwHealthInterval = 250 * time.Millisecond
	// gwDrainGrace is the replicas' drain grace: long enough that a
	// scale-down loses no request of the background load, short enough
	// that the trials do not wait.
	gwDrainGrace = time.Second
	// Load: c=1 with one wrk thread, c=50 with two (the issue's).
	gwLowConns, gwLowThreads   = 1, 1
	gwHighConns, gwHighThreads = 50, 2
	gwBalanceReplicas          = 3
	// The scale stage's pollers: Swarm's task list and pulsed's catalog
	// every 20 ms, HAProxy's runtime API every 10 ms.
	gwTaskPoll    = 20 * time.Millisecond
	gwCatalogPoll = 20 * time.Millisecond
	gwHAProxyPoll = 10 * time.Millisecond
	// The background load of the scale stage: a few keep-alive clients
	// through the gateway, each pausing between requests.
	gwBackgroundClients = 2
	gwBackgroundPause   = 10 * time.Millisecond
	// Time limits.
	gwRunningTimeout = 30 * time.Second // scale → the new task running
	gwTrafficTimeout = 10 * time.Second // running → its server took a session
	gwRouteTimeout   = 30 * time.Second // pulsed started → the function routed
	gwReadyTimeout   = 90 * time.Second
	gwCallTimeout    = 30 * time.Second
	gwRemoveTimeout  = 2 * time.Minute
	gwCleanupTimeout = 3 * time.Minute
	gwStopGrace      = 20 * time.Second // SIGTERM → pulsed gone
	gwHAProxyLinger  = 2 * time.Second  // pulsed gone → its HAProxy gone, before SIGKILL
	// labelServiceName is the label Swarm puts on a task's container.
	gwLabelServiceName = "com.docker.swarm.service.name"
)

// gwVariant is one wrk configuration of the latency and balance stages.
type gwVariant struct {
	Name    string
	Path    string // gwDirect or gwGateway
	Conns   int
	Threads int
	Balance string // balance stage: the algorithm pulsed is started with
}

// Request paths.
const (
	gwDirect  = "direct"  // straight to the replica's published port
	gwGateway = "gateway" // through HAProxy, /function/<name>
)

var (
	gwLatencyVariants = []gwVariant{
		{Name: "direct c=1", Path: gwDirect, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: "gateway c=1", Path: gwGateway, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: "direct c=50", Path: gwDirect, Conns: gwHighConns, Threads: gwHighThreads},
		{Name: "gateway c=50", Path: gwGateway, Conns: gwHighConns, Threads: gwHighThreads},
	}
	gwBalanceVariants = []gwVariant{
		{Name: "leastconn", Path: gwGateway, Conns: gwHighConns, Threads: gwHighThreads, Balance: gateway.BalanceLeastConn},
		{Name: "roundrobin", Path: gwGateway, Conns: gwHighConns, Threads: gwHighThreads, Balance: gateway.BalanceRoundRobin},
	}
)

// gatewayBench runs the gateway suite.
type gatewayBench struct {
	cfg    config
	log    *slog.Logger
	env    suiteEnv
	arts   artifacts
	api    *client.Client
	sw     *function.Swarm
	run    string // the run's ID: 6 hex digits
	name   string // the function's name
	body   string
	script string // bench/wrk/post.lua
	logDir string
	rep    *gatewayReport
	http   *http.Client // the harness's own requests: no keep-alive
	// cred is the run's replica credential: pulsed's replica_auth_file,
	// and the header of every request straight to a replica.
	cred *runCredential
	// checked is set once a direct request without the credential was
	// refused (or noted when it was not).
	checked bool

	mu      sync.Mutex
	pulsed  *pulsedProc // the running pulsed, if any
	starts  int         // pulsed starts so far (each gets its own state dir)
	swept   bool
	rewrote bool // an endpoint was not on loopback and was called at 127.0.0.1
}

// runGateway runs the gateway suite.
func runGateway(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := gatewayStages
	if len(cfg.Only) > 0 {
		stages = slices.DeleteFunc(slices.Clone(gatewayStages), func(s string) bool { return !slices.Contains(cfg.Only, s) })
	}
	id, err := gwRunID()
	if err != nil {
		return err
	}
	rep := &gatewayReport{
		Suite:   cfg.Suite,
		Started: env.started.Format(time.RFC3339),
		Config: gatewayConfig{
			Quick: cfg.Quick, Stages: stages, Rounds: cfg.Rounds, DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
			QuietWaitS: cfg.QuietWait.Seconds(), BodyBytes: cfg.BodyBytes, ScaleTrials: cfg.ScaleTrials,
			LowConns: gwLowConns, LowThreads: gwLowThreads, HighConns: gwHighConns, HighThreads: gwHighThreads,
			BalanceReplicas: gwBalanceReplicas, HealthIntervalMS: gwMS(gwHealthInterval), DrainGraceMS: gwMS(gwDrainGrace),
			TaskPollMS: gwMS(gwTaskPoll), CatalogPollMS: gwMS(gwCatalogPoll), HAProxyPollMS: gwMS(gwHAProxyPoll),
			BackgroundClients: gwBackgroundClients, BackgroundPauseMS: gwMS(gwBackgroundPause),
			Function: gwNamePrefix + id + "-echo",
		},
		Machine: collectMachine(ctx, env.tools, env.clk),
	}
	if env.clkNote != "" {
		rep.Notes = append(rep.Notes, env.clkNote)
	}
	rep.HAProxy, _ = haproxyVersion(ctx, env.tools.haproxy)
	b := &gatewayBench{
		cfg: cfg, log: log, env: env, run: id, name: rep.Config.Function, body: payload(cfg.BodyBytes), rep: rep,
		script: filepath.Join(env.root, "bench", "wrk", "post.lua"),
		logDir: filepath.Join(env.tmp, "logs"),
		http:   &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	if err := os.Mkdir(b.logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	if err := b.connect(ctx); err != nil {
		return err
	}
	// Whatever happens: pulsed and its HAProxy stopped, the engine swept.
	defer func() {
		b.stopPulsed()
		if !b.swept {
			b.sweep()
		}
	}()
	log.Info("gateway suite", "stages", strings.Join(stages, ","), "function", b.name, "engine", rep.Engine.Version, "haproxy", rep.HAProxy)

	log.Info("building", "root", env.root)
	arts, err := build(ctx, log, env.root, gatewayBuilds(env.tools, env.tmp))
	if err != nil {
		return err
	}
	b.arts = arts
	for _, n := range []string{"pulsed", "inproc"} {
		rep.Artifacts = append(rep.Artifacts, *arts[n])
	}
	if m := arts.missing([]string{"pulsed", "inproc"}); m != "" {
		return fmt.Errorf("%s did not build: %s", m, arts[m].Error)
	}
	if err := os.WriteFile(b.configFile(), []byte("# pulse bench: every setting comes from PULSE_* variables\nlog_level: info\n"), 0o644); err != nil {
		return fmt.Errorf("pulsed config: %w", err)
	}
	if b.cred, err = newRunCredential(ctx, b.api, benchInstance(b.run), env.tmp); err != nil {
		return err
	}
	if err := b.deploy(ctx); err != nil {
		return err
	}

	stage := func(name string, f func(context.Context) error) error {
		if !slices.Contains(stages, name) {
			return nil
		}
		log.Info("stage", "stage", name)
		err := f(ctx)
		b.stopPulsed()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("stage stopped", "stage", name, "err", err)
		rep.Notes = append(rep.Notes, fmt.Sprintf("stage %s stopped: %v", name, err))
		return nil
	}
	for _, st := range []struct {
		name string
		f    func(context.Context) error
	}{{gwStageLatency, b.latencyStage}, {gwStageBalance, b.balanceStage}, {gwStageScale, b.scaleStage}} {
		if err := stage(st.name, st.f); err != nil {
			return err
		}
	}
	if err := b.remove(ctx, b.name); err != nil {
		log.Warn("remove", "function", b.name, "err", err)
	}

	rep.Summary = summarizeGateway(rep.Runs, rep.Scales)
	rep.Goals = gatewayGoals(rep.Summary)
	rep.Notes = append(rep.Notes, gatewayNotes(*rep)...)
	if b.rewrote {
		rep.Notes = append(rep.Notes, "the swarm node's address is not loopback: replicas were called at 127.0.0.1 on their published ports instead")
	}
	rep.Cleanup = append(rep.Cleanup, b.sweep()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderGatewayText(*rep), func(rel string) string { return renderGatewayMarkdown(*rep, rel) })
}

func gwMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// gwRunID returns 6 random hex digits.
func gwRunID() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// haproxyVersion returns "HAProxy <version>" from haproxy -v.
func haproxyVersion(ctx context.Context, bin string) (string, error) {
	out, err := commandOutput(ctx, bin, "-v")
	if err != nil {
		return "", err
	}
	return parseHAProxyVersion(out), nil
}

// parseHAProxyVersion shortens haproxy -v's first line to "HAProxy 2.6.12".
func parseHAProxyVersion(out string) string {
	first, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(first)
	if len(f) >= 3 && f[1] == "version" {
		return f[0] + " " + f[2]
	}
	return first
}

// gatewayBuilds are the suite's programs: pulsed as it ships, and the
// in-process Go echo (bench/inproc) built the way an image's Go function is
// (static, stripped, only the in-process mode of the watchdog).
func gatewayBuilds(t tools, dir string) []buildStep {
	return []buildStep{pulsedStep(t, dir), goStep(t, dir, "inproc", "./bench/inproc", inprocTags)}
}

// connect opens the engine client and checks that the engine is the
// manager of a single-node swarm, where every replica runs on this host.
func (b *gatewayBench) connect(ctx context.Context) error {
	api, info, ver, err := connectSingleNodeSwarm(ctx, "gateway", "so that every replica runs on this host and is called on loopback", gwCallTimeout)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, gwCallTimeout)
	defer cancel()
	svcs, err := api.ServiceList(cctx, swarm.ServiceListOptions{})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	e := gatewayEngine{Version: ver.Version, APIVersion: ver.APIVersion, Nodes: info.Swarm.Nodes, NodeAddr: info.Swarm.NodeAddr}
	for _, s := range svcs {
		e.OtherServices = append(e.OtherServices, s.Spec.Name)
		if _, ok := s.Spec.Labels[contract.LabelFunction]; ok {
			e.OtherFunctions = append(e.OtherFunctions, s.Spec.Name)
		}
	}
	sort.Strings(e.OtherServices)
	sort.Strings(e.OtherFunctions)
	b.rep.Engine = e
	b.api = api
	b.sw = function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
	return nil
}

func gwCall(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, gwCallTimeout)
}

// deploy assembles the echo function's image from the static bench/inproc
// binary (as /function, the way function.Build lays out a Go function) and
// deploys it with one replica.
func (b *gatewayBench) deploy(ctx context.Context) error {
	bin, err := os.ReadFile(b.arts.path("inproc"))
	if err != nil {
		return err
	}
	spec := function.Spec{
		Name: b.name, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".",
		Timeout: 10 * time.Second, MaxBody: 1 << 20,
		Scale:  function.Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10},
		Labels: benchLabels(b.run),
	}
	img, err := benchImage(spec, nil, bin)
	if err != nil {
		return err
	}
	b.rep.Config.ImageBytes = int64(len(img.Archive))
	start := time.Now()
	if _, err := b.sw.Deploy(ctx, spec, img, function.DeployOptions{HealthInterval: gwHealthInterval, DrainGrace: gwDrainGrace, Instance: benchInstance(b.run)}); err != nil {
		return err
	}
	if err := b.waitReplicas(ctx, 1); err != nil {
		return err
	}
	b.log.Info("deployed", "function", b.name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// remove removes a function of this run (service, containers, image).
func (b *gatewayBench) remove(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gwRemoveTimeout)
	defer cancel()
	if err := b.sw.Remove(ctx, name); err != nil && !errors.Is(err, function.ErrNotFound) {
		return err
	}
	return nil
}

// containers lists the function's running containers.
func (b *gatewayBench) containers(ctx context.Context) ([]container.Summary, error) {
	cctx, cancel := gwCall(ctx)
	defer cancel()
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", gwLabelServiceName+"="+b.name))})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", b.name, err)
	}
	return cs, nil
}

// scaleTo scales the function to n replicas and waits until exactly n are
// ready and no other container of it runs.
func (b *gatewayBench) scaleTo(ctx context.Context, n int) error {
	if err := b.sw.Scale(ctx, b.name, n, true); err != nil {
		return err
	}
	return b.waitReplicas(ctx, n)
}

func (b *gatewayBench) waitReplicas(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, gwReadyTimeout)
	defer cancel()
	if _, err := b.sw.WaitReady(ctx, b.name, n); err != nil {
		return err
	}
	for {
		cs, err := b.containers(ctx)
		if err != nil {
			return err
		}
		if len(cs) == n {
			return nil
		}
		if err := gwSleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("wait for %s: %d containers running, want %d: %w", b.name, len(cs), n, err)
		}
	}
}

func gwSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// replicaSet is what the harness knows of the running replicas: their
// endpoints (on loopback), published ports and process ids.
type replicaSet struct {
	Addrs []string
	Ports []int
	PIDs  []int
}

func (b *gatewayBench) replicas(ctx context.Context) (replicaSet, error) {
	var rs replicaSet
	eps, err := b.sw.Endpoints(ctx, b.name)
	if err != nil {
		return rs, err
	}
	for _, ep := range eps {
		addr := b.loopback(ep.Addr)
		rs.Addrs = append(rs.Addrs, addr)
		if _, p, err := net.SplitHostPort(addr); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				rs.Ports = append(rs.Ports, n)
			}
		}
	}
	cs, err := b.containers(ctx)
	if err != nil {
		return rs, err
	}
	for _, c := range cs {
		cctx, cancel := gwCall(ctx)
		ci, err := b.api.ContainerInspect(cctx, c.ID)
		cancel()
		if err != nil {
			return rs, fmt.Errorf("inspect container %s: %w", c.ID, err)
		}
		if ci.ContainerJSONBase != nil && ci.State != nil && ci.State.Pid > 0 {
			rs.PIDs = append(rs.PIDs, ci.State.Pid)
		}
	}
	if len(rs.Addrs) == 0 {
		return rs, fmt.Errorf("%s has no running replica", b.name)
	}
	return rs, nil
}

// loopback returns addr with a loopback host: on the single-node swarm a
// host-mode port is published on every address of this host.
func (b *gatewayBench) loopback(addr string) string {
	addr, rewrote := loopbackAddr(addr)
	b.rewrote = b.rewrote || rewrote
	return addr
}

// pulsedProc is a running pulsed.
type pulsedProc struct {
	srv      *server
	stateDir string
	api      string // pulsed's API (host:port)
	gateway  string // HAProxy's public port
	admin    string
	balance  string // "" for pulsed's default
	stage    string
	rt       *gateway.Runtime
	started  time.Time
}

func (b *gatewayBench) configFile() string { return filepath.Join(b.env.tmp, "pulsed.yaml") }

// startPulsed starts pulsed as a process with a fresh state directory and
// fresh loopback ports, and waits until it routes the function to want
// replicas, all of them ready in HAProxy. balance "" leaves pulsed's default.
func (b *gatewayBench) startPulsed(ctx context.Context, stage, balance string, want int) (*pulsedProc, error) {
	b.mu.Lock()
	b.starts++
	n := b.starts
	b.mu.Unlock()
	p := &pulsedProc{stateDir: filepath.Join(b.env.tmp, fmt.Sprintf("state-%d", n)), balance: balance, stage: stage}
	if err := os.Mkdir(p.stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	for _, a := range []*string{&p.api, &p.gateway, &p.admin} {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		*a = addr
	}
	env := append(baseEnv(),
		"PULSE_STATE_DIR="+p.stateDir,
		"PULSE_INSTANCE="+benchInstance(b.run),
		"PULSE_API_LISTEN="+p.api,
		"PULSE_AUTOSCALE=false", // the suite measures routing; no scaler acting on the engine's functions
		"PULSE_GATEWAY_LISTEN="+p.gateway,
		"PULSE_ADMIN_LISTEN="+p.admin,
		"PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.env.tools.haproxy,
		b.cred.pulsedEnv(),
	)
	if balance != "" {
		env = append(env, "PULSE_BALANCE="+balance)
	}
	p.started = time.Now()
	srv, err := startServer(launchSpec{Bin: b.arts.path("pulsed"), Args: []string{"-config", b.configFile()}, Env: env, Addr: p.api},
		filepath.Join(b.logDir, fmt.Sprintf("pulsed-%d.log", n)))
	if err != nil {
		return nil, err
	}
	p.srv = srv
	p.rt = gateway.NewRuntime(filepath.Join(p.stateDir, "haproxy.sock"), time.Second)
	b.mu.Lock()
	b.pulsed = p
	b.mu.Unlock()
	if err := waitReady(ctx, srv, "http://"+p.api+"/healthz", gwRouteTimeout, nil); err != nil {
		return p, err
	}
	if err := b.waitRouted(ctx, p, want); err != nil {
		return p, err
	}
	b.log.Info("pulsed routing", "balance", gwOr(balance, "default"), "replicas", want, "took", time.Since(p.started).Round(time.Millisecond))
	return p, nil
}

func gwOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// waitRouted waits until HAProxy has exactly want servers (slots) of the
// function holding a replica, every one ready and up, and a POST through the gateway answers
// 200 with its body.
func (b *gatewayBench) waitRouted(ctx context.Context, p *pulsedProc, want int) error {
	ctx, cancel := context.WithTimeout(ctx, gwRouteTimeout)
	defer cancel()
	var last error
	for {
		servers, err := p.rt.Servers(ctx, gateway.BackendName(b.name))
		if err == nil {
			live, serving := countSlots(servers)
			if serving == want && live == want {
				err = probe(ctx, "http://"+p.gateway+"/function/"+b.name, b.body, nil)
				if err == nil {
					return nil
				}
			} else {
				err = fmt.Errorf("%d servers holding a replica, %d of them ready and up; want %d", live, serving, want)
			}
		}
		last = err
		select {
		case <-p.srv.done:
			return fmt.Errorf("pulsed exited (%s); log: %s", p.srv.cmd.ProcessState, p.srv.logTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("%s not routed to %d replicas after %s (last: %v); pulsed log: %s", b.name, want, gwRouteTimeout, last, p.srv.logTail(2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stopPulsed stops the running pulsed, if any: SIGTERM (pulsed stops its
// HAProxy: PULSE_LEAVE_RUNNING=false), up to gwStopGrace for it to exit,
// then SIGKILL to its process group. Then it waits up to gwHAProxyLinger for
// every haproxy process of its state directory to be gone by itself, and
// kills what is left. What happened is recorded in the report.
func (b *gatewayBench) stopPulsed() gatewayPulsedStop {
	b.mu.Lock()
	p := b.pulsed
	b.pulsed = nil
	b.mu.Unlock()
	if p == nil || p.srv == nil {
		return gatewayPulsedStop{}
	}
	st := gatewayPulsedStop{Stage: p.stage, Balance: p.balance}
	start := time.Now()
	s := p.srv
	pid := s.pid()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		t := time.NewTimer(gwStopGrace)
		select {
		case <-s.done:
		case <-t.C:
			st.Error = fmt.Sprintf("pulsed still running %s after SIGTERM: killed", gwStopGrace)
		}
		t.Stop()
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // pulsed's group (its HAProxy has its own)
	<-s.done
	st.StopS = round3(time.Since(start).Seconds())
	st.Exit = s.cmd.ProcessState.ExitCode()
	if st.Error == "" && st.Exit != 0 {
		st.Error = fmt.Sprintf("pulsed exited with code %d after SIGTERM; log: %s", st.Exit, s.logTail(1000))
	}
	exited := time.Now()
	for {
		left, err := findHAProxies("/proc", p.stateDir)
		if err != nil || len(left) == 0 {
			break
		}
		st.HAProxyLingerS = round3(time.Since(exited).Seconds())
		if time.Since(exited) >= gwHAProxyLinger {
			st.Killed = killHAProxies(p.stateDir)
			b.log.Warn("haproxy outlived pulsed; killed", "pids", st.Killed, "after", gwHAProxyLinger)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st.HAProxyLingerS > 0 && len(st.Killed) == 0 {
		b.log.Info("haproxy outlived pulsed, then exited", "by_s", st.HAProxyLingerS)
	}
	b.rep.PulsedStops = append(b.rep.PulsedStops, st)
	return st
}

// killHAProxies SIGKILLs every haproxy process whose configuration file is
// under dir and returns their pids.
func killHAProxies(dir string) []int {
	procs, err := findHAProxies("/proc", dir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, p := range procs {
		if st, err := readStat("/proc", p.PID); err == nil && st.StartTime == p.Start {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// latencyStage runs, round after round, the four latency variants (direct
// and through the gateway, at c=1 and c=50) in a rotated order against the
// one replica, with pulsed at its defaults.
func (b *gatewayBench) latencyStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	p, err := b.startPulsed(ctx, gwStageLatency, "", 1)
	if err != nil {
		return err
	}
	rs, err := b.replicas(ctx)
	if err != nil {
		return err
	}
	if len(rs.Addrs) != 1 {
		return fmt.Errorf("%d replicas, want 1", len(rs.Addrs))
	}
	for round := 1; round <= b.cfg.Rounds; round++ {
		order := rotate(gwLatencyVariants, round-1)
		b.log.Info("round", "stage", gwStageLatency, "round", round, "of", b.cfg.Rounds)
		for slot, v := range order {
			r := gatewayRun{Stage: gwStageLatency, Variant: v.Name, Path: v.Path, Conns: v.Conns, Threads: v.Threads, Replicas: 1, Round: round, Slot: slot}
			url := "http://" + rs.Addrs[0] + "/"
			if v.Path == gwGateway {
				url = "http://" + p.gateway + "/function/" + b.name
			}
			err := b.measure(ctx, p, rs, url, v, &r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.record(&r, err)
		}
	}
	return nil
}

// balanceStage runs, round after round, both balancing algorithms over
// gwBalanceReplicas replicas: for each run pulsed is started afresh with
// PULSE_BALANCE set, the gateway loaded at c=50, and pulsed stopped.
func (b *gatewayBench) balanceStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, gwBalanceReplicas); err != nil {
		return err
	}
	defer func() {
		if ctx.Err() != nil {
			return // interrupted: the final sweep removes the function
		}
		if err := b.scaleTo(ctx, 1); err != nil {
			b.log.Warn("scale back to 1", "err", err)
		}
	}()
	for round := 1; round <= b.cfg.Rounds; round++ {
		order := rotate(gwBalanceVariants, round-1)
		b.log.Info("round", "stage", gwStageBalance, "round", round, "of", b.cfg.Rounds)
		for slot, v := range order {
			r := gatewayRun{Stage: gwStageBalance, Variant: v.Name, Path: v.Path, Conns: v.Conns, Threads: v.Threads, Balance: v.Balance,
				Replicas: gwBalanceReplicas, Round: round, Slot: slot}
			err := b.balanceRun(ctx, v, &r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.record(&r, err)
		}
	}
	return nil
}

func (b *gatewayBench) balanceRun(ctx context.Context, v gwVariant, r *gatewayRun) (err error) {
	p, err := b.startPulsed(ctx, gwStageBalance, v.Balance, gwBalanceReplicas)
	if p != nil {
		defer func() {
			st := b.stopPulsed()
			r.HAProxyKilled = st.Killed
			r.StopError = st.Error
		}()
	}
	if err != nil {
		return err
	}
	r.PulsedRouteS = round3(time.Since(p.started).Seconds())
	rs, err := b.replicas(ctx)
	if err != nil {
		return err
	}
	if len(rs.Addrs) != gwBalanceReplicas {
		return fmt.Errorf("%d replicas, want %d", len(rs.Addrs), gwBalanceReplicas)
	}
	return b.measure(ctx, p, rs, "http://"+p.gateway+"/function/"+b.name, v, r)
}

// record logs a finished run and adds it to the report.
func (b *gatewayBench) record(r *gatewayRun, err error) {
	if err != nil {
		r.Error = err.Error()
		b.log.Warn("run failed", "stage", r.Stage, "round", r.Round, "variant", r.Variant, "err", err)
	} else {
		b.log.Info("run", "stage", r.Stage, "round", r.Round, "variant", r.Variant, "rps", int(r.RPS), "p50_us", r.P50US, "p99_us", r.P99US,
			"haproxy_cpu_per_req_us", fmt.Sprintf("%.1f", r.HAProxyCPUPerReqUS), "errors", r.Errors, "other_core_pct", int(r.OtherCorePct))
	}
	b.rep.Runs = append(b.rep.Runs, *r)
}

// measure checks url with one POST, warms it up with wrk, then measures
// one wrk run of v, sampling the CPU of HAProxy, docker-proxy, the
// replicas, pulsed and the host around it.
func (b *gatewayBench) measure(ctx context.Context, p *pulsedProc, rs replicaSet, url string, v gwVariant, r *gatewayRun) error {
	waited, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait)
	if err != nil {
		return err
	}
	r.QuietWaitS, r.QuietBusyPct = round3(waited.Seconds()), float64(int(busy+0.5))
	if busy >= quietCorePct {
		b.log.Warn("host still busy; running anyway", "variant", v.Name, "busy_core_pct", int(busy), "waited", waited.Round(time.Millisecond))
	}
	r.Start = time.Now().UTC().Format(time.RFC3339)
	r.Load1, _ = readLoad1("/proc")
	// Straight to the replica, every request carries the replica
	// credential, as HAProxy's do: the watchdog checks it on both paths.
	var hdr http.Header
	if v.Path == gwDirect {
		hdr = b.cred.header()
		if err := b.checkCredential(ctx, url); err != nil {
			return err
		}
	}
	if err := probe(ctx, url, b.body, hdr); err != nil {
		return err
	}
	w := wrkRun{Bin: b.env.tools.wrk, Script: b.script, URL: url, Threads: v.Threads, Conns: v.Conns, Body: b.body, Headers: hdr}
	if b.cfg.Warmup > 0 {
		w.Duration = b.cfg.Warmup
		if _, _, err := runWrk(ctx, w); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	watch := procWatch{HAProxyConfig: filepath.Join(p.stateDir, "haproxy.cfg"), Ports: rs.Ports, Replicas: rs.PIDs, Pulsed: p.srv.pid()}
	w.Duration = b.cfg.Duration
	reloads0, rerr0 := b.reloads(ctx, p)
	before, h0, t0, err := sampleGroups(watch)
	if err != nil {
		return err
	}
	res, wrkCPU, err := runWrk(ctx, w)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // requests in flight when wrk stopped
	after, h1, t1, err := sampleGroups(watch)
	if err != nil {
		return err
	}
	if reloads1, rerr1 := b.reloads(ctx, p); rerr0 == nil && rerr1 == nil {
		r.Reloads = reloads1 - reloads0
	} else {
		r.Reloads = -1 // unknown
	}
	r.Requests = res.Requests
	r.Seconds = float64(res.DurationUS) / 1e6
	r.RPS = float64(res.Requests) / r.Seconds
	r.P50US, r.P90US, r.P99US, r.MaxUS, r.MeanUS = res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max, res.Latency.Mean
	r.Errors = res.errorCount()
	wall := t1.Sub(t0).Seconds()
	fillGroupCPU(r, before, after, b.env.clk, wall)
	r.HAProxyProcs = len(after[groupHAProxy])
	if r.HAProxyProcs == 0 && v.Path == gwGateway {
		return errors.New("no haproxy process of this pulsed found in /proc")
	}
	r.WrkCorePct = round3(100 * wrkCPU.Seconds() / wall)
	busyS := float64(h1.Busy-h0.Busy) / b.env.clk
	ours := (r.HAProxyCorePct + r.DockerProxyCorePct + r.ReplicaCorePct + r.PulsedCorePct + r.WrkCorePct) / 100 * wall
	r.HostCorePct = round3(100 * busyS / wall)
	r.OtherCorePct = round3(100 * (busyS - ours) / wall)
	r.StealCorePct = round3(100 * float64(h1.Steal-h0.Steal) / b.env.clk / wall)
	return nil
}

// checkCredential, once per run, POSTs to the replica at url without the
// replica credential: a replica that answers it (its watchdog does not
// check the credential) is noted in the report, since the direct baseline
// then lacks that check.
func (b *gatewayBench) checkCredential(ctx context.Context, url string) error {
	if b.checked {
		return nil
	}
	refused, err := refusesWithout(ctx, url, b.body)
	if err != nil {
		return err
	}
	b.checked = true
	if !refused {
		b.log.Warn("replica answered without the replica credential", "url", url)
		b.rep.Notes = append(b.rep.Notes, noCredentialCheck)
	}
	return nil
}

// reloads returns how many times pulsed has reloaded HAProxy (GET
// /healthz: {"status":"ok","reloads":N}).
func (b *gatewayBench) reloads(ctx context.Context, p *pulsedProc) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.api+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("healthz: %w", err)
	}
	defer resp.Body.Close()
	var h struct {
		Status  string `json:"status"`
		Reloads *int   `json:"reloads"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&h); err != nil {
		return 0, fmt.Errorf("healthz: %w", err)
	}
	if h.Reloads == nil {
		return 0, fmt.Errorf("healthz: status %q, no reload count", h.Status)
	}
	return *h.Reloads, nil
}

// sampleGroups scans /proc for watch's groups and reads the host's CPU.
func sampleGroups(watch procWatch) (procCPU, hostCPU, time.Time, error) {
	g, err := scanProcs("/proc", watch)
	if err != nil {
		return nil, hostCPU{}, time.Time{}, err
	}
	h, err := readHostCPU("/proc")
	if err != nil {
		return nil, hostCPU{}, time.Time{}, err
	}
	return g, h, time.Now(), nil
}

// fillGroupCPU sets r's per-group CPU figures from two scans wall seconds
// apart (clk ticks per second).
func fillGroupCPU(r *gatewayRun, before, after procCPU, clk, wall float64) {
	per := func(group string) (perReqUS, corePct float64) {
		ticks, lost, born := cpuDelta(before[group], after[group])
		r.LostProcs += lost
		if group == groupHAProxy {
			r.HAProxyChurn = lost + born
		}
		s := float64(ticks) / clk
		if r.Requests > 0 {
			perReqUS = round3(s / float64(r.Requests) * 1e6)
		}
		return perReqUS, round3(100 * s / wall)
	}
	r.HAProxyCPUPerReqUS, r.HAProxyCorePct = per(groupHAProxy)
	r.DockerProxyCPUPerReqUS, r.DockerProxyCorePct = per(groupDockerProxy)
	r.ReplicaCPUPerReqUS, r.ReplicaCorePct = per(groupReplicas)
	r.PulsedCPUPerReqUS, r.PulsedCorePct = per(groupPulsed)
}

// backgroundLoad is the scale stage's light load through the gateway:
// keep-alive clients, each pausing between requests; every socket error
// and non-200 answer is counted as a failure.
type backgroundLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	why        map[string]int64
	stop       chan struct{}
	wg         sync.WaitGroup
	tr         *http.Transport
}

func startBackgroundLoad(url, body string, clients int, pause time.Duration) *backgroundLoad {
	l := &backgroundLoad{why: map[string]int64{}, stop: make(chan struct{}), tr: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: clients}}
	c := &http.Client{Timeout: 5 * time.Second, Transport: l.tr}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
				}
				resp, err := c.Post(url, "application/octet-stream", strings.NewReader(body))
				if err != nil {
					l.fail("error: " + err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail(resp.Status)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *backgroundLoad) fail(why string) {
	l.failed.Add(1)
	l.mu.Lock()
	l.why[truncate(why, 200)]++
	l.mu.Unlock()
}

// end stops the load, closes its connections and returns the failures by
// reason.
func (l *backgroundLoad) end() map[string]int64 {
	close(l.stop)
	l.wg.Wait()
	l.tr.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.why)
}

// scaleStage runs ScaleTrials +1 scales of the function (1 → 2) under a
// light background load through the gateway, and after each scales it back
// to 1.
func (b *gatewayBench) scaleStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	p, err := b.startPulsed(ctx, gwStageScale, "", 1)
	if err != nil {
		return err
	}
	cctx, cancel := gwCall(ctx)
	svc, _, err := b.api.ServiceInspectWithRaw(cctx, b.name, swarm.ServiceInspectOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("inspect service %s: %w", b.name, err)
	}
	// Quiet once, before the background load: with it running the host is
	// busy by design, so each trial only records how busy.
	if _, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	} else if busy >= quietCorePct {
		b.log.Warn("host still busy; running anyway", "stage", gwStageScale, "busy_core_pct", int(busy))
	}
	reloads0, rerr0 := b.reloads(ctx, p)
	load := startBackgroundLoad("http://"+p.gateway+"/function/"+b.name, b.body, gwBackgroundClients, gwBackgroundPause)
	defer func() {
		why := load.end()
		b.rep.Background = gatewayBackground{OK: load.ok.Load(), Failed: load.failed.Load(), Why: why, Reloads: -1}
		if reloads1, rerr1 := b.reloads(context.WithoutCancel(ctx), p); rerr0 == nil && rerr1 == nil {
			b.rep.Background.Reloads = reloads1 - reloads0
		}
	}()
	for trial := 1; trial <= b.cfg.ScaleTrials; trial++ {
		r := gatewayScaleTrial{Trial: trial, From: 1, To: 2}
		// A scale usually lands on a steady swarm, which pulsed polls slowly:
		// wait until its catalog has not changed for longer than its settle
		// window, then scale at a random phase of its slow poll.
		waited, err := b.waitSteady(ctx, p)
		if err != nil {
			return err
		}
		phase := time.Duration(mrand.Int64N(int64(gateway.DefaultCatalogSlowPoll)))
		busy, err := hostBusy(ctx, b.env.clk, phase)
		if err != nil {
			return err
		}
		r.SteadyWaitS, r.PhaseS = round3(waited.Seconds()), round3(phase.Seconds())
		r.HostBusyPct = float64(int(busy + 0.5))
		r.Start = time.Now().UTC().Format(time.RFC3339)
		r.Load1, _ = readLoad1("/proc")
		ok0, failed0 := load.ok.Load(), load.failed.Load()
		err = b.scaleOnce(ctx, p, svc.ID, &r)
		if ctx.Err() != nil {
			return ctx.Err() // interrupted: the final sweep removes the function
		}
		start := time.Now()
		back := b.scaleBack(ctx, p, r.From)
		r.DownS = round3(time.Since(start).Seconds())
		r.BackgroundOK, r.BackgroundFailed = load.ok.Load()-ok0, load.failed.Load()-failed0
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.Error = err.Error()
			b.log.Warn("scale trial failed", "trial", trial, "err", err)
		} else {
			b.log.Info("scale +1", "trial", trial, "ready_s", r.ReadyS, "traffic_s", r.TrafficS, "catalog_s", r.CatalogS,
				"added_s", r.AddedS, "scale_to_running_s", r.ScaleToRunningS, "background_failed", r.BackgroundFailed)
		}
		b.rep.Scales = append(b.rep.Scales, r)
		if back != nil {
			return fmt.Errorf("scale back to %d: %w", r.From, back)
		}
	}
	return nil
}

// gwSteadyFor is how long pulsed's catalog must stay unchanged before a
// scale trial: past its settle window, when it polls a steady swarm slowly.
const gwSteadyFor = gateway.DefaultCatalogSettle + 500*time.Millisecond

// waitSteady polls pulsed's /v1/replicas every 100 ms until its version has
// not changed for gwSteadyFor (at most gwReadyTimeout: then it goes on) and
// returns how long it waited.
func (b *gatewayBench) waitSteady(ctx context.Context, p *pulsedProc) (time.Duration, error) {
	start := time.Now()
	version, changed := "", start
	for time.Since(start) < gwReadyTimeout {
		cat, err := b.catalog(ctx, p)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		now := time.Now()
		if err != nil || cat.Version != version {
			version, changed = cat.Version, now
		} else if now.Sub(changed) >= gwSteadyFor {
			return now.Sub(start), nil
		}
		if err := gwSleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
	b.log.Warn("pulsed's catalog kept changing; scaling anyway", "waited", gwReadyTimeout)
	return time.Since(start), nil
}

// hostBusy returns the host's busy CPU over d, in percent of one core.
func hostBusy(ctx context.Context, clk float64, d time.Duration) (float64, error) {
	h0, err := readHostCPU("/proc")
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := gwSleep(ctx, d); err != nil {
		return 0, err
	}
	h1, err := readHostCPU("/proc")
	if err != nil {
		return 0, err
	}
	return 100 * float64(h1.Busy-h0.Busy) / clk / time.Since(t0).Seconds(), nil
}

// scaleBack scales to n and waits until n containers run and HAProxy has
// only n servers holding a replica (pulsed puts a drained slot back in
// maintenance once its replica is gone).
func (b *gatewayBench) scaleBack(ctx context.Context, p *pulsedProc, n int) error {
	if err := b.scaleTo(ctx, n); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		servers, err := p.rt.Servers(ctx, gateway.BackendName(b.name))
		if live, _ := countSlots(servers); err == nil && live == n {
			return nil
		}
		if err := gwSleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	b.log.Warn("HAProxy still lists a removed replica's server 15 s after the scale-down", "function", b.name)
	return nil
}

// scaleObs is what the scale trial's pollers saw, guarded by mu.
type scaleObs struct {
	mu        sync.Mutex
	taskID    string
	running   time.Time            // the task's Status.Timestamp when first seen running
	seen      time.Time            // when the harness first saw it running
	desired   time.Time            // pulsed's catalog first showed the new replica count
	catalog   map[string]time.Time // new task → first listed
	addrs     map[string]string    // new task → its address in the catalog
	added     map[string]time.Time // slot → pointed at a new replica (left maintenance or re-pointed)
	ready     map[string]time.Time // slot → serving (ready and up)
	traffic   map[string]time.Time // slot → its stot first rose past the count before the scale
	stot      map[string]int64     // slot → sessions the new replica had taken then
	slotAddr  map[string]string    // slot → the address it pointed at when added
	lastError error
}

func (o *scaleObs) note(err error) {
	o.mu.Lock()
	o.lastError = err
	o.mu.Unlock()
}

// scaleOnce scales from r.From to r.To and follows the new task: Swarm's
// task list (when it turned running: its status timestamp), pulsed's
// catalog, and HAProxy's runtime API (its server added, ready and up, then
// taking sessions of the background load).
func (b *gatewayBench) scaleOnce(ctx context.Context, p *pulsedProc, serviceID string, r *gatewayScaleTrial) error {
	backend := gateway.BackendName(b.name)
	taskFilter := filters.NewArgs(filters.Arg("service", serviceID))
	cctx, cancel := gwCall(ctx)
	tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: taskFilter})
	cancel()
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	knownTasks := map[string]bool{}
	for _, t := range tasks {
		knownTasks[t.ID] = true
	}
	slots, err := readSlots(ctx, p.rt, backend)
	if err != nil {
		return err
	}
	if live := liveSlots(slots); len(live) != r.From {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the scale, want %d", len(live), r.From)
	}
	// Every slot as it was: a new replica's server is a slot that leaves
	// maintenance or is pointed elsewhere, and takes sessions past its
	// count here.
	base := map[string]slotInfo{}
	for _, s := range slots {
		base[s.Name] = s
	}

	obs := &scaleObs{catalog: map[string]time.Time{}, addrs: map[string]string{}, added: map[string]time.Time{}, ready: map[string]time.Time{},
		traffic: map[string]time.Time{}, stot: map[string]int64{}, slotAddr: map[string]string{}}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	done := make(chan struct{}) // closed when a new server took traffic
	wg.Add(3)
	go func() { defer wg.Done(); b.pollTasks(pctx, taskFilter, knownTasks, obs) }()
	go func() { defer wg.Done(); b.pollCatalog(pctx, p, r.To, knownTasks, obs) }()
	go func() { defer wg.Done(); b.pollHAProxy(pctx, p, backend, base, obs, done) }()

	t0 := time.Now()
	if err := b.sw.Scale(ctx, b.name, r.To, true); err != nil {
		return err
	}
	r.ScaleCallS = round3(time.Since(t0).Seconds())
	limit := time.NewTimer(gwRunningTimeout + gwTrafficTimeout)
	defer limit.Stop()
	var waitErr error
	select {
	case <-done:
	case <-limit.C:
		waitErr = errors.New("timed out")
	case <-ctx.Done():
		waitErr = ctx.Err()
	}
	// The task and catalog pollers may see the task a little after HAProxy
	// did: give them a moment before stopping them.
	for i := 0; waitErr == nil && i < 50; i++ {
		obs.mu.Lock()
		have := obs.taskID != "" && !obs.catalog[obs.taskID].IsZero() && obs.addrs[obs.taskID] != ""
		obs.mu.Unlock()
		if have {
			break
		}
		time.Sleep(gwTaskPoll)
	}
	stop()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	r.TaskID = obs.taskID
	if waitErr != nil || obs.taskID == "" {
		why := fmt.Sprintf("after %s, task running: %t, HAProxy servers added %v, ready %v, took traffic %v", time.Since(t0).Round(time.Millisecond),
			obs.taskID != "", gwKeys(obs.added), gwKeys(obs.ready), gwKeys(obs.traffic))
		if obs.lastError != nil {
			why += fmt.Sprintf(" (last error: %v)", obs.lastError)
		}
		return fmt.Errorf("the new replica did not take traffic: %s%s", fmtErr(waitErr), why)
	}
	// The new task's server: the slot pointed at its address (pulsed's
	// catalog has the address).
	slot := slotOf(obs.slotAddr, obs.addrs[obs.taskID])
	if len(obs.traffic) != 1 || slot == "" || obs.traffic[slot].IsZero() {
		return fmt.Errorf("the server that took traffic (%v) is not the new task %s's (at %q: %q)", gwKeys(obs.traffic), obs.taskID, obs.addrs[obs.taskID], slot)
	}
	since := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return round3(t.Sub(obs.running).Seconds())
	}
	r.ScaleToRunningS = round3(obs.running.Sub(t0).Seconds())
	if !obs.desired.IsZero() {
		r.CatalogScaleS = round3(obs.desired.Sub(t0).Seconds())
		r.LateNotice = obs.desired.After(obs.running)
	}
	r.SeenS = since(obs.seen)
	r.CatalogS = since(obs.catalog[obs.taskID])
	r.Server = slot
	r.AddedS = since(obs.added[slot])
	r.ReadyS = since(obs.ready[slot])
	r.TrafficS = since(obs.traffic[slot])
	r.Stot = obs.stot[slot]
	if r.ReadyS <= 0 || r.TrafficS <= 0 {
		return fmt.Errorf("the new task's server was ready %.3f s and took traffic %.3f s after it turned running: not after it", r.ReadyS, r.TrafficS)
	}
	return nil
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error() + ": "
}

func gwKeys(m map[string]time.Time) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pollTasks polls the service's tasks every gwTaskPoll for one not in
// known that is running, and records its ID, its status timestamp and when
// it was first seen.
func (b *gatewayBench) pollTasks(ctx context.Context, f filters.Args, known map[string]bool, obs *scaleObs) {
	tick := time.NewTicker(gwTaskPoll)
	defer tick.Stop()
	for {
		cctx, cancel := gwCall(ctx)
		tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
		cancel()
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(fmt.Errorf("list tasks: %w", err))
		}
		for _, t := range tasks {
			if known[t.ID] || t.Status.State != swarm.TaskStateRunning {
				continue
			}
			obs.mu.Lock()
			if obs.taskID == "" {
				obs.taskID, obs.running, obs.seen = t.ID, t.Status.Timestamp, now
			}
			obs.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollCatalog polls pulsed's /v1/replicas every gwCatalogPoll and records
// when it first showed want desired replicas, and when each task not in
// known was first listed (not draining).
func (b *gatewayBench) pollCatalog(ctx context.Context, p *pulsedProc, want int, known map[string]bool, obs *scaleObs) {
	tick := time.NewTicker(gwCatalogPoll)
	defer tick.Stop()
	for {
		cat, err := b.catalog(ctx, p)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		for _, fn := range cat.Functions {
			if fn.Name != b.name {
				continue
			}
			obs.mu.Lock()
			if obs.desired.IsZero() && fn.Desired >= want {
				obs.desired = now
			}
			obs.mu.Unlock()
			for _, rep := range fn.Replicas {
				if known[rep.TaskID] || rep.Draining {
					continue
				}
				obs.mu.Lock()
				if _, ok := obs.catalog[rep.TaskID]; !ok {
					obs.catalog[rep.TaskID] = now
				}
				obs.addrs[rep.TaskID] = rep.Addr
				obs.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (b *gatewayBench) catalog(ctx context.Context, p *pulsedProc) (contract.Catalog, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.api+contract.CatalogPath, nil)
	if err != nil {
		return contract.Catalog{}, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return contract.Catalog{}, fmt.Errorf("catalog: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return contract.Catalog{}, fmt.Errorf("catalog: %s", resp.Status)
	}
	var cat contract.Catalog
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&cat); err != nil {
		return contract.Catalog{}, fmt.Errorf("catalog: %w", err)
	}
	return cat, nil
}

// pollHAProxy polls `show servers state <backend>` every gwHAProxyPoll and
// records when each slot first was given a new replica (it left
// maintenance or was pointed at another address than in base, the slots
// before the scale) and first was serving (ready and up); once one is, it
// reads `show stat` too and records when that slot's total sessions (stot)
// first rose past its count in base, then closes done. Slots are named
// s1…sN whatever replica they hold, and their counters run on from one
// replica to the next.
func (b *gatewayBench) pollHAProxy(ctx context.Context, p *pulsedProc, backend string, base map[string]slotInfo, obs *scaleObs, done chan<- struct{}) {
	tick := time.NewTicker(gwHAProxyPoll)
	defer tick.Stop()
	statCmd := "show stat " + backend + " 4 -1" // type 4: servers only
	for {
		servers, err := p.rt.Servers(ctx, backend)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		anyReady := false
		obs.mu.Lock()
		for _, s := range joinSlots(servers, nil) {
			was, ok := base[s.Name]
			if ok && was.Live() {
				continue // held a replica before the scale
			}
			if _, seen := obs.added[s.Name]; !seen && (s.Live() || !ok || s.Addr != was.Addr) {
				obs.added[s.Name], obs.slotAddr[s.Name] = now, s.Addr
			}
			if _, seen := obs.added[s.Name]; seen && s.Serving {
				if _, ok := obs.ready[s.Name]; !ok {
					obs.ready[s.Name] = now
				}
				obs.slotAddr[s.Name] = s.Addr
			}
			if _, ok := obs.ready[s.Name]; ok {
				anyReady = true
			}
		}
		obs.mu.Unlock()
		if anyReady {
			out, err := p.rt.Exec(ctx, statCmd)
			now := time.Now()
			var stats []gateway.ServerStat
			if err == nil {
				stats, err = gateway.ParseServerStat(strings.NewReader(out))
			}
			if err != nil && ctx.Err() == nil {
				obs.note(err)
			}
			took := false
			obs.mu.Lock()
			for _, st := range stats {
				if _, ok := obs.ready[st.Server]; !ok || st.Sessions <= base[st.Server].Stot {
					continue
				}
				if _, ok := obs.traffic[st.Server]; !ok {
					obs.traffic[st.Server], obs.stot[st.Server] = now, st.Sessions-base[st.Server].Stot
				}
				took = true
			}
			obs.mu.Unlock()
			if took {
				close(done)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// slotOf returns the slot whose address is addr in slotAddr, "" if none.
func slotOf(slotAddr map[string]string, addr string) string {
	if addr == "" {
		return ""
	}
	for name, a := range slotAddr {
		if a == addr {
			return name
		}
	}
	return ""
}

// sweep removes whatever of this run is left on the engine (services, with
// their containers and images through Swarm.Remove, then containers and
// images by name, then the run's replica credential) and kills any haproxy
// process of this run. It runs once,
// with its own deadline, also after an interrupt, and returns what it
// found.
func (b *gatewayBench) sweep() []string {
	b.swept = true
	var found []string
	if pids := killHAProxies(b.env.tmp); len(pids) > 0 {
		found = append(found, fmt.Sprintf("haproxy processes %v: killed", pids))
	}
	if b.api == nil {
		return found
	}
	ctx, cancel := context.WithTimeout(context.Background(), gwCleanupTimeout)
	defer cancel()
	prefix := gwNamePrefix + b.run
	found = engineSweep{
		api: b.api, log: b.log, call: gwCall, remove: b.remove,
		mine:       func(name string) bool { return strings.HasPrefix(name, prefix) },
		images:     filters.NewArgs(filters.Arg("label", gwRunLabel+"="+b.run)),
		serviceKey: gwLabelServiceName,
	}.run(ctx, found)
	// The credential last: Docker keeps a secret while a service uses it.
	for _, f := range b.cred.remove(b.api) {
		b.log.Warn("cleanup", "what", f)
		found = append(found, f)
	}
	b.cred = nil
	return found
}
