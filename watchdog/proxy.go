package watchdog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

const (
	upstreamPoll       = 10 * time.Millisecond // how often a starting process is dialled
	upstreamStopGrace  = 5 * time.Second       // SIGTERM → SIGKILL for the http-mode process
	restartBackoffMin  = 100 * time.Millisecond
	restartBackoffMax  = 5 * time.Second
	restartBackoffKeep = 10 * time.Second // a process that ran this long resets the backoff
	// replayableBody is the largest request body buffered before it is sent,
	// so that a request that meets a pooled connection the function process
	// has just closed can be sent again on a new one.
	replayableBody = 64 << 10
	maxIdleConns   = 1024
)

// proxy is http mode: one long-running function process, started and
// restarted by the watchdog, reached over pooled keep-alive HTTP/1.1
// connections on loopback.
//
// It is not net/http/httputil.ReverseProxy over http.Transport: that pair was
// measured here first and added 560 KB to the binary, 440 KB of idle RSS, and
// per request a hand-off to the transport's read and write goroutines, which
// against a 40 µs CPU-per-request goal is most of the budget. Upstream is a
// single local process, so the client half is plain: write the request on
// the handler's goroutine and read the answer with http.ReadResponse.
type proxy struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	procs *procs
	idle  chan *upConn
	bufs  sync.Pool
	dial  net.Dialer
}

type upConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newProxy(cfg Config, log *slog.Logger, m *metrics) (*proxy, error) {
	n := int(cfg.MaxInflight)
	if n <= 0 || n > maxIdleConns {
		n = maxIdleConns
	}
	return &proxy{
		cfg: cfg, log: log, m: m, procs: sharedProcs(),
		idle: make(chan *upConn, n),
		bufs: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
		dial: net.Dialer{Timeout: 2 * time.Second},
	}, nil
}

func (p *proxy) get(ctx context.Context) (*upConn, bool, error) {
	select {
	case uc := <-p.idle:
		return uc, true, nil
	default:
	}
	c, err := p.dial.DialContext(ctx, "tcp", p.cfg.Upstream)
	if err != nil {
		return nil, false, err
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}, false, nil
}

func (p *proxy) put(uc *upConn) {
	_ = uc.c.SetDeadline(time.Time{})
	select {
	case p.idle <- uc:
	default:
		uc.c.Close()
	}
}

// errBeforeResponse marks a failure before any byte of the answer arrived.
type errBeforeResponse struct{ err error }

func (e errBeforeResponse) Error() string { return e.err.Error() }
func (e errBeforeResponse) Unwrap() error { return e.err }

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := upstreamTarget(r); !ok {
		writeError(w, http.StatusBadRequest, "the request target must be a path starting with '/'")
		return
	}
	ctx := r.Context()
	var body []byte
	replayable := r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody
	if r.ContentLength > 0 && r.ContentLength <= replayableBody {
		bp := p.bufs.Get().(*[]byte)
		defer p.bufs.Put(bp)
		buf := (*bp)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
			return
		}
		body, replayable = buf, true
	}
	for attempt := 0; ; attempt++ {
		uc, reused, err := p.get(ctx)
		if err != nil {
			p.fail(w, r, err)
			return
		}
		err = p.roundTrip(ctx, uc, w, r, body)
		if err == nil {
			return
		}
		uc.c.Close()
		var before errBeforeResponse
		if reused && replayable && errors.As(err, &before) && ctx.Err() == nil && attempt < 2 {
			continue // the process closed an idle connection: try a fresh one
		}
		if errors.Is(err, http.ErrAbortHandler) {
			panic(http.ErrAbortHandler)
		}
		p.fail(w, r, err)
		return
	}
}

// roundTrip sends r on uc and copies the answer to w. It returns nil when
// the answer went out; then uc is back in the pool or closed.
func (p *proxy) roundTrip(ctx context.Context, uc *upConn, w http.ResponseWriter, r *http.Request, body []byte) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = uc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := p.writeRequest(uc.bw, r, body); err != nil {
		return errBeforeResponse{fmt.Errorf("write request: %w", err)}
	}
	resp, err := http.ReadResponse(uc.br, r)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(uc.br, r) // skip 100 Continue and 103 Early Hints
	}
	if err != nil {
		return errBeforeResponse{fmt.Errorf("read response: %w", err)}
	}
	if resp.ContentLength > p.cfg.MaxResponse {
		resp.Body.Close()
		return errResponseTooLarge
	}
	h := w.Header()
	for k, vv := range resp.Header {
		if hopByHop(k) {
			continue
		}
		h[k] = vv
	}
	w.WriteHeader(resp.StatusCode)
	bp := p.bufs.Get().(*[]byte)
	n, err := io.CopyBuffer(w, io.LimitReader(resp.Body, p.cfg.MaxResponse+1), *bp)
	p.bufs.Put(bp)
	if n > p.cfg.MaxResponse {
		p.m.kill(contract.KillResponseLimit)
		p.log.Warn("function response over the limit; aborting", "limit", p.cfg.MaxResponse)
		return http.ErrAbortHandler
	}
	if err != nil {
		// The status line is out: aborting the client connection is the
		// only honest signal left.
		p.log.Debug("copying response", "err", err)
		return http.ErrAbortHandler
	}
	resp.Body.Close()
	if resp.Close || r.Close {
		uc.c.Close()
	} else {
		p.put(uc)
	}
	return nil
}

// writeRequest writes r as an HTTP/1.1 request: hop-by-hop headers dropped,
// X-Forwarded-For extended, exactly one Content-Length (or chunked), the
// body from body if buffered, else streamed.
func (p *proxy) writeRequest(bw *bufio.Writer, r *http.Request, body []byte) error {
	target, _ := upstreamTarget(r)
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	var conn []string
	if c := r.Header["Connection"]; len(c) > 0 {
		conn = c
	}
	for k, vv := range r.Header {
		// Content-Length is written below, from the body actually sent
		// (a second one makes a strict upstream refuse the request);
		// Host is on the request line's heels already.
		if hopByHop(k) || k == "Content-Length" || k == "Host" || k == "X-Forwarded-For" || k == "Expect" || listed(conn, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
			bw.WriteString(strings.Join(prior, ", "))
			bw.WriteString(", ")
		}
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	switch {
	case body != nil || r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody:
		if len(body) > 0 || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			bw.WriteString("Content-Length: ")
			bw.WriteString(strconv.Itoa(len(body)))
			bw.WriteString("\r\n")
		}
		bw.WriteString("\r\n")
		bw.Write(body)
		return bw.Flush()
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		if _, err := io.CopyN(bw, r.Body, r.ContentLength); err != nil {
			return err
		}
		return bw.Flush()
	default: // unknown length: chunked
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		bp := p.bufs.Get().(*[]byte)
		defer p.bufs.Put(bp)
		buf := *bp
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				bw.WriteString(strconv.FormatInt(int64(n), 16))
				bw.WriteString("\r\n")
				bw.Write(buf[:n])
				bw.WriteString("\r\n")
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		bw.WriteString("0\r\n\r\n")
		return bw.Flush()
	}
}

// upstreamTarget is the origin-form target r is sent upstream with, and
// whether it has one: an opaque absolute URI ("a:b") has no path to send.
func upstreamTarget(r *http.Request) (string, bool) {
	t := r.URL.RequestURI()
	return t, strings.HasPrefix(t, "/") || (t == "*" && r.Method == http.MethodOptions)
}

// hopByHop reports the headers that belong to one connection (RFC 9110
// §7.6.1), in canonical form.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// listed reports whether a Connection header names k.
func listed(conn []string, k string) bool {
	for _, v := range conn {
		for _, f := range strings.Split(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
		}
	}
	return false
}

var errResponseTooLarge = errors.New("function response too large")

func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	switch {
	case errors.Is(err, errResponseTooLarge):
		p.m.kill(contract.KillResponseLimit)
		writeError(w, http.StatusBadGateway, "function response too large", "limit", p.cfg.MaxResponse)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || pastDeadline(ctx):
		p.m.kill(contract.KillTimeout)
		writeError(w, http.StatusGatewayTimeout, "function timed out", "timeout", p.cfg.Timeout.String())
	case ctx.Err() != nil:
		p.m.kill(contract.KillDisconnect)
		w.WriteHeader(499)
	default:
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "limit", tooBig.Limit)
			return
		}
		p.log.Warn("function unreachable", "err", err)
		writeError(w, http.StatusBadGateway, "function unreachable")
	}
}

// pastDeadline reports whether ctx's deadline has passed: the connection's
// deadline (set to the same instant) can fire before ctx notices.
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// run starts the function process, reports ready once it accepts
// connections, and restarts it (with backoff) whenever it exits, until ctx
// ends; then it stops the process: SIGTERM to its group, SIGKILL after a
// grace.
func (p *proxy) run(ctx context.Context, ready func(bool)) error {
	backoff := restartBackoffMin
	for {
		started := time.Now()
		proc, err := p.start()
		if err != nil {
			return err // the executable was checked at start: this is fatal
		}
		p.log.Info("function process started", "pid", proc.pid)
		done := make(chan syscall.WaitStatus, 1)
		go func() { done <- proc.wait() }()
		status, exited := p.waitAccepting(ctx, done)
		if !exited && ctx.Err() == nil {
			ready(true)
			p.log.Info("function process accepting", "pid", proc.pid, "after", time.Since(started).String())
			select {
			case status = <-done:
				exited = true
			case <-ctx.Done():
			}
		}
		ready(false)
		p.dropIdle()
		if ctx.Err() != nil {
			if !exited {
				p.stop(proc, done)
			}
			return nil
		}
		p.m.restarts.Add(1)
		p.log.Error("function process exited; restarting", "pid", proc.pid,
			"status", describeStatus(status), "backoff", backoff.String())
		if time.Since(started) > restartBackoffKeep {
			backoff = restartBackoffMin
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, restartBackoffMax)
	}
}

// dropIdle closes the pooled connections of a process that is gone.
func (p *proxy) dropIdle() {
	for {
		select {
		case uc := <-p.idle:
			uc.c.Close()
		default:
			return
		}
	}
}

func (p *proxy) start() (*process, error) {
	null := devNull(syscall.O_RDONLY)
	if null < 0 {
		return nil, errors.New("start function: cannot open /dev/null")
	}
	defer syscall.Close(null)
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll(outR, outW)
		return nil, err
	}
	proc, err := p.procs.start(p.cfg.Exec, baseEnv(os.Environ()), []uintptr{uintptr(null), uintptr(outW), uintptr(errW)})
	closeAll(outW, errW)
	if err != nil {
		closeAll(outR, errR)
		return nil, err
	}
	for _, s := range []struct {
		fd   int
		name string
	}{{outR, "stdout"}, {errR, "stderr"}} {
		f, err := pollable(s.fd, s.name)
		if err != nil {
			continue
		}
		go p.logLines(f, s.name, proc.pid)
	}
	return proc, nil
}

func (p *proxy) logLines(f *os.File, stream string, pid int) {
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		p.log.Info(stream, "pid", pid, "line", sc.Text())
	}
}

// waitAccepting dials the upstream until it accepts, the process exits or
// ctx ends. It reports whether the process exited, and how.
func (p *proxy) waitAccepting(ctx context.Context, done <-chan syscall.WaitStatus) (syscall.WaitStatus, bool) {
	t := time.NewTicker(upstreamPoll)
	defer t.Stop()
	d := net.Dialer{Timeout: upstreamPoll * 10}
	for {
		c, err := d.DialContext(ctx, "tcp", p.cfg.Upstream)
		if err == nil {
			c.Close()
			return 0, false
		}
		select {
		case st := <-done:
			return st, true
		case <-ctx.Done():
			return 0, false
		case <-t.C:
		}
	}
}

func (p *proxy) stop(proc *process, done <-chan syscall.WaitStatus) {
	proc.killGroup(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(upstreamStopGrace):
		p.log.Warn("function process ignored SIGTERM; killing", "pid", proc.pid)
		proc.killGroup(syscall.SIGKILL)
		<-done
	}
	p.log.Info("function process stopped", "pid", proc.pid)
}

func describeStatus(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}
