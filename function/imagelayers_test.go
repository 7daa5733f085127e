package function

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// layeredSpec is a fork-mode image as Build makes it: the watchdog in the
// base layer, the function (content fn) in the top one, created at epoch.
func layeredSpec(name, fn string, epoch int64) ImageSpec {
	return ImageSpec{
		Tag:        "pulse/" + name + ":latest",
		BaseFiles:  []File{{Path: "/pulse-watchdog", Mode: 0o755, Content: []byte("watchdog binary")}},
		Files:      []File{{Path: "/function", Mode: 0o755, Content: []byte(fn)}},
		Entrypoint: []string{"/pulse-watchdog"},
		Env:        []string{"PULSE_MODE=fork", "PULSE_EXEC=/function", "PULSE_FUNCTION=" + name},
		User:       "65534:65534",
		Labels:     map[string]string{"pulse.function": name},
		Healthcheck: &Healthcheck{
			Test:     []string{"CMD", "/pulse-watchdog", "-healthcheck"},
			Interval: 5 * time.Second,
		},
		Architecture:    "amd64",
		SourceDateEpoch: epoch,
	}
}

// layeredArchive is what a two-layer archive holds.
type layeredArchive struct {
	entries  []tarItem // of the archive itself
	manifest []manifestEntry
	config   imageConfig
	layers   [][]byte // in manifest order
}

func readLayered(t *testing.T, archive []byte) layeredArchive {
	t.Helper()
	var a layeredArchive
	entries, files := readTar(t, archive)
	a.entries = entries
	if err := json.Unmarshal(files[manifestName], &a.manifest); err != nil || len(a.manifest) != 1 {
		t.Fatalf("manifest.json %q: %v", files[manifestName], err)
	}
	if err := json.Unmarshal(files[a.manifest[0].Config], &a.config); err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, l := range a.manifest[0].Layers {
		a.layers = append(a.layers, files[l])
	}
	return a
}

// TestAssembleBaseLayer: with BaseFiles the image has two layers, the base
// first; the base layer is the same tar in two different functions (other
// function, name, epoch, tag), so its diff ID is too; the label and
// Image.BaseLayer name it; IDs stay deterministic; Image.Thin is the archive
// without the base layer, with the same manifest and config.
func TestAssembleBaseLayer(t *testing.T) {
	const epoch = 1700000000
	hello, err := Assemble(layeredSpec("hello", "function binary", epoch))
	if err != nil {
		t.Fatal(err)
	}
	other, err := Assemble(layeredSpec("other", "another function, longer", epoch+99))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Assemble(layeredSpec("hello", "function binary", epoch))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != hello.ID || !bytes.Equal(again.Archive, hello.Archive) || !bytes.Equal(again.Thin, hello.Thin) {
		t.Errorf("two assemblies of one spec differ: IDs %s and %s", hello.ID, again.ID)
	}
	if hello.ID == other.ID {
		t.Errorf("two functions have one ID %s", hello.ID)
	}

	h, o := readLayered(t, hello.Archive), readLayered(t, other.Archive)
	if len(h.layers) != 2 || len(o.layers) != 2 {
		t.Fatalf("layers: %d and %d, want 2", len(h.layers), len(o.layers))
	}
	if !bytes.Equal(h.layers[0], o.layers[0]) {
		t.Errorf("the base layers of two functions differ")
	}
	baseID := "sha256:" + sha256Hex(h.layers[0])
	wantDiffIDs := []string{baseID, "sha256:" + sha256Hex(h.layers[1])}
	if !reflect.DeepEqual(h.config.RootFS.DiffIDs, wantDiffIDs) || o.config.RootFS.DiffIDs[0] != baseID {
		t.Errorf("diff IDs %v and %v, want %v then the other's top layer", h.config.RootFS.DiffIDs, o.config.RootFS.DiffIDs, wantDiffIDs)
	}
	for _, img := range []Image{hello, other} {
		if img.BaseLayer != baseID {
			t.Errorf("Image.BaseLayer %q, want %s", img.BaseLayer, baseID)
		}
	}
	if got := h.config.Config.Labels[LabelBaseLayer]; got != baseID {
		t.Errorf("label %s = %q, want %s", LabelBaseLayer, got, baseID)
	}
	if got := []string{h.config.History[0].CreatedBy, h.config.History[1].CreatedBy}; len(h.config.History) != 2 || got[0] != baseBy || got[1] != historyBy {
		t.Errorf("history %+v, want one entry per layer", h.config.History)
	}

	// Base layer: the watchdog alone, at time 0; top layer: the function
	// and /tmp, at the epoch.
	base, _ := readTar(t, h.layers[0])
	top, _ := readTar(t, h.layers[1])
	wantBase := []tarItem{{Name: "pulse-watchdog", Type: tar.TypeReg, Mode: 0o755, Owner: ":", MTime: 0, Size: 15}}
	wantTop := []tarItem{
		{Name: "function", Type: tar.TypeReg, Mode: 0o755, Owner: ":", MTime: epoch, Size: 15},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777, Owner: ":", MTime: epoch},
	}
	if !reflect.DeepEqual(base, wantBase) || !reflect.DeepEqual(top, wantTop) {
		t.Errorf("layers:\n got %+v\n     %+v\nwant %+v\n     %+v", base, top, wantBase, wantTop)
	}

	// The thin archive: the full one without the base layer's directory.
	thin := readLayered(t, hello.Thin)
	baseHex := baseID[len("sha256:"):]
	var wantEntries []tarItem
	for _, e := range h.entries {
		if e.Name != baseHex+"/" && e.Name != baseHex+"/layer.tar" {
			wantEntries = append(wantEntries, e)
		}
	}
	if len(wantEntries) != len(h.entries)-2 || !reflect.DeepEqual(thin.entries, wantEntries) {
		t.Errorf("thin archive entries:\n got %+v\nwant %+v", thin.entries, wantEntries)
	}
	if !reflect.DeepEqual(thin.manifest, h.manifest) || !reflect.DeepEqual(thin.config, h.config) {
		t.Errorf("thin archive: manifest %+v, config %+v; want the full archive's", thin.manifest, thin.config)
	}
	t.Logf("full archive %d bytes, thin %d", len(hello.Archive), len(hello.Thin))

	// Another watchdog: another base layer, another ID.
	spec := layeredSpec("hello", "function binary", epoch)
	spec.BaseFiles[0].Content = []byte("watchdog binarY")
	changed, err := Assemble(spec)
	if err != nil {
		t.Fatal(err)
	}
	if changed.BaseLayer == hello.BaseLayer || changed.ID == hello.ID {
		t.Errorf("another watchdog: base layer %s, ID %s; want both to change", changed.BaseLayer, changed.ID)
	}

	// One layer: no base layer, no thin archive, no label.
	one, err := Assemble(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	if one.BaseLayer != "" || one.Thin != nil {
		t.Errorf("one-layer image: BaseLayer %q, %d thin bytes; want neither", one.BaseLayer, len(one.Thin))
	}
}
