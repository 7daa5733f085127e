package catalog

import (
	"context"
	"fmt"
	"maps"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/swarmaddr"
)

// This file reads the swarm (the Docker SDK side of the catalog); build.go
// turns what it read into a contract.Catalog.

// API is the part of the Docker API the replica catalog reads. It must
// be a swarm manager's.
type API interface {
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
	NodeList(ctx context.Context, opts swarm.NodeListOptions) ([]swarm.Node, error)
}

var _ API = (*client.Client)(nil)

// input is one reading of the swarm: what build needs.
type input struct {
	services []swarm.Service // the function services
	// tasks are the tasks of services and, for the services in gone, those
	// Swarm still wants running or is removing.
	tasks []swarm.Task
	nodes map[string]string // node ID → address
	// gone are function services that were removed, by ID.
	gone map[string]goneService
	// addrs are the replicas' addresses in the previous catalog, by task
	// ID. Swarm clears a task's published ports as soon as it is told to
	// stop, while it still runs and serves: a draining replica keeps the
	// address it had.
	addrs map[string]string
}

// goneService is a function service that left the service list while its
// tasks may still run: Swarm stops them after the removal, and until they
// stop the gateway drains them (DESIGN.md §4).
type goneService struct {
	fn    contract.CatalogFunction // as last seen, without replicas
	since time.Time                // when it left the list
}

// removeGrace is how long a removed service's tasks that Swarm still wants
// running count as leaving: the orchestrator marks them for removal within
// milliseconds of the removal. (A service that merely lost its
// pulse.function label keeps its tasks running: it leaves the catalog after
// this.)
const removeGrace = 2 * time.Second

// maxReadAttempts bounds the re-reads when a service vanishes between the
// service list and the task list (the engine then refuses the whole task
// list with 404).
const maxReadAttempts = 3

// read lists the function services, their tasks and, while removed services
// may still have tasks, those; it refreshes the node cache when it is old or
// a task runs on a node it does not know. prev is the last good catalog.
func (c *Catalog) read(ctx context.Context, prev contract.Catalog, now time.Time) (input, error) {
	var in input
	for attempt := 1; ; attempt++ {
		var err error
		in, err = c.readServices(ctx, prev, now)
		if err == nil {
			break
		}
		if !cerrdefs.IsNotFound(err) || attempt == maxReadAttempts {
			return input{}, err
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
			return input{}, err
		}
		for _, t := range tasks {
			if _, ok := in.gone[t.ServiceID]; ok {
				in.tasks = append(in.tasks, t)
			}
		}
	}
	if err := c.refreshNodes(ctx, in.tasks); err != nil {
		return input{}, err
	}
	in.nodes = c.nodes
	return in, nil
}

// readServices lists the function services and their tasks; the services
// of prev missing from the list join the removed ones.
func (c *Catalog) readServices(ctx context.Context, prev contract.Catalog, now time.Time) (input, error) {
	sf := filters.NewArgs(filters.Arg("label", contract.LabelFunction))
	for _, s := range c.cfg.Selector {
		sf.Add("label", s)
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	svcs, err := c.api.ServiceList(cctx, swarm.ServiceListOptions{Filters: sf})
	cancel()
	if err != nil {
		return input{}, fmt.Errorf("list services: %w", err)
	}
	in := input{gone: make(map[string]goneService, len(c.gone))}
	maps.Copy(in.gone, c.gone)
	live := map[string]bool{}
	for _, svc := range c.ownFunctions(svcs) {
		in.services = append(in.services, svc)
		live[svc.ID] = true
	}
	for _, fn := range prev.Functions {
		if !live[fn.ServiceID] {
			if _, ok := in.gone[fn.ServiceID]; !ok {
				in.gone[fn.ServiceID] = goneService{
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
	c.nodes = nodeAddrs(nodes)
	c.nodesAt = time.Now()
	return nil
}

// nodeAddrs maps node IDs to the address their published ports are at.
func nodeAddrs(nodes []swarm.Node) map[string]string {
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		m[n.ID] = swarmaddr.NodeAddr(n)
	}
	return m
}
