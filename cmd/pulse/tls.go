package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLS towards the gateway and pulsed's API (issue 12, point 16). An https
// URL is verified in one of three ways, set once for both servers:
//
//   - fingerprint: the server's leaf certificate must have exactly this
//     SHA-256; no CA and no name is checked, since the pin is the trust (the
//     installer's self-signed certificate needs nothing else);
//   - ca_file: the chain must lead to a CA of the PEM bundle, and the
//     certificate must name the URL's host;
//   - neither: the system's CAs, and the host name.
//
// Every failure is a *certError that says which way failed, what the server
// presented and what to set.

// validateTLS checks ca_file and fingerprint: at most one, a fingerprint
// that parses, and an https URL for them to apply to.
func (c Config) validateTLS() error {
	var errs []error
	if c.CAFile != "" && c.Fingerprint != "" {
		errs = append(errs, fmt.Errorf("ca_file and fingerprint are both set: set one (fingerprint pins the server's certificate, ca_file names the CA that signed it)"))
	}
	if c.Fingerprint != "" {
		if _, err := parseFingerprint(c.Fingerprint); err != nil {
			errs = append(errs, fmt.Errorf("fingerprint: %w (set it in the config file or %s)", err, configKeys["fingerprint"]))
		}
	}
	if (c.CAFile != "" || c.Fingerprint != "") && !isHTTPS(c.Gateway) && !isHTTPS(c.API) {
		key := "ca_file"
		if c.Fingerprint != "" {
			key = "fingerprint"
		}
		errs = append(errs, fmt.Errorf("%s is set but neither gateway (%s) nor api (%s) is an https:// URL, so nothing would be verified: use https:// URLs or remove %s", key, c.Gateway, c.API, key))
	}
	return errors.Join(errs...)
}

func isHTTPS(u string) bool { return strings.HasPrefix(strings.ToLower(u), "https://") }

// parseFingerprint reads a SHA-256 fingerprint: 64 hex digits, upper or
// lower case, optionally in colon-separated pairs (as openssl prints it),
// optionally prefixed by "sha256:" or "SHA256 Fingerprint=".
func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	h := strings.TrimSpace(s)
	for _, p := range []string{"SHA256 Fingerprint=", "sha256 Fingerprint=", "sha256:", "SHA256:"} {
		h = strings.TrimPrefix(h, p)
	}
	h = strings.ReplaceAll(h, ":", "")
	if len(h) != 2*sha256.Size {
		return fp, fmt.Errorf("%q has %d hex digits: want the 64 of the certificate's SHA-256 (colons optional), e.g. from `openssl x509 -in CERT -noout -fingerprint -sha256`", s, len(h))
	}
	if _, err := hex.Decode(fp[:], []byte(h)); err != nil {
		return fp, fmt.Errorf("%q: want hex digits 0-9, a-f (colons optional): %v", s, err)
	}
	return fp, nil
}

// formatFingerprint writes a fingerprint as openssl does: AB:CD:….
func formatFingerprint(fp [sha256.Size]byte) string {
	var b strings.Builder
	for i, c := range fp {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// certError is a server certificate that failed verification.
type certError struct {
	host string // the server, host:port
	got  string // the SHA-256 of the leaf it presented, AB:CD:…; "" if none
	how  string // "fingerprint", "ca_file", "system"
	what string // the verification's own words
	file string // ca_file's path
}

func (e *certError) Error() string {
	presented := "no certificate"
	if e.got != "" {
		presented = "a certificate (SHA-256 " + e.got + ")"
	}
	const check = "check it on the server: openssl x509 -in CERT -noout -fingerprint -sha256"
	switch e.how {
	case "fingerprint":
		return fmt.Sprintf("TLS: %s presented %s, not the pinned one (config key fingerprint, %s): %s; if the server's certificate was replaced, %s, and pin the new one",
			e.host, presented, configKeys["fingerprint"], e.what, check)
	case "ca_file":
		return fmt.Sprintf("TLS: %s presented %s that ca_file %s does not verify: %s; set ca_file (%s) to the CA that signed the server's certificate, or remove it and pin the certificate with fingerprint (%s)",
			e.host, presented, e.file, e.what, configKeys["ca_file"], check)
	}
	return fmt.Sprintf("TLS: %s presented %s that this system's CAs do not verify: %s; set ca_file (%s) to the CA that signed it, or pin it with fingerprint (%s; %s)",
		e.host, presented, e.what, configKeys["ca_file"], configKeys["fingerprint"], check)
}

// verifier checks the certificates a server presented, as configured.
type verifier struct {
	how  string // "fingerprint", "ca_file", "system"
	pin  [sha256.Size]byte
	pool *x509.CertPool // nil: the system's
	file string
}

func (c Config) verifier() (*verifier, error) {
	switch {
	case c.Fingerprint != "":
		fp, err := parseFingerprint(c.Fingerprint)
		if err != nil {
			return nil, fmt.Errorf("fingerprint: %w", err)
		}
		return &verifier{how: "fingerprint", pin: fp}, nil
	case c.CAFile != "":
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w (set ca_file or %s to a readable PEM file)", err, configKeys["ca_file"])
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it (want -----BEGIN CERTIFICATE----- blocks)", c.CAFile)
		}
		return &verifier{how: "ca_file", pool: pool, file: c.CAFile}, nil
	}
	return &verifier{how: "system"}, nil
}

// verify checks the chain certs presented by addr (host:port) for host.
func (v *verifier) verify(addr, host string, certs []*x509.Certificate) error {
	fail := func(got, what string) error {
		return &certError{host: addr, got: got, how: v.how, what: what, file: v.file}
	}
	if len(certs) == 0 {
		return fail("", "the server sent no certificate")
	}
	leaf := certs[0]
	sum := sha256.Sum256(leaf.Raw)
	got := formatFingerprint(sum)
	if v.how == "fingerprint" {
		if sum != v.pin {
			return fail(got, "the pin is "+formatFingerprint(v.pin))
		}
		return nil
	}
	opts := x509.VerifyOptions{Roots: v.pool, DNSName: host, Intermediates: x509.NewCertPool()}
	for _, ic := range certs[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fail(got, err.Error())
	}
	return nil
}

// httpClient returns a client for the gateway and pulsed's API that
// verifies https servers as configured (verifier). keepAlive false opens
// one connection per request. It uses no proxy: the gateway and pulsed are
// the install's own, and HTTP(S)_PROXY from the environment would see the
// requests (and, over http, the keys).
func (a *app) httpClient(timeout time.Duration, keepAlive bool) (*http.Client, error) {
	v, err := a.cfg.verifier()
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   !keepAlive,
		MaxIdleConns:        10,
		IdleConnTimeout:     30 * time.Second,
		// The handshake is ours so that verification knows the host it
		// dialled (an IP address sends no SNI, so the connection state
		// would not say).
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, &tls.Config{
				ServerName: host,
				MinVersion: tls.VersionTLS12,
				NextProtos: []string{"http/1.1"},
				// Verification is VerifyPeerCertificate's, always: it
				// needs the presented certificate to explain a failure.
				InsecureSkipVerify: true,
				VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
					certs := make([]*x509.Certificate, 0, len(rawCerts))
					for _, rc := range rawCerts {
						c, err := x509.ParseCertificate(rc)
						if err != nil {
							return &certError{host: addr, how: v.how, what: fmt.Sprintf("unparsable certificate: %v", err), file: v.file}
						}
						certs = append(certs, c)
					}
					return v.verify(addr, host, certs)
				},
			})
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		},
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// explainTransport adds what to do to a failed request's error when the
// URL's scheme does not match what the server speaks.
func explainTransport(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"),
		strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w; the server speaks plain HTTP: use an http:// URL, or give it a certificate (pulsed's tls_cert)", err)
	case strings.Contains(msg, "malformed HTTP response") && strings.Contains(msg, `\x15\x03`):
		return fmt.Errorf("%w; the server speaks TLS: use an https:// URL", err)
	}
	var ue *url.Error
	if errors.Is(err, io.EOF) && errors.As(err, &ue) && strings.HasPrefix(ue.URL, "http://") {
		return fmt.Errorf("%w; the server closed the connection without answering, as a TLS server (HAProxy with a certificate) does to plain HTTP: if it serves https, use an https:// URL", err)
	}
	return err
}

// requireConfidential refuses to send a secret (what) to rawURL over plain
// HTTP unless the server is on this host: keys and the management token
// never cross the network in clear text.
func requireConfidential(rawURL, key, what string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("%s %q: %w", key, rawURL, err)
	}
	if strings.EqualFold(u.Scheme, "https") || isLoopback(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%s %s is plain http:// to another host: %s would cross the network in clear text; use an https:// URL (the server needs a certificate; verify it with ca_file or fingerprint), or run the command on that host",
		key, rawURL, what)
}

// isLoopback reports whether host is this machine by address or by the
// name localhost.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
