package watchdog

import (
	"strings"
	"testing"
)

func TestPlanProcesses(t *testing.T) {
	cases := []struct {
		name       string
		want       int64
		gomaxprocs int
		threads    int
		left       int64
		procs      int
		err        string
	}{
		{"no limit, default", 0, 2, 5, -1, 64, ""},
		{"no limit, set", 300, 4, 5, -1, 300, ""},
		{"default pids limit", 0, 4, 5, 500, 64, ""},
		{"small limit: fitted", 0, 2, 5, 35, 15, ""},
		{"smallest fit", 0, 2, 5, 7, 1, ""},
		{"set, fits", 15, 2, 5, 35, 15, ""},
		{"set, one too many", 16, 2, 5, 35, 0, "PULSE_MAX_PROCESSES=16: the replica's pids limit leaves 35 pids, too few for 26 watchdog threads (one per process) and 16 processes; set it to at most 15"},
		{"no room at all", 0, 2, 5, 6, 0, "leaves 6 pids: too few for the watchdog's 11 threads and one process"},
		{"set, no room", 4, 2, 5, 0, 0, "set it to at most 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planProcesses(tc.want, tc.gomaxprocs, tc.threads, tc.left)
			if got != tc.procs || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("planProcesses(%d, %d, %d, %d) = %d, %v; want %d, %q", tc.want, tc.gomaxprocs, tc.threads, tc.left, got, err, tc.procs, tc.err)
			}
			// What it allows fits: the threads still to make and the processes.
			if err == nil && tc.left >= 0 && int64(tc.gomaxprocs+got+threadSpare+runtimeThreads-tc.threads+got) > tc.left {
				t.Errorf("%d processes do not fit in %d pids", got, tc.left)
			}
		})
	}
}

func TestParsePidsLeft(t *testing.T) {
	cases := []struct {
		limit, current string
		left           int64
		ok             bool
	}{
		{"max\n", "12\n", -1, true},
		{"512\n", "12\n", 500, true},
		{"10\n", "12\n", 0, true}, // over the limit (lowered after the fact)
		{"", "1", 0, false},
		{"512", "", 0, false},
		{"-1", "1", 0, false},
		{"512", "x", 0, false},
	}
	for _, tc := range cases {
		left, ok := parsePidsLeft([]byte(tc.limit), []byte(tc.current))
		if left != tc.left || ok != tc.ok {
			t.Errorf("parsePidsLeft(%q, %q) = %d, %v; want %d, %v", tc.limit, tc.current, left, ok, tc.left, tc.ok)
		}
	}
}

func FuzzParsePidsLeft(f *testing.F) {
	f.Add([]byte("max\n"), []byte("3\n"))
	f.Add([]byte("512\n"), []byte("12\n"))
	f.Add([]byte("9223372036854775807"), []byte("0"))
	f.Fuzz(func(t *testing.T, limit, current []byte) {
		left, ok := parsePidsLeft(limit, current)
		if !ok && left != 0 {
			t.Errorf("not ok but left %d", left)
		}
		if ok && left < -1 {
			t.Errorf("left %d", left)
		}
	})
}
