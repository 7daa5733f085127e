package main

// The watchdog suite builds the programs it measures (bench/echo,
// bench/inproc, cmd/pulse-watchdog, bench/c), then runs every variant once
// per round in a rotated order, several rounds: each HTTP variant's server
// is started on a free loopback port, checked, warmed up and loaded with
// wrk (bench/wrk/post.lua), and the C floors run spawnloop. It checks the
// medians of CPU per request (the server's process tree, from /proc), idle
// RSS and the inproc binary's size against the goals. Its
// processes run without a replica credential.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
)

const suiteWatchdog = "watchdog"

// runWatchdog runs the watchdog suite.
func runWatchdog(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	logDir := filepath.Join(env.tmp, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	rep := report.New(cfg.Suite, env.started)
	m := noteMachine(ctx, rep, env)
	rep.Title = " (medians over rounds)"
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, %s, clock %g Hz; "+
		"%d round(s) × %gs measured (+%gs warm-up), wrk %d thread(s), %d connections (fork mode %d), %d-byte body",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.Wrk, m.ClockTicks,
		cfg.Rounds, cfg.Duration.Seconds(), cfg.Warmup.Seconds(), cfg.Threads, cfg.Conns, cfg.ForkConns, cfg.BodyBytes)
	arts, err := build(ctx, log, env.root, watchdogBuilds(env.tools, env.tmp))
	if err != nil {
		return err
	}
	rep.Record("artifacts", arts)

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
			continue
		}
		active = append(active, v)
	}

	b := &watchdogBench{
		cfg: cfg, tools: env.tools, arts: arts, logDir: logDir, clk: env.clk,
		body:   payload(cfg.BodyBytes),
		script: filepath.Join(env.root, "bench", "wrk", "post.lua"),
	}
	for round := 1; round <= cfg.Rounds && len(active) > 0; round++ {
		order := rotate(active, round-1)
		log.Info("round", "round", round, "of", cfg.Rounds, "order", variantNames(order))
		for _, v := range order {
			if _, busy, err := waitQuiet(ctx, env.clk, cfg.QuietWait); err != nil {
				return err
			} else if busy >= quietCorePct {
				log.Warn("host still busy; running anyway", "variant", v.Name, "busy_core_pct", int(busy))
			}
			r := report.NewRow("run", "variant", v.Name, "round", round)
			run := b.runHTTP
			if v.Kind == kindFloor {
				run = b.runFloor
			}
			if err := run(ctx, v, r); ctx.Err() != nil {
				return ctx.Err()
			} else if err != nil {
				r.Values = nil
				r.Fail(err)
			}
			log.Info("run", "round", round, "variant", v.Name, "cpu_per_req_us", report.Num("%.1f", r.V("cpu_per_req_us")), "err", r.Error)
			rep.Add(r)
		}
	}
	watchdogSummary(rep, variants, arts.sizes())
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// variant is one configuration the watchdog suite measures.
type variant struct {
	Name, Kind string
	Conns      int                                                // wrk's connections
	Needs      []string                                           // the artifacts it runs
	launch     func(a artifacts, addr string) (launchSpec, error) // how to start the server on addr (HTTP kinds)
	floor      func(a artifacts) []string                         // the program spawnloop runs (floor kind)
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
	fork := func(name string, prog func(a artifacts) string, needs ...string) variant {
		return variant{
			Name: name, Kind: kindHTTP, Conns: forkC, Needs: append([]string{"watchdog"}, needs...),
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
			Name: "inproc", Kind: kindHTTP, Conns: c, Needs: []string{"inproc"},
			launch: func(a artifacts, addr string) (launchSpec, error) { return watchdog(a.path("inproc"), addr), nil },
		},
		{
			Name: "http", Kind: kindHTTP, Conns: c, Needs: []string{"watchdog-http", "echo"},
			launch: func(a artifacts, addr string) (launchSpec, error) {
				upstream, err := freeAddr()
				return watchdog(a.path("watchdog-http"), addr,
					contract.EnvMode+"="+contract.ModeHTTP,
					contract.EnvExec+"="+a.path("echo")+" -listen "+upstream,
					contract.EnvUpstream+"="+upstream), err
			},
		},
		fork("fork-cat", cat),
		fork("fork-cecho", cecho, "cecho"),
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

// variantNames is the variants' names, comma-separated.
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
	tools  tools
	arts   artifacts
	logDir string
	clk    float64 // clock ticks per second
	body   string
	script string // path of post.lua
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
	// Fresh: health-checked only; idle: after one request, before load.
	for i, metric := range []string{"rss_fresh_kb", "rss_idle_kb"} {
		if i == 1 {
			if err := probe(ctx, base+"/", b.body, nil); err != nil {
				r.Flag("%s", report.Truncate(err.Error(), 200))
			}
		}
		st, err := readStatus("/proc", srv.pid())
		if err != nil {
			return err
		}
		r.Put(metric, float64(st.RSSKB))
	}
	w := wrkRun{Bin: b.tools.wrk, Script: b.script, URL: base + "/", Threads: b.cfg.Threads, Conns: v.Conns, Body: b.body}
	if err := warmUp(ctx, w, b.cfg.Warmup); err != nil {
		return err
	}
	w.Duration = b.cfg.Duration
	// sample reads the CPU of the server's tree and of the host, and the time.
	sample := func() (uint64, hostCPU, time.Time, error) {
		tree, err := processTree("/proc", srv.pid())
		host, herr := readHostCPU("/proc")
		return treeCPU(tree), host, time.Now(), cmp.Or(err, herr)
	}
	before, hostBefore, t0, err := sample()
	if err != nil {
		return err
	}
	res, wrkCPU, err := runWrk(ctx, w)
	if err != nil {
		return err
	}
	// Let requests still in flight finish (a fork-mode child must be
	// reaped to count) before the second sample.
	time.Sleep(100 * time.Millisecond)
	after, hostAfter, t1, err := sample()
	if err != nil {
		return err
	}
	if after < before {
		return fmt.Errorf("cpu went backwards (%d → %d ticks): a process left the tree unreaped", before, after)
	}
	cpu, wall := float64(after-before)/b.clk, t1.Sub(t0).Seconds()
	if n := res.errorCount(); n > 0 {
		r.Flag("%d request errors", n)
	}
	r.PutAll(map[string]float64{"requests": float64(res.Requests), "errors": float64(res.errorCount()),
		"cpu_per_req_us": cpu / float64(res.Requests) * 1e6, "wrk_core_pct": 100 * wrkCPU.Seconds() / wall})
	b.putHost(r, hostBefore, hostAfter, wall, cpu+wrkCPU.Seconds())
	return nil
}

// putHost puts, in percent of one core over wall seconds, the host's busy
// time not accounted for by ours (CPU seconds of the measured processes
// and wrk), and the time stolen by the hypervisor.
func (b *watchdogBench) putHost(r *report.Row, before, after hostCPU, wall, ours float64) {
	busy := float64(after.Busy-before.Busy) / b.clk
	r.Put("other_core_pct", 100*(busy-ours)/wall).Put("steal_core_pct", 100*float64(after.Steal-before.Steal)/b.clk/wall)
}

// runFloor runs spawnloop for the configured duration.
func (b *watchdogBench) runFloor(ctx context.Context, v variant, r *report.Row) error {
	host0, err := readHostCPU("/proc")
	t0 := time.Now()
	if err != nil {
		return err
	}
	res, err := runFloor(ctx, b.arts.path("spawnloop"), b.cfg.Duration, b.body, v.floor(b.arts))
	wall := time.Since(t0).Seconds()
	host1, herr := readHostCPU("/proc")
	if err = cmp.Or(err, herr); err != nil {
		return err
	}
	r.PutAll(map[string]float64{"requests": float64(res.Iterations), "errors": 0, "cpu_per_req_us": res.CPUPerIterUS})
	b.putHost(r, host0, host1, wall, res.CPUS)
	if d := res.HarnessCPUS - res.CPUS; d > 0.05*res.CPUS || -d > 0.05*res.CPUS {
		return fmt.Errorf("spawnloop reports %.3f s CPU, wait4 %.3f s", res.CPUS, res.HarnessCPUS)
	}
	return nil
}

// Kinds of variant.
const (
	kindHTTP  = "http"  // a server under wrk
	kindFloor = "floor" // spawnloop: no server, no HTTP
)

// watchdogSummary summarises the rows by variant into rep: the variants'
// table, the goals (sizes: the built binaries') and the notes.
func watchdogSummary(rep *report.Report, variants []variant, sizes map[string]int64) {
	groups := report.Summarize(rep.Rows, "run", "variant")
	report.Sort(groups, "variant", strings.Split(variantNames(variants), ","))
	rep.Summary = groups
	rep.Tables = append(rep.Tables, report.GroupTable("", groups, "variant",
		report.Stat("CPU/req µs", "cpu_per_req_us", "%.1f"), report.Spread("range µs", "cpu_per_req_us", "%.1f"),
		report.Scaled("fresh RSS MB", "rss_fresh_kb", "%.2f", 1024/mb), report.Scaled("idle after traffic RSS MB", "rss_idle_kb", "%.2f", 1024/mb),
		report.Stat("wrk core %", "wrk_core_pct", "%.0f"), report.Stat("other %", "other_core_pct", "%.0f"),
		report.Stat("errors", "errors", "%.0f")))
	rep.Goals = watchdogGoals(groups, sizes)
	rep.Notes = append(rep.Notes, anomalies(groups, "variant")...)
}

// watchdogGoals are the targets for the watchdog.
func watchdogGoals(groups []report.Group, sizes map[string]int64) []report.Goal {
	g := report.NewGoal
	ratio := func(a, b string, limit float64) report.Goal {
		return g(fmt.Sprintf("%s CPU/req ≤ %g× %s", a, limit, b), "×", limit).Ratio(groups, "variant", a, b, "cpu_per_req_us")
	}
	rss := func(name, variant, metric, note string) report.Goal {
		return g(name, "MB", 6).Noted("%s", note).OverScaled(groups, "variant", variant, metric, 1024/mb)
	}
	const upstream = "the watchdog process; the upstream is the function"
	goals := []report.Goal{
		ratio("inproc", "bare", 1.05),
		g("http CPU/req ≤ 0.04 ms (watchdog + upstream)", "µs", 40).Over(groups, "variant", "http", "cpu_per_req_us"),
		ratio("fork-cat", "spawnloop-cat", 1.1),
		ratio("fork-cecho", "spawnloop-cecho", 1.1),
		rss("inproc idle RSS ≤ 6 MB (fresh, health checks only)", "inproc", "rss_fresh_kb", ""),
		rss("inproc idle RSS ≤ 6 MB (after traffic)", "inproc", "rss_idle_kb", ""),
		rss("http watchdog idle RSS ≤ 6 MB (fresh, health checks only)", "http", "rss_fresh_kb", upstream),
		rss("http watchdog idle RSS ≤ 6 MB (after traffic)", "http", "rss_idle_kb", upstream),
		rss("fork watchdog idle RSS ≤ 6 MB (fresh, health checks only)", "fork-cecho", "rss_fresh_kb", ""),
		rss("fork watchdog idle RSS ≤ 6 MB (after traffic)", "fork-cecho", "rss_idle_kb", ""),
	}
	img := g("image ≤ 7 MB (proxy: inproc binary)", "MB", 7).Noted("static stripped watchdog + Go echo; a FROM scratch image adds only metadata")
	if n, ok := sizes["inproc"]; ok {
		img = img.Check(float64(n) / mb)
	} else {
		img = img.Skipped("inproc did not build")
	}
	return append(goals, img)
}

// Thresholds above which anomalies writes a note.
const (
	wrkSaturatedPct = 90 // wrk's core: the load generator is the limit
	otherLoadPct    = 20 // foreign CPU during the window
	stealPct        = 5  // hypervisor steal
	cpuSpreadFrac   = 0.10
)

// anomalies returns notes on numbers to read with care, for groups named
// by their label k: a saturated wrk, other load, steal, a wide CPU/req
// spread, and every flag.
func anomalies(groups []report.Group, k string) []string {
	var notes []string
	for _, g := range groups {
		if g.Runs == 0 {
			continue
		}
		name := g.Label(k)
		if v := g.M("wrk_core_pct"); v >= wrkSaturatedPct {
			notes = append(notes, fmt.Sprintf("%s: wrk used %.0f%% of a core: the load generator, not the server, bounded the load", name, v))
		}
		if v := g.M("other_core_pct"); v >= otherLoadPct {
			notes = append(notes, fmt.Sprintf("%s: other processes used %.0f%% of a core during the runs (median)", name, v))
		}
		if v := g.M("steal_core_pct"); v >= stealPct {
			notes = append(notes, fmt.Sprintf("%s: the hypervisor stole %.0f%% of a core (median)", name, v))
		}
		if lo, hi, m := g.Min["cpu_per_req_us"], g.Max["cpu_per_req_us"], g.M("cpu_per_req_us"); g.Runs > 1 && hi-lo > cpuSpreadFrac*m {
			notes = append(notes, fmt.Sprintf("%s: CPU/req ranged %.1f–%.1f µs across rounds (median %.1f)", name, lo, hi, m))
		}
		for _, f := range g.Flags {
			notes = append(notes, name+": "+f)
		}
	}
	return notes
}
