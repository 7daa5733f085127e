package watchdog_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries built once for every test in this file: the watchdog itself, a
// static C test function and a Go http-mode upstream.
var bin struct {
	dir, watchdog, fn, upstream, inproc string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulse-watchdog-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.dir = dir
	bin.watchdog = filepath.Join(dir, "pulse-watchdog")
	bin.fn = filepath.Join(dir, "fn")
	bin.upstream = filepath.Join(dir, "upstream")
	bin.inproc = filepath.Join(dir, "inproc")
	steps := [][]string{
		{"go", "build", "-trimpath", "-o", bin.watchdog, "../cmd/pulse-watchdog"},
		{"go", "build", "-trimpath", "-tags", "watchdog_nofork,watchdog_nohttp", "-o", bin.inproc, "./testdata/inproc"},
		{"go", "build", "-o", bin.upstream, "./testdata/upstream"},
		{"gcc", "-static", "-O2", "-o", bin.fn, "testdata/fn.c"},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n%s\n(the tests need Go and gcc with static libc: apt-get install gcc libc6-dev)\n", strings.Join(s, " "), err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wd is a watchdog process started by a test.
type wd struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{} // closed once the process has exited
	err  error         // its exit status, set before done closes
	cred string        // replica credential do sends, if set
}

// startWD starts the watchdog binary with env (PULSE_* pairs) on a free
// loopback port and waits until it has said where it listens.
func startWD(t *testing.T, env ...string) *wd {
	t.Helper()
	return startCmd(t, []string{bin.watchdog}, env...)
}

// startCmd is startWD for a command that ends up exec'ing a watchdog: an
// in-process function's binary, or a wrapper.
func startCmd(t *testing.T, argv []string, env ...string) *wd {
	t.Helper()
	w := &wd{t: t, done: make(chan struct{})}
	w.cmd = exec.Command(argv[0], argv[1:]...)
	w.cmd.Env = append([]string{"PULSE_FUNCTION=test", "PULSE_LISTEN=127.0.0.1:0", "PULSE_DRAIN_GRACE=0s", "PATH=/usr/bin:/bin"}, env...)
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			w.mu.Lock()
			w.logs.Write(line)
			w.logs.WriteByte('\n')
			w.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "watchdog listening" {
				addrCh <- rec.Addr
			}
		}
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		// SIGTERM first: the watchdog stops what it started (http mode's
		// upstream), which a SIGKILL would leave running, reparented.
		select {
		case <-w.done:
		default:
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-w.done:
			case <-time.After(5 * time.Second):
				_ = w.cmd.Process.Signal(syscall.SIGKILL)
				<-w.done
			}
		}
		if t.Failed() {
			t.Logf("watchdog log:\n%s", w.log())
		}
	})
	select {
	case w.addr = <-addrCh:
	case <-w.done:
		t.Fatalf("watchdog exited before listening: %v\n%s", w.err, w.log())
	case <-time.After(10 * time.Second):
		t.Fatalf("watchdog did not start\n%s", w.log())
	}
	return w
}

func (w *wd) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.String()
}

// waitHealth polls /_/health until it answers want.
func (w *wd) waitHealth(want int) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := w.do("GET", "/_/health", "", nil)
		if r.status == want {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("health: got %d %q, want %d\n%s", r.status, r.body, want, w.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit status.
func (w *wd) stop() error {
	w.t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		return w.err
	case <-time.After(30 * time.Second):
		w.t.Fatalf("watchdog did not exit after SIGTERM\n%s", w.log())
		return nil
	}
}

type resp struct {
	status int
	header http.Header
	body   string
	err    error
}

// do sends one request on a new connection and never retries: a failure is
// a failure.
func (w *wd) do(method, path, body string, hdr map[string]string) resp {
	if w.cred != "" {
		h := map[string]string{"X-Pulse-Replica-Auth": w.cred}
		for k, v := range hdr {
			h[k] = v
		}
		hdr = h
	}
	return rawDo(w.addr, method, path, body, hdr)
}

func rawDo(addr, method, path, body string, hdr map[string]string) resp {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return resp{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n", method, path)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if _, ok := hdr["Transfer-Encoding"]; !ok {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		return resp{err: err}
	}
	r, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return resp{err: err}
	}
	defer r.Body.Close()
	data, err := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, header: r.Header, body: string(data), err: err}
}

// metric returns the value of one series from /_/metrics, or -1.
func (w *wd) metric(series string) float64 {
	w.t.Helper()
	r := w.do("GET", "/_/metrics", "", nil)
	for _, line := range strings.Split(r.body, "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				w.t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	return -1
}

// children lists the live (or zombie) children of pid.
func children(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(raw, ')')
		f := strings.Fields(string(raw[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// alive reports whether pid exists, zombies included.
func alive(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func jsonBody(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	return m
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
