package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// artifact is one program the harness builds.
type artifact struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Command string `json:"command"`
	Bytes   int64  `json:"bytes,omitempty"`
	Error   string `json:"error,omitempty"`
	path    string
}

// artifacts are the built programs, by name.
type artifacts map[string]*artifact

// path returns the built program's path ("" if it did not build).
func (a artifacts) path(name string) string {
	if x, ok := a[name]; ok && x.Error == "" {
		return x.path
	}
	return ""
}

// missing returns the first of names that did not build, or "".
func (a artifacts) missing(names []string) string {
	for _, n := range names {
		if a.path(n) == "" {
			return n
		}
	}
	return ""
}

// sizes returns the size of every built artifact.
func (a artifacts) sizes() map[string]int64 {
	m := map[string]int64{}
	for n, x := range a {
		if x.Error == "" {
			m[n] = x.Bytes
		}
	}
	return m
}

// buildStep is how one artifact is built: argv, run in the module root,
// writes out.
type buildStep struct {
	name, source, out string
	argv              []string
	env               []string
}

// goStep builds pkg the way an image's Go program is built: static (no
// cgo), trimmed, stripped, with tags (the watchdog's: function/buildgo.go).
func goStep(t tools, dir, name, pkg, tags string) buildStep {
	out := filepath.Join(dir, name)
	argv := []string{t.goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out}
	if tags != "" {
		argv = append(argv, "-tags", tags)
	}
	return buildStep{name: name, source: pkg, out: out, argv: append(argv, pkg), env: []string{"CGO_ENABLED=0"}}
}

// pulsedStep builds cmd/pulsed as `make` does.
func pulsedStep(t tools, dir string) buildStep {
	out := filepath.Join(dir, "pulsed")
	return buildStep{name: "pulsed", source: "./cmd/pulsed", out: out, argv: []string{t.goBin, "build", "-o", out, "./cmd/pulsed"}}
}

// cStep writes src, a generated C program, to dir and compiles it
// statically, as a fork-mode handler in an image. A failure to write shows
// as gcc's.
func cStep(t tools, dir, name, src string) buildStep {
	file, out := filepath.Join(dir, name+".c"), filepath.Join(dir, name)
	_ = os.WriteFile(file, []byte(src), 0o644)
	return buildStep{name: name, source: "(generated) " + name + ".c", out: out, argv: []string{t.gcc, "-static", "-O2", "-s", "-o", out, file}}
}

// watchdogBuilds are the suite's programs. The Go ones are built the way an
// image's would be: static (no cgo), trimmed, stripped.
func watchdogBuilds(t tools, dir string) []buildStep {
	out := func(name string) string { return filepath.Join(dir, name) }
	// The watchdogs are built with the tags `pulse build` gives them in an
	// image (function/buildgo.go): no HTTP/2, only the mode the image runs.
	return []buildStep{
		goStep(t, dir, "echo", "./bench/echo", ""),
		goStep(t, dir, "inproc", "./bench/inproc", inprocTags),
		goStep(t, dir, "watchdog", "./cmd/pulse-watchdog", forkTags),
		goStep(t, dir, "watchdog-http", "./cmd/pulse-watchdog", "nethttpomithttp2,watchdog_nofork"),
		{name: "cecho", source: "bench/c/echo.c", out: out("cecho"),
			argv: []string{t.gcc, "-static", "-O2", "-s", "-o", out("cecho"), "bench/c/echo.c"}},
		{name: "spawnloop", source: "bench/c/spawnloop.c", out: out("spawnloop"),
			argv: []string{t.gcc, "-O2", "-o", out("spawnloop"), "bench/c/spawnloop.c"}},
	}
}

// Build tags of an image's in-process Go function and of a fork-mode
// image's watchdog, as `pulse build` gives them.
const (
	inprocTags = "nethttpomithttp2,watchdog_nofork,watchdog_nohttp"
	forkTags   = "nethttpomithttp2,watchdog_nohttp"
)

// build runs every step; a failed step is recorded, not fatal, so that the
// variants that do not need it still run.
func build(ctx context.Context, log *slog.Logger, root string, steps []buildStep) (artifacts, error) {
	arts := artifacts{}
	for _, st := range steps {
		a := &artifact{
			Name: st.name, Source: st.source, path: st.out,
			Command: strings.ReplaceAll(shellWords(st.env, st.argv), filepath.Dir(st.out), "$OUT"),
		}
		start := time.Now()
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		cmd := exec.CommandContext(bctx, st.argv[0], st.argv[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), st.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			a.Error = fmt.Sprintf("%v: %s", err, truncate(strings.TrimSpace(string(out)), 500))
			log.Warn("build failed; variants that need it are skipped", "artifact", st.name, "err", a.Error)
		} else if fi, err := os.Stat(a.path); err != nil {
			a.Error = err.Error()
		} else {
			a.Bytes = fi.Size()
			log.Info("built", "artifact", st.name, "bytes", a.Bytes, "took", time.Since(start).Round(time.Millisecond))
		}
		arts[st.name] = a
	}
	return arts, nil
}

func shellWords(env, argv []string) string {
	words := append(append([]string(nil), env...), argv...)
	for i, w := range words {
		if strings.ContainsAny(w, " \t\"'") {
			words[i] = "'" + w + "'"
		}
	}
	return strings.Join(words, " ")
}

// buildAll builds steps as build does, and fails if one did not build. It
// returns the artifacts and their records in steps' order, both also when
// one did not build.
func buildAll(ctx context.Context, log *slog.Logger, root string, steps []buildStep) (artifacts, []artifact, error) {
	log.Info("building", "root", root)
	arts, err := build(ctx, log, root, steps)
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(steps))
	recs := make([]artifact, len(steps))
	for i, st := range steps {
		names[i], recs[i] = st.name, *arts[st.name]
	}
	if m := arts.missing(names); m != "" {
		return arts, recs, fmt.Errorf("%s did not build: %s", m, arts[m].Error)
	}
	return arts, recs, nil
}
