package pulse

import (
	"context"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sdkPackages are the import paths of the SDK's packages.
var sdkPackages = []string{SDKModule + "/contract", SDKModule + "/watchdog"}

// TestSDKStdlibOnly fails if a file of the SDK imports anything but the
// standard library and the SDK's own packages: a function built outside this
// repository gets the SDK and nothing else.
func TestSDKStdlibOnly(t *testing.T) {
	files, err := SDKFiles()
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, p := range sortedPaths(files) {
		if !strings.HasSuffix(p, ".go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, files[p], parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			ip, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(ip, "/")
			if !strings.Contains(first, ".") || slices.Contains(sdkPackages, ip) {
				continue
			}
			t.Errorf("%s imports %q: the watchdog SDK must use only the standard library and %q", p, ip, sdkPackages)
		}
	}
}

// TestSDKMatchesSource checks that the SDK holds exactly the non-test Go files
// of watchdog/ and contract/, and that neither has a subpackage the embed
// pattern would miss.
func TestSDKMatchesSource(t *testing.T) {
	files, err := SDKFiles()
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for p := range files {
		if dir, _, _ := strings.Cut(p, "/"); slices.Contains(sdkDirs, dir) {
			got = append(got, p)
		}
	}
	for _, dir := range sdkDirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			p = filepath.ToSlash(p)
			if path.Dir(p) != dir {
				t.Errorf("%s: the SDK embeds only %s/*.go; add the subpackage to sdk.go's embed pattern", p, dir)
			}
			want = append(want, p)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if string(b) != string(files[p]) {
				t.Errorf("%s: SDK content differs from the source", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SDK files %q, want the sources %q", got, want)
	}
}

func TestWriteSDK(t *testing.T) {
	cache := t.TempDir()
	files, err := SDKFiles()
	if err != nil {
		t.Fatal(err)
	}
	hash, err := SDKHash()
	if err != nil {
		t.Fatal(err)
	}

	// Concurrent writers of the same SDK all succeed with the same dir.
	const writers = 8
	dirs := make([]string, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { dirs[i], errs[i] = WriteSDK(cache) })
	}
	wg.Wait()
	wantDir := filepath.Join(cache, "sdk", hash)
	for i := range writers {
		if errs[i] != nil || dirs[i] != wantDir {
			t.Fatalf("WriteSDK #%d = %q, %v; want %q", i, dirs[i], errs[i], wantDir)
		}
	}

	written := readTree(t, wantDir)
	if !reflect.DeepEqual(written, files) {
		t.Errorf("written files %q, want %q", sortedPaths(written), sortedPaths(files))
	}
	if got, want := string(written["go.mod"]), "module github.com/pulsefaas/pulse\n\ngo 1.26\n"; got != want {
		t.Errorf("go.mod = %q, want %q", got, want)
	}
	for p := range written {
		if strings.HasSuffix(p, "_test.go") {
			t.Errorf("%s: test files are not part of the SDK", p)
		}
	}
	// Nothing but the SDK is left in the cache: no temporary directories.
	entries, err := os.ReadDir(filepath.Join(cache, "sdk"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("cache/sdk holds %d entries, want only %s", len(entries), hash)
	}

	// A second write leaves the directory alone.
	before, err := os.Stat(filepath.Join(wantDir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if dir, err := WriteSDK(cache); err != nil || dir != wantDir {
		t.Fatalf("second WriteSDK = %q, %v", dir, err)
	}
	after, err := os.Stat(filepath.Join(wantDir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("second WriteSDK rewrote the SDK")
	}
}

// TestSDKBuildsOffline builds the written SDK, watchdog binary included, with
// the module proxy off, and lists its dependencies as the go command sees
// them: standard library and the SDK's own packages only.
func TestSDKBuildsOffline(t *testing.T) {
	dir, err := WriteSDK(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	goCmd := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("build", "-o", t.TempDir(), "./...")
	deps := strings.Fields(goCmd("list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./..."))
	slices.Sort(deps)
	want := append(slices.Clone(sdkPackages), SDKModule+"/"+SDKWatchdogMain)
	slices.Sort(want)
	if !reflect.DeepEqual(deps, want) {
		t.Errorf("non-standard packages of the SDK = %q, want %q", deps, want)
	}
}

// readTree reads every regular file under dir, by slash path relative to it.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
