package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/internal/testcert"
)

// TestPluginInNetdataTLS runs the built plugin in a real Netdata reading
// the catalog from an HTTPS pulsed (an httptest TLS server with a
// self-signed certificate, as make up's PULSE_TLS=self-signed makes):
// with a ca_file that does not hold its certificate nothing is collected
// and Netdata's log says once which URL, which check and the fix; once the
// file holds the right certificate (rewritten in place, no restart) the
// function is charted.
func TestPluginInNetdataTLS(t *testing.T) {
	if err := netdatalab.Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	plugin := filepath.Join(t.TempDir(), "pulse.d.plugin")
	build := exec.Command("go", "build", "-o", plugin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	replica := &labReplica{want: "tls-lab-credential", start: time.Now().Add(-time.Minute)}
	rsrv := httptest.NewServer(replica)
	defer rsrv.Close()
	cat := contract.Catalog{Version: "v1", Functions: []contract.CatalogFunction{{
		Name: "hello", Desired: 1, Labels: map[string]string{contract.LabelScaleTarget: "1"},
		Replicas: []contract.Replica{{TaskID: "t1", Addr: strings.TrimPrefix(rsrv.URL, "http://"), State: "running", Routed: true}},
	}}}
	served, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	psrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != contract.CatalogPath {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		_ = json.NewEncoder(w).Encode(cat)
	}))
	psrv.TLS = &tls.Config{Certificates: []tls.Certificate{served.Cert}}
	psrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the plugin fails at first
	psrv.StartTLS()
	defer psrv.Close()
	catalogURL := psrv.URL + contract.CatalogPath
	if !strings.HasPrefix(catalogURL, "https://") {
		t.Fatalf("catalog URL %s is not https", catalogURL)
	}

	authFile, removeAuth, err := netdatalab.ReplicaAuthFile("tls-lab-credential")
	if err != nil {
		t.Fatal(err)
	}
	defer removeAuth()
	caFile, removeCA, err := netdatalab.CAFile(other.PEM) // not the served certificate
	if err != nil {
		t.Fatal(err)
	}
	defer removeCA()
	lab, err := netdatalab.Start(ctx, netdatalab.Config{Plugin: plugin, PluginConfig: netdatalab.JobConfig(
		catalogURL, "http://127.0.0.1:1/no-haproxy", netdatalab.WithReplicaAuthFile(authFile), netdatalab.WithCAFile(caFile))})
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("lab error.log:\n%s", tail(lab.ErrorLog(), 30))
		}
	}()

	// The untrusted certificate: said once in Netdata's log, nothing charted.
	failure := "TLS to " + catalogURL + " failed the certificate authority check"
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(lab.ErrorLog(), failure) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in Netdata's error.log within 60 s", failure)
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // five more cycles: not logged again
	logText := lab.ErrorLog()
	for _, line := range strings.Split(logText, "\n") {
		if strings.Contains(line, failure) {
			t.Logf("Netdata's error.log: %s", line)
		}
	}
	if n := strings.Count(logText, failure); n != 1 {
		t.Errorf("the TLS failure logged %d times over 5+ cycles, want once:\n%s", n, tail(logText, 20))
	}
	for _, w := range []string{"not signed by the CAs in ca_file " + caFile, "fix: set ca_file to"} {
		if !strings.Contains(logText, w) {
			t.Errorf("Netdata's error.log does not say %q:\n%s", w, tail(logText, 20))
		}
	}
	charts, err := lab.Charts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := charts[contract.Chart("hello", contract.ChartReplicas)]; ok {
		t.Errorf("hello charted from a catalog behind an untrusted certificate")
	}

	// The right certificate in ca_file: read without restarting anything.
	if err := os.WriteFile(caFile, served.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	chart := contract.Chart("hello", contract.ChartReplicas)
	deadline = time.Now().Add(60 * time.Second)
	var last []float64
	for {
		d, err := lab.DataRange(ctx, chart, -3, 0)
		if last = d.Column(contract.DimScraped); err == nil && len(last) > 0 && last[0] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s scraped = %v within 60 s of fixing ca_file, want 1", chart, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(lab.ErrorLog(), "replica catalog readable again") {
		t.Errorf("the recovery is not in Netdata's error.log:\n%s", tail(lab.ErrorLog(), 20))
	}
}
