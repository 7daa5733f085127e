package function

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"reflect"
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
		api  NodeAPI
	}
	tests := []struct {
		name     string
		nodes    []node
		listErr  error
		want     map[string]string // node → outcome
		wantErrs []string
	}{
		{name: "one present, one loaded", nodes: []node{
			{"a", listing{&fakeLoader{inspect: image.InspectResponse{ID: id}}}},
			{"b", listing{&loadAfterMissing{fakeLoader: fakeLoader{stream: loads, inspect: image.InspectResponse{ID: id}}}}},
		}, want: map[string]string{"a": "present", "b": "loaded"}},
		{name: "a node fails", nodes: []node{
			{"a", listing{&fakeLoader{inspect: image.InspectResponse{ID: id}}}},
			{"b", listing{&fakeLoader{inspectErr: missing, loadErr: errors.New("no space left on device")}}},
			{"c", listing{&fakeLoader{inspectErr: errors.New("connection reset by peer")}}},
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

// listing is an ImageLoader of a node whose engine lists no image.
type listing struct{ ImageLoader }

func (listing) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return nil, nil
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

// scriptedNode is a node's engine for LoadOnNode's error paths: it lists
// what listed says (or fails with listErr), fails the ImageLoad calls that
// loadErrs names in its answer stream, as the engine does, and has the image
// (ID id) once a load succeeds.
type scriptedNode struct {
	id       string
	listed   []image.Summary
	listErr  error
	loadErrs []string // per ImageLoad call, "" for success
	cancel   func()   // called at the first failed load, when set

	loads [][]byte
	has   bool
}

func (n *scriptedNode) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return n.listed, n.listErr
}

func (n *scriptedNode) ImageLoad(_ context.Context, input io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	b, err := io.ReadAll(input)
	if err != nil {
		return image.LoadResponse{}, err
	}
	i := len(n.loads)
	n.loads = append(n.loads, b)
	stream := `{"stream":"Loaded image ID: ` + n.id + `\n"}` + "\n"
	if i < len(n.loadErrs) && n.loadErrs[i] != "" {
		m, _ := json.Marshal(n.loadErrs[i])
		stream = `{"errorDetail":{"message":` + string(m) + `},"error":` + string(m) + `}` + "\n"
		if n.cancel != nil {
			n.cancel()
		}
	} else {
		n.has = true
	}
	return image.LoadResponse{Body: io.NopCloser(strings.NewReader(stream)), JSON: true}, nil
}

func (n *scriptedNode) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	if !n.has {
		return image.InspectResponse{}, cerrdefs.ErrNotFound
	}
	return image.InspectResponse{ID: n.id}, nil
}

// TestLoadOnNodeFallback: the error paths of a thin load, with fake engines:
// a thin load that fails (the base layer pruned since the check) is followed
// by the full one, and the result says both were sent and why; an engine that
// cannot list its images gets the full archive; a caller that gave up gets no
// second load; two failed loads report both errors.
func TestLoadOnNodeFallback(t *testing.T) {
	img, err := Assemble(layeredSpec("hello", "function binary", 0))
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(img.BaseLayer, "sha256:")
	pruned := "open /var/lib/docker/tmp/docker-import-3555122205/" + hex + "/layer.tar: no such file or directory"
	holder := []image.Summary{{ID: "sha256:" + strings.Repeat("1", 64)}}
	thin, full := int64(len(img.Thin)), int64(len(img.Archive))
	tests := []struct {
		name         string
		node         scriptedNode
		cancel       bool
		wantLoads    [][]byte
		wantReport   LoadReport // Fallback compared by its text, in wantFallback
		wantFallback string
		wantErr      string
	}{
		{
			name:         "layer pruned between check and load",
			node:         scriptedNode{listed: holder, loadErrs: []string{pruned}},
			wantLoads:    [][]byte{img.Thin, img.Archive},
			wantReport:   LoadReport{Sent: thin + full, Full: full},
			wantFallback: "thin load: load image " + img.ID + ": engine: " + pruned,
		},
		{
			name:         "list fails",
			node:         scriptedNode{listErr: errors.New("connection reset by peer")},
			wantLoads:    [][]byte{img.Archive},
			wantReport:   LoadReport{Sent: full, Full: full},
			wantFallback: "look for the base layer: connection reset by peer",
		},
		{
			name:       "caller gave up during the thin load",
			node:       scriptedNode{listed: holder, loadErrs: []string{"context canceled"}},
			cancel:     true,
			wantLoads:  [][]byte{img.Thin},
			wantReport: LoadReport{Sent: thin, Full: full},
			wantErr:    "thin load: load image " + img.ID + ": engine: context canceled",
		},
		{
			name:         "thin and full fail",
			node:         scriptedNode{listed: holder, loadErrs: []string{pruned, "write /var/lib/docker/tmp: no space left on device"}},
			wantLoads:    [][]byte{img.Thin, img.Archive},
			wantReport:   LoadReport{Sent: thin + full, Full: full},
			wantFallback: "thin load: load image " + img.ID + ": engine: " + pruned,
			wantErr: "load image " + img.ID + ": engine: write /var/lib/docker/tmp: no space left on device; before it, thin load: load image " +
				img.ID + ": engine: " + pruned,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := tc.node
			n.id = img.ID
			if tc.cancel {
				n.cancel = cancel
			}
			rep, err := LoadOnNode(ctx, &n, img)
			if got := errText(err); got != tc.wantErr {
				t.Errorf("error %q, want %q", got, tc.wantErr)
			}
			if got := errText(rep.Fallback); got != tc.wantFallback {
				t.Errorf("fallback %q, want %q", got, tc.wantFallback)
			}
			rep.Fallback = nil
			if rep != tc.wantReport {
				t.Errorf("report %+v, want %+v", rep, tc.wantReport)
			}
			if !reflect.DeepEqual(n.loads, tc.wantLoads) {
				t.Errorf("%d loads of %v bytes, want %d", len(n.loads), loadSizes(n.loads), len(tc.wantLoads))
			}
		})
	}

	// Through the distributor: the node's result carries the report.
	n := &scriptedNode{id: img.ID, listed: holder, loadErrs: []string{pruned}}
	results, err := ClusterDistributor{Nodes: staticEngines{engines: []NodeEngine{{Node: "n1", API: n}}}}.EnsureAll(context.Background(), img)
	if err != nil || len(results) != 1 || results[0].Outcome != "loaded" || results[0].Thin || results[0].Sent != thin+full || results[0].Fallback == nil {
		t.Errorf("EnsureAll = %+v, %v; want loaded in full after the thin load failed", results, err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func loadSizes(loads [][]byte) []int {
	var n []int
	for _, l := range loads {
		n = append(n, len(l))
	}
	return n
}
