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

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
)

// runWatchdog runs the watchdog suite.
func runWatchdog(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	logDir := filepath.Join(env.tmp, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	rep := report.New(cfg.Suite, env.started)
	m := collectMachine(ctx, env.tools, env.clk)
	rep.Title, rep.Machine = " (medians over rounds)", m
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, clock %g Hz; "+
		"%d round(s) × %gs measured (+%gs warm-up), wrk %d thread(s), %d connections (fork mode %d), %d-byte body",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Wrk, m.ClockTicks,
		cfg.Rounds, cfg.Duration.Seconds(), cfg.Warmup.Seconds(), cfg.Threads, cfg.Conns, cfg.ForkConns, cfg.BodyBytes)
	if env.clkNote != "" {
		rep.Note("%s", env.clkNote)
	}
	log.Info("building", "root", env.root)
	arts, err := build(ctx, log, env.root, watchdogBuilds(env.tools, env.tmp))
	if err != nil {
		return err
	}
	var built []artifact
	for _, n := range []string{"echo", "inproc", "watchdog", "watchdog-http", "cecho", "spawnloop"} {
		built = append(built, *arts[n])
	}
	rep.Record("artifacts", built)

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
	var active []variant
	for _, v := range variants {
		if m := arts.missing(v.Needs); m != "" {
			rep.Add(&report.Row{Kind: "run", Labels: map[string]string{"variant": v.Name}, Skipped: m + " did not build"})
			log.Warn("variant skipped", "variant", v.Name, "reason", m+" did not build")
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
		err := b.round(ctx, rep, round, order)
		if err != nil {
			return fmt.Errorf("round %d: %w", round, err)
		}
	}
	watchdogSummary(rep, variants, built, arts.sizes())
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
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

// round runs every variant once in order, adding a row for each.
func (b *watchdogBench) round(ctx context.Context, rep *report.Report, round int, order []variant) error {
	for slot, v := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := report.NewRow("run", "variant", v.Name, "round", round, "slot", slot)
		waited, busy, err := waitQuiet(ctx, b.clk, b.cfg.QuietWait)
		if err != nil {
			return err
		}
		r.Put("quiet_wait_s", round3(waited.Seconds())).Put("quiet_busy_pct", math.Round(busy))
		if busy >= quietCorePct {
			b.log.Warn("host still busy; running anyway", "variant", v.Name, "busy_core_pct", int(busy), "waited", waited.Round(time.Millisecond))
		}
		r.Labels["start"] = time.Now().UTC().Format(time.RFC3339)
		load1, _ := readLoad1("/proc")
		r.Put("load1", load1)
		if v.Kind == kindFloor {
			err = b.runFloor(ctx, v, r)
		} else {
			err = b.runHTTP(ctx, v, r)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.Values = nil
			r.Fail(err)
			b.log.Warn("run failed", "round", round, "variant", v.Name, "err", err)
		} else {
			b.log.Info("run", "round", round, "variant", v.Name, "rps", report.Num("%.0f", r.V("rps")),
				"cpu_per_req_us", report.Num("%.1f", r.V("cpu_per_req_us")), "p99_us", report.Num("%.0f", r.V("p99_us")),
				"wrk_core_pct", report.Num("%.0f", r.V("wrk_core_pct")), "other_core_pct", report.Num("%.0f", r.V("other_core_pct")))
		}
		rep.Add(r)
	}
	return nil
}

// runHTTP starts v's server, reads its fresh RSS, checks it with one POST,
// reads its idle RSS, warms it up, measures one wrk run and stops it.
func (b *watchdogBench) runHTTP(ctx context.Context, v variant, r *report.Row) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	spec, err := v.launch(b.arts, addr)
	if err != nil {
		return err
	}
	spec.Addr = addr
	srv, err := startServer(spec, filepath.Join(b.logDir, fmt.Sprintf("%s-%s.log", v.Name, r.Label("round"))))
	if err != nil {
		return err
	}
	defer func() {
		switch code, serr := srv.stop(5 * time.Second); {
		case serr != nil:
			r.Flag("%v", serr)
		case code != 0:
			r.Flag("exit code %d after SIGTERM", code)
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
	r.Put("rss_fresh_kb", float64(fresh.RSSKB)).Put("rss_fresh_anon_kb", float64(fresh.RSSAnonKB))
	if err := probe(ctx, base+"/", b.body, nil); err != nil {
		r.Flag("%s", truncate(err.Error(), 200))
	}
	// Idle after traffic: one request served, before load.
	idle, err := readStatus("/proc", srv.pid())
	if err != nil {
		return err
	}
	r.Put("rss_idle_kb", float64(idle.RSSKB)).Put("rss_idle_anon_kb", float64(idle.RSSAnonKB))

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
	r.Put("rss_loaded_kb", float64(loaded.HWMKB))
	if after.Total < before.Total {
		return fmt.Errorf("cpu went backwards (%d → %d ticks): a process left the tree unreaped", before.Total, after.Total)
	}

	secs := float64(res.DurationUS) / 1e6
	cpu := float64(after.Total-before.Total) / b.clk
	wall := t1.Sub(t0).Seconds()
	other, steal := b.hostShares(hostBefore, hostAfter, wall, cpu+wrkCPU.Seconds())
	if n := res.errorCount(); n > 0 {
		r.Flag("%d request errors", n)
	}
	r.PutAll(map[string]float64{
		"requests": float64(res.Requests), "seconds": secs, "rps": float64(res.Requests) / secs,
		"p50_us": float64(res.Latency.P50), "p90_us": float64(res.Latency.P90), "p99_us": float64(res.Latency.P99),
		"max_us": float64(res.Latency.Max), "mean_us": res.Latency.Mean, "errors": float64(res.errorCount()),
		"tree_procs": float64(after.Procs), "cpu_s": cpu, "cpu_per_req_us": cpu / float64(res.Requests) * 1e6,
		"self_cpu_per_req_us": float64(after.Self-before.Self) / b.clk / float64(res.Requests) * 1e6,
		"server_core_pct":     100 * cpu / wall, "wrk_core_pct": 100 * wrkCPU.Seconds() / wall,
		"other_core_pct": other, "steal_core_pct": steal,
	})
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
func (b *watchdogBench) runFloor(ctx context.Context, v variant, r *report.Row) error {
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
	other, steal := b.hostShares(host0, host1, wall, res.CPUS)
	r.PutAll(map[string]float64{
		"requests": float64(res.Iterations), "seconds": res.WallS, "rps": float64(res.Iterations) / res.WallS,
		"errors": 0, "cpu_s": res.CPUS, "cpu_per_req_us": res.CPUPerIterUS,
		"self_cpu_per_req_us": res.SelfCPUS / float64(res.Iterations) * 1e6,
		"server_core_pct":     100 * res.CPUS / res.WallS, "other_core_pct": other, "steal_core_pct": steal,
	})
	if d := res.HarnessCPUS - res.CPUS; d > 0.05*res.CPUS || -d > 0.05*res.CPUS {
		return fmt.Errorf("spawnloop reports %.3f s CPU, wait4 %.3f s", res.CPUS, res.HarnessCPUS)
	}
	return nil
}
