package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcEntry is one process in `show proc`.
type ProcEntry struct {
	PID           int
	Type          string // "master", "worker", or a program's name
	Reloads       int    // master: reloads so far; worker: reloads it has lived through
	FailedReloads int    // master only: reloads whose configuration failed to load
	Uptime        time.Duration
	Version       string
}

// ProcList is the master socket's `show proc`.
type ProcList struct {
	Master      ProcEntry
	Workers     []ProcEntry // current workers
	OldWorkers  []ProcEntry // leaving after a reload, finishing their connections
	Programs    []ProcEntry
	OldPrograms []ProcEntry
}

// ParseProcs parses `show proc` from HAProxy 2.6's master socket:
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	16853           master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4
//	# workers
//	16875           worker          0               0d00h00m02s     2.6.12-1+deb12u4
//	# old workers
//	...
//	# programs
//
// Sections it does not know are skipped; extra columns are ignored.
func ParseProcs(r io.Reader) (ProcList, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var (
		out     ProcList
		lineNo  int
		header  bool
		master  bool
		section *[]ProcEntry
	)
	sections := map[string]*[]ProcEntry{
		"workers": &out.Workers, "old workers": &out.OldWorkers,
		"programs": &out.Programs, "old programs": &out.OldPrograms,
	}
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			continue
		case !header:
			if !strings.HasPrefix(line, "#<PID>") {
				return ProcList{}, fmt.Errorf("show proc line %d: want the #<PID> header, got %q", lineNo, line)
			}
			header = true
			continue
		case strings.HasPrefix(line, "#"):
			name := strings.TrimSpace(strings.TrimPrefix(line, "#"))
			section = sections[name] // nil: an unknown section, skipped
			if section == nil {
				section = new([]ProcEntry)
			}
			continue
		case !master:
			e, err := parseProcLine(line, true)
			if err != nil {
				return ProcList{}, fmt.Errorf("show proc line %d: %w", lineNo, err)
			}
			if e.Type != "master" {
				return ProcList{}, fmt.Errorf("show proc line %d: want the master, got type %q", lineNo, e.Type)
			}
			out.Master, master = e, true
			continue
		case section == nil:
			return ProcList{}, fmt.Errorf("show proc line %d: a second process before any section", lineNo)
		}
		e, err := parseProcLine(line, false)
		if err != nil {
			return ProcList{}, fmt.Errorf("show proc line %d: %w", lineNo, err)
		}
		*section = append(*section, e)
	}
	if err := sc.Err(); err != nil {
		return ProcList{}, fmt.Errorf("show proc line %d: %w", lineNo+1, err)
	}
	if !master {
		return ProcList{}, errors.New("show proc: no master line")
	}
	return out, nil
}

// parseProcLine parses "<pid> <type> <reloads> [\[failed: N\]] <uptime>
// <version>" (the failed count only on the master's line).
func parseProcLine(line string, isMaster bool) (ProcEntry, error) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return ProcEntry{}, fmt.Errorf("%d fields, want at least 4", len(f))
	}
	var e ProcEntry
	var err error
	if e.PID, err = strconv.Atoi(f[0]); err != nil || e.PID <= 0 {
		return ProcEntry{}, fmt.Errorf("pid %q", f[0])
	}
	e.Type = f[1]
	if e.Reloads, err = strconv.Atoi(f[2]); err != nil {
		return ProcEntry{}, fmt.Errorf("reloads %q", f[2])
	}
	rest := f[3:]
	if isMaster && len(rest) >= 2 && rest[0] == "[failed:" {
		n, ok := strings.CutSuffix(rest[1], "]")
		if e.FailedReloads, err = strconv.Atoi(n); !ok || err != nil {
			return ProcEntry{}, fmt.Errorf("failed reloads %q", rest[1])
		}
		rest = rest[2:]
	}
	if len(rest) == 0 {
		return ProcEntry{}, errors.New("no uptime")
	}
	if e.Uptime, err = parseProcUptime(rest[0]); err != nil {
		return ProcEntry{}, err
	}
	if len(rest) > 1 {
		e.Version = rest[1]
	}
	return e, nil
}

// parseProcUptime parses HAProxy's "%dd%02dh%02dm%02ds".
func parseProcUptime(s string) (time.Duration, error) {
	units := []struct {
		sep byte
		d   time.Duration
	}{{'d', 24 * time.Hour}, {'h', time.Hour}, {'m', time.Minute}, {'s', time.Second}}
	var total time.Duration
	rest := s
	for _, u := range units {
		i := strings.IndexByte(rest, u.sep)
		if i <= 0 || i > 5 { // 99999 days still fit a time.Duration
			return 0, fmt.Errorf("uptime %q", s)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 {
			return 0, fmt.Errorf("uptime %q", s)
		}
		total += time.Duration(n) * u.d
		rest = rest[i+1:]
	}
	if rest != "" {
		return 0, fmt.Errorf("uptime %q", s)
	}
	return total, nil
}

// readPIDFile returns the pid in path, or 0.
func readPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// procStat reads a process's start time (clock ticks after boot) and state
// letter from /proc/<pid>/stat.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	tick, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime %q", pid, f[19])
	}
	return tick, f[0][0], nil
}

// isHAProxyProcess reports whether pid is a live (not zombie) process whose
// command is haproxy.
func isHAProxyProcess(pid int) bool {
	_, state, err := procStat(pid)
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return strings.Contains(string(argv0), "haproxy")
}
