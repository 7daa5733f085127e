package main

// The functions suite: what a function costs from source to a running,
// scaled Swarm service on the local single-node swarm, through Pulse's own
// packages. Stages: build, deploy (this file), scale, idle
// (functions_replica.go); functions_report.go sums the rows up.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// functionStages are the suite's stages, in the order they run.
var functionStages = []string{"build", "deploy", "scale", "idle"}

// functionTemplates are the templates the suite builds and deploys; a
// quick run deploys quickDeployTemplates.
var (
	functionTemplates    = []string{function.LangGo, function.LangC, function.LangCPP, function.LangBin}
	quickDeployTemplates = []string{function.LangGo, function.LangC}
)

// Settings of the functions suite.
const (
	endpointPoll     = 20 * time.Millisecond  // Swarm.Endpoints while waiting for a replica
	httpPoll         = 10 * time.Millisecond  // between requests to a replica not answering yet
	benchDrainGrace  = 100 * time.Millisecond // quick scale-downs and removals between trials
	fastInterval     = 250 * time.Millisecond // the second scale target's health interval
	idleReplicas     = 4
	idleSettle       = 3 * time.Second // from replicas ready to an idle window
	buildTimeout     = 5 * time.Minute
	namePrefix       = "pbench-" // then the run's ID
	healthLogEntries = 5         // the health probe results Docker keeps
)

// functionsBench runs the functions suite.
type functionsBench struct {
	cfg           config
	log           *slog.Logger
	env           suiteEnv
	api           *client.Client
	sw            *function.Swarm
	run, prefix   string // the run's ID (6 hex digits); namePrefix + run
	body          string
	http          *http.Client
	rep           *report.Report
	specs         map[string]function.Spec // by template, and the scale targets by name
	images        map[string]function.Image
	targets       []scaleTarget
	startInterval time.Duration  // every deploy's HealthStartInterval
	rewrote       bool           // an endpoint was not on loopback: 127.0.0.1 was called
	cred          *runCredential // the run's replica credential
	swept         bool
}

// scaleTarget is one of the two go functions of the scale and idle stages.
type scaleTarget struct {
	name     string
	interval time.Duration
}

// runFunctions runs the functions suite.
func runFunctions(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := slices.DeleteFunc(slices.Clone(functionStages), func(s string) bool { return len(cfg.Only) > 0 && !slices.Contains(cfg.Only, s) })
	deployTemplates := functionTemplates
	if cfg.Quick {
		deployTemplates = quickDeployTemplates
	}
	id, err := runID()
	if err != nil {
		return err
	}
	rep := report.New(cfg.Suite, env.started)
	rep.Title = " (medians over trials)"
	if env.clkNote != "" {
		rep.Note("%s", env.clkNote)
	}
	b := &functionsBench{
		cfg: cfg, log: log, env: env, run: id, prefix: namePrefix + id, body: payload(cfg.BodyBytes), rep: rep,
		http:  &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		specs: map[string]function.Spec{}, images: map[string]function.Image{},
	}
	if err := b.connect(ctx, collectMachine(ctx, env.tools, env.clk)); err != nil {
		return err
	}
	defer func() {
		if !b.swept {
			b.sweep()
		}
	}()
	if b.cred, err = newRunCredential(ctx, b.api, benchInstance(b.run), env.tmp); err != nil {
		return err
	}
	rep.Record("run", map[string]any{"name_prefix": b.prefix, "stages": stages, "deploy_templates": deployTemplates,
		"health_start_interval_ms": ms(b.startInterval), "drain_grace_ms": ms(benchDrainGrace), "endpoint_poll_ms": ms(endpointPoll), "http_poll_ms": ms(httpPoll)})
	log.Info("functions suite", "stages", strings.Join(stages, ","), "prefix", b.prefix)

	if err := b.prepareSources(ctx); err != nil {
		return err
	}
	stage := func(name string, f func(context.Context) error) error {
		return runStage(ctx, log, stages, name, &rep.Notes, f, nil)
	}
	if err := stage("build", b.buildStage); err != nil {
		return err
	}
	if err := b.loadImages(ctx); err != nil {
		return err
	}
	if err := stage("deploy", func(ctx context.Context) error { return b.deployStage(ctx, deployTemplates) }); err != nil {
		return err
	}
	for _, tmpl := range functionTemplates { // the images loaded but never deployed
		b.remove(ctx, b.specs[tmpl].Name)
	}
	if slices.Contains(stages, "scale") || slices.Contains(stages, "idle") {
		if err := b.deployTargets(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Note("the scale and idle stages did not run: %v", err)
		} else if err := stage("scale", b.scaleStage); err != nil {
			return err
		} else if err := stage("idle", b.idleStage); err != nil {
			return err
		}
		for _, t := range b.targets {
			b.remove(ctx, t.name)
		}
	}
	functionsSummary(rep, b.startInterval)
	if b.rewrote {
		rep.Note("%s", rewroteNote)
	}
	rep.Cleanup = b.sweep()
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// connect opens the engine client, checks that the engine is the manager of
// a single-node swarm (every replica runs on this host) and records it.
func (b *functionsBench) connect(ctx context.Context, m machineInfo) error {
	api, info, ver, err := connectSingleNodeSwarm(ctx, "functions", "so that every replica runs on this host and is called on loopback", callTimeout)
	if err != nil {
		return err
	}
	b.api, b.sw = api, localSwarm(api)
	others, _, err := serviceNames(ctx, api)
	if err != nil {
		return err
	}
	goCache, _ := commandOutput(ctx, b.env.tools.goBin, "env", "GOCACHE")
	b.startInterval = function.StartIntervalFor(api.ClientVersion()) // as pulse deploy sets it
	b.rep.Machine = m
	b.rep.Record("engine", map[string]any{"version": ver.Version, "api_version": ver.APIVersion, "storage_driver": info.Driver,
		"cgroup_version": info.CgroupVersion, "swarm_nodes": info.Swarm.Nodes, "node_addr": info.Swarm.NodeAddr, "other_services": others, "gocache": goCache})
	c := b.cfg
	b.rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, gcc %s, g++ %s, Docker Engine %s (API %s, %s storage, cgroup v%s), %d-node swarm, clock %g Hz; "+
		"%d build and deploy trial(s) per template, %d scale trial(s) per health interval, %g s idle windows with %d replicas, %d-byte body",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.GCC, m.GXX, ver.Version, ver.APIVersion, info.Driver, info.CgroupVersion, info.Swarm.Nodes, m.ClockTicks,
		c.Trials, c.ScaleTrials, c.IdleWindow.Seconds(), idleReplicas, c.BodyBytes)
	if len(others) > 0 {
		b.rep.Setup += fmt.Sprintf("; %d other service(s) on the engine throughout (%s)", len(others), strings.Join(others, ", "))
	}
	return nil
}

// prepareSources scaffolds every template and the two scale targets (go,
// default and 250 ms health interval) into the temporary directory.
func (b *functionsBench) prepareSources(ctx context.Context) (err error) {
	if function.DefaultHealthInterval != time.Second {
		return fmt.Errorf("function.DefaultHealthInterval is %s: update the scale goal's name", function.DefaultHealthInterval)
	}
	src := filepath.Join(b.env.tmp, "src")
	for _, tmpl := range functionTemplates {
		if b.specs[tmpl], err = b.scaffold(ctx, src, b.prefix+"-"+tmpl, tmpl); err != nil {
			return err
		}
	}
	for _, iv := range []time.Duration{function.DefaultHealthInterval, fastInterval} {
		t := scaleTarget{b.prefix + "-scale-" + iv.String(), iv}
		if b.specs[t.name], err = b.scaffold(ctx, src, t.name, function.LangGo); err != nil {
			return err
		}
		b.targets = append(b.targets, t)
	}
	return nil
}

// scaffold creates the function name from lang's template in dir, as pulse
// new would, and loads its spec; bin gets bench/c/echo.c, static, as ./fn.
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
	if err != nil || len(specs) != 1 {
		return function.Spec{}, fmt.Errorf("load the %s template's spec: %d functions, %v", lang, len(specs), err)
	}
	if specs[0].Labels == nil {
		specs[0].Labels = map[string]string{}
	}
	specs[0].Labels[runLabel] = b.run
	return specs[0], nil
}

// build builds key's function with the Pulse cache dir cache and keeps its
// image.
func (b *functionsBench) build(ctx context.Context, key, cache string) (function.Image, function.BuildInfo, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	t, start := b.env.tools, time.Now()
	img, info, err := function.Build(ctx, b.specs[key], function.BuildOptions{CacheDir: cache, GoCmd: t.goBin, CC: t.gcc, CXX: t.gxx})
	if err == nil {
		b.images[key] = img
	}
	return img, info, time.Since(start), err
}

// buildStage builds every template Trials times into a new, empty Pulse
// cache dir (cold) and again (warm); Go's build cache is left as it is.
func (b *functionsBench) buildStage(ctx context.Context) error {
	return eachTrial(b.cfg.Trials, functionTemplates, func(trial int, tmpl string) error {
		if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
			return err
		}
		cache := filepath.Join(b.env.tmp, "cache", fmt.Sprintf("%s-%d", tmpl, trial))
		for _, kind := range []string{"cold", "warm"} {
			r := report.NewRow("build", "template", tmpl, "trial", trial, "cache", kind)
			img, info, took, err := b.build(ctx, tmpl, cache)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.Put(kind+"_s", took.Seconds())
			if err == nil {
				r.Labels["image"] = img.ID
				r.PutAll(map[string]float64{"image_bytes": float64(info.ImageSize), "function_bytes": float64(info.BinarySize),
					"watchdog_bytes": float64(info.ImageSize - info.BinarySize), "archive_bytes": float64(len(img.Archive))})
			}
			if b.add(r, err); err != nil {
				break // a warm build after a failed cold one is not warm
			}
		}
		if err := os.RemoveAll(cache); err != nil {
			return fmt.Errorf("remove %s: %w", cache, err)
		}
		return nil
	})
}

// image returns key's built image, building it first (untimed, with a
// shared cache) if no build stage did.
func (b *functionsBench) image(ctx context.Context, key string) (function.Image, error) {
	if img, ok := b.images[key]; ok {
		return img, nil
	}
	img, _, _, err := b.build(ctx, key, filepath.Join(b.env.tmp, "cache", "shared"))
	return img, err
}

// loadImages loads every built template's image into the engine, recording
// the load's time and the image's size as the engine counts it.
func (b *functionsBench) loadImages(ctx context.Context) error {
	for _, tmpl := range functionTemplates {
		img, ok := b.images[tmpl]
		if !ok {
			continue
		}
		r := report.NewRow("image", "template", tmpl)
		cctx, cancel := call(ctx)
		start := time.Now()
		err := function.LoadImage(cctx, b.api, img)
		r.Put("load_s", secondsSince(start))
		var got image.InspectResponse
		if err == nil {
			got, err = b.api.ImageInspect(cctx, img.ID)
			r.Put("engine_bytes", float64(got.Size))
		}
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.add(r, err)
	}
	return nil
}

// deployOptions are every deploy's options, with the health interval.
func (b *functionsBench) deployOptions(interval time.Duration) function.DeployOptions {
	return function.DeployOptions{HealthInterval: interval, HealthStartInterval: b.startInterval, DrainGrace: benchDrainGrace, Instance: benchInstance(b.run)}
}

// deployStage deploys a fresh service of each template Trials times, times
// it to the first 200 and removes it; a failed removal stops the stage.
func (b *functionsBench) deployStage(ctx context.Context, templates []string) error {
	return eachTrial(b.cfg.Trials, templates, func(trial int, tmpl string) error {
		r := report.NewRow("deploy", "template", tmpl, "trial", trial)
		err := b.deployTrial(ctx, b.specs[tmpl], r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.add(r, err)
		if rf := (removeFailed{}); errors.As(err, &rf) {
			return err
		}
		return nil
	})
}

// removeFailed is a failed removal: the engine may hold something of ours.
type removeFailed struct{ error }

// deployTrial loads spec's image (untimed), deploys it, times it to the
// first 200 to a POST and removes it, image included.
func (b *functionsBench) deployTrial(ctx context.Context, spec function.Spec, r *report.Row) error {
	img, err := b.image(ctx, r.Label("template"))
	if err != nil {
		return err
	}
	cctx, cancel := call(ctx)
	start := time.Now()
	err = function.LocalDistributor{API: b.api}.Ensure(cctx, img)
	cancel()
	if r.Put("load_s", secondsSince(start)); err != nil {
		return fmt.Errorf("load %s: %w", img.Tag, err)
	}
	if err := b.quiet(ctx, r); err != nil {
		return err
	}
	err = b.timeReplica(ctx, r, spec.Name, nil, func() error {
		_, err := b.sw.Deploy(ctx, spec, img, b.deployOptions(0))
		return err
	}, http.MethodPost, "/", b.body)
	start = time.Now()
	rerr := removeFunction(ctx, b.sw, spec.Name)
	if r.Put("remove_s", secondsSince(start)); rerr != nil {
		return removeFailed{fmt.Errorf("remove %s: %w", spec.Name, rerr)}
	}
	return err
}

// eachTrial calls f for trials 1 to n and in each for every item, their
// order rotated by one per trial; it stops at f's first error.
func eachTrial[T any](n int, items []T, f func(trial int, it T) error) error {
	for trial := 1; trial <= n; trial++ {
		for _, it := range rotate(items, trial-1) {
			if err := f(trial, it); err != nil {
				return err
			}
		}
	}
	return nil
}

// add records err (if any) in r, rounds its figures to a thousandth, logs
// it and adds it to the report.
func (b *functionsBench) add(r *report.Row, err error) {
	r.Fail(err)
	for k, v := range r.Values {
		r.Values[k] = report.Round3(v)
	}
	if err != nil {
		b.log.Warn(r.Kind+" failed", "labels", r.Labels, "err", err)
	} else {
		b.log.Info(r.Kind, "labels", r.Labels, "values", r.Values)
	}
	b.rep.Add(r)
}

// quiet waits for the host to be quiet before a trial; r gets the wait.
func (b *functionsBench) quiet(ctx context.Context, r *report.Row) error {
	waited, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait)
	load1, _ := readLoad1("/proc")
	r.Put("quiet_wait_s", waited.Seconds()).Put("quiet_busy_pct", math.Round(busy)).Put("load1", load1)
	return err
}

// remove removes the function name, image included, and logs a failure.
func (b *functionsBench) remove(ctx context.Context, name string) {
	if err := removeFunction(ctx, b.sw, name); err != nil {
		b.log.Warn("remove", "function", name, "err", err)
	}
}

// sweep removes whatever of this run is left on the engine, and the run's
// credential; it runs once, also after an interrupt, and returns what it found.
func (b *functionsBench) sweep() []string {
	b.swept = true
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	mine := func(name string) bool { return strings.HasPrefix(name, b.prefix) }
	found := engineSweep{
		api: b.api, log: b.log, mine: mine, cred: b.cred,
		remove:    func(ctx context.Context, name string) error { return removeFunction(ctx, b.sw, name) },
		images:    filters.NewArgs(filters.Arg("label", contract.LabelFunction)),
		imageMine: func(l map[string]string) bool { return mine(l[contract.LabelFunction]) },
	}.run(ctx, nil)
	b.cred = nil
	return found
}
