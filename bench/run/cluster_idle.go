package main

// The cluster suite's idle cost: the 3 nodes in their swarm with the
// 3-replica function deployed and pulsed (at its defaults, its engine over
// SSH) routing it, nothing calling it, over idleWindow: CPU of each node
// container (cpuacct.usage, which counts its engine and replicas), of pulsed
// and of its HAProxy (utime + stime from /proc), in % of one core; at the
// end each node's memory (memory.usage_in_bytes and memory.stat's total_rss,
// total_cache) and pulsed's and HAProxy's RSS.

import (
	"bufio"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// idle runs the stage.
func (b *clusterBench) idle(ctx context.Context) error {
	if b.setting.Name != clusterDefaults.Name || b.pulsed == nil {
		if err := b.startPulsed(ctx, clusterDefaults); err != nil {
			return err
		}
	}
	spread, _, err := b.taskSpread(ctx)
	if err != nil {
		return err
	}
	// Settle: the deploy's and pulsed's start-up work done.
	if _, _, err := waitQuiet(ctx, b.env.clk, 10*time.Second); err != nil {
		return err
	}
	cpu0, err := b.idleSample()
	if err != nil {
		return err
	}
	h0, _ := readHostCPU("/proc")
	start := time.Now()
	if err := sleepCtx(ctx, b.idleWindow); err != nil {
		return err
	}
	cpu1, err := b.idleSample()
	if err != nil {
		return err
	}
	h1, _ := readHostCPU("/proc")
	window := time.Since(start).Seconds()
	pct := func(seconds float64) float64 { return round3(100 * seconds / window) }
	r := &clusterIdle{WindowS: round3(window), Setting: b.setting.Name}
	for _, n := range b.lab.nodes {
		in := idleNode{Node: n.Name, Tasks: spread[n.Name], CPUPct: pct(float64(cpu1.nodes[n.Name]-cpu0.nodes[n.Name]) / 1e9)}
		if v, err := readCgroupInt(cgroupFile(n, "memory", "memory.usage_in_bytes")); err == nil {
			in.MemMB = round3(float64(v) / mb)
		}
		if f, err := os.Open(cgroupFile(n, "memory", "memory.stat")); err == nil {
			st := parseMemoryStat(f)
			f.Close()
			in.RSSMB, in.CacheMB = round3(float64(st["total_rss"])/mb), round3(float64(st["total_cache"])/mb)
		}
		in.Procs = len(nodeProcs(n))
		r.Nodes = append(r.Nodes, in)
		r.NodesCPUPct += in.CPUPct
		r.NodesMemMB += in.MemMB
		r.NodesRSSMB += in.RSSMB
	}
	ticks := func(k string) float64 {
		d, _, _ := cpuDelta(cpu0.procs[k], cpu1.procs[k])
		return float64(d) / b.env.clk
	}
	r.PulsedCPUPct, r.HAProxyCPUPct = pct(ticks("pulsed")), pct(ticks("haproxy"))
	r.HAProxyProcs = len(cpu1.procs["haproxy"])
	r.NodesCPUPct, r.NodesMemMB, r.NodesRSSMB = round3(r.NodesCPUPct), round3(r.NodesMemMB), round3(r.NodesRSSMB)
	r.TotalCPUPct = round3(r.NodesCPUPct + r.PulsedCPUPct + r.HAProxyCPUPct)
	r.PulsedRSSMB, r.HAProxyRSSMB = b.pulsedRSS()
	r.HostBusyPct = round3(100 * float64(h1.Busy-h0.Busy) / b.env.clk / window)
	b.rep.Idle = r
	b.log.Info("idle", "cpu_pct", r.TotalCPUPct, "nodes_mem_mb", r.NodesMemMB, "host_busy_pct", r.HostBusyPct)
	return nil
}

// clusterIdleCPU is one reading: each node's cgroup CPU (ns), and pulsed's and its
// HAProxy's processes (ticks).
type clusterIdleCPU struct {
	nodes map[string]int64
	procs map[string]map[procKey]uint64
}

func (b *clusterBench) idleSample() (clusterIdleCPU, error) {
	s := clusterIdleCPU{nodes: map[string]int64{}, procs: map[string]map[procKey]uint64{"pulsed": {}, "haproxy": {}}}
	for _, n := range b.lab.nodes {
		v, err := nodeCPUNS(n)
		if err != nil {
			return s, err
		}
		s.nodes[n.Name] = v
	}
	if st, err := readStat("/proc", b.pulsed.pid()); err == nil {
		s.procs["pulsed"][procKey{st.PID, st.StartTime}] = st.UTime + st.STime
	}
	hs, err := findHAProxies("/proc", b.stateDir)
	if err != nil {
		return s, err
	}
	for _, p := range hs {
		if st, err := readStat("/proc", p.PID); err == nil {
			s.procs["haproxy"][p] = st.UTime + st.STime
		}
	}
	return s, nil
}

// parseMemoryStat reads a cgroup v1 memory.stat ("name value" lines).
func parseMemoryStat(r io.Reader) map[string]int64 {
	m := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}
