package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
)

// wrkResult is the BENCHJSON line bench/wrk/post.lua prints when wrk is done
// (an untagged key matches its field's name, case aside).
type wrkResult struct {
	Requests, Bytes int64
	DurationUS      int64 `json:"duration_us"`
	Errors          struct{ Connect, Read, Write, Status, Timeout int64 }
	Latency         struct {
		P50, P90, P99, Max int64
		Mean               float64
	} `json:"latency_us"`
}

// errorCount is every socket error and every status >= 400.
func (w wrkResult) errorCount() int64 {
	e := w.Errors
	return e.Connect + e.Read + e.Write + e.Status + e.Timeout
}

// decodeStrict decodes the JSON object at the start of s, refusing unknown keys.
func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// parseWrkOutput finds the BENCHJSON line in wrk's output.
func parseWrkOutput(out []byte) (wrkResult, error) {
	for line := range strings.Lines(string(out)) {
		if js, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
			var r wrkResult
			if err := decodeStrict(js, &r); err != nil {
				return wrkResult{}, fmt.Errorf("parse wrk result: %w", err)
			}
			if r.Requests <= 0 || r.DurationUS <= 0 {
				return wrkResult{}, fmt.Errorf("parse wrk result: %d requests in %d µs", r.Requests, r.DurationUS)
			}
			return r, nil
		}
	}
	return wrkResult{}, errors.New("parse wrk result: no BENCHJSON line")
}

// wrkRun describes one wrk run.
type wrkRun struct {
	Bin, Script, URL string
	Threads, Conns   int
	Duration         time.Duration // whole seconds: wrk takes no finer unit
	Body             string
	Headers          http.Header // on every request (post.lua's BENCH_HEADERS)
}

// wrkHeaderEnv renders h as post.lua's BENCH_HEADERS: a "Name: value" line
// per value, names sorted; a name that is no token or a line break fails.
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

// runTool runs argv (env added) for up to timeout in its own process group; it
// returns stdout, stderr and the CPU it and its reaped descendants used.
func runTool(ctx context.Context, timeout time.Duration, env []string, argv ...string) (stdout, stderr []byte, cpu time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return o.Bytes(), e.Bytes(), cpu, err
}

// runWrk runs wrk and returns its result and its own CPU time (did the load
// generator saturate its core?).
func runWrk(ctx context.Context, w wrkRun) (wrkResult, time.Duration, error) {
	headers, err := wrkHeaderEnv(w.Headers)
	if err != nil {
		return wrkResult{}, 0, fmt.Errorf("wrk %s: %w", w.URL, err)
	}
	// The headers go in the environment, not in -H: the credential stays out of ps.
	out, errOut, cpu, err := runTool(ctx, w.Duration+30*time.Second, []string{"BENCH_BODY=" + w.Body, "BENCH_HEADERS=" + headers},
		w.Bin, "-t", strconv.Itoa(w.Threads), "-c", strconv.Itoa(w.Conns), "-d", strconv.Itoa(int(w.Duration/time.Second))+"s",
		"--timeout", "5s", "-s", w.Script, w.URL)
	var r wrkResult
	if err == nil {
		r, err = parseWrkOutput(out)
	}
	if err != nil {
		return wrkResult{}, cpu, fmt.Errorf("wrk %s: %w: %s", w.URL, err, report.Truncate(strings.TrimSpace(string(out)+string(errOut)), 1000))
	}
	return r, cpu, nil
}

// warmUp runs w for d, if d > 0, and discards what it measured.
func warmUp(ctx context.Context, w wrkRun, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	w.Duration = d
	if _, _, err := runWrk(ctx, w); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return nil
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
	HarnessCPUS  float64 `json:"-"` // the same CPU as wait4 reported it: a cross-check
}

// parseFloorOutput parses spawnloop's output: one JSON object.
func parseFloorOutput(out []byte) (floorResult, error) {
	var r floorResult
	if err := decodeStrict(string(out), &r); err != nil {
		return floorResult{}, fmt.Errorf("parse spawnloop result: %w", err)
	}
	if r.Iterations <= 0 || r.CPUS <= 0 {
		return floorResult{}, fmt.Errorf("parse spawnloop result: %d iterations, %g s CPU", r.Iterations, r.CPUS)
	}
	return r, nil
}

// runFloor runs spawnloop for d against prog with the benchmark's body.
func runFloor(ctx context.Context, bin string, d time.Duration, body string, prog []string) (floorResult, error) {
	argv := append([]string{bin, "-d", strconv.FormatFloat(d.Seconds(), 'f', -1, 64), "-p", body, "--"}, prog...)
	out, errOut, cpu, err := runTool(ctx, d+30*time.Second, nil, argv...)
	if err != nil {
		return floorResult{}, fmt.Errorf("spawnloop %s: %w: %s", prog[0], err, report.Truncate(strings.TrimSpace(string(errOut)), 1000))
	}
	r, err := parseFloorOutput(out)
	if err != nil {
		return floorResult{}, fmt.Errorf("spawnloop %s: %w", prog[0], err)
	}
	r.HarnessCPUS = cpu.Seconds()
	return r, nil
}

// loadReq is one request as the closed-loop client saw it (24 bytes: a run
// keeps millions).
type loadReq struct {
	StartNS   int64  // since the load's t0
	LatencyUS int32  // to the end of the answer, or to the error
	Status    int16  // HTTP status, 0 if none arrived
	Port      uint16 // the client's local port (HAProxy's log names it), 0 before a connection
	Err       uint8  // reqOK or the reqErr* that failed it
	Direct    bool   // sent straight to a replica, not through the gateway
}

// Outcomes of a request.
const (
	reqOK           uint8 = iota
	reqErrDial            // could not connect
	reqErrWrite           // the request could not be sent
	reqErrRead            // no (complete) answer headers: reset, closed, timed out
	reqErrBody            // the answer's body broke off
	reqErrStatus          // an answer other than 2xx
	reqErrWrongBody       // 2xx with another body than the one sent
)

// reqErrName names the outcome e.
func reqErrName(e uint8) string {
	if names := []string{"ok", "connect", "write", "read", "body", "status", "wrong body"}; int(e) < len(names) {
		return names[e]
	}
	return "error " + strconv.Itoa(int(e))
}

// loadFail is a failed request with what went wrong.
type loadFail struct {
	Req loadReq
	Msg string
}

// closedLoop is a closed-loop load of keep-alive HTTP/1.1 connections; a failed
// request is recorded, never retried, and its connection replaced.
type closedLoop struct {
	t0        time.Time
	body      string
	directHdr http.Header // on a request straight to a replica: the credential HAProxy adds on the other path

	mu               sync.Mutex
	addr             string
	direct           bool
	workers, retired []*loopWorker // running, in start order; told to stop
}

// loopWorker is one connection of a closedLoop.
type loopWorker struct {
	l         *closedLoop
	addr, req string
	direct    bool
	stop      atomic.Bool // finish the request under way, then exit
	done      chan struct{}
	recs      []loadReq
	fails     []loadFail
}

// newClosedLoop returns a load of body with no connection yet.
func newClosedLoop(t0 time.Time, body string, direct http.Header) *closedLoop {
	return &closedLoop{t0: t0, body: body, directHdr: direct}
}

// set makes n connections POST to path at addr (direct: a replica's, with the
// direct headers); a new address replaces every worker, else the newest go.
func (l *closedLoop) set(n int, addr, path string, direct bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := min(n, len(l.workers))
	if addr != l.addr || direct != l.direct {
		keep, l.addr, l.direct = 0, addr, direct
	}
	for _, w := range l.workers[keep:] {
		w.stop.Store(true)
	}
	l.retired = append(l.retired, l.workers[keep:]...)
	l.workers = l.workers[:keep]
	var hdr http.Header
	if direct {
		hdr = l.directHdr
	}
	for len(l.workers) < n {
		w := &loopWorker{l: l, addr: addr, req: httpPost(path, l.body, false, hdr), direct: direct, done: make(chan struct{})}
		l.workers = append(l.workers, w)
		go w.run()
	}
}

// end stops every worker after its request and returns all records and failures.
func (l *closedLoop) end() (recs []loadReq, fails []loadFail) {
	l.mu.Lock()
	for _, w := range l.workers {
		w.stop.Store(true)
	}
	all := append(l.retired, l.workers...)
	l.workers, l.retired = nil, nil
	l.mu.Unlock()
	for _, w := range all {
		<-w.done
		recs = append(recs, w.recs...)
		fails = append(fails, w.fails...)
	}
	return recs, fails
}

// run sends requests until told to stop, redialling after a broken one.
func (w *loopWorker) run() {
	defer close(w.done)
	var c net.Conn
	var br *bufio.Reader
	port := uint16(0)
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for !w.stop.Load() {
		start := time.Now()
		finish := func(e uint8, status int, msg string) {
			rec := loadReq{StartNS: int64(start.Sub(w.l.t0)), LatencyUS: int32(min(time.Since(start)/time.Microsecond, 1<<31-1)),
				Status: int16(status), Port: port, Err: e, Direct: w.direct}
			w.recs = append(w.recs, rec)
			if e != reqOK {
				w.fails = append(w.fails, loadFail{Req: rec, Msg: report.Truncate(msg, 200)})
			}
		}
		if c == nil {
			conn, err := net.DialTimeout("tcp", w.addr, 2*time.Second)
			if err != nil {
				finish(reqErrDial, 0, "dial: "+err.Error())
				time.Sleep(10 * time.Millisecond) // never a tight loop against a dead address
				continue
			}
			c, br = conn, bufio.NewReader(conn)
			if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
				port = uint16(a.Port)
			}
		}
		_ = c.SetDeadline(start.Add(15 * time.Second))
		status, e, msg, broken := roundTrip(c, br, w.req, w.l.body)
		finish(e, status, msg)
		if broken {
			c.Close()
			c, port = nil, 0
		}
	}
}

// roundTrip sends req on c and reads the answer, which must carry want: the
// status (0 for none), the outcome, a failure's message, whether c is done.
func roundTrip(c net.Conn, br *bufio.Reader, req, want string) (status int, outcome uint8, msg string, done bool) {
	if _, err := io.WriteString(c, req); err != nil {
		return 0, reqErrWrite, "write: " + err.Error(), true
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, reqErrRead, "read: " + err.Error(), true
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case err != nil:
		return resp.StatusCode, reqErrBody, "read body: " + err.Error(), true
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.StatusCode, reqErrStatus, fmt.Sprintf("%s: %s", resp.Status, report.Truncate(string(got), 120)), resp.Close
	case string(got) != want:
		return resp.StatusCode, reqErrWrongBody, "wrong body: " + report.Truncate(string(got), 80), resp.Close
	}
	return resp.StatusCode, reqOK, "", resp.Close
}

// httpPost is a whole HTTP/1.1 POST of body to path with hdr's headers.
func httpPost(path, body string, close bool, hdr http.Header) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n", path, len(body))
	if close {
		b.WriteString("Connection: close\r\n")
	}
	_ = hdr.Write(&b) // sorted "Name: value\r\n" lines; a strings.Builder does not fail
	b.WriteString("\r\n" + body)
	return b.String()
}
