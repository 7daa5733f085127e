package function

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// TestReadiness decides readiness from one reading of the service, its
// tasks and pulsed's catalog.
func TestReadiness(t *testing.T) {
	const v1, v2 = "sha256:v1", "sha256:v2"
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	service := func(replicas uint64, update *swarm.UpdateStatus) swarm.Service {
		return swarm.Service{
			ID: "svc",
			Spec: swarm.ServiceSpec{
				Annotations:  swarm.Annotations{Name: "hello", Labels: map[string]string{contract.LabelInstance: "lab"}},
				TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: v2, Env: []string{"A=1"}}},
				Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
			},
			UpdateStatus: update,
		}
	}
	// task is a task of image img in slot, created at t0+age seconds,
	// with its desired and observed state.
	task := func(id string, slot int, img string, age int, desired, state swarm.TaskState) swarm.Task {
		env := []string{"A=1"}
		return swarm.Task{
			ID: id, Slot: slot, ServiceID: "svc", DesiredState: desired,
			Meta:   swarm.Meta{CreatedAt: t0.Add(time.Duration(age) * time.Second)},
			Spec:   swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: img, Env: env}},
			Status: swarm.TaskStatus{State: state, Timestamp: t0.Add(time.Duration(age) * time.Second)},
		}
	}
	running := func(id string, slot int, img string) swarm.Task {
		return task(id, slot, img, 1, swarm.TaskStateRunning, swarm.TaskStateRunning)
	}
	failedTask := func(id string, slot int, img string, age int, desired swarm.TaskState, err string) swarm.Task {
		tk := task(id, slot, img, age, desired, swarm.TaskStateFailed)
		tk.Status.Err = err
		return tk
	}
	catalog := func(replicas ...contract.Replica) *contract.Catalog {
		return &contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello", ServiceID: "svc", Replicas: replicas}}}
	}
	routed := func(id string) contract.Replica { return contract.Replica{TaskID: id, State: "running", Routed: true} }
	unrouted := func(id string) contract.Replica { return contract.Replica{TaskID: id, State: "running"} }
	updateStatus := func(state swarm.UpdateState, msg string) *swarm.UpdateStatus {
		return &swarm.UpdateStatus{State: state, Message: msg}
	}

	tests := []struct {
		name    string
		svc     swarm.Service
		tasks   []swarm.Task
		cat     *contract.Catalog
		want    int
		pending string
		failed  string // the error's text; it must wrap ErrFailed
	}{
		{
			name:  "every replica running and routed: ready",
			svc:   service(2, updateStatus(swarm.UpdateStateCompleted, "update completed")),
			tasks: []swarm.Task{running("a", 1, v2), running("b", 2, v2)},
			cat:   catalog(routed("a"), routed("b")),
			want:  2,
		},
		{
			name:    "one replica not routed yet",
			svc:     service(2, nil),
			tasks:   []swarm.Task{running("a", 1, v2), running("b", 2, v2)},
			cat:     catalog(routed("a"), unrouted("b")),
			want:    2,
			pending: "1 of 2 replicas routed by the gateway (waiting for b)",
		},
		{
			name:    "a replica pulsed does not list yet",
			svc:     service(2, nil),
			tasks:   []swarm.Task{running("a", 1, v2), running("b", 2, v2)},
			cat:     catalog(routed("a")),
			want:    2,
			pending: "1 of 2 replicas routed by the gateway (waiting for b)",
		},
		{
			name: "the previous spec's task stopped in Swarm but still routed",
			svc:  service(1, updateStatus(swarm.UpdateStateCompleted, "")),
			tasks: []swarm.Task{running("new", 1, v2),
				task("old", 1, v1, 0, swarm.TaskStateShutdown, swarm.TaskStateShutdown)},
			cat:     catalog(routed("new"), routed("old")),
			want:    1,
			pending: "the gateway still routes 1 replica(s) that are not the service's current ones",
		},
		{
			name: "the previous spec's task told to stop and still running",
			svc:  service(1, updateStatus(swarm.UpdateStateCompleted, "")),
			tasks: []swarm.Task{running("new", 1, v2),
				task("old", 1, v1, 0, swarm.TaskStateShutdown, swarm.TaskStateRunning)},
			cat:     catalog(routed("new"), contract.Replica{TaskID: "old", Draining: true}),
			want:    1,
			pending: "1 replica(s) told to stop still running",
		},
		{
			name:    "the previous spec's task still wanted: the update goes on",
			svc:     service(1, updateStatus(swarm.UpdateStateUpdating, "")),
			tasks:   []swarm.Task{running("old", 1, v1), task("new", 1, v2, 2, swarm.TaskStateRunning, swarm.TaskStateStarting)},
			cat:     catalog(routed("old")),
			want:    1,
			pending: "0 of 1 replicas running the current spec, 1 starting",
		},
		{
			// A deploy that rolls the replica credential changes the secret
			// only; Swarm may not have marked the update yet.
			name: "the running task mounts the replaced credential secret: not ready",
			svc: func() swarm.Service {
				s := service(1, nil)
				s.Spec.TaskTemplate.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: "new", File: &swarm.SecretReferenceFileTarget{Name: "replica-auth"}}}
				return s
			}(),
			tasks: func() []swarm.Task {
				tk := running("old", 1, v2)
				tk.Spec.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: "old", File: &swarm.SecretReferenceFileTarget{Name: "replica-auth"}}}
				return []swarm.Task{tk}
			}(),
			cat:     catalog(routed("old")),
			want:    1,
			pending: "0 of 1 replicas running the current spec, 1 of the previous spec",
		},
		{
			name:    "tasks done, Swarm still monitoring the update",
			svc:     service(1, updateStatus(swarm.UpdateStateUpdating, "update in progress")),
			tasks:   []swarm.Task{running("new", 1, v2)},
			cat:     catalog(routed("new")),
			want:    1,
			pending: "the rolling update is in progress: update in progress",
		},
		{
			name: "rolled back, with Swarm's message and the task's error",
			svc: service(1, updateStatus(swarm.UpdateStateRollbackCompleted,
				"rollback completed")),
			tasks: []swarm.Task{running("old2", 1, v2),
				failedTask("new", 1, v1, 5, swarm.TaskStateShutdown, "starting container failed: bind: address already in use")},
			cat:    catalog(routed("old2")),
			want:   1,
			failed: "failed in Swarm: update rollback_completed: rollback completed; last task error: starting container failed: bind: address already in use",
		},
		{
			name:   "rollback started, the task it names no longer listed",
			svc:    service(1, updateStatus(swarm.UpdateStateRollbackStarted, "update rolled back due to failure or early termination of task new")),
			tasks:  []swarm.Task{running("old", 1, v1)},
			cat:    catalog(routed("old")),
			want:   1,
			failed: "failed in Swarm: update rollback_started: update rolled back due to failure or early termination of task new; task new is not among the service's tasks",
		},
		{
			name: "rollback started, the task it names failed with the last task error: said once",
			svc:  service(1, updateStatus(swarm.UpdateStateRollbackStarted, "update rolled back due to failure or early termination of task new")),
			tasks: []swarm.Task{running("old", 1, v1),
				failedTask("new", 1, v2, 5, swarm.TaskStateRunning, "No such image: sha256:v2")},
			cat:    catalog(routed("old")),
			want:   1,
			failed: "failed in Swarm: update rollback_started: update rolled back due to failure or early termination of task new; last task error: No such image: sha256:v2",
		},
		{
			name: "rollback started, the task it names ended without an error: its state",
			svc:  service(1, updateStatus(swarm.UpdateStateRollbackStarted, "update rolled back due to failure or early termination of task new")),
			tasks: []swarm.Task{running("old", 1, v1),
				func() swarm.Task {
					tk := task("new", 1, v2, 5, swarm.TaskStateShutdown, swarm.TaskStateOrphaned)
					tk.NodeID, tk.Status.Message = "n1", "node is down"
					return tk
				}()},
			cat:    catalog(routed("old")),
			want:   1,
			failed: "failed in Swarm: update rollback_started: update rolled back due to failure or early termination of task new; task new on node n1: orphaned (desired shutdown), node is down",
		},
		{
			name:   "update paused",
			svc:    service(1, updateStatus(swarm.UpdateStatePaused, "update paused due to failure or early termination of task x")),
			tasks:  []swarm.Task{running("old", 1, v1)},
			cat:    catalog(routed("old")),
			want:   1,
			failed: "failed in Swarm: update paused: update paused due to failure or early termination of task x; task x is not among the service's tasks",
		},
		{
			name: "a task failed and was replaced: pending, with its error",
			svc:  service(1, nil),
			tasks: []swarm.Task{failedTask("t1", 1, v2, 1, swarm.TaskStateShutdown, "No such image: sha256:v2"),
				task("t2", 1, v2, 6, swarm.TaskStateReady, swarm.TaskStatePending)},
			cat:     catalog(),
			want:    1,
			pending: "0 of 1 replicas running the current spec, 1 starting; last task error: No such image: sha256:v2",
		},
		{
			name:   "a task failed and Swarm does not replace it",
			svc:    service(1, nil),
			tasks:  []swarm.Task{failedTask("t1", 1, v2, 1, swarm.TaskStateShutdown, "No such image: sha256:v2")},
			cat:    catalog(),
			want:   1,
			failed: "failed in Swarm: task t1 of slot 1 failed and Swarm does not replace it: No such image: sha256:v2",
		},
		{
			name: "zero replicas, nothing left: ready",
			svc:  service(0, nil),
			tasks: []swarm.Task{task("a", 1, v2, 1, swarm.TaskStateShutdown, swarm.TaskStateShutdown),
				task("b", 2, v2, 1, swarm.TaskStateShutdown, swarm.TaskStateComplete)},
			cat:  catalog(),
			want: 0,
		},
		{
			name:  "zero replicas, pulsed dropped the function: ready",
			svc:   service(0, nil),
			tasks: nil,
			cat:   &contract.Catalog{},
			want:  0,
		},
		{
			name:    "zero replicas, one still draining",
			svc:     service(0, nil),
			tasks:   []swarm.Task{task("a", 1, v2, 1, swarm.TaskStateShutdown, swarm.TaskStateRunning)},
			cat:     catalog(contract.Replica{TaskID: "a", Draining: true}),
			want:    0,
			pending: "1 replica(s) told to stop still running",
		},
		{
			name:    "scaled by someone else meanwhile",
			svc:     service(3, nil),
			tasks:   []swarm.Task{running("a", 1, v2), running("b", 2, v2)},
			cat:     catalog(routed("a"), routed("b")),
			want:    2,
			pending: "the service wants 3 replicas, not 2 (scaled meanwhile?)",
		},
		{
			name:    "pulsed of another instance",
			svc:     service(1, nil),
			tasks:   []swarm.Task{running("a", 1, v2)},
			cat:     &contract.Catalog{},
			want:    1,
			pending: `pulsed does not list hello (it routes only the functions of its own instance; this one has pulse.instance="lab")`,
		},
		{
			name:  "no catalog: Swarm's part only",
			svc:   service(1, nil),
			tasks: []swarm.Task{running("a", 1, v2)},
			want:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pending, failed := readiness(tt.svc, tt.tasks, tt.cat, tt.want)
			got := ""
			if failed != nil {
				got = failed.Error()
				if !errors.Is(failed, ErrFailed) {
					t.Errorf("error %v does not wrap ErrFailed", failed)
				}
			}
			if pending != tt.pending || got != tt.failed {
				t.Errorf("readiness() =\n  pending %q\n  failed  %q\nwant\n  pending %q\n  failed  %q", pending, got, tt.pending, tt.failed)
			}
		})
	}
}

// TestWaitReadyCatalogErrors: a catalog that cannot be read ends the wait
// at once with its error; one not ready yet keeps it waiting.
func TestWaitReadyCatalogErrors(t *testing.T) {
	hello := pulseService("hello", 1, 1, 3)
	up := runningTask("t1", 1, "n2", 32768)
	up.Spec = hello.Spec.TaskTemplate
	fake := &fakeSwarmAPI{t: t, services: services(hello), tasks: []swarm.Task{up}, nodes: testNodes()}
	s := NewSwarm(fake, &fakeDistributor{}, nil)
	s.poll = time.Millisecond

	s.SetCatalog(fakeCatalog{err: fmt.Errorf("%w at http://x/v1/replicas: connection refused", ErrCatalog)})
	_, err := s.WaitReady(t.Context(), "hello", 1)
	if err == nil || err.Error() != "wait for hello: cannot read pulsed's replica catalog at http://x/v1/replicas: connection refused" {
		t.Errorf("WaitReady() = %v", err)
	}

	s.SetCatalog(fakeCatalog{err: errCatalogPending})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = s.WaitReady(ctx, "hello", 1)
	if err == nil || err.Error() != "wait for hello: pulsed's replica catalog is not ready yet: context deadline exceeded" {
		t.Errorf("WaitReady() = %v", err)
	}

	s.SetCatalog(fakeCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello",
		Replicas: []contract.Replica{{TaskID: "t1", Routed: true}}}}}})
	eps, err := s.WaitReady(t.Context(), "hello", 1)
	if err != nil || len(eps) != 1 || eps[0].Addr != "192.168.1.7:32768" {
		t.Errorf("WaitReady() = %+v, %v", eps, err)
	}
}

type fakeCatalog struct {
	cat contract.Catalog
	err error
}

func (f fakeCatalog) Catalog(context.Context) (contract.Catalog, error) { return f.cat, f.err }
