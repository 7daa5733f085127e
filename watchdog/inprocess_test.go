package watchdog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// serve runs an in-process watchdog on a loopback port and returns its
// address and a function that stops it and returns Serve's result.
func serve(t *testing.T, cfg Config, h http.Handler, skip chan struct{}) (string, func() error, *Server) {
	t.Helper()
	s, err := New(cfg, h, slog.New(NewJSONHandler(io.Discard, slog.LevelError)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, skip) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return ln.Addr().String(), stop, s
}

func testConfig() Config {
	c, err := ConfigFromEnv([]string{"PULSE_FUNCTION=hello", "PULSE_DRAIN_GRACE=0s"}, contract.ModeInProcess)
	if err != nil {
		panic(err)
	}
	return c
}

type answer struct {
	status int
	header http.Header
	body   string
	close  bool // the server said Connection: close
}

// call sends one request on its own connection; no retries.
func call(t *testing.T, addr, method, path, body string) answer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", method, path, len(body), body)
	r, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{r.StatusCode, r.Header, string(b), r.Close}
}

func TestInProcess(t *testing.T) {
	release := make(chan struct{})
	fn := Func(func(ctx context.Context, body []byte) ([]byte, error) {
		switch string(body) {
		case "fail":
			return nil, errors.New("bad input")
		case "panic":
			panic("boom")
		case "block":
			<-release
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return append([]byte("hello "), body...), nil
	})
	cfg := testConfig()
	cfg.MaxBody = 16
	cfg.MaxInflight = 1
	cfg.Timeout = 200 * time.Millisecond
	addr, _, s := serve(t, cfg, fn, nil)

	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"answer", "POST", "/", "world", 200, "hello world"},
		{"any path reaches the function", "POST", "/metrics", "x", 200, "hello x"},
		{"error is 500 JSON", "POST", "/", "fail", 500, `{"error":"bad input"}` + "\n"},
		{"panic is 500 JSON", "POST", "/", "panic", 500, `{"error":"function panicked"}` + "\n"},
		{"body over the limit", "POST", "/", strings.Repeat("x", 17), 413, `{"error":"request body too large","limit":16}` + "\n"},
		{"timeout is 504", "POST", "/", "slow", 504, `{"error":"function timed out","timeout":"200ms"}` + "\n"},
		{"health", "GET", "/_/health", "", 200, `{"status":"ok"}` + "\n"},
		{"unknown reserved path", "GET", "/_/nope", "", 404, `{"error":"no such watchdog endpoint","path":"/_/nope"}` + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := call(t, addr, tc.method, tc.path, tc.body)
			if a.status != tc.status || a.body != tc.want {
				t.Fatalf("got %d %q, want %d %q", a.status, a.body, tc.status, tc.want)
			}
		})
	}

	t.Run("in-flight limit", func(t *testing.T) {
		done := make(chan answer, 1)
		go func() { done <- call(t, addr, "POST", "/", "block") }()
		for s.inflight.Load() != 1 {
			time.Sleep(time.Millisecond)
		}
		a := call(t, addr, "POST", "/", "x")
		if a.status != 429 || a.header.Get("Retry-After") != "1" {
			t.Errorf("got %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
		}
		close(release)
		if a := <-done; a.status != 200 {
			t.Errorf("blocked request: %d", a.status)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		a := call(t, addr, "GET", "/_/metrics", "")
		want := map[string]string{
			`pulse_function_requests_total{function="hello",code="200"}`:                 "3",
			`pulse_function_requests_total{function="hello",code="500"}`:                 "2",
			`pulse_function_requests_total{function="hello",code="413"}`:                 "1",
			`pulse_function_requests_total{function="hello",code="429"}`:                 "1",
			`pulse_function_requests_total{function="hello",code="504"}`:                 "1",
			`pulse_function_request_duration_seconds_count{function="hello"}`:            "8",
			`pulse_function_request_duration_seconds_bucket{function="hello",le="+Inf"}`: "8",
			`pulse_function_inflight_requests{function="hello"}`:                         "0",
			`pulse_watchdog_info{function="hello",mode="inproc",version="dev"}`:          "1",
			`pulse_watchdog_killed_total{function="hello",reason="timeout"}`:             "1",
			`pulse_watchdog_overdue_handlers{function="hello"}`:                          "0",
		}
		got := map[string]string{}
		for _, line := range strings.Split(a.body, "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
				got[k] = v
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		// Eight requests, one blocked until released: busy for a while.
		if busy, err := strconv.ParseFloat(got[`pulse_function_busy_seconds_total{function="hello"}`], 64); err != nil || busy <= 0 {
			t.Errorf("busy seconds %q (%v), want above 0", got[`pulse_function_busy_seconds_total{function="hello"}`], err)
		}
		if a.header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("Content-Type %q", a.header.Get("Content-Type"))
		}
		// The in-process mode has no upstream and forks nothing.
		if strings.Contains(a.body, contract.MetricUpstreamRestarts) || strings.Contains(a.body, contract.MetricOOMKilled) {
			t.Errorf("metrics of other modes present:\n%s", a.body)
		}
	})

	t.Run("healthcheck probe", func(t *testing.T) {
		if err := Healthcheck(addr, "", time.Second); err != nil {
			t.Fatal(err)
		}
		if err := Healthcheck("127.0.0.1:1", "", time.Second); err == nil {
			t.Fatal("healthcheck of a closed port passed")
		}
	})
}

// TestInProcessDrain: during the grace the function still answers, health
// says draining, answers carry Connection: close; a second signal cuts the
// grace short and Serve returns nil.
func TestInProcessDrain(t *testing.T) {
	cfg := testConfig()
	cfg.DrainGrace = time.Minute
	skip := make(chan struct{})
	addr, stop, s := serve(t, cfg, Func(func(_ context.Context, b []byte) ([]byte, error) { return b, nil }), skip)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for !s.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	if a := call(t, addr, "GET", "/_/health", ""); a.status != 503 || a.body != `{"status":"draining"}`+"\n" {
		t.Errorf("health: %d %q", a.status, a.body)
	}
	a := call(t, addr, "POST", "/", "still here")
	if a.status != 200 || a.body != "still here" || !a.close {
		t.Errorf("during grace: %d %q close=%v", a.status, a.body, a.close)
	}
	close(skip)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("grace not cut short")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestNewRejectsMismatchedHandler(t *testing.T) {
	cfg := testConfig()
	if _, err := New(cfg, nil, slog.Default()); err == nil {
		t.Error("in-process mode without a handler accepted")
	}
}

func TestJSONHandler(t *testing.T) {
	var b strings.Builder
	log := slog.New(NewJSONHandler(&b, slog.LevelInfo)).With("function", "f").WithGroup("g").With("a", 1)
	log.Debug("hidden")
	log.Info("hi \"there\"\n", "err", errors.New("x\x01y"), "d", time.Second, "ok", true, slog.Group("sub", "k", "v"))
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil {
		t.Fatalf("%q: %v", b.String(), err)
	}
	delete(m, "time")
	want := `map[function:f g:map[a:1 d:1e+09 err:x` + "\x01" + `y ok:true sub:map[k:v]] level:INFO msg:hi "there"` + "\n]"
	if got := fmt.Sprint(m); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if strings.Count(b.String(), "\n") != 1 {
		t.Errorf("want one line, got %q", b.String())
	}
}

// TestConnectionTimeouts: idle keep-alive connections, connections that
// never send a request, and requests that outlive their budget (a body that
// stalls) are all closed by the connection sweep.
func TestConnectionTimeouts(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 200 * time.Millisecond
	cfg.ReadTimeout = 300 * time.Millisecond
	cfg.WriteTimeout = 300 * time.Millisecond
	addr, _, _ := serve(t, cfg, Func(func(_ context.Context, b []byte) ([]byte, error) { return b, nil }), nil)

	// closedWithin reports whether the server closes c within d.
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return err == nil || !(errors.As(err, &ne) && ne.Timeout())
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("idle keep-alive connection", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
		br := bufio.NewReader(c)
		r, err := http.ReadResponse(br, nil)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("%v %v", r, err)
		}
		io.Copy(io.Discard, r.Body)
		if r.Close {
			t.Fatal("server closed at once; want keep-alive")
		}
		start := time.Now()
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("idle connection not closed")
		}
		if d := time.Since(start); d < cfg.IdleTimeout {
			t.Errorf("closed after %v, before the idle timeout", d)
		}
	})
	t.Run("connection that never sends", func(t *testing.T) {
		if !closedWithin(dial(), 5*time.Second) {
			t.Fatal("silent connection not closed")
		}
	})
	t.Run("stalled body", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("stalled request not closed")
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		c := dial()
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\n")
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("slow headers not cut off")
		}
	})
}

// TestGatewayHeaderRemoved: the header HAProxy sets for its cold-start path
// never reaches the function, so a warm and a cold request look the same.
func TestGatewayHeaderRemoved(t *testing.T) {
	var seen atomic.Value
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Clone())
	})
	addr, stop, _ := serve(t, testConfig(), h, nil)
	defer stop()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/x", nil)
	req.Header.Set(contract.HeaderFunction, "hello")
	req.Header.Set("X-Other", "kept")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got, _ := seen.Load().(http.Header)
	if got == nil || got.Get(contract.HeaderFunction) != "" || got.Get("X-Other") != "kept" {
		t.Fatalf("the function saw %v", got)
	}
}
