package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/internal/testcert"
)

// TestInstallScriptAPIArgs runs scripts/install-netdata.sh's choice of
// pulsed's API alone (--api-args) against a pulsed.yaml: http:// without
// tls_cert, https:// and the CA file (written from tls_cert when missing)
// with it, the same again on a second run, and back to http:// when
// tls_cert goes.
func TestInstallScriptAPIArgs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("install-netdata.sh runs as root")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" { // CI: .ci/run installs it
			t.Fatalf("needs openssl: %v", err)
		}
		t.Skip("openssl missing")
	}
	dir, err := os.MkdirTemp("", "pulse-install-netdata-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // user netdata reads the CA file
		t.Fatal(err)
	}
	cert, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	key, err := cert.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	tlsPEM := filepath.Join(dir, "tls.pem") // as make up writes it: certificate and key
	if err := os.WriteFile(tlsPEM, append(append([]byte{}, cert.PEM...), key...), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "pulsed.yaml")
	caFile := filepath.Join(dir, "tls-ca.pem")
	run := func(yaml string) []string {
		t.Helper()
		if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "../../scripts/install-netdata.sh", "--api-args")
		cmd.Env = append(os.Environ(), "PULSED_CONF="+conf, "PULSE_TLS_CA_FILE="+caFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("install-netdata.sh --api-args: %v\n%s%s", err, out, stderr.String())
		}
		var args []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.HasPrefix(l, "install-netdata: ") {
				args = append(args, l)
			}
		}
		return args
	}
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{name: "no tls_cert", yaml: "log_level: info\n", want: []string{"-api", "http://127.0.0.1:8090"}},
		{name: "tls_cert", yaml: "log_level: info\ntls_cert: " + tlsPEM + "\n", want: []string{"-api", "https://127.0.0.1:8090", "-ca-file", caFile}},
		{name: "tls_cert again", yaml: "log_level: info\ntls_cert: " + tlsPEM + "\n", want: []string{"-api", "https://127.0.0.1:8090", "-ca-file", caFile}},
		{name: "tls_cert removed", yaml: "log_level: info\n", want: []string{"-api", "http://127.0.0.1:8090"}},
		{name: "commented out", yaml: "# tls_cert: " + tlsPEM + "\n", want: []string{"-api", "http://127.0.0.1:8090"}},
		{name: "quoted, with api_listen on all addresses", yaml: "api_listen: \"0.0.0.0:9001\"\ntls_cert: \"" + tlsPEM + "\"\n",
			want: []string{"-api", "https://127.0.0.1:9001", "-ca-file", caFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(tc.yaml); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("arguments %q, want %q", got, tc.want)
			}
		})
	}
	// The CA file: the certificate alone, readable by clients.
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, cert.PEM) || bytes.Contains(ca, []byte("PRIVATE KEY")) {
		t.Errorf("CA file:\n%s\nwant the certificate alone:\n%s", ca, cert.PEM)
	}
	if st, err := os.Stat(caFile); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("CA file mode %v, %v; want 0644", st.Mode(), err)
	}
}
