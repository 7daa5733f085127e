// Package doctor checks whether a host can run Pulse and reports one line
// per check, each from a real probe of the host: the Docker Engine and its
// API version, the swarm, the host ports dockerd assigns and its userland
// proxy, the kernel features Swarm relies on (IPVS, VXLAN),
// inotify and open-file limits, the tools `pulse build` and the control node
// need (HAProxy, Netdata, Go, gcc, g++), and which Pulse components run.
//
// RunNode runs the checks that matter on a machine joining the swarm
// (node.go), with Probes of that machine: `pulse node add` reads the files
// NodeFiles names from the node in one SSH session and runs commands and
// the Docker API over the same connection.
//
// Every probe goes through Probes, so tests point /proc and /sys at a
// directory under testdata and replace commands and the Docker API with
// fakes. Run never hangs and never panics: each check has its own deadline,
// and a probe that fails, times out or panics becomes a WARN or FAIL line
// that carries the error.
package doctor

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// Status is the outcome of one check.
type Status string

// The three outcomes. WARN means Pulse works, perhaps with less (no routing
// mesh, no Netdata dashboard) or with a limit that will bite under load;
// FAIL means Pulse cannot work until it is fixed.
const (
	OK   Status = "OK"
	WARN Status = "WARN"
	FAIL Status = "FAIL"
)

// Result is one line of the report.
type Result struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Hint says what to do about a WARN or FAIL; empty on OK.
	Hint string `json:"hint,omitempty"`
}

// Names of the checks, in the order Run reports them.
const (
	CheckDocker        = "docker"
	CheckSwarm         = "swarm"
	CheckHostPorts     = "host-ports"
	CheckUserlandProxy = "userland-proxy"
	CheckIPVS          = "ipvs"
	CheckVXLAN         = "vxlan"
	CheckInotify       = "inotify"
	CheckNoFile        = "nofile"
	CheckHAProxy       = "haproxy"
	CheckNetdata       = "netdata"
	CheckGo            = "go"
	CheckGCC           = "gcc"
	CheckGXX           = "g++"
	CheckPulsed        = "pulsed"
	CheckHAProxyProc   = "haproxy-proc"
	CheckNetdataProc   = "netdata-proc"
	CheckReplicas      = "replicas"
)

// Runner runs a command and returns its combined output. A command that is
// not installed must give an error for which errors.Is reports
// exec.ErrNotFound or fs.ErrNotExist, as os/exec does.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// Probes is everything the checks read from the host. DefaultProbes returns
// the real host's; tests replace any of them. A nil field makes the checks
// that need it report a FAIL or WARN line, not panic.
type Probes struct {
	// Root reads host files by their path without the leading slash
	// ("proc/sys/fs/inotify/max_user_watches"): os.DirFS("/") on the host,
	// a directory under testdata in tests.
	Root fs.FS
	// Exec runs commands (haproxy -v, go version, ...).
	Exec Runner
	// Docker is the Engine API.
	Docker Docker
	// NoFile returns the RLIMIT_NOFILE soft and hard limits.
	NoFile func() (soft, hard uint64, err error)

	// CallTimeout bounds each command and each Docker API call; 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// CheckTimeout bounds each check as a whole, however its probes behave;
	// 0 means DefaultCheckTimeout.
	CheckTimeout time.Duration
}

// Default timeouts.
const (
	DefaultCallTimeout  = 2 * time.Second
	DefaultCheckTimeout = 5 * time.Second
)

// Close releases the Docker client, if it holds one.
func (p Probes) Close() error {
	if c, ok := p.Docker.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (p Probes) callTimeout() time.Duration {
	if p.CallTimeout > 0 {
		return p.CallTimeout
	}
	return DefaultCallTimeout
}

func (p Probes) checkTimeout() time.Duration {
	if p.CheckTimeout > 0 {
		return p.CheckTimeout
	}
	return DefaultCheckTimeout
}

// check is one line of the report. run fills Status, Detail and Hint; Run
// fills Check. onError is the status of a check that timed out or panicked:
// FAIL where Pulse cannot work without the thing checked.
type check struct {
	name    string
	onError Status
	run     func(ctx context.Context, p Probes) Result
}

// checks lists every check in report order.
var checks = []check{
	{CheckDocker, FAIL, checkDocker},
	{CheckSwarm, FAIL, checkSwarm},
	{CheckHostPorts, WARN, checkHostPorts},
	{CheckUserlandProxy, WARN, checkUserlandProxy},
	{CheckIPVS, WARN, checkIPVS},
	{CheckVXLAN, WARN, checkVXLAN},
	{CheckInotify, WARN, checkInotify},
	{CheckNoFile, WARN, checkNoFile},
	{CheckHAProxy, WARN, checkHAProxy},
	{CheckNetdata, WARN, checkNetdata},
	{CheckGo, WARN, checkGo},
	{CheckGCC, WARN, checkGCC},
	{CheckGXX, WARN, checkGXX},
	{CheckPulsed, WARN, checkPulsed},
	{CheckHAProxyProc, WARN, checkHAProxyProc},
	{CheckNetdataProc, WARN, checkNetdataProc},
	{CheckReplicas, WARN, checkReplicas},
}

// Run runs every check concurrently and returns one Result per check, in
// the order of the Check* constants. It returns once every check has
// answered or given up: by its CheckTimeout, or when ctx ends.
func Run(ctx context.Context, p Probes) []Result {
	return runChecks(ctx, p, checks)
}

// runChecks runs cs concurrently, one Result each, in their order.
func runChecks(ctx context.Context, p Probes, cs []check) []Result {
	// The Docker client negotiates its API version on first use, without a
	// lock: do it once here, before the checks share the client.
	if n, ok := p.Docker.(interface{ NegotiateAPIVersion(context.Context) }); ok {
		nctx, cancel := context.WithTimeout(ctx, p.callTimeout())
		n.NegotiateAPIVersion(nctx)
		cancel()
	}
	results := make([]Result, len(cs))
	done := make(chan struct{}, len(cs))
	for i, c := range cs {
		go func() {
			results[i] = runCheck(ctx, p, c)
			done <- struct{}{}
		}()
	}
	for range cs {
		<-done
	}
	return results
}

// runCheck runs c with its own deadline. The probe runs in a goroutine so a
// probe that ignores its context (a hung read, a fake) cannot hold up the
// report; a panic in it becomes a result.
func runCheck(parent context.Context, p Probes, c check) Result {
	if err := parent.Err(); err != nil {
		return Result{Check: c.name, Status: c.onError, Detail: "not checked: " + context.Cause(parent).Error()}
	}
	ctx, cancel := context.WithTimeout(parent, p.checkTimeout())
	defer cancel()
	ch := make(chan Result, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				ch <- Result{Status: c.onError, Detail: fmt.Sprintf("probe panicked: %v", v),
					Hint: "a bug in pulse doctor; please report it with this line"}
			}
		}()
		ch <- c.run(ctx, p)
	}()
	var r Result
	select {
	case r = <-ch:
	case <-ctx.Done():
		if err := parent.Err(); err != nil {
			r = Result{Status: c.onError, Detail: "not checked: " + context.Cause(parent).Error()}
		} else {
			r = Result{Status: c.onError, Detail: fmt.Sprintf("no answer within %s", p.checkTimeout()),
				Hint: "run pulse doctor again; a probe that stays this slow points at a hung engine or an overloaded host"}
		}
	}
	r.Check = c.name
	if r.Status == OK {
		r.Hint = ""
	}
	return r
}

// Summary counts the results by status.
func Summary(results []Result) (ok, warn, fail int) {
	for _, r := range results {
		switch r.Status {
		case OK:
			ok++
		case WARN:
			warn++
		default:
			fail++
		}
	}
	return ok, warn, fail
}

// call runs f under the per-call timeout.
func call[T any](ctx context.Context, p Probes, f func(ctx context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, p.callTimeout())
	defer cancel()
	return f(ctx)
}
