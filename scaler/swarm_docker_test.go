package scaler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/enginetest"
)

// racingAPI changes the service behind the scaler's back right before the
// scaler's first ServiceUpdate: the engine must refuse that update.
type racingAPI struct {
	ServiceAPI
	raw     *client.Client
	raced   atomic.Bool
	updates atomic.Int32
	t       *testing.T
}

const racedLabel = "pulse.test.raced"

func (a *racingAPI) ServiceUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	a.updates.Add(1)
	if a.raced.CompareAndSwap(false, true) {
		svc, _, err := a.raw.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
		if err != nil {
			return swarm.ServiceUpdateResponse{}, fmt.Errorf("race: %w", err)
		}
		s := svc.Spec
		s.Labels[racedLabel] = "1"
		if _, err := a.raw.ServiceUpdate(ctx, id, svc.Version, s, swarm.ServiceUpdateOptions{}); err != nil {
			return swarm.ServiceUpdateResponse{}, fmt.Errorf("race: %w", err)
		}
	}
	return a.ServiceAPI.ServiceUpdate(ctx, id, v, spec, opts)
}

// TestSwarmAdapter scales a real service through the adapter, with a
// concurrent update provoking a version conflict that the scaler re-reads
// and retries.
func TestSwarmAdapter(t *testing.T) {
	cli := enginetest.SwarmManager(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := "scaler-test-" + hex.EncodeToString(b)
	instance := "test-" + hex.EncodeToString(b) // a pulsed of `make up` must not act on it

	// A FROM scratch image: a static program that waits for SIGTERM.
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "wait.c"), filepath.Join(dir, "wait")
	if err := os.WriteFile(src, []byte("#include <signal.h>\n#include <unistd.h>\n"+
		"static void bye(int s){(void)s;_exit(0);}\nint main(void){signal(SIGTERM,bye);for(;;)pause();}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "gcc", "-static", "-Os", "-s", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{contract.LabelFunction: name, "pulse.test": "1", contract.LabelScaleMax: "4", contract.LabelInstance: instance}
	img, err := function.Assemble(function.ImageSpec{
		Files:      []function.File{{Path: "/wait", Mode: 0o755, Content: prog}},
		Entrypoint: []string{"/wait"}, User: function.ImageUser, Labels: labels,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := function.LoadImage(ctx, cli, img); err != nil {
		t.Fatal(err)
	}
	one := uint64(1)
	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: img.ID}},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}
	if _, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{QueryRegistry: false}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := function.NewSwarm(cli, function.LocalDistributor{API: cli}, nil).Remove(ctx, name); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})

	api := &racingAPI{ServiceAPI: cli, raw: cli, t: t}
	adapter := NewSwarmServices(api, instance)
	cat := &fakeCatalog{}
	s, err := New(DefaultConfig(), adapter, &fakeUtilisation{}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Scale up: the first update loses the race, the retry wins.
	if err := s.EnsureReplicas(ctx, name, 3, "test scale-up"); err != nil {
		t.Fatal(err)
	}
	svc, err := adapter.Inspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Replicas != 3 || svc.Labels[racedLabel] != "1" {
		t.Errorf("replicas %d, label %s=%q: want 3 and the concurrent change kept", svc.Replicas, racedLabel, svc.Labels[racedLabel])
	}
	if got := api.updates.Load(); got != 2 {
		t.Errorf("%d ServiceUpdate calls, want 2 (the refused one and the retry)", got)
	}
	if got := s.m.conflicts.get(""); got != 1 {
		t.Errorf("conflicts %d, want 1", got)
	}
	if cat.refreshes != 1 {
		t.Errorf("catalog refreshes %d, want 1", cat.refreshes)
	}

	// A stale read is refused as ErrConflict.
	if err := adapter.SetReplicas(ctx, svc, 2); err != nil {
		t.Fatal(err)
	}
	if err := adapter.SetReplicas(ctx, svc, 4); !errors.Is(err, ErrConflict) {
		t.Errorf("update at a stale version: %v, want ErrConflict", err)
	}

	// A restarted pulsed (a new Scaler) starts from the truth: no double
	// scaling; max still holds.
	s2, err := New(DefaultConfig(), NewSwarmServices(cli, instance), &fakeUtilisation{}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.EnsureReplicas(ctx, name, 2, "again"); err != nil {
		t.Fatal(err)
	}
	if err := s2.EnsureReplicas(ctx, name, 9, "over max"); err != nil {
		t.Fatal(err)
	}
	if err := s2.ScaleToZero(ctx, name, "idle"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range append(s.Events().Events, s2.Events().Events...) {
		got = append(got, fmt.Sprintf("%d→%d", ev.From, ev.To))
	}
	if want := "1→3 2→4 4→0"; strings.Join(got, " ") != want {
		t.Errorf("events %v, want %s", got, want)
	}
	if svc, err = adapter.Inspect(ctx, name); err != nil || svc.Replicas != 0 {
		t.Errorf("after ScaleToZero: %d replicas, %v", svc.Replicas, err)
	}

	// Not Pulse functions.
	for _, n := range []string{"no-such-" + name, svc.ID} {
		if _, err := adapter.Inspect(ctx, n); !errors.Is(err, ErrNotFound) {
			t.Errorf("Inspect(%q) = %v, want ErrNotFound", n, err)
		}
	}

	// Not this instance's: another install's pulsed cannot scale it, nor
	// anyone's once it lost its instance label (deployed before instances).
	other := NewSwarmServices(cli, "other-"+instance)
	_, err = other.Inspect(ctx, name)
	if want := fmt.Sprintf("no such function: function %s belongs to Pulse instance %q (label pulse.instance), not to this one (%q)", name, instance, "other-"+instance); !errors.Is(err, ErrNotFound) || err.Error() != want {
		t.Errorf("Inspect by another instance = %v, want %s", err, want)
	}
	raw, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(raw.Spec.Labels, contract.LabelInstance)
	if _, err := cli.ServiceUpdate(ctx, raw.ID, raw.Version, raw.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = adapter.Inspect(ctx, name)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "has no pulse.instance label (deployed before instances existed): redeploy it") {
		t.Errorf("Inspect of a service without an instance = %v, want ErrNotFound saying to redeploy", err)
	}
}
