package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// startServer serves h with timeouts t on a loopback port until the test
// ends.
func startServer(t *testing.T, h http.Handler, to serverTimeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := to.server(h, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// closedWithin reads c until the server closes it (EOF or reset) and
// returns how long that took; it fails the test past limit. Whatever the
// server sends first (e.g. a 408) is returned too.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v (read so far %q)", limit, b)
	}
	return time.Since(start), string(b)
}

// TestTimeoutDefaults: every server pulsed runs has each limit, and the
// cold-start listener's leave room for a held request and its function.
func TestTimeoutDefaults(t *testing.T) {
	cfg := defaults()
	for name, to := range map[string]serverTimeouts{"api": defaultAPITimeouts, "coldstart": coldStartTimeouts(cfg)} {
		srv := to.server(http.NotFoundHandler(), slog.New(slog.NewTextHandler(io.Discard, nil)), name)
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
			t.Errorf("%s server without a limit: %+v", name, to)
		}
	}
	cs := coldStartTimeouts(cfg)
	if min := cfg.ColdStartTimeout + cfg.ColdStartFunctionTimeout; cs.Write < min || cs.Read < min {
		t.Errorf("cold-start read %v, write %v: a held request may take %v", cs.Read, cs.Write, min)
	}
	if defaultAPITimeouts.MaxBody != maxAPIBody || maxAPIBody > 1<<20 {
		t.Errorf("API body limit %d", defaultAPITimeouts.MaxBody)
	}
}

// TestTimeoutTrickledHeaders: a client that sends its headers one byte a
// while (slowloris) is cut at ReadHeaderTimeout, with the API's real value.
func TestTimeoutTrickledHeaders(t *testing.T) {
	addr := startServer(t, http.NotFoundHandler(), defaultAPITimeouts)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(c, "X-%d: y\r\n", i); err != nil {
				return
			}
		}
	}()
	took, _ := closedWithin(t, c, defaultAPITimeouts.ReadHeader+5*time.Second)
	if took < defaultAPITimeouts.ReadHeader-time.Second {
		t.Errorf("closed after %v, before the header timeout %v", took, defaultAPITimeouts.ReadHeader)
	}
	t.Logf("trickling client closed after %v", took)
}

// TestTimeoutIdleConnection: a keep-alive connection left idle after an
// answer is closed at IdleTimeout (shortened here: 60 s in pulsed); one
// that never sends anything at ReadHeaderTimeout.
func TestTimeoutIdleConnection(t *testing.T) {
	to := defaultAPITimeouts
	to.Idle, to.ReadHeader = time.Second, 2*time.Second
	addr := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }), to)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v, %v", resp, err)
	}
	_, _ = io.ReadAll(resp.Body)
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(to.Idle + 3*time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the server sent something on an idle connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("idle connection still open after %v", time.Since(start))
	}
	if took := time.Since(start); took < to.Idle-200*time.Millisecond {
		t.Errorf("idle connection closed after %v, before %v", took, to.Idle)
	}

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if took, _ := closedWithin(t, silent, to.ReadHeader+3*time.Second); took < to.ReadHeader-200*time.Millisecond {
		t.Errorf("silent connection closed after %v, before %v", took, to.ReadHeader)
	}
}

// TestTimeoutSlowBody: a request whose body stalls is cut at ReadTimeout
// (shortened here: 10 s in pulsed), and the handler's read fails.
func TestTimeoutSlowBody(t *testing.T) {
	to := defaultAPITimeouts
	to.Read = 2 * time.Second
	readErr := make(chan error, 1)
	addr := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	}), to)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"); err != nil {
		t.Fatal(err)
	}
	took, _ := closedWithin(t, c, to.Read+3*time.Second)
	if took < to.Read-time.Second {
		t.Errorf("closed after %v, before the read timeout %v", took, to.Read)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("the handler read a stalled body without an error")
		}
	case <-time.After(2 * time.Second):
		t.Error("the handler's read never ended")
	}
}

// TestAPIBodyLimit: the API refuses a body over maxAPIBody, declared or
// streamed, before a handler holds it.
func TestAPIBodyLimit(t *testing.T) {
	got := make(chan error, 1)
	addr := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		if err != nil {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "too large")
		}
	}), defaultAPITimeouts)
	big := strings.Repeat("x", maxAPIBody+1)
	resp, err := http.Post("http://"+addr+contract.AlarmsPath, "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || strings.TrimSpace(string(b)) != `{"error":"body over the API's limit of 64 KiB"}` {
		t.Errorf("declared: %d %s", resp.StatusCode, b)
	}
	// Chunked: no length to refuse up front; the read stops at the limit.
	resp, err = http.Post("http://"+addr+"/x", "application/json", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var mb *http.MaxBytesError
	if err := <-got; !errors.As(err, &mb) || resp.StatusCode != 413 {
		t.Errorf("streamed: handler read error %v, status %d", err, resp.StatusCode)
	}
}
