package function

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// Labels Swarm puts on the containers of a service's tasks.
const labelSwarmServiceID = "com.docker.swarm.service.id"

// Remove removes the function's service, waits until its containers are
// gone, then removes the function's images (label pulse.function=name) that
// no container uses. A function with neither a service nor an image is
// ErrNotFound. ctx bounds the wait; without a deadline it is the service's
// stop grace period plus a margin.
func (s *Swarm) Remove(ctx context.Context, name string) error {
	fail := func(err error) error { return fmt.Errorf("remove %s: %w", name, err) }
	svc, err := s.inspectFunction(ctx, name)
	found := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fail(err)
	}
	if found {
		cctx, cancel := s.call(ctx)
		err := s.api.ServiceRemove(cctx, svc.ID)
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			return fail(fmt.Errorf("remove service %s: %w", svc.ID, err))
		}
		if err := s.waitGone(ctx, svc); err != nil {
			return fail(err)
		}
		s.log.Info("service removed", "function", name, "service", svc.ID)
	}
	n, err := s.removeImages(ctx, name)
	if err != nil {
		return fail(err)
	}
	if !found && n == 0 {
		return fail(ErrNotFound)
	}
	return nil
}

// waitGone polls until no container of the service is left.
func (s *Swarm) waitGone(ctx context.Context, svc swarm.Service) error {
	if _, ok := ctx.Deadline(); !ok {
		grace := defaultDrainGrace + defaultTimeout + writeSlack
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil && cs.StopGracePeriod != nil {
			grace = *cs.StopGracePeriod
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, grace+s.removeSlack)
		defer cancel()
	}
	f := filters.NewArgs(filters.Arg("label", labelSwarmServiceID+"="+svc.ID))
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		cctx, cancel := s.call(ctx)
		cs, err := s.api.ContainerList(cctx, container.ListOptions{All: true, Filters: f})
		cancel()
		if err != nil {
			return fmt.Errorf("list containers: %w", err)
		}
		if len(cs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d containers to stop: %w", len(cs), ctx.Err())
		case <-tick.C:
		}
	}
}

// removeImages removes the function's images that no container uses and
// returns how many images the function had.
func (s *Swarm) removeImages(ctx context.Context, name string) (int, error) {
	cctx, cancel := s.call(ctx)
	imgs, err := s.api.ImageList(cctx, image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", contract.LabelFunction+"="+name)),
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		cctx, cancel := s.call(ctx)
		users, err := s.api.ContainerList(cctx, container.ListOptions{
			All: true, Filters: filters.NewArgs(filters.Arg("ancestor", img.ID)),
		})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("list containers of image %s: %w", img.ID, err)
		}
		if len(users) > 0 {
			s.log.Info("image kept: a container uses it", "function", name, "image", img.ID, "container", users[0].ID)
			continue
		}
		cctx, cancel = s.call(ctx)
		// Force: the image may carry several tags; no container uses it.
		_, err = s.api.ImageRemove(cctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			return 0, fmt.Errorf("remove image %s: %w", img.ID, err)
		}
		s.log.Info("image removed", "function", name, "image", img.ID)
	}
	return len(imgs), nil
}
