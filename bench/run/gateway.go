package main

// The gateway suite: pulsed (as it ships, with its HAProxy, on loopback
// ports) routing an in-process Go echo, measured straight to the replica
// and through HAProxy, with both balancing algorithms, and from a new task
// turning running to its server taking traffic (gateway_scale.go).

import (
	"context"
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
