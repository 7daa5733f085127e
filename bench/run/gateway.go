package main

// The gateway suite: an in-process Go echo loaded with wrk directly and through pulsed's
// HAProxy, and a new task's time to traffic (gateway_scale.go).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
)

const suiteGateway = "gateway"

// Stages of the gateway suite, in the order they run.
var gatewayStages = []string{gwStageLatency, gwStageBalance, gwStageScale, gwStageRateLimit}

// Settings of the gateway suite.
const (
	gwStageLatency, gwStageBalance, gwStageScale = "latency", "balance", "scale"
	gwNamePrefix                                 = "pbench-gw-"                        // + the run's ID: every function the suite creates
	gwHealthInterval, gwDrainGrace               = 250 * time.Millisecond, time.Second // quick scale trials; a scale-down loses no request
	gwLowConns, gwLowThreads                     = 1, 1
	gwHighConns, gwHighThreads                   = 50, 2
	gwBalanceReplicas                            = 3
	gwHAProxyPoll                                = 10 * time.Millisecond
	gwBackgroundClients, gwBackgroundPause       = 2, 10 * time.Millisecond
	gwRunningTimeout, gwTrafficTimeout           = 30 * time.Second, 10 * time.Second // scale → task running → its server took a session
	gwRouteTimeout, gwStopGrace                  = 30 * time.Second, 20 * time.Second // pulsed started → routing; SIGTERM → gone
	gwDirectLow, gwGatewayLow, gwDirectHigh      = "direct c=1", "gateway c=1", "direct c=50"
	gwGatewayHigh, gwLeastConn, gwRoundRobin     = "gateway c=50", gateway.BalanceLeastConn, gateway.BalanceRoundRobin
	gwScale                                      = "1 → 2" // the scale stage's trials
)

// gwVariant is one wrk load: path, balancing algorithm, and the variant it is compared with.
type gwVariant struct {
	Name, Path, Balance, Ref string
	Conns, Threads           int
}

var (
	gwLatencyVariants = []gwVariant{
		{Name: gwDirectLow, Path: pathDirect, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: gwGatewayLow, Path: pathGateway, Ref: gwDirectLow, Conns: gwLowConns, Threads: gwLowThreads},
		{Name: gwDirectHigh, Path: pathDirect, Conns: gwHighConns, Threads: gwHighThreads},
		{Name: gwGatewayHigh, Path: pathGateway, Ref: gwDirectHigh, Conns: gwHighConns, Threads: gwHighThreads},
	}
	gwBalanceVariants = []gwVariant{
		{Name: gwLeastConn, Path: pathGateway, Balance: gwLeastConn, Ref: gwRoundRobin, Conns: gwHighConns, Threads: gwHighThreads},
		{Name: gwRoundRobin, Path: pathGateway, Balance: gwRoundRobin, Conns: gwHighConns, Threads: gwHighThreads},
	}
	gwVariants = slices.Concat(gwLatencyVariants, gwBalanceVariants)
)

// gwVariantNamed is the variant called name (the zero one if none is).
func gwVariantNamed(name string) gwVariant {
	if i := slices.IndexFunc(gwVariants, func(v gwVariant) bool { return v.Name == name }); i >= 0 {
		return gwVariants[i]
	}
	return gwVariant{}
}

// gatewayBench runs the gateway suite on the lab (lab.go).
type gatewayBench struct {
	pulseLab
	cfg    config
	rep    *report.Report
	name   string // the function's
	body   string
	script string // bench/wrk/post.lua
	// checked: the direct path's credential check was tried; rewrote: a replica was called at 127.0.0.1.
	checked, rewrote bool
}

// runGateway runs the gateway suite.
func runGateway(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := cfg.stages(gatewayStages)
	id, err := runID()
	if err != nil {
		return err
	}
	rep := report.New(cfg.Suite, env.started)
	if env.clkNote != "" {
		rep.Note("%s", env.clkNote)
	}
	b := &gatewayBench{
		pulseLab: newPulseLab(log, env, id, gwNamePrefix, env.tools.haproxy, gwRouteTimeout, gwStopGrace),
		cfg:      cfg, rep: rep, name: gwNamePrefix + id + "-echo", body: payload(cfg.BodyBytes),
		script: filepath.Join(env.root, "bench", "wrk", "post.lua"),
	}
	rep.Record("function", b.name)
	if err := b.connect(ctx); err != nil {
		return err
	}
	swept := false
	defer func() { // whatever happens: pulsed and its HAProxy stopped, the engine swept
		if !swept {
			b.cleanup()
		}
	}()
	log.Info("gateway suite", "stages", strings.Join(stages, ","), "function", b.name)

	arts, recs, err := buildAll(ctx, log, env.root, []buildStep{pulsedStep(env.tools, env.tmp), goStep(env.tools, env.tmp, "inproc", "./bench/inproc", inprocTags)})
	b.arts = arts
	rep.Record("artifacts", recs)
	if err != nil {
		return err
	}
	if b.cred, err = newRunCredential(ctx, b.api, benchInstance(b.run), env.tmp); err != nil {
		return err
	}
	if err := b.deploy(ctx); err != nil {
		return err
	}
	for i, f := range []func(context.Context) error{b.latencyStage, b.balanceStage, b.scaleStage, b.rateLimitStage} {
		if err := runStage(ctx, log, stages, gatewayStages[i], &rep.Notes, f, b.stop); err != nil {
			return err
		}
	}
	if err := b.remove(ctx, b.name); err != nil {
		log.Warn("remove", "function", b.name, "err", err)
	}
	if b.rewrote {
		rep.Note("%s", rewroteNote)
	}
	gatewaySummary(rep)
	swept = true
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// connect opens the engine client of a single-node swarm and describes the setup.
func (b *gatewayBench) connect(ctx context.Context) error {
	api, info, ver, err := connectSingleNodeSwarm(ctx, "gateway", "so that every replica runs on this host and is called on loopback")
	if err != nil {
		return err
	}
	others, otherFns, err := serviceNames(ctx, api)
	if err != nil {
		return err
	}
	b.api, b.sw = api, function.NewSwarm(api, function.LocalDistributor{API: api}, nil) // images load into this engine
	m, c := collectMachine(ctx, b.env.tools, b.env.clk), b.cfg
	hap, _ := haproxyVersion(ctx, b.haproxy)
	b.rep.Machine = m
	b.rep.Record("engine", map[string]any{"version": ver.Version, "api_version": ver.APIVersion, "other_services": others, "other_functions": otherFns})
	b.rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, %s, Docker Engine %s (API %s), %d-node swarm; "+
		"%d round(s) × %gs measured (+%gs warm-up), wrk -t%d -c%d and -t%d -c%d, %d-byte body; %d scale trial(s); "+
		"replicas: bench/inproc (Go echo, in process), health interval %g ms",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, hap, m.Wrk, ver.Version, ver.APIVersion, info.Swarm.Nodes,
		c.Rounds, c.Duration.Seconds(), c.Warmup.Seconds(), gwLowThreads, gwLowConns, gwHighThreads, gwHighConns, c.BodyBytes, c.ScaleTrials, ms(gwHealthInterval))
	if len(others) > 0 {
		b.rep.Setup += fmt.Sprintf("; other services on the engine throughout: %s (Pulse functions, routed and health-checked too: %s)",
			strings.Join(others, ", "), cmp.Or(strings.Join(otherFns, ", "), "none"))
	}
	return nil
}

// gatewayURL is the function's path on pulsed's HAProxy.
func (b *gatewayBench) gatewayURL() string { return "http://" + b.gwAddr + "/function/" + b.name }

// deploy deploys one replica of the echo function (bench/inproc).
func (b *gatewayBench) deploy(ctx context.Context) error {
	bin, err := b.arts.read("inproc")
	if err != nil {
		return err
	}
	spec := function.Spec{Name: b.name, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".", Timeout: 10 * time.Second,
		MaxBody: 1 << 20, Scale: function.Scale{Metric: "inflight", Target: 10, Min: 1, Max: 10}, Labels: benchLabels(b.run)}
	img, err := benchImage(spec, nil, bin)
	if err != nil {
		return err
	}
	if _, err := b.sw.Deploy(ctx, spec, img, function.DeployOptions{HealthInterval: gwHealthInterval, DrainGrace: gwDrainGrace, Instance: benchInstance(b.run)}); err != nil {
		return err
	}
	return waitReplicas(ctx, b.sw, b.api, b.name, 1)
}

// scaleTo scales the function to n replicas and waits for them.
func (b *gatewayBench) scaleTo(ctx context.Context, n int) error {
	if err := b.sw.Scale(ctx, b.name, n, true); err != nil {
		return err
	}
	return waitReplicas(ctx, b.sw, b.api, b.name, n)
}

// latencyStage runs the four latency variants against one replica.
func (b *gatewayBench) latencyStage(ctx context.Context) error {
	if err := b.startGatewayPulsed(ctx, "", 1); err != nil {
		return err
	}
	watch, addrs, err := b.replicas(ctx, 1)
	if err != nil {
		return err
	}
	return b.rounds(ctx, gwStageLatency, gwLatencyVariants, func(v gwVariant, r *report.Row) error {
		url := "http://" + addrs[0] + "/"
		if v.Path == pathGateway {
			url = b.gatewayURL()
		}
		return b.measure(ctx, watch, url, v, r)
	})
}

// balanceStage runs each balancing algorithm over gwBalanceReplicas, pulsed afresh per run.
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
	return b.rounds(ctx, gwStageBalance, gwBalanceVariants, func(v gwVariant, r *report.Row) error {
		defer b.stop()
		if err := b.startGatewayPulsed(ctx, v.Balance, gwBalanceReplicas); err != nil {
			return err
		}
		watch, _, err := b.replicas(ctx, gwBalanceReplicas)
		if err != nil {
			return err
		}
		return b.measure(ctx, watch, b.gatewayURL(), v, r)
	})
}

// rounds runs variants round after round, in a rotated order, adding a row each.
func (b *gatewayBench) rounds(ctx context.Context, stage string, variants []gwVariant, run func(gwVariant, *report.Row) error) error {
	for round := 1; round <= b.cfg.Rounds; round++ {
		for slot, v := range rotate(variants, round-1) {
			r := report.NewRow("run", "stage", stage, "variant", v.Name, "round", round, "slot", slot)
			err := run(v, r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.Values = nil
				r.Fail(err)
				b.log.Warn("run failed", "stage", stage, "round", round, "variant", v.Name, "err", err)
			} else {
				b.log.Info("run", "stage", stage, "round", round, "variant", v.Name, "values", r.Values)
			}
			b.rep.Add(r)
		}
	}
	return nil
}

// replicas returns the watch of pulsed's and the want replicas' processes, and their addresses.
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

// measure waits for a quiet host, probes and warms url, then puts one wrk run of v into r:
// rps, latency, errors, and the trust figures (wrk's CPU, other load, steal, reloads).
func (b *gatewayBench) measure(ctx context.Context, watch procWatch, url string, v gwVariant, r *report.Row) error {
	if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	}
	// Direct requests carry the replica credential as HAProxy's do; once, a POST without it
	// checks the replica refuses it.
	var hdr http.Header
	if v.Path == pathDirect {
		hdr = b.cred.header()
		if !b.checked {
			refused, err := refusesWithout(ctx, url, b.body)
			if err != nil {
				return err
			} else if b.checked = true; !refused {
				b.rep.Note("%s", noCredentialCheck)
			}
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
	sample := func() (procCPU, hostCPU, time.Time, error) {
		g, err := scanAllProcs("/proc", watch)
		h, herr := readHostCPU("/proc")
		return g, h, time.Now(), cmp.Or(err, herr)
	}
	reloads0, rerr0 := b.reloads(ctx)
	before, h0, t0, err := sample()
	if err != nil {
		return err
	}
	res, wrkCPU, err := runWrk(ctx, w)
	if err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // requests in flight when wrk stopped
	after, h1, t1, err := sample()
	if err != nil {
		return err
	}
	if reloads1, rerr1 := b.reloads(ctx); rerr0 == nil && rerr1 == nil {
		r.Put("reloads", float64(reloads1-reloads0))
	}
	if len(after[groupHAProxy]) == 0 && v.Path == pathGateway {
		return errors.New("no haproxy process of this pulsed found in /proc")
	}
	if n := res.errorCount(); n > 0 {
		r.Flag("%d request errors", n)
	}
	var stack uint64 // the CPU of the measured stack: HAProxy, docker-proxy, the replicas, pulsed
	for g := range after {
		ticks := cpuDelta(before[g], after[g])
		stack += ticks
	}
	core := func(ticks uint64) float64 { return 100 * float64(ticks) / b.env.clk / t1.Sub(t0).Seconds() }
	wrkPct := 100 * wrkCPU.Seconds() / t1.Sub(t0).Seconds()
	r.PutAll(map[string]float64{
		"rps": float64(res.Requests) / (float64(res.DurationUS) / 1e6), "errors": float64(res.errorCount()),
		"p50_us": float64(res.Latency.P50), "p99_us": float64(res.Latency.P99), "wrk_core_pct": wrkPct,
		"other_core_pct": core(h1.Busy-h0.Busy) - wrkPct - core(stack), "steal_core_pct": core(h1.Steal - h0.Steal),
	})
	return nil
}

// startGatewayPulsed starts pulsed afresh (balance "": default) until it routes want replicas.
func (b *gatewayBench) startGatewayPulsed(ctx context.Context, balance string, want int) error {
	env := []string{}
	if balance != "" {
		env = append(env, "PULSE_BALANCE="+balance)
	}
	if err := b.launchPulsed(ctx, "log_level: info\n", env...); err != nil {
		return err
	}
	return b.waitRouted(ctx, b.name, want, b.body)
}

// launchPulsed starts pulsed afresh with the autoscaler off (a new state dir, free API,
// gateway and admin addresses; env last) and waits for its health.
func (l *pulseLab) launchPulsed(ctx context.Context, config string, env ...string) error {
	n := len(l.pulsedLogs) + 1
	l.stateDir, l.pulsedLog = filepath.Join(l.env.tmp, fmt.Sprintf("state-%d", n)), filepath.Join(l.env.tmp, fmt.Sprintf("pulsed-%d.log", n))
	l.pulsedLogs = append(l.pulsedLogs, l.pulsedLog)
	cfg := filepath.Join(l.env.tmp, "pulsed.yaml")
	if err := os.WriteFile(cfg, []byte("# pulse bench: every setting comes from PULSE_* variables\n"+config), 0o644); err != nil {
		return fmt.Errorf("pulsed config: %w", err)
	}
	if err := os.Mkdir(l.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, a := range []*string{&l.apiAddr, &l.gwAddr, &l.adminAddr} {
		var err error
		if *a, err = freeAddr(); err != nil {
			return err
		}
	}
	// Free ports for the async listeners too (a real install holds the
	// defaults); a suite's own env, appended last, wins.
	async, err := asyncEnv()
	if err != nil {
		return err
	}
	env = append(append(append(baseEnv(), async...), "PULSE_STATE_DIR="+l.stateDir, "PULSE_INSTANCE="+benchInstance(l.run), "PULSE_API_LISTEN="+l.apiAddr,
		"PULSE_AUTOSCALE=false", "PULSE_GATEWAY_LISTEN="+l.gwAddr, "PULSE_ADMIN_LISTEN="+l.adminAddr, "PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+l.haproxy, l.cred.pulsedEnv()), env...)
	if l.pulsed, err = startServer(launchSpec{Bin: l.arts.path("pulsed"), Args: []string{"-config", cfg}, Env: env, Addr: l.apiAddr}, l.pulsedLog); err != nil {
		return err
	}
	l.rt = gateway.NewRuntime(filepath.Join(l.stateDir, "haproxy.sock"), time.Second)
	return waitReady(ctx, l.pulsed, "http://"+l.apiAddr+"/healthz", l.routeTimeout, nil)
}

// stop stops the running pulsed and its HAProxy, noting what went wrong.
func (b *gatewayBench) stop() { b.rep.Cleanup = append(b.rep.Cleanup, b.stopPulsed()...) }

// Goals of the gateway suite (from the issue).
const (
	gwLatencyGoalName = "added p50 latency through HAProxy at c=1 ≤ 60 µs"
	gwScaleGoalName   = "task running → its server takes traffic ≤ 0.5 s (median)"
)

// gatewaySummary sums the rows up (each run gets vs_ref_p50_us: p50 − its reference's).
func gatewaySummary(rep *report.Report) {
	rep.Title = " (medians over rounds)"
	runs := report.Of(rep.Rows, "run")
	for _, r := range runs {
		for _, ref := range runs {
			if r.OK() && ref.OK() && ref.Label("round") == r.Label("round") && ref.Label("variant") == gwVariantNamed(r.Label("variant")).Ref {
				r.Put("vs_ref_p50_us", r.V("p50_us")-ref.V("p50_us"))
			}
		}
	}
	groups, names := report.Summarize(rep.Rows, "run", "stage", "variant"), []string{}
	for _, v := range gwVariants {
		names = append(names, v.Name)
	}
	report.Sort(groups, "variant", names)
	scale := report.Summarize(rep.Rows, "scale", "scale")
	limited := report.Summarize(rep.Rows, "ratelimit", "stage", "variant")
	rep.Summary = slices.Concat(groups, scale, limited)
	rep.Tables = append(rep.Tables, report.GroupTable(fmt.Sprintf("Direct vs through HAProxy (`gateway`), one replica; the balancing algorithms over %d replicas "+
		"at c=%d. `other %%`: the host's busy CPU less wrk and the measured stack.", gwBalanceReplicas, gwHighConns), groups, "variant",
		report.Stat("rps", "rps", "%.0f"), report.Stat("p50 µs", "p50_us", "%.0f"), report.Spread("p50 range µs", "p50_us", "%.0f"),
		report.Stat("p99 µs", "p99_us", "%.0f"), report.Stat("wrk core %", "wrk_core_pct", "%.0f"),
		report.Stat("other %", "other_core_pct", "%.0f")),
		report.GroupTable(fmt.Sprintf("Task running → its server ready and up in HAProxy (polled every %g ms), scaled 1 → 2 under a light load; "+
			"`first session`: its stot above its count before the scale.", ms(gwHAProxyPoll)),
			scale, "scale", report.Col{Head: "trials", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d failed)", g.Runs, g.Failed) }},
			report.Stat("ready and up, median s", "ready_s", "%.3f"), report.Spread("range s", "ready_s", "%.3f"),
			report.Stat("first session s", "traffic_s", "%.3f")),
		report.GroupTable(fmt.Sprintf("A function with `rate_limit: {requests: %d, per: 1s}` loaded by wrk (c=%d) through HAProxy after a warm-up: "+
			"requests answered 2xx and offered per second.", gwRateLimit, gwRateConns), limited, "variant",
			report.Stat("answered/s", "answered_rps", "%.1f"), report.Spread("range", "answered_rps", "%.1f"),
			report.Stat("offered/s", "offered_rps", "%.0f"), report.Stat("wrk core %", "wrk_core_pct", "%.0f")))
	rep.Goals = append(gatewayGoals(groups, scale), rateLimitGoal(limited))
	rep.Notes = append(rep.Notes, gatewayNotes(rep.Rows, groups, scale)...)
}

// gatewayGoals checks the goals; errors or failed trials fail one.
func gatewayGoals(groups, scale []report.Group) []report.Goal {
	lat := report.NewGoal(gwLatencyGoalName, "µs", 60)
	d, okd := report.Find(groups, "variant", gwDirectLow)
	g, okg := report.Find(groups, "variant", gwGatewayLow)
	switch {
	case !okd || !okg:
		lat = lat.Skipped("the latency stage did not run")
	case d.Runs == 0 || g.Runs == 0:
		lat = lat.Failed("every run of a c=1 variant failed")
	default:
		lat = lat.Noted("p50 direct %.0f µs, through HAProxy %.0f µs", d.M("p50_us"), g.M("p50_us")).Check(g.M("p50_us") - d.M("p50_us"))
		if x := g.Values("vs_ref_p50_us"); len(x) > 1 {
			lat.Note += fmt.Sprintf("; per round %+.0f to %+.0f µs", slices.Min(x), slices.Max(x))
		}
		for _, v := range []report.Group{g, d} {
			if v.Flagged() {
				lat.Status, lat.Note = report.Fail, v.Label("variant")+" had errors: "+v.Flags[0]
			}
		}
	}
	sc := report.NewGoal(gwScaleGoalName, "s", 0.5)
	if s, ok := report.Find(scale, "scale", gwScale); !ok {
		sc = sc.Skipped("the scale stage did not run")
	} else {
		sc = sc.Noted("server ready and up; first session %.3f s (median of %d)", s.M("traffic_s"), s.Runs).Over(scale, "scale", gwScale, "ready_s")
	}
	return []report.Goal{lat, sc}
}

// Thresholds above which gatewayNotes writes a note.
const (
	gwWrkSaturatedPct = 90 // of a core per wrk thread
	gwOtherLoadPct    = 20
	gwStealPct        = 5
)

// gatewayNotes flag figures to read with care (reloads, wrk saturated, load, steal, errors).
func gatewayNotes(rows []report.Row, groups, scale []report.Group) []string {
	var notes []string
	runs := slices.DeleteFunc(report.Of(rows, "run"), func(r report.Row) bool { return !r.OK() })
	if n := len(slices.DeleteFunc(slices.Clone(runs), func(r report.Row) bool { return r.V("reloads") == 0 })); n > 0 { // unknown: reloaded
		notes = append(notes, fmt.Sprintf("pulsed reloaded HAProxy during %d of %d runs (it does whenever a function is added to or removed "+
			"from the engine, anyone's): their latencies may be disturbed", n, len(runs)))
	}
	for _, g := range slices.Concat(groups, scale) {
		name := cmp.Or(g.Label("variant"), "scale "+g.Label("scale"))
		if v := g.M("wrk_core_pct"); v >= gwWrkSaturatedPct*float64(max(1, gwVariantNamed(name).Threads)) {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f %% of a core: its rps and latency are bounded by the load generator", name, v))
		}
		if v := g.M("other_core_pct"); v >= gwOtherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f %% of a core during the runs (median)", name, v))
		}
		if v := g.M("steal_core_pct"); v >= gwStealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f %% of a core (median)", name, v))
		}
		for _, f := range g.Flags {
			notes = append(notes, name+": "+f)
		}
	}
	for _, bg := range report.Of(rows, "background") {
		n := fmt.Sprintf("scale stage background load: %.0f requests answered 200, %.0f failed", bg.V("ok"), bg.V("failed"))
		notes = append(notes, n+map[bool]string{true: " (" + strings.Join(bg.Flags, "; ") + ")"}[len(bg.Flags) > 0])
	}
	return notes
}
