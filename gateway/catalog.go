package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/swarmaddr"
)

// CatalogAPI is the part of the Docker API the replica catalog reads. It must
// be a swarm manager's.
type CatalogAPI interface {
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
	NodeList(ctx context.Context, opts swarm.NodeListOptions) ([]swarm.Node, error)
}

var _ CatalogAPI = (*client.Client)(nil)

// CatalogConfig sets how the catalog polls. Docker emits no task events
// (moby/moby#37403), so polling is the only way to see replicas come and go:
// fast while the swarm converges, slow when it is steady.
type CatalogConfig struct {
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
	// DefaultCatalogFastPoll: a new replica is in the catalog at most this
	// long after Swarm reports it running (plus one round trip of two
	// calls, a few ms on a manager).
	DefaultCatalogFastPoll = 100 * time.Millisecond
	// DefaultCatalogSlowPoll: two list calls a second on a steady swarm;
	// the scaler and the deploy API can ask for a poll at once (Refresh).
	DefaultCatalogSlowPoll = time.Second
	// DefaultCatalogSettle covers the gap between two steps of a change
	// that Swarm does not show as pending (e.g. between the replicas of a
	// rolling update).
	DefaultCatalogSettle = 2 * time.Second
	// DefaultCatalogFastLimit is longer than a replica's health start
	// period (10 s): a slow start still counts as progress.
	DefaultCatalogFastLimit = 30 * time.Second
	// DefaultCatalogCallTimeout: a manager answers in milliseconds; a call
	// that takes seconds is a stuck engine, and the last good catalog is
	// served meanwhile.
	DefaultCatalogCallTimeout = 5 * time.Second
	// DefaultCatalogNodeRefresh: node addresses rarely change; new nodes
	// are found at once through their tasks.
	DefaultCatalogNodeRefresh = 10 * time.Second
)

// DefaultCatalogConfig returns the defaults.
func DefaultCatalogConfig() CatalogConfig {
	return CatalogConfig{
		FastPoll:    DefaultCatalogFastPoll,
		SlowPoll:    DefaultCatalogSlowPoll,
		Settle:      DefaultCatalogSettle,
		FastLimit:   DefaultCatalogFastLimit,
		CallTimeout: DefaultCatalogCallTimeout,
		NodeRefresh: DefaultCatalogNodeRefresh,
		Instance:    contract.DefaultInstance,
	}
}

// Validate reports the first bad value.
func (c CatalogConfig) Validate() error {
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

// ErrCatalogNotReady is Current's error until the first poll succeeded.
var ErrCatalogNotReady = errors.New("catalog not ready")

// Catalog is pulsed's replica catalog (DESIGN.md §4 "one replica catalog"):
// the only component that lists Swarm tasks. It polls the swarm and builds a
// contract.Catalog of every function, its labels, desired replicas and the
// replicas that have an address and run, marking those Swarm has told to stop
// as draining. The gateway and the collector read it; nothing else asks
// Docker for tasks.
//
// Every catalog it hands out is shared: treat it as read-only.
type Catalog struct {
	api CatalogAPI
	cfg CatalogConfig
	log *slog.Logger

	started atomic.Bool
	kick    chan struct{}

	// Poller state, touched by Run's goroutine only.
	nodes      map[string]string // node ID → address of its published ports
	nodesAt    time.Time
	gone       map[string]catalogGone // removed services whose tasks may still run, by ID
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

// NewCatalog returns a Catalog reading api. log may be nil.
func NewCatalog(api CatalogAPI, cfg CatalogConfig, log *slog.Logger) (*Catalog, error) {
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
		gone:       map[string]catalogGone{},
		unlabelled: map[string]bool{},
		skipped:    map[string]string{},
	}, nil
}

// Current returns the latest catalog, when a poll last confirmed it, and the
// latest poll's error. After a failed poll it is the last good catalog with
// that poll's error; before the first successful poll it is the zero Catalog
// and an error wrapping ErrCatalogNotReady.
func (c *Catalog) Current() (contract.Catalog, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.curAt.IsZero() {
		if c.curErr != nil {
			return contract.Catalog{}, time.Time{}, fmt.Errorf("%w: %w", ErrCatalogNotReady, c.curErr)
		}
		return contract.Catalog{}, time.Time{}, ErrCatalogNotReady
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
	in.addrs = catalogReplicaAddrs(prev)
	cat, pending := buildCatalog(in)
	c.recovered(now)
	c.noteSkipped(cat.Skipped)

	if cat.Version != prev.Version || pending != c.pending {
		c.progressAt = now
	}
	if cat.Version != prev.Version {
		c.changedAt = now
		c.log.Debug("catalog changed", "version", cat.Version, "functions", len(cat.Functions),
			"replicas", countCatalogReplicas(cat), "pending", pending)
	}
	c.pending = pending
	c.publish(cat, now)
	return c.cfg.pollDelay(now, c.changedAt, c.progressAt, pending)
}

// pollDelay is the period until the next poll: FastPoll while something
// converges and progresses (or within Settle of a change), else SlowPoll.
func (c CatalogConfig) pollDelay(now, changedAt, progressAt time.Time, pending string) time.Duration {
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

// catalogInput is one reading of the swarm: what buildCatalog needs.
type catalogInput struct {
	services []swarm.Service // the function services
	// tasks are the tasks of services and, for the services in gone, those
	// Swarm still wants running or is removing.
	tasks []swarm.Task
	nodes map[string]string // node ID → address
	// gone are function services that were removed, by ID.
	gone map[string]catalogGone
	// addrs are the replicas' addresses in the previous catalog, by task
	// ID. Swarm clears a task's published ports as soon as it is told to
	// stop, while it still runs and serves: a draining replica keeps the
	// address it had.
	addrs map[string]string
}

// catalogGone is a function service that left the service list while its
// tasks may still run: Swarm stops them after the removal, and until they
// stop the gateway drains them (DESIGN.md §4).
type catalogGone struct {
	fn    contract.CatalogFunction // as last seen, without replicas
	since time.Time                // when it left the list
}

// catalogRemoveGrace is how long a removed service's tasks that Swarm still wants
// running count as leaving: the orchestrator marks them for removal within
// milliseconds of the removal. (A service that merely lost its
// pulse.function label keeps its tasks running: it leaves the catalog after
// this.)
const catalogRemoveGrace = 2 * time.Second

// maxCatalogReadAttempts bounds the re-reads when a service vanishes between the
// service list and the task list (the engine then refuses the whole task
// list with 404).
const maxCatalogReadAttempts = 3

// read lists the function services, their tasks and, while removed services
// may still have tasks, those; it refreshes the node cache when it is old or
// a task runs on a node it does not know. prev is the last good catalog.
func (c *Catalog) read(ctx context.Context, prev contract.Catalog, now time.Time) (catalogInput, error) {
	var in catalogInput
	for attempt := 1; ; attempt++ {
		var err error
		in, err = c.readServices(ctx, prev, now)
		if err == nil {
			break
		}
		if !cerrdefs.IsNotFound(err) || attempt == maxCatalogReadAttempts {
			return catalogInput{}, err
		}
		c.log.Debug("a service went away while listing its tasks; reading again", "err", err)
	}
	if len(in.gone) > 0 {
		f := filters.NewArgs(
			filters.Arg("desired-state", string(swarm.TaskStateRunning)),
			filters.Arg("desired-state", string(swarm.TaskStateRemove)),
		)
		tasks, err := c.taskList(ctx, f)
		if err != nil {
			return catalogInput{}, err
		}
		for _, t := range tasks {
			if _, ok := in.gone[t.ServiceID]; ok {
				in.tasks = append(in.tasks, t)
			}
		}
	}
	if err := c.refreshNodes(ctx, in.tasks); err != nil {
		return catalogInput{}, err
	}
	in.nodes = c.nodes
	return in, nil
}

// readServices lists the function services and their tasks; the services
// of prev missing from the list join the removed ones.
func (c *Catalog) readServices(ctx context.Context, prev contract.Catalog, now time.Time) (catalogInput, error) {
	sf := filters.NewArgs(filters.Arg("label", contract.LabelFunction))
	for _, s := range c.cfg.Selector {
		sf.Add("label", s)
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	svcs, err := c.api.ServiceList(cctx, swarm.ServiceListOptions{Filters: sf})
	cancel()
	if err != nil {
		return catalogInput{}, fmt.Errorf("list services: %w", err)
	}
	in := catalogInput{gone: make(map[string]catalogGone, len(c.gone))}
	maps.Copy(in.gone, c.gone)
	live := map[string]bool{}
	for _, svc := range c.ownFunctions(svcs) {
		in.services = append(in.services, svc)
		live[svc.ID] = true
	}
	for _, fn := range prev.Functions {
		if !live[fn.ServiceID] {
			if _, ok := in.gone[fn.ServiceID]; !ok {
				in.gone[fn.ServiceID] = catalogGone{
					fn:    contract.CatalogFunction{Name: fn.Name, ServiceID: fn.ServiceID, Labels: fn.Labels},
					since: now,
				}
			}
		}
	}
	for id := range in.gone {
		if live[id] { // listed again: an earlier list missed it
			delete(in.gone, id)
		}
	}
	if len(in.services) == 0 {
		return in, nil
	}
	tf := filters.NewArgs()
	for _, svc := range in.services {
		tf.Add("service", svc.ID)
	}
	in.tasks, err = c.taskList(ctx, tf)
	return in, err
}

// ownFunctions keeps the function services of this catalog's instance. The
// instance is filtered here rather than by the engine so that services
// without the label are seen: each is logged once, with how to fix it.
func (c *Catalog) ownFunctions(svcs []swarm.Service) []swarm.Service {
	var own []swarm.Service
	unlabelled := map[string]bool{}
	for _, svc := range svcs {
		if !isFunctionService(svc) {
			continue
		}
		inst, ok := svc.Spec.Labels[contract.LabelInstance]
		if !ok {
			unlabelled[svc.ID] = true
			if !c.unlabelled[svc.ID] {
				c.log.Warn("function ignored: its service has no "+contract.LabelInstance+" label (deployed before Pulse instances existed); redeploy it with pulse deploy (CLI instance key = this pulsed's instance) to have it routed and scaled",
					"function", svc.Spec.Name, "service", svc.ID, "instance", c.cfg.Instance)
			}
			continue
		}
		if inst == c.cfg.Instance {
			own = append(own, svc)
		}
	}
	c.unlabelled = unlabelled
	return own
}

func (c *Catalog) taskList(ctx context.Context, f filters.Args) ([]swarm.Task, error) {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	tasks, err := c.api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return tasks, nil
}

// refreshNodes lists the nodes when the cache is older than NodeRefresh or
// a running task is on a node the cache does not hold.
func (c *Catalog) refreshNodes(ctx context.Context, tasks []swarm.Task) error {
	stale := c.nodesAt.IsZero() || time.Since(c.nodesAt) >= c.cfg.NodeRefresh
	for _, t := range tasks {
		if stale {
			break
		}
		if _, ok := c.nodes[t.NodeID]; !ok && t.NodeID != "" && t.Status.State == swarm.TaskStateRunning {
			stale = true
		}
	}
	if !stale {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	nodes, err := c.api.NodeList(cctx, swarm.NodeListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	c.nodes = catalogNodeAddrs(nodes)
	c.nodesAt = time.Now()
	return nil
}

// catalogNodeAddrs maps node IDs to the address their published ports are at.
func catalogNodeAddrs(nodes []swarm.Node) map[string]string {
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		m[n.ID] = swarmaddr.NodeAddr(n)
	}
	return m
}

// isFunctionService reports a service deployed as a Pulse function: its
// pulse.function label names it (as the CLI's list requires too, so both
// show the same functions).
func isFunctionService(svc swarm.Service) bool {
	return svc.Spec.Name != "" && svc.Spec.Labels[contract.LabelFunction] == svc.Spec.Name
}

// isTerminalTask reports an observed state a task does not leave.
func isTerminalTask(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed,
		swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// stillLeaving is the part of in.gone that still has tasks to stop: tasks
// Swarm is removing, or, within catalogRemoveGrace of the removal, tasks it has not
// marked yet.
func stillLeaving(in catalogInput, now time.Time) map[string]catalogGone {
	out := map[string]catalogGone{}
	for _, t := range in.tasks {
		g, ok := in.gone[t.ServiceID]
		if !ok || isTerminalTask(t.Status.State) {
			continue
		}
		if t.DesiredState != swarm.TaskStateRunning || now.Sub(g.since) < catalogRemoveGrace {
			out[t.ServiceID] = g
		}
	}
	return out
}

// buildCatalog turns one reading of the swarm into the catalog. A replica is
// a task observed running whose node address and published watchdog port
// are known; it is draining when Swarm no longer wants it running (scale
// down, rolling update) or its service was removed, and then keeps the
// address it had (Swarm clears the ports at once). pending says why the
// swarm is not steady ("" when it is): the poller polls fast meanwhile.
func buildCatalog(in catalogInput) (contract.Catalog, string) {
	byService := map[string][]swarm.Task{}
	for _, t := range in.tasks {
		byService[t.ServiceID] = append(byService[t.ServiceID], t)
	}
	byName := map[string]*contract.CatalogFunction{}
	var pending []string
	var skipped []contract.SkippedFunction

	replica := func(t swarm.Task, draining bool) (contract.Replica, bool) {
		if t.Status.State != swarm.TaskStateRunning {
			return contract.Replica{}, false
		}
		addr, ok := "", false
		if node, known := in.nodes[t.NodeID]; known {
			addr, ok = swarmaddr.Addr(node, t)
		}
		if !ok && draining {
			addr, ok = in.addrs[t.ID]
		}
		if !ok {
			return contract.Replica{}, false
		}
		return contract.Replica{
			TaskID:   t.ID,
			Slot:     t.Slot,
			Node:     t.NodeID,
			Addr:     addr,
			State:    string(t.Status.State),
			Draining: draining,
		}, true
	}

	for _, svc := range in.services {
		if !isFunctionService(svc) {
			continue
		}
		name := svc.Spec.Name
		if _, err := CheckFunction(name, svc.Spec.Labels); err != nil {
			// Unusable by the gateway (and the collector, the scaler):
			// left out with its reason, the others served.
			skipped = append(skipped, contract.SkippedFunction{Name: name, ServiceID: svc.ID, Reason: err.Error()})
			continue
		}
		fn := &contract.CatalogFunction{
			Name:      name,
			ServiceID: svc.ID,
			Labels:    catalogLabels(svc.Spec.Labels),
			Replicas:  []contract.Replica{},
		}
		byName[name] = fn
		replicated := svc.Spec.Mode.Replicated != nil
		if replicated && svc.Spec.Mode.Replicated.Replicas != nil {
			fn.Desired = int(*svc.Spec.Mode.Replicated.Replicas)
		}
		var running, wanted int
		for _, t := range byService[svc.ID] {
			up := t.DesiredState == swarm.TaskStateRunning
			if up {
				wanted++
			}
			switch {
			case up && t.Status.State == swarm.TaskStateRunning:
				running++
			case up:
				pending = append(pending, fmt.Sprintf("%s: task %s %s", name, t.ID, t.Status.State))
			case !isTerminalTask(t.Status.State): // draining, or not started yet
				pending = append(pending, fmt.Sprintf("%s: task %s %s, desired %s", name, t.ID, t.Status.State, t.DesiredState))
			}
			if r, ok := replica(t, !up); ok {
				fn.Replicas = append(fn.Replicas, r)
			}
		}
		if !replicated {
			fn.Desired = wanted // global: one task per eligible node
		}
		if running != fn.Desired {
			pending = append(pending, fmt.Sprintf("%s: %d of %d replicas running", name, running, fn.Desired))
		}
		if u := svc.UpdateStatus; u != nil && (u.State == swarm.UpdateStateUpdating || u.State == swarm.UpdateStateRollbackStarted) {
			pending = append(pending, fmt.Sprintf("%s: update %s", name, u.State))
		}
	}

	// Removed services: whatever still runs is leaving.
	for _, id := range slices.Sorted(maps.Keys(in.gone)) {
		gone := in.gone[id].fn
		for _, t := range byService[id] {
			if !isTerminalTask(t.Status.State) {
				pending = append(pending, fmt.Sprintf("%s: removed service %s: task %s %s", gone.Name, id, t.ID, t.Status.State))
			}
			r, ok := replica(t, true)
			if !ok {
				continue
			}
			fn := byName[gone.Name]
			if fn == nil {
				fn = &contract.CatalogFunction{Name: gone.Name, ServiceID: id, Labels: catalogLabels(gone.Labels), Replicas: []contract.Replica{}}
				byName[gone.Name] = fn
			}
			fn.Replicas = append(fn.Replicas, r)
		}
	}

	cat := contract.Catalog{Functions: make([]contract.CatalogFunction, 0, len(byName))}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		fn := byName[name]
		slices.SortFunc(fn.Replicas, func(a, b contract.Replica) int { return strings.Compare(a.TaskID, b.TaskID) })
		cat.Functions = append(cat.Functions, *fn)
	}
	if len(skipped) > 0 {
		slices.SortFunc(skipped, func(a, b contract.SkippedFunction) int {
			return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ServiceID, b.ServiceID))
		})
		cat.Skipped = skipped
	}
	cat.Version = catalogVersion(cat.Functions)
	if len(skipped) > 0 {
		cat.Version = catalogVersion(cat.Functions, skipped...)
	}
	slices.Sort(pending)
	switch len(pending) {
	case 0:
		return cat, ""
	case 1:
		return cat, pending[0]
	default:
		return cat, fmt.Sprintf("%s (and %d more)", pending[0], len(pending)-1)
	}
}

// catalogReplicaAddrs maps the task IDs of cat's replicas to their addresses.
func catalogReplicaAddrs(cat contract.Catalog) map[string]string {
	m := map[string]string{}
	for _, fn := range cat.Functions {
		for _, r := range fn.Replicas {
			m[r.TaskID] = r.Addr
		}
	}
	return m
}

// catalogLabels copies a service's labels; never nil, so the JSON is {}.
func catalogLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	maps.Copy(out, l)
	return out
}

// catalogVersion is a hash of the catalog's content: it changes exactly when
// the content does. encoding/json writes map keys sorted, and the functions
// and replicas are sorted, so equal content encodes equally.
func catalogVersion(fns []contract.CatalogFunction, skipped ...contract.SkippedFunction) string {
	b, err := json.Marshal(fns)
	if err != nil { // strings, ints and bools only: cannot happen
		panic(fmt.Sprintf("encode catalog: %v", err))
	}
	if len(skipped) > 0 {
		sk, err := json.Marshal(skipped)
		if err != nil {
			panic(fmt.Sprintf("encode catalog: %v", err))
		}
		b = append(b, sk...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func countCatalogReplicas(cat contract.Catalog) int {
	n := 0
	for _, fn := range cat.Functions {
		n += len(fn.Replicas)
	}
	return n
}
