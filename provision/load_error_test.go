package provision

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/function"
)

// staticNodes is function.NodeEngines over a fixed list.
type staticNodes []function.NodeEngine

func (s staticNodes) Engines(context.Context) ([]function.NodeEngine, error) { return s, nil }

// loadImage is an 8 MB image (random content, so nothing compresses it on
// the way), big enough that a load spans many SSH window adjustments.
func loadImage(t *testing.T) function.Image {
	t.Helper()
	content := make([]byte, 8<<20)
	rand.Read(content)
	img, err := function.Assemble(function.ImageSpec{
		Files:      []function.File{{Path: "/function", Mode: 0o755, Content: content}},
		Entrypoint: []string{"/function"},
		User:       "1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// engineNode is a node named name: an in-process SSH server whose
// dial-stdio reaches e, and its engine over SSH as the CLI makes it
// (swarmEngines.dial): Dial, then Engine, closed by the distributor.
func engineNode(t *testing.T, ctx context.Context, name string, e *fakeEngine) (*testServer, function.NodeEngine) {
	t.Helper()
	f := newFixture(t)
	f.srv.setEngine(e)
	f.cfg.AcceptNewHostKey = true
	c, err := Dial(ctx, f.cfg, f.srv.target())
	if err != nil {
		t.Fatal(err)
	}
	eng, err := c.Engine(ctx)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return f.srv, function.NodeEngine{Node: name, API: eng, Close: func() error {
		eng.Close()
		return c.Close()
	}}
}

// cutAt is how much of the load's body a failing engine reads before its
// failure: mid-archive.
const cutAt = 3 << 20

// TestLoadErrorsOverSSH: an image load to two nodes over SSH (the
// in-process server, a fake engine behind dial-stdio), the first healthy,
// the second failing mid-load in one way per case. ClusterDistributor
// loads it on the first, and fails naming the second alone, with what
// happened and what to do; it returns well before its deadline, and both
// servers see every session closed and every command returned.
func TestLoadErrorsOverSSH(t *testing.T) {
	// Docker 20.10 untars the archive under /var/lib/docker/tmp in a
	// chroot (so the path is the archive's), and drains the body when the
	// untar fails. An engine that answers without reading the rest closes
	// a socket with unread bytes: dial-stdio reads the answer, then a
	// reset, and exits 1.
	diskFull := "Error processing tar file(exit status 1): write /8f7d2b5c8a9e0d4c1b3a2f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c/layer.tar: no space left on device"
	tests := []struct {
		name     string
		load     func(w http.ResponseWriter, r *http.Request, es *engineSession)
		deadline time.Duration // of the whole EnsureAll
		want     []string      // in the error, after "node-b: "
		lost     bool          // errors.Is ErrConnectionLost, with the amount sent
	}{
		{
			name: "connection cut",
			load: func(_ http.ResponseWriter, r *http.Request, es *engineSession) {
				readBody(r, cutAt)
				es.conn.cut()
			},
			deadline: 20 * time.Second,
			want:     []string{"the SSH connection to pulse@127.0.0.1:", "was lost after", "MB of the request was sent: check the network to the node and that its sshd runs"},
			lost:     true,
		},
		{
			name: "disk full, body drained (Docker 20.10)",
			load: func(w http.ResponseWriter, r *http.Request, _ *engineSession) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.Write(loadError(diskFull))
			},
			deadline: 20 * time.Second,
			want:     []string{"engine: " + diskFull},
		},
		{
			name: "disk full, answered mid-body",
			load: func(w http.ResponseWriter, r *http.Request, es *engineSession) {
				readBody(r, cutAt)
				es.reset = true
				w.Header().Set("Content-Type", "application/json")
				w.Write(loadError(diskFull))
			},
			deadline: 20 * time.Second,
			want:     []string{"engine: " + diskFull},
		},
		{
			name: "engine dies",
			load: func(_ http.ResponseWriter, r *http.Request, es *engineSession) {
				readBody(r, cutAt)
				es.exit(1, connReset)
			},
			deadline: 20 * time.Second,
			want: []string{`"docker system dial-stdio" on pulse@127.0.0.1:`, ": exit status 1 after", "MB of the request was sent: " + connReset,
				"the engine on the node dropped the connection: check it there (systemctl status docker; journalctl -u docker)"},
		},
		{
			// No keepalive (ssh.go): nothing but the deadline ends it, and
			// it must, though x/crypto holds the body's Write waiting for
			// a window the node never opens (stdioConn.Close ends it).
			name: "node vanishes",
			load: func(_ http.ResponseWriter, r *http.Request, es *engineSession) {
				readBody(r, cutAt)
				es.conn.freeze()
				<-es.conn.gone
			},
			deadline: 3 * time.Second,
			want:     []string{"context deadline exceeded"},
		},
	}
	img := loadImage(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := engineConnGoroutines()
			setup, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			good := &fakeEngine{id: img.ID, archive: img.Archive}
			bad := &fakeEngine{id: img.ID, archive: img.Archive, load: tc.load}
			srvA, a := engineNode(t, setup, "node-a", good)
			srvB, b := engineNode(t, setup, "node-b", bad)

			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			start := time.Now()
			results, err := function.ClusterDistributor{Nodes: staticNodes{a, b}}.EnsureAll(ctx, img)
			elapsed := time.Since(start)
			t.Logf("after %v: %v", elapsed.Round(time.Millisecond), err)

			if tc.deadline < 10*time.Second {
				if elapsed > tc.deadline+2*time.Second {
					t.Errorf("EnsureAll returned %v after its %v deadline", elapsed-tc.deadline, tc.deadline)
				}
			} else if elapsed > 10*time.Second {
				t.Errorf("EnsureAll took %v, want it well before its %v deadline", elapsed, tc.deadline)
			}
			if !errors.Is(err, function.ErrDistribute) {
				t.Fatalf("err = %v, want ErrDistribute", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "1 of 2 nodes failed: node-b: ") || strings.Contains(msg, "node-a") {
				t.Errorf("error %q does not name node-b alone", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if tc.lost {
				// What went before the cut, plus at most the SSH window (2
				// MB) and the pumps' buffers.
				m := regexp.MustCompile(`lost after ([0-9.]+) MB`).FindStringSubmatch(msg)
				var sent float64
				if len(m) == 2 {
					sent, _ = strconv.ParseFloat(m[1], 64)
				}
				if lo, hi := float64(cutAt)/1e6, float64(cutAt+3<<20)/1e6; sent < lo || sent > hi {
					t.Errorf("error says %v MB sent, want between %.1f and %.1f", sent, lo, hi)
				}
			}
			want := map[string]string{"node-a": "loaded", "node-b": "failed"}
			for _, r := range results {
				if r.Outcome != want[r.Node] {
					t.Errorf("%s: %s (%v), want %s", r.Node, r.Outcome, r.Err, want[r.Node])
				}
				// The SDK's and the transport's wrapping keep it.
				if got := errors.Is(r.Err, ErrConnectionLost); r.Node == "node-b" && got != tc.lost {
					t.Errorf("errors.Is(%v, ErrConnectionLost) = %v, want %v", r.Err, got, tc.lost)
				}
			}
			if len(results) != 2 {
				t.Errorf("%d results, want 2", len(results))
			}
			if a, b := good.loadCount(), bad.loadCount(); a != 1 || b != 1 {
				t.Errorf("loads: node-a %d, node-b %d; want one each", a, b)
			}
			srvA.waitIdle(t, 5*time.Second)
			srvB.waitIdle(t, 5*time.Second)
			waitGoroutines(t, before, 5*time.Second)
		})
	}
}

// engineConnGoroutines counts the goroutines of engine connections on the
// client's side: stdioConn's pumps and wait, and the HTTP transport's
// connection loops.
func engineConnGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "provision.(*stdioConn)") || strings.Contains(g, "net/http.(*persistConn)") {
			n++
		}
	}
	return n
}

// waitGoroutines fails t unless the engine connections' goroutines are
// back to before within d.
func waitGoroutines(t *testing.T, before int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for engineConnGoroutines() > before {
		if time.Now().After(deadline) {
			t.Errorf("%d engine connection goroutine(s) left after %v (%d before)", engineConnGoroutines(), d, before)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
