package function

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/swarmscale"
)

// DeployResult says what Deploy did.
type DeployResult struct {
	Created   bool     `json:"created"`             // false: an existing service was updated or left alone
	Unchanged bool     `json:"unchanged,omitempty"` // the service already ran this spec: nothing was sent
	ServiceID string   `json:"service_id"`
	Replicas  int      `json:"replicas"` // the desired replicas after the deploy
	Warnings  []string `json:"warnings,omitempty"`
}

// Deploy makes spec run from img: it finds the instance's replica
// credential (pulsed's secret; none is ErrNoReplicaAuth), makes sure the
// nodes have the image, resolves the spec's secrets, keeps opts.GatewayCA
// in a secret of the instance (created when missing; see gatewayca.go),
// and creates the
// function's service or updates it (a start-first rolling update, which a
// new credential triggers too). An update keeps the current replica
// count, clamped to the spec's [min, max]. The engine is never asked to query
// a registry.
func (s *Swarm) Deploy(ctx context.Context, spec Spec, img Image, opts DeployOptions) (DeployResult, error) {
	fail := func(err error) (DeployResult, error) {
		return DeployResult{}, fmt.Errorf("deploy %s: %w", spec.Name, err)
	}
	if spec.Name == "" {
		return fail(errors.New("the function has no name"))
	}
	if err := imageRef(img); err != nil {
		return fail(err)
	}
	if opts.Instance != "" && !contract.ValidInstance(opts.Instance) {
		return fail(fmt.Errorf("instance %q: want %s", opts.Instance, contract.InstanceSyntax))
	}
	// The credential first: without it nothing else is worth doing.
	var err error
	if opts.ReplicaAuth, err = s.replicaAuthSecret(ctx, cmp.Or(opts.Instance, contract.DefaultInstance)); err != nil {
		return fail(err)
	}
	if err := checkGatewayCA(spec, opts); err != nil {
		return fail(err)
	}
	if err := s.dist.Ensure(ctx, img); err != nil {
		return fail(err)
	}
	ids, err := s.secretIDs(ctx, spec.Secrets)
	if err != nil {
		return fail(err)
	}
	opts.SecretIDs = ids
	opts.GatewayCASecret = SecretRef{}
	if len(opts.GatewayCA) > 0 {
		if opts.GatewayCASecret, err = s.gatewayCASecret(ctx, cmp.Or(opts.Instance, contract.DefaultInstance), opts.GatewayCA); err != nil {
			return fail(err)
		}
	}
	want := ServiceSpec(spec, img, opts)
	digest, err := specDigest(want)
	if err != nil {
		return fail(err)
	}
	want.Labels = maps.Clone(want.Labels)
	want.Labels[contract.LabelSpecDigest] = digest

	for attempt := 0; ; attempt++ {
		retry := attempt < s.conflictRetries
		svc, err := s.inspectService(ctx, spec.Name)
		if errors.Is(err, ErrNotFound) {
			cctx, cancel := s.call(ctx)
			resp, err := s.api.ServiceCreate(cctx, want, swarm.ServiceCreateOptions{QueryRegistry: false})
			cancel()
			if err == nil {
				s.log.Info("service created", "function", spec.Name, "service", resp.ID, "image", img.ID)
				return DeployResult{Created: true, ServiceID: resp.ID, Replicas: replicasOf(want), Warnings: resp.Warnings}, nil
			}
			if isNameConflict(err) && retry { // created meanwhile: update it
				continue
			}
			return fail(fmt.Errorf("create service: %w", err))
		}
		if err != nil {
			return fail(err)
		}
		if got := svc.Spec.Labels[contract.LabelFunction]; got != spec.Name {
			return fail(fmt.Errorf("service %s exists but is not this Pulse function (label %s=%q): remove it or rename the function", svc.Spec.Name, contract.LabelFunction, got))
		}
		// A function of another install is not taken over; one deployed
		// before instances existed (no label) is adopted.
		if got, ok := svc.Spec.Labels[contract.LabelInstance]; ok && got != want.Labels[contract.LabelInstance] {
			return fail(fmt.Errorf("function %s belongs to Pulse instance %q (label %s), not to %q (the CLI's instance key): remove it there first or use that instance",
				spec.Name, got, contract.LabelInstance, want.Labels[contract.LabelInstance]))
		}
		n := clampReplicas(replicasOf(svc.Spec), spec.Scale.Min, spec.Scale.Max)
		if svc.Spec.Labels[contract.LabelSpecDigest] == digest && n == replicasOf(svc.Spec) {
			s.log.Info("service unchanged", "function", spec.Name, "service", svc.ID, "image", img.ID, "replicas", n)
			return DeployResult{ServiceID: svc.ID, Replicas: n, Unchanged: true}, nil
		}
		upd := want
		r := uint64(n)
		upd.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &r}}
		cctx, cancel := s.call(ctx)
		resp, err := s.api.ServiceUpdate(cctx, svc.ID, svc.Version, upd, swarm.ServiceUpdateOptions{QueryRegistry: false})
		cancel()
		if err == nil {
			s.log.Info("service updated", "function", spec.Name, "service", svc.ID, "image", img.ID, "replicas", n)
			return DeployResult{ServiceID: svc.ID, Replicas: n, Warnings: resp.Warnings}, nil
		}
		if swarmscale.IsOutOfSequence(err) && retry {
			s.log.Debug("service changed meanwhile, retrying", "function", spec.Name, "attempt", attempt+1)
			continue
		}
		return fail(fmt.Errorf("update service %s: %w", svc.ID, err))
	}
}

// specDigest is the SHA-256 (hex) of spec as JSON without its replica
// count, which the scaler owns: the same function, image, options and
// secrets give the same digest.
func specDigest(spec swarm.ServiceSpec) (string, error) {
	spec.Mode = swarm.ServiceMode{}
	b, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("spec digest: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// secretIDs resolves Docker secret names to IDs; every missing one is named.
func (s *Swarm) secretIDs(ctx context.Context, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	secrets, err := s.api.SecretList(cctx, swarm.SecretListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	byName := make(map[string]string, len(secrets))
	for _, sec := range secrets {
		byName[sec.Spec.Name] = sec.ID
	}
	ids := make(map[string]string, len(names))
	var missing []string
	for _, n := range names {
		id, ok := byName[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		ids[n] = id
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("secret %s does not exist: create it first (docker secret create NAME FILE)", strings.Join(missing, ", "))
	}
	return ids, nil
}

// ErrNoReplicaAuth means the instance has no replica credential secret:
// its pulsed has not run yet.
var ErrNoReplicaAuth = errors.New("no replica credential")

// replicaAuthSecret finds the instance's replica credential secret, which
// pulsed creates (labels contract.LabelInstance and contract.LabelRole):
// the newest when there are several (pulsed replaced the credential and has
// not removed the old one yet).
func (s *Swarm) replicaAuthSecret(ctx context.Context, instance string) (SecretRef, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	secrets, err := s.api.SecretList(cctx, swarm.SecretListOptions{Filters: filters.NewArgs(
		filters.Arg("label", contract.LabelInstance+"="+instance),
		filters.Arg("label", contract.LabelRole+"="+contract.RoleReplicaAuth),
	)})
	if err != nil {
		return SecretRef{}, fmt.Errorf("list secrets: %w", err)
	}
	var newest *swarm.Secret
	for i, sec := range secrets {
		// The engine filters; check again, so a fake or an older engine
		// that ignores a filter cannot hand over another secret.
		if sec.Spec.Labels[contract.LabelInstance] != instance || sec.Spec.Labels[contract.LabelRole] != contract.RoleReplicaAuth {
			continue
		}
		if newest == nil || sec.CreatedAt.After(newest.CreatedAt) ||
			sec.CreatedAt.Equal(newest.CreatedAt) && sec.ID > newest.ID {
			newest = &secrets[i]
		}
	}
	if newest == nil {
		return SecretRef{}, fmt.Errorf("%w for instance %q: start pulsed first (make up)", ErrNoReplicaAuth, instance)
	}
	return SecretRef{ID: newest.ID, Name: newest.Spec.Name}, nil
}

// inspectService reads the service named name. It wraps ErrNotFound when
// there is none, including when the engine matched name as an ID prefix.
func (s *Swarm) inspectService(ctx context.Context, name string) (swarm.Service, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	svc, _, err := s.api.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return swarm.Service{}, ErrNotFound
	}
	if err != nil {
		return swarm.Service{}, fmt.Errorf("inspect service: %w", err)
	}
	if svc.Spec.Name != name {
		return swarm.Service{}, ErrNotFound
	}
	return svc, nil
}

// clampReplicas keeps n within [lo, hi]; hi ≤ 0 means no upper bound.
func clampReplicas(n, lo, hi int) int {
	if hi > 0 && n > hi {
		n = hi
	}
	return max(n, lo, 0)
}
