package watchdog

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pulsefaas/pulse/contract"
)

// Version is the watchdog's version, set at link time with
// -ldflags "-X github.com/pulsefaas/pulse/watchdog.Version=…".
var Version = "dev"

// runner is what serves a function's requests in one mode. Start brings the
// function up (a no-op except in http mode) and returns when ctx ends and
// everything it started has stopped.
type runner interface {
	http.Handler
	run(ctx context.Context, ready func(bool)) error
}

// Server is the watchdog: the function's HTTP front, its limits, health,
// metrics and graceful drain.
type Server struct {
	cfg      Config
	log      *slog.Logger
	fn       runner
	metrics  *metrics
	inflight atomic.Int64
	ready    atomic.Bool
	draining atomic.Bool
}

// New builds a watchdog for cfg. handler is the in-process function and must
// be nil unless cfg.Mode is in-process.
func New(cfg Config, handler http.Handler, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if (handler != nil) != (cfg.Mode == contract.ModeInProcess) {
		return nil, fmt.Errorf("watchdog: mode %s with handler %v: an in-process function needs a handler, other modes none", cfg.Mode, handler != nil)
	}
	log = log.With("function", cfg.Function, "mode", cfg.Mode)
	s := &Server{cfg: cfg, log: log}
	s.metrics = newMetrics(cfg.Function, cfg.Mode, &s.inflight, time.Now())
	switch cfg.Mode {
	case contract.ModeInProcess:
		s.fn = newInProcess(handler, cfg, log, s.metrics)
	case contract.ModeFork:
		f, err := newForkRunner(cfg, log, s.metrics)
		if err != nil {
			return nil, err
		}
		s.fn = f
	case contract.ModeHTTP:
		p, err := newHTTPRunner(cfg, log, s.metrics)
		if err != nil {
			return nil, err
		}
		s.fn = p
	}
	return s, nil
}

// ServeHTTP answers the reserved endpoints and passes everything else to the
// function, within the in-flight, body and time limits.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The replica credential first, for every path: only the gateway and
	// the collector hold it. It is removed whether checked or not, so a
	// function never sees it.
	if s.cfg.ReplicaAuth != "" && !s.authorized(r.Header[contract.HeaderReplicaAuth]) {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusForbidden, "replica credential required: requests reach a replica through the Pulse gateway")
		return
	}
	r.Header.Del(contract.HeaderReplicaAuth)
	if p := r.URL.Path; len(p) >= 3 && p[:3] == contract.ReservedPrefix {
		s.serveReserved(w, r)
		return
	}
	// The gateway's own routing header is not part of the request.
	r.Header.Del(contract.HeaderFunction)
	start := time.Now()
	bt := s.metrics.busy.begin(start)
	n := s.inflight.Add(1)
	if s.cfg.MaxInflight > 0 && n > s.cfg.MaxInflight {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too many requests in flight", "limit", s.cfg.MaxInflight)
		s.endRequest(start, bt, http.StatusTooManyRequests)
		return
	}
	if r.ContentLength > s.cfg.MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "limit", s.cfg.MaxBody)
		s.endRequest(start, bt, http.StatusRequestEntityTooLarge)
		return
	}
	if s.draining.Load() {
		// Still serving during the drain grace, but every client is told to
		// open its next connection elsewhere.
		w.Header().Set("Connection", "close")
	}
	// One allocation holds the request's deadline context, status recorder,
	// body limit and (in-process) guarded writer; none of it is pooled, as
	// a handler may keep its context past its return.
	st := &requestState{
		s: s, start: start, bt: bt, method: r.Method,
		ctx:  deadlineCtx{parent: r.Context(), deadline: start.Add(s.cfg.Timeout)},
		rec:  statusRecorder{ResponseWriter: w},
		body: limitedBody{rc: r.Body, left: s.cfg.MaxBody, limit: s.cfg.MaxBody},
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &st.body
	}
	if p, ok := s.fn.(*inProcess); ok {
		p.serve(st, r.WithContext(&st.ctx))
		return
	}
	rec := &st.rec
	defer func() {
		st.ctx.release()
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				st.finish(rec.statusOr(http.StatusBadGateway))
				panic(v)
			}
			s.log.Error("function panicked", "panic", fmt.Sprint(v), "path", r.URL.Path)
			if rec.status == 0 {
				writeError(rec, http.StatusInternalServerError, "function panicked")
			}
		}
		st.finish(rec.statusOr(http.StatusOK))
	}()
	s.fn.ServeHTTP(rec, r.WithContext(&st.ctx))
}

// endRequest records a request that began at start (bt from busy.begin)
// and was answered with code.
func (s *Server) endRequest(start time.Time, bt time.Duration, code int) {
	s.metrics.observe(code, time.Since(start))
	s.metrics.busy.end(bt)
	s.inflight.Add(-1)
}

// authorized reports whether a request's credential header values are
// exactly one value equal to the replica credential, compared in constant
// time (for a given length).
func (s *Server) authorized(vals []string) bool {
	return len(vals) == 1 && subtle.ConstantTimeCompare([]byte(vals[0]), []byte(s.cfg.ReplicaAuth)) == 1
}

type requestState struct {
	s      *Server
	start  time.Time
	method string
	bt     time.Duration // from busy.begin
	ended  atomic.Bool
	ctx    deadlineCtx
	rec    statusRecorder
	body   limitedBody
	// In-process mode: the guarded writer and the place in the list of
	// requests in flight.
	guard      guardedWriter
	prev, next *requestState
	listed     bool
}

// finish records the request's end once: when the handler returns, or at
// its deadline if the watchdog answered for it first.
func (st *requestState) finish(code int) {
	if st.ended.CompareAndSwap(false, true) {
		st.s.endRequest(st.start, st.bt, code)
	}
}

// limitedBody is http.MaxBytesReader without its allocation: reading past
// limit fails with *http.MaxBytesError.
type limitedBody struct {
	rc    io.ReadCloser
	left  int64
	limit int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = -1
		return n, &http.MaxBytesError{Limit: b.limit}
	}
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

func (s *Server) serveReserved(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case contract.HealthPath:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		switch {
		case s.draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"draining"}` + "\n"))
		case !s.ready.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"starting"}` + "\n"))
		case s.cfg.MaxOverdue > 0 && s.metrics.overdue.Load() >= s.cfg.MaxOverdue:
			// Handlers that ignore their deadline cannot be stopped: past
			// the limit the replica asks to be replaced.
			w.WriteHeader(http.StatusServiceUnavailable)
			b := append([]byte(`{"status":"overdue","overdue":`), strconv.FormatInt(s.metrics.overdue.Load(), 10)...)
			_, _ = w.Write(append(b, "}\n"...))
		default:
			_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
		}
	case contract.MetricsPath:
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = s.metrics.write(w)
	default:
		writeError(w, http.StatusNotFound, "no such watchdog endpoint", "path", r.URL.Path)
	}
}

// Run serves until ctx is cancelled (SIGTERM), then drains: health fails at
// once while requests are still served for the drain grace, then the
// listener closes and in-flight requests finish, up to the write timeout.
// A second cancellation of skip (e.g. a second signal) cuts the grace short.
func (s *Server) Run(ctx context.Context, skip <-chan struct{}) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln, skip)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener, skip <-chan struct{}) error {
	reaper := newConnReaper(s.cfg)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ConnState:         reaper.track,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	fnCtx, stopFn := context.WithCancel(context.WithoutCancel(ctx))
	defer stopFn()
	go reaper.run(fnCtx)
	fnDone := make(chan error, 1)
	go func() { fnDone <- s.fn.run(fnCtx, s.ready.Store) }()
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	s.log.Info("watchdog listening", "addr", ln.Addr().String(), "version", Version,
		"timeout", s.cfg.Timeout.String(), "max_inflight", s.cfg.MaxInflight)

	select {
	case err := <-srvDone:
		stopFn()
		<-fnDone
		return fmt.Errorf("serve: %w", err)
	case err := <-fnDone:
		// The function's runner only stops by itself on a fatal error.
		_ = srv.Close()
		return fmt.Errorf("function runner: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("draining: failing health, still serving", "grace", s.cfg.DrainGrace.String())
	if s.cfg.DrainGrace > 0 {
		t := time.NewTimer(s.cfg.DrainGrace)
		select {
		case <-t.C:
		case <-skip:
			t.Stop()
			s.log.Info("drain grace cut short")
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	stopFn()
	ferr := <-fnDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if ferr != nil && !errors.Is(ferr, context.Canceled) {
		return fmt.Errorf("function runner: %w", ferr)
	}
	s.log.Info("stopped", "inflight", s.inflight.Load())
	return nil
}

// statusRecorder remembers the status code a function answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) statusOr(def int) int {
	if r.status == 0 {
		return def
	}
	return r.status
}

// writeError answers with a JSON error body: {"error": msg, k: v, ...};
// values are strings, ints or int64s.
func writeError(w http.ResponseWriter, code int, msg string, kv ...any) {
	b := errorBody(msg, kv...)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Del("Content-Encoding")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// errorBody is writeError's body.
func errorBody(msg string, kv ...any) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		b = append(b, ',')
		b = appendJSONString(b, k)
		b = append(b, ':')
		switch v := kv[i+1].(type) {
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case string:
			b = appendJSONString(b, v)
		default:
			b = appendJSONString(b, fmt.Sprint(v))
		}
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\t':
			b = append(b, '\\', 't')
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
