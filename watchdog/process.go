package watchdog

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// procs starts function processes and reaps everything that ends up as the
// watchdog's child. The goroutine that starts a process waits for it with a
// blocking wait4 on its pid (and learns of its exit early through a pidfd),
// which measured far cheaper per request than SIGCHLD handling plus channel
// hand-offs. Orphans (a function's leftovers, which come to the watchdog as
// PID 1 in a container and as a child subreaper outside one) are reaped by
// a sweep once a second that never touches a pid someone is waiting for.
type procs struct {
	// spawn is held shared while a process is started and registered, and
	// exclusively by the sweep, so the sweep never sees an unregistered
	// child of ours.
	spawn  sync.RWMutex
	mu     sync.Mutex
	active map[int]bool
}

const (
	prSetChildSubreaper = 36
	pAll                = 0          // waitid idtype
	wNoWait             = 0x01000000 // waitid: leave the child waitable
	sweepEvery          = time.Second
)

// sharedProcs is the process's one reaper. Reaping is process-wide by nature
// (wait4(-1) takes any child), so this is the one piece of package state. A
// process using fork or http mode must not also start children through
// os/exec.
var sharedProcs = sync.OnceValue(newProcs)

func newProcs() *procs {
	p := &procs{active: make(map[int]bool)}
	// Best effort: as PID 1 orphans come to us anyway.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	go func() {
		for range time.Tick(sweepEvery) {
			p.sweep()
		}
	}()
	return p
}

// sweep reaps exited children nobody waits for.
func (p *procs) sweep() {
	p.spawn.Lock()
	defer p.spawn.Unlock()
	for {
		var info [128]byte // siginfo_t; si_pid at offset 16
		_, _, e := syscall.RawSyscall6(syscall.SYS_WAITID, pAll, 0, uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WNOHANG|wNoWait, 0, 0)
		pid := int(*(*int32)(unsafe.Pointer(&info[16])))
		if e != 0 || pid <= 0 {
			return
		}
		p.mu.Lock()
		mine := p.active[pid]
		p.mu.Unlock()
		if mine {
			return // its owner reaps it; orphans behind it wait for the next sweep
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// process is a started function process, leader of its own process group.
type process struct {
	pid   int
	pidfd int // readable once the process has exited
	procs *procs
}

// start runs argv with env and files as its descriptors 0, 1, 2 in a new
// process group.
func (p *procs) start(argv, env []string, files []uintptr) (*process, error) {
	pidfd := -1
	p.spawn.RLock()
	defer p.spawn.RUnlock()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true, PidFD: &pidfd},
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p.mu.Lock()
	p.active[pid] = true
	p.mu.Unlock()
	return &process{pid: pid, pidfd: pidfd, procs: p}, nil
}

// wait blocks until the process exits, reaps it, then kills and reaps what
// it left in its group.
func (pr *process) wait() syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pr.pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	pr.procs.mu.Lock()
	delete(pr.procs.active, pr.pid)
	pr.procs.mu.Unlock()
	if pr.pidfd >= 0 {
		syscall.Close(pr.pidfd)
		pr.pidfd = -1
	}
	pr.killGroup(syscall.SIGKILL)
	for {
		var lws syscall.WaitStatus
		if n, _ := syscall.Wait4(-pr.pid, &lws, syscall.WNOHANG, nil); n <= 0 {
			return ws // the rest, if any, are reaped by the sweep
		}
	}
}

// killGroup sends sig to the process's whole group: the process and every
// descendant that stayed in its group.
func (pr *process) killGroup(sig syscall.Signal) {
	_ = syscall.Kill(-pr.pid, sig)
}

// pipe returns a pipe with both ends close-on-exec and blocking.
func pipe() (r, w int, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return -1, -1, fmt.Errorf("pipe: %w", err)
	}
	return fds[0], fds[1], nil
}

// pollable wraps a pipe end for the runtime poller.
func pollable(fd int, name string) (*os.File, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// devNull opens /dev/null, or returns -1 when there is none (a FROM scratch
// image has no /dev/null unless the runtime provides it; Docker does).
func devNull(flag int) int {
	fd, err := syscall.Open("/dev/null", flag|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

const (
	pollIn   = 0x1
	pollOut  = 0x4
	pollErr  = 0x8
	pollHup  = 0x10
	pollNval = 0x20
)

// ppoll waits for events on fds until deadline (zero: no limit) and
// returns how many fds have events (0: the deadline passed). It blocks the
// calling thread: the fork runner's request goroutine owns it until the
// process ends, which measured cheaper than the runtime poller's hand-offs.
func ppoll(fds []pollFd, deadline time.Time) (int, error) {
	for {
		var tsp unsafe.Pointer
		var ts syscall.Timespec
		if !deadline.IsZero() {
			ts = syscall.NsecToTimespec(max(0, int64(time.Until(deadline))))
			tsp = unsafe.Pointer(&ts)
		}
		n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(tsp), 0, 0, 0)
		if e == syscall.EINTR {
			continue // a signal (another child's SIGCHLD): poll again, same deadline
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// eventFD returns a new eventfd, for waking a ppoll from another goroutine.
func eventFD() (int, error) {
	fd, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if e != 0 {
		return -1, fmt.Errorf("eventfd: %w", e)
	}
	return int(fd), nil
}
