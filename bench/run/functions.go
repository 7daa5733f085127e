package main

import (
	"context"
	"errors"
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

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
)

// Stages of the functions suite, in the order they run. The scale and idle
// stages share two services of the go function, deployed after the deploy
// stage so that they do not idle through it.
const (
	stageBuild  = "build"
	stageDeploy = "deploy"
	stageScale  = "scale"
	stageIdle   = "idle"
)

var functionStages = []string{stageBuild, stageDeploy, stageScale, stageIdle}

var (
	// functionTemplates are the templates the suite builds and deploys.
	functionTemplates = []string{function.LangGo, function.LangC, function.LangCPP, function.LangBin}
	// quickDeployTemplates are the ones a quick run deploys.
	quickDeployTemplates = []string{function.LangGo, function.LangC}
)

// Settings of the functions suite.
const (
	endpointPoll = 20 * time.Millisecond // Swarm.Endpoints while waiting for a replica
	httpPoll     = 10 * time.Millisecond // between requests to a replica not answering yet
	// benchDrainGrace is the services' drain grace: short, so that a
	// scale-down or removal between trials takes no time. A start does not
	// depend on it.
	benchDrainGrace = 100 * time.Millisecond
	fastInterval    = fastIntervalMS * time.Millisecond
	idleReplicas    = 4
	// idleSettle is the pause between replicas turning ready and an idle
	// window: their start is over and their probes run at their period.
	idleSettle   = 3 * time.Second
	buildTimeout = 5 * time.Minute
	// namePrefix starts the name of every function the suite creates,
	// followed by the run's ID; runLabel is the service label holding the
	// ID.
	namePrefix = "pbench-"
	runLabel   = "pulse-bench.run"
	// healthLogEntries is how many health probe results Docker keeps.
	healthLogEntries = 5
	// labelSwarmServiceName is the label Swarm puts on a task's container.
	labelSwarmServiceName = "com.docker.swarm.service.name"
)

// scaleTarget is one of the two go functions of the scale and idle stages.
type scaleTarget struct {
	name       string
	interval   time.Duration // DeployOptions.HealthInterval; 0 is the default
	label      string        // "1s", "250ms"
	intervalMS float64       // the effective interval
}

// functionsBench runs the functions suite.
type functionsBench struct {
	cfg    config
	log    *slog.Logger
	env    suiteEnv
	api    *client.Client
	sw     *function.Swarm
	run    string // the run's ID: 6 hex digits
	prefix string // namePrefix + run
	body   string
	http   *http.Client
	rep    *functionsReport

	specs   map[string]function.Spec // by template, and the scale functions by name
	images  map[string]function.Image
	infos   map[string]function.BuildInfo
	targets []scaleTarget
	swept   bool
	// startInterval is DeployOptions.HealthStartInterval of every deploy.
	startInterval time.Duration
	// rewrote is set once an endpoint's address was not loopback and the
	// harness called 127.0.0.1 instead.
	rewrote bool
	// cred is the run's replica credential: its secret lets the run's
	// instance deploy, its value goes with every request to a replica.
	cred *runCredential
}

// runFunctions runs the functions suite.
func runFunctions(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := functionStages
	if len(cfg.Only) > 0 {
		stages = slices.DeleteFunc(slices.Clone(functionStages), func(s string) bool { return !slices.Contains(cfg.Only, s) })
	}
	deployTemplates := functionTemplates
	if cfg.Quick {
		deployTemplates = quickDeployTemplates
	}
	id, err := runID()
	if err != nil {
		return err
	}
	rep := &functionsReport{
		runHead: newRunHead(cfg.Suite, env.started),
		Config: functionsConfig{
			Quick: cfg.Quick, Stages: stages, Templates: functionTemplates, DeployTemplates: deployTemplates,
			Trials: cfg.Trials, ScaleTrials: cfg.ScaleTrials, IdleWindowS: cfg.IdleWindow.Seconds(), IdleReplicas: idleReplicas,
			QuietWaitS: cfg.QuietWait.Seconds(), BodyBytes: cfg.BodyBytes,
			EndpointPollMS: ms(endpointPoll), HTTPPollMS: ms(httpPoll), DrainGraceMS: ms(benchDrainGrace),
			NamePrefix: namePrefix + id,
		},
		Machine: collectMachine(ctx, env.tools, env.clk),
	}
	if env.clkNote != "" {
		rep.Notes = append(rep.Notes, env.clkNote)
	}
	b := &functionsBench{
		cfg: cfg, log: log, env: env, run: id, prefix: namePrefix + id, body: payload(cfg.BodyBytes), rep: rep,
		http:  &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		specs: map[string]function.Spec{}, images: map[string]function.Image{}, infos: map[string]function.BuildInfo{},
	}
	if err := b.connect(ctx); err != nil {
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
	log.Info("functions suite", "stages", strings.Join(stages, ","), "prefix", b.prefix, "engine", rep.Engine.Version)

	if err := b.prepareSources(ctx); err != nil {
		return err
	}
	stage := func(name string, f func(context.Context) error) error {
		return runStage(ctx, log, stages, name, &rep.Notes, f, nil)
	}
	if err := stage(stageBuild, b.buildStage); err != nil {
		return err
	}
	if err := b.loadImages(ctx); err != nil {
		return err
	}
	if err := stage(stageDeploy, func(ctx context.Context) error { return b.deployStage(ctx, deployTemplates) }); err != nil {
		return err
	}
	// The images no deploy trial removed: loaded, never deployed.
	for _, tmpl := range functionTemplates {
		if err := b.remove(ctx, b.specs[tmpl].Name); err != nil {
			log.Warn("remove", "function", b.specs[tmpl].Name, "err", err)
		}
	}
	if slices.Contains(stages, stageScale) || slices.Contains(stages, stageIdle) {
		if err := b.deployTargets(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("scale targets", "err", err)
			rep.Notes = append(rep.Notes, fmt.Sprintf("the scale and idle stages did not run: %v", err))
		} else {
			if err := stage(stageScale, b.scaleStage); err != nil {
				return err
			}
			if err := stage(stageIdle, b.idleStage); err != nil {
				return err
			}
		}
		for _, t := range b.targets {
			if err := b.remove(ctx, t.name); err != nil {
				log.Warn("remove", "function", t.name, "err", err)
			}
		}
	}

	rep.Summary = functionsSummary{
		Builds:  summarizeBuilds(functionTemplates, rep.Builds, rep.Images),
		Scale:   summarizeScale(rep.Scales),
		Deploys: summarizeDeploys(functionTemplates, rep.Deploys),
		Idle:    summarizeIdle(rep.Idle),
	}
	rep.Goals = functionsGoals(rep.Summary)
	rep.Notes = append(rep.Notes, functionsNotes(rep.Summary, rep.Config)...)
	if b.rewrote {
		rep.Notes = append(rep.Notes, rewroteNote)
	}
	rep.Cleanup = b.sweep()
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderFunctionsText(*rep), func(rel string) string { return renderFunctionsMarkdown(*rep, rel) })
}

// connect opens the engine client and checks that the engine is the
// manager of a single-node swarm, where every replica runs on this host.
func (b *functionsBench) connect(ctx context.Context) error {
	api, info, ver, err := connectSingleNodeSwarm(ctx, "functions", "so that every replica runs on this host and is called on loopback", callTimeout)
	if err != nil {
		return err
	}
	others, _, err := serviceNames(ctx, api)
	if err != nil {
		return err
	}
	e := engineInfo{
		Version: ver.Version, APIVersion: ver.APIVersion, StorageDriver: info.Driver, CgroupVersion: info.CgroupVersion,
		Nodes: info.Swarm.Nodes, NodeAddr: info.Swarm.NodeAddr, OtherServices: others,
	}
	e.GoCache, _ = commandOutput(ctx, b.env.tools.goBin, "env", "GOCACHE")
	b.rep.Engine = e
	// As pulse deploy does: a health start interval where the engine has
	// one (API 1.44+), none on 20.10.
	b.startInterval = function.StartIntervalFor(api.ClientVersion())
	b.rep.Config.StartIntervalMS = ms(b.startInterval)
	b.api = api
	b.sw = function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
	return nil
}

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
	b.targets = []scaleTarget{
		{name: b.prefix + "-scale-1s", label: "1s", intervalMS: defaultIntervalMS},
		{name: b.prefix + "-scale-250ms", interval: fastInterval, label: "250ms", intervalMS: fastIntervalMS},
	}
	if function.DefaultHealthInterval != defaultIntervalMS*time.Millisecond {
		return fmt.Errorf("function.DefaultHealthInterval is %s: update defaultIntervalMS", function.DefaultHealthInterval)
	}
	for _, t := range b.targets {
		spec, err := b.scaffold(ctx, src, t.name, function.LangGo)
		if err != nil {
			return err
		}
		b.specs[t.name] = spec
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

// build runs function.Build with the Pulse cache dir cache.
func (b *functionsBench) build(ctx context.Context, spec function.Spec, cache string) (function.Image, function.BuildInfo, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	t := b.env.tools
	start := time.Now()
	img, info, err := function.Build(ctx, spec, function.BuildOptions{CacheDir: cache, GoCmd: t.goBin, CC: t.gcc, CXX: t.gxx})
	return img, info, time.Since(start), err
}

// buildStage builds every template Trials times, each time into a new,
// empty Pulse cache dir (cold) and then again (warm), the templates' order
// rotated by one per trial. Go's build cache is left as it is.
func (b *functionsBench) buildStage(ctx context.Context) error {
	for trial := 1; trial <= b.cfg.Trials; trial++ {
		for _, tmpl := range rotate(functionTemplates, trial-1) {
			if _, _, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait); err != nil {
				return err
			}
			cache := filepath.Join(b.env.tmp, "cache", fmt.Sprintf("%s-%d", tmpl, trial))
			for _, kind := range []string{"cold", "warm"} {
				img, info, took, err := b.build(ctx, b.specs[tmpl], cache)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				bt := buildTrial{Template: tmpl, Trial: trial, Cache: kind, Seconds: round3(took.Seconds())}
				if err != nil {
					bt.Error = err.Error()
					b.log.Warn("build failed", "template", tmpl, "trial", trial, "cache", kind, "err", err)
				} else {
					bt.ImageID, bt.ImageBytes, bt.FunctionBytes, bt.ArchiveBytes = img.ID, info.ImageSize, info.BinarySize, int64(len(img.Archive))
					b.images[tmpl], b.infos[tmpl] = img, info
					b.log.Info("build", "template", tmpl, "trial", trial, "cache", kind, "took", took.Round(time.Millisecond), "image_bytes", info.ImageSize)
				}
				b.rep.Builds = append(b.rep.Builds, bt)
				if err != nil {
					break // a warm build after a failed cold one is not warm
				}
			}
			if err := os.RemoveAll(cache); err != nil {
				return fmt.Errorf("remove %s: %w", cache, err)
			}
		}
	}
	return nil
}

// image returns the built image of key (a template or a scale function),
// building it first (untimed, with a shared cache) if no build stage did.
func (b *functionsBench) image(ctx context.Context, key string) (function.Image, error) {
	if img, ok := b.images[key]; ok {
		return img, nil
	}
	spec, ok := b.specs[key]
	if !ok {
		return function.Image{}, fmt.Errorf("no function %s", key)
	}
	img, info, _, err := b.build(ctx, spec, filepath.Join(b.env.tmp, "cache", "shared"))
	if err != nil {
		return function.Image{}, err
	}
	b.images[key], b.infos[key] = img, info
	return img, nil
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
		ii.LoadS = round3(time.Since(start).Seconds())
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

// deployStage deploys a fresh service of each template Trials times and
// times it to the first 200; after each trial the function is removed,
// image included, and the next trial loads the image again first.
func (b *functionsBench) deployStage(ctx context.Context, templates []string) error {
	for trial := 1; trial <= b.cfg.Trials; trial++ {
		for _, tmpl := range rotate(templates, trial-1) {
			r := deployTrial{Template: tmpl, Trial: trial}
			err := b.deployTrial(ctx, tmpl, &r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var fatal error
			if err != nil {
				r.Error = err.Error()
				var rf removeFailed
				if errors.As(err, &rf) {
					fatal = err
				}
				b.log.Warn("deploy trial failed", "template", tmpl, "trial", trial, "err", err)
			} else {
				b.log.Info("deploy", "template", tmpl, "trial", trial, "first_200_s", r.FirstOKS, "endpoint_s", r.EndpointS)
			}
			b.rep.Deploys = append(b.rep.Deploys, r)
			if fatal != nil {
				return fatal
			}
		}
	}
	return nil
}

// removeFailed is a failed removal: the engine may hold something of ours,
// so the stage stops.
type removeFailed struct{ error }

func (b *functionsBench) deployTrial(ctx context.Context, tmpl string, r *deployTrial) error {
	spec := b.specs[tmpl]
	img, err := b.image(ctx, tmpl)
	if err != nil {
		return err
	}
	// The image first, untimed: a deploy trial starts with it loaded.
	cctx, cancel := call(ctx)
	start := time.Now()
	err = function.LocalDistributor{API: b.api}.Ensure(cctx, img)
	cancel()
	r.LoadS = round3(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	waited, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait)
	if err != nil {
		return err
	}
	r.QuietWaitS, r.QuietBusyPct = round3(waited.Seconds()), float64(int(busy+0.5))
	r.Start = time.Now().UTC().Format(time.RFC3339)
	r.Load1, _ = readLoad1("/proc")

	err = b.deployOnce(ctx, spec, img, r)
	start = time.Now()
	rerr := b.remove(ctx, spec.Name)
	r.RemoveS = round3(time.Since(start).Seconds())
	if rerr != nil {
		return removeFailed{fmt.Errorf("remove %s: %w", spec.Name, rerr)}
	}
	return err
}

// deployOnce deploys spec and times it to the first 200.
func (b *functionsBench) deployOnce(ctx context.Context, spec function.Spec, img function.Image, r *deployTrial) error {
	t0 := time.Now()
	if _, err := b.sw.Deploy(ctx, spec, img, function.DeployOptions{DrainGrace: benchDrainGrace, HealthStartInterval: b.startInterval, Instance: benchInstance(b.run)}); err != nil {
		return err
	}
	r.DeployCallS = round3(time.Since(t0).Seconds())
	ep, polls, err := b.waitNewEndpoint(ctx, spec.Name, nil)
	r.Polls = polls
	if err != nil {
		return err
	}
	r.EndpointS = round3(time.Since(t0).Seconds())
	posts, err := b.waitOK(ctx, http.MethodPost, "http://"+b.loopback(ep.Addr)+"/", b.body, func(answer []byte) error {
		if !strings.Contains(string(answer), b.body) {
			return fmt.Errorf("the function answered %q, which lacks the request body %q", truncate(string(answer), 200), b.body)
		}
		return nil
	})
	r.Posts = posts
	if err != nil {
		return err
	}
	r.FirstOKS = round3(time.Since(t0).Seconds())
	r.TaskCreatedS, r.ContainerStartedS, r.FirstProbeS = b.taskTimes(ctx, ep.TaskID, t0)
	return nil
}

// remove removes a function of this run (service, containers, image).
func (b *functionsBench) remove(ctx context.Context, name string) error {
	return removeFunction(ctx, b.sw, name)
}

// deployTargets deploys the two go functions of the scale and idle stages,
// one with the default health interval and one with 250 ms, one replica
// each, and waits until they are ready.
func (b *functionsBench) deployTargets(ctx context.Context) error {
	for _, t := range b.targets {
		img, err := b.image(ctx, t.name)
		if err != nil {
			return err
		}
		if _, err := b.sw.Deploy(ctx, b.specs[t.name], img, function.DeployOptions{HealthInterval: t.interval, HealthStartInterval: b.startInterval, DrainGrace: benchDrainGrace, Instance: benchInstance(b.run)}); err != nil {
			return err
		}
	}
	for _, t := range b.targets {
		if err := b.waitReplicas(ctx, t.name, 1); err != nil {
			return err
		}
	}
	return nil
}

// scaleStage runs ScaleTrials +1 scales of each target, alternating between
// them.
func (b *functionsBench) scaleStage(ctx context.Context) error {
	for trial := 1; trial <= b.cfg.ScaleTrials; trial++ {
		for _, t := range rotate(b.targets, trial-1) {
			r := scaleTrial{Interval: t.label, IntervalMS: t.intervalMS, Trial: trial}
			waited, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait)
			if err != nil {
				return err
			}
			r.QuietWaitS, r.QuietBusyPct = round3(waited.Seconds()), float64(int(busy+0.5))
			r.Start = time.Now().UTC().Format(time.RFC3339)
			r.Load1, _ = readLoad1("/proc")
			err = b.scaleOnce(ctx, t, &r)
			// Back to one replica, whatever happened, before the next trial.
			start := time.Now()
			back := b.sw.Scale(ctx, t.name, 1, true)
			if back == nil {
				back = b.waitReplicas(ctx, t.name, 1)
			}
			r.DownS = round3(time.Since(start).Seconds())
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.Error = err.Error()
				b.log.Warn("scale trial failed", "interval", t.label, "trial", trial, "err", err)
			} else {
				b.log.Info("scale +1", "interval", t.label, "trial", trial, "ready_s", r.ReadyS, "endpoint_s", r.EndpointS, "container_started_s", r.ContainerStartedS)
			}
			b.rep.Scales = append(b.rep.Scales, r)
			if back != nil {
				return fmt.Errorf("scale %s back to 1: %w", t.name, back)
			}
		}
	}
	return nil
}

// scaleOnce scales t from 1 to 2 replicas and times the new one to its first
// 200 to GET /_/health.
func (b *functionsBench) scaleOnce(ctx context.Context, t scaleTarget, r *scaleTrial) error {
	eps, err := b.sw.Endpoints(ctx, t.name)
	if err != nil {
		return err
	}
	if len(eps) != 1 {
		return fmt.Errorf("%d replicas up before the scale, want 1", len(eps))
	}
	known := map[string]bool{eps[0].TaskID: true}
	t0 := time.Now()
	if err := b.sw.Scale(ctx, t.name, 2, true); err != nil {
		return err
	}
	r.ScaleCallS = round3(time.Since(t0).Seconds())
	ep, polls, err := b.waitNewEndpoint(ctx, t.name, known)
	r.Polls = polls
	if err != nil {
		return err
	}
	r.EndpointS = round3(time.Since(t0).Seconds())
	gets, err := b.waitOK(ctx, http.MethodGet, "http://"+b.loopback(ep.Addr)+contract.HealthPath, "", nil)
	r.Gets = gets
	if err != nil {
		return err
	}
	r.ReadyS = round3(time.Since(t0).Seconds())
	r.TaskCreatedS, r.ContainerStartedS, r.FirstProbeS = b.taskTimes(ctx, ep.TaskID, t0)
	return nil
}

// containers lists the IDs of the service name's containers: running ones,
// or all.
func (b *functionsBench) containers(ctx context.Context, name string, all bool) ([]string, error) {
	cctx, cancel := call(ctx)
	defer cancel()
	cs, err := b.api.ContainerList(cctx, container.ListOptions{All: all, Filters: filters.NewArgs(filters.Arg("label", labelSwarmServiceName+"="+name))})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", name, err)
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, nil
}

// waitReplicas waits until name has exactly n ready replicas (WaitReady)
// and no other container of it is still running (one scaled away drains
// and stops after its task left the list).
func (b *functionsBench) waitReplicas(ctx context.Context, name string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if _, err := b.sw.WaitReady(ctx, name, n); err != nil {
		return err
	}
	for {
		ids, err := b.containers(ctx, name, false)
		if err != nil {
			return err
		}
		if len(ids) == n {
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("wait for %s: %d containers running, want %d: %w", name, len(ids), n, err)
		}
	}
}

// waitNewEndpoint polls Endpoints every endpointPoll until it lists a task
// not in known, and returns it with the number of polls.
func (b *functionsBench) waitNewEndpoint(ctx context.Context, name string, known map[string]bool) (function.Endpoint, int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(endpointPoll)
	defer tick.Stop()
	polls := 0
	for {
		eps, err := b.sw.Endpoints(ctx, name)
		polls++
		if err != nil && ctx.Err() == nil {
			return function.Endpoint{}, polls, err
		}
		for _, ep := range eps {
			if !known[ep.TaskID] {
				return ep, polls, nil
			}
		}
		select {
		case <-ctx.Done():
			return function.Endpoint{}, polls, fmt.Errorf("no new replica of %s in the task list after %s: %w", name, readyTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitOK sends method url (with body, if any, and the replica credential)
// every httpPoll until the answer is 200, and checks that answer's body
// with check (if not nil). It returns the number of requests.
func (b *functionsBench) waitOK(ctx context.Context, method, url, body string, check func([]byte) error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	n := 0
	var last error
	for {
		n++
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return n, err
		}
		addHeaders(req, b.cred.header())
		resp, err := b.http.Do(req)
		if err == nil {
			data, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("status %s: %q", resp.Status, truncate(strings.TrimSpace(string(data)), 200))
			case check != nil:
				return n, check(data)
			default:
				return n, nil
			}
		}
		last = err
		if err := sleepCtx(ctx, httpPoll); err != nil {
			return n, fmt.Errorf("%s %s: no 200 after %s (last: %v): %w", method, url, readyTimeout, last, err)
		}
	}
}

// loopback returns addr with a loopback host: on the single-node swarm a
// host-mode port is published on every address of this host.
func (b *functionsBench) loopback(addr string) string {
	addr, rewrote := loopbackAddr(addr)
	b.rewrote = b.rewrote || rewrote
	return addr
}

// taskTimes reads when the task was created, when its container started and
// when its first passing health probe ended, in seconds after t0; 0 for
// what the engine does not say.
func (b *functionsBench) taskTimes(ctx context.Context, taskID string, t0 time.Time) (created, started, probe float64) {
	cctx, cancel := call(ctx)
	defer cancel()
	task, _, err := b.api.TaskInspectWithRaw(cctx, taskID)
	if err != nil {
		b.log.Warn("inspect task", "task", taskID, "err", err)
		return 0, 0, 0
	}
	created = round3(task.CreatedAt.Sub(t0).Seconds())
	cs := task.Status.ContainerStatus
	if cs == nil || cs.ContainerID == "" {
		return created, 0, 0
	}
	c, err := b.api.ContainerInspect(cctx, cs.ContainerID)
	if err != nil || c.ContainerJSONBase == nil || c.State == nil {
		b.log.Warn("inspect container", "container", cs.ContainerID, "err", err)
		return created, 0, 0
	}
	if ts, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil {
		started = round3(ts.Sub(t0).Seconds())
	}
	probe = firstPassingProbe(c.State.Health, t0)
	return created, started, probe
}

// firstPassingProbe returns when the first passing probe in h's log ended,
// in seconds after t0, or 0 if the log may have lost it (it keeps the last
// healthLogEntries) or has none.
func firstPassingProbe(h *container.Health, t0 time.Time) float64 {
	if h == nil || len(h.Log) >= healthLogEntries {
		return 0
	}
	for _, l := range h.Log {
		if l != nil && l.ExitCode == 0 && !l.End.IsZero() {
			return round3(l.End.Sub(t0).Seconds())
		}
	}
	return 0
}

// sweep removes whatever of this run is left on the engine: services (with
// their containers and images, through Swarm.Remove), then images and
// containers by name, then the run's replica credential (secret, file). It runs once, with its own deadline, also after an
// interrupt, and returns what it found.
func (b *functionsBench) sweep() []string {
	b.swept = true
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	mine := func(name string) bool { return strings.HasPrefix(name, b.prefix) }
	found := engineSweep{
		api: b.api, log: b.log, mine: mine, remove: b.remove, cred: b.cred,
		images:    filters.NewArgs(filters.Arg("label", contract.LabelFunction)),
		imageMine: func(l map[string]string) bool { return mine(l[contract.LabelFunction]) },
	}.run(ctx, nil)
	b.cred = nil
	return found
}
