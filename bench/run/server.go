package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// launchSpec says how to start one server under test.
type launchSpec struct {
	Bin       string
	Args      []string
	Env       []string // the whole environment
	Addr      string   // 127.0.0.1:port it will listen on
	ReadyPath string   // GET path that answers 200 once it is ready
}

// server is a started server under test: the leader of its own process
// group, killed with the harness (Pdeathsig) if the harness dies first.
type server struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been waited for
	stopped sync.Once
	exit    int
	stopErr error
}

// startServer starts spec with stdout and stderr appended to logPath.
func startServer(spec launchSpec, logPath string) (*server, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Bin, err)
	}
	defer logf.Close() // the child has its own copy once started
	cmd := exec.Command(spec.Bin, spec.Args...)
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Bin, err)
	}
	s := &server{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		close(s.done)
	}()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits up to grace for the server to exit, then
// kills what is left: the server, its process group, and every descendant
// seen just before SIGTERM (a descendant may have moved to a group of its
// own). It returns the server's exit code (-1 if a signal ended it). Only
// the first call acts; later calls return the same result.
func (s *server) stop(grace time.Duration) (int, error) {
	s.stopped.Do(func() {
		pid := s.pid()
		var strays []procStat
		if tree, err := processTree("/proc", pid); err == nil {
			strays = tree[1:]
		}
		killed := false
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err == nil {
			t := time.NewTimer(grace)
			select {
			case <-s.done:
			case <-t.C:
				killed = true
			}
			t.Stop()
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL) // the rest of its group, if any
		for _, p := range strays {
			// Kill only the same process: its pid may have been reused.
			if st, err := readStat("/proc", p.PID); err == nil && st.StartTime == p.StartTime && st.State != "Z" {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
		<-s.done
		s.exit = s.cmd.ProcessState.ExitCode()
		if killed {
			s.stopErr = fmt.Errorf("stop %d: still running %s after SIGTERM, killed", pid, grace)
		}
	})
	return s.exit, s.stopErr
}

// logTail returns the last n bytes of the server's log, for error messages.
func (s *server) logTail(n int64) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return strings.TrimSpace(string(b))
}

// probeClient makes the harness's own requests. No keep-alive: it leaves no
// idle connection behind on the server under test.
var probeClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// waitReady polls url (GET, with hdr: the replica credential for a
// watchdog that checks it) until it answers 200, the server exits, or
// timeout.
func waitReady(ctx context.Context, s *server, url string, timeout time.Duration, hdr http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("ready %s: %w", url, err)
		}
		addHeaders(req, hdr)
		resp, err := probeClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-s.done:
			return fmt.Errorf("ready %s: server exited (%s); log: %s", url, s.cmd.ProcessState, s.logTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("ready %s: not ready after %s (last: %v); log: %s", url, timeout, last, s.logTail(2000))
		case <-tick.C:
		}
	}
}

// probe POSTs body to url (with hdr: the replica credential when url is a
// replica's) and checks that the answer is 200 with the same body: wrk only
// counts statuses of 400 and above as errors, and checks no bodies.
func probe(ctx context.Context, url, body string, hdr http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	addHeaders(req, hdr)
	resp, err := probeClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("probe %s: read: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, []byte(body)) {
		return fmt.Errorf("probe %s: got %s %q, want 200 %q", url, resp.Status, truncate(string(got), 100), truncate(body, 100))
	}
	return nil
}

// addHeaders adds hdr to req's headers.
func addHeaders(req *http.Request, hdr http.Header) {
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
}

// freeAddr returns a loopback address with a port the kernel just chose and
// released. Another process could take it before the server binds it; on
// loopback in a benchmark run that is rare, and the server's start fails
// loudly if it happens.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	return addr, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// baseEnv is the harness's environment without any PULSE_ variable, so
// that nothing in the caller's shell changes the watchdog's configuration.
func baseEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PULSE_") })
}
