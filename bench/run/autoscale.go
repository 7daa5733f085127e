package main

// The autoscale suite: the time from a load step to the first extra replica
// answering through HAProxy, stage by stage, and the cold start from zero.
//
// It runs the whole loop as it ships, on loopback ports the kernel picks:
// pulsed (cmd/pulsed, a process with its own state directory, HAProxy,
// scaler, cold-start listener and alarm token), a private Netdata
// (internal/netdatalab) with only pulse.d.plugin pointed at that pulsed's
// catalog and HAProxy exporter and the health templates of alarms/ whose
// exec: line runs the built pulse-alarm-hook against that pulsed. Two fork
// mode functions run a static C handler that sleeps 100 ms and echoes: the
// step function (inflight, target 2, min 1, max 20) and the cold function
// (min 0).
//
// Others (a `make up` instance, tests) may run functions on the same swarm:
// pulsed runs with a selector (PULSE_SELECTOR=<run label>=<run>), so it
// routes, watches and scales only this run's functions. The harness scales
// the cold function to zero itself (it has no scale.idle).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
	"github.com/pulsefaas/pulse/scaler"
)

const suiteAutoscale = "autoscale"

// Stages of the autoscale suite (-only).
const (
	asStageStep = "step" // the load steps
	asStageCold = "cold" // the cold starts
)

// Settings of the autoscale suite.
const (
	asNamePrefix = "pbench-as-"
	// The step function's policy: 10 connections of one outstanding
	// request each are 5 × (1 replica × target 2); max 20 so that a jump
	// to max cannot pass for 5 ± 1.
	asMetric    = "inflight"
	asTarget    = 2
	asMin       = 1
	asMax       = 20
	asHandlerMS = 100
	// The functions' timeout: the spec's default, which is also pulsed's
	// cold-start hold (coldstart_timeout), so HAProxy waits as long as
	// pulsed holds a request.
	asTimeout = 30 * time.Second
	// Replicas: no Docker health check, as `pulse deploy` gives them on
	// this engine (API 1.41 has no health start interval, and Swarm reports a
	// task running only after its first passing probe); drain grace as in
	// the gateway suite.
	asDrainGrace = time.Second
	// pulsed: a short stabilisation window (the harness scales back to 1
	// itself); the periodic evaluation at pulsed's default, so that the
	// alarm path as it ships is what is measured.
	asScaleWindow = 20 * time.Second
	asResync      = scaler.DefaultResync
	// Pollers.
	asTaskPoll    = 20 * time.Millisecond
	asHAProxyPoll = 15 * time.Millisecond
	// Limits.
	asTrafficTimeout = 30 * time.Second // t0 → an extra replica serving
	asFullWait       = 5 * time.Second  // first → every replica of the first decision serving
	asQuietTimeout   = 60 * time.Second // utilisation back near 0, alarm not critical
	asQuietPct       = 20               // "near 0": every second of the last 3 below this
	asAlarmInit      = 90 * time.Second // Netdata start → the alarms initialised
	asColdTimeout    = 40 * time.Second // the cold request (pulsed holds it up to 30 s)
	asZeroTimeout    = 60 * time.Second // scaled to 0 → pulsed's catalog and HAProxy without replicas
	asRouteTimeout   = 60 * time.Second
	asStopGrace      = 20 * time.Second
	// The alarm the step trials follow.
	asAlarmUp = "pulse_scale_up"
	// hookInstalled is the exec: path in alarms/health/pulse.conf.
	hookInstalled = "/usr/local/lib/pulse/pulse-alarm-hook"
)

// asSteps are the load steps, each a number of closed-loop connections.
var asSteps = []autoscaleStep{
	{Name: "5×", Conns: 10, Ratio: 5},
	{Name: "1.5×", Conns: 3, Ratio: 1.5},
}

// sleepEchoC is the step and cold functions' handler: 100 ms, then stdin
// to stdout.
const sleepEchoC = `#include <time.h>
#include <unistd.h>
int main(void){struct timespec d={0,` + "100000000" + `};nanosleep(&d,0);char b[4096];ssize_t n;
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`

// autoscaleBench runs the autoscale suite.
type autoscaleBench struct {
	cfg  config
	log  *slog.Logger
	env  suiteEnv
	arts artifacts
	api  *client.Client
	sw   *function.Swarm
	run  string
	step string // the step function
	cold string // the cold-start function
	body string
	rep  *autoscaleReport
	http *http.Client

	shared    string // a directory the netdata user can read: hook, token
	tokenFile string
	token     string

	stateDir, apiAddr, gwAddr, adminAddr, coldAddr string
	pulsedLog                                      string
	pulsed                                         *server
	rt                                             *gateway.Runtime
	nd                                             *netdatalab.Netdata
	stepSvcID                                      string
}

// runAutoscale runs the autoscale suite.
func runAutoscale(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	id, err := gwRunID()
	if err != nil {
		return err
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		return fmt.Errorf("haproxy not found in PATH: %w", err)
	}
	if err := netdatalab.Available(); err != nil {
		return err
	}
	trials := cfg.ScaleTrials
	b := &autoscaleBench{
		cfg: cfg, log: log, env: env, run: id, body: payload(cfg.BodyBytes),
		step: asNamePrefix + id + "-step", cold: asNamePrefix + id + "-cold",
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	b.rep = &autoscaleReport{
		Suite: cfg.Suite, Started: env.started.Format(time.RFC3339),
		Config: autoscaleConfig{
			Quick: cfg.Quick, Trials: trials, StepFunction: b.step, ColdFunction: b.cold,
			Metric: asMetric, Target: asTarget, Min: asMin, Max: asMax, HandlerMS: asHandlerMS, TimeoutS: asTimeout.Seconds(),
			Steps: asSteps, HealthIntervalMS: 0, DrainGraceMS: gwMS(asDrainGrace),
			TaskPollMS: gwMS(asTaskPoll), HAProxyPollMS: gwMS(asHAProxyPoll), BodyBytes: cfg.BodyBytes,
		},
		Machine: collectMachine(ctx, env.tools, env.clk),
	}
	rep := b.rep
	if env.clkNote != "" {
		rep.Notes = append(rep.Notes, env.clkNote)
	}
	rep.HAProxy, _ = haproxyVersion(ctx, haproxy)
	if out, err := commandOutput(ctx, "/usr/sbin/netdata", "-V"); err == nil {
		rep.Netdata = strings.TrimSpace(out)
	}
	if err := b.connect(ctx); err != nil {
		return err
	}
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()

	log.Info("building", "root", env.root)
	if b.arts, err = build(ctx, log, env.root, autoscaleBuilds(env.tools, env.tmp)); err != nil {
		return err
	}
	names := []string{"pulsed", "pulse.d.plugin", "pulse-alarm-hook", "watchdog", "sleepecho"}
	for _, n := range names {
		rep.Artifacts = append(rep.Artifacts, *b.arts[n])
	}
	if m := b.arts.missing(names); m != "" {
		return fmt.Errorf("%s did not build: %s", m, b.arts[m].Error)
	}
	if err := b.prepareShared(); err != nil {
		return err
	}
	if err := b.deploy(ctx); err != nil {
		return err
	}
	if err := b.start(ctx, haproxy); err != nil {
		return err
	}

	stages := map[string]bool{asStageStep: true, asStageCold: true}
	if len(cfg.Only) > 0 {
		clear(stages)
		for _, st := range cfg.Only {
			if st != asStageStep && st != asStageCold {
				return fmt.Errorf("-only %s: no such stage of the autoscale suite; want some of %s,%s", st, asStageStep, asStageCold)
			}
			stages[st] = true
		}
	}
	log.Info("autoscale suite", "trials_per_step", trials, "step", b.step, "cold", b.cold)
	for i := 1; i <= trials && stages[asStageStep]; i++ {
		for _, st := range rotate(asSteps, i-1) {
			if err := b.settle(ctx); err != nil {
				return err
			}
			r := b.stepTrial(ctx, st, i)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Steps = append(rep.Steps, r)
		}
	}
	if stages[asStageCold] {
		if err := b.coldTrials(ctx, trials); err != nil {
			return err
		}
	}
	b.keepLogs()

	rep.Summary = summarizeAutoscale(asSteps, rep.Steps, rep.Cold)
	rep.Goals = autoscaleGoals(rep.Summary)
	rep.Notes = append(rep.Notes, autoscaleNotes(*rep)...)
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderAutoscale(*rep, false, ""), func(rel string) string { return renderAutoscale(*rep, true, rel) })
}

// autoscaleBuilds: pulsed, the plugin and the hook as they ship, the
// fork-mode watchdog as an image gets it, and the C handler.
func autoscaleBuilds(t tools, dir string) []buildStep {
	out := func(name string) string { return filepath.Join(dir, name) }
	goBuild := func(name, pkg, tags string, static bool) buildStep {
		argv := []string{t.goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out(name)}
		if tags != "" {
			argv = append(argv, "-tags", tags)
		}
		st := buildStep{name: name, source: pkg, out: out(name), argv: append(argv, pkg)}
		if static {
			st.env = []string{"CGO_ENABLED=0"}
		}
		return st
	}
	src := filepath.Join(dir, "sleepecho.c")
	_ = os.WriteFile(src, []byte(sleepEchoC), 0o644) // a failure shows as gcc's
	return []buildStep{
		{name: "pulsed", source: "./cmd/pulsed", out: out("pulsed"), argv: []string{t.goBin, "build", "-o", out("pulsed"), "./cmd/pulsed"}},
		goBuild("pulse.d.plugin", "./cmd/pulse.d.plugin", "", true),
		goBuild("pulse-alarm-hook", "./cmd/pulse-alarm-hook", "", true),
		goBuild("watchdog", "./cmd/pulse-watchdog", "nethttpomithttp2,watchdog_nohttp", true),
		{name: "sleepecho", source: "(generated) sleepecho.c", out: out("sleepecho"),
			argv: []string{t.gcc, "-static", "-O2", "-s", "-o", out("sleepecho"), src}},
	}
}

// connect opens the engine client and checks for a single-node swarm.
func (b *autoscaleBench) connect(ctx context.Context) error {
	api, _, v, err := connectSingleNodeSwarm(ctx, "autoscale", "where every replica runs on this host", gwCallTimeout)
	if err != nil {
		return err
	}
	b.rep.Engine = v.Version + " (API " + v.APIVersion + ")"
	b.api = api
	b.sw = function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
	return nil
}

// prepareShared makes the directory Netdata's user reads: the hook (run by
// Netdata as user netdata) and the alarm token (0640 root:netdata).
func (b *autoscaleBench) prepareShared() error {
	var err error
	b.shared, b.tokenFile, b.token, err = prepareAlarmShared(b.arts.path("pulse-alarm-hook"))
	return err
}

// deploy assembles the image (watchdog + the C handler, fork mode) and
// deploys the step function at 1 replica and the cold one at 0.
func (b *autoscaleBench) deploy(ctx context.Context) error {
	wd, err := os.ReadFile(b.arts.path("watchdog"))
	if err != nil {
		return err
	}
	fn, err := os.ReadFile(b.arts.path("sleepecho"))
	if err != nil {
		return err
	}
	for _, d := range []struct {
		name  string
		scale function.Scale
	}{
		{b.step, function.Scale{Metric: asMetric, Target: asTarget, Min: asMin, Max: asMax}},
		{b.cold, function.Scale{Metric: asMetric, Target: asTarget, Min: 0, Max: 2}},
	} {
		labels := map[string]string{gwTestLabel: "1", gwRunLabel: b.run}
		spec := function.Spec{Name: d.name, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn",
			Timeout: asTimeout, MaxBody: 1 << 20, Scale: d.scale, Labels: labels}
		imgLabels := map[string]string{contract.LabelFunction: d.name}
		maps.Copy(imgLabels, labels)
		img, err := function.Assemble(function.ImageSpec{
			Tag: function.ImageRepository + d.name + ":bench",
			Files: []function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: wd},
				{Path: function.FunctionPath, Mode: 0o755, Content: fn}},
			Entrypoint: []string{function.WatchdogPath}, Env: spec.WatchdogEnv(), User: function.ImageUser,
			ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
			Labels:       imgLabels,
		})
		if err != nil {
			return err
		}
		res, err := b.sw.Deploy(ctx, spec, img, function.DeployOptions{NoHealthcheck: true, DrainGrace: asDrainGrace, Instance: benchInstance(b.run)})
		if err != nil {
			return err
		}
		if d.name == b.step {
			b.stepSvcID = res.ServiceID
		}
	}
	wctx, cancel := context.WithTimeout(ctx, asRouteTimeout)
	defer cancel()
	if _, err := b.sw.WaitReady(wctx, b.step, 1); err != nil {
		return err
	}
	b.log.Info("deployed", "step", b.step, "cold", b.cold)
	return nil
}

// start starts the lab Netdata and pulsed (ports chosen first, so each can
// point at the other), and waits until the step function is routed and its
// alarms are initialised.
func (b *autoscaleBench) start(ctx context.Context, haproxy string) error {
	for _, a := range []*string{&b.apiAddr, &b.gwAddr, &b.adminAddr, &b.coldAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	// Netdata 1.37 runs exec: as one quoted word (sh -c "exec '<exec>'
	// '<recipient>' ..."), so the hook cannot take flags there: it gets
	// pulsed's URL and the token file from Netdata's environment instead.
	health, err := healthWithHook(alarms.Templates(), filepath.Join(b.shared, "pulse-alarm-hook"))
	if err != nil {
		return err
	}
	catalogURL := "http://" + b.apiAddr + contract.CatalogPath
	ndLog, err := os.Create(filepath.Join(b.env.tmp, "netdata.log"))
	if err != nil {
		return err
	}
	defer ndLog.Close()
	b.nd, err = netdatalab.Start(ctx, netdatalab.Config{
		Plugin:       b.arts.path("pulse.d.plugin"),
		PluginConfig: netdatalab.JobConfig(catalogURL, "http://"+b.adminAddr+"/metrics"),
		Health:       health,
		Env:          []string{"PULSE_ALARM_URL=http://" + b.apiAddr + contract.AlarmsPath, "PULSE_ALARM_TOKEN_FILE=" + b.tokenFile},
		Stderr:       ndLog,
	})
	if err != nil {
		return err
	}
	b.log.Info("lab netdata", "url", b.nd.URL)

	b.stateDir = filepath.Join(b.env.tmp, "state")
	if err := os.Mkdir(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	cfgFile := filepath.Join(b.env.tmp, "pulsed.yaml")
	if err := os.WriteFile(cfgFile, []byte("# pulse bench: every setting comes from PULSE_* variables\nlog_level: debug\n"), 0o644); err != nil {
		return fmt.Errorf("pulsed config: %w", err)
	}
	changed := []string{
		"PULSE_SCALE_WINDOW=" + asScaleWindow.String(),
		"PULSE_RESYNC_INTERVAL=" + asResync.String(),
		"PULSE_LOG_LEVEL=debug",
		"PULSE_SELECTOR=" + gwRunLabel + "=" + b.run,
	}
	b.rep.Config.PulsedEnv = changed
	env := append(append(baseEnv(),
		"PULSE_STATE_DIR="+b.stateDir,
		"PULSE_INSTANCE="+benchInstance(b.run),
		"PULSE_API_LISTEN="+b.apiAddr,
		"PULSE_GATEWAY_LISTEN="+b.gwAddr,
		"PULSE_ADMIN_LISTEN="+b.adminAddr,
		"PULSE_COLDSTART_LISTEN="+b.coldAddr,
		"PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+haproxy,
		"PULSE_AUTOSCALE=true",
		"PULSE_ALARM_TOKEN_FILE="+b.tokenFile,
		"PULSE_NETDATA_URL="+b.nd.URL,
	), changed...)
	b.pulsedLog = filepath.Join(b.env.tmp, "pulsed.log")
	b.pulsed, err = startServer(launchSpec{Bin: b.arts.path("pulsed"), Args: []string{"-config", cfgFile}, Env: env, Addr: b.apiAddr}, b.pulsedLog)
	if err != nil {
		return err
	}
	b.rt = gateway.NewRuntime(filepath.Join(b.stateDir, "haproxy.sock"), time.Second)
	if err := waitReady(ctx, b.pulsed, "http://"+b.apiAddr+"/healthz", asRouteTimeout); err != nil {
		return err
	}
	if err := b.waitServers(ctx, b.step, 1, true); err != nil {
		return err
	}
	if err := probe(ctx, "http://"+b.gwAddr+"/function/"+b.step, b.body); err != nil {
		return err
	}
	b.log.Info("pulsed routing; waiting for the alarms to initialise", "api", b.apiAddr, "gateway", b.gwAddr)
	deadline := time.Now().Add(asAlarmInit)
	for {
		st, err := b.alarmStatus(ctx, b.step)
		if err == nil && st == "CLEAR" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s of %s not initialised after %s (status %q, %v); netdata log: %s", asAlarmUp, b.step, asAlarmInit, st, err,
				truncate(b.nd.ErrorLog(), 2000))
		}
		if err := gwSleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// healthWithHook returns the health templates with every exec: line
// running hook (a path) instead of the installed hook.
func healthWithHook(templates, hook string) (string, error) {
	lines := strings.Split(templates, "\n")
	n := 0
	for i, l := range lines {
		key, val, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(key) != "exec" {
			continue
		}
		if strings.TrimSpace(val) != hookInstalled {
			return "", fmt.Errorf("health templates: exec line %q does not run %s", l, hookInstalled)
		}
		lines[i] = key + ": " + hook
		n++
	}
	if n == 0 {
		return "", errors.New("health templates: no exec: line")
	}
	return strings.Join(lines, "\n"), nil
}

// keepLogs copies pulsed's log and the lab Netdata's error log out of the
// run's directories when a trial failed, and notes where.
func (b *autoscaleBench) keepLogs() {
	failed := false
	for _, t := range b.rep.Steps {
		failed = failed || t.Error != ""
	}
	for _, c := range b.rep.Cold {
		failed = failed || c.Error != ""
	}
	if !failed {
		return
	}
	dir, err := os.MkdirTemp("", "pulse-bench-autoscale-"+b.run+"-logs-")
	if err != nil {
		return
	}
	if p, err := os.ReadFile(b.pulsedLog); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "pulsed.log"), p, 0o644)
	}
	if b.nd != nil {
		_ = os.WriteFile(filepath.Join(dir, "netdata-error.log"), []byte(b.nd.ErrorLog()), 0o644)
	}
	b.rep.Notes = append(b.rep.Notes, "a trial failed: pulsed's log and the lab Netdata's error log are kept in "+dir)
}

// cleanup stops Netdata and pulsed, kills any HAProxy of the run, removes
// everything of the run from the engine and the shared directory. It is
// safe to call twice; it returns what it found left over.
func (b *autoscaleBench) cleanup() []string {
	var found []string
	if b.nd != nil {
		if err := b.nd.Stop(); err != nil {
			found = append(found, "lab netdata: "+err.Error())
		}
		b.nd = nil
	}
	if b.pulsed != nil {
		if _, err := b.pulsed.stop(asStopGrace); err != nil {
			found = append(found, "pulsed: "+err.Error())
		}
		b.pulsed = nil
		deadline := time.Now().Add(gwHAProxyLinger)
		for time.Now().Before(deadline) {
			if left, err := findHAProxies("/proc", b.stateDir); err != nil || len(left) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if b.env.tmp != "" {
		if pids := killHAProxies(b.env.tmp); len(pids) > 0 {
			found = append(found, fmt.Sprintf("haproxy processes %v: killed", pids))
		}
	}
	if b.shared != "" {
		_ = os.RemoveAll(b.shared)
		b.shared = ""
	}
	if b.api == nil {
		return found
	}
	ctx, cancel := context.WithTimeout(context.Background(), gwCleanupTimeout)
	defer cancel()
	prefix := asNamePrefix + b.run
	remove := func(ctx context.Context, name string) error {
		ctx, cancel := context.WithTimeout(ctx, gwRemoveTimeout)
		defer cancel()
		if err := b.sw.Remove(ctx, name); err != nil && !errors.Is(err, function.ErrNotFound) {
			return err
		}
		return nil
	}
	return engineSweep{
		api: b.api, log: b.log, call: gwCall, remove: remove,
		mine:       func(name string) bool { return strings.HasPrefix(name, prefix) },
		images:     filters.NewArgs(filters.Arg("label", gwRunLabel+"="+b.run)),
		serviceKey: gwLabelServiceName,
	}.run(ctx, found)
}

// --- observing ---

// servers returns the slots of fn's backend (the backup server left out)
// with their state, address and sessions.
func (b *autoscaleBench) servers(ctx context.Context, fn string) ([]slotInfo, error) {
	return readSlots(ctx, b.rt, gateway.BackendName(fn))
}

// waitServers waits until HAProxy has exactly n slots of fn holding a
// replica (not in maintenance) and, if up, that many serving (ready and
// up).
func (b *autoscaleBench) waitServers(ctx context.Context, fn string, n int, up bool) error {
	deadline := time.Now().Add(asRouteTimeout)
	var last string
	for {
		ss, err := b.rt.Servers(ctx, gateway.BackendName(fn))
		if err == nil {
			live, ready := countSlots(ss)
			if live == n && (!up || ready == n) {
				return nil
			}
			last = fmt.Sprintf("%d servers holding a replica, %d ready and up", live, ready)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("HAProxy has not %d servers for %s after %s (last: %s)", n, fn, asRouteTimeout, last)
		}
		select {
		case <-b.pulsed.done:
			return fmt.Errorf("pulsed exited; log: %s", b.pulsed.logTail(2000))
		default:
		}
		if err := gwSleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *autoscaleBench) getJSON(ctx context.Context, url string, auth bool, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(into)
}

func (b *autoscaleBench) events(ctx context.Context) (contract.ScaleEvents, error) {
	var ev contract.ScaleEvents
	err := b.getJSON(ctx, "http://"+b.apiAddr+contract.EventsPath, true, &ev)
	return ev, err
}

func (b *autoscaleBench) catalogFunction(ctx context.Context, fn string) (contract.CatalogFunction, error) {
	var cat contract.Catalog
	if err := b.getJSON(ctx, "http://"+b.apiAddr+contract.CatalogPath, false, &cat); err != nil {
		return contract.CatalogFunction{}, err
	}
	for _, f := range cat.Functions {
		if f.Name == fn {
			return f, nil
		}
	}
	return contract.CatalogFunction{}, fmt.Errorf("%s is not in pulsed's catalog", fn)
}

func utilChart(fn string) string {
	return contract.Chart(fn, contract.ChartUtilization)
}

// alarmStatus is the status of fn's scale-up alarm in the lab Netdata.
func (b *autoscaleBench) alarmStatus(ctx context.Context, fn string) (string, error) {
	return b.nd.AlarmStatus(ctx, asAlarmUp, utilChart(fn))
}

// quiet reports whether fn's utilisation was below asQuietPct for each of
// the last 3 seconds and its scale-up alarm is not critical.
func (b *autoscaleBench) quiet(ctx context.Context, fn string) (bool, string) {
	d, err := b.nd.DataRange(ctx, utilChart(fn), -4, 0)
	if err != nil {
		return false, err.Error()
	}
	vals := d.Column(contract.DimUtilization)
	if len(vals) < 3 {
		return false, fmt.Sprintf("%d seconds of utilisation", len(vals))
	}
	for _, v := range vals[:3] {
		if v >= asQuietPct {
			return false, fmt.Sprintf("utilisation %v", vals[:3])
		}
	}
	st, err := b.alarmStatus(ctx, fn)
	if err != nil {
		return false, err.Error()
	}
	if st == "CRITICAL" {
		return false, "alarm " + st
	}
	return true, ""
}

func (b *autoscaleBench) waitQuiet(ctx context.Context, fn string) error {
	deadline := time.Now().Add(asQuietTimeout)
	for {
		ok, why := b.quiet(ctx, fn)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not quiet after %s: %s", fn, asQuietTimeout, why)
		}
		if err := gwSleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// settle brings the step function to one replica on a quiet swarm: load
// gone from the last 3 s of utilisation, the scale-up alarm not critical,
// the service at 1 replica with one container and one HAProxy server.
func (b *autoscaleBench) settle(ctx context.Context) error {
	for attempt := 0; attempt < 3; attempt++ {
		if err := b.waitQuiet(ctx, b.step); err != nil {
			return err
		}
		if err := b.sw.Scale(ctx, b.step, 1, true); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, asRouteTimeout)
		_, err := b.sw.WaitReady(wctx, b.step, 1)
		cancel()
		if err != nil {
			return err
		}
		if err := b.waitContainers(ctx, b.step, 1); err != nil {
			return err
		}
		if err := b.waitServers(ctx, b.step, 1, true); err != nil {
			return err
		}
		if err := b.waitQuiet(ctx, b.step); err != nil {
			return err
		}
		svc, err := b.inspect(ctx, b.step)
		if err != nil {
			return err
		}
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil && *r.Replicas == 1 {
			return nil
		}
		b.log.Warn("the scaler changed the replicas while settling; again", "function", b.step)
	}
	return errors.New("could not settle the step function at 1 replica")
}

func (b *autoscaleBench) inspect(ctx context.Context, name string) (swarm.Service, error) {
	cctx, cancel := gwCall(ctx)
	defer cancel()
	svc, _, err := b.api.ServiceInspectWithRaw(cctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return swarm.Service{}, fmt.Errorf("inspect %s: %w", name, err)
	}
	return svc, nil
}

func (b *autoscaleBench) waitContainers(ctx context.Context, fn string, n int) error {
	deadline := time.Now().Add(asRouteTimeout)
	for {
		cctx, cancel := gwCall(ctx)
		cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", gwLabelServiceName+"="+fn))})
		cancel()
		if err != nil {
			return fmt.Errorf("list containers of %s: %w", fn, err)
		}
		if len(cs) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d containers running after %s, want %d", fn, len(cs), asRouteTimeout, n)
		}
		if err := gwSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// --- the step trial ---

// stepObs is what the trial's pollers saw, guarded by mu.
type stepObs struct {
	mu      sync.Mutex
	created map[string]time.Time // new task → its CreatedAt
	running map[string]time.Time // new task → its status timestamp when seen running
	traffic map[string]time.Time // a new replica's address → when its server first took a session
	lastErr error
}

func (o *stepObs) note(err error) {
	o.mu.Lock()
	o.lastErr = err
	o.mu.Unlock()
}

// firstTraffic returns the address of the new replica whose server took
// traffic first, and when.
func (o *stepObs) firstTraffic() (string, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	name, at := "", time.Time{}
	for n, t := range o.traffic {
		if at.IsZero() || t.Before(at) {
			name, at = n, t
		}
	}
	return name, at
}

func (b *autoscaleBench) stepTrial(ctx context.Context, st autoscaleStep, trial int) stepTrial {
	r := stepTrial{Step: st.Name, Conns: st.Conns, Trial: trial}
	if err := b.stepOnce(ctx, st, &r); err != nil {
		r.Error = err.Error()
		b.log.Warn("step trial failed", "step", st.Name, "trial", trial, "err", err)
	} else {
		b.log.Info("step trial", "step", st.Name, "trial", trial, "traffic_s", deref(r.TrafficS), "scrape_s", deref(r.ScrapeS), "alarm_s", deref(r.AlarmS),
			"hook_s", deref(r.HookS), "scaled_s", deref(r.ScaledS), "running_s", deref(r.RunningS), "trigger", r.Trigger, "to", r.firstTo(), "failed", r.Failed)
	}
	return r
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func (b *autoscaleBench) stepOnce(ctx context.Context, st autoscaleStep, r *stepTrial) error {
	taskFilter := filters.NewArgs(filters.Arg("service", b.stepSvcID))
	cctx, cancel := gwCall(ctx)
	tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: taskFilter})
	cancel()
	if err != nil {
		return fmt.Errorf("list tasks: %w", err)
	}
	knownTasks := map[string]bool{}
	for _, t := range tasks {
		knownTasks[t.ID] = true
	}
	slots, err := b.servers(ctx, b.step)
	if err != nil {
		return err
	}
	live := liveSlots(slots)
	if len(live) != 1 {
		return fmt.Errorf("HAProxy has %d servers holding a replica before the step, want 1", len(live))
	}
	// A new replica is a slot pointed at another address whose sessions
	// rise past what that slot had counted before the step.
	base := map[string]int64{}
	for _, s := range slots {
		base[s.Name] = s.Stot
	}
	oldAddrs := map[string]bool{live[0].Addr: true}

	obs := &stepObs{created: map[string]time.Time{}, running: map[string]time.Time{}, traffic: map[string]time.Time{}}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Add(2)
	go func() { defer wg.Done(); b.pollTasks(pctx, taskFilter, knownTasks, obs) }()
	go func() { defer wg.Done(); b.pollServers(pctx, base, oldAddrs, obs) }()

	r.Load1, _ = readLoad1("/proc")
	t0 := time.Now()
	r.Start = t0.UTC().Format(time.RFC3339Nano)
	load := startStepLoad(b.gwAddr, "/function/"+b.step, b.body, st.Conns)
	loadStopped := false
	stopLoad := func() {
		if !loadStopped {
			loadStopped = true
			r.Requests, r.Failed, r.Why = load.end()
		}
	}
	defer stopLoad()

	// Wait for the first new server taking traffic, then (up to
	// asFullWait) for every replica of the first decision.
	var first time.Time
	want := 0
	var lastEvents time.Time
	for {
		name, at := obs.firstTraffic()
		now := time.Now()
		if first.IsZero() && name != "" {
			first = at
		}
		if first.IsZero() && now.Sub(t0) > asTrafficTimeout {
			obs.mu.Lock()
			why := fmt.Sprintf("no new server took traffic within %s (tasks running: %d, last error: %v)", asTrafficTimeout, len(obs.running), obs.lastErr)
			obs.mu.Unlock()
			return errors.New(why)
		}
		if !first.IsZero() {
			if now.Sub(lastEvents) > 200*time.Millisecond {
				lastEvents = now
				if evs, err := b.events(ctx); err == nil {
					if ds := decisionsSince(evs, b.step, t0); len(ds) > 0 {
						want = ds[0].To - 1 // new replicas of the first decision
					}
				}
			}
			obs.mu.Lock()
			n := len(obs.traffic)
			obs.mu.Unlock()
			if (want > 0 && n >= want) || now.Sub(first) > asFullWait {
				if want > 0 && n >= want {
					obs.mu.Lock()
					last := time.Time{}
					for _, t := range obs.traffic {
						if t.After(last) {
							last = t
						}
					}
					obs.mu.Unlock()
					r.FullS = ptr(round3(last.Sub(t0).Seconds()))
				}
				break
			}
		}
		if err := gwSleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	// Swarm's UpdatedAt, before anything else updates the service.
	svc, err := b.inspect(ctx, b.step)
	inspected := time.Now()
	if err != nil {
		return err
	}
	stopLoad()
	// The server is known by its address: pulsed's catalog names its task.
	// The task poller may see the task a moment after HAProxy did.
	addr, at := obs.firstTraffic()
	name := ""
	for i := 0; i < 25; i++ {
		if name == "" {
			name = b.taskAt(ctx, b.step, addr)
		}
		obs.mu.Lock()
		_, ok := obs.running[name]
		obs.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(asTaskPoll)
	}
	stop()
	wg.Wait()

	rel := func(t time.Time) *float64 {
		if t.IsZero() {
			return nil
		}
		return ptr(round3(t.Sub(t0).Seconds()))
	}
	t0s := float64(t0.UnixNano()) / 1e9
	relUnix := func(sec int64) *float64 { return ptr(round3(float64(sec) - t0s)) }

	obs.mu.Lock()
	r.TaskID = name
	r.TrafficS = rel(at)
	r.RunningS = rel(obs.running[name])
	r.CreatedS = rel(obs.created[name])
	r.Serving = len(obs.traffic)
	obs.mu.Unlock()

	evs, err := b.events(ctx)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	ds := decisionsSince(evs, b.step, t0)
	stored := 0
	for _, e := range ds {
		r.Decisions = append(r.Decisions, stepDecision{AtS: round3(e.Time.Sub(t0).Seconds()), From: e.From, To: e.To, Trigger: e.Trigger, Reason: e.Reason})
		if !e.Time.After(inspected) {
			stored++
		}
	}
	if rr := svc.Spec.Mode.Replicated; rr != nil && rr.Replicas != nil {
		r.ServiceReplicas = int(*rr.Replicas)
		if stored > 0 && ds[stored-1].To != r.ServiceReplicas {
			r.Foreign = true // someone else (another pulsed on this swarm?) changed the count
		}
	}
	if len(ds) > 0 {
		r.ScaledS = rel(ds[0].Time)
		r.Trigger = ds[0].Trigger
		// UpdatedAt is the first decision's only when no later one came
		// before the inspection.
		if stored == 1 && !svc.UpdatedAt.After(ds[0].Time) && svc.UpdatedAt.After(t0) {
			r.UpdatedS = rel(svc.UpdatedAt)
		}
	}

	d, err := b.nd.DataRange(ctx, utilChart(b.step), int64(math.Floor(t0s))-2, 0)
	if err != nil {
		return fmt.Errorf("netdata data: %w", err)
	}
	if sec, ok := firstAbove(d, contract.DimUtilization, scaler.DefaultUpThreshold, int64(math.Floor(t0s))); ok {
		r.ScrapeS = relUnix(sec)
	}
	log, err := b.nd.AlarmLog(ctx, 0)
	if err != nil {
		return fmt.Errorf("netdata alarm log: %w", err)
	}
	if e, ok := firstCritical(log, asAlarmUp, b.step, int64(math.Floor(t0s))); ok {
		r.AlarmS, r.AlarmValue = relUnix(e.When), e.Value
	}
	if f, err := os.Open(b.pulsedLog); err == nil {
		h, ok := firstHook(f, b.step, asAlarmUp, t0)
		f.Close()
		if ok {
			r.HookS, r.HookResult = rel(h.Time), h.Result
		}
	}
	if r.TrafficS == nil {
		return errors.New("no new server took traffic")
	}
	return nil
}

// decisionsSince returns fn's scale events after t0, oldest first.
func decisionsSince(evs contract.ScaleEvents, fn string, t0 time.Time) []contract.ScaleEvent {
	var out []contract.ScaleEvent
	for _, e := range evs.Events {
		if e.Function == fn && e.Time.After(t0) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b contract.ScaleEvent) int { return a.Time.Compare(b.Time) })
	return out
}

// firstAbove returns the time of the oldest row at or after second from
// whose label column is above limit.
func firstAbove(d netdatalab.Data, label string, limit float64, from int64) (int64, bool) {
	col := slices.Index(d.Labels, label)
	if col < 1 {
		return 0, false
	}
	found, best := false, int64(0)
	for _, row := range d.Rows {
		if len(row) <= col {
			continue
		}
		t := int64(row[0])
		if t >= from && row[col] > limit && (!found || t < best) {
			found, best = true, t
		}
	}
	return best, found
}

// firstCritical returns the oldest CRITICAL entry of alarm on fn's chart
// (family = the function's name) whose when is at or after from.
func firstCritical(log []netdatalab.AlarmLogEntry, alarm, fn string, from int64) (netdatalab.AlarmLogEntry, bool) {
	var best netdatalab.AlarmLogEntry
	found := false
	for _, e := range log {
		if e.Name != alarm || e.Status != "CRITICAL" || e.When < from || (e.Family != fn && e.Chart != utilChart(fn)) {
			continue
		}
		if !found || e.When < best.When || (e.When == best.When && e.UniqueID < best.UniqueID) {
			best, found = e, true
		}
	}
	return best, found
}

// hookLine is pulsed's debug log line of an alarm webhook request.
type hookLine struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Function string    `json:"function"`
	Alarm    string    `json:"alarm"`
	Status   string    `json:"status"`
	When     int64     `json:"when"`
	Result   string    `json:"result"`
}

// firstHook returns the first webhook request pulsed logged (JSON lines,
// msg "alarm") for fn's alarm, CRITICAL, after t0.
func firstHook(r io.Reader, fn, alarm string, t0 time.Time) (hookLine, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"msg":"alarm"`) {
			continue
		}
		var h hookLine
		if json.Unmarshal(line, &h) != nil {
			continue
		}
		if h.Msg == "alarm" && h.Function == fn && h.Alarm == alarm && h.Status == "CRITICAL" && h.Time.After(t0) {
			return h, true
		}
	}
	return hookLine{}, false
}

// pollTasks polls the service's tasks every asTaskPoll and records, for
// every task not in known, its creation and when it turned running (its
// status timestamp).
func (b *autoscaleBench) pollTasks(ctx context.Context, f filters.Args, known map[string]bool, obs *stepObs) {
	tick := time.NewTicker(asTaskPoll)
	defer tick.Stop()
	for {
		cctx, cancel := gwCall(ctx)
		tasks, err := b.api.TaskList(cctx, swarm.TaskListOptions{Filters: f})
		cancel()
		if err != nil && ctx.Err() == nil {
			obs.note(fmt.Errorf("list tasks: %w", err))
		}
		obs.mu.Lock()
		for _, t := range tasks {
			if known[t.ID] {
				continue
			}
			if _, ok := obs.created[t.ID]; !ok {
				obs.created[t.ID] = t.CreatedAt
			}
			if _, ok := obs.running[t.ID]; !ok && t.Status.State == swarm.TaskStateRunning {
				obs.running[t.ID] = t.Status.Timestamp
			}
		}
		obs.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollServers reads the step function's slots every asHAProxyPoll and
// records when a slot pointed at an address not in old first took a
// session past its count in base (slot name → stot before the step), by
// address.
func (b *autoscaleBench) pollServers(ctx context.Context, base map[string]int64, old map[string]bool, obs *stepObs) {
	tick := time.NewTicker(asHAProxyPoll)
	defer tick.Stop()
	for {
		slots, err := b.servers(ctx, b.step)
		now := time.Now()
		if err != nil && ctx.Err() == nil {
			obs.note(err)
		}
		obs.mu.Lock()
		for _, s := range newTraffic(slots, base, old) {
			if _, ok := obs.traffic[s.Addr]; !ok {
				obs.traffic[s.Addr] = now
			}
		}
		obs.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// taskAt returns the task of fn's replica at addr in pulsed's catalog, ""
// if none.
func (b *autoscaleBench) taskAt(ctx context.Context, fn, addr string) string {
	f, err := b.catalogFunction(ctx, fn)
	if err != nil {
		return ""
	}
	for _, r := range f.Replicas {
		if r.Addr == addr {
			return r.TaskID
		}
	}
	return ""
}

// --- the load ---

// stepLoad is a closed-loop load: conns keep-alive connections, each
// sending one POST, reading its answer, and sending the next. A failed
// request is counted, never retried; its connection is replaced.
type stepLoad struct {
	addr, req, body string
	ok, failed      atomic.Int64
	stopping        atomic.Bool
	wg              sync.WaitGroup
	mu              sync.Mutex
	why             map[string]int64
	conns           map[net.Conn]bool
}

func httpPost(path, body string, close bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n", path, len(body))
	if close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

func startStepLoad(addr, path, body string, conns int) *stepLoad {
	l := &stepLoad{addr: addr, req: httpPost(path, body, false), body: body, why: map[string]int64{}, conns: map[net.Conn]bool{}}
	for range conns {
		l.wg.Add(1)
		go l.worker()
	}
	return l
}

func (l *stepLoad) fail(why string) {
	if l.stopping.Load() {
		return // cut off by end
	}
	l.failed.Add(1)
	l.mu.Lock()
	l.why[truncate(why, 200)]++
	l.mu.Unlock()
}

func (l *stepLoad) track(c net.Conn, on bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		if l.stopping.Load() {
			return false
		}
		l.conns[c] = true
	} else {
		delete(l.conns, c)
	}
	return true
}

func (l *stepLoad) worker() {
	defer l.wg.Done()
	var c net.Conn
	var br *bufio.Reader
	drop := func() {
		if c != nil {
			l.track(c, false)
			c.Close()
			c = nil
		}
	}
	defer drop()
	for !l.stopping.Load() {
		if c == nil {
			conn, err := net.DialTimeout("tcp", l.addr, 2*time.Second)
			if err != nil {
				l.fail("dial: " + err.Error())
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !l.track(conn, true) {
				conn.Close()
				return
			}
			c, br = conn, bufio.NewReader(conn)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if _, err := io.WriteString(c, l.req); err != nil {
			l.fail("write: " + err.Error())
			drop()
			continue
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			l.fail("read: " + err.Error())
			drop()
			continue
		}
		got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case err != nil:
			l.fail("read body: " + err.Error())
			drop()
			continue
		case resp.StatusCode != http.StatusOK:
			l.fail(resp.Status)
		case string(got) != l.body:
			l.fail("wrong body: " + truncate(string(got), 80))
		default:
			l.ok.Add(1)
		}
		if resp.Close {
			drop()
		}
	}
}

// end stops the load (requests in flight are cut off and not counted) and
// returns the requests answered, the failures and their reasons.
func (l *stepLoad) end() (requests, failed int64, why map[string]int64) {
	l.mu.Lock()
	l.stopping.Store(true)
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failed.Load()
	return l.ok.Load() + f, f, maps.Clone(l.why)
}

// --- cold start ---

// coldTrials sends, per trial, one request to the cold function at zero
// replicas, then scales it back to zero through the Docker API.
func (b *autoscaleBench) coldTrials(ctx context.Context, n int) error {
	for i := 1; i <= n; i++ {
		if err := b.forceZero(ctx); err != nil {
			return err
		}
		c := coldTrial{Trial: i}
		c.Load1, _ = readLoad1("/proc")
		start := time.Now()
		status, err := coldRequest(ctx, b.gwAddr, "/function/"+b.cold, b.body)
		c.LatencyS, c.Status = round3(time.Since(start).Seconds()), status
		if err != nil {
			c.Error = err.Error()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Info("cold start", "trial", i, "latency_s", c.LatencyS, "status", c.Status, "err", c.Error)
		b.rep.Cold = append(b.rep.Cold, c)
	}
	return b.forceZero(ctx)
}

// waitZero waits until pulsed's catalog has the cold function at 0 desired
// replicas and none listed, HAProxy has no server for it but the backup,
// and no container of it runs.
func (b *autoscaleBench) waitZero(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		f, err := b.catalogFunction(ctx, b.cold)
		if err == nil && f.Desired == 0 && len(f.Replicas) == 0 {
			ss, err := b.servers(ctx, b.cold)
			if err == nil && len(liveSlots(ss)) == 0 {
				return b.waitContainers(ctx, b.cold, 0)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not at zero after %s (catalog: desired %d, %d replicas; %v)", b.cold, limit, f.Desired, len(f.Replicas), err)
		}
		if err := gwSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (b *autoscaleBench) forceZero(ctx context.Context) error {
	if err := b.sw.Scale(ctx, b.cold, 0, true); err != nil {
		return err
	}
	return b.waitZero(ctx, asZeroTimeout)
}

// coldRequest POSTs body on a new connection and returns the status once
// the whole answer is read.
func coldRequest(ctx context.Context, addr, path, body string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, asColdTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := io.WriteString(c, httpPost(path, body, true)); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, truncate(strings.TrimSpace(string(got)), 200))
	}
	if string(got) != body {
		return resp.StatusCode, fmt.Errorf("wrong body %q", truncate(string(got), 80))
	}
	return resp.StatusCode, nil
}

// autoscaleNotes are observations on the run worth reading with the
// numbers.
func autoscaleNotes(r autoscaleReport) []string {
	var notes []string
	for _, s := range r.Summary.Steps {
		if s.FailedRequests > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d of %d requests of the load failed", s.Step, s.FailedRequests, s.Requests))
		}
		if n := s.Triggers[contract.TriggerResync]; n > 0 {
			notes = append(notes, fmt.Sprintf("%s: in %d trial(s) pulsed's periodic evaluation (every %s) decided before the alarm's hook arrived", s.Step, n, asResync))
		}
	}
	for _, t := range r.Steps {
		if t.Foreign {
			notes = append(notes, fmt.Sprintf("%s trial %d: the service had %d replicas, not this pulsed's last decision: something else on the swarm scaled it", t.Step, t.Trial, t.ServiceReplicas))
		}
	}
	var loads []float64
	for _, t := range r.Steps {
		loads = append(loads, t.Load1)
	}
	for _, c := range r.Cold {
		loads = append(loads, c.Load1)
	}
	if len(loads) > 0 && median(loads) > float64(r.Machine.CPUs) {
		notes = append(notes, fmt.Sprintf("the host was busy: its 1-minute load average at the trials' starts was %.1f (median; %.1f–%.1f) on %d CPUs, "+
			"which slows the engine's task starts most", median(loads), slices.Min(loads), slices.Max(loads), r.Machine.CPUs))
	}
	multi := 0
	for _, t := range r.Steps {
		if len(t.Decisions) > 1 {
			multi++
		}
	}
	if multi > 0 {
		notes = append(notes, fmt.Sprintf("%d step trial(s) took more than one decision to reach their replica count (see the trial table)", multi))
	}
	for _, t := range r.Steps {
		if t.Error != "" {
			notes = append(notes, fmt.Sprintf("%s trial %d failed: %s", t.Step, t.Trial, t.Error))
		}
	}
	return notes
}
