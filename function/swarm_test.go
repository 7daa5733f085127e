package function

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/swarmscale"
)

// fakeSwarmAPI answers Swarm's calls from its fields and records the
// mutations. It reaches the error paths; swarm_docker_test.go covers the
// real engine. A call it has no answer for fails the test.
type fakeSwarmAPI struct {
	t *testing.T

	services   map[string]swarm.Service // by the name or ID asked for
	inspectErr error
	// version is added to a service's version at every inspect, as if
	// someone else updated it in between.
	bumpVersion bool
	inspects    int

	createErrs []error // returned by successive ServiceCreate calls
	// createdMeanwhile appear when a create fails: someone else's create
	// won the race.
	createdMeanwhile []swarm.Service
	updateErrs       []error // returned by successive ServiceUpdate calls
	removeErr        error
	tasks            []swarm.Task
	taskErr          error
	nodes            map[string]swarm.Node
	secrets          []swarm.Secret
	// noReplicaAuth leaves out the replica credential secrets that
	// SecretList otherwise adds for instances "default" and "lab".
	noReplicaAuth bool
	secretFilters []filters.Args
	// secretCreated records SecretCreate's specs; each joins secrets.
	secretCreated []swarm.SecretSpec
	secretErr     error // returned by SecretCreate
	images        []image.Summary
	containers    []container.Summary
	logs          []byte

	created      []swarm.ServiceSpec
	updated      []fakeUpdate
	updatedSpecs []swarm.ServiceSpec // the specs of updated
	removed      []string
}

type fakeUpdate struct {
	ID       string
	Version  uint64
	Replicas uint64
	Image    string
}

func (f *fakeSwarmAPI) ServiceCreate(_ context.Context, spec swarm.ServiceSpec, opts swarm.ServiceCreateOptions) (swarm.ServiceCreateResponse, error) {
	if opts.QueryRegistry {
		f.t.Error("ServiceCreate asked to query a registry")
	}
	f.created = append(f.created, spec)
	if len(f.createErrs) > 0 {
		err := f.createErrs[0]
		f.createErrs = f.createErrs[1:]
		if err != nil {
			if f.services == nil {
				f.services = map[string]swarm.Service{}
			}
			for _, svc := range f.createdMeanwhile {
				f.services[svc.Spec.Name] = svc
			}
			return swarm.ServiceCreateResponse{}, err
		}
	}
	return swarm.ServiceCreateResponse{ID: "new-id", Warnings: []string{"w"}}, nil
}

func (f *fakeSwarmAPI) ServiceUpdate(_ context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	if opts.QueryRegistry {
		f.t.Error("ServiceUpdate asked to query a registry")
	}
	u := fakeUpdate{ID: id, Version: v.Index, Replicas: uint64(replicasOf(spec))}
	if cs := spec.TaskTemplate.ContainerSpec; cs != nil {
		u.Image = cs.Image
	}
	f.updated = append(f.updated, u)
	f.updatedSpecs = append(f.updatedSpecs, spec)
	if len(f.updateErrs) > 0 {
		err := f.updateErrs[0]
		f.updateErrs = f.updateErrs[1:]
		if err != nil {
			return swarm.ServiceUpdateResponse{}, err
		}
	}
	return swarm.ServiceUpdateResponse{}, nil
}

func (f *fakeSwarmAPI) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	f.inspects++
	if f.inspectErr != nil {
		return swarm.Service{}, nil, f.inspectErr
	}
	svc, ok := f.services[id]
	if !ok {
		return swarm.Service{}, nil, fmt.Errorf("service %s not found: %w", id, cerrdefs.ErrNotFound)
	}
	if f.bumpVersion {
		svc.Version.Index += uint64(f.inspects)
	}
	return svc, nil, nil
}

func (f *fakeSwarmAPI) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	var out []swarm.Service
	for k, svc := range f.services {
		if k == svc.ID {
			out = append(out, svc)
		}
	}
	return out, nil
}

func (f *fakeSwarmAPI) ServiceRemove(_ context.Context, id string) error {
	f.removed = append(f.removed, "service "+id)
	return f.removeErr
}

func (f *fakeSwarmAPI) ServiceLogs(context.Context, string, container.LogsOptions) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(f.logs)), nil
}

func (f *fakeSwarmAPI) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	return append([]swarm.Task(nil), f.tasks...), f.taskErr
}

func (f *fakeSwarmAPI) NodeInspectWithRaw(_ context.Context, id string) (swarm.Node, []byte, error) {
	n, ok := f.nodes[id]
	if !ok {
		return swarm.Node{}, nil, fmt.Errorf("node %s: %w", id, cerrdefs.ErrNotFound)
	}
	return n, nil, nil
}

func (f *fakeSwarmAPI) SecretList(_ context.Context, opts swarm.SecretListOptions) ([]swarm.Secret, error) {
	f.secretFilters = append(f.secretFilters, opts.Filters)
	if f.noReplicaAuth {
		return f.secrets, nil
	}
	out := slices.Clone(f.secrets)
	for _, inst := range []string{contract.DefaultInstance, "lab"} {
		out = append(out, replicaAuthSecret("ra-"+inst, inst, time.Unix(1, 0)))
	}
	return out, nil
}

func (f *fakeSwarmAPI) SecretCreate(_ context.Context, spec swarm.SecretSpec) (swarm.SecretCreateResponse, error) {
	if f.secretErr != nil {
		return swarm.SecretCreateResponse{}, f.secretErr
	}
	f.secretCreated = append(f.secretCreated, spec)
	id := fmt.Sprintf("sec-%d", len(f.secretCreated))
	f.secrets = append(f.secrets, swarm.Secret{ID: id, Spec: spec})
	return swarm.SecretCreateResponse{ID: id}, nil
}

// replicaAuthSecret is a replica credential secret as pulsed creates it.
func replicaAuthSecret(id, instance string, created time.Time) swarm.Secret {
	return swarm.Secret{ID: id, Meta: swarm.Meta{CreatedAt: created}, Spec: swarm.SecretSpec{Annotations: swarm.Annotations{
		Name:   contract.ReplicaAuthSecretName(instance, id),
		Labels: map[string]string{contract.LabelInstance: instance, contract.LabelRole: contract.RoleReplicaAuth},
	}}}
}

func (f *fakeSwarmAPI) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return f.containers, nil
}

func (f *fakeSwarmAPI) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return f.images, nil
}

func (f *fakeSwarmAPI) ImageRemove(_ context.Context, id string, _ image.RemoveOptions) ([]image.DeleteResponse, error) {
	f.removed = append(f.removed, "image "+id)
	return nil, nil
}

func (f *fakeSwarmAPI) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{ID: ref, Size: 1234}, nil
}

// fakeDistributor records the images it was asked to place.
type fakeDistributor struct {
	err    error
	placed []string
}

func (d *fakeDistributor) Ensure(_ context.Context, img Image) error {
	d.placed = append(d.placed, img.ID)
	return d.err
}

var (
	errEngine   = errors.New("engine exploded")
	errSequence = errors.New("Error response from daemon: rpc error: code = Unknown desc = update out of sequence")
	errNameUsed = fmt.Errorf("rpc error: code = AlreadyExists desc = name conflicts with an existing object: %w", cerrdefs.ErrConflict)
)

// pulseService is a deployed function's service as the engine reports it.
func pulseService(name string, replicas uint64, min, max int) swarm.Service {
	svc := swarm.Service{
		ID:   "id-" + name,
		Meta: swarm.Meta{Version: swarm.Version{Index: 10}},
		Spec: ServiceSpec(Spec{Name: name, Lang: LangC, Mode: contract.ModeFork, Timeout: time.Second,
			Scale: Scale{Min: min, Max: max}}, Image{ID: testImageID}, DeployOptions{}),
	}
	svc.Spec.Mode.Replicated.Replicas = &replicas
	return svc
}

func services(svcs ...swarm.Service) map[string]swarm.Service {
	m := map[string]swarm.Service{}
	for _, s := range svcs {
		m[s.Spec.Name] = s
		m[s.ID] = s
	}
	return m
}

// TestSwarmErrorPaths drives Swarm's operations against the fake and
// checks the error (its message, and the sentinel or engine error it wraps)
// and the mutations made.
func TestSwarmErrorPaths(t *testing.T) {
	hello := pulseService("hello", 2, 1, 3)
	unlabelled := pulseService("hello", 2, 1, 3)
	delete(unlabelled.Spec.Labels, contract.LabelInstance)
	foreign := pulseService("nginx", 1, 1, 1)
	delete(foreign.Spec.Labels, contract.LabelFunction)
	// The engine resolves an unknown name as an ID prefix too.
	prefixed := map[string]swarm.Service{"hel": hello}
	img := Image{ID: "sha256:" + strings.Repeat("ab", 32), Archive: []byte("x")}
	spec := Spec{Name: "hello", Lang: LangC, Mode: contract.ModeFork, Timeout: time.Second, Scale: Scale{Min: 1, Max: 3}}

	type result struct {
		Err     string
		Created int
		Updated []fakeUpdate
		Removed []string
	}
	tests := []struct {
		name   string
		fake   fakeSwarmAPI
		dist   fakeDistributor
		run    func(ctx context.Context, s *Swarm) error
		want   result
		wantIs error
	}{
		{
			name: "scale retries a lost update race",
			fake: fakeSwarmAPI{services: services(hello), bumpVersion: true, updateErrs: []error{errSequence, errSequence}},
			run:  func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "hello", 3, false) },
			want: result{Updated: []fakeUpdate{
				{ID: "id-hello", Version: 11, Replicas: 3, Image: testImageID},
				{ID: "id-hello", Version: 12, Replicas: 3, Image: testImageID},
				{ID: "id-hello", Version: 13, Replicas: 3, Image: testImageID},
			}},
		},
		{
			name: "scale gives up after the retries",
			fake: fakeSwarmAPI{services: services(hello), updateErrs: []error{errSequence, errSequence, errSequence}},
			run: func(ctx context.Context, s *Swarm) error {
				s.conflictRetries = 2
				return s.Scale(ctx, "hello", 3, false)
			},
			wantIs: swarmscale.ErrConflict,
			want: result{
				Err: "scale hello to 3: update service hello: the service changed since it was read (" + errSequence.Error() + ")",
				Updated: []fakeUpdate{
					{ID: "id-hello", Version: 10, Replicas: 3, Image: testImageID},
					{ID: "id-hello", Version: 10, Replicas: 3, Image: testImageID},
					{ID: "id-hello", Version: 10, Replicas: 3, Image: testImageID},
				},
			},
		},
		{
			name:   "scale above max",
			fake:   fakeSwarmAPI{services: services(hello)},
			run:    func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "hello", 4, false) },
			want:   result{Err: "scale hello to 4: outside the function's scale limits: max is 3 (label pulse.scale.max); use --force to override"},
			wantIs: ErrScaleLimit,
		},
		{
			name:   "scale below min",
			fake:   fakeSwarmAPI{services: services(hello)},
			run:    func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "hello", 0, false) },
			want:   result{Err: "scale hello to 0: outside the function's scale limits: min is 1 (label pulse.scale.min); use --force to override"},
			wantIs: ErrScaleLimit,
		},
		{
			name: "scale forced above max",
			fake: fakeSwarmAPI{services: services(hello)},
			run:  func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "hello", 9, true) },
			want: result{Updated: []fakeUpdate{{ID: "id-hello", Version: 10, Replicas: 9, Image: testImageID}}},
		},
		{
			name:   "scale unknown function",
			fake:   fakeSwarmAPI{services: services(hello)},
			run:    func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "nope", 1, false) },
			want:   result{Err: "scale nope to 1: no such function"},
			wantIs: ErrNotFound,
		},
		{
			name:   "scale a name the engine matched as an ID prefix",
			fake:   fakeSwarmAPI{services: prefixed},
			run:    func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "hel", 1, false) },
			want:   result{Err: "scale hel to 1: no such function"},
			wantIs: ErrNotFound,
		},
		{
			name:   "scale a service that is not a function",
			fake:   fakeSwarmAPI{services: services(foreign)},
			run:    func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "nginx", 1, false) },
			want:   result{Err: "scale nginx to 1: no such function: service nginx is not a Pulse function (no pulse.function=nginx label)"},
			wantIs: ErrNotFound,
		},
		{
			name:   "scale with the engine failing",
			fake:   fakeSwarmAPI{inspectErr: errEngine},
			run:    func(ctx context.Context, s *Swarm) error { return s.Scale(ctx, "hello", 1, false) },
			want:   result{Err: "scale hello to 1: inspect service hello: engine exploded"},
			wantIs: errEngine,
		},
		{
			name:   "endpoints with the task list failing",
			fake:   fakeSwarmAPI{services: services(hello), taskErr: errEngine},
			run:    func(ctx context.Context, s *Swarm) error { _, err := s.Endpoints(ctx, "hello"); return err },
			want:   result{Err: "endpoints hello: list tasks: engine exploded"},
			wantIs: errEngine,
		},
		{
			name:   "endpoints of an unknown function",
			fake:   fakeSwarmAPI{},
			run:    func(ctx context.Context, s *Swarm) error { _, err := s.Endpoints(ctx, "nope"); return err },
			want:   result{Err: "endpoints nope: no such function"},
			wantIs: ErrNotFound,
		},
		{
			name: "deploy creates",
			fake: fakeSwarmAPI{},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want: result{Created: 1},
		},
		{
			name: "deploy loses a create race, then updates",
			fake: fakeSwarmAPI{createErrs: []error{errNameUsed}, createdMeanwhile: []swarm.Service{hello}},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want: result{Created: 1, Updated: []fakeUpdate{{ID: "id-hello", Version: 10, Replicas: 2, Image: img.ID}}},
		},
		{
			name: "deploy with the engine refusing the create",
			fake: fakeSwarmAPI{createErrs: []error{errEngine}},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want:   result{Created: 1, Err: "deploy hello: create service: engine exploded"},
			wantIs: errEngine,
		},
		{
			name: "deploy updates with the read version and keeps the replicas",
			fake: fakeSwarmAPI{services: services(hello), updateErrs: []error{errSequence}, bumpVersion: true},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want: result{Updated: []fakeUpdate{
				{ID: "id-hello", Version: 11, Replicas: 2, Image: img.ID},
				{ID: "id-hello", Version: 12, Replicas: 2, Image: img.ID},
			}},
		},
		{
			name: "deploy clamps the replicas to the new max",
			fake: fakeSwarmAPI{services: services(pulseService("hello", 7, 1, 9))},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want: result{Updated: []fakeUpdate{{ID: "id-hello", Version: 10, Replicas: 3, Image: img.ID}}},
		},
		{
			name: "deploy raises the replicas to the new min",
			fake: fakeSwarmAPI{services: services(pulseService("hello", 0, 0, 9))},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want: result{Updated: []fakeUpdate{{ID: "id-hello", Version: 10, Replicas: 1, Image: img.ID}}},
		},
		{
			name: "deploy over a service that is not a function",
			fake: fakeSwarmAPI{services: services(foreign)},
			run: func(ctx context.Context, s *Swarm) error {
				sp := spec
				sp.Name = "nginx"
				_, err := s.Deploy(ctx, sp, img, DeployOptions{})
				return err
			},
			want: result{Err: `deploy nginx: service nginx exists but is not this Pulse function (label pulse.function=""): remove it or rename the function`},
		},
		{
			name: "deploy over a function of another instance",
			fake: fakeSwarmAPI{services: services(hello)},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{Instance: "lab"})
				return err
			},
			want: result{Err: `deploy hello: function hello belongs to Pulse instance "default" (label pulse.instance), not to "lab" (the CLI's instance key): remove it there first or use that instance`},
		},
		{
			name: "deploy adopts a function deployed before instances existed",
			fake: fakeSwarmAPI{services: services(unlabelled)},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{Instance: "lab"})
				return err
			},
			want: result{Updated: []fakeUpdate{{ID: "id-hello", Version: 10, Replicas: 2, Image: img.ID}}},
		},
		{
			name: "deploy with a bad instance",
			fake: fakeSwarmAPI{},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{Instance: "a=b"})
				return err
			},
			want: result{Err: `deploy hello: instance "a=b": want 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit`},
		},
		{
			name: "deploy with a missing secret",
			fake: fakeSwarmAPI{secrets: []swarm.Secret{{ID: "s1", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "here"}}}}},
			run: func(ctx context.Context, s *Swarm) error {
				sp := spec
				sp.Secrets = []string{"here", "gone", "lost"}
				_, err := s.Deploy(ctx, sp, img, DeployOptions{})
				return err
			},
			want: result{Err: "deploy hello: secret gone, lost does not exist: create it first (docker secret create NAME FILE)"},
		},
		{
			name: "deploy with the image not placed",
			fake: fakeSwarmAPI{},
			dist: fakeDistributor{err: errEngine},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, img, DeployOptions{})
				return err
			},
			want:   result{Err: "deploy hello: engine exploded"},
			wantIs: errEngine,
		},
		{
			name: "deploy by tag",
			fake: fakeSwarmAPI{},
			run: func(ctx context.Context, s *Swarm) error {
				_, err := s.Deploy(ctx, spec, Image{ID: "pulse/hello:latest"}, DeployOptions{})
				return err
			},
			want: result{Err: `deploy hello: image "pulse/hello:latest": want an image ID (sha256:<64 hex digits>), never a tag: Swarm would try to pull a tag from a registry`},
		},
		{
			name:   "remove with the engine failing",
			fake:   fakeSwarmAPI{services: services(hello), removeErr: errEngine},
			run:    func(ctx context.Context, s *Swarm) error { return s.Remove(ctx, "hello") },
			want:   result{Err: "remove hello: remove service id-hello: engine exploded", Removed: []string{"service id-hello"}},
			wantIs: errEngine,
		},
		{
			name:   "remove an unknown function",
			fake:   fakeSwarmAPI{},
			run:    func(ctx context.Context, s *Swarm) error { return s.Remove(ctx, "nope") },
			want:   result{Err: "remove nope: no such function"},
			wantIs: ErrNotFound,
		},
		{
			name: "remove the images left without a service",
			fake: fakeSwarmAPI{images: []image.Summary{{ID: "sha256:aa"}, {ID: "sha256:bb"}}},
			run:  func(ctx context.Context, s *Swarm) error { return s.Remove(ctx, "gone") },
			want: result{Removed: []string{"image sha256:aa", "image sha256:bb"}},
		},
		{
			name: "remove keeps an image a container uses",
			fake: fakeSwarmAPI{images: []image.Summary{{ID: "sha256:aa"}}, containers: []container.Summary{{ID: "c1"}}},
			run:  func(ctx context.Context, s *Swarm) error { return s.Remove(ctx, "gone") },
			want: result{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := tt.fake
			fake.t = t
			dist := tt.dist
			s := NewSwarm(&fake, &dist, nil)
			s.poll = time.Millisecond
			err := tt.run(t.Context(), s)
			got := result{Created: len(fake.created), Updated: fake.updated, Removed: fake.removed}
			if err != nil {
				got.Err = err.Error()
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
		})
	}
}

func runningTask(id string, slot int, node string, ports ...uint32) swarm.Task {
	t := swarm.Task{
		ID: id, Slot: slot, NodeID: node, ServiceID: "id-hello",
		DesiredState: swarm.TaskStateRunning,
		Status:       swarm.TaskStatus{State: swarm.TaskStateRunning},
	}
	for _, p := range ports {
		t.Status.PortStatus.Ports = append(t.Status.PortStatus.Ports, swarm.PortConfig{
			Protocol: swarm.PortConfigProtocolTCP, TargetPort: contract.WatchdogPort,
			PublishedPort: p, PublishMode: swarm.PortConfigPublishModeHost,
		})
	}
	return t
}

func testNodes() map[string]swarm.Node {
	node := func(host, addr string, manager string) swarm.Node {
		n := swarm.Node{Description: swarm.NodeDescription{Hostname: host}, Status: swarm.NodeStatus{Addr: addr}}
		if manager != "" {
			n.ManagerStatus = &swarm.ManagerStatus{Addr: manager}
		}
		return n
	}
	return map[string]swarm.Node{
		"n1": node("one", "0.0.0.0", "10.0.0.5:2377"), // a manager reporting no address
		"n2": node("two", "192.168.1.7", ""),
		"n3": node("", "", ""), // nothing known: the single node, at loopback
	}
}

// TestSwarmEndpoints maps tasks to endpoints: running tasks only, by slot,
// at their node's address and the published port (listed once per address
// family by the engine).
func TestSwarmEndpoints(t *testing.T) {
	shutdown := runningTask("t3", 3, "n2", 32770)
	shutdown.DesiredState = swarm.TaskStateShutdown
	starting := runningTask("t4", 4, "n2")
	starting.Status.State = swarm.TaskStateStarting
	fake := &fakeSwarmAPI{
		t:        t,
		services: services(pulseService("hello", 3, 1, 5)),
		tasks: []swarm.Task{
			runningTask("t1", 2, "n1", 32768, 32768),
			runningTask("t2", 1, "n2", 32769),
			shutdown,
			starting,
			runningTask("t5", 5, "n3", 32771),
			runningTask("t6", 6, "n3"), // running, no port: not reachable
		},
		nodes: testNodes(),
	}
	got, err := NewSwarm(fake, &fakeDistributor{}, nil).Endpoints(t.Context(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	want := []Endpoint{
		{TaskID: "t2", Slot: 1, Node: "two", Addr: "192.168.1.7:32769", State: "running"},
		{TaskID: "t1", Slot: 2, Node: "one", Addr: "10.0.0.5:32768", State: "running"},
		{TaskID: "t5", Slot: 5, Node: "n3", Addr: "127.0.0.1:32771", State: "running"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Endpoints() =\n%+v\nwant\n%+v", got, want)
	}
}

// TestSwarmLogs checks the demultiplexing and the task prefixes.
func TestSwarmLogs(t *testing.T) {
	var stream bytes.Buffer
	out := stdcopy.NewStdWriter(&stream, stdcopy.Stdout)
	errw := stdcopy.NewStdWriter(&stream, stdcopy.Stderr)
	const details = "com.docker.swarm.node.id=%s,com.docker.swarm.service.id=id-hello,com.docker.swarm.task.id=%s"
	fmt.Fprintf(out, "2026-11-25T10:00:00.000000001Z "+details+" hello world\n", "n2", "t1aaaaaaaaaaaaaaaaaaaaaaa")
	fmt.Fprintf(errw, "2026-11-25T10:00:00.000000002Z "+details+" {\"level\":\"INFO\"}\n", "n1", "t2bbbbbbbbbbbbbbbbbbbbbbb")
	fmt.Fprintf(out, "2026-11-25T10:00:00.000000003Z "+details+" no newline", "n2", "t9unknown")
	fake := &fakeSwarmAPI{
		t:        t,
		services: services(pulseService("hello", 2, 1, 5)),
		tasks:    []swarm.Task{runningTask("t1aaaaaaaaaaaaaaaaaaaaaaa", 1, "n2"), runningTask("t2bbbbbbbbbbbbbbbbbbbbbbb", 2, "n1")},
		nodes:    testNodes(),
		logs:     stream.Bytes(),
	}
	var got bytes.Buffer
	if err := NewSwarm(fake, &fakeDistributor{}, nil).Logs(t.Context(), "hello", false, "", &got); err != nil {
		t.Fatal(err)
	}
	want := "hello.1.t1aaaaaaaaaa@two | 2026-11-25T10:00:00.000000001Z hello world\n" +
		"hello.2.t2bbbbbbbbbb@one | 2026-11-25T10:00:00.000000002Z {\"level\":\"INFO\"}\n" +
		"hello.0.t9unknown@two | 2026-11-25T10:00:00.000000003Z no newline\n"
	if got.String() != want {
		t.Errorf("Logs() wrote\n%s\nwant\n%s", got.String(), want)
	}
}

// TestDeployReplicaAuth: Deploy attaches the newest replica credential
// secret of the deploy's instance (never another instance's), readable by
// the replica's user only, and names it in the environment; without one it
// fails saying to start pulsed.
func TestDeployReplicaAuth(t *testing.T) {
	img := Image{ID: "sha256:" + strings.Repeat("ab", 32), Archive: []byte("x")}
	spec := Spec{Name: "hello", Lang: LangC, Mode: contract.ModeFork, Timeout: time.Second, Scale: Scale{Min: 1, Max: 3}}
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		instance string
		secrets  []swarm.Secret
		wantID   string
		wantErr  string
	}{
		{
			name:     "the newest of the instance",
			instance: "lab",
			secrets: []swarm.Secret{
				replicaAuthSecret("old", "lab", t0),
				replicaAuthSecret("new", "lab", t0.Add(time.Hour)),
				replicaAuthSecret("other", "prod", t0.Add(2*time.Hour)),
				{ID: "plain", Meta: swarm.Meta{CreatedAt: t0.Add(3 * time.Hour)}, Spec: swarm.SecretSpec{Annotations: swarm.Annotations{
					Name: "db", Labels: map[string]string{contract.LabelInstance: "lab"}}}},
			},
			wantID: "new",
		},
		{
			name:    "the default instance",
			secrets: []swarm.Secret{replicaAuthSecret("d", contract.DefaultInstance, t0)},
			wantID:  "d",
		},
		{
			name:     "none for the instance",
			instance: "lab",
			secrets:  []swarm.Secret{replicaAuthSecret("other", "prod", t0)},
			wantErr:  `deploy hello: no replica credential for instance "lab": start pulsed first (make up)`,
		},
		{
			name:    "none at all",
			wantErr: `deploy hello: no replica credential for instance "default": start pulsed first (make up)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeSwarmAPI{t: t, secrets: tt.secrets, noReplicaAuth: true}
			s := NewSwarm(fake, &fakeDistributor{}, nil)
			_, err := s.Deploy(t.Context(), spec, img, DeployOptions{Instance: tt.instance})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrNoReplicaAuth) {
					t.Fatalf("Deploy() = %v, want %q wrapping ErrNoReplicaAuth", err, tt.wantErr)
				}
				if len(fake.created) != 0 {
					t.Errorf("a service was created without a credential")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(fake.created) != 1 {
				t.Fatalf("%d services created, want 1", len(fake.created))
			}
			inst := cmp.Or(tt.instance, contract.DefaultInstance)
			wantFilter := filters.NewArgs(filters.Arg("label", contract.LabelInstance+"="+inst),
				filters.Arg("label", contract.LabelRole+"="+contract.RoleReplicaAuth))
			if len(fake.secretFilters) != 1 || !reflect.DeepEqual(fake.secretFilters[0], wantFilter) {
				t.Errorf("SecretList filters = %v, want %v", fake.secretFilters, wantFilter)
			}
			cs := fake.created[0].TaskTemplate.ContainerSpec
			var want *swarm.SecretReference
			for _, sec := range tt.secrets {
				if sec.ID == tt.wantID {
					want = &swarm.SecretReference{
						File:     &swarm.SecretReferenceFileTarget{Name: contract.ReplicaAuthSecretTarget, UID: "65534", GID: "65534", Mode: 0o400},
						SecretID: sec.ID, SecretName: sec.Spec.Name,
					}
				}
			}
			if len(cs.Secrets) != 1 || !reflect.DeepEqual(cs.Secrets[0], want) {
				t.Errorf("secrets = %+v, want only %+v", cs.Secrets, want)
			}
			if !slices.Contains(cs.Env, contract.EnvReplicaAuthFile+"="+contract.ReplicaAuthPath) {
				t.Errorf("env %q lacks %s=%s", cs.Env, contract.EnvReplicaAuthFile, contract.ReplicaAuthPath)
			}
		})
	}
}
