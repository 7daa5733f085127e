package function

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// testVersion is the Pulse version the build tests stamp.
const testVersion = "v0.0.0-test"

// Size budgets of built images (decimal megabytes, as Docker counts).
var imageBudgets = map[string]int64{
	LangGo:  7_000_000,
	LangC:   7_000_000,
	LangCPP: 8_000_000,
	LangBin: 7_000_000,
}

// buildFixture is a function of testdata/build (or generated) to build.
type buildFixture struct {
	name    string
	lang    string
	mode    string
	handler string
	// source is the fixture's directory under testdata/build; empty for
	// bin, whose executable the test compiles from testdata/echo.c.
	source string
	// files are the paths the source hash must cover, relative to the
	// copy's root.
	files []string
}

var buildFixtures = []buildFixture{
	{name: "hello", lang: LangGo, mode: contract.ModeInProcess, handler: "handler", source: "go",
		files: []string{"go.mod", "handler/main.go"}},
	{name: "echo", lang: LangC, mode: contract.ModeFork, handler: "handler", source: "c",
		files: []string{"handler/echo.c", "handler/echo.h"}},
	{name: "params", lang: LangCPP, mode: contract.ModeFork, handler: "params.cpp", source: "cpp",
		files: []string{"params.cpp"}},
	{name: "static", lang: LangBin, mode: contract.ModeFork, handler: "echo",
		files: []string{"echo"}},
}

// fixtureSpec copies the fixture into a new temporary directory (outside the
// repository) and returns its spec there.
func fixtureSpec(t *testing.T, f buildFixture) Spec {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fn")
	if f.source != "" {
		if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "build", f.source))); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.handler), staticEcho(t), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return withDefaults(Spec{
		Name:    f.name,
		Lang:    f.lang,
		Mode:    f.mode,
		Handler: f.handler,
		Env:     map[string]string{"GREETING": "hi there"},
		Dir:     dir,
		File:    filepath.Join(dir, SpecFile),
	})
}

// withDefaults completes a spec built in a test as the spec file parser would.
func withDefaults(s Spec) Spec {
	s.Timeout, s.MaxBody, s.Scale = DefaultTimeout, DefaultMaxBody, DefaultScale()
	if s.Mode == contract.ModeHTTP && s.Port == 0 {
		s.Port = DefaultPort
	}
	return s
}

// staticEcho is testdata/echo.c compiled statically: the bin fixture.
func staticEcho(t *testing.T) []byte {
	t.Helper()
	return buildEcho(t)
}

// buildOpts are build options for a test: a cache of its own, progress into
// a buffer.
func buildOpts(t *testing.T, progress io.Writer, env ...string) BuildOptions {
	return BuildOptions{Progress: progress, CacheDir: t.TempDir(), Version: testVersion, Env: env}
}

// archiveImage is what an image's docker-archive holds.
type archiveImage struct {
	config imageConfig
	tag    string
	files  map[string]archiveFile // regular files of every layer
	layers [][]string             // the regular files of each layer, in order
}

type archiveFile struct {
	mode    int64
	content []byte
}

// readArchive unpacks a docker-archive assembled by Assemble.
func readArchive(t *testing.T, archive []byte) archiveImage {
	t.Helper()
	entries := untar(t, archive)
	var manifest []manifestEntry
	if err := json.Unmarshal(entries[manifestName], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest: %v (%d images)", err, len(manifest))
	}
	img := archiveImage{files: map[string]archiveFile{}}
	if err := json.Unmarshal(entries[manifest[0].Config], &img.config); err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(manifest[0].RepoTags) == 1 {
		img.tag = manifest[0].RepoTags[0]
	}
	for _, l := range manifest[0].Layers {
		var names []string
		tr := tar.NewReader(bytes.NewReader(entries[l]))
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			img.files["/"+h.Name] = archiveFile{mode: h.Mode, content: b}
			names = append(names, "/"+h.Name)
		}
		img.layers = append(img.layers, names)
	}
	return img
}

// untar reads the regular files of a tar.
func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBuild builds every language's fixture with the real tools and checks
// the image: files, entrypoint, health check, environment, labels, user,
// port, tag, BuildInfo and the size budget.
func TestBuild(t *testing.T) {
	for _, f := range buildFixtures {
		t.Run(f.lang, func(t *testing.T) {
			t.Parallel()
			spec := fixtureSpec(t, f)
			var progress bytes.Buffer
			img, info, err := Build(t.Context(), spec, buildOpts(t, &progress))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: image %d bytes (function %d) in %v\n%s", f.lang, info.ImageSize, info.BinarySize, info.Duration.Round(time.Millisecond), progress.String())
			got := readArchive(t, img.Archive)
			cfg := got.config.Config

			// The watchdog is a layer of its own, under the function's.
			entry := WatchdogPath
			wantFiles := []string{FunctionPath, WatchdogPath}
			wantLayers := [][]string{{WatchdogPath}, {FunctionPath}}
			if f.lang == LangGo {
				entry = FunctionPath
				wantFiles = []string{FunctionPath}
				wantLayers = [][]string{{FunctionPath}}
			}
			if !reflect.DeepEqual(got.layers, wantLayers) {
				t.Errorf("layers %q, want %q", got.layers, wantLayers)
			}
			var files []string
			var size int64
			for p, file := range got.files {
				files = append(files, p)
				size += int64(len(file.content))
				if file.mode != 0o755 {
					t.Errorf("%s: mode %#o, want 0755", p, file.mode)
				}
				if err := checkStatic(file.content, runtimeGOARCH()); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
			slices.Sort(files)
			slices.Sort(wantFiles)
			if !reflect.DeepEqual(files, wantFiles) {
				t.Errorf("image files %q, want %q", files, wantFiles)
			}

			wantEnv := append(spec.WatchdogEnv(), "GREETING=hi there")
			wantLabels := map[string]string{
				contract.LabelFunction: f.name,
				LabelVersion:           testVersion,
				LabelSourceHash:        info.SourceHash,
			}
			if f.lang != LangGo {
				wantLabels[LabelBaseLayer] = got.config.RootFS.DiffIDs[0]
			}
			gotConfig := []any{cfg.Entrypoint, cfg.Cmd, cfg.Env, cfg.User, cfg.ExposedPorts, cfg.Labels, cfg.Healthcheck.Test, got.config.Architecture}
			wantConfig := []any{[]string{entry}, []string(nil), wantEnv, "65534:65534", map[string]struct{}{"8080/tcp": {}}, wantLabels,
				[]string{"CMD", entry, "-healthcheck"}, runtimeGOARCH()}
			if !reflect.DeepEqual(gotConfig, wantConfig) {
				t.Errorf("image config (entrypoint, cmd, env, user, ports, labels, health test, arch):\n got %q\nwant %q", gotConfig, wantConfig)
			}

			// The watchdog runs the function where the image has it.
			if exec := contract.EnvExec + `=["` + FunctionPath + `"]`; f.lang != LangGo && !slices.Contains(cfg.Env, exec) {
				t.Errorf("env %q lacks %s", cfg.Env, exec)
			}

			wantTag := "pulse/" + f.name + ":" + info.SourceHash[:12]
			if img.Tag != wantTag || got.tag != wantTag {
				t.Errorf("tag %q (archive %q), want %q", img.Tag, got.tag, wantTag)
			}
			wantInfo := BuildInfo{Lang: f.lang, SourceHash: info.SourceHash, BinarySize: int64(len(got.files[FunctionPath].content)), ImageSize: size, Duration: info.Duration}
			if info != wantInfo || len(info.SourceHash) != 64 || info.Duration <= 0 {
				t.Errorf("BuildInfo %+v, want %+v with a 64-digit hash and a duration", info, wantInfo)
			}
			if budget := imageBudgets[f.lang]; info.ImageSize > budget {
				t.Errorf("image size %d bytes is over the %s budget of %d", info.ImageSize, f.lang, budget)
			}
			if line := f.name + ": compiling (" + f.lang + ")…\n"; f.lang != LangBin && !strings.Contains(progress.String(), line) {
				t.Errorf("progress %q lacks %q", progress.String(), line)
			}
		})
	}
}

// TestBuildDeterministic builds two copies of each fixture, in different
// directories with different caches, and expects the same archive; then a
// changed source file, and a changed sourceSetting, must each change the ID.
func TestBuildDeterministic(t *testing.T) {
	changes := map[string]struct {
		file, text string // appended to file
	}{
		LangGo:  {"handler/main.go", "\n// changed\n"},
		LangC:   {"handler/echo.h", "\n/* changed */\n"}, // a header: found through -MM
		LangCPP: {"params.cpp", "\n// changed\n"},
		LangBin: {"echo", "\x00"}, // trailing bytes do not hurt an ELF
	}
	for _, f := range buildFixtures {
		t.Run(f.lang, func(t *testing.T) {
			t.Parallel()
			build := func(spec Spec) (Image, BuildInfo) {
				t.Helper()
				img, info, err := Build(t.Context(), spec, buildOpts(t, nil))
				if err != nil {
					t.Fatal(err)
				}
				return img, info
			}
			a, b := fixtureSpec(t, f), fixtureSpec(t, f)
			if f.lang == LangBin { // the same executable in both copies
				copyFile(t, filepath.Join(a.Dir, f.handler), filepath.Join(b.Dir, f.handler))
			}
			// Copies that keep the files' times (cp -p, rsync -t): the
			// image's creation time is the newest source file's.
			sourceTime := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
			setTimes(t, a.Dir, sourceTime)
			setTimes(t, b.Dir, sourceTime)
			imgA, infoA := build(a)
			imgB, infoB := build(b)
			if imgA.ID != imgB.ID || !bytes.Equal(imgA.Archive, imgB.Archive) || infoA.SourceHash != infoB.SourceHash {
				t.Fatalf("two copies of the source: images %s and %s, source hashes %s and %s; want equal", imgA.ID, imgB.ID, infoA.SourceHash, infoB.SourceHash)
			}
			t.Logf("%s: %s from %s and %s", f.lang, imgA.ID, a.Dir, b.Dir)
			if got := readArchive(t, imgA.Archive).config.Created; !got.Equal(sourceTime) {
				t.Errorf("image created %v, want the newest source time %v", got, sourceTime)
			}

			// A touched file: the same source hash (and tag), a new
			// creation time and so a new ID; SOURCE_DATE_EPOCH pins it back.
			touched := sourceTime.Add(time.Hour)
			setTimes(t, filepath.Join(b.Dir, changes[f.lang].file), touched)
			imgT, infoT := build(b)
			if imgT.ID == imgA.ID || infoT.SourceHash != infoA.SourceHash || !readArchive(t, imgT.Archive).config.Created.Equal(touched) {
				t.Errorf("touched %s: image %s (created %v), source hash %s; want a new image created %v and the same hash",
					changes[f.lang].file, imgT.ID, readArchive(t, imgT.Archive).config.Created, infoT.SourceHash, touched)
			}
			pinned := func(spec Spec) Image {
				t.Helper()
				img, _, err := Build(t.Context(), spec, buildOpts(t, nil, fmt.Sprintf("%s=%d", EnvSourceDateEpoch, sourceTime.Unix())))
				if err != nil {
					t.Fatal(err)
				}
				return img
			}
			if imgP := pinned(b); imgP.ID != imgA.ID {
				t.Errorf("SOURCE_DATE_EPOCH=%d: image %s, want %s as from the untouched copy", sourceTime.Unix(), imgP.ID, imgA.ID)
			}
			setTimes(t, filepath.Join(b.Dir, changes[f.lang].file), sourceTime)

			// The hash covers exactly the fixture's files.
			if got := sourceFilesOf(t, b); !reflect.DeepEqual(got, f.files) {
				t.Errorf("source files %q, want %q", got, f.files)
			}

			c := changes[f.lang]
			appendFile(t, filepath.Join(b.Dir, c.file), c.text)
			imgC, infoC := build(b)
			if imgC.ID == imgA.ID || infoC.SourceHash == infoA.SourceHash {
				t.Errorf("changed %s: image %s and source hash %s unchanged", c.file, imgC.ID, infoC.SourceHash)
			}

			a.Env = map[string]string{"GREETING": "changed"}
			imgD, infoD := build(a)
			if imgD.ID == imgA.ID || infoD.SourceHash == infoA.SourceHash {
				t.Errorf("changed env: image %s and source hash %s unchanged", imgD.ID, infoD.SourceHash)
			}
		})
	}
}

// sourceFilesOf lists the files the build of spec hashes, as sourceFile
// paths.
func sourceFilesOf(t *testing.T, spec Spec) []string {
	t.Helper()
	b, err := newBuilder(spec, buildOpts(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	b.tmp = t.TempDir()
	var a builtFiles
	switch spec.Lang {
	case LangGo:
		a, err = b.buildGo(t.Context())
	case LangC, LangCPP:
		a, err = b.buildC(t.Context())
	case LangBin:
		a, err = b.buildBin(t.Context())
	}
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range a.sources {
		paths = append(paths, f.rel)
	}
	slices.Sort(paths)
	return paths
}

// TestBuildGoOffline builds the Go fixture, copied outside the repository,
// with the module proxy off and an empty module cache: everything it needs
// comes from the SDK embedded in Pulse. The function's directory is left as
// it was.
func TestBuildGoOffline(t *testing.T) {
	spec := fixtureSpec(t, buildFixtures[0])
	before := treeSnapshot(t, spec.Dir)
	_, _, err := Build(t.Context(), spec, buildOpts(t, nil, "GOPROXY=off", "GOFLAGS=-mod=mod", "GOMODCACHE="+t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if after := treeSnapshot(t, spec.Dir); !reflect.DeepEqual(after, before) {
		t.Errorf("the build changed the function's directory:\n got %q\nwant %q", after, before)
	}
}

// treeSnapshot maps every file under dir to its mode and content.
func treeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		snap[p] = fmt.Sprintf("%v %x", st.Mode(), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestBuildErrors feeds Build bad inputs and checks that the error says what
// went wrong: the compiler's own output, or what to do.
func TestBuildErrors(t *testing.T) {
	writeFiles := func(t *testing.T, dir string, files map[string]string) {
		t.Helper()
		for name, content := range files {
			mode := fs.FileMode(0o644)
			if strings.HasPrefix(name, "+x ") {
				name, mode = name[3:], 0o755
			}
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	goMod := "module example.com/bad\n\ngo 1.26\n\nrequire github.com/pulsefaas/pulse v0.0.0\n"
	tests := []struct {
		name    string
		spec    Spec
		files   map[string]string
		prepare func(t *testing.T, dir string) // more files
		opts    func(*BuildOptions)
		rename  string // the function's name, if not "bad"
		// wantErr is a sentinel the error wraps; wantCompile asks for a
		// *CompileError whose command starts with it.
		wantErr     error
		wantCompile string
		want        []string // substrings of the message
		wantSpec    bool     // a *SpecError is in the chain
	}{
		{
			name:        "c syntax error",
			spec:        Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "bad.c"},
			files:       map[string]string{"bad.c": "int main(void) {\n\treturn 0\n}\n"},
			wantCompile: "gcc -static",
			want:        []string{"bad.c:2:", "error: expected", "before"},
		},
		{
			name:        "c missing header",
			spec:        Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "src"},
			files:       map[string]string{"src/main.c": "#include \"nope.h\"\nint main(void) { return 0; }\n"},
			wantCompile: "gcc -O2",
			want:        []string{"src/main.c:1:", "nope.h: No such file or directory"},
		},
		{
			name:        "cpp error",
			spec:        Spec{Lang: LangCPP, Mode: contract.ModeFork, Handler: "main.cpp"},
			files:       map[string]string{"main.cpp": "int main() { undeclared(); }\n"},
			wantCompile: "g++ -static",
			want:        []string{"main.cpp:1:", "undeclared", "was not declared"},
		},
		{
			name: "go compile error",
			spec: Spec{Lang: LangGo, Mode: contract.ModeInProcess, Handler: "."},
			files: map[string]string{"go.mod": goMod, "main.go": "package main\n\nimport \"github.com/pulsefaas/pulse/watchdog\"\n\n" +
				"func main() { watchdog.Main(nil); var n int = \"one\" }\n"},
			wantCompile: "go build",
			want:        []string{"main.go:5:", `cannot use "one"`},
		},
		{
			name:        "go bad go.mod",
			spec:        Spec{Lang: LangGo, Mode: contract.ModeInProcess, Handler: "."},
			files:       map[string]string{"go.mod": "module example.com/bad\nnonsense\n", "main.go": "package main\nfunc main() {}\n"},
			wantCompile: "go mod edit -json",
			want:        []string{"go.mod:2", "unknown directive"},
		},
		{
			name:    "go without go.mod",
			spec:    Spec{Lang: LangGo, Mode: contract.ModeInProcess, Handler: "."},
			files:   map[string]string{"main.go": "package main\nfunc main() {}\n"},
			wantErr: ErrInvalidBuild,
			want:    []string{"no go.mod", "pulse new NAME --lang go"},
		},
		{
			name: "bin dynamic",
			spec: Spec{Lang: LangBin, Mode: contract.ModeFork, Handler: "dyn"},
			prepare: func(t *testing.T, dir string) {
				if err := runCommand(t, ".", nil, "gcc", "-O2", "-o", filepath.Join(dir, "dyn"), "testdata/echo.c"); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrNotStatic,
			want:    []string{"dynamically linked", "gcc -static", "CGO_ENABLED=0"},
		},
		{
			name:    "bin not ELF",
			spec:    Spec{Lang: LangBin, Mode: contract.ModeFork, Handler: "run.sh"},
			files:   map[string]string{"+x run.sh": "#!/bin/sh\necho hi\n"},
			wantErr: ErrNotStatic,
			want:    []string{"not an ELF executable", "gcc -static", "CGO_ENABLED=0"},
		},
		{
			name: "bin not executable",
			spec: Spec{Lang: LangBin, Mode: contract.ModeFork, Handler: "echo"},
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "echo"), staticEcho(t), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrInvalidBuild,
			want:    []string{"not executable", "chmod +x echo"},
		},
		{
			name: "bin other architecture",
			spec: Spec{Lang: LangBin, Mode: contract.ModeFork, Handler: "echo"},
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, "echo"), staticEcho(t), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			opts:    func(o *BuildOptions) { o.Arch = otherArch() },
			wantErr: ErrNotStatic,
			want:    []string{"built for", "the image is for " + otherArch()},
		},
		{
			name:     "invalid name",
			spec:     Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "main.c"},
			rename:   "Bad_Name",
			wantErr:  ErrInvalidBuild,
			want:     []string{"upper case"},
			wantSpec: true,
		},
		{
			name:    "missing handler",
			spec:    Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "nope.c"},
			wantErr: ErrInvalidBuild,
			want:    []string{"handler nope.c", "no such file or directory"},
		},
		{
			name:    "empty handler directory",
			spec:    Spec{Lang: LangCPP, Mode: contract.ModeFork, Handler: "src"},
			files:   map[string]string{"src/README": "nothing here"},
			wantErr: ErrInvalidBuild,
			want:    []string{"no cpp source files (.cpp, .cc, .cxx)"},
		},
		{
			name:    "missing compiler",
			spec:    Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "main.c"},
			files:   map[string]string{"main.c": "int main(void) { return 0; }\n"},
			opts:    func(o *BuildOptions) { o.CC = "pulse-test-no-such-gcc" },
			wantErr: ErrToolNotFound,
			want:    []string{"pulse-test-no-such-gcc not found", "apt-get install gcc libc6-dev"},
		},
		{
			name:    "missing go",
			spec:    Spec{Lang: LangGo, Mode: contract.ModeInProcess, Handler: "."},
			files:   map[string]string{"go.mod": goMod, "main.go": "package main\nfunc main() {}\n"},
			opts:    func(o *BuildOptions) { o.GoCmd = "pulse-test-no-such-go" },
			wantErr: ErrToolNotFound,
			want:    []string{"pulse-test-no-such-go not found", "https://go.dev/dl/"},
		},
		{
			name:     "mode of another language",
			spec:     Spec{Lang: LangC, Mode: contract.ModeHTTP, Handler: "main.c"},
			wantErr:  ErrInvalidBuild,
			want:     []string{"functions.bad.mode"},
			wantSpec: true,
		},
		{
			name:     "env set by Pulse",
			spec:     Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "main.c", Env: map[string]string{contract.EnvFunction: "other"}},
			files:    map[string]string{"main.c": "int main(void) { return 0; }\n"},
			wantErr:  ErrInvalidBuild,
			want:     []string{"functions.bad.env.PULSE_FUNCTION", "reserved"},
			wantSpec: true,
		},
		{
			name:    "bad SOURCE_DATE_EPOCH",
			spec:    Spec{Lang: LangC, Mode: contract.ModeFork, Handler: "main.c"},
			files:   map[string]string{"main.c": "int main(void) { return 0; }\n"},
			opts:    func(o *BuildOptions) { o.Env = append(o.Env, EnvSourceDateEpoch+"=yesterday") },
			wantErr: ErrInvalidBuild,
			want:    []string{`SOURCE_DATE_EPOCH="yesterday": want whole seconds since 1970`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			spec := withDefaults(tt.spec)
			spec.Name, spec.Dir = "bad", dir
			if tt.rename != "" {
				spec.Name = tt.rename
			}
			opts := buildOpts(t, nil)
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, _, err := Build(t.Context(), spec, opts)
			if err == nil {
				t.Fatal("Build succeeded, want an error")
			}
			msg := err.Error()
			t.Log(msg)
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error does not wrap %v: %v", tt.wantErr, err)
			}
			if tt.wantCompile != "" {
				var ce *CompileError
				if !errors.As(err, &ce) {
					t.Fatalf("error is not a *CompileError: %v", err)
				}
				if !strings.HasPrefix(ce.Command, tt.wantCompile) || ce.Dir == "" || ce.Err == nil {
					t.Errorf("CompileError command %q in %q (%v), want a command starting %q", ce.Command, ce.Dir, ce.Err, tt.wantCompile)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if !strings.HasPrefix(msg, "build "+spec.Name+": ") {
				t.Errorf("error does not name the function: %s", msg)
			}
			// The operation once: no "build bad: build bad:", no "cannot
			// build" after it.
			if n := strings.Count(msg, "build "+spec.Name+":"); n != 1 || strings.Contains(msg, "cannot build") {
				t.Errorf("error repeats its prefix (%d times) or says cannot build: %s", n, msg)
			}
			var se *SpecError
			if errors.As(err, &se) != tt.wantSpec {
				t.Errorf("errors.As(*SpecError) = %v, want %v: %v", !tt.wantSpec, tt.wantSpec, err)
			}
		})
	}
}

// otherArch is an architecture this machine's binaries are not built for.
func otherArch() string {
	if runtimeGOARCH() == "arm64" {
		return "amd64"
	}
	return "arm64"
}

func TestParseMakeDeps(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		want  []string
	}{
		{"one rule", "main.o: src/main.c src/util.h\n", []string{"src/main.c", "src/util.h"}},
		{"continued", "main.o: src/main.c \\\n src/a.h \\\n  src/b.h\n", []string{"src/main.c", "src/a.h", "src/b.h"}},
		{"two rules", "a.o: a.c x.h\nb.o: b.c \\\n x.h\n", []string{"a.c", "x.h", "b.c", "x.h"}},
		{"escapes", `m.o: my\ file.c dollar$$.h hash\#.h` + "\n", []string{"my file.c", "dollar$.h", "hash#.h"}},
		{"crlf", "m.o: m.c \\\r\n m.h\r\n", []string{"m.c", "m.h"}},
		{"no rules", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseMakeDeps([]byte(tt.rules)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseMakeDeps(%q) = %q, want %q", tt.rules, got, tt.want)
			}
		})
	}
}

func TestTrimOutput(t *testing.T) {
	line := strings.Repeat("x", 99) + "\n"
	long := strings.Repeat(line, maxErrorOutput/len(line)+10)
	got := trimOutput(long, 0)
	if len(got) > maxErrorOutput+100 || !strings.HasSuffix(got, " more bytes of output)") || !strings.HasPrefix(got, line) {
		t.Errorf("trimOutput of %d bytes gave %d bytes ending %q", len(long), len(got), got[len(got)-40:])
	}
	if got := trimOutput("short", 0); got != "short" {
		t.Errorf("trimOutput(short) = %q", got)
	}
}

func TestSourceHash(t *testing.T) {
	files := []sourceFile{{rel: "a", mode: 0o644, content: []byte("x")}, {rel: "b/c", mode: 0o755, content: []byte("y")}}
	base := sourceHash(files, []sourceSetting{{"lang", "c"}})
	tests := []struct {
		name     string
		files    []sourceFile
		settings []sourceSetting
		same     bool
	}{
		{"reordered files", []sourceFile{files[1], files[0]}, []sourceSetting{{"lang", "c"}}, true},
		{"content moved between files", []sourceFile{{rel: "a", mode: 0o644, content: []byte("xy")}, {rel: "b/c", mode: 0o755}}, []sourceSetting{{"lang", "c"}}, false},
		{"renamed", []sourceFile{{rel: "A", mode: 0o644, content: []byte("x")}, files[1]}, []sourceSetting{{"lang", "c"}}, false},
		{"mode", []sourceFile{{rel: "a", mode: 0o755, content: []byte("x")}, files[1]}, []sourceSetting{{"lang", "c"}}, false},
		{"sourceSetting", files, []sourceSetting{{"lang", "cpp"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sourceHash(tt.files, tt.settings); (got == base) != tt.same {
				t.Errorf("hash %s vs %s: same = %v, want %v", got, base, got == base, tt.same)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b := readFile(t, from)
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, name, text string) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// setTimes sets the access and modification times of path and, for a
// directory, of everything under it.
func setTimes(t *testing.T, path string, tm time.Time) {
	t.Helper()
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, tm, tm)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzParseSourceDateEpoch: SOURCE_DATE_EPOCH comes from the environment;
// any value is either refused as ErrInvalidBuild or a time Assemble takes.
func FuzzParseSourceDateEpoch(f *testing.F) {
	for _, s := range []string{"0", "1714566600", "-1", "253402300799", "253402300800", "1e9", " 1", "+5", "9223372036854775808", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := parseSourceDateEpoch(v)
		if err != nil {
			if !errors.Is(err, ErrInvalidBuild) || !strings.Contains(err.Error(), EnvSourceDateEpoch) {
				t.Fatalf("error %v: want ErrInvalidBuild naming %s", err, EnvSourceDateEpoch)
			}
			return
		}
		if n < 0 || n > maxEpoch {
			t.Fatalf("%q → %d: out of range", v, n)
		}
		spec := ImageSpec{Files: []File{{Path: "/f", Mode: 0o755, Content: []byte("x")}}, Entrypoint: []string{"/f"}, User: "1:1", SourceDateEpoch: n}
		if _, err := Assemble(spec); err != nil {
			t.Fatalf("%q → %d: Assemble: %v", v, n, err)
		}
	})
}
