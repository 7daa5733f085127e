package gateway

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// TestHAProxyTLS: with TLSCert the gateway serves HTTPS with that
// certificate, and nothing in clear text, on a real HAProxy; invoke keys
// and routing work as over HTTP.
func TestHAProxyTLS(t *testing.T) {
	bin := renderHAProxyBin(t)
	dir := t.TempDir()
	pem := filepath.Join(dir, "gateway.pem")
	pool := testSelfSigned(t, pem)
	keys := filepath.Join(dir, "keys.map")
	const key = "tls-key-0001"
	if err := WriteKeysMap(keys, map[string][]string{"echo": {contract.KeyDigest(key)}}); err != nil {
		t.Fatal(err)
	}
	gw := routesFreeAddr(t)
	cfg, err := Render(RenderConfig{
		Listen: gw, AdminListen: routesFreeAddr(t), RuntimeSocket: filepath.Join(dir, "rt.sock"),
		TLSCert: pem, KeysMap: keys, ReplicaAuth: routesCred,
	}, contract.Catalog{Functions: []contract.CatalogFunction{
		{Name: "echo", Replicas: []contract.Replica{{TaskID: "e1", Addr: routesReplica(t, "e1"), State: "running"}}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, exited := routesStartHAProxy(t, bin, cfg)

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	do := func(c *http.Client, url, key string) (*http.Response, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b), nil
	}
	routesPoll(t, "https gateway up", exited, func() error {
		_, _, err := do(client, "https://"+gw+"/function/nope", "")
		return err
	})
	resp, body, err := do(client, "https://"+gw+"/function/echo/x", key)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("https with key: %v %v %q", resp, err, body)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].Subject.CommonName != "pulse test" {
		t.Errorf("served certificate: %+v", resp.TLS)
	}
	var seen routesSeen
	if err := json.Unmarshal([]byte(body), &seen); err != nil || seen.URI != "/x" || len(seen.Authorization) != 0 {
		t.Errorf("replica saw %+v (%v)", seen, err)
	}
	if resp, body, err := do(client, "https://"+gw+"/function/echo", ""); err != nil || resp.StatusCode != 401 {
		t.Errorf("https without key: %v %v %q, want 401", resp, err, body)
	}
	// Clear text on the TLS port: no HTTP answer.
	if r, err := routesDo(gw, "GET", "/function/echo", http.Header{"Authorization": {"Bearer " + key}}, ""); err == nil {
		t.Errorf("plain HTTP on the TLS port answered %d %q", r.status, r.body)
	}
	// A client that does not trust the certificate refuses it.
	untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: nil}}}
	if _, _, err := do(untrusting, "https://"+gw+"/function/echo", key); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v, want a certificate error", err)
	}
}
