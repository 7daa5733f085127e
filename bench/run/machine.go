package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
)

// tools are the external programs the harness runs: gxx is the functions
// suite's C++ compiler, haproxy pulsed's.
type tools struct{ goBin, gcc, wrk, cat, gxx, haproxy string }

// findTools looks up in PATH the tools suite needs (go also in
// /usr/local/go/bin, for `go run` from a shell whose PATH lacks it).
func findTools(suite string) (tools, error) {
	var missing []string
	look := func(name string, extra ...string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, p := range extra {
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	t := tools{goBin: look("go", "/usr/local/go/bin/go")}
	switch suite {
	case suiteSoak, suiteCluster, suiteAutoscale: // gcc for the static C handlers
		t.gcc, t.haproxy = look("gcc"), look("haproxy")
	case suiteGateway: // no C compiler needed; its version is recorded if there is one
		t.gcc, _ = exec.LookPath("gcc")
		t.wrk, t.haproxy = look("wrk"), look("haproxy")
	case suiteAsync: // wrk for the enqueue stage, gcc for the queuescale stage's C handler
		t.gcc, t.wrk, t.haproxy = look("gcc"), look("wrk"), look("haproxy")
	case suiteFunctions:
		t.gcc, t.gxx = look("gcc"), look("g++")
	default:
		t.gcc, t.wrk, t.cat = look("gcc"), look("wrk"), look("cat")
	}
	if len(missing) > 0 {
		return tools{}, fmt.Errorf("not found in PATH: %s", strings.Join(missing, ", "))
	}
	if t.cat != "" { // fork mode splits PULSE_EXEC on whitespace and wants an absolute path
		abs, err := filepath.EvalSymlinks(t.cat)
		if err != nil {
			return tools{}, fmt.Errorf("resolve cat: %w", err)
		}
		t.cat = abs
	}
	return t, nil
}

// machineInfo describes where the numbers were measured.
type machineInfo struct {
	CPUs       int     `json:"cpus"`
	CPUModel   string  `json:"cpu_model"`
	Kernel     string  `json:"kernel"`
	Go         string  `json:"go"`
	Wrk        string  `json:"wrk,omitempty"`
	GCC        string  `json:"gcc"`
	GXX        string  `json:"gxx,omitempty"`
	ClockTicks float64 `json:"clock_ticks"`
	Load1      float64 `json:"load1_at_start"`
}

// collectMachine gathers machineInfo; what it cannot read it leaves empty.
func collectMachine(ctx context.Context, t tools, clk float64) machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), ClockTicks: clk}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.Go, _ = commandOutput(ctx, t.goBin, "version")
	if t.wrk != "" { // wrk -v prints its version and usage, and exits 1
		out, _ := exec.CommandContext(ctx, t.wrk, "-v").CombinedOutput()
		first, _, _ := strings.Cut(string(out), "\n")
		m.Wrk = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(first), "Copyright (C) 2012 Will Glozer"))
	}
	if t.gcc != "" {
		m.GCC, _ = commandOutput(ctx, t.gcc, "-dumpfullversion")
	}
	if t.gxx != "" {
		m.GXX, _ = commandOutput(ctx, t.gxx, "-dumpfullversion")
	}
	m.Load1, _ = readLoad1("/proc")
	return m
}

// commandOutput runs a short command and returns its trimmed stdout.
func commandOutput(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// quietCorePct is the host's busy CPU, in percent of one core, below which
// it is quiet enough to start a measurement.
const quietCorePct = 25

// waitQuiet samples the host's CPU in 500 ms windows until one is below
// quietCorePct or maxWait passed; it returns the wait and the last window's.
func waitQuiet(ctx context.Context, clk float64, maxWait time.Duration) (time.Duration, float64, error) {
	if maxWait == 0 {
		return 0, 0, nil
	}
	for start := time.Now(); ; {
		h0, err := readHostCPU("/proc")
		t0 := time.Now()
		if err == nil {
			err = sleepCtx(ctx, 500*time.Millisecond)
		}
		h1, err1 := readHostCPU("/proc")
		if err = cmp.Or(err, err1); err != nil {
			return 0, 0, err
		}
		busy := 100 * float64(h1.Busy-h0.Busy) / clk / time.Since(t0).Seconds()
		if busy < quietCorePct || time.Since(start) >= maxWait {
			return time.Since(start), busy, nil
		}
	}
}

// clockTicks returns USER_HZ from getconf, or 100 (Linux's usual value) and
// a note if getconf fails.
func clockTicks(ctx context.Context) (float64, string) {
	out, err := commandOutput(ctx, "getconf", "CLK_TCK")
	n, cerr := strconv.Atoi(out)
	if err == nil && cerr == nil && n > 0 {
		return float64(n), ""
	}
	return 100, fmt.Sprintf("getconf CLK_TCK said %q (%v): assumed 100", out, err)
}

// artifact is one program the harness builds.
type artifact struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Command string `json:"command"`
	Bytes   int64  `json:"bytes,omitempty"`
	Error   string `json:"error,omitempty"`
	path    string
}

// artifacts are the built programs, by name.
type artifacts map[string]*artifact

// path returns the built program's path ("" if it did not build).
func (a artifacts) path(name string) string {
	if x, ok := a[name]; ok && x.Error == "" {
		return x.path
	}
	return ""
}

// read returns the built program's bytes; one that did not build is an
// error that says so, with its build's error.
func (a artifacts) read(name string) ([]byte, error) {
	x, ok := a[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("artifact %s: not built in this run", name)
	case x.Error != "":
		return nil, fmt.Errorf("artifact %s did not build: %s", name, x.Error)
	}
	return os.ReadFile(x.path)
}

// missing returns the first of names that did not build, or "".
func (a artifacts) missing(names []string) string {
	for _, n := range names {
		if a.path(n) == "" {
			return n
		}
	}
	return ""
}

// sizes returns the size of every built artifact.
func (a artifacts) sizes() map[string]int64 {
	m := map[string]int64{}
	for n, x := range a {
		if x.Error == "" {
			m[n] = x.Bytes
		}
	}
	return m
}

// buildStep is how one artifact is built: argv, run in the module root with env.
type buildStep struct {
	name, source, out string
	argv, env         []string
}

// goStep builds pkg as an image's Go program is built (function/buildgo.go):
// static (no cgo), trimmed, stripped, with tags.
func goStep(t tools, dir, name, pkg, tags string) buildStep {
	out := filepath.Join(dir, name)
	argv := []string{t.goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out}
	if tags != "" {
		argv = append(argv, "-tags", tags)
	}
	return buildStep{name: name, source: pkg, out: out, argv: append(argv, pkg), env: []string{"CGO_ENABLED=0"}}
}

// pulsedStep builds cmd/pulsed as `make` does.
func pulsedStep(t tools, dir string) buildStep {
	out := filepath.Join(dir, "pulsed")
	return buildStep{name: "pulsed", source: "./cmd/pulsed", out: out, argv: []string{t.goBin, "build", "-o", out, "./cmd/pulsed"}}
}

// gccStep compiles the C file src to dir/name with flags.
func gccStep(t tools, dir, name, source, src string, flags ...string) buildStep {
	out := filepath.Join(dir, name)
	return buildStep{name: name, source: source, out: out, argv: append(append([]string{t.gcc}, flags...), "-o", out, src)}
}

// cStep writes the C program src to dir and compiles it statically, as a
// fork-mode handler (a failed write shows as gcc's failure).
func cStep(t tools, dir, name, src string) buildStep {
	file := filepath.Join(dir, name+".c")
	_ = os.WriteFile(file, []byte(src), 0o644)
	return gccStep(t, dir, name, "(generated) "+name+".c", file, "-static", "-O2", "-s")
}

// watchdogBuilds are the watchdog suite's programs; the watchdogs get the
// tags `pulse build` gives them in an image.
func watchdogBuilds(t tools, dir string) []buildStep {
	return []buildStep{
		goStep(t, dir, "echo", "./bench/echo", ""),
		goStep(t, dir, "inproc", "./bench/inproc", inprocTags),
		goStep(t, dir, "watchdog", "./cmd/pulse-watchdog", forkTags),
		goStep(t, dir, "watchdog-http", "./cmd/pulse-watchdog", "nethttpomithttp2,watchdog_nofork"),
		gccStep(t, dir, "cecho", "bench/c/echo.c", "bench/c/echo.c", "-static", "-O2", "-s"),
		gccStep(t, dir, "spawnloop", "bench/c/spawnloop.c", "bench/c/spawnloop.c", "-O2"),
	}
}

// Build tags of an image's in-process Go function and of a fork-mode
// image's watchdog, as `pulse build` gives them.
const (
	inprocTags = "nethttpomithttp2,watchdog_nofork,watchdog_nohttp"
	forkTags   = "nethttpomithttp2,watchdog_nohttp"
)

// build runs every step; a failed step is recorded, not fatal, so that the
// variants that do not need it still run.
func build(ctx context.Context, log *slog.Logger, root string, steps []buildStep) (artifacts, error) {
	arts := artifacts{}
	for _, st := range steps {
		words := append(slices.Clone(st.env), st.argv...)
		for i, w := range words {
			if strings.ContainsAny(w, " \t\"'") {
				words[i] = "'" + w + "'"
			}
		}
		a := &artifact{Name: st.name, Source: st.source, path: st.out, Command: strings.ReplaceAll(strings.Join(words, " "), filepath.Dir(st.out), "$OUT")}
		arts[st.name] = a
		start := time.Now()
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		cmd := exec.CommandContext(bctx, st.argv[0], st.argv[1:]...)
		cmd.Dir, cmd.Env = root, append(os.Environ(), st.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			a.Error = fmt.Sprintf("%v: %s", err, report.Truncate(strings.TrimSpace(string(out)), 500))
			log.Warn("build failed; variants that need it are skipped", "artifact", st.name, "err", a.Error)
		} else if fi, err := os.Stat(a.path); err != nil {
			a.Error = err.Error()
		} else {
			a.Bytes = fi.Size()
			log.Info("built", "artifact", st.name, "bytes", a.Bytes, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	return arts, nil
}

// buildAll builds steps as build does, and fails if one did not build. It
// returns the artifacts and their records in steps' order, also on failure.
func buildAll(ctx context.Context, log *slog.Logger, root string, steps []buildStep) (artifacts, []artifact, error) {
	log.Info("building", "root", root)
	arts, err := build(ctx, log, root, steps)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(steps))
	recs := make([]artifact, len(steps))
	for i, st := range steps {
		names[i], recs[i] = st.name, *arts[st.name]
	}
	if m := arts.missing(names); m != "" {
		return arts, recs, fmt.Errorf("%s did not build: %s", m, arts[m].Error)
	}
	return arts, recs, nil
}
