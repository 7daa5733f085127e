package function

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"
)

// ImageSpec describes a FROM scratch image: the files of its layers (one, or
// two when BaseFiles is set) and its configuration. The zero values of the
// optional fields are fixed defaults, never the time or the environment, so a
// spec always assembles to the same bytes (Architecture defaults to the build
// machine's GOARCH: set it when cross-building).
type ImageSpec struct {
	// Tag is the name the archive asks the engine to tag the image with, in
	// the form name:tag (e.g. "pulse/hello:latest"; a registry host may lead
	// the name). Empty leaves the image untagged: reachable by ID only.
	Tag string
	// Files are the regular files of the image (of its top layer when
	// BaseFiles is set). Their parent directories are created (0755), and so
	// is an empty /tmp (1777) as the mount point of a tmpfs under a
	// read-only root filesystem. Everything is owned by 0:0.
	Files []File
	// BaseFiles, when set, are the image's first layer, under the layer of
	// Files: the watchdog that every fork- and http-mode function shares.
	// That layer holds these files and their parent directories only, in
	// path order, stamped with time 0 rather than SourceDateEpoch, so it is
	// the same tar (the same diff ID) in every image with the same
	// BaseFiles, and an engine that has it from one of them needs only the
	// top layer of the next (Image.Thin). The image is labelled
	// LabelBaseLayer with that diff ID, so an engine can be asked whether it
	// holds the layer. A path is in BaseFiles or Files, not both.
	BaseFiles []File
	// Entrypoint and Cmd are the process to run, as exec-form arrays: there
	// is no shell in the image. The program (Entrypoint[0], or Cmd[0] when
	// Entrypoint is empty) must be one of Files or BaseFiles.
	Entrypoint []string
	Cmd        []string
	// Env holds KEY=VALUE entries.
	Env []string
	// User is the numeric uid[:gid] the process runs as; it must not be root.
	// Numeric because the image has no /etc/passwd.
	User string
	// WorkingDir is an absolute directory; it is created in the image when
	// it is not "/". Empty means Docker's default, "/".
	WorkingDir string
	// ExposedPorts are "port/protocol" entries (protocol tcp, udp or sctp).
	ExposedPorts []string
	// Labels are the image's labels.
	Labels map[string]string
	// Healthcheck, when set, is the image's health check.
	Healthcheck *Healthcheck
	// Architecture is the GOARCH the binaries were built for; empty means
	// runtime.GOARCH.
	Architecture string
	// SourceDateEpoch is the time, in seconds since the Unix epoch, stamped
	// on every file and on the image's creation: 0 (1970-01-01) unless the
	// caller pins another fixed time (Build uses SOURCE_DATE_EPOCH, else
	// the newest modification time of the function's source). It is never
	// the current time, so the same inputs give the same image ID.
	SourceDateEpoch int64
}

// File is a regular file in an image.
type File struct {
	// Path is absolute and clean, e.g. "/function".
	Path string
	// Mode holds permission bits only. Files are owned by root and images
	// run as a non-root user, so "other" must be able to read it (0644), and
	// to execute it if it is a program (0755).
	Mode fs.FileMode
	// Content is the file's bytes.
	Content []byte
}

// Healthcheck is Docker's image health check. Durations are 0 (Docker's
// default) or at least a millisecond.
type Healthcheck struct {
	// Test is ["CMD", program, args...] or ["NONE"]. CMD-SHELL is refused:
	// there is no shell in the image.
	Test []string
	// Interval between checks; the first check runs one interval after
	// start.
	Interval time.Duration
	// Timeout of one check.
	Timeout time.Duration
	// StartPeriod during which failures do not count.
	StartPeriod time.Duration
	// Retries is the number of consecutive failures that make the container
	// unhealthy; 0 means Docker's default.
	Retries int
}

// Image is an assembled image.
type Image struct {
	// ID is the engine's image ID: "sha256:" and the hex sha256 of the
	// config JSON.
	ID string
	// Tag is ImageSpec.Tag: the tag the engine gives the image on load.
	Tag string
	// Archive is the docker-archive tar to load with `docker load` or the
	// engine's ImageLoad.
	Archive []byte
	// BaseLayer is the diff ID ("sha256:…") of the image's first layer when
	// it is shared (ImageSpec.BaseFiles), empty for a one-layer image.
	BaseLayer string
	// Thin is Archive without BaseLayer's data (ThinArchive): an engine that
	// holds that layer loads the same image, with the same ID, from it; one
	// that lacks it refuses it and changes nothing. Nil when BaseLayer is
	// empty.
	Thin []byte
}

// LabelBaseLayer is the label Assemble puts on an image with a shared base
// layer (ImageSpec.BaseFiles): that layer's diff ID. An engine holds the
// layer if it lists an image with this label and value, since an image
// keeps its layers; no Docker API lists layers themselves.
const LabelBaseLayer = "pulse.base-layer"

// Fixed parts of the assembled image.
const (
	imageOS      = "linux"
	tmpDir       = "/tmp"
	tmpMode      = fs.ModeSticky | 0o777 // 1777: writable by all, sticky
	dirMode      = fs.FileMode(0o755)
	metaMode     = fs.FileMode(0o644) // mode of the archive's own files
	manifestName = "manifest.json"
	layerName    = "layer.tar"
	historyBy    = "pulse: assemble FROM scratch image"
	baseBy       = "pulse: shared base layer"
	// maxEpoch is the last second that JSON time (RFC 3339) can hold.
	maxEpoch = 253402300799
	// minHealthDuration is the smallest non-zero duration Docker accepts in
	// a health check.
	minHealthDuration = time.Millisecond
)

// Assemble validates spec and builds its docker-archive. The archive is held
// in memory: its inputs are in memory already, the layers' digests must be
// known before the config and the config's before the manifest, and a deploy
// sends the same bytes to every node.
func Assemble(spec ImageSpec) (Image, error) {
	if err := spec.Validate(); err != nil {
		return Image{}, fmt.Errorf("assemble image: %w", err)
	}
	mtime := time.Unix(spec.SourceDateEpoch, 0).UTC()

	var layers []assembledLayer
	if len(spec.BaseFiles) > 0 {
		// Time 0, whatever the function's epoch: the layer depends on
		// the base files alone.
		base, err := newLayer(baseLayerEntries(spec), time.Unix(0, 0).UTC())
		if err != nil {
			return Image{}, fmt.Errorf("assemble image: base layer: %w", err)
		}
		layers = append(layers, base)
	}
	top, err := newLayer(layerEntries(spec), mtime)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: layer: %w", err)
	}
	layers = append(layers, top)

	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = "sha256:" + l.diffID
	}
	cfg := newImageConfig(spec, diffIDs[len(diffIDs)-1], mtime)
	baseLayer := ""
	if len(layers) > 1 {
		baseLayer = diffIDs[0]
		cfg.RootFS.DiffIDs = diffIDs
		cfg.History = append([]history{{Created: mtime, CreatedBy: baseBy}}, cfg.History...)
		cfg.Config.Labels = maps.Clone(spec.Labels)
		if cfg.Config.Labels == nil {
			cfg.Config.Labels = map[string]string{}
		}
		cfg.Config.Labels[LabelBaseLayer] = baseLayer
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: config: %w", err)
	}
	configSum := sha256.Sum256(config)
	configHex := hex.EncodeToString(configSum[:])

	m := []manifestEntry{{Config: configHex + ".json"}}
	for _, l := range layers {
		m[0].Layers = append(m[0].Layers, l.diffID+"/"+layerName)
	}
	if spec.Tag != "" {
		m[0].RepoTags = []string{spec.Tag}
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: manifest: %w", err)
	}

	entries := []tarEntry{{name: configHex + ".json", mode: metaMode, content: config}}
	for _, l := range layers {
		entries = append(entries,
			tarEntry{name: l.diffID, dir: true, mode: dirMode},
			tarEntry{name: l.diffID + "/" + layerName, mode: metaMode, content: l.tar})
	}
	entries = append(entries, tarEntry{name: manifestName, mode: metaMode, content: manifest})
	archive, err := writeTar(entries, mtime)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: archive: %w", err)
	}
	img := Image{ID: "sha256:" + configHex, Tag: spec.Tag, Archive: archive, BaseLayer: baseLayer}
	if baseLayer != "" {
		if img.Thin, err = ThinArchive(archive, baseLayer); err != nil {
			return Image{}, fmt.Errorf("assemble image: %w", err)
		}
	}
	return img, nil
}

// assembledLayer is a layer's tar and its diff ID (hex, without "sha256:").
type assembledLayer struct {
	tar    []byte
	diffID string
}

func newLayer(entries []tarEntry, mtime time.Time) (assembledLayer, error) {
	b, err := writeTar(entries, mtime)
	if err != nil {
		return assembledLayer{}, err
	}
	sum := sha256.Sum256(b)
	return assembledLayer{tar: b, diffID: hex.EncodeToString(sum[:])}, nil
}

// manifestEntry is one image in a docker-archive's manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// imageConfig is the image config JSON (Docker image spec v1.2, which OCI's
// image config extends). Field order is the JSON order; maps marshal with
// sorted keys, so the encoding is deterministic.
type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      time.Time       `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
	History      []history       `json:"history"`
}

type containerConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	Healthcheck  *healthConfig       `json:"Healthcheck,omitempty"`
}

// healthConfig is Docker's HealthConfig: durations in nanoseconds.
type healthConfig struct {
	Test        []string `json:"Test"`
	Interval    int64    `json:"Interval,omitempty"`
	Timeout     int64    `json:"Timeout,omitempty"`
	StartPeriod int64    `json:"StartPeriod,omitempty"`
	Retries     int      `json:"Retries,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

func newImageConfig(spec ImageSpec, diffID string, created time.Time) imageConfig {
	c := imageConfig{
		Architecture: spec.Architecture,
		OS:           imageOS,
		Created:      created,
		Config: containerConfig{
			User:       spec.User,
			Env:        spec.Env,
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			WorkingDir: spec.WorkingDir,
			Labels:     spec.Labels,
		},
		RootFS:  rootFS{Type: "layers", DiffIDs: []string{diffID}},
		History: []history{{Created: created, CreatedBy: historyBy}},
	}
	if c.Architecture == "" {
		c.Architecture = runtime.GOARCH
	}
	if len(spec.ExposedPorts) > 0 {
		c.Config.ExposedPorts = make(map[string]struct{}, len(spec.ExposedPorts))
		for _, p := range spec.ExposedPorts {
			c.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if h := spec.Healthcheck; h != nil {
		c.Config.Healthcheck = &healthConfig{
			Test:        h.Test,
			Interval:    int64(h.Interval),
			Timeout:     int64(h.Timeout),
			StartPeriod: int64(h.StartPeriod),
			Retries:     h.Retries,
		}
	}
	return c
}

// tarEntry is a regular file or a directory of a tar stream.
type tarEntry struct {
	name    string // relative, without a trailing slash
	dir     bool
	mode    fs.FileMode
	content []byte
}

// layerEntries lists the top layer's directories and files, sorted by name
// (a parent sorts before its children because it is their prefix). It
// assumes a valid spec.
func layerEntries(spec ImageSpec) []tarEntry {
	return sortedEntries(topLayerDirs(spec), spec.Files)
}

// baseLayerEntries lists the base layer's: BaseFiles and their parents.
func baseLayerEntries(spec ImageSpec) []tarEntry {
	dirs := map[string]fs.FileMode{}
	for _, f := range spec.BaseFiles {
		addParents(dirs, f.Path)
	}
	return sortedEntries(dirs, spec.BaseFiles)
}

func sortedEntries(dirs map[string]fs.FileMode, files []File) []tarEntry {
	entries := make([]tarEntry, 0, len(dirs)+len(files))
	for p, mode := range dirs {
		entries = append(entries, tarEntry{name: p[1:], dir: true, mode: mode})
	}
	for _, f := range files {
		entries = append(entries, tarEntry{name: f.Path[1:], mode: f.Mode, content: f.Content})
	}
	slices.SortFunc(entries, func(a, b tarEntry) int { return strings.Compare(a.name, b.name) })
	return entries
}

// imageDirs returns every directory of the image, by absolute path: those
// of the top layer and the parents of the base files.
func imageDirs(spec ImageSpec) map[string]fs.FileMode {
	dirs := topLayerDirs(spec)
	for _, f := range spec.BaseFiles {
		addParents(dirs, f.Path)
	}
	return dirs
}

// topLayerDirs returns the directories the top layer needs, by absolute
// path: /tmp, the working directory, and the parents of all of these and of
// the files.
func topLayerDirs(spec ImageSpec) map[string]fs.FileMode {
	dirs := map[string]fs.FileMode{}
	dirs[tmpDir] = tmpMode
	addParents(dirs, tmpDir)
	if wd := spec.WorkingDir; wd != "" && wd != "/" {
		if _, ok := dirs[wd]; !ok {
			dirs[wd] = dirMode
		}
		addParents(dirs, wd)
	}
	for _, f := range spec.Files {
		addParents(dirs, f.Path)
	}
	return dirs
}

// addParents adds p's parent directories (0755) that dirs lacks.
func addParents(dirs map[string]fs.FileMode, p string) {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := dirs[d]; !ok {
			dirs[d] = dirMode
		}
	}
}

// writeTar writes entries in order, owned by 0:0 and stamped with mtime.
func writeTar(entries []tarEntry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:     e.name,
			Mode:     tarMode(e.mode),
			ModTime:  mtime,
			Typeflag: tar.TypeReg,
			Size:     int64(len(e.content)),
		}
		if e.dir {
			h.Name += "/"
			h.Typeflag = tar.TypeDir
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write %s: %w", h.Name, err)
		}
		if _, err := tw.Write(e.content); err != nil {
			return nil, fmt.Errorf("write %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close: %w", err)
	}
	return buf.Bytes(), nil
}

// tarMode converts permission and sticky bits to tar's mode field.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000 // c_ISVTX
	}
	return mode
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
