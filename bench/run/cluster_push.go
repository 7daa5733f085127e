package main

// The cluster suite's push: a fresh function image (function.Assemble, a
// random 16 MiB payload, like the lab test of `pulse node`) to one worker
// and to the 3 nodes in parallel through function.ClusterDistributor with
// engines dialled as pulse dials them (provision over SSH), median of
// trials, the two node counts alternating. Then "one function layer changed
// against a full image" (cluster_layer.go): two-layer images sharing a base,
// the second sent thin, to one node and to three. Then the profile of the
// ratio,
// diagnostic trials: the SSH transport alone with each cipher, `docker
// load` inside the nodes with no SSH at all, the push with each cipher
// through the suite's own SSH client (cluster_ssh.go), and the push with at
// most two loads at once (a semaphore in the engines, within
// distribute.go's contract). Each trial's image is removed from the nodes
// afterwards (not measured).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"github.com/pulsefaas/pulse/function"
)

// pushTimeout bounds one trial.
const pushTimeout = 3 * time.Minute

// push runs the stage.
func (b *clusterBench) push(ctx context.Context) error {
	p := &clusterPush{PayloadBytes: clusterPayload,
		Dial: "each trial dials every node it pushes to (SSH handshake and engine ping included in the time), in parallel, as pulse does for the nodes other than docker_host's"}
	b.rep.Push = p
	one, all := b.lab.nodes[1:2], b.lab.nodes
	run := func(f func() pushTrial) error {
		if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
			return err
		}
		tr := f()
		p.Trials = append(p.Trials, tr)
		b.log.Info("push trial", "kind", tr.Kind, "variant", tr.Variant, "nodes", tr.Nodes, "wall_s", tr.WallS, "host_cpu_s", tr.HostCPUS,
			"node_cpu_s", nodeSum(tr, ""), "busy_cores", tr.BusyCores, "err", tr.Error)
		return ctx.Err()
	}
	// The goal's trials.
	for r := range b.trials {
		for _, nodes := range rotate([][]labNode{one, all}, r) {
			if err := run(func() pushTrial { return b.pushTrial(ctx, pushDefault, r, nodes, b.lab.provisionDial, 0) }); err != nil {
				return err
			}
		}
	}
	// One function layer changed against a full image.
	for r := range b.trials {
		for _, nodes := range rotate([][]labNode{one, all}, r) {
			if err := b.layerPair(ctx, rand.Reader, r, nodes, run); err != nil {
				return err
			}
		}
	}
	// The profile's.
	for r := range b.diagTrials {
		for _, nodes := range rotate([][]labNode{one, all}, r) {
			for _, c := range pushCiphers {
				if err := run(func() pushTrial { return b.sshTrial(ctx, c, r, nodes) }); err != nil {
					return err
				}
			}
			if err := run(func() pushTrial { return b.localLoadTrial(ctx, r, nodes) }); err != nil {
				return err
			}
			for _, c := range pushCiphers {
				if err := run(func() pushTrial { return b.pushTrial(ctx, "cipher "+c, r, nodes, b.lab.cipherDial(c), 0) }); err != nil {
					return err
				}
			}
		}
		if err := run(func() pushTrial { return b.pushTrial(ctx, pushLimited, r, all, b.lab.provisionDial, 2) }); err != nil {
			return err
		}
	}
	return nil
}

// pushImage assembles a fresh image: a random payload, so no node has it.
func (b *clusterBench) pushImage() (function.Image, error) {
	data := make([]byte, clusterPayload)
	if _, err := rand.Read(data); err != nil {
		return function.Image{}, err
	}
	img, err := function.Assemble(function.ImageSpec{
		Files:      []function.File{{Path: "/payload", Mode: 0o755, Content: data}},
		Entrypoint: []string{"/payload"}, User: function.ImageUser,
		Labels: benchLabels(b.run),
	})
	if err == nil {
		b.rep.Push.ArchiveBytes = len(img.Archive)
	}
	return img, err
}

// dropImage removes the images ids from nodes (docker exec, not measured).
func dropImage(ctx context.Context, nodes []labNode, ids ...string) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			_, _ = nodeExec(context.WithoutCancel(ctx), n, nil, "sh", "-c", "docker rmi -f "+strings.Join(ids, " ")+" >/dev/null 2>&1; rm -f /tmp/pbench-img.tar")
		})
	}
	wg.Wait()
}

// pushTrial pushes a fresh image to nodes with function.ClusterDistributor,
// its engines made by dial; limit > 0 lets at most limit loads run at once.
func (b *clusterBench) pushTrial(ctx context.Context, variant string, round int, nodes []labNode, dial func(context.Context, labNode) (function.NodeEngine, error), limit int) pushTrial {
	tr := pushTrial{Kind: pushKindPush, Variant: variant, Nodes: len(nodes), Round: round}
	img, err := b.pushImage()
	if err != nil {
		tr.Error = err.Error()
		return tr
	}
	defer dropImage(ctx, nodes, img.ID)
	res, err := b.distribute(ctx, &tr, nodes, dial, limit, img)
	if err == nil {
		err = checkLoads(res, false)
	}
	if err != nil {
		tr.Error = err.Error()
	}
	return tr
}

// distribute pushes img to nodes with function.ClusterDistributor, its
// engines made by dial (limit > 0 lets at most limit loads run at once),
// profiled, and fills tr's times, profile and each node's load.
func (b *clusterBench) distribute(ctx context.Context, tr *pushTrial, nodes []labNode, dial func(context.Context, labNode) (function.NodeEngine, error), limit int, img function.Image) ([]function.NodeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	var sem chan struct{}
	if limit > 0 {
		sem = make(chan struct{}, limit)
	}
	prof := startProfile(nodes)
	wrapped := func(ctx context.Context, n labNode) (function.NodeEngine, error) {
		e, err := dial(ctx, n)
		if err != nil {
			return e, err
		}
		inner := e.Close
		e.Close = func() error { prof.beforeClose(n.Name); return inner() }
		if sem != nil {
			e.API = limitedLoader{e.API, sem}
		}
		return e, nil
	}
	eng := &timedEngines{NodeEngines: labEngines{lab: b.lab, only: nodes, dial: wrapped}}
	start := time.Now()
	res, err := function.ClusterDistributor{Nodes: eng}.EnsureAll(ctx, img)
	tr.WallS = secondsSince(start)
	prof.finish(tr, b.env.clk)
	tr.DialS = round3(eng.took.Seconds())
	for _, r := range res {
		tr.NodeS = append(tr.NodeS, round3(r.Elapsed.Seconds()))
		l := pushLoad{Node: r.Node, Outcome: r.Outcome, Thin: r.Thin, SentBytes: r.Sent, FullBytes: r.Full}
		if r.Fallback != nil {
			l.Fallback = r.Fallback.Error()
		}
		tr.Loads = append(tr.Loads, l)
	}
	return res, err
}

// timedEngines times the Engines call (the SSH dials and engine pings).
type timedEngines struct {
	function.NodeEngines
	took time.Duration
}

func (t *timedEngines) Engines(ctx context.Context) ([]function.NodeEngine, error) {
	start := time.Now()
	es, err := t.NodeEngines.Engines(ctx)
	t.took = time.Since(start)
	return es, err
}

// limitedLoader lets a load run only while it holds a place in sem.
type limitedLoader struct {
	function.NodeAPI
	sem chan struct{}
}

func (l limitedLoader) ImageLoad(ctx context.Context, r io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return image.LoadResponse{}, ctx.Err()
	}
	resp, err := l.NodeAPI.ImageLoad(ctx, r, opts...)
	if err != nil {
		<-l.sem
		return resp, err
	}
	// The load runs until its answer is read to the end (LoadImage does).
	resp.Body = &releaseOnClose{ReadCloser: resp.Body, release: func() { <-l.sem }}
	return resp, nil
}

type releaseOnClose struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (r *releaseOnClose) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(r.release)
	return err
}

// sshTrial sends the archive's bytes of a fresh image over SSH with cipher
// to `cat > /dev/null` on each node, in parallel (the dials before, not
// timed).
func (b *clusterBench) sshTrial(ctx context.Context, cipher string, round int, nodes []labNode) pushTrial {
	tr := pushTrial{Kind: pushKindSSH, Variant: cipher, Nodes: len(nodes), Round: round}
	img, err := b.pushImage()
	if err != nil {
		tr.Error = err.Error()
		return tr
	}
	clients := make([]*ssh.Client, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { clients[i], errs[i] = sshDialCipher(ctx, b.lab.keyFile, b.lab.knownHosts, n.Addr, cipher) })
	}
	wg.Wait()
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		tr.Error = err.Error()
		return tr
	}
	prof := startProfile(nodes)
	start := time.Now()
	for i, n := range nodes {
		wg.Go(func() {
			errs[i] = sshSink(clients[i], img.Archive)
			prof.beforeClose(n.Name)
		})
	}
	wg.Wait()
	tr.WallS = secondsSince(start)
	prof.finish(&tr, b.env.clk)
	if err := errors.Join(errs...); err != nil {
		tr.Error = err.Error()
	}
	return tr
}

// localLoadTrial copies a fresh image's archive into each node's tmpfs
// (not timed), then runs `docker load -i` of it in each node at once: the
// engine's cost of a load, with no SSH.
func (b *clusterBench) localLoadTrial(ctx context.Context, round int, nodes []labNode) pushTrial {
	tr := pushTrial{Kind: pushKindLoad, Variant: pushLocal, Nodes: len(nodes), Round: round}
	img, err := b.pushImage()
	if err != nil {
		tr.Error = err.Error()
		return tr
	}
	defer dropImage(ctx, nodes, img.ID)
	for _, n := range nodes {
		if _, err := nodeExec(ctx, n, img.Archive, "sh", "-c", "cat > /tmp/pbench-img.tar"); err != nil {
			tr.Error = err.Error()
			return tr
		}
	}
	errs := make([]error, len(nodes))
	prof := startProfile(nodes)
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			out, err := nodeExec(ctx, n, nil, "docker", "load", "-q", "-i", "/tmp/pbench-img.tar")
			if err == nil && !strings.Contains(out, strings.TrimPrefix(img.ID, "sha256:")) {
				err = fmt.Errorf("%s: docker load said %q, want %s", n.Name, truncate(strings.TrimSpace(out), 200), img.ID)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	tr.WallS = secondsSince(start)
	prof.finish(&tr, b.env.clk)
	if err := errors.Join(errs...); err != nil {
		tr.Error = err.Error()
	}
	return tr
}
