package watchdog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/pulsefaas/pulse/contract"
)

const (
	// stderrTail is how much of a failed function's stderr its 500 carries.
	stderrTail = 2048
	// pipeCapacity is Linux's default pipe buffer: a body that fits is
	// written without a goroutine, since the write cannot block.
	pipeCapacity = 64 << 10
	// exitReadGrace bounds reading a process's output after it exited, in
	// case something outside its group (a setsid'd grandchild) holds the pipe.
	exitReadGrace = time.Second
)

// forker runs one process per request: the body on stdin, stdout as the
// response body, stderr to the log, the request in CGI variables.
//
// Each request's goroutine drives its process with blocking system calls
// (ppoll over stdout, stderr, the process's pidfd and a wake-up eventfd,
// then wait4): no extra goroutines, no SIGCHLD hand-offs. Against the
// runtime-poller version this halved the watchdog's own CPU per request.
type forker struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	procs *procs
	base  []string
	bufs  sync.Pool
}

func newForker(cfg Config, log *slog.Logger, m *metrics) (*forker, error) {
	return &forker{
		cfg: cfg, log: log, m: m, procs: sharedProcs(), base: baseEnv(os.Environ()),
		bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}, nil
}

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
	in := f.getBuf()
	defer f.putBuf(in)
	if _, err := in.ReadFrom(r.Body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", "limit", tooBig.Limit)
			return
		}
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
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
	proc, err := f.procs.start(f.cfg.Exec, cgiEnv(f.base, r, in.Len()),
		[]uintptr{uintptr(stdinR), uintptr(stdoutW), uintptr(stderrW)})
	closeAll(stdinR, stdoutW, stderrW)
	if err != nil {
		closeAll(stdinW, stdoutR, stderrR)
		f.fail(w, err)
		return
	}

	// stdin: a body that fits in the pipe is written at once; a larger one
	// by a goroutine, so a function that answers before reading it all
	// cannot deadlock us.
	var stdinDone chan struct{}
	if in.Len() <= pipeCapacity {
		_, _ = syscall.Write(stdinW, in.Bytes())
		syscall.Close(stdinW)
	} else {
		stdinDone = make(chan struct{})
		go func(body []byte) {
			defer close(stdinDone)
			for len(body) > 0 {
				n, err := syscall.Write(stdinW, body)
				if err == syscall.EINTR {
					continue
				}
				if err != nil {
					break
				}
				body = body[n:]
			}
			syscall.Close(stdinW)
		}(in.Bytes())
	}

	res := f.drive(r.Context(), proc, stdoutR, stderrR)
	if stdinDone != nil {
		<-stdinDone // in is reused after return
	}
	defer f.putBuf(res.out)
	if res.killed != "" {
		f.m.kill(res.killed)
	}
	switch {
	case res.killed == contract.KillTimeout:
		writeError(w, http.StatusGatewayTimeout, "function timed out", "timeout", f.cfg.Timeout.String())
	case res.killed == contract.KillDisconnect:
		w.WriteHeader(499) // client closed the request; nobody reads this
	case res.killed == contract.KillResponseLimit:
		f.log.Warn("function response over the limit, killed", "pid", proc.pid, "limit", f.cfg.MaxResponse)
		writeError(w, http.StatusBadGateway, "function response too large", "limit", f.cfg.MaxResponse)
	case !res.status.Exited() || res.status.ExitStatus() != 0:
		kv := []any{"stderr", string(res.tail)}
		if res.status.Signaled() {
			kv = append(kv, "signal", res.status.Signal().String())
		} else {
			kv = append(kv, "exit_code", res.status.ExitStatus())
		}
		writeError(w, http.StatusInternalServerError, "function failed", kv...)
	default:
		w.Header().Set("Content-Length", strconv.Itoa(res.out.Len()))
		_, _ = w.Write(res.out.Bytes())
	}
}

type forkResult struct {
	status syscall.WaitStatus
	out    *bytes.Buffer
	tail   []byte // end of stderr
	killed string // a contract.Kill* reason, or ""
}

// drive reads the process's stdout and stderr until both close and it has
// exited, killing its group on timeout, on a response over the limit, or
// when the client goes away. It closes stdout and stderr.
func (f *forker) drive(ctx context.Context, proc *process, stdout, stderr int) forkResult {
	res := forkResult{out: f.getBuf()}
	defer closeAll(stdout, stderr)

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
	for fds[0].fd >= 0 || fds[1].fd >= 0 || !exited {
		n, err := ppoll(fds, deadline)
		if err != nil {
			f.log.Error("poll", "err", err)
			kill(contract.KillDisconnect)
			break
		}
		if n == 0 { // deadline
			if !exited {
				kill(contract.KillTimeout)
				deadline = time.Now().Add(exitReadGrace)
				continue
			}
			break // output still held open by an escaped process
		}
		for i := range fds {
			if fds[i].revents == 0 {
				continue
			}
			fds[i].revents = 0
			switch i {
			case 0: // stdout
				k, err := syscall.Read(stdout, buf)
				if k > 0 {
					if int64(res.out.Len()+k) > f.cfg.MaxResponse {
						kill(contract.KillResponseLimit)
						fds[0].fd = -1
						continue
					}
					res.out.Write(buf[:k])
				} else if err != syscall.EINTR && err != syscall.EAGAIN {
					fds[0].fd = -1 // EOF or error
				}
			case 1: // stderr
				k, err := syscall.Read(stderr, buf)
				if k > 0 {
					res.tail = appendTail(res.tail, buf[:k])
					errLine = f.logStderr(append(errLine, buf[:k]...), proc.pid)
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
				}
			}
		}
	}
	if len(errLine) > 0 {
		f.log.Info("stderr", "pid", proc.pid, "line", string(errLine))
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
func (f *forker) logStderr(b []byte, pid int) []byte {
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) > 4096 { // a very long line is logged in pieces
				f.log.Info("stderr", "pid", pid, "line", string(b))
				return b[:0]
			}
			return b
		}
		f.log.Info("stderr", "pid", pid, "line", string(b[:i]))
		b = b[i+1:]
	}
}

func (f *forker) fail(w http.ResponseWriter, err error) {
	f.log.Error("cannot start function", "err", err)
	writeError(w, http.StatusInternalServerError, "cannot start function: "+err.Error())
}
