package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// catalogService is a function service as the engine lists it.
func catalogService(name string, replicas uint64, labels ...string) swarm.Service {
	l := map[string]string{contract.LabelFunction: name}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		l[k] = v
	}
	return swarm.Service{
		ID: "svc-" + name,
		Spec: swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: name, Labels: l},
			Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		},
	}
}

// catalogTask is a task of service svc; port 0 publishes nothing.
func catalogTask(svc, id string, slot int, node string, desired, observed swarm.TaskState, port uint32) swarm.Task {
	t := swarm.Task{
		ID: id, ServiceID: "svc-" + svc, Slot: slot, NodeID: node,
		DesiredState: desired,
		Status:       swarm.TaskStatus{State: observed},
	}
	if port != 0 {
		p := swarm.PortConfig{
			Protocol: swarm.PortConfigProtocolTCP, TargetPort: contract.WatchdogPort,
			PublishedPort: port, PublishMode: swarm.PortConfigPublishModeHost,
		}
		t.Status.PortStatus.Ports = []swarm.PortConfig{p, p} // once per address family
	}
	return t
}

const (
	catRunning  = swarm.TaskStateRunning
	catShutdown = swarm.TaskStateShutdown
	catRemove   = swarm.TaskStateRemove
)

var catalogNodes = map[string]string{"n1": "10.0.0.1", "n2": "10.0.0.2"}

func catalogReplica(id string, slot int, node string, port int, draining bool) contract.Replica {
	return contract.Replica{
		TaskID: id, Slot: slot, Node: node,
		Addr:  fmt.Sprintf("%s:%d", catalogNodes[node], port),
		State: "running", Draining: draining,
	}
}

// TestCatalogBuild maps readings of the swarm to whole catalogs and to what
// keeps the poller fast.
func TestCatalogBuild(t *testing.T) {
	global := catalogService("agent", 0)
	global.Spec.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
	updating := catalogService("hello", 2)
	updating.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateUpdating}
	notFunction := catalogService("nginx", 1)
	notFunction.Spec.Labels[contract.LabelFunction] = "other"
	noLabels := catalogService("bare", 0)
	noLabels.Spec.Labels = nil
	removed := goneService{
		fn:    contract.CatalogFunction{Name: "hello", ServiceID: "svc-old", Labels: map[string]string{contract.LabelFunction: "hello", "v": "1"}},
		since: time.Unix(0, 0),
	}
	oldTask := func(id string, slot int, desired swarm.TaskState, port uint32) swarm.Task {
		t := catalogTask("hello", id, slot, "n1", desired, catRunning, port)
		t.ServiceID = "svc-old"
		return t
	}

	tests := []struct {
		name        string
		in          input
		want        []contract.CatalogFunction
		wantPending string
	}{
		{
			name: "no functions",
			in:   input{nodes: catalogNodes},
			want: []contract.CatalogFunction{},
		},
		{
			name: "steady, with task history",
			in: input{
				services: []swarm.Service{catalogService("hello", 2, contract.LabelTimeout+"=5s")},
				tasks: []swarm.Task{
					catalogTask("hello", "t2", 2, "n2", catRunning, catRunning, 32769),
					catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768),
					catalogTask("hello", "t0", 1, "n1", catShutdown, swarm.TaskStateFailed, 0),
					catalogTask("hello", "t9", 2, "n2", catShutdown, swarm.TaskStateShutdown, 32770),
				},
				nodes: catalogNodes,
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 2,
				Labels:   map[string]string{contract.LabelFunction: "hello", contract.LabelTimeout: "5s"},
				Replicas: []contract.Replica{catalogReplica("t1", 1, "n1", 32768, false), catalogReplica("t2", 2, "n2", 32769, false)},
			}},
		},
		{
			name: "scaling up: starting tasks are not replicas yet",
			in: input{
				services: []swarm.Service{catalogService("hello", 3)},
				tasks: []swarm.Task{
					catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768),
					catalogTask("hello", "t2", 2, "n2", catRunning, swarm.TaskStateStarting, 0),
					catalogTask("hello", "t3", 3, "", catRunning, swarm.TaskStatePending, 0),
				},
				nodes: catalogNodes,
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 3,
				Labels:   map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{catalogReplica("t1", 1, "n1", 32768, false)},
			}},
			wantPending: "hello: 1 of 3 replicas running (and 2 more)",
		},
		{
			name: "scaling down: the replicas told to go drain at the address they had",
			in: input{
				services: []swarm.Service{catalogService("hello", 1)},
				tasks: []swarm.Task{
					catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768),
					// Swarm clears the ports of a task told to stop.
					catalogTask("hello", "t2", 2, "n2", catRemove, catRunning, 0),
					catalogTask("hello", "t3", 3, "n1", catRemove, catRunning, 0),
					// Never had an address: nothing to drain.
					catalogTask("hello", "t4", 4, "n1", catRemove, catRunning, 0),
				},
				nodes: catalogNodes,
				addrs: map[string]string{"t1": "10.0.0.1:32768", "t2": "10.0.0.2:32769", "t3": "10.0.0.1:32770"},
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 1,
				Labels: map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{
					catalogReplica("t1", 1, "n1", 32768, false),
					catalogReplica("t2", 2, "n2", 32769, true),
					catalogReplica("t3", 3, "n1", 32770, true),
				},
			}},
			wantPending: "hello: task t2 running, desired remove (and 2 more)",
		},
		{
			name: "rolling update: the old replica drains, the new one serves",
			in: input{
				services: []swarm.Service{updating},
				tasks: []swarm.Task{
					catalogTask("hello", "tnew", 1, "n1", catRunning, catRunning, 32771),
					catalogTask("hello", "told", 1, "n1", catShutdown, catRunning, 0),
					catalogTask("hello", "t2", 2, "n2", catRunning, catRunning, 32769),
				},
				nodes: catalogNodes,
				addrs: map[string]string{"told": "10.0.0.1:32768", "t2": "10.0.0.2:32769"},
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 2,
				Labels: map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{
					catalogReplica("t2", 2, "n2", 32769, false),
					catalogReplica("tnew", 1, "n1", 32771, false),
					catalogReplica("told", 1, "n1", 32768, true),
				},
			}},
			wantPending: "hello: task told running, desired shutdown (and 1 more)",
		},
		{
			name: "rolling update between two replicas",
			in: input{
				services: []swarm.Service{updating},
				tasks: []swarm.Task{
					catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768),
					catalogTask("hello", "t2", 2, "n2", catRunning, catRunning, 32769),
				},
				nodes: catalogNodes,
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 2,
				Labels:   map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{catalogReplica("t1", 1, "n1", 32768, false), catalogReplica("t2", 2, "n2", 32769, false)},
			}},
			wantPending: "hello: update updating",
		},
		{
			name: "running without an address: no published port, or an unknown node",
			in: input{
				services: []swarm.Service{catalogService("hello", 2)},
				tasks: []swarm.Task{
					catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 0),
					catalogTask("hello", "t2", 2, "n9", catRunning, catRunning, 32769),
				},
				nodes: catalogNodes,
				// Only draining replicas keep an address they lost.
				addrs: map[string]string{"t1": "10.0.0.1:32768"},
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 2,
				Labels:   map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{},
			}},
		},
		{
			name: "a task that failed but is still wanted running is pending",
			in: input{
				services: []swarm.Service{catalogService("hello", 1)},
				tasks:    []swarm.Task{catalogTask("hello", "t1", 1, "n1", catRunning, swarm.TaskStateFailed, 32768)},
				nodes:    catalogNodes,
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 1,
				Labels:   map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{},
			}},
			wantPending: "hello: 0 of 1 replicas running (and 1 more)",
		},
		{
			name: "a restart waiting for its delay is pending",
			in: input{
				services: []swarm.Service{catalogService("hello", 1)},
				tasks: []swarm.Task{
					catalogTask("hello", "t1", 1, "n1", swarm.TaskStateReady, swarm.TaskStatePending, 0),
					catalogTask("hello", "t0", 1, "n1", catShutdown, swarm.TaskStateFailed, 0),
				},
				nodes: catalogNodes,
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 1,
				Labels:   map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{},
			}},
			wantPending: "hello: 0 of 1 replicas running (and 1 more)",
		},
		{
			name: "functions by name; not functions and empty labels",
			in: input{
				services: []swarm.Service{catalogService("zeta", 0), notFunction, noLabels, catalogService("alpha", 0)},
				nodes:    catalogNodes,
			},
			want: []contract.CatalogFunction{
				{Name: "alpha", ServiceID: "svc-alpha", Labels: map[string]string{contract.LabelFunction: "alpha"}, Replicas: []contract.Replica{}},
				{Name: "zeta", ServiceID: "svc-zeta", Labels: map[string]string{contract.LabelFunction: "zeta"}, Replicas: []contract.Replica{}},
			},
		},
		{
			name: "global mode: desired is what Swarm wants running",
			in: input{
				services: []swarm.Service{global},
				tasks: []swarm.Task{
					catalogTask("agent", "g1", 0, "n1", catRunning, catRunning, 32768),
					catalogTask("agent", "g2", 0, "n2", catRunning, catRunning, 32768),
				},
				nodes: catalogNodes,
			},
			want: []contract.CatalogFunction{{
				Name: "agent", ServiceID: "svc-agent", Desired: 2,
				Labels:   map[string]string{contract.LabelFunction: "agent"},
				Replicas: []contract.Replica{catalogReplica("g1", 0, "n1", 32768, false), catalogReplica("g2", 0, "n2", 32768, false)},
			}},
		},
		{
			name: "removed: what still runs drains, under the last labels, desired 0",
			in: input{
				tasks: []swarm.Task{
					oldTask("o1", 1, catRemove, 0),
					oldTask("o2", 2, catRemove, 0),
				},
				nodes: catalogNodes,
				gone:  map[string]goneService{"svc-old": removed},
				addrs: map[string]string{"o1": "10.0.0.1:32768"},
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-old", Desired: 0,
				Labels:   map[string]string{contract.LabelFunction: "hello", "v": "1"},
				Replicas: []contract.Replica{catalogReplica("o1", 1, "n1", 32768, true)},
			}},
			wantPending: "hello: removed service svc-old: task o1 running (and 1 more)",
		},
		{
			name: "removed and deployed again: one function, the old replicas draining",
			in: input{
				services: []swarm.Service{catalogService("hello", 1)},
				tasks: []swarm.Task{
					catalogTask("hello", "t1", 1, "n2", catRunning, catRunning, 32769),
					oldTask("o1", 1, catRunning, 32768), // not marked for removal yet
				},
				nodes: catalogNodes,
				gone:  map[string]goneService{"svc-old": removed},
			},
			want: []contract.CatalogFunction{{
				Name: "hello", ServiceID: "svc-hello", Desired: 1,
				Labels:   map[string]string{contract.LabelFunction: "hello"},
				Replicas: []contract.Replica{catalogReplica("o1", 1, "n1", 32768, true), catalogReplica("t1", 1, "n2", 32769, false)},
			}},
			wantPending: "hello: removed service svc-old: task o1 running",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pending := build(tt.in)
			want := contract.Catalog{Version: contentVersion(tt.want), Functions: tt.want}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("catalog\n got %+v\nwant %+v", got, want)
			}
			if pending != tt.wantPending {
				t.Errorf("pending %q, want %q", pending, tt.wantPending)
			}
		})
	}
}

// TestCatalogVersion checks that the version follows the content: equal
// for equal content however the engine ordered it, different after any
// change a consumer acts on.
func TestCatalogVersion(t *testing.T) {
	base := func() input {
		return input{
			services: []swarm.Service{catalogService("hello", 2, "a=1", "b=2"), catalogService("echo", 1)},
			tasks: []swarm.Task{
				catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768),
				catalogTask("hello", "t2", 2, "n2", catRunning, catRunning, 32769),
				catalogTask("echo", "e1", 1, "n1", catRunning, catRunning, 32770),
			},
			nodes: catalogNodes,
		}
	}
	version := func(in input) string { c, _ := build(in); return c.Version }
	v0 := version(base())
	if len(v0) != 16 {
		t.Errorf("version %q: want 16 hex digits", v0)
	}

	reordered := base()
	reordered.services[0], reordered.services[1] = reordered.services[1], reordered.services[0]
	reordered.tasks[0], reordered.tasks[2] = reordered.tasks[2], reordered.tasks[0]
	if v := version(reordered); v != v0 {
		t.Errorf("reordered input: version %s, want %s", v, v0)
	}
	withHistory := base()
	withHistory.tasks = append(withHistory.tasks, catalogTask("hello", "t0", 1, "n1", catShutdown, swarm.TaskStateShutdown, 0))
	if v := version(withHistory); v != v0 {
		t.Errorf("a stopped task added: version %s, want %s", v, v0)
	}

	changes := map[string]func(in *input){
		"label value":    func(in *input) { in.services[0].Spec.Labels["a"] = "9" },
		"label added":    func(in *input) { in.services[1].Spec.Labels["c"] = "" },
		"desired":        func(in *input) { *in.services[0].Spec.Mode.Replicated.Replicas = 3 },
		"replica gone":   func(in *input) { in.tasks = in.tasks[:2] },
		"draining":       func(in *input) { in.tasks[1].DesiredState = catRemove },
		"port":           func(in *input) { in.tasks[0].Status.PortStatus.Ports[0].PublishedPort = 1 },
		"node address":   func(in *input) { in.nodes = map[string]string{"n1": "10.0.0.9", "n2": "10.0.0.2"} },
		"service ID":     func(in *input) { in.services[1].ID = "svc-echo2"; in.tasks[2].ServiceID = "svc-echo2" },
		"function added": func(in *input) { in.services = append(in.services, catalogService("new", 0)) },
	}
	seen := map[string]string{v0: "base"}
	for name, change := range changes {
		in := base()
		change(&in)
		v := version(in)
		if other, ok := seen[v]; ok {
			t.Errorf("%s: version %s is the same as after %s", name, v, other)
		}
		seen[v] = name
	}
}

// TestCatalogStillLeaving checks which removed services stay until their
// tasks stop.
func TestCatalogStillLeaving(t *testing.T) {
	now := time.Unix(1000, 0)
	g := func(name string, since time.Time) goneService {
		return goneService{fn: contract.CatalogFunction{Name: name, ServiceID: "svc-" + name}, since: since}
	}
	in := input{
		tasks: []swarm.Task{
			catalogTask("removing", "r1", 1, "n1", catRemove, catRunning, 32768),
			catalogTask("stopped", "s1", 1, "n1", catRemove, swarm.TaskStateShutdown, 0),
			catalogTask("fresh", "f1", 1, "n1", catRunning, catRunning, 32769),
			catalogTask("relabelled", "l1", 1, "n1", catRunning, catRunning, 32770),
			catalogTask("live", "x1", 1, "n1", catRunning, catRunning, 32771),
		},
		gone: map[string]goneService{
			"svc-removing":   g("removing", now.Add(-time.Minute)),
			"svc-stopped":    g("stopped", now.Add(-time.Second)),
			"svc-fresh":      g("fresh", now.Add(-removeGrace/2)),
			"svc-relabelled": g("relabelled", now.Add(-removeGrace)),
			"svc-notasks":    g("notasks", now),
		},
	}
	want := map[string]goneService{
		"svc-removing": in.gone["svc-removing"],
		"svc-fresh":    in.gone["svc-fresh"],
	}
	if got := stillLeaving(in, now); !reflect.DeepEqual(got, want) {
		t.Errorf("stillLeaving() =\n%+v\nwant\n%+v", got, want)
	}
}

// TestCatalogPollDelay checks the choice between fast and slow polling.
func TestCatalogPollDelay(t *testing.T) {
	cfg := DefaultConfig()
	now := time.Unix(1000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	long := time.Hour
	tests := []struct {
		name                  string
		changedAt, progressAt time.Time
		pending               string
		want                  time.Duration
	}{
		{"steady", ago(long), ago(long), "", cfg.SlowPoll},
		{"never changed", time.Time{}, time.Time{}, "", cfg.SlowPoll},
		{"just changed", ago(cfg.Settle / 2), ago(cfg.Settle / 2), "", cfg.FastPoll},
		{"settled", ago(cfg.Settle), ago(cfg.Settle), "", cfg.SlowPoll},
		{"converging", ago(long), ago(time.Second), "x: 1 of 2 replicas running", cfg.FastPoll},
		{"converging without progress", ago(long), ago(cfg.FastLimit), "x: task t pending", cfg.SlowPoll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cfg.pollDelay(now, tt.changedAt, tt.progressAt, tt.pending); got != tt.want {
				t.Errorf("pollDelay() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCatalogConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"selector", func(c *Config) { c.Selector = []string{"pulse.test", "run=1"} }, ""},
		{"zero fast poll", func(c *Config) { c.FastPoll = 0 }, "catalog fast poll 0s: must be positive"},
		{"negative timeout", func(c *Config) { c.CallTimeout = -time.Second }, "catalog call timeout -1s: must be positive"},
		{"fast slower than slow", func(c *Config) { c.FastPoll = 2 * time.Second }, "catalog fast poll 2s is longer than the slow poll 1s"},
		{"empty selector key", func(c *Config) { c.Selector = []string{"=x"} }, `catalog selector "=x": want key or key=value`},
		{"instance", func(c *Config) { c.Instance = "lab-1" }, ""},
		{"no instance", func(c *Config) { c.Instance = "" }, `catalog instance "": want 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit`},
		{"instance unsafe in a label filter", func(c *Config) { c.Instance = "a,b" }, `catalog instance "a,b": want 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			got := ""
			if err := cfg.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCatalogSubscribeLatest checks latest-value delivery: a consumer that
// does not read holds only the newest catalog, the poller never waits, a new
// subscriber starts with the current catalog, and Run's end closes the
// channels.
func TestCatalogSubscribeLatest(t *testing.T) {
	c, err := New(&catalogFakeAPI{}, DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	early := c.Subscribe()
	select {
	case cat := <-early:
		t.Fatalf("got %+v before any catalog", cat)
	default:
	}
	cat := func(v string) contract.Catalog {
		return contract.Catalog{Version: v, Functions: []contract.CatalogFunction{}}
	}
	now := time.Now()
	for i := range 100 { // would block on the second if publish waited
		c.publish(cat(fmt.Sprint("v", i)), now)
	}
	if got := <-early; got.Version != "v99" {
		t.Errorf("slow consumer got %s, want the newest, v99", got.Version)
	}
	select {
	case got := <-early:
		t.Errorf("got %s after the newest", got.Version)
	default:
	}

	c.publish(cat("v99"), now) // unchanged: not sent again
	select {
	case got := <-early:
		t.Errorf("unchanged catalog sent again: %s", got.Version)
	default:
	}

	late := c.Subscribe()
	if got := <-late; got.Version != "v99" {
		t.Errorf("new subscriber got %s, want the current v99", got.Version)
	}

	// Concurrent readers never see an older catalog after a newer one.
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		last := 99
		for {
			select {
			case got := <-early:
				var n int
				fmt.Sscanf(got.Version, "v%d", &n)
				if n <= last {
					t.Errorf("got v%d after v%d", n, last)
				}
				last = n
			case <-done:
				return
			}
		}
	})
	for i := 100; i < 10000; i++ {
		c.publish(cat(fmt.Sprint("v", i)), now)
	}
	close(done)
	wg.Wait()

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan contract.Catalog{early, late} {
		for range ch { // drain what is left; ends once closed
		}
	}
	if _, ok := <-c.Subscribe(); ok {
		t.Error("Subscribe after Run returned an open channel with a value")
	}
	if err := c.Run(t.Context()); err == nil {
		t.Error("a second Run did not fail")
	}
}

// catalogFakeAPI answers from scripted results, one per call, to reach the
// error paths; swarm_test.go covers the real engine. Once a script
// is used up, its last entry repeats.
type catalogFakeAPI struct {
	mu       sync.Mutex
	services []catalogResult[[]swarm.Service]
	tasks    []catalogResult[[]swarm.Task]
	nodes    []catalogResult[[]swarm.Node]
	calls    map[string]int
}

type catalogResult[T any] struct {
	v   T
	err error
}

func catalogNext[T any](f *catalogFakeAPI, name string, script []catalogResult[T]) (T, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	i := min(f.calls[name], len(script)-1)
	f.calls[name]++
	if i < 0 {
		var zero T
		return zero, nil
	}
	return script[i].v, script[i].err
}

func (f *catalogFakeAPI) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	return catalogNext(f, "services", f.services)
}

func (f *catalogFakeAPI) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	return catalogNext(f, "tasks", f.tasks)
}

func (f *catalogFakeAPI) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return catalogNext(f, "nodes", f.nodes)
}

func (f *catalogFakeAPI) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

// catalogLogRecords collects log records.
type catalogLogRecords struct {
	mu      sync.Mutex
	records []string // "LEVEL message"
}

func (h *catalogLogRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *catalogLogRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Level.String()+" "+r.Message)
	return nil
}
func (h *catalogLogRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *catalogLogRecords) WithGroup(string) slog.Handler      { return h }

func (h *catalogLogRecords) atLeast(level slog.Level) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		var l slog.Level
		_ = l.UnmarshalText([]byte(strings.Fields(r)[0]))
		if l >= level {
			out = append(out, r)
		}
	}
	return out
}

var errCatalogEngine = errors.New("engine exploded")

// TestCatalogErrorPaths polls a fake engine step by step: errors before the
// first success, errors after it (the last good catalog stays, logged once
// per streak), a service removed between the service and the task list.
func TestCatalogErrorPaths(t *testing.T) {
	svcs := []swarm.Service{catalogService("hello", 1, contract.LabelInstance+"="+contract.DefaultInstance)}
	tasks := []swarm.Task{catalogTask("hello", "t1", 1, "n1", catRunning, catRunning, 32768)}
	nodes := []swarm.Node{{ID: "n1", Status: swarm.NodeStatus{Addr: "10.0.0.1"}}}
	goodCatalog, _ := build(input{services: svcs, tasks: tasks, nodes: catalogNodes})
	ok := func(s []swarm.Service) catalogResult[[]swarm.Service] { return catalogResult[[]swarm.Service]{v: s} }
	fail := catalogResult[[]swarm.Service]{err: errCatalogEngine}
	okTasks := catalogResult[[]swarm.Task]{v: tasks}
	gone := catalogResult[[]swarm.Task]{err: fmt.Errorf("service svc-x not found: %w", cerrdefs.ErrNotFound)}

	type step struct {
		Version string // of Current()
		Err     string // of Current()
		Ready   bool
	}
	tests := []struct {
		name      string
		fake      *catalogFakeAPI
		polls     int
		want      []step
		wantLog   []string // warnings and above, and infos
		wantCalls map[string]int
	}{
		{
			name:  "errors before the first success",
			fake:  &catalogFakeAPI{services: []catalogResult[[]swarm.Service]{fail, fail, ok(svcs)}, tasks: []catalogResult[[]swarm.Task]{okTasks}, nodes: []catalogResult[[]swarm.Node]{{v: nodes}}},
			polls: 3,
			want: []step{
				{Err: "catalog not ready: list services: engine exploded"},
				{Err: "catalog not ready: list services: engine exploded"},
				{Version: goodCatalog.Version, Ready: true},
			},
			wantLog:   []string{"WARN catalog poll failed; serving the last good catalog", "INFO catalog poll recovered"},
			wantCalls: map[string]int{"services": 3, "tasks": 1, "nodes": 1},
		},
		{
			name:  "errors after a success keep the last good catalog",
			fake:  &catalogFakeAPI{services: []catalogResult[[]swarm.Service]{ok(svcs), fail, fail, fail, ok(nil)}, tasks: []catalogResult[[]swarm.Task]{okTasks, {}}, nodes: []catalogResult[[]swarm.Node]{{v: nodes}}},
			polls: 5,
			want: []step{
				{Version: goodCatalog.Version, Ready: true},
				{Version: goodCatalog.Version, Ready: true, Err: "list services: engine exploded"},
				{Version: goodCatalog.Version, Ready: true, Err: "list services: engine exploded"},
				{Version: goodCatalog.Version, Ready: true, Err: "list services: engine exploded"},
				{Version: contentVersion([]contract.CatalogFunction{}), Ready: true},
			},
			wantLog: []string{"WARN catalog poll failed; serving the last good catalog", "INFO catalog poll recovered"},
			// The last poll lists the removed service's remaining tasks.
			wantCalls: map[string]int{"services": 5, "tasks": 2, "nodes": 1},
		},
		{
			name: "a service removed between the lists is read again",
			fake: &catalogFakeAPI{
				services: []catalogResult[[]swarm.Service]{ok(svcs)},
				tasks:    []catalogResult[[]swarm.Task]{gone, okTasks},
				nodes:    []catalogResult[[]swarm.Node]{{v: nodes}},
			},
			polls:     1,
			want:      []step{{Version: goodCatalog.Version, Ready: true}},
			wantCalls: map[string]int{"services": 2, "tasks": 2, "nodes": 1},
		},
		{
			name: "a service that keeps vanishing fails the poll",
			fake: &catalogFakeAPI{
				services: []catalogResult[[]swarm.Service]{ok(svcs)},
				tasks:    []catalogResult[[]swarm.Task]{gone},
			},
			polls:     1,
			want:      []step{{Err: "catalog not ready: list tasks: service svc-x not found: not found"}},
			wantLog:   []string{"WARN catalog poll failed; serving the last good catalog"},
			wantCalls: map[string]int{"services": maxReadAttempts, "tasks": maxReadAttempts},
		},
		{
			name: "the node list failing fails the poll",
			fake: &catalogFakeAPI{
				services: []catalogResult[[]swarm.Service]{ok(svcs)},
				tasks:    []catalogResult[[]swarm.Task]{okTasks},
				nodes:    []catalogResult[[]swarm.Node]{{err: errCatalogEngine}, {v: nodes}},
			},
			polls: 2,
			want: []step{
				{Err: "catalog not ready: list nodes: engine exploded"},
				{Version: goodCatalog.Version, Ready: true},
			},
			wantLog:   []string{"WARN catalog poll failed; serving the last good catalog", "INFO catalog poll recovered"},
			wantCalls: map[string]int{"services": 2, "tasks": 2, "nodes": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &catalogLogRecords{}
			fake := tt.fake
			c, err := New(fake, DefaultConfig(), slog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			var got []step
			for range tt.polls {
				c.poll(t.Context(), time.Now())
				cat, at, err := c.Current()
				s := step{Version: cat.Version, Ready: !at.IsZero()}
				if err != nil {
					s.Err = err.Error()
					if !s.Ready && !errors.Is(err, ErrNotReady) {
						t.Errorf("error %v before the first success is not ErrNotReady", err)
					}
				}
				got = append(got, s)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("steps\n got %+v\nwant %+v", got, tt.want)
			}
			if log := logs.atLeast(slog.LevelInfo); !reflect.DeepEqual(log, tt.wantLog) {
				t.Errorf("log\n got %q\nwant %q", log, tt.wantLog)
			}
			calls := map[string]int{}
			for _, k := range []string{"services", "tasks", "nodes"} {
				if n := fake.count(k); n > 0 {
					calls[k] = n
				}
			}
			if !reflect.DeepEqual(calls, tt.wantCalls) {
				t.Errorf("calls %v, want %v", calls, tt.wantCalls)
			}
		})
	}
}

// TestCatalogInstance: the catalog holds only the functions of its
// instance; one deployed before instances existed is ignored and logged
// once (again only after it came back), one of another instance silently.
func TestCatalogInstance(t *testing.T) {
	inst := contract.LabelInstance + "="
	own := catalogService("own", 1, inst+"lab")
	other := catalogService("other", 1, inst+"prod")
	old := catalogService("old", 1)
	older := catalogService("older", 1)
	list := func(s ...swarm.Service) catalogResult[[]swarm.Service] { return catalogResult[[]swarm.Service]{v: s} }
	fake := &catalogFakeAPI{
		services: []catalogResult[[]swarm.Service]{
			list(own, other, old, older), list(own, other, old, older), list(own, old), list(own, old, older),
		},
		tasks: []catalogResult[[]swarm.Task]{{}},
		nodes: []catalogResult[[]swarm.Node]{{}},
	}
	logs := &catalogLogRecords{}
	cfg := DefaultConfig()
	cfg.Instance = "lab"
	c, err := New(fake, cfg, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		c.poll(t.Context(), time.Now())
		cat, _, err := c.Current()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, fn := range cat.Functions {
			names = append(names, fn.Name)
		}
		if !reflect.DeepEqual(names, []string{"own"}) {
			t.Errorf("poll %d: functions %v, want [own]", i, names)
		}
	}
	want := []string{
		"WARN function ignored: its service has no pulse.instance label (deployed before Pulse instances existed); redeploy it with pulse deploy (CLI instance key = this pulsed's instance) to have it routed and scaled",
	}
	want = append(want, want[0], want[0]) // old, older, then older again after it was gone
	if got := logs.atLeast(slog.LevelInfo); !reflect.DeepEqual(got, want) {
		t.Errorf("log\n got %q\nwant %q", got, want)
	}
}

// TestUp: only a task Swarm wants running and reports running is up.
func TestUp(t *testing.T) {
	for _, tc := range []struct {
		desired, observed swarm.TaskState
		up                bool
	}{
		{swarm.TaskStateRunning, swarm.TaskStateRunning, true},
		{swarm.TaskStateRunning, swarm.TaskStateStarting, false},
		{swarm.TaskStateShutdown, swarm.TaskStateRunning, false},
		{swarm.TaskStateRemove, swarm.TaskStateRunning, false},
		{swarm.TaskStateRunning, swarm.TaskStateFailed, false},
	} {
		task := swarm.Task{DesiredState: tc.desired, Status: swarm.TaskStatus{State: tc.observed}}
		if got := Up(task); got != tc.up {
			t.Errorf("desired %s, observed %s: up %v, want %v", tc.desired, tc.observed, got, tc.up)
		}
	}
}
