package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
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

// HAProxyConfig configures an HAProxy supervisor.
type HAProxyConfig struct {
	Binary       string // haproxy executable; default "haproxy" from PATH
	ConfigFile   string // -f; required
	MasterSocket string // -S; required; a unix socket path, at most 90 bytes
	PIDFile      string // -p; required; holds the master's pid

	StartTimeout   time.Duration // until the master socket answers and a worker is up; default 10s
	ReloadTimeout  time.Duration // until the new worker is up; default 10s
	StopTimeout    time.Duration // soft stop (SIGUSR1) before SIGTERM; default 30s
	KillTimeout    time.Duration // SIGTERM before SIGKILL; default 5s
	CommandTimeout time.Duration // one master socket command; default 2s
	PollInterval   time.Duration // socket and adopted-pid polling; default 20ms

	RestartBackoff    time.Duration // first delay before a restart; default 100ms
	MaxRestartBackoff time.Duration // delays double up to this; default 10s
	StableAfter       time.Duration // a master that ran this long resets the backoff; default 30s
	// MaxRestartFailures consecutive failed restarts make Run give up and
	// return an error; default 10, negative never gives up.
	MaxRestartFailures int

	// LeaveRunning makes Run leave HAProxy running when its context ends,
	// for the next pulsed to adopt. Default: stop it gracefully.
	LeaveRunning bool
}

// maxSocketPath leaves room for the ".<pid>.tmp" HAProxy appends while it
// binds a unix socket (sun_path holds 108 bytes).
const maxSocketPath = 90

func (c HAProxyConfig) withDefaults() HAProxyConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Binary == "" {
		c.Binary = "haproxy"
	}
	def(&c.StartTimeout, 10*time.Second)
	def(&c.ReloadTimeout, 10*time.Second)
	def(&c.StopTimeout, 30*time.Second)
	def(&c.KillTimeout, 5*time.Second)
	def(&c.CommandTimeout, 2*time.Second)
	def(&c.PollInterval, 20*time.Millisecond)
	def(&c.RestartBackoff, 100*time.Millisecond)
	def(&c.MaxRestartBackoff, 10*time.Second)
	def(&c.StableAfter, 30*time.Second)
	if c.MaxRestartFailures == 0 {
		c.MaxRestartFailures = 10
	}
	return c
}

// Validate reports the first bad field of a config (after defaults).
func (c HAProxyConfig) Validate() error {
	switch {
	case c.ConfigFile == "":
		return errors.New("haproxy: no config file")
	case c.MasterSocket == "":
		return errors.New("haproxy: no master socket")
	case len(c.MasterSocket) > maxSocketPath:
		return fmt.Errorf("haproxy: master socket path %q longer than %d bytes", c.MasterSocket, maxSocketPath)
	case c.PIDFile == "":
		return errors.New("haproxy: no pid file")
	case strings.ContainsAny(c.MasterSocket, ",\n"):
		return fmt.Errorf("haproxy: master socket path %q has ',' or a line break", c.MasterSocket)
	}
	for name, d := range map[string]time.Duration{
		"start timeout": c.StartTimeout, "reload timeout": c.ReloadTimeout,
		"stop timeout": c.StopTimeout, "kill timeout": c.KillTimeout,
		"command timeout": c.CommandTimeout, "poll interval": c.PollInterval,
		"restart backoff": c.RestartBackoff, "max restart backoff": c.MaxRestartBackoff,
		"stable after": c.StableAfter,
	} {
		if d <= 0 {
			return fmt.Errorf("haproxy: %s %v: must be positive", name, d)
		}
	}
	if c.MaxRestartBackoff < c.RestartBackoff {
		return fmt.Errorf("haproxy: max restart backoff %v below restart backoff %v", c.MaxRestartBackoff, c.RestartBackoff)
	}
	return nil
}

// Sentinels of the supervisor.
var (
	// ErrHAProxyNotRunning: no master to reload, stop or adopt.
	ErrHAProxyNotRunning = errors.New("haproxy is not running")
	// ErrHAProxyRunning: Start found a master already answering on the
	// socket (adopt it instead).
	ErrHAProxyRunning = errors.New("haproxy is already running")
	// ErrHAProxyUnresponsive: the pid file names a live haproxy but the
	// master socket does not answer.
	ErrHAProxyUnresponsive = errors.New("haproxy runs but its master socket does not answer")
	// ErrReloadFailed: the master could not load the new configuration and
	// kept the old worker, which still serves.
	ErrReloadFailed = errors.New("haproxy rejected the new configuration and kept the old worker")
)

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

// Reload makes the master load the configuration file again (`reload` on
// the master socket) and returns once the new worker answers and the
// previous workers are leaving (they finish their connections; with
// `option idle-close-on-response` idle keep-alive clients are told to
// reconnect). If HAProxy rejects the file, the old worker keeps serving and
// Reload returns an error wrapping ErrReloadFailed with HAProxy's last
// output lines. Validate the file before reloading (haproxy -c).
func (h *HAProxy) Reload(ctx context.Context) error {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReloadTimeout)
	defer cancel()
	begin := time.Now()
	worker, err := h.reload(ctx)
	if err != nil {
		h.reloadFailures.Add(1)
		return fmt.Errorf("reload haproxy: %w", err)
	}
	took := time.Since(begin)
	h.reloads.Add(1)
	h.lastReload.Store(int64(took))
	h.log.Info("haproxy reloaded", "worker", worker, "took", took.Round(time.Microsecond))
	return nil
}

func (h *HAProxy) reload(ctx context.Context) (int, error) {
	p := h.current()
	if p == nil || p.exited() {
		return 0, ErrHAProxyNotRunning
	}
	before, err := h.Procs(ctx)
	if err != nil {
		return 0, err
	}
	outFrom := p.out.lines()
	// The master re-executes itself and drops the connection; there is no
	// answer to read in 2.6.
	if _, err := h.masterExec(ctx, "reload"); err != nil {
		var op *net.OpError
		if ctx.Err() != nil || errors.As(err, &op) && op.Op == "dial" {
			return 0, err
		}
	}
	begin := time.Now()
	last := errors.New("master has not re-executed yet")
	reexecuted := false
	for {
		if p.exited() {
			return 0, fmt.Errorf("master (pid %d) exited during the reload", p.pid)
		}
		after, err := h.Procs(ctx) // refused while the master re-executes
		switch {
		case err != nil:
			last = err
		case after.Master.PID != before.Master.PID:
			return 0, fmt.Errorf("master changed from pid %d to %d during the reload", before.Master.PID, after.Master.PID)
		case after.Master.Reloads <= before.Master.Reloads:
			// not re-executed yet
		case after.Master.FailedReloads > before.Master.FailedReloads:
			// The master prints its alerts, then "Loading failure!".
			p.out.settle(outFrom, "Loading failure", time.Second)
			return 0, fmt.Errorf("%w; haproxy said: %s", ErrReloadFailed, p.out.tailText())
		default:
			if !reexecuted {
				reexecuted = true
				h.log.Debug("haproxy master re-executed", "after", time.Since(begin).Round(time.Microsecond), "reloads", after.Master.Reloads)
			}
			w, err := reloadedWorker(before, after)
			if err != nil {
				last = err
				break
			}
			if err := h.workerUp(ctx, w); err != nil {
				last = err
				break
			}
			return w, nil
		}
		if err := h.pause(ctx, p.done); err != nil {
			return 0, fmt.Errorf("%w (last: %v)", err, last)
		}
	}
}

// reloadedWorker finds the worker a successful reload forked: a current
// worker that was not there before, while every worker that was current
// before is now leaving or gone.
func reloadedWorker(before, after ProcList) (int, error) {
	for _, w := range before.Workers {
		if slices.ContainsFunc(after.Workers, func(x ProcEntry) bool { return x.PID == w.PID }) {
			return 0, fmt.Errorf("previous worker %d is still current", w.PID)
		}
	}
	for _, w := range after.Workers {
		if !slices.ContainsFunc(before.Workers, func(x ProcEntry) bool { return x.PID == w.PID }) {
			return w.PID, nil
		}
	}
	return 0, errors.New("no new worker yet")
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

// haproxyOutput logs HAProxy's output lines and keeps the last few for
// error messages.
type haproxyOutput struct {
	log  *slog.Logger
	eof  chan struct{} // closed when the pipe is drained (nil: adopted, no pipe)
	mu   sync.Mutex
	tail []string
	n    int // lines so far
}

const outputTail = 16

func newHAProxyOutput(log *slog.Logger) *haproxyOutput {
	return &haproxyOutput{log: log, eof: make(chan struct{})}
}

func (o *haproxyOutput) consume(r io.ReadCloser) {
	defer close(o.eof)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		level, msg, pid := parseHAProxyLine(line)
		o.log.Log(context.Background(), level, msg, "haproxy_pid", pid)
		o.mu.Lock()
		o.tail = append(o.tail, line)
		if len(o.tail) > outputTail {
			o.tail = o.tail[len(o.tail)-outputTail:]
		}
		o.n++
		o.mu.Unlock()
	}
}

// settle gives the reader a moment to catch up with what HAProxy has
// written: until the pipe is drained, or a line containing marker arrives
// after line number from, or within passes.
func (o *haproxyOutput) settle(from int, marker string, within time.Duration) {
	if o.eof == nil {
		return
	}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-o.eof:
			return
		default:
		}
		o.mu.Lock()
		n, tail := o.n, o.tail
		found := false
		if marker != "" {
			for i := max(0, len(tail)-(n-from)); i < len(tail); i++ {
				found = found || strings.Contains(tail[i], marker)
			}
		}
		o.mu.Unlock()
		if found {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (o *haproxyOutput) lines() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// tailText is for error messages: the ALERT lines among the last ones
// HAProxy printed, or all of those if none is an alert.
func (o *haproxyOutput) tailText() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var alerts []string
	for _, l := range o.tail {
		if strings.HasPrefix(l, "[ALERT]") {
			alerts = append(alerts, l)
		}
	}
	switch {
	case len(alerts) > 0:
		return strings.Join(alerts, " | ")
	case len(o.tail) > 0:
		return strings.Join(o.tail, " | ")
	case o.eof == nil:
		return "(output not captured: adopted master)"
	}
	return "(nothing)"
}

// parseHAProxyLine splits "[WARNING]  (1234) : text" into a log level, the
// text and the pid; other lines are logged at info as they are.
func parseHAProxyLine(line string) (slog.Level, string, int) {
	tag, rest, ok := strings.Cut(line, "]")
	if !ok || !strings.HasPrefix(tag, "[") {
		return slog.LevelInfo, line, 0
	}
	level := slog.LevelInfo
	switch tag[1:] {
	case "ALERT", "EMERG":
		level = slog.LevelError
	case "WARNING":
		level = slog.LevelWarn
	}
	rest = strings.TrimSpace(rest)
	pid := 0
	if strings.HasPrefix(rest, "(") {
		if p, after, ok := strings.Cut(rest[1:], ")"); ok {
			pid, _ = strconv.Atoi(p)
			rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(after), ":"))
		}
	}
	return level, rest, pid
}

// ProcEntry is one process in `show proc`.
type ProcEntry struct {
	PID           int
	Type          string // "master", "worker", or a program's name
	Reloads       int    // master: reloads so far; worker: reloads it has lived through
	FailedReloads int    // master only: reloads whose configuration failed to load
	Uptime        time.Duration
	Version       string
}

// ProcList is the master socket's `show proc`.
type ProcList struct {
	Master      ProcEntry
	Workers     []ProcEntry // current workers
	OldWorkers  []ProcEntry // leaving after a reload, finishing their connections
	Programs    []ProcEntry
	OldPrograms []ProcEntry
}

// ParseProcs parses `show proc` from HAProxy 2.6's master socket:
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	16853           master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4
//	# workers
//	16875           worker          0               0d00h00m02s     2.6.12-1+deb12u4
//	# old workers
//	...
//	# programs
//
// Sections it does not know are skipped; extra columns are ignored.
func ParseProcs(r io.Reader) (ProcList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var (
		out     ProcList
		lineNo  int
		header  bool
		master  bool
		section *[]ProcEntry
	)
	sections := map[string]*[]ProcEntry{
		"workers": &out.Workers, "old workers": &out.OldWorkers,
		"programs": &out.Programs, "old programs": &out.OldPrograms,
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case !header:
			if !strings.HasPrefix(line, "#<PID>") {
				return ProcList{}, fmt.Errorf("show proc line %d: want the #<PID> header, got %q", lineNo, line)
			}
			header = true
			continue
		case strings.HasPrefix(line, "#"):
			name := strings.TrimSpace(strings.TrimPrefix(line, "#"))
			section = sections[name] // nil: an unknown section, skipped
			if section == nil {
				section = new([]ProcEntry)
			}
			continue
		case !master:
			e, err := parseProcLine(line, true)
			if err != nil {
				return ProcList{}, fmt.Errorf("show proc line %d: %w", lineNo, err)
			}
			if e.Type != "master" {
				return ProcList{}, fmt.Errorf("show proc line %d: want the master, got type %q", lineNo, e.Type)
			}
			out.Master, master = e, true
			continue
		case section == nil:
			return ProcList{}, fmt.Errorf("show proc line %d: a second process before any section", lineNo)
		}
		e, err := parseProcLine(line, false)
		if err != nil {
			return ProcList{}, fmt.Errorf("show proc line %d: %w", lineNo, err)
		}
		*section = append(*section, e)
	}
	if err := sc.Err(); err != nil {
		return ProcList{}, fmt.Errorf("show proc line %d: %w", lineNo+1, err)
	}
	if !master {
		return ProcList{}, errors.New("show proc: no master line")
	}
	return out, nil
}

// parseProcLine parses "<pid> <type> <reloads> [\[failed: N\]] <uptime>
// <version>" (the failed count only on the master's line).
func parseProcLine(line string, isMaster bool) (ProcEntry, error) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return ProcEntry{}, fmt.Errorf("%d fields, want at least 4", len(f))
	}
	var e ProcEntry
	var err error
	if e.PID, err = strconv.Atoi(f[0]); err != nil || e.PID <= 0 {
		return ProcEntry{}, fmt.Errorf("pid %q", f[0])
	}
	e.Type = f[1]
	if e.Reloads, err = strconv.Atoi(f[2]); err != nil {
		return ProcEntry{}, fmt.Errorf("reloads %q", f[2])
	}
	rest := f[3:]
	if isMaster && len(rest) >= 2 && rest[0] == "[failed:" {
		n, ok := strings.CutSuffix(rest[1], "]")
		if e.FailedReloads, err = strconv.Atoi(n); !ok || err != nil {
			return ProcEntry{}, fmt.Errorf("failed reloads %q", rest[1])
		}
		rest = rest[2:]
	}
	if len(rest) == 0 {
		return ProcEntry{}, errors.New("no uptime")
	}
	if e.Uptime, err = parseProcUptime(rest[0]); err != nil {
		return ProcEntry{}, err
	}
	if len(rest) > 1 {
		e.Version = rest[1]
	}
	return e, nil
}

// parseProcUptime parses HAProxy's "%dd%02dh%02dm%02ds".
func parseProcUptime(s string) (time.Duration, error) {
	units := []struct {
		sep byte
		d   time.Duration
	}{{'d', 24 * time.Hour}, {'h', time.Hour}, {'m', time.Minute}, {'s', time.Second}}
	var total time.Duration
	rest := s
	for _, u := range units {
		i := strings.IndexByte(rest, u.sep)
		if i <= 0 || i > 5 { // 99999 days still fit a time.Duration
			return 0, fmt.Errorf("uptime %q", s)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("uptime %q", s)
		}
		total += time.Duration(n) * u.d
		rest = rest[i+1:]
	}
	if rest != "" {
		return 0, fmt.Errorf("uptime %q", s)
	}
	return total, nil
}

// readPIDFile returns the pid in path, or 0.
func readPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// procStat reads a process's start time (clock ticks after boot) and state
// letter from /proc/<pid>/stat.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	tick, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime %q", pid, f[19])
	}
	return tick, f[0][0], nil
}

// isHAProxyProcess reports whether pid is a live (not zombie) process whose
// command is haproxy.
func isHAProxyProcess(pid int) bool {
	_, state, err := procStat(pid)
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return strings.Contains(string(argv0), "haproxy")
}
