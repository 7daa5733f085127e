package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/function"
)

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
registry), a host-mode published port, a read-only root filesystem, Docker secrets.
Waits until the replicas answer their health check and prints their endpoints.`,
		Example: "  pulse deploy\n  pulse deploy hello --health-interval 500ms",
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := loadSpecs(path, args)
			if err != nil {
				return err
			}
			sw, err := a.swarm()
			if err != nil {
				return err
			}
			// Engines from API 1.44 probe a new replica quickly until it is
			// healthy; older ones (20.10) only every health interval.
			cli, _ := a.engine()
			cli.NegotiateAPIVersion(cmd.Context())
			startInterval := function.StartIntervalFor(cli.ClientVersion())
			for _, s := range specs {
				img, info, err := a.buildAndLoad(cmd.Context(), s)
				if err != nil {
					return explain(err, s.Name)
				}
				fmt.Fprintf(a.err, "%s: image %s, %.2f MB\n", s.Name, shortID(img.ID), float64(info.ImageSize)/1e6)
				res, err := sw.Deploy(cmd.Context(), s, img, function.DeployOptions{
					GatewayURL: a.cfg.ReplicaGateway, HealthInterval: healthInterval, HealthStartInterval: startInterval,
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
				if res.Created {
					verb = "created"
				}
				fmt.Fprintf(a.out, "%s: service %s (%s), %d replica(s)\n", s.Name, verb, shortID(res.ServiceID), res.Replicas)
				if noWait || res.Replicas == 0 {
					continue
				}
				ctx, cancel := contextWithTimeout(cmd, waitTimeout)
				eps, err := sw.WaitReady(ctx, s.Name, res.Replicas)
				cancel()
				if err != nil {
					return fmt.Errorf("%s: replicas not ready: %w; see `pulse describe %s` and `pulse logs %s`", s.Name, err, s.Name, s.Name)
				}
				addrs := make([]string, len(eps))
				for i, e := range eps {
					addrs[i] = e.Addr
				}
				fmt.Fprintf(a.out, "%s: ready at %s\n  pulse invoke %s -d hi\n", s.Name, strings.Join(addrs, ", "), s.Name)
			}
			return nil
		},
	}
	specFlag(cmd, &path)
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the replicas to be ready")
	cmd.Flags().DurationVar(&healthInterval, "health-interval", 0, "Docker health check interval of the replicas; on engines without a health start interval (API < 1.44) the default is no Docker health check at all, so new replicas start sooner (the gateway checks readiness), on newer ones 1s")
	cmd.Flags().DurationVar(&waitTimeout, "wait-timeout", 2*time.Minute, "how long to wait for the replicas")
	return cmd
}
