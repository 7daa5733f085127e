package main

// The functions suite: build, deploy and scale a function on the local single-node swarm
// through Pulse's own packages; its tables, goals and notes.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

const suiteFunctions = "functions"

// functionStages are the suite's stages, in the order they run.
var functionStages = []string{"build", "deploy", "scale"}

// functionTemplates are the templates built and deployed (quick: quickDeployTemplates deployed).
var (
	functionTemplates    = []string{function.LangGo, function.LangC, function.LangCPP, function.LangBin}
	quickDeployTemplates = []string{function.LangGo, function.LangC}
)

// Settings of the functions suite.
const (
	endpointPoll    = 20 * time.Millisecond  // Swarm.Endpoints while waiting for a replica
	httpPoll        = 10 * time.Millisecond  // between requests to a replica not answering yet
	benchDrainGrace = 100 * time.Millisecond // quick scale-downs and removals between trials
	fastInterval    = 250 * time.Millisecond // the second scale target's health interval
	buildTimeout    = 5 * time.Minute
	namePrefix      = "pbench-" // then the run's ID
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
	rep           *report.Report
	specs         map[string]function.Spec // by template, and the scale targets by name
	images        map[string]function.Image
	targets       []scaleTarget
	startInterval time.Duration  // every deploy's HealthStartInterval
	rewrote       bool           // an endpoint was not on loopback: 127.0.0.1 was called
	cred          *runCredential // the run's replica credential
}

// scaleTarget is one of the two go functions of the scale stage.
type scaleTarget struct {
	name     string
	interval time.Duration
}

// runFunctions runs the functions suite.
func runFunctions(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := cfg.stages(functionStages)
	id, err := runID()
	if err != nil {
		return err
	}
	rep := report.New(cfg.Suite, env.started)
	rep.Title = " (medians over trials)"
	if env.clkNote != "" {
		rep.Note("%s", env.clkNote)
	}
	b := &functionsBench{cfg: cfg, log: log, env: env, run: id, prefix: namePrefix + id, body: payload(cfg.BodyBytes), rep: rep,
		specs: map[string]function.Spec{}, images: map[string]function.Image{}}
	if err := b.connect(ctx, collectMachine(ctx, env.tools, env.clk)); err != nil {
		return err
	}
	swept := false
	defer func() {
		if !swept {
			b.sweep()
		}
	}()
	if b.cred, err = newRunCredential(ctx, b.api, benchInstance(b.run), env.tmp); err != nil {
		return err
	}
	log.Info("functions suite", "stages", strings.Join(stages, ","), "prefix", b.prefix)
	if err := b.prepareSources(ctx); err != nil {
		return err
	}
	for i, f := range []func(context.Context) error{b.buildStage, b.deployStage, b.scaleStage} {
		if err := runStage(ctx, log, stages, functionStages[i], &rep.Notes, f, nil); err != nil {
			return err
		}
	}
	functionsSummary(rep, b.startInterval)
	if b.rewrote {
		rep.Note("%s", rewroteNote)
	}
	swept, rep.Cleanup = true, b.sweep()
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// connect opens the engine client of a single-node swarm and records it.
func (b *functionsBench) connect(ctx context.Context, m machineInfo) error {
	api, info, ver, err := connectSingleNodeSwarm(ctx, "functions", "so that every replica runs on this host and is called on loopback")
	if err != nil {
		return err
	}
	b.api, b.sw = api, function.NewSwarm(api, function.LocalDistributor{API: api}, nil) // images load into this engine
	others, _, err := serviceNames(ctx, api)
	if err != nil {
		return err
	}
	b.startInterval = function.StartIntervalFor(api.ClientVersion()) // as pulse deploy sets it
	b.rep.Machine = m
	b.rep.Record("engine", map[string]any{"version": ver.Version, "api_version": ver.APIVersion, "storage_driver": info.Driver, "other_services": others})
	b.rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s, gcc %s, g++ %s, Docker Engine %s (API %s, %s storage), %d-node swarm; "+
		"%d build and deploy trial(s) per template, %d scale trial(s) per health interval, %d-byte body",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, m.GCC, m.GXX, ver.Version, ver.APIVersion, info.Driver, info.Swarm.Nodes,
		b.cfg.Trials, b.cfg.ScaleTrials, b.cfg.BodyBytes)
	if len(others) > 0 {
		b.rep.Setup += fmt.Sprintf("; %d other service(s) on the engine throughout (%s)", len(others), strings.Join(others, ", "))
	}
	return nil
}

// prepareSources scaffolds every template and the two scale targets (go).
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

// scaffold creates name from lang's template in dir as pulse new would (bin: bench/c/echo.c).
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
			return function.Spec{}, fmt.Errorf("gcc -static bench/c/echo.c: %w: %s", err, report.Truncate(strings.TrimSpace(string(out)), 500))
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

// build builds key's function with the Pulse cache dir cache and keeps its image.
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

// buildStage builds every template Trials times into an empty cache dir (cold) and again (warm).
func (b *functionsBench) buildStage(ctx context.Context) error {
	return eachTrial(b.cfg.Trials, functionTemplates, func(trial int, tmpl string) error {
		if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
			return err
		}
		cache := filepath.Join(b.env.tmp, "cache", fmt.Sprintf("%s-%d", tmpl, trial))
		for _, kind := range []string{"cold", "warm"} {
			r := report.NewRow("build", "template", tmpl, "trial", trial, "cache", kind)
			_, info, took, err := b.build(ctx, tmpl, cache)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.Put(kind+"_s", took.Seconds())
			if err == nil {
				r.PutAll(map[string]float64{"image_bytes": float64(info.ImageSize), "function_bytes": float64(info.BinarySize),
					"watchdog_bytes": float64(info.ImageSize - info.BinarySize)})
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

// image returns key's built image, building it (untimed) if no build stage did.
func (b *functionsBench) image(ctx context.Context, key string) (function.Image, error) {
	if img, ok := b.images[key]; ok {
		return img, nil
	}
	img, _, _, err := b.build(ctx, key, filepath.Join(b.env.tmp, "cache", "shared"))
	return img, err
}

// deployOptions are every deploy's options, with the health interval.
func (b *functionsBench) deployOptions(interval time.Duration) function.DeployOptions {
	return function.DeployOptions{HealthInterval: interval, HealthStartInterval: b.startInterval, DrainGrace: benchDrainGrace, Instance: benchInstance(b.run)}
}

// deployStage deploys each template as a fresh service Trials times, timed to its first 200.
func (b *functionsBench) deployStage(ctx context.Context) error {
	return eachTrial(b.cfg.Trials, map[bool][]string{false: functionTemplates, true: quickDeployTemplates}[b.cfg.Quick], func(trial int, tmpl string) error {
		r, spec := report.NewRow("deploy", "template", tmpl, "trial", trial), b.specs[tmpl]
		img, err := b.image(ctx, tmpl)
		if err == nil {
			cctx, cancel := call(ctx)
			err = function.LocalDistributor{API: b.api}.Ensure(cctx, img)
			cancel()
		}
		if err == nil {
			if _, _, err = waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err == nil {
				err = b.timeReplica(ctx, r, spec.Name, nil, func() error {
					_, err := b.sw.Deploy(ctx, spec, img, b.deployOptions(0))
					return err
				}, http.MethodPost, "/", b.body)
			}
		}
		rerr := removeFunction(ctx, b.sw, spec.Name)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if b.add(r, cmp.Or(err, rerr)); rerr != nil {
			return fmt.Errorf("remove %s: %w", spec.Name, rerr)
		}
		return nil
	})
}

// scaleStage scales each scale target 1 → 2 (and back) ScaleTrials times, timed to a 200.
func (b *functionsBench) scaleStage(ctx context.Context) error {
	defer func() {
		for _, t := range b.targets {
			if err := removeFunction(ctx, b.sw, t.name); err != nil {
				b.log.Warn("remove", "function", t.name, "err", err)
			}
		}
	}()
	for _, t := range b.targets {
		img, err := b.image(ctx, t.name)
		if err != nil {
			return err
		}
		if _, err := b.sw.Deploy(ctx, b.specs[t.name], img, b.deployOptions(t.interval)); err != nil {
			return fmt.Errorf("deploy %s: %w", t.name, err)
		}
	}
	for _, t := range b.targets {
		if err := waitReplicas(ctx, b.sw, b.api, t.name, 1); err != nil {
			return err
		}
	}
	return eachTrial(b.cfg.ScaleTrials, b.targets, func(trial int, t scaleTarget) error {
		r := report.NewRow("scale", "interval", t.interval, "trial", trial)
		if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
			return err
		}
		eps, err := b.sw.Endpoints(ctx, t.name)
		if err == nil && len(eps) != 1 {
			err = fmt.Errorf("%d replicas up before the scale, want 1", len(eps))
		} else if err == nil {
			err = b.timeReplica(ctx, r, t.name, map[string]bool{eps[0].TaskID: true}, func() error {
				return b.sw.Scale(ctx, t.name, 2, true)
			}, http.MethodGet, contract.HealthPath, "")
		}
		back := b.sw.Scale(ctx, t.name, 1, true)
		if back == nil {
			back = waitReplicas(ctx, b.sw, b.api, t.name, 1)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if b.add(r, err); back != nil {
			return fmt.Errorf("scale %s back to 1: %w", t.name, back)
		}
		return nil
	})
}

// timeReplica calls start and puts into r the seconds until name's new replica answers 200.
func (b *functionsBench) timeReplica(ctx context.Context, r *report.Row, name string, known map[string]bool, start func() error, method, path, body string) error {
	t0 := time.Now()
	if err := start(); err != nil {
		return err
	}
	var url string
	err := poll(ctx, readyTimeout, endpointPoll, func(late bool) (bool, error) {
		eps, err := b.sw.Endpoints(ctx, name)
		if i := slices.IndexFunc(eps, func(ep function.Endpoint) bool { return !known[ep.TaskID] }); i >= 0 {
			addr, rewrote := loopbackAddr(eps[i].Addr)
			url, b.rewrote = "http://"+addr+path, b.rewrote || rewrote
			return true, nil
		} else if late {
			return false, fmt.Errorf("no new replica of %s in the task list after %s (last error: %v)", name, readyTimeout, err)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	err = poll(ctx, readyTimeout, httpPoll, func(late bool) (bool, error) {
		status, answer, err := send(ctx, method, url, body, b.cred.header())
		switch {
		case err == nil && status == http.StatusOK && !strings.Contains(answer, body):
			return false, fmt.Errorf("the function answered %q, which lacks the request body %q", report.Truncate(answer, 200), body)
		case err == nil && status == http.StatusOK:
			return true, nil
		case late:
			return false, fmt.Errorf("%s %s: no 200 after %s (last: %d %q, %v)", method, url, readyTimeout, status, report.Truncate(answer, 200), err)
		}
		return false, nil
	})
	if err == nil {
		r.Put("ready_s", time.Since(t0).Seconds())
	}
	return err
}

// eachTrial calls f for each trial and item, rotated per trial, until an error.
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

// add records err in r, rounds its figures, logs it and adds it to the report.
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

// sweep removes what is left of the run and its credential, returning what it found.
func (b *functionsBench) sweep() []string {
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

// imageGoals are the image size limits, per template.
var imageGoals = []struct {
	template, name string
	limitMB        float64
}{
	{"go", "image ≤ 7 MB: Go hello (go template)", 7},
	{"c", "image ≤ 7 MB: C function + watchdog (c template)", 7},
	{"cpp", "image ≤ 8 MB: C++ params echo + watchdog (cpp template)", 8},
}

// scaleGoalName is the issue's +1 scale goal.
const scaleGoalName = "scale +1 → new replica answers ≤ 1 s (median, default health interval 1 s)"

// startIntervalNote explains why the health interval bounds a start.
const startIntervalNote = "Docker 20.10 (API 1.41) has no health start interval, so a new task's port is only visible " +
	"(the task running) once its first health probe has passed, one interval after its container started"

// functionsSummary sums the rows up; startInterval is the services' health start interval.
func functionsSummary(rep *report.Report, startInterval time.Duration) {
	var flags []string
	sum := func(kind string, by ...string) []report.Group {
		groups := report.Summarize(rep.Rows, kind, by...)
		for _, g := range groups {
			g.Labels["kind"] = kind
			for _, f := range g.Flags {
				flags = append(flags, kind+" "+g.Label(by[0])+": "+f)
			}
		}
		return groups
	}
	builds, deploys, scales := sum("build", "template"), sum("deploy", "template"), sum("scale", "interval")
	rep.Summary = slices.Concat(builds, deploys, scales)
	trials := report.Col{Head: "trials", Cell: func(g report.Group) string { return fmt.Sprintf("%d (%d failed)", g.Runs, g.Failed) }}
	rep.Tables = []report.Table{
		report.GroupTable("Build per template: cold into an empty Pulse cache dir, warm the same build again; MB as Build counts the image's files.",
			builds, "template", report.Stat("cold s", "cold_s", "%.2f"), report.Stat("warm s", "warm_s", "%.2f"),
			report.Scaled("image MB", "image_bytes", "%.2f", 1/mb), report.Scaled("function MB", "function_bytes", "%.2f", 1/mb),
			report.Scaled("watchdog MB", "watchdog_bytes", "%.2f", 1/mb), trials),
		report.GroupTable("Scale +1 → the new replica answers GET /_/health (go function): seconds from just before `Swarm.Scale` 1 → 2.",
			scales, "interval", report.Stat("new replica 200 s", "ready_s", "%.2f"), report.Spread("range s", "ready_s", "%.2f"), trials),
		report.GroupTable("Deploy → first 200 to a POST: seconds from just before `Swarm.Deploy` of a fresh service (image loaded).",
			deploys, "template", report.Stat("first 200 s", "ready_s", "%.2f"), report.Spread("range s", "ready_s", "%.2f"), trials),
	}
	rep.Goals = functionsGoals(builds, scales)
	rep.Notes = append(append(rep.Notes, functionsNotes(scales, startInterval)...), flags...)
}

// functionsGoals checks the image sizes and the +1 scale; failed trials fail a goal.
func functionsGoals(builds, scales []report.Group) []report.Goal {
	var goals []report.Goal
	for _, ig := range imageGoals {
		g := report.NewGoal(ig.name, "MB", ig.limitMB)
		if b, ok := report.Find(builds, "template", ig.template); ok && b.M("watchdog_bytes") > 0 {
			g = g.Noted("function %.2f MB + watchdog %.2f MB", b.M("function_bytes")/mb, b.M("watchdog_bytes")/mb)
		} else if ok {
			g = g.Noted("function %.2f MB, the watchdog linked in", b.M("function_bytes")/mb)
		}
		goals = append(goals, g.OverScaled(builds, "template", ig.template, "image_bytes", 1/mb))
	}
	g := report.NewGoal(scaleGoalName, "s", 1).Noted("see the notes")
	if f, ok := report.Find(scales, "interval", fastInterval.String()); ok && f.Runs > 0 {
		g = g.Noted("with a %s health interval: %.2f s median; see the notes", fastInterval, f.M("ready_s"))
	}
	return append(goals, g.Over(scales, "interval", function.DefaultHealthInterval.String(), "ready_s"))
}

// functionsNotes explain what bounds a new replica's start (the scale goal).
func functionsNotes(scales []report.Group, startInterval time.Duration) []string {
	s, ok := report.Find(scales, "interval", function.DefaultHealthInterval.String())
	if !ok || s.Runs == 0 {
		return nil
	}
	if startInterval > 0 {
		return []string{fmt.Sprintf("scale +1: the services had a health start interval of %s: a new replica is probed that often until it is healthy", startInterval)}
	}
	return []string{"scale +1: " + startIntervalNote}
}
