package main

// The gateway suite: pulsed (as it ships, with its HAProxy, on loopback
// ports) routing an in-process Go echo, measured straight to the replica
// and through HAProxy, with both balancing algorithms, and from a new task
// turning running to its server taking traffic (gateway_scale.go).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	// followed by the run's ID.
	gwNamePrefix = "pbench-gw-"
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
)

// gwVariant is one wrk configuration of the latency and balance stages.
type gwVariant struct {
	Name    string
	Path    string // pathDirect or pathGateway
	Conns   int
	Threads int
	Balance string // balance stage: the algorithm pulsed is started with
}

var (
	gwLatencyVariants = []gwVariant{
		{Name: gwDirectLow, Path: pathDirect, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: gwGatewayLow, Path: pathGateway, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: gwDirectHigh, Path: pathDirect, Conns: gwHighConns, Threads: gwHighThreads},
		{Name: gwGatewayHigh, Path: pathGateway, Conns: gwHighConns, Threads: gwHighThreads},
	}
	gwBalanceVariants = []gwVariant{
		{Name: gwLeastConn, Path: pathGateway, Conns: gwHighConns, Threads: gwHighThreads, Balance: gateway.BalanceLeastConn},
		{Name: gwRoundRobin, Path: pathGateway, Conns: gwHighConns, Threads: gwHighThreads, Balance: gateway.BalanceRoundRobin},
	}
)

// gatewayBench runs the gateway suite on the lab (lab.go) without its
// Netdata, alarm token and selector: its own pulsed start (the autoscaler
// off) and stop (which records whether HAProxy outlives pulsed).
type gatewayBench struct {
	pulseLab
	cfg    config
	rep    *gatewayReport
	name   string // the function's
	body   string
	script string // bench/wrk/post.lua
	// The running pulsed's stage, balance and start.
	stage, balance string
	started        time.Time
	// checked is set once a direct request without the replica credential
	// was refused (or noted when it was not).
	checked bool
	rewrote bool // an endpoint was not on loopback and was called at 127.0.0.1
	swept   bool
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
		pulseLab: newPulseLab(log, env, id, gwNamePrefix, env.tools.haproxy, gwRouteTimeout, gwStopGrace),
		cfg:      cfg, rep: rep, name: rep.Config.Function, body: payload(cfg.BodyBytes),
		script: filepath.Join(env.root, "bench", "wrk", "post.lua"),
	}
	if err := b.connect(ctx); err != nil {
		return err
	}
	// Whatever happens: pulsed and its HAProxy stopped, the engine swept.
	defer func() {
		b.stopGatewayPulsed()
		if !b.swept {
			b.cleanup()
		}
	}()
	log.Info("gateway suite", "stages", strings.Join(stages, ","), "function", b.name, "engine", rep.Engine.Version, "haproxy", rep.HAProxy)

	// pulsed as it ships, and the in-process Go echo (bench/inproc) built
	// the way an image's Go function is (static, stripped, only the
	// in-process mode of the watchdog).
	arts, recs, err := buildAll(ctx, log, env.root, []buildStep{pulsedStep(env.tools, env.tmp), goStep(env.tools, env.tmp, "inproc", "./bench/inproc", inprocTags)})
	b.arts = arts
	rep.Artifacts = append(rep.Artifacts, recs...)
	if err != nil {
		return err
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
		if err := runStage(ctx, log, stages, st.name, &rep.Notes, st.f, func() { b.stopGatewayPulsed() }); err != nil {
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
	b.swept = true
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderGatewayText(*rep), func(rel string) string { return renderGatewayMarkdown(*rep, rel) })
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
	b.api, b.sw = api, localSwarm(api)
	return nil
}

func (b *gatewayBench) configFile() string { return filepath.Join(b.env.tmp, "pulsed.yaml") }

func (b *gatewayBench) gatewayURL() string { return "http://" + b.gwAddr + "/function/" + b.name }

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
	if err := waitReplicas(ctx, b.sw, b.api, b.name, 1); err != nil {
		return err
	}
	b.log.Info("deployed", "function", b.name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// scaleTo scales the function to n replicas and waits for them.
func (b *gatewayBench) scaleTo(ctx context.Context, n int) error {
	if err := b.sw.Scale(ctx, b.name, n, true); err != nil {
		return err
	}
	return waitReplicas(ctx, b.sw, b.api, b.name, n)
}

// startGatewayPulsed starts pulsed with a fresh state directory and fresh
// loopback ports, the autoscaler off (the suite measures routing; no scaler
// acting on the engine's functions), and waits until it routes the
// function to want replicas, all of them ready in HAProxy. balance ""
// leaves pulsed's default.
func (b *gatewayBench) startGatewayPulsed(ctx context.Context, stage, balance string, want int) error {
	n := len(b.pulsedLogs) + 1
	b.pulsedLog = filepath.Join(b.env.tmp, fmt.Sprintf("pulsed-%d.log", n))
	b.pulsedLogs = append(b.pulsedLogs, b.pulsedLog)
	b.stateDir = filepath.Join(b.env.tmp, fmt.Sprintf("state-%d", n))
	if err := os.Mkdir(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, a := range []*string{&b.apiAddr, &b.gwAddr, &b.adminAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	env := append(baseEnv(), "PULSE_STATE_DIR="+b.stateDir, "PULSE_INSTANCE="+benchInstance(b.run), "PULSE_API_LISTEN="+b.apiAddr,
		"PULSE_AUTOSCALE=false", "PULSE_GATEWAY_LISTEN="+b.gwAddr, "PULSE_ADMIN_LISTEN="+b.adminAddr, "PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.haproxy, b.cred.pulsedEnv())
	if balance != "" {
		env = append(env, "PULSE_BALANCE="+balance)
	}
	b.stage, b.balance, b.started = stage, balance, time.Now()
	var err error
	if b.pulsed, err = startServer(launchSpec{Bin: b.arts.path("pulsed"), Args: []string{"-config", b.configFile()}, Env: env, Addr: b.apiAddr}, b.pulsedLog); err != nil {
		return err
	}
	b.rt = gateway.NewRuntime(filepath.Join(b.stateDir, "haproxy.sock"), time.Second)
	if err := waitReady(ctx, b.pulsed, "http://"+b.apiAddr+"/healthz", gwRouteTimeout, nil); err != nil {
		return err
	}
	if err := b.waitRouted(ctx, b.name, want, b.body); err != nil {
		return err
	}
	b.log.Info("pulsed routing", "balance", cmp.Or(balance, "default"), "replicas", want, "took", time.Since(b.started).Round(time.Millisecond))
	return nil
}

// replicas returns the watch of the running pulsed's process groups with
// the function's replicas', and the replicas' addresses on loopback, from
// pulsed's catalog; it fails unless there are want replicas.
func (b *gatewayBench) replicas(ctx context.Context, want int) (procWatch, []string, error) {
	f, err := b.catalogFunction(ctx, b.name)
	if err != nil {
		return procWatch{}, nil, err
	}
	if len(f.Replicas) != want {
		return procWatch{}, nil, fmt.Errorf("%d replicas, want %d", len(f.Replicas), want)
	}
	var addrs []string
	for _, r := range f.Replicas {
		addr, rewrote := loopbackAddr(r.Addr)
		b.rewrote = b.rewrote || rewrote
		addrs = append(addrs, addr)
	}
	watch := b.procWatch()
	b.watchReplicas(ctx, b.name, &watch)
	return watch, addrs, nil
}

// stopGatewayPulsed stops the running pulsed, if any: SIGTERM (pulsed stops
// its HAProxy: PULSE_LEAVE_RUNNING=false), up to gwStopGrace for it to
// exit, then SIGKILL to its process group. Then it waits up to
// haproxyLinger for every haproxy process of its state directory to be
// gone by itself, and kills what is left. What happened is recorded in the
// report. (pulseLab.stopPulsed kills pulsed's descendants at once, so it
// cannot see whether HAProxy outlives pulsed.)
func (b *gatewayBench) stopGatewayPulsed() gatewayPulsedStop {
	s := b.pulsed
	if s == nil {
		return gatewayPulsedStop{}
	}
	b.pulsed = nil
	st := gatewayPulsedStop{Stage: b.stage, Balance: b.balance}
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		select {
		case <-s.done:
		case <-time.After(gwStopGrace):
			st.Error = fmt.Sprintf("pulsed still running %s after SIGTERM: killed", gwStopGrace)
		}
	}
	_ = syscall.Kill(-s.pid(), syscall.SIGKILL) // pulsed's group (its HAProxy has its own)
	<-s.done
	st.StopS = secondsSince(start)
	st.Exit = s.cmd.ProcessState.ExitCode()
	if st.Error == "" && st.Exit != 0 {
		st.Error = fmt.Sprintf("pulsed exited with code %d after SIGTERM; log: %s", st.Exit, s.logTail(1000))
	}
	lingered, killed := reapHAProxies(b.stateDir, haproxyLinger)
	st.HAProxyLingerS, st.Killed = round3(lingered.Seconds()), killed
	if len(killed) > 0 {
		b.log.Warn("haproxy outlived pulsed; killed", "pids", killed, "after", haproxyLinger)
	}
	if st.HAProxyLingerS > 0 && len(st.Killed) == 0 {
		b.log.Info("haproxy outlived pulsed, then exited", "by_s", st.HAProxyLingerS)
	}
	b.rep.PulsedStops = append(b.rep.PulsedStops, st)
	return st
}

// latencyStage runs the four latency variants (direct and through the
// gateway, at c=1 and c=50) against the one replica, with pulsed at its
// defaults.
func (b *gatewayBench) latencyStage(ctx context.Context) error {
	if err := b.scaleTo(ctx, 1); err != nil {
		return err
	}
	if err := b.startGatewayPulsed(ctx, gwStageLatency, "", 1); err != nil {
		return err
	}
	watch, addrs, err := b.replicas(ctx, 1)
	if err != nil {
		return err
	}
	return b.rounds(ctx, gwStageLatency, gwLatencyVariants, 1, func(v gwVariant, r *gatewayRun) error {
		url := "http://" + addrs[0] + "/"
		if v.Path == pathGateway {
			url = b.gatewayURL()
		}
		return b.measure(ctx, watch, url, v, r)
	})
}

// balanceStage runs both balancing algorithms over gwBalanceReplicas
// replicas: for each run pulsed is started afresh with PULSE_BALANCE set,
// the gateway loaded at c=50, and pulsed stopped.
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
	return b.rounds(ctx, gwStageBalance, gwBalanceVariants, gwBalanceReplicas, func(v gwVariant, r *gatewayRun) error {
		defer func() {
			st := b.stopGatewayPulsed()
			r.HAProxyKilled, r.StopError = st.Killed, st.Error
		}()
		if err := b.startGatewayPulsed(ctx, gwStageBalance, v.Balance, gwBalanceReplicas); err != nil {
			return err
		}
		r.PulsedRouteS = secondsSince(b.started)
		watch, _, err := b.replicas(ctx, gwBalanceReplicas)
		if err != nil {
			return err
		}
		return b.measure(ctx, watch, b.gatewayURL(), v, r)
	})
}

// rounds runs variants round after round, in a rotated order, and records
// each run.
func (b *gatewayBench) rounds(ctx context.Context, stage string, variants []gwVariant, replicas int, run func(gwVariant, *gatewayRun) error) error {
	for round := 1; round <= b.cfg.Rounds; round++ {
		b.log.Info("round", "stage", stage, "round", round, "of", b.cfg.Rounds)
		for slot, v := range rotate(variants, round-1) {
			r := gatewayRun{Stage: stage, Variant: v.Name, Path: v.Path, Conns: v.Conns, Threads: v.Threads, Balance: v.Balance,
				Replicas: replicas, Round: round, Slot: slot}
			err := run(v, &r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.Error = err.Error()
				b.log.Warn("run failed", "stage", r.Stage, "round", r.Round, "variant", r.Variant, "err", err)
			} else {
				b.log.Info("run", "stage", r.Stage, "round", r.Round, "variant", r.Variant, "rps", int(r.RPS), "p50_us", r.P50US, "p99_us", r.P99US,
					"haproxy_cpu_per_req_us", fmt.Sprintf("%.1f", r.HAProxyCPUPerReqUS), "errors", r.Errors, "other_core_pct", int(r.OtherCorePct))
			}
			b.rep.Runs = append(b.rep.Runs, r)
		}
	}
	return nil
}

// measure checks url with one POST, warms it up with wrk, then measures
// one wrk run of v, sampling the CPU of watch's groups (HAProxy,
// docker-proxy, the replicas, pulsed) and the host around it.
func (b *gatewayBench) measure(ctx context.Context, watch procWatch, url string, v gwVariant, r *gatewayRun) error {
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
	if err := warmUp(ctx, w, b.cfg.Warmup); err != nil {
		return err
	}
	w.Duration = b.cfg.Duration
	reloads0, rerr0 := b.reloads(ctx)
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
	r.Reloads = -1 // unknown
	if reloads1, rerr1 := b.reloads(ctx); rerr0 == nil && rerr1 == nil {
		r.Reloads = reloads1 - reloads0
	}
	r.Requests, r.Seconds = res.Requests, float64(res.DurationUS)/1e6
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

// sampleGroups scans /proc for watch's groups and reads the host's CPU.
func sampleGroups(watch procWatch) (procCPU, hostCPU, time.Time, error) {
	g, _, err := scanAllProcs("/proc", watch)
	if err != nil {
		return nil, hostCPU{}, time.Time{}, err
	}
	h, err := readHostCPU("/proc")
	return g, h, time.Now(), err
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
	fail := func(why string) {
		l.failed.Add(1)
		l.mu.Lock()
		l.why[truncate(why, 200)]++
		l.mu.Unlock()
	}
	for range clients {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
				}
				resp, err := c.Post(url, "application/octet-stream", strings.NewReader(body))
				if err != nil {
					fail("error: " + err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(resp.Status)
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
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
