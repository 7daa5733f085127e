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

// functionStages are the suite's stages, in the order they run. The scale
// and idle stages share two services of the go function, deployed after the
// deploy stage so that they do not idle through it.
var functionStages = []string{"build", "deploy", "scale", "idle"}

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
	idleReplicas    = 4
	// idleSettle is the pause between replicas turning ready and an idle
	// window: their start is over and their probes run at their period.
	idleSettle   = 3 * time.Second
	buildTimeout = 5 * time.Minute
	// namePrefix starts the name of every function the suite creates,
	// followed by the run's ID.
	namePrefix = "pbench-"
	// healthLogEntries is how many health probe results Docker keeps.
	healthLogEntries = 5
)

// scaleTarget is one of the two go functions of the scale and idle stages,
// with its health interval.
type scaleTarget struct {
	name     string
	interval time.Duration
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
	if err := stage("build", b.buildStage); err != nil {
		return err
	}
	if err := b.loadImages(ctx); err != nil {
		return err
	}
	if err := stage("deploy", func(ctx context.Context) error { return b.deployStage(ctx, deployTemplates) }); err != nil {
		return err
	}
	// The images no deploy trial removed: loaded, never deployed.
	for _, tmpl := range functionTemplates {
		if err := removeFunction(ctx, b.sw, b.specs[tmpl].Name); err != nil {
			log.Warn("remove", "function", b.specs[tmpl].Name, "err", err)
		}
	}
	if slices.Contains(stages, "scale") || slices.Contains(stages, "idle") {
		if err := b.deployTargets(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("scale targets", "err", err)
			rep.Notes = append(rep.Notes, fmt.Sprintf("the scale and idle stages did not run: %v", err))
		} else {
			if err := stage("scale", b.scaleStage); err != nil {
				return err
			}
			if err := stage("idle", b.idleStage); err != nil {
				return err
			}
		}
		for _, t := range b.targets {
			if err := removeFunction(ctx, b.sw, t.name); err != nil {
				log.Warn("remove", "function", t.name, "err", err)
			}
		}
	}

	rep.summarize()
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
	b.rep.Engine = engineInfo{
		Version: ver.Version, APIVersion: ver.APIVersion, StorageDriver: info.Driver, CgroupVersion: info.CgroupVersion,
		Nodes: info.Swarm.Nodes, NodeAddr: info.Swarm.NodeAddr, OtherServices: others,
	}
	b.rep.Engine.GoCache, _ = commandOutput(ctx, b.env.tools.goBin, "env", "GOCACHE")
	// As pulse deploy does: a health start interval where the engine has
	// one (API 1.44+), none on 20.10.
	b.startInterval = function.StartIntervalFor(api.ClientVersion())
	b.rep.Config.StartIntervalMS = ms(b.startInterval)
	b.api = api
	b.sw = localSwarm(api)
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

// logOutcome records err (if any) in errField and logs what happened to
// the trial or window attrs name: its failure, or its results.
func (b *functionsBench) logOutcome(what string, err error, errField *string, attrs []any, results ...any) {
	if err != nil {
		*errField = err.Error()
		b.log.Warn(what+" failed", append(attrs, "err", err)...)
		return
	}
	b.log.Info(what, append(attrs, results...)...)
}

// quiet waits for the host to be quiet before a trial and records the wait
// and the trial's start in h.
func (b *functionsBench) quiet(ctx context.Context, h *trialHead) error {
	waited, busy, err := waitQuiet(ctx, b.env.clk, b.cfg.QuietWait)
	if err != nil {
		return err
	}
	h.QuietWaitS, h.QuietBusyPct = round3(waited.Seconds()), float64(int(busy+0.5))
	h.Start = time.Now().UTC().Format(time.RFC3339)
	h.Load1, _ = readLoad1("/proc")
	return nil
}

// deployOptions are the options of every deploy, with the health interval
// (0: the default).
func (b *functionsBench) deployOptions(interval time.Duration) function.DeployOptions {
	return function.DeployOptions{HealthInterval: interval, HealthStartInterval: b.startInterval, DrainGrace: benchDrainGrace, Instance: benchInstance(b.run)}
}

// deployStage deploys a fresh service of each template Trials times and
// times it to the first 200; after each trial the function is removed,
// image included, and the next trial loads the image again first.
func (b *functionsBench) deployStage(ctx context.Context, templates []string) error {
	return eachTrial(b.cfg.Trials, templates, func(trial int, tmpl string) error {
		r := deployTrial{Template: tmpl, trialHead: trialHead{Trial: trial}}
		err := b.deployTrial(ctx, b.specs[tmpl], &r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logOutcome("deploy", err, &r.Error, []any{"template", tmpl, "trial", trial}, "first_200_s", r.FirstOKS, "endpoint_s", r.EndpointS)
		b.rep.Deploys = append(b.rep.Deploys, r)
		if rf := (removeFailed{}); errors.As(err, &rf) {
			return err
		}
		return nil
	})
}

// removeFailed is a failed removal: the engine may hold something of ours,
// so the stage stops.
type removeFailed struct{ error }

// deployTrial loads spec's image (untimed: a trial starts with it loaded),
// deploys it, times it to the first 200 to a POST and removes it.
func (b *functionsBench) deployTrial(ctx context.Context, spec function.Spec, r *deployTrial) error {
	img, err := b.image(ctx, r.Template)
	if err != nil {
		return err
	}
	cctx, cancel := call(ctx)
	start := time.Now()
	err = function.LocalDistributor{API: b.api}.Ensure(cctx, img)
	cancel()
	r.LoadS = secondsSince(start)
	if err != nil {
		return err
	}
	if err := b.quiet(ctx, &r.trialHead); err != nil {
		return err
	}
	nr, err := b.timeReplica(ctx, spec.Name, nil, func() error {
		_, err := b.sw.Deploy(ctx, spec, img, b.deployOptions(0))
		return err
	}, http.MethodPost, "/", b.body)
	r.DeployCallS, r.replicaTimes, r.FirstOKS, r.Polls, r.Posts = nr.callS, nr.replicaTimes, nr.okS, nr.polls, nr.requests
	start = time.Now()
	rerr := removeFunction(ctx, b.sw, spec.Name)
	r.RemoveS = secondsSince(start)
	if rerr != nil {
		return removeFailed{fmt.Errorf("remove %s: %w", spec.Name, rerr)}
	}
	return err
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
		if _, err := b.sw.Deploy(ctx, b.specs[t.name], img, b.deployOptions(t.interval)); err != nil {
			return err
		}
	}
	for _, t := range b.targets {
		if err := waitReplicas(ctx, b.sw, b.api, t.name, 1); err != nil {
			return err
		}
	}
	return nil
}

// scaleStage runs ScaleTrials +1 scales of each target, alternating between
// them.
func (b *functionsBench) scaleStage(ctx context.Context) error {
	return eachTrial(b.cfg.ScaleTrials, b.targets, func(trial int, t scaleTarget) error {
		r := scaleTrial{Interval: t.interval.String(), IntervalMS: ms(t.interval), trialHead: trialHead{Trial: trial}}
		if err := b.quiet(ctx, &r.trialHead); err != nil {
			return err
		}
		err := b.scaleOnce(ctx, t, &r)
		// Back to one replica, whatever happened, before the next trial.
		start := time.Now()
		back := b.sw.Scale(ctx, t.name, 1, true)
		if back == nil {
			back = waitReplicas(ctx, b.sw, b.api, t.name, 1)
		}
		r.DownS = secondsSince(start)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.logOutcome("scale +1", err, &r.Error, []any{"interval", r.Interval, "trial", trial},
			"ready_s", r.ReadyS, "endpoint_s", r.EndpointS, "container_started_s", r.ContainerStartedS)
		b.rep.Scales = append(b.rep.Scales, r)
		if back != nil {
			return fmt.Errorf("scale %s back to 1: %w", t.name, back)
		}
		return nil
	})
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
	nr, err := b.timeReplica(ctx, t.name, map[string]bool{eps[0].TaskID: true}, func() error {
		return b.sw.Scale(ctx, t.name, 2, true)
	}, http.MethodGet, contract.HealthPath, "")
	r.ScaleCallS, r.replicaTimes, r.ReadyS, r.Polls, r.Gets = nr.callS, nr.replicaTimes, nr.okS, nr.polls, nr.requests
	return err
}

// newReplica is how a new replica started: in seconds from just before the
// call that started it, when the call returned (callS) and when the replica
// answered 200 (okS); the Endpoints polls and requests that took.
type newReplica struct {
	replicaTimes
	callS, okS      float64
	polls, requests int
}

// timeReplica calls start and times the replica of name it starts (a task
// not in known) to its first 200 to method path (with body, which the
// answer must hold).
func (b *functionsBench) timeReplica(ctx context.Context, name string, known map[string]bool, start func() error, method, path, body string) (newReplica, error) {
	var nr newReplica
	t0 := time.Now()
	if err := start(); err != nil {
		return nr, err
	}
	nr.callS = secondsSince(t0)
	ep, polls, err := b.waitNewEndpoint(ctx, name, known)
	nr.polls = polls
	if err != nil {
		return nr, err
	}
	nr.EndpointS = secondsSince(t0)
	// On the single-node swarm a host-mode port is published on every
	// address of this host.
	addr, rewrote := loopbackAddr(ep.Addr)
	b.rewrote = b.rewrote || rewrote
	nr.requests, err = b.waitOK(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nr, err
	}
	nr.okS = secondsSince(t0)
	b.taskTimes(ctx, ep.TaskID, t0, &nr.replicaTimes)
	return nr, nil
}

// waitNewEndpoint polls Endpoints every endpointPoll until it lists a task
// not in known, and returns it with the number of polls.
func (b *functionsBench) waitNewEndpoint(ctx context.Context, name string, known map[string]bool) (function.Endpoint, int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(endpointPoll)
	defer tick.Stop()
	for polls := 1; ; polls++ {
		eps, err := b.sw.Endpoints(ctx, name)
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

// waitOK sends method url (with body and the replica credential) every
// httpPoll until the answer is 200, and checks that the answer holds body.
// It returns the number of requests.
func (b *functionsBench) waitOK(ctx context.Context, method, url, body string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for n := 1; ; n++ {
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			return n, err
		}
		addHeaders(req, b.cred.header())
		var answer []byte
		resp, err := b.http.Do(req)
		if err == nil {
			answer, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s: %q", resp.Status, truncate(strings.TrimSpace(string(answer)), 200))
			}
		}
		if err == nil && !strings.Contains(string(answer), body) {
			return n, fmt.Errorf("the function answered %q, which lacks the request body %q", truncate(string(answer), 200), body)
		}
		if err == nil {
			return n, nil
		}
		if serr := sleepCtx(ctx, httpPoll); serr != nil {
			return n, fmt.Errorf("%s %s: no 200 after %s (last: %v): %w", method, url, readyTimeout, err, serr)
		}
	}
}

// taskTimes reads into rt when the task was created, when its container
// started and when its first passing health probe ended, in seconds after
// t0; 0 for what the engine does not say.
func (b *functionsBench) taskTimes(ctx context.Context, taskID string, t0 time.Time, rt *replicaTimes) {
	cctx, cancel := call(ctx)
	defer cancel()
	task, _, err := b.api.TaskInspectWithRaw(cctx, taskID)
	if err != nil {
		b.log.Warn("inspect task", "task", taskID, "err", err)
		return
	}
	rt.TaskCreatedS = round3(task.CreatedAt.Sub(t0).Seconds())
	cs := task.Status.ContainerStatus
	if cs == nil || cs.ContainerID == "" {
		return
	}
	c, err := b.api.ContainerInspect(cctx, cs.ContainerID)
	if err != nil || c.ContainerJSONBase == nil || c.State == nil {
		b.log.Warn("inspect container", "container", cs.ContainerID, "err", err)
		return
	}
	if ts, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil {
		rt.ContainerStartedS = round3(ts.Sub(t0).Seconds())
	}
	rt.FirstProbeS = firstPassingProbe(c.State.Health, t0)
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
// containers by name, then the run's replica credential (secret, file). It
// runs once, with its own deadline, also after an interrupt, and returns
// what it found.
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
