package function

import (
	"fmt"
	"github.com/docker/docker/api/types/versions"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// LabelImage is the service label holding the ID of the image a function was
// deployed with (the task template holds it too, but a label survives
// reading a service spec without knowing the task template's layout).
const LabelImage = "pulse.image"

// Service defaults. Each is a reason, not a guess:
const (
	// DefaultHealthInterval is how often Docker probes a replica. Engine
	// 20.10 (API 1.41) has no start interval: the first probe runs one
	// interval after the container starts, and Swarm reports a task as
	// running (and publishes its port in the task status) only once it is
	// healthy, so the interval is the floor of "scale +1 → new replica in
	// the catalog". Each probe is an exec in the container (a fork of the
	// watchdog binary through dockerd, containerd and runc): measured here,
	// 35–42 ms of CPU per probe, so 1 s costs ~4 % of a core per idle
	// replica (250 ms: ~12 %). Shorter intervals start replicas sooner on
	// engines without a start interval, at that price.
	DefaultHealthInterval = time.Second
	// serviceHealthTimeout bounds one probe. The watchdog answers /_/health
	// from memory, but the probe is a `docker exec` (a runc exec through
	// containerd): seen here, with the host's load average at 15 on 2 cores,
	// probes passed a 1 s timeout twice in a row and Swarm killed healthy
	// replicas. A load spike is exactly when replicas must not be killed, so
	// the timeout is generous; HAProxy's own 1 s checks take a stuck replica
	// out of rotation long before Swarm replaces it.
	serviceHealthTimeout = 5 * time.Second
	// serviceHealthRetries consecutive failures make a replica unhealthy.
	serviceHealthRetries = 3
	// serviceHealthStartPeriod is how long failing probes do not count after a
	// start; a success inside it makes the replica healthy at once, so it
	// only forgives a slow first start (an http-mode upstream loading).
	serviceHealthStartPeriod = 10 * time.Second

	// defaultTimeout and defaultDrainGrace are the watchdog's, for a spec
	// or an environment that leaves them unset.
	defaultTimeout    = contract.DefaultTimeout
	defaultDrainGrace = contract.DefaultDrainGrace
	// writeSlack is what the watchdog adds to the exec timeout for its
	// write timeout, and so for its final drain of in-flight requests (a
	// test checks it against the watchdog's configuration).
	writeSlack = 5 * time.Second

	// runAs is the non-root user and group of every replica (nobody).
	runAs    = "65534:65534"
	runAsUID = "65534"
	// secretMode lets only the replica's user read a secret.
	secretMode = 0o400
	// tmpfsSize caps /tmp, the only writable place in a replica.
	tmpfsSize = 64 << 20

	defaultRestartDelay = time.Second
	updateMonitor       = 5 * time.Second

	// taskIDLength is the length of a Swarm task ID.
	taskIDLength = 25
	// maxHostname is Linux's HOST_NAME_MAX: a longer hostname makes the
	// container fail to start (sethostname: invalid argument).
	maxHostname = 64
	// maxSlotDigits is the widest replica slot number the hostname
	// template leaves room for.
	maxSlotDigits = 4
)

// DeployOptions are the parts of a deployment that do not come from the
// function's spec.
type DeployOptions struct {
	// GatewayURL is the gateway's base URL as seen from inside a replica,
	// set as PULSE_GATEWAY_URL; empty leaves it unset.
	GatewayURL string
	// SecretIDs maps each of the spec's Docker secret names to the
	// secret's ID. Swarm.Deploy fills it in from the engine.
	SecretIDs map[string]string
	// ReplicaAuth is the install's replica credential secret (see
	// contract.ReplicaAuthSecretName), mounted at contract.ReplicaAuthPath
	// with contract.EnvReplicaAuthFile naming it, so the replicas serve
	// only requests that carry it. Swarm.Deploy finds it from Instance and
	// fails without one; empty (ServiceSpec called directly) mounts none.
	ReplicaAuth SecretRef
	// GatewayCA is a PEM bundle of the CAs that sign the gateway's
	// certificate, for functions that call GatewayURL over https (a FROM
	// scratch replica trusts no CA otherwise). Swarm.Deploy checks it
	// (ValidateGatewayCA: certificates only, no key; GatewayURL must be
	// https), keeps it in a Docker secret of the instance named by its
	// digest (contract.GatewayCASecretName) and fills in GatewayCASecret.
	// Empty: nothing is mounted.
	GatewayCA []byte
	// GatewayCASecret is the secret holding GatewayCA, mounted at
	// contract.GatewayCAPath (0444) with contract.EnvSSLCertFile naming
	// it. Swarm.Deploy fills it in; empty mounts none.
	GatewayCASecret SecretRef
	// HealthInterval overrides DefaultHealthInterval when positive.
	HealthInterval time.Duration
	// NoHealthcheck gives the replicas no Docker health check (Test NONE):
	// Swarm then reports a task running as soon as its container starts,
	// and readiness is left to the gateway (HAProxy's checks and pulsed's
	// probe before a replica takes traffic, which WaitReady waits for). On
	// engines without a health start interval (API < 1.44) Swarm waits for a
	// first passing probe, one interval after the start: measured here, a
	// +1 scale reached running in 1.95 s without the check against 4.66 s
	// with a 250 ms one, and each probe is an exec of ~40 ms CPU. Swarm still
	// restarts a replica whose watchdog exits. `pulse deploy` sets it on such
	// engines unless --health-interval is given.
	NoHealthcheck bool
	// HealthStartInterval, when positive, is Docker's health start interval
	// (engine API 1.44 and later): probes that often during the start
	// period, so a new replica is healthy — and in the task list — within
	// about this long instead of one full interval. See StartIntervalFor.
	HealthStartInterval time.Duration
	// DrainGrace, when positive, sets the watchdog's drain grace
	// (PULSE_DRAIN_GRACE) over the spec's environment.
	DrainGrace time.Duration
	// Instance is the Pulse install the function joins (label
	// pulse.instance): only a pulsed with the same instance routes and
	// scales it. Empty: contract.DefaultInstance.
	Instance string
}

// SecretRef names a Docker secret by name and ID.
type SecretRef struct {
	ID   string
	Name string
}

// EffectiveLimits are the limits a replica of spec runs with: the spec's,
// with DefaultMemory and DefaultPids where it sets none.
func EffectiveLimits(spec Spec) Limits {
	l := spec.Limits
	if l.Memory <= 0 {
		l.Memory = DefaultMemory
	}
	if l.Pids <= 0 {
		l.Pids = DefaultPids
	}
	if l.CPUs < 0 {
		l.CPUs = 0
	}
	return l
}

// forkPidsReserve is what a fork-mode replica keeps of its pids limit for
// the watchdog's own threads (~10) and the processes of requests that fork
// once more: the rest bounds the requests in flight.
const forkPidsReserve = 32

// forkMaxInflight is a fork-mode replica's cap on requests in flight
// (PULSE_MAX_INFLIGHT) under a pids limit: each request is one process, so
// past this the watchdog answers 429 instead of failing forks (a 500); and
// never above the watchdog's own default.
func forkMaxInflight(pids int64) int64 {
	return min(pids-min(forkPidsReserve, pids/2), contract.DefaultMaxInflight)
}

// ServiceSpec returns the Swarm service that runs spec from img: one replica
// per task with the watchdog port published in host mode on an
// engine-assigned port (DESIGN.md §4), the image referenced by ID so no node
// ever tries to pull it, a read-only root with a tmpfs /tmp, a non-root user,
// a health check on the watchdog that gates start-first rolling updates, a
// stop grace period that covers the watchdog's drain, a memory and a pids
// limit (EffectiveLimits; in fork mode the requests in flight are capped
// below the pids limit), opts.ReplicaAuth mounted for the watchdog, and
// opts.GatewayCASecret mounted where SSL_CERT_FILE points. It is
// pure: the same arguments give the same spec.
func ServiceSpec(spec Spec, img Image, opts DeployOptions) swarm.ServiceSpec {
	labels := spec.ServiceLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelImage] = img.ID
	labels[contract.LabelInstance] = opts.Instance
	if opts.Instance == "" {
		labels[contract.LabelInstance] = contract.DefaultInstance
	}

	env := spec.WatchdogEnv()
	for _, k := range sortedKeys(spec.Env) {
		env = setEnv(env, k, spec.Env[k])
	}
	if opts.GatewayURL != "" {
		env = setEnv(env, contract.EnvGatewayURL, opts.GatewayURL)
	}
	if opts.DrainGrace > 0 {
		env = setEnv(env, contract.EnvDrainGrace, opts.DrainGrace.String())
	}
	if opts.ReplicaAuth.ID != "" {
		env = setEnv(env, contract.EnvReplicaAuthFile, contract.ReplicaAuthPath)
	}
	if opts.GatewayCASecret.ID != "" {
		env = setEnv(env, contract.EnvSSLCertFile, contract.GatewayCAPath)
	}
	limits := EffectiveLimits(spec)
	if spec.Mode == contract.ModeFork {
		env = setEnv(env, contract.EnvMaxInflight, strconv.FormatInt(forkMaxInflight(limits.Pids), 10))
	}

	interval := DefaultHealthInterval
	if opts.HealthInterval > 0 {
		interval = opts.HealthInterval
	}
	probe := "/pulse-watchdog"
	if spec.Lang == LangGo {
		probe = "/function" // the watchdog is linked into the function
	}
	grace := stopGracePeriod(spec, env)
	replicas := uint64(max(spec.Scale.Min, 0))
	restartDelay := defaultRestartDelay

	cs := &swarm.ContainerSpec{
		Image:    img.ID,
		Hostname: hostnameTemplate(spec.Name),
		Env:      env,
		User:     runAs,
		ReadOnly: true,
		Mounts: []mount.Mount{{
			Type:         mount.TypeTmpfs,
			Target:       tmpDir,
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: tmpfsSize},
		}},
		StopSignal:      "SIGTERM",
		StopGracePeriod: &grace,
		Healthcheck: &container.HealthConfig{
			Test:          []string{"CMD", probe, "-healthcheck"},
			Interval:      interval,
			Timeout:       serviceHealthTimeout,
			StartPeriod:   serviceHealthStartPeriod,
			StartInterval: opts.HealthStartInterval,
			Retries:       serviceHealthRetries,
		},
	}
	if opts.NoHealthcheck {
		cs.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
	}
	for _, name := range spec.Secrets {
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{
			File: &swarm.SecretReferenceFileTarget{
				Name: name, UID: runAsUID, GID: runAsUID, Mode: secretMode,
			},
			SecretID:   opts.SecretIDs[name],
			SecretName: name,
		})
	}
	if ra := opts.ReplicaAuth; ra.ID != "" {
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{
			File: &swarm.SecretReferenceFileTarget{
				Name: contract.ReplicaAuthSecretTarget, UID: runAsUID, GID: runAsUID, Mode: secretMode,
			},
			SecretID:   ra.ID,
			SecretName: ra.Name,
		})
	}
	if ca := opts.GatewayCASecret; ca.ID != "" {
		cs.Secrets = append(cs.Secrets, &swarm.SecretReference{
			File: &swarm.SecretReferenceFileTarget{
				Name: contract.GatewayCASecretTarget, UID: runAsUID, GID: runAsUID, Mode: gatewayCASecretMode,
			},
			SecretID:   ca.ID,
			SecretName: ca.Name,
		})
	}

	task := swarm.TaskSpec{
		ContainerSpec: cs,
		RestartPolicy: &swarm.RestartPolicy{
			Condition: swarm.RestartPolicyConditionAny,
			Delay:     &restartDelay,
			// No MaxAttempts: a replica that keeps failing keeps being
			// retried, as a service should.
		},
	}
	// Memory and pids are always limited (the engine sets the replica's
	// cgroup memory and pids.max: swarm API 1.41's Limit.Pids), so one
	// function cannot take the node down.
	task.Resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{
		NanoCPUs:    int64(math.Round(limits.CPUs * 1e9)),
		MemoryBytes: limits.Memory,
		Pids:        limits.Pids,
	}}
	if len(spec.Constraints) > 0 {
		task.Placement = &swarm.Placement{Constraints: slices.Clone(spec.Constraints)}
	}

	return swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: spec.Name, Labels: labels},
		TaskTemplate: task,
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		// One replica at a time, the new one started and healthy before
		// the old one is stopped; a new replica that fails within the
		// monitor period rolls the whole update back.
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism:     1,
			Order:           swarm.UpdateOrderStartFirst,
			FailureAction:   swarm.UpdateFailureActionRollback,
			Monitor:         updateMonitor,
			MaxFailureRatio: 0,
		},
		RollbackConfig: &swarm.UpdateConfig{
			Parallelism:   1,
			Order:         swarm.UpdateOrderStartFirst,
			FailureAction: swarm.UpdateFailureActionPause,
			Monitor:       updateMonitor,
		},
		// dnsrr: no virtual IP (IPVS is dead here, DESIGN.md §7). Host
		// mode with no published port: every task gets its own
		// engine-assigned host port, reported in its status.
		EndpointSpec: &swarm.EndpointSpec{
			Mode: swarm.ResolutionModeDNSRR,
			Ports: []swarm.PortConfig{{
				Protocol:      swarm.PortConfigProtocolTCP,
				TargetPort:    contract.WatchdogPort,
				PublishedPort: 0,
				PublishMode:   swarm.PortConfigPublishModeHost,
			}},
		},
	}
}

// stopGracePeriod is how long Swarm waits after SIGTERM before it kills a
// replica: the watchdog's drain grace (serving while failing health, so the
// gateway takes it out) plus its final drain of in-flight requests, which is
// bounded by its write timeout (the exec timeout plus writeSlack).
func stopGracePeriod(spec Spec, env []string) time.Duration {
	drain := envDuration(env, contract.EnvDrainGrace, defaultDrainGrace)
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	timeout = envDuration(env, contract.EnvTimeout, timeout)
	write := envDuration(env, contract.EnvWriteTimeout, timeout+writeSlack)
	return drain + write
}

// hostnameTemplate names each replica's container after its task
// (name.slot.taskid), so a function's replicas tell themselves apart, unless
// that could exceed Linux's hostname limit: then the task ID alone.
func hostnameTemplate(name string) string {
	if len(name)+1+maxSlotDigits+1+taskIDLength <= maxHostname {
		return "{{.Task.Name}}"
	}
	return "{{.Task.ID}}"
}

// setEnv sets key in a KEY=VALUE list: in place if present (once), else
// appended.
func setEnv(env []string, key, value string) []string {
	kv := key + "=" + value
	out := env[:0:0]
	set := false
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			if !set {
				out = append(out, kv)
				set = true
			}
			continue
		}
		out = append(out, e)
	}
	if !set {
		out = append(out, kv)
	}
	return out
}

// envDuration reads a Go duration from a KEY=VALUE list, or def when it is
// unset or malformed (the watchdog refuses to start on a malformed one).
func envDuration(env []string, key string, def time.Duration) time.Duration {
	for _, e := range slices.Backward(env) {
		if k, v, _ := strings.Cut(e, "="); k == key {
			if d, err := time.ParseDuration(v); err == nil && d >= 0 {
				return d
			}
			return def
		}
	}
	return def
}

// imageRef checks that an image is referenced by ID: Swarm tries to pull
// anything referenced by tag, and there is no registry.
func imageRef(img Image) error {
	if !strings.HasPrefix(img.ID, "sha256:") || !hex64Pattern.MatchString(strings.TrimPrefix(img.ID, "sha256:")) {
		return fmt.Errorf("image %q: want an image ID (sha256:<64 hex digits>), never a tag: Swarm would try to pull a tag from a registry", img.ID)
	}
	return nil
}

// DefaultStartInterval is the health start interval used where the engine
// has one: a new replica is probed every 100 ms until healthy, then every
// interval.
const DefaultStartInterval = 100 * time.Millisecond

// StartIntervalFor returns the health start interval to use with an engine
// speaking apiVersion: DefaultStartInterval from API 1.44 (Docker 25), none
// before (engine 20.10, API 1.41, refuses the field).
func StartIntervalFor(apiVersion string) time.Duration {
	if versions.GreaterThanOrEqualTo(apiVersion, "1.44") {
		return DefaultStartInterval
	}
	return 0
}
