package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HAProxy supervises one HAProxy in master-worker mode, the way DESIGN.md §2
// has it: pulsed starts it, reloads it through the master socket and
// restarts it if it dies.
//
// The master runs in the foreground as our child:
//
//	haproxy -W -db -S <MasterSocket>,mode,600 -f <ConfigFile> -p <PIDFile>
//
// in its own process group (a Ctrl-C meant for pulsed does not reach it; we
// stop it ourselves). Its output (NOTICE/WARNING/ALERT lines) goes to the
// injected logger.
//
// # Taking over after a pulsed restart
//
// A pulsed that starts while an HAProxy from its previous life still runs
// adopts it instead of starting a second one. The mechanism is the pid file
// plus the master socket: if `show proc` on MasterSocket answers, the master
// it names is ours (the socket path is ours) and is adopted — the pid file is
// only cross-checked. If the socket does not answer but the pid file names a
// live haproxy process (a master re-executing itself for a reload refuses
// connections for 40–120 ms here), we wait for the socket up to
// StartTimeout and give up with ErrHAProxyUnresponsive rather than start a
// second master. Otherwise (no pid file, a dead pid, nothing on the socket)
// nothing is running and Start starts one. An adopted master is not our
// child: we watch it by polling its pid (and its start time in
// /proc/<pid>/stat, so a reused pid is not mistaken for it), and its output
// no longer reaches us (HAProxy ignores the broken pipe — verified on
// 2.6.12). With LeaveRunning, Run leaves HAProxy running when pulsed stops,
// so a restart of pulsed does not interrupt traffic.
//
// All methods are safe for concurrent use.
type HAProxy struct {
	cfg HAProxyConfig
	log *slog.Logger

	opMu     sync.Mutex // serialises Start, Adopt and Stop
	reloadMu sync.Mutex // serialises Reload

	mu       sync.Mutex
	proc     *masterProc // nil when not running
	stopping bool        // Stop was called: an exit is not a crash

	starts, restarts, exits, startFailures atomic.Uint64
	reloads, reloadFailures                atomic.Uint64
	lastReload                             atomic.Int64 // duration of the last successful reload, ns
}

// NewHAProxy returns a supervisor; nothing starts until Start, Adopt or Run.
func NewHAProxy(cfg HAProxyConfig, log *slog.Logger) (*HAProxy, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HAProxy{cfg: cfg, log: log.With("component", "haproxy")}, nil
}

// masterProc is one HAProxy master, started by us or adopted.
type masterProc struct {
	pid       int
	startTick uint64 // field 22 of /proc/<pid>/stat: tells a reused pid apart
	started   time.Time
	adopted   bool
	cmd       *exec.Cmd // nil when adopted
	out       *haproxyOutput
	done      chan struct{} // closed once the process has exited
	waitErr   error         // exit status (child only), set before done closes
}

func (p *masterProc) signal(sig syscall.Signal) error {
	if p.cmd != nil {
		return p.cmd.Process.Signal(sig)
	}
	if tick, _, err := procStat(p.pid); err != nil || tick != p.startTick {
		return os.ErrProcessDone
	}
	return syscall.Kill(p.pid, sig)
}

// killGroup SIGKILLs the master's process group (the workers with it).
func (p *masterProc) killGroup() {
	if pg, err := syscall.Getpgid(p.pid); err == nil && pg == p.pid {
		if tick, _, err := procStat(p.pid); err == nil && tick == p.startTick {
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
			return
		}
	}
	_ = p.signal(syscall.SIGKILL)
}

func (p *masterProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a new HAProxy master and returns once its master socket
// answers and its worker is up. It refuses (ErrHAProxyRunning) if a master
// already answers on the socket: use Adopt. If the master exits or does not
// come up within StartTimeout, Start kills it and returns an error with the
// last lines HAProxy printed.
func (h *HAProxy) Start(ctx context.Context) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	if err := h.start(ctx); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	return nil
}

func (h *HAProxy) start(ctx context.Context) error {
	if p := h.current(); p != nil && !p.exited() {
		return fmt.Errorf("%w (pid %d)", ErrHAProxyRunning, p.pid)
	}
	if pid, err := h.probe(ctx); err == nil {
		return fmt.Errorf("%w (pid %d answers on %s)", ErrHAProxyRunning, pid, h.cfg.MasterSocket)
	} else if !errors.Is(err, ErrHAProxyNotRunning) {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, h.cfg.StartTimeout)
	defer cancel()
	p, err := h.spawn()
	if err != nil {
		return err
	}
	if err := h.waitUp(ctx, p); err != nil {
		p.killGroup()
		<-p.done
		p.out.settle(0, "", time.Second)
		return fmt.Errorf("%w; haproxy said: %s", err, p.out.tailText())
	}
	h.mu.Lock()
	h.proc, h.stopping = p, false
	h.mu.Unlock()
	h.starts.Add(1)
	h.log.Info("haproxy started", "pid", p.pid, "took", time.Since(p.started).Round(time.Millisecond))
	return nil
}

func (h *HAProxy) spawn() (*masterProc, error) {
	cmd := exec.Command(h.cfg.Binary,
		"-W", "-db",
		"-S", h.cfg.MasterSocket+",mode,600",
		"-f", h.cfg.ConfigFile,
		"-p", h.cfg.PIDFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The master outlives pulsed (LeaveRunning) and re-executes itself in
	// its startup directory on every reload: started in a directory that is
	// later removed (pulsed started from a checkout or a playbook's temporary
	// directory that an upgrade replaced), every reload after that fails
	// ("Impossible to retrieve startup directory name"). The config's
	// directory (the state dir) lives as long as the master does.
	cmd.Dir = filepath.Dir(h.cfg.ConfigFile)
	// Our own pipe, not exec's: cmd.Wait then returns when the master
	// exits, not when the last worker closes its copy of stderr.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	out := newHAProxyOutput(h.log)
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("exec %s: %w", h.cfg.Binary, err)
	}
	w.Close()
	go out.consume(r)
	p := &masterProc{pid: cmd.Process.Pid, started: time.Now(), cmd: cmd, out: out, done: make(chan struct{})}
	p.startTick, _, _ = procStat(p.pid)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitUp polls the master socket until it answers for p with a worker that
// answers too.
func (h *HAProxy) waitUp(ctx context.Context, p *masterProc) error {
	var last error = errors.New("no answer yet")
	for {
		if p.exited() {
			return fmt.Errorf("master (pid %d) exited: %v", p.pid, p.waitErr)
		}
		procs, err := h.Procs(ctx)
		switch {
		case err != nil:
			last = err
		case procs.Master.PID != p.pid:
			last = fmt.Errorf("master socket answers for pid %d, not %d", procs.Master.PID, p.pid)
		case len(procs.Workers) == 0:
			last = errors.New("master has no worker yet")
		default:
			if err := h.workerUp(ctx, procs.Workers[0].PID); err != nil {
				last = err
			} else {
				return nil
			}
		}
		if err := h.pause(ctx, p.done); err != nil {
			return fmt.Errorf("%w (last: %v)", err, last)
		}
	}
}

// pause waits one poll interval, or less if ctx ends (an error) or done
// closes (nil: the caller looks again).
func (h *HAProxy) pause(ctx context.Context, done <-chan struct{}) error {
	t := time.NewTimer(h.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
	case <-t.C:
	}
	return nil
}

// workerUp asks a worker for its version through the master socket
// (`@!<pid> show version`); it answers once its event loop runs.
func (h *HAProxy) workerUp(ctx context.Context, pid int) error {
	out, err := h.masterExec(ctx, "@!"+strconv.Itoa(pid)+" show version")
	if err != nil {
		return fmt.Errorf("worker %d: %w", pid, err)
	}
	if strings.TrimSpace(out) == "" || strings.HasPrefix(out, "Can't find") {
		return fmt.Errorf("worker %d: %q", pid, strings.TrimSpace(out))
	}
	return nil
}

// probe finds a running master by its socket and pid file (see the type's
// documentation) and returns its pid, ErrHAProxyNotRunning or
// ErrHAProxyUnresponsive.
func (h *HAProxy) probe(ctx context.Context) (int, error) {
	filePID := readPIDFile(h.cfg.PIDFile)
	procs, err := h.Procs(ctx)
	if err == nil {
		if filePID != 0 && filePID != procs.Master.PID {
			h.log.Warn("pid file disagrees with the master socket; trusting the socket",
				"pid_file", h.cfg.PIDFile, "file_pid", filePID, "socket_pid", procs.Master.PID)
		}
		return procs.Master.PID, nil
	}
	if filePID == 0 || !isHAProxyProcess(filePID) {
		return 0, ErrHAProxyNotRunning
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.StartTimeout)
	defer cancel()
	for {
		if procs, err = h.Procs(ctx); err == nil {
			return procs.Master.PID, nil
		}
		if !isHAProxyProcess(filePID) {
			return 0, ErrHAProxyNotRunning
		}
		if h.pause(ctx, nil) != nil {
			return 0, fmt.Errorf("%w (pid %d from %s; %v)", ErrHAProxyUnresponsive, filePID, h.cfg.PIDFile, err)
		}
	}
}

// Adopt takes over a master that is already running (see the type's
// documentation). It returns an error wrapping ErrHAProxyNotRunning when
// there is nothing to adopt.
func (h *HAProxy) Adopt(ctx context.Context) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	if p := h.current(); p != nil && !p.exited() {
		return nil
	}
	pid, err := h.probe(ctx)
	if err != nil {
		return fmt.Errorf("adopt haproxy: %w", err)
	}
	tick, _, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("adopt haproxy: master pid %d: %w", pid, err)
	}
	p := &masterProc{pid: pid, startTick: tick, started: time.Now(), adopted: true,
		out: &haproxyOutput{log: h.log}, done: make(chan struct{})}
	go h.watchAdopted(p)
	h.mu.Lock()
	h.proc, h.stopping = p, false
	h.mu.Unlock()
	h.log.Info("adopted running haproxy", "pid", pid, "pid_file", h.cfg.PIDFile)
	return nil
}

// watchAdopted closes p.done once the adopted master has gone.
func (h *HAProxy) watchAdopted(p *masterProc) {
	t := time.NewTicker(max(h.cfg.PollInterval, 100*time.Millisecond))
	defer t.Stop()
	for range t.C {
		if tick, state, err := procStat(p.pid); err != nil || tick != p.startTick || state == 'Z' || state == 'X' {
			close(p.done)
			return
		}
	}
}

// Stop stops HAProxy gracefully: SIGUSR1 (soft stop: listeners close, the
// workers finish their connections, then the master exits), SIGTERM after
// StopTimeout (or when ctx ends), SIGKILL to the process group after
// KillTimeout more. A master that is not running is not an error.
func (h *HAProxy) Stop(ctx context.Context) error {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	p := h.proc
	h.stopping = true
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	err := h.stop(ctx, p)
	h.mu.Lock()
	if h.proc == p {
		h.proc = nil
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("stop haproxy (pid %d): %w", p.pid, err)
	}
	return nil
}

func (h *HAProxy) stop(ctx context.Context, p *masterProc) error {
	begin := time.Now()
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{
		{syscall.SIGUSR1, h.cfg.StopTimeout},
		{syscall.SIGTERM, h.cfg.KillTimeout},
		{syscall.SIGKILL, h.cfg.KillTimeout},
	}
	for i, s := range steps {
		if p.exited() {
			break
		}
		if s.sig == syscall.SIGKILL {
			p.killGroup()
		} else if err := p.signal(s.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("signal %v: %w", s.sig, err)
		}
		t := time.NewTimer(s.wait)
		ctxDone := ctx.Done()
		if i == len(steps)-1 {
			ctxDone = nil // after SIGKILL only the reaping is left to wait for
		}
		select {
		case <-p.done:
		case <-t.C:
		case <-ctxDone:
		}
		t.Stop()
		if !p.exited() {
			h.log.Warn("haproxy did not stop in time", "pid", p.pid, "signal", s.sig.String(), "waited", time.Since(begin).Round(time.Millisecond))
		}
	}
	if !p.exited() {
		return fmt.Errorf("still running after SIGKILL")
	}
	h.log.Info("haproxy stopped", "pid", p.pid, "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// Run supervises HAProxy until ctx ends: it adopts a running master or
// starts one (returning the error if neither works), then restarts the
// master whenever it dies unexpectedly, after a delay that doubles from
// RestartBackoff up to MaxRestartBackoff (reset once a master has run
// StableAfter), and gives up with an error after MaxRestartFailures failed
// restarts in a row. When ctx ends it stops HAProxy gracefully (see Stop),
// or leaves it running with LeaveRunning. A Stop from elsewhere ends Run
// too, with nil.
func (h *HAProxy) Run(ctx context.Context) error {
	if p := h.current(); p == nil || p.exited() {
		if err := h.Adopt(ctx); err != nil {
			if !errors.Is(err, ErrHAProxyNotRunning) {
				return err
			}
			if err := h.Start(ctx); err != nil {
				return err
			}
		}
	}
	backoff := h.cfg.RestartBackoff
	for {
		p := h.current()
		if p == nil {
			return nil // stopped
		}
		select {
		case <-ctx.Done():
			return h.shutdown(ctx)
		case <-p.done:
		}
		h.mu.Lock()
		stopping := h.stopping
		if h.proc == p {
			h.proc = nil
		}
		h.mu.Unlock()
		if stopping {
			return nil
		}
		h.exits.Add(1)
		uptime := time.Since(p.started)
		h.log.Error("haproxy master exited unexpectedly", "pid", p.pid, "status", p.exitStatus(),
			"uptime", uptime.Round(time.Millisecond), "last_output", p.out.tailText())
		if uptime >= h.cfg.StableAfter {
			backoff = h.cfg.RestartBackoff
		}
		for failures := 0; ; {
			h.log.Info("restarting haproxy", "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			backoff = min(2*backoff, h.cfg.MaxRestartBackoff)
			err := h.Start(ctx)
			if errors.Is(err, ErrHAProxyRunning) {
				err = h.Adopt(ctx) // someone else started one meanwhile
			}
			if err == nil {
				h.restarts.Add(1)
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			failures++
			h.startFailures.Add(1)
			h.log.Error("haproxy restart failed", "attempt", failures, "err", err)
			if h.cfg.MaxRestartFailures > 0 && failures >= h.cfg.MaxRestartFailures {
				return fmt.Errorf("supervise haproxy: %d restarts failed in a row: %w", failures, err)
			}
		}
	}
}

// shutdown ends Run when its context ends.
func (h *HAProxy) shutdown(ctx context.Context) error {
	if h.cfg.LeaveRunning {
		if p := h.current(); p != nil {
			h.log.Info("leaving haproxy running for the next pulsed to adopt", "pid", p.pid)
		}
		return nil
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.StopTimeout)
	defer cancel()
	return h.Stop(stopCtx)
}

func (p *masterProc) exitStatus() string {
	if p.adopted {
		return "unknown (adopted)"
	}
	if p.waitErr == nil {
		return "exit 0"
	}
	return p.waitErr.Error()
}

func (h *HAProxy) current() *masterProc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc
}

// Procs returns `show proc` from the master socket.
func (h *HAProxy) Procs(ctx context.Context) (ProcList, error) {
	out, err := h.masterExec(ctx, "show proc")
	if err != nil {
		return ProcList{}, err
	}
	procs, err := ParseProcs(strings.NewReader(out))
	if err != nil {
		return ProcList{}, fmt.Errorf("show proc: %w", err)
	}
	return procs, nil
}

func (h *HAProxy) masterExec(ctx context.Context, command string) (string, error) {
	out, err := cliExec(ctx, h.cfg.MasterSocket, command, h.cfg.CommandTimeout)
	if err != nil {
		return "", fmt.Errorf("master socket %s: %w", h.cfg.MasterSocket, err)
	}
	return out, nil
}

// HAProxyStats are the supervisor's counters, for metrics.
type HAProxyStats struct {
	PID             int    // current master, 0 if none
	Adopted         bool   // the current master was adopted, not started
	Starts          uint64 // masters started (including restarts)
	Restarts        uint64 // restarts after unexpected exits
	UnexpectedExits uint64 // masters that died without Stop
	StartFailures   uint64 // failed restart attempts
	Reloads         uint64 // successful reloads
	ReloadFailures  uint64 // failed reloads (rejected config, timeouts)
	LastReload      time.Duration
}

// Stats returns the counters.
func (h *HAProxy) Stats() HAProxyStats {
	s := HAProxyStats{
		Starts:          h.starts.Load(),
		Restarts:        h.restarts.Load(),
		UnexpectedExits: h.exits.Load(),
		StartFailures:   h.startFailures.Load(),
		Reloads:         h.reloads.Load(),
		ReloadFailures:  h.reloadFailures.Load(),
		LastReload:      time.Duration(h.lastReload.Load()),
	}
	if p := h.current(); p != nil && !p.exited() {
		s.PID, s.Adopted = p.pid, p.adopted
	}
	return s
}
