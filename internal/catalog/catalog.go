package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Config sets how the catalog polls. Docker emits no task events
// (moby/moby#37403), so polling is the only way to see replicas come and go:
// fast while the swarm converges, slow when it is steady.
type Config struct {
	// FastPoll is the period while anything converges: a task not in its
	// desired state, a function short of (or over) its desired replicas, a
	// draining replica, a rolling update, or a change within Settle. It
	// bounds how late a new replica joins and a leaving one is drained.
	FastPoll time.Duration
	// SlowPoll is the period when the swarm is steady; it bounds how late a
	// change made behind pulsed's back (docker service scale) is noticed.
	// It is also the period after a failed poll.
	SlowPoll time.Duration
	// Settle keeps polling fast this long after the catalog changed.
	Settle time.Duration
	// FastLimit ends fast polling when the swarm keeps converging without
	// any progress for this long (a task that cannot be placed, a node
	// that went away with its replicas): those are polled at SlowPoll.
	FastLimit time.Duration
	// CallTimeout bounds each call to the Docker API.
	CallTimeout time.Duration
	// NodeRefresh is how old the cached node list may grow; a task on a
	// node not in the cache refreshes it at once.
	NodeRefresh time.Duration
	// Instance is the install this catalog belongs to: only services
	// labelled pulse.instance=<Instance> are functions of it (`pulse
	// deploy` sets the label). A service without the label (deployed before
	// instances existed) is ignored and logged once.
	Instance string
	// Selector narrows the functions further, to services carrying these
	// labels as well ("key" or "key=value"). Empty: no further narrowing.
	Selector []string
}

// Catalog defaults.
const (
	// DefaultFastPoll: a new replica is in the catalog at most this
	// long after Swarm reports it running (plus one round trip of two
	// calls, a few ms on a manager).
	DefaultFastPoll = 100 * time.Millisecond
	// DefaultSlowPoll: two list calls a second on a steady swarm;
	// the scaler and the deploy API can ask for a poll at once (Refresh).
	DefaultSlowPoll = time.Second
	// DefaultSettle covers the gap between two steps of a change
	// that Swarm does not show as pending (e.g. between the replicas of a
	// rolling update).
	DefaultSettle = 2 * time.Second
	// DefaultFastLimit is longer than a replica's health start
	// period (10 s): a slow start still counts as progress.
	DefaultFastLimit = 30 * time.Second
	// DefaultCallTimeout: a manager answers in milliseconds; a call
	// that takes seconds is a stuck engine, and the last good catalog is
	// served meanwhile.
	DefaultCallTimeout = 5 * time.Second
	// DefaultNodeRefresh: node addresses rarely change; new nodes
	// are found at once through their tasks.
	DefaultNodeRefresh = 10 * time.Second
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		FastPoll:    DefaultFastPoll,
		SlowPoll:    DefaultSlowPoll,
		Settle:      DefaultSettle,
		FastLimit:   DefaultFastLimit,
		CallTimeout: DefaultCallTimeout,
		NodeRefresh: DefaultNodeRefresh,
		Instance:    contract.DefaultInstance,
	}
}

// Validate reports the first bad value.
func (c Config) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"fast poll", c.FastPoll}, {"slow poll", c.SlowPoll}, {"settle", c.Settle},
		{"fast limit", c.FastLimit}, {"call timeout", c.CallTimeout}, {"node refresh", c.NodeRefresh},
	} {
		if d.v <= 0 {
			return fmt.Errorf("catalog %s %v: must be positive", d.name, d.v)
		}
	}
	if c.FastPoll > c.SlowPoll {
		return fmt.Errorf("catalog fast poll %v is longer than the slow poll %v", c.FastPoll, c.SlowPoll)
	}
	if !contract.ValidInstance(c.Instance) {
		return fmt.Errorf("catalog instance %q: want %s", c.Instance, contract.InstanceSyntax)
	}
	for _, s := range c.Selector {
		if k, _, _ := strings.Cut(s, "="); k == "" {
			return fmt.Errorf("catalog selector %q: want key or key=value", s)
		}
	}
	return nil
}

// ErrNotReady is Current's error until the first poll succeeded.
var ErrNotReady = errors.New("catalog not ready")

// Catalog is pulsed's replica catalog (DESIGN.md §4 "one replica catalog"):
// the only part of pulsed that lists Swarm tasks. It polls the swarm and
// builds a contract.Catalog of every function, its labels, desired replicas
// and the replicas that have an address and run, marking those Swarm has
// told to stop as draining. The gateway (reconcile loop, cold start, idle
// watcher), the scaler and, over HTTP (NewHandler), the collector and the
// CLI read it; nothing else in pulsed asks Docker for tasks.
//
// Every catalog it hands out is shared: treat it as read-only.
type Catalog struct {
	api API
	cfg Config
	log *slog.Logger

	started atomic.Bool
	kick    chan struct{}

	// Poller state, touched by Run's goroutine only.
	nodes      map[string]string // node ID → address of its published ports
	nodesAt    time.Time
	gone       map[string]goneService // removed services whose tasks may still run, by ID
	changedAt  time.Time              // last version change
	progressAt time.Time              // last change or change of what is pending
	pending    string
	failures   int       // consecutive failed polls
	failedAt   time.Time // the first of them
	// unlabelled are the function services without an instance label
	// that were logged as ignored, by ID.
	unlabelled map[string]bool
	// skipped are the functions left out for a bad spec, name → reason,
	// as last logged.
	skipped map[string]string

	mu      sync.Mutex
	cur     contract.Catalog
	curAt   time.Time // last successful poll; zero before the first
	curErr  error     // the latest poll's error
	subs    []chan contract.Catalog
	stopped bool
}

// New returns a Catalog reading api. log may be nil.
func New(api API, cfg Config, log *slog.Logger) (*Catalog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Catalog{
		api:        api,
		cfg:        cfg,
		log:        log.With("component", "catalog"),
		kick:       make(chan struct{}, 1),
		nodes:      map[string]string{},
		gone:       map[string]goneService{},
		unlabelled: map[string]bool{},
		skipped:    map[string]string{},
	}, nil
}

// Current returns the latest catalog, when a poll last confirmed it, and the
// latest poll's error. After a failed poll it is the last good catalog with
// that poll's error; before the first successful poll it is the zero Catalog
// and an error wrapping ErrNotReady.
func (c *Catalog) Current() (contract.Catalog, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.curAt.IsZero() {
		if c.curErr != nil {
			return contract.Catalog{}, time.Time{}, fmt.Errorf("%w: %w", ErrNotReady, c.curErr)
		}
		return contract.Catalog{}, time.Time{}, ErrNotReady
	}
	return c.cur, c.curAt, c.curErr
}

// Subscribe returns a channel that receives the catalog whenever it changes,
// starting with the current one if there is one. It holds one value: a
// consumer that falls behind only ever gets the newest catalog, and the
// poller never waits for it. The channel is closed when Run returns.
func (c *Catalog) Subscribe() <-chan contract.Catalog {
	ch := make(chan contract.Catalog, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		close(ch)
		return ch
	}
	if !c.curAt.IsZero() {
		ch <- c.cur
	}
	c.subs = append(c.subs, ch)
	return ch
}

// Refresh asks for a poll now, e.g. right after pulsed changed a service,
// so the change is seen without waiting for the slow period. It never blocks.
func (c *Catalog) Refresh() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run polls until ctx ends, then closes the subscribers' channels and
// returns nil. It runs once per Catalog.
func (c *Catalog) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("catalog: Run called twice")
	}
	defer c.stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-c.kick:
		}
		start := time.Now()
		delay := c.poll(ctx, start)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(max(0, delay-time.Since(start)))
	}
}

func (c *Catalog) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	for _, ch := range c.subs {
		close(ch)
	}
	c.subs = nil
}

// poll reads the swarm once, publishes the catalog if it changed, and
// returns the period until the next poll.
func (c *Catalog) poll(ctx context.Context, now time.Time) time.Duration {
	prev, _, _ := c.Current()
	in, err := c.read(ctx, prev, now)
	if err != nil {
		if ctx.Err() == nil {
			c.failed(err, now)
		}
		return c.cfg.SlowPoll
	}
	in.gone = stillLeaving(in, now)
	c.gone = in.gone
	in.addrs = replicaAddrs(prev)
	cat, pending := build(in)
	c.recovered(now)
	c.noteSkipped(cat.Skipped)

	if cat.Version != prev.Version || pending != c.pending {
		c.progressAt = now
	}
	if cat.Version != prev.Version {
		c.changedAt = now
		c.log.Debug("catalog changed", "version", cat.Version, "functions", len(cat.Functions),
			"replicas", countReplicas(cat), "pending", pending)
	}
	c.pending = pending
	c.publish(cat, now)
	return c.cfg.pollDelay(now, c.changedAt, c.progressAt, pending)
}

// pollDelay is the period until the next poll: FastPoll while something
// converges and progresses (or within Settle of a change), else SlowPoll.
func (c Config) pollDelay(now, changedAt, progressAt time.Time, pending string) time.Duration {
	if !changedAt.IsZero() && now.Sub(changedAt) < c.Settle {
		return c.FastPoll
	}
	if pending != "" && now.Sub(progressAt) < c.FastLimit {
		return c.FastPoll
	}
	return c.SlowPoll
}

// publish makes cat current and hands it to the subscribers if it is new.
func (c *Catalog) publish(cat contract.Catalog, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.curAt.IsZero() || cat.Version != c.cur.Version
	c.curAt, c.curErr = now, nil
	if !changed {
		return
	}
	c.cur = cat
	for _, ch := range c.subs {
		// Only this goroutine sends: once the stale value is taken out,
		// the send cannot block.
		select {
		case <-ch:
		default:
		}
		ch <- cat
	}
}

// noteSkipped logs each skipped function once, again only when its reason
// changes, and when it is no longer skipped.
func (c *Catalog) noteSkipped(skipped []contract.SkippedFunction) {
	now := make(map[string]string, len(skipped))
	for _, s := range skipped {
		now[s.Name] = s.Reason
		if c.skipped[s.Name] != s.Reason {
			c.log.Error("function skipped: fix its service and redeploy; the others are served", "function", s.Name, "service", s.ServiceID, "reason", s.Reason)
		}
	}
	for name := range c.skipped {
		if _, ok := now[name]; !ok {
			c.log.Info("function no longer skipped", "function", name)
		}
	}
	c.skipped = now
}

// failed records a failed poll; the error is logged once per streak.
func (c *Catalog) failed(err error, now time.Time) {
	c.mu.Lock()
	c.curErr = err
	c.mu.Unlock()
	c.failures++
	if c.failures == 1 {
		c.failedAt = now
		c.log.Warn("catalog poll failed; serving the last good catalog", "err", err)
		return
	}
	c.log.Debug("catalog poll failed again", "err", err, "failures", c.failures)
}

// recovered ends a streak of failed polls.
func (c *Catalog) recovered(now time.Time) {
	if c.failures == 0 {
		return
	}
	c.log.Info("catalog poll recovered", "failures", c.failures, "after", now.Sub(c.failedAt).Round(time.Millisecond))
	c.failures = 0
}
