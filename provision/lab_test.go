package provision

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/pulsefaas/pulse/internal/labtest"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestLab is the success path against a real node (sshd and Docker Engine
// 20.10 in the lab): dial with the lab's key and known_hosts, Run, the
// node's engine over SSH, and an image loaded through it. One test function,
// so the lab comes up once.
func TestLab(t *testing.T) {
	lab := labtest.Up(t, 1)
	node := lab.Nodes[0]
	t.Setenv("SSH_AUTH_SOCK", "")
	cfg := Config{IdentityFiles: []string{lab.KeyFile}, KnownHosts: lab.KnownHosts}
	target, err := ParseTarget("root@" + node.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	start := time.Now()
	c, err := Dial(ctx, cfg, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("dial %s: %v", target, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	out, err := c.Run(ctx, "hostname", nil)
	if err != nil || strings.TrimSpace(string(out)) != node.Name {
		t.Fatalf("Run(hostname) = %q, %v; want %s", out, err, node.Name)
	}
	t.Logf("run hostname: %v", time.Since(start).Round(time.Millisecond))

	_, err = c.Run(ctx, "echo to stderr >&2; exit 3", nil)
	var exit *ExitError
	if !errors.As(err, &exit) || *exit != (ExitError{Status: 3, Stderr: "to stderr"}) {
		t.Errorf("Run(exit 3) err = %v, want status 3 with its stderr", err)
	}

	start = time.Now()
	eng, err := c.Engine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	info, err := eng.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != node.Name || !strings.HasPrefix(info.ServerVersion, "20.10.") {
		t.Errorf("engine over SSH: Name %q ServerVersion %q, want %s and 20.10.x", info.Name, info.ServerVersion, node.Name)
	}
	t.Logf("engine over ssh (ping, negotiate, info): %v; API %s", time.Since(start).Round(time.Millisecond), eng.ClientVersion())

	t.Run("image load over the SSH engine", func(t *testing.T) {
		archive, id := imageArchive(t, 8<<20)
		// The SSH channel alone, for comparison: the same bytes to cat.
		start := time.Now()
		if _, err := c.Run(ctx, "cat >/dev/null", bytes.NewReader(archive)); err != nil {
			t.Fatal(err)
		}
		t.Logf("the same bytes through Run(cat): %v", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		resp, err := eng.ImageLoad(ctx, bytes.NewReader(archive), client.ImageLoadWithQuiet(true))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !strings.Contains(string(body), "Loaded image ID: "+id) {
			t.Fatalf("ImageLoad: %s, %v; want %s loaded", body, err, id)
		}
		elapsed := time.Since(start)
		t.Cleanup(func() {
			if _, err := eng.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true}); err != nil {
				t.Errorf("remove %s: %v", id, err)
			}
		})
		t.Logf("image load over ssh: %d bytes in %v (%.1f MB/s)", len(archive), elapsed.Round(time.Millisecond), float64(len(archive))/elapsed.Seconds()/1e6)
		// Checked on the node itself, not through what was just used.
		got, err := lab.Exec(ctx, node, "docker", "image", "inspect", "--format", "{{.Id}}", id)
		if err != nil || strings.TrimSpace(got) != id {
			t.Errorf("on the node: image %s = %q, %v", id, got, err)
		}
	})

	t.Run("changed host key refused", func(t *testing.T) {
		_, other := newKey(t)
		kh := t.TempDir() + "/known_hosts"
		if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{node.Addr}, other.PublicKey())+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		bad := cfg
		bad.KnownHosts, bad.AcceptNewHostKey = kh, true
		if _, err := Dial(ctx, bad, target); !errors.Is(err, ErrHostKeyChanged) {
			t.Errorf("err = %v, want ErrHostKeyChanged", err)
		}
	})
}

// imageArchive is a `docker save` archive of a one-layer image holding a
// file of size pseudo-random bytes, and the image's ID (sha256 of its
// config). Assembled here, so the ID is known before loading.
func imageArchive(t *testing.T, size int) ([]byte, string) {
	t.Helper()
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{'p', 'u', 'l', 's', 'e'})
	rng.Read(payload)
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	if err := lw.WriteHeader(&tar.Header{Name: "payload", Mode: 0o644, Size: int64(size), ModTime: epoch}); err != nil {
		t.Fatal(err)
	}
	lw.Write(payload)
	lw.Close()
	diffID := sha256.Sum256(layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/payload"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		t.Fatal(err)
	}
	configSum := sha256.Sum256(config)
	configHex := hex.EncodeToString(configSum[:])
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configHex + ".json", "RepoTags": nil, "Layers": []string{"layer/layer.tar"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{{"layer/layer.tar", layer.Bytes()}, {configHex + ".json", config}, {"manifest.json", manifest}} {
		if err := w.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), "sha256:" + configHex
}
