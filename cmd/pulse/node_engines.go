package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/provision"
)

// swarmEngines is function.NodeEngines for the swarm of docker_host: the
// manager's node list; the manager the CLI talks to through mgr itself,
// every other Ready node over SSH to its contract.LabelNodeSSH target. A
// node that cannot be reached (no label, SSH or engine failing) is an
// engine whose every call fails with why, so the distributor names it.
// Nodes that are not Ready are skipped: Swarm gives them no task.
type swarmEngines struct {
	mgr  *client.Client
	ssh  provision.Config
	note func(string) // told of each skipped node
}

var _ function.NodeEngines = swarmEngines{}

func (s swarmEngines) Engines(ctx context.Context) ([]function.NodeEngine, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := s.mgr.Info(lctx)
	if err != nil {
		return nil, err
	}
	nodes, err := s.mgr.NodeList(lctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Description.Hostname < nodes[j].Description.Hostname })
	engines := make([]function.NodeEngine, 0, len(nodes))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range nodes {
		name := n.Description.Hostname
		switch {
		case n.ID == info.Swarm.NodeID:
			engines = append(engines, function.NodeEngine{Node: name, API: s.mgr})
			continue
		case n.Status.State != swarm.NodeStateReady:
			if s.note != nil {
				s.note(fmt.Sprintf("%s: skipped: status %s (Swarm gives it no task; `pulse push` when it is back)", name, n.Status.State))
			}
			continue
		}
		label := n.Spec.Labels[contract.LabelNodeSSH]
		if label == "" && n.Spec.Availability == swarm.NodeAvailabilityDrain {
			if s.note != nil {
				s.note(fmt.Sprintf("%s: skipped: drained, and no %s label (Swarm gives it no task)", name, contract.LabelNodeSSH))
			}
			continue
		}
		if label == "" {
			engines = append(engines, function.NodeEngine{Node: name, API: failingEngine{fmt.Errorf(
				"no %s label, so pulse cannot reach it: `pulse node add user@%s` it (or drain it: docker node update --availability drain %s)",
				contract.LabelNodeSSH, n.Status.Addr, name)}})
			continue
		}
		wg.Go(func() {
			e := s.dial(ctx, name, label)
			mu.Lock()
			engines = append(engines, e)
			mu.Unlock()
		})
	}
	wg.Wait()
	return engines, nil
}

// dial reaches one node's engine over SSH.
func (s swarmEngines) dial(ctx context.Context, name, label string) function.NodeEngine {
	fail := func(err error) function.NodeEngine {
		return function.NodeEngine{Node: name, API: failingEngine{err}}
	}
	t, err := provision.ParseTarget(label)
	if err != nil {
		return fail(fmt.Errorf("label %s: %w", contract.LabelNodeSSH, err))
	}
	c, err := provision.Dial(ctx, s.ssh, t)
	if err != nil {
		return fail(err)
	}
	eng, err := c.Engine(ctx)
	if err != nil {
		c.Close()
		return fail(err)
	}
	return function.NodeEngine{Node: name, API: eng, Close: func() error {
		eng.Close()
		return c.Close()
	}}
}

// failingEngine is a node that could not be reached.
type failingEngine struct{ err error }

func (f failingEngine) ImageLoad(context.Context, io.Reader, ...client.ImageLoadOption) (image.LoadResponse, error) {
	return image.LoadResponse{}, f.err
}

func (f failingEngine) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{}, f.err
}

func (f failingEngine) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return nil, f.err
}

// distributor is what deploy puts images on the nodes with: the local
// engine's for a one-node swarm (or an engine not in a swarm, where deploy
// fails later with Swarm's own message), every node's otherwise, printing a
// line per node.
func (a *app) distributor(ctx context.Context, name string) (function.ImageDistributor, int, error) {
	mgr, err := a.engine()
	if err != nil {
		return nil, 0, err
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nodes, err := mgr.NodeList(lctx, swarm.NodeListOptions{})
	if err != nil && !cerrdefs.IsUnavailable(err) {
		// Only an engine that is no swarm manager has no node list (the
		// deploy then fails with Swarm's own message); any other error
		// would put the image on this engine alone.
		return nil, 0, fmt.Errorf("list the swarm's nodes to put the image on each: %w", err)
	}
	if err != nil || len(nodes) <= 1 {
		return function.LocalDistributor{API: mgr}, len(nodes), nil
	}
	return a.clusterDistributor(name), len(nodes), nil
}

// clusterDistributor puts images on every node, a line per node on stderr.
func (a *app) clusterDistributor(name string) function.ClusterDistributor {
	note := func(line string) { fmt.Fprintf(a.err, "%s: %s\n", name, line) }
	return function.ClusterDistributor{
		Nodes: swarmEngines{mgr: a.cli, ssh: a.sshConfig(), note: note},
		Progress: func(r function.NodeResult) {
			if r.Err != nil {
				note(fmt.Sprintf("image on %s: failed after %v: %v", r.Node, r.Elapsed.Round(time.Millisecond), r.Err))
				return
			}
			note(fmt.Sprintf("image on %s: %s", r.Node, nodeOutcome(r.Outcome, r.LoadReport, r.Elapsed)))
		},
	}
}

// nodeOutcome is how an image reached a node, for a progress line: "present
// (12ms)", "loaded (7.0 MB, 1.2s)", "loaded (7.0 MB → 684.5 KB thin, 310ms)",
// or a full load after a failed thin one, with why.
func nodeOutcome(outcome string, r function.LoadReport, elapsed time.Duration) string {
	el := elapsed.Round(time.Millisecond)
	switch {
	case r.Sent == 0:
		return fmt.Sprintf("%s (%v)", outcome, el)
	case r.Thin:
		return fmt.Sprintf("%s (%s → %s thin, %v)", outcome, transferSize(r.Full), transferSize(r.Sent), el)
	case r.Fallback != nil:
		return fmt.Sprintf("%s (%s full, %s sent in all, %v; %v)", outcome, transferSize(r.Full), transferSize(r.Sent), el, r.Fallback)
	}
	return fmt.Sprintf("%s (%s, %v)", outcome, transferSize(r.Sent), el)
}

// transferSize is n in decimal units, as docker images prints sizes.
func transferSize(n int64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func (a *app) pushCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "push [NAME...]",
		Short: "Build functions and put their images on every swarm node, without deploying",
		Long: `Build each function (see pulse build), load its image into docker_host's engine, then
put it on every Ready node of the swarm that lacks it, in parallel, over SSH (each node's
` + contract.LabelNodeSSH + ` label, set by pulse node add), checked by image ID. A node that has it is
skipped. Exits 1 naming each node that failed.`,
		Example: "  pulse push\n  pulse push hello -f ../functions.yml",
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := loadSpecs(path, args)
			if err != nil {
				return err
			}
			for _, s := range specs {
				img, info, err := a.buildAndLoad(cmd.Context(), s)
				if err != nil {
					return err
				}
				start := time.Now()
				results, err := a.clusterDistributor(s.Name).EnsureAll(cmd.Context(), img)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "%s: image %s (%.2f MB) on %d node(s) in %v\n", s.Name, shortID(img.ID), float64(info.ImageSize)/1e6,
					len(results), time.Since(start).Round(time.Millisecond))
			}
			return nil
		},
	}
	specFlag(cmd, &path)
	return cmd
}

// catchUp is `pulse node add`'s provision.AddOptions.Prepare: it gives a
// node the image of every deployed function (services labelled
// contract.LabelFunction, images referenced by ID) that it lacks, copied
// from docker_host's engine (docker save there, load on the node, checked
// by ID), before the node takes tasks. An image docker_host lacks fails
// with the fix.
func (a *app) catchUp(name string) func(ctx context.Context, node *client.Client) error {
	return func(ctx context.Context, node *client.Client) error {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		services, err := a.cli.ServiceList(lctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction))})
		cancel()
		if err != nil {
			return fmt.Errorf("list the deployed functions: %w", err)
		}
		byImage := map[string][]string{}
		for _, s := range services {
			if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil && cs.Image != "" {
				byImage[cs.Image] = append(byImage[cs.Image], s.Spec.Labels[contract.LabelFunction])
			}
		}
		ids := make([]string, 0, len(byImage))
		for id := range byImage {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		var failed []string
		for _, id := range ids {
			fns := strings.Join(byImage[id], ",")
			start := time.Now()
			outcome, rep, err := copyImage(ctx, a.cli, node, id)
			if err != nil {
				fmt.Fprintf(a.err, "%s: image %s (%s): failed: %v\n", name, shortID(id), fns, err)
				failed = append(failed, fmt.Sprintf("%s (%s): %v", shortID(id), fns, err))
				continue
			}
			fmt.Fprintf(a.err, "%s: image %s (%s): %s\n", name, shortID(id), fns, nodeOutcome(outcome, rep, time.Since(start)))
		}
		if len(failed) > 0 {
			return fmt.Errorf("%d deployed image(s) not on the node: %s", len(failed), strings.Join(failed, "; "))
		}
		return nil
	}
}

// copyImage puts image id on to, from from, unless to has it: docker save
// on from, then function.LoadOnNode, which sends only the image's own layer
// when to already holds its base layer (the watchdog of an image copied
// before it) and the whole archive otherwise.
func copyImage(ctx context.Context, from, to *client.Client, id string) (string, function.LoadReport, error) {
	if _, err := to.ImageInspect(ctx, id); err == nil {
		return "present", function.LoadReport{}, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", function.LoadReport{}, fmt.Errorf("inspect on the node: %w", err)
	}
	if !strings.HasPrefix(id, "sha256:") {
		return "", function.LoadReport{}, fmt.Errorf("the service refers to %q, not an image ID: deploy it again with pulse deploy", id)
	}
	info, err := from.ImageInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return "", function.LoadReport{}, fmt.Errorf("docker_host's engine does not have it either: run `pulse push` in the function's directory")
	} else if err != nil {
		return "", function.LoadReport{}, fmt.Errorf("inspect on docker_host: %w", err)
	}
	rc, err := from.ImageSave(ctx, []string{id})
	if err != nil {
		return "", function.LoadReport{}, fmt.Errorf("save on docker_host: %w", err)
	}
	archive, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return "", function.LoadReport{}, fmt.Errorf("save on docker_host: %w", err)
	}
	img := function.Image{ID: id, Archive: archive}
	var thinErr error
	if base := baseLayer(info); base != "" {
		if img.Thin, thinErr = function.ThinArchive(archive, base); thinErr == nil {
			img.BaseLayer = base
		}
	}
	rep, err := function.LoadOnNode(ctx, to, img)
	if rep.Fallback == nil {
		rep.Fallback = thinErr
	}
	if err != nil {
		return "", rep, err
	}
	return "copied", rep, nil
}

// baseLayer is the diff ID of the image's shared base layer, if it has one:
// the label function.Assemble sets, when it names the first layer.
func baseLayer(info image.InspectResponse) string {
	if info.Config == nil || len(info.RootFS.Layers) < 2 {
		return ""
	}
	if base := info.Config.Labels[function.LabelBaseLayer]; base == info.RootFS.Layers[0] {
		return base
	}
	return ""
}
