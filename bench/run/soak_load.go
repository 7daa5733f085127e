package main

// The soak suite's load: a closed-loop, keep-alive, never-retrying raw
// HTTP/1.1 client whose number of connections changes during the run. Each
// connection POSTs, reads the whole answer, checks it and POSTs again; a
// request that fails (socket error, status other than 2xx, wrong body) is
// counted and never retried, and its connection is replaced. Every request
// is recorded: start, latency, status, error, and the client's local port
// (which HAProxy's log names).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// soakReq is one request as the client saw it (24 bytes: a 10-minute run
// keeps millions).
type soakReq struct {
	StartNS   int64  // since the load's t0
	LatencyUS int32  // to the end of the answer, or to the error
	Status    int16  // HTTP status, 0 if none arrived
	Port      uint16 // the client's local port, 0 before a connection
	Err       uint8  // soakOK or the soakErr* that failed it
	Direct    bool   // sent straight to a replica, not through the gateway
}

// Outcomes of a request.
const (
	soakOK           uint8 = iota
	soakErrDial            // could not connect
	soakErrWrite           // the request could not be sent
	soakErrRead            // no (complete) answer headers: reset, closed, timed out
	soakErrBody            // the answer's body broke off
	soakErrStatus          // an answer other than 2xx
	soakErrWrongBody       // 2xx with another body than the one sent
)

var soakErrNames = []string{"ok", "connect", "write", "read", "body", "status", "wrong body"}

func soakErrName(e uint8) string {
	if int(e) < len(soakErrNames) {
		return soakErrNames[e]
	}
	return "error " + strconv.Itoa(int(e))
}

// soakFail is a failed request with what went wrong.
type soakFail struct {
	Req soakReq
	Msg string
}

// soakRequestTimeout bounds one request (no function here takes long).
const soakRequestTimeout = 15 * time.Second

// soakLoad runs the workers. set changes the number of connections and
// where they go; end stops everything and returns every record.
type soakLoad struct {
	t0   time.Time
	body string
	// directHdr are the headers of a request straight to a replica: the
	// replica credential, which HAProxy adds on the other path.
	directHdr http.Header

	mu      sync.Mutex
	addr    string
	direct  bool
	workers []*soakWorker // running, in start order
	retired []*soakWorker // told to stop
}

type soakWorker struct {
	l      *soakLoad
	addr   string
	req    string
	direct bool
	stop   atomic.Bool // finish the request under way, then exit
	done   chan struct{}
	recs   []soakReq
	fails  []soakFail
}

func newSoakLoad(t0 time.Time, body string, direct http.Header) *soakLoad {
	return &soakLoad{t0: t0, body: body, directHdr: direct}
}

// set makes n connections POST to path at addr (direct: a replica's own
// address, and the load's direct headers on every request). Changing the address or the path replaces every worker;
// otherwise workers are added, or the newest ones finish their request and
// leave.
func (l *soakLoad) set(n int, addr, path string, direct bool) {
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
		w := &soakWorker{l: l, addr: addr, req: httpPost(path, l.body, false, hdr), direct: direct, done: make(chan struct{})}
		l.workers = append(l.workers, w)
		go w.run()
	}
}

// end stops every worker (each finishes its request under way) and
// returns all records and failures.
func (l *soakLoad) end() ([]soakReq, []soakFail) {
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
	recs := make([]soakReq, 0, n)
	var fails []soakFail
	for _, w := range all {
		recs = append(recs, w.recs...)
		fails = append(fails, w.fails...)
	}
	return recs, fails
}

func (w *soakWorker) run() {
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
		rec := soakReq{StartNS: int64(start.Sub(w.l.t0)), Direct: w.direct}
		finish := func(e uint8, status int, msg string) {
			rec.LatencyUS = int32(min(time.Since(start)/time.Microsecond, 1<<31-1))
			rec.Err, rec.Status, rec.Port = e, int16(status), port
			w.recs = append(w.recs, rec)
			if e != soakOK {
				w.fails = append(w.fails, soakFail{Req: rec, Msg: truncate(msg, 200)})
			}
		}
		if c == nil {
			conn, err := net.DialTimeout("tcp", w.addr, 2*time.Second)
			if err != nil {
				finish(soakErrDial, 0, "dial: "+err.Error())
				time.Sleep(10 * time.Millisecond) // never a tight loop against a dead address
				continue
			}
			c, br = conn, bufio.NewReader(conn)
			if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
				port = uint16(a.Port)
			}
		}
		_ = c.SetDeadline(start.Add(soakRequestTimeout))
		status, e, msg, broken := roundTrip(c, br, w.req, body)
		finish(e, status, msg)
		if broken {
			drop()
		}
	}
}

// roundTrip sends req (a whole HTTP/1.1 request) on c and reads the answer
// through br; want is the body the answer must carry. It returns the
// answer's status (0 if none), the outcome (soakOK or the soakErr* that
// failed it), a message for a failure, and whether the connection is done
// for: a socket error, a broken body, or the server closing it.
func roundTrip(c net.Conn, br *bufio.Reader, req, want string) (status int, outcome uint8, msg string, done bool) {
	if _, err := io.WriteString(c, req); err != nil {
		return 0, soakErrWrite, "write: " + err.Error(), true
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, soakErrRead, "read: " + err.Error(), true
	}
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	switch {
	case err != nil:
		return resp.StatusCode, soakErrBody, "read body: " + err.Error(), true
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.StatusCode, soakErrStatus, fmt.Sprintf("%s: %s", resp.Status, truncate(string(got), 120)), resp.Close
	case string(got) != want:
		return resp.StatusCode, soakErrWrongBody, "wrong body: " + truncate(string(got), 80), resp.Close
	}
	return resp.StatusCode, soakOK, "", resp.Close
}
