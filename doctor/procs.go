package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// PulsedPIDFile is where pulsed records its pid when no systemd supervises
// it (DESIGN.md §2), relative to the root.
const PulsedPIDFile = "run/pulse/pulsed.pid"

// findProcesses returns the pids whose /proc/<pid>/comm is name, in
// ascending order. comm holds at most 15 bytes, enough for every name here.
func findProcesses(ctx context.Context, root fs.FS, name string) ([]int, error) {
	if root == nil {
		return nil, errors.New("no host file system configured")
	}
	entries, err := fs.ReadDir(root, "proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	var pids []int
	for _, e := range entries {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		comm, err := fs.ReadFile(root, "proc/"+e.Name()+"/comm")
		if err != nil {
			continue // it exited since the listing
		}
		if strings.TrimSpace(string(comm)) == name {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

func pidList(pids []int) string {
	const show = 3
	var s []string
	for i, pid := range pids {
		if i == show {
			s = append(s, "...")
			break
		}
		s = append(s, strconv.Itoa(pid))
	}
	return strings.Join(s, ", ")
}

// processCheck reports whether a process named name runs on this host.
func processCheck(ctx context.Context, p Probes, name, hint string) Result {
	pids, err := findProcesses(ctx, p.Root, name)
	switch {
	case err != nil:
		return Result{Status: WARN, Detail: err.Error(), Hint: hint}
	case len(pids) == 0:
		return Result{Status: WARN, Detail: "not running", Hint: hint}
	case len(pids) == 1:
		return Result{Status: OK, Detail: fmt.Sprintf("running (pid %d)", pids[0])}
	default:
		return Result{Status: OK, Detail: fmt.Sprintf("running (%d processes: pids %s)", len(pids), pidList(pids))}
	}
}

const pulsedHint = "start it: make up, or systemctl start pulsed (needed on the control node only)"

// checkPulsed looks for pulsed by its pid file, then by process name.
func checkPulsed(ctx context.Context, p Probes) Result {
	if p.Root == nil {
		return Result{Status: WARN, Detail: "no host file system configured", Hint: pulsedHint}
	}
	stale := ""
	if s, err := readTrimmed(p.Root, PulsedPIDFile); err == nil {
		pid, err := strconv.Atoi(s)
		switch {
		case err != nil || pid <= 0:
			stale = fmt.Sprintf("; /%s holds %q, not a pid", PulsedPIDFile, s)
		case exists(p.Root, "proc/"+strconv.Itoa(pid)):
			return Result{Status: OK, Detail: fmt.Sprintf("running (pid %d from /%s)", pid, PulsedPIDFile)}
		default:
			stale = fmt.Sprintf("; stale /%s (pid %d is gone)", PulsedPIDFile, pid)
		}
	}
	r := processCheck(ctx, p, "pulsed", pulsedHint)
	if r.Status != OK {
		r.Detail += stale
		if stale != "" {
			r.Hint = pulsedHint + "; remove the stale pid file"
		}
	}
	return r
}

func checkHAProxyProc(ctx context.Context, p Probes) Result {
	return processCheck(ctx, p, "haproxy", "pulsed starts and supervises it: start pulsed on the control node")
}

func checkNetdataProc(ctx context.Context, p Probes) Result {
	return processCheck(ctx, p, "netdata", "start it: systemctl start netdata, or /usr/sbin/netdata -D")
}
