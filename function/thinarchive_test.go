package function

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestThinArchiveLayouts: the base layer's data is left out of each layout
// an engine writes or reads: Assemble's (directory per layer, named by diff
// ID), `docker save` of Docker 20.10 (directory per layer with json and
// VERSION beside layer.tar: the whole directory goes), and an OCI layout
// (every blob in one directory: only the layer's file goes).
func TestThinArchiveLayouts(t *testing.T) {
	const base, top = "sha256:" + "aa", "sha256:" + "bb"
	config := mustJSON(t, map[string]any{"rootfs": rootFS{Type: "layers", DiffIDs: []string{base, top}}})
	tests := []struct {
		name     string
		manifest manifestEntry
		files    []string // the archive's entries besides config and manifest
		want     []string // the thin archive's entries
	}{
		{
			name:     "docker save",
			manifest: manifestEntry{Config: "c0.json", Layers: []string{"v1a/layer.tar", "v1b/layer.tar"}},
			files:    []string{"v1a/", "v1a/VERSION", "v1a/json", "v1a/layer.tar", "v1b/", "v1b/VERSION", "v1b/json", "v1b/layer.tar", "repositories"},
			want:     []string{"v1b/", "v1b/VERSION", "v1b/json", "v1b/layer.tar", "repositories", "c0.json", "manifest.json"},
		},
		{
			name:     "OCI blobs",
			manifest: manifestEntry{Config: "blobs/sha256/c0", Layers: []string{"blobs/sha256/aa", "blobs/sha256/bb"}},
			files:    []string{"blobs/", "blobs/sha256/", "blobs/sha256/aa", "blobs/sha256/bb", "index.json", "oci-layout"},
			want:     []string{"blobs/", "blobs/sha256/", "blobs/sha256/bb", "index.json", "oci-layout", "blobs/sha256/c0", "manifest.json"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var entries []tarEntry
			for _, f := range tc.files {
				if name, ok := strings.CutSuffix(f, "/"); ok {
					entries = append(entries, tarEntry{name: name, dir: true, mode: dirMode})
				} else {
					entries = append(entries, tarEntry{name: f, mode: metaMode, content: []byte("data of " + f)})
				}
			}
			entries = append(entries,
				tarEntry{name: tc.manifest.Config, mode: metaMode, content: config},
				tarEntry{name: manifestName, mode: metaMode, content: mustJSON(t, []manifestEntry{tc.manifest})})
			archive, err := writeTar(entries, time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			thin, err := ThinArchive(archive, base)
			if err != nil {
				t.Fatal(err)
			}
			items, files := readTar(t, thin)
			var got []string
			for _, it := range items {
				got = append(got, it.Name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("thin archive entries\n got %q\nwant %q", got, tc.want)
			}
			for _, name := range tc.want {
				if content, ok := files[name]; ok && name != manifestName && name != tc.manifest.Config && string(content) != "data of "+name {
					t.Errorf("%s: %q, want it copied unchanged", name, content)
				}
			}
		})
	}
}

// TestThinArchiveErrors: an archive that cannot be made thin says why.
func TestThinArchiveErrors(t *testing.T) {
	layered, err := Assemble(layeredSpec("hello", "function binary", 0))
	if err != nil {
		t.Fatal(err)
	}
	one, err := Assemble(testSpec())
	if err != nil {
		t.Fatal(err)
	}
	two, err := writeTar([]tarEntry{{name: manifestName, mode: metaMode, content: []byte(`[{"Config":"a.json"},{"Config":"b.json"}]`)}}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		archive []byte
		base    string
		wantErr string
	}{
		{"one layer", one.Archive, "sha256:" + strings.Repeat("0", 64), "the image has 1 layers (1 in the manifest), want 2 or more"},
		{"another base", layered.Archive, "sha256:" + strings.Repeat("0", 64), "the first layer is " + layered.BaseLayer + ", not sha256:" + strings.Repeat("0", 64)},
		{"thin already", layered.Thin, layered.BaseLayer, "no " + strings.TrimPrefix(layered.BaseLayer, "sha256:") + "/layer.tar in the archive: is it thin already?"},
		{"two images", two, layered.BaseLayer, "manifest.json lists 2 images, want 1"},
		{"no manifest", []byte{}, layered.BaseLayer, "no manifest.json in the archive"},
		{"not a tar", []byte("not a tar archive, but long enough to be read as a block of one......" + strings.Repeat(".", 512)), layered.BaseLayer, "read manifest.json:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			thin, err := ThinArchive(tc.archive, tc.base)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || thin != nil {
				t.Fatalf("ThinArchive() = %d bytes, %v; want an error containing %q", len(thin), err, tc.wantErr)
			}
			if tc.name != "not a tar" && !errors.Is(err, ErrNotThinnable) {
				t.Errorf("error %v is not ErrNotThinnable", err)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
