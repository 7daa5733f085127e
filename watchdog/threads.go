package watchdog

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/pulsefaas/pulse/contract"
)

// Fork mode's thread budget.
//
// The Go runtime makes an OS thread (an M) whenever it needs one and has
// none idle: startm takes an M from the idle list (mget) and calls newm
// only when that list is empty; newm's clone failing is fatal
// (runtime.newosproc: "failed to create new OS thread", no recovery). In a
// replica whose function has taken every pid of the pids limit, the first
// new thread the watchdog needs kills it. Ms are never destroyed, except
// when a goroutine exits while locked to one, so an M made once stays in
// the idle list for reuse.
//
// How many Ms the watchdog can need at once: one per P (GOMAXPROCS) running
// Go code or spinning, plus one per goroutine blocked in a system call,
// whose P sysmon hands to another M (retake → handoffp → startm). In fork
// mode the blocked ones are the request goroutines driving their processes
// (ppoll, wait4, the exec status read in ForkExec, memory.events after a
// SIGKILL: all while holding a process slot, so capped by
// Config.MaxProcesses), the one log write in progress (the JSON handler
// writes under a mutex) and the odd short read (/proc/self/stat for
// metrics). Beyond those the runtime has
// sysmon and, once anything calls LockOSThread, the template thread, both
// made before the reserve. So the watchdog makes GOMAXPROCS +
// MaxProcesses + threadSpare threads at start and never needs a new one.
//
// GOMAXPROCS is pinned (the runtime would otherwise follow a changed CPU
// limit, and more Ps need more Ms) and capped at forkMaxProcs unless the
// GOMAXPROCS variable says otherwise: a fork-mode watchdog's own work is
// parsing requests and copying bytes; its functions run in their own
// processes, unaffected by the cap.
const (
	threadSpare  = 4
	forkMaxProcs = 4
	// runtimeThreads are the threads beside the reserve: sysmon, the
	// template thread, the one running the reserving goroutine, and one
	// more the runtime had made by then (measured: 4 in every run, with
	// GOMAXPROCS 1 to 4).
	runtimeThreads = 4
)

// reserveThreads pins GOMAXPROCS, decides how many processes may run at
// once (want, or with want 0 as many as the replica's pids limit holds up
// to contract.DefaultMaxProcesses), makes sure the runtime holds a thread
// for each and returns the number of processes and of threads. It fails,
// before making any thread, when the pids limit cannot hold them.
func reserveThreads(want int64) (procs, threads int, err error) {
	p := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		p = min(p, forkMaxProcs)
		runtime.GOMAXPROCS(p) // a call with n > 0 also stops the runtime's updates
	}
	tasks, _ := os.ReadDir("/proc/self/task")
	procs, err = planProcesses(want, p, len(tasks), pidsLeft())
	if err != nil {
		return 0, 0, err
	}
	threads = p + procs + threadSpare
	lockThreads(threads)
	return procs, threads, nil
}

// planProcesses decides how many processes may run at once: want (0: the
// default, lowered to fit) such that the threads still to make
// (gomaxprocs + n + threadSpare + runtimeThreads, less the threads there
// are) and n processes fit in the pids left (-1: no limit).
func planProcesses(want int64, gomaxprocs, threads int, left int64) (int, error) {
	if left < 0 {
		if want == 0 {
			want = contract.DefaultMaxProcesses
		}
		return int(want), nil
	}
	fixed := int64(gomaxprocs) + threadSpare + runtimeThreads // threads, beside one per process
	fit := (left + int64(threads) - fixed) / 2
	switch {
	case want == 0 && fit < 1:
		return 0, fmt.Errorf("the replica's pids limit leaves %d pids: too few for the watchdog's %d threads and one process; raise the function's pids limit",
			left, fixed+1)
	case want == 0:
		return int(min(fit, contract.DefaultMaxProcesses)), nil
	case want > fit:
		return 0, fmt.Errorf("%s=%d: the replica's pids limit leaves %d pids, too few for %d watchdog threads (one per process) and %d processes; set it to at most %d, or raise the function's pids limit",
			contract.EnvMaxProcesses, want, left, fixed+want, want, max(fit, 0))
	}
	return int(want), nil
}

// pidsLeft is how many more tasks (processes and threads) the watchdog's
// pids cgroup admits, or -1 for no limit or none found. Like
// oomCounterPath it looks where /proc/self/cgroup says, then at the
// mount's root (a container without a cgroup namespace).
func pidsLeft() int64 {
	raw, _ := os.ReadFile("/proc/self/cgroup")
	var dirs []string
	for _, line := range strings.Split(string(raw), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			dirs = append(dirs, "/sys/fs/cgroup"+parts[2], "/sys/fs/cgroup")
		case strings.Contains(","+parts[1]+",", ",pids,"):
			dirs = append([]string{"/sys/fs/cgroup/pids" + parts[2], "/sys/fs/cgroup/pids"}, dirs...)
		}
	}
	for _, d := range dirs {
		limit, err1 := os.ReadFile(d + "/pids.max")
		current, err2 := os.ReadFile(d + "/pids.current")
		if err1 == nil && err2 == nil {
			if left, ok := parsePidsLeft(limit, current); ok {
				return left
			}
		}
	}
	return -1
}

// parsePidsLeft reads a cgroup's pids.max ("max" or a number) and
// pids.current: the pids left, -1 for no limit. ok is false when either
// is malformed.
func parsePidsLeft(limit, current []byte) (left int64, ok bool) {
	cur, err := strconv.ParseInt(string(bytes.TrimSpace(current)), 10, 64)
	if err != nil || cur < 0 {
		return 0, false
	}
	l := bytes.TrimSpace(limit)
	if string(l) == "max" {
		return -1, true
	}
	n, err := strconv.ParseInt(string(l), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return max(n-cur, 0), true
}

// lockThreads has n goroutines hold n distinct OS threads at once, then
// lets them go: each locks its thread and blocks until all are locked, so
// the runtime must have made n threads (beside the one running the caller);
// each then unlocks before returning, which leaves its thread idle in the
// runtime's pool rather than ending it.
func lockThreads(n int) {
	var locked, done sync.WaitGroup
	release := make(chan struct{})
	locked.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			locked.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	close(release)
	done.Wait()
}
