package function

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// TestDeployGatewayCADocker deploys, on the real swarm, a function that
// verifies a server certificate against its replica's system CAs (a FROM
// scratch image has none): with DeployOptions.GatewayCA it trusts a
// certificate of that CA and not one of another CA; redeployed without it,
// it trusts nothing again. The secret is the instance's, labelled, and
// reused by a second deploy of the same CA.
func TestDeployGatewayCADocker(t *testing.T) {
	f := newSwarmFixture(t, "gwca")
	t.Cleanup(func() {
		// The service first: the engine keeps a secret in use.
		ctx, cancel := context.WithTimeout(context.Background(), swarmTestTimeout)
		defer cancel()
		if err := f.sw.Remove(ctx, f.name); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("cleanup: %v", err)
		}
		secrets, err := f.api.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(
			filters.Arg("label", contract.LabelInstance+"="+f.instance), filters.Arg("label", contract.LabelRole+"="+contract.RoleGatewayCA))})
		if err != nil {
			t.Errorf("cleanup: list secrets: %v", err)
		}
		for _, s := range secrets {
			if err := f.api.SecretRemove(ctx, s.ID); err != nil && !isNotFound(err) {
				t.Errorf("cleanup: remove secret %s: %v", s.Spec.Name, err)
			}
		}
	})
	fn := catrustBinary(t)
	img := f.imageOf("1", fn)
	ca, other := newTestCA(t, "pulse test gateway CA"), newTestCA(t, "another CA")
	trustedLeaf, otherLeaf := ca.leaf(t, "gateway.test"), other.leaf(t, "gateway.test")

	spec := f.spec()
	opts := f.deployOptions()
	opts.GatewayURL = "https://gateway.test:8080"
	opts.GatewayCA = ca.pem
	ask := func(leaf []byte) string {
		t.Helper()
		eps, err := f.sw.WaitReady(f.ctx(), f.name, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.post(eps[0].Addr, leaf)
		if err != nil {
			t.Fatalf("post to %s: %v", eps[0].Addr, err)
		}
		return string(got)
	}

	if _, err := f.sw.Deploy(f.ctx(), spec, img, opts); err != nil {
		t.Fatal(err)
	}
	if got := ask(trustedLeaf); got != "SSL_CERT_FILE="+contract.GatewayCAPath+"\ntrusted\n" {
		t.Errorf("with the gateway CA, its certificate: %q, want trusted", got)
	}
	if got := ask(otherLeaf); !strings.Contains(got, "untrusted: x509: certificate signed by unknown authority") {
		t.Errorf("with the gateway CA, another CA's certificate: %q, want untrusted (unknown authority)", got)
	}

	name := contract.GatewayCASecretName(f.instance, ca.pem)
	secretsOf := func() []swarm.Secret {
		t.Helper()
		secs, err := f.api.SecretList(f.ctx(), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", contract.LabelRole+"="+contract.RoleGatewayCA),
			filters.Arg("label", contract.LabelInstance+"="+f.instance))})
		if err != nil {
			t.Fatal(err)
		}
		return secs
	}
	secs := secretsOf()
	if len(secs) != 1 || secs[0].Spec.Name != name {
		t.Fatalf("gateway CA secrets of the instance: %+v, want one named %s", secs, name)
	}

	// The same CA again (an update): the secret is reused.
	if _, err := f.sw.Deploy(f.ctx(), spec, f.imageOf("2", fn), opts); err != nil {
		t.Fatal(err)
	}
	if got := ask(trustedLeaf); !strings.HasSuffix(got, "\ntrusted\n") {
		t.Errorf("redeployed with the same CA: %q, want trusted", got)
	}
	if again := secretsOf(); len(again) != 1 || again[0].ID != secs[0].ID {
		t.Errorf("redeploy with the same CA: secrets %+v, want only %s", again, secs[0].ID)
	}

	// Without the CA the replica trusts nothing: no CA leaks from elsewhere.
	opts.GatewayCA = nil
	if _, err := f.sw.Deploy(f.ctx(), spec, f.imageOf("3", fn), opts); err != nil {
		t.Fatal(err)
	}
	if got := ask(trustedLeaf); got != "SSL_CERT_FILE=\nuntrusted: x509: certificate signed by unknown authority\n" {
		t.Errorf("without the gateway CA: %q, want untrusted with SSL_CERT_FILE unset", got)
	}
}

// catrustBinary builds testdata/catrust, the function that reports whether
// its replica trusts a certificate.
func catrustBinary(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "catrust")
	if err := runCommand(t, ".", []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./testdata/catrust/main.go"); err != nil {
		t.Fatalf("build testdata/catrust: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
