package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

const keysTestCred = "keys-test-replica-credential"

// keysReplica is a stand-in watchdog that serves only requests carrying
// keysTestCred (403 otherwise, health included) and answers with its name
// and the Authorization headers it saw.
func keysReplica(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Values(contract.HeaderReplicaAuth); len(got) != 1 || got[0] != keysTestCred {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"forbidden"}`+"\n")
			return
		}
		if r.URL.Path == contract.HealthPath {
			io.WriteString(w, "ok")
			return
		}
		fmt.Fprintf(w, "%s auth=%q", name, r.Header.Values("Authorization"))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestReconcilerKeys runs invoke keys on a real HAProxy driven by the
// reconciler: keys set before HAProxy starts are enforced from its start, a
// key is added, rotated and removed without a reload (same worker, same
// reload count), a function without keys is open, the key never reaches
// the function, and the keys survive a reload. The replicas serve only
// requests with the replica credential, so the test also shows HAProxy's
// checks and the reconciler's probe present it.
func TestReconcilerKeys(t *testing.T) {
	hx := hxSetup(t, hxSetupOptions{})
	cfg := DefaultReconcileConfig()
	cfg.HAProxyBin = hx.cfg.Binary
	cfg.ConfigFile = hx.cfgPath
	cfg.Debounce, cfg.Resync = 10*time.Millisecond, 300*time.Millisecond
	cfg.ProbeFor = time.Minute // a probe without the credential would never set a replica ready in time
	cfg.Render = RenderConfig{
		Listen: hx.front, AdminListen: routesFreeAddr(t), RuntimeSocket: filepath.Join(hx.dir, "stats.sock"),
		ServerStateFile: filepath.Join(hx.dir, "server-state"), KeysMap: filepath.Join(hx.dir, "keys.map"),
		ReplicaAuth: keysTestCred, Balance: BalanceRoundRobin, CheckInterval: 100 * time.Millisecond,
	}
	rec := NewReconciler(cfg, hx.hx, hx.rt, hxLogger(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	k1, k2, k3 := "key-one-AAAA", "key-two-BBBB", "key-three-CCCC"
	// Before HAProxy runs: kept, and written where HAProxy will read it.
	if err := rec.SetKeys(ctx, map[string][]string{"f": {contract.KeyDigest(k1)}}); err != nil {
		t.Fatalf("SetKeys before start: %v", err)
	}
	if fi, err := os.Stat(cfg.Render.KeysMap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys map: %v, %v; want a 0600 file", fi, err)
	}
	if b, _ := os.ReadFile(cfg.Render.KeysMap); strings.Contains(string(b), k1) {
		t.Fatal("the keys map holds a key")
	}
	initial, err := Render(cfg.Render, contract.Catalog{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hx.cfgPath, initial, 0o600); err != nil {
		t.Fatal(err)
	}
	hx.start(t)
	cats := make(chan contract.Catalog, 1)
	done := make(chan struct{})
	go func() { defer close(done); _ = rec.Run(ctx, cats) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	// No function yet: no backend uses the map, HAProxy has not loaded
	// it, and the reconciler is still healthy (pulsed's /healthz at a
	// fresh `make up`).
	cats <- contract.Catalog{Version: "0"}
	time.Sleep(3 * cfg.Resync)
	if err := rec.Err(); err != nil {
		t.Fatalf("keys set and no function routed: %v", err)
	}

	addr := keysReplica(t, "r1")
	fn := func(name string) contract.CatalogFunction {
		return contract.CatalogFunction{Name: name, ServiceID: "svc-" + name, Desired: 1,
			Replicas: []contract.Replica{{TaskID: "t" + name, Addr: addr, State: "running"}}}
	}
	cats <- contract.Catalog{Version: "1", Functions: []contract.CatalogFunction{fn("f"), fn("open")}}

	call := func(target, key string) routesResponse {
		t.Helper()
		h := http.Header{}
		if key != "" {
			h.Set("Authorization", "Bearer "+key)
		}
		r, err := routesDo(hx.front, "GET", target, h, "")
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		return r
	}
	expect := func(what, target, key string, status int) routesResponse {
		t.Helper()
		r := call(target, key)
		if r.status != status {
			t.Fatalf("%s: status %d (%q), want %d", what, r.status, r.body, status)
		}
		return r
	}
	deadline := time.Now().Add(5 * time.Second)
	for call("/function/f", k1).status != 200 || call("/function/open", "").status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("f with its key or open: not served within 5 s (last: %d, %d)", call("/function/f", k1).status, call("/function/open", "").status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := expect("no key", "/function/f", "", 401)
	if r.body != `{"error":"invoke key required","function":"f"}`+"\n" || r.header.Get("WWW-Authenticate") != `Bearer realm="pulse"` || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("401: %q %v", r.body, r.header)
	}
	expect("wrong key", "/function/f", "nope", 401)
	if r := expect("right key", "/function/f", k1, 200); r.body != `r1 auth=[]` {
		t.Errorf("the function saw %q: want no Authorization", r.body)
	}
	if r := expect("open function", "/function/open", k1, 200); r.body != `r1 auth=["Bearer `+k1+`"]` {
		t.Errorf("the open function saw %q: want its Authorization untouched", r.body)
	}

	reloads, pid := rec.Reloads(), hx.workerPID(t)
	set := func(keys map[string][]string) {
		t.Helper()
		if err := rec.SetKeys(ctx, keys); err != nil {
			t.Fatalf("SetKeys(%v): %v", keys, err)
		}
	}
	// Rotation: add k2, both work; remove k1, only k2 works. At once.
	set(map[string][]string{"f": {contract.KeyDigest(k1), contract.KeyDigest(k2)}})
	expect("k1 during rotation", "/function/f", k1, 200)
	expect("k2 during rotation", "/function/f", k2, 200)
	set(map[string][]string{"f": {contract.KeyDigest(k2)}})
	expect("k1 after rotation", "/function/f", k1, 401)
	expect("k2 after rotation", "/function/f", k2, 200)
	// No keys: open. Keys again: closed.
	set(map[string][]string{})
	expect("no keys left", "/function/f", "", 200)
	set(map[string][]string{"f": {contract.KeyDigest(k3)}, "open": nil})
	expect("k3", "/function/f", k3, 200)
	expect("k2 gone", "/function/f", k2, 401)
	expect("still open", "/function/open", "", 200)
	if got, gotPID := rec.Reloads(), hx.workerPID(t); got != reloads || gotPID != pid {
		t.Errorf("keys changed by a reload: reloads %d → %d, worker %d → %d", reloads, got, pid, gotPID)
	}

	// A reload (a function added) loads the keys from the file.
	cats <- contract.Catalog{Version: "2", Functions: []contract.CatalogFunction{fn("f"), fn("g"), fn("open")}}
	deadline = time.Now().Add(5 * time.Second)
	for rec.Reloads() == reloads || call("/function/g", "").status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("no reload for g within 5 s (reloads %d)", rec.Reloads())
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect("k3 after the reload", "/function/f", k3, 200)
	expect("no key after the reload", "/function/f", "", 401)
	expect("k1 after the reload", "/function/f", k1, 401)

	// Refused input: nothing changes.
	for _, bad := range []map[string][]string{
		{"F": {contract.KeyDigest("x")}},
		{"f": {"abc"}},
		{"f": {strings.ToUpper(contract.KeyDigest("x"))}},
		{"f/x": {contract.KeyDigest("x")}},
	} {
		if err := rec.SetKeys(ctx, bad); err == nil {
			t.Errorf("SetKeys(%v) accepted", bad)
		}
	}
	expect("k3 after refused changes", "/function/f", k3, 200)

	// pulsed restarts while HAProxy runs on: the new reconciler reloads
	// before it is given the keys, and HAProxy keeps the file's keys
	// meanwhile (no function opens).
	cancel()
	<-done
	stopped = true
	rec2 := NewReconciler(cfg, hx.hx, hx.rt, hxLogger(t))
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	cats2 := make(chan contract.Catalog, 1)
	go func() { defer close(done2); _ = rec2.Run(ctx2, cats2) }()
	defer func() { cancel2(); <-done2 }()
	cats2 <- contract.Catalog{Version: "2", Functions: []contract.CatalogFunction{fn("f"), fn("g"), fn("open")}}
	deadline = time.Now().Add(5 * time.Second)
	for rec2.Reloads() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the restarted reconciler did not reload")
		}
		time.Sleep(20 * time.Millisecond)
	}

	expect("no key after the restart", "/function/f", "", 401)
	expect("k3 after the restart", "/function/f", k3, 200)
	if err := rec2.SetKeys(ctx2, map[string][]string{"f": {contract.KeyDigest(k1)}}); err != nil {
		t.Fatal(err)
	}
	expect("k1 set on the restarted reconciler", "/function/f", k1, 200)
	expect("k3 removed", "/function/f", k3, 401)
}

func TestSetKeysWithoutMap(t *testing.T) {
	rec := NewReconciler(DefaultReconcileConfig(), nil, nil, nil)
	err := rec.SetKeys(context.Background(), map[string][]string{"f": {contract.KeyDigest("k")}})
	if err == nil || !strings.Contains(err.Error(), "no keys map") {
		t.Errorf("SetKeys without KeysMap = %v, want a refusal", err)
	}
}

func TestRenderKeysMap(t *testing.T) {
	d1, d2 := contract.KeyDigest("a"), contract.KeyDigest("b")
	got, err := RenderKeysMap(map[string][]string{"zeta": {d2, d1}, "alpha": {d1}, "open": nil})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(got)), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	want := []string{"alpha required", "alpha/" + d1 + " ok", "zeta required", "zeta/" + d2 + " ok", "zeta/" + d1 + " ok"} // sorted: d2 < d1
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("map lines\n %q\nwant\n %q", lines, want)
	}
	m, err := parseShowMap("0x55d0e2 alpha required\n0x55d0e3 alpha/" + d1 + " ok\n")
	if err != nil || len(m) != 2 || m["alpha"] != "required" {
		t.Errorf("parseShowMap = %v, %v", m, err)
	}
	if _, err := parseShowMap("garbage\n"); err == nil {
		t.Error("parseShowMap accepted garbage")
	}
	b, _ := json.Marshal(got)
	if strings.Contains(string(b), `"a"`) {
		t.Error("map holds a key")
	}
}
