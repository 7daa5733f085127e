package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/provision"
)

// engine is the Docker client of the swarm manager pulsed drives
// (docker_host; empty: DOCKER_HOST, else the local socket), and what closes
// it. Over ssh:// the connection is kept alive and dialled again when it
// breaks (provision.RemoteEngine); its first dial must succeed.
func engine(ctx context.Context, cfg Config, log *slog.Logger) (*client.Client, func(), error) {
	host := cfg.DockerHost
	if host == "" {
		// DOCKER_HOST=ssh:// too: the SDK's FromEnv has no SSH transport.
		host = os.Getenv("DOCKER_HOST")
	}
	if strings.HasPrefix(host, "ssh://") {
		t, err := provision.ParseSSHURL(host)
		if err != nil {
			return nil, nil, fmt.Errorf("DOCKER_HOST: %w", err)
		}
		scfg := provision.Config{KnownHosts: cfg.SSHKnownHosts, IdentityFiles: cfg.SSHIdentityFiles}
		cli, rem, err := provision.NewRemoteEngine(ctx, scfg, t, log.With("part", "engine"))
		if errors.Is(err, provision.ErrUnknownHost) {
			return nil, nil, fmt.Errorf("docker_host %s: %w; record the host key first: `pulse node add %s --accept-new-host-key` "+
				"as the user pulsed runs as, or ssh-keyscan into ssh_known_hosts after checking the fingerprint", host, err, t)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("docker_host %s: %w", host, err)
		}
		log.Info("docker_host over ssh", "target", t.String(), "api", cli.ClientVersion())
		return cli, func() { cli.Close(); rem.Close() }, nil
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("docker client: %w (check docker_host or DOCKER_HOST)", err)
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cli.NegotiateAPIVersion(nctx)
	cancel()
	return cli, func() { cli.Close() }, nil
}
