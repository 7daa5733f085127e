package doctor

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// DefaultProbes returns the probes of the real host: files under /, commands
// from PATH, the Docker Engine at dockerHost (e.g. unix:///var/run/docker.sock
// or tcp://host:2376; "" for the environment's DOCKER_HOST, else the default
// socket) and this process's RLIMIT_NOFILE. It connects to nothing until
// Run; Close releases the Docker client.
func DefaultProbes(dockerHost string) Probes {
	return Probes{
		Root:   os.DirFS("/"),
		Exec:   execCommand,
		Docker: newDockerClient(dockerHost),
		NoFile: getrlimitNoFile,
	}
}

// execCommand runs a command with ctx's deadline. WaitDelay stops Wait from
// blocking on a child that leaves the output pipe open after being killed.
func execCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 500 * time.Millisecond
	return cmd.CombinedOutput()
}

// getrlimitNoFile returns this process's RLIMIT_NOFILE. Go raises the soft
// limit to the hard one when a program starts, so the soft limit reads
// equal to the hard one here; the hard limit is what counts for Pulse's Go
// daemons and for HAProxy, which raise their soft limit the same way.
func getrlimitNoFile() (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	return lim.Cur, lim.Max, nil
}
