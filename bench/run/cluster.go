package main

// The cluster suite: Pulse on the lab (cluster_lab.go: three nodes of
// docker-in-docker on this machine, a swarm with a 2 s heartbeat, node1 its
// manager), the control plane on this host as on a control node: pulsed
// drives node1's engine over SSH (docker_host ssh://) and its HAProxy
// reaches the replicas at the nodes' addresses. Stages, in this order:
//
//  1. idle (cluster_idle.go): the lab's cost with one function of 3
//     replicas deployed and pulsed running, over a minute.
//  2. push (cluster_push.go): a fresh 16 MB function image to one node and
//     to three in parallel through function.ClusterDistributor; one
//     function layer changed against a full image (cluster_layer.go: two
//     images sharing the watchdog's base layer, the second sent thin); and
//     where the time of three goes (CPU of this process and of each node
//     by process, SSH ciphers, docker load alone).
//  3. saturation (cluster_sat.go): one replica saturated through the
//     gateway with pulsed at its defaults, then with each faster health
//     check setting in turn until one keeps it in rotation.
//  4. failover (cluster_failover.go): a worker killed and a worker frozen
//     under load, with pulsed at its defaults and with the faster setting
//     the saturation found.
//
// The suite takes the machine's lab lock (/tmp/pulse-lab.lock) for its
// whole run and the live lock (/tmp/pulse-live.lock) while it measures; it
// stops pulsed, kills its HAProxy and removes the lab when it ends, fails
// or is interrupted.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

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
	clusterFnTimeout  = 3 * time.Second // the function's timeout: a request to a frozen node fails then (+ HAProxy's margin)
	clusterReplicas   = 3
	clusterLoadRate   = 100 // requests a second through the gateway during a failover trial
	clusterLoadMax    = 256 // requests in flight at most (a frozen node holds its share until the server timeout)
	clusterTrials     = 5   // failover trials per fault and setting; push trials per node count
	clusterDiagTrials = 3   // the push profile's other trials
	clusterPayload    = 16 << 20
	clusterIdleLen    = time.Minute
	clusterSatLength  = time.Minute
	clusterRoute      = 90 * time.Second
	clusterStopGrace  = 20 * time.Second
	clusterLabLock    = "/tmp/pulse-lab.lock"
	clusterLiveLock   = "/tmp/pulse-live.lock"
	clusterLockWait   = 30 * time.Minute
)

// clusterStages are the suite's stages (-only).
var clusterStages = []string{"idle", "push", "saturation", "failover"}

// pulsedSetting is a configuration of pulsed the suite measures: its
// defaults, or health checks changed through PULSE_* variables.
type pulsedSetting struct {
	Name string   `json:"name"`
	Env  []string `json:"env,omitempty"`
}

var clusterDefaults = pulsedSetting{Name: "defaults"}

// clusterFastCandidates are the faster health-check settings tried, fastest
// first: a frozen node's servers go down after fall (3) checks, each taking
// check_timeout, check_interval apart (about 3 × timeout + 2 × interval,
// plus up to one interval before the first: 2.5–3 s, 3.5–3.75 s and
// 4–4.5 s; pulsed's defaults, 11–12 s, are overtaken by Swarm marking the
// node down). The first that keeps a saturated replica in rotation is the
// failover's second row.
var clusterFastCandidates = []pulsedSetting{
	{Name: "check_interval 500ms, check_timeout 500ms", Env: []string{"PULSE_CHECK_INTERVAL=500ms", "PULSE_CHECK_TIMEOUT=500ms"}},
	{Name: "check_interval 250ms, check_timeout 1s", Env: []string{"PULSE_CHECK_INTERVAL=250ms", "PULSE_CHECK_TIMEOUT=1s"}},
	{Name: "check_interval 500ms, check_timeout 1s", Env: []string{"PULSE_CHECK_INTERVAL=500ms", "PULSE_CHECK_TIMEOUT=1s"}},
}

// clusterBench runs the cluster suite.
type clusterBench struct {
	pulseLab
	cfg    config
	lab    *clusterLab
	rep    *clusterReport
	stages []string
	host   string // the 3-replica function: answers "<its host name>:<body>"
	burn   string // the saturation's function
	wd     []byte // the fork-mode watchdog
	hostFn []byte
	burnFn []byte
	// setting is the running pulsed's.
	setting pulsedSetting

	trials, diagTrials   int
	idleWindow, satWin   time.Duration
	unlockLab, unlockRun func()
}

// runCluster runs the cluster suite.
func runCluster(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	stages := clusterStages // config.Validate checked -only's
	if len(cfg.Only) > 0 {
		stages = cfg.Only
	}
	haproxy := env.tools.haproxy // findTools found it
	id, err := runID()
	if err != nil {
		return err
	}
	b := &clusterBench{
		pulseLab: newPulseLab(log, env, id, clusterPrefix, haproxy, clusterRoute, clusterStopGrace),
		cfg:      cfg, stages: stages,
		host: clusterPrefix + id + "-host", burn: clusterPrefix + id + "-burn",
		trials: clusterTrials, diagTrials: clusterDiagTrials, idleWindow: clusterIdleLen, satWin: clusterSatLength,
	}
	if cfg.Quick {
		b.trials, b.diagTrials, b.idleWindow, b.satWin = 1, 1, 10*time.Second, 15*time.Second
	}
	b.lab = newClusterLab(env.root, filepath.Join(env.tmp, "lab"), clusterNodes)
	b.rep = newClusterReport(env, b)
	b.rep.Machine = collectMachine(ctx, env.tools, env.clk)
	b.rep.HAProxy, _ = haproxyVersion(ctx, haproxy)
	if env.clkNote != "" {
		b.rep.Notes = append(b.rep.Notes, env.clkNote)
	}
	defer func() { b.rep.Cleanup = append(b.rep.Cleanup, b.teardown()...) }()
	if err := b.setup(ctx); err != nil {
		return err
	}
	b.unlockRun, err = flockWait(ctx, log, clusterLiveLock, "live measurements", clusterLockWait)
	if err != nil {
		return err
	}
	notes := &b.rep.Notes
	for _, st := range []struct {
		name string
		f    func(context.Context) error
	}{{"idle", b.idle}, {"push", b.push}, {"saturation", b.saturation}, {"failover", b.failover}} {
		if err := runStage(ctx, log, stages, st.name, notes, st.f, nil); err != nil {
			return err
		}
	}
	b.rep.Cleanup = append(b.rep.Cleanup, b.teardown()...)
	b.rep.Finished = time.Now().UTC().Format(time.RFC3339)
	b.rep.finish()
	return publish(cfg, stdout, env.started, b.rep, renderCluster(*b.rep, false, ""), func(rel string) string { return renderCluster(*b.rep, true, rel) })
}

// setup builds the programs, takes the lab lock, starts the lab and its
// swarm, makes the run's credential, deploys the 3-replica function and
// starts pulsed at its defaults.
func (b *clusterBench) setup(ctx context.Context) error {
	t, dir := b.env.tools, b.env.tmp
	arts, recs, err := buildAll(ctx, b.log, b.env.root, []buildStep{
		pulsedStep(t, dir),
		goStep(t, dir, "watchdog", "./cmd/pulse-watchdog", forkTags),
		cStep(t, dir, "hostecho", hostEchoC),
		cStep(t, dir, "burnecho", burnEchoC),
	})
	b.arts = arts
	b.rep.Artifacts = recs
	if err != nil {
		return err
	}
	for _, f := range []struct {
		dst  *[]byte
		name string
	}{{&b.wd, "watchdog"}, {&b.hostFn, "hostecho"}, {&b.burnFn, "burnecho"}} {
		if *f.dst, err = os.ReadFile(arts.path(f.name)); err != nil {
			return err
		}
	}
	if b.unlockLab, err = flockWait(ctx, b.log, clusterLabLock, "the lab", clusterLockWait); err != nil {
		return err
	}
	start := time.Now()
	if err := b.lab.up(ctx); err != nil {
		return err
	}
	if err := b.lab.swarmUp(ctx, b.log); err != nil {
		return err
	}
	b.rep.Config.LabUpS = secondsSince(start)
	b.rep.Nodes = b.lab.nodes
	b.log.Info("lab up", "nodes", len(b.lab.nodes), "took", time.Since(start).Round(time.Millisecond))
	cctx, cancel := call(ctx)
	if v, err := b.lab.mgr.ServerVersion(cctx); err == nil {
		b.rep.LabEngine = "Docker Engine " + v.Version + " (API " + v.APIVersion + ")"
	}
	if v, err := b.lab.host.ServerVersion(cctx); err == nil {
		b.rep.Engine = "Docker Engine " + v.Version + " (API " + v.APIVersion + ")"
	}
	cancel()
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
	return b.startPulsed(ctx, clusterDefaults)
}

// hostEchoC is the 3-replica function's handler: it answers
// "<host name>:<body>", and a replica's host name is its task's name
// (name.slot.taskid), so each answer says which replica gave it.
const hostEchoC = `#include <stdio.h>
#include <unistd.h>
int main(void){char h[256]={0};char b[4096];ssize_t n;gethostname(h,sizeof h-1);printf("%s:",h);fflush(stdout);
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`

// deploy deploys a fork-mode function of the run (fn as its handler) with
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

// startPulsed starts a new lifetime of pulsed with s: a fresh state
// directory and loopback ports, the autoscaler off (the suite measures
// routing and failover), docker_host node1's engine over SSH with the lab's
// key and known hosts, every other setting at its default but the run's
// instance and selector; and waits until it routes the 3-replica function.
func (b *clusterBench) startPulsed(ctx context.Context, s pulsedSetting) error {
	b.rep.Cleanup = append(b.rep.Cleanup, b.stopPulsed()...)
	n := len(b.pulsedLogs) + 1
	b.stateDir = filepath.Join(b.env.tmp, fmt.Sprintf("state-%d", n))
	if err := os.Mkdir(b.stateDir, 0o750); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	for _, a := range []*string{&b.apiAddr, &b.gwAddr, &b.adminAddr, &b.coldAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	cfgFile := filepath.Join(b.env.tmp, "pulsed.yaml")
	if err := os.WriteFile(cfgFile, []byte("# pulse bench: every setting comes from PULSE_* variables\n"), 0o644); err != nil {
		return fmt.Errorf("pulsed config: %w", err)
	}
	env := append(append(baseEnv(),
		"SSH_AUTH_SOCK=", // the lab's key only
		"PULSE_STATE_DIR="+b.stateDir, "PULSE_API_LISTEN="+b.apiAddr, "PULSE_GATEWAY_LISTEN="+b.gwAddr,
		"PULSE_ADMIN_LISTEN="+b.adminAddr, "PULSE_COLDSTART_LISTEN="+b.coldAddr, "PULSE_LEAVE_RUNNING=false",
		"PULSE_HAPROXY="+b.haproxy, "PULSE_AUTOSCALE=false",
		"PULSE_INSTANCE="+benchInstance(b.run), "PULSE_SELECTOR="+runLabel+"="+b.run,
		"PULSE_DOCKER_HOST=ssh://root@"+b.lab.nodes[0].Addr,
		"PULSE_SSH_KNOWN_HOSTS="+b.lab.knownHosts, "PULSE_SSH_IDENTITY_FILES="+b.lab.keyFile,
		b.cred.pulsedEnv(),
	), s.Env...)
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
	if err := b.waitServers(ctx, b.host, clusterReplicas, true); err != nil {
		return err
	}
	b.log.Info("pulsed routing", "setting", s.Name, "lifetime", n)
	return nil
}

// teardown stops pulsed and kills any HAProxy of the run, removes the
// credential file, releases the live lock, removes the lab (its secret,
// services and images go with it) and releases the lab lock. It is safe
// to call twice; it returns what went wrong or was left over.
func (b *clusterBench) teardown() []string {
	found := b.stopPulsed()
	if pids := killHAProxies(b.env.tmp); len(pids) > 0 {
		found = append(found, fmt.Sprintf("haproxy processes %v: killed", pids))
	}
	if b.cred != nil {
		b.cred.remove(nil) // the file; the secret goes with the lab
		b.cred = nil
	}
	if b.unlockRun != nil {
		b.unlockRun()
		b.unlockRun = nil
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

// pulsedRSS is the resident memory of pulsed and of its HAProxy (master and
// workers), in MB.
func (b *clusterBench) pulsedRSS() (pulsed, haproxy float64) {
	if b.pulsed != nil {
		if m, err := readStatus("/proc", b.pulsed.pid()); err == nil {
			pulsed = kbToMB(m.RSSKB)
		}
	}
	var kb int64
	if ps, err := findHAProxies("/proc", b.stateDir); err == nil {
		for _, p := range ps {
			if m, err := readStatus("/proc", p.PID); err == nil {
				kb += m.RSSKB
			}
		}
	}
	return pulsed, kbToMB(kb)
}
