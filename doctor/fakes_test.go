package doctor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// fakeDocker answers with its fields. hang makes every call wait for ctx;
// stuck makes every call wait for the channel, ignoring ctx; panics makes
// every call panic.
type fakeDocker struct {
	ping          types.Ping
	pingErr       error
	version       types.Version
	versionErr    error
	info          system.Info
	infoErr       error
	nodes         []swarm.Node
	nodesErr      error
	containers    []container.Summary
	containersErr error

	hang   bool
	stuck  chan struct{}
	panics bool
}

var _ Docker = (*fakeDocker)(nil)

func (f *fakeDocker) wait(ctx context.Context) error {
	if f.panics {
		panic("fake docker panics")
	}
	if f.stuck != nil {
		<-f.stuck
	}
	if f.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeDocker) Ping(ctx context.Context) (types.Ping, error) {
	if err := f.wait(ctx); err != nil {
		return types.Ping{}, err
	}
	return f.ping, f.pingErr
}

func (f *fakeDocker) ServerVersion(ctx context.Context) (types.Version, error) {
	if err := f.wait(ctx); err != nil {
		return types.Version{}, err
	}
	return f.version, f.versionErr
}

func (f *fakeDocker) Info(ctx context.Context) (system.Info, error) {
	if err := f.wait(ctx); err != nil {
		return system.Info{}, err
	}
	return f.info, f.infoErr
}

func (f *fakeDocker) NodeList(ctx context.Context, _ swarm.NodeListOptions) ([]swarm.Node, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.nodes, f.nodesErr
}

// ContainerList answers only the query checkReplicas must make: running
// containers with a pulse.function label.
func (f *fakeDocker) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	if opts.All || !opts.Filters.ExactMatch("label", "pulse.function") || opts.Filters.Len() != 1 {
		return nil, errors.New("fake: unexpected container query")
	}
	return f.containers, f.containersErr
}

// fakeCmd is one command's answer.
type fakeCmd struct {
	out string
	err error
}

// fakeExec answers commands from a table keyed by the whole command line;
// any other command is not installed. A command whose out is "hang" waits
// for its context.
func fakeExec(cmds map[string]fakeCmd) Runner {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		line := strings.Join(append([]string{name}, args...), " ")
		c, ok := cmds[line]
		if !ok {
			if strings.HasPrefix(name, "/") {
				return nil, &os.PathError{Op: "fork/exec", Path: name, Err: os.ErrNotExist}
			}
			return nil, &exec.Error{Name: name, Err: exec.ErrNotFound}
		}
		if c.out == "hang" {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []byte(c.out), c.err
	}
}

// Command outputs as this host's tools print them.
const (
	haproxyOut = `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/
Status: long-term supported branch - will stop receiving fixes around Q2 2027.
Known bugs: http://www.haproxy.org/bugs/bugs-2.6.12.html
Running on: Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0 x86_64
`
	netdataOut = "netdata v1.37.1\n"
	goOut      = "go version go1.26.8 linux/amd64\n"
	gccOut     = `gcc (Debian 12.2.0-14+deb12u1) 12.2.0
Copyright (C) 2022 Free Software Foundation, Inc.
This is free software; see the source for copying conditions.  There is NO
warranty; not even for MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.
`
	gxxOut = `g++ (Debian 12.2.0-14+deb12u1) 12.2.0
Copyright (C) 2022 Free Software Foundation, Inc.
`
	libcPath     = "/usr/lib/gcc/x86_64-linux-gnu/12/../../../x86_64-linux-gnu/libc.a\n"
	libstdcxPath = "/usr/lib/gcc/x86_64-linux-gnu/12/libstdc++.a\n"
)

// allTools is a host with every tool installed, as this one is plus Netdata.
func allTools() map[string]fakeCmd {
	return map[string]fakeCmd{
		"haproxy -v":                       {out: haproxyOut},
		"netdata -v":                       {out: netdataOut},
		"go version":                       {out: goOut},
		"gcc --version":                    {out: gccOut},
		"gcc -print-file-name=libc.a":      {out: libcPath},
		"g++ --version":                    {out: gxxOut},
		"g++ -print-file-name=libstdc++.a": {out: libstdcxPath},
	}
}

// engine is a single-node swarm manager on Debian 12's engine.
func engine() *fakeDocker {
	return &fakeDocker{
		ping:    types.Ping{APIVersion: "1.41"},
		version: types.Version{Version: "20.10.24+dfsg1", APIVersion: "1.41"},
		info: system.Info{Swarm: swarm.Info{
			LocalNodeState:   swarm.LocalNodeStateActive,
			ControlAvailable: true,
			NodeAddr:         "127.0.0.1",
		}},
		nodes: []swarm.Node{node("laptop1", swarm.NodeStateReady, true)},
	}
}

func node(host string, state swarm.NodeState, manager bool) swarm.Node {
	n := swarm.Node{
		Description: swarm.NodeDescription{Hostname: host},
		Status:      swarm.NodeStatus{State: state},
	}
	if manager {
		n.ManagerStatus = &swarm.ManagerStatus{}
	}
	return n
}

func replica(function string, task bool) container.Summary {
	c := container.Summary{Labels: map[string]string{"pulse.function": function}}
	if task {
		c.Labels["com.docker.swarm.service.name"] = function
	}
	return c
}
