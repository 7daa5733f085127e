package function

import (
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// SpecFile is the conventional name of a function spec file.
const SpecFile = "functions.yml"

// Languages (templates) a function can be written in.
const (
	LangGo  = "go"  // in-process: the function links the watchdog library
	LangC   = "c"   // fork mode, gcc -static
	LangCPP = "cpp" // fork mode, g++ -static
	LangBin = "bin" // any static executable, fork or http mode
)

// Spec is one function of a functions.yml: everything needed to build its
// image and run it as a Swarm service. Paths are relative to Dir.
type Spec struct {
	Name    string // DNS label: 1–63 of a-z, 0-9, '-', starting with a letter
	Lang    string // LangGo, LangC, LangCPP or LangBin
	Handler string // Go package dir, C/C++ source dir, or the executable (bin)
	Mode    string // contract.ModeInProcess (go), ModeFork or ModeHTTP (bin only)
	// Args are extra arguments for the function process (fork and http modes).
	Args []string
	// Port is where an http-mode process listens on 127.0.0.1 (default 3000).
	Port int
	Env  map[string]string
	// Secrets are Docker secret names, mounted read-only as files under
	// /run/secrets/<name>.
	Secrets []string
	Limits  Limits
	Timeout time.Duration // exec timeout, gateway to watchdog (default 30s)
	MaxBody int64         // request body cap in bytes (default 10 MiB)
	// MaxOverdue (in-process mode only): how many handlers may still run
	// past their deadline (a goroutine cannot be killed) before the
	// replica's health fails and Swarm replaces it; 0 = never. nil: the
	// watchdog's default, contract.DefaultMaxOverdue.
	MaxOverdue *int
	Scale      Scale
	// RateLimit, when set, is the most requests the gateway answers per
	// period (counted per function, client or invoke key); the rest get 429
	// with Retry-After.
	RateLimit *contract.RateLimit
	// Async, when set, is how pulsed dispatches the function's asynchronous
	// requests (functions.yml async): retries, max age, concurrency. nil:
	// no label, and pulsed applies contract.DefaultAsyncPolicy.
	Async       *contract.AsyncPolicy
	Labels      map[string]string // extra service labels (not under pulse.)
	Constraints []string          // Swarm placement constraints, e.g. node.role==worker

	Dir  string // directory of the spec file; Handler is relative to it
	File string // the spec file, for messages
	Line int    // the line the function starts on, for messages
}

// Limits are each replica's resource limits. Memory and Pids are always
// enforced: zero means DefaultMemory and DefaultPids (see EffectiveLimits),
// so no function can take the host's memory or fork-bomb it. CPUs zero means
// no CPU limit.
type Limits struct {
	Memory int64   // bytes of memory (the container's cgroup, /tmp included)
	CPUs   float64 // cores
	Pids   int64   // processes and threads, the watchdog's included (fork mode: also caps requests in flight)
}

// Scale is the autoscaling policy, written to the service's labels. It is
// internal/scalelabels' Policy, which owns its defaults, metric names, rules
// and labels: Metric "inflight", "rps" or "queue" (async requests queued),
// Target per replica, Min replicas at least (the deploy's count; 0 allows
// scale to zero), Max at most (every function has one, ≥ max(Min, 1)), Idle
// before scaling to zero (0 = never).
type Scale = scalelabels.Policy
