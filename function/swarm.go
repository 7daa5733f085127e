package function

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
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
// a single-node swarm. (Streaming to remote nodes over SSH implements the
// same interface.)
type LocalDistributor struct {
	API ImageLoader
}

var _ ImageDistributor = LocalDistributor{}

// Ensure loads img into the engine unless the engine has it already.
func (d LocalDistributor) Ensure(ctx context.Context, img Image) error {
	_, err := d.API.ImageInspect(ctx, img.ID)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("ensure image %s: inspect: %w", img.ID, err)
	}
	if len(img.Archive) == 0 {
		return fmt.Errorf("ensure image %s: the engine does not have it and there is no archive to load; run pulse build", img.ID)
	}
	return LoadImage(ctx, d.API, img)
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

// Labels Swarm puts on the containers of a service's tasks.
const labelSwarmServiceID = "com.docker.swarm.service.id"

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
// routes every new replica (cat is usually a CatalogClient of pulsed's
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

// DeployResult says what Deploy did.
type DeployResult struct {
	Created   bool     `json:"created"` // false: an existing service was updated
	ServiceID string   `json:"service_id"`
	Replicas  int      `json:"replicas"` // the desired replicas after the deploy
	Warnings  []string `json:"warnings,omitempty"`
}

// Deploy makes spec run from img: it finds the instance's replica
// credential (pulsed's secret; none is ErrNoReplicaAuth), makes sure the
// nodes have the image, resolves the spec's secrets, keeps opts.GatewayCA
// in a secret of the instance (created when missing; see gatewayca.go),
// and creates the
// function's service or updates it (a start-first rolling update, which a
// new credential triggers too). An update keeps the current replica
// count, clamped to the spec's [min, max]. The engine is never asked to query
// a registry.
func (s *Swarm) Deploy(ctx context.Context, spec Spec, img Image, opts DeployOptions) (DeployResult, error) {
	fail := func(err error) (DeployResult, error) {
		return DeployResult{}, fmt.Errorf("deploy %s: %w", spec.Name, err)
	}
	if spec.Name == "" {
		return fail(errors.New("the function has no name"))
	}
	if err := imageRef(img); err != nil {
		return fail(err)
	}
	if opts.Instance != "" && !contract.ValidInstance(opts.Instance) {
		return fail(fmt.Errorf("instance %q: want %s", opts.Instance, contract.InstanceSyntax))
	}
	// The credential first: without it nothing else is worth doing.
	var err error
	if opts.ReplicaAuth, err = s.replicaAuthSecret(ctx, cmp.Or(opts.Instance, contract.DefaultInstance)); err != nil {
		return fail(err)
	}
	if err := checkGatewayCA(spec, opts); err != nil {
		return fail(err)
	}
	if err := s.dist.Ensure(ctx, img); err != nil {
		return fail(err)
	}
	ids, err := s.secretIDs(ctx, spec.Secrets)
	if err != nil {
		return fail(err)
	}
	opts.SecretIDs = ids
	opts.GatewayCASecret = SecretRef{}
	if len(opts.GatewayCA) > 0 {
		if opts.GatewayCASecret, err = s.gatewayCASecret(ctx, cmp.Or(opts.Instance, contract.DefaultInstance), opts.GatewayCA); err != nil {
			return fail(err)
		}
	}
	want := ServiceSpec(spec, img, opts)

	for attempt := 0; ; attempt++ {
		retry := attempt < s.conflictRetries
		svc, err := s.inspectService(ctx, spec.Name)
		if errors.Is(err, ErrNotFound) {
			cctx, cancel := s.call(ctx)
			resp, err := s.api.ServiceCreate(cctx, want, swarm.ServiceCreateOptions{QueryRegistry: false})
			cancel()
			if err == nil {
				s.log.Info("service created", "function", spec.Name, "service", resp.ID, "image", img.ID)
				return DeployResult{Created: true, ServiceID: resp.ID, Replicas: replicasOf(want), Warnings: resp.Warnings}, nil
			}
			if isNameConflict(err) && retry { // created meanwhile: update it
				continue
			}
			return fail(fmt.Errorf("create service: %w", err))
		}
		if err != nil {
			return fail(err)
		}
		if got := svc.Spec.Labels[contract.LabelFunction]; got != spec.Name {
			return fail(fmt.Errorf("service %s exists but is not this Pulse function (label %s=%q): remove it or rename the function", svc.Spec.Name, contract.LabelFunction, got))
		}
		// A function of another install is not taken over; one deployed
		// before instances existed (no label) is adopted.
		if got, ok := svc.Spec.Labels[contract.LabelInstance]; ok && got != want.Labels[contract.LabelInstance] {
			return fail(fmt.Errorf("function %s belongs to Pulse instance %q (label %s), not to %q (the CLI's instance key): remove it there first or use that instance",
				spec.Name, got, contract.LabelInstance, want.Labels[contract.LabelInstance]))
		}
		upd := want
		n := clampReplicas(replicasOf(svc.Spec), spec.Scale.Min, spec.Scale.Max)
		r := uint64(n)
		upd.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &r}}
		cctx, cancel := s.call(ctx)
		resp, err := s.api.ServiceUpdate(cctx, svc.ID, svc.Version, upd, swarm.ServiceUpdateOptions{QueryRegistry: false})
		cancel()
		if err == nil {
			s.log.Info("service updated", "function", spec.Name, "service", svc.ID, "image", img.ID, "replicas", n)
			return DeployResult{ServiceID: svc.ID, Replicas: n, Warnings: resp.Warnings}, nil
		}
		if swarmscale.IsOutOfSequence(err) && retry {
			s.log.Debug("service changed meanwhile, retrying", "function", spec.Name, "attempt", attempt+1)
			continue
		}
		return fail(fmt.Errorf("update service %s: %w", svc.ID, err))
	}
}

// secretIDs resolves Docker secret names to IDs; every missing one is named.
func (s *Swarm) secretIDs(ctx context.Context, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	secrets, err := s.api.SecretList(cctx, swarm.SecretListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	byName := make(map[string]string, len(secrets))
	for _, sec := range secrets {
		byName[sec.Spec.Name] = sec.ID
	}
	ids := make(map[string]string, len(names))
	var missing []string
	for _, n := range names {
		id, ok := byName[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		ids[n] = id
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("secret %s does not exist: create it first (docker secret create NAME FILE)", strings.Join(missing, ", "))
	}
	return ids, nil
}

// ErrNoReplicaAuth means the instance has no replica credential secret:
// its pulsed has not run yet.
var ErrNoReplicaAuth = errors.New("no replica credential")

// replicaAuthSecret finds the instance's replica credential secret, which
// pulsed creates (labels contract.LabelInstance and contract.LabelRole):
// the newest when there are several (pulsed replaced the credential and has
// not removed the old one yet).
func (s *Swarm) replicaAuthSecret(ctx context.Context, instance string) (SecretRef, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	secrets, err := s.api.SecretList(cctx, swarm.SecretListOptions{Filters: filters.NewArgs(
		filters.Arg("label", contract.LabelInstance+"="+instance),
		filters.Arg("label", contract.LabelRole+"="+contract.RoleReplicaAuth),
	)})
	if err != nil {
		return SecretRef{}, fmt.Errorf("list secrets: %w", err)
	}
	var newest *swarm.Secret
	for i, sec := range secrets {
		// The engine filters; check again, so a fake or an older engine
		// that ignores a filter cannot hand over another secret.
		if sec.Spec.Labels[contract.LabelInstance] != instance || sec.Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
			continue
		}
		if newest == nil || sec.CreatedAt.After(newest.CreatedAt) ||
			sec.CreatedAt.Equal(newest.CreatedAt) && sec.ID > newest.ID {
			newest = &secrets[i]
		}
	}
	if newest == nil {
		return SecretRef{}, fmt.Errorf("%w for instance %q: start pulsed first (make up)", ErrNoReplicaAuth, instance)
	}
	return SecretRef{ID: newest.ID, Name: newest.Spec.Name}, nil
}

// inspectService reads the service named name. It wraps ErrNotFound when
// there is none, including when the engine matched name as an ID prefix.
func (s *Swarm) inspectService(ctx context.Context, name string) (swarm.Service, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	svc, _, err := s.api.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return swarm.Service{}, ErrNotFound
	}
	if err != nil {
		return swarm.Service{}, fmt.Errorf("inspect service: %w", err)
	}
	if svc.Spec.Name != name {
		return swarm.Service{}, ErrNotFound
	}
	return svc, nil
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

// clampReplicas keeps n within [lo, hi]; hi ≤ 0 means no upper bound.
func clampReplicas(n, lo, hi int) int {
	if hi > 0 && n > hi {
		n = hi
	}
	return max(n, lo, 0)
}

// isNameConflict reports a create that lost a race to another create.
func isNameConflict(err error) bool {
	return cerrdefs.IsConflict(err) || (err != nil && strings.Contains(err.Error(), "name conflicts with an existing object"))
}

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
		if !isUp(t) {
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

// isUp is a task Swarm wants running and reports running. A task with a
// health check turns running only once healthy; one being replaced or
// scaled away has its desired state changed first and is out at once.
func isUp(t swarm.Task) bool {
	return t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning
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

// Scale sets the function's replica count. Unless force, n must lie within
// the service's pulse.scale.min and pulse.scale.max labels. A lost update race
// is re-read and retried (swarmscale, as pulsed's scaler does).
func (s *Swarm) Scale(ctx context.Context, name string, n int, force bool) error {
	fail := func(err error) error { return fmt.Errorf("scale %s to %d: %w", name, n, err) }
	if n < 0 {
		return fail(errors.New("replicas must be 0 or more"))
	}
	_, _, err := s.scaler().Scale(ctx, name, func(svc swarm.Service) (int, error) {
		if force {
			return n, nil
		}
		return n, checkScaleLimits(n, svc.Spec.Labels)
	})
	if err != nil {
		return fail(err)
	}
	s.log.Info("service scaled", "function", name, "replicas", n, "force", force)
	return nil
}

// checkScaleLimits checks n against the policy the scaler enforces
// (scalelabels.Parse): a missing or malformed label reads as its default,
// and every function has a max of at least 1.
func checkScaleLimits(n int, labels map[string]string) error {
	p, _ := scalelabels.Parse(labels)
	if n < p.Min {
		return fmt.Errorf("%w: min is %d (label %s); use --force to override", ErrScaleLimit, p.Min, contract.LabelScaleMin)
	}
	if n > p.Max {
		return fmt.Errorf("%w: max is %d (label %s); use --force to override", ErrScaleLimit, p.Max, contract.LabelScaleMax)
	}
	return nil
}

// Remove removes the function's service, waits until its containers are
// gone, then removes the function's images (label pulse.function=name) that
// no container uses. A function with neither a service nor an image is
// ErrNotFound. ctx bounds the wait; without a deadline it is the service's
// stop grace period plus a margin.
func (s *Swarm) Remove(ctx context.Context, name string) error {
	fail := func(err error) error { return fmt.Errorf("remove %s: %w", name, err) }
	svc, err := s.inspectFunction(ctx, name)
	found := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fail(err)
	}
	if found {
		cctx, cancel := s.call(ctx)
		err := s.api.ServiceRemove(cctx, svc.ID)
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fail(fmt.Errorf("remove service %s: %w", svc.ID, err))
		}
		if err := s.waitGone(ctx, svc); err != nil {
			return fail(err)
		}
		s.log.Info("service removed", "function", name, "service", svc.ID)
	}
	n, err := s.removeImages(ctx, name)
	if err != nil {
		return fail(err)
	}
	if !found && n == 0 {
		return fail(ErrNotFound)
	}
	return nil
}

// waitGone polls until no container of the service is left.
func (s *Swarm) waitGone(ctx context.Context, svc swarm.Service) error {
	if _, ok := ctx.Deadline(); !ok {
		grace := defaultDrainGrace + defaultTimeout + writeSlack
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil && cs.StopGracePeriod != nil {
			grace = *cs.StopGracePeriod
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, grace+s.removeSlack)
		defer cancel()
	}
	f := filters.NewArgs(filters.Arg("label", labelSwarmServiceID+"="+svc.ID))
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		cctx, cancel := s.call(ctx)
		cs, err := s.api.ContainerList(cctx, container.ListOptions{All: true, Filters: f})
		cancel()
		if err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
		if len(cs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d containers to stop: %w", len(cs), ctx.Err())
		case <-tick.C:
		}
	}
}

// removeImages removes the function's images that no container uses and
// returns how many images the function had.
func (s *Swarm) removeImages(ctx context.Context, name string) (int, error) {
	cctx, cancel := s.call(ctx)
	imgs, err := s.api.ImageList(cctx, image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction+"="+name)),
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		cctx, cancel := s.call(ctx)
		users, err := s.api.ContainerList(cctx, container.ListOptions{
			All: true, Filters: filters.NewArgs(filters.Arg("ancestor", img.ID)),
		})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("list containers of image %s: %w", img.ID, err)
		}
		if len(users) > 0 {
			s.log.Info("image kept: a container uses it", "function", name, "image", img.ID, "container", users[0].ID)
			continue
		}
		cctx, cancel = s.call(ctx)
		// Force: the image may carry several tags; no container uses it.
		_, err = s.api.ImageRemove(cctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			return 0, fmt.Errorf("remove image %s: %w", img.ID, err)
		}
		s.log.Info("image removed", "function", name, "image", img.ID)
	}
	return len(imgs), nil
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
			if !isUp(t) {
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

// ResourceLimits are a service's limits; zero means none.
type ResourceLimits struct {
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
}

// Detail describes one function.
type Detail struct {
	Name          string            `json:"name"`
	ServiceID     string            `json:"service_id"`
	Labels        map[string]string `json:"labels"`
	Scale         ScalePolicy       `json:"scale"`
	Limits        ResourceLimits    `json:"limits"`
	Timeout       string            `json:"timeout,omitempty"`
	Image         string            `json:"image"`
	ImageSize     int64             `json:"image_size"`
	Running       int               `json:"running"`
	Desired       int               `json:"desired"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
	UpdateState   string            `json:"update_state,omitempty"` // of the last rolling update
	UpdateMessage string            `json:"update_message,omitempty"`
	Tasks         []TaskDetail      `json:"tasks"`
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

// Describe details a function: labels, policy, limits, image, and its tasks
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
		Timeout:   svc.Spec.Labels[contract.LabelTimeout],
		Image:     serviceImage(svc),
		Desired:   replicasOf(svc.Spec),
		CreatedAt: svc.CreatedAt,
		UpdatedAt: svc.UpdatedAt,
		Tasks:     []TaskDetail{},
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
		if isUp(t) {
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

// Logs writes the function's logs (all its tasks, stdout and stderr) to w,
// each line prefixed by its task (name.slot.id@node, as `docker service
// logs` does) and stamped with the engine's timestamp. since is a duration
// (10m) or a time (RFC 3339 or Unix seconds), empty for all; follow keeps
// streaming until ctx ends, which is then no error.
func (s *Swarm) Logs(ctx context.Context, name string, follow bool, since string, w io.Writer) error {
	fail := func(err error) error { return fmt.Errorf("logs %s: %w", name, err) }
	svc, err := s.inspectFunction(ctx, name)
	if err != nil {
		return fail(err)
	}
	p := &logPrefixer{s: s, ctx: ctx, name: name, serviceID: svc.ID, nodes: s.newNodeCache(), w: w, tasks: map[string]int{}}
	if err := p.refresh(); err != nil {
		return fail(err)
	}
	rc, err := s.api.ServiceLogs(ctx, svc.ID, container.LogsOptions{
		ShowStdout: true,
		ShowStderr: true,
		Timestamps: true,
		Details:    true, // the task and node of each line
		Follow:     follow,
		Since:      since,
	})
	if err != nil {
		return fail(fmt.Errorf("service logs: %w", err))
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(p, p, rc)
	if err != nil && !(follow && ctx.Err() != nil) {
		return fail(fmt.Errorf("read logs: %w", err))
	}
	return nil
}

// logPrefixer rewrites the engine's log lines, "<timestamp> <details>
// <line>", as "<task>@<node> | <timestamp> <line>". stdcopy writes one
// message per Write.
type logPrefixer struct {
	s         *Swarm
	ctx       context.Context
	name      string
	serviceID string
	nodes     *nodeCache
	w         io.Writer
	tasks     map[string]int // task ID → slot
	mu        sync.Mutex
}

func (p *logPrefixer) refresh() error {
	tasks, err := p.s.tasks(p.ctx, p.serviceID, false)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		p.tasks[t.ID] = t.Slot
	}
	return nil
}

func (p *logPrefixer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts, rest, _ := bytes.Cut(b, []byte(" "))
	details, line, ok := bytes.Cut(rest, []byte(" "))
	if !ok || !bytes.Contains(details, []byte("=")) { // no details
		details, line = nil, rest
	}
	var taskID, nodeID string
	for _, kv := range strings.Split(string(details), ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "com.docker.swarm.task.id":
			taskID = v
		case "com.docker.swarm.node.id":
			nodeID = v
		}
	}
	prefix := p.prefix(taskID, nodeID)
	if !bytes.HasSuffix(line, []byte("\n")) {
		line = append(slices.Clip(line), '\n')
	}
	if _, err := fmt.Fprintf(p.w, "%s | %s %s", prefix, ts, line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// prefix names a task as Docker does: function.slot.taskid@node.
func (p *logPrefixer) prefix(taskID, nodeID string) string {
	if taskID == "" {
		return p.name
	}
	slot, ok := p.tasks[taskID]
	if !ok { // a task started since: read the task list again
		if err := p.refresh(); err != nil {
			p.s.log.Debug("logs: refresh tasks", "err", err)
		}
		slot = p.tasks[taskID]
		p.tasks[taskID] = slot // not listed any more: do not ask again
	}
	short := taskID
	if len(short) > 12 {
		short = short[:12]
	}
	node := nodeID
	if n, err := p.nodes.node(p.ctx, nodeID); err == nil {
		node = n.hostname
	}
	return fmt.Sprintf("%s.%d.%s@%s", p.name, slot, short, node)
}
