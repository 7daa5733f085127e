package catalog_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/enginetest"
)

// Settings of the real-swarm test.
const (
	// catalogTestTimeout bounds each wait.
	catalogTestTimeout = 90 * time.Second
	// catalogTestHealthInterval makes new replicas healthy, and so running,
	// fast.
	catalogTestHealthInterval = 250 * time.Millisecond
	// catalogTestDrainGrace keeps a stopping replica running for longer
	// than a slow poll, so its draining is seen however the polls fall.
	catalogTestDrainGrace = 3 * time.Second
	// catalogTestLatency is the longest a running replica may take to
	// reach the catalog: ~0.1 s on a quiet host (fast polling), seen at
	// 2.15 s with the host's load average at 20, when one task list call
	// takes a second.
	catalogTestLatency = 5 * time.Second
	// catalogTestLabel marks the test's resources (the in-package tests
	// label theirs with the same key).
	catalogTestLabel = "pulse.test"
)

// catalogBinaries are the watchdog and the echo function, built once.
var catalogBinaries struct {
	once     sync.Once
	watchdog []byte
	function []byte
	err      error
}

func catalogTestBinaries(t *testing.T) (watchdog, fn []byte) {
	t.Helper()
	catalogBinaries.once.Do(func() {
		dir := t.TempDir()
		wd, echo := filepath.Join(dir, "watchdog"), filepath.Join(dir, "echo")
		run := func(env []string, name string, args ...string) error {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, name, args...)
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
			}
			return nil
		}
		if err := run([]string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", wd, "../../cmd/pulse-watchdog"); err != nil {
			catalogBinaries.err = err
			return
		}
		if err := run(nil, "gcc", "-static", "-Os", "-s", "-o", echo, "testdata/catalog_echo.c"); err != nil {
			catalogBinaries.err = err
			return
		}
		var err error
		if catalogBinaries.watchdog, err = os.ReadFile(wd); err != nil {
			catalogBinaries.err = err
			return
		}
		catalogBinaries.function, catalogBinaries.err = os.ReadFile(echo)
	})
	if catalogBinaries.err != nil {
		t.Fatalf("build the test binaries: %v", catalogBinaries.err)
	}
	return catalogBinaries.watchdog, catalogBinaries.function
}

// catalogCountingAPI counts the catalog's Docker calls: the poll rate.
type catalogCountingAPI struct {
	catalog.API
	mu           sync.Mutex
	serviceLists []time.Time
	taskLog      []string
}

func (a *catalogCountingAPI) TaskList(ctx context.Context, opts swarm.TaskListOptions) ([]swarm.Task, error) {
	tasks, err := a.API.TaskList(ctx, opts)
	now := time.Now()
	a.mu.Lock()
	for _, t := range tasks {
		a.taskLog = append(a.taskLog, fmt.Sprintf("%s %s %s/%s ports=%d %s", now.Format("15:04:05.000"), t.ID[:8], t.DesiredState, t.Status.State, len(t.Status.PortStatus.Ports), t.Status.Message))
	}
	a.mu.Unlock()
	return tasks, err
}

func (a *catalogCountingAPI) ServiceList(ctx context.Context, opts swarm.ServiceListOptions) ([]swarm.Service, error) {
	a.mu.Lock()
	a.serviceLists = append(a.serviceLists, time.Now())
	a.mu.Unlock()
	return a.API.ServiceList(ctx, opts)
}

// logTask logs how the task lists showed a task, at each change.
func (a *catalogCountingAPI) logTask(t *testing.T, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var last string
	for _, l := range a.taskLog {
		at, what, _ := strings.Cut(l, " ")
		if strings.HasPrefix(what, id[:8]) && what != last {
			t.Log(at, what)
			last = what
		}
	}
}

// polls returns the times of the polls since from.
func (a *catalogCountingAPI) polls(from time.Time) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := sort.Search(len(a.serviceLists), func(i int) bool { return !a.serviceLists[i].Before(from) })
	return slices.Clone(a.serviceLists[i:])
}

// catalogSeen is the test function as one catalog showed it (nil: absent).
type catalogSeen struct {
	at time.Time
	fn *contract.CatalogFunction
}

// catalogRecorder keeps what every catalog from Subscribe showed of one
// function.
type catalogRecorder struct {
	name string
	mu   sync.Mutex
	seen []catalogSeen
}

func (r *catalogRecorder) run(ch <-chan contract.Catalog) {
	for cat := range ch {
		s := catalogSeen{at: time.Now()}
		for _, fn := range cat.Functions {
			if fn.Name == r.name {
				s.fn = &fn
			}
		}
		r.mu.Lock()
		r.seen = append(r.seen, s)
		r.mu.Unlock()
	}
}

func (r *catalogRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// waitFor waits for a catalog from index from on that satisfies cond and
// returns its index.
func (r *catalogRecorder) waitFor(t *testing.T, what string, from int, cond func(fn *contract.CatalogFunction) bool) (int, catalogSeen) {
	t.Helper()
	deadline := time.Now().Add(catalogTestTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		for i := from; i < len(r.seen); i++ {
			if cond(r.seen[i].fn) {
				s := r.seen[i]
				r.mu.Unlock()
				return i, s
			}
		}
		last := "nothing"
		if n := len(r.seen); n > 0 {
			last = fmt.Sprintf("%+v", r.seen[n-1].fn)
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no catalog with %s within %v; the last showed %s", what, catalogTestTimeout, last)
		}
		<-tick.C
	}
}

func (r *catalogRecorder) since(from int) []catalogSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen[from:])
}

// catalogServing returns the replicas not draining.
func catalogServing(fn *contract.CatalogFunction) []contract.Replica {
	if fn == nil {
		return nil
	}
	var out []contract.Replica
	for _, r := range fn.Replicas {
		if !r.Draining {
			out = append(out, r)
		}
	}
	return out
}

// catalogTestWriter sends log lines to the test log.
type catalogTestWriter struct{ t *testing.T }

func (w catalogTestWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestCatalogSwarm runs the catalog against the real swarm: one replica
// that answers its health check, a scale to 3 (each new replica in the
// catalog within catalogTestLatency of running), a scale to 1 (the two
// leaving replicas draining before they disappear), the service's removal
// (its replicas draining, then the function gone), and the poll rate fast
// while converging and slow when steady.
func TestCatalogSwarm(t *testing.T) {
	api := enginetest.SwarmManager(t)
	wd, echo := catalogTestBinaries(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	name := "pt-catalog-" + suffix
	runLabel := catalogTestLabel + ".run"

	sw := function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
	// The instance's replica credential secret, as pulsed creates it (a
	// deploy needs it; the replicas check it). Removed last: after the
	// service that uses it.
	instance := "test-" + suffix
	cred := "catalog-test-credential-" + suffix
	sec, err := api.SecretCreate(t.Context(), swarm.SecretSpec{
		Annotations: swarm.Annotations{
			Name: contract.ReplicaAuthSecretName(instance, cred),
			Labels: map[string]string{contract.LabelInstance: instance, contract.LabelRole: contract.RoleReplicaAuth,
				catalogTestLabel: "1", runLabel: suffix},
		},
		Data: []byte(cred),
	})
	if err != nil {
		t.Fatalf("create the replica credential secret: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), catalogTestTimeout)
		defer cancel()
		if err := api.SecretRemove(ctx, sec.ID); err != nil {
			t.Errorf("cleanup: remove secret %s: %v", sec.ID, err)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), catalogTestTimeout)
		defer cancel()
		if err := sw.Remove(ctx, name); err != nil && !errors.Is(err, function.ErrNotFound) {
			t.Errorf("cleanup: %v", err)
		}
		imgs, err := api.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", runLabel+"="+suffix))})
		if err != nil {
			t.Errorf("cleanup: list images: %v", err)
		}
		for _, img := range imgs {
			if _, err := api.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
				t.Errorf("cleanup: remove image %s: %v", img.ID, err)
			}
		}
	})

	img, err := function.Assemble(function.ImageSpec{
		Tag: "pulse-test/" + name + ":v1",
		Files: []function.File{
			{Path: "/pulse-watchdog", Mode: 0o755, Content: wd},
			{Path: "/function", Mode: 0o755, Content: echo},
		},
		Entrypoint:   []string{"/pulse-watchdog"},
		User:         "65534:65534",
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
		Labels:       map[string]string{contract.LabelFunction: name, catalogTestLabel: "1", runLabel: suffix},
	})
	if err != nil {
		t.Fatal(err)
	}

	// The catalog sees only this test's function: its own instance, and
	// the run label as a selector on top.
	cfg := catalog.DefaultConfig()
	cfg.Instance = instance
	cfg.Selector = []string{runLabel + "=" + suffix}
	counting := &catalogCountingAPI{API: api}
	log := slog.New(slog.NewTextHandler(catalogTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cat, err := catalog.New(counting, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	rec := &catalogRecorder{name: name}
	ch := cat.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := cat.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wg.Go(func() { rec.run(ch) })
	t.Cleanup(func() { cancel(); wg.Wait() }) // runs first: no logging after the test

	call := func() context.Context {
		c, cancel := context.WithTimeout(t.Context(), catalogTestTimeout)
		t.Cleanup(cancel)
		return c
	}
	health := func(addr string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(call(), http.MethodGet, "http://"+addr+contract.HealthPath, nil)
		req.Header.Set(contract.HeaderReplicaAuth, cred)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("health of %s: %v", addr, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("health of %s: %s", addr, resp.Status)
		}
	}
	// latencies measures, for each replica, the time from Swarm reporting
	// its task running to the catalog holding it.
	var latencies []time.Duration
	measure := func(seen catalogSeen, rs []contract.Replica, known map[string]bool) {
		t.Helper()
		for _, r := range rs {
			if known[r.TaskID] {
				continue
			}
			known[r.TaskID] = true
			task, _, err := api.TaskInspectWithRaw(call(), r.TaskID)
			if err != nil {
				t.Fatal(err)
			}
			d := seen.at.Sub(task.Status.Timestamp)
			latencies = append(latencies, d)
			t.Logf("replica %s at %s: running → in the catalog in %v", r.TaskID, r.Addr, d.Round(time.Millisecond))
			if d > catalogTestLatency {
				t.Errorf("replica %s reached the catalog %v after running, want at most %v", r.TaskID, d, catalogTestLatency)
			}
		}
	}
	known := map[string]bool{}

	// 1. Deploy one replica.
	spec := function.Spec{
		Name: name, Lang: function.LangC, Mode: contract.ModeFork,
		Timeout: 5 * time.Second, MaxBody: 1 << 20,
		Scale:  function.Scale{Metric: "inflight", Target: 10, Min: 1, Max: 3},
		Labels: map[string]string{catalogTestLabel: "1", runLabel: suffix},
	}
	opts := function.DeployOptions{HealthInterval: catalogTestHealthInterval, DrainGrace: catalogTestDrainGrace, Instance: cfg.Instance}
	if _, err := sw.Deploy(call(), spec, img, opts); err != nil {
		t.Fatal(err)
	}
	_, seen := rec.waitFor(t, "1 replica", 0, func(fn *contract.CatalogFunction) bool { return len(catalogServing(fn)) == 1 })
	if seen.fn.Desired != 1 || seen.fn.Labels[contract.LabelTimeout] != "5s" || seen.fn.Labels[contract.LabelFunction] != name {
		t.Errorf("function %+v: want desired 1 and the service's labels", seen.fn)
	}
	measure(seen, seen.fn.Replicas, known)
	health(seen.fn.Replicas[0].Addr)
	got, _, err := cat.Current()
	if err != nil || got.Version == "" {
		t.Errorf("Current() = %+v, %v", got, err)
	}
	// Served over HTTP as it is.
	srv := httptest.NewServer(catalog.NewHandler(cat))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + contract.CatalogPath)
	if err != nil {
		t.Fatal(err)
	}
	var served contract.Catalog
	err = json.NewDecoder(resp.Body).Decode(&served)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") != `"`+served.Version+`"` || len(served.Functions) != 1 {
		t.Errorf("GET %s: %s, ETag %s, %+v, %v", contract.CatalogPath, resp.Status, resp.Header.Get("ETag"), served, err)
	}

	// 2. Steady: the poller slows down.
	steadyPolls := func(what string) {
		t.Helper()
		start := time.Now()
		deadline := start.Add(catalogTestTimeout)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			ps := counting.polls(start)
			if n := len(ps); n >= 4 {
				slow := true
				for i := n - 3; i < n; i++ {
					if d := ps[i].Sub(ps[i-1]); d < cfg.SlowPoll*9/10 {
						slow = false
					}
				}
				if slow {
					t.Logf("%s: slow polling after %v (%d polls)", what, time.Since(start).Round(time.Millisecond), n)
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the poller never slowed down: %d polls in %v", what, len(ps), catalogTestTimeout)
			}
			<-tick.C
		}
	}
	steadyPolls("after the deploy")

	// 3. Scale to 3: fast polling until the new replicas are in.
	from := rec.len()
	scaled := time.Now()
	if err := sw.Scale(call(), name, 3, false); err != nil {
		t.Fatal(err)
	}
	_, seen = rec.waitFor(t, "3 replicas", from, func(fn *contract.CatalogFunction) bool { return len(catalogServing(fn)) == 3 })
	t.Logf("scale 1 → 3: in the catalog %v after the scale", seen.at.Sub(scaled).Round(time.Millisecond))
	if seen.fn.Desired != 3 {
		t.Errorf("desired %d, want 3", seen.fn.Desired)
	}
	measure(seen, seen.fn.Replicas, known)
	for _, r := range seen.fn.Replicas {
		health(r.Addr)
	}
	steadyPolls("after the scale up")

	// Refresh polls at once, however slow the poller is.
	refreshed := time.Now()
	cat.Refresh()
	// A poll in flight finishes first (a task list takes longer on a busy
	// host): within half the slow period, not at its end.
	for len(counting.polls(refreshed)) == 0 {
		if time.Since(refreshed) > cfg.SlowPoll/2 {
			t.Fatalf("no poll within %v of Refresh", cfg.SlowPoll/2)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("refresh: polled %v after Refresh", counting.polls(refreshed)[0].Sub(refreshed).Round(time.Millisecond))

	// 4. Scale to 1: the two leaving replicas drain before they go.
	three := catalogServing(seen.fn)
	from = rec.len()
	if err := sw.Scale(call(), name, 1, false); err != nil {
		t.Fatal(err)
	}
	_, final := rec.waitFor(t, "1 replica and none draining", from, func(fn *contract.CatalogFunction) bool {
		return fn != nil && len(fn.Replicas) == 1 && len(catalogServing(fn)) == 1
	})
	stays := final.fn.Replicas[0].TaskID
	history := rec.since(from)
	// While the replicas drain (the drain grace, 3 s), the polls are fast.
	var drainStart time.Time
	for _, s := range history {
		if s.fn != nil && len(catalogServing(s.fn)) < len(s.fn.Replicas) {
			drainStart = s.at
			break
		}
	}
	if !drainStart.IsZero() {
		var gaps []time.Duration
		ps := counting.polls(drainStart)
		for i := 1; i < len(ps) && ps[i].Before(final.at); i++ {
			gaps = append(gaps, ps[i].Sub(ps[i-1]))
		}
		slices.Sort(gaps)
		if len(gaps) < 5 || gaps[len(gaps)/2] > 2*cfg.FastPoll {
			t.Errorf("draining: poll gaps %v, want a median of at most %v", gaps, 2*cfg.FastPoll)
		} else {
			t.Logf("draining for %v: %d polls, median gap %v", final.at.Sub(drainStart).Round(time.Millisecond),
				len(gaps)+1, gaps[len(gaps)/2].Round(time.Millisecond))
		}
	}
	for _, r := range three {
		var states []string // how each catalog showed the replica
		for _, s := range history {
			state := "gone"
			var replicas []contract.Replica
			if s.fn != nil {
				replicas = s.fn.Replicas
			}
			for _, x := range replicas {
				if x.TaskID == r.TaskID {
					state = map[bool]string{true: "draining", false: "serving"}[x.Draining]
				}
			}
			if len(states) == 0 || states[len(states)-1] != state {
				states = append(states, state)
			}
		}
		want := []string{"serving", "draining", "gone"}
		if r.TaskID == stays {
			want = []string{"serving"}
		}
		if states[0] != "serving" { // the first catalog may already show the drain
			states = append([]string{"serving"}, states...)
		}
		if !slices.Equal(states, want) {
			t.Errorf("replica %s went %v, want %v", r.TaskID, states, want)
		}
		if t.Failed() {
			counting.logTask(t, r.TaskID)
		}
	}

	// 5. Remove the service: the last replica drains, then the function
	// is gone.
	from = rec.len()
	removed := time.Now()
	if err := sw.Remove(call(), name); err != nil {
		t.Fatal(err)
	}
	_, seen = rec.waitFor(t, "the function gone", from, func(fn *contract.CatalogFunction) bool { return fn == nil })
	t.Logf("removed: gone from the catalog %v after the removal", seen.at.Sub(removed).Round(time.Millisecond))
	var drained bool
	for _, s := range rec.since(from) {
		if s.fn != nil && s.fn.Desired == 0 && len(s.fn.Replicas) == 1 && s.fn.Replicas[0].TaskID == stays && s.fn.Replicas[0].Draining {
			drained = true
		}
	}
	if !drained {
		t.Errorf("the removed function's replica %s was never shown draining: %+v", stays, rec.since(from))
	}
	_, _, err = cat.Current()
	if err != nil {
		t.Errorf("Current() after the removal: %v", err)
	}
	slices.Sort(latencies)
	t.Logf("running → catalog over %d replicas: min %v, median %v, max %v", len(latencies),
		latencies[0].Round(time.Millisecond), latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
}
