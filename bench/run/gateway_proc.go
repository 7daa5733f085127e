package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The gateway suite's /proc bookkeeping (the soak's too): which processes
// belong to the HAProxy that pulsed started, to the replicas, to the
// engine's docker-proxy in front of them and to pulsed, and how much CPU
// each group used between two scans.

// procKey names one process over time: a pid with its start time, so that a
// reused pid is never taken for the process that had it before.
type procKey struct {
	PID   int
	Start uint64
}

// Process groups the gateway suite samples.
const (
	groupHAProxy     = "haproxy"      // master and workers of pulsed's HAProxy
	groupDockerProxy = "docker-proxy" // the engine's userland proxy of the replicas' published ports
	groupReplicas    = "replicas"     // the replicas' processes (the in-process Go echo)
	groupPulsed      = "pulsed"       // pulsed itself, without HAProxy
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
