package scaler

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/internal/swarmscale"
)

// ServiceAPI is the part of the Docker API the scaler uses: a swarm
// manager's (swarmscale's, which `pulse scale` shares).
type ServiceAPI = swarmscale.API

// The errors of reading and updating a service are swarmscale's, so the
// scaler and the CLI tell a missing function and a lost race apart alike.
var (
	ErrNotFound      = swarmscale.ErrNotFound
	ErrConflict      = swarmscale.ErrConflict
	ErrNotReplicated = swarmscale.ErrNotReplicated
)

// SwarmServices reads and scales function services through the Docker API,
// on the one Swarm scaling path (internal/swarmscale).
type SwarmServices struct {
	sc *swarmscale.Client
}

var _ Services = (*SwarmServices)(nil)

// NewSwarmServices returns the adapter over api for the functions of one
// Pulse instance: a service whose pulse.instance label is not instance (of
// another install, or deployed before instances existed) is ErrNotFound, so
// this pulsed never scales it even if asked by name. The conflict retries
// are the scaler's (Config.UpdateRetries): it decides again after each.
func NewSwarmServices(api ServiceAPI, instance string) *SwarmServices {
	cfg := swarmscale.DefaultConfig()
	cfg.Instance = instance
	return &SwarmServices{sc: swarmscale.New(api, cfg)}
}

// Inspect reads the service of the function fn (swarmscale.Client.Inspect:
// the pulse.function label must name it and pulse.instance be this one's).
func (s *SwarmServices) Inspect(ctx context.Context, fn string) (Service, error) {
	svc, err := s.sc.Inspect(ctx, fn)
	if err != nil {
		return Service{}, err
	}
	n, ok := swarmscale.Replicas(svc.Spec)
	if !ok {
		return Service{}, fmt.Errorf("service %s: %w", fn, ErrNotReplicated)
	}
	return Service{
		ID: svc.ID, Name: fn, Replicas: n, Labels: svc.Spec.Labels,
		UpdatedAt: svc.UpdatedAt, Version: svc.Version.Index, spec: &svc,
	}, nil
}

// SetReplicas writes svc's spec back with n replicas at the version read
// (swarmscale.Client.SetReplicas): ErrConflict when anything changed the
// service since.
func (s *SwarmServices) SetReplicas(ctx context.Context, svc Service, n int) error {
	read, ok := svc.spec.(*swarm.Service)
	if !ok {
		return fmt.Errorf("update service %s: not read by this adapter", svc.Name)
	}
	return s.sc.SetReplicas(ctx, *read, n)
}
