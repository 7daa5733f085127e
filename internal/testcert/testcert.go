// Package testcert makes self-signed certificates for tests and benchmarks
// that run HTTPS servers (pulsed with tls_cert, HAProxy's ssl crt, a fake
// webhook), as make up's PULSE_TLS=self-signed makes one. It was part of
// internal/netdatalab until issue 13; tests that wrote their own generator
// use it now.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// TLSCert is a self-signed certificate for a test's HTTPS server, as make
// up's PULSE_TLS=self-signed makes one: its own CA, naming the given hosts.
type TLSCert struct {
	Cert tls.Certificate // for tls.Config.Certificates
	PEM  []byte          // the certificate alone: a client's CA file
}

// SelfSigned makes a P-256 self-signed certificate valid from notBefore to
// notAfter (zero: from an hour ago to a day from now) for hosts: IP
// addresses go to its IP SANs, names to its DNS SANs.
func SelfSigned(notBefore, notAfter time.Time, hosts ...string) (*TLSCert, error) {
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testcert: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, fmt.Errorf("testcert: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pulse test"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testcert: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testcert: certificate: %w", err)
	}
	return &TLSCert{
		Cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		PEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// KeyPEM is the certificate's private key in PEM (PKCS #8), for tests that
// need a file holding one.
func (c *TLSCert) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("testcert: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Bundle is the certificate followed by its key, one PEM file: what
// HAProxy's `ssl crt` and pulsed's tls_cert take.
func (c *TLSCert) Bundle() ([]byte, error) {
	key, err := c.KeyPEM()
	if err != nil {
		return nil, err
	}
	return append(append([]byte{}, c.PEM...), key...), nil
}

// Pool is a certificate pool that trusts only this certificate.
func (c *TLSCert) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert.Leaf)
	return pool
}
