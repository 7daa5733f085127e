package function

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrNotThinnable means an archive cannot be made thin: it is not one image
// whose first layer is the named base layer, with that layer's data in it.
var ErrNotThinnable = errors.New("cannot leave the base layer out of the archive")

// ThinArchive returns archive, a docker-archive of one image (Assemble's or
// `docker save`'s), without the data of its first layer, whose diff ID must
// be base ("sha256:…"). The manifest and the config are unchanged, so the
// image and its ID are too. An engine that holds that layer loads the thin
// archive as it would the full one; an engine that lacks it refuses it
// ("open …/layer.tar: no such file or directory") and keeps nothing (seen on
// Docker 20.10). Only the first layer can be left out: the engine looks a
// layer up by its chain ID, which for the first layer is its diff ID and for
// any other depends on the layers under it.
func ThinArchive(archive []byte, base string) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("thin archive: %w: %s", ErrNotThinnable, fmt.Sprintf(format, args...))
	}
	// The manifest comes last in Assemble's archives and names the config:
	// read it, then the config, then copy what stays.
	b, err := tarFile(archive, manifestName)
	if err != nil {
		return nil, fmt.Errorf("thin archive: %w", err)
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(b, &manifest); err != nil {
		return fail("%s: %v", manifestName, err)
	}
	if len(manifest) != 1 {
		return fail("%s lists %d images, want 1", manifestName, len(manifest))
	}
	m := manifest[0]
	if b, err = tarFile(archive, m.Config); err != nil {
		return nil, fmt.Errorf("thin archive: %w", err)
	}
	var cfg struct {
		RootFS rootFS `json:"rootfs"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fail("config %q: %v", m.Config, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	switch {
	case len(diffIDs) < 2 || len(m.Layers) != len(diffIDs):
		return fail("the image has %d layers (%d in the manifest), want 2 or more", len(diffIDs), len(m.Layers))
	case diffIDs[0] != base:
		return fail("the first layer is %s, not %s", diffIDs[0], base)
	}

	// Leave out the layer's file, and its directory when nothing else the
	// manifest names is in it (`docker save` puts a json and a VERSION
	// beside each layer.tar, which the engine does not read when loading
	// from a manifest).
	drop := func(name string) bool { return name == m.Layers[0] }
	if dir := path.Dir(m.Layers[0]); dir != "." && !strings.Contains(dir, "/") {
		shared := path.Dir(m.Config) == dir
		for _, l := range m.Layers[1:] {
			shared = shared || path.Dir(l) == dir
		}
		if !shared {
			drop = func(name string) bool { return name == dir || strings.HasPrefix(name, dir+"/") }
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dropped := false
	err = eachTarEntry(archive, func(h *tar.Header, r io.Reader) error {
		if drop(strings.TrimSuffix(h.Name, "/")) {
			dropped = dropped || h.Name == m.Layers[0]
			return nil
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", h.Name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("write %s: %w", h.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("thin archive: %w", err)
	}
	if !dropped {
		return fail("no %s in the archive: is it thin already?", m.Layers[0])
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("thin archive: close: %w", err)
	}
	return buf.Bytes(), nil
}

// tarFile returns the content of the regular file name in a tar held in
// memory.
func tarFile(archive []byte, name string) ([]byte, error) {
	var content []byte
	found := false
	err := eachTarEntry(archive, func(h *tar.Header, r io.Reader) error {
		if found || h.Typeflag != tar.TypeReg || h.Name != name {
			return nil
		}
		found = true
		var err error
		content, err = io.ReadAll(r)
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", name, err)
	case !found:
		return nil, fmt.Errorf("%w: no %s in the archive", ErrNotThinnable, name)
	}
	return content, nil
}

// eachTarEntry calls fn with each entry of a tar held in memory.
func eachTarEntry(b []byte, fn func(*tar.Header, io.Reader) error) error {
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}
