package function

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// staticEngines is a fixed list of node engines (or an error).
type staticEngines struct {
	engines []NodeEngine
	err     error
}

func (s staticEngines) Engines(context.Context) ([]NodeEngine, error) { return s.engines, s.err }

// TestClusterDistributorErrors: the error paths, with fake engines: a node
// that fails is named and fails the whole Ensure, the others still load; a
// node that has the image is skipped; no node, or no list, is an error;
// every engine is closed.
func TestClusterDistributorErrors(t *testing.T) {
	const id = "sha256:ebaed2a53f5fc790017114dd7fb55aa03f320ac249e38e439be7c5b30393dfaf"
	img := Image{ID: id, Archive: []byte("archive")}
	loads := `{"stream":"Loaded image ID: ` + id + `\n"}` + "\n"
	var closed atomic.Int32
	closer := func() error { closed.Add(1); return nil }
	missing := cerrdefs.ErrNotFound
	type node struct {
		name string
		api  ImageLoader
	}
	tests := []struct {
		name     string
		nodes    []node
		listErr  error
		want     map[string]string // node → outcome
		wantErrs []string
	}{
		{name: "one present, one loaded", nodes: []node{
			{"a", &fakeLoader{inspect: image.InspectResponse{ID: id}}},
			{"b", &loadAfterMissing{fakeLoader: fakeLoader{stream: loads, inspect: image.InspectResponse{ID: id}}}},
		}, want: map[string]string{"a": "present", "b": "loaded"}},
		{name: "a node fails", nodes: []node{
			{"a", &fakeLoader{inspect: image.InspectResponse{ID: id}}},
			{"b", &fakeLoader{inspectErr: missing, loadErr: errors.New("no space left on device")}},
			{"c", &fakeLoader{inspectErr: errors.New("connection reset by peer")}},
		}, want: map[string]string{"a": "present", "b": "failed", "c": "failed"},
			wantErrs: []string{"image not on every node: 2 of 3 nodes failed", "b: load image " + id + ": no space left on device", "c: inspect: connection reset by peer"}},
		{name: "no nodes", wantErrs: []string{"the swarm lists no node"}},
		{name: "list fails", listErr: errors.New("ssh: handshake failed"), wantErrs: []string{"list nodes: ssh: handshake failed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			closed.Store(0)
			var engines []NodeEngine
			for _, n := range tc.nodes {
				engines = append(engines, NodeEngine{Node: n.name, API: n.api, Close: closer})
			}
			var progress []string
			d := ClusterDistributor{Nodes: staticEngines{engines, tc.listErr}, Progress: func(r NodeResult) { progress = append(progress, r.Node) }}
			results, err := d.EnsureAll(context.Background(), img)
			for _, w := range tc.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to contain %q", err, w)
				}
			}
			if len(tc.wantErrs) == 0 && err != nil {
				t.Fatalf("error %v", err)
			}
			if err != nil && !errors.Is(err, ErrDistribute) && tc.listErr == nil {
				t.Errorf("error %v is not ErrDistribute", err)
			}
			got := map[string]string{}
			for _, r := range results {
				got[r.Node] = r.Outcome
			}
			if len(tc.want) > 0 && !maps.Equal(got, tc.want) {
				t.Errorf("outcomes %v, want %v", got, tc.want)
			}
			slices.Sort(progress)
			if want := slices.Sorted(maps.Keys(tc.want)); !slices.Equal(progress, want) {
				t.Errorf("progress for %v, want %v", progress, want)
			}
			if int(closed.Load()) != len(tc.nodes) {
				t.Errorf("%d engines closed, want %d", closed.Load(), len(tc.nodes))
			}
		})
	}
}

// loadAfterMissing is a fakeLoader whose engine lacks the image until it
// is loaded.
type loadAfterMissing struct {
	fakeLoader
}

func (l *loadAfterMissing) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	if l.loaded == nil {
		return image.InspectResponse{}, cerrdefs.ErrNotFound
	}
	return l.fakeLoader.ImageInspect(ctx, ref, opts...)
}

// TestClusterDistributorEngine: on the real engine (reached as two nodes),
// an image no node has is loaded and found by ID; a second Ensure finds it
// present everywhere and loads nothing.
func TestClusterDistributorEngine(t *testing.T) {
	api := engineClient(t)
	spec := testSpec()
	spec.Tag = ""
	spec.Labels = map[string]string{testLabel: "1"}
	spec.Files[1].Content = []byte("distribute " + randomSuffix(t))
	img, err := Assemble(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, err := api.ImageRemove(context.Background(), img.ID, image.RemoveOptions{Force: true})
		if err != nil && !isNotFound(err) {
			t.Errorf("remove image %s: %v", img.ID, err)
		}
	})
	d := ClusterDistributor{Nodes: staticEngines{engines: []NodeEngine{{Node: "n1", API: api}, {Node: "n2", API: api}}}}
	results, err := d.EnsureAll(engineCtx(t), img)
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, r := range results {
		if r.Outcome == "loaded" {
			loaded++
		}
	}
	if loaded == 0 {
		t.Errorf("first ensure: %+v, want a load", results)
	}
	if _, err := api.ImageInspect(engineCtx(t), img.ID); err != nil {
		t.Fatalf("after ensure: %v", err)
	}
	results, err = d.EnsureAll(engineCtx(t), img)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Outcome != "present" {
			t.Errorf("second ensure on %s: %s, want present", r.Node, r.Outcome)
		}
	}
}
