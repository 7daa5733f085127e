// Command run is Pulse's benchmark harness: `go run ./bench/run -suite X`
// runs one suite, writes bench/results/X-<UTC time>.json, prints its report
// and refreshes its section of bench/README.md (not for -quick or -only
// runs). bench/README.md explains each suite, its flags and its goals.
//
// Every process the harness starts runs in its own process group and dies
// with its run or with the harness (Pdeathsig); everything a suite creates
// on the engine carries the run's name prefix or label and is removed when
// it ends or is interrupted.
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

	"github.com/pulsefaas/pulse/bench/report"
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
	Suite, Out, Readme                           string
	Rounds, Threads, Conns, ForkConns, BodyBytes int
	Trials, ScaleTrials                          int // functions: build and deploy trials per template; +1 scale trials
	Duration, Warmup, QuietWait, SoakDuration    time.Duration
	Quick                                        bool
	Only                                         []string
	Flags                                        map[string]string // every flag's value as parsed, kept with the results
}

// suites are the suites the harness knows (each names itself in its file).
var suites = []string{suiteWatchdog, suiteFunctions, suiteGateway, suiteAutoscale, suiteSoak, suiteCollector, suiteCluster, suiteAsync}

// defaultConfig is the configuration of a command line that sets nothing.
func defaultConfig() config {
	return config{
		Rounds: 5, Duration: 5 * time.Second, Warmup: time.Second, QuietWait: 3 * time.Second, Threads: 1, Conns: 16, ForkConns: 4, BodyBytes: 64,
		Trials: 3, ScaleTrials: 10, SoakDuration: soakDefault,
	}
}

// parseFlags parses the command line into a validated config. A -quick
// command line is parsed again over the quick defaults: the flags it sets win.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg, err := parseFlagsOver(defaultConfig(), args, stderr)
	if err == nil && cfg.Quick {
		q := defaultConfig()
		q.Rounds, q.Duration, q.QuietWait, q.Trials, q.ScaleTrials = 1, 2*time.Second, time.Second, 1, 3
		cfg, err = parseFlagsOver(q, args, stderr)
	}
	if err != nil {
		return config{}, err
	}
	return cfg, cfg.Validate()
}

// parseFlagsOver parses args over the defaults cfg.
func parseFlagsOver(cfg config, args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Suite, "suite", "", "suite to run: "+strings.Join(suites, ", ")+" (required)")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds; each runs every variant once, in a rotated order (async: also the queuescale bursts)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured load per variant per round (whole seconds)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured wrk run before each measured one (whole seconds; 0 for none)")
	fs.DurationVar(&cfg.QuietWait, "quiet-wait", cfg.QuietWait, "before each run, wait up to this long for the host to be quiet (under 25% of a core busy)")
	fs.StringVar(&cfg.Out, "out", "", "directory for the JSON results (default <module>/bench/results)")
	fs.StringVar(&cfg.Readme, "readme", "", "README whose results section is refreshed (default <module>/bench/README.md; \"-\" for none)")
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke run (watchdog ~30 s: 1 round of 2 s; functions ~1 min: 1 trial, 3 scale trials; gateway ~1 min: 1 round of 2 s, 3 scale trials) unless other flags say otherwise; leaves the README alone")
	fs.IntVar(&cfg.Threads, "threads", cfg.Threads, "wrk threads")
	fs.IntVar(&cfg.Conns, "c", cfg.Conns, "wrk connections for the in-memory HTTP variants (bare, inproc, http)")
	fs.IntVar(&cfg.ForkConns, "c-fork", cfg.ForkConns, "wrk connections for the fork-mode variants")
	fs.IntVar(&cfg.BodyBytes, "body", cfg.BodyBytes, "request body size in bytes (1-4096)")
	fs.IntVar(&cfg.Trials, "trials", cfg.Trials, "functions: build trials (cold and warm) and deploy trials per template")
	fs.IntVar(&cfg.ScaleTrials, "scale-trials", cfg.ScaleTrials, "functions: +1 scale trials per health interval; gateway: +1 scale trials")
	fs.DurationVar(&cfg.SoakDuration, "soak-duration", cfg.SoakDuration, "soak: length of the load, whole minutes, at least 3m (shorter than 10m leaves the README alone)")
	only := fs.String("only", "", "comma-separated variants (watchdog) or stages: "+strings.Join(functionStages, ",")+" (functions), "+
		strings.Join(gatewayStages, ",")+" (gateway), "+strings.Join(autoscaleStages, ",")+" (autoscale), "+strings.Join(clusterStages, ",")+" (cluster), "+strings.Join(asyncStages, ",")+" (async) to run (default all); leaves the README alone")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() != 0 {
		return config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Flags = map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { cfg.Flags[f.Name] = f.Value.String() })
	return cfg, nil
}

// Validate checks the config.
func (c config) Validate() error {
	var errs []error
	check := func(bad bool, format string, a ...any) {
		if bad {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(!slices.Contains(suites, c.Suite), "-suite %q: want one of %s", c.Suite, strings.Join(suites, ", "))
	check(c.Rounds < 1, "-rounds %d: want at least 1", c.Rounds)
	check(c.Duration < time.Second || c.Duration%time.Second != 0, "-duration %s: want whole seconds, at least 1s (wrk's unit)", c.Duration)
	check(c.Warmup < 0 || c.Warmup%time.Second != 0, "-warmup %s: want whole seconds", c.Warmup)
	check(c.QuietWait < 0, "-quiet-wait %s: want 0 or more", c.QuietWait)
	check(c.Threads < 1 || c.Conns < c.Threads || c.ForkConns < c.Threads,
		"-threads %d -c %d -c-fork %d: want 1 <= threads <= connections", c.Threads, c.Conns, c.ForkConns)
	check(c.BodyBytes < 1 || c.BodyBytes > 4096, "-body %d: want 1-4096", c.BodyBytes)
	check(c.Trials < 1 || c.ScaleTrials < 1, "-trials %d -scale-trials %d: want at least 1", c.Trials, c.ScaleTrials)
	check(c.SoakDuration < soakMinDuration || c.SoakDuration%soakStep != 0,
		"-soak-duration %s: want whole minutes, at least %s", c.SoakDuration, soakMinDuration)
	if stages, ok := map[string][]string{suiteFunctions: functionStages, suiteGateway: gatewayStages, suiteCluster: clusterStages, suiteAutoscale: autoscaleStages, suiteAsync: asyncStages}[c.Suite]; ok {
		for _, st := range c.Only {
			check(!slices.Contains(stages, st), "-only %s: no such stage of the %s suite; want some of %s", st, c.Suite, strings.Join(stages, ","))
		}
	}
	return errors.Join(errs...)
}

// stages is all with only the stages -only names (all without -only), in
// all's order; Validate checked -only against them.
func (c config) stages(all []string) []string {
	return slices.DeleteFunc(slices.Clone(all), func(s string) bool { return len(c.Only) > 0 && !slices.Contains(c.Only, s) })
}

// run runs the configured suite.
func run(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) error {
	started := time.Now().UTC()
	t, err := findTools(cfg.Suite)
	if err != nil {
		return err
	}
	gomod, err := commandOutput(ctx, t.goBin, "env", "GOMOD")
	if err == nil && (gomod == "" || gomod == os.DevNull) {
		err = errors.New("not inside a module (run from the Pulse repository)")
	}
	if err != nil {
		return fmt.Errorf("module root: %w", err)
	}
	root := filepath.Dir(gomod)
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
	runSuite := map[string]func(context.Context, config, *slog.Logger, io.Writer, suiteEnv) error{
		suiteWatchdog: runWatchdog, suiteFunctions: runFunctions, suiteGateway: runGateway,
		suiteCollector: runCollector, suiteAutoscale: runAutoscale, suiteSoak: runSoak, suiteCluster: runCluster, suiteAsync: runAsync,
	}[cfg.Suite]
	return runSuite(ctx, cfg, log, stdout, env)
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

// noteMachine records the machine in rep (and why its clock is a guess).
func noteMachine(ctx context.Context, rep *report.Report, env suiteEnv) machineInfo {
	m := collectMachine(ctx, env.tools, env.clk)
	rep.Machine = m
	if env.clkNote != "" {
		rep.Note("%s", env.clkNote)
	}
	return m
}

// publishReport writes rep to <out>/<suite>-<UTC time>.json, prints it and,
// unless the run is partial, refreshes the suite's README section.
func publishReport(cfg config, stdout io.Writer, rep *report.Report) error {
	if rep.Config == nil {
		rep.Config = cfg.Flags
	}
	readme := cfg.Readme
	if cfg.Quick || len(cfg.Only) > 0 || cfg.Readme == "-" {
		readme = ""
	}
	fmt.Fprint(stdout, rep.Render(false, ""))
	path, err := rep.Publish(cfg.Out, readme)
	if path != "" {
		fmt.Fprintf(stdout, "\nresults: %s\n", path)
	}
	if err == nil && readme != "" {
		fmt.Fprintf(stdout, "README:  %s\n", readme)
	}
	return err
}

// payload is the request body: n bytes of hex digits.
func payload(n int) string {
	return strings.Repeat("0123456789abcdef", n/16+1)[:n]
}

// mb is a decimal megabyte (Docker's unit): goals in MB use it.
const mb = 1e6
