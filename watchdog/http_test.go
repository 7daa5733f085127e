package watchdog_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// freeAddr returns a loopback address nobody listens on right now, for the
// http-mode process (which is not ours to hand a listener to).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startHTTPMode(t *testing.T, upstreamArgs string, env ...string) (*wd, string) {
	t.Helper()
	up := freeAddr(t)
	w := startWD(t, append([]string{"PULSE_MODE=http", "PULSE_UPSTREAM=" + up,
		"PULSE_EXEC=" + bin.upstream + " -listen " + up + " " + upstreamArgs}, env...)...)
	return w, up
}

func TestHTTPModeProxy(t *testing.T) {
	w, _ := startHTTPMode(t, "")
	w.waitHealth(200)
	big := strings.Repeat("z", 200<<10)
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		body200                  string
		seen                     map[string]string
	}{
		{name: "body, path, query, headers", method: "POST", path: "/echo?a=1&b=two", body: "hello",
			hdr: map[string]string{"X-Test": "yes", "X-Forwarded-For": "10.0.0.9"}, status: 200, body200: "hello",
			seen: map[string]string{"X-Seen-Path": "/echo", "X-Seen-Query": "a=1&b=two", "X-Seen-Header": "yes",
				"X-Seen-Forwarded-For": "10.0.0.9, 127.0.0.1", "X-Seen-Length": "5"}},
		{name: "body above the replay buffer, streamed with its length", method: "POST", path: "/echo", body: big,
			status: 200, body200: big, seen: map[string]string{"X-Seen-Length": fmt.Sprint(len(big))}},
		{name: "chunked body", method: "POST", path: "/echo", hdr: map[string]string{"Transfer-Encoding": "chunked"},
			body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", status: 200, body200: "hello world"},
		{name: "function's status passes through", method: "GET", path: "/status/418", status: 418, body200: "status 418\n"},
		{name: "function's own /metrics is not shadowed", method: "GET", path: "/metrics", status: 200, body200: "function's own metrics\n"},
		{name: "HEAD", method: "HEAD", path: "/status/200", status: 200, body200: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := w.do(tc.method, tc.path, tc.body, tc.hdr)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.status != tc.status || r.body != tc.body200 {
				t.Fatalf("got %d %q, want %d %q", r.status, short(r.body), tc.status, short(tc.body200))
			}
			for k, v := range tc.seen {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
	if got := w.metric(`pulse_function_requests_total{function="test",code="418"}`); got != 1 {
		t.Errorf("418 counted %v", got)
	}
	if got := w.metric(`pulse_watchdog_info{function="test",mode="http",version="dev"}`); got != 1 {
		t.Errorf("info = %v", got)
	}
}

func TestHTTPModeHealthWaitsForUpstream(t *testing.T) {
	w, _ := startHTTPMode(t, "-start-delay 800ms")
	r := w.do("GET", "/_/health", "", nil)
	if r.status != 503 || !strings.Contains(r.body, "starting") {
		t.Fatalf("health before the upstream listens: %d %q", r.status, r.body)
	}
	w.waitHealth(200)
	if r := w.do("POST", "/echo", "up", nil); r.status != 200 || r.body != "up" {
		t.Fatalf("after start: %d %q %v", r.status, r.body, r.err)
	}
}

func TestHTTPModeRestartsUpstream(t *testing.T) {
	w, _ := startHTTPMode(t, "")
	w.waitHealth(200)
	first := children(w.cmd.Process.Pid)
	if len(first) != 1 {
		t.Fatalf("children %v", first)
	}
	if r := w.do("GET", "/exit", "", nil); r.status != 200 {
		t.Fatalf("exit: %d %v", r.status, r.err)
	}
	eventually(t, "restart counted", func() bool {
		return w.metric(`pulse_watchdog_upstream_restarts_total{function="test"}`) == 1
	})
	w.waitHealth(200)
	if r := w.do("POST", "/echo", "again", nil); r.status != 200 || r.body != "again" {
		t.Fatalf("after restart: %d %q %v", r.status, r.body, r.err)
	}
	if now := children(w.cmd.Process.Pid); len(now) != 1 || now[0] == first[0] {
		t.Fatalf("children before %v, after %v", first, now)
	}
	if !strings.Contains(w.log(), "function process exited; restarting") {
		t.Errorf("restart not logged")
	}
}

func TestHTTPModeLimits(t *testing.T) {
	w, _ := startHTTPMode(t, "", "PULSE_MAX_RESPONSE=64KiB", "PULSE_TIMEOUT=500ms")
	w.waitHealth(200)
	t.Run("declared length over the limit is 502", func(t *testing.T) {
		r := w.do("GET", "/big?n=100000&length=1", "", nil)
		if r.status != 502 || jsonBody(t, r.body)["error"] != "function response too large" {
			t.Fatalf("got %d %q", r.status, short(r.body))
		}
	})
	t.Run("streamed response over the limit is cut off", func(t *testing.T) {
		r := w.do("GET", "/big?n=100000", "", nil)
		if r.err == nil && len(r.body) == 100000 {
			t.Fatalf("got the whole %d bytes", len(r.body))
		}
		if len(r.body) > 64<<10 {
			t.Errorf("%d bytes passed the %d limit", len(r.body), 64<<10)
		}
	})
	t.Run("under the limit", func(t *testing.T) {
		r := w.do("GET", "/big?n=60000", "", nil)
		if r.status != 200 || len(r.body) != 60000 {
			t.Fatalf("got %d, %d bytes", r.status, len(r.body))
		}
	})
	t.Run("timeout is 504", func(t *testing.T) {
		r := w.do("GET", "/slow?d=3s", "", nil)
		if r.status != 504 || jsonBody(t, r.body)["error"] != "function timed out" {
			t.Fatalf("got %d %q", r.status, r.body)
		}
	})
	if got := w.metric(`pulse_watchdog_killed_total{function="test",reason="response_limit"}`); got != 2 {
		t.Errorf("response_limit = %v, want 2", got)
	}
	if got := w.metric(`pulse_watchdog_killed_total{function="test",reason="timeout"}`); got != 1 {
		t.Errorf("timeout = %v, want 1", got)
	}
	if r := w.do("POST", "/echo", "still fine", nil); r.status != 200 || r.body != "still fine" {
		t.Fatalf("after the limits: %d %q", r.status, r.body)
	}
}

func TestHTTPModeStopsUpstream(t *testing.T) {
	w, _ := startHTTPMode(t, "")
	w.waitHealth(200)
	kids := children(w.cmd.Process.Pid)
	if len(kids) != 1 {
		t.Fatalf("children %v", kids)
	}
	if err := w.stop(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	eventually(t, "upstream gone", func() bool { return !alive(kids[0]) })
}
