package scaler

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Hand-written fakes, only for the error and ordering paths; the swarm
// adapter is tested against the real engine (swarm_docker_test.go).

// fakeCatalog is a replica catalog whose content a test sets.
type fakeCatalog struct {
	mu        sync.Mutex
	cat       contract.Catalog
	ready     bool
	refreshes int
}

func (c *fakeCatalog) Current() (contract.Catalog, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return contract.Catalog{}, time.Time{}, ErrCatalogPending
	}
	return c.cat, time.Now(), nil
}

func (c *fakeCatalog) Refresh() {
	c.mu.Lock()
	c.refreshes++
	c.mu.Unlock()
}

// set makes the catalog hold fn with desired replicas and ready running ones.
func (c *fakeCatalog) set(fn string, labels map[string]string, desired, ready int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready = true
	cf := contract.CatalogFunction{Name: fn, ServiceID: "id-" + fn, Labels: labels, Desired: desired}
	for i := range ready {
		cf.Replicas = append(cf.Replicas, contract.Replica{TaskID: fmt.Sprintf("t%d", i), State: "running"})
	}
	cf.Replicas = append(cf.Replicas, contract.Replica{TaskID: "leaving", State: "running", Draining: true})
	for i, f := range c.cat.Functions {
		if f.Name == fn {
			c.cat.Functions[i] = cf
			return
		}
	}
	c.cat.Functions = append(c.cat.Functions, cf)
}

// fakeServices holds services in memory, bumps the version on each update
// like Swarm and refuses updates at a stale version.
type fakeServices struct {
	mu        sync.Mutex
	svcs      map[string]Service
	updates   []string // "fn:n" per applied update
	conflicts int      // the next updates that lose a race to a concurrent change
	inflight  map[string]int
	overlap   int // times two decisions of one function overlapped
	slow      time.Duration
}

func newFakeServices() *fakeServices {
	return &fakeServices{svcs: map[string]Service{}, inflight: map[string]int{}}
}

func (f *fakeServices) add(fn string, replicas int, labels map[string]string, updatedAt time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svcs[fn] = Service{ID: "id-" + fn, Name: fn, Replicas: replicas, Labels: labels, UpdatedAt: updatedAt, Version: 10}
}

func (f *fakeServices) Inspect(ctx context.Context, fn string) (Service, error) {
	defer f.enter(fn)()
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, ok := f.svcs[fn]
	if !ok {
		return Service{}, ErrNotFound
	}
	return svc, nil
}

// enter marks a call on fn in flight for f.slow, counting overlaps with
// another call on fn: the scaler's serialisation should make them
// impossible. It returns the end of the call.
func (f *fakeServices) enter(fn string) func() {
	f.mu.Lock()
	f.inflight[fn]++
	if f.inflight[fn] > 1 {
		f.overlap++
	}
	slow := f.slow
	f.mu.Unlock()
	time.Sleep(slow)
	return func() {
		f.mu.Lock()
		f.inflight[fn]--
		f.mu.Unlock()
	}
}

func (f *fakeServices) SetReplicas(ctx context.Context, svc Service, n int) error {
	defer f.enter(svc.Name)()
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.svcs[svc.Name]
	if f.conflicts > 0 {
		f.conflicts--
		cur.Version++ // someone else updated it meanwhile
		f.svcs[svc.Name] = cur
	}
	if cur.Version != svc.Version {
		return fmt.Errorf("update out of sequence: %w", ErrConflict)
	}
	cur.Replicas, cur.Version, cur.UpdatedAt = n, cur.Version+1, time.Now()
	f.svcs[svc.Name] = cur
	f.updates = append(f.updates, fmt.Sprintf("%s:%d", svc.Name, n))
	return nil
}

// snapshot returns the updates applied and the overlaps seen.
func (f *fakeServices) snapshot() (updates []string, overlap int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.updates...), f.overlap
}

func (f *fakeServices) replicas(fn string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svcs[fn].Replicas
}

// fakeUtilisation answers set values; a missing one is ErrNoData.
type fakeUtilisation struct {
	mu   sync.Mutex
	vals map[string]float64 // fn + "/" + aggregate
}

func (u *fakeUtilisation) set(fn string, avg, windowMax float64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.vals == nil {
		u.vals = map[string]float64{}
	}
	u.vals[fn+"/"+string(Average)], u.vals[fn+"/"+string(Max)] = avg, windowMax
}

func (u *fakeUtilisation) Utilisation(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	v, ok := u.vals[fn+"/"+string(agg)]
	if !ok {
		return 0, ErrNoData
	}
	return v, nil
}

// setDemand sets the demand the fake answers (both aggregates).
func (u *fakeUtilisation) setDemand(fn string, peak, windowMax float64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.vals == nil {
		u.vals = map[string]float64{}
	}
	u.vals[fn+"/demand/"+string(Average)], u.vals[fn+"/demand/"+string(Max)] = peak, windowMax
}

func (u *fakeUtilisation) Demand(ctx context.Context, fn string, agg Aggregate, window time.Duration) (float64, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	v, ok := u.vals[fn+"/demand/"+string(agg)]
	if !ok {
		return 0, ErrNoData
	}
	return v, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
