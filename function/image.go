package function

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ImageSpec describes a FROM scratch image: the files of its single layer and
// its configuration. The zero values of the optional fields are fixed
// defaults, never the time or the environment, so a spec always assembles to
// the same bytes (Architecture defaults to the build machine's GOARCH: set it
// when cross-building).
type ImageSpec struct {
	// Tag is the name the archive asks the engine to tag the image with, in
	// the form name:tag (e.g. "pulse/hello:latest"; a registry host may lead
	// the name). Empty leaves the image untagged: reachable by ID only.
	Tag string
	// Files are the regular files of the image. Their parent directories are
	// created (0755), and so is an empty /tmp (1777) as the mount point of a
	// tmpfs under a read-only root filesystem. Everything is owned by 0:0.
	Files []File
	// Entrypoint and Cmd are the process to run, as exec-form arrays: there
	// is no shell in the image. The program (Entrypoint[0], or Cmd[0] when
	// Entrypoint is empty) must be one of Files.
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
}

// ErrInvalidSpec is wrapped by every validation error of an ImageSpec.
var ErrInvalidSpec = errors.New("invalid image spec")

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
	// maxEpoch is the last second that JSON time (RFC 3339) can hold.
	maxEpoch = 253402300799
	// minHealthDuration is the smallest non-zero duration Docker accepts in
	// a health check.
	minHealthDuration = time.Millisecond
)

// Assemble validates spec and builds its docker-archive. The archive is held
// in memory: its inputs are in memory already, the layer's digest must be
// known before the config and the config's before the manifest, and a deploy
// sends the same bytes to every node.
func Assemble(spec ImageSpec) (Image, error) {
	if err := spec.Validate(); err != nil {
		return Image{}, fmt.Errorf("assemble image: %w", err)
	}
	mtime := time.Unix(spec.SourceDateEpoch, 0).UTC()

	layer, err := writeTar(layerEntries(spec), mtime)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: layer: %w", err)
	}
	layerSum := sha256.Sum256(layer)
	diffID := hex.EncodeToString(layerSum[:])

	config, err := json.Marshal(newImageConfig(spec, "sha256:"+diffID, mtime))
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: config: %w", err)
	}
	configSum := sha256.Sum256(config)
	configHex := hex.EncodeToString(configSum[:])

	m := []manifestEntry{{
		Config: configHex + ".json",
		Layers: []string{diffID + "/" + layerName},
	}}
	if spec.Tag != "" {
		m[0].RepoTags = []string{spec.Tag}
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: manifest: %w", err)
	}

	archive, err := writeTar([]tarEntry{
		{name: configHex + ".json", mode: metaMode, content: config},
		{name: diffID, dir: true, mode: dirMode},
		{name: diffID + "/" + layerName, mode: metaMode, content: layer},
		{name: manifestName, mode: metaMode, content: manifest},
	}, mtime)
	if err != nil {
		return Image{}, fmt.Errorf("assemble image: archive: %w", err)
	}
	return Image{ID: "sha256:" + configHex, Tag: spec.Tag, Archive: archive}, nil
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

// layerEntries lists the layer's directories and files, sorted by name (a
// parent sorts before its children because it is their prefix). It assumes a
// valid spec.
func layerEntries(spec ImageSpec) []tarEntry {
	dirs := imageDirs(spec)
	entries := make([]tarEntry, 0, len(dirs)+len(spec.Files))
	for p, mode := range dirs {
		entries = append(entries, tarEntry{name: p[1:], dir: true, mode: mode})
	}
	for _, f := range spec.Files {
		entries = append(entries, tarEntry{name: f.Path[1:], mode: f.Mode, content: f.Content})
	}
	slices.SortFunc(entries, func(a, b tarEntry) int { return strings.Compare(a.name, b.name) })
	return entries
}

// imageDirs returns the directories the image needs, by absolute path: /tmp,
// the working directory, and the parents of all of these and of the files.
func imageDirs(spec ImageSpec) map[string]fs.FileMode {
	dirs := map[string]fs.FileMode{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = dirMode
			}
		}
	}
	dirs[tmpDir] = tmpMode
	addParents(tmpDir)
	if wd := spec.WorkingDir; wd != "" && wd != "/" {
		if _, ok := dirs[wd]; !ok {
			dirs[wd] = dirMode
		}
		addParents(wd)
	}
	for _, f := range spec.Files {
		addParents(f.Path)
	}
	return dirs
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

// Validate reports every problem of the spec at once, each saying what to
// fix. The error wraps ErrInvalidSpec.
func (s ImageSpec) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if err := validateTag(s.Tag); err != nil {
		add("tag %q: %w", s.Tag, err)
	}

	files := make(map[string]File, len(s.Files))
	pathsOK := true
	for i, f := range s.Files {
		if err := validateImagePath(f.Path); err != nil {
			add("files[%d] %q: %w", i, f.Path, err)
			pathsOK = false
			continue
		}
		if f.Path == tmpDir || strings.HasPrefix(f.Path, tmpDir+"/") {
			add("files[%d] %q: %s is the empty mount point of a tmpfs at run time; put the file elsewhere", i, f.Path, tmpDir)
			pathsOK = false
			continue
		}
		if f.Mode&^fs.ModePerm != 0 {
			add("files[%d] %q: mode %v has bits other than permissions; use e.g. 0644 or 0755", i, f.Path, f.Mode)
		} else if f.Mode&0o004 == 0 {
			add("files[%d] %q: mode %#o does not let the non-root user read the root-owned file; use e.g. 0644 or 0755", i, f.Path, uint32(f.Mode))
		}
		if _, dup := files[f.Path]; dup {
			add("files[%d] %q: duplicate path; list each file once", i, f.Path)
			continue
		}
		files[f.Path] = f
	}

	if s.WorkingDir != "" && s.WorkingDir != "/" {
		if err := validateImagePath(s.WorkingDir); err != nil {
			add("working dir %q: %w", s.WorkingDir, err)
			pathsOK = false
		}
	}
	if pathsOK { // check files against the directories the image needs
		dirs := imageDirs(s)
		for i, f := range s.Files {
			if _, ok := dirs[f.Path]; ok {
				add("files[%d] %q: the path is also a directory of the image (a parent of another file or the working dir); rename one", i, f.Path)
			}
		}
	}

	switch {
	case len(s.Entrypoint) > 0:
		if err := validateProgram(s.Entrypoint[0], files); err != nil {
			add("entrypoint %q: %w", s.Entrypoint[0], err)
		}
	case len(s.Cmd) > 0:
		if err := validateProgram(s.Cmd[0], files); err != nil {
			add("cmd %q: %w", s.Cmd[0], err)
		}
	default:
		add("entrypoint and cmd are both empty; set the program to run, e.g. Entrypoint [\"/pulse-watchdog\"]")
	}

	keys := map[string]bool{}
	for i, e := range s.Env {
		k, _, ok := strings.Cut(e, "=")
		switch {
		case !ok || k == "":
			add("env[%d] %q: want KEY=VALUE", i, e)
		case keys[k]:
			add("env[%d] %q: duplicate variable %s; set it once", i, e, k)
		}
		keys[k] = true
	}

	if err := validateUser(s.User); err != nil {
		add("user %q: %w", s.User, err)
	}

	ports := map[string]bool{}
	for i, p := range s.ExposedPorts {
		if err := validatePort(p); err != nil {
			add("exposed ports[%d] %q: %w", i, p, err)
		} else if ports[p] {
			add("exposed ports[%d] %q: duplicate port; list it once", i, p)
		}
		ports[p] = true
	}

	for _, k := range sortedKeys(s.Labels) {
		if k == "" {
			add("labels: empty key (value %q); name the label", s.Labels[k])
		}
	}

	if s.Healthcheck != nil {
		for _, err := range validateHealthcheck(*s.Healthcheck, files) {
			add("healthcheck: %w", err)
		}
	}

	if s.Architecture != "" && !knownArchitecture(s.Architecture) {
		add("architecture %q: unknown; use a GOARCH such as amd64 or arm64, or leave it empty for %s", s.Architecture, runtime.GOARCH)
	}

	if s.SourceDateEpoch < 0 || s.SourceDateEpoch > maxEpoch {
		add("source date epoch %d: want seconds since 1970 between 0 and %d", s.SourceDateEpoch, maxEpoch)
	}

	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, errors.Join(errs...))
	}
	return nil
}

// knownArchitecture reports whether arch is a GOARCH that Docker images are
// published for.
func knownArchitecture(arch string) bool {
	switch arch {
	case "386", "amd64", "arm", "arm64", "loong64", "mips64le", "ppc64le", "riscv64", "s390x":
		return true
	}
	return false
}

func validateImagePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path; give an absolute path such as /function")
	case !strings.HasPrefix(p, "/"):
		return errors.New("path is relative; make it absolute, e.g. /" + p)
	case strings.ContainsRune(p, 0):
		return errors.New("path contains a NUL byte")
	case p == "/":
		return errors.New("path is the root directory; name a file under it")
	case path.Clean(p) != p:
		return fmt.Errorf("path is not clean; write it as %s", path.Clean(p))
	}
	return nil
}

// validateProgram checks that p, the program of an exec-form command, is an
// executable file of the image.
func validateProgram(p string, files map[string]File) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New("not an absolute path; there is no PATH lookup in a scratch image, name the file, e.g. /" + p)
	}
	f, ok := files[p]
	switch {
	case !ok:
		return errors.New("not among the image's files; add it to Files")
	case f.Mode&0o001 == 0:
		return fmt.Errorf("mode %#o does not let the non-root user run the root-owned file; use 0755", uint32(f.Mode))
	}
	return nil
}

var numericUser = regexp.MustCompile(`^([0-9]+)(?::([0-9]+))?$`)

func validateUser(u string) error {
	m := numericUser.FindStringSubmatch(u)
	if m == nil {
		return errors.New("want a numeric uid[:gid] such as 65534:65534 (the image has no /etc/passwd)")
	}
	uid, err := strconv.ParseUint(m[1], 10, 32)
	if err != nil {
		return fmt.Errorf("uid: %w", err)
	}
	if m[2] != "" {
		if _, err := strconv.ParseUint(m[2], 10, 32); err != nil {
			return fmt.Errorf("gid: %w", err)
		}
	}
	if uid == 0 {
		return errors.New("uid 0 is root; Pulse images run as a non-root user such as 65534:65534")
	}
	return nil
}

var portProto = regexp.MustCompile(`^([0-9]{1,5})/(tcp|udp|sctp)$`)

func validatePort(p string) error {
	m := portProto.FindStringSubmatch(p)
	if m == nil {
		return errors.New("want port/protocol such as 8080/tcp (protocol tcp, udp or sctp)")
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 || n > 65535 {
		return errors.New("port out of range 1-65535")
	}
	return nil
}

func validateHealthcheck(h Healthcheck, files map[string]File) []error {
	var errs []error
	switch {
	case len(h.Test) == 0:
		errs = append(errs, errors.New(`test is empty; use ["CMD", "/program", args...] or ["NONE"]`))
	case h.Test[0] == "NONE":
		if len(h.Test) > 1 {
			errs = append(errs, errors.New(`test ["NONE", ...] takes no arguments`))
		}
	case h.Test[0] == "CMD":
		if len(h.Test) < 2 {
			errs = append(errs, errors.New(`test ["CMD"] names no program; use ["CMD", "/program", args...]`))
		} else if err := validateProgram(h.Test[1], files); err != nil {
			errs = append(errs, fmt.Errorf("test program %q: %w", h.Test[1], err))
		}
	case h.Test[0] == "CMD-SHELL":
		errs = append(errs, errors.New(`test CMD-SHELL needs a shell, which a scratch image lacks; use ["CMD", "/program", args...]`))
	default:
		errs = append(errs, fmt.Errorf(`test kind %q: want "CMD" or "NONE"`, h.Test[0]))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start period", h.StartPeriod}} {
		if d.v != 0 && d.v < minHealthDuration {
			errs = append(errs, fmt.Errorf("%s %v: want 0 (Docker's default) or at least %v", d.name, d.v, minHealthDuration))
		}
	}
	if h.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries %d: want 0 (Docker's default) or more", h.Retries))
	}
	return errs
}

// Reference grammar of github.com/distribution/reference, which the engine
// applies to a loaded archive's RepoTags.
var (
	tagPattern           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	pathComponentPattern = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	domainPattern        = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$`)
	hex64Pattern         = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// maxNameLength is the longest repository name the engine accepts.
const maxNameLength = 255

// validateTag checks name:tag; empty is allowed (untagged image).
func validateTag(ref string) error {
	if ref == "" {
		return nil
	}
	if strings.Contains(ref, "@") {
		return errors.New("a digest cannot be loaded as a tag; use name:tag")
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return fmt.Errorf("no tag; the engine needs one, e.g. %s:latest", ref)
	}
	name, tag := ref[:i], ref[i+1:]
	if !tagPattern.MatchString(tag) {
		return fmt.Errorf("tag %q: use up to 128 letters, digits, _ . and -, not starting with . or -", tag)
	}
	if len(name) > maxNameLength {
		return fmt.Errorf("name is longer than %d characters", maxNameLength)
	}
	parts := strings.Split(name, "/")
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if !domainPattern.MatchString(parts[0]) {
			return fmt.Errorf("registry host %q: want host[:port]", parts[0])
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		if !pathComponentPattern.MatchString(p) {
			return fmt.Errorf("name component %q: use lowercase letters and digits, separated by . _ __ or -", p)
		}
	}
	if len(parts) == 1 && hex64Pattern.MatchString(parts[0]) {
		return errors.New("name is 64 hex digits, which the engine takes for an image ID; choose another name")
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
