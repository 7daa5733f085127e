package function

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/contract"
)

// testCA is a CA made for a test, and what it signs.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pem    []byte // the certificate
	keyPEM []byte
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key,
		pem:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

// leaf returns a server certificate for host signed by the CA, as PEM.
func (ca *testCA) leaf(t testing.TB, host string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestValidateGatewayCA(t *testing.T) {
	a, b := newTestCA(t, "ca a"), newTestCA(t, "ca b")
	tests := []struct {
		name    string
		data    []byte
		wantErr string // substring; "" is valid
	}{
		{"one certificate", a.pem, ""},
		{"a bundle with openssl's text between", slices.Concat([]byte("subject=CN = ca a\n"), a.pem, []byte("\n# b\n"), b.pem), ""},
		{"empty", nil, "gateway CA bundle is empty"},
		{"not PEM", []byte("hello\n"), "holds no PEM certificate"},
		{"a key alone", a.keyPEM, "PEM block 1 is a EC PRIVATE KEY: the bundle goes to every replica"},
		{"a certificate and its key", slices.Concat(a.pem, a.keyPEM), "PEM block 2 is a EC PRIVATE KEY"},
		{"a PKCS#8 key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), "is a PRIVATE KEY"},
		{"another block", slices.Concat(a.pem, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}})), `PEM block 2 is a "CERTIFICATE REQUEST" block`},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}), "PEM block 1 is not a certificate that parses"},
		{"too large", slices.Concat(a.pem, bytes.Repeat([]byte("#"), MaxGatewayCA)), "over 512000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateGatewayCA(tt.data)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ValidateGatewayCA() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ValidateGatewayCA() = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzValidateGatewayCA(f *testing.F) {
	ca := newTestCA(f, "fuzz")
	f.Add(ca.pem)
	f.Add(slices.Concat(ca.pem, ca.keyPEM))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := ValidateGatewayCA(data); err != nil {
			return
		}
		// Accepted: crypto/x509 in the replica must find a certificate,
		// and no key may be in it.
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			t.Fatalf("accepted %q, which holds no certificate for crypto/x509", data)
		}
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				t.Fatalf("accepted a %s block", b.Type)
			}
		}
	})
}

func TestGatewayCASecretName(t *testing.T) {
	ca := []byte("pem")
	if got := contract.GatewayCASecretName("lab", ca); !strings.HasPrefix(got, "pulse-lab-gateway-ca-") || len(got) != len("pulse-lab-gateway-ca-")+12 {
		t.Errorf("GatewayCASecretName(lab) = %q", got)
	}
	if contract.GatewayCASecretName("lab", ca) == contract.GatewayCASecretName("lab", []byte("pem2")) {
		t.Error("two bundles share a secret name")
	}
	long := strings.Repeat("x", 63)
	got := contract.GatewayCASecretName(long, ca)
	if len(got) > 64 || got == contract.GatewayCASecretName(long[:62], ca) {
		t.Errorf("GatewayCASecretName(63 bytes) = %q (%d bytes): want at most 64, distinct per instance", got, len(got))
	}
}

func TestDeployGatewayCA(t *testing.T) {
	img := Image{ID: testImageID}
	spec := Spec{Name: "greet", Lang: LangGo, Mode: contract.ModeInProcess, Timeout: time.Second, Scale: Scale{Min: 1, Max: 3}}
	ca := newTestCA(t, "gateway")
	opts := DeployOptions{Instance: "lab", GatewayURL: "https://10.0.0.1:8080", GatewayCA: ca.pem}
	name := contract.GatewayCASecretName("lab", ca.pem)

	t.Run("created once, mounted, SSL_CERT_FILE set", func(t *testing.T) {
		fake := &fakeSwarmAPI{t: t, services: map[string]swarm.Service{}}
		s := NewSwarm(fake, &fakeDistributor{}, nil)
		if _, err := s.Deploy(t.Context(), spec, img, opts); err != nil {
			t.Fatal(err)
		}
		if len(fake.secretCreated) != 1 {
			t.Fatalf("%d secrets created, want 1", len(fake.secretCreated))
		}
		sec := fake.secretCreated[0]
		if sec.Name != name || !bytes.Equal(sec.Data, ca.pem) ||
			sec.Labels[contract.LabelInstance] != "lab" || sec.Labels[contract.LabelRole] != contract.RoleGatewayCA {
			t.Errorf("secret = %s %v, want %s labelled instance lab, role %s, holding the PEM", sec.Name, sec.Labels, name, contract.RoleGatewayCA)
		}
		cs := fake.created[0].TaskTemplate.ContainerSpec
		want := &swarm.SecretReference{
			File:     &swarm.SecretReferenceFileTarget{Name: contract.GatewayCASecretTarget, UID: "65534", GID: "65534", Mode: 0o444},
			SecretID: "sec-1", SecretName: name,
		}
		if !slices.ContainsFunc(cs.Secrets, func(r *swarm.SecretReference) bool {
			return *r.File == *want.File && r.SecretID == want.SecretID && r.SecretName == want.SecretName
		}) {
			t.Errorf("secrets %+v lack %+v", cs.Secrets, want)
		}
		if !slices.Contains(cs.Env, "SSL_CERT_FILE=/run/secrets/pulse-gateway-ca") || !slices.Contains(cs.Env, contract.EnvGatewayURL+"=https://10.0.0.1:8080") {
			t.Errorf("env %q lacks SSL_CERT_FILE or the gateway URL", cs.Env)
		}

		// The same deploy again sends nothing.
		fake.services[spec.Name] = swarm.Service{ID: "svc", Spec: fake.created[0]}
		if res, err := s.Deploy(t.Context(), spec, img, opts); err != nil || !res.Unchanged || len(fake.updated) != 0 {
			t.Fatalf("the same deploy again: %+v, %v, %d updates; want unchanged, none", res, err, len(fake.updated))
		}
		// A second deploy over an older spec (an update) reuses the secret.
		older := fake.created[0]
		older.Labels = maps.Clone(older.Labels)
		older.Labels[contract.LabelSpecDigest] = "an older spec"
		fake.services[spec.Name] = swarm.Service{ID: "svc", Spec: older}
		if _, err := s.Deploy(t.Context(), spec, img, opts); err != nil {
			t.Fatal(err)
		}
		if len(fake.secretCreated) != 1 || len(fake.updated) != 1 {
			t.Fatalf("second deploy: %d secrets created, %d updates; want the secret reused", len(fake.secretCreated), len(fake.updated))
		}
		if got := fake.updatedSpecs[0].TaskTemplate.ContainerSpec.Secrets; len(got) != 2 || got[1].SecretID != "sec-1" {
			t.Errorf("update secrets = %+v, want the replica credential and sec-1", got)
		}
	})

	t.Run("without a CA nothing changes", func(t *testing.T) {
		fake := &fakeSwarmAPI{t: t}
		o := opts
		o.GatewayCA = nil
		o.GatewayCASecret = SecretRef{ID: "stale", Name: "stale"} // Deploy's to fill, not the caller's
		if _, err := NewSwarm(fake, &fakeDistributor{}, nil).Deploy(t.Context(), spec, img, o); err != nil {
			t.Fatal(err)
		}
		cs := fake.created[0].TaskTemplate.ContainerSpec
		if len(fake.secretCreated) != 0 || len(cs.Secrets) != 1 || slices.ContainsFunc(cs.Env, func(e string) bool { return strings.HasPrefix(e, "SSL_CERT_FILE=") }) {
			t.Errorf("created %d secrets; service secrets %+v, env %q: want only the replica credential", len(fake.secretCreated), cs.Secrets, cs.Env)
		}
	})

	refused := []struct {
		name    string
		spec    Spec
		opts    func(*DeployOptions)
		secrets []swarm.Secret
		wantErr string
	}{
		{name: "http gateway", opts: func(o *DeployOptions) { o.GatewayURL = "http://10.0.0.1:8080" },
			wantErr: `deploy greet: a gateway CA is given but the replicas' gateway URL "http://10.0.0.1:8080" is not https://`},
		{name: "no gateway", opts: func(o *DeployOptions) { o.GatewayURL = "" }, wantErr: `gateway URL "" is not https://`},
		{name: "a key in the bundle", opts: func(o *DeployOptions) { o.GatewayCA = slices.Concat(ca.pem, ca.keyPEM) },
			wantErr: "deploy greet: gateway CA bundle: PEM block 2 is a EC PRIVATE KEY"},
		{name: "SSL_CERT_FILE in functions.yml", spec: Spec{Env: map[string]string{"SSL_CERT_FILE": "/etc/x.pem"}},
			wantErr: "functions.yml sets env SSL_CERT_FILE=/etc/x.pem, but deploy points it at the gateway's CA"},
		{name: "a foreign secret of that name", secrets: []swarm.Secret{{ID: "x", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: name}}}},
			wantErr: "secret " + name + ` exists but is not instance "lab"'s gateway CA`},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeSwarmAPI{t: t, secrets: tt.secrets}
			sp := spec
			if tt.spec.Env != nil {
				sp.Env = tt.spec.Env
			}
			o := opts
			if tt.opts != nil {
				tt.opts(&o)
			}
			_, err := NewSwarm(fake, &fakeDistributor{}, nil).Deploy(t.Context(), sp, img, o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Deploy() = %v, want an error with %q", err, tt.wantErr)
			}
			if len(fake.created)+len(fake.updated)+len(fake.secretCreated) != 0 {
				t.Errorf("refused deploy changed the engine: %d created, %d updated, %d secrets", len(fake.created), len(fake.updated), len(fake.secretCreated))
			}
		})
	}

	t.Run("create fails", func(t *testing.T) {
		fake := &fakeSwarmAPI{t: t, secretErr: errEngine}
		_, err := NewSwarm(fake, &fakeDistributor{}, nil).Deploy(t.Context(), spec, img, opts)
		if !errors.Is(err, errEngine) || !strings.Contains(err.Error(), "create secret "+name) {
			t.Fatalf("Deploy() = %v, want create secret %s: %v", err, name, errEngine)
		}
	})
}
