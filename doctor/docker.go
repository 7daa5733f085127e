package doctor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
)

// Docker is the part of the Engine API the checks use.
type Docker interface {
	Ping(ctx context.Context) (types.Ping, error)
	ServerVersion(ctx context.Context) (types.Version, error)
	Info(ctx context.Context) (system.Info, error)
	NodeList(ctx context.Context, opts swarm.NodeListOptions) ([]swarm.Node, error)
	ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error)
}

var _ Docker = (*client.Client)(nil)

// minAPIVersion is the oldest Engine API Pulse is tested with: Debian 12's
// docker.io 20.10.
const minAPIVersion = "1.41"

// newDockerClient returns a client of the engine at host ("" for the
// environment: DOCKER_HOST and friends, else the default socket) that
// negotiates the API version, so this SDK speaks to an engine as old as
// 20.10 (API 1.41). It does not connect.
func newDockerClient(host string) Docker {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return brokenDocker{host: host, err: fmt.Errorf("docker client for %s: %w", host, err)}
	}
	return c
}

// daemonHost is the engine address a Docker client talks to, for the
// report ("" when it does not say: a fake).
func daemonHost(d Docker) string {
	if h, ok := d.(interface{ DaemonHost() string }); ok {
		return h.DaemonHost()
	}
	return ""
}

// at says where the engine is, for a detail: " at unix:///…", or "".
func at(d Docker) string {
	if h := daemonHost(d); h != "" {
		return " at " + h
	}
	return ""
}

// brokenDocker answers every call with the error that prevented creating a
// client, so the checks report it.
type brokenDocker struct {
	host string
	err  error
}

func (b brokenDocker) DaemonHost() string { return b.host }

func (b brokenDocker) Ping(context.Context) (types.Ping, error) { return types.Ping{}, b.err }
func (b brokenDocker) ServerVersion(context.Context) (types.Version, error) {
	return types.Version{}, b.err
}
func (b brokenDocker) Info(context.Context) (system.Info, error) { return system.Info{}, b.err }
func (b brokenDocker) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return nil, b.err
}
func (b brokenDocker) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return nil, b.err
}

var errNoDocker = errors.New("no Docker client configured")

// dockerHint says what to do when the engine does not answer.
func dockerHint(err error) string {
	if strings.Contains(strings.ToLower(err.Error()), "permission denied") {
		return "run as root or as a member of the docker group (the socket is root-equivalent)"
	}
	return "start the engine (systemctl start docker, or dockerd &), install it with apt-get install docker.io, or fix the engine's address (pulse's docker_host in its config, PULSE_DOCKER_HOST, else DOCKER_HOST)"
}

func checkDocker(ctx context.Context, p Probes) Result {
	if p.Docker == nil {
		return Result{Status: FAIL, Detail: errNoDocker.Error()}
	}
	ping, err := call(ctx, p, p.Docker.Ping)
	if err != nil {
		return Result{Status: FAIL, Detail: fmt.Sprintf("unreachable%s: %v", at(p.Docker), err), Hint: dockerHint(err)}
	}
	v, err := call(ctx, p, p.Docker.ServerVersion)
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("API %s (version: %v)", ping.APIVersion, err),
			Hint: "the engine answers ping but not /version; check its log"}
	}
	api := v.APIVersion
	if api == "" {
		api = ping.APIVersion
	}
	detail := fmt.Sprintf("API %s (engine %s)%s", api, v.Version, at(p.Docker))
	if versionLess(api, minAPIVersion) {
		return Result{Status: WARN, Detail: detail + ", older than API " + minAPIVersion,
			Hint: "upgrade the engine to 20.10 or later (Debian 12: apt-get install docker.io)"}
	}
	return Result{Status: OK, Detail: detail}
}

func checkSwarm(ctx context.Context, p Probes) Result {
	if p.Docker == nil {
		return Result{Status: FAIL, Detail: errNoDocker.Error()}
	}
	info, err := call(ctx, p, p.Docker.Info)
	if err != nil {
		return Result{Status: FAIL, Detail: fmt.Sprintf("docker info: %v", err), Hint: dockerHint(err)}
	}
	s := info.Swarm
	switch s.LocalNodeState {
	case swarm.LocalNodeStateInactive, "":
		return Result{Status: FAIL, Detail: "inactive: this engine is not part of a swarm",
			Hint: "docker swarm init --advertise-addr <addr> (an address the other nodes reach; 127.0.0.1 on one machine), or docker swarm join"}
	case swarm.LocalNodeStatePending:
		return Result{Status: WARN, Detail: "pending: joining a swarm",
			Hint: "wait a few seconds and run pulse doctor again; if it stays pending: docker swarm leave --force, then join again"}
	case swarm.LocalNodeStateLocked:
		return Result{Status: FAIL, Detail: "locked: the swarm's autolock key is needed",
			Hint: "docker swarm unlock"}
	case swarm.LocalNodeStateError:
		return Result{Status: FAIL, Detail: "error: " + s.Error,
			Hint: "docker swarm leave --force, then docker swarm init or join again"}
	case swarm.LocalNodeStateActive:
	default:
		return Result{Status: WARN, Detail: fmt.Sprintf("unknown state %q", s.LocalNodeState),
			Hint: "docker info shows the swarm's state"}
	}
	if !s.ControlAvailable {
		var managers []string
		for _, m := range s.RemoteManagers {
			managers = append(managers, m.Addr)
		}
		return Result{Status: WARN,
			Detail: fmt.Sprintf("active, worker (managers: %s)", strings.Join(managers, ", ")),
			Hint:   "this node runs replicas; run pulse deploy and pulsed against a manager (DOCKER_HOST=ssh://<manager>)"}
	}
	nodes, err := call(ctx, p, func(ctx context.Context) ([]swarm.Node, error) {
		return p.Docker.NodeList(ctx, swarm.NodeListOptions{})
	})
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("active, manager; node list: %v", err),
			Hint: "docker node ls"}
	}
	ready, managers := 0, 0
	var down []string
	for _, n := range nodes {
		if n.ManagerStatus != nil {
			managers++
		}
		if n.Status.State == swarm.NodeStateReady {
			ready++
		} else {
			down = append(down, fmt.Sprintf("%s %s", n.Description.Hostname, n.Status.State))
		}
	}
	detail := fmt.Sprintf("active, manager; %s (%d ready, %d %s)",
		plural(len(nodes), "node"), ready, managers, pluralWord(managers, "manager"))
	if len(down) > 0 {
		return Result{Status: WARN, Detail: detail + "; not ready: " + strings.Join(down, ", "),
			Hint: "docker node ls; replicas on a node that is down move to the others"}
	}
	return Result{Status: OK, Detail: detail}
}

// checkReplicas counts the running containers of Pulse functions: those
// whose labels (their own or their image's, which the engine merges)
// include pulse.function.
func checkReplicas(ctx context.Context, p Probes) Result {
	if p.Docker == nil {
		return Result{Status: WARN, Detail: errNoDocker.Error()}
	}
	list, err := call(ctx, p, func(ctx context.Context) ([]container.Summary, error) {
		return p.Docker.ContainerList(ctx, container.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction)),
		})
	})
	if err != nil {
		return Result{Status: WARN, Detail: fmt.Sprintf("container list: %v", err), Hint: dockerHint(err)}
	}
	byFunction := map[string]int{}
	tasks := 0
	for _, c := range list {
		byFunction[c.Labels[contract.LabelFunction]]++
		if c.Labels["com.docker.swarm.service.name"] != "" {
			tasks++
		}
	}
	if len(list) == 0 {
		return Result{Status: OK, Detail: "none running on this node"}
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(byFunction)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, byFunction[name]))
	}
	detail := fmt.Sprintf("%s running on this node (%s)", plural(len(list), "replica"), strings.Join(parts, ", "))
	if standalone := len(list) - tasks; standalone > 0 {
		detail += fmt.Sprintf("; %d outside swarm", standalone)
	}
	return Result{Status: OK, Detail: detail}
}

func plural(n int, word string) string {
	return fmt.Sprintf("%d %s", n, pluralWord(n, word))
}

func pluralWord(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
