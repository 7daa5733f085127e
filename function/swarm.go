package function

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/internal/swarmaddr"
	"github.com/pulsefaas/pulse/internal/swarmscale"
)

// SwarmClient is the part of the Docker API that Swarm uses.
type SwarmClient interface {
	ServiceCreate(ctx context.Context, spec swarm.ServiceSpec, opts swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	ServiceInspectWithRaw(ctx context.Context, serviceID string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error)
	ServiceRemove(ctx context.Context, serviceID string) error
	ServiceLogs(ctx context.Context, serviceID string, opts container.LogsOptions) (io.ReadCloser, error)
	TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error)
	NodeInspectWithRaw(ctx context.Context, nodeID string) (swarm.Node, []byte, error)
	SecretList(ctx context.Context, opts swarm.SecretListOptions) ([]swarm.Secret, error)
	SecretCreate(ctx context.Context, spec swarm.SecretSpec) (swarm.SecretCreateResponse, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
	ImageList(ctx context.Context, opts image.ListOptions) ([]image.Summary, error)
	ImageRemove(ctx context.Context, imageID string, opts image.RemoveOptions) ([]image.DeleteResponse, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
}

var _ SwarmClient = (*client.Client)(nil)

// ImageDistributor makes sure every swarm node that may run a function holds
// its image, since no node can pull it from anywhere.
type ImageDistributor interface {
	Ensure(ctx context.Context, img Image) error
}

// LocalDistributor distributes an image to the local engine only: enough for
// a single-node swarm. ClusterDistributor (distribute.go) puts it on every
// node.
type LocalDistributor struct {
	API ImageLoader
}

var _ ImageDistributor = LocalDistributor{}

// Ensure loads img into the engine unless the engine has it already.
func (d LocalDistributor) Ensure(ctx context.Context, img Image) error {
	if _, err := ensureOn(ctx, d.API, img); err != nil {
		return fmt.Errorf("ensure image %s: %w", img.ID, err)
	}
	return nil
}

// Errors of Swarm's operations.
var (
	// ErrNotFound means no Pulse function of that name is deployed. It is
	// swarmscale's, which pulsed's scaler shares.
	ErrNotFound = swarmscale.ErrNotFound
	// ErrScaleLimit means a replica count outside the function's
	// pulse.scale.min and pulse.scale.max.
	ErrScaleLimit = errors.New("outside the function's scale limits")
)

// Swarm deploys, scales, lists and removes functions as Swarm services, and
// finds their replicas. Docker emits no task events (moby/moby#37403), so it
// polls the task list wherever it waits.
type Swarm struct {
	api  SwarmClient
	dist ImageDistributor
	log  *slog.Logger
	// catalog is pulsed's replica catalog, which WaitReady asks whether
	// the gateway routes the replicas; nil: Swarm's part only.
	catalog CatalogSource

	// poll is the task-list period while waiting for a change.
	poll time.Duration
	// callTimeout bounds one call to the engine.
	callTimeout time.Duration
	// conflictRetries is how many times an update that lost a race
	// (update out of sequence) is re-read and retried.
	conflictRetries int
	// removeSlack is added to a service's stop grace period to bound the
	// wait for its containers to be gone.
	removeSlack time.Duration
}

// Defaults of a Swarm.
const (
	defaultPoll            = 100 * time.Millisecond
	defaultCallTimeout     = 30 * time.Second
	defaultConflictRetries = 5
	defaultRemoveSlack     = 30 * time.Second
)

// NewSwarm returns a Swarm that talks to api (a swarm manager) and places
// images with dist. log may be nil.
func NewSwarm(api SwarmClient, dist ImageDistributor, log *slog.Logger) *Swarm {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Swarm{
		api:             api,
		dist:            dist,
		log:             log.With("component", "swarm"),
		poll:            defaultPoll,
		callTimeout:     defaultCallTimeout,
		conflictRetries: defaultConflictRetries,
		removeSlack:     defaultRemoveSlack,
	}
}

// SetCatalog makes WaitReady wait, beyond Swarm, until pulsed's gateway
// routes every new replica (cat is usually the CLI's client of pulsed's
// API). Without one, WaitReady judges from Swarm alone: for callers that
// talk to replicas directly.
func (s *Swarm) SetCatalog(cat CatalogSource) { s.catalog = cat }

// scaler is the one path that reads, scales and watches a function's
// service (shared with pulsed's scaler), with this Swarm's settings and
// no instance restriction: the CLI acts on every function of the swarm.
func (s *Swarm) scaler() *swarmscale.Client {
	return swarmscale.New(s.api, swarmscale.Config{CallTimeout: s.callTimeout, ConflictRetries: s.conflictRetries, Poll: s.poll})
}

// call bounds one call to the engine.
func (s *Swarm) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.callTimeout)
}

// inspectFunction reads the service of the function name, which must carry
// Pulse's function label.
func (s *Swarm) inspectFunction(ctx context.Context, name string) (swarm.Service, error) {
	return s.scaler().Inspect(ctx, name)
}

// replicasOf is a replicated service's replica count (0 otherwise).
func replicasOf(spec swarm.ServiceSpec) int {
	if r := spec.Mode.Replicated; r != nil && r.Replicas != nil {
		return int(*r.Replicas)
	}
	return 0
}

// isNameConflict reports a create that lost a race to another create.
func isNameConflict(err error) bool {
	return cerrdefs.IsConflict(err) || (err != nil && strings.Contains(err.Error(), "name conflicts with an existing object"))
}

// tasks lists a service's tasks, by slot then newest first; onlyRunning
// keeps those whose desired state is running.
func (s *Swarm) tasks(ctx context.Context, serviceID string, onlyRunning bool) ([]swarm.Task, error) {
	f := filters.NewArgs(filters.Arg("service", serviceID))
	if onlyRunning {
		f.Add("desired-state", string(swarm.TaskStateRunning))
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	tasks, err := s.api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	sortTasks(tasks)
	return tasks, nil
}

func sortTasks(tasks []swarm.Task) {
	slices.SortFunc(tasks, func(a, b swarm.Task) int {
		if a.Slot != b.Slot {
			return a.Slot - b.Slot
		}
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// nodeCache resolves node IDs to hostnames and addresses, once per ID.
type nodeCache struct {
	s     *Swarm
	nodes map[string]nodeInfo
}

type nodeInfo struct {
	hostname string
	addr     string // the address to reach published ports at
}

func (s *Swarm) newNodeCache() *nodeCache {
	return &nodeCache{s: s, nodes: map[string]nodeInfo{}}
}

func (c *nodeCache) node(ctx context.Context, id string) (nodeInfo, error) {
	if n, ok := c.nodes[id]; ok {
		return n, nil
	}
	cctx, cancel := c.s.call(ctx)
	defer cancel()
	node, _, err := c.s.api.NodeInspectWithRaw(cctx, id)
	if err != nil {
		return nodeInfo{}, fmt.Errorf("inspect node %s: %w", id, err)
	}
	n := nodeInfo{hostname: node.Description.Hostname, addr: swarmaddr.NodeAddr(node)}
	if n.hostname == "" {
		n.hostname = id
	}
	c.nodes[id] = n
	return n, nil
}

// endpoint is t's endpoint; ok is false when it has no published port yet.
func (c *nodeCache) endpoint(ctx context.Context, t swarm.Task) (Endpoint, bool, error) {
	if swarmaddr.PublishedPort(t) == 0 {
		return Endpoint{}, false, nil
	}
	n, err := c.node(ctx, t.NodeID)
	if err != nil {
		return Endpoint{}, false, err
	}
	addr, _ := swarmaddr.Addr(n.addr, t)
	return Endpoint{
		TaskID: t.ID,
		Slot:   t.Slot,
		Node:   n.hostname,
		Addr:   addr,
		State:  string(t.Status.State),
	}, true, nil
}
