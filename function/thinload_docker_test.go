package function

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/pulsefaas/pulse/contract"
)

// layeredTestImage assembles a fork-mode image of the stub watchdog (base
// layer) and function fn, labelled for this run. The base layer also holds
// /pulse-test-run with the run's suffix, so it is one no other image on the
// engine has: the test sees the engine without it, then with it.
func layeredTestImage(t *testing.T, api *client.Client, watchdog, fn []byte, name, run string) Image {
	t.Helper()
	img, err := Assemble(ImageSpec{
		BaseFiles: []File{
			{Path: WatchdogPath, Mode: 0o755, Content: watchdog},
			{Path: "/pulse-test-run", Mode: 0o644, Content: []byte(run)},
		},
		Files:      []File{{Path: FunctionPath, Mode: 0o755, Content: fn}},
		Entrypoint: []string{WatchdogPath},
		Env: []string{
			contract.EnvMode + "=" + contract.ModeFork,
			contract.EnvExec + "=" + FunctionPath,
			contract.EnvFunction + "=" + name,
			contract.EnvListen + fmt.Sprintf("=:%d", contract.WatchdogPort),
		},
		User:         testUser,
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
		Labels:       map[string]string{testLabel: "1", testLabel + ".run": run},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), engineTimeout)
		defer cancel()
		_, err := api.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !isNotFound(err) {
			t.Errorf("remove image %s: %v", img.ID, err)
		}
	})
	return img
}

// TestEngineThinLoad, on the real engine reached as a node: image A goes in
// full (the engine lacks its base layer), then image B, another function on
// the same watchdog layer, goes thin (its own layer only), is there by ID
// with both layers, and runs. Then the path of a node joining later
// (copyImage): B saved by the engine (docker save), removed, and loaded back
// from the thin form of that archive.
func TestEngineThinLoad(t *testing.T) {
	api := engineClient(t)
	watchdog, err := buildGo(t, "./testdata/watchdogstub")
	if err != nil {
		t.Fatalf("build the watchdog stub: %v", err)
	}
	echo := buildEcho(t)
	run := randomSuffix(t)
	a := layeredTestImage(t, api, watchdog, echo, "thin-a", run)
	// Another function: the echo with bytes after its end, which the
	// kernel does not load.
	b := layeredTestImage(t, api, watchdog, append(bytes.Clone(echo), "function b "+run...), "thin-b", run)
	if a.BaseLayer != b.BaseLayer || a.ID == b.ID {
		t.Fatalf("images %s and %s, base layers %s and %s: want two images on one base layer", a.ID, b.ID, a.BaseLayer, b.BaseLayer)
	}
	d := ClusterDistributor{Nodes: staticEngines{engines: []NodeEngine{{Node: "engine", API: api}}}}
	ensure := func(img Image) NodeResult {
		t.Helper()
		rs, err := d.EnsureAll(engineCtx(t), img)
		if err != nil {
			t.Fatal(err)
		}
		r := rs[0]
		t.Logf("%s: %s, thin %v, %d of %d bytes sent, %v (fallback: %v)", img.ID, r.Outcome, r.Thin, r.Sent, r.Full, r.Elapsed.Round(time.Millisecond), r.Fallback)
		return r
	}

	ra := ensure(a)
	if want := (LoadReport{Sent: int64(len(a.Archive)), Full: int64(len(a.Archive))}); ra.Outcome != "loaded" || ra.LoadReport != want {
		t.Errorf("A: %s %+v, want loaded in full %+v (the engine lacked the base layer)", ra.Outcome, ra.LoadReport, want)
	}
	rb := ensure(b)
	if want := (LoadReport{Thin: true, Sent: int64(len(b.Thin)), Full: int64(len(b.Archive))}); rb.Outcome != "loaded" || rb.LoadReport != want {
		t.Errorf("B: %s %+v, want loaded thin %+v", rb.Outcome, rb.LoadReport, want)
	}
	if len(b.Thin)*5 > len(b.Archive) {
		t.Errorf("B: thin archive %d bytes of %d: want the watchdog left out", len(b.Thin), len(b.Archive))
	}
	checkLayered(t, api, b)
	if r := ensure(b); r.Outcome != "present" || r.Sent != 0 {
		t.Errorf("B again: %s, %d bytes sent; want present, nothing sent", r.Outcome, r.Sent)
	}

	// B runs: the function from its own layer, the watchdog from A's.
	port := nat.Port(fmt.Sprintf("%d/tcp", contract.WatchdogPort))
	id := createContainer(t, api, b.ID, port, run)
	if err := api.ContainerStart(engineCtx(t), id, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	body := []byte("thin " + run)
	got, err := pollPost(t, "http://"+hostAddress(t, api, id, port)+"/", body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("POST / = %q, %v; want the body echoed\n%s", got, err, containerLogs(api, id))
	}
	if err := api.ContainerRemove(engineCtx(t), id, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}

	// docker save of B, made thin, loads back where A keeps the layer.
	rc, err := api.ImageSave(engineCtx(t), []string{b.ID})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	thin, err := ThinArchive(saved, b.BaseLayer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.ImageRemove(engineCtx(t), b.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := LoadImage(engineCtx(t), api, Image{ID: b.ID, Archive: thin}); err != nil {
		t.Fatalf("load the thin form of docker save's archive: %v", err)
	}
	t.Logf("docker save of B: %d bytes, thin %d, loaded in %v", len(saved), len(thin), time.Since(start).Round(time.Millisecond))
	checkLayered(t, api, b)
}

// TestEngineThinLoadFallback: a node whose image list says it holds the base
// layer but whose engine does not (the layer pruned between the check and
// the load, here a list that lies) refuses the thin archive; the full one
// follows and the image is there by ID.
func TestEngineThinLoadFallback(t *testing.T) {
	api := engineClient(t)
	watchdog, err := buildGo(t, "./testdata/watchdogstub")
	if err != nil {
		t.Fatalf("build the watchdog stub: %v", err)
	}
	run := randomSuffix(t)
	img := layeredTestImage(t, api, watchdog, buildEcho(t), "thin-fallback", run)
	node := listsBaseLayer{api}
	rs, err := ClusterDistributor{Nodes: staticEngines{engines: []NodeEngine{{Node: "engine", API: node}}}}.EnsureAll(engineCtx(t), img)
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	t.Logf("%s, thin %v, %d of %d bytes sent, %v; fallback: %v", r.Outcome, r.Thin, r.Sent, r.Full, r.Elapsed.Round(time.Millisecond), r.Fallback)
	if r.Outcome != "loaded" || r.Thin || r.Sent != int64(len(img.Thin)+len(img.Archive)) {
		t.Errorf("%s, thin %v, %d bytes sent; want loaded in full after the thin archive (%d + %d bytes)", r.Outcome, r.Thin, r.Sent, len(img.Thin), len(img.Archive))
	}
	// The engine's own words for a missing layer.
	want := "/" + strings.TrimPrefix(img.BaseLayer, "sha256:") + "/layer.tar: no such file or directory"
	if r.Fallback == nil || !strings.Contains(r.Fallback.Error(), want) {
		t.Errorf("fallback %v, want the engine's %q", r.Fallback, want)
	}
	checkLayered(t, api, img)
}

// listsBaseLayer is an engine whose image list always shows one image.
type listsBaseLayer struct{ *client.Client }

func (listsBaseLayer) ImageList(context.Context, image.ListOptions) ([]image.Summary, error) {
	return []image.Summary{{ID: "sha256:" + strings.Repeat("0", 64)}}, nil
}

// checkLayered checks that the engine has img by ID, with its two layers.
func checkLayered(t *testing.T, api *client.Client, img Image) {
	t.Helper()
	got, err := api.ImageInspect(engineCtx(t), img.ID)
	if err != nil {
		t.Fatalf("inspect %s: %v", img.ID, err)
	}
	if len(got.RootFS.Layers) != 2 || got.RootFS.Layers[0] != img.BaseLayer || got.ID != img.ID {
		t.Errorf("engine: %s with layers %v, want %s on base layer %s", got.ID, got.RootFS.Layers, img.ID, img.BaseLayer)
	}
	if got.Config == nil || !reflect.DeepEqual(got.Config.Labels[LabelBaseLayer], img.BaseLayer) {
		t.Errorf("engine: labels %v, want %s=%s", got.Config, LabelBaseLayer, img.BaseLayer)
	}
}
