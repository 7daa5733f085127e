package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// syncBackend makes the backend's slots match fn's replicas: a slot given
// to a new replica is pointed at it (in maintenance) and set ready as soon
// as pulsed's own probe answers; a draining replica's slot is drained at
// once; a slot whose replica is gone goes to maintenance. The backup server
// (the cold-start path) is in rotation only while no slot is: a function
// with a replica in rotation never detours through pulsed, even when every
// replica fails its checks (then HAProxy answers 503 with Retry-After).
func (r *Reconciler) syncBackend(ctx context.Context, fn contract.CatalogFunction, slots *BackendSlots) error {
	backend := BackendName(fn.Name)
	have, err := r.rt.Servers(ctx, backend)
	if err != nil {
		return fmt.Errorf("servers of %s: %w", backend, err)
	}
	byName := make(map[string]ServerState, len(have))
	for _, s := range have {
		byName[s.Name] = s
	}
	reps := make(map[string]contract.Replica, len(fn.Replicas))
	for _, rep := range fn.Replicas {
		reps[rep.TaskID] = rep
	}
	var tasks []string
	if slots != nil {
		tasks = slots.Tasks
	}
	// A draining replica stays in rotation while no other replica serves:
	// in a start-first update of one replica, the old one is told to stop
	// as the new one starts; draining the old at once would leave nobody
	// (503) until the new one is probed ready. The watchdog keeps serving
	// through its drain grace, so waiting for the replacement costs nothing.
	others := 0
	for i, t := range tasks {
		if rep, ok := reps[t]; ok && !rep.Draining {
			if cur, ok := byName[SlotServer(i)]; ok && cur.Serving() && cur.Address() == rep.Addr {
				others++
			}
		}
	}
	var errs []error
	routed := map[string]bool{}
	inRotation := false
	for i, t := range tasks {
		name := SlotServer(i)
		cur, ok := byName[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s/%s: not in HAProxy (the running configuration is older than the file)", backend, name))
			continue
		}
		state := cur.State()
		rep, listed := reps[t]
		if t == "" || !listed {
			if state != StateMaint {
				if err := r.rt.SetState(ctx, backend, name, StateMaint); err != nil {
					errs = append(errs, fmt.Errorf("free %s/%s: %w", backend, name, err))
				} else {
					r.log.Info("slot freed", "function", fn.Name, "server", name, "addr", cur.Address())
				}
			}
			continue
		}
		if cur.Address() != rep.Addr {
			if state != StateMaint {
				if err := r.rt.SetState(ctx, backend, name, StateMaint); err != nil {
					errs = append(errs, fmt.Errorf("re-point %s/%s: %w", backend, name, err))
					continue
				}
				state = StateMaint
			}
			if err := r.rt.SetAddr(ctx, backend, name, rep.Addr); err != nil {
				errs = append(errs, fmt.Errorf("re-point %s/%s: %w", backend, name, err))
				continue
			}
			r.log.Info("slot given to a replica", "function", fn.Name, "server", name, "task", t, "addr", rep.Addr)
		}
		switch {
		case !rep.Draining && (state == StateMaint || state == StateDrain):
			// New in its slot, or left drained by an older state.
			r.probeThenReady(ctx, backend, name, rep.Addr)
		case !rep.Draining && state == StateReady:
			routed[t] = true
			inRotation = true
		case rep.Draining && state == StateReady:
			if others == 0 && len(fn.Replicas) > 1 && fn.Desired > 0 {
				r.log.Info("replica draining later: its replacement is not ready yet", "function", fn.Name, "task", t)
				inRotation = true
				continue
			}
			if err := r.rt.SetState(ctx, backend, name, StateDrain); err != nil {
				errs = append(errs, fmt.Errorf("drain %s/%s: %w", backend, name, err))
				inRotation = true
			} else {
				r.log.Info("replica draining", "function", fn.Name, "task", t, "server", name)
			}
		}
	}
	if bk, ok := byName[BackupServerName]; ok {
		switch {
		case inRotation && bk.State() != StateMaint:
			err = r.rt.SetState(ctx, backend, BackupServerName, StateMaint)
		case !inRotation && bk.State() == StateMaint:
			err = r.rt.SetState(ctx, backend, BackupServerName, StateReady)
		default:
			err = nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("backup of %s: %w", backend, err))
		}
	}
	r.setRouted(fn.Name, routed)
	return errors.Join(errs...)
}

// setRouted records fn's routed tasks, bumping the routing version when
// they changed.
func (r *Reconciler) setRouted(fn string, routed map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if maps.Equal(r.routed[fn], routed) {
		return
	}
	r.routed[fn] = routed
	r.routeVer++
}

// Routing returns, per function, the tasks the gateway routes requests
// to, and a version that changes whenever that does.
func (r *Reconciler) Routing() (map[string]map[string]bool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]map[string]bool, len(r.routed))
	for fn, ts := range r.routed {
		out[fn] = maps.Clone(ts)
	}
	return out, r.routeVer
}

// probeThenReady probes a new replica's health endpoint itself and sets its
// slot ready as soon as it answers: no waiting for HAProxy's rise count.
func (r *Reconciler) probeThenReady(ctx context.Context, backend, name, addr string) {
	key := backend + "/" + name
	r.mu.Lock()
	if r.probing[key] {
		r.mu.Unlock()
		return
	}
	r.probing[key] = true
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.probing, key)
			r.mu.Unlock()
		}()
		deadline := time.Now().Add(r.cfg.ProbeFor)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if r.healthy(ctx, addr) {
				if err := r.rt.SetState(ctx, backend, name, StateReady); err != nil {
					r.log.Warn("set ready", "server", key, "err", err)
					return
				}
				r.log.Info("replica ready", "server", key, "addr", addr)
				r.kick()
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		// Not answering: leave it to HAProxy's own checks.
		if ctx.Err() == nil {
			_ = r.rt.SetState(ctx, backend, name, StateReady)
			r.kick()
		}
	}()
}

func (r *Reconciler) healthy(ctx context.Context, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+contract.HealthPath, nil)
	if err != nil {
		return false
	}
	if c := r.cfg.Render.ReplicaAuth; c != "" {
		req.Header.Set(contract.HeaderReplicaAuth, c)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
