package collector

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testcert"
)

// tlsPulsed is a fakePulsed behind HTTPS with cert.
func tlsPulsed(t *testing.T, cert *testcert.TLSCert, f *fakePulsed) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.Cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the tests fail
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func certFor(t *testing.T, hosts ...string) *testcert.TLSCert {
	t.Helper()
	c, err := testcert.SelfSigned(time.Time{}, time.Time{}, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caFileOf(t *testing.T, pemData []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tls-ca.pem")
	if err := os.WriteFile(p, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCatalogOverTLS reads the catalog from an HTTPS pulsed: trusted
// through ca_file it is read; an untrusted certificate, one for another
// host, or plain HTTP to the HTTPS server fail with one warning that names
// the URL, the check and the fix, not one per cycle; a corrected CA file is
// picked up without a new collector.
func TestCatalogOverTLS(t *testing.T) {
	good := certFor(t, "127.0.0.1", "localhost")
	otherHost := certFor(t, "pulse.test")
	pulsed := &fakePulsed{cat: catalogOf("v1", fn("hello", 1, nil))}

	tests := []struct {
		name     string
		cert     *testcert.TLSCert
		plainURL bool   // http:// to the HTTPS server
		caFile   []byte // nil: no ca_file (system roots)
		wantFns  []string
		wantWarn []string // in the one catalog warning; nil: none
	}{
		{name: "trusted via ca_file", cert: good, caFile: good.PEM, wantFns: []string{"hello"}},
		{name: "untrusted: system roots", cert: good, wantFns: []string{},
			wantWarn: []string{"failed the certificate authority check", "not signed by the system's CAs (ca_file is empty)", "fix: set ca_file to"}},
		{name: "untrusted: another CA", cert: good, caFile: certFor(t, "127.0.0.1").PEM, wantFns: []string{},
			wantWarn: []string{"failed the certificate authority check", "not signed by the CAs in ca_file "}},
		{name: "wrong host name", cert: otherHost, caFile: otherHost.PEM, wantFns: []string{},
			wantWarn: []string{"failed the host name check", `not valid for "127.0.0.1"; it names pulse.test`, "fix: use a host the certificate names in catalog_url"}},
		{name: "plain http to the HTTPS pulsed", cert: good, plainURL: true, wantFns: []string{},
			wantWarn: []string{"400 Bad Request: the server serves HTTPS", "fix: use https:// in catalog_url and set ca_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := tlsPulsed(t, tc.cert, pulsed)
			cfg := defaultConfig()
			cfg.CatalogURL = srv.URL + contract.CatalogPath
			if tc.plainURL {
				cfg.CatalogURL = strings.Replace(cfg.CatalogURL, "https://", "http://", 1)
			}
			cfg.HAProxyURL = "http://127.0.0.1:1/metrics"
			cfg.Timeout = web.Duration{Duration: 900 * time.Millisecond}
			cfg.ReplicaAuthFile = credentialFileOf(t, "s3cret")
			if tc.caFile != nil {
				cfg.CAFile = caFileOf(t, tc.caFile)
			}
			rec := &logRecorder{}
			c, err := NewCollector(cfg, slog.New(rec))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for range 3 {
				if _, fns := c.Collect(context.Background()); strings.Join(fns, ",") != strings.Join(tc.wantFns, ",") {
					t.Fatalf("functions %v, want %v", fns, tc.wantFns)
				}
			}
			warns := catalogWarnings(rec)
			if tc.wantWarn == nil {
				if len(warns) != 0 {
					t.Fatalf("catalog warnings %q, want none", warns)
				}
				return
			}
			if len(warns) != 1 {
				t.Fatalf("catalog warnings %q over 3 cycles, want exactly one", warns)
			}
			for _, w := range append(tc.wantWarn, cfg.CatalogURL) {
				if !strings.Contains(warns[0], w) {
					t.Errorf("warning %q does not contain %q", warns[0], w)
				}
			}
			t.Logf("logged: %s", warns[0])
			if tc.caFile == nil || tc.plainURL {
				return
			}
			// The fix, without a new collector: the right CA in ca_file.
			if err := os.WriteFile(cfg.CAFile, append(append([]byte{}, tc.cert.PEM...), '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			later := time.Now().Add(time.Second)
			_ = os.Chtimes(cfg.CAFile, later, later)
			_, fns := c.Collect(context.Background())
			if tc.name == "wrong host name" { // still the wrong name
				if len(fns) != 0 {
					t.Errorf("functions %v through a certificate for another host", fns)
				}
				return
			}
			if strings.Join(fns, ",") != "hello" {
				t.Errorf("after fixing ca_file: functions %v, want hello", fns)
			}
		})
	}
}

// catalogWarnings returns the catalog warnings' messages with their err
// attribute.
func catalogWarnings(rec *logRecorder) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for _, r := range rec.recs {
		if r.Level < slog.LevelWarn || !strings.Contains(r.Message, "replica catalog") {
			continue
		}
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				msg += " err=" + a.Value.String()
			}
			return true
		})
		out = append(out, msg)
	}
	return out
}

func TestConfigCAFile(t *testing.T) {
	tests := []struct {
		name, catalog, haproxy, ca string
		wantErr                    string
	}{
		{name: "https catalog, CA file", catalog: "https://127.0.0.1:8090/v1/replicas", ca: "/etc/pulse/tls-ca.pem"},
		{name: "https catalog, system roots", catalog: "https://pulse.example/v1/replicas"},
		{name: "http, no CA file", catalog: DefaultCatalogURL},
		{name: "relative CA file", catalog: "https://127.0.0.1:8090/v1/replicas", ca: "tls-ca.pem", wantErr: `ca_file "tls-ca.pem": want an absolute path`},
		{name: "CA file with nothing https", catalog: DefaultCatalogURL, ca: "/etc/pulse/tls-ca.pem",
			wantErr: "ca_file /etc/pulse/tls-ca.pem is set but neither catalog_url (http://127.0.0.1:8090/v1/replicas) nor haproxy_url"},
		{name: "https haproxy only", catalog: DefaultCatalogURL, haproxy: "https://127.0.0.1:8404/metrics", ca: "/etc/pulse/tls-ca.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.CatalogURL, cfg.CAFile = tc.catalog, tc.ca
			if tc.haproxy != "" {
				cfg.HAProxyURL = tc.haproxy
			}
			err := cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// Go's environment proxy skips loopback addresses, so a test through one
// could not fail: the transport's settings are checked instead.
func TestTransportIgnoresProxyEnv(t *testing.T) {
	c, err := NewCollector(defaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.transport.Proxy != nil || c.transport.DialTLSContext == nil {
		t.Fatalf("collector transport: Proxy set %v, DialTLSContext set %v; want no proxy and TLS dialed with ca_file",
			c.transport.Proxy != nil, c.transport.DialTLSContext != nil)
	}
}

// A catalog failure is logged once per kind: when the reason changes while
// the catalog is still unreadable (pulsed down, then back with a
// certificate the collector does not trust), the new reason is logged too.
func TestCatalogFailureKindChangeLogged(t *testing.T) {
	served := certFor(t, "127.0.0.1")
	pulsed := &fakePulsed{cat: catalogOf("v1", fn("hello", 1, nil)), status: http.StatusServiceUnavailable}
	srv := tlsPulsed(t, served, pulsed)
	cfg := defaultConfig()
	cfg.CatalogURL = srv.URL + contract.CatalogPath
	cfg.HAProxyURL = "http://127.0.0.1:1/metrics"
	cfg.Timeout = web.Duration{Duration: 900 * time.Millisecond}
	cfg.ReplicaAuthFile = credentialFileOf(t, "s3cret")
	cfg.CAFile = caFileOf(t, served.PEM)
	rec := &logRecorder{}
	c, err := NewCollector(cfg, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	collect := func(n int) {
		for range n {
			c.Collect(context.Background())
		}
	}
	collect(2) // 503: pulsed starting
	// pulsed restarts with another certificate.
	c.transport.CloseIdleConnections()
	pulsed.set(func(f *fakePulsed) { f.status = 0 })
	if err := os.WriteFile(cfg.CAFile, certFor(t, "127.0.0.1").PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	_ = os.Chtimes(cfg.CAFile, later, later)
	collect(3)
	warns := catalogWarnings(rec)
	if len(warns) != 2 || !strings.Contains(warns[0], "503") || !strings.Contains(warns[1], "failed the certificate authority check") {
		t.Fatalf("catalog warnings %q; want the 503, then the certificate failure, once each", warns)
	}
}
