package watchdog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pulsefaas/pulse/contract"
)

const (
	// stderrTail is how much of a failed function's stderr is logged with
	// its failure.
	stderrTail = 2048
	// exitReadGrace bounds reading a process's output after it exited, in
	// case something outside its group (a setsid'd grandchild) holds the pipe.
	exitReadGrace = time.Second
)

// forker runs one process per request: the body on stdin, stdout as the
// response body, stderr to the log, the request in CGI variables.
//
// Each request's goroutine drives its process with system calls (ppoll
// over stdin, stdout, stderr, the process's pidfd and a wake-up eventfd,
// then wait4): no extra goroutines, no SIGCHLD hand-offs. Against the
// runtime-poller version this halved the watchdog's own CPU per request.
type forker struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	procs    *procs
	base     []string
	bufs     sync.Pool
	oom      *oomWatch
	idPrefix string
	ids      atomic.Uint64
	// slots holds one token per running process (Config.MaxProcesses):
	// each has an OS thread reserved for it (see threads.go).
	slots chan struct{}
	// refusals rate-limits the log of requests refused for the process
	// limit: a fork bomb makes thousands a second.
	refusals logEvery
}

// logEvery lets one log line through per interval and counts the rest.
type logEvery struct {
	next       atomic.Int64 // unix nanoseconds before which lines are counted, not logged
	suppressed atomic.Int64
}

// allow reports whether to log now and, if so, how many were not logged
// since the last line.
func (l *logEvery) allow(now time.Time, every time.Duration) (bool, int64) {
	next := l.next.Load()
	if now.UnixNano() < next || !l.next.CompareAndSwap(next, now.Add(every).UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}

func newForker(cfg Config, log *slog.Logger, m *metrics) (*forker, error) {
	host, _ := os.Hostname()
	if len(host) > 12 {
		host = host[:12]
	}
	procs, threads, err := reserveThreads(cfg.MaxProcesses)
	if err != nil {
		return nil, err
	}
	cfg.MaxProcesses = int64(procs)
	log.Info("process limit", "max_processes", procs, "threads_reserved", threads)
	return &forker{
		cfg: cfg, log: log, m: m, procs: sharedProcs(), base: baseEnv(os.Environ()),
		bufs:     sync.Pool{New: func() any { return new(bytes.Buffer) }},
		oom:      newOOMWatch(),
		idPrefix: "wd-" + host + "-" + strconv.FormatInt(time.Now().Unix(), 36) + "-",
		slots:    make(chan struct{}, procs),
	}, nil
}

// acquire takes a process slot, waiting for one up to the request's
// deadline. It reports false after answering the request itself.
func (f *forker) acquire(ctx context.Context, w http.ResponseWriter) bool {
	select {
	case f.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case f.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			f.m.kill(contract.KillTimeout)
			writeError(w, http.StatusGatewayTimeout, "function timed out waiting for a process slot",
				"timeout", f.cfg.Timeout.String(), "max_processes", f.cfg.MaxProcesses)
		} else {
			w.WriteHeader(499) // client closed the request; nobody reads this
		}
		return false
	}
}

func (f *forker) release() { <-f.slots }

func (f *forker) run(ctx context.Context, ready func(bool)) error {
	ready(true)
	<-ctx.Done()
	return nil
}

func (f *forker) getBuf() *bytes.Buffer {
	b := f.bufs.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func (f *forker) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		f.bufs.Put(b)
	}
}

// closeAll closes every descriptor that is not -1.
func closeAll(fds ...int) {
	for _, fd := range fds {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

func (f *forker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.IndexByte(r.URL.Path, 0) >= 0 {
		writeError(w, http.StatusBadRequest, "the path holds a NUL byte, which no process environment can carry")
		return
	}
	in := spool{small: f.getBuf()}
	defer in.release(f)
	if err := in.readFrom(r.Body, f.cfg.MaxBody); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "limit", tooBig.Limit)
			return
		}
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}

	if !f.acquire(r.Context(), w) {
		return
	}
	held := true // until the process is reaped: writing the answer needs no thread
	defer func() {
		if held {
			f.release()
		}
	}()
	rid := requestID(r)
	if rid == "" {
		rid = f.newRequestID()
	}

	// Descriptors: the child's ends go to start and are closed after it.
	stdinR, stdinW, err := pipe()
	if err != nil {
		f.fail(w, err)
		return
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		closeAll(stdinR, stdinW)
		f.fail(w, err)
		return
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		closeAll(stdinR, stdinW, stdoutR, stdoutW)
		f.fail(w, err)
		return
	}
	proc, err := f.procs.start(f.cfg.Exec, cgiEnv(f.base, r, in.len()),
		[]uintptr{uintptr(stdinR), uintptr(stdoutW), uintptr(stderrW)})
	closeAll(stdinR, stdoutW, stderrW)
	if err != nil {
		closeAll(stdinW, stdoutR, stderrR)
		if errors.Is(err, syscall.EAGAIN) {
			// The replica's pids limit (or RLIMIT_NPROC): most likely the
			// function's own processes hold every pid. Later may work.
			if ok, n := f.refusals.allow(time.Now(), time.Second); ok {
				f.log.Warn("cannot start function: process limit reached", "err", err, "request_id", rid,
					"refused_unlogged", n)
			}
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable,
				"cannot start function: process limit reached (resource temporarily unavailable)", "request_id", rid)
			return
		}
		f.fail(w, err)
		return
	}
	res := f.drive(r.Context(), proc, stdinW, in.bytes(), stdoutR, stderrR, rid)
	// Whether the kernel killed it for memory is read while the slot is
	// held: a file read is a blocking system call, with its thread.
	oomKilled := res.killed == "" && res.status.Signaled() && res.status.Signal() == syscall.SIGKILL && f.oom.killedSince()
	f.release()
	held = false
	defer res.out.release(f)
	if res.killed != "" {
		f.m.kill(res.killed)
	}
	switch {
	case res.killed == contract.KillTimeout:
		writeError(w, http.StatusGatewayTimeout, "function timed out", "timeout", f.cfg.Timeout.String())
	case res.killed == contract.KillDisconnect:
		w.WriteHeader(499) // client closed the request; nobody reads this
	case res.killed == contract.KillResponseLimit:
		f.log.Warn("function response over the limit, killed", "pid", proc.pid, "limit", f.cfg.MaxResponse, "request_id", rid)
		writeError(w, http.StatusBadGateway, "function response too large", "limit", f.cfg.MaxResponse)
	case !res.status.Exited() || res.status.ExitStatus() != 0:
		// stderr went to the log, where it belongs: a function's error
		// output can hold anything (paths, secrets, stack traces), so the
		// client gets the request id to look it up.
		msg, kv := "function failed", []any{"request_id", rid}
		logKV := []any{"pid", proc.pid, "request_id", rid, "stderr_tail", string(res.tail)}
		switch {
		case res.status.Signaled():
			kv = append(kv, "signal", res.status.Signal().String())
			if oomKilled {
				msg = "function failed: out of memory"
				f.m.oom.Add(1)
			}
			logKV = append(logKV, "signal", res.status.Signal().String())
		default:
			kv = append(kv, "exit_code", res.status.ExitStatus())
			logKV = append(logKV, "exit_code", res.status.ExitStatus())
		}
		f.log.Warn(msg, logKV...)
		writeError(w, http.StatusInternalServerError, msg, kv...)
	default:
		w.Header().Set("Content-Length", strconv.Itoa(res.out.len()))
		res.out.writeTo(w)
	}
}

// newRequestID names a request the gateway did not name (a watchdog run
// by hand): unique within this watchdog's life.
func (f *forker) newRequestID() string {
	return f.idPrefix + strconv.FormatUint(f.ids.Add(1), 10)
}

type forkResult struct {
	status syscall.WaitStatus
	out    spool
	tail   []byte // end of stderr
	killed string // a contract.Kill* reason, or ""
}

// spool holds a request body or a process's stdout: up to spillAt bytes in
// a pooled buffer, beyond in an anonymous mapping of the limit's size,
// unmapped when the request ends — so a large body or answer never grows
// the Go heap, whose freed pages the runtime gives back to the kernel only
// slowly (one 100 MB answer over a 10 MiB limit used to leave the watchdog
// 40 MB larger, and the next one got the replica OOM-killed). Only the
// pages actually written are ever resident.
type spool struct {
	small *bytes.Buffer
	big   []byte // mapped, limit+1 bytes of capacity; len is the bytes held
}

// spillAt is the largest body or answer kept in the Go heap.
const spillAt = 256 << 10

func (o *spool) len() int {
	if o.big != nil {
		return len(o.big)
	}
	return o.small.Len()
}

func (o *spool) bytes() []byte {
	if o.big != nil {
		return o.big
	}
	return o.small.Bytes()
}

// space returns room for up to want more bytes, at most limit+1 in all
// (one more than allowed, to see a limit crossed), for commit.
func (o *spool) space(want int, limit int64) []byte {
	if o.big == nil && int64(o.small.Len()+want) > spillAt && limit > spillAt {
		m, err := syscall.Mmap(-1, 0, int(limit+1), syscall.PROT_READ|syscall.PROT_WRITE,
			syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err == nil { // else the heap it is
			o.big = m[:copy(m, o.small.Bytes())]
		}
	}
	if o.big != nil {
		n := len(o.big)
		return o.big[n:min(cap(o.big), n+want)]
	}
	want = int(min(int64(want), limit+1-int64(o.small.Len())))
	o.small.Grow(want)
	return o.small.AvailableBuffer()[:want]
}

// commit adds the first k bytes of the last space to the content.
func (o *spool) commit(k int) {
	if o.big != nil {
		o.big = o.big[:len(o.big)+k]
		return
	}
	b := o.small.AvailableBuffer()
	o.small.Write(b[:k]) // copies onto itself
}

// readFD reads once from fd. It reports the bytes read and whether the
// content is now over limit.
func (o *spool) readFD(fd int, limit int64) (int, bool, error) {
	k, err := syscall.Read(fd, o.space(readChunk, limit))
	if k <= 0 {
		return k, false, err
	}
	o.commit(k)
	return k, int64(o.len()) > limit, nil
}

// readFrom reads r to its end; the caller bounds r (the request body is a
// limitedBody).
func (o *spool) readFrom(r io.Reader, limit int64) error {
	for {
		k, err := r.Read(o.space(readChunk, limit))
		o.commit(k)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if int64(o.len()) > limit {
			return &http.MaxBytesError{Limit: limit}
		}
	}
}

// writeTo sends the content to w.
func (o *spool) writeTo(w http.ResponseWriter) {
	for b := o.bytes(); len(b) > 0; {
		n, err := w.Write(b[:min(len(b), readChunk)])
		if err != nil {
			return
		}
		b = b[n:]
	}
}

func (o *spool) release(f *forker) {
	if o.big != nil {
		_ = syscall.Munmap(o.big[:cap(o.big)])
		o.big = nil
	}
	f.putBuf(o.small)
	o.small = nil
}

// readChunk is how much one read or write of an answer moves.
const readChunk = 64 << 10

// drive writes body to the process's stdin and reads its stdout and stderr
// until both close and it has exited, killing its group on timeout, on a
// response over the limit, or when the client goes away. It closes stdin,
// stdout and stderr.
//
// At the timeout the answer is due: the group is killed and nothing more
// is read, so a process that left its group (setsid) holding a pipe cannot
// hold the request. stdin is written from the same poll loop, never
// blocking, so a process that does not read it cannot either.
func (f *forker) drive(ctx context.Context, proc *process, stdin int, body []byte, stdout, stderr int, rid string) forkResult {
	res := forkResult{out: spool{small: f.getBuf()}}
	defer func() { closeAll(stdin, stdout, stderr) }()
	if len(body) == 0 || syscall.SetNonblock(stdin, true) != nil {
		if len(body) > 0 { // cannot happen on a fresh pipe; do not block on it anyway
			f.log.Error("stdin pipe", "request_id", rid)
		}
		syscall.Close(stdin)
		stdin = -1
	}

	// The client going away wakes the poll through an eventfd. The parent
	// of the watchdog's deadline context is the connection's request
	// context: the deadline itself is the poll's timeout.
	wake := -1
	deadline, _ := ctx.Deadline()
	parent := ctx
	if dc, ok := ctx.(*deadlineCtx); ok {
		parent = dc.parent
	}
	if parent.Done() != nil {
		if fd, err := eventFD(); err == nil {
			wake = fd
			one := uint64(1)
			stop := context.AfterFunc(parent, func() {
				_, _ = syscall.Write(fd, (*[8]byte)(unsafe.Pointer(&one))[:])
			})
			defer func() {
				stop()
				syscall.Close(fd)
			}()
		}
	}

	fds := []pollFd{
		{fd: int32(stdout), events: pollIn},
		{fd: int32(stderr), events: pollIn},
		{fd: int32(proc.pidfd), events: pollIn},
		{fd: int32(wake), events: pollIn}, // a negative fd is ignored by ppoll
		{fd: int32(stdin), events: pollOut},
	}
	kill := func(reason string) {
		if res.killed == "" {
			res.killed = reason
			proc.killGroup(syscall.SIGKILL)
		}
	}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var errLine []byte // stderr not yet logged (no newline seen)
	exited := false
loop:
	for fds[0].fd >= 0 || fds[1].fd >= 0 || !exited {
		n, err := ppoll(fds, deadline)
		if err != nil {
			f.log.Error("poll", "err", err, "request_id", rid)
			kill(contract.KillDisconnect)
			break
		}
		if n == 0 { // deadline
			if !exited {
				kill(contract.KillTimeout)
			}
			break // the answer is due; an escaped process may hold the pipes
		}
		for i := range fds {
			if fds[i].revents == 0 {
				continue
			}
			fds[i].revents = 0
			switch i {
			case 0: // stdout
				k, over, err := res.out.readFD(stdout, f.cfg.MaxResponse)
				switch {
				case over:
					kill(contract.KillResponseLimit)
					break loop
				case k <= 0 && err != syscall.EINTR && err != syscall.EAGAIN:
					fds[0].fd = -1 // EOF or error
				}
			case 1: // stderr
				k, err := syscall.Read(stderr, buf)
				if k > 0 {
					res.tail = appendTail(res.tail, buf[:k])
					errLine = f.logStderr(append(errLine, buf[:k]...), proc.pid, rid)
				} else if err != syscall.EINTR && err != syscall.EAGAIN {
					fds[1].fd = -1
				}
			case 2: // the process exited: its group goes too
				exited = true
				fds[2].fd = -1
				proc.killGroup(syscall.SIGKILL)
				if dl := time.Now().Add(exitReadGrace); deadline.IsZero() || dl.Before(deadline) {
					deadline = dl
				}
			case 3: // client gone
				fds[3].fd = -1
				if !exited {
					kill(contract.KillDisconnect)
					break loop
				}
			case 4: // stdin writable, or its reader gone
				k, err := syscall.Write(stdin, body[:min(len(body), readChunk)])
				if k > 0 {
					body = body[k:]
				}
				if len(body) == 0 || (err != nil && err != syscall.EINTR && err != syscall.EAGAIN) {
					syscall.Close(stdin) // EOF for the function, or it closed its end
					stdin, fds[4].fd = -1, -1
				}
			}
		}
	}
	if len(errLine) > 0 {
		f.log.Info("stderr", "pid", proc.pid, "request_id", rid, "line", string(errLine))
	}
	res.status = proc.wait()
	return res
}

var readBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// appendTail keeps the last stderrTail bytes.
func appendTail(tail, b []byte) []byte {
	tail = append(tail, b...)
	if len(tail) > stderrTail {
		tail = append(tail[:0], tail[len(tail)-stderrTail:]...)
	}
	return tail
}

// logStderr logs every complete line in b and returns the rest.
func (f *forker) logStderr(b []byte, pid int, rid string) []byte {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) > 4096 { // a very long line is logged in pieces
				f.log.Info("stderr", "pid", pid, "request_id", rid, "line", string(b))
				return b[:0]
			}
			return b
		}
		f.log.Info("stderr", "pid", pid, "request_id", rid, "line", string(b[:i]))
		b = b[i+1:]
	}
}

func (f *forker) fail(w http.ResponseWriter, err error) {
	f.log.Error("cannot start function", "err", err)
	writeError(w, http.StatusInternalServerError, "cannot start function: "+err.Error())
}
