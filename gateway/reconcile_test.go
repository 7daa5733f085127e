package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testport"
)

// recLab is a real HAProxy driven by a Reconciler from hand-made catalogs.
type recLab struct {
	t      *testing.T
	hx     *hxInstance
	cfg    ReconcileConfig
	rec    *Reconciler
	cats   chan contract.Catalog
	cancel context.CancelFunc
	done   chan struct{}
	addrs  map[string]string // replica name → address
}

func newRecLab(t *testing.T) *recLab {
	t.Helper()
	hx := hxSetup(t, hxSetupOptions{})
	backup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "cold") }))
	t.Cleanup(backup.Close)
	adminAddr := testport.Addr(t)
	cfg := DefaultReconcileConfig()
	cfg.HAProxyBin = hx.cfg.Binary
	cfg.ConfigFile = hx.cfgPath
	cfg.Debounce, cfg.Resync = 10*time.Millisecond, 500*time.Millisecond
	cfg.Render = RenderConfig{
		Listen: hx.front, AdminListen: adminAddr, RuntimeSocket: filepath.Join(hx.dir, "stats.sock"),
		ServerStateFile: filepath.Join(hx.dir, "server-state"), BackupAddr: backup.Listener.Addr().String(),
		Balance: BalanceRoundRobin, CheckInterval: 200 * time.Millisecond,
	}
	initial, err := Render(cfg.Render, contract.Catalog{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hx.cfgPath, initial, 0o644); err != nil {
		t.Fatal(err)
	}
	hx.start(t)
	l := &recLab{t: t, hx: hx, cfg: cfg, addrs: map[string]string{}}
	l.startReconciler()
	return l
}

func (l *recLab) startReconciler() {
	ctx, cancel := context.WithCancel(context.Background())
	l.rec = NewReconciler(l.cfg, l.hx.hx, l.hx.rt, hxLogger(l.t))
	l.cats, l.cancel, l.done = make(chan contract.Catalog, 1), cancel, make(chan struct{})
	go func() {
		defer close(l.done)
		_ = l.rec.Run(ctx, l.cats)
	}()
	l.t.Cleanup(l.stopReconciler)
}

func (l *recLab) stopReconciler() {
	l.cancel()
	<-l.done
}

// replica starts (once) a stand-in replica answering its name.
func (l *recLab) replica(name string) string {
	if a, ok := l.addrs[name]; ok {
		return a
	}
	a, _ := hxReplica(l.t, name, nil)
	l.addrs[name] = a
	return a
}

// send gives the reconciler a catalog of function f with these replicas
// ("~" suffix: draining) and desired count.
func (l *recLab) send(desired int, names ...string) {
	fn := contract.CatalogFunction{Name: "f", ServiceID: "svc", Desired: desired, Labels: map[string]string{contract.LabelFunction: "f"}}
	for _, n := range names {
		draining := strings.HasSuffix(n, "~")
		n = strings.TrimSuffix(n, "~")
		fn.Replicas = append(fn.Replicas, contract.Replica{TaskID: "task" + n, Addr: l.replica(n), State: "running", Draining: draining})
	}
	l.cats <- contract.Catalog{Version: strconv.Itoa(len(names)), Functions: []contract.CatalogFunction{fn}}
}

// spread sends n requests through the gateway and counts who answered.
func (l *recLab) spread(n int) map[string]int {
	l.t.Helper()
	c := &hxClient{addr: l.hx.front}
	defer c.close()
	seen := map[string]int{}
	for range n {
		st, body, err := c.get("/function/f")
		if err != nil {
			l.t.Fatalf("request: %v", err)
		}
		if st != 200 {
			body = strconv.Itoa(st)
		}
		seen[body]++
	}
	return seen
}

// until polls the spread of 20 requests until ok says it is right.
func (l *recLab) until(what string, ok func(map[string]int) bool) map[string]int {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := l.spread(20)
		if ok(seen) {
			return seen
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: still %v after 10 s (slots %s)", what, seen, l.rec.Slots())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *recLab) waitRouted(what string, ok func(map[string]bool) bool) {
	l.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := l.rec.Routing()
		if ok(r["f"]) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: routed %v after 10 s", what, r["f"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReconcilerSlots walks a function through its life against a real
// HAProxy: a replica comes, more come without a reload, one drains and
// goes, the function sits at zero (only then the cold-start backup takes
// requests), outgrows its slots (one reload), and pulsed restarts while
// HAProxy runs on without moving any replica to another slot.
func TestReconcilerSlots(t *testing.T) {
	l := newRecLab(t)

	l.send(1, "a")
	l.until("a serves", func(m map[string]int) bool { return m["a"] == 20 })
	l.waitRouted("taska routed", func(r map[string]bool) bool { return r["taska"] && len(r) == 1 })
	reloads := l.rec.Reloads()

	l.send(3, "a", "b", "c")
	l.until("a, b and c serve", func(m map[string]int) bool { return m["a"] > 0 && m["b"] > 0 && m["c"] > 0 })
	if got := l.rec.Reloads(); got != reloads {
		t.Fatalf("adding replicas reloaded HAProxy %d times", got-reloads)
	}

	l.send(2, "a~", "b", "c")
	l.until("a drained", func(m map[string]int) bool { return m["a"] == 0 && m["b"]+m["c"] == 20 })
	l.send(2, "b", "c")
	l.waitRouted("b and c routed, a not", func(r map[string]bool) bool { return !r["taska"] && r["taskb"] && r["taskc"] })

	// At zero the backup (cold-start path) takes requests; with a replica
	// again, it does not.
	l.send(0)
	l.until("cold path at zero", func(m map[string]int) bool { return m["cold"] == 20 })
	l.send(1, "d")
	l.until("d serves, not the cold path", func(m map[string]int) bool { return m["d"] == 20 })

	// Nine replicas do not fit in eight slots: one reload, and all serve.
	names := []string{"d", "e", "f", "g", "h", "i", "j", "k", "l"}
	reloads = l.rec.Reloads()
	l.send(len(names), names...)
	l.until("nine replicas serve", func(m map[string]int) bool { return len(m) == 9 && m["cold"] == 0 })
	if got := l.rec.Reloads(); got != reloads+1 {
		t.Fatalf("growing to nine replicas took %d reloads, want 1", got-reloads)
	}
	before := l.rec.Slots()

	// pulsed restarts; HAProxy keeps running. The new reconciler finds
	// every replica where HAProxy has it: nothing is re-pointed.
	l.stopReconciler()
	l.startReconciler()
	l.send(len(names), names...)
	l.until("nine replicas serve after the restart", func(m map[string]int) bool { return len(m) == 9 })
	deadline := time.Now().Add(5 * time.Second)
	for fmt.Sprint(l.rec.Slots()) != fmt.Sprint(before) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := l.rec.Slots(); got.String() != before.String() {
		t.Fatalf("slots after the restart:\n%s\nbefore:\n%s", got, before)
	}
	if err := l.rec.Err(); err != nil {
		t.Fatalf("reconcile error: %v", err)
	}
}

// TestReloadRetiredWorker: a keep-alive connection opened before a reload
// is served by the retired worker, which does not know a function added
// by that reload: it answers 503 "retry" (and closes), never 404, and the
// retry on a new connection reaches the function.
func TestReloadRetiredWorker(t *testing.T) {
	l := newRecLab(t)
	l.send(1, "a")
	l.until("a serves", func(m map[string]int) bool { return m["a"] == 20 })

	old := &hxClient{addr: l.hx.front}
	defer old.close()
	if st, body, err := old.get("/function/f"); err != nil || st != 200 || body != "a" {
		t.Fatalf("before the reload: %d %q %v", st, body, err)
	}
	cat := contract.Catalog{Version: "2", Functions: []contract.CatalogFunction{
		{Name: "f", Desired: 1, Labels: map[string]string{contract.LabelFunction: "f"},
			Replicas: []contract.Replica{{TaskID: "taska", Addr: l.replica("a"), State: "running"}}},
		{Name: "g", Desired: 1, Labels: map[string]string{contract.LabelFunction: "g"},
			Replicas: []contract.Replica{{TaskID: "taskb", Addr: l.replica("b"), State: "running"}}},
	}}
	reloads := l.rec.Reloads()
	l.cats <- cat
	deadline := time.Now().Add(10 * time.Second)
	for l.rec.Reloads() == reloads {
		if time.Now().After(deadline) {
			t.Fatal("no reload for the new function")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, body, err := old.get("/function/g")
	t.Logf("retired worker: %d %q %v", st, body, err)
	if err == nil && st != http.StatusServiceUnavailable {
		t.Fatalf("the new function on a connection from before the reload: %d %q, want 503 (retry) or a closed connection", st, body)
	}
	if err == nil && !strings.Contains(body, "gateway reloading") {
		t.Fatalf("503 body %q", body)
	}
	fresh := &hxClient{addr: l.hx.front}
	defer fresh.close()
	for {
		st, body, err = fresh.get("/function/g")
		if err == nil && st == 200 && body == "b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new function on a new connection: %d %q %v", st, body, err)
		}
		fresh.close()
		time.Sleep(20 * time.Millisecond)
	}
}
