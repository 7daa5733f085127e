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

// The soak and autoscale suites' load: a closed-loop, keep-alive,
// never-retrying raw HTTP/1.1 client whose number of connections changes
// during the run. Each
// connection POSTs, reads the whole answer, checks it and POSTs again; a
// request that fails (socket error, status other than 2xx, wrong body) is
// counted and never retried, and its connection is replaced. Every request
// is recorded: start, latency, status, error, and the client's local port
// (which HAProxy's log names).

// loadReq is one request as the client saw it (24 bytes: a 10-minute run
// keeps millions).
type loadReq struct {
	StartNS   int64  // since the load's t0
	LatencyUS int32  // to the end of the answer, or to the error
	Status    int16  // HTTP status, 0 if none arrived
	Port      uint16 // the client's local port, 0 before a connection
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

var reqErrNames = []string{"ok", "connect", "write", "read", "body", "status", "wrong body"}

func reqErrName(e uint8) string {
	if int(e) < len(reqErrNames) {
		return reqErrNames[e]
	}
	return "error " + strconv.Itoa(int(e))
}

// loadFail is a failed request with what went wrong.
type loadFail struct {
	Req loadReq
	Msg string
}

// loopRequestTimeout bounds one request (no function here takes long).
const loopRequestTimeout = 15 * time.Second

// closedLoop runs the workers. set changes the number of connections and
// where they go; end stops everything and returns every record.
type closedLoop struct {
	t0   time.Time
	body string
	// directHdr are the headers of a request straight to a replica: the
	// replica credential, which HAProxy adds on the other path.
	directHdr http.Header

	mu      sync.Mutex
	addr    string
	direct  bool
	workers []*loopWorker // running, in start order
	retired []*loopWorker // told to stop
}

type loopWorker struct {
	l      *closedLoop
	addr   string
	req    string
	direct bool
	stop   atomic.Bool // finish the request under way, then exit
	done   chan struct{}
	recs   []loadReq
	fails  []loadFail
}

func newClosedLoop(t0 time.Time, body string, direct http.Header) *closedLoop {
	return &closedLoop{t0: t0, body: body, directHdr: direct}
}

// set makes n connections POST to path at addr (direct: a replica's own
// address, and the load's direct headers on every request). Changing the address or the path replaces every worker;
// otherwise workers are added, or the newest ones finish their request and
// leave.
func (l *closedLoop) set(n int, addr, path string, direct bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if addr != l.addr || direct != l.direct {
		for _, w := range l.workers {
			w.stop.Store(true)
		}
		l.retired = append(l.retired, l.workers...)
		l.workers = nil
		l.addr, l.direct = addr, direct
	}
	for len(l.workers) > n {
		w := l.workers[len(l.workers)-1]
		w.stop.Store(true)
		l.retired = append(l.retired, w)
		l.workers = l.workers[:len(l.workers)-1]
	}
	for len(l.workers) < n {
		var hdr http.Header
		if direct {
			hdr = l.directHdr
		}
		w := &loopWorker{l: l, addr: addr, req: httpPost(path, l.body, false, hdr), direct: direct, done: make(chan struct{})}
		l.workers = append(l.workers, w)
		go w.run()
	}
}

// end stops every worker (each finishes its request under way) and
// returns all records and failures.
func (l *closedLoop) end() ([]loadReq, []loadFail) {
	l.mu.Lock()
	for _, w := range l.workers {
		w.stop.Store(true)
	}
	all := append(l.retired, l.workers...)
	l.workers, l.retired = nil, nil
	l.mu.Unlock()
	n := 0
	for _, w := range all {
		<-w.done
		n += len(w.recs)
	}
	recs := make([]loadReq, 0, n)
	var fails []loadFail
	for _, w := range all {
		recs = append(recs, w.recs...)
		fails = append(fails, w.fails...)
	}
	return recs, fails
}

func (w *loopWorker) run() {
	defer close(w.done)
	var c net.Conn
	var br *bufio.Reader
	port := uint16(0)
	drop := func() {
		if c != nil {
			c.Close()
			c, port = nil, 0
		}
	}
	defer drop()
	body := w.l.body
	for !w.stop.Load() {
		start := time.Now()
		rec := loadReq{StartNS: int64(start.Sub(w.l.t0)), Direct: w.direct}
		finish := func(e uint8, status int, msg string) {
			rec.LatencyUS = int32(min(time.Since(start)/time.Microsecond, 1<<31-1))
			rec.Err, rec.Status, rec.Port = e, int16(status), port
			w.recs = append(w.recs, rec)
			if e != reqOK {
				w.fails = append(w.fails, loadFail{Req: rec, Msg: truncate(msg, 200)})
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
		_ = c.SetDeadline(start.Add(loopRequestTimeout))
		status, e, msg, broken := roundTrip(c, br, w.req, body)
		finish(e, status, msg)
		if broken {
			drop()
		}
	}
}

// roundTrip sends req (a whole HTTP/1.1 request) on c and reads the answer
// through br; want is the body the answer must carry. It returns the
// answer's status (0 if none), the outcome (reqOK or the reqErr* that
// failed it), a message for a failure, and whether the connection is done
// for: a socket error, a broken body, or the server closing it.
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
		return resp.StatusCode, reqErrStatus, fmt.Sprintf("%s: %s", resp.Status, truncate(string(got), 120)), resp.Close
	case string(got) != want:
		return resp.StatusCode, reqErrWrongBody, "wrong body: " + truncate(string(got), 80), resp.Close
	}
	return resp.StatusCode, reqOK, "", resp.Close
}

// httpPost is a whole HTTP/1.1 POST of body to path, with hdr's headers
// (the replica credential when it goes straight to a replica).
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
