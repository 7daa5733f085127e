package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// staticCatalog is a CatalogReader holding a catalog the test sets.
type staticCatalog struct {
	mu        sync.Mutex
	cat       contract.Catalog
	refreshes int
}

func (s *staticCatalog) Current() (contract.Catalog, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cat, time.Now(), nil
}
func (s *staticCatalog) Refresh() { s.mu.Lock(); s.refreshes++; s.mu.Unlock() }
func (s *staticCatalog) set(c contract.Catalog) {
	s.mu.Lock()
	s.cat = c
	s.mu.Unlock()
}

type stubStats struct {
	stats []BackendStat
	err   error
}

func (s *stubStats) Stats(context.Context) ([]BackendStat, error) { return s.stats, s.err }

type recordingSleeper struct{ slept []string }

func (r *recordingSleeper) ScaleToZero(_ context.Context, fn, _ string) error {
	r.slept = append(r.slept, fn)
	return nil
}

func TestIdleWatcher(t *testing.T) {
	idleFn := func(name string, desired int, idle string) contract.CatalogFunction {
		l := map[string]string{contract.LabelFunction: name}
		if idle != "" {
			l[contract.LabelScaleIdle] = idle
		}
		return contract.CatalogFunction{Name: name, Labels: l, Desired: desired}
	}
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{
		idleFn("sleepy", 1, "10s"), idleFn("busy", 1, "10s"), idleFn("never", 1, ""), idleFn("asleep", 0, "10s"),
	}}}
	stats := &stubStats{stats: []BackendStat{
		{Backend: "fn_sleepy", Requests: 5}, {Backend: "fn_busy", Requests: 5},
		{Backend: "fn_never", Requests: 5}, {Backend: "fn_asleep"},
	}}
	sl := &recordingSleeper{}
	w := NewIdleWatcher(cat, stats, sl, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration, busyRequests int64) {
		stats.stats[1].Requests = busyRequests
		w.check(context.Background(), t0.Add(at))
	}
	step(0, 5)
	step(5*time.Second, 6)
	step(9*time.Second, 7)
	if len(sl.slept) != 0 {
		t.Fatalf("slept %v before any idle period passed", sl.slept)
	}
	step(10*time.Second, 8)
	if !reflect.DeepEqual(sl.slept, []string{"sleepy"}) {
		t.Fatalf("slept %v, want [sleepy]", sl.slept)
	}
	// Once asleep the period restarts: no second call in the next 10 s.
	step(15*time.Second, 9)
	if len(sl.slept) != 1 {
		t.Fatalf("slept %v, want one call", sl.slept)
	}
	// A session in progress (a long request) is activity even with the
	// request counter unchanged.
	stats.stats[0].Sessions = 1
	step(30*time.Second, 10)
	stats.stats[0].Sessions = 0
	step(39*time.Second, 11)
	if len(sl.slept) != 1 {
		t.Fatalf("slept %v while a session was open within the period", sl.slept)
	}
	// Counters that cannot be read count as activity.
	stats.err = errors.New("socket gone")
	step(60*time.Second, 11)
	stats.err = nil
	step(65*time.Second, 11)
	if len(sl.slept) != 1 {
		t.Fatalf("slept %v after unreadable counters", sl.slept)
	}
	// From 65 s on neither moved: both sleep 10 s later.
	step(75*time.Second, 11)
	if !reflect.DeepEqual(sl.slept, []string{"sleepy", "sleepy", "busy"}) {
		t.Errorf("slept %v, want [sleepy sleepy busy]", sl.slept)
	}
}

// TestIdleWatcherBusy: a function waking through the cold-start path is
// not idle, whatever HAProxy's counters say.
func TestIdleWatcherBusy(t *testing.T) {
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "f", Desired: 1,
		Labels: map[string]string{contract.LabelScaleIdle: "5s"}}}}}
	stats := &stubStats{stats: []BackendStat{{Backend: "fn_f", Requests: 1}}}
	sl := &recordingSleeper{}
	w := NewIdleWatcher(cat, stats, sl, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	busy := true
	w.Busy = func(fn string) bool { return fn == "f" && busy }
	t0 := time.Unix(1000, 0)
	for s := 0; s <= 20; s += 5 {
		w.check(context.Background(), t0.Add(time.Duration(s)*time.Second))
	}
	if len(sl.slept) != 0 {
		t.Fatalf("slept %v while busy", sl.slept)
	}
	busy = false
	w.check(context.Background(), t0.Add(22*time.Second))
	w.check(context.Background(), t0.Add(25*time.Second))
	if !reflect.DeepEqual(sl.slept, []string{"f"}) {
		t.Errorf("slept %v, want [f] once no longer busy for 5 s", sl.slept)
	}
}
