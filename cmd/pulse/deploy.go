package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/function"
)

// defaultWaitTimeout bounds the wait after a deploy or a scale.
const defaultWaitTimeout = 2 * time.Minute

func (a *app) deployCmd() *cobra.Command {
	var (
		path           string
		noWait         bool
		healthInterval time.Duration
		waitTimeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy [NAME...]",
		Short: "Build functions and run them as Swarm services",
		Long: `Build each function (see pulse build), make sure every swarm node has its image,
then create or update its Swarm service: replicas = scale.min, limits, a start-first
rolling update gated on the watchdog's health, the image referenced by ID (no
registry), a host-mode published port, a read-only root filesystem, Docker secrets,
and the instance label (config key instance) that tells which pulsed routes it.
When replica_gateway is https, the replicas get the CA of ca_file as a Docker
secret with SSL_CERT_FILE pointing at it, so functions that call functions verify
the gateway (a fingerprint cannot be handed on: set ca_file).
Then waits until Swarm runs the new replicas and pulsed's gateway routes every one
(pulsed's catalog, config key api), and prints their endpoints; exits 1 with Swarm's
reason when Swarm rolls the update back or pauses it, or with the last task error
when the wait times out.`,
		Example: "  pulse deploy\n  pulse deploy hello --health-interval 500ms",
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := loadSpecs(path, args)
			if err != nil {
				return err
			}
			// Before any build: a gateway the functions cannot verify is
			// refused now, not found out at the first call.
			gatewayCA, err := a.cfg.replicaGatewayCA()
			if err != nil {
				return err
			}
			// Before any build: the engine and pulsed's API (the distributor
			// is chosen per function, below).
			if _, err := a.swarm(); err != nil {
				return err
			}
			cli, _ := a.engine()
			// Engines from API 1.44 probe a new replica quickly until it is
			// healthy; older ones (20.10) only every health interval.
			cli.NegotiateAPIVersion(cmd.Context())
			startInterval := function.StartIntervalFor(cli.ClientVersion())
			for _, s := range specs {
				img, info, err := a.buildAndLoad(cmd.Context(), s)
				if err != nil {
					return explain(err, s.Name)
				}
				fmt.Fprintf(a.err, "%s: image %s, %.2f MB\n", s.Name, shortID(img.ID), float64(info.ImageSize)/1e6)
				// One node: the local engine; several: every node, over
				// SSH, a line per node.
				dist, nodes, err := a.distributor(cmd.Context(), s.Name)
				if err != nil {
					return err
				}
				if err := clusterGateway(a.cfg.ReplicaGateway, nodes); err != nil {
					return err
				}
				sw, err := a.swarmWith(dist)
				if err != nil {
					return err
				}
				res, err := sw.Deploy(cmd.Context(), s, img, function.DeployOptions{
					GatewayURL: a.cfg.ReplicaGateway, GatewayCA: gatewayCA, Instance: a.cfg.Instance,
					HealthInterval: healthInterval, HealthStartInterval: startInterval,
					// Without a start interval Docker's check delays every
					// new replica by an interval (function.DeployOptions).
					NoHealthcheck: healthInterval == 0 && startInterval == 0,
				})
				if err != nil {
					return explain(err, s.Name)
				}
				for _, w := range res.Warnings {
					fmt.Fprintf(a.err, "%s: warning: %s\n", s.Name, w)
				}
				verb := "updated"
				switch {
				case res.Created:
					verb = "created"
				case res.Unchanged:
					verb = "unchanged"
				}
				fmt.Fprintf(a.out, "%s: service %s (%s), %d replica(s)\n", s.Name, verb, shortID(res.ServiceID), res.Replicas)
				if noWait || res.Replicas == 0 {
					continue
				}
				if err := a.waitReady(cmd.Context(), sw, s.Name, res.Replicas, waitTimeout); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "  pulse invoke %s -d hi\n", s.Name)
			}
			return nil
		},
	}
	specFlag(cmd, &path)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the replicas to be ready")
	cmd.Flags().DurationVar(&healthInterval, "health-interval", 0, "Docker health check interval of the replicas; on engines without a health start interval (API < 1.44) the default is no Docker health check at all, so new replicas start sooner (the gateway checks readiness), on newer ones 1s")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", defaultWaitTimeout, "how long to wait for the replicas")
	return cmd
}

// waitReady waits until Swarm runs want replicas of name's current spec and
// pulsed's gateway routes each (function.Swarm.WaitReady), then prints
// where they are. deploy and scale --wait share it.
func (a *app) waitReady(ctx context.Context, sw *function.Swarm, name string, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	eps, err := sw.WaitReady(ctx, name, want)
	switch {
	case errors.Is(err, function.ErrFailed), errors.Is(err, function.ErrCatalog):
		return explain(err, name)
	case err != nil:
		return fmt.Errorf("%s: not ready within %v: %w; see `pulse describe %s` and `pulse logs %s`", name, timeout, err, name, name)
	}
	if want == 0 {
		fmt.Fprintf(a.out, "%s: ready: no replica runs or is routed\n", name)
		return nil
	}
	addrs := make([]string, len(eps))
	for i, e := range eps {
		addrs[i] = e.Addr
	}
	fmt.Fprintf(a.out, "%s: ready at %s (routed by the gateway)\n", name, strings.Join(addrs, ", "))
	return nil
}

// replicaGatewayCA is the CA bundle deploy hands to the replicas
// (function.DeployOptions.GatewayCA): ca_file's when replica_gateway is
// https, nil when it is not. A FROM scratch replica trusts no CA, so with
// an https replica_gateway and no ca_file a function calling another would
// fail verification at run time; deploy refuses instead.
func (c Config) replicaGatewayCA() ([]byte, error) {
	if !isHTTPS(c.ReplicaGateway) {
		return nil, nil
	}
	const fix = "set ca_file (%s) to the gateway's certificate or the CA that signed it (`make up` with PULSE_TLS=self-signed writes /etc/pulse/tls-ca.pem; for a publicly signed certificate, the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt)"
	switch {
	case c.CAFile != "":
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w (replica_gateway %s is https, and deploy hands ca_file to the replicas: set ca_file or %s to a readable PEM file)", err, c.ReplicaGateway, configKeys["ca_file"])
		}
		if err := function.ValidateGatewayCA(pem); err != nil {
			return nil, fmt.Errorf("ca_file %s: %w (replica_gateway %s is https, and deploy hands ca_file to the replicas)", c.CAFile, err, c.ReplicaGateway)
		}
		return pem, nil
	case c.Fingerprint != "":
		return nil, fmt.Errorf("replica_gateway %s is https, but the gateway's certificate is pinned by fingerprint, which only the CLI checks: functions in replicas (no CA bundle) could not verify the gateway when they call other functions; remove fingerprint and "+fix,
			c.ReplicaGateway, configKeys["ca_file"])
	}
	return nil, fmt.Errorf("replica_gateway %s is https, but ca_file is not set: replicas have no CA bundle, so functions could not verify the gateway when they call other functions; "+fix,
		c.ReplicaGateway, configKeys["ca_file"])
}

// clusterGateway refuses a replica_gateway only the control node can reach
// when the swarm has several nodes: loopback, and Docker's default bridge
// (docker0, 172.17.0.0/16; the default replica_gateway) are each node's
// own, so a replica elsewhere would call itself or nothing.
func clusterGateway(gateway string, nodes int) error {
	if nodes <= 1 || gateway == "" {
		return nil
	}
	u, err := url.Parse(gateway)
	if err != nil {
		return nil // validated with the configuration
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	ip := net.ParseIP(host)
	// docker0's default subnet, and docker_gwbridge's (the bridge a swarm
	// task's traffic leaves its node by).
	_, docker0, _ := net.ParseCIDR("172.17.0.0/16")
	_, gwbridge, _ := net.ParseCIDR("172.18.0.0/16")
	if host == "localhost" || (ip != nil && (ip.IsLoopback() || docker0.Contains(ip) || gwbridge.Contains(ip))) {
		return fmt.Errorf("replica_gateway %s is reachable only on the node it names, but the swarm has %d nodes: "+
			"set replica_gateway (%s) to the gateway's address as every node reaches it, e.g. http://CONTROL-NODE-IP:8080", gateway, nodes, configKeys["replica_gateway"])
	}
	return nil
}
