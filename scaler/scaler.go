package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// Service is a function's service as the scaler needs it.
type Service struct {
	ID        string
	Name      string
	Replicas  int
	Labels    map[string]string
	UpdatedAt time.Time
	// Version is Swarm's version of what was read; an update based on it
	// fails with ErrConflict once anything else changed the service.
	Version uint64
	// spec is the adapter's own copy of what it read.
	spec any
}

// Services reads and scales function services: the swarm adapter, or a fake
// in tests that reach error paths.
type Services interface {
	// Inspect reads the service of the function fn: ErrNotFound when there
	// is no such Pulse function.
	Inspect(ctx context.Context, fn string) (Service, error)
	// SetReplicas updates svc to n replicas at svc.Version: ErrConflict
	// when the service changed since it was read.
	SetReplicas(ctx context.Context, svc Service, n int) error
}

// Catalog is the part of the replica catalog (gateway.Catalog) the scaler
// reads.
type Catalog interface {
	Current() (contract.Catalog, time.Time, error)
	Refresh()
}

// Aggregate says how UtilisationSource reduces a window to one value.
type Aggregate string

// Aggregates.
const (
	Average Aggregate = "average"
	Max     Aggregate = "max"
)

// UtilisationSource reads a function's utilisation (percent, DESIGN §5).
type UtilisationSource interface {
	// Utilisation is fn's utilisation over the last window, reduced by agg:
	// ErrNoData when there is none (no chart yet).
	Utilisation(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, error)
	// Demand is fn's demand in its scale metric (contract.CtxDemand) over
	// the last window, reduced by agg: ErrNoData when there is none.
	Demand(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, error)
}

// Errors (ErrNotFound, ErrConflict and ErrNotReplicated are in swarm.go).
var (
	ErrNoData         = errors.New("no utilisation data")
	ErrCatalogPending = errors.New("the replica catalog is not ready")
)

// Config holds the scaler's windows, intervals and thresholds.
type Config struct {
	// Window is the stabilisation window: no scale-down within one of the
	// service's last update (any: the scaler's, `pulse scale`, a deploy),
	// only after the utilisation stayed below DownThreshold for one, and
	// then by at most half.
	Window time.Duration
	// UpThreshold: scale up when the utilisation is above it (percent).
	UpThreshold float64
	// DownThreshold: consider scaling down below it (percent).
	DownThreshold float64
	// Lookback is the span the current utilisation is averaged over (the
	// alarms' lookup).
	Lookback time.Duration
	// Resync is the period at which every function is evaluated without
	// an alarm.
	Resync time.Duration
	// CallTimeout bounds each call to Swarm and to Netdata.
	CallTimeout time.Duration
	// UpdateRetries bounds the re-reads after a version conflict.
	UpdateRetries int
	// Events is the size of the decision ring GET /v1/events shows.
	Events int
}

// Defaults.
const (
	// DefaultWindow: a minute of low utilisation before halving; Netdata's
	// 1 s samples make a minute plenty of evidence.
	DefaultWindow = time.Minute
	// DefaultUpThreshold leaves a function within 10 % of its target alone,
	// as Kubernetes' HPA does with its default tolerance of 0.1: a load
	// exactly at the target is measured at 100 ± a few %, which at a
	// threshold of 100 added a replica now and then (the end-to-end step
	// test: 10 in flight on 5 replicas of target 2 read 100.4 % and went
	// 5 → 6). It equals the scale-up alarm's threshold.
	DefaultUpThreshold   = 110.0
	DefaultDownThreshold = 50.0
	// DefaultLookback equals the alarms' `lookup: average -3s`.
	DefaultLookback = 3 * time.Second
	// DefaultResync bounds how late a lost alarm's work is done.
	DefaultResync        = 5 * time.Second
	DefaultCallTimeout   = 10 * time.Second
	DefaultUpdateRetries = 5
	DefaultEvents        = 256
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Window: DefaultWindow, UpThreshold: DefaultUpThreshold, DownThreshold: DefaultDownThreshold,
		Lookback: DefaultLookback, Resync: DefaultResync, CallTimeout: DefaultCallTimeout,
		UpdateRetries: DefaultUpdateRetries, Events: DefaultEvents,
	}
}

// Validate reports every bad value.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"window", c.Window}, {"lookback", c.Lookback}, {"resync interval", c.Resync}, {"call timeout", c.CallTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("scaler %s %v: must be positive", d.name, d.v))
		}
	}
	if !(c.DownThreshold > 0 && c.DownThreshold < c.UpThreshold) {
		errs = append(errs, fmt.Errorf("scaler thresholds: want 0 < down (%v) < up (%v)", c.DownThreshold, c.UpThreshold))
	}
	if c.UpdateRetries < 0 {
		errs = append(errs, fmt.Errorf("scaler update retries %d: must be 0 or more", c.UpdateRetries))
	}
	if c.Events < 1 {
		errs = append(errs, fmt.Errorf("scaler events %d: must be 1 or more", c.Events))
	}
	return errors.Join(errs...)
}

// Scaler is the autoscaler. Its methods are safe for concurrent use; Run
// drives the periodic evaluation and the work alarms ask for.
type Scaler struct {
	cfg  Config
	svc  Services
	util UtilisationSource
	cat  Catalog
	log  *slog.Logger
	m    *scalerMetrics
	now  func() time.Time

	triggers chan trigger
	started  atomic.Bool
	wg       sync.WaitGroup

	mu     sync.Mutex
	fns    map[string]*fnState
	events []contract.ScaleEvent // ring of cfg.Events
	next   int                   // where the next event goes once full
	total  uint64
}

// fnState is the scaler's memory of one function. sem serialises its
// decisions; everything else is guarded by Scaler.mu.
type fnState struct {
	sem chan struct{}

	pending *trigger // work asked for and not started
	running bool     // a worker goroutine owns pending and st
	refs    int      // callers of EnsureReplicas and ScaleToZero holding st

	lastAlarm    alarmKey // newest alarm seen
	lastDecision time.Time
	status       contract.FunctionStatus // Desired, utilisation, reason, ...
	logged       map[string]string       // last error logged, by kind
}

// trigger is why a function is evaluated.
type trigger struct {
	fn       string
	kind     string               // contract.Trigger*
	alarm    *contract.AlarmEvent // for TriggerAlarm
	received time.Time            // when the alarm reached the webhook
	started  time.Time            // when the evaluation began
	decided  time.Time            // when the decision was made
}

// triggerQueue bounds the alarms waiting for Run; beyond it alarms are
// dropped (the periodic evaluation still comes).
const triggerQueue = 1024

// New returns a Scaler. log may be nil.
func New(cfg Config, svc Services, util UtilisationSource, cat Catalog, log *slog.Logger) (*Scaler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scaler{
		cfg: cfg, svc: svc, util: util, cat: cat,
		log:      log.With("component", "scaler"),
		m:        newScalerMetrics(),
		now:      time.Now,
		triggers: make(chan trigger, triggerQueue),
		fns:      map[string]*fnState{},
	}, nil
}

// Run evaluates every function in the catalog each Resync period and the
// functions alarms name as they come, until ctx ends; then it waits for the
// evaluations in flight and returns nil.
func (s *Scaler) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("scaler: Run called twice")
	}
	defer s.wg.Wait()
	timer := time.NewTimer(s.cfg.Resync) // the catalog's first poll comes meanwhile
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			s.resync(ctx)
			timer.Reset(s.cfg.Resync)
		case t := <-s.triggers:
			s.dispatch(ctx, t)
		}
	}
}

// resync asks for an evaluation of every function in the catalog and
// forgets the functions that left it.
func (s *Scaler) resync(ctx context.Context) {
	cat, at, _ := s.cat.Current()
	if at.IsZero() {
		return
	}
	live := map[string]bool{}
	for _, fn := range cat.Functions {
		live[fn.Name] = true
		s.dispatch(ctx, trigger{fn: fn.Name, kind: contract.TriggerResync})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, st := range s.fns {
		if !live[name] && !st.running && st.refs == 0 {
			delete(s.fns, name)
		}
	}
}

// dispatch records t as the function's pending work and starts its worker
// unless one runs. Pending work coalesces: an alarm outranks a resync, and
// of two alarms the earlier is kept (its latency is the honest one).
func (s *Scaler) dispatch(ctx context.Context, t trigger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(t.fn)
	switch {
	case st.pending == nil:
		st.pending = &t
	case st.pending.alarm == nil && t.alarm != nil:
		st.pending = &t
	}
	if st.running {
		return
	}
	st.running = true
	s.wg.Add(1)
	go s.work(ctx, t.fn, st)
}

// work evaluates fn until no work is pending.
func (s *Scaler) work(ctx context.Context, fn string, st *fnState) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		t := st.pending
		st.pending = nil
		if t == nil || ctx.Err() != nil {
			st.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.reconcile(ctx, fn, st, *t)
	}
}

func (s *Scaler) stateLocked(fn string) *fnState {
	st, ok := s.fns[fn]
	if !ok {
		st = &fnState{sem: make(chan struct{}, 1), logged: map[string]string{}}
		s.fns[fn] = st
	}
	return st
}

// hold returns fn's state and keeps resync from forgetting it until unhold.
func (s *Scaler) hold(fn string) *fnState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(fn)
	st.refs++
	return st
}

func (s *Scaler) unhold(st *fnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st.refs--
}

// EnsureReplicas scales fn up to at least n replicas (at most its max)
// through the same serialised path as the autoscaler, recording an event
// with reason: scale from zero. Having n or more already is no change.
func (s *Scaler) EnsureReplicas(ctx context.Context, fn string, n int, reason string) error {
	if n < 1 {
		return fmt.Errorf("ensure %s: %d replicas: want 1 or more", fn, n)
	}
	return s.scaleTo(ctx, fn, contract.TriggerEnsure, func(svc Service) decision {
		pol, _ := scalelabels.Parse(svc.Labels)
		want := min(n, max(pol.Max, 1))
		if svc.Replicas >= want {
			return decision{Replicas: svc.Replicas, Want: want, Reason: fmt.Sprintf("has %d replicas (asked for at least %d)", svc.Replicas, n)}
		}
		return decision{Replicas: want, Want: want, Reason: reason}
	})
}

// ScaleToZero scales fn to zero replicas, recording an event with reason
// (idle). The autoscaler leaves a function at zero alone.
func (s *Scaler) ScaleToZero(ctx context.Context, fn, reason string) error {
	return s.scaleTo(ctx, fn, contract.TriggerIdle, func(svc Service) decision {
		return decision{Replicas: 0, Reason: reason}
	})
}

func (s *Scaler) scaleTo(ctx context.Context, fn, kind string, decide func(Service) decision) error {
	st := s.hold(fn)
	defer s.unhold(st)
	if !s.acquire(ctx, st) {
		return ctx.Err()
	}
	defer s.release(st)
	s.m.reconciles.inc(kind)
	return s.apply(ctx, fn, st, trigger{fn: fn, kind: kind, started: s.now()}, decide)
}

// Functions is every function in the catalog with its scaling state. The
// replica counts current and ready are the catalog's (fresh); desired,
// utilisation and the rest are the last evaluation's.
func (s *Scaler) Functions() (contract.Functions, error) {
	cat, at, _ := s.cat.Current()
	if at.IsZero() {
		return contract.Functions{}, ErrCatalogPending
	}
	out := contract.Functions{Functions: make([]contract.FunctionStatus, 0, len(cat.Functions))}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cf := range cat.Functions {
		fs := contract.FunctionStatus{}
		if st, ok := s.fns[cf.Name]; ok {
			fs = st.status
			if st.status.LastDecision != nil {
				e := *st.status.LastDecision
				fs.LastDecision = &e
			}
		}
		fs.Name = cf.Name
		fs.Replicas.Current, fs.Replicas.Ready = cf.Desired, readyReplicas(cf)
		pol, _ := scalelabels.Parse(cf.Labels)
		fs.Policy = contract.ScalePolicy{Metric: pol.Metric, Target: pol.Target, Min: pol.Min, Max: pol.Max}
		if pol.Idle > 0 {
			fs.Policy.Idle = pol.Idle.String()
		}
		out.Functions = append(out.Functions, fs)
	}
	sort.Slice(out.Functions, func(i, j int) bool { return out.Functions[i].Name < out.Functions[j].Name })
	return out, nil
}

// Events is the decision ring, newest last.
func (s *Scaler) Events() contract.ScaleEvents {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := contract.ScaleEvents{Total: s.total, Events: make([]contract.ScaleEvent, 0, len(s.events))}
	out.Events = append(out.Events, s.events[s.next:]...)
	out.Events = append(out.Events, s.events[:s.next]...)
	return out
}

func findFunction(cat contract.Catalog, name string) (contract.CatalogFunction, bool) {
	for _, fn := range cat.Functions {
		if fn.Name == name {
			return fn, true
		}
	}
	return contract.CatalogFunction{}, false
}

// readyReplicas counts the replicas that serve: running and not draining.
func readyReplicas(fn contract.CatalogFunction) int {
	n := 0
	for _, r := range fn.Replicas {
		if !r.Draining && r.State == "running" {
			n++
		}
	}
	return n
}
