package watchdog

import (
	"bufio"
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
	"syscall"
	"time"

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

type output struct {
	buf      *bytes.Buffer
	overflow bool
	err      error
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

func (f *forker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
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

	stdin, stdinChild, err := pipe(false)
	if err != nil {
		f.fail(w, err)
		return
	}
	stdout, stdoutChild, err := pipe(true)
	if err != nil {
		stdin.Close()
		syscall.Close(stdinChild)
		f.fail(w, err)
		return
	}
	stderr, stderrChild, err := pipe(true)
	if err != nil {
		stdin.Close()
		stdout.Close()
		syscall.Close(stdinChild)
		syscall.Close(stdoutChild)
		f.fail(w, err)
		return
	}
	proc, err := f.procs.start(f.cfg.Exec, cgiEnv(f.base, r, in.Len()),
		uintptr(stdinChild), uintptr(stdoutChild), uintptr(stderrChild))
	syscall.Close(stdinChild)
	syscall.Close(stdoutChild)
	syscall.Close(stderrChild)
	if err != nil {
		stdin.Close()
		stdout.Close()
		stderr.Close()
		f.fail(w, err)
		return
	}
	defer stdout.Close()
	defer stderr.Close()

	// stdin: a body that fits in the pipe is written at once; a larger one
	// by a goroutine, so a function that answers before reading it all
	// cannot deadlock us.
	if in.Len() <= pipeCapacity {
		_, _ = stdin.Write(in.Bytes())
		stdin.Close()
	} else {
		body := in.Bytes()
		done := make(chan struct{})
		defer func() { <-done }() // in is reused after return
		go func() {
			_, _ = stdin.Write(body)
			stdin.Close()
			close(done)
		}()
	}

	outCh := make(chan output, 1)
	go func() {
		b := f.getBuf()
		_, err := b.ReadFrom(io.LimitReader(stdout, f.cfg.MaxResponse+1))
		outCh <- output{buf: b, overflow: int64(b.Len()) > f.cfg.MaxResponse, err: err}
	}()
	tailCh := make(chan []byte, 1)
	go func() { tailCh <- f.logStderr(stderr, proc.pid) }()

	var (
		status  syscall.WaitStatus
		out     output
		exited  bool
		gotOut  bool
		killed  string
		ctxDone = ctx.Done()
	)
	for !exited || !gotOut {
		select {
		case status = <-proc.done:
			exited = true
			proc.killGroup(syscall.SIGKILL) // whatever it left in its group
			deadline := time.Now().Add(exitReadGrace)
			_ = stdout.SetReadDeadline(deadline)
			_ = stderr.SetReadDeadline(deadline)
		case out = <-outCh:
			gotOut = true
			if out.overflow && !exited && killed == "" {
				killed = contract.KillResponseLimit
				proc.killGroup(syscall.SIGKILL)
			}
		case <-ctxDone:
			ctxDone = nil
			if !exited && killed == "" {
				killed = contract.KillDisconnect
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					killed = contract.KillTimeout
				}
				proc.killGroup(syscall.SIGKILL)
			}
		}
	}
	tail := <-tailCh
	defer f.putBuf(out.buf)
	if killed != "" {
		f.m.kill(killed)
	}
	switch {
	case killed == contract.KillTimeout:
		writeError(w, http.StatusGatewayTimeout, "function timed out", "timeout", f.cfg.Timeout.String())
	case killed == contract.KillDisconnect:
		w.WriteHeader(499) // client closed the request; nobody reads this
	case out.overflow:
		f.log.Warn("function response over the limit, killed", "pid", proc.pid, "limit", f.cfg.MaxResponse)
		writeError(w, http.StatusBadGateway, "function response too large", "limit", f.cfg.MaxResponse)
	case !status.Exited() || status.ExitStatus() != 0:
		kv := []any{"stderr", string(tail)}
		if status.Signaled() {
			kv = append(kv, "signal", status.Signal().String())
		} else {
			kv = append(kv, "exit_code", status.ExitStatus())
		}
		writeError(w, http.StatusInternalServerError, "function failed", kv...)
	default:
		w.Header().Set("Content-Length", strconv.Itoa(out.buf.Len()))
		_, _ = w.Write(out.buf.Bytes())
	}
}

// logStderr logs each line the function writes to stderr and returns the
// last stderrTail bytes.
func (f *forker) logStderr(r io.Reader, pid int) []byte {
	var tail []byte
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tail = append(tail, line...)
			if len(tail) > stderrTail {
				tail = append(tail[:0], tail[len(tail)-stderrTail:]...)
			}
			f.log.Info("stderr", "pid", pid, "line", string(bytes.TrimRight(line, "\n")))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return tail
		}
	}
}

func (f *forker) fail(w http.ResponseWriter, err error) {
	f.log.Error("cannot start function", "err", err)
	writeError(w, http.StatusInternalServerError, "cannot start function: "+err.Error())
}
