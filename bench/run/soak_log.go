package main

// The soak suite's HAProxy request log: pulsed's `haproxy_log` points
// HAProxy's log at a UDP socket of the harness (`127.0.0.1:<port> format
// raw local0`), and every line HAProxy writes for a request (`option
// httplog`) arrives here as one datagram. The parser is pure; the receiver
// keeps per-second counts per server and the lines worth reading in full
// (errors, retries, server state changes).

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
//
// e.g. `127.0.0.1:39996 [06/Dec/2026:05:01:03.291] gateway fn_x/s1
// 0/0/0/6/6 200 535 - - ---- 1/1/0/0/0 0/0 "POST /function/x HTTP/1.1"`.
type haLogLine struct {
	ClientIP   string    `json:"client_ip"`
	ClientPort int       `json:"client_port"`
	Accept     time.Time `json:"accept"` // %tr: when the request began, to the millisecond
	Frontend   string    `json:"frontend"`
	Backend    string    `json:"backend"`
	Server     string    `json:"server"` // s<N>, the backup server, or <NOSRV>
	// Timers in ms, -1 where the stage was not reached: the request's
	// headers (TR), the queue (Tw), the connection to the server (Tc), the
	// server's response headers (Tr) and the whole request (Ta).
	TR int `json:"tr_ms"`
	Tw int `json:"tw_ms"`
	Tc int `json:"tc_ms"`
	Tr int `json:"tresp_ms"`
	Ta int `json:"ta_ms"`
	// Status is the HTTP status sent to the client, -1 for none.
	Status int   `json:"status"`
	Bytes  int64 `json:"bytes"`
	// Term is the termination state (%tsc): "----" for a normal end; the
	// first letter says who ended it (C client, S server, P proxy, ...),
	// the second at which stage (R request, C connect, H headers, D data).
	Term string `json:"termination"`
	// Retries is the number of connection retries (%rc); Redispatched
	// says the request was sent to another server after them ("+N").
	Retries      int    `json:"retries"`
	Redispatched bool   `json:"redispatched,omitempty"`
	Request      string `json:"request"`
}

// errNotRequest is parseHAProxyLog's error for a line that is not a
// request line (HAProxy also logs server state changes, start-up, ...).
var errNotRequest = errors.New("not a request log line")

// haLogTime is %tr's layout (local time, milliseconds).
const haLogTime = "02/Jan/2006:15:04:05.000"

// parseHAProxyLog parses one request line of HAProxy's httplog format
// (raw: no syslog header). Times are read in loc, HAProxy's local time.
func parseHAProxyLog(line string, loc *time.Location) (haLogLine, error) {
	var l haLogLine
	line = strings.TrimRight(line, "\r\n")
	q := strings.IndexByte(line, '"')
	if q < 0 {
		return l, errNotRequest
	}
	f := strings.Fields(line[:q])
	if len(f) < 12 {
		return l, errNotRequest
	}
	bad := func(what, v string) (haLogLine, error) {
		return haLogLine{}, fmt.Errorf("%w: %s %q", errNotRequest, what, v)
	}
	// %ci:%cp (an IPv6 address has colons of its own: the port is last).
	i := strings.LastIndexByte(f[0], ':')
	if i <= 0 {
		return bad("client", f[0])
	}
	port, err := strconv.Atoi(f[0][i+1:])
	if err != nil || port < 0 || port > 65535 {
		return bad("client port", f[0])
	}
	l.ClientIP, l.ClientPort = f[0][:i], port
	// [%tr]
	ts := f[1]
	if len(ts) < 3 || ts[0] != '[' || ts[len(ts)-1] != ']' {
		return bad("date", ts)
	}
	if l.Accept, err = time.ParseInLocation(haLogTime, ts[1:len(ts)-1], loc); err != nil {
		return bad("date", ts)
	}
	l.Frontend = f[2]
	b, s, ok := strings.Cut(f[3], "/")
	if !ok || b == "" || s == "" {
		return bad("backend/server", f[3])
	}
	l.Backend, l.Server = b, s
	timers := strings.Split(f[4], "/")
	if len(timers) != 5 {
		return bad("timers", f[4])
	}
	for j, dst := range []*int{&l.TR, &l.Tw, &l.Tc, &l.Tr, &l.Ta} {
		if *dst, err = strconv.Atoi(strings.TrimPrefix(timers[j], "+")); err != nil || *dst < -1 {
			return bad("timers", f[4])
		}
	}
	if l.Status, err = strconv.Atoi(f[5]); err != nil || l.Status < -1 || l.Status > 999 {
		return bad("status", f[5])
	}
	if l.Bytes, err = strconv.ParseInt(strings.TrimPrefix(f[6], "+"), 10, 64); err != nil || l.Bytes < 0 {
		return bad("bytes", f[6])
	}
	// f[7], f[8]: captured cookies ("-" when none are captured).
	if len(f[9]) != 4 {
		return bad("termination state", f[9])
	}
	l.Term = f[9]
	conns := strings.Split(f[10], "/")
	if len(conns) != 5 {
		return bad("connections", f[10])
	}
	rc := conns[4]
	l.Redispatched = strings.HasPrefix(rc, "+")
	if l.Retries, err = strconv.Atoi(strings.TrimPrefix(rc, "+")); err != nil || l.Retries < 0 {
		return bad("retries", f[10])
	}
	if qs := strings.Split(f[11], "/"); len(qs) != 2 {
		return bad("queues", f[11])
	}
	req := line[q+1:]
	if j := strings.LastIndexByte(req, '"'); j >= 0 {
		req = req[:j]
	}
	l.Request = req
	return l, nil
}

// Failed reports whether HAProxy saw the request fail: a status other
// than 2xx, or an abnormal end.
func (l haLogLine) Failed() bool {
	return l.Status < 200 || l.Status > 299 || l.Term[:2] != "--"
}

// Notable reports whether the line is kept in full: failed, or retried.
func (l haLogLine) Notable() bool { return l.Failed() || l.Retries > 0 }

// haLogOther is a line HAProxy logged that is not a request: a server
// going down or up, a proxy starting, ...; At is when it arrived.
type haLogOther struct {
	At   time.Time `json:"at"`
	Line string    `json:"line"`
}

// haLog receives HAProxy's log datagrams and keeps, per server of backend,
// the requests, the notable lines in full and the first non-request lines.
type haLog struct {
	conn    *net.UDPConn
	backend string
	loc     *time.Location
	done    chan struct{}

	mu  sync.Mutex
	res haLogResult
}

// haLogResult is what the receiver kept.
type haLogResult struct {
	Lines    int64                `json:"lines"`          // datagrams received
	Requests int64                `json:"requests"`       // request lines of backend
	Others   int64                `json:"other_backends"` // request lines of other backends
	Dropped  int64                `json:"unkept_lines"`   // lines that did not parse and were not kept as events
	Notable  []haLogLine          `json:"-"`              // failed or retried requests of backend
	Events   []haLogOther         `json:"-"`              // non-request lines (capped)
	ByServer map[string]*haServer `json:"by_server"`      // server → totals from the log
}

// haServer is what the log says about one server over the run.
type haServer struct {
	Requests int64 `json:"requests"`
	Failed   int64 `json:"failed"`
	Retried  int64 `json:"retried"`
}

const (
	haLogMaxEvents  = 5000
	haLogMaxNotable = 200000
	haLogRecvBuf    = 32 << 20 // bytes of socket buffer: ~100 000 lines
)

// listenHALog opens the receiver on a loopback UDP port the kernel picks.
func listenHALog(backend string) (*haLog, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("haproxy log socket: %w", err)
	}
	// A large buffer rides out the harness being descheduled on 2 busy
	// cores; as root, SO_RCVBUFFORCE passes net.core.rmem_max.
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, haLogRecvBuf) != nil {
				_ = c.SetReadBuffer(haLogRecvBuf)
			}
		})
	}
	h := &haLog{conn: c, backend: backend, loc: time.Local, done: make(chan struct{}), res: haLogResult{ByServer: map[string]*haServer{}}}
	go h.receive()
	return h, nil
}

// Target is the `log` target for HAProxy (pulsed's haproxy_log).
func (h *haLog) Target() string {
	return h.conn.LocalAddr().String() + " format raw local0"
}

func (h *haLog) receive() {
	defer close(h.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := h.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		} else if err == nil {
			h.add(string(buf[:n]), time.Now())
		}
	}
}

// add takes one datagram (one line).
func (h *haLog) add(line string, at time.Time) {
	l, err := parseHAProxyLog(line, h.loc)
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &h.res
	r.Lines++
	switch {
	case err != nil && len(r.Events) < haLogMaxEvents:
		r.Events = append(r.Events, haLogOther{At: at, Line: strings.TrimSpace(line)})
		return
	case err != nil:
		r.Dropped++
		return
	case l.Backend != h.backend:
		r.Others++
		return
	}
	r.Requests++
	s := r.ByServer[l.Server]
	if s == nil {
		s = &haServer{}
		r.ByServer[l.Server] = s
	}
	s.Requests++
	if l.Failed() {
		s.Failed++
	}
	if l.Retries > 0 {
		s.Retried++
	}
	if l.Notable() && len(r.Notable) < haLogMaxNotable {
		r.Notable = append(r.Notable, l)
	}
}

// close stops receiving after waiting for lines still on their way, and
// returns what was kept.
func (h *haLog) close(linger time.Duration) haLogResult {
	time.Sleep(linger)
	_ = h.conn.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.res
}
