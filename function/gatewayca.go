package function

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// The gateway's CA in replicas (contract/function_tls.go): with
// DeployOptions.GatewayCA, Deploy keeps the bundle in a Docker secret of the
// instance and mounts it where SSL_CERT_FILE points, so a function that
// calls the gateway over https trusts exactly that CA (a FROM scratch
// replica has no other). A secret of a CA that was replaced stays until
// removed by hand (docker secret rm; the engine refuses while a service
// uses it): it holds only public certificates.

// MaxGatewayCA is the largest CA bundle Deploy takes: Docker's limit on a
// secret (500 KiB), enough for a system bundle of ~150 CAs.
const MaxGatewayCA = 500 << 10

// gatewayCASecretMode lets every process of a replica read the bundle:
// certificates are public.
const gatewayCASecretMode = 0o444

// ValidateGatewayCA checks a CA bundle for DeployOptions.GatewayCA: PEM
// with at least one CERTIFICATE block, every block a certificate that
// parses, and no private key (a secret that every replica could read).
// Text between blocks (openssl's subject= lines) is allowed, as
// crypto/x509 skips it.
func ValidateGatewayCA(data []byte) error {
	if len(data) == 0 {
		return errors.New("gateway CA bundle is empty: want PEM certificates (-----BEGIN CERTIFICATE----- blocks)")
	}
	if len(data) > MaxGatewayCA {
		return fmt.Errorf("gateway CA bundle is %d bytes, over %d (Docker's limit on a secret): give only the CA that signs the gateway's certificate", len(data), MaxGatewayCA)
	}
	certs := 0
	for rest, n := data, 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case strings.Contains(b.Type, "PRIVATE KEY"):
			return fmt.Errorf("gateway CA bundle: PEM block %d is a %s: the bundle goes to every replica, so it must hold only certificates; remove the key", n, b.Type)
		case b.Type != "CERTIFICATE":
			return fmt.Errorf("gateway CA bundle: PEM block %d is a %q block: want only CERTIFICATE blocks", n, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("gateway CA bundle: PEM block %d is not a certificate that parses: %w", n, err)
		}
		certs++
	}
	if certs == 0 {
		return errors.New("gateway CA bundle holds no PEM certificate: want -----BEGIN CERTIFICATE----- blocks")
	}
	return nil
}

// checkGatewayCA refuses a GatewayCA that would do nothing or clash.
func checkGatewayCA(spec Spec, opts DeployOptions) error {
	if len(opts.GatewayCA) == 0 {
		return nil
	}
	u, err := url.Parse(opts.GatewayURL)
	if err != nil || !strings.EqualFold(u.Scheme, "https") {
		return fmt.Errorf("a gateway CA is given but the replicas' gateway URL %q is not https://, so nothing would use it: give an https:// gateway URL or no CA", opts.GatewayURL)
	}
	if v, ok := spec.Env[contract.EnvSSLCertFile]; ok {
		return fmt.Errorf("functions.yml sets env %s=%s, but deploy points it at the gateway's CA (%s) so that the function can verify the https gateway: remove it from env",
			contract.EnvSSLCertFile, v, contract.GatewayCAPath)
	}
	return ValidateGatewayCA(opts.GatewayCA)
}

// gatewayCASecret finds or creates the instance's secret holding ca.
func (s *Swarm) gatewayCASecret(ctx context.Context, instance string, ca []byte) (SecretRef, error) {
	name := contract.GatewayCASecretName(instance, ca)
	find := func() (SecretRef, bool, error) {
		cctx, cancel := s.call(ctx)
		defer cancel()
		secrets, err := s.api.SecretList(cctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
		if err != nil {
			return SecretRef{}, false, fmt.Errorf("list secrets: %w", err)
		}
		for _, sec := range secrets {
			if sec.Spec.Name != name { // the name filter matches prefixes
				continue
			}
			if sec.Spec.Labels[contract.LabelInstance] != instance || sec.Spec.Labels[contract.LabelRole] != contract.RoleGatewayCA {
				return SecretRef{}, false, fmt.Errorf("secret %s exists but is not instance %q's gateway CA (labels %s=%q, %s=%q): remove it (docker secret rm %s)",
					name, instance, contract.LabelInstance, sec.Spec.Labels[contract.LabelInstance], contract.LabelRole, sec.Spec.Labels[contract.LabelRole], name)
			}
			return SecretRef{ID: sec.ID, Name: name}, true, nil
		}
		return SecretRef{}, false, nil
	}
	ref, ok, err := find()
	if err != nil || ok {
		return ref, err
	}
	cctx, cancel := s.call(ctx)
	resp, err := s.api.SecretCreate(cctx, swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{
			contract.LabelInstance: instance,
			contract.LabelRole:     contract.RoleGatewayCA,
		}},
		Data: bytes.Clone(ca),
	})
	cancel()
	if err == nil {
		s.log.Info("gateway CA secret created", "secret", name, "id", resp.ID, "instance", instance)
		return SecretRef{ID: resp.ID, Name: name}, nil
	}
	if isNameConflict(err) { // another deploy created it meanwhile
		if ref, ok, ferr := find(); ferr == nil && ok {
			return ref, nil
		}
	}
	return SecretRef{}, fmt.Errorf("create secret %s: %w", name, err)
}
