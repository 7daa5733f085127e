package main

// The push stage's second row, "one function layer changed against a full
// image": what a redeploy of changed code sends. Per trial, two images of
// pulse build's fork-mode layout (function/build.go: the watchdog as a shared
// base layer, the handler in a layer of its own on top) share a fresh base
// layer; A is pushed to the nodes (full: no node holds its base yet), then B,
// whose handler differs, through function.ClusterDistributor, which sends a
// node that lists an image labelled with that base layer only B's thin
// archive (function.LoadOnNode). The base is the suite's own fork-mode
// watchdog build and the handler the 3-replica function's static C program
// (about 6 MB and 0.7 MB), each with random bytes appended: the base's new
// in every trial, so A really is a full push, and the handler's differ
// between A and B, as rebuilt code would. Bytes sent are what LoadOnNode
// reports (LoadReport.Sent), so they are exact; times are medians.

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/pulsefaas/pulse/function"
)

// Variants of the layer-change trials (kind pushKindLayer).
const (
	layerFull = "A: full (fresh base + function layer)"
	layerThin = "B: function layer changed (same base)"
)

// layerNonce is the number of random bytes appended to the base's and the
// handler's file.
const layerNonce = 32

// goalLayerPct is the limit: the bytes a one-function-layer change
// sends to each node, in % of the full image's archive.
const goalLayerPct = 15.0

// pushLayerImages describes the layer-change row's images; their sizes are
// the same in every trial.
type pushLayerImages struct {
	Base              string `json:"base"`
	Function          string `json:"function"`
	BaseFileBytes     int    `json:"base_file_bytes"`
	FunctionFileBytes int    `json:"function_file_bytes"`
	ArchiveBytes      int    `json:"archive_bytes"` // a full archive (A's; B's is as large)
	ThinBytes         int    `json:"thin_bytes"`    // B's thin archive: its config and function layer
}

// layerChangeImages assembles the row's two images: full, and changed, which
// has full's base layer (wd with random bytes from rnd appended) and a
// function layer that differs from full's (fn with other random bytes
// appended). Both are labelled with labels.
func layerChangeImages(rnd io.Reader, wd, fn []byte, labels map[string]string) (full, changed function.Image, err error) {
	withNonce := func(b []byte) ([]byte, error) {
		n := make([]byte, layerNonce)
		if _, err := io.ReadFull(rnd, n); err != nil {
			return nil, fmt.Errorf("layer-change images: random bytes: %w", err)
		}
		return append(slices.Clip(b), n...), nil
	}
	base, err := withNonce(wd)
	if err != nil {
		return full, changed, err
	}
	spec := func(handler []byte) function.ImageSpec {
		return function.ImageSpec{
			BaseFiles:  []function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: base}},
			Files:      []function.File{{Path: function.FunctionPath, Mode: 0o755, Content: handler}},
			Entrypoint: []string{function.WatchdogPath}, User: function.ImageUser, Labels: labels,
		}
	}
	for _, img := range []*function.Image{&full, &changed} {
		handler, err := withNonce(fn)
		if err != nil {
			return full, changed, err
		}
		if *img, err = function.Assemble(spec(handler)); err != nil {
			return full, changed, fmt.Errorf("layer-change images: %w", err)
		}
	}
	if full.BaseLayer == "" || full.BaseLayer != changed.BaseLayer || full.ID == changed.ID {
		return full, changed, fmt.Errorf("layer-change images: base layers %q and %q, IDs %s and %s: want one shared base layer and two images",
			full.BaseLayer, changed.BaseLayer, full.ID, changed.ID)
	}
	return full, changed, nil
}

// layerPair runs one trial of the row on nodes: a fresh pair of images, A
// pushed, then B; each push is a trial of its own, handed to run (which
// waits for a quiet host and records it). Both images are removed from the
// nodes afterwards (not measured).
func (b *clusterBench) layerPair(ctx context.Context, rnd io.Reader, round int, nodes []labNode, run func(func() pushTrial) error) error {
	a, bImg, err := layerChangeImages(rnd, b.wd, b.hostFn, benchLabels(b.run))
	if err == nil {
		b.rep.Push.Layer = &pushLayerImages{
			Base:          "the fork-mode watchdog (" + function.WatchdogPath + ") with " + strconv.Itoa(layerNonce) + " random bytes appended, new in each trial",
			Function:      "the static C handler (" + function.FunctionPath + ") with " + strconv.Itoa(layerNonce) + " random bytes appended, others in B",
			BaseFileBytes: len(b.wd) + layerNonce, FunctionFileBytes: len(b.hostFn) + layerNonce,
			ArchiveBytes: len(a.Archive), ThinBytes: len(bImg.Thin),
		}
		defer dropImage(ctx, nodes, bImg.ID, a.ID)
	}
	fullOK := false
	if rerr := run(func() pushTrial {
		tr := pushTrial{Kind: pushKindLayer, Variant: layerFull, Nodes: len(nodes), Round: round}
		perr := err
		if perr == nil {
			var res []function.NodeResult
			res, perr = b.distribute(ctx, &tr, nodes, b.lab.provisionDial, 0, a)
			if perr == nil {
				perr = checkLoads(res, false)
			}
		}
		if perr != nil {
			tr.Error = perr.Error()
		}
		fullOK = perr == nil
		return tr
	}); rerr != nil {
		return rerr
	}
	return run(func() pushTrial {
		tr := pushTrial{Kind: pushKindLayer, Variant: layerThin, Nodes: len(nodes), Round: round}
		if !fullOK {
			tr.Error = "not run: A's push failed"
			return tr
		}
		res, perr := b.distribute(ctx, &tr, nodes, b.lab.provisionDial, 0, bImg)
		if perr == nil {
			perr = checkLoads(res, true)
		}
		if perr != nil {
			tr.Error = perr.Error()
		}
		return tr
	})
}

// checkLoads says what is wrong with a push's results: every node must have
// loaded the image (it lacked it), the thin archive if thin, the full one
// otherwise.
func checkLoads(res []function.NodeResult, thin bool) error {
	for _, r := range res {
		switch {
		case r.Outcome != "loaded":
			return fmt.Errorf("%s: %s, want loaded (a fresh image)", r.Node, r.Outcome)
		case thin && !r.Thin:
			return fmt.Errorf("%s: sent the full archive (%d bytes; fallback: %v), want the thin one: the node held the base layer", r.Node, r.Sent, r.Fallback)
		case !thin && r.Thin:
			return fmt.Errorf("%s: sent the thin archive, want the full one: no node held the fresh base layer", r.Node)
		}
	}
	return nil
}

// layerGoals are the row's goal, the bytes B sends to each node against its
// full archive, over every B trial (bytes are exact, so the worst node of
// any trial counts), and its times, reported: B's wall time over A's for
// each node count. None when the row was not measured.
func layerGoals(ss []pushSummary) []goal {
	var trials, failed, loads, thin int
	var worst, sent, full float64
	var counts []string
	for _, s := range ss {
		if s.Kind != pushKindLayer || s.Variant != layerThin {
			continue
		}
		trials, failed, loads, thin = trials+s.Trials, failed+s.Failed, loads+s.Loads, thin+s.ThinLoads
		counts = append(counts, strconv.Itoa(s.Nodes))
		if s.Failed < s.Trials && s.FullBytes > 0 {
			if pct := 100 * float64(s.SentMaxBytes) / float64(s.FullBytes); pct >= worst {
				worst, sent, full = pct, float64(s.SentMaxBytes), float64(s.FullBytes)
			}
		}
	}
	if trials == 0 {
		return nil
	}
	g := goal{Name: fmt.Sprintf("a one-function-layer change moves ≤ 15 %% of the full image's bytes to each node (image B after A through ClusterDistributor, to %s node(s))", joinAnd(counts)),
		Limit: goalLayerPct, Unit: "%",
		Note: fmt.Sprintf("at most %.3f MB of the full %.3f MB sent to a node; %d of %d loads thin; %d of %d trials failed", sent/mb, full/mb, thin, loads, failed, trials)}
	switch {
	case failed == trials:
		g.Status, g.NoValue = fail, true
	case failed > 0 || thin < loads:
		g.Value, g.Status = round3(worst), fail
	default:
		g.Value, g.Status = round3(worst), verdict(worst, goalLayerPct)
	}
	gs := []goal{g}
	for _, n := range []int{clusterNodes, 1} {
		a, c := pushFind(ss, pushKindLayer, layerFull, n), pushFind(ss, pushKindLayer, layerThin, n)
		if a == nil || c == nil {
			continue
		}
		t := goal{Name: fmt.Sprintf("one function layer changed, to %d node(s): wall time of B (thin) ÷ A (full), medians of %d", n, c.Trials),
			Unit: "×", Status: info, Note: fmt.Sprintf("%.2f s vs %.2f s", c.WallS, a.WallS)}
		if ratio := c.WallS / a.WallS; a.Failed == a.Trials || c.Failed == c.Trials || math.IsNaN(ratio) || math.IsInf(ratio, 0) {
			t.NoValue = true
		} else {
			t.Value = round3(ratio)
		}
		gs = append(gs, t)
	}
	return gs
}

// joinAnd joins "1", "3" as "1 and 3".
func joinAnd(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	out := xs[0]
	for _, x := range xs[1 : len(xs)-1] {
		out += ", " + x
	}
	return out + " and " + xs[len(xs)-1]
}

// layerRows are the row's summaries as table rows: each image and node
// count, B's time over A's to as many nodes, and what each node was sent.
func layerRows(ss []pushSummary) [][]string {
	var rows [][]string
	for _, s := range ss {
		if s.Kind != pushKindLayer {
			continue
		}
		trials := strconv.Itoa(s.Trials)
		if s.Failed > 0 {
			trials += fmt.Sprintf(" (%d failed)", s.Failed)
		}
		thin := fmt.Sprintf("%d of %d", s.ThinLoads, s.Loads)
		if s.Failed == s.Trials {
			rows = append(rows, []string{s.Variant, strconv.Itoa(s.Nodes), trials, "", "", "", "", "", "", "", thin, "", "", ""})
			continue
		}
		ratio := ""
		if a := pushFind(ss, pushKindLayer, layerFull, s.Nodes); s.Variant == layerThin && a != nil && a.WallS > 0 && a.Failed < a.Trials {
			ratio = fmt.Sprintf("%.2f×", s.WallS/a.WallS)
		}
		pct := ""
		if s.FullBytes > 0 {
			pct = fmt.Sprintf("%.1f", 100*float64(s.SentMaxBytes)/float64(s.FullBytes))
		}
		rows = append(rows, []string{s.Variant, strconv.Itoa(s.Nodes), trials, fmt.Sprintf("%.2f (%.2f–%.2f)", s.WallS, s.WallMin, s.WallMax), ratio,
			fmt.Sprintf("%.2f", s.DialS), fmt.Sprintf("%.2f", s.SlowestS),
			fmt.Sprintf("%.3f", float64(s.SentMaxBytes)/mb), fmt.Sprintf("%.3f", float64(s.FullBytes)/mb), pct, thin,
			fmt.Sprintf("%.2f", s.HostCPUS), fmt.Sprintf("%.2f", s.NodeCPUS), fmt.Sprintf("%.2f", s.MachineCPUS)})
	}
	return rows
}

var layerHeader = []string{"image", "nodes", "trials", "wall s (range)", "×A", "dial s", "slowest node s", "sent to a node MB (most)", "full archive MB", "sent % of full",
	"thin loads", "this process CPU s", "nodes CPU s", "machine CPU s"}
