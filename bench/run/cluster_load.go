package main

// The failover's load: a never-retrying keep-alive client (as the lab test
// TestClusterLab's, but open loop) that records each request's start and
// end, how it failed, and which replica answered it: the function answers
// "<its host name>:<body>", a replica's host name is its task's name
// (name.slot.taskid).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// hostReq is one request of the load.
type hostReq struct {
	Start, End time.Time
	Task       string // the task that answered; "" when it failed
	Err        string // "" or the kind of failure: dial, write, read, status 504, answer
}

// hostLoad is the running load: open loop, a request every 1/rate
// seconds whatever the earlier ones do (a closed loop's few connections
// would all hang on a frozen node within milliseconds of the fault, and no
// request would start until they time out, hiding how long the node stays
// in rotation). Each request takes an idle keep-alive connection or dials
// one; at most maxInflight run at once, the rest are counted as skipped.
type hostLoad struct {
	mu      sync.Mutex
	reqs    []hostReq
	skipped int
	// since and first: each task's first answer (its end) to a request
	// that started at or after since.
	since time.Time
	first map[string]time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	idle  chan net.Conn
}

// hostLoadBody is what every request sends.
const hostLoadBody = "hi"

// startHostLoad starts rate requests a second POSTing to path at addr.
func startHostLoad(addr, path string, rate, maxInflight int) *hostLoad {
	l := &hostLoad{stop: make(chan struct{}), first: map[string]time.Time{}, idle: make(chan net.Conn, maxInflight)}
	req := httpPost(path, hostLoadBody, false, nil)
	slots := make(chan struct{}, maxInflight)
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			select {
			case slots <- struct{}{}:
			default:
				l.mu.Lock()
				l.skipped++
				l.mu.Unlock()
				continue
			}
			l.wg.Go(func() {
				defer func() { <-slots }()
				l.record(l.one(addr, req))
			})
		}
	})
	return l
}

// one sends one request on an idle connection or a new one, and keeps
// the connection for another request if it is still good.
func (l *hostLoad) one(addr, req string) hostReq {
	r := hostReq{Start: time.Now()}
	var c net.Conn
	select {
	case c = <-l.idle:
	default:
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			r.Err, r.End = "dial", time.Now()
			return r
		}
		c = conn
	}
	var broken bool
	r.Task, r.Err, broken = hostRoundTrip(c, bufio.NewReader(c), req, r.Start.Add(10*time.Second))
	r.End = time.Now()
	if broken {
		c.Close()
		return r
	}
	select {
	case l.idle <- c:
	default:
		c.Close()
	}
	return r
}

// hostRoundTrip sends req on c and reads the answer: the task that
// answered, or the kind of failure, and whether the connection is done for.
func hostRoundTrip(c net.Conn, br *bufio.Reader, req string, deadline time.Time) (task, fail string, broken bool) {
	_ = c.SetDeadline(deadline)
	if _, err := io.WriteString(c, req); err != nil {
		return "", "write", true
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", "read", true
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if err != nil {
		return "", "read", true
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Sprintf("status %d", resp.StatusCode), resp.Close
	}
	host, got, ok := strings.Cut(string(body), ":")
	if !ok || got != hostLoadBody || host == "" {
		return "", "answer", resp.Close
	}
	return taskOfHost(host), "", resp.Close
}

// taskOfHost is the task ID in a replica's host name (name.slot.taskid, or
// the task ID alone when that would be too long for a host name).
func taskOfHost(host string) string {
	return host[strings.LastIndexByte(host, '.')+1:]
}

func (l *hostLoad) record(r hostReq) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
	if r.Err == "" && !l.since.IsZero() && !r.Start.Before(l.since) {
		if _, ok := l.first[r.Task]; !ok {
			l.first[r.Task] = r.End
		}
	}
}

// mark starts looking for each task's first answer to a request started
// at or after t.
func (l *hostLoad) mark(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.since, l.first = t, map[string]time.Time{}
}

// answered returns when each task first answered since the mark.
func (l *hostLoad) answered() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]time.Time, len(l.first))
	for k, v := range l.first {
		out[k] = v
	}
	return out
}

// okSince counts the requests answered that started at or after t.
func (l *hostLoad) okSince(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.reqs {
		if r.Err == "" && !r.Start.Before(t) {
			n++
		}
	}
	return n
}

// end stops the load (the requests under way finish) and returns every
// request and how many were skipped (maxInflight running).
func (l *hostLoad) end() ([]hostReq, int) {
	close(l.stop)
	l.wg.Wait()
	for len(l.idle) > 0 {
		(<-l.idle).Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs, l.skipped
}
