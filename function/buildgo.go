package function

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pulsefaas/pulse/contract"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	pulse "github.com/pulsefaas/pulse"
)

// The Go side of a build.
const (
	// sdkVersion is the version a function's go.mod requires of the SDK.
	sdkVersion = "v0.0.0"
	// versionVar is the watchdog's version variable, set at link time.
	versionVar = pulse.SDKModule + "/watchdog.Version"
	// Names in a build's scratch directory: the copy of the function's
	// module, the link to the SDK (the copy's go.mod replaces the SDK's
	// module with "../sdk", so the path recorded in the binary's build
	// info is the same wherever the cache is), and the built executable.
	buildSrcDir  = "src"
	buildSDKLink = "sdk"
	buildOutput  = "function"
	// watchdogCacheDir is the cache's directory of watchdog binaries.
	watchdogCacheDir = "watchdog"
	// omitHTTP2 leaves net/http's bundled HTTP/2 out (385 kB of 6.3 MB):
	// the watchdog serves plain-text HTTP/1.1 to the gateway and proxies
	// HTTP/1.1 to a local process, so HTTP/2 is never used. In-process Go
	// functions are built with it too: their own HTTPS clients then speak
	// HTTP/1.1, and the replica stays inside its size and memory budget.
	omitHTTP2 = "nethttpomithttp2"
	// inProcessTags leave the watchdog's fork and http modes out of an
	// in-process Go function (see package watchdog).
	inProcessTags = omitHTTP2 + ",watchdog_nofork,watchdog_nohttp"
)

// watchdogTags are the build tags of the watchdog binary for mode: only the
// mode the image runs is linked in.
func watchdogTags(mode string) string {
	if mode == contract.ModeHTTP {
		return omitHTTP2 + ",watchdog_nofork"
	}
	return omitHTTP2 + ",watchdog_nohttp"
}

// goEnv is the environment of the go command: static, for Linux on the
// image's architecture, go.mod updated as needed in the build's copy, and no
// workspace.
func (b *imageBuilder) goEnv() []string {
	return toolEnv(b.opts.Env, []string{
		"CGO_ENABLED=0",
		"GOOS=linux",
		"GOARCH=" + b.opts.Arch,
		"GOFLAGS=-mod=mod",
		"GOWORK=off",
	})
}

// goBuildArgs are the arguments of a reproducible, static, stripped go build
// of pkg into out, with extra arguments before the package.
func (b *imageBuilder) goBuildArgs(out, pkg string, extra ...string) []string {
	args := []string{"build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X " + versionVar + "=" + b.opts.Version,
		"-o", out}
	return append(append(args, extra...), pkg)
}

// buildGo builds an in-process Go function. The function's module is copied
// into the scratch directory, so nothing is written into the user's tree and
// the build sees exactly the files the source hash covers; the copy's go.mod
// requires the SDK and replaces it with the SDK written from this binary.
func (b *imageBuilder) buildGo(ctx context.Context) (builtFiles, error) {
	goCmd := b.opts.GoCmd
	if err := lookTool(goCmd, hintGo); err != nil {
		return builtFiles{}, err
	}
	handler := filepath.Join(b.dir, b.spec.Handler)
	if st, err := os.Stat(handler); err != nil {
		return builtFiles{}, invalidBuild("handler %s: %w", b.spec.Handler, err)
	} else if !st.IsDir() {
		return builtFiles{}, invalidBuild("handler %s: want the directory of the function's main package", b.spec.Handler)
	}
	root, err := findModuleRoot(handler)
	if err != nil {
		return builtFiles{}, err
	}
	pkg, _ := withinDir(root, handler)
	if pkg != "." {
		pkg = "./" + pkg
	}

	skip := b.specFileFilter()
	sources, err := readModuleTree(root, skip)
	if err != nil {
		return builtFiles{}, err
	}

	b.progress("compiling (go)…")
	src := filepath.Join(b.tmp, buildSrcDir)
	if err := os.Mkdir(src, 0o755); err != nil {
		return builtFiles{}, err
	}
	if err := writeTree(src, sources); err != nil {
		return builtFiles{}, err
	}
	sdk, err := pulse.WriteSDK(b.opts.CacheDir)
	if err != nil {
		return builtFiles{}, err
	}
	if err := os.Symlink(sdk, filepath.Join(b.tmp, buildSDKLink)); err != nil {
		return builtFiles{}, err
	}
	if err := b.useSDK(ctx, src, root); err != nil {
		return builtFiles{}, inModule(err, src, root)
	}
	out := filepath.Join(b.tmp, buildOutput)
	if _, err := runTool(ctx, src, b.goEnv(), goCmd, b.goBuildArgs(out, pkg, "-tags", inProcessTags)...); err != nil {
		return builtFiles{}, inModule(err, src, root)
	}
	fn, err := os.ReadFile(out)
	if err != nil {
		return builtFiles{}, err
	}
	return builtFiles{function: fn, sources: sources}, nil
}

// inModule makes a failed go command in the module's copy at src read as if
// it ran in the module at root, where the user will look for the files it
// names.
func inModule(err error, src, root string) error {
	var ce *CompileError
	if errors.As(err, &ce) {
		ce.Dir = root
		ce.Output = strings.ReplaceAll(ce.Output, src+string(filepath.Separator), root+string(filepath.Separator))
	}
	return err
}

// specFileFilter reports the function's spec file (and any functions.yml):
// settings, not source, and hashed as settings where they go into the image.
func (b *imageBuilder) specFileFilter() func(string) bool {
	specFile := ""
	if b.spec.File != "" {
		if abs, err := filepath.Abs(b.spec.File); err == nil {
			specFile = abs
		}
	}
	return func(p string) bool { return p == specFile || filepath.Base(p) == SpecFile }
}

// goModJSON is the part of `go mod edit -json` that useSDK reads.
type goModJSON struct {
	Module  struct{ Path string }
	Require []struct{ Path, Version string }
	Replace []struct {
		Old, New struct{ Path, Version string }
	}
}

// useSDK edits the go.mod of the module copy at src (copied from root): it
// requires the SDK if it does not yet, replaces it with ../sdk, and makes the
// module's own directory replacements absolute, since the copy lives
// elsewhere.
func (b *imageBuilder) useSDK(ctx context.Context, src, root string) error {
	out, err := runTool(ctx, src, b.goEnv(), b.opts.GoCmd, "mod", "edit", "-json")
	if err != nil {
		return err
	}
	var mod goModJSON
	if err := json.Unmarshal(out, &mod); err != nil {
		return fmt.Errorf("read go.mod: %w", err)
	}
	if mod.Module.Path == pulse.SDKModule {
		return nil // Pulse's own module: its watchdog is right there
	}
	args := []string{"mod", "edit", "-replace=" + pulse.SDKModule + "=../" + buildSDKLink}
	required := false
	for _, r := range mod.Require {
		required = required || r.Path == pulse.SDKModule
	}
	if !required {
		args = append(args, "-require="+pulse.SDKModule+"@"+sdkVersion)
	}
	for _, r := range mod.Replace {
		if r.Old.Path == pulse.SDKModule || r.New.Version != "" || filepath.IsAbs(r.New.Path) {
			continue
		}
		old := r.Old.Path
		if r.Old.Version != "" {
			old += "@" + r.Old.Version
		}
		args = append(args, "-replace="+old+"="+filepath.Join(root, r.New.Path))
	}
	_, err = runTool(ctx, src, b.goEnv(), b.opts.GoCmd, args...)
	return err
}

// watchdogBinary returns the pulse-watchdog binary (fork and http mode) built
// from the embedded SDK, from the cache if it is there. The cache key covers
// the SDK's hash (its directory's name), the build tags, the Go toolchain and
// target, and the version stamped in.
func (b *imageBuilder) watchdogBinary(ctx context.Context) ([]byte, error) {
	goCmd := b.opts.GoCmd
	if err := lookTool(goCmd, hintGo); err != nil {
		return nil, err
	}
	sdk, err := pulse.WriteSDK(b.opts.CacheDir)
	if err != nil {
		return nil, err
	}
	toolchain, err := runTool(ctx, sdk, b.goEnv(), goCmd, "env", "GOVERSION", "GOOS", "GOARCH", "GOAMD64", "GOARM", "GOARM64", "GO386", "GOEXPERIMENT")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	tags := watchdogTags(b.spec.Mode)
	fmt.Fprintf(h, "sdk %s\nversion %s\ntags %s\ntoolchain %q\n", filepath.Base(sdk), b.opts.Version, tags, toolchain)
	cacheDir := filepath.Join(b.opts.CacheDir, watchdogCacheDir)
	cached := filepath.Join(cacheDir, hex.EncodeToString(h.Sum(nil)))

	if bin, err := os.ReadFile(cached); err == nil {
		b.progress("watchdog from the cache")
		return bin, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	b.progress("building the watchdog (go)…")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "pulse-watchdog")
	if _, err := runTool(ctx, sdk, b.goEnv(), goCmd, b.goBuildArgs(out, "./"+pulse.SDKWatchdogMain, "-tags", tags)...); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	// A rename is atomic: a cached binary is always complete. Concurrent
	// builds write the same bytes.
	if err := os.Rename(out, cached); err != nil {
		return nil, fmt.Errorf("cache the watchdog: %w", err)
	}
	return bin, nil
}
