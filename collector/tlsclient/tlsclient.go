// Package tlsclient is how Pulse's Netdata side (the collector and the
// alarm hook) verifies pulsed's HTTPS API (issue 12, point 16): a CA file
// (a PEM bundle; none: the system's roots) re-read when it changes, a TLS
// dialer that checks the chain and the URL's host name with it, and errors
// that say which URL, which check failed and what to set.
//
// It depends on the standard library only, so the alarm hook stays small.
package tlsclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultCAFile is the certificate `make up` writes for clients when
// pulsed's tls_cert is set (the playbook writes /etc/pulse/tls-ca.pem: the certificate alone, 0644).
const DefaultCAFile = "/etc/pulse/tls-ca.pem"

// MaxCAFileBytes caps a CA file: a system bundle is about 200 KB.
const MaxCAFileBytes = 4 << 20

// ErrCAFile reports CA file content that cannot be used; the message says
// why.
var ErrCAFile = errors.New("bad CA file")

// CAFileError is a CA file that cannot be read or used.
type CAFileError struct {
	Path string
	Err  error
}

func (e *CAFileError) Error() string { return "CA file " + e.Path + ": " + e.Err.Error() }
func (e *CAFileError) Unwrap() error { return e.Err }

// ParseCAs reads a PEM bundle of CA certificates. Every block must be a
// CERTIFICATE that parses; a private key is refused (a client's CA file
// must hold the certificate alone, and a key must not be readable by
// clients); text around the blocks is allowed only as white space or
// comment lines before a block (what openssl and bundles write). At least
// one certificate is needed.
func ParseCAs(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxCAFileBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCAFile, MaxCAFileBytes)
	}
	var certs []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: PEM block %d: %v", ErrCAFile, n, err)
			}
			certs = append(certs, c)
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("%w: PEM block %d is a %s: a CA file holds certificates only (for the install's self-signed certificate use %s, which make up writes without the key)", ErrCAFile, n, block.Type, DefaultCAFile)
		default:
			return nil, fmt.Errorf("%w: PEM block %d is a %q, want CERTIFICATE", ErrCAFile, n, block.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last certificate are not PEM", ErrCAFile, len(rest))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate in it", ErrCAFile)
	}
	return certs, nil
}

// CAFile is a CA file, read on first use and again whenever it changes (its
// modification time, size or inode), so a renewed certificate is trusted
// without restarting the client. The zero path means the system's roots.
type CAFile struct {
	path string

	mu    sync.Mutex
	stamp stamp
	pool  *x509.CertPool
	err   error
}

type stamp struct {
	mod   time.Time
	size  int64
	ino   uint64
	valid bool
}

// NewCAFile returns the CA file at path; "" for the system's roots.
func NewCAFile(path string) *CAFile { return &CAFile{path: path} }

// Path is the file's path; "" for the system's roots.
func (f *CAFile) Path() string { return f.path }

// Pool returns the file's certificates as a pool (nil for the system's
// roots), or why the file cannot be used.
func (f *CAFile) Pool() (*x509.CertPool, error) {
	if f == nil || f.path == "" {
		return nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		f.stamp = stamp{}
		return nil, &CAFileError{f.path, err}
	}
	now := stamp{mod: st.ModTime(), size: st.Size(), valid: true}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		now.ino = sys.Ino
	}
	if now == f.stamp {
		return f.pool, f.err
	}
	f.pool, f.err = loadPool(f.path)
	f.stamp = now
	if f.err != nil {
		f.pool = nil
	}
	return f.pool, f.err
}

func loadPool(path string) (*x509.CertPool, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, &CAFileError{path, err}
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxCAFileBytes+1))
	if err != nil {
		return nil, &CAFileError{path, fmt.Errorf("read: %w", err)}
	}
	certs, err := ParseCAs(data)
	if err != nil {
		return nil, &CAFileError{path, err}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// DialTLS returns a DialTLSContext for an http.Transport: it dials with d,
// then shakes hands verifying the server's chain against the CA file's
// certificates (the system's when the path is "") and its name against the
// dialed host, within handshakeTimeout (0: only ctx bounds it; an
// http.Transport's TLSHandshakeTimeout does not apply to its
// DialTLSContext). TLS 1.2 at least.
func (f *CAFile) DialTLS(d *net.Dialer, handshakeTimeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if handshakeTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, handshakeTimeout)
			defer cancel()
		}
		pool, err := f.Pool()
		if err != nil {
			return nil, err
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("tls dial %s: %w", addr, err)
		}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// Keys names the settings an Explain message tells the user to change: the
// URL's and the CA file's, as the user sets them (job keys, environment
// variables).
type Keys struct{ URL, CAFile string }

// Error is a request that failed a TLS check, explained.
type Error struct {
	URL   string // the URL requested
	Check string // the check that failed: "CA file", "certificate authority", "host name", "validity period", "certificate", "protocol"
	What  string // what was found
	Fix   string // what to change
	Err   error  // the underlying error
}

func (e *Error) Error() string {
	return fmt.Sprintf("TLS to %s failed the %s check: %s; fix: %s", e.URL, e.Check, e.What, e.Fix)
}

func (e *Error) Unwrap() error { return e.Err }

// Explain turns err, from a request to rawURL through a client using
// caFile, into an *Error when a TLS check failed; other errors are returned
// as they are.
func Explain(err error, rawURL string, caFile *CAFile, k Keys) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	path := caFile.Path()
	trust := "the system's CAs (" + k.CAFile + " is empty)"
	if path != "" {
		trust = "the CAs in " + k.CAFile + " " + path
	}
	host := rawURL
	if u, perr := url.Parse(rawURL); perr == nil && u.Host != "" {
		host = u.Hostname()
	}
	e := &Error{URL: rawURL, Err: err}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
		file     *CAFileError
	)
	switch {
	case errors.As(err, &file):
		e.Check = "CA file"
		e.What = file.Error()
		e.Fix = fmt.Sprintf("set %s to a PEM file of CA certificates that user netdata can read (the install's: %s, written by make up when pulsed's tls_cert is set), or empty for the system's CAs", k.CAFile, DefaultCAFile)
	case errors.As(err, &unknown):
		e.Check = "certificate authority"
		e.What = "the server's certificate" + describe(unknown.Cert) + " is not signed by " + trust
		e.Fix = fmt.Sprintf("set %s to the CA (or self-signed certificate) that pulsed serves: for make up's self-signed one, %s", k.CAFile, DefaultCAFile)
	case errors.As(err, &hostname):
		e.Check = "host name"
		e.What = fmt.Sprintf("the server's certificate%s is not valid for %q; it names %s", describe(hostname.Certificate), host, names(hostname.Certificate))
		e.Fix = fmt.Sprintf("use a host the certificate names in %s, or reissue the certificate with %s in its subjectAltName", k.URL, host)
	case errors.As(err, &invalid):
		e.Check = "validity period"
		if invalid.Reason != x509.Expired {
			e.Check = "certificate"
		}
		e.What = fmt.Sprintf("the server's certificate%s: %v", describe(invalid.Cert), invalid)
		e.Fix = "renew the server's certificate (make up makes a new self-signed one when /etc/pulse/tls.pem is removed)"
	case errors.As(err, &record) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.Check = "protocol"
		e.What = "the server does not speak TLS (plain HTTP?)"
		e.Fix = fmt.Sprintf("use http:// in %s if pulsed has no tls_cert, or set pulsed's tls_cert", k.URL)
	default:
		return err
	}
	return e
}

// names lists the host names and addresses a certificate is valid for.
func names(c *x509.Certificate) string {
	if c == nil {
		return "nothing"
	}
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return "no host (no subjectAltName)"
	}
	return strings.Join(out, ", ")
}

func describe(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	return fmt.Sprintf(" (subject %s, issuer %s)", c.Subject.String(), c.Issuer.String())
}

// PlainToTLS reports whether an answer is Go's to a plain HTTP request
// sent to its HTTPS server (pulsed with tls_cert set): status 400 and this
// body.
func PlainToTLS(status int, body []byte) bool {
	return status == 400 && bytes.Contains(body, []byte("Client sent an HTTP request to an HTTPS server"))
}
