package main

// The soak's attribution of failed requests: HAProxy's request log (sent by
// pulsed's haproxy_log to a UDP socket here) and its per-server counters.

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/gateway"
)

// haLogLine is what the attribution reads of a request line of HAProxy's (2.6) httplog format:
// %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %{+Q}r
type haLogLine struct {
	ClientPort      int
	Accept          time.Time // %tr, to the millisecond
	Backend, Server string
	Status          int    // sent to the client, -1 for none
	Term            string // %tsc: "----" for a normal end
}

// errNotRequest is parseHAProxyLog's error for a line that is not a request line.
var errNotRequest = errors.New("not a request log line")

// haLogTime is %tr's layout (local time, milliseconds).
const haLogTime = "02/Jan/2006:15:04:05.000"

// parseHAProxyLog parses one raw request line; times are read in loc.
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
	l.Status = num(f[5], -1, 999, false)
	bad := l.ClientPort < 0 || l.Status < -1 || num(conns[4], 0, 1<<31-1, true) < 0 || num(f[6], 0, 1<<62, true) < 0
	for _, t := range timers { // TR/Tw/Tc/Tr/Ta in ms, -1: the stage was not reached
		bad = bad || num(t, -1, 1<<31-1, true) < -1
	}
	if bad {
		return haLogLine{}, fmt.Errorf("%w: %q", errNotRequest, line)
	}
	return l, nil
}

// Failed reports whether HAProxy saw the request fail: not 2xx, or an abnormal end.
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

// haLogResult is the backend's request lines counted and the failed ones kept.
type haLogResult struct {
	Requests int64
	Failed   []haLogLine
}

// Bounds of the failed lines kept and of the socket buffer.
const (
	haLogMaxFailed = 200000
	haLogRecvBuf   = 32 << 20
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
	h := &haLog{conn: c, backend: backend, loc: time.Local, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			} else if err == nil {
				h.add(string(buf[:n]))
			}
		}
	}()
	return h, nil
}

// Target is the `log` target for HAProxy (pulsed's haproxy_log).
func (h *haLog) Target() string { return h.conn.LocalAddr().String() + " format raw local0" }

// add takes one datagram (one line), if a request line of the backend.
func (h *haLog) add(line string) {
	l, err := parseHAProxyLog(strings.TrimRight(line, "\r\n"), h.loc)
	if err != nil || l.Backend != h.backend {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.res.Requests++
	if l.Failed() && len(h.res.Failed) < haLogMaxFailed {
		h.res.Failed = append(h.res.Failed, l)
	}
}

// close stops receiving after linger and returns what was kept.
func (h *haLog) close(linger time.Duration) haLogResult {
	time.Sleep(linger)
	_ = h.conn.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.res
}

// statAcc sums HAProxy's per-server counters over polls across reloads (a counter
// that went down is all new); per poll, the servers' addresses and whose econ/eresp rose.
type statAcc struct {
	last  map[string]gateway.ServerStat
	total map[string]*gateway.ServerStat
	polls []time.Time
	addrs []map[string]string // per poll: server → address, servers not in maintenance
	errs  []soakStatErr
}

// soakStatErr is a server whose econ or eresp rose in the poll at At.
type soakStatErr struct {
	At           time.Time
	Server, Addr string
}

// newStatAcc is an empty accumulator.
func newStatAcc() *statAcc {
	return &statAcc{last: map[string]gateway.ServerStat{}, total: map[string]*gateway.ServerStat{}}
}

// restart forgets what was counted so far: the totals count from the last poll on.
func (a *statAcc) restart() {
	a.total, a.polls, a.addrs, a.errs = map[string]*gateway.ServerStat{}, nil, nil, nil
}

// add takes one poll's rows of the backend, made at at.
func (a *statAcc) add(at time.Time, rows []gateway.ServerStat) {
	addrs := map[string]string{}
	for _, r := range rows {
		prev, seen := a.last[r.Server]
		a.last[r.Server] = r
		t := a.total[r.Server]
		if t == nil {
			t = &gateway.ServerStat{Backend: r.Backend, Server: r.Server}
			a.total[r.Server] = t
		}
		t.Status, t.Addr = r.Status, r.Addr
		cur, old, sum := statCounters(&r), statCounters(&prev), statCounters(t)
		var d [7]int64
		for i := range cur {
			if d[i] = *cur[i]; seen && d[i] >= *old[i] {
				d[i] -= *old[i]
			}
			*sum[i] += d[i]
		}
		if seen && d[4]+d[5] > 0 { // econ, eresp rose
			a.errs = append(a.errs, soakStatErr{At: at, Server: r.Server, Addr: r.Addr})
		}
		if !strings.HasPrefix(r.Status, "MAINT") {
			addrs[r.Server] = r.Addr
		}
	}
	a.polls, a.addrs = append(a.polls, at), append(a.addrs, addrs)
}

// statCounters are the counters of s the accumulator sums (econ, eresp 5th and 6th).
func statCounters(s *gateway.ServerStat) []*int64 {
	return []*int64{&s.Sessions, &s.Connects, &s.CheckFails, &s.Downs, &s.ConnErrors, &s.RespErrors, &s.HTTP5xx}
}

// addrAt is server's address at t: from the last poll at or before t that found it in
// service, else the first after (within 10 s).
func (a *statAcc) addrAt(server string, t time.Time) string {
	i := sort.Search(len(a.polls), func(i int) bool { return a.polls[i].After(t) })
	var order []int
	for j := i - 1; j >= 0 && t.Sub(a.polls[j]) < 10*time.Second; j-- {
		order = append(order, j)
	}
	for j := i; j < len(a.polls) && a.polls[j].Sub(t) < 10*time.Second; j++ {
		order = append(order, j)
	}
	for _, j := range order {
		if addr, ok := a.addrs[j][server]; ok {
			return addr
		}
	}
	return ""
}

// suspect is the one server whose econ or eresp rose in the first poll at or after end.
func (a *statAcc) suspect(end time.Time) (soakStatErr, bool) {
	i := sort.Search(len(a.polls), func(i int) bool { return !a.polls[i].Before(end) })
	var found []soakStatErr
	for _, e := range a.errs {
		if i < len(a.polls) && e.At.Equal(a.polls[i]) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		return soakStatErr{}, false
	}
	return found[0], true
}

// serverRows are a row per server that took a session, in slot order.
func serverRows(a *statAcc) []*report.Row {
	var out []*report.Row
	for _, n := range slices.SortedFunc(maps.Keys(a.total), func(x, y string) int { return cmp.Or(cmp.Compare(slotNumber(x), slotNumber(y)), strings.Compare(x, y)) }) {
		if t := a.total[n]; t.Sessions > 0 {
			out = append(out, report.NewRow("server", "server", n).Put("sessions", float64(t.Sessions)).Put("connects", float64(t.Connects)).
				Put("connect_pct", report.Round3(100*float64(t.Connects)/float64(t.Sessions))))
		}
	}
	return out
}

// slotNumber is N of s<N>, a large number for other names.
func slotNumber(name string) int {
	if n, err := strconv.Atoi(strings.TrimPrefix(name, "s")); err == nil && strings.HasPrefix(name, "s") {
		return n
	}
	return 1 << 30
}

// soakKill is the kill of the replica at Addr: from the docker kill call to its end.
type soakKill struct {
	CallAt, At time.Time
	Addr       string
}

// inFlight reports whether a request from start to end overlapped the kill.
func (k *soakKill) inFlight(start, end time.Time) bool {
	from := k.CallAt
	if from.IsZero() || from.After(k.At) {
		from = k.At
	}
	return !start.After(k.At) && !end.Before(from)
}

// Where a failure's server came from.
const (
	viaLog      = "log"
	viaCounters = "counters"
)

// attributeFailures puts each failed request through the gateway down to a server: by
// HAProxy's log line of it (same client port, nearest %tr within 1 s), else (no line) by
// the one server whose econ/eresp rose in the next poll. One on the killed replica's
// address that overlapped the kill is in flight. A row per failure, in start order.
func attributeFailures(fails []loadFail, t0 time.Time, lines []haLogLine, acc *statAcc, kill *soakKill) []*report.Row {
	byPort := map[int][]int{}
	for i, l := range lines {
		if l.Failed() {
			byPort[l.ClientPort] = append(byPort[l.ClientPort], i)
		}
	}
	used := make([]bool, len(lines))
	sorted := slices.Clone(fails)
	slices.SortFunc(sorted, func(a, b loadFail) int { return cmp.Compare(a.Req.StartNS, b.Req.StartNS) })
	var out []*report.Row
	for _, f := range sorted {
		r := f.Req
		start := t0.Add(time.Duration(r.StartNS))
		end := start.Add(time.Duration(r.LatencyUS) * time.Microsecond)
		o := report.NewRow("failure", "path", map[bool]string{true: pathDirect, false: pathGateway}[r.Direct], "error", reqErrName(r.Err), "message", f.Msg)
		o.Put("start_s", report.Round3(float64(r.StartNS)/1e9)).Put("latency_ms", report.Round3(float64(r.LatencyUS)/1000))
		best, bestD := -1, time.Duration(math.MaxInt64)
		for _, i := range byPort[int(r.Port)] {
			if d := lines[i].Accept.Sub(start).Abs(); !used[i] && d <= time.Second && d < bestD && !r.Direct && r.Port != 0 {
				best, bestD = i, d
			}
		}
		var server, addr string
		if best >= 0 {
			used[best] = true
			server, addr, o.Labels["via"] = lines[best].Server, acc.addrAt(lines[best].Server, lines[best].Accept), viaLog
		} else if e, ok := acc.suspect(end); ok && !r.Direct {
			server, addr, o.Labels["via"] = e.Server, e.Addr, viaCounters
		}
		if server != "" {
			o.Labels["server"], o.Labels["addr"] = server, addr
			if kill != nil && addr == kill.Addr && addr != "" && kill.inFlight(start, end) {
				o.Labels["in_flight"] = "yes"
			}
		}
		out = append(out, o)
	}
	return out
}
