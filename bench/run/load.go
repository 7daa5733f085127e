package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkResult is the line bench/wrk/post.lua prints when wrk is done.
type wrkResult struct {
	Requests   int64 `json:"requests"`
	DurationUS int64 `json:"duration_us"`
	Bytes      int64 `json:"bytes"`
	Errors     struct {
		Connect int64 `json:"connect"`
		Read    int64 `json:"read"`
		Write   int64 `json:"write"`
		Status  int64 `json:"status"`
		Timeout int64 `json:"timeout"`
	} `json:"errors"`
	Latency struct {
		P50  int64   `json:"p50"`
		P90  int64   `json:"p90"`
		P99  int64   `json:"p99"`
		Max  int64   `json:"max"`
		Mean float64 `json:"mean"`
	} `json:"latency_us"`
}

// errorCount is every socket error and every status >= 400.
func (w wrkResult) errorCount() int64 {
	e := w.Errors
	return e.Connect + e.Read + e.Write + e.Status + e.Timeout
}

const wrkJSONPrefix = "BENCHJSON "

// parseWrkOutput finds the BENCHJSON line in wrk's output.
func parseWrkOutput(out []byte) (wrkResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), wrkJSONPrefix)
		if !ok {
			continue
		}
		var r wrkResult
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return wrkResult{}, fmt.Errorf("parse wrk result: %w", err)
		}
		if r.Requests <= 0 || r.DurationUS <= 0 {
			return wrkResult{}, fmt.Errorf("parse wrk result: %d requests in %d µs", r.Requests, r.DurationUS)
		}
		return r, nil
	}
	return wrkResult{}, errors.New("parse wrk result: no " + strings.TrimSpace(wrkJSONPrefix) + " line")
}

// wrkRun describes one wrk run.
type wrkRun struct {
	Bin      string
	Script   string
	URL      string
	Threads  int
	Conns    int
	Duration time.Duration // whole seconds: wrk takes no finer unit
	Body     string
	// Headers are added to every request (post.lua's BENCH_HEADERS): the
	// replica credential when wrk loads a replica's published port.
	Headers http.Header
}

// wrkHeaderEnv renders h as post.lua's BENCH_HEADERS: one "Name: value"
// line per value, names sorted. A name or value that would break the
// request (a colon or white space in a name, a line break in a value) is
// an error.
func wrkHeaderEnv(h http.Header) (string, error) {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if k == "" || strings.ContainsAny(k, ": \t\r\n") {
			return "", fmt.Errorf("header name %q: want a token (no colon, white space or line break)", k)
		}
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n") {
				return "", fmt.Errorf("header %s: its value has a line break", k)
			}
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return b.String(), nil
}

// runWrk runs wrk and returns its result and its own CPU time (user +
// system), which tells whether the load generator saturated its core.
func runWrk(ctx context.Context, w wrkRun) (wrkResult, time.Duration, error) {
	headers, err := wrkHeaderEnv(w.Headers)
	if err != nil {
		return wrkResult{}, 0, fmt.Errorf("wrk %s: %w", w.URL, err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.Bin,
		"-t", strconv.Itoa(w.Threads), "-c", strconv.Itoa(w.Conns),
		"-d", strconv.Itoa(int(w.Duration/time.Second))+"s", "--timeout", "5s",
		"-s", w.Script, w.URL)
	// The headers go in the environment, not in wrk's -H arguments: the
	// credential stays out of every local user's ps.
	cmd.Env = append(os.Environ(), "BENCH_BODY="+w.Body, "BENCH_HEADERS="+headers)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return wrkResult{}, 0, fmt.Errorf("wrk %s: %w: %s", w.URL, err, truncate(strings.TrimSpace(out.String()), 1000))
	}
	cpu := rusageCPU(cmd.ProcessState)
	r, err := parseWrkOutput(out.Bytes())
	if err != nil {
		return wrkResult{}, cpu, fmt.Errorf("wrk %s: %w: %s", w.URL, err, truncate(strings.TrimSpace(out.String()), 1000))
	}
	return r, cpu, nil
}

// rusageCPU is the user + system time of an exited process and of its
// waited-for descendants (Linux's wait4 reports both).
func rusageCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floorResult is the JSON line bench/c/spawnloop.c prints.
type floorResult struct {
	Program      string  `json:"program"`
	Iterations   int64   `json:"iterations"`
	PayloadBytes int     `json:"payload_bytes"`
	WallS        float64 `json:"wall_s"`
	CPUS         float64 `json:"cpu_s"`
	SelfCPUS     float64 `json:"self_cpu_s"`
	ChildrenCPUS float64 `json:"children_cpu_s"`
	CPUPerIterUS float64 `json:"cpu_per_iter_us"`
	// HarnessCPUS is the same CPU as wait4 reported it to the harness: a
	// cross-check of the program's own getrusage figure.
	HarnessCPUS float64 `json:"-"`
}

// parseFloorOutput parses spawnloop's output: one JSON object.
func parseFloorOutput(out []byte) (floorResult, error) {
	var r floorResult
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return floorResult{}, fmt.Errorf("parse spawnloop result: %w", err)
	}
	if r.Iterations <= 0 || r.CPUS <= 0 {
		return floorResult{}, fmt.Errorf("parse spawnloop result: %d iterations, %g s CPU", r.Iterations, r.CPUS)
	}
	return r, nil
}

// runFloor runs spawnloop for d against prog with the benchmark's body.
func runFloor(ctx context.Context, bin string, d time.Duration, body string, prog []string) (floorResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := append([]string{"-d", strconv.FormatFloat(d.Seconds(), 'f', -1, 64), "-p", body, "--"}, prog...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return floorResult{}, fmt.Errorf("spawnloop %s: %w: %s", prog[0], err, truncate(strings.TrimSpace(stderr.String()), 1000))
	}
	r, err := parseFloorOutput(stdout.Bytes())
	if err != nil {
		return floorResult{}, fmt.Errorf("spawnloop %s: %w", prog[0], err)
	}
	r.HarnessCPUS = rusageCPU(cmd.ProcessState).Seconds()
	return r, nil
}
