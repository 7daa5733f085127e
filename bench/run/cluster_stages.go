package main

// The cluster suite's idle, push and saturation stages.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
)

// idle measures the lab's idle cost: a row per node, pulsed, HAProxy and the total.
func (b *clusterBench) idle(ctx context.Context) error {
	if err := b.usePulsed(ctx, clusterDefaults); err != nil {
		return err
	}
	if _, _, err := waitQuiet(ctx, b.env.clk, 10*time.Second); err != nil { // settle: the deploy's and pulsed's start-up work done
		return err
	}
	c0, err := b.idleSample()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sleepCtx(ctx, time.Duration(b.plan.IdleS*float64(time.Second))); err != nil {
		return err
	}
	c1, err := b.idleSample()
	if err != nil {
		return err
	}
	window := time.Since(start).Seconds()
	total := report.NewRow("idle", "what", "total").Put("window_s", window).Put("host_busy_pct", 100*float64(c1.host.Busy-c0.host.Busy)/b.env.clk/window)
	for _, n := range b.lab.nodes {
		r := report.NewRow("idle", "what", n.Name).Put("cpu_pct", 100*float64(c1.nodes[n.Name]-c0.nodes[n.Name])/1e9/window)
		if v, err := n.cgroupInt("memory", "memory.usage_in_bytes"); err == nil {
			r.Put("mem_usage_mb", float64(v)/mb)
		}
		total.Values["nodes_cpu_pct"] += r.Values["cpu_pct"]
		total.Values["mem_usage_mb"] += r.Values["mem_usage_mb"]
		b.rep.Add(r)
	}
	for _, p := range []string{"pulsed", "HAProxy"} {
		d := cpuDelta(c0.procs[p], c1.procs[p])
		cpu := 100 * float64(d) / b.env.clk / window
		b.rep.Add(report.NewRow("idle", "what", p).Put("cpu_pct", cpu))
		total.Put(strings.ToLower(p)+"_cpu_pct", cpu)
	}
	total.Put("cpu_pct", total.V("nodes_cpu_pct")+total.V("pulsed_cpu_pct")+total.V("haproxy_cpu_pct"))
	b.rep.Add(total)
	b.log.Info("idle", "cpu_pct", total.V("cpu_pct"), "nodes_mem_mb", total.V("mem_usage_mb"), "host_busy_pct", total.V("host_busy_pct"))
	return nil
}

// idleSample is the nodes' CPU (ns), pulsed's, HAProxy's and the host's (ticks).
type idleSample struct {
	nodes map[string]int64
	procs map[string]map[procKey]uint64
	host  hostCPU
}

// idleSample reads it.
func (b *clusterBench) idleSample() (idleSample, error) {
	s := idleSample{nodes: map[string]int64{}, procs: map[string]map[procKey]uint64{"pulsed": {}, "HAProxy": {}}}
	var err error
	for _, n := range b.lab.nodes {
		if s.nodes[n.Name], err = n.cgroupInt("cpuacct", "cpuacct.usage"); err != nil {
			return s, fmt.Errorf("cpu of %s: %w", n.Name, err)
		}
	}
	hs, err := findHAProxies("/proc", b.stateDir)
	if err != nil {
		return s, err
	}
	for what, ps := range map[string][]procKey{"pulsed": {{PID: b.pulsed.pid()}}, "HAProxy": hs} {
		for _, p := range ps {
			if st, err := readStat("/proc", p.PID); err == nil {
				s.procs[what][procKey{st.PID, st.StartTime}] = st.UTime + st.STime
			}
		}
	}
	s.host, err = readHostCPU("/proc")
	return s, err
}

// saturation runs the defaults, then the candidates until one keeps the replica in rotation.
func (b *clusterBench) saturation(ctx context.Context) error {
	for _, s := range append([]pulsedSetting{clusterDefaults}, clusterFastCandidates...) {
		if err := b.usePulsed(ctx, s); err != nil {
			return err
		}
		r := report.NewRow("saturation", "pulsed", s.Name)
		r.Fail(b.satRun(ctx, r))
		b.rep.Add(r)
		b.log.Info("saturation", "setting", s.Name, "kept", r.V("kept"), "chkdown", r.V("chkdown"), "chkfail", r.V("chkfail"),
			"detours", r.V("detours"), "failed", r.V("failed"), "err", r.Error)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case r.Error != "" && s.Name == clusterDefaults.Name:
			return fmt.Errorf("saturation at pulsed's defaults: %s", r.Error)
		case r.V("kept") == 1 && s.Name != clusterDefaults.Name:
			b.plan.Fast = s.Name
			return nil
		}
	}
	return nil
}

// satRun saturates one replica into r; kept is 1 with no failed check, detour or request.
func (b *clusterBench) satRun(ctx context.Context, r *report.Row) error {
	if err := b.deploy(ctx, b.burn, b.burnFn, 1, map[string]string{"BURN_MS": strconv.Itoa(satBurnMS)}); err != nil {
		return err
	}
	defer func() {
		if err := b.remove(context.WithoutCancel(ctx), b.burn); err != nil {
			b.rep.Note("saturation: remove %s: %v", b.burn, err)
		}
	}()
	if err := b.waitServers(ctx, b.burn, 1, true); err != nil {
		return err
	}
	if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
		return err
	}
	last, sums := map[string]gateway.ServerStat{}, map[string]float64{}
	count := func() { // chkdown, chkfail and the backup server's sessions since the last count
		rows, err := serverStats(ctx, b.rt, gateway.BackendName(b.burn))
		if err != nil {
			r.Values["poll_errors"]++
			return
		}
		for _, s := range rows {
			prev := last[s.Server]
			if s.Downs < prev.Downs || s.CheckFails < prev.CheckFails || s.Sessions < prev.Sessions { // restarted (a reload): all new
				prev = gateway.ServerStat{}
			}
			last[s.Server] = s
			if s.Server == gateway.BackupServerName {
				sums["detours"] += float64(s.Sessions - prev.Sessions)
			} else {
				sums["chkdown"], sums["chkfail"] = sums["chkdown"]+float64(s.Downs-prev.Downs), sums["chkfail"]+float64(s.CheckFails-prev.CheckFails)
			}
		}
	}
	count()
	sums = map[string]float64{"chkdown": 0, "chkfail": 0, "detours": 0}
	load := newClosedLoop(time.Now(), payload(64), nil)
	load.set(satConns, b.gwAddr, "/function/"+b.burn, false)
	lctx, cancel := context.WithTimeout(ctx, time.Duration(b.plan.SatS*float64(time.Second)))
	every(lctx, time.Second, count)
	cancel()
	recs, fails := load.end()
	if err := ctx.Err(); err != nil {
		return err
	}
	count()
	if len(fails) > 0 {
		r.Flag("%d failed requests", len(fails))
	}
	kept := sums["chkdown"]+sums["chkfail"]+sums["detours"] == 0 && len(fails) == 0 && len(recs) > 0
	r.PutAll(sums).PutAll(map[string]float64{"requests": float64(len(recs)), "failed": float64(len(fails)), "kept": map[bool]float64{true: 1}[kept]})
	return nil
}

// Variants of the layer-change trials (label variant).
const (
	layerFull   = "A: full (fresh base + function layer)"
	layerThin   = "B: function layer changed (same base)"
	layerNonce  = 32 // random bytes appended to the layer images' base and handler
	pushTimeout = 3 * time.Minute
)

// push runs the push trials, then the layer-change pairs, to node2 and to every node in turn.
func (b *clusterBench) push(ctx context.Context) error {
	var stop error
	run := func(r *report.Row, f func(*report.Row) error) {
		if stop != nil {
			return
		}
		if _, _, stop = waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); stop != nil {
			return
		}
		r.Fail(f(r))
		b.rep.Add(r)
		b.log.Info("push trial", "kind", r.Kind, "variant", r.Label("variant"), "nodes", r.Label("nodes"), "wall_s", r.V("wall_s"), "err", r.Error)
		stop = ctx.Err()
	}
	counts := func(round int) [][]labNode { return rotate([][]labNode{b.lab.nodes[1:2], b.lab.nodes}, round) }
	for round := range b.plan.Trials {
		for _, nodes := range counts(round) {
			run(report.NewRow("push", "nodes", len(nodes), "round", round+1), func(r *report.Row) error { return b.pushFresh(ctx, r, nodes) })
		}
	}
	for round := range b.plan.Trials {
		for _, nodes := range counts(round) {
			b.layerPair(ctx, rand.Reader, round, nodes, run)
		}
	}
	return stop
}

// pushFresh pushes an image no node has (a random payload) to nodes.
func (b *clusterBench) pushFresh(ctx context.Context, r *report.Row, nodes []labNode) error {
	data := make([]byte, clusterPayload)
	if _, err := rand.Read(data); err != nil {
		return fmt.Errorf("fresh image: %w", err)
	}
	img, err := function.Assemble(function.ImageSpec{Files: []function.File{{Path: "/payload", Mode: 0o755, Content: data}},
		Entrypoint: []string{"/payload"}, User: function.ImageUser, Labels: benchLabels(b.run)})
	if err != nil {
		return fmt.Errorf("fresh image: %w", err)
	}
	defer dropImage(ctx, nodes, img.ID)
	return b.distribute(ctx, r, nodes, img, false)
}

// dropImage removes the images ids from nodes (docker exec, not measured).
func dropImage(ctx context.Context, nodes []labNode, ids ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	_ = parallel(nodes, func(_ int, n labNode) error {
		return exec.CommandContext(ctx, "docker", append([]string{"exec", n.Name, "docker", "rmi", "-f"}, ids...)...).Run()
	})
}

// distribute pushes img to nodes with ClusterDistributor into r, with the CPU it took.
func (b *clusterBench) distribute(ctx context.Context, r *report.Row, nodes []labNode, img function.Image, thin bool) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	before := markTrial(nodes)
	res, err := function.ClusterDistributor{Nodes: labEngines{lab: b.lab, only: nodes}}.EnsureAll(ctx, img)
	putCPU(r, before, markTrial(nodes), b.env.clk)
	var thinLoads, sent, full float64
	for _, nr := range res {
		sent, full = max(sent, float64(nr.Sent)), max(full, float64(nr.Full))
		if nr.Thin {
			thinLoads++
		}
	}
	r.PutAll(map[string]float64{"loads": float64(len(res)), "thin_loads": thinLoads, "sent_max_bytes": sent, "full_bytes": full})
	if err != nil {
		return err
	}
	return checkLoads(res, thin)
}

// checkLoads says what is wrong with a push's results: each node loads it, thin if thin.
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

// cpuMark is this process's CPU, the nodes' (ns) and the machine's (ticks), and when.
type cpuMark struct {
	at    time.Time
	self  time.Duration
	nodes int64
	host  hostCPU
}

// markTrial reads a cpuMark of nodes.
func markTrial(nodes []labNode) cpuMark {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	m := cpuMark{at: time.Now(), self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	for _, n := range nodes {
		ns, _ := n.cgroupInt("cpuacct", "cpuacct.usage")
		m.nodes += ns
	}
	m.host, _ = readHostCPU("/proc")
	return m
}

// putCPU puts the trial between two marks into r: wall_s, CPU seconds, other_cpu_s (foreign load).
func putCPU(r *report.Row, a, b cpuMark, clk float64) {
	wall, self, nodes, machine := b.at.Sub(a.at).Seconds(), (b.self - a.self).Seconds(), float64(b.nodes-a.nodes)/1e9, float64(b.host.Busy-a.host.Busy)/clk
	r.PutAll(map[string]float64{"wall_s": wall, "host_cpu_s": self, "node_cpu_s": nodes, "machine_cpu_s": machine, "other_cpu_s": machine - self - nodes,
		"steal_cores": float64(b.host.Steal-a.host.Steal) / clk / wall})
}

// layerPair runs one layer-change trial on nodes: fresh images A (full), then B (thin).
func (b *clusterBench) layerPair(ctx context.Context, rnd io.Reader, round int, nodes []labNode, run func(*report.Row, func(*report.Row) error)) {
	a, bImg, err := layerChangeImages(rnd, b.wd, b.hostFn, benchLabels(b.run))
	if err == nil {
		defer dropImage(ctx, nodes, bImg.ID, a.ID)
	}
	row := func(variant string) *report.Row {
		return report.NewRow("layer", "variant", variant, "nodes", len(nodes), "round", round+1)
	}
	fullOK := false
	run(row(layerFull), func(r *report.Row) error {
		if err == nil {
			err = b.distribute(ctx, r, nodes, a, false)
		}
		fullOK = err == nil
		return err
	})
	run(row(layerThin), func(r *report.Row) error {
		if !fullOK {
			return errors.New("not run: A's push failed")
		}
		return b.distribute(ctx, r, nodes, bImg, true)
	})
}

// layerChangeImages assembles two fork-mode images sharing a fresh base layer (wd + random).
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
	for _, img := range []*function.Image{&full, &changed} {
		handler, err := withNonce(fn)
		if err != nil {
			return full, changed, err
		}
		if *img, err = function.Assemble(function.ImageSpec{
			BaseFiles:  []function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: base}},
			Files:      []function.File{{Path: function.FunctionPath, Mode: 0o755, Content: handler}},
			Entrypoint: []string{function.WatchdogPath}, User: function.ImageUser, Labels: labels,
		}); err != nil {
			return full, changed, fmt.Errorf("layer-change images: %w", err)
		}
	}
	if full.BaseLayer == "" || full.BaseLayer != changed.BaseLayer || full.ID == changed.ID {
		return full, changed, fmt.Errorf("layer-change images: base layers %q and %q, IDs %s and %s: want one shared base layer and two images",
			full.BaseLayer, changed.BaseLayer, full.ID, changed.ID)
	}
	return full, changed, nil
}
