package main

// The soak's HAProxy request log: pulsed's haproxy_log sends HAProxy's log
// to a UDP socket of the harness (`127.0.0.1:<port> format raw local0`), one
// datagram per line (option httplog).

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// haLogLine is one request line of HAProxy's httplog format (2.6):
//
//	%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %{+Q}r
type haLogLine struct {
	ClientPort      int
	Accept          time.Time // %tr, to the millisecond
	Backend, Server string
	Timers          [5]int // TR/Tw/Tc/Tr/Ta in ms, -1: the stage was not reached
	Status          int    // sent to the client, -1 for none
	Term            string // %tsc: "----" for a normal end
	Retries         int    // %rc, without its "+" (redispatched)
}

// errNotRequest is parseHAProxyLog's error for a line that is not a
// request line (server state changes, start-up, ...).
var errNotRequest = errors.New("not a request log line")

// haLogTime is %tr's layout (local time, milliseconds).
const haLogTime = "02/Jan/2006:15:04:05.000"

// parseHAProxyLog parses one request line (raw: no syslog header); times
// are read in loc, HAProxy's local time.
func parseHAProxyLog(line string, loc *time.Location) (haLogLine, error) {
	var l haLogLine
	q := strings.IndexByte(line, '"')
	f := strings.Fields(line[:max(q, 0)])
	if q < 0 || len(f) < 12 {
		return l, errNotRequest
	}
	// num parses s (a leading "+" allowed where plus) within [lo, hi].
	num := func(s string, lo, hi int, plus bool) int {
		if plus {
			s = strings.TrimPrefix(s, "+")
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi || strings.HasPrefix(s, "+") {
			return lo - 1
		}
		return n
	}
	i := strings.LastIndexByte(f[0], ':') // an IPv6 address has colons of its own
	timers, conns := strings.Split(f[4], "/"), strings.Split(f[10], "/")
	var ok bool
	l.Backend, l.Server, ok = strings.Cut(f[3], "/")
	accept, err := time.ParseInLocation("["+haLogTime+"]", f[1], loc)
	if i <= 0 || err != nil || !ok || l.Backend == "" || l.Server == "" || len(timers) != 5 || len(f[9]) != 4 || len(conns) != 5 || strings.Count(f[11], "/") != 1 {
		return haLogLine{}, fmt.Errorf("%w: %q", errNotRequest, line)
	}
	l.ClientPort, l.Accept, l.Term = num(f[0][i+1:], 0, 65535, false), accept, f[9]
	l.Status, l.Retries = num(f[5], -1, 999, false), num(conns[4], 0, 1<<31-1, true)
	bad := l.ClientPort < 0 || l.Status < -1 || l.Retries < 0 || num(f[6], 0, 1<<62, true) < 0
	for j, t := range timers {
		l.Timers[j] = num(t, -1, 1<<31-1, true)
		bad = bad || l.Timers[j] < -1
	}
	if bad {
		return haLogLine{}, fmt.Errorf("%w: %q", errNotRequest, line)
	}
	return l, nil
}

// Failed reports whether HAProxy saw the request fail: a status other
// than 2xx, or an abnormal end.
func (l haLogLine) Failed() bool { return l.Status < 200 || l.Status > 299 || l.Term[:2] != "--" }

// haLog receives HAProxy's log datagrams for backend.
type haLog struct {
	conn    *net.UDPConn
	backend string
	loc     *time.Location
	done    chan struct{}
	mu      sync.Mutex
	res     haLogResult
}

// haLogResult is what the receiver kept: counts of the datagrams, request
// lines of backend and of others, lines neither parsed nor kept; the failed
// or retried requests of backend; the first non-request lines; and the
// requests, failed and retried, per server.
type haLogResult struct {
	Lines, Requests, Others, Unkept int64
	Notable                         []haLogLine
	Events                          []haLogOther
	ByServer                        map[string]*[3]int64
}

// haLogOther is a non-request line and when it arrived.
type haLogOther struct {
	At   time.Time
	Line string
}

// Bounds of what the receiver keeps, and its socket buffer (~100 000 lines).
const (
	haLogMaxEvents  = 5000
	haLogMaxNotable = 200000
	haLogRecvBuf    = 32 << 20
)

// listenHALog opens the receiver on a loopback UDP port the kernel picks.
func listenHALog(backend string) (*haLog, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("haproxy log socket: %w", err)
	}
	if rc, err := c.SyscallConn(); err == nil { // as root, SO_RCVBUFFORCE passes net.core.rmem_max
		_ = rc.Control(func(fd uintptr) {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, haLogRecvBuf) != nil {
				_ = c.SetReadBuffer(haLogRecvBuf)
			}
		})
	}
	h := &haLog{conn: c, backend: backend, loc: time.Local, done: make(chan struct{}), res: haLogResult{ByServer: map[string]*[3]int64{}}}
	go func() {
		defer close(h.done)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			} else if err == nil {
				h.add(string(buf[:n]), time.Now())
			}
		}
	}()
	return h, nil
}

// Target is the `log` target for HAProxy (pulsed's haproxy_log).
func (h *haLog) Target() string { return h.conn.LocalAddr().String() + " format raw local0" }

// add takes one datagram (one line) that arrived at at.
func (h *haLog) add(line string, at time.Time) {
	l, err := parseHAProxyLog(strings.TrimRight(line, "\r\n"), h.loc)
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &h.res
	r.Lines++
	switch {
	case err != nil && len(r.Events) < haLogMaxEvents:
		r.Events = append(r.Events, haLogOther{at, strings.TrimSpace(line)})
	case err != nil:
		r.Unkept++
	case l.Backend != h.backend:
		r.Others++
	default:
		r.Requests++
		s := r.ByServer[l.Server]
		if s == nil {
			s = &[3]int64{}
			r.ByServer[l.Server] = s
		}
		s[0], s[1], s[2] = s[0]+1, s[1]+int64(btoi(l.Failed())), s[2]+int64(btoi(l.Retries > 0))
		if (l.Failed() || l.Retries > 0) && len(r.Notable) < haLogMaxNotable {
			r.Notable = append(r.Notable, l)
		}
	}
}

// close stops receiving after waiting linger for lines on their way, and
// returns what was kept.
func (h *haLog) close(linger time.Duration) haLogResult {
	time.Sleep(linger)
	_ = h.conn.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.res
}
