// Command run is Pulse's benchmark harness.
//
//	go run ./bench/run -suite watchdog [-rounds 5] [-duration 5s] [-quick] [-out DIR]
//	go run ./bench/run -suite functions [-trials 3] [-scale-trials 10] [-quick] [-out DIR]
//	go run ./bench/run -suite gateway [-rounds 5] [-duration 5s] [-scale-trials 10] [-quick] [-out DIR]
//	go run ./bench/run -suite soak [-soak-duration 10m] [-out DIR]
//
// The watchdog suite builds the programs it measures (bench/echo,
// bench/inproc, cmd/pulse-watchdog, bench/c), then runs every variant once
// per round in a rotated order, several rounds: each HTTP variant's server
// is started on a free loopback port, checked, warmed up and loaded with
// wrk (bench/wrk/post.lua), and the C floors run spawnloop. It reports
// medians of throughput, latency and CPU per request (the CPU of the server
// and every process it started, read from /proc), resident memory and
// binary sizes, checks them against the goals, writes everything to
// bench/results/watchdog-<UTC time>.json, prints a table, and refreshes the
// results section of bench/README.md (not for -quick or -only runs).
//
// Every process it starts runs in its own process group and is killed when
// its run ends, when the harness is interrupted, or (Pdeathsig) when the
// harness dies.
//
// The functions suite (functions*.go) measures Pulse's function packaging on
// the local Docker Engine in single-node swarm mode, through package
// function: build time and image size per template, a +1 scale to the new
// replica answering, deploy to the first 200, and the CPU that Docker's exec
// health checks cost. Everything it creates on the engine carries the run's
// unique name prefix and is removed when it ends or is interrupted. It
// writes bench/results/functions-<UTC time>.json and refreshes its own
// section of bench/README.md.
//
// The gateway suite (gateway*.go) runs pulsed (cmd/pulsed, built here) as
// a process with its HAProxy on loopback ports, deploys an in-process Go
// echo function, and measures what HAProxy adds: latency at c=1 and
// throughput at c=50 through the gateway against straight to the replica,
// the two balancing algorithms over 3 replicas, and the time from a new
// task turning running to its server taking traffic. It writes
// bench/results/gateway-<UTC time>.json and refreshes its own section of
// bench/README.md.
//
// The soak suite (soak.go) runs the whole stack with the autoscaler on
// (pulsed, HAProxy, a lab Netdata with pulse.d.plugin, the alarms and the
// hook: lab.go). First, with pulsed at its defaults, the fair CPU
// comparison (soak_fair.go: one pinned replica, through the gateway against
// straight to it) and health under saturation (soak_sat.go); then, with
// HAProxy's request log, -soak-duration of stepping closed-loop load
// through the gateway, with a rolling update and a killed replica, every
// failed request attributed to HAProxy's server and the replica behind it.
// It writes bench/results/soak-<UTC time>.json with a picture beside it
// (.png).
//
// Replicas serve only requests carrying their instance's replica
// credential (contract/auth.go). Every suite that deploys runs as its own
// instance and makes its credential before its first deploy, as pulsed
// does: a file and the Docker secret replicas mount (credential.go),
// removed when the run ends, after its services. Every pulsed it starts
// reads the file (PULSE_REPLICA_AUTH_FILE), every lab Netdata's collector
// presents it, and every request straight to a replica (readiness, probes,
// wrk through post.lua's BENCH_HEADERS) carries the header; the collector
// suite's watchdogs check a credential of the run too. The watchdog suite's
// processes run without it and check nothing.
//
// What the suites share has one home each: engine.go (engine calls and
// their time limits, run IDs, the stage runner), sweep.go (the final
// sweep of a run's services, containers, images and credential), proc.go
// (reading /proc), stats.go (medians, percentiles) and report.go (the
// report's head and end, tables, sections, goals and notes, the README).
// Each suite's own files hold only that suite's logic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "bench", "suite", cfg.Suite)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, log, os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err != nil && interrupted:
		log.Error("interrupted; everything the harness started is stopped and removed", "err", err)
		os.Exit(130)
	case err != nil:
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
}

// config is the harness's configuration, from flags.
type config struct {
	Suite     string
	Rounds    int
	Duration  time.Duration
	Warmup    time.Duration
	QuietWait time.Duration
	Out       string
	Readme    string
	Quick     bool
	Threads   int
	Conns     int
	ForkConns int
	BodyBytes int
	Only      []string
	// The functions suite's: build and deploy trials per template, +1
	// scale trials per health interval, and the length of each idle CPU
	// window.
	Trials      int
	ScaleTrials int
	IdleWindow  time.Duration
	// The soak suite's length (whole minutes).
	SoakDuration time.Duration
}

// The suites the harness knows.
const (
	suiteWatchdog  = "watchdog"
	suiteFunctions = "functions"
	suiteGateway   = "gateway"
)

var suites = []string{suiteWatchdog, suiteFunctions, suiteGateway, suiteAutoscale, suiteSoak}

func defaultConfig() config {
	return config{
		Rounds: 5, Duration: 5 * time.Second, Warmup: time.Second, QuietWait: 3 * time.Second, Threads: 1, Conns: 16, ForkConns: 4, BodyBytes: 64,
		Trials: 3, ScaleTrials: 10, IdleWindow: 10 * time.Second, SoakDuration: soakDefault,
	}
}

// parseFlags parses the command line into a validated config.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Suite, "suite", "", "suite to run: "+strings.Join(suites, ", ")+" (required)")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds; each runs every variant once, in a rotated order")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured load per variant per round (whole seconds)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured wrk run before each measured one (whole seconds; 0 for none)")
	fs.DurationVar(&cfg.QuietWait, "quiet-wait", cfg.QuietWait, "before each run, wait up to this long for the host to be quiet (under 25% of a core busy)")
	fs.StringVar(&cfg.Out, "out", "", "directory for the JSON results (default <module>/bench/results)")
	fs.StringVar(&cfg.Readme, "readme", "", "README whose results section is refreshed (default <module>/bench/README.md; \"-\" for none)")
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke run (watchdog ~30 s: 1 round of 2 s; functions ~1 min: 1 trial, 3 scale trials, 3 s idle windows; gateway ~1 min: 1 round of 2 s, 3 scale trials) unless other flags say otherwise; leaves the README alone")
	fs.IntVar(&cfg.Threads, "threads", cfg.Threads, "wrk threads")
	fs.IntVar(&cfg.Conns, "c", cfg.Conns, "wrk connections for the in-memory HTTP variants (bare, inproc, http)")
	fs.IntVar(&cfg.ForkConns, "c-fork", cfg.ForkConns, "wrk connections for the fork-mode variants")
	fs.IntVar(&cfg.BodyBytes, "body", cfg.BodyBytes, "request body size in bytes (1-4096)")
	fs.IntVar(&cfg.Trials, "trials", cfg.Trials, "functions: build trials (cold and warm) and deploy trials per template")
	fs.IntVar(&cfg.ScaleTrials, "scale-trials", cfg.ScaleTrials, "functions: +1 scale trials per health interval; gateway: +1 scale trials")
	fs.DurationVar(&cfg.IdleWindow, "idle-window", cfg.IdleWindow, "functions: length of each idle window of the health-check CPU measurement")
	fs.DurationVar(&cfg.SoakDuration, "soak-duration", cfg.SoakDuration, "soak: length of the load, whole minutes, at least 3m (shorter than 10m leaves the README alone)")
	only := fs.String("only", "", "comma-separated variants (watchdog) or stages: "+strings.Join(functionStages, ",")+" (functions), "+
		strings.Join(gatewayStages, ",")+" (gateway) to run (default all); leaves the README alone")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() != 0 {
		return config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["rounds"] {
			cfg.Rounds = 1
		}
		if !set["duration"] {
			cfg.Duration = 2 * time.Second
		}
		if !set["quiet-wait"] {
			cfg.QuietWait = time.Second
		}
		if !set["trials"] {
			cfg.Trials = 1
		}
		if !set["scale-trials"] {
			cfg.ScaleTrials = 3
		}
		if !set["idle-window"] {
			cfg.IdleWindow = 3 * time.Second
		}
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	return cfg, cfg.Validate()
}

// Validate checks the config.
func (c config) Validate() error {
	var errs []error
	if !slices.Contains(suites, c.Suite) {
		errs = append(errs, fmt.Errorf("-suite %q: want one of %s", c.Suite, strings.Join(suites, ", ")))
	}
	if c.Rounds < 1 {
		errs = append(errs, fmt.Errorf("-rounds %d: want at least 1", c.Rounds))
	}
	if c.Duration < time.Second || c.Duration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("-duration %s: want whole seconds, at least 1s (wrk's unit)", c.Duration))
	}
	if c.Warmup < 0 || c.Warmup%time.Second != 0 {
		errs = append(errs, fmt.Errorf("-warmup %s: want whole seconds", c.Warmup))
	}
	if c.QuietWait < 0 {
		errs = append(errs, fmt.Errorf("-quiet-wait %s: want 0 or more", c.QuietWait))
	}
	if c.Threads < 1 || c.Conns < c.Threads || c.ForkConns < c.Threads {
		errs = append(errs, fmt.Errorf("-threads %d -c %d -c-fork %d: want 1 <= threads <= connections", c.Threads, c.Conns, c.ForkConns))
	}
	if c.BodyBytes < 1 || c.BodyBytes > 4096 {
		errs = append(errs, fmt.Errorf("-body %d: want 1-4096", c.BodyBytes))
	}
	if c.Trials < 1 || c.ScaleTrials < 1 {
		errs = append(errs, fmt.Errorf("-trials %d -scale-trials %d: want at least 1", c.Trials, c.ScaleTrials))
	}
	if c.IdleWindow < time.Second {
		errs = append(errs, fmt.Errorf("-idle-window %s: want at least 1s", c.IdleWindow))
	}
	if c.SoakDuration < soakMinDuration || c.SoakDuration%soakStep != 0 {
		errs = append(errs, fmt.Errorf("-soak-duration %s: want whole minutes, at least %s", c.SoakDuration, soakMinDuration))
	}
	if c.Suite == suiteFunctions {
		for _, st := range c.Only {
			if !slices.Contains(functionStages, st) {
				errs = append(errs, fmt.Errorf("-only %s: no such stage of the functions suite; want some of %s", st, strings.Join(functionStages, ",")))
			}
		}
	}
	if c.Suite == suiteGateway {
		for _, st := range c.Only {
			if !slices.Contains(gatewayStages, st) {
				errs = append(errs, fmt.Errorf("-only %s: no such stage of the gateway suite; want some of %s", st, strings.Join(gatewayStages, ",")))
			}
		}
	}
	return errors.Join(errs...)
}

// run runs the configured suite.
func run(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) error {
	started := time.Now().UTC()
	t, err := findTools(cfg.Suite)
	if err != nil {
		return err
	}
	root, err := moduleRoot(ctx, t.goBin)
	if err != nil {
		return err
	}
	if cfg.Out == "" {
		cfg.Out = filepath.Join(root, "bench", "results")
	}
	if cfg.Readme == "" {
		cfg.Readme = filepath.Join(root, "bench", "README.md")
	}
	tmp, err := os.MkdirTemp("", "pulse-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if strings.ContainsAny(tmp, " \t\n") {
		return fmt.Errorf("temp dir %q has whitespace: PULSE_EXEC splits on it (set TMPDIR)", tmp)
	}
	clk, clkNote := clockTicks(ctx)
	env := suiteEnv{tools: t, root: root, tmp: tmp, clk: clk, clkNote: clkNote, started: started}
	switch cfg.Suite {
	case suiteFunctions:
		return runFunctions(ctx, cfg, log, stdout, env)
	case suiteGateway:
		return runGateway(ctx, cfg, log, stdout, env)
	case suiteCollector:
		return runCollector(ctx, cfg, log, stdout, env)
	case suiteAutoscale:
		return runAutoscale(ctx, cfg, log, stdout, env)
	case suiteSoak:
		return runSoak(ctx, cfg, log, stdout, env)
	}
	return runWatchdog(ctx, cfg, log, stdout, env)
}

// suiteEnv is what every suite starts from.
type suiteEnv struct {
	tools   tools
	root    string // the module's root
	tmp     string // the run's temporary directory, removed when it ends
	clk     float64
	clkNote string // why clk is a guess, or ""
	started time.Time
}

// runWatchdog runs the watchdog suite.
func runWatchdog(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	t, root, tmp, clk, clkNote, started := env.tools, env.root, env.tmp, env.clk, env.clkNote, env.started
	logDir := filepath.Join(tmp, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	rep := report{runHead: newRunHead(cfg.Suite, started), Config: newReportConfig(cfg), Machine: collectMachine(ctx, t, clk)}
	if clkNote != "" {
		rep.Notes = append(rep.Notes, clkNote)
	}
	log.Info("building", "root", root)
	arts, err := build(ctx, log, root, watchdogBuilds(t, tmp))
	if err != nil {
		return err
	}
	for _, n := range []string{"echo", "inproc", "watchdog", "watchdog-http", "cecho", "spawnloop"} {
		rep.Artifacts = append(rep.Artifacts, *arts[n])
	}

	variants := watchdogVariants(t.cat, cfg.Conns, cfg.ForkConns)
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
		cfg: cfg, log: log, tools: t, arts: arts, logDir: logDir, clk: clk,
		body:   payload(cfg.BodyBytes),
		script: filepath.Join(root, "bench", "wrk", "post.lua"),
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

	return publish(cfg, stdout, started, rep, renderText(rep), func(rel string) string { return renderMarkdown(rep, rel) })
}

// publish writes a suite's report to <out>/<suite>-<UTC time>.json, prints
// its text rendering, and (unless the run is partial) refreshes the suite's
// section of the README with markdown(path of the JSON relative to it).
func publish(cfg config, stdout io.Writer, started time.Time, rep any, text string, markdown func(rel string) string) error {
	jsonPath := filepath.Join(cfg.Out, cfg.Suite+"-"+started.Format("20060102T150405Z")+".json")
	if err := writeJSON(jsonPath, rep); err != nil {
		return err
	}
	fmt.Fprint(stdout, text)
	fmt.Fprintf(stdout, "\nresults: %s\n", jsonPath)
	if cfg.Quick || len(cfg.Only) > 0 || cfg.Readme == "-" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(cfg.Readme), jsonPath)
	if err != nil {
		rel = jsonPath
	}
	if err := updateReadme(cfg.Readme, cfg.Suite, markdown(filepath.ToSlash(rel))); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "README:  %s\n", cfg.Readme)
	return nil
}

// payload is the request body: n bytes of hex digits.
func payload(n int) string {
	return strings.Repeat("0123456789abcdef", n/16+1)[:n]
}

func variantNames(vs []variant) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.Name
	}
	return strings.Join(names, ",")
}
