package main

// The watchdog suite builds the programs it measures (bench/echo,
// bench/inproc, cmd/pulse-watchdog, bench/c), then runs every variant once
// per round in a rotated order, several rounds: each HTTP variant's server
// is started on a free loopback port, checked, warmed up and loaded with
// wrk (bench/wrk/post.lua), and the C floors run spawnloop. It reports
// medians of throughput, latency and CPU per request (the CPU of the server
// and every process it started, read from /proc), resident memory and
// binary sizes, and checks them against the goals
// (watchdog_report.go). Its processes run without a replica credential and
// check none.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// runWatchdog runs the watchdog suite.
func runWatchdog(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	logDir := filepath.Join(env.tmp, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	rep := report{runHead: newRunHead(cfg.Suite, env.started), Config: newReportConfig(cfg), Machine: collectMachine(ctx, env.tools, env.clk)}
	if env.clkNote != "" {
		rep.Notes = append(rep.Notes, env.clkNote)
	}
	log.Info("building", "root", env.root)
	arts, err := build(ctx, log, env.root, watchdogBuilds(env.tools, env.tmp))
	if err != nil {
		return err
	}
	for _, n := range []string{"echo", "inproc", "watchdog", "watchdog-http", "cecho", "spawnloop"} {
		rep.Artifacts = append(rep.Artifacts, *arts[n])
	}

	variants := watchdogVariants(env.tools.cat, cfg.Conns, cfg.ForkConns)
	if len(cfg.Only) > 0 {
		var keep []variant
		for _, name := range cfg.Only {
			i := slices.IndexFunc(variants, func(v variant) bool { return v.Name == name })
			if i < 0 {
				return fmt.Errorf("-only %s: no such variant", name)
			}
			keep = append(keep, variants[i])
		}
		variants = keep
	}
	skipped := map[string]string{}
	var active []variant
	for _, v := range variants {
		if m := arts.missing(v.Needs); m != "" {
			skipped[v.Name] = m + " did not build"
			log.Warn("variant skipped", "variant", v.Name, "reason", skipped[v.Name])
			continue
		}
		active = append(active, v)
	}

	b := &watchdogBench{
		cfg: cfg, log: log, tools: env.tools, arts: arts, logDir: logDir, clk: env.clk,
		body:   payload(cfg.BodyBytes),
		script: filepath.Join(env.root, "bench", "wrk", "post.lua"),
	}
	for round := 1; round <= cfg.Rounds && len(active) > 0; round++ {
		order := rotate(active, round-1)
		log.Info("round", "round", round, "of", cfg.Rounds, "order", variantNames(order))
		runs, err := b.round(ctx, round, order)
		rep.Runs = append(rep.Runs, runs...)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
	}
	rep.Summary = summarize(variants, rep.Runs, skipped)
	rep.Goals = evaluateGoals(watchdogGoals, rep.Summary, arts.sizes())
	rep.Notes = append(rep.Notes, anomalies(rep.Summary)...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderText(rep), func(rel string) string { return renderMarkdown(rep, rel) })
}

// variant is one configuration the watchdog suite measures.
type variant struct {
	Name string
	Kind string
	// Ref is the variant whose CPU/req this one's is divided by.
	Ref string
	// Conns is wrk's connection count.
	Conns int
	// Needs names the artifacts it runs.
	Needs []string
	// launch returns how to start the server on addr (HTTP kinds).
	launch func(a artifacts, addr string) (launchSpec, error)
	// floor is the program spawnloop runs (floor kind).
	floor func(a artifacts) []string
}

// watchdogVariants lists the suite's variants. c is wrk's connection count
// for the in-memory HTTP variants, forkC for fork mode, where every request
// costs a process and more connections only queue.
func watchdogVariants(catPath string, c, forkC int) []variant {
	watchdog := func(bin, addr string, kv ...string) launchSpec {
		env := append(baseEnv(),
			contract.EnvFunction+"=echo",
			contract.EnvListen+"="+addr,
			contract.EnvMaxInflight+"=10000", // far above wrk's connections: never a 429
			contract.EnvDrainGrace+"=0s",     // stop at once on SIGTERM
		)
		return launchSpec{Bin: bin, Env: append(env, kv...), ReadyPath: contract.HealthPath}
	}
	fork := func(name, ref string, prog func(a artifacts) string, needs ...string) variant {
		return variant{
			Name: name, Kind: kindHTTP, Ref: ref, Conns: forkC, Needs: append([]string{"watchdog"}, needs...),
			launch: func(a artifacts, addr string) (launchSpec, error) {
				return watchdog(a.path("watchdog"), addr, contract.EnvMode+"="+contract.ModeFork, contract.EnvExec+"="+prog(a)), nil
			},
		}
	}
	cat := func(artifacts) string { return catPath }
	cecho := func(a artifacts) string { return a.path("cecho") }
	return []variant{
		{
			Name: "bare", Kind: kindHTTP, Conns: c, Needs: []string{"echo"},
			launch: func(a artifacts, addr string) (launchSpec, error) {
				return launchSpec{Bin: a.path("echo"), Args: []string{"-listen", addr}, Env: baseEnv(), ReadyPath: "/"}, nil
			},
		},
		{
			Name: "inproc", Kind: kindHTTP, Ref: "bare", Conns: c, Needs: []string{"inproc"},
			launch: func(a artifacts, addr string) (launchSpec, error) { return watchdog(a.path("inproc"), addr), nil },
		},
		{
			Name: "http", Kind: kindHTTP, Ref: "bare", Conns: c, Needs: []string{"watchdog-http", "echo"},
			launch: func(a artifacts, addr string) (launchSpec, error) {
				upstream, err := freeAddr()
				return watchdog(a.path("watchdog-http"), addr,
					contract.EnvMode+"="+contract.ModeHTTP,
					contract.EnvExec+"="+a.path("echo")+" -listen "+upstream,
					contract.EnvUpstream+"="+upstream), err
			},
		},
		fork("fork-cat", "spawnloop-cat", cat),
		fork("fork-cecho", "spawnloop-cecho", cecho, "cecho"),
		{
			Name: "spawnloop-cat", Kind: kindFloor, Needs: []string{"spawnloop"},
			floor: func(a artifacts) []string { return []string{cat(a)} },
		},
		{
			Name: "spawnloop-cecho", Kind: kindFloor, Needs: []string{"spawnloop", "cecho"},
			floor: func(a artifacts) []string { return []string{cecho(a)} },
		},
	}
}

func variantNames(vs []variant) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return strings.Join(names, ",")
}

// watchdogBench runs the watchdog suite.
type watchdogBench struct {
	cfg    config
	log    *slog.Logger
	tools  tools
	arts   artifacts
	logDir string
	clk    float64 // clock ticks per second
	body   string
	script string // path of post.lua
}

// round runs every variant once in order, returning their results.
func (b *watchdogBench) round(ctx context.Context, round int, order []variant) ([]runResult, error) {
	var out []runResult
	for slot, v := range order {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r := runResult{Variant: v.Name, Round: round, Slot: slot}
		waited, busy, err := waitQuiet(ctx, b.clk, b.cfg.QuietWait)
		if err != nil {
			return out, err
		}
		r.QuietWaitS, r.QuietBusyPct = round3(waited.Seconds()), math.Round(busy)
		if busy >= quietCorePct {
			b.log.Warn("host still busy; running anyway", "variant", v.Name, "busy_core_pct", int(busy), "waited", waited.Round(time.Millisecond))
		}
		r.Start = time.Now().UTC().Format(time.RFC3339)
		r.Load1, _ = readLoad1("/proc")
		if v.Kind == kindFloor {
			err = b.runFloor(ctx, v, &r)
		} else {
			err = b.runHTTP(ctx, v, &r)
		}
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			r.Error = err.Error()
			b.log.Warn("run failed", "round", round, "variant", v.Name, "err", err)
		} else {
			b.log.Info("run", "round", round, "variant", v.Name,
				"rps", int(r.RPS), "cpu_per_req_us", fmt.Sprintf("%.1f", r.CPUPerReqUS),
				"p99_us", r.P99US, "errors", r.Errors, "wrk_core_pct", int(r.WrkCorePct), "other_core_pct", int(r.OtherCorePct))
		}
		out = append(out, r)
	}
	return out, nil
}

// runHTTP starts v's server, reads its fresh RSS, checks it with one POST,
// reads its idle RSS, warms it up, measures one wrk run and stops it.
func (b *watchdogBench) runHTTP(ctx context.Context, v variant, r *runResult) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	spec, err := v.launch(b.arts, addr)
	if err != nil {
		return err
	}
	spec.Addr = addr
	srv, err := startServer(spec, filepath.Join(b.logDir, fmt.Sprintf("%s-%d.log", v.Name, r.Round)))
	if err != nil {
		return err
	}
	defer func() {
		code, serr := srv.stop(5 * time.Second)
		r.ExitCode = &code
		if serr != nil {
			r.StopError = serr.Error()
		}
	}()
	base := "http://" + addr
	if err := waitReady(ctx, srv, base+spec.ReadyPath, 15*time.Second, nil); err != nil {
		return err
	}
	// Fresh: only the readiness GETs have reached it, like a replica that
	// has only been health-checked.
	fresh, err := readStatus("/proc", srv.pid())
	if err != nil {
		return err
	}
	r.RSSFreshKB, r.RSSFreshAnonKB = fresh.RSSKB, fresh.RSSAnonKB
	if err := probe(ctx, base+"/", b.body, nil); err != nil {
		r.ProbeError = err.Error()
	}
	// Idle after traffic: one request served, before load.
	idle, err := readStatus("/proc", srv.pid())
	if err != nil {
		return err
	}
	r.RSSIdleKB, r.RSSIdleAnonKB = idle.RSSKB, idle.RSSAnonKB

	w := wrkRun{Bin: b.tools.wrk, Script: b.script, URL: base + "/", Threads: b.cfg.Threads, Conns: v.Conns, Body: b.body}
	if err := warmUp(ctx, w, b.cfg.Warmup); err != nil {
		return err
	}

	w.Duration = b.cfg.Duration
	before, hostBefore, t0, err := b.sample(srv.pid())
	if err != nil {
		return err
	}
	res, wrkCPU, err := runWrk(ctx, w)
	if err != nil {
		return err
	}
	// Let requests still in flight when wrk stopped finish (a fork-mode
	// child must be reaped to count) before the second sample.
	time.Sleep(100 * time.Millisecond)
	after, hostAfter, t1, err := b.sample(srv.pid())
	if err != nil {
		return err
	}
	loaded, err := readStatus("/proc", srv.pid())
	if err != nil {
		return err
	}
	r.RSSLoadedKB = loaded.HWMKB
	if after.Total < before.Total {
		return fmt.Errorf("cpu went backwards (%d → %d ticks): a process left the tree unreaped", before.Total, after.Total)
	}

	r.Requests = res.Requests
	r.Seconds = float64(res.DurationUS) / 1e6
	r.RPS = float64(res.Requests) / r.Seconds
	r.P50US, r.P90US, r.P99US, r.MaxUS, r.MeanUS = res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max, res.Latency.Mean
	r.Errors = res.errorCount()
	r.TreeProcs = after.Procs
	cpu := float64(after.Total-before.Total) / b.clk
	r.CPUSeconds = cpu
	r.CPUPerReqUS = cpu / float64(res.Requests) * 1e6
	r.SelfCPUPerReqUS = float64(after.Self-before.Self) / b.clk / float64(res.Requests) * 1e6
	wall := t1.Sub(t0).Seconds()
	r.ServerCorePct = 100 * cpu / wall
	r.WrkCorePct = 100 * wrkCPU.Seconds() / wall
	r.OtherCorePct, r.StealCorePct = b.hostShares(hostBefore, hostAfter, wall, cpu+wrkCPU.Seconds())
	return nil
}

// sample reads the CPU of pid's tree and of the host, and the time.
func (b *watchdogBench) sample(pid int) (cpuSample, hostCPU, time.Time, error) {
	tree, err := processTree("/proc", pid)
	if err != nil {
		return cpuSample{}, hostCPU{}, time.Time{}, err
	}
	host, err := readHostCPU("/proc")
	if err != nil {
		return cpuSample{}, hostCPU{}, time.Time{}, err
	}
	return treeCPU(tree), host, time.Now(), nil
}

// hostShares returns, in percent of one core over wall seconds, the host's
// busy time not accounted for by ours (CPU seconds of the measured
// processes and wrk), and the time stolen by the hypervisor.
func (b *watchdogBench) hostShares(before, after hostCPU, wall, ours float64) (other, steal float64) {
	busy := float64(after.Busy-before.Busy) / b.clk
	return 100 * (busy - ours) / wall, 100 * float64(after.Steal-before.Steal) / b.clk / wall
}

// runFloor runs spawnloop for the configured duration.
func (b *watchdogBench) runFloor(ctx context.Context, v variant, r *runResult) error {
	host0, err := readHostCPU("/proc")
	if err != nil {
		return err
	}
	t0 := time.Now()
	res, err := runFloor(ctx, b.arts.path("spawnloop"), b.cfg.Duration, b.body, v.floor(b.arts))
	if err != nil {
		return err
	}
	wall := time.Since(t0).Seconds()
	host1, err := readHostCPU("/proc")
	if err != nil {
		return err
	}
	r.Requests = res.Iterations
	r.Seconds = res.WallS
	r.RPS = float64(res.Iterations) / res.WallS
	r.CPUSeconds = res.CPUS
	r.CPUPerReqUS = res.CPUPerIterUS
	r.SelfCPUPerReqUS = res.SelfCPUS / float64(res.Iterations) * 1e6
	r.ServerCorePct = 100 * res.CPUS / res.WallS
	r.OtherCorePct, r.StealCorePct = b.hostShares(host0, host1, wall, res.CPUS)
	if d := res.HarnessCPUS - res.CPUS; d > 0.05*res.CPUS || -d > 0.05*res.CPUS {
		return fmt.Errorf("spawnloop reports %.3f s CPU, wait4 %.3f s", res.CPUS, res.HarnessCPUS)
	}
	return nil
}
