package function

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// NodeEngine is one swarm node's engine as a distributor reaches it: the
// local engine, or a node's engine over SSH (package provision).
type NodeEngine struct {
	Node string // the node's hostname, for progress and errors
	API  NodeAPI
	// Close releases the connection; nil when there is nothing to release.
	Close func() error
}

// NodeEngines lists the engines of every node that may run a function.
type NodeEngines interface {
	Engines(ctx context.Context) ([]NodeEngine, error)
}

// NodeResult is what a ClusterDistributor did on one node. LoadReport is
// zero unless the node was sent the image.
type NodeResult struct {
	Node    string
	Outcome string // "present", "loaded" or "failed"
	LoadReport
	Elapsed time.Duration
	Err     error
}

// ClusterDistributor makes sure every node holds an image before Swarm is
// told to run it (no node can pull it from anywhere): in parallel, a node
// that has the image (by ID) is skipped, the others load it (LoadOnNode:
// only its own layer when the node has its base layer, the watchdog) and are
// checked by image ID. One node that fails fails the whole Ensure, naming
// each failed node, so no task is scheduled where the image is missing.
type ClusterDistributor struct {
	Nodes NodeEngines
	// Progress, when set, is called once per node as it finishes (from
	// several goroutines, one at a time).
	Progress func(NodeResult)
}

var _ ImageDistributor = ClusterDistributor{}

// ErrDistribute means an image did not reach every node.
var ErrDistribute = errors.New("image not on every node")

// Ensure puts img on every node that lacks it.
func (d ClusterDistributor) Ensure(ctx context.Context, img Image) error {
	_, err := d.EnsureAll(ctx, img)
	return err
}

// EnsureAll is Ensure, returning each node's result, sorted by node.
func (d ClusterDistributor) EnsureAll(ctx context.Context, img Image) ([]NodeResult, error) {
	engines, err := d.Nodes.Engines(ctx)
	if err != nil {
		return nil, fmt.Errorf("distribute image %s: list nodes: %w", img.ID, err)
	}
	defer func() {
		for _, e := range engines {
			if e.Close != nil {
				_ = e.Close()
			}
		}
	}()
	if len(engines) == 0 {
		return nil, fmt.Errorf("distribute image %s: %w: the swarm lists no node", img.ID, ErrDistribute)
	}
	results := make([]NodeResult, len(engines))
	var (
		wg sync.WaitGroup
		mu sync.Mutex // one Progress call at a time
	)
	for i, e := range engines {
		wg.Go(func() {
			start := time.Now()
			r := ensureOnNode(ctx, e.API, img)
			r.Err = explainLoadFailure(r.Err) // the fix for a full disk, a lost node
			r.Node, r.Elapsed = e.Node, time.Since(start)
			results[i] = r
			if d.Progress != nil {
				mu.Lock()
				d.Progress(r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Node < results[j].Node })
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", r.Node, r.Err))
		}
	}
	if len(failed) > 0 {
		return results, fmt.Errorf("distribute image %s: %w: %d of %d nodes failed: %s",
			img.ID, ErrDistribute, len(failed), len(results), strings.Join(failed, "; "))
	}
	return results, nil
}

// ensureOnNode loads img into a node's engine unless it has it.
func ensureOnNode(ctx context.Context, api NodeAPI, img Image) NodeResult {
	var r NodeResult
	_, err := api.ImageInspect(ctx, img.ID)
	switch {
	case err == nil:
		r.Outcome = "present"
		return r
	case !cerrdefs.IsNotFound(err):
		r.Outcome, r.Err = "failed", fmt.Errorf("inspect: %w", err)
		return r
	case len(img.Archive) == 0:
		r.Outcome, r.Err = "failed", errNoArchive
		return r
	}
	r.LoadReport, r.Err = LoadOnNode(ctx, api, img)
	r.Outcome = "loaded"
	if r.Err != nil {
		r.Outcome = "failed"
	}
	return r
}

var errNoArchive = errors.New("the engine does not have the image and there is no archive to load; run pulse build")

// ensureOn loads img into api unless it has it; the outcome says which.
func ensureOn(ctx context.Context, api ImageLoader, img Image) (string, error) {
	_, err := api.ImageInspect(ctx, img.ID)
	switch {
	case err == nil:
		return "present", nil
	case !cerrdefs.IsNotFound(err):
		return "failed", fmt.Errorf("inspect: %w", err)
	case len(img.Archive) == 0:
		return "failed", errNoArchive
	}
	if err := LoadImage(ctx, api, img); err != nil {
		return "failed", err
	}
	return "loaded", nil
}
