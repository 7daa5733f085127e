package swarmscale

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// fakeAPI answers from its fields to reach the error paths; the engine's
// own behaviour is covered where the real swarm is used (function's and
// scaler's docker tests, which go through this package).
type fakeAPI struct {
	svcs       map[string]swarm.Service // by what is asked: name, ID or prefix
	inspectErr error
	bump       bool    // every inspect sees a newer version
	updateErrs []error // of successive updates
	taskErr    error
	inspects   int
	updates    []string // "version:replicas"
}

func (f *fakeAPI) ServiceInspectWithRaw(_ context.Context, id string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	f.inspects++
	if f.inspectErr != nil {
		return swarm.Service{}, nil, f.inspectErr
	}
	svc, ok := f.svcs[id]
	if !ok {
		return swarm.Service{}, nil, fmt.Errorf("service %s: %w", id, cerrdefs.ErrNotFound)
	}
	if f.bump {
		svc.Version.Index += uint64(f.inspects)
	}
	return svc, nil, nil
}

func (f *fakeAPI) ServiceUpdate(_ context.Context, _ string, v swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	if opts.QueryRegistry {
		return swarm.ServiceUpdateResponse{}, errors.New("asked to query a registry")
	}
	n, _ := Replicas(spec)
	f.updates = append(f.updates, fmt.Sprintf("%d:%d", v.Index, n))
	if len(f.updateErrs) > 0 {
		err := f.updateErrs[0]
		f.updateErrs = f.updateErrs[1:]
		return swarm.ServiceUpdateResponse{}, err
	}
	return swarm.ServiceUpdateResponse{}, nil
}

func (f *fakeAPI) TaskList(context.Context, swarm.TaskListOptions) ([]swarm.Task, error) {
	return []swarm.Task{{ID: "t1"}}, f.taskErr
}

var (
	errEngine   = errors.New("engine exploded")
	errSequence = errors.New("Error response from daemon: rpc error: code = Unknown desc = update out of sequence")
)

func function(name string, labels ...string) swarm.Service {
	l := map[string]string{contract.LabelFunction: name}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	two := uint64(2)
	return swarm.Service{
		ID:   "id-" + name,
		Meta: swarm.Meta{Version: swarm.Version{Index: 10}},
		Spec: swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: name, Labels: l},
			Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &two}},
		},
	}
}

func TestInspect(t *testing.T) {
	hello := function("hello", contract.LabelInstance, "lab")
	nginx := function("nginx")
	delete(nginx.Spec.Labels, contract.LabelFunction)
	legacy := function("legacy")
	global := function("global", contract.LabelInstance, "lab")
	global.Spec.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
	svcs := map[string]swarm.Service{"hello": hello, "hel": hello, "nginx": nginx, "legacy": legacy, "global": global}

	tests := []struct {
		name, instance, fn string
		inspectErr         error
		want               string // "" when found
		wantIs             error
	}{
		{name: "found, any instance", fn: "hello"},
		{name: "found, its instance", instance: "lab", fn: "hello"},
		{name: "no such service", fn: "nope", want: "no such function", wantIs: ErrNotFound},
		{name: "an ID prefix the engine matched", fn: "hel", want: "no such function", wantIs: ErrNotFound},
		{name: "not a function", fn: "nginx", want: "no such function: service nginx is not a Pulse function (no pulse.function=nginx label)", wantIs: ErrNotFound},
		{name: "another instance", instance: "prod", fn: "hello",
			want: `no such function: function hello belongs to Pulse instance "lab" (label pulse.instance), not to this one ("prod")`, wantIs: ErrNotFound},
		{name: "deployed before instances", instance: "lab", fn: "legacy",
			want: `no such function: function legacy has no pulse.instance label (deployed before instances existed): redeploy it to give it instance "lab"`, wantIs: ErrNotFound},
		{name: "deployed before instances, any instance", fn: "legacy"},
		{name: "engine failing", fn: "hello", inspectErr: errEngine, want: "inspect service hello: engine exploded", wantIs: errEngine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Instance = tt.instance
			c := New(&fakeAPI{svcs: svcs, inspectErr: tt.inspectErr}, cfg)
			svc, err := c.Inspect(t.Context(), tt.fn)
			got := ""
			if err != nil {
				got = err.Error()
			} else if svc.Spec.Name != tt.fn {
				t.Errorf("Inspect(%s) read %s", tt.fn, svc.Spec.Name)
			}
			if got != tt.want || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Errorf("Inspect(%s) = %q, want %q wrapping %v", tt.fn, got, tt.want, tt.wantIs)
			}
		})
	}
}

func TestScale(t *testing.T) {
	hello := function("hello")
	global := function("global")
	global.Spec.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
	svcs := map[string]swarm.Service{"hello": hello, "global": global}
	three := func(swarm.Service) (int, error) { return 3, nil }
	errLimit := errors.New("above max")

	tests := []struct {
		name    string
		fake    fakeAPI
		retries int
		fn      string
		decide  Decide
		want    string
		wantIs  error
		updates []string
	}{
		{name: "first try", fn: "hello", decide: three, retries: 5, updates: []string{"10:3"}},
		{name: "lost races are read again and retried", fn: "hello", decide: three, retries: 5,
			fake:    fakeAPI{bump: true, updateErrs: []error{errSequence, errSequence, nil}},
			updates: []string{"11:3", "12:3", "13:3"}},
		{name: "gives up after the retries", fn: "hello", decide: three, retries: 1,
			fake:    fakeAPI{updateErrs: []error{errSequence, errSequence}},
			want:    "update service hello: the service changed since it was read (" + errSequence.Error() + ")",
			wantIs:  ErrConflict,
			updates: []string{"10:3", "10:3"}},
		{name: "another engine error is not retried", fn: "hello", decide: three, retries: 5,
			fake:    fakeAPI{updateErrs: []error{errEngine}},
			want:    "update service hello: engine exploded",
			wantIs:  errEngine,
			updates: []string{"10:3"}},
		{name: "decide refuses", fn: "hello", retries: 5,
			decide: func(swarm.Service) (int, error) { return 9, errLimit },
			want:   "above max", wantIs: errLimit},
		{name: "a negative count", fn: "hello", retries: 5,
			decide: func(swarm.Service) (int, error) { return -1, nil },
			want:   "update service hello: -1 replicas: want 0 or more"},
		{name: "global mode", fn: "global", decide: three, retries: 5, want: "the service is not replicated", wantIs: ErrNotReplicated},
		{name: "no such function", fn: "nope", decide: three, retries: 5, want: "no such function", wantIs: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := tt.fake
			fake.svcs = svcs
			cfg := DefaultConfig()
			cfg.ConflictRetries = tt.retries
			_, n, err := New(&fake, cfg).Scale(t.Context(), tt.fn, tt.decide)
			got := ""
			if err != nil {
				got = err.Error()
			} else if n != 3 {
				t.Errorf("Scale wrote %d replicas, want 3", n)
			}
			if got != tt.want || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Errorf("Scale() = %q, want %q wrapping %v", got, tt.want, tt.wantIs)
			}
			if !reflect.DeepEqual(fake.updates, tt.updates) {
				t.Errorf("updates %v, want %v", fake.updates, tt.updates)
			}
		})
	}
}

func TestWait(t *testing.T) {
	svcs := map[string]swarm.Service{"hello": function("hello")}
	cfg := DefaultConfig()
	cfg.Poll = time.Millisecond

	// Pending twice, then done.
	calls := 0
	err := New(&fakeAPI{svcs: svcs}, cfg).Wait(t.Context(), "hello", func(_ context.Context, svc swarm.Service, tasks []swarm.Task) (string, error) {
		calls++
		if svc.ID != "id-hello" || len(tasks) != 1 {
			t.Errorf("check got %s with %d tasks", svc.ID, len(tasks))
		}
		if calls < 3 {
			return "not yet", nil
		}
		return "", nil
	})
	if err != nil || calls != 3 {
		t.Errorf("Wait() = %v after %d checks, want nil after 3", err, calls)
	}

	// The check's failure ends the wait at once.
	errRolledBack := errors.New("rolled back")
	err = New(&fakeAPI{svcs: svcs}, cfg).Wait(t.Context(), "hello", func(context.Context, swarm.Service, []swarm.Task) (string, error) {
		return "", errRolledBack
	})
	if !errors.Is(err, errRolledBack) {
		t.Errorf("Wait() = %v, want the check's error", err)
	}

	// The deadline: what was pending, wrapping the context's error.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err = New(&fakeAPI{svcs: svcs}, cfg).Wait(ctx, "hello", func(context.Context, swarm.Service, []swarm.Task) (string, error) {
		return "1 of 2 replicas running", nil
	})
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "1 of 2 replicas running: context deadline exceeded" {
		t.Errorf("Wait() = %v, want the pending state and the deadline", err)
	}

	// The engine's errors.
	err = New(&fakeAPI{svcs: svcs, taskErr: errEngine}, cfg).Wait(t.Context(), "hello", nil)
	if !errors.Is(err, errEngine) || err.Error() != "list tasks: engine exploded" {
		t.Errorf("Wait() = %v, want the task list's error", err)
	}
	if err := New(&fakeAPI{svcs: svcs}, cfg).Wait(t.Context(), "gone", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait() = %v, want ErrNotFound", err)
	}
}

func TestIsOutOfSequence(t *testing.T) {
	for err, want := range map[error]bool{
		nil:         false,
		errEngine:   false,
		errSequence: true,
		fmt.Errorf("update service x: %w", errSequence): true,
	} {
		if got := IsOutOfSequence(err); got != want {
			t.Errorf("IsOutOfSequence(%v) = %v, want %v", err, got, want)
		}
	}
}
