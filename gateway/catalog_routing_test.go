package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
)

// catalogStaticSource is a catalog.Source that answers from its fields.
type catalogStaticSource struct {
	cat contract.Catalog
	at  time.Time
	err error
}

func (s catalogStaticSource) Current() (contract.Catalog, time.Time, error) {
	return s.cat, s.at, s.err
}

type staticRouting struct {
	routed map[string]map[string]bool
	ver    uint64
}

func (s *staticRouting) Routing() (map[string]map[string]bool, uint64) { return s.routed, s.ver }

// routingCatalog has two functions, hello scaling down with t2 draining.
func routingCatalog() contract.Catalog {
	return contract.Catalog{
		Version: "0123456789abcdef",
		Functions: []contract.CatalogFunction{
			{Name: "echo", ServiceID: "svc-echo", Labels: map[string]string{}, Replicas: []contract.Replica{}},
			{Name: "hello", ServiceID: "svc-hello", Labels: map[string]string{}, Desired: 1, Replicas: []contract.Replica{
				{TaskID: "t1", Slot: 1, Node: "n1", Addr: "10.0.0.1:32768", State: "running"},
				{TaskID: "t2", Slot: 2, Node: "n2", Addr: "10.0.0.2:32769", State: "running", Draining: true},
			}},
		},
	}
}

// TestWithRouting: a replica is Routed only while the gateway routes it and
// it is not draining, and the version (the ETag) changes with the routing.
func TestWithRouting(t *testing.T) {
	src := catalogStaticSource{cat: routingCatalog(), at: time.Now()}
	rt := &staticRouting{routed: map[string]map[string]bool{"hello": {"t1": true, "t2": true}}, ver: 1}
	c := WithRouting(src, rt)
	cat, _, err := c.Current()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range cat.Functions[1].Replicas {
		got[r.TaskID] = r.Routed
	}
	if !got["t1"] || got["t2"] {
		t.Fatalf("routed %v: want t1 (running) and not t2 (draining)", got)
	}
	if src.cat.Functions[1].Replicas[0].Routed {
		t.Fatal("WithRouting changed the source's catalog")
	}
	rt.ver = 2
	again, _, _ := c.Current()
	if again.Version == cat.Version {
		t.Fatalf("version %q unchanged after the routing changed", cat.Version)
	}
}

// TestCatalogRoutingNotReady: through WithRouting, a catalog that is not
// ready yet is still catalog.NewHandler's 503, not an empty catalog.
func TestCatalogRoutingNotReady(t *testing.T) {
	src := catalogStaticSource{err: fmt.Errorf("%w: list services: engine down", catalog.ErrNotReady)}
	c := WithRouting(src, &staticRouting{ver: 1})
	if _, _, err := c.Current(); !errors.Is(err, catalog.ErrNotReady) {
		t.Fatalf("error %v, want catalog.ErrNotReady", err)
	}
	rec := httptest.NewRecorder()
	catalog.NewHandler(c).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, contract.CatalogPath, nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q: want 503, 1", rec.Code, rec.Header().Get("Retry-After"))
	}
}
