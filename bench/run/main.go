// Command run is Pulse's benchmark harness.
//
//	go run ./bench/run -suite watchdog [-rounds 5] [-duration 5s] [-quick] [-out DIR]
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
		log.Error("interrupted; every process the harness started is stopped", "err", err)
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
}

// suites are the benchmark suites the harness knows.
var suites = []string{"watchdog"}

func defaultConfig() config {
	return config{Rounds: 5, Duration: 5 * time.Second, Warmup: time.Second, QuietWait: 3 * time.Second, Threads: 1, Conns: 16, ForkConns: 4, BodyBytes: 64}
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
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke run of about 30 s: 1 round of 2 s unless -rounds/-duration say otherwise; leaves the README alone")
	fs.IntVar(&cfg.Threads, "threads", cfg.Threads, "wrk threads")
	fs.IntVar(&cfg.Conns, "c", cfg.Conns, "wrk connections for the in-memory HTTP variants (bare, inproc, http)")
	fs.IntVar(&cfg.ForkConns, "c-fork", cfg.ForkConns, "wrk connections for the fork-mode variants")
	fs.IntVar(&cfg.BodyBytes, "body", cfg.BodyBytes, "request body size in bytes (1-4096)")
	only := fs.String("only", "", "comma-separated variants to run (default all); leaves the README alone")
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
	return errors.Join(errs...)
}

// run runs the configured suite.
func run(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) error {
	started := time.Now().UTC()
	t, err := findTools()
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
	logDir := filepath.Join(tmp, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}

	clk, clkNote := clockTicks(ctx)
	rep := report{Suite: cfg.Suite, Started: started.Format(time.RFC3339), Config: newReportConfig(cfg), Machine: collectMachine(ctx, t, clk)}
	if clkNote != "" {
		rep.Notes = append(rep.Notes, clkNote)
	}
	log.Info("building", "root", root)
	arts, err := build(ctx, log, root, watchdogBuilds(t, tmp))
	if err != nil {
		return err
	}
	for _, n := range []string{"echo", "inproc", "watchdog", "cecho", "spawnloop"} {
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

	jsonPath := filepath.Join(cfg.Out, "watchdog-"+started.Format("20060102T150405Z")+".json")
	if err := writeJSON(jsonPath, rep); err != nil {
		return err
	}
	fmt.Fprint(stdout, renderText(rep))
	fmt.Fprintf(stdout, "\nresults: %s\n", jsonPath)
	if cfg.Quick || len(cfg.Only) > 0 || cfg.Readme == "-" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(cfg.Readme), jsonPath)
	if err != nil {
		rel = jsonPath
	}
	if err := updateReadme(cfg.Readme, renderMarkdown(rep, filepath.ToSlash(rel))); err != nil {
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
