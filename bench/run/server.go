package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testport"
)

// launchSpec starts a server under test: Env is its whole environment, Addr
// its 127.0.0.1:port, ReadyPath a GET path answering 200 once it is ready.
type launchSpec struct {
	Bin, Addr, ReadyPath string
	Args, Env            []string
}

// server is a started server under test: the leader of its own process
// group, killed with the harness (Pdeathsig) if the harness dies first.
type server struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been waited for
	stopped sync.Once
	exit    int // stop's results
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

// pid is the server's process ID.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM, waits up to grace, then kills the server's group and
// descendants; it returns the exit code (-1: a signal). Only the first acts.
func (s *server) stop(grace time.Duration) (int, error) {
	s.stopped.Do(func() {
		pid := s.pid()
		var strays []procStat
		if tree, err := processTree("/proc", pid); err == nil {
			strays = tree[1:]
		}
		killed := false
		if s.cmd.Process.Signal(syscall.SIGTERM) == nil {
			select {
			case <-s.done:
			case <-time.After(grace):
				killed = true
			}
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
	b, _ := os.ReadFile(s.logPath)
	return strings.TrimSpace(string(b[max(0, len(b)-int(n)):]))
}

// probeClient makes the harness's own requests, without keep-alive: it
// leaves no idle connection on the server under test.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// send makes one of the harness's requests (body "" for none; with hdr, the
// replica credential for a replica) and returns the status and the body.
func send(ctx context.Context, method, url, body string, hdr http.Header) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("read: %w", err)
	}
	return resp.StatusCode, string(got), nil
}

// waitReady GETs url (with hdr) until it answers 200, the server exits, or timeout.
func waitReady(ctx context.Context, s *server, url string, timeout time.Duration, hdr http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		status, _, err := send(ctx, http.MethodGet, url, "", hdr)
		if err == nil && status == http.StatusOK {
			return nil
		} else if err == nil {
			err = fmt.Errorf("status %d", status)
		}
		select {
		case <-s.done:
			return fmt.Errorf("ready %s: server exited (%s); log: %s", url, s.cmd.ProcessState, s.logTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("ready %s: not ready after %s (last: %v); log: %s", url, timeout, err, s.logTail(2000))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// probe POSTs body to url (with hdr) and checks that the answer is 200 with
// the same body, which wrk does not check.
func probe(ctx context.Context, url, body string, hdr http.Header) error {
	status, got, err := send(ctx, http.MethodPost, url, body, hdr)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	if status != http.StatusOK || got != body {
		return fmt.Errorf("probe %s: got %d %q, want 200 %q", url, status, report.Truncate(got, 100), report.Truncate(body, 100))
	}
	return nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, below the ephemeral range (package testport: no client socket takes
// it meanwhile; another process still could, and the server's start fails).
func freeAddr() (string, error) {
	p, err := testport.Free()
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// baseEnv is the harness's environment without PULSE_ variables: the
// caller's shell does not configure the watchdog.
func baseEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PULSE_") })
}

// refusesWithout POSTs body to url without the replica credential and
// reports whether the replica refused it (403): its watchdog checks it.
func refusesWithout(ctx context.Context, url, body string) (bool, error) {
	status, _, err := send(ctx, http.MethodPost, url, body, nil)
	if err != nil {
		return false, fmt.Errorf("POST %s without the replica credential: %w", url, err)
	}
	return status == http.StatusForbidden, nil
}

// noCredentialCheck notes that a replica answered without the credential.
const noCredentialCheck = "the replica answered a request without the replica credential (" + contract.HeaderReplicaAuth +
	"): its watchdog does not check it, so the direct path ran without that check"
