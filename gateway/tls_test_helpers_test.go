package gateway

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/testcert"
)

// testSelfSigned writes a self-signed certificate for 127.0.0.1 and
// localhost, with its key, to path as one PEM file (what HAProxy's `ssl
// crt` takes) and returns a pool that trusts it.
func testSelfSigned(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	cert, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	data, err := cert.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert.Pool()
}

// renderGoldenFiles creates the files the "secured" golden names.
func renderGoldenFiles(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { os.RemoveAll(renderGoldenDir) })
	testSelfSigned(t, renderGoldenDir+"/gateway.pem")
	if err := WriteKeysMap(renderGoldenDir+"/keys.map", map[string][]string{"hello": {contract.KeyDigest("k")}}); err != nil {
		t.Fatal(err)
	}
}
