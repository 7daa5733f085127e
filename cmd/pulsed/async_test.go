package main

import (
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

type fakeSource struct {
	cat   contract.Catalog
	calls int
}

func (f *fakeSource) Current() (contract.Catalog, time.Time, error) {
	f.calls++
	return f.cat, time.Time{}, nil
}

// The queue's view: routed replicas only, the label's policy or the
// default, the catalog's limits or the defaults, no function the gateway
// leaves out or skips; checked once per catalog version.
func TestAsyncFunctions(t *testing.T) {
	src := &fakeSource{cat: contract.Catalog{Version: "1", Functions: []contract.CatalogFunction{
		{Name: "a", Labels: map[string]string{contract.LabelAsync: "retries=7", contract.LabelMaxBody: "1024", contract.LabelTimeout: "5s"},
			Replicas: []contract.Replica{{TaskID: "t1", Routed: true}, {TaskID: "t2"}, {TaskID: "t3", Routed: true, Draining: true}}},
		{Name: "b"},
		{Name: "left"},
		{Name: "bad", Labels: map[string]string{contract.LabelAsync: "retries=x"}},
	}}}
	left := map[string]string{}
	a := &asyncFunctions{}
	a.route(src, func() map[string]string { return left })
	fns, err := a.AsyncFunctions()
	if err != nil {
		t.Fatal(err)
	}
	want := contract.DefaultAsyncPolicy
	want.Retries = 7
	if got := fns["a"]; got.Policy != want || got.MaxBody != 1024 || got.Timeout != 5*time.Second || got.Replicas != 1 {
		t.Errorf("a: %+v", got)
	}
	if got := fns["b"]; got.Policy != contract.DefaultAsyncPolicy || got.MaxBody != contract.DefaultMaxBody || got.Timeout != contract.DefaultTimeout || got.Replicas != 0 {
		t.Errorf("b: %+v", got)
	}
	if _, ok := fns["bad"]; ok || len(fns) != 3 {
		t.Errorf("functions %v; want a, b and left (bad's label fails the check)", fns)
	}
	left["left"] = "haproxy refused it"
	fns, _ = a.AsyncFunctions()
	if _, ok := fns["left"]; ok || len(fns) != 2 {
		t.Errorf("with left left out: %v", fns)
	}
	// The cached map is not changed by leaving one out.
	delete(left, "left")
	if fns, _ = a.AsyncFunctions(); len(fns) != 3 {
		t.Errorf("after left came back: %v", fns)
	}
	// A new catalog version is read again.
	src.cat = contract.Catalog{Version: "2", Functions: []contract.CatalogFunction{{Name: "c"}}}
	if fns, _ = a.AsyncFunctions(); len(fns) != 1 || fns["c"].Name != "c" {
		t.Errorf("after a new version: %v", fns)
	}
}
