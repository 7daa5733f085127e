package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

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
