package watchdog_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFork drives fork mode against real executables and checks the answer,
// the metric it leaves and that no process outlives its request.
func TestFork(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 8192) // 128 KiB: more than a pipe holds
	cases := []struct {
		name     string
		exec     string
		env      []string
		method   string
		body     string
		hdr      map[string]string
		status   int
		wantBody string             // exact, if set
		wantJSON map[string]any     // fields the JSON error must carry
		contains []string           // substrings of the body
		metric   map[string]float64 // series → value after the request
		logs     []string           // substrings of the watchdog's log
	}{
		{name: "cat echoes", exec: "/bin/cat", body: "hello", status: 200, wantBody: "hello",
			metric: map[string]float64{`pulse_function_requests_total{function="test",code="200"}`: 1}},
		{name: "static C echo, body above pipe capacity", exec: "FN echo", body: big, status: 200, wantBody: big},
		{name: "empty body", exec: "FN echo", body: "", status: 200, wantBody: ""},
		{name: "function that exits without reading a large body", exec: "FN bytes 5", body: big, status: 200, wantBody: "xxxxx"},
		{name: "non-zero exit is 500, stderr only in the log", exec: "FN crash", status: 500,
			hdr:      map[string]string{"X-Request-ID": "req-42"},
			wantJSON: map[string]any{"error": "function failed", "exit_code": 3.0, "request_id": "req-42"},
			logs:     []string{`"msg":"function failed"`, `"request_id":"req-42","stderr_tail":"something went wrong\nfatal: cannot continue\n","exit_code":3`},
			metric:   map[string]float64{`pulse_function_requests_total{function="test",code="500"}`: 1}},
		{name: "killed by a signal is 500", exec: "FN segv", status: 500,
			wantJSON: map[string]any{"error": "function failed", "signal": "segmentation fault", "request_id": "*"}},
		{name: "timeout kills the group, 504", exec: "FN sleep 30", env: []string{"PULSE_TIMEOUT=300ms"}, status: 504,
			wantJSON: map[string]any{"error": "function timed out", "timeout": "300ms"},
			metric: map[string]float64{
				`pulse_watchdog_killed_total{function="test",reason="timeout"}`: 1,
				`pulse_function_requests_total{function="test",code="504"}`:     1,
			}},
		{name: "SIGTERM-proof function still killed at timeout", exec: "FN ignoreterm", env: []string{"PULSE_TIMEOUT=200ms"}, status: 504,
			wantJSON: map[string]any{"error": "function timed out", "timeout": "200ms"}},
		{name: "flood past the response limit, 502", exec: "FN flood", env: []string{"PULSE_MAX_RESPONSE=1MiB"}, status: 502,
			wantJSON: map[string]any{"error": "function response too large", "limit": float64(1 << 20)},
			metric:   map[string]float64{`pulse_watchdog_killed_total{function="test",reason="response_limit"}`: 1}},
		{name: "body over the limit by Content-Length, 413", exec: "FN echo", env: []string{"PULSE_MAX_BODY=1KiB"},
			body: strings.Repeat("x", 2048), status: 413,
			wantJSON: map[string]any{"error": "request body too large", "limit": 1024.0}},
		{name: "chunked body over the limit, 413", exec: "FN echo", env: []string{"PULSE_MAX_BODY=1KiB"},
			hdr: map[string]string{"Transfer-Encoding": "chunked"}, body: "800\r\n" + strings.Repeat("x", 2048) + "\r\n0\r\n\r\n", status: 413,
			wantJSON: map[string]any{"error": "request body too large", "limit": 1024.0}},
		{name: "chunked body under the limit", exec: "FN echo", env: []string{"PULSE_MAX_BODY=1KiB"},
			hdr: map[string]string{"Transfer-Encoding": "chunked"}, body: "5\r\nhello\r\n0\r\n\r\n", status: 200, wantBody: "hello"},
		{name: "CGI environment", exec: "FN env", method: "PUT", body: "abc",
			hdr:    map[string]string{"X-Test": "v1", "Content-Type": "text/plain", "X_Under": "dropped", "Proxy": "http://evil", "Accept": "a/b"},
			status: 200, contains: []string{
				"\nREQUEST_METHOD=PUT\n", "\nPATH_INFO=/a/b\n", "\nQUERY_STRING=x=1&y=%20\n", "\nREQUEST_URI=/a/b?x=1&y=%20\n",
				"\nCONTENT_LENGTH=3\n", "\nCONTENT_TYPE=text/plain\n", "\nHTTP_X_TEST=v1\n", "\nHTTP_ACCEPT=a/b\n",
				"\nREMOTE_ADDR=127.0.0.1\n", "\nGATEWAY_INTERFACE=CGI/1.1\n", "\nSERVER_PROTOCOL=HTTP/1.1\n", "PULSE_FUNCTION=test\n",
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exec := strings.Replace(tc.exec, "FN", bin.fn, 1)
			w := startWD(t, append([]string{"PULSE_MODE=fork", "PULSE_EXEC=" + exec}, tc.env...)...)
			method, path := tc.method, "/"
			if method == "" {
				method = "POST"
			}
			if tc.contains != nil {
				path = "/a/b?x=1&y=%20"
			}
			r := w.do(method, path, tc.body, tc.hdr)
			if r.err != nil {
				t.Fatalf("request: %v", r.err)
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %q", r.status, tc.status, short(r.body))
			}
			if tc.wantBody != "" || (tc.wantJSON == nil && tc.contains == nil) {
				if r.body != tc.wantBody {
					t.Fatalf("body %q, want %q", short(r.body), short(tc.wantBody))
				}
			}
			if tc.wantJSON != nil {
				got := jsonBody(t, r.body)
				if len(got) != len(tc.wantJSON) {
					t.Errorf("JSON %v, want exactly %v", got, tc.wantJSON)
				}
				for k, v := range tc.wantJSON {
					if s, _ := got[k].(string); v == "*" && s != "" {
						continue // any non-empty value
					}
					if got[k] != v {
						t.Errorf("JSON %s = %#v, want %#v (body %s)", k, got[k], v, r.body)
					}
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if tc.contains != nil {
				env := "\n" + r.body
				for _, s := range tc.contains {
					if !strings.Contains(env, s) {
						t.Errorf("environment lacks %q:\n%s", s, r.body)
					}
				}
				for _, bad := range []string{"X_UNDER", "HTTP_PROXY=", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"} {
					if strings.Contains(env, bad) {
						t.Errorf("environment has %q:\n%s", bad, r.body)
					}
				}
			}
			for _, s := range tc.logs {
				eventually(t, "log line "+s, func() bool { return strings.Contains(w.log(), s) })
			}
			if tc.wantJSON != nil && strings.Contains(r.body, "something went wrong") {
				t.Errorf("stderr reached the client: %s", r.body)
			}
			for series, want := range tc.metric {
				if got := w.metric(series); got != want {
					t.Errorf("%s = %v, want %v", series, got, want)
				}
			}
			eventually(t, "no process left under the watchdog", func() bool { return len(children(w.cmd.Process.Pid)) == 0 })
			if err := w.stop(); err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		})
	}
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// TestForkGrandchild: a function that leaves a child behind holding its
// stdout still answers, and the child does not survive.
func TestForkGrandchild(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" grandchild "+pidFile, "PULSE_TIMEOUT=5s")
	r := w.do("POST", "/", "", nil)
	if r.err != nil || r.status != 200 || r.body != "parent done\n" {
		t.Fatalf("got %d %q %v", r.status, r.body, r.err)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "grandchild gone, reaped (no zombie)", func() bool { return !alive(pid) })
	if n := len(children(w.cmd.Process.Pid)); n != 0 {
		t.Errorf("%d children left", n)
	}
}

// TestForkInflightLimit: above the in-flight limit the answer is 429 with
// Retry-After, and the request in flight is unaffected.
func TestForkInflightLimit(t *testing.T) {
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" sleep 1", "PULSE_MAX_INFLIGHT=1")
	var wg sync.WaitGroup
	wg.Add(1)
	var first resp
	go func() { defer wg.Done(); first = w.do("POST", "/", "slow", nil) }()
	eventually(t, "first request in flight", func() bool {
		return w.metric(`pulse_function_inflight_requests{function="test"}`) == 1
	})
	r := w.do("POST", "/", "x", nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("second request: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	if got := jsonBody(t, r.body); got["error"] != "too many requests in flight" || got["limit"] != 1.0 {
		t.Errorf("429 body %v", got)
	}
	wg.Wait()
	if first.status != 200 || first.body != "slow" {
		t.Fatalf("first request: %d %q %v", first.status, first.body, first.err)
	}
	if got := w.metric(`pulse_function_requests_total{function="test",code="429"}`); got != 1 {
		t.Errorf("429 counted %v times", got)
	}
}

// TestForkDisconnect: a client that goes away takes its process with it.
func TestForkDisconnect(t *testing.T) {
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" sleep 30")
	c := dial(t, w.addr)
	if _, err := c.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "process started", func() bool { return len(children(w.cmd.Process.Pid)) == 1 })
	c.Close()
	eventually(t, "process killed", func() bool { return len(children(w.cmd.Process.Pid)) == 0 })
	eventually(t, "kill counted", func() bool {
		return w.metric(`pulse_watchdog_killed_total{function="test",reason="disconnect"}`) == 1
	})
}

// TestShutdown: after SIGTERM health fails at once, requests sent during the
// drain grace still succeed, the one in flight finishes, and the exit is 0.
func TestShutdown(t *testing.T) {
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" sleep 1", "PULSE_DRAIN_GRACE=1500ms")
	w.waitHealth(200)
	inflight := make(chan resp, 1)
	go func() { inflight <- w.do("POST", "/", "in-flight", nil) }()
	eventually(t, "request in flight", func() bool { return len(children(w.cmd.Process.Pid)) == 1 })
	start := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- w.stop() }()
	w.waitHealth(503)
	if r := w.do("GET", "/_/health", "", nil); !strings.Contains(r.body, "draining") {
		t.Errorf("health body %q", r.body)
	}
	// Requests during the grace are served, and told to reconnect.
	r := w.do("POST", "/", "during-grace", nil)
	if r.err != nil || r.status != 200 || r.body != "during-grace" {
		t.Fatalf("request during grace: %d %q %v", r.status, r.body, r.err)
	}
	if time.Since(start) > 1500*time.Millisecond {
		t.Skip("machine too slow to land a request inside the grace")
	}
	if got := <-inflight; got.err != nil || got.status != 200 || got.body != "in-flight" {
		t.Fatalf("in-flight request: %d %q %v", got.status, got.body, got.err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit: %v", err)
	}
	if time.Since(start) < 1500*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, before the drain grace", time.Since(start))
	}
}
