package function

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	pulse "github.com/pulsefaas/pulse"
)

// sourceFile is one file of a function's source: what the source hash covers
// and what a build copies.
type sourceFile struct {
	// rel is the slash-separated path relative to the source root (or, for
	// a C header outside it, as the compiler named it).
	rel string
	// mode is the normalised mode: 0644, 0755 (any execute bit), or
	// fs.ModeSymlink. Permission details such as a umask's group bits do
	// not change the hash.
	mode fs.FileMode
	// content is the file's bytes, or a symlink's target.
	content []byte
	// mtime is the file's modification time, for the image's creation
	// time (not the hash); zero for a file outside the function's source
	// (a system header).
	mtime time.Time
}

// sourceSetting is one spec setting the source hash covers.
type sourceSetting struct{ key, value string }

// sourceHashVersion names the hash's encoding; change it when the encoding
// changes.
const sourceHashVersion = "pulse-source-v1"

// sourceHash is the hex sha256 of the files, sorted by path, and the settings
// in order. Every field is length-prefixed or quoted, so different inputs
// never encode alike.
func sourceHash(files []sourceFile, settings []sourceSetting) string {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b sourceFile) int { return strings.Compare(a.rel, b.rel) })
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", sourceHashVersion)
	for _, f := range files {
		fmt.Fprintf(h, "file %q %s %d\n", f.rel, f.mode, len(f.content))
		h.Write(f.content)
	}
	for _, s := range settings {
		fmt.Fprintf(h, "%s %q\n", s.key, s.value)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// normalMode reduces a file's mode to what the hash and a copy keep.
func normalMode(m fs.FileMode) fs.FileMode {
	switch {
	case m&fs.ModeSymlink != 0:
		return fs.ModeSymlink
	case m&0o111 != 0:
		return 0o755
	}
	return 0o644
}

// readSourceFile reads the regular file or symlink at abs, to be known as rel.
func readSourceFile(abs, rel string) (sourceFile, error) {
	st, err := os.Lstat(abs)
	if err != nil {
		return sourceFile{}, err
	}
	f := sourceFile{rel: rel, mode: normalMode(st.Mode()), mtime: st.ModTime()}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return sourceFile{}, err
		}
		f.content = []byte(target)
	case st.Mode().IsRegular():
		if f.content, err = os.ReadFile(abs); err != nil {
			return sourceFile{}, err
		}
	default:
		return sourceFile{}, fmt.Errorf("%s: not a regular file (%v)", abs, st.Mode().Type())
	}
	return f, nil
}

// readModuleTree reads the files of the Go module rooted at root: everything
// but directories whose names start with a dot, nested modules (directories
// with their own go.mod), files for which skip reports true, and special
// files (sockets, pipes, devices), which cannot be source.
func readModuleTree(root string, skip func(abs string) bool) ([]sourceFile, error) {
	var files []sourceFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == root {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() && d.Type()&fs.ModeSymlink == 0 || skip(p) {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		f, err := readSourceFile(p, filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", root, err)
	}
	return files, nil
}

// writeTree writes files under dir, which must exist.
func writeTree(dir string, files []sourceFile) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.rel))
		if !filepath.IsLocal(filepath.FromSlash(f.rel)) {
			return fmt.Errorf("copy %s: path leaves the source tree", f.rel)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		var err error
		if f.mode == fs.ModeSymlink {
			err = os.Symlink(string(f.content), p)
		} else {
			err = os.WriteFile(p, f.content, f.mode)
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", f.rel, err)
		}
	}
	return nil
}

// findModuleRoot returns the directory of the go.mod that governs dir: dir or
// its nearest parent holding one.
func findModuleRoot(dir string) (string, error) {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", invalidBuild("no go.mod in %s or any parent: a Go function is a module that requires %s (`pulse new NAME --lang go` writes one)", dir, pulse.SDKModule)
		}
		d = parent
	}
}

// absPath is filepath.Abs with the operation in its error.
func absPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("absolute path of %s: %w", p, err)
	}
	return abs, nil
}

// withinDir returns p relative to dir, slash-separated, if p is dir or below
// it.
func withinDir(dir, p string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", false
	}
	return filepath.ToSlash(rel), true
}
