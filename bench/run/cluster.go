package main

// The cluster suite (bench/README.md): Pulse on the lab (cluster_lab.go),
// pulsed on this host driving node1's engine over SSH.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
)

const suiteCluster = "cluster"

// Settings of the cluster suite.
const (
	clusterPrefix     = "pbench-cl-"
	clusterNodes      = 3
	clusterHeartbeat  = 2 * time.Second
	clusterFnTimeout  = 3 * time.Second // a request to a frozen node fails then (+ HAProxy's margin)
	clusterReplicas   = 3
	clusterLoadRate   = 100 // failover: requests a second through the gateway
	clusterLoadMax    = 256 // failover: requests in flight at most
	clusterTrials     = 5   // failover trials per fault and setting; push trials per node count
	clusterDiagTrials = 3   // the push profile's other trials
	clusterPayload    = 16 << 20
	clusterRoute      = 90 * time.Second
	clusterLockWait   = 30 * time.Minute
)

// clusterStages are the suite's stages (-only).
var clusterStages = []string{"idle", "push", "saturation", "failover"}

// pulsedSetting is a configuration of pulsed: its defaults, or health
// checks changed through PULSE_* variables.
type pulsedSetting struct {
	Name string   `json:"name"`
	Env  []string `json:"env,omitempty"`
}

var clusterDefaults = pulsedSetting{Name: "defaults"}

// clusterFastCandidates are the faster health-check settings the saturation
// tries, fastest first.
var clusterFastCandidates = []pulsedSetting{
	{Name: "check_interval 500ms, check_timeout 500ms", Env: []string{"PULSE_CHECK_INTERVAL=500ms", "PULSE_CHECK_TIMEOUT=500ms"}},
	{Name: "check_interval 250ms, check_timeout 1s", Env: []string{"PULSE_CHECK_INTERVAL=250ms", "PULSE_CHECK_TIMEOUT=1s"}},
	{Name: "check_interval 500ms, check_timeout 1s", Env: []string{"PULSE_CHECK_INTERVAL=500ms", "PULSE_CHECK_TIMEOUT=1s"}},
}

// clusterBench runs the cluster suite.
type clusterBench struct {
	pulseLab
	cfg                config
	lab                *clusterLab
	rep                *report.Report
	host, burn         string // the 3-replica function ("<host name>:<body>") and the saturation's
	wd, hostFn, burnFn []byte // the fork-mode watchdog and the two handlers
	setting            pulsedSetting
	plan               clusterPlan
	unlockLab, unlock  func()
}

// runCluster runs the cluster suite.
func runCluster(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := clusterStages // config.Validate checked -only's
	if len(cfg.Only) > 0 {
		stages = cfg.Only
	}
	id, err := runID()
	if err != nil {
		return err
	}
	b := &clusterBench{
		pulseLab: newPulseLab(log, env, id, clusterPrefix, env.tools.haproxy, clusterRoute, 20*time.Second),
		cfg:      cfg, host: clusterPrefix + id + "-host", burn: clusterPrefix + id + "-burn",
		lab:  newClusterLab(env.root, filepath.Join(env.tmp, "lab"), clusterNodes),
		plan: clusterPlan{Trials: clusterTrials, DiagTrials: clusterDiagTrials, IdleS: 60, SatS: 60},
		rep:  report.New(cfg.Suite, env.started),
	}
	if cfg.Quick {
		b.plan = clusterPlan{Trials: 1, DiagTrials: 1, IdleS: 10, SatS: 15}
	}
	m := collectMachine(ctx, env.tools, env.clk)
	b.rep.Machine = m
	haproxy, _ := haproxyVersion(ctx, env.tools.haproxy)
	if env.clkNote != "" {
		b.rep.Note("%s", env.clkNote)
	}
	defer func() { b.rep.Cleanup = append(b.rep.Cleanup, b.teardown()...) }()
	if err := b.setup(ctx); err != nil {
		return err
	}
	d := gateway.DefaultRenderConfig()
	b.rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s; lab: %d nodes (%v), swarm heartbeat %.0f s; this host's %v; %s; "+
		"pulsed on this host with docker_host ssh://root@%s, health checks every %s, timeout %s, fall %d unless the setting says otherwise",
		m.CPUs, m.CPUModel, m.Kernel, m.Go, clusterNodes, b.rep.Records["lab_engine"], clusterHeartbeat.Seconds(), b.rep.Records["engine"], haproxy,
		b.lab.nodes[0].Addr, d.CheckInterval, d.CheckTimeout, d.CheckFall)
	b.rep.Record("fast_candidates", clusterFastCandidates)
	if b.unlock, err = flockWait(ctx, log, "/tmp/pulse-live.lock", "live measurements", clusterLockWait); err != nil {
		return err
	}
	for _, st := range []struct {
		name string
		f    func(context.Context) error
	}{{"idle", b.idle}, {"push", b.push}, {"saturation", b.saturation}, {"failover", b.failover}} {
		if err := runStage(ctx, log, stages, st.name, &b.rep.Notes, st.f, nil); err != nil {
			return err
		}
	}
	b.rep.Cleanup = append(b.rep.Cleanup, b.teardown()...)
	if len(b.rep.Cleanup) > 0 {
		b.rep.Note("clean-up: %s", strings.Join(b.rep.Cleanup, "; "))
	}
	b.rep.Record("plan", b.plan)
	clusterSummary(b.rep, b.plan)
	b.rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, b.rep)
}

// setup builds, takes the lab lock, starts the lab, deploys the 3-replica
// function (one per node) and starts pulsed at its defaults.
func (b *clusterBench) setup(ctx context.Context) error {
	t, dir := b.env.tools, b.env.tmp
	arts, recs, err := buildAll(ctx, b.log, b.env.root, []buildStep{pulsedStep(t, dir),
		goStep(t, dir, "watchdog", "./cmd/pulse-watchdog", forkTags), cStep(t, dir, "hostecho", hostEchoC), cStep(t, dir, "burnecho", burnEchoC)})
	b.arts = arts
	b.rep.Record("artifacts", recs)
	if err != nil {
		return err
	}
	for dst, name := range map[*[]byte]string{&b.wd: "watchdog", &b.hostFn: "hostecho", &b.burnFn: "burnecho"} {
		if *dst, err = os.ReadFile(arts.path(name)); err != nil {
			return err
		}
	}
	if b.unlockLab, err = flockWait(ctx, b.log, "/tmp/pulse-lab.lock", "the lab", clusterLockWait); err != nil {
		return err
	}
	start := time.Now()
	if err := b.lab.up(ctx, b.log); err != nil {
		return err
	}
	b.rep.Record("lab_up_s", report.Round3(time.Since(start).Seconds()))
	b.rep.Record("nodes", b.lab.nodes)
	for name, api := range map[string]*client.Client{"lab_engine": b.lab.mgr, "engine": b.lab.host} {
		cctx, cancel := call(ctx)
		if v, err := api.ServerVersion(cctx); err == nil {
			b.rep.Record(name, "Docker Engine "+v.Version+" (API "+v.APIVersion+")")
		}
		cancel()
	}
	b.api = b.lab.mgr
	b.sw = function.NewSwarm(b.lab.mgr, function.ClusterDistributor{Nodes: labEngines{lab: b.lab, dial: b.lab.provisionDial}}, nil)
	if b.cred, err = newRunCredential(ctx, b.lab.mgr, benchInstance(b.run), b.env.tmp); err != nil {
		return err
	}
	if err := b.deploy(ctx, b.host, b.hostFn, clusterReplicas, nil); err != nil {
		return err
	}
	if err := b.rebalance(ctx); err != nil {
		return err
	}
	return b.usePulsed(ctx, clusterDefaults)
}

// hostEchoC answers "<host name>:<body>": the task's name, so each answer
// names its replica.
const hostEchoC = `#include <stdio.h>
#include <unistd.h>
int main(void){char h[256]={0};char b[4096];ssize_t n;gethostname(h,sizeof h-1);printf("%s:",h);fflush(stdout);
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`

// deploy deploys a fork-mode function of the run (fn its handler) with
// replicas replicas (scale min = max) and waits until Swarm runs them.
func (b *clusterBench) deploy(ctx context.Context, name string, fn []byte, replicas int, env map[string]string) error {
	spec := function.Spec{Name: name, Lang: function.LangBin, Mode: contract.ModeFork, Handler: "fn",
		Timeout: clusterFnTimeout, MaxBody: 1 << 20, Env: env,
		Scale: function.Scale{Metric: "inflight", Target: 10, Min: replicas, Max: replicas + 1}}
	if _, _, err := b.deployFunction(ctx, &spec, b.wd, fn, 2*time.Second); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, clusterRoute)
	defer cancel()
	_, err := b.sw.WaitReady(wctx, name, replicas)
	return err
}

// usePulsed starts pulsed with s (its defaults but s, the autoscaler off and
// docker_host node1 over SSH) unless it runs so, and waits for its routes.
func (b *clusterBench) usePulsed(ctx context.Context, s pulsedSetting) error {
	if b.pulsed != nil && b.setting.Name == s.Name {
		return nil
	}
	b.rep.Cleanup = append(b.rep.Cleanup, b.stopPulsed()...)
	n := len(b.pulsedLogs) + 1
	b.stateDir = filepath.Join(b.env.tmp, fmt.Sprintf("state-%d", n))
	cfgFile := filepath.Join(b.env.tmp, "pulsed.yaml")
	if err := os.Mkdir(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := os.WriteFile(cfgFile, []byte("# pulse bench: every setting comes from PULSE_* variables\n"), 0o644); err != nil {
		return fmt.Errorf("pulsed config: %w", err)
	}
	for _, a := range []*string{&b.apiAddr, &b.gwAddr, &b.adminAddr, &b.coldAddr} {
		var err error
		if *a, err = freeAddr(); err != nil {
			return err
		}
	}
	env := append(append(baseEnv(), "SSH_AUTH_SOCK=", // the lab's key only
		"PULSE_STATE_DIR="+b.stateDir, "PULSE_API_LISTEN="+b.apiAddr, "PULSE_GATEWAY_LISTEN="+b.gwAddr,
		"PULSE_ADMIN_LISTEN="+b.adminAddr, "PULSE_COLDSTART_LISTEN="+b.coldAddr, "PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.haproxy, "PULSE_AUTOSCALE=false", "PULSE_INSTANCE="+benchInstance(b.run), "PULSE_SELECTOR="+runLabel+"="+b.run,
		"PULSE_DOCKER_HOST=ssh://root@"+b.lab.nodes[0].Addr, "PULSE_SSH_KNOWN_HOSTS="+b.lab.knownHosts, "PULSE_SSH_IDENTITY_FILES="+b.lab.keyFile,
		b.cred.pulsedEnv()), s.Env...)
	b.pulsedLog = filepath.Join(b.env.tmp, fmt.Sprintf("pulsed-%d.log", n))
	b.pulsedLogs = append(b.pulsedLogs, b.pulsedLog)
	var err error
	if b.pulsed, err = startServer(launchSpec{Bin: b.arts.path("pulsed"), Args: []string{"-config", cfgFile}, Env: env, Addr: b.apiAddr}, b.pulsedLog); err != nil {
		return err
	}
	b.setting = s
	b.rt = gateway.NewRuntime(filepath.Join(b.stateDir, "haproxy.sock"), time.Second)
	if err := waitReady(ctx, b.pulsed, "http://"+b.apiAddr+"/healthz", clusterRoute, nil); err != nil {
		return err
	}
	b.log.Info("pulsed routing", "setting", s.Name, "lifetime", n)
	return b.waitServers(ctx, b.host, clusterReplicas, true)
}

// teardown stops pulsed and HAProxy, removes the lab and releases the
// locks; it is safe twice and returns what went wrong.
func (b *clusterBench) teardown() []string {
	found := b.stopPulsed()
	if pids := killHAProxies(b.env.tmp); len(pids) > 0 {
		found = append(found, fmt.Sprintf("haproxy processes %v: killed", pids))
	}
	if b.cred != nil {
		b.cred.remove(nil) // the file; the secret goes with the lab
		b.cred = nil
	}
	if b.unlock != nil {
		b.unlock()
		b.unlock = nil
	}
	if b.unlockLab != nil {
		if err := b.lab.down(); err != nil {
			found = append(found, err.Error())
		}
		b.unlockLab()
		b.unlockLab = nil
	}
	return found
}
