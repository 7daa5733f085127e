package function

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// Endpoint is a running replica of a function.
type Endpoint struct {
	TaskID string `json:"task_id"`
	Slot   int    `json:"slot"`
	Node   string `json:"node"` // the node's hostname
	Addr   string `json:"addr"` // host:port of its watchdog
	State  string `json:"state"`
}

// Endpoints lists the running replicas of a function (those Swarm wants
// running and reports running, i.e. healthy), by slot.
func (s *Swarm) Endpoints(ctx context.Context, name string) ([]Endpoint, error) {
	svc, err := s.inspectFunction(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("endpoints %s: %w", name, err)
	}
	tasks, err := s.tasks(ctx, svc.ID, true)
	if err != nil {
		return nil, fmt.Errorf("endpoints %s: %w", name, err)
	}
	nodes := s.newNodeCache()
	var eps []Endpoint
	for _, t := range tasks {
		if !catalog.Up(t) {
			continue
		}
		ep, ok, err := nodes.endpoint(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("endpoints %s: %w", name, err)
		}
		if ok {
			eps = append(eps, ep)
		}
	}
	return eps, nil
}

// Summary is one function in List.
type Summary struct {
	Name      string    `json:"name"`
	ServiceID string    `json:"service_id"`
	Running   int       `json:"running"` // replicas up (healthy)
	Desired   int       `json:"desired"`
	Image     string    `json:"image"`
	ImageSize int64     `json:"image_size"` // bytes; 0 when this engine lacks the image
	Endpoints []string  `json:"endpoints"`
	UpdatedAt time.Time `json:"updated_at"`
}

// List lists the deployed functions by name.
func (s *Swarm) List(ctx context.Context) ([]Summary, error) {
	fail := func(err error) ([]Summary, error) { return nil, fmt.Errorf("list functions: %w", err) }
	cctx, cancel := s.call(ctx)
	svcs, err := s.api.ServiceList(cctx, swarm.ServiceListOptions{
		Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction)),
	})
	cancel()
	if err != nil {
		return fail(fmt.Errorf("list services: %w", err))
	}
	cctx, cancel = s.call(ctx)
	tasks, err := s.api.TaskList(cctx, swarm.TaskListOptions{
		Filters: filters.NewArgs(filters.Arg("desired-state", string(swarm.TaskStateRunning))),
	})
	cancel()
	if err != nil {
		return fail(fmt.Errorf("list tasks: %w", err))
	}
	sortTasks(tasks)
	byService := map[string][]swarm.Task{}
	for _, t := range tasks {
		byService[t.ServiceID] = append(byService[t.ServiceID], t)
	}
	nodes := s.newNodeCache()
	sizes := s.newSizeCache()
	out := make([]Summary, 0, len(svcs))
	for _, svc := range svcs {
		name := svc.Spec.Name
		if svc.Spec.Labels[contract.LabelFunction] != name {
			continue
		}
		sum := Summary{
			Name:      name,
			ServiceID: svc.ID,
			Desired:   replicasOf(svc.Spec),
			Image:     serviceImage(svc),
			Endpoints: []string{},
			UpdatedAt: svc.UpdatedAt,
		}
		for _, t := range byService[svc.ID] {
			if !catalog.Up(t) {
				continue
			}
			sum.Running++
			ep, ok, err := nodes.endpoint(ctx, t)
			if err != nil {
				return fail(err)
			}
			if ok {
				sum.Endpoints = append(sum.Endpoints, ep.Addr)
			}
		}
		if sum.ImageSize, err = sizes.size(ctx, sum.Image); err != nil {
			return fail(err)
		}
		out = append(out, sum)
	}
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// serviceImage is the image ID a service runs.
func serviceImage(svc swarm.Service) string {
	if id := svc.Spec.Labels[LabelImage]; id != "" {
		return id
	}
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		return cs.Image
	}
	return ""
}

// sizeCache reads image sizes from the local engine, once per image.
type sizeCache struct {
	s     *Swarm
	sizes map[string]int64
}

func (s *Swarm) newSizeCache() *sizeCache { return &sizeCache{s: s, sizes: map[string]int64{}} }

func (c *sizeCache) size(ctx context.Context, ref string) (int64, error) {
	if ref == "" {
		return 0, nil
	}
	if n, ok := c.sizes[ref]; ok {
		return n, nil
	}
	cctx, cancel := c.s.call(ctx)
	defer cancel()
	img, err := c.s.api.ImageInspect(cctx, ref)
	if cerrdefs.IsNotFound(err) {
		c.sizes[ref] = 0
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	c.sizes[ref] = img.Size
	return img.Size, nil
}

// ScalePolicy is a function's autoscaling policy, read from its labels.
type ScalePolicy struct {
	Metric string  `json:"metric,omitempty"`
	Target float64 `json:"target,omitempty"`
	Min    int     `json:"min"`
	Max    int     `json:"max"`
	Idle   string  `json:"idle,omitempty"` // a duration; empty: never scales to zero
}

// AsyncPolicy is how pulsed dispatches a function's async requests, read
// from its pulse.async label (functions.yml async).
type AsyncPolicy struct {
	Retries     int    `json:"retries"`
	MaxAge      string `json:"max_age"` // a duration, e.g. 1h
	Concurrency int    `json:"concurrency"`
	Retry500    bool   `json:"retry_500"`
	// Default: the function has no label (no async in its functions.yml),
	// so pulsed applies contract.DefaultAsyncPolicy.
	Default bool `json:"default,omitempty"`
}

// String is the policy in words, as pulse describe shows it: "3 retries
// within 1h, 4 dispatches per replica at once, 500 not retried (default)".
func (p AsyncPolicy) String() string {
	retries := "retries"
	if p.Retries == 1 {
		retries = "retry"
	}
	on500 := "500 not retried"
	if p.Retry500 {
		on500 = "500 retried"
	}
	s := fmt.Sprintf("%d %s within %s, %d dispatches per replica at once, %s", p.Retries, retries, p.MaxAge, p.Concurrency, on500)
	if p.Default {
		s += " (default)"
	}
	return s
}

// ResourceLimits are a service's limits; zero means none.
type ResourceLimits struct {
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
}

// Detail describes one function.
type Detail struct {
	Name      string            `json:"name"`
	ServiceID string            `json:"service_id"`
	Labels    map[string]string `json:"labels"`
	Scale     ScalePolicy       `json:"scale"`
	Limits    ResourceLimits    `json:"limits"`
	Timeout   string            `json:"timeout,omitempty"`
	// RateLimit is the gateway's limit (functions.yml rate_limit), nil
	// when the function has none.
	RateLimit *contract.RateLimit `json:"rate_limit,omitempty"`
	// Async is how pulsed dispatches its async requests: the label's
	// policy, or the default (Default set) when it has none; nil when the
	// label is malformed (the catalog skips such a function).
	Async         *AsyncPolicy `json:"async,omitempty"`
	Image         string       `json:"image"`
	ImageSize     int64        `json:"image_size"`
	Running       int          `json:"running"`
	Desired       int          `json:"desired"`
	CreatedAt     time.Time    `json:"created_at"`
	UpdatedAt     time.Time    `json:"updated_at"`
	UpdateState   string       `json:"update_state,omitempty"` // of the last rolling update
	UpdateMessage string       `json:"update_message,omitempty"`
	Tasks         []TaskDetail `json:"tasks"`
}

// TaskDetail is one task of a function, current or recent.
type TaskDetail struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"` // function.slot.id, as Docker names it
	Slot         int       `json:"slot"`
	Node         string    `json:"node"`
	State        string    `json:"state"`
	DesiredState string    `json:"desired_state"`
	Since        time.Time `json:"since"`
	Endpoint     string    `json:"endpoint,omitempty"`
	Image        string    `json:"image"`
	Message      string    `json:"message,omitempty"`
	Error        string    `json:"error,omitempty"`
}

// Describe details a function: labels, policies, limits, image, and its tasks
// (current ones and the recent history Swarm keeps), by slot, newest first.
func (s *Swarm) Describe(ctx context.Context, name string) (Detail, error) {
	fail := func(err error) (Detail, error) { return Detail{}, fmt.Errorf("describe %s: %w", name, err) }
	svc, err := s.inspectFunction(ctx, name)
	if err != nil {
		return fail(err)
	}
	tasks, err := s.tasks(ctx, svc.ID, false)
	if err != nil {
		return fail(err)
	}
	d := Detail{
		Name:      name,
		ServiceID: svc.ID,
		Labels:    svc.Spec.Labels,
		Scale:     scalePolicy(svc.Spec.Labels),
		Async:     asyncPolicy(svc.Spec.Labels),
		Timeout:   svc.Spec.Labels[contract.LabelTimeout],
		Image:     serviceImage(svc),
		Desired:   replicasOf(svc.Spec),
		CreatedAt: svc.CreatedAt,
		UpdatedAt: svc.UpdatedAt,
		Tasks:     []TaskDetail{},
	}
	if v, ok := svc.Spec.Labels[contract.LabelRateLimit]; ok {
		if r, err := contract.ParseRateLimit(v); err == nil {
			d.RateLimit = &r
		}
	}
	if r := svc.Spec.TaskTemplate.Resources; r != nil && r.Limits != nil {
		d.Limits = ResourceLimits{CPUs: float64(r.Limits.NanoCPUs) / 1e9, MemoryBytes: r.Limits.MemoryBytes, Pids: r.Limits.Pids}
	}
	if u := svc.UpdateStatus; u != nil {
		d.UpdateState, d.UpdateMessage = string(u.State), u.Message
	}
	if d.ImageSize, err = s.newSizeCache().size(ctx, d.Image); err != nil {
		return fail(err)
	}
	nodes := s.newNodeCache()
	for _, t := range tasks {
		td := TaskDetail{
			ID:           t.ID,
			Name:         fmt.Sprintf("%s.%d.%s", name, t.Slot, t.ID),
			Slot:         t.Slot,
			State:        string(t.Status.State),
			DesiredState: string(t.DesiredState),
			Since:        t.Status.Timestamp,
			Message:      t.Status.Message,
			Error:        t.Status.Err,
		}
		if cs := t.Spec.ContainerSpec; cs != nil {
			td.Image = cs.Image
		}
		if t.NodeID != "" {
			n, err := nodes.node(ctx, t.NodeID)
			if err != nil {
				return fail(err)
			}
			td.Node = n.hostname
		}
		if catalog.Up(t) {
			d.Running++
			if ep, ok, err := nodes.endpoint(ctx, t); err != nil {
				return fail(err)
			} else if ok {
				td.Endpoint = ep.Addr
			}
		}
		d.Tasks = append(d.Tasks, td)
	}
	return d, nil
}

// scalePolicy reads the scale labels as the scaler does (scalelabels.Parse):
// a missing or malformed label reads as its default.
func scalePolicy(labels map[string]string) ScalePolicy {
	sp, _ := scalelabels.Parse(labels)
	p := ScalePolicy{Metric: sp.Metric, Target: sp.Target, Min: sp.Min, Max: sp.Max}
	if sp.Idle > 0 {
		p.Idle = sp.Idle.String()
	}
	return p
}

// asyncPolicy reads the pulse.async label as pulsed does
// (contract.ParseAsyncPolicy): absent, the default; malformed, nil.
func asyncPolicy(labels map[string]string) *AsyncPolicy {
	p, isDefault := contract.DefaultAsyncPolicy, true
	if v, ok := labels[contract.LabelAsync]; ok {
		var err error
		if p, err = contract.ParseAsyncPolicy(v); err != nil {
			return nil
		}
		isDefault = false
	}
	return &AsyncPolicy{Retries: p.Retries, MaxAge: shortDuration(p.MaxAge), Concurrency: p.Concurrency, Retry500: p.Retry500, Default: isDefault}
}
