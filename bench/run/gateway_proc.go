package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The gateway suite's /proc bookkeeping: which processes belong to the
// HAProxy that pulsed started, to the replicas, to the engine's docker-proxy
// in front of them and to pulsed, and how much CPU each group used between
// two scans.

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

// needsCmdline reports whether classify needs p's command line.
func needsCmdline(p procStat) bool {
	return p.Comm == "haproxy" || p.Comm == "docker-proxy"
}

// classify returns the group p belongs to, or "". cmdline is p's argv
// (only read for the commands needsCmdline names).
func (w procWatch) classify(p procStat, cmdline []string) string {
	switch {
	case w.Pulsed != 0 && p.PID == w.Pulsed:
		return groupPulsed
	case slices.Contains(w.Replicas, p.PID):
		return groupReplicas
	case p.Comm == "haproxy" && w.HAProxyConfig != "" && haproxyLoads(cmdline, w.HAProxyConfig):
		return groupHAProxy
	case p.Comm == "docker-proxy" && len(w.Ports) > 0:
		if port, ok := flagValue(cmdline, "-host-port"); ok {
			if n, err := strconv.Atoi(port); err == nil && slices.Contains(w.Ports, n) {
				return groupDockerProxy
			}
		}
	}
	return ""
}

// haproxyLoads reports whether an haproxy command line loads cfg (-f cfg).
func haproxyLoads(cmdline []string, cfg string) bool {
	for i := 0; i+1 < len(cmdline); i++ {
		if cmdline[i] == "-f" && cmdline[i+1] == cfg {
			return true
		}
	}
	return false
}

// flagValue returns the argument after name in cmdline.
func flagValue(cmdline []string, name string) (string, bool) {
	for i := 0; i+1 < len(cmdline); i++ {
		if cmdline[i] == name {
			return cmdline[i+1], true
		}
	}
	return "", false
}

// parseCmdline splits /proc/<pid>/cmdline (NUL-terminated arguments).
func parseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

func readCmdline(procDir string, pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil, err
	}
	return parseCmdline(b), nil
}

// procCPU is one scan: per group, each member's own utime + stime in ticks.
type procCPU map[string]map[procKey]uint64

// scanProcs reads every process under procDir once and returns the CPU of
// the members of w's groups.
func scanProcs(procDir string, w procWatch) (procCPU, error) {
	g, _, err := scanAllProcs(procDir, w)
	return g, err
}

// scanAllProcs is scanProcs that also returns the CPU of every other
// process, by command name.
func scanAllProcs(procDir string, w procWatch) (groups, others procCPU, err error) {
	all, err := readStats(procDir)
	if err != nil {
		return nil, nil, err
	}
	out, others := procCPU{}, procCPU{}
	add := func(m procCPU, key string, st procStat) {
		if m[key] == nil {
			m[key] = map[procKey]uint64{}
		}
		m[key][procKey{st.PID, st.StartTime}] = st.UTime + st.STime
	}
	for _, st := range all {
		var cmd []string
		if needsCmdline(st) {
			if cmd, err = readCmdline(procDir, st.PID); err != nil {
				continue
			}
		}
		if g := w.classify(st, cmd); g != "" {
			add(out, g, st)
		} else {
			add(others, st.Comm, st)
		}
	}
	return out, others, nil
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

// findHAProxies returns the pids of live haproxy processes whose command
// line loads a configuration file under dir: those a pulsed of this run
// started.
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
		cmd, err := readCmdline(procDir, st.PID)
		if err != nil {
			continue
		}
		if cfg, ok := flagValue(cmd, "-f"); ok && strings.HasPrefix(cfg, prefix) {
			out = append(out, procKey{st.PID, st.StartTime})
		}
	}
	return out, nil
}
