package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// reconcile evaluates fn from the truth and applies the decision.
func (s *Scaler) reconcile(ctx context.Context, fn string, st *fnState, t trigger) {
	if !s.acquire(ctx, st) {
		return
	}
	defer s.release(st)
	s.m.reconciles.inc(t.kind)
	t.started = s.now()

	cat, _, _ := s.cat.Current()
	cf, ok := findFunction(cat, fn)
	if !ok {
		return // gone from the catalog: nothing to scale
	}
	ready := readyReplicas(cf)
	in := decideInput{Ready: ready, Window: s.cfg.Window, UpThreshold: s.cfg.UpThreshold, DownThreshold: s.cfg.DownThreshold}
	in.Utilisation, in.HaveUtilisation = s.utilisation(ctx, fn, st, Average, s.cfg.Lookback)
	if in.HaveUtilisation && in.Utilisation > s.cfg.UpThreshold {
		// Size a scale-up for the lookback's peak demand: the average
		// utilisation says a step happened, the peak says how big it is
		// (an average still rising through the step would take several
		// decisions to get there).
		in.Demand, in.HaveDemand = s.demand(ctx, fn, Max, s.cfg.Lookback)
	}
	if in.HaveUtilisation && in.Utilisation < s.cfg.DownThreshold {
		in.WindowMax, in.HaveWindowMax = s.utilisation(ctx, fn, st, Max, s.cfg.Window)
		in.WindowMaxDemand, in.HaveWindowMaxDemand = s.demand(ctx, fn, Max, s.cfg.Window)
	}
	s.mu.Lock()
	st.status.Utilization = nil
	if in.HaveUtilisation {
		u := in.Utilisation
		st.status.Utilization, st.status.UtilizationAt = &u, s.now()
	}
	s.mu.Unlock()

	err := s.apply(ctx, fn, st, t, func(svc Service) decision {
		pol, err := scalelabels.Parse(svc.Labels)
		s.logChange(st, "policy", err, "bad scale labels; using the defaults for them", fn)
		in.Now, in.Policy, in.Replicas, in.LastChange = s.now(), pol, svc.Replicas, svc.UpdatedAt
		return decideReplicas(in)
	})
	s.logChange(st, "apply", err, "evaluation failed", fn)
}

// utilisation reads one value; a failure is logged once per streak.
func (s *Scaler) utilisation(ctx context.Context, fn string, st *fnState, agg Aggregate, window time.Duration) (float64, bool) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	v, err := s.util.Utilisation(cctx, fn, agg, window)
	if err != nil {
		s.m.errors.inc("utilisation")
		s.logChange(st, "utilisation", err, "no utilisation; only the scale limits are enforced", fn)
		return 0, false
	}
	s.logChange(st, "utilisation", nil, "", fn)
	return v, true
}

// demand reads fn's demand; without it the policy sizes from the
// utilisation and the ready replicas instead.
func (s *Scaler) demand(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, bool) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	v, err := s.util.Demand(cctx, fn, agg, window)
	if err != nil {
		s.m.errors.inc("demand")
		return 0, false
	}
	return v, true
}

// logChange logs err when it differs from the last one of its kind (and
// the recovery), so a steady failure is one line, not one per resync.
func (s *Scaler) logChange(st *fnState, kind string, err error, msg, fn string) {
	s.mu.Lock()
	prev := st.logged[kind]
	cur := ""
	if err != nil {
		cur = err.Error()
	}
	st.logged[kind] = cur
	s.mu.Unlock()
	switch {
	case cur == prev:
	case cur == "":
		s.log.Info(kind+" recovered", "function", fn)
	case errors.Is(err, ErrNoData), errors.Is(err, ErrNotFound): // no chart yet; a service just removed
		s.log.Debug(msg, "function", fn, "err", err)
	default:
		s.log.Warn(msg, "function", fn, "err", err)
	}
}

// acquire takes fn's decision slot: one decision in flight per function.
func (s *Scaler) acquire(ctx context.Context, st *fnState) bool {
	select {
	case st.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Scaler) release(st *fnState) { <-st.sem }

// apply reads the service, decides and updates it at the version read; on
// a conflict it reads again and decides again, up to UpdateRetries times.
// The caller holds fn's decision slot.
func (s *Scaler) apply(ctx context.Context, fn string, st *fnState, t trigger, decide func(Service) decision) error {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		svc, err := s.svc.Inspect(cctx, fn)
		cancel()
		if err != nil {
			s.m.errors.inc("inspect")
			s.setStatus(st, func(fs *contract.FunctionStatus) { fs.CheckedAt, fs.Error = s.now(), err.Error() })
			return fmt.Errorf("scale %s: %w", fn, err)
		}
		d := decide(svc)
		t.decided = s.now()
		s.setStatus(st, func(fs *contract.FunctionStatus) {
			fs.CheckedAt, fs.Reason, fs.Error = s.now(), d.Reason, ""
			fs.Replicas.Current, fs.Replicas.Desired = svc.Replicas, d.Want
			fs.NoScaleDownUntil = svc.UpdatedAt.Add(s.cfg.Window)
		})
		if d.Replicas == svc.Replicas {
			return nil
		}
		cctx, cancel = context.WithTimeout(ctx, s.cfg.CallTimeout)
		err = s.svc.SetReplicas(cctx, svc, d.Replicas)
		cancel()
		if errors.Is(err, ErrConflict) {
			s.m.conflicts.inc("")
			if attempt < s.cfg.UpdateRetries {
				s.log.Debug("service changed meanwhile; reading it again", "function", fn, "attempt", attempt+1)
				continue
			}
		}
		if err != nil {
			s.m.errors.inc("update")
			s.setStatus(st, func(fs *contract.FunctionStatus) { fs.Error = err.Error() })
			return fmt.Errorf("scale %s from %d to %d: %w", fn, svc.Replicas, d.Replicas, err)
		}
		s.record(fn, st, t, svc.Replicas, d)
		s.cat.Refresh()
		return nil
	}
}

func (s *Scaler) setStatus(st *fnState, f func(*contract.FunctionStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&st.status)
}

// record keeps an applied decision: the event ring, the function's last
// decision, the metrics and the log.
func (s *Scaler) record(fn string, st *fnState, t trigger, from int, d decision) {
	now := s.now()
	ev := contract.ScaleEvent{Time: now, ReceivedAt: t.received, StartedAt: t.started, DecidedAt: t.decided,
		Function: fn, From: from, To: d.Replicas, Reason: d.Reason, Trigger: t.kind}
	if a := t.alarm; a != nil {
		ev.Alarm = &contract.AlarmRef{UniqueID: a.UniqueID, Alarm: a.Alarm, Status: a.Status, Value: a.Value, When: a.When}
		lat := now.Sub(time.Unix(a.When, 0))
		ms := lat.Milliseconds()
		ev.LatencyMS = &ms
		s.m.alarmLatency.observe(lat.Seconds())
	}
	dir := "up"
	if d.Replicas < from {
		dir = "down"
	}
	s.m.decisions.inc(dir)

	s.mu.Lock()
	st.lastDecision = now
	e := ev
	st.status.LastDecision = &e
	st.status.Replicas.Current = d.Replicas
	if len(s.events) < s.cfg.Events {
		s.events = append(s.events, ev)
	} else {
		s.events[s.next] = ev
		s.next = (s.next + 1) % len(s.events)
	}
	s.total++
	s.mu.Unlock()
	s.log.Info("scaled", "function", fn, "from", from, "to", d.Replicas, "reason", d.Reason, "trigger", t.kind)
}
