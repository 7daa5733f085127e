package watchdog

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// procs starts function processes and reaps every child of the watchdog,
// including orphaned grandchildren: the watchdog is PID 1 in its container
// and a child subreaper outside one, so everything a function leaves behind
// ends up here. One loop calls wait4(-1) on SIGCHLD and hands each exit
// status to whoever started that pid; os/exec is not used, since its
// per-process Wait would race with that loop.
type procs struct {
	// spawn is held shared while a process is being started and registered,
	// and exclusively while reaping, so a reaped pid that has no waiter is
	// certainly not one of ours (an orphan) and can be dropped.
	spawn   sync.RWMutex
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
}

const prSetChildSubreaper = 36

// sharedProcs is the process's one reaper. Reaping is process-wide by nature
// (wait4(-1) takes any child), so two reapers in one process would steal each
// other's exit statuses; this is the one piece of package state. A process
// using fork or http mode must not also run children through os/exec.
var sharedProcs = sync.OnceValue(newProcs)

func newProcs() *procs {
	p := &procs{waiters: make(map[int]chan syscall.WaitStatus)}
	// Best effort: as PID 1 orphans come to us anyway.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGCHLD)
	go func() {
		for range ch {
			p.reap()
		}
	}()
	return p
}

func (p *procs) reap() {
	p.spawn.Lock()
	defer p.spawn.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		p.mu.Lock()
		ch := p.waiters[pid]
		delete(p.waiters, pid)
		p.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// process is a started function process, leader of its own process group.
type process struct {
	pid  int
	done chan syscall.WaitStatus // receives the exit status once
}

// start runs argv with env and the three descriptors as stdin, stdout and
// stderr, in a new process group.
func (p *procs) start(argv, env []string, stdin, stdout, stderr uintptr) (*process, error) {
	p.spawn.RLock()
	defer p.spawn.RUnlock()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{stdin, stdout, stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	done := make(chan syscall.WaitStatus, 1)
	p.mu.Lock()
	p.waiters[pid] = done
	p.mu.Unlock()
	return &process{pid: pid, done: done}, nil
}

// killGroup sends sig to the process's whole group: the process and every
// descendant that stayed in its group.
func (pr *process) killGroup(sig syscall.Signal) {
	_ = syscall.Kill(-pr.pid, sig)
}

// pipe returns a pipe whose parent end (read end if parentReads) is an
// *os.File served by the runtime poller, and whose child end is a raw,
// blocking descriptor to hand to start and close after it.
func pipe(parentReads bool) (parent *os.File, child int, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, -1, fmt.Errorf("pipe: %w", err)
	}
	pe, ce := fds[1], fds[0]
	if parentReads {
		pe, ce = fds[0], fds[1]
	}
	if err := syscall.SetNonblock(pe, true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, -1, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(pe), "pipe"), ce, nil
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
