package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/internal/testcert"
)

// testCertPEM is a self-signed certificate and its key, as PEM.
func testCertPEM(t *testing.T) (cert, key []byte) {
	t.Helper()
	c, err := testcert.SelfSigned(time.Time{}, time.Time{}, "gw")
	if err != nil {
		t.Fatal(err)
	}
	key, err = c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return c.PEM, key
}

// TestReplicaGatewayCA: deploy hands ca_file to the replicas only for an
// https replica_gateway, and refuses an https one they could not verify.
func TestReplicaGatewayCA(t *testing.T) {
	dir := t.TempDir()
	cert, key := testCertPEM(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", cert)
	withKey := write("withkey.pem", append(append([]byte{}, cert...), key...))
	notPEM := write("not.pem", []byte("hello\n"))
	fp := strings.Repeat("ab", 32)
	const https, http = "https://10.0.0.5:8080", "http://172.17.0.1:8080"
	tests := []struct {
		name    string
		cfg     Config
		want    []byte
		wantErr []string
	}{
		{name: "https with ca_file", cfg: Config{ReplicaGateway: https, CAFile: caFile}, want: cert},
		{name: "http with ca_file", cfg: Config{ReplicaGateway: http, CAFile: caFile}},
		{name: "http with fingerprint", cfg: Config{ReplicaGateway: http, Fingerprint: fp}},
		{name: "no replica gateway", cfg: Config{CAFile: caFile}},
		{name: "https with fingerprint", cfg: Config{ReplicaGateway: https, Fingerprint: fp},
			wantErr: []string{"replica_gateway https://10.0.0.5:8080 is https, but the gateway's certificate is pinned by fingerprint, which only the CLI checks", "remove fingerprint and set ca_file (PULSE_CA_FILE)", "/etc/pulse/tls-ca.pem"}},
		{name: "https with neither", cfg: Config{ReplicaGateway: "HTTPS://gw:8080"},
			wantErr: []string{"replica_gateway HTTPS://gw:8080 is https, but ca_file is not set: replicas have no CA bundle", "set ca_file (PULSE_CA_FILE)"}},
		{name: "missing ca_file", cfg: Config{ReplicaGateway: https, CAFile: filepath.Join(dir, "none.pem")},
			wantErr: []string{"ca_file: open ", "none.pem", "deploy hands ca_file to the replicas"}},
		{name: "ca_file with a key", cfg: Config{ReplicaGateway: https, CAFile: withKey},
			wantErr: []string{"ca_file " + withKey + ": gateway CA bundle: PEM block 2 is a PRIVATE KEY"}},
		{name: "ca_file not PEM", cfg: Config{ReplicaGateway: https, CAFile: notPEM},
			wantErr: []string{"ca_file " + notPEM + ": gateway CA bundle holds no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.replicaGatewayCA()
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("replicaGatewayCA() = %d bytes, want an error", len(got))
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("replicaGatewayCA() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestDeployRefusesUnverifiableGateway: `pulse deploy` with an https
// replica_gateway pinned by fingerprint stops before building anything and
// says to set ca_file.
func TestDeployRefusesUnverifiableGateway(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	conf := "gateway: https://127.0.0.1:8080\nreplica_gateway: https://10.0.0.5:8080\nfingerprint: " + strings.Repeat("ab", 32) + "\ndocker_host: unix:///nonexistent/docker.sock\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "functions.yml")
	if err := os.WriteFile(spec, []byte("version: 1\nfunctions:\n  hi:\n    lang: c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := pulse(t, dir, nil, "--config", cfg, "deploy", "-f", spec)
	if code == 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q: want a failure and nothing deployed", code, stdout)
	}
	for _, w := range []string{"pinned by fingerprint, which only the CLI checks", "set ca_file (PULSE_CA_FILE)"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if strings.Contains(stderr, "docker") || strings.Contains(stderr, "image") {
		t.Errorf("deploy got as far as the engine or a build:\n%s", stderr)
	}
}
