package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
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
	gwStopGrace      = 20 * time.Second // SIGTERM → pulsed gone
	gwHAProxyLinger  = 2 * time.Second  // pulsed gone → its HAProxy gone, before SIGKILL
)

// gwVariant is one wrk configuration of the latency and balance stages.
type gwVariant struct {
	Name    string
	Path    string // pathDirect or pathGateway
	Conns   int
	Threads int
	Balance string // balance stage: the algorithm pulsed is started with
}

// Request paths of the gateway and soak suites.
const (
	pathDirect  = "direct"  // straight to the replica's published port
	pathGateway = "gateway" // through HAProxy, /function/<name>
)

var (
	gwLatencyVariants = []gwVariant{
		{Name: "direct c=1", Path: pathDirect, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: "gateway c=1", Path: pathGateway, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: "direct c=50", Path: pathDirect, Conns: gwHighConns, Threads: gwHighThreads},
		{Name: "gateway c=50", Path: pathGateway, Conns: gwHighConns, Threads: gwHighThreads},
	}
	gwBalanceVariants = []gwVariant{
		{Name: "leastconn", Path: pathGateway, Conns: gwHighConns, Threads: gwHighThreads, Balance: gateway.BalanceLeastConn},
		{Name: "roundrobin", Path: pathGateway, Conns: gwHighConns, Threads: gwHighThreads, Balance: gateway.BalanceRoundRobin},
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
	id, err := runID()
	if err != nil {
		return err
	}
	rep := &gatewayReport{
		runHead: newRunHead(cfg.Suite, env.started),
		Config: gatewayConfig{
			Quick: cfg.Quick, Stages: stages, Rounds: cfg.Rounds, DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(),
			QuietWaitS: cfg.QuietWait.Seconds(), BodyBytes: cfg.BodyBytes, ScaleTrials: cfg.ScaleTrials,
			LowConns: gwLowConns, LowThreads: gwLowThreads, HighConns: gwHighConns, HighThreads: gwHighThreads,
			BalanceReplicas: gwBalanceReplicas, HealthIntervalMS: ms(gwHealthInterval), DrainGraceMS: ms(gwDrainGrace),
			TaskPollMS: ms(gwTaskPoll), CatalogPollMS: ms(gwCatalogPoll), HAProxyPollMS: ms(gwHAProxyPoll),
			BackgroundClients: gwBackgroundClients, BackgroundPauseMS: ms(gwBackgroundPause),
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

	for _, st := range []struct {
		name string
		f    func(context.Context) error
	}{{gwStageLatency, b.latencyStage}, {gwStageBalance, b.balanceStage}, {gwStageScale, b.scaleStage}} {
		if err := runStage(ctx, log, stages, st.name, &rep.Notes, st.f, func() { b.stopPulsed() }); err != nil {
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
		rep.Notes = append(rep.Notes, rewroteNote)
	}
	rep.Cleanup = append(rep.Cleanup, b.sweep()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderGatewayText(*rep), func(rel string) string { return renderGatewayMarkdown(*rep, rel) })
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
	api, info, ver, err := connectSingleNodeSwarm(ctx, "gateway", "so that every replica runs on this host and is called on loopback", callTimeout)
	if err != nil {
		return err
	}
	others, otherFns, err := serviceNames(ctx, api)
	if err != nil {
		return err
	}
	b.rep.Engine = gatewayEngine{
		Version: ver.Version, APIVersion: ver.APIVersion, Nodes: info.Swarm.Nodes, NodeAddr: info.Swarm.NodeAddr,
		OtherServices: others, OtherFunctions: otherFns,
	}
	b.api = api
	b.sw = function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
	return nil
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
	return removeFunction(ctx, b.sw, name)
}

// containers lists the function's running containers.
func (b *gatewayBench) containers(ctx context.Context) ([]container.Summary, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelSwarmServiceName+"="+b.name))})
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
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
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
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("wait for %s: %d containers running, want %d: %w", b.name, len(cs), n, err)
		}
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
		cctx, cancel := call(ctx)
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
			if v.Path == pathGateway {
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
	if v.Path == pathDirect {
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
	if r.HAProxyProcs == 0 && v.Path == pathGateway {
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
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	prefix := gwNamePrefix + b.run
	found = engineSweep{
		api: b.api, log: b.log, remove: b.remove, cred: b.cred,
		mine:   func(name string) bool { return strings.HasPrefix(name, prefix) },
		images: filters.NewArgs(filters.Arg("label", gwRunLabel+"="+b.run)),
	}.run(ctx, found)
	b.cred = nil
	return found
}
