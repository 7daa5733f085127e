package watchdog_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// TestHTTPModeStrictUpstream: in front of Node's http server (llhttp, which
// answers 400 to a request with two Content-Length headers) every kind of
// request body arrives with exactly one length header, or chunked.
func TestHTTPModeStrictUpstream(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" { // CI: .ci/run installs it
			t.Fatalf("needs node (Debian's nodejs): %v", err)
		}
		t.Skip("node is not installed")
	}
	script, err := filepath.Abs("testdata/strict.js")
	if err != nil {
		t.Fatal(err)
	}
	up := freeAddr(t)
	w := startWD(t, "PULSE_MODE=http", "PULSE_UPSTREAM="+up, "PULSE_EXEC="+node+" "+script+" "+up)
	w.waitHealth(200)

	// The peer is strict: the duplicate the watchdog used to send is
	// refused when sent to it directly.
	dup := rawDo(up, "POST", "/", "abc", map[string]string{"Content-Length": "3"})
	if dup.err != nil || dup.status != 400 {
		t.Fatalf("node accepted two Content-Length headers: %d %v", dup.status, dup.err)
	}

	// An opaque target has no path to send upstream: refused, not mangled.
	if r := w.do("GET", "a:b", "", nil); r.status != 400 || jsonBody(t, r.body)["error"] != "the request target must be a path starting with '/'" {
		t.Errorf("opaque target: %d %q", r.status, r.body)
	}

	big := strings.Repeat("b", 200<<10) // above the replay buffer: streamed
	cases := []struct {
		name, method, body string
		hdr                map[string]string
		length             float64
		wantCL             string // the one Content-Length node saw; "" for none
		chunked            bool
	}{
		{name: "small body", method: "POST", body: "hello", length: 5, wantCL: "5"},
		{name: "streamed body", method: "PUT", body: big, length: float64(len(big)), wantCL: fmt.Sprint(len(big))},
		{name: "empty POST", method: "POST", body: "", length: 0, wantCL: "0"},
		{name: "GET without body", method: "GET", body: "", length: 0, wantCL: ""},
		{name: "chunked body", method: "POST", hdr: map[string]string{"Transfer-Encoding": "chunked"},
			body: "5\r\nhello\r\n0\r\n\r\n", length: 5, chunked: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := w.do(tc.method, "/x?y=1", tc.body, tc.hdr)
			if r.err != nil || r.status != 200 {
				t.Fatalf("got %d %q %v", r.status, r.body, r.err)
			}
			var seen struct {
				Method     string
				URL        string
				RawHeaders []string
				Length     float64
			}
			if err := json.Unmarshal([]byte(r.body), &seen); err != nil {
				t.Fatalf("%q: %v", r.body, err)
			}
			if seen.Method != tc.method || seen.URL != "/x?y=1" || seen.Length != tc.length {
				t.Errorf("node saw %s %s with %v bytes", seen.Method, seen.URL, seen.Length)
			}
			var cls, tes []string
			for i := 0; i+1 < len(seen.RawHeaders); i += 2 {
				switch strings.ToLower(seen.RawHeaders[i]) {
				case "content-length":
					cls = append(cls, seen.RawHeaders[i+1])
				case "transfer-encoding":
					tes = append(tes, seen.RawHeaders[i+1])
				}
			}
			switch {
			case tc.chunked && (len(cls) != 0 || len(tes) != 1):
				t.Errorf("chunked: Content-Length %q, Transfer-Encoding %q", cls, tes)
			case !tc.chunked && tc.wantCL == "" && len(cls) != 0:
				t.Errorf("Content-Length %q, want none", cls)
			case !tc.chunked && tc.wantCL != "" && (len(cls) != 1 || cls[0] != tc.wantCL):
				t.Errorf("Content-Length %q, want exactly [%s]", cls, tc.wantCL)
			}
		})
	}
}
