package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is the part of /proc/<pid>/stat the harness uses. CPU times are
// in clock ticks (USER_HZ).
type procStat struct {
	PID       int
	PPID      int
	Comm      string
	State     string
	UTime     uint64 // field 14: user time of the process itself
	STime     uint64 // field 15: system time of the process itself
	CUTime    uint64 // field 16: user time of its waited-for children
	CSTime    uint64 // field 17: system time of its waited-for children
	StartTime uint64 // field 22: start time after boot, in ticks
}

// errNoProcess reports that a process is gone.
var errNoProcess = errors.New("no such process")

// parseStat parses one /proc/<pid>/stat line. The command name is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(r io.Reader) (procStat, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return procStat{}, fmt.Errorf("read stat: %w", err)
	}
	s := strings.TrimSpace(string(b))
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parse stat %q: no command name", s)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("parse stat pid: %w", err)
	}
	f := strings.Fields(s[end+1:]) // f[0] is field 3
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parse stat of %d: %d fields, want at least 22", pid, len(f)+2)
	}
	st := procStat{PID: pid, Comm: s[open+1 : end], State: f[0]}
	if st.PPID, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("parse stat of %d: ppid: %w", pid, err)
	}
	for _, fld := range []struct {
		n   int
		dst *uint64
	}{{14, &st.UTime}, {15, &st.STime}, {16, &st.CUTime}, {17, &st.CSTime}, {22, &st.StartTime}} {
		v, err := strconv.ParseInt(f[fld.n-3], 10, 64) // cutime and cstime are signed in proc(5)
		if err != nil || v < 0 {
			return procStat{}, fmt.Errorf("parse stat of %d: field %d %q", pid, fld.n, f[fld.n-3])
		}
		*fld.dst = uint64(v)
	}
	return st, nil
}

// readStat reads /proc/<pid>/stat under procDir.
func readStat(procDir string, pid int) (procStat, error) {
	f, err := os.Open(filepath.Join(procDir, strconv.Itoa(pid), "stat"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return procStat{}, fmt.Errorf("stat %d: %w", pid, errNoProcess)
		}
		return procStat{}, fmt.Errorf("stat %d: %w", pid, err)
	}
	defer f.Close()
	st, err := parseStat(f)
	if err != nil {
		// A process that exits while its file is read can give a short read.
		if _, serr := os.Stat(filepath.Join(procDir, strconv.Itoa(pid))); serr != nil {
			return procStat{}, fmt.Errorf("stat %d: %w", pid, errNoProcess)
		}
		return procStat{}, err
	}
	return st, nil
}

// readStats reads the stat of every process in procDir, in pid order,
// leaving out those gone or not ours to read.
func readStats(procDir string) ([]procStat, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", procDir, err)
	}
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(procDir, pid); err == nil {
			out = append(out, st)
		}
	}
	return out, nil
}

// processTree returns root's stat followed by those of all its live
// descendants (breadth first), found by walking every process's parent.
func processTree(procDir string, root int) ([]procStat, error) {
	rst, err := readStat(procDir, root)
	if err != nil {
		return nil, err
	}
	all, err := readStats(procDir)
	if err != nil {
		return nil, err
	}
	children := map[int][]procStat{}
	for _, st := range all {
		if st.PID != root {
			children[st.PPID] = append(children[st.PPID], st)
		}
	}
	tree := []procStat{rst}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].PID]...)
	}
	return tree, nil
}

// cpuSample is the CPU time of a process tree at one moment, in ticks.
type cpuSample struct {
	// Self is the root's own utime + stime.
	Self uint64
	// Total is, over the root and every live descendant, utime + stime +
	// cutime + cstime: the CPU of the whole tree, including descendants that
	// have exited and been reaped inside it. Between two samples its
	// difference is the tree's CPU in that interval, as long as every
	// descendant is reaped by a process of the tree.
	Total uint64
	// Procs is the number of live processes in the tree.
	Procs int
}

// treeCPU sums a tree returned by processTree.
func treeCPU(tree []procStat) cpuSample {
	var s cpuSample
	for i, p := range tree {
		if i == 0 {
			s.Self = p.UTime + p.STime
		}
		s.Total += p.UTime + p.STime + p.CUTime + p.CSTime
		s.Procs++
	}
	return s
}

// forestCPU sums, from one scan of procDir, the CPU of the processes that
// match includes and, for those it also says to descend into, of all their
// live descendants; each process counts once. A tree counts its processes'
// reaped children too (cutime + cstime: what it started and waited for); a
// process included without its tree counts only its own utime + stime, since
// a child it reaps, live and left out until then, would land in it whole.
// Self is 0; Procs counts the processes summed.
func forestCPU(procDir string, match func(procStat) (include, descend bool)) (cpuSample, error) {
	all, err := readStats(procDir)
	if err != nil {
		return cpuSample{}, err
	}
	byPID := map[int]procStat{}
	children := map[int][]int{}
	var roots, trees []int
	for _, st := range all {
		pid := st.PID
		byPID[pid] = st
		children[st.PPID] = append(children[st.PPID], pid)
		switch include, descend := match(st); {
		case include && descend:
			trees = append(trees, pid)
		case include:
			roots = append(roots, pid)
		}
	}
	seen := map[int]bool{}
	var s cpuSample
	for len(trees) > 0 {
		pid := trees[0]
		trees = trees[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		p := byPID[pid]
		s.Total += p.UTime + p.STime + p.CUTime + p.CSTime
		s.Procs++
		trees = append(trees, children[pid]...)
	}
	for _, pid := range roots {
		if seen[pid] {
			continue
		}
		seen[pid] = true
		p := byPID[pid]
		s.Total += p.UTime + p.STime
		s.Procs++
	}
	return s, nil
}

// cmdlineFlag returns the value after flag in the command line of pid
// (/proc/<pid>/cmdline), or "".
func cmdlineFlag(procDir string, pid int, flag string) string {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// memStatus is the memory part of /proc/<pid>/status, in KiB.
type memStatus struct {
	RSSKB     int64 // VmRSS: resident now
	HWMKB     int64 // VmHWM: peak resident since start
	RSSAnonKB int64 // RssAnon: the heap, stacks and other private memory
	RSSFileKB int64 // RssFile: mapped file pages, mostly the binary itself
}

// parseStatus parses /proc/<pid>/status.
func parseStatus(r io.Reader) (memStatus, error) {
	var m memStatus
	fields := map[string]*int64{"VmRSS": &m.RSSKB, "VmHWM": &m.HWMKB, "RssAnon": &m.RSSAnonKB, "RssFile": &m.RSSFileKB}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, found := strings.Cut(sc.Text(), ":")
		dst, ok := fields[key]
		if !found || !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return memStatus{}, fmt.Errorf("parse status %s: %q", key, val)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memStatus{}, fmt.Errorf("parse status %s: %w", key, err)
		}
		*dst = n
	}
	// RssAnon and RssFile exist since Linux 4.5; VmRSS and VmHWM always.
	if err := sc.Err(); err != nil {
		return memStatus{}, fmt.Errorf("read status: %w", err)
	}
	if m.RSSKB == 0 || m.HWMKB == 0 {
		return memStatus{}, errors.New("parse status: VmRSS or VmHWM missing")
	}
	return m, nil
}

// readStatus reads /proc/<pid>/status under procDir.
func readStatus(procDir string, pid int) (memStatus, error) {
	f, err := os.Open(filepath.Join(procDir, strconv.Itoa(pid), "status"))
	if err != nil {
		return memStatus{}, fmt.Errorf("status %d: %w", pid, err)
	}
	defer f.Close()
	return parseStatus(f)
}

// hostCPU is the first line of /proc/stat, in ticks summed over all CPUs.
type hostCPU struct {
	Busy  uint64 // user + nice + system + irq + softirq
	IRQ   uint64 // irq + softirq (part of Busy)
	Steal uint64 // time a hypervisor ran something else instead
	Total uint64 // Busy + Steal + idle + iowait
}

// parseHostCPU parses the aggregate "cpu" line of /proc/stat. Guest time is
// already included in user and nice, so it is not added again.
func parseHostCPU(r io.Reader) (hostCPU, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return hostCPU{}, fmt.Errorf("parse /proc/stat cpu line: %d fields", len(f))
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return hostCPU{}, fmt.Errorf("parse /proc/stat cpu line: %w", err)
			}
			v[i] = n
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		busy := user + nice + system + irq + softirq
		return hostCPU{Busy: busy, IRQ: irq + softirq, Steal: steal, Total: busy + steal + idle + iowait}, nil
	}
	if err := sc.Err(); err != nil {
		return hostCPU{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	return hostCPU{}, errors.New("parse /proc/stat: no cpu line")
}

// readHostCPU reads procDir/stat.
func readHostCPU(procDir string) (hostCPU, error) {
	f, err := os.Open(filepath.Join(procDir, "stat"))
	if err != nil {
		return hostCPU{}, fmt.Errorf("host cpu: %w", err)
	}
	defer f.Close()
	return parseHostCPU(f)
}

// readLoad1 returns the one-minute load average from procDir/loadavg.
func readLoad1(procDir string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "loadavg"))
	if err != nil {
		return 0, fmt.Errorf("loadavg: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("loadavg: empty")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("loadavg: %w", err)
	}
	return v, nil
}

// kbToMB is kb KiB in decimal megabytes.
func kbToMB(kb int64) float64 { return round3(float64(kb) * 1024 / mb) }

// Process groups (the gateway, soak and autoscale suites'): which processes
// belong to the HAProxy that pulsed started, to the replicas, to the
// engine's docker-proxy in front of them and to pulsed, and how much CPU
// each group used between two scans.

// procKey names one process over time: a pid with its start time, so that a
// reused pid is never taken for the process that had it before.
type procKey struct {
	PID   int
	Start uint64
}

// Process groups the suites sample.
const (
	groupHAProxy     = "haproxy"      // master and workers of pulsed's HAProxy
	groupDockerProxy = "docker-proxy" // the engine's userland proxy of the replicas' published ports
	groupReplicas    = "replicas"     // the replicas' processes (the in-process Go echo)
	groupPulsed      = "pulsed"       // pulsed itself, without HAProxy
	groupHarness     = "harness"      // this program: the load's client, HAProxy's log receiver, the pollers
	groupNetdata     = "netdata"      // the lab Netdata and its plugins
)

// procWatch says which processes belong to which group.
type procWatch struct {
	// HAProxyConfig is the haproxy.cfg of pulsed's HAProxy: a haproxy
	// process belongs to it when its command line loads that file (the
	// master, its re-executions after a reload, and the workers it forks).
	HAProxyConfig string
	// Ports are the replicas' published host ports: a docker-proxy belongs
	// to them when it serves one of them (-host-port).
	Ports []int
	// Replicas are the pids of the replicas' processes, as the engine
	// reports them (ContainerInspect State.Pid).
	Replicas []int
	// Pulsed is pulsed's pid, 0 for none.
	Pulsed int
}

// classify returns the group p belongs to, or "". cmdline is p's argv
// (only read for haproxy and docker-proxy).
func (w procWatch) classify(p procStat, cmdline []string) string {
	switch {
	case w.Pulsed != 0 && p.PID == w.Pulsed:
		return groupPulsed
	case slices.Contains(w.Replicas, p.PID):
		return groupReplicas
	case p.Comm == "haproxy" && w.HAProxyConfig != "":
		if cfg, ok := flagValue(cmdline, "-f"); ok && cfg == w.HAProxyConfig {
			return groupHAProxy
		}
	case p.Comm == "docker-proxy" && len(w.Ports) > 0:
		if port, ok := flagValue(cmdline, "-host-port"); ok {
			if n, err := strconv.Atoi(port); err == nil && slices.Contains(w.Ports, n) {
				return groupDockerProxy
			}
		}
	}
	return ""
}

// flagValue returns the argument after name in cmdline.
func flagValue(cmdline []string, name string) (string, bool) {
	if i := slices.Index(cmdline, name); i >= 0 && i+1 < len(cmdline) {
		return cmdline[i+1], true
	}
	return "", false
}

// readCmdline reads /proc/<pid>/cmdline (NUL-terminated arguments).
func readCmdline(procDir string, pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"))
	if s := strings.TrimRight(string(b), "\x00"); err == nil && s != "" {
		return strings.Split(s, "\x00"), nil
	}
	return nil, err
}

// procCPU is one scan: per group, each member's own utime + stime in ticks.
type procCPU map[string]map[procKey]uint64

// scanAllProcs reads every process under procDir once and returns the CPU
// of the members of w's groups, and of every other process by command name.
// A haproxy or docker-proxy whose command line is gone (it exited during the
// scan) is in neither.
func scanAllProcs(procDir string, w procWatch) (groups, others procCPU, err error) {
	all, err := readStats(procDir)
	if err != nil {
		return nil, nil, err
	}
	groups, others = procCPU{}, procCPU{}
	add := func(m procCPU, key string, st procStat) {
		if m[key] == nil {
			m[key] = map[procKey]uint64{}
		}
		m[key][procKey{st.PID, st.StartTime}] = st.UTime + st.STime
	}
	for _, st := range all {
		var cmd []string
		if st.Comm == "haproxy" || st.Comm == "docker-proxy" {
			if cmd, err = readCmdline(procDir, st.PID); err != nil {
				continue
			}
		}
		if g := w.classify(st, cmd); g != "" {
			add(groups, g, st)
		} else {
			add(others, st.Comm, st)
		}
	}
	return groups, others, nil
}

// cpuDelta is the CPU a group used between two scans, in ticks: for each
// process in the second scan, what it used since the first (all of it if
// it started in between: born counts those). A process that exited in
// between is lost with its CPU; lost counts those.
func cpuDelta(before, after map[procKey]uint64) (ticks uint64, lost, born int) {
	for k, v := range after {
		if b, ok := before[k]; ok && b <= v {
			ticks += v - b
		} else if !ok {
			ticks += v
			born++
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			lost++
		}
	}
	return ticks, lost, born
}

// findHAProxies returns the live haproxy processes whose command line
// loads a configuration file under dir: those a pulsed of this run
// started.
func findHAProxies(procDir, dir string) ([]procKey, error) {
	all, err := readStats(procDir)
	if err != nil {
		return nil, err
	}
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	var out []procKey
	for _, st := range all {
		if st.Comm == "haproxy" && st.State != "Z" && strings.HasPrefix(cmdlineFlag(procDir, st.PID, "-f"), prefix) {
			out = append(out, procKey{st.PID, st.StartTime})
		}
	}
	return out, nil
}

// killHAProxies SIGKILLs every haproxy process whose configuration file is
// under dir and returns their pids.
func killHAProxies(dir string) []int {
	procs, err := findHAProxies("/proc", dir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, p := range procs {
		if st, err := readStat("/proc", p.PID); err == nil && st.StartTime == p.Start {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// reapHAProxies waits up to linger for every haproxy process whose
// configuration file is under dir to exit, then kills what is left. It
// returns how long one was still seen after it began, and the pids it
// killed.
func reapHAProxies(dir string, linger time.Duration) (lingered time.Duration, killed []int) {
	start := time.Now()
	for {
		if left, err := findHAProxies("/proc", dir); err != nil || len(left) == 0 {
			return lingered, nil
		}
		lingered = time.Since(start)
		if lingered >= linger {
			return lingered, killHAProxies(dir)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
