package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pulsefaas/pulse/function"
)

// specFlag is the -f flag every spec-reading command has.
func specFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "file", "f", function.SpecFile, "the function spec file, or a directory holding functions.yml")
	_ = cmd.MarkFlagFilename("file", "yml", "yaml")
}

// loadSpecs reads the spec file and keeps the functions named in names (all
// when none are).
func loadSpecs(path string, names []string) ([]function.Spec, error) {
	specs, err := function.LoadSpecs(path)
	if err != nil {
		// A spec's problems (function.SpecError, each naming the file,
		// line and field) and an unreadable file are not command-line
		// mistakes: exit 1 with the problem, without the usage hint.
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: run this in a function's directory, pass -f path/to/functions.yml, or create one with `pulse new`", err)
		}
		var se *function.SpecError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("the function spec has problems:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		}
		return nil, err
	}
	if len(names) == 0 {
		return specs, nil
	}
	var out []function.Spec
	for _, n := range names {
		i := slices.IndexFunc(specs, func(s function.Spec) bool { return s.Name == n })
		if i < 0 {
			have := make([]string, len(specs))
			for j, s := range specs {
				have[j] = s.Name
			}
			return nil, usagef("%s has no function %q (it has: %s)", path, n, strings.Join(have, ", "))
		}
		out = append(out, specs[i])
	}
	return out, nil
}

func (a *app) buildOptions() function.BuildOptions {
	return function.BuildOptions{Progress: a.err, CacheDir: a.cfg.CacheDir, Version: version}
}

// buildAndLoad builds spec's image and loads it into docker_host's engine.
func (a *app) buildAndLoad(ctx context.Context, spec function.Spec) (function.Image, function.BuildInfo, error) {
	prefixed := func(err error) error {
		// function.Build names the function itself: say it once.
		if p := "build " + spec.Name + ":"; strings.HasPrefix(err.Error(), p) {
			return err
		}
		return fmt.Errorf("build %s: %w", spec.Name, err)
	}
	img, info, err := function.Build(ctx, spec, a.buildOptions())
	if err != nil {
		return function.Image{}, info, prefixed(err)
	}
	cli, err := a.engine()
	if err != nil {
		return img, info, err
	}
	// Thin when the engine holds the watchdog layer already (docker_host
	// may be a manager over SSH: only the function's layer travels).
	if _, err := function.LoadOnNode(ctx, cli, img); err != nil {
		return img, info, prefixed(err)
	}
	return img, info, nil
}

func (a *app) buildCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "build [NAME...]",
		Short: "Compile functions statically and load their FROM scratch images",
		Long: `Compile each function of functions.yml statically (Go; gcc/g++ -static for C and C++;
a bin function's executable as is), assemble a FROM scratch image (watchdog + function,
non-root user) and load it into the local Docker Engine. No registry and no base image
are involved; the same source always gives the same image ID.`,
		Example: "  pulse build\n  pulse build hello -f ../functions.yml",
		RunE: func(cmd *cobra.Command, args []string) error {
			specs, err := loadSpecs(path, args)
			if err != nil {
				return err
			}
			for _, s := range specs {
				img, info, err := a.buildAndLoad(cmd.Context(), s)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "%s: image %s (%s), %.2f MB, built in %s\n",
					s.Name, shortID(img.ID), img.Tag, float64(info.ImageSize)/1e6, info.Duration.Round(1e6))
			}
			return nil
		},
	}
	specFlag(cmd, &path)
	return cmd
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
