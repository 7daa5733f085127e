package watchdog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// inProcess serves a Go function linked into the watchdog binary.
//
// The handler runs on the request's goroutine, as net/http calls it,
// behind a guardedWriter. At the request's deadline the watchdog answers
// 504 itself (or cuts an answer already under way) if the handler has not
// returned by then, whether or not it has stopped, and closes the writer:
// every later write fails. A goroutine cannot be killed: a handler still
// running past its deadline is counted (contract.MetricOverdue) until it
// returns, and health fails while Config.MaxOverdue of them run. An answer
// over the response limit is refused with 502 (a declared length) or cut.
//
// The deadlines are kept by one goroutine over a list of the requests in
// flight, not by a goroutine or a timer per request: measured with wrk, a
// goroutine waiting on each handler cost 3 µs of CPU per request (12.4 →
// 15.8 µs), and a runtime timer per request as much again (it wakes the
// network poller, as net/http's own timeouts did: see connReaper), against
// a goal of 5 % over a bare server. Every request has the same timeout, so
// the list is in deadline order: the keeper sleeps until the first
// deadline, about once per timeout when requests are quick.
type inProcess struct {
	h        http.Handler
	cfg      Config
	log      *slog.Logger
	m        *metrics
	inflight expiryList
}

func newInProcess(h http.Handler, cfg Config, log *slog.Logger, m *metrics) *inProcess {
	return &inProcess{h: h, cfg: cfg, log: log, m: m}
}

// expiryList is the in-process requests in flight, oldest first (an
// intrusive doubly-linked list through requestState).
type expiryList struct {
	mu         sync.Mutex
	head, tail *requestState
}

func (l *expiryList) add(st *requestState) {
	l.mu.Lock()
	st.prev, st.next, st.listed = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = st
	} else {
		l.head = st
	}
	l.tail = st
	l.mu.Unlock()
}

func (l *expiryList) remove(st *requestState) {
	l.mu.Lock()
	l.unlinkLocked(st)
	l.mu.Unlock()
}

func (l *expiryList) unlinkLocked(st *requestState) {
	if !st.listed {
		return
	}
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		l.head = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	} else {
		l.tail = st.prev
	}
	st.prev, st.next, st.listed = nil, nil, false
}

// keep expires every request whose deadline has passed, until ctx ends.
// With nothing in flight it sleeps a whole timeout: a request that starts
// meanwhile has its deadline after the wake-up.
func (l *expiryList) keep(ctx context.Context, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := timeout
		now := time.Now()
		for {
			l.mu.Lock()
			h := l.head
			if h == nil {
				l.mu.Unlock()
				break
			}
			if d := h.ctx.deadline.Sub(now); d > 0 {
				next = d
				l.mu.Unlock()
				break
			}
			l.unlinkLocked(h)
			l.mu.Unlock()
			go h.expire() // it may wait for a handler's write in progress
		}
		t.Reset(next)
	}
}

// ServeHTTP calls the handler unguarded; the Server calls serve.
func (p *inProcess) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.h.ServeHTTP(w, r) }

func (p *inProcess) run(ctx context.Context, ready func(bool)) error {
	ready(true)
	p.inflight.keep(ctx, p.cfg.Timeout)
	return nil
}

// connKey is the context key of a request's net.Conn (the server's
// ConnContext), for cutting an answer the handler is still writing.
type connKey struct{}

var errHandlerTimedOut = errors.New("the request timed out: the watchdog answered for this handler")

// serve runs the handler for st's request (r carries st's context).
func (p *inProcess) serve(st *requestState, r *http.Request) {
	g := &st.guard
	g.p, g.st, g.w = p, st, &st.rec
	p.inflight.add(st)
	defer func() {
		p.inflight.remove(st)
		v := recover()
		g.mu.Lock()
		g.finished = true
		if g.overdue {
			p.m.overdue.Add(-1)
			p.log.Info("handler past its deadline returned", "late_by", time.Since(st.ctx.deadline).String(), "path", r.URL.Path)
		}
		if !g.closed {
			switch {
			case v == http.ErrAbortHandler:
			case v != nil:
				p.log.Error("function panicked", "panic", fmt.Sprint(v), "path", r.URL.Path, "request_id", requestID(r))
				if g.committed {
					g.cutLocked() // the status line is out: cutting is the only signal left
				} else {
					g.answerLocked(http.StatusInternalServerError, "function panicked")
				}
			case g.hijacked:
			case !g.committed && !time.Now().Before(st.ctx.deadline):
				// Stopped at its deadline (the timer had not fired yet)
				// without answering.
				p.m.kill(contract.KillTimeout)
				g.answerLocked(http.StatusGatewayTimeout, "function timed out", "timeout", p.cfg.Timeout.String())
			}
		} else if v != nil && v != http.ErrAbortHandler {
			p.log.Error("function panicked after the watchdog answered", "panic", fmt.Sprint(v), "path", r.URL.Path)
		}
		g.closed = true
		g.mu.Unlock()
		st.ctx.release()
		if v == http.ErrAbortHandler {
			st.finish(st.rec.statusOr(http.StatusBadGateway))
			panic(v)
		}
		st.finish(st.rec.statusOr(http.StatusOK))
	}()
	p.h.ServeHTTP(g, r)
}

// expire runs at the request's deadline, on a goroutine of its own: if the
// handler has not returned, the watchdog answers for it (504, or the
// answer under way is cut), ends its context and counts it overdue.
func (st *requestState) expire() {
	g := &st.guard
	p := g.p
	g.mu.Lock()
	if g.finished {
		g.mu.Unlock()
		return
	}
	answered := g.closed
	g.closed = true
	g.overdue = true
	n := p.m.overdue.Add(1)
	if !answered && !g.hijacked {
		p.m.kill(contract.KillTimeout)
		if g.committed {
			g.cutLocked()
		} else {
			g.answerRawLocked(http.StatusGatewayTimeout, errorBody("function timed out", "timeout", p.cfg.Timeout.String()))
		}
	}
	g.mu.Unlock()
	st.ctx.expire(context.DeadlineExceeded)
	p.log.Warn("handler still running past its deadline", "overdue", n, "limit", p.cfg.MaxOverdue)
	if !g.hijacked {
		// The request is over for the metrics too: in flight no more.
		st.finish(st.rec.statusOr(http.StatusGatewayTimeout))
	}
}

// guardedWriter is the ResponseWriter an in-process handler gets. Writes
// pass through until the watchdog answers for the handler (its deadline,
// or an answer over the limit); after, every write fails, so a handler
// past its deadline never touches a response that is no longer its. It
// counts the body against the response limit.
//
// The header map is net/http's, which the handler may touch at any time
// without a lock: so the watchdog's answer at the deadline does not use
// it, but takes the connection over (Hijack) and writes a whole response
// of its own, then closes it. (A map of the handler's own, copied on the
// first write, cost more than the rest of the guard together.)
type guardedWriter struct {
	p         *inProcess
	st        *requestState
	w         *statusRecorder
	h         http.Header // w's, cached
	mu        sync.Mutex
	n         int64
	closed    bool // the watchdog answered (or the handler returned)
	finished  bool // the handler returned
	committed bool // the handler's header went to w
	hijacked  bool
	over      bool // the answer went over the limit
	overdue   bool // counted in metrics.overdue
}

var (
	_ http.Flusher  = (*guardedWriter)(nil)
	_ http.Hijacker = (*guardedWriter)(nil)
)

func (g *guardedWriter) Header() http.Header {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.h == nil {
		g.h = g.w.Header()
	}
	return g.h
}

func (g *guardedWriter) WriteHeader(code int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.committed || g.hijacked {
		return
	}
	if code < 200 { // 1xx: informational, passed on, not the answer
		if code >= 100 && code != http.StatusSwitchingProtocols {
			g.w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	g.commitLocked(code)
}

// commitLocked sends the header, unless a declared length is over the
// limit: then the answer is 502.
func (g *guardedWriter) commitLocked(code int) bool {
	if cl := g.w.Header().Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n > g.p.cfg.MaxResponse {
			g.overLocked()
			return false
		}
	}
	g.committed = true
	g.w.WriteHeader(code)
	return true
}

// answerLocked answers in the handler's stead, on the handler's goroutine
// (it is blocked in a write, or has returned): none of its headers.
func (g *guardedWriter) answerLocked(code int, msg string, kv ...any) {
	h := g.w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Connection", "close")
	writeError(g.w, code, msg, kv...)
}

// answerRawLocked answers in the handler's stead from another goroutine:
// the connection is taken over, the answer written on it whole, and closed.
func (g *guardedWriter) answerRawLocked(code int, body []byte) {
	conn, _, err := http.NewResponseController(g.w.ResponseWriter).Hijack()
	if err != nil {
		g.cutLocked()
		return
	}
	g.w.status = code
	b := make([]byte, 0, 160+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	if g.st.method != http.MethodHead {
		b = append(b, body...)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write(b)
	_ = conn.Close()
}

// overLocked answers for an answer over the limit: 502 if none of it went
// out, else the connection is cut.
func (g *guardedWriter) overLocked() {
	p := g.p
	g.closed, g.over = true, true
	p.m.kill(contract.KillResponseLimit)
	p.log.Warn("function response over the limit", "limit", p.cfg.MaxResponse)
	if g.committed {
		g.cutLocked()
		return
	}
	g.answerLocked(http.StatusBadGateway, "function response too large", "limit", p.cfg.MaxResponse)
}

// cutLocked closes the request's connection: the client sees the answer
// end early, the only honest signal once the status line is out.
func (g *guardedWriter) cutLocked() {
	if c, ok := g.st.ctx.Value(connKey{}).(net.Conn); ok {
		_ = c.Close()
	}
}

func (g *guardedWriter) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.hijacked:
		return 0, http.ErrHijacked
	case g.over:
		return 0, errResponseTooLarge
	case g.closed:
		return 0, errHandlerTimedOut
	}
	if !g.committed && !g.commitLocked(http.StatusOK) {
		return 0, errResponseTooLarge
	}
	if g.n+int64(len(b)) > g.p.cfg.MaxResponse {
		g.overLocked()
		return 0, errResponseTooLarge
	}
	n, err := g.w.Write(b)
	g.n += int64(n)
	return n, err
}

func (g *guardedWriter) Flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.hijacked {
		return
	}
	if !g.committed && !g.commitLocked(http.StatusOK) {
		return
	}
	g.w.Flush()
}

// Hijack hands the connection to the handler; the watchdog then neither
// answers nor cuts it at the deadline (its context still ends, and it is
// counted overdue if it runs past it).
func (g *guardedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, nil, errHandlerTimedOut
	}
	if g.committed {
		return nil, nil, errors.New("hijack after the answer began")
	}
	conn, rw, err := http.NewResponseController(g.w.ResponseWriter).Hijack()
	if err == nil {
		g.hijacked = true
	}
	return conn, rw, err
}

// requestID is the gateway's id of r (contract.HeaderRequestID), if it
// sent a plausible one.
func requestID(r *http.Request) string {
	v := r.Header.Get(contract.HeaderRequestID)
	if len(v) == 0 || len(v) > 128 {
		return ""
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] >= 0x7f || v[i] == '"' || v[i] == '\\' {
			return ""
		}
	}
	return v
}
