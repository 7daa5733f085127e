package catalog

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/swarmaddr"
)

// isFunctionService reports a service deployed as a Pulse function: its
// pulse.function label names it (as the CLI's list requires too, so both
// show the same functions).
func isFunctionService(svc swarm.Service) bool {
	return svc.Spec.Name != "" && svc.Spec.Labels[contract.LabelFunction] == svc.Spec.Name
}

// Up reports a task that counts as a running replica: Swarm wants it running
// and reports it running. A task with a health check turns running only once
// healthy; one being replaced or scaled away has its desired state changed
// first and is out at once (the catalog lists it as draining).
func Up(t swarm.Task) bool {
	return t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning
}

// isTerminalTask reports an observed state a task does not leave.
func isTerminalTask(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed,
		swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// stillLeaving is the part of in.gone that still has tasks to stop: tasks
// Swarm is removing, or, within removeGrace of the removal, tasks it has not
// marked yet.
func stillLeaving(in input, now time.Time) map[string]goneService {
	out := map[string]goneService{}
	for _, t := range in.tasks {
		g, ok := in.gone[t.ServiceID]
		if !ok || isTerminalTask(t.Status.State) {
			continue
		}
		if t.DesiredState != swarm.TaskStateRunning || now.Sub(g.since) < removeGrace {
			out[t.ServiceID] = g
		}
	}
	return out
}

// build turns one reading of the swarm into the catalog. A replica is
// a task observed running whose node address and published watchdog port
// are known; it is draining when Swarm no longer wants it running (scale
// down, rolling update) or its service was removed, and then keeps the
// address it had (Swarm clears the ports at once). pending says why the
// swarm is not steady ("" when it is): the poller polls fast meanwhile.
func build(in input) (contract.Catalog, string) {
	byService := map[string][]swarm.Task{}
	for _, t := range in.tasks {
		byService[t.ServiceID] = append(byService[t.ServiceID], t)
	}
	byName := map[string]*contract.CatalogFunction{}
	var pending []string
	var skipped []contract.SkippedFunction

	replica := func(t swarm.Task, draining bool) (contract.Replica, bool) {
		if t.Status.State != swarm.TaskStateRunning {
			return contract.Replica{}, false
		}
		addr, ok := "", false
		if node, known := in.nodes[t.NodeID]; known {
			addr, ok = swarmaddr.Addr(node, t)
		}
		if !ok && draining {
			addr, ok = in.addrs[t.ID]
		}
		if !ok {
			return contract.Replica{}, false
		}
		return contract.Replica{
			TaskID:   t.ID,
			Slot:     t.Slot,
			Node:     t.NodeID,
			Addr:     addr,
			State:    string(t.Status.State),
			Draining: draining,
		}, true
	}

	for _, svc := range in.services {
		if !isFunctionService(svc) {
			continue
		}
		name := svc.Spec.Name
		if _, err := CheckFunction(name, svc.Spec.Labels); err != nil {
			// Unusable by the gateway (and the collector, the scaler):
			// left out with its reason, the others served.
			skipped = append(skipped, contract.SkippedFunction{Name: name, ServiceID: svc.ID, Reason: err.Error()})
			continue
		}
		fn := &contract.CatalogFunction{
			Name:      name,
			ServiceID: svc.ID,
			Labels:    copyLabels(svc.Spec.Labels),
			Replicas:  []contract.Replica{},
		}
		byName[name] = fn
		replicated := svc.Spec.Mode.Replicated != nil
		if replicated && svc.Spec.Mode.Replicated.Replicas != nil {
			fn.Desired = int(*svc.Spec.Mode.Replicated.Replicas)
		}
		var running, wanted int
		for _, t := range byService[svc.ID] {
			want := t.DesiredState == swarm.TaskStateRunning
			if want {
				wanted++
			}
			switch {
			case Up(t):
				running++
			case want:
				pending = append(pending, fmt.Sprintf("%s: task %s %s", name, t.ID, t.Status.State))
			case !isTerminalTask(t.Status.State): // draining, or not started yet
				pending = append(pending, fmt.Sprintf("%s: task %s %s, desired %s", name, t.ID, t.Status.State, t.DesiredState))
			}
			if r, ok := replica(t, !want); ok {
				fn.Replicas = append(fn.Replicas, r)
			}
		}
		if !replicated {
			fn.Desired = wanted // global: one task per eligible node
		}
		if running != fn.Desired {
			pending = append(pending, fmt.Sprintf("%s: %d of %d replicas running", name, running, fn.Desired))
		}
		if u := svc.UpdateStatus; u != nil && (u.State == swarm.UpdateStateUpdating || u.State == swarm.UpdateStateRollbackStarted) {
			pending = append(pending, fmt.Sprintf("%s: update %s", name, u.State))
		}
	}

	// Removed services: whatever still runs is leaving.
	for _, id := range slices.Sorted(maps.Keys(in.gone)) {
		gone := in.gone[id].fn
		for _, t := range byService[id] {
			if !isTerminalTask(t.Status.State) {
				pending = append(pending, fmt.Sprintf("%s: removed service %s: task %s %s", gone.Name, id, t.ID, t.Status.State))
			}
			r, ok := replica(t, true)
			if !ok {
				continue
			}
			fn := byName[gone.Name]
			if fn == nil {
				fn = &contract.CatalogFunction{Name: gone.Name, ServiceID: id, Labels: copyLabels(gone.Labels), Replicas: []contract.Replica{}}
				byName[gone.Name] = fn
			}
			fn.Replicas = append(fn.Replicas, r)
		}
	}

	cat := contract.Catalog{Functions: make([]contract.CatalogFunction, 0, len(byName))}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		fn := byName[name]
		slices.SortFunc(fn.Replicas, func(a, b contract.Replica) int { return strings.Compare(a.TaskID, b.TaskID) })
		cat.Functions = append(cat.Functions, *fn)
	}
	if len(skipped) > 0 {
		slices.SortFunc(skipped, func(a, b contract.SkippedFunction) int {
			return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ServiceID, b.ServiceID))
		})
		cat.Skipped = skipped
	}
	cat.Version = contentVersion(cat.Functions)
	if len(skipped) > 0 {
		cat.Version = contentVersion(cat.Functions, skipped...)
	}
	slices.Sort(pending)
	switch len(pending) {
	case 0:
		return cat, ""
	case 1:
		return cat, pending[0]
	default:
		return cat, fmt.Sprintf("%s (and %d more)", pending[0], len(pending)-1)
	}
}

// replicaAddrs maps the task IDs of cat's replicas to their addresses.
func replicaAddrs(cat contract.Catalog) map[string]string {
	m := map[string]string{}
	for _, fn := range cat.Functions {
		for _, r := range fn.Replicas {
			m[r.TaskID] = r.Addr
		}
	}
	return m
}

// copyLabels copies a service's labels; never nil, so the JSON is {}.
func copyLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	maps.Copy(out, l)
	return out
}

// contentVersion is a hash of the catalog's content: it changes exactly when
// the content does. encoding/json writes map keys sorted, and the functions
// and replicas are sorted, so equal content encodes equally.
func contentVersion(fns []contract.CatalogFunction, skipped ...contract.SkippedFunction) string {
	b, err := json.Marshal(fns)
	if err != nil { // strings, ints and bools only: cannot happen
		panic(fmt.Sprintf("encode catalog: %v", err))
	}
	if len(skipped) > 0 {
		sk, err := json.Marshal(skipped)
		if err != nil {
			panic(fmt.Sprintf("encode catalog: %v", err))
		}
		b = append(b, sk...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func countReplicas(cat contract.Catalog) int {
	n := 0
	for _, fn := range cat.Functions {
		n += len(fn.Replicas)
	}
	return n
}
