package gateway

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// HAProxyConfig configures an HAProxy supervisor.
type HAProxyConfig struct {
	Binary       string // haproxy executable; default "haproxy" from PATH
	ConfigFile   string // -f; required
	MasterSocket string // -S; required; a unix socket path, at most 90 bytes
	PIDFile      string // -p; required; holds the master's pid

	StartTimeout   time.Duration // until the master socket answers and a worker is up; default 10s
	ReloadTimeout  time.Duration // until the new worker is up; default 10s
	StopTimeout    time.Duration // soft stop (SIGUSR1) before SIGTERM; default 30s
	KillTimeout    time.Duration // SIGTERM before SIGKILL; default 5s
	CommandTimeout time.Duration // one master socket command; default 2s
	PollInterval   time.Duration // socket and adopted-pid polling; default 20ms

	RestartBackoff    time.Duration // first delay before a restart; default 100ms
	MaxRestartBackoff time.Duration // delays double up to this; default 10s
	StableAfter       time.Duration // a master that ran this long resets the backoff; default 30s
	// MaxRestartFailures consecutive failed restarts make Run give up and
	// return an error; default 10, negative never gives up.
	MaxRestartFailures int

	// LeaveRunning makes Run leave HAProxy running when its context ends,
	// for the next pulsed to adopt. Default: stop it gracefully.
	LeaveRunning bool
}

// maxSocketPath leaves room for the ".<pid>.tmp" HAProxy appends while it
// binds a unix socket (sun_path holds 108 bytes).
const maxSocketPath = 90

func (c HAProxyConfig) withDefaults() HAProxyConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Binary == "" {
		c.Binary = "haproxy"
	}
	def(&c.StartTimeout, 10*time.Second)
	def(&c.ReloadTimeout, 10*time.Second)
	def(&c.StopTimeout, 30*time.Second)
	def(&c.KillTimeout, 5*time.Second)
	def(&c.CommandTimeout, 2*time.Second)
	def(&c.PollInterval, 20*time.Millisecond)
	def(&c.RestartBackoff, 100*time.Millisecond)
	def(&c.MaxRestartBackoff, 10*time.Second)
	def(&c.StableAfter, 30*time.Second)
	if c.MaxRestartFailures == 0 {
		c.MaxRestartFailures = 10
	}
	return c
}

// Validate reports the first bad field of a config (after defaults).
func (c HAProxyConfig) Validate() error {
	switch {
	case c.ConfigFile == "":
		return errors.New("haproxy: no config file")
	case c.MasterSocket == "":
		return errors.New("haproxy: no master socket")
	case len(c.MasterSocket) > maxSocketPath:
		return fmt.Errorf("haproxy: master socket path %q longer than %d bytes", c.MasterSocket, maxSocketPath)
	case c.PIDFile == "":
		return errors.New("haproxy: no pid file")
	case strings.ContainsAny(c.MasterSocket, ",\n"):
		return fmt.Errorf("haproxy: master socket path %q has ',' or a line break", c.MasterSocket)
	}
	for name, d := range map[string]time.Duration{
		"start timeout": c.StartTimeout, "reload timeout": c.ReloadTimeout,
		"stop timeout": c.StopTimeout, "kill timeout": c.KillTimeout,
		"command timeout": c.CommandTimeout, "poll interval": c.PollInterval,
		"restart backoff": c.RestartBackoff, "max restart backoff": c.MaxRestartBackoff,
		"stable after": c.StableAfter,
	} {
		if d <= 0 {
			return fmt.Errorf("haproxy: %s %v: must be positive", name, d)
		}
	}
	if c.MaxRestartBackoff < c.RestartBackoff {
		return fmt.Errorf("haproxy: max restart backoff %v below restart backoff %v", c.MaxRestartBackoff, c.RestartBackoff)
	}
	return nil
}

// Sentinels of the supervisor.
var (
	// ErrHAProxyNotRunning: no master to reload, stop or adopt.
	ErrHAProxyNotRunning = errors.New("haproxy is not running")
	// ErrHAProxyRunning: Start found a master already answering on the
	// socket (adopt it instead).
	ErrHAProxyRunning = errors.New("haproxy is already running")
	// ErrHAProxyUnresponsive: the pid file names a live haproxy but the
	// master socket does not answer.
	ErrHAProxyUnresponsive = errors.New("haproxy runs but its master socket does not answer")
	// ErrReloadFailed: the master could not load the new configuration and
	// kept the old worker, which still serves.
	ErrReloadFailed = errors.New("haproxy rejected the new configuration and kept the old worker")
)
