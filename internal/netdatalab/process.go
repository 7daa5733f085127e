package netdatalab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is one process of the lab: Netdata or one of its descendants
// (its spawn server, the plugin), as /proc shows it.
type Process struct {
	PID, PPID int
	Cmdline   []string
	UID       int   // real user ID
	GIDs      []int // real group ID followed by the supplementary groups
	RSSKB     int64 // VmRSS
}

// Processes returns Netdata (first) and its live descendants, found
// through /proc; processes that exit meanwhile are left out.
func (n *Netdata) Processes() ([]Process, error) {
	return ProcessTree("/proc", n.PID())
}

// ProcessTree returns process root (first) and its live descendants under
// procDir (normally /proc), e.g. a system Netdata's, for comparison.
func ProcessTree(procDir string, root int) ([]Process, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	byParent := map[int][]Process{}
	var top *Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := readProcess(filepath.Join(procDir, e.Name()), pid)
		if err != nil {
			continue // gone
		}
		if pid == root {
			top = &p
			continue
		}
		byParent[p.PPID] = append(byParent[p.PPID], p)
	}
	if top == nil {
		return nil, fmt.Errorf("process %d: %w", root, os.ErrNotExist)
	}
	out := []Process{*top}
	for i := 0; i < len(out); i++ {
		out = append(out, byParent[out[i].PID]...)
	}
	return out, nil
}

// readProcess reads one process's cmdline and status.
func readProcess(dir string, pid int) (Process, error) {
	p := Process{PID: pid}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return p, err
	}
	p.Cmdline = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return p, err
	}
	p.UID = -1
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "PPid":
			if len(f) > 0 {
				p.PPID, _ = strconv.Atoi(f[0])
			}
		case "Uid":
			if len(f) > 0 {
				p.UID, _ = strconv.Atoi(f[0])
			}
		case "Gid":
			if len(f) > 0 {
				g, _ := strconv.Atoi(f[0])
				p.GIDs = append([]int{g}, p.GIDs...)
			}
		case "Groups":
			for _, s := range f {
				g, _ := strconv.Atoi(s)
				p.GIDs = append(p.GIDs, g)
			}
		case "VmRSS":
			if len(f) > 0 {
				p.RSSKB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	if p.UID < 0 {
		return p, fmt.Errorf("%s/status: no Uid line", dir)
	}
	return p, nil
}
