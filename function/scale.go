package function

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// Scale sets the function's replica count. Unless force, n must lie within
// the service's pulse.scale.min and pulse.scale.max labels. A lost update race
// is re-read and retried (swarmscale, as pulsed's scaler does).
func (s *Swarm) Scale(ctx context.Context, name string, n int, force bool) error {
	fail := func(err error) error { return fmt.Errorf("scale %s to %d: %w", name, n, err) }
	if n < 0 {
		return fail(errors.New("replicas must be 0 or more"))
	}
	_, _, err := s.scaler().Scale(ctx, name, func(svc swarm.Service) (int, error) {
		if force {
			return n, nil
		}
		return n, checkScaleLimits(n, svc.Spec.Labels)
	})
	if err != nil {
		return fail(err)
	}
	s.log.Info("service scaled", "function", name, "replicas", n, "force", force)
	return nil
}

// checkScaleLimits checks n against the policy the scaler enforces
// (scalelabels.Parse): a missing or malformed label reads as its default,
// and every function has a max of at least 1.
func checkScaleLimits(n int, labels map[string]string) error {
	p, _ := scalelabels.Parse(labels)
	if n < p.Min {
		return fmt.Errorf("%w: min is %d (label %s); use --force to override", ErrScaleLimit, p.Min, contract.LabelScaleMin)
	}
	if n > p.Max {
		return fmt.Errorf("%w: max is %d (label %s); use --force to override", ErrScaleLimit, p.Max, contract.LabelScaleMax)
	}
	return nil
}
