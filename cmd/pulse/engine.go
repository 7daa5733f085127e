package main

import (
	"errors"
	"fmt"

	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/function"
)

// engine returns the Docker Engine client, made on first use.
func (a *app) engine() (*client.Client, error) {
	if a.cli != nil {
		return a.cli, nil
	}
	if t, ok, err := a.cfg.sshDockerHost(); err != nil {
		return nil, err
	} else if ok {
		return a.sshEngine(t)
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if a.cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(a.cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w (check DOCKER_HOST or docker_host in the config)", err)
	}
	a.cli = cli
	return cli, nil
}

// swarm returns the Swarm adapter over the engine; its waits ask pulsed's
// catalog (config key api) whether the gateway routes the replicas.
func (a *app) swarm() (*function.Swarm, error) {
	cli, err := a.engine()
	if err != nil {
		return nil, err
	}
	return a.swarmWith(function.LocalDistributor{API: cli})
}

// swarmWith is swarm with the image distributor dist (deploy's puts images
// on every node).
func (a *app) swarmWith(dist function.ImageDistributor) (*function.Swarm, error) {
	cli, err := a.engine()
	if err != nil {
		return nil, err
	}
	api, err := a.api()
	if err != nil {
		return nil, err
	}
	sw := function.NewSwarm(cli, dist, nil)
	sw.SetCatalog(&catalogClient{api: api})
	return sw, nil
}

// explain adds what to do next to the errors users meet most.
func explain(err error, name string) error {
	switch {
	case errors.Is(err, function.ErrNotFound):
		return fmt.Errorf("%w; `pulse ls` lists the deployed functions, `pulse deploy` deploys %s", err, name)
	case client.IsErrConnectionFailed(err):
		return fmt.Errorf("%w; is the Docker Engine running? (`pulse doctor` checks)", err)
	case errors.Is(err, function.ErrCatalog):
		return fmt.Errorf("%w; is pulsed running there? Its API is set by the config key api (%s)", err, configKeys["api"])
	case errors.Is(err, function.ErrFailed):
		return fmt.Errorf("%w; see `pulse describe %s` and `pulse logs %s`", err, name, name)
	}
	return err
}
