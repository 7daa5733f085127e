package provision

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"testing/fstest"
)

// snapshot is a parsed Snapshot reply.
type snapshot struct {
	// files holds the files and directories found. fstest.MapFS is the
	// standard library's in-memory, read-only file system: it makes the
	// directories on the way to each file and lists them, which is all
	// this needs; the package imports io/fs-level packages only, not
	// testing (go list -deps testing/fstest).
	files fstest.MapFS
	// denied are the paths that exist but may not be read.
	denied map[string]bool
	// absent are the literal paths looked for and not found.
	absent map[string]bool
	// incomplete says a path was skipped for its name: a path no record
	// names is then unknown even where a pattern covers it.
	incomplete bool
}

// snapshotHeader is the reply's first line.
const snapshotHeader = "pulse-snapshot 1"

// parseSnapshot reads the reply of snapshotScript (outside input: the
// node's). The first record of a path counts; one that contradicts an
// earlier one (a file on the way to another path) is an error.
func parseSnapshot(b []byte) (*snapshot, error) {
	s := &snapshot{files: fstest.MapFS{}, denied: map[string]bool{}, absent: map[string]bool{}}
	seen := map[string]bool{}
	lines := bytes.Split(b, []byte("\n"))
	if string(lines[0]) != snapshotHeader {
		return nil, fmt.Errorf("the reply does not start with %q", snapshotHeader)
	}
	// The reply ends with "end" and a newline: nothing after.
	if len(lines) < 3 || string(lines[len(lines)-2]) != "end" || len(lines[len(lines)-1]) != 0 {
		return nil, errors.New("the reply does not end with \"end\": cut short")
	}
	lines = lines[1 : len(lines)-2]
	for i := 0; i < len(lines); i++ {
		line := string(lines[i])
		if line == "i" {
			s.incomplete = true
			continue
		}
		kind, rest, ok := strings.Cut(line, " ")
		if !ok || len(kind) != 1 {
			return nil, fmt.Errorf("line %d: %.40q is not a record", i+2, line)
		}
		name := rest
		var text string
		if kind == "t" {
			name, text, ok = strings.Cut(rest, " ")
			if !ok {
				return nil, fmt.Errorf("line %d: %.40q: a t record has a path and a text", i+2, line)
			}
		}
		name, err := recordPath(name)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+2, err)
		}
		var file *fstest.MapFile
		switch kind {
		case "d":
			file = &fstest.MapFile{Mode: fs.ModeDir | 0o555}
		case "t":
			file = &fstest.MapFile{Data: []byte(text + "\n"), Mode: 0o444}
		case "f":
			end := i + 1
			for end < len(lines) && string(lines[end]) != "." {
				end++
			}
			if end == len(lines) {
				return nil, fmt.Errorf("line %d: the base64 of %s has no end", i+2, name)
			}
			data, err := base64.StdEncoding.DecodeString(string(bytes.Join(lines[i+1:end], nil)))
			if err != nil {
				return nil, fmt.Errorf("line %d: the base64 of %s: %w", i+2, name, err)
			}
			file = &fstest.MapFile{Data: data, Mode: 0o444}
			i = end
		case "p", "n":
		default:
			return nil, fmt.Errorf("line %d: unknown record %q", i+2, kind)
		}
		if seen[name] {
			continue // read twice (two patterns): the first counts
		}
		seen[name] = true
		switch {
		case kind == "p":
			s.denied[name] = true
		case kind == "n":
			s.absent[name] = true
		default:
			s.files[name] = file
		}
	}
	for name := range seen {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if f, ok := s.files[dir]; (ok && !f.Mode.IsDir()) || s.denied[dir] || s.absent[dir] {
				return nil, fmt.Errorf("%s is on the way to %s, but not a directory", dir, name)
			}
		}
	}
	return s, nil
}

// recordPath is a record's absolute path as an fs.FS path. Its
// characters are those the script's safe() lets through.
func recordPath(p string) (string, error) {
	name, ok := strings.CutPrefix(p, "/")
	if !ok || !fs.ValidPath(name) || name == "." {
		return "", fmt.Errorf("%.80q is not a clean absolute path", p)
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return !strings.ContainsRune(recordPathChars, r) }); i >= 0 {
		return "", fmt.Errorf("%.80q: character %q is not one a snapshot sends", p, name[i])
	}
	return name, nil
}

// recordPathChars are the characters of a record's path (the script's
// safe(), with / between segments).
const recordPathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/+@:,=-"

// fs is the snapshot as Snapshot's file system, for the patterns it was
// taken with.
func (s *snapshot) fs(ps []pattern) fs.FS {
	return &snapshotFS{snap: s, patterns: ps}
}

// snapshotFS adds to the files the errors of paths that are not there:
// denied, absent, or not captured.
type snapshotFS struct {
	snap     *snapshot
	patterns []pattern
}

func (f *snapshotFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if f.snap.denied[name] {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	file, err := f.snap.files.Open(name)
	switch {
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		return file, err
	case f.onTheWayToDenied(name):
		// The script could not tell what lies between: nor could open(2).
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	case !f.captured(name):
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotCaptured}
	}
	return nil, err
}

// onTheWayToDenied says whether name is a directory on the way to a path
// that may not be read.
func (f *snapshotFS) onTheWayToDenied(name string) bool {
	for d := range f.snap.denied {
		if strings.HasPrefix(d, name+"/") || name == "." {
			return true
		}
	}
	return false
}

// captured says whether the script looked at name: a literal path it
// reported absent, or one a pattern covers when no path was skipped.
func (f *snapshotFS) captured(name string) bool {
	if f.snap.absent[name] {
		return true
	}
	if f.snap.incomplete {
		return false
	}
	for _, p := range f.patterns {
		if p.covers(name) {
			return true
		}
	}
	return false
}
