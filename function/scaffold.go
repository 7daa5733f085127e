package function

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"
)

// templateFS holds the function templates, one directory per language. A
// file whose name ends in .tmpl is a text/template (the suffix also keeps Go
// and go.mod templates out of this module's build); others are copied as
// they are.
//
//go:embed templates
var templateFS embed.FS

// templateData is what the templates see.
type templateData struct {
	Name string // the function's name
	Lang string
	Mode string
	Port int // http mode
}

// Scaffold creates a ready-to-build function: the directory dir/name holding
// a functions.yml and the sources of lang's template. mode "" is the
// language's default; bin takes fork or http. It writes nothing over an
// existing file (the directory itself may exist), and on failure removes
// what it wrote. It returns the files written, as dir/name/<file>.
func Scaffold(dir, name, lang, mode string) ([]string, error) {
	var errs []error
	if msg := nameProblem(name); msg != "" {
		errs = append(errs, fmt.Errorf("name: %s", msg))
	}
	if msg := langProblem(lang); msg != "" {
		errs = append(errs, fmt.Errorf("lang: %s", msg))
	} else {
		if mode == "" {
			mode = langDefaultMode(lang)
		}
		if msg := modeProblem(lang, mode); msg != "" {
			errs = append(errs, fmt.Errorf("mode: %s", msg))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	files, err := renderTemplates(lang, templateData{Name: name, Lang: lang, Mode: mode, Port: DefaultPort})
	if err != nil {
		return nil, err
	}
	target := filepath.Join(dir, name)
	for _, f := range files {
		p := filepath.Join(target, f.name)
		if _, err := os.Lstat(p); err == nil {
			return nil, refuseOverwrite(p)
		}
	}
	createdDir := false
	if fi, err := os.Stat(target); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return nil, fmt.Errorf("new function %s: %w", name, err)
		}
		createdDir = true
	} else if err != nil {
		return nil, fmt.Errorf("new function %s: %w", name, err)
	} else if !fi.IsDir() {
		return nil, refuseOverwrite(target)
	}

	var written []string
	undo := func() {
		for _, p := range written {
			_ = os.Remove(p)
		}
		if createdDir {
			_ = os.Remove(target)
		}
	}
	for _, f := range files {
		p := filepath.Join(target, f.name)
		if err := writeNewFile(p, f.data); err != nil {
			undo()
			if errors.Is(err, fs.ErrExist) {
				return nil, refuseOverwrite(p)
			}
			return nil, fmt.Errorf("new function %s: %w", name, err)
		}
		written = append(written, p)
	}
	return written, nil
}

func refuseOverwrite(p string) error {
	return fmt.Errorf("%w; a new function never overwrites anything: pick another name or directory, or move it away",
		&fs.PathError{Op: "create", Path: p, Err: fs.ErrExist})
}

// writeNewFile creates p, failing if anything exists there.
func writeNewFile(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(p)
	}
	return err
}

type templateFile struct {
	name string // slash-separated, relative to the function's directory
	data []byte
}

// renderTemplates renders lang's template files in lexical order.
func renderTemplates(lang string, data templateData) ([]templateFile, error) {
	root := path.Join("templates", lang)
	var files []templateFile
	err := fs.WalkDir(templateFS, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := templateFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, root+"/")
		if base, ok := strings.CutSuffix(name, ".tmpl"); ok {
			t, err := template.New(name).Option("missingkey=error").Parse(string(content))
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := t.Execute(&b, data); err != nil {
				return err
			}
			name, content = base, b.Bytes()
		}
		files = append(files, templateFile{name: name, data: content})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("render %s template: %w", lang, err)
	}
	return files, nil
}
