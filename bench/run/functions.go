package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
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
