package main

import (
	"bufio"
	"context"
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

	"github.com/pulsefaas/pulse/gateway"
)

// procStat is the part of /proc/<pid>/stat the harness uses; CPU times are
// in clock ticks (USER_HZ).
type procStat struct {
	PID, PPID      int
	Comm, State    string
	UTime, STime   uint64 // fields 14 and 15: the process's own user and system time
	CUTime, CSTime uint64 // fields 16 and 17: those of its waited-for children
	StartTime      uint64 // field 22: start time after boot
}

// errNoProcess reports that a process is gone.
var errNoProcess = errors.New("no such process")

// parseStat parses one /proc/<pid>/stat line. The command name may hold
// spaces and parentheses, so fields are counted from the last ')'.
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
	st := procStat{Comm: s[open+1 : end]}
	if st.PID, err = strconv.Atoi(strings.TrimSpace(s[:open])); err != nil {
		return procStat{}, fmt.Errorf("parse stat pid: %w", err)
	}
	// Fields 3 to 22; cutime and cstime are signed in proc(5).
	var ut, stime, cut, cst, start, x int64
	if _, err := fmt.Sscan(s[end+1:], &st.State, &st.PPID, &x, &x, &x, &x, &x, &x, &x, &x, &x, &ut, &stime, &cut, &cst, &x, &x, &x, &x, &start); err != nil {
		return procStat{}, fmt.Errorf("parse stat of %d: %w", st.PID, err)
	}
	if min(ut, stime, cut, cst, start) < 0 {
		return procStat{}, fmt.Errorf("parse stat of %d: a negative time", st.PID)
	}
	st.UTime, st.STime, st.CUTime, st.CSTime, st.StartTime = uint64(ut), uint64(stime), uint64(cut), uint64(cst), uint64(start)
	return st, nil
}

// readParsed opens path and parses it with parse.
func readParsed[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return parse(f)
}

// readStat reads /proc/<pid>/stat under procDir.
func readStat(procDir string, pid int) (procStat, error) {
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	st, err := readParsed(filepath.Join(dir, "stat"), parseStat)
	if err != nil {
		// A process that exits while its file is read can give a short read.
		if _, serr := os.Stat(dir); serr != nil || errors.Is(err, os.ErrNotExist) {
			err = errNoProcess
		}
		return procStat{}, fmt.Errorf("stat %d: %w", pid, err)
	}
	return st, nil
}

// readStats reads the stat of every process under procDir that it can.
func readStats(procDir string) ([]procStat, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", procDir, err)
	}
	var out []procStat
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if st, err := readStat(procDir, pid); err == nil {
				out = append(out, st)
			}
		}
	}
	return out, nil
}

// processTree returns root's stat, then its live descendants', breadth first.
func processTree(procDir string, root int) ([]procStat, error) {
	rst, err := readStat(procDir, root)
	if err != nil {
		return nil, err
	}
	all, err := readStats(procDir)
	children := map[int][]procStat{}
	for _, st := range all {
		children[st.PPID] = append(children[st.PPID], st)
	}
	seen := map[int]bool{}
	var out []procStat
	for q := []procStat{rst}; len(q) > 0; q = q[1:] {
		if p := q[0]; !seen[p.PID] {
			seen[p.PID] = true
			out = append(out, p)
			q = append(q, children[p.PID]...)
		}
	}
	return out, err
}

// treeCPU is a tree returned by processTree's CPU in ticks: utime + stime +
// cutime + cstime (a difference counts the reaped children).
func treeCPU(tree []procStat) (ticks uint64) {
	for _, p := range tree {
		ticks += p.UTime + p.STime + p.CUTime + p.CSTime
	}
	return ticks
}

// memStatus is the memory part of /proc/<pid>/status: VmRSS, resident now.
type memStatus struct{ RSSKB int64 }

// parseStatus parses /proc/<pid>/status.
func parseStatus(r io.Reader) (memStatus, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if val, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var m memStatus
			var unit string
			if _, err := fmt.Sscan(val, &m.RSSKB, &unit); err != nil || unit != "kB" || m.RSSKB <= 0 {
				return memStatus{}, fmt.Errorf("parse status VmRSS: %q", val)
			}
			return m, nil
		}
	}
	if err := sc.Err(); err != nil {
		return memStatus{}, fmt.Errorf("read status: %w", err)
	}
	return memStatus{}, errors.New("parse status: no VmRSS")
}

// readStatus reads /proc/<pid>/status under procDir.
func readStatus(procDir string, pid int) (memStatus, error) {
	m, err := readParsed(filepath.Join(procDir, strconv.Itoa(pid), "status"), parseStatus)
	if err != nil {
		return memStatus{}, fmt.Errorf("status %d: %w", pid, err)
	}
	return m, nil
}

// hostCPU is the first line of /proc/stat, in ticks summed over all CPUs.
type hostCPU struct {
	Busy  uint64 // user + nice + system + irq + softirq (guest is in user and nice)
	Steal uint64 // time a hypervisor ran something else instead
	Total uint64 // Busy + Steal + idle + iowait
}

// parseHostCPU parses the aggregate "cpu" line of /proc/stat.
func parseHostCPU(r io.Reader) (hostCPU, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "cpu ")
		if !ok {
			continue
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		if _, err := fmt.Sscan(line, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]); err != nil {
			return hostCPU{}, fmt.Errorf("parse /proc/stat cpu line: %w", err)
		}
		busy := v[0] + v[1] + v[2] + v[5] + v[6]
		return hostCPU{Busy: busy, Steal: v[7], Total: busy + v[7] + v[3] + v[4]}, nil
	}
	if err := sc.Err(); err != nil {
		return hostCPU{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	return hostCPU{}, errors.New("parse /proc/stat: no cpu line")
}

// readHostCPU reads procDir/stat.
func readHostCPU(procDir string) (hostCPU, error) {
	h, err := readParsed(filepath.Join(procDir, "stat"), parseHostCPU)
	if err != nil {
		return hostCPU{}, fmt.Errorf("host cpu: %w", err)
	}
	return h, nil
}

// readLoad1 returns the one-minute load average from procDir/loadavg.
func readLoad1(procDir string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "loadavg"))
	var v float64
	if err == nil {
		_, err = fmt.Sscan(string(b), &v)
	}
	if err != nil {
		return 0, fmt.Errorf("loadavg: %w", err)
	}
	return v, nil
}

// procKey names one process over time: a pid with its start time, so that a
// reused pid is never taken for the process that had it before.
type procKey struct {
	PID   int
	Start uint64
}

// Process groups: the gateway suite's measured stack and the soak's harness.
const (
	groupHAProxy     = "haproxy"
	groupDockerProxy = "docker-proxy"
	groupReplicas    = "replicas"
	groupPulsed      = "pulsed"
	groupHarness     = "harness"
)

// procWatch says which processes belong to which group.
type procWatch struct {
	HAProxyConfig string // pulsed's haproxy.cfg: a haproxy whose -f loads it is pulsed's (master, reloads, workers)
	Ports         []int  // the replicas' published ports: a docker-proxy with one as -host-port is theirs
	Replicas      []int  // the replicas' pids (ContainerInspect State.Pid)
	Pulsed        int    // pulsed's pid, 0 for none
}

// classify returns the group p belongs to, or "". cmdline is p's argv (read
// only for haproxy and docker-proxy).
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

// scanAllProcs returns, from one scan of procDir, the CPU of w's groups.
func scanAllProcs(procDir string, w procWatch) (procCPU, error) {
	all, err := readStats(procDir)
	if err != nil {
		return nil, err
	}
	groups := procCPU{}
	for _, st := range all {
		var cmd []string
		if st.Comm == "haproxy" || st.Comm == "docker-proxy" {
			if cmd, err = readCmdline(procDir, st.PID); err != nil {
				continue
			}
		}
		if g := w.classify(st, cmd); g != "" {
			if groups[g] == nil {
				groups[g] = map[procKey]uint64{}
			}
			groups[g][procKey{st.PID, st.StartTime}] = st.UTime + st.STime
		}
	}
	return groups, nil
}

// cpuDelta is a group's CPU in ticks between two scans (all of a process
// started in between counts).
func cpuDelta(before, after map[procKey]uint64) (ticks uint64) {
	for k, v := range after {
		if b, ok := before[k]; !ok {
			ticks += v
		} else if b <= v {
			ticks += v - b
		}
	}
	return ticks
}

// findHAProxies returns the live haproxy processes whose configuration file
// is under dir: those a pulsed of this run started.
func findHAProxies(procDir, dir string) ([]procKey, error) {
	all, err := readStats(procDir)
	if err != nil {
		return nil, err
	}
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	var out []procKey
	for _, st := range all {
		if st.Comm != "haproxy" || st.State == "Z" {
			continue
		}
		if args, _ := readCmdline(procDir, st.PID); args != nil {
			if cfg, _ := flagValue(args, "-f"); strings.HasPrefix(cfg, prefix) {
				out = append(out, procKey{st.PID, st.StartTime})
			}
		}
	}
	return out, nil
}

// killHAProxies SIGKILLs every haproxy that findHAProxies finds; it returns their pids.
func killHAProxies(dir string) []int {
	procs, _ := findHAProxies("/proc", dir)
	var pids []int
	for _, p := range procs {
		if st, err := readStat("/proc", p.PID); err == nil && st.StartTime == p.Start {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// reapHAProxies waits up to linger for every haproxy whose configuration
// file is under dir to exit, then kills what is left and returns their pids.
func reapHAProxies(dir string, linger time.Duration) []int {
	for start := time.Now(); time.Since(start) < linger; time.Sleep(5 * time.Millisecond) {
		if left, err := findHAProxies("/proc", dir); err != nil || len(left) == 0 {
			return nil
		}
	}
	return killHAProxies(dir)
}

// slotInfo is a slot (gateway.Slots) of a backend: its name says nothing of
// its replica (its address does); its counters run on from one to the next.
type slotInfo struct {
	Name    string
	Addr    string             // host:port it points at (its last replica's while free)
	State   gateway.AdminState // ready, drain or maint
	Serving bool               // ready and up: gets new requests
	Stot    int64              // sessions so far, over every replica it held
}

// Live reports whether the slot holds a replica (draining included).
func (s slotInfo) Live() bool { return s.State != gateway.StateMaint }

// countSlots returns how many of a backend's servers, the backup left out,
// hold a replica, and how many of those are serving.
func countSlots(ss []gateway.ServerState) (live, serving int) {
	for _, s := range ss {
		if s.Name != gateway.BackupServerName && s.State() != gateway.StateMaint {
			live++
			if s.Serving() {
				serving++
			}
		}
	}
	return live, serving
}

// joinSlots joins a backend's server states with its `show stat` rows by
// name, in the order of states, the backup left out (no stats: Stot 0).
func joinSlots(states []gateway.ServerState, stats []gateway.ServerStat) []slotInfo {
	stot := make(map[string]int64, len(stats))
	for _, st := range stats {
		stot[st.Server] = st.Sessions
	}
	var out []slotInfo
	for _, s := range states {
		if s.Name != gateway.BackupServerName {
			out = append(out, slotInfo{Name: s.Name, Addr: s.Address(), State: s.State(), Serving: s.Serving(), Stot: stot[s.Name]})
		}
	}
	return out
}

// liveSlots returns the slots that hold a replica.
func liveSlots(ss []slotInfo) []slotInfo {
	return slices.DeleteFunc(slices.Clone(ss), func(s slotInfo) bool { return !s.Live() })
}

// readSlots reads backend's servers (state and sessions) from HAProxy.
func readSlots(ctx context.Context, rt *gateway.Runtime, backend string) ([]slotInfo, error) {
	states, err := rt.Servers(ctx, backend)
	if err != nil {
		return nil, err
	}
	stats, err := serverStats(ctx, rt, backend)
	if err != nil {
		return nil, err
	}
	return joinSlots(states, stats), nil
}

// serverStats reads the `show stat` rows of backend's servers.
func serverStats(ctx context.Context, rt *gateway.Runtime, backend string) ([]gateway.ServerStat, error) {
	out, err := rt.Exec(ctx, "show stat "+backend+" 4 -1") // type 4: servers only
	var stats []gateway.ServerStat
	if err == nil {
		stats, err = gateway.ParseServerStat(strings.NewReader(out))
	}
	if err != nil {
		return nil, fmt.Errorf("show stat %s: %w", backend, err)
	}
	return stats, nil
}

// newTraffic returns the live slots that took a session since base (name →
// stot) at an address not in old: new replicas taking traffic.
func newTraffic(now []slotInfo, base map[string]int64, old map[string]bool) []slotInfo {
	return slices.DeleteFunc(slices.Clone(now), func(s slotInfo) bool { return !s.Live() || old[s.Addr] || s.Stot <= base[s.Name] })
}
