// Package swarmscale is Pulse's one way to change a function's replica count
// on Swarm and to watch what Swarm makes of the change. The CLI (`pulse
// scale`, the wait after `pulse deploy`) and pulsed's scaler both go through
// it, so both read a function's service the same way (its pulse.function
// label must name it; with an instance set, its pulse.instance label must
// equal it), write it back at the version read without ever asking a
// registry, recognise a lost update race the same way (engine 20.10 answers
// 500 with swarmkit's "update out of sequence") and retry it the same way.
//
// Docker emits no task events (moby/moby#37403): Wait polls.
package swarmscale

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
)

// API is the part of the Docker API this package uses: a swarm manager's.
type API interface {
	ServiceInspectWithRaw(ctx context.Context, serviceID string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
}

var _ API = (*client.Client)(nil)

// Errors. Callers test them with errors.Is.
var (
	// ErrNotFound: no service of that name is this Pulse function (none,
	// one the engine matched by ID prefix, one without the function label
	// naming it, or one of another instance).
	ErrNotFound = errors.New("no such function")
	// ErrConflict: the service changed since it was read.
	ErrConflict = errors.New("the service changed since it was read")
	// ErrNotReplicated: the service runs in global mode.
	ErrNotReplicated = errors.New("the service is not replicated")
)

// Config sets what a Client checks, how long it waits for the engine and
// how often it retries.
type Config struct {
	// Instance, when set, is the only pulse.instance label value a service
	// may carry to count as a function: another instance's services, and
	// services deployed before instances existed, are ErrNotFound. Empty:
	// any instance (the CLI acts on every function of the swarm).
	Instance string
	// CallTimeout bounds one call to the engine.
	CallTimeout time.Duration
	// ConflictRetries is how many times Scale reads the service again and
	// retries after losing an update race.
	ConflictRetries int
	// Poll is Wait's period.
	Poll time.Duration
}

// Defaults.
const (
	// DefaultCallTimeout: a manager answers in milliseconds; seconds mean a
	// stuck engine.
	DefaultCallTimeout = 30 * time.Second
	// DefaultConflictRetries: a race is lost when something else (the
	// autoscaler, a deploy, a person) updated the service between the read
	// and the write; five in a row means something is wrong.
	DefaultConflictRetries = 5
	// DefaultPoll: a new replica is running within about this long of Swarm
	// starting it.
	DefaultPoll = 100 * time.Millisecond
)

// DefaultConfig returns the defaults, for any instance.
func DefaultConfig() Config {
	return Config{CallTimeout: DefaultCallTimeout, ConflictRetries: DefaultConflictRetries, Poll: DefaultPoll}
}

// Client reads, scales and watches function services.
type Client struct {
	api API
	cfg Config
}

// New returns a Client over api. Start cfg from DefaultConfig; durations
// that are not positive take the defaults.
func New(api API, cfg Config) *Client {
	d := DefaultConfig()
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = d.CallTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = d.Poll
	}
	cfg.ConflictRetries = max(cfg.ConflictRetries, 0)
	return &Client{api: api, cfg: cfg}
}

func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.CallTimeout)
}

// Inspect reads the service of the function name. The engine also matches
// IDs and ID prefixes: the service must be named name and carry
// pulse.function=name, and, with an instance configured, pulse.instance
// equal to it; otherwise the error wraps ErrNotFound and says which.
func (c *Client) Inspect(ctx context.Context, name string) (swarm.Service, error) {
	cctx, cancel := c.call(ctx)
	defer cancel()
	svc, _, err := c.api.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return swarm.Service{}, ErrNotFound
	}
	if err != nil {
		return swarm.Service{}, fmt.Errorf("inspect service %s: %w", name, err)
	}
	if svc.Spec.Name != name { // an ID or ID prefix matched
		return swarm.Service{}, ErrNotFound
	}
	if svc.Spec.Labels[contract.LabelFunction] != name {
		return swarm.Service{}, fmt.Errorf("%w: service %s is not a Pulse function (no %s=%s label)", ErrNotFound, name, contract.LabelFunction, name)
	}
	if want := c.cfg.Instance; want != "" {
		got, ok := svc.Spec.Labels[contract.LabelInstance]
		switch {
		case !ok:
			return swarm.Service{}, fmt.Errorf("%w: function %s has no %s label (deployed before instances existed): redeploy it to give it instance %q",
				ErrNotFound, name, contract.LabelInstance, want)
		case got != want:
			return swarm.Service{}, fmt.Errorf("%w: function %s belongs to Pulse instance %q (label %s), not to this one (%q)",
				ErrNotFound, name, got, contract.LabelInstance, want)
		}
	}
	return svc, nil
}

// Replicas is a service's replica count; ok is false for a service that is
// not replicated.
func Replicas(spec swarm.ServiceSpec) (n int, ok bool) {
	r := spec.Mode.Replicated
	if r == nil {
		return 0, false
	}
	if r.Replicas != nil {
		n = int(*r.Replicas)
	}
	return n, true
}

// SetReplicas writes svc's spec back with n replicas at the version svc was
// read at. Swarm refuses it when anything changed the service since: the
// error then wraps ErrConflict. The image is never resolved against a
// registry (there is none: DESIGN.md §7).
func (c *Client) SetReplicas(ctx context.Context, svc swarm.Service, n int) error {
	name := svc.Spec.Name
	if n < 0 {
		return fmt.Errorf("update service %s: %d replicas: want 0 or more", name, n)
	}
	if _, ok := Replicas(svc.Spec); !ok {
		return fmt.Errorf("update service %s: %w", name, ErrNotReplicated)
	}
	spec := svc.Spec
	r := uint64(n)
	spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &r}}
	cctx, cancel := c.call(ctx)
	defer cancel()
	_, err := c.api.ServiceUpdate(cctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{QueryRegistry: false})
	if IsOutOfSequence(err) {
		return fmt.Errorf("update service %s: %w (%v)", name, ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("update service %s: %w", name, err)
	}
	return nil
}

// IsOutOfSequence reports an update based on a stale service version.
// Engine 20.10 answers 500 with swarmkit's message, not 409, so the message
// is what tells.
func IsOutOfSequence(err error) bool {
	return err != nil && strings.Contains(err.Error(), "update out of sequence")
}

// Decide returns the replica count for the service as read, or an error
// that ends Scale (e.g. a count outside the function's limits).
type Decide func(svc swarm.Service) (int, error)

// Scale reads the function's service, asks decide for its replica count
// and writes it at the version read; when the service changed meanwhile it
// reads and decides again, up to ConflictRetries times. It returns the
// service as read before the successful write and the count written.
func (c *Client) Scale(ctx context.Context, name string, decide Decide) (swarm.Service, int, error) {
	for attempt := 0; ; attempt++ {
		svc, err := c.Inspect(ctx, name)
		if err != nil {
			return swarm.Service{}, 0, err
		}
		if _, ok := Replicas(svc.Spec); !ok {
			return swarm.Service{}, 0, ErrNotReplicated
		}
		n, err := decide(svc)
		if err != nil {
			return swarm.Service{}, 0, err
		}
		err = c.SetReplicas(ctx, svc, n)
		if err == nil {
			return svc, n, nil
		}
		if !errors.Is(err, ErrConflict) || attempt >= c.cfg.ConflictRetries {
			return swarm.Service{}, 0, err
		}
	}
}

// Tasks lists a service's tasks: current ones and the history Swarm keeps.
func (c *Client) Tasks(ctx context.Context, serviceID string) ([]swarm.Task, error) {
	cctx, cancel := c.call(ctx)
	defer cancel()
	tasks, err := c.api.TaskList(cctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", serviceID))})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return tasks, nil
}

// Check judges one reading of a function's service and tasks: pending says
// what is not there yet ("" when the wait is over), failed ends the wait
// with that error.
type Check func(ctx context.Context, svc swarm.Service, tasks []swarm.Task) (pending string, failed error)

// Wait polls the function's service and tasks every Poll and hands each
// reading to check, until check says it is done or failed, or ctx ends:
// give ctx a deadline. On the deadline the error says what was still
// pending and wraps ctx's error.
func (c *Client) Wait(ctx context.Context, name string, check Check) error {
	tick := time.NewTicker(c.cfg.Poll)
	defer tick.Stop()
	pending := ""
	for {
		p, err := c.once(ctx, name, check)
		if err != nil {
			if ctx.Err() != nil && pending != "" { // the deadline hit a call
				return fmt.Errorf("%s: %w", pending, ctx.Err())
			}
			return err
		}
		if p == "" {
			return nil
		}
		pending = p
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", pending, ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Client) once(ctx context.Context, name string, check Check) (string, error) {
	svc, err := c.Inspect(ctx, name)
	if err != nil {
		return "", err
	}
	tasks, err := c.Tasks(ctx, svc.ID)
	if err != nil {
		return "", err
	}
	return check(ctx, svc, tasks)
}
