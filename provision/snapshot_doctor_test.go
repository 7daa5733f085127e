package provision

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/doctor"
)

// recordingFS records the paths opened through it.
type recordingFS struct {
	fsys  fs.FS
	mu    sync.Mutex
	names map[string]bool
}

func (r *recordingFS) Open(name string) (fs.File, error) {
	r.mu.Lock()
	r.names[name] = true
	r.mu.Unlock()
	return r.fsys.Open(name)
}

// TestSnapshotCoversNodeChecks: every path doctor's node checks open on
// this host is one a snapshot of doctor.NodeFiles looked at, so a check
// that starts reading another file fails here until NodeFiles names it.
func TestSnapshotCoversNodeChecks(t *testing.T) {
	if _, err := parsePatterns(doctor.NodeFiles()); err != nil {
		t.Fatalf("doctor.NodeFiles: %v", err)
	}
	c := dialShServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := c.Snapshot(ctx, doctor.NodeFiles())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingFS{fsys: os.DirFS("/"), names: map[string]bool{}}
	doctor.RunNode(ctx, doctor.Probes{Root: rec})
	if len(rec.names) == 0 {
		t.Fatal("the node checks opened no file")
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range rec.names {
			if !yield(n) {
				return
			}
		}
	}) {
		if _, err := snap.Open(name); errors.Is(err, ErrNotCaptured) {
			t.Errorf("a node check opens /%s, which doctor.NodeFiles does not name", name)
		}
	}
	t.Logf("the node checks opened %d paths on this host", len(rec.names))
}

// TestRunNodeOnSnapshot: doctor's node checks give the same results on a
// snapshot of this host taken over SSH, with commands run over SSH, as on
// the host itself (os.DirFS("/"), os/exec), the engine being the same.
func TestRunNodeOnSnapshot(t *testing.T) {
	c := dialShServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct := doctor.DefaultProbes("")
	defer direct.Close()
	want := doctor.RunNode(ctx, direct)

	start := time.Now()
	snap, err := c.Snapshot(ctx, doctor.NodeFiles())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of this host's node files: %v", time.Since(start).Round(time.Millisecond))
	node := direct
	node.Root, node.Exec = snap, c.CombinedOutput
	got := doctor.RunNode(ctx, node)
	for _, r := range got {
		t.Logf("%s: %s %s", r.Check, r.Status, r.Detail)
		if strings.Contains(r.Detail, ErrNotCaptured.Error()) {
			t.Errorf("%s reads a file the snapshot lacks: %s", r.Check, r.Detail)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("on the snapshot:\n got %#v\nwant %#v (on the host)", got, want)
	}
}
