package main

// The soak suite: ten minutes (-soak-duration) of closed-loop load through
// the gateway with the autoscaler on, the connections stepping up and down
// every minute, a rolling update in the middle and one replica killed
// later; then a minute through the gateway and a minute straight to one
// replica at the same connections, for the CPU per request. Every request
// is recorded by the client; HAProxy's request log (pulsed's haproxy_log,
// sent to a UDP socket of the harness) names the server of each, and
// pulsed's catalog and HAProxy's slots, polled every 500 ms, name the
// replica and task behind the server at that moment.
//
// It runs the whole stack as it ships, on loopback ports the kernel picks,
// as the autoscale suite does: pulsed (its own state directory, HAProxy,
// scaler, alarm token; PULSE_SELECTOR limits it to this run's function), a
// private Netdata (internal/netdatalab) with pulse.d.plugin and the alarms
// whose exec: runs the built hook. The function is bench/inproc (the
// in-process Go echo) built as an image's Go function and deployed through
// package function, as `pulse deploy` gives it on this engine.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	"github.com/pulsefaas/pulse/watchdog"
)

const suiteSoak = "soak"

// Settings of the soak suite.
const (
	soakNamePrefix = "pbench-soak-"
	// The function's policy: the closed-loop connections are its
	// in-flight demand, so 48 connections ask for 6 replicas, 16 for 2.
	soakMetric     = "inflight"
	soakTarget     = 8
	soakMin        = 1
	soakMax        = 8
	soakTimeout    = 10 * time.Second
	soakDefault    = 10 * time.Minute
	soakSamplePoll = 500 * time.Millisecond // pulsed's catalog and HAProxy's slots
	soakHostPoll   = time.Second            // show stat, TIME_WAIT, /proc/stat
	soakRoute      = 90 * time.Second
	soakAlarmInit  = 90 * time.Second
	soakStopGrace  = 20 * time.Second
	soakUpdateWait = 3 * time.Minute // the rolling update's end is looked for this long
	soakLogLinger  = 2 * time.Second // load end → the log socket closed
	// soakRollEnv is the environment variable the rolling update changes.
	soakRollEnv = "PULSE_BENCH_SOAK_GENERATION"
)

// soakBench runs the soak suite.
type soakBench struct {
	cfg  config
	log  *slog.Logger
	env  suiteEnv
	arts artifacts
	api  *client.Client
	sw   *function.Swarm
	run  string
	name string
	body string
	rep  *soakReport
	http *http.Client

	shared, tokenFile, token string

	stateDir, apiAddr, gwAddr, adminAddr, coldAddr, pulsedLog string
	pulsed                                                    *server
	rt                                                        *gateway.Runtime
	nd                                                        *netdatalab.Netdata
	hlog                                                      *haLog

	spec  function.Spec
	img   function.Image
	svcID string
	t0    time.Time

	mu       sync.Mutex
	samples  soakTimeline
	stats    *statAcc
	host     []soakHostSample
	statErrs int
	lastErr  error
}

// soakHostSample is one second of the host poller.
type soakHostSample struct {
	At       time.Time
	TimeWait int
	CPU      hostCPU
}

// runSoak runs the soak suite.
func runSoak(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	phases, updateAt, killAt, err := soakSchedule(cfg.SoakDuration)
	if err != nil {
		return err
	}
	id, err := gwRunID()
	if err != nil {
		return err
	}
	if err := netdatalab.Available(); err != nil {
		return err
	}
	b := &soakBench{
		cfg: cfg, log: log, env: env, run: id, name: soakNamePrefix + id + "-echo", body: payload(cfg.BodyBytes),
		http:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		stats: newStatAcc(),
	}
	b.rep = &soakReport{
		Suite: cfg.Suite, Started: env.started.Format(time.RFC3339),
		Config: soakConfig{DurationS: cfg.SoakDuration.Seconds(), StepS: soakStep.Seconds(), Function: b.name,
			Handler: "bench/inproc: the in-process Go echo (watchdog library)", Metric: soakMetric, Target: soakTarget, Min: soakMin, Max: soakMax,
			TimeoutS: soakTimeout.Seconds(), DrainGraceS: watchdog.DefaultDrainGrace.Seconds(), BodyBytes: cfg.BodyBytes, CompareConns: soakCompareConns,
			CatalogPollS: soakSamplePoll.Seconds(), StatPollS: soakHostPoll.Seconds()},
		Machine: collectMachine(ctx, env.tools, env.clk),
	}
	rep := b.rep
	if env.clkNote != "" {
		rep.Notes = append(rep.Notes, env.clkNote)
	}
	rep.HAProxy, _ = haproxyVersion(ctx, env.tools.haproxy)
	if out, err := commandOutput(ctx, "/usr/sbin/netdata", "-V"); err == nil {
		rep.Netdata = strings.TrimSpace(out)
	}
	api, _, v, err := connectSingleNodeSwarm(ctx, suiteSoak, "where every replica runs on this host", gwCallTimeout)
	if err != nil {
		return err
	}
	rep.Engine = "Docker Engine " + v.Version + " (API " + v.APIVersion + ")"
	b.api, b.sw = api, function.NewSwarm(api, function.LocalDistributor{API: api}, nil)
	defer func() { rep.Cleanup = append(rep.Cleanup, b.cleanup()...) }()

	log.Info("building", "root", env.root)
	if b.arts, err = build(ctx, log, env.root, soakBuilds(env.tools, env.tmp)); err != nil {
		return err
	}
	names := []string{"pulsed", "pulse.d.plugin", "pulse-alarm-hook", "inproc"}
	for _, n := range names {
		rep.Artifacts = append(rep.Artifacts, *b.arts[n])
	}
	if m := b.arts.missing(names); m != "" {
		return fmt.Errorf("%s did not build: %s", m, b.arts[m].Error)
	}
	if b.shared, b.tokenFile, b.token, err = prepareAlarmShared(b.arts.path("pulse-alarm-hook")); err != nil {
		return err
	}
	if b.hlog, err = listenHALog(gateway.BackendName(b.name), time.Now()); err != nil {
		return err
	}
	if err := b.deploy(ctx); err != nil {
		return err
	}
	if err := b.start(ctx); err != nil {
		return err
	}

	log.Info("soak", "function", b.name, "duration", cfg.SoakDuration, "rolling_update_at", updateAt, "kill_at", killAt)
	recs, fails, err := b.soak(ctx, phases, updateAt, killAt)
	if err != nil {
		return err
	}
	b.analyze(ctx, recs, fails)
	b.keepLogs()
	rep.Cleanup = append(rep.Cleanup, b.cleanup()...)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)

	base := filepath.Join(cfg.Out, cfg.Suite+"-"+env.started.Format("20060102T150405Z"))
	png, err := renderSoakPlot(*rep)
	if err != nil {
		rep.Notes = append(rep.Notes, "the picture could not be drawn: "+err.Error())
	} else {
		if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(base+".png", png); err != nil {
			return err
		}
		rep.Picture = filepath.Base(base + ".png")
		fmt.Fprintf(stdout, "picture: %s\n", base+".png")
	}
	pub := cfg
	if cfg.SoakDuration < soakDefault {
		pub.Readme = "-" // a short run leaves the README alone
	}
	return publish(pub, stdout, env.started, rep, renderSoak(*rep, false, ""), func(rel string) string { return renderSoak(*rep, true, rel) })
}

// soakBuilds: pulsed, the plugin and the hook as they ship, and the
// in-process Go echo built as an image's Go function.
func soakBuilds(t tools, dir string) []buildStep {
	out := func(name string) string { return filepath.Join(dir, name) }
	goBuild := func(name, pkg, tags string) buildStep {
		argv := []string{t.goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out(name)}
		if tags != "" {
			argv = append(argv, "-tags", tags)
		}
		return buildStep{name: name, source: pkg, out: out(name), argv: append(argv, pkg), env: []string{"CGO_ENABLED=0"}}
	}
	return []buildStep{
		{name: "pulsed", source: "./cmd/pulsed", out: out("pulsed"), argv: []string{t.goBin, "build", "-o", out("pulsed"), "./cmd/pulsed"}},
		goBuild("pulse.d.plugin", "./cmd/pulse.d.plugin", ""),
		goBuild("pulse-alarm-hook", "./cmd/pulse-alarm-hook", ""),
		goBuild("inproc", "./bench/inproc", "nethttpomithttp2,watchdog_nofork,watchdog_nohttp"),
	}
}

// prepareAlarmShared makes a directory the netdata user can read, with the
// hook (run by Netdata as user netdata) and a fresh alarm token (0640
// root:netdata). The caller removes dir, which is returned even on error
// once created.
func prepareAlarmShared(hookBin string) (dir, tokenFile, token string, err error) {
	dir, err = os.MkdirTemp("", "pulse-bench-alarms-")
	if err != nil {
		return "", "", "", fmt.Errorf("shared dir: %w", err)
	}
	if strings.ContainsAny(dir, " \t\n'\"") {
		return dir, "", "", fmt.Errorf("shared dir %q: whitespace or quotes break Netdata's exec line", dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return dir, "", "", fmt.Errorf("shared dir: %w", err)
	}
	hook, err := os.ReadFile(hookBin)
	if err != nil {
		return dir, "", "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "pulse-alarm-hook"), hook, 0o755); err != nil {
		return dir, "", "", fmt.Errorf("install hook: %w", err)
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return dir, "", "", fmt.Errorf("token: %w", err)
	}
	token = hex.EncodeToString(tok[:])
	tokenFile = filepath.Join(dir, "alarm-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o640); err != nil {
		return dir, "", "", fmt.Errorf("token: %w", err)
	}
	g, err := user.LookupGroup("netdata")
	if err != nil {
		return dir, "", "", fmt.Errorf("token: %w", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	if err := os.Chown(tokenFile, 0, gid); err != nil {
		return dir, "", "", fmt.Errorf("token: %w", err)
	}
	return dir, tokenFile, token, nil
}

// deploy assembles the echo's image (as /function, the way function.Build
// lays out a Go function) and deploys it at one replica, as `pulse deploy`
// does on this engine: no Docker health check, the default drain grace.
func (b *soakBench) deploy(ctx context.Context) error {
	bin, err := os.ReadFile(b.arts.path("inproc"))
	if err != nil {
		return err
	}
	labels := map[string]string{gwTestLabel: "1", gwRunLabel: b.run}
	b.spec = function.Spec{
		Name: b.name, Lang: function.LangGo, Mode: contract.ModeInProcess, Handler: ".",
		Timeout: soakTimeout, MaxBody: 1 << 20,
		Scale:  function.Scale{Metric: soakMetric, Target: soakTarget, Min: soakMin, Max: soakMax},
		Labels: labels,
		Env:    map[string]string{soakRollEnv: "1"},
	}
	imgLabels := map[string]string{contract.LabelFunction: b.name}
	maps.Copy(imgLabels, labels)
	b.img, err = function.Assemble(function.ImageSpec{
		Tag:          function.ImageRepository + b.name + ":bench",
		Files:        []function.File{{Path: function.FunctionPath, Mode: 0o755, Content: bin}},
		Entrypoint:   []string{function.FunctionPath},
		Env:          b.spec.WatchdogEnv(),
		User:         function.ImageUser,
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
		Labels:       imgLabels,
	})
	if err != nil {
		return err
	}
	res, err := b.sw.Deploy(ctx, b.spec, b.img, function.DeployOptions{NoHealthcheck: true, Instance: benchInstance(b.run)})
	if err != nil {
		return err
	}
	b.svcID = res.ServiceID
	wctx, cancel := context.WithTimeout(ctx, soakRoute)
	defer cancel()
	if _, err := b.sw.WaitReady(wctx, b.name, 1); err != nil {
		return err
	}
	b.log.Info("deployed", "function", b.name)
	return nil
}

// start starts the lab Netdata and pulsed (ports chosen first, so each can
// point at the other), with HAProxy's request log sent to the harness, and
// waits until the function is routed and its alarms are initialised.
func (b *soakBench) start(ctx context.Context) error {
	for _, a := range []*string{&b.apiAddr, &b.gwAddr, &b.adminAddr, &b.coldAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	health, err := healthWithHook(alarms.Templates(), filepath.Join(b.shared, "pulse-alarm-hook"))
	if err != nil {
		return err
	}
	ndLog, err := os.Create(filepath.Join(b.env.tmp, "netdata.log"))
	if err != nil {
		return err
	}
	defer ndLog.Close()
	b.nd, err = netdatalab.Start(ctx, netdatalab.Config{
		Plugin:       b.arts.path("pulse.d.plugin"),
		PluginConfig: netdatalab.JobConfig("http://"+b.apiAddr+contract.CatalogPath, "http://"+b.adminAddr+"/metrics"),
		Health:       health,
		Env:          []string{"PULSE_ALARM_URL=http://" + b.apiAddr + contract.AlarmsPath, "PULSE_ALARM_TOKEN_FILE=" + b.tokenFile},
		Stderr:       ndLog,
	})
	if err != nil {
		return err
	}
	b.stateDir = filepath.Join(b.env.tmp, "state")
	if err := os.Mkdir(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	cfgFile := filepath.Join(b.env.tmp, "pulsed.yaml")
	if err := os.WriteFile(cfgFile, []byte("# pulse bench: every setting comes from PULSE_* variables\n"), 0o644); err != nil {
		return fmt.Errorf("pulsed config: %w", err)
	}
	// Its own instance: a `make up` pulsed on the same swarm neither routes
	// nor scales the run's function, and this one acts only on it.
	changed := []string{
		"PULSE_INSTANCE=" + benchInstance(b.run),
		"PULSE_SELECTOR=" + gwRunLabel + "=" + b.run,
		"PULSE_HAPROXY_LOG=" + b.hlog.Target(),
	}
	b.rep.Config.PulsedEnv = changed
	b.rep.Config.HAProxyLog = b.hlog.Target()
	env := append(append(baseEnv(),
		"PULSE_STATE_DIR="+b.stateDir,
		"PULSE_API_LISTEN="+b.apiAddr,
		"PULSE_GATEWAY_LISTEN="+b.gwAddr,
		"PULSE_ADMIN_LISTEN="+b.adminAddr,
		"PULSE_COLDSTART_LISTEN="+b.coldAddr,
		"PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.env.tools.haproxy,
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
	if err := waitReady(ctx, b.pulsed, "http://"+b.apiAddr+"/healthz", soakRoute); err != nil {
		return err
	}
	deadline := time.Now().Add(soakRoute)
	for {
		ss, err := b.rt.Servers(ctx, gateway.BackendName(b.name))
		live, serving := countSlots(ss)
		if err == nil && live == 1 && serving == 1 {
			if err = probe(ctx, "http://"+b.gwAddr+"/function/"+b.name, b.body); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not routed after %s (%d live, %d serving, %v); pulsed log: %s", b.name, soakRoute, live, serving, err, b.pulsed.logTail(2000))
		}
		if err := gwSleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	b.log.Info("pulsed routing; waiting for the alarms to initialise", "api", b.apiAddr, "gateway", b.gwAddr)
	deadline = time.Now().Add(soakAlarmInit)
	for {
		st, err := b.nd.AlarmStatus(ctx, asAlarmUp, utilChart(b.name))
		if err == nil && st == "CLEAR" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s of %s not initialised after %s (status %q, %v); netdata log: %s", asAlarmUp, b.name, soakAlarmInit, st, err, truncate(b.nd.ErrorLog(), 2000))
		}
		if err := gwSleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// soak runs the schedule with its events and the pollers, and returns the
// client's records.
func (b *soakBench) soak(ctx context.Context, phases []soakPhase, updateAt, killAt time.Duration) ([]soakReq, []soakFail, error) {
	reloads0, rerr0 := b.reloads(ctx)
	b.t0 = time.Now()
	b.hlog.mu.Lock()
	b.hlog.t0 = b.t0
	b.hlog.mu.Unlock()
	b.rep.T0 = b.t0.UTC().Format(time.RFC3339Nano)
	pctx, stopPollers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.pollSamples(pctx) }()
	go func() { defer wg.Done(); b.pollHost(pctx) }()
	defer func() { stopPollers(); wg.Wait() }()

	load := newSoakLoad(b.t0, b.body)
	ended := false
	defer func() {
		if !ended {
			load.end()
		}
	}()
	var evMu sync.Mutex
	event := func(e soakEvent) {
		evMu.Lock()
		b.rep.Events = append(b.rep.Events, e)
		evMu.Unlock()
		b.log.Info("event", "event", e.Name, "at", clock(e.AtS), "task", e.Task, "addr", e.Addr, "detail", e.Detail)
	}
	wg.Add(2)
	go func() { defer wg.Done(); b.rollingUpdate(pctx, b.t0.Add(updateAt), event) }()
	go func() { defer wg.Done(); b.killOne(pctx, b.t0.Add(killAt), event) }()

	marks := make([]hostCPU, len(phases)+1)
	groups := make([]procCPU, len(phases)+1)
	watch := procWatch{HAProxyConfig: filepath.Join(b.stateDir, "haproxy.cfg"), Pulsed: b.pulsed.pid()}
	for i := range phases {
		ph := &phases[i]
		if ph.Name != soakPhaseStep {
			b.watchReplicas(ctx, &watch) // before the boundary: it takes a few engine calls
		}
		if err := sleepUntil(ctx, b.t0.Add(time.Duration(ph.StartS*float64(time.Second)))); err != nil {
			return nil, nil, err
		}
		marks[i], _ = readHostCPU("/proc")
		if ph.Name != soakPhaseStep {
			groups[i] = b.sampleGroups(watch)
		}
		if ph.Direct {
			addr, task, err := b.directTarget(ctx)
			if err != nil {
				return nil, nil, err
			}
			ph.Addr, ph.Task = addr, task
			load.set(ph.Conns, addr, "/", true)
		} else {
			load.set(ph.Conns, b.gwAddr, "/function/"+b.name, false)
		}
		b.log.Info("phase", "phase", ph.Name, "at", clock(ph.StartS), "connections", ph.Conns, "direct", ph.Direct, "addr", ph.Addr)
	}
	if err := sleepUntil(ctx, b.t0.Add(time.Duration(phases[len(phases)-1].EndS*float64(time.Second)))); err != nil {
		return nil, nil, err
	}
	b.watchReplicas(ctx, &watch)
	marks[len(phases)], _ = readHostCPU("/proc")
	groups[len(phases)] = b.sampleGroups(watch)
	recs, fails := load.end()
	ended = true
	b.log.Info("load done", "requests", len(recs), "failed", len(fails))
	b.rep.Phases = phases

	// What the load left: memory, counters, HAProxy's own log count.
	b.rep.Summary.RSS = b.rss()
	b.pollStats(ctx)
	if out, err := b.rt.Exec(ctx, "show info"); err == nil {
		if n, err := strconv.ParseInt(parseShowInfo(out)["DroppedLogs"], 10, 64); err == nil {
			b.rep.Summary.DroppedLogs = n
		}
	}
	b.rep.Summary.Reloads = -1
	if reloads1, rerr1 := b.reloads(ctx); rerr0 == nil && rerr1 == nil {
		b.rep.Summary.Reloads = int64(reloads1 - reloads0)
	}
	// The CPU comparison.
	c := &b.rep.Summary.CPU
	for i, ph := range phases {
		d := marks[i+1].Busy - marks[i].Busy
		switch ph.Name {
		case soakPhaseGwCPU:
			c.GatewayS, c.GatewayTicks = ph.EndS-ph.StartS, d
			c.GatewayGroupTicks = groupDelta(groups[i], groups[i+1])
			c.GatewayBusyPct = round3(100 * float64(d) / float64(max(marks[i+1].Total-marks[i].Total, 1)))
			c.StealTicks += marks[i+1].Steal - marks[i].Steal
		case soakPhaseDirect:
			c.DirectS, c.DirectTicks = ph.EndS-ph.StartS, d
			c.DirectGroupTicks = groupDelta(groups[i], groups[i+1])
			c.DirectBusyPct = round3(100 * float64(d) / float64(max(marks[i+1].Total-marks[i].Total, 1)))
			c.StealTicks += marks[i+1].Steal - marks[i].Steal
		}
		c.Conns = ph.Conns
	}
	stopPollers()
	wg.Wait()
	return recs, fails, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	if d := time.Until(t); d > 0 {
		return gwSleep(ctx, d)
	}
	return ctx.Err()
}

// watchReplicas adds the function's running replicas (their processes and
// published ports) to w.
func (b *soakBench) watchReplicas(ctx context.Context, w *procWatch) {
	if f, err := b.catalogFunction(ctx); err == nil {
		for _, r := range f.Replicas {
			if _, p, err := net.SplitHostPort(r.Addr); err == nil {
				if n, err := strconv.Atoi(p); err == nil && !slices.Contains(w.Ports, n) {
					w.Ports = append(w.Ports, n)
				}
			}
		}
	}
	cctx, cancel := gwCall(ctx)
	defer cancel()
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", gwLabelServiceName+"="+b.name))})
	if err != nil {
		return
	}
	for _, c := range cs {
		if ci, err := b.api.ContainerInspect(cctx, c.ID); err == nil && ci.ContainerJSONBase != nil && ci.State != nil && ci.State.Pid > 0 &&
			!slices.Contains(w.Replicas, ci.State.Pid) {
			w.Replicas = append(w.Replicas, ci.State.Pid)
		}
	}
}

// sampleGroups reads the CPU of w's groups, of this program and of the lab
// Netdata's process tree.
func (b *soakBench) sampleGroups(w procWatch) procCPU {
	g, err := scanProcs("/proc", w)
	if err != nil {
		g = procCPU{}
	}
	if st, err := readStat("/proc", os.Getpid()); err == nil {
		g[groupHarness] = map[procKey]uint64{{st.PID, st.StartTime}: st.UTime + st.STime}
	}
	if b.nd != nil {
		if tree, err := processTree("/proc", b.nd.PID()); err == nil {
			m := map[procKey]uint64{}
			for _, p := range tree {
				m[procKey{p.PID, p.StartTime}] = p.UTime + p.STime
			}
			g[groupNetdata] = m
		}
	}
	return g
}

// groupDelta is each group's CPU between two samples, in ticks.
func groupDelta(before, after procCPU) map[string]uint64 {
	if before == nil || after == nil {
		return nil
	}
	out := map[string]uint64{}
	for g, m := range after {
		out[g], _, _ = cpuDelta(before[g], m)
	}
	return out
}

// directTarget picks the replica the direct minute loads: one pulsed
// routes and is not draining.
func (b *soakBench) directTarget(ctx context.Context) (addr, task string, err error) {
	f, err := b.catalogFunction(ctx)
	if err != nil {
		return "", "", err
	}
	for _, r := range f.Replicas {
		if r.Routed && !r.Draining {
			a, _ := loopbackAddr(r.Addr)
			return a, r.TaskID, nil
		}
	}
	return "", "", fmt.Errorf("no routed replica of %s for the direct minute", b.name)
}

// rollingUpdate redeploys the function with a changed environment at at
// (a start-first rolling update through function.Swarm.Deploy), then
// watches the service until Swarm reports the update done.
func (b *soakBench) rollingUpdate(ctx context.Context, at time.Time, event func(soakEvent)) {
	if sleepUntil(ctx, at) != nil {
		return
	}
	spec := b.spec
	spec.Env = map[string]string{soakRollEnv: "2"}
	start := time.Now()
	res, err := b.sw.Deploy(ctx, spec, b.img, function.DeployOptions{NoHealthcheck: true, Instance: benchInstance(b.run)})
	if err != nil {
		event(soakEvent{Name: soakEventUpdate, AtS: round3(start.Sub(b.t0).Seconds()), Detail: "failed: " + err.Error()})
		b.rep.Summary.UpdateState = "deploy failed: " + err.Error()
		return
	}
	event(soakEvent{Name: soakEventUpdate, AtS: round3(start.Sub(b.t0).Seconds()),
		Detail: fmt.Sprintf("Swarm.Deploy with %s=2: start-first, one replica at a time; %d replica(s)", soakRollEnv, res.Replicas)})
	deadline := start.Add(soakUpdateWait)
	for time.Now().Before(deadline) {
		if gwSleep(ctx, 250*time.Millisecond) != nil {
			return
		}
		cctx, cancel := gwCall(ctx)
		svc, _, err := b.api.ServiceInspectWithRaw(cctx, b.name, swarm.ServiceInspectOptions{})
		cancel()
		if err != nil || svc.UpdateStatus == nil {
			continue
		}
		st := svc.UpdateStatus
		b.rep.Summary.UpdateState = string(st.State) + ": " + st.Message
		switch st.State {
		case swarm.UpdateStateCompleted:
			done := time.Now()
			if st.CompletedAt != nil {
				done = *st.CompletedAt
			}
			b.rep.Summary.UpdateS = round3(done.Sub(start).Seconds())
			event(soakEvent{Name: soakEventUpdateDone, AtS: round3(done.Sub(b.t0).Seconds()), Detail: st.Message})
			return
		case swarm.UpdateStatePaused, swarm.UpdateStateRollbackCompleted, swarm.UpdateStateRollbackPaused:
			event(soakEvent{Name: soakEventUpdateDone, AtS: round3(time.Since(b.t0).Seconds()), Detail: string(st.State) + ": " + st.Message})
			return
		}
	}
}

// killOne kills one routed replica's container with SIGKILL at at (docker
// kill), and records when the engine saw it end.
func (b *soakBench) killOne(ctx context.Context, at time.Time, event func(soakEvent)) {
	if sleepUntil(ctx, at) != nil {
		return
	}
	fail := func(why string) {
		event(soakEvent{Name: soakEventKill, AtS: round3(time.Since(b.t0).Seconds()), Detail: "not done: " + why})
	}
	f, err := b.catalogFunction(ctx)
	if err != nil {
		fail(err.Error())
		return
	}
	var cands []contract.Replica
	for _, r := range f.Replicas {
		if r.Routed && !r.Draining {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		fail("no routed replica")
		return
	}
	victim := cands[mrand.IntN(len(cands))]
	cctx, cancel := gwCall(ctx)
	cs, err := b.api.ContainerList(cctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.task.id="+victim.TaskID))})
	cancel()
	if err != nil || len(cs) != 1 {
		fail(fmt.Sprintf("container of task %s: %d found, %v", victim.TaskID, len(cs), err))
		return
	}
	server := ""
	b.mu.Lock()
	if n := len(b.samples); n > 0 {
		for _, s := range b.samples[n-1].Slots {
			if s.Live() && s.Addr == victim.Addr {
				server = s.Name
			}
		}
	}
	b.mu.Unlock()
	called := time.Now()
	cctx, cancel = gwCall(ctx)
	err = b.api.ContainerKill(cctx, cs[0].ID, "SIGKILL")
	returned := time.Now()
	cancel()
	if err != nil {
		fail("kill: " + err.Error())
		return
	}
	ended := called
	cctx, cancel = gwCall(ctx)
	if ci, err := b.api.ContainerInspect(cctx, cs[0].ID); err == nil && ci.ContainerJSONBase != nil && ci.State != nil {
		if t, err := time.Parse(time.RFC3339Nano, ci.State.FinishedAt); err == nil && !t.IsZero() && t.After(called.Add(-time.Second)) {
			ended = t
		}
	}
	cancel()
	event(soakEvent{Name: soakEventKill, AtS: round3(ended.Sub(b.t0).Seconds()), Task: victim.TaskID, Addr: victim.Addr, Server: server,
		Detail: fmt.Sprintf("docker kill (SIGKILL) of one of %d routed replicas at %s; the call returned %.3f s later, the engine's FinishedAt %.3f s after the call",
			len(cands), clock(round3(called.Sub(b.t0).Seconds())), returned.Sub(called).Seconds(), ended.Sub(called).Seconds())})
	b.mu.Lock()
	b.rep.Summary.kill = &soakKill{CallAt: called, At: ended, Task: victim.TaskID, Addr: victim.Addr}
	b.rep.Summary.KillCallS = round3(called.Sub(b.t0).Seconds())
	b.rep.Summary.KillEndS = round3(ended.Sub(b.t0).Seconds())
	b.mu.Unlock()
}

// --- pollers ---

// pollSamples reads pulsed's catalog and HAProxy's slots every
// soakSamplePoll.
func (b *soakBench) pollSamples(ctx context.Context) {
	tick := time.NewTicker(soakSamplePoll)
	defer tick.Stop()
	backend := gateway.BackendName(b.name)
	for {
		smp := soakSample{At: time.Now(), OK: true}
		if f, err := b.catalogFunction(ctx); err == nil {
			smp.Replicas, smp.Desired = f.Replicas, f.Desired
		} else {
			smp.OK = false
			b.note(err)
		}
		if ss, err := readSlots(ctx, b.rt, backend); err == nil {
			smp.Slots = ss
		} else {
			smp.OK = false
			b.note(err)
		}
		b.mu.Lock()
		b.samples = append(b.samples, smp)
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollHost reads HAProxy's server counters, the TIME_WAIT sockets and the
// host's CPU every soakHostPoll.
func (b *soakBench) pollHost(ctx context.Context) {
	tick := time.NewTicker(soakHostPoll)
	defer tick.Stop()
	for {
		b.pollStats(ctx)
		s := soakHostSample{At: time.Now()}
		s.TimeWait, _ = readTimeWait("/proc")
		s.CPU, _ = readHostCPU("/proc")
		b.mu.Lock()
		b.host = append(b.host, s)
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pollStats adds one `show stat` of the function's servers to the counters.
func (b *soakBench) pollStats(ctx context.Context) {
	backend := gateway.BackendName(b.name)
	out, err := b.rt.Exec(ctx, "show stat "+backend+" 4 -1")
	at := time.Now()
	var rows []gateway.ServerStat
	if err == nil {
		rows, err = gateway.ParseServerStat(strings.NewReader(out))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.statErrs++
		b.lastErr = err
		return
	}
	b.stats.add(at, rows)
}

func (b *soakBench) note(err error) {
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
}

// readTimeWait counts the TCP sockets in TIME_WAIT (IPv4 and IPv6).
func readTimeWait(procDir string) (int, error) {
	n := 0
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		fh, err := os.Open(filepath.Join(procDir, f))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		c, err := countTimeWait(fh)
		fh.Close()
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// countTimeWait counts the lines of a /proc/net/tcp table whose state
// (the 4th column) is 06, TIME_WAIT.
func countTimeWait(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) > 3 && f[3] == "06" {
			n++
		}
	}
	return n, sc.Err()
}

// parseShowInfo reads HAProxy's `show info` ("Name: value" lines).
func parseShowInfo(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// rss reads the resident memory of pulsed's HAProxy (master and workers)
// and of pulsed.
func (b *soakBench) rss() soakRSS {
	var r soakRSS
	if ps, err := findHAProxies("/proc", b.stateDir); err == nil {
		for _, p := range ps {
			if m, err := readStatus("/proc", p.PID); err == nil {
				r.HAProxyProcs++
				r.HAProxyMB += float64(m.RSSKB) * 1024 / mb
				r.HAProxyHWMMB += float64(m.HWMKB) * 1024 / mb
			}
		}
	}
	if b.pulsed != nil {
		if m, err := readStatus("/proc", b.pulsed.pid()); err == nil {
			r.PulsedMB, r.PulsedHWMMB = float64(m.RSSKB)*1024/mb, float64(m.HWMKB)*1024/mb
		}
	}
	r.HAProxyMB, r.HAProxyHWMMB, r.PulsedMB, r.PulsedHWMMB = round3(r.HAProxyMB), round3(r.HAProxyHWMMB), round3(r.PulsedMB), round3(r.PulsedHWMMB)
	return r
}

func (b *soakBench) reloads(ctx context.Context) (int, error) {
	var h struct {
		Status  string `json:"status"`
		Reloads *int   `json:"reloads"`
	}
	if err := b.getJSON(ctx, "http://"+b.apiAddr+"/healthz", false, &h); err != nil {
		return 0, err
	}
	if h.Reloads == nil {
		return 0, fmt.Errorf("healthz: status %q, no reload count", h.Status)
	}
	return *h.Reloads, nil
}

func (b *soakBench) getJSON(ctx context.Context, url string, auth bool, into any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
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

func (b *soakBench) catalogFunction(ctx context.Context) (contract.CatalogFunction, error) {
	var cat contract.Catalog
	if err := b.getJSON(ctx, "http://"+b.apiAddr+contract.CatalogPath, false, &cat); err != nil {
		return contract.CatalogFunction{}, err
	}
	for _, f := range cat.Functions {
		if f.Name == b.name {
			return f, nil
		}
	}
	return contract.CatalogFunction{}, fmt.Errorf("%s is not in pulsed's catalog", b.name)
}

// --- the analysis ---

// analyze turns the records and the pollers' samples into the report.
func (b *soakBench) analyze(ctx context.Context, recs []soakReq, fails []soakFail) {
	rep := b.rep
	logs := b.hlog.close(soakLogLinger)
	b.mu.Lock()
	tl := slices.Clone(b.samples)
	host := slices.Clone(b.host)
	kill := rep.Summary.kill
	stats := b.stats
	statErrs, lastErr := b.statErrs, b.lastErr
	b.mu.Unlock()

	failures, excused := attributeFailures(fails, b.t0, logs.Notable, stats.errs, stats.polls, tl, kill)
	for i := range failures {
		if failures[i].Direct {
			if p := phaseAt(rep.Phases, failures[i].StartS); p != nil {
				failures[i].Addr, failures[i].Task = p.Addr, p.Task
			}
		}
	}
	n := int(rep.Config.DurationS)
	secs := soakSeconds(recs, excused, rep.Phases, n)
	fillSeconds(secs, b.t0, tl, host, rep.Machine.ClockTicks)
	rep.Seconds = secs
	rep.Minutes = soakMinutes(recs, excused, rep.Phases, secs, rep.Events)
	rep.Failures = failures
	rep.Servers = soakServers(stats, logs.ByServer, tl.holdings(b.t0))
	for _, e := range logs.Events {
		rep.HAProxyEvents = append(rep.HAProxyEvents, soakLogEvent{AtS: round3(e.At.Sub(b.t0).Seconds()), Line: e.Line})
	}

	s := summarizeSoak(recs, failures)
	old := rep.Summary
	s.RSS, s.DroppedLogs, s.Reloads, s.UpdateS, s.UpdateState, s.kill = old.RSS, old.DroppedLogs, old.Reloads, old.UpdateS, old.UpdateState, old.kill
	s.KillCallS, s.KillEndS = old.KillCallS, old.KillEndS
	s.CPU = old.CPU
	s.Log = logs
	s.StatResets = stats.resets
	for _, sv := range rep.Servers {
		if sv.Sessions >= 1000 {
			s.ServersOver1000++
			if s.WorstConnect == nil || sv.ConnectPct > s.WorstConnect.ConnectPct {
				w := sv
				w.Held = nil
				s.WorstConnect = &w
			}
		}
	}
	for _, sec := range secs {
		if sec.TimeWait > s.TimeWaitPeak {
			s.TimeWaitPeak, s.TimeWaitPeakAt = sec.TimeWait, float64(sec.T)
		}
	}
	for _, smp := range tl {
		s.MaxReplicas = max(s.MaxReplicas, len(smp.Replicas))
		s.MaxDesired = max(s.MaxDesired, smp.Desired)
	}
	var evs contract.ScaleEvents
	if err := b.getJSON(ctx, "http://"+b.apiAddr+contract.EventsPath, true, &evs); err == nil {
		for _, e := range evs.Events {
			if e.Function == b.name && e.Time.After(b.t0) {
				s.ScaleEvents++
			}
		}
	}
	// The CPU comparison's requests and replicas.
	c := &s.CPU
	for _, ph := range rep.Phases {
		switch ph.Name {
		case soakPhaseGwCPU:
			c.GatewayRequests = okIn(recs, ph.StartS, ph.EndS, false)
			lo, hi := 1<<30, 0
			for _, sec := range secs {
				if float64(sec.T) >= ph.StartS && float64(sec.T) < ph.EndS {
					lo, hi = min(lo, sec.Replicas), max(hi, sec.Replicas)
				}
			}
			c.GatewayReplicas = strconv.Itoa(hi)
			if lo != hi && lo != 1<<30 {
				c.GatewayReplicas = fmt.Sprintf("%d–%d", lo, hi)
			}
		case soakPhaseDirect:
			c.DirectRequests = okIn(recs, ph.StartS, ph.EndS, true)
		}
	}
	c.GatewayUS = cpuPerRequest(c.GatewayTicks, rep.Machine.ClockTicks, c.GatewayRequests)
	c.DirectUS = cpuPerRequest(c.DirectTicks, rep.Machine.ClockTicks, c.DirectRequests)
	c.Groups = cpuGroups(*c, rep.Machine.ClockTicks)
	if c.DirectUS > 0 {
		c.Ratio = round3(c.GatewayUS / c.DirectUS)
	}
	rep.Summary = s
	rep.Goals = soakGoals(s, rep.Servers)
	rep.Notes = append(rep.Notes, soakNotes(*rep)...)
	if statErrs > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d `show stat` polls failed (last: %v)", statErrs, lastErr))
	}
}

// fillSeconds adds the pollers' samples to the seconds: the catalog's
// replicas (the last sample in or before each second), TIME_WAIT and the
// host's busy CPU.
func fillSeconds(secs []soakSecond, t0 time.Time, tl soakTimeline, host []soakHostSample, clk float64) {
	j := -1
	for i := range secs {
		end := t0.Add(time.Duration(i+1) * time.Second)
		for j+1 < len(tl) && tl[j+1].At.Before(end) {
			j++
		}
		if j >= 0 {
			smp := tl[j]
			secs[i].Desired = smp.Desired
			for _, r := range smp.Replicas {
				switch {
				case r.Draining:
					secs[i].Draining++
				default:
					secs[i].Replicas++
				}
				if r.Routed {
					secs[i].Routed++
				}
			}
		}
	}
	k := 0
	for i := range secs {
		end := t0.Add(time.Duration(i+1) * time.Second)
		for k+1 < len(host) && host[k+1].At.Before(end) {
			k++
		}
		if k < len(host) && host[k].At.Before(end) {
			secs[i].TimeWait = host[k].TimeWait
			if k > 0 {
				d := host[k].CPU.Total - host[k-1].CPU.Total
				if d > 0 {
					secs[i].BusyPct = round3(100 * float64(host[k].CPU.Busy-host[k-1].CPU.Busy) / float64(d))
				}
			}
		}
	}
}

// soakNotes are observations worth reading with the numbers.
func soakNotes(r soakReport) []string {
	var notes []string
	s := r.Summary
	if s.kill == nil {
		notes = append(notes, "no replica was killed (see the events)")
	}
	if n := killNote(r.Failures, s); n != "" {
		notes = append(notes, n)
	}
	if s.Log.Requests < s.GatewayRequests {
		notes = append(notes, fmt.Sprintf("HAProxy's log has %d request lines for %d requests through the gateway: %d fewer (HAProxy's DroppedLogs: %d; "+
			"HAProxy writes no line for a keep-alive request it aborts for the client to retry); such failures are put down to a server by its error counters",
			s.Log.Requests, s.GatewayRequests, s.GatewayRequests-s.Log.Requests, s.DroppedLogs))
	}
	if s.Reloads > 0 {
		notes = append(notes, fmt.Sprintf("pulsed reloaded HAProxy %d time(s) during the load (a backend's slots grew, or a function came or went); "+
			"the per-server counters were summed across the new workers", s.Reloads))
	}
	if s.DirectFailed > 0 {
		notes = append(notes, fmt.Sprintf("%d request(s) straight to the replica failed (not through the gateway, so not in its goal)", s.DirectFailed))
	}
	if s.CPU.StealTicks > 0 {
		notes = append(notes, fmt.Sprintf("the hypervisor stole %d ticks during the CPU windows (left out of busy CPU)", s.CPU.StealTicks))
	}
	if s.UpdateS == 0 {
		notes = append(notes, "the rolling update was not seen done: "+s.UpdateState)
	}
	notes = append(notes, "whole-host CPU through the gateway includes HAProxy's request log (one UDP datagram per request) and the harness parsing it: "+
		"the suite needs it for the attribution, a gateway without haproxy_log does not pay it")
	return notes
}

// keepLogs copies pulsed's log and the lab Netdata's error log out of the
// run's directory when a request failed, and notes where.
func (b *soakBench) keepLogs() {
	if b.rep.Summary.Failed == 0 {
		return
	}
	dir, err := os.MkdirTemp("", "pulse-bench-soak-"+b.run+"-logs-")
	if err != nil {
		return
	}
	if p, err := os.ReadFile(b.pulsedLog); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "pulsed.log"), p, 0o644)
	}
	if b.nd != nil {
		_ = os.WriteFile(filepath.Join(dir, "netdata-error.log"), []byte(b.nd.ErrorLog()), 0o644)
	}
	var lines []string
	for _, e := range b.rep.HAProxyEvents {
		lines = append(lines, fmt.Sprintf("%.3f %s", e.AtS, e.Line))
	}
	_ = os.WriteFile(filepath.Join(dir, "haproxy-events.log"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	b.rep.Notes = append(b.rep.Notes, "requests failed: pulsed's log, the lab Netdata's error log and HAProxy's non-request log lines are kept in "+dir)
}

// cleanup stops Netdata and pulsed, kills any HAProxy of the run, removes
// the function (service, containers, image) and the shared directory. It is
// safe to call twice; it returns what it found left over.
func (b *soakBench) cleanup() []string {
	var found []string
	if b.nd != nil {
		if err := b.nd.Stop(); err != nil {
			found = append(found, "lab netdata: "+err.Error())
		}
		b.nd = nil
	}
	if b.pulsed != nil {
		if _, err := b.pulsed.stop(soakStopGrace); err != nil {
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
	if b.hlog != nil {
		_ = b.hlog.conn.Close()
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
	remove := func(ctx context.Context, name string) error {
		ctx, cancel := context.WithTimeout(ctx, gwRemoveTimeout)
		defer cancel()
		if err := b.sw.Remove(ctx, name); err != nil && !errors.Is(err, function.ErrNotFound) {
			return err
		}
		return nil
	}
	if err := remove(ctx, b.name); err != nil {
		found = append(found, "remove "+b.name+": "+err.Error())
	}
	prefix := soakNamePrefix + b.run
	return engineSweep{
		api: b.api, log: b.log, call: gwCall, remove: remove,
		mine:       func(name string) bool { return strings.HasPrefix(name, prefix) },
		images:     filters.NewArgs(filters.Arg("label", gwRunLabel+"="+b.run)),
		serviceKey: gwLabelServiceName,
	}.run(ctx, found)
}
