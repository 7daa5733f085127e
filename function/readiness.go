package function

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/swarmscale"
)

// Errors of WaitReady.
var (
	// ErrFailed: Swarm gave up on the change. The error says Swarm's own
	// reason: the update's state and message (paused, rolled back) or the
	// task error (e.g. "No such image", "bind: address already in use").
	ErrFailed = errors.New("failed in Swarm")
	// ErrCatalog: pulsed's replica catalog could not be read.
	ErrCatalog = errors.New("cannot read pulsed's replica catalog")
	// errCatalogPending: pulsed runs but has not read the swarm yet.
	errCatalogPending = errors.New("pulsed's replica catalog is not ready yet")
)

// CatalogSource reads pulsed's replica catalog, which says which replicas
// the gateway routes (contract.Replica.Routed).
type CatalogSource interface {
	Catalog(ctx context.Context) (contract.Catalog, error)
}

// WaitReady polls until the function is ready, and returns the endpoints of
// its replicas. Ready means: the service wants exactly want replicas and has
// that many tasks of its current spec running, none starting, none of a
// previous spec left (wanted or still running), no replica still stopping,
// Swarm's rolling update over, and — with a catalog (SetCatalog) — pulsed
// lists each of those tasks as routed by the gateway and routes no other.
// The readiness comes from pulsed, never from probing replicas: a remote
// CLI cannot reach them, and a replica that answers is not yet one the
// gateway sends requests to.
//
// It fails at once, with Swarm's reason and wrapping ErrFailed, when the
// service's update is paused or rolled back, or a task of the current spec
// failed and Swarm does not replace it; a task that failed and was replaced
// only shows, as the last task error, in the error on the deadline. ctx
// bounds the wait: give it a deadline. A catalog that cannot be read fails
// the wait wrapping ErrCatalog.
func (s *Swarm) WaitReady(ctx context.Context, name string, want int) ([]Endpoint, error) {
	fail := func(err error) ([]Endpoint, error) { return nil, fmt.Errorf("wait for %s: %w", name, err) }
	var last []swarm.Task
	err := s.scaler().Wait(ctx, name, func(ctx context.Context, svc swarm.Service, tasks []swarm.Task) (string, error) {
		var cat *contract.Catalog
		if s.catalog != nil {
			c, err := s.catalog.Catalog(ctx)
			if errors.Is(err, errCatalogPending) {
				return err.Error(), nil
			}
			if err != nil {
				return "", err
			}
			cat = &c
		}
		last = tasks
		return readiness(svc, tasks, cat, want)
	})
	if err != nil {
		return fail(err)
	}
	sortTasks(last)
	nodes := s.newNodeCache()
	eps := []Endpoint{}
	for _, t := range last {
		if !catalog.Up(t) {
			continue
		}
		ep, ok, err := nodes.endpoint(ctx, t)
		if err != nil {
			return fail(err)
		}
		if ok {
			eps = append(eps, ep)
		}
	}
	return eps, nil
}

// readiness judges one reading: the service, all its tasks (Swarm's history
// included), pulsed's catalog (nil: Swarm's part only) and the replica count
// the caller set. pending says what is not ready yet ("" when ready); failed
// is Swarm giving up, with its reason.
func readiness(svc swarm.Service, tasks []swarm.Task, cat *contract.Catalog, want int) (pending string, failed error) {
	name := svc.Spec.Name
	lastErr := lastTaskError(tasks)
	withLastErr := func(msg string) string {
		if lastErr != "" {
			msg += "; last task error: " + lastErr
		}
		return msg
	}

	// Swarm's verdict on a rolling update.
	var updating string
	if u := svc.UpdateStatus; u != nil {
		message := ""
		if u.Message != "" {
			message = ": " + u.Message
		}
		switch u.State {
		case swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
			return "", fmt.Errorf("%w: update %s%s%s", ErrFailed, u.State, withLastErr(message), namedTask(u.Message, tasks, lastErr))
		case swarm.UpdateStateUpdating:
			updating = "the rolling update is in progress" + message
		}
	}
	if t, ok := givenUp(svc, tasks); ok {
		return "", fmt.Errorf("%w: task %s of slot %d failed and Swarm does not replace it: %s", ErrFailed, t.ID, t.Slot, t.Status.Err)
	}

	// Swarm's tasks.
	var up []swarm.Task
	var starting, stale, stopping int
	for _, t := range tasks {
		wanted := t.DesiredState == swarm.TaskStateRunning || t.DesiredState == swarm.TaskStateReady
		switch {
		case wanted && !currentSpec(t, svc):
			stale++
		case wanted && t.Status.State == swarm.TaskStateRunning:
			up = append(up, t)
		case wanted:
			starting++
		case t.Status.State == swarm.TaskStateRunning: // told to stop, still draining
			stopping++
		}
	}
	have := fmt.Sprintf("%d of %d replicas running the current spec", len(up), want)
	if n, _ := swarmscale.Replicas(svc.Spec); n != want {
		return fmt.Sprintf("the service wants %d replicas, not %d (scaled meanwhile?)", n, want), nil
	}
	switch {
	case starting > 0:
		return withLastErr(fmt.Sprintf("%s, %d starting", have, starting)), nil
	case stale > 0:
		return withLastErr(fmt.Sprintf("%s, %d of the previous spec", have, stale)), nil
	case len(up) != want:
		return withLastErr(have), nil
	case stopping > 0:
		return fmt.Sprintf("%d replica(s) told to stop still running", stopping), nil
	case updating != "":
		return updating, nil
	}
	if cat == nil {
		return "", nil
	}

	// pulsed's gateway.
	i := slices.IndexFunc(cat.Functions, func(f contract.CatalogFunction) bool { return f.Name == name })
	if i < 0 {
		if want == 0 {
			return "", nil
		}
		return fmt.Sprintf("pulsed does not list %s (it routes only the functions of its own instance; this one has %s=%q)",
			name, contract.LabelInstance, svc.Spec.Labels[contract.LabelInstance]), nil
	}
	routed := map[string]bool{}
	for _, r := range cat.Functions[i].Replicas {
		if r.Routed {
			routed[r.TaskID] = true
		}
	}
	var notRouted []string
	for _, t := range up {
		if !routed[t.ID] {
			notRouted = append(notRouted, t.ID)
		}
		delete(routed, t.ID)
	}
	switch {
	case len(notRouted) > 0:
		return fmt.Sprintf("%d of %d replicas routed by the gateway (waiting for %s)", want-len(notRouted), want, strings.Join(notRouted, ", ")), nil
	case len(routed) > 0:
		return fmt.Sprintf("the gateway still routes %d replica(s) that are not the service's current ones", len(routed)), nil
	}
	return "", nil
}

// givenUp finds a task of the current spec that failed and that Swarm does
// not replace: its desired state is shutdown (the restart supervisor's mark)
// and no newer task took its slot. With Pulse's restart policy (any, no
// attempt limit) Swarm always replaces a failed task, so this is a service
// whose restart policy was changed by hand.
func givenUp(svc swarm.Service, tasks []swarm.Task) (swarm.Task, bool) {
	newest := map[string]swarm.Task{}
	for _, t := range tasks {
		k := fmt.Sprint(t.Slot)
		if t.Slot == 0 { // global mode: one task per node
			k = t.NodeID
		}
		if n, ok := newest[k]; !ok || t.CreatedAt.After(n.CreatedAt) {
			newest[k] = t
		}
	}
	for _, k := range slices.Sorted(maps.Keys(newest)) {
		t := newest[k]
		failed := t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected
		if failed && t.DesiredState == swarm.TaskStateShutdown && t.Status.Err != "" && currentSpec(t, svc) {
			return t, true
		}
	}
	return swarm.Task{}, false
}

// namedTask says what became of the task an update status message names
// ("... due to failure or early termination of task ID"), when the last task
// error does not already say it: a task that ended without an error (shut
// down, orphaned with its node) or that is no longer listed.
func namedTask(message string, tasks []swarm.Task, lastErr string) string {
	_, id, ok := strings.Cut(message, " of task ")
	if id = strings.TrimSpace(id); !ok || id == "" || strings.ContainsAny(id, " \t") {
		return ""
	}
	i := slices.IndexFunc(tasks, func(t swarm.Task) bool { return t.ID == id })
	if i < 0 {
		return fmt.Sprintf("; task %s is not among the service's tasks", id)
	}
	t := tasks[i]
	if t.Status.Err != "" && t.Status.Err == lastErr {
		return ""
	}
	msg := fmt.Sprintf("; task %s on node %s: %s (desired %s)", id, t.NodeID, t.Status.State, t.DesiredState)
	if t.Status.Err != "" {
		msg += ": " + t.Status.Err
	} else if t.Status.Message != "" {
		msg += ", " + t.Status.Message
	}
	return msg
}

// lastTaskError is the most recent error Swarm reported on any task.
func lastTaskError(tasks []swarm.Task) string {
	var msg string
	var at time.Time
	for _, t := range tasks {
		if t.Status.Err != "" && (msg == "" || t.Status.Timestamp.After(at)) {
			msg, at = t.Status.Err, t.Status.Timestamp
		}
	}
	return msg
}

// currentSpec reports whether a task runs its service's current container
// spec. A task's spec is a copy of the service's task template taken when
// the task was created, but the engine reports it with fewer defaults, so
// only what a deploy changes is compared: image, environment, arguments,
// secrets (the replica credential rolls by a new secret) and forced
// updates.
func currentSpec(t swarm.Task, svc swarm.Service) bool {
	a, b := t.Spec.ContainerSpec, svc.Spec.TaskTemplate.ContainerSpec
	if a == nil || b == nil {
		return a == b
	}
	return a.Image == b.Image && slices.Equal(a.Env, b.Env) && slices.Equal(a.Args, b.Args) && slices.Equal(a.Command, b.Command) &&
		slices.Equal(secretIDs(a.Secrets), secretIDs(b.Secrets)) && t.Spec.ForceUpdate == svc.Spec.TaskTemplate.ForceUpdate
}

// secretIDs are the secrets a container spec mounts, as "ID:target" in
// order: a deploy that rolls the replica credential (a new secret, same
// image and environment) changes only these.
func secretIDs(refs []*swarm.SecretReference) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		target := ""
		if r.File != nil {
			target = r.File.Name
		}
		out = append(out, r.SecretID+":"+target)
	}
	return out
}
