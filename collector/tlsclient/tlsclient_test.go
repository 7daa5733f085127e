package tlsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/internal/testcert"
)

// tlsServer is an httptest HTTPS server presenting cert.
func tlsServer(t *testing.T, cert *testcert.TLSCert) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert.Cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes the tests fail
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func selfSigned(t *testing.T, notBefore, notAfter time.Time, hosts ...string) *testcert.TLSCert {
	t.Helper()
	c, err := testcert.SelfSigned(notBefore, notAfter, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// get requests url through a transport like the collector's: no proxy,
// dialing TLS with ca.
func get(ca *CAFile, url string) error {
	d := &net.Dialer{Timeout: 2 * time.Second}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, DialTLSContext: ca.DialTLS(d, 2*time.Second)}}
	resp, err := client.Get(url)
	if err != nil {
		return Explain(err, url, ca, Keys{URL: "catalog_url", CAFile: "ca_file"})
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "ok" {
		return errors.New("body " + string(b))
	}
	return nil
}

func TestDialTLS(t *testing.T) {
	good := selfSigned(t, time.Time{}, time.Time{}, "127.0.0.1", "localhost")
	other := selfSigned(t, time.Time{}, time.Time{}, "127.0.0.1")
	nameOnly := selfSigned(t, time.Time{}, time.Time{}, "pulse.test")
	expired := selfSigned(t, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "127.0.0.1")
	key, err := good.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer plain.Close()

	tests := []struct {
		name      string
		server    *testcert.TLSCert // nil: the plain HTTP server
		caFile    string            // "" system roots; "missing"; else PEM content
		wantCheck string            // "" for success
		wantIn    []string
	}{
		{name: "trusted through ca_file", server: good, caFile: string(good.PEM)},
		{name: "bundle with the CA among others", server: good, caFile: "# bundle\n" + string(other.PEM) + string(good.PEM)},
		{name: "system roots do not know it", server: good, wantCheck: "certificate authority",
			wantIn: []string{"not signed by the system's CAs (ca_file is empty)", "set ca_file to", DefaultCAFile, "subject CN=pulse test, issuer CN=pulse test"}},
		{name: "another CA", server: good, caFile: string(other.PEM), wantCheck: "certificate authority",
			wantIn: []string{"not signed by the CAs in ca_file "}},
		{name: "wrong host name", server: nameOnly, caFile: string(nameOnly.PEM), wantCheck: "host name",
			wantIn: []string{`not valid for "127.0.0.1"`, "pulse.test", "use a host the certificate names in catalog_url"}},
		{name: "expired", server: expired, caFile: string(expired.PEM), wantCheck: "validity period",
			wantIn: []string{"expired", "renew"}},
		{name: "plain HTTP server", server: nil, caFile: string(good.PEM), wantCheck: "protocol",
			wantIn: []string{"does not speak TLS", "use http:// in catalog_url"}},
		{name: "missing ca_file", server: good, caFile: "missing", wantCheck: "CA file",
			wantIn: []string{"no such file or directory", "set ca_file to a PEM file"}},
		{name: "ca_file with the private key", server: good, caFile: string(good.PEM) + string(key), wantCheck: "CA file",
			wantIn: []string{"PEM block 2 is a PRIVATE KEY", "certificates only"}},
		{name: "ca_file not PEM", server: good, caFile: "hello\n", wantCheck: "CA file",
			wantIn: []string{"not PEM"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := plain.URL
			if tc.server != nil {
				url = tlsServer(t, tc.server).URL
			}
			url = strings.Replace(url, "http://", "https://", 1) + "/v1/replicas"
			var path string
			switch tc.caFile {
			case "":
			case "missing":
				path = filepath.Join(t.TempDir(), "nope.pem")
			default:
				path = writeFile(t, []byte(tc.caFile))
			}
			err := get(NewCAFile(path), url)
			if tc.wantCheck == "" {
				if err != nil {
					t.Fatalf("GET %s: %v", url, err)
				}
				return
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v (%T), want a *tlsclient.Error", err, err)
			}
			if te.Check != tc.wantCheck || te.URL != url {
				t.Errorf("check %q for %s, want %q for %s", te.Check, te.URL, tc.wantCheck, url)
			}
			msg := err.Error()
			for _, w := range append(tc.wantIn, "TLS to "+url+" failed the "+tc.wantCheck+" check", "; fix: ") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// A CA file that changes is re-read: a renewed certificate is trusted
// without restarting the client, and one that goes bad is said.
func TestCAFileReloads(t *testing.T) {
	first := selfSigned(t, time.Time{}, time.Time{}, "127.0.0.1")
	second := selfSigned(t, time.Time{}, time.Time{}, "127.0.0.1")
	srv := tlsServer(t, second)
	path := writeFile(t, first.PEM)
	ca := NewCAFile(path)
	var te *Error
	if err := get(ca, srv.URL); !errors.As(err, &te) || te.Check != "certificate authority" {
		t.Fatalf("with the old CA: %v, want a certificate authority failure", err)
	}
	// A different size, and a later mtime in any case.
	if err := os.WriteFile(path, append(append([]byte{}, second.PEM...), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if err := get(ca, srv.URL); err != nil {
		t.Fatalf("after the CA file changed: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := get(ca, srv.URL); !errors.As(err, &te) || te.Check != "CA file" {
		t.Fatalf("after the CA file went: %v, want a ca_file failure", err)
	}
}

func TestExplainLeavesOtherErrors(t *testing.T) {
	base := errors.New("connection refused")
	if got := Explain(base, "https://127.0.0.1:1/", NewCAFile(""), Keys{"u", "c"}); got != base {
		t.Errorf("Explain(%v) = %v, want it unchanged", base, got)
	}
	if Explain(nil, "", nil, Keys{}) != nil {
		t.Error("Explain(nil) is not nil")
	}
}

// A server that accepts and never shakes hands fails the dial at the
// context's deadline or the handshake timeout, whichever comes first.
func TestDialTLSHandshakeBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and never answers the handshake
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		timeout time.Duration
	}{
		{"the context's deadline", ctx, 0},
		{"the handshake timeout", context.Background(), 200 * time.Millisecond},
	} {
		start := time.Now()
		_, err = NewCAFile("").DialTLS(&net.Dialer{}, tc.timeout)(tc.ctx, "tcp", ln.Addr().String())
		if err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("%s: handshake with a silent server: %v after %v, want a failure at 200ms", tc.name, err, time.Since(start))
		}
	}
}

func TestPlainToTLS(t *testing.T) {
	srv := tlsServer(t, selfSigned(t, time.Time{}, time.Time{}, "127.0.0.1"))
	resp, err := http.Get(strings.Replace(srv.URL, "https://", "http://", 1)) // plain HTTP to the HTTPS server
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !PlainToTLS(resp.StatusCode, body) {
		t.Errorf("PlainToTLS(%d, %q) = false", resp.StatusCode, body)
	}
	if PlainToTLS(400, []byte(`{"message":"bad"}`)) {
		t.Error("PlainToTLS of another 400 = true")
	}
}

// FuzzParseCAs: whatever a CA file holds, ParseCAs returns certificates or
// an error that says what is wrong with the file, never a private key.
func FuzzParseCAs(f *testing.F) {
	c, err := testcert.SelfSigned(time.Time{}, time.Time{}, "127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	key, _ := c.KeyPEM()
	f.Add(c.PEM)
	f.Add(append(append([]byte("# comment\n"), c.PEM...), c.PEM...))
	f.Add(append(append([]byte{}, c.PEM...), key...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCAs(data)
		if err != nil {
			if !errors.Is(err, ErrCAFile) || certs != nil {
				t.Fatalf("error %v (certs %d) does not wrap ErrCAFile", err, len(certs))
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		for _, c := range certs {
			if c == nil || len(c.Raw) == 0 {
				t.Fatal("nil certificate")
			}
		}
		if strings.Contains(string(data), "PRIVATE KEY-----") && strings.Contains(string(data), "-----BEGIN") {
			// A key block that decoded would have been refused; one that
			// did not decode is text around the blocks, refused too.
			t.Fatalf("accepted a file with a private key block: %q", data)
		}
	})
}
