package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/pulsefaas/pulse/function"
)

// prepareSources scaffolds every template (and the two go functions of the
// scale stage) into the temporary directory, as `pulse new` would. The bin
// template gets the watchdog suite's static C echo (bench/c/echo.c) as ./fn.
func (b *functionsBench) prepareSources(ctx context.Context) error {
	src := filepath.Join(b.env.tmp, "src")
	for _, tmpl := range functionTemplates {
		spec, err := b.scaffold(ctx, src, b.prefix+"-"+tmpl, tmpl)
		if err != nil {
			return err
		}
		b.specs[tmpl] = spec
	}
	if function.DefaultHealthInterval != defaultIntervalMS*time.Millisecond {
		return fmt.Errorf("function.DefaultHealthInterval is %s: update defaultIntervalMS", function.DefaultHealthInterval)
	}
	for _, interval := range []time.Duration{function.DefaultHealthInterval, fastIntervalMS * time.Millisecond} {
		t := scaleTarget{name: b.prefix + "-scale-" + interval.String(), interval: interval}
		spec, err := b.scaffold(ctx, src, t.name, function.LangGo)
		if err != nil {
			return err
		}
		b.specs[t.name], b.targets = spec, append(b.targets, t)
	}
	return nil
}

// scaffold creates the function name from lang's template in dir and loads
// its spec, labelled with the run's ID.
func (b *functionsBench) scaffold(ctx context.Context, dir, name, lang string) (function.Spec, error) {
	if _, err := function.Scaffold(dir, name, lang, ""); err != nil {
		return function.Spec{}, fmt.Errorf("scaffold %s: %w", lang, err)
	}
	fdir := filepath.Join(dir, name)
	if lang == function.LangBin {
		cctx, cancel := context.WithTimeout(ctx, buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(cctx, b.env.tools.gcc, "-static", "-O2", "-s", "-o", filepath.Join(fdir, "fn"), "bench/c/echo.c")
		cmd.Dir = b.env.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return function.Spec{}, fmt.Errorf("gcc -static bench/c/echo.c: %w: %s", err, truncate(strings.TrimSpace(string(out)), 500))
		}
	}
	specs, err := function.LoadSpecs(fdir)
	if err != nil {
		return function.Spec{}, err
	}
	if len(specs) != 1 {
		return function.Spec{}, fmt.Errorf("the %s template's spec has %d functions, want 1", lang, len(specs))
	}
	spec := specs[0]
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels[runLabel] = b.run
	return spec, nil
}

// build builds key's function (a template or a scale function) with the
// Pulse cache dir cache and keeps its image.
func (b *functionsBench) build(ctx context.Context, key, cache string) (function.Image, function.BuildInfo, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	t := b.env.tools
	start := time.Now()
	img, info, err := function.Build(ctx, b.specs[key], function.BuildOptions{CacheDir: cache, GoCmd: t.goBin, CC: t.gcc, CXX: t.gxx})
	if err == nil {
		b.images[key], b.infos[key] = img, info
	}
	return img, info, time.Since(start), err
}

// buildStage builds every template Trials times, each time into a new,
// empty Pulse cache dir (cold) and then again (warm), the templates' order
// rotated by one per trial. Go's build cache is left as it is.
func (b *functionsBench) buildStage(ctx context.Context) error {
	return eachTrial(b.cfg.Trials, functionTemplates, func(trial int, tmpl string) error {
		if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
			return err
		}
		cache := filepath.Join(b.env.tmp, "cache", fmt.Sprintf("%s-%d", tmpl, trial))
		for _, kind := range []string{"cold", "warm"} {
			img, info, took, err := b.build(ctx, tmpl, cache)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			bt := buildTrial{Template: tmpl, Trial: trial, Cache: kind, Seconds: round3(took.Seconds())}
			if err == nil {
				bt.ImageID, bt.ImageBytes, bt.FunctionBytes, bt.ArchiveBytes = img.ID, info.ImageSize, info.BinarySize, int64(len(img.Archive))
			}
			b.logOutcome("build", err, &bt.Error, []any{"template", tmpl, "trial", trial, "cache", kind},
				"took", took.Round(time.Millisecond), "image_bytes", info.ImageSize)
			b.rep.Builds = append(b.rep.Builds, bt)
			if err != nil {
				break // a warm build after a failed cold one is not warm
			}
		}
		if err := os.RemoveAll(cache); err != nil {
			return fmt.Errorf("remove %s: %w", cache, err)
		}
		return nil
	})
}

// image returns the built image of key (a template or a scale function),
// building it first (untimed, with a shared cache) if no build stage did.
func (b *functionsBench) image(ctx context.Context, key string) (function.Image, error) {
	if img, ok := b.images[key]; ok {
		return img, nil
	}
	if _, ok := b.specs[key]; !ok {
		return function.Image{}, fmt.Errorf("no function %s", key)
	}
	img, _, _, err := b.build(ctx, key, filepath.Join(b.env.tmp, "cache", "shared"))
	return img, err
}

// loadImages loads every built template's image into the engine and records
// its size as the engine counts it.
func (b *functionsBench) loadImages(ctx context.Context) error {
	for _, tmpl := range functionTemplates {
		img, ok := b.images[tmpl]
		if !ok {
			continue
		}
		info := b.infos[tmpl]
		ii := imageInfo{
			Template: tmpl, Function: b.specs[tmpl].Name, ID: img.ID, Tag: img.Tag,
			FunctionBytes: info.BinarySize, WatchdogBytes: info.ImageSize - info.BinarySize, ArchiveBytes: int64(len(img.Archive)),
		}
		cctx, cancel := call(ctx)
		start := time.Now()
		err := function.LoadImage(cctx, b.api, img)
		ii.LoadS = secondsSince(start)
		if err == nil {
			var got image.InspectResponse
			got, err = b.api.ImageInspect(cctx, img.ID)
			ii.EngineBytes = got.Size
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			ii.Error = err.Error()
			b.log.Warn("load image", "template", tmpl, "err", err)
		}
		b.rep.Images = append(b.rep.Images, ii)
	}
	return nil
}
