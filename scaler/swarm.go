package scaler

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
)

// ServiceAPI is the part of the Docker API the scaler uses: a swarm
// manager's.
type ServiceAPI interface {
	ServiceInspectWithRaw(ctx context.Context, serviceID string, opts swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
}

var _ ServiceAPI = (*client.Client)(nil)

// SwarmServices reads and scales function services through the Docker API.
type SwarmServices struct {
	api ServiceAPI
}

var _ Services = (*SwarmServices)(nil)

// NewSwarmServices returns the adapter over api.
func NewSwarmServices(api ServiceAPI) *SwarmServices { return &SwarmServices{api: api} }

// Inspect reads the service named fn, which must carry the Pulse function
// label naming it (the engine also matches IDs and ID prefixes: those are
// not this function).
func (s *SwarmServices) Inspect(ctx context.Context, fn string) (Service, error) {
	svc, _, err := s.api.ServiceInspectWithRaw(ctx, fn, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return Service{}, fmt.Errorf("%w: no service %s", ErrNotFound, fn)
	}
	if err != nil {
		return Service{}, fmt.Errorf("inspect service %s: %w", fn, err)
	}
	if svc.Spec.Name != fn || svc.Spec.Labels[contract.LabelFunction] != fn {
		return Service{}, fmt.Errorf("%w: service %s is not the Pulse function %s", ErrNotFound, svc.Spec.Name, fn)
	}
	r := svc.Spec.Mode.Replicated
	if r == nil {
		return Service{}, fmt.Errorf("service %s: %w", fn, ErrNotReplicated)
	}
	n := 0
	if r.Replicas != nil {
		n = int(*r.Replicas)
	}
	spec := svc.Spec
	return Service{
		ID: svc.ID, Name: fn, Replicas: n, Labels: svc.Spec.Labels,
		UpdatedAt: svc.UpdatedAt, Version: svc.Version.Index, spec: &spec,
	}, nil
}

// SetReplicas writes svc's spec back with n replicas at the version read.
// Swarm refuses it when anything changed the service since ("update out of
// sequence"): ErrConflict. The image is never resolved against a registry.
func (s *SwarmServices) SetReplicas(ctx context.Context, svc Service, n int) error {
	read, ok := svc.spec.(*swarm.ServiceSpec)
	if !ok || n < 0 {
		return fmt.Errorf("update service %s: not read by this adapter or %d replicas", svc.Name, n)
	}
	spec := *read
	r := uint64(n)
	spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &r}}
	_, err := s.api.ServiceUpdate(ctx, svc.ID, swarm.Version{Index: svc.Version}, spec, swarm.ServiceUpdateOptions{QueryRegistry: false})
	if isOutOfSequence(err) {
		return fmt.Errorf("update service %s: %w (%v)", svc.Name, ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("update service %s: %w", svc.Name, err)
	}
	return nil
}

// isOutOfSequence reports an update based on a stale version. Engine 20.10
// answers 500 with swarmkit's message, so the message is what tells.
func isOutOfSequence(err error) bool {
	return err != nil && strings.Contains(err.Error(), "update out of sequence")
}
