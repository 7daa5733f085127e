package main

// Where a push trial's time goes: CPU of this process (getrusage, what
// /proc/self/stat holds at a finer grain), of each node container (its
// cgroup's cpuacct.usage, which counts its engine's containers too) and, per
// node, of its own processes by name (sshd, the docker CLI running
// dial-stdio, dockerd, containerd; their utime + stime + cutime + cstime
// from /proc, so a helper a process started and reaped counts in it; the
// processes read from the node cgroup's cgroup.procs), the whole machine's
// busy, iowait and stolen time (/proc/stat) and its disks' writes
// (/proc/diskstats). A connection's sshd and dial-stdio processes exit when it
// closes, so a node's processes are read once more just before its
// connection is closed.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process groups inside a node.
const (
	nodeSSHD       = "sshd"
	nodeDialStdio  = "docker CLI" // dial-stdio (push), docker load (local load)
	nodeDockerd    = "dockerd"
	nodeContainerd = "containerd"
	nodeOther      = "other"
	// nodeGone is the node cgroup's CPU its live processes do not explain:
	// processes that exited before the last read, and the engine's
	// containers (nested cgroups).
	nodeGone = "exited or nested"
)

var nodeGroups = []string{nodeSSHD, nodeDialStdio, nodeDockerd, nodeContainerd, nodeOther, nodeGone}

// nodeGroup is the group of a node's process by its command name.
func nodeGroup(comm string) string {
	switch {
	case comm == "sshd":
		return nodeSSHD
	case comm == "docker":
		return nodeDialStdio
	case comm == "dockerd":
		return nodeDockerd
	case comm == "containerd" || strings.HasPrefix(comm, "containerd-shim"):
		return nodeContainerd
	}
	return nodeOther
}

// hostStat is the first line of /proc/stat with iowait apart, in ticks.
type hostStat struct {
	hostCPU
	IOWait uint64
}

// readHostStat reads procDir/stat.
func readHostStat(procDir string) (hostStat, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return hostStat{}, fmt.Errorf("host cpu: %w", err)
	}
	h, err := parseHostCPU(strings.NewReader(string(b)))
	if err != nil {
		return hostStat{}, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(first)
	if len(f) < 6 {
		return hostStat{}, fmt.Errorf("parse /proc/stat cpu line: %d fields", len(f))
	}
	io, err := strconv.ParseUint(f[5], 10, 64)
	if err != nil {
		return hostStat{}, fmt.Errorf("parse /proc/stat iowait: %w", err)
	}
	return hostStat{hostCPU: h, IOWait: io}, nil
}

// parseDiskWrites sums the sectors written (×512 bytes) of the whole
// devices in a /proc/diskstats table that whole names (a partition's
// writes are its device's too; loop and zram devices are left out).
func parseDiskWrites(r io.Reader, whole func(name string) bool) (int64, error) {
	sc := bufio.NewScanner(r)
	var bytes int64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		name := f[2]
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "ram") || !whole(name) {
			continue
		}
		n, err := strconv.ParseInt(f[9], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("diskstats %s: %w", name, err)
		}
		bytes += n * 512
	}
	return bytes, sc.Err()
}

// readDiskWrites is parseDiskWrites of /proc/diskstats, whole devices
// being those in /sys/block.
func readDiskWrites() int64 {
	f, err := os.Open("/proc/diskstats")
	if err != nil {
		return 0
	}
	defer f.Close()
	n, _ := parseDiskWrites(f, func(name string) bool {
		_, err := os.Stat(filepath.Join("/sys/block", name))
		return err == nil
	})
	return n
}

// procTicks is one node process's CPU so far and its group.
type procTicks struct {
	group string
	ticks uint64
}

// nodeProcs reads the CPU of the processes directly in n's cgroup.
func nodeProcs(n labNode) map[procKey]procTicks {
	out := map[procKey]procTicks{}
	b, err := os.ReadFile(cgroupFile(n, "cpuacct", "cgroup.procs"))
	if err != nil {
		return out
	}
	for _, l := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(l)
		if err != nil {
			continue
		}
		if st, err := readStat("/proc", pid); err == nil {
			// With the children it reaped: dockerd's untar helper, a
			// connection's sshd processes (the listener reaps them).
			out[procKey{st.PID, st.StartTime}] = procTicks{nodeGroup(st.Comm), st.UTime + st.STime + st.CUTime + st.CSTime}
		}
	}
	return out
}

// selfCPU is this process's user + system time (getrusage).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pushProfile is one trial's readings.
type pushProfile struct {
	nodes  []labNode
	start  time.Time
	self   time.Duration
	host   hostStat
	disk   int64
	cgNS   map[string]int64
	procs0 map[string]map[procKey]procTicks

	mu     sync.Mutex
	procs1 map[string]map[procKey]procTicks // read before the node's connection closed
}

// startProfile reads everything before a trial on nodes.
func startProfile(nodes []labNode) *pushProfile {
	p := &pushProfile{nodes: nodes, cgNS: map[string]int64{}, procs0: map[string]map[procKey]procTicks{}, procs1: map[string]map[procKey]procTicks{}}
	for _, n := range nodes {
		p.procs0[n.Name] = nodeProcs(n)
		p.cgNS[n.Name], _ = nodeCPUNS(n)
	}
	p.host, _ = readHostStat("/proc")
	p.disk = readDiskWrites()
	p.self = selfCPU()
	p.start = time.Now()
	return p
}

// beforeClose reads n's processes, once, before its connection closes.
func (p *pushProfile) beforeClose(node string) {
	for _, n := range p.nodes {
		if n.Name != node {
			continue
		}
		procs := nodeProcs(n)
		p.mu.Lock()
		if _, ok := p.procs1[node]; !ok {
			p.procs1[node] = procs
		}
		p.mu.Unlock()
	}
}

// finish reads everything again and fills tr's CPU figures (clk: ticks per
// second).
func (p *pushProfile) finish(tr *pushTrial, clk float64) {
	self := selfCPU()
	span := time.Since(p.start).Seconds()
	host, _ := readHostStat("/proc")
	disk := readDiskWrites()
	tr.SpanS = round3(span)
	tr.HostCPUS = round3((self - p.self).Seconds())
	tr.DiskWriteMB = round3(float64(disk-p.disk) / mb)
	var nodesS float64
	for _, n := range p.nodes {
		ns, _ := nodeCPUNS(n)
		c := pushNodeCPU{Node: n.Name, CPUS: round3(float64(ns-p.cgNS[n.Name]) / 1e9), ByGroup: map[string]float64{}}
		p.mu.Lock()
		after, ok := p.procs1[n.Name]
		p.mu.Unlock()
		if !ok {
			after = nodeProcs(n)
		}
		split := func(m map[procKey]procTicks) map[string]map[procKey]uint64 {
			out := map[string]map[procKey]uint64{}
			for k, v := range m {
				if out[v.group] == nil {
					out[v.group] = map[procKey]uint64{}
				}
				out[v.group][k] = v.ticks
			}
			return out
		}
		before, byGroup := split(p.procs0[n.Name]), split(after)
		var live float64
		for _, g := range nodeGroups[:len(nodeGroups)-1] {
			ticks, _, _ := cpuDelta(before[g], byGroup[g])
			s := float64(ticks) / clk
			c.ByGroup[g] = round3(s)
			live += s
		}
		c.ByGroup[nodeGone] = round3(c.CPUS - live)
		nodesS += c.CPUS
		tr.NodeCPU = append(tr.NodeCPU, c)
	}
	if span > 0 && clk > 0 {
		busy := float64(host.Busy-p.host.Busy) / clk
		tr.BusyCores = round3(busy / span)
		tr.IOWaitCores = round3(float64(host.IOWait-p.host.IOWait) / clk / span)
		tr.StealCores = round3(float64(host.Steal-p.host.Steal) / clk / span)
		tr.OtherCPUS = round3(busy - tr.HostCPUS - nodesS)
	}
}
