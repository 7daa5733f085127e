package function

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	pulse "github.com/pulsefaas/pulse"
	"github.com/pulsefaas/pulse/contract"
)

// Paths and settings of a built function's image.
const (
	// FunctionPath is the function's executable in the image: the whole
	// program of an in-process Go function, the process the watchdog runs
	// otherwise.
	FunctionPath = "/function"
	// WatchdogPath is the watchdog binary in fork and http mode images.
	WatchdogPath = "/pulse-watchdog"
	// ImageUser is the numeric user the image runs as ("nobody").
	ImageUser = "65534:65534"
	// ImageRepository prefixes the tag of every built image:
	// pulse/<name>:<first 12 hex digits of the source hash>.
	ImageRepository = "pulse/"
	// LabelVersion is the image label holding the Pulse version that built
	// it, and LabelSourceHash the hex sha256 of its source (BuildInfo's).
	// The function's name is in contract.LabelFunction.
	LabelVersion    = "pulse.version"
	LabelSourceHash = "pulse.source-hash"
	// DefaultVersion is the version stamped when BuildOptions.Version is
	// empty.
	DefaultVersion = "dev"
	// sourceTagLength is how much of the source hash the image tag shows.
	sourceTagLength = 12
)

// The image's health check: the entrypoint run with -healthcheck, which probes
// the watchdog's health endpoint (there is no shell in the image). A deploy
// may set its own timing on the service.
const (
	healthInterval = 5 * time.Second
	healthTimeout  = 3 * time.Second
	healthRetries  = 3
)

// BuildOptions are the settings of Build; the zero value builds with the
// tools on PATH, the default cache and version DefaultVersion.
type BuildOptions struct {
	// Progress receives one line per step ("hello: compiling (go)…");
	// nil discards them.
	Progress io.Writer
	// CacheDir holds the watchdog SDK and the built watchdog binaries;
	// empty means ~/.cache/pulse (see pulse.DefaultCacheDir).
	CacheDir string
	// Version is Pulse's version: stamped into the watchdog and on the
	// image's pulse.version label. Empty means DefaultVersion. Letters,
	// digits and . _ + - only.
	Version string
	// GoCmd, CC and CXX are the Go command and the C and C++ compilers:
	// "go", "gcc" and "g++" by default, looked up on PATH.
	GoCmd, CC, CXX string
	// Arch is the GOARCH of the image; empty means this machine's. The C and
	// C++ compilers must produce it (set CC and CXX to cross compilers).
	Arch string
	// Env holds extra KEY=VALUE entries for the tools, after this process's
	// environment (e.g. GOPROXY). The settings a static, reproducible build
	// needs (CGO_ENABLED, GOOS, GOARCH, GOFLAGS, GOWORK) are Build's.
	Env []string
}

// BuildInfo describes a finished build.
type BuildInfo struct {
	Lang string
	// SourceHash is the hex sha256 over the function's source files (their
	// paths relative to the source root, normalised modes and contents) and
	// the settings baked into the image: language, mode, arguments,
	// environment and architecture. It does not depend on where the source
	// lives, so two copies of a function build the same image.
	SourceHash string
	// BinarySize is the size of the function's executable, /function.
	BinarySize int64
	// ImageSize is the size of the image's files (function and watchdog):
	// the engine's count of the image's size.
	ImageSize int64
	Duration  time.Duration
}

// Build errors that callers may want to tell apart. Compiler failures are a
// *CompileError.
var (
	// ErrInvalidBuild is wrapped by errors in the spec or the options
	// that make a build impossible before any tool runs.
	ErrInvalidBuild = errors.New("cannot build")
	// ErrToolNotFound means a compiler or the go command is not installed.
	ErrToolNotFound = errors.New("missing tool")
	// ErrNotStatic means a function executable is not a static Linux
	// executable for the image's architecture.
	ErrNotStatic = errors.New("not a static Linux executable")
)

// invalidBuildError is an error that makes a build impossible: it matches
// ErrInvalidBuild (and whatever it wraps: a *SpecError from the spec's
// check) without repeating "cannot build" after Build's "build NAME: ".
type invalidBuildError struct{ err error }

func (e *invalidBuildError) Error() string   { return e.err.Error() }
func (e *invalidBuildError) Unwrap() []error { return []error{ErrInvalidBuild, e.err} }

// invalidBuild formats an error wrapping ErrInvalidBuild.
func invalidBuild(format string, args ...any) error {
	return &invalidBuildError{err: fmt.Errorf(format, args...)}
}

// Build compiles the function of spec (a complete spec, as ParseSpecs returns
// it: Build checks it with Spec.Validate) into static binaries and assembles
// its FROM scratch image (see Assemble); it does not load it into an engine.
// The same source, spec settings, Pulse version and toolchain give the same
// image ID. A Go function needs nothing from the network: the watchdog library
// comes from the SDK embedded in this binary (pulse.WriteSDK), anything else
// through the Go module proxy.
//
//   - go: spec.Handler is the main package's directory in a module that
//     requires github.com/pulsefaas/pulse; the binary is the whole image.
//   - c, cpp: spec.Handler is a source file or a directory of them, compiled
//     with -static; the image adds the watchdog (fork mode).
//   - bin: spec.Handler is a static executable, copied as is; the image adds
//     the watchdog (fork or http mode).
func Build(ctx context.Context, spec Spec, opts BuildOptions) (Image, BuildInfo, error) {
	start := time.Now()
	b, err := newBuilder(spec, opts)
	if err != nil {
		return Image{}, BuildInfo{}, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	tmp, err := os.MkdirTemp("", "pulse-build-")
	if err != nil {
		return Image{}, BuildInfo{}, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	defer os.RemoveAll(tmp)
	b.tmp = tmp

	img, info, err := b.build(ctx)
	if err != nil {
		return Image{}, BuildInfo{}, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	info.Duration = time.Since(start)
	return img, info, nil
}

// imageBuilder holds one build's settings, with the options' defaults
// applied.
type imageBuilder struct {
	spec Spec
	opts BuildOptions
	dir  string // spec.Dir, absolute
	tmp  string // scratch directory, removed after the build
}

// versionPattern is what BuildOptions.Version may hold: it goes into a
// linker flag and a label.
var versionPattern = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+-]*$`)

func newBuilder(spec Spec, opts BuildOptions) (*imageBuilder, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.GoCmd == "" {
		opts.GoCmd = "go"
	}
	if opts.CC == "" {
		opts.CC = "gcc"
	}
	if opts.CXX == "" {
		opts.CXX = "g++"
	}
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	if opts.CacheDir == "" {
		d, err := pulse.DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		opts.CacheDir = d
	}

	if err := spec.Validate(); err != nil {
		return nil, invalidBuild("%w", err)
	}
	var errs []error
	if spec.Dir == "" {
		errs = append(errs, errors.New("the spec has no directory (Dir): the handler path is relative to it"))
	}
	if !versionPattern.MatchString(opts.Version) {
		errs = append(errs, fmt.Errorf("version %q: use letters, digits and . _ + - only", opts.Version))
	}
	if !knownArchitecture(opts.Arch) {
		errs = append(errs, fmt.Errorf("architecture %q: want a GOARCH such as amd64 or arm64", opts.Arch))
	}
	if len(errs) > 0 {
		return nil, invalidBuild("%w", errors.Join(errs...))
	}

	dir, err := absPath(spec.Dir)
	if err != nil {
		return nil, err
	}
	cache, err := absPath(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	opts.CacheDir = cache
	return &imageBuilder{spec: spec, opts: opts, dir: dir}, nil
}

// builtFiles are what a language's build produces for the image.
type builtFiles struct {
	function []byte       // /function
	watchdog []byte       // /pulse-watchdog; nil for an in-process function
	sources  []sourceFile // what the source hash covers
}

func (b *imageBuilder) build(ctx context.Context) (Image, BuildInfo, error) {
	env := b.imageEnv()
	var (
		a   builtFiles
		err error
	)
	switch b.spec.Lang {
	case LangGo:
		a, err = b.buildGo(ctx)
	case LangC, LangCPP:
		a, err = b.buildC(ctx)
	case LangBin:
		a, err = b.buildBin(ctx)
	}
	if err != nil {
		return Image{}, BuildInfo{}, err
	}
	if err := checkStatic(a.function, b.opts.Arch); err != nil {
		return Image{}, BuildInfo{}, fmt.Errorf("%s: %w", FunctionPath, err)
	}
	if a.watchdog != nil {
		if err := checkStatic(a.watchdog, b.opts.Arch); err != nil {
			return Image{}, BuildInfo{}, fmt.Errorf("%s (from %s): %w", WatchdogPath, b.opts.CacheDir, err)
		}
	}

	hash := sourceHash(a.sources, b.imageSettings(env))
	epoch, err := b.sourceDateEpoch(a.sources)
	if err != nil {
		return Image{}, BuildInfo{}, err
	}
	b.progress("assembling the image…")
	img, err := Assemble(b.imageSpec(a, env, hash, epoch))
	if err != nil {
		return Image{}, BuildInfo{}, err
	}
	info := BuildInfo{
		Lang:       b.spec.Lang,
		SourceHash: hash,
		BinarySize: int64(len(a.function)),
		ImageSize:  int64(len(a.function) + len(a.watchdog)),
	}
	return img, info, nil
}

// imageEnv is the image's environment: the watchdog's settings from the spec
// (sorted), then the user's variables in key order. Spec.Validate keeps the
// two apart (PULSE_ names are reserved).
func (b *imageBuilder) imageEnv() []string {
	env := b.spec.WatchdogEnv()
	for _, k := range sortedKeys(b.spec.Env) {
		env = append(env, k+"="+b.spec.Env[k])
	}
	return env
}

// imageSettings are the spec's settings that go into the image, for the
// source hash.
func (b *imageBuilder) imageSettings(env []string) []sourceSetting {
	s := []sourceSetting{
		{"lang", b.spec.Lang},
		{"mode", b.spec.Mode},
		{"arch", b.opts.Arch},
	}
	for _, a := range b.spec.Args {
		s = append(s, sourceSetting{"arg", a})
	}
	for _, e := range env {
		s = append(s, sourceSetting{"env", e})
	}
	return s
}

// EnvSourceDateEpoch pins the image's creation time (and every file's
// time in it) to these seconds since 1970, as in reproducible builds
// (https://reproducible-builds.org/specs/source-date-epoch/); CI can set it
// to the commit time: SOURCE_DATE_EPOCH=$(git log -1 --format=%ct).
const EnvSourceDateEpoch = "SOURCE_DATE_EPOCH"

// sourceDateEpoch is the image's creation time, in seconds since 1970:
// SOURCE_DATE_EPOCH when set (BuildOptions.Env first, then this process's
// environment), else the newest modification time of the function's own
// source files (not system headers). Never the build's time: the same
// source files give the same image ID, and the image's age says when its
// source last changed. (A touch or a fresh checkout changes it, and so the
// image ID, though not the source hash or the tag.)
func (b *imageBuilder) sourceDateEpoch(sources []sourceFile) (int64, error) {
	v, set := "", false
	for _, e := range b.opts.Env {
		if k, val, _ := strings.Cut(e, "="); k == EnvSourceDateEpoch {
			v, set = val, true
		}
	}
	if !set {
		v, set = os.LookupEnv(EnvSourceDateEpoch)
	}
	if set && v != "" {
		return parseSourceDateEpoch(v)
	}
	var newest int64
	for _, f := range sources {
		if !f.mtime.IsZero() {
			newest = max(newest, f.mtime.Unix())
		}
	}
	return min(newest, maxEpoch), nil
}

// parseSourceDateEpoch reads a SOURCE_DATE_EPOCH value: whole seconds
// since 1970, up to the last second JSON time can hold.
func parseSourceDateEpoch(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > maxEpoch {
		return 0, invalidBuild("%s=%q: want whole seconds since 1970 (0 to %d), e.g. $(git log -1 --format=%%ct)", EnvSourceDateEpoch, v, int64(maxEpoch))
	}
	return n, nil
}

// imageSpec is the function's image. In fork and http mode the watchdog is a
// layer of its own under the function's (BaseFiles): the same bytes in
// every function built with the same watchdog, so a node that holds one of
// them is sent only the function's layer of the next. An in-process Go
// function is one binary, one layer.
func (b *imageBuilder) imageSpec(a builtFiles, env []string, hash string, epoch int64) ImageSpec {
	entry := FunctionPath
	var base []File
	if a.watchdog != nil {
		entry = WatchdogPath
		base = []File{{Path: WatchdogPath, Mode: 0o755, Content: a.watchdog}}
	}
	return ImageSpec{
		Tag:          ImageRepository + b.spec.Name + ":" + hash[:sourceTagLength],
		Files:        []File{{Path: FunctionPath, Mode: 0o755, Content: a.function}},
		BaseFiles:    base,
		Entrypoint:   []string{entry},
		Env:          env,
		User:         ImageUser,
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
		Labels: map[string]string{
			contract.LabelFunction: b.spec.Name,
			LabelVersion:           b.opts.Version,
			LabelSourceHash:        hash,
		},
		Healthcheck: &Healthcheck{
			Test:     []string{"CMD", entry, "-healthcheck"},
			Interval: healthInterval,
			Timeout:  healthTimeout,
			Retries:  healthRetries,
		},
		Architecture:    b.opts.Arch,
		SourceDateEpoch: epoch,
	}
}

// progress writes one progress line, prefixed with the function's name.
func (b *imageBuilder) progress(format string, args ...any) {
	fmt.Fprintf(b.opts.Progress, "%s: %s\n", b.spec.Name, fmt.Sprintf(format, args...))
}
