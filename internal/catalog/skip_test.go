package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/enginetest"
)

// catalogTestLabel marks the services the package's real-engine tests
// create (swarm_test.go, in package catalog_test, labels its own with the
// same key).
const catalogTestLabel = "pulse.test"

// catalogSkipServices are a good function and three the gateway cannot
// use, each with a task running.
func catalogSkipServices() ([]swarm.Service, []swarm.Task) {
	svcs := []swarm.Service{
		catalogService("good", 1),
		catalogService("bad-timeout", 1, contract.LabelTimeout+"=abc"),
		catalogService("bad-body", 1, contract.LabelMaxBody+"=-1"),
		catalogService("Odd_Name", 1),
	}
	tasks := []swarm.Task{
		catalogTask("good", "t1", 1, "n1", catRunning, catRunning, 30001),
		catalogTask("bad-timeout", "t2", 1, "n1", catRunning, catRunning, 30002),
		catalogTask("bad-body", "t3", 1, "n1", catRunning, catRunning, 30003),
		catalogTask("Odd_Name", "t4", 1, "n1", catRunning, catRunning, 30004),
	}
	return svcs, tasks
}

// TestCatalogSkipsBadFunctions: any number of unusable services are left
// out, each with its reason, and the rest is listed as usual.
func TestCatalogSkipsBadFunctions(t *testing.T) {
	svcs, tasks := catalogSkipServices()
	cat, _ := build(input{services: svcs, tasks: tasks, nodes: catalogNodes})
	if len(cat.Functions) != 1 || cat.Functions[0].Name != "good" || len(cat.Functions[0].Replicas) != 1 {
		t.Fatalf("functions %+v, want good with its replica", cat.Functions)
	}
	want := []contract.SkippedFunction{
		{Name: "Odd_Name", ServiceID: "svc-Odd_Name", Reason: "not a function name: want 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"},
		{Name: "bad-body", ServiceID: "svc-bad-body", Reason: `label pulse.max-body="-1": want a whole number of bytes from 1 to 1125899906842624`},
		{Name: "bad-timeout", ServiceID: "svc-bad-timeout", Reason: `label pulse.timeout="abc": want a duration such as 30s or 500ms`},
	}
	if fmt.Sprint(cat.Skipped) != fmt.Sprint(want) {
		t.Errorf("skipped\n %+v\nwant\n %+v", cat.Skipped, want)
	}
	only, _ := build(input{services: svcs[:1], tasks: tasks[:1], nodes: catalogNodes})
	if only.Version == cat.Version {
		t.Error("the version does not change with the skipped list")
	}
	if only.Skipped != nil {
		t.Errorf("skipped %v without bad services", only.Skipped)
	}
}

// TestCatalogSkippedLoggedOnce: a skipped function is logged once, not on
// every poll; again when its reason changes; and when it is fixed.
func TestCatalogSkippedLoggedOnce(t *testing.T) {
	svcs, tasks := catalogSkipServices()
	for i := range svcs {
		svcs[i].Spec.Labels[contract.LabelInstance] = contract.DefaultInstance
	}
	changed := catalogService("bad-body", 1, contract.LabelMaxBody+"=ten", contract.LabelInstance+"="+contract.DefaultInstance)
	fixed := catalogService("bad-body", 1, contract.LabelMaxBody+"=10", contract.LabelInstance+"="+contract.DefaultInstance)
	api := &catalogFakeAPI{
		services: []catalogResult[[]swarm.Service]{{v: svcs}, {v: svcs}, {v: svcs},
			{v: []swarm.Service{svcs[0], svcs[1], changed, svcs[3]}},
			{v: []swarm.Service{svcs[0], svcs[1], fixed, svcs[3]}}},
		tasks: []catalogResult[[]swarm.Task]{{v: tasks}},
		nodes: []catalogResult[[]swarm.Node]{{v: []swarm.Node{{ID: "n1", Status: swarm.NodeStatus{Addr: "10.0.0.1"}}}}},
	}
	logs := &catalogLogRecords{}
	c, err := New(api, DefaultConfig(), slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	count := func() (skipped, back int) {
		for _, r := range logs.atLeast(slog.LevelInfo) {
			switch {
			case strings.Contains(r, "function skipped"):
				skipped++
			case strings.Contains(r, "no longer skipped"):
				back++
			}
		}
		return
	}
	now := time.Now()
	for i := range 3 {
		c.poll(t.Context(), now.Add(time.Duration(i)*time.Second))
	}
	if s, b := count(); s != 3 || b != 0 {
		t.Errorf("after 3 polls: %d skip lines, %d back; want 3 (once each), 0", s, b)
	}
	cat, _, _ := c.Current()
	if len(cat.Functions) != 1 || len(cat.Skipped) != 3 {
		t.Errorf("catalog %+v", cat)
	}
	// Served as is by GET /v1/replicas, for /healthz and pulse ls.
	srv := httptest.NewServer(NewHandler(c))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + contract.CatalogPath)
	if err != nil {
		t.Fatal(err)
	}
	var served contract.Catalog
	err = json.NewDecoder(resp.Body).Decode(&served)
	resp.Body.Close()
	if err != nil || fmt.Sprint(served.Skipped) != fmt.Sprint(cat.Skipped) {
		t.Errorf("served skipped %+v (%v), want %+v", served.Skipped, err, cat.Skipped)
	}
	c.poll(t.Context(), now.Add(4*time.Second))
	if s, _ := count(); s != 4 {
		t.Errorf("after a changed reason: %d skip lines, want 4", s)
	}
	c.poll(t.Context(), now.Add(5*time.Second))
	if s, b := count(); s != 4 || b != 1 {
		t.Errorf("after a fix: %d skip lines, %d back; want 4, 1", s, b)
	}
	cat, _, _ = c.Current()
	if len(cat.Functions) != 2 || len(cat.Skipped) != 2 {
		t.Errorf("after the fix: %d functions, %d skipped; want 2, 2", len(cat.Functions), len(cat.Skipped))
	}
}

// TestCatalogSkipSwarm: on the real engine, two services with bad labels
// (pulse.timeout=abc, pulse.max-body=-1) are skipped with their reasons
// while the catalog keeps following a good one.
func TestCatalogSkipSwarm(t *testing.T) {
	api := enginetest.SwarmManager(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	instance := "test-skip-" + suffix
	var ids []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, id := range ids {
			if err := api.ServiceRemove(ctx, id); err != nil {
				t.Errorf("cleanup: remove service %s: %v", id, err)
			}
		}
	})
	create := func(name string, labels ...string) string {
		t.Helper()
		l := map[string]string{contract.LabelFunction: name, contract.LabelInstance: instance, catalogTestLabel: "1"}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = v
		}
		zero := uint64(0)
		resp, err := api.ServiceCreate(t.Context(), swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: name, Labels: l},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "pulse-test/never-run:none"}},
			Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &zero}},
		}, swarm.ServiceCreateOptions{})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		ids = append(ids, resp.ID)
		return resp.ID
	}
	good := "pt-skip-good-" + suffix
	goodID := create(good)
	create("pt-skip-timeout-"+suffix, contract.LabelTimeout+"=abc")
	create("pt-skip-body-"+suffix, contract.LabelMaxBody+"=-1")

	cfg := DefaultConfig()
	cfg.Instance = instance
	c, err := New(api, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func(contract.Catalog) bool) contract.Catalog {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			cat, _, err := c.Current()
			if err == nil && ok(cat) {
				return cat
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: catalog %+v, %v", what, cat, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cat := waitFor("good listed, two skipped", func(cat contract.Catalog) bool {
		return len(cat.Functions) == 1 && cat.Functions[0].Name == good && len(cat.Skipped) == 2
	})
	reasons := cat.Skipped[0].Reason + " | " + cat.Skipped[1].Reason
	if !strings.Contains(reasons, `pulse.max-body="-1"`) || !strings.Contains(reasons, `pulse.timeout="abc"`) {
		t.Errorf("reasons %q: want both labels named", reasons)
	}
	// The catalog keeps following the swarm: the good service changes.
	svc, _, err := api.ServiceInspectWithRaw(t.Context(), goodID, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := svc.Spec
	spec.Labels[contract.LabelTimeout] = "7s"
	if _, err := api.ServiceUpdate(t.Context(), goodID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the good function's change seen", func(cat contract.Catalog) bool {
		return len(cat.Functions) == 1 && cat.Functions[0].Labels[contract.LabelTimeout] == "7s" && len(cat.Skipped) == 2
	})
}
