package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// tools are the external programs the harness runs.
type tools struct {
	goBin, gcc, wrk, cat string
	gxx                  string // the functions suite's C++ compiler
	haproxy              string // the gateway suite's HAProxy, for pulsed
}

// findTools looks up in PATH the tools suite needs (go also next to the
// running toolchain's GOROOT, for `go run` from a shell whose PATH lacks
// it): gcc and haproxy for the soak and cluster suites, wrk and haproxy (no
// gcc) for the gateway suite, gcc and g++ for the functions suite, gcc, wrk
// and cat for the others.
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
	case suiteSoak:
		// gcc builds the saturation's static C handler.
		t.gcc, t.haproxy = look("gcc"), look("haproxy")
	case suiteCluster:
		// gcc builds the functions' static C handlers; pulsed runs HAProxy.
		t.gcc, t.haproxy = look("gcc"), look("haproxy")
	case suiteGateway:
		// No C compiler needed; its version is recorded if there is one.
		t.gcc, _ = exec.LookPath("gcc")
		t.wrk, t.haproxy = look("wrk"), look("haproxy")
	case suiteFunctions:
		t.gcc, t.gxx = look("gcc"), look("g++")
	default:
		t.gcc, t.wrk, t.cat = look("gcc"), look("wrk"), look("cat")
	}
	if len(missing) > 0 {
		return tools{}, fmt.Errorf("not found in PATH: %s", strings.Join(missing, ", "))
	}
	if t.cat != "" {
		// fork mode splits PULSE_EXEC on whitespace and wants an absolute path.
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
	MemTotalMB int64   `json:"mem_total_mb"`
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
		m.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemTotalMB = kb / 1024
		}
	}
	m.Go, _ = commandOutput(ctx, t.goBin, "version")
	// wrk -v prints its version and usage, and exits 1.
	if t.wrk != "" {
		if out, _ := exec.CommandContext(ctx, t.wrk, "-v").CombinedOutput(); len(out) > 0 {
			m.Wrk, _, _ = strings.Cut(string(out), "\n")
			m.Wrk = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(m.Wrk), "Copyright (C) 2012 Will Glozer"))
		}
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

// cpuModel returns the first "model name" in /proc/cpuinfo.
func cpuModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
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

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context, goBin string) (string, error) {
	gomod, err := commandOutput(ctx, goBin, "env", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("module root: not inside a module (run from the Pulse repository)")
	}
	return filepath.Dir(gomod), nil
}

// quietCorePct is the host's busy CPU, in percent of one core, below which
// it counts as quiet enough to start a measurement.
const quietCorePct = 25

// waitQuiet samples the host's CPU over 500 ms windows until one is below
// quietCorePct or maxWait has passed (clk is the clock's ticks per
// second). It returns how long it waited and the last window's busy share
// (percent of one core); with a maxWait of 0 it returns at once.
func waitQuiet(ctx context.Context, clk float64, maxWait time.Duration) (time.Duration, float64, error) {
	if maxWait == 0 {
		return 0, 0, nil
	}
	start := time.Now()
	for {
		busy, err := hostBusy(ctx, clk, 500*time.Millisecond)
		if err != nil {
			return 0, 0, err
		}
		if busy < quietCorePct || time.Since(start) >= maxWait {
			return time.Since(start), busy, nil
		}
	}
}

// clockTicks returns USER_HZ from getconf, or 100 (Linux's value on every
// common architecture) if getconf is missing or says something odd.
func clockTicks(ctx context.Context) (float64, string) {
	out, err := commandOutput(ctx, "getconf", "CLK_TCK")
	if err == nil {
		if n, err := strconv.Atoi(out); err == nil && n > 0 {
			return float64(n), ""
		}
	}
	return 100, fmt.Sprintf("getconf CLK_TCK failed (%v): assumed 100", err)
}

// hostBusy returns the host's busy CPU over d, in percent of one core.
func hostBusy(ctx context.Context, clk float64, d time.Duration) (float64, error) {
	h0, err := readHostCPU("/proc")
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return 0, err
	}
	h1, err := readHostCPU("/proc")
	if err != nil {
		return 0, err
	}
	return 100 * float64(h1.Busy-h0.Busy) / clk / time.Since(t0).Seconds(), nil
}
