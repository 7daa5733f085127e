package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// engineSweep is what a suite left on the engine and how to remove it: the
// services and containers whose (service) names mine accepts, and the
// images images selects (and imageMine accepts, if set), then the run's
// replica credential.
type engineSweep struct {
	api       *client.Client
	log       *slog.Logger
	mine      func(name string) bool
	remove    func(ctx context.Context, service string) error
	images    filters.Args
	imageMine func(labels map[string]string) bool
	cred      *runCredential
}

// run removes everything the sweep matches and returns what it found,
// failures included; it logs what it removed.
func (s engineSweep) run(ctx context.Context, found []string) []string {
	warn := func(what string, err error) {
		s.log.Warn("cleanup", "what", what, "err", err)
		found = append(found, fmt.Sprintf("%s: %v", what, err))
	}
	cctx, ccancel := call(ctx)
	svcs, err := s.api.ServiceList(cctx, swarm.ServiceListOptions{})
	ccancel()
	if err != nil {
		warn("list services", err)
	}
	for _, sv := range svcs {
		if !s.mine(sv.Spec.Name) {
			continue
		}
		found = append(found, "service "+sv.Spec.Name)
		if err := s.remove(ctx, sv.Spec.Name); err != nil {
			warn("remove "+sv.Spec.Name, err)
		}
	}

	cctx, ccancel = call(ctx)
	cs, err := s.api.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelSwarmServiceName))})
	ccancel()
	if err != nil {
		warn("list containers", err)
	}
	for _, c := range cs {
		if !s.mine(c.Labels[labelSwarmServiceName]) {
			continue
		}
		found = append(found, "container "+c.ID[:12])
		cctx, ccancel := call(ctx)
		if err := s.api.ContainerRemove(cctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			warn("remove container "+c.ID[:12], err)
		}
		ccancel()
	}

	cctx, ccancel = call(ctx)
	imgs, err := s.api.ImageList(cctx, image.ListOptions{All: true, Filters: s.images})
	ccancel()
	if err != nil {
		warn("list images", err)
	}
	for _, img := range imgs {
		if s.imageMine != nil && !s.imageMine(img.Labels) {
			continue
		}
		found = append(found, "image "+img.ID)
		cctx, ccancel := call(ctx)
		if _, err := s.api.ImageRemove(cctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			warn("remove image "+img.ID, err)
		}
		ccancel()
	}
	// The credential last: Docker keeps a secret while a service uses it.
	for _, f := range s.cred.remove(s.api) {
		s.log.Warn("cleanup", "what", f)
		found = append(found, f)
	}
	if len(found) > 0 {
		s.log.Info("cleanup: removed what was left", "found", strings.Join(found, "; "))
	}
	return found
}
