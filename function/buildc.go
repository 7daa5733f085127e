package function

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Source file extensions of C and C++ handlers.
var sourceExts = map[string][]string{
	LangC:   {".c"},
	LangCPP: {".cpp", ".cc", ".cxx"},
}

// buildC compiles a C or C++ function statically and builds the watchdog.
// The compiler runs in the spec's directory on relative paths, with that
// directory mapped to "." in everything it records (-ffile-prefix-map) and
// SOURCE_DATE_EPOCH pinning __DATE__ and __TIME__, so the binary does not
// depend on where the source lives or when it is built. The source hash
// covers the handler's files and every header they include outside the
// system's directories, as the compiler reports them (-MM).
func (b *imageBuilder) buildC(ctx context.Context) (builtFiles, error) {
	cc, hint := b.opts.CC, hintCC
	if b.spec.Lang == LangCPP {
		cc, hint = b.opts.CXX, hintCXX
	}
	if err := lookTool(cc, hint); err != nil {
		return builtFiles{}, err
	}
	srcs, err := b.cSources()
	if err != nil {
		return builtFiles{}, err
	}

	env := toolEnv([]string{"SOURCE_DATE_EPOCH=0"}, b.opts.Env)
	flags := []string{"-O2", "-ffile-prefix-map=" + b.dir + "=."}
	deps, err := runTool(ctx, b.dir, env, cc, slices.Concat(flags, []string{"-MM"}, srcs)...)
	if err != nil {
		return builtFiles{}, err
	}
	sources, err := b.cSourceFiles(slices.Concat(srcs, parseMakeDeps(deps)))
	if err != nil {
		return builtFiles{}, err
	}

	b.progress("compiling (%s)…", b.spec.Lang)
	out := filepath.Join(b.tmp, buildOutput)
	args := slices.Concat([]string{"-static", "-s", "-Wl,--gc-sections"}, flags, []string{"-o", out}, srcs)
	if b.spec.Lang == LangC {
		args = append(args, "-lm") // g++ links libm by itself
	}
	if _, err := runTool(ctx, b.dir, env, cc, args...); err != nil {
		return builtFiles{}, err
	}
	fn, err := os.ReadFile(out)
	if err != nil {
		return builtFiles{}, err
	}
	wd, err := b.watchdogBinary(ctx)
	if err != nil {
		return builtFiles{}, err
	}
	return builtFiles{function: fn, watchdog: wd, sources: sources}, nil
}

// cSources lists the handler's source files, relative to the spec's
// directory: the handler itself, or the sources directly in the handler's
// directory, sorted.
func (b *imageBuilder) cSources() ([]string, error) {
	exts := sourceExts[b.spec.Lang]
	handler := filepath.Clean(b.spec.Handler)
	st, err := os.Stat(filepath.Join(b.dir, handler))
	if err != nil {
		return nil, invalidBuild("handler %s: %w", b.spec.Handler, err)
	}
	if !st.IsDir() {
		if !slices.Contains(exts, filepath.Ext(handler)) {
			return nil, invalidBuild("handler %s: want a %s source file (%s) or a directory of them", b.spec.Handler, b.spec.Lang, strings.Join(exts, ", "))
		}
		return []string{handler}, nil
	}
	entries, err := os.ReadDir(filepath.Join(b.dir, handler))
	if err != nil {
		return nil, invalidBuild("handler %s: %w", b.spec.Handler, err)
	}
	var srcs []string
	for _, e := range entries {
		if !e.IsDir() && slices.Contains(exts, filepath.Ext(e.Name())) {
			srcs = append(srcs, filepath.Join(handler, e.Name()))
		}
	}
	if len(srcs) == 0 {
		return nil, invalidBuild("handler %s: no %s source files (%s) in the directory", b.spec.Handler, b.spec.Lang, strings.Join(exts, ", "))
	}
	return srcs, nil
}

// cSourceFiles reads the files the compiler read, named as it named them
// (relative to the spec's directory, or absolute), once each. A file under
// the spec's directory is hashed by its relative path, anything else by the
// name the compiler used.
func (b *imageBuilder) cSourceFiles(names []string) ([]sourceFile, error) {
	seen := map[string]bool{}
	var files []sourceFile
	for _, name := range names {
		abs := name
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(b.dir, name)
		}
		rel, ok := withinDir(b.dir, abs)
		if !ok {
			rel = filepath.ToSlash(filepath.Clean(name))
		}
		if seen[rel] {
			continue
		}
		seen[rel] = true
		f, err := readSourceFile(abs, rel)
		if err != nil {
			return nil, fmt.Errorf("read source: %w", err)
		}
		if !ok {
			f.mtime = time.Time{} // a system header: not the function's source
		}
		files = append(files, f)
	}
	return files, nil
}

// parseMakeDeps returns the prerequisites of the make rules a compiler's -M
// options write ("main.o: main.c util.h \" continued on the next line), in
// order. Make's escapes are undone: "\ " is a space in a name, "\#" a '#',
// "$$" a '$'.
func parseMakeDeps(rules []byte) []string {
	text := strings.ReplaceAll(string(rules), "\\\r\n", " ")
	text = strings.ReplaceAll(text, "\\\n", " ")
	var deps []string
	for _, line := range strings.Split(text, "\n") {
		// The target ends at the first colon followed by a blank or the
		// end of the line (a drive letter's colon is not followed by one).
		i := strings.Index(line+" ", ": ")
		if i < 0 {
			i = strings.Index(line+" ", ":\t")
		}
		if i < 0 {
			continue
		}
		deps = append(deps, splitMakeWords(line[i+1:])...)
	}
	return deps
}

// splitMakeWords splits a make prerequisite list into names.
func splitMakeWords(s string) []string {
	var words []string
	var w strings.Builder
	flush := func() {
		if w.Len() > 0 {
			words = append(words, w.String())
			w.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == ' ' || s[i+1] == '#'):
			w.WriteByte(s[i+1])
			i++
		case c == '$' && i+1 < len(s) && s[i+1] == '$':
			w.WriteByte('$')
			i++
		case c == ' ' || c == '\t' || c == '\r':
			flush()
		default:
			w.WriteByte(c)
		}
	}
	flush()
	return words
}
