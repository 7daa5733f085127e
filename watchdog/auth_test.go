package watchdog_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const forbidden = `{"error":"replica credential required: requests reach a replica through the Pulse gateway"}` + "\n"

// writeCred writes a credential file as pulsed's secret holds it (one
// trailing newline) and returns its path.
func writeCred(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "replica-auth")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReplicaAuth: with PULSE_REPLICA_AUTH_FILE set, a real watchdog in
// each mode answers 403 JSON to every request without the credential —
// function paths, /_/health and /_/metrics alike — and the function never
// sees the header (fork: no CGI variable; http: not forwarded; in-process:
// not in the request).
func TestReplicaAuth(t *testing.T) {
	const cred = "c2VjcmV0LWNyZWRlbnRpYWwtZm9yLXRlc3Rz"
	file := writeCred(t, cred+"\n")
	modes := []struct {
		name  string
		start func(t *testing.T) *wd
		path  string // a function path that shows the headers the function got
	}{
		{"fork", func(t *testing.T) *wd {
			return startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" env", "PULSE_REPLICA_AUTH_FILE="+file)
		}, "/"},
		{"http", func(t *testing.T) *wd {
			up := freeAddr(t)
			return startWD(t, "PULSE_MODE=http", "PULSE_UPSTREAM="+up, "PULSE_EXEC="+bin.upstream+" -listen "+up,
				"PULSE_REPLICA_AUTH_FILE="+file)
		}, "/headers"},
		{"inproc", func(t *testing.T) *wd {
			return startCmd(t, []string{bin.inproc}, "PULSE_REPLICA_AUTH_FILE="+file)
		}, "/headers"},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			w := m.start(t)
			cases := []struct {
				name   string
				method string
				path   string
				hdr    map[string]string
			}{
				{"function path, no credential", "POST", m.path, nil},
				{"function path, wrong credential", "POST", m.path, map[string]string{"X-Pulse-Replica-Auth": cred[:len(cred)-1] + "x"}},
				{"function path, credential prefix", "POST", m.path, map[string]string{"X-Pulse-Replica-Auth": cred[:8]}},
				{"function path, empty credential", "POST", m.path, map[string]string{"X-Pulse-Replica-Auth": ""}},
				{"health, no credential", "GET", "/_/health", nil},
				{"metrics, no credential", "GET", "/_/metrics", nil},
				{"metrics, wrong credential", "GET", "/_/metrics", map[string]string{"X-Pulse-Replica-Auth": "nope"}},
			}
			for _, tc := range cases {
				r := rawDo(w.addr, tc.method, tc.path, "body", tc.hdr)
				if r.err != nil || r.status != 403 || r.body != forbidden || r.header.Get("Content-Type") != "application/json" {
					t.Errorf("%s: got %d %q %v, want 403 %q", tc.name, r.status, r.body, r.err, forbidden)
				}
			}
			// The credential twice (a client adding its own next to the
			// gateway's) is refused too.
			c := dial(t, w.addr)
			if _, err := c.Write([]byte("GET /_/health HTTP/1.1\r\nHost: x\r\nX-Pulse-Replica-Auth: " + cred +
				"\r\nX-Pulse-Replica-Auth: " + cred + "\r\nConnection: close\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, _ := c.Read(buf); !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 403") {
				t.Errorf("credential twice: %q", buf[:n])
			}

			w.cred = cred
			w.waitHealth(200)
			if r := w.do("GET", "/_/metrics", "", nil); r.status != 200 || !strings.Contains(r.body, "pulse_function_requests_total") {
				t.Errorf("metrics with the credential: %d %q", r.status, short(r.body))
			}
			r := w.do("POST", m.path, "body", map[string]string{"X-Visible": "yes"})
			if r.status != 200 {
				t.Fatalf("function path with the credential: %d %q", r.status, r.body)
			}
			if !strings.Contains(strings.ToLower(r.body), "x-visible") && !strings.Contains(r.body, "HTTP_X_VISIBLE=yes") {
				t.Fatalf("the function's view lacks the other header: %s", r.body)
			}
			for _, leak := range []string{"replica-auth", "replica_auth", cred} {
				if strings.Contains(strings.ToLower(r.body), strings.ToLower(leak)) {
					t.Errorf("the function saw %q:\n%s", leak, r.body)
				}
			}
			// Refused requests are not the function's traffic.
			if got := w.metric(`pulse_function_requests_total{function="test",code="403"}`); got > 0 {
				t.Errorf("403s counted as function answers: %v", got)
			}
		})
	}
}

// TestReplicaAuthUnset: without PULSE_REPLICA_AUTH_FILE nothing is checked
// (a watchdog run by hand), and a stray credential header is still removed.
func TestReplicaAuthUnset(t *testing.T) {
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC="+bin.fn+" env")
	r := w.do("POST", "/", "", map[string]string{"X-Pulse-Replica-Auth": "anything"})
	if r.status != 200 || strings.Contains(r.body, "HTTP_X_PULSE_REPLICA_AUTH") {
		t.Fatalf("got %d:\n%s", r.status, r.body)
	}
	if r := w.do("GET", "/_/health", "", nil); r.status != 200 {
		t.Fatalf("health: %d", r.status)
	}
}

// TestReplicaAuthHealthcheck: the HEALTHCHECK probe presents the
// credential from the same environment.
func TestReplicaAuthHealthcheck(t *testing.T) {
	file := writeCred(t, "probe-secret\n")
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat", "PULSE_REPLICA_AUTH_FILE="+file)
	probe := func(env ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin.watchdog, "-healthcheck")
		cmd.Env = append([]string{"PULSE_FUNCTION=test", "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat", "PULSE_LISTEN=" + w.addr}, env...)
		return cmd.Run()
	}
	if err := probe("PULSE_REPLICA_AUTH_FILE=" + file); err != nil {
		t.Errorf("probe with the credential: %v", err)
	}
	if err := probe(); err == nil {
		t.Errorf("probe without the credential passed")
	}
}

// TestReplicaAuthRefusesBadFile: a credential file that cannot be used
// stops the watchdog at start, exit 2, naming the variable.
func TestReplicaAuthRefusesBadFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, file, content, want string }{
		{"missing", filepath.Join(dir, "missing"), "", "cannot read the replica credential"},
		{"empty", filepath.Join(dir, "empty"), "", "is empty"},
		{"only a newline", filepath.Join(dir, "newline"), "\n", "is empty"},
		{"over 4 KiB", filepath.Join(dir, "big"), strings.Repeat("a", 4097), "over 4096 bytes"},
		{"two lines", filepath.Join(dir, "lines"), "a\nb\n", "control character"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "missing" {
				if err := os.WriteFile(tc.file, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin.watchdog)
			cmd.Env = []string{"PULSE_FUNCTION=test", "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat", "PULSE_LISTEN=127.0.0.1:0",
				"PULSE_REPLICA_AUTH_FILE=" + tc.file}
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err == nil || !errorsAs(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; output %s", err, out)
			}
			if !strings.Contains(string(out), "PULSE_REPLICA_AUTH_FILE") || !strings.Contains(string(out), tc.want) {
				t.Errorf("output %q lacks the variable or %q", out, tc.want)
			}
		})
	}
	// Exactly 4 KiB and a trailing newline is accepted.
	ok := writeCred(t, strings.Repeat("a", 4096)+"\n")
	w := startWD(t, "PULSE_MODE=fork", "PULSE_EXEC=/bin/cat", "PULSE_REPLICA_AUTH_FILE="+ok)
	w.cred = strings.Repeat("a", 4096)
	w.waitHealth(200)
}
