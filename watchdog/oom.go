package watchdog

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
)

// oomWatch tells whether the kernel's OOM killer has struck in the
// watchdog's memory cgroup (the replica's container) since it last looked:
// a fork-mode process that died of SIGKILL the watchdog did not send was
// then killed for memory. The count is read only when such a death needs
// explaining, never per request.
type oomWatch struct {
	path string // memory.events (cgroup v2) or memory.oom_control (v1); "" if none
	mu   sync.Mutex
	seen uint64
}

func newOOMWatch() *oomWatch {
	w := &oomWatch{path: oomCounterPath()}
	w.seen, _ = w.read()
	return w
}

// killedSince reports whether the OOM kill count rose since the last call
// (or the start), and remembers the new count.
func (w *oomWatch) killedSince() bool {
	n, ok := w.read()
	if !ok {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	rose := n > w.seen
	w.seen = max(w.seen, n)
	return rose
}

func (w *oomWatch) read() (uint64, bool) {
	if w.path == "" {
		return 0, false
	}
	raw, err := os.ReadFile(w.path)
	if err != nil {
		return 0, false
	}
	return parseOOMKill(raw)
}

// parseOOMKill reads the "oom_kill N" line of a cgroup memory.events (v2)
// or memory.oom_control (v1) file.
func parseOOMKill(raw []byte) (uint64, bool) {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(" "))
		if ok && string(k) == "oom_kill" {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// oomCounterPath finds the OOM counter of the watchdog's own memory cgroup:
// from /proc/self/cgroup under /sys/fs/cgroup, or at the mount's root when
// the container sees only its own cgroup there (Docker without a cgroup
// namespace shows the host's path in /proc/self/cgroup).
func oomCounterPath() string {
	raw, _ := os.ReadFile("/proc/self/cgroup")
	var v1, v2 string
	for _, line := range strings.Split(string(raw), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	var candidates []string
	if v1 != "" {
		candidates = append(candidates, "/sys/fs/cgroup/memory"+v1+"/memory.oom_control", "/sys/fs/cgroup/memory/memory.oom_control")
	}
	if v2 != "" {
		candidates = append(candidates, "/sys/fs/cgroup"+v2+"/memory.events", "/sys/fs/cgroup/memory.events")
	}
	for _, p := range candidates {
		if raw, err := os.ReadFile(p); err == nil {
			if _, ok := parseOOMKill(raw); ok {
				return p
			}
		}
	}
	return ""
}
