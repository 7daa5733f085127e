package main

// The cluster suite (bench/README.md): Pulse on the lab (cluster_lab.go),
// pulsed on this host driving node1's engine over SSH; its report.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
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
	clusterPrefix    = "pbench-cl-"
	clusterNodes     = 3
	clusterHeartbeat = 2 * time.Second
	clusterFnTimeout = 3 * time.Second // a request to a frozen node fails then (+ HAProxy's margin)
	clusterReplicas  = 3
	clusterLoadRate  = 100 // failover: requests a second through the gateway
	clusterLoadMax   = 256 // failover: requests in flight at most
	clusterTrials    = 5   // failover trials per fault and setting; push trials per node count
	clusterPayload   = 16 << 20
	clusterRoute     = 90 * time.Second
	clusterLockWait  = 30 * time.Minute
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
	stages := cfg.stages(clusterStages)
	id, err := runID()
	if err != nil {
		return err
	}
	b := &clusterBench{
		pulseLab: newPulseLab(log, env, id, clusterPrefix, env.tools.haproxy, clusterRoute, 20*time.Second),
		cfg:      cfg, host: clusterPrefix + id + "-host", burn: clusterPrefix + id + "-burn",
		lab:  newClusterLab(env.root, filepath.Join(env.tmp, "lab"), clusterNodes),
		plan: clusterPlan{Trials: clusterTrials, IdleS: 60, SatS: 60},
		rep:  report.New(cfg.Suite, env.started),
	}
	if cfg.Quick {
		b.plan = clusterPlan{Trials: 1, IdleS: 10, SatS: 15}
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

// setup builds, starts the lab (its lock held), deploys the 3-replica function and pulsed.
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
		if *dst, err = arts.read(name); err != nil {
			return err
		}
	}
	if b.unlockLab, err = flockWait(ctx, b.log, "/tmp/pulse-lab.lock", "the lab", clusterLockWait); err != nil {
		return err
	}
	if err := b.lab.up(ctx, b.log); err != nil {
		return err
	}
	b.rep.Record("nodes", b.lab.nodes)
	for name, api := range map[string]*client.Client{"lab_engine": b.lab.mgr, "engine": b.lab.host} {
		cctx, cancel := call(ctx)
		if v, err := api.ServerVersion(cctx); err == nil {
			b.rep.Record(name, "Docker Engine "+v.Version+" (API "+v.APIVersion+")")
		}
		cancel()
	}
	b.api = b.lab.mgr
	b.sw = function.NewSwarm(b.lab.mgr, function.ClusterDistributor{Nodes: labEngines{lab: b.lab}}, nil)
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

// hostEchoC answers "<host name>:<body>", so each answer names its replica.
const hostEchoC = `#include <stdio.h>
#include <unistd.h>
int main(void){char h[256]={0};char b[4096];ssize_t n;gethostname(h,sizeof h-1);printf("%s:",h);fflush(stdout);
while((n=read(0,b,sizeof b))>0)if(write(1,b,n)!=n)return 1;return 0;}
`

// deploy deploys a fork-mode function (handler fn) with replicas replicas and waits for them.
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

// usePulsed starts pulsed with s (docker_host node1 over SSH) unless it runs so, until it routes.
func (b *clusterBench) usePulsed(ctx context.Context, s pulsedSetting) error {
	if b.pulsed != nil && b.setting.Name == s.Name {
		return nil
	}
	b.rep.Cleanup = append(b.rep.Cleanup, b.stopPulsed()...)
	cold, err := freeAddr()
	if err != nil {
		return err
	}
	b.coldAddr = cold
	err = b.launchPulsed(ctx, "", append([]string{"SSH_AUTH_SOCK=", // the lab's key only
		"PULSE_COLDSTART_LISTEN=" + b.coldAddr, "PULSE_SELECTOR=" + runLabel + "=" + b.run, "PULSE_DOCKER_HOST=ssh://root@" + b.lab.nodes[0].Addr,
		"PULSE_SSH_KNOWN_HOSTS=" + b.lab.knownHosts, "PULSE_SSH_IDENTITY_FILES=" + b.lab.keyFile}, s.Env...)...)
	if err != nil {
		return err
	}
	b.setting = s
	b.log.Info("pulsed routing", "setting", s.Name, "lifetime", len(b.pulsedLogs))
	return b.waitServers(ctx, b.host, clusterReplicas, true)
}

// teardown stops pulsed and HAProxy, removes the lab and releases the locks (safe twice).
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

// clusterPlan is the trials, the windows and the faster setting the saturation kept.
type clusterPlan struct {
	Trials int     `json:"trials"`
	IdleS  float64 `json:"idle_window_s"`
	SatS   float64 `json:"saturation_window_s"`
	Fast   string  `json:"fast_setting,omitempty"`
}

// where is the groups whose label k is v.
func where(groups []report.Group, k, v string) []report.Group {
	return slices.DeleteFunc(slices.Clone(groups), func(g report.Group) bool { return g.Label(k) != v })
}

// clusterSummary sums rep's rows up by stage.
func clusterSummary(rep *report.Report, plan clusterPlan) {
	fo := report.Summarize(rep.Rows, "failover", "pulsed", "fault")
	sat := report.Summarize(rep.Rows, "saturation", "pulsed")
	push := report.Summarize(rep.Rows, "push", "nodes")
	layer := report.Summarize(rep.Rows, "layer", "variant", "nodes")
	idle := report.Summarize(rep.Rows, "idle", "what")
	rep.Summary = slices.Concat(fo, sat, push, layer, idle)

	n0 := func(head, m string) report.Col { return report.Stat(head, m, "%.0f") }
	cell := func(head string, f func(g report.Group) string) report.Col { return report.Col{Head: head, Cell: f} }
	satTable := report.GroupTable(fmt.Sprintf("Health under saturation (%d connections, %d ms of CPU per request, %.0f s per setting); "+
		"kept in rotation: no DOWN transition, failed check, detour or failed request:", satConns, satBurnMS, plan.SatS), sat, "pulsed", n0("requests", "requests"), n0("failed", "failed"),
		n0("DOWN transitions", "chkdown"), n0("failed checks", "chkfail"), n0("detours", "detours"),
		cell("kept in rotation", func(g report.Group) string { return map[bool]string{true: "yes", false: "no"}[g.M("kept") == 1] }))
	if i := slices.IndexFunc(clusterFastCandidates, func(s pulsedSetting) bool { return s.Name == plan.Fast }); i >= 0 {
		satTable.Note = fmt.Sprintf("The faster setting, the failover's second: %s (`%s`).", plan.Fast, strings.Join(clusterFastCandidates[i].Env, " "))
	}
	trials := cell("trials", func(g report.Group) string { return fmt.Sprintf("%d (%d failed)", len(g.Rows), g.Failed) })
	wall := cell("wall s", func(g report.Group) string {
		return report.Num("%.2f", g.M("wall_s")) + " (" + report.Spread("", "wall_s", "%.2f").Cell(g) + ")"
	})
	other := report.Stat("other processes CPU s", "other_cpu_s", "%.2f")
	rep.Tables = append(rep.Tables, satTable, report.GroupTable(fmt.Sprintf("Image push of a fresh image (%d MiB random payload) through ClusterDistributor; "+
		"medians (lowest–highest); other processes: the machine's busy CPU that is neither this process nor the nodes:", clusterPayload>>20), push, "nodes", trials, wall, other),
		report.GroupTable("One function layer changed: per trial fresh images A (full: a new base layer) then B (the same base, another function layer) "+
			"through ClusterDistributor; sent to a node: the most any node was sent in a trial:", layer, "variant", report.LabelCol("nodes", "nodes"), trials, wall,
			cell("sent to a node MB (most)", func(g report.Group) string { return report.Num("%.3f", g.Max["sent_max_bytes"]/mb) }),
			cell("full archive MB", func(g report.Group) string { return report.Num("%.3f", g.Max["full_bytes"]/mb) }),
			cell("thin loads", func(g report.Group) string {
				return fmt.Sprintf("%.0f of %.0f", sum(g.Rows, "thin_loads"), sum(g.Rows, "loads"))
			}), other))
	rep.Goals = clusterGoals(rep.Rows, fo, push, layer, idle, plan)
	for _, g := range rep.Summary {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
			parts = append(parts, k+" "+g.Labels[k])
		}
		for _, f := range g.Flags {
			rep.Note("%s: %s", strings.Join(parts, ", "), f)
		}
	}
}

// complete counts the group's trials that neither failed nor were flagged.
func complete(g report.Group) int {
	n := 0
	for _, r := range g.Rows {
		if r.OK() && len(r.Flags) == 0 {
			n++
		}
	}
	return n
}

// sum is metric's sum over rows, failed ones included.
func sum(rows []report.Row, metric string) float64 {
	s := 0.0
	for _, r := range rows {
		s += r.Values[metric]
	}
	return s
}

// clusterGoals are the goals: failover per setting and fault, push, layer change, idle.
func clusterGoals(rows []report.Row, fo, push, layer, idle []report.Group, plan clusterPlan) []report.Goal {
	var goals []report.Goal
	for _, s := range slices.DeleteFunc([]string{clusterDefaults.Name, plan.Fast}, func(s string) bool { return s == "" }) {
		sub := where(fo, "pulsed", s)
		for _, f := range []string{faultKill, faultPause} {
			what := fmt.Sprintf("docker %s of a worker, pulsed %s", f, s)
			g, _ := report.Find(sub, "fault", f)
			n, sec := len(g.Rows), func(m string) string { return report.Num("%.2f s", g.M(m)) }
			goals = append(goals, report.NewGoal(what+": error window by request start (start of the last failed request − fault)", "s", 3).
				Noted("median of %d (%d complete); %s failed requests (%s–%s; up to %s not sent, %d in flight); servers out of HAProxy +%s, node Down +%s; range %s–%s",
					n, complete(g), report.Num("%.0f", g.M("failed")), report.Num("%.0f", g.Min["failed"]), report.Num("%.0f", g.Max["failed"]),
					report.Num("%.0f", g.Max["skipped"]), clusterLoadMax, sec("left_haproxy_s"), sec("node_down_s"),
					report.Num("%.2f s", g.Min["error_window_s"]), report.Num("%.2f s", g.Max["error_window_s"])).Over(sub, "fault", f, "error_window_s"),
				report.NewGoal(what+": every replica answering again through the gateway (3 routed, none on the node)", "s", 8).
					Noted("median of %d; range %s–%s; 3 routed +%s", n, report.Num("%.2f s", g.Min["restored_s"]), report.Num("%.2f s", g.Max["restored_s"]), sec("routed_s")).
					Over(sub, "fault", f, "restored_s"))
		}
	}
	one, _ := report.Find(push, "nodes", "1")
	all, _ := report.Find(push, "nodes", strconv.Itoa(clusterNodes))
	goals = append(goals, report.NewGoal(fmt.Sprintf("image push to %d nodes in parallel ≤ 1.3× one node (ClusterDistributor over provision SSH engines, %d MiB payload, median of %d)",
		clusterNodes, clusterPayload>>20, plan.Trials), "×", 1.3).Noted("%s vs %s", report.Num("%.2f s", all.M("wall_s")), report.Num("%.2f s", one.M("wall_s"))).
		Ratio(push, "nodes", strconv.Itoa(clusterNodes), "1", "wall_s"), layerGoal(rows))
	for _, n := range []string{strconv.Itoa(clusterNodes), "1"} {
		sub := where(layer, "nodes", n)
		a, _ := report.Find(sub, "variant", layerFull)
		b, _ := report.Find(sub, "variant", layerThin)
		goals = append(goals, asInfo(report.NewGoal(fmt.Sprintf("one function layer changed, to %s node(s): wall time of B (thin) ÷ A (full), medians of %d", n, plan.Trials), "×", 0).
			AsInfo().Noted("%s vs %s", report.Num("%.2f s", b.M("wall_s")), report.Num("%.2f s", a.M("wall_s"))).Ratio(sub, "variant", layerThin, layerFull, "wall_s")))
	}
	tot, _ := report.Find(idle, "what", "total")
	return append(goals,
		asInfo(report.NewGoal(fmt.Sprintf("idle: CPU of the %d nodes + pulsed + HAProxy over %.0f s (one function of 3 replicas)", clusterNodes, plan.IdleS), "%", 0).AsInfo().
			Noted("of one core; nodes %.2f %%, pulsed %.2f %%, HAProxy %.2f %%; the machine %.1f %% busy", tot.M("nodes_cpu_pct"), tot.M("pulsed_cpu_pct"),
				tot.M("haproxy_cpu_pct"), tot.M("host_busy_pct")).
			Over(idle, "what", "total", "cpu_pct")),
		asInfo(report.NewGoal("idle: memory of the nodes (memory.usage_in_bytes, page cache included)", "MB", 0).AsInfo().
			Over(idle, "what", "total", "mem_usage_mb")))
}

// asInfo keeps a figure without a limit INFO when its figures had errors.
func asInfo(g report.Goal) report.Goal {
	if g.Status == report.Fail {
		g.Status = report.Info
	}
	return g
}

// layerGoal is the most any node was sent of B in % of the full archive, worst over the B
// trials; a failed trial or a load not thin fails it.
func layerGoal(rows []report.Row) report.Goal {
	var trials, failed, loads, thin int
	var worst, sent, full float64
	counts := map[string]bool{}
	for _, r := range report.Of(rows, "layer") {
		if r.Label("variant") != layerThin {
			continue
		}
		trials, loads, thin, counts[r.Label("nodes")] = trials+1, loads+int(r.Values["loads"]), thin+int(r.Values["thin_loads"]), true
		if !r.OK() {
			failed++
		} else if pct := 100 * r.V("sent_max_bytes") / r.V("full_bytes"); r.V("full_bytes") > 0 && pct >= worst {
			worst, sent, full = pct, r.V("sent_max_bytes"), r.V("full_bytes")
		}
	}
	names := strings.Join(slices.Sorted(maps.Keys(counts)), " and ")
	if trials == 0 {
		names = "1 and " + strconv.Itoa(clusterNodes)
	}
	g := report.NewGoal(fmt.Sprintf("a one-function-layer change moves ≤ 15 %% of the full image's bytes to each node (image B after A through ClusterDistributor, to %s node(s))", names), "%", 15)
	note := fmt.Sprintf("at most %.3f MB of the full %.3f MB sent to a node; %d of %d loads thin; %d of %d trials failed", sent/mb, full/mb, thin, loads, failed, trials)
	switch {
	case trials == 0:
		return g.Skipped("the layer-change trials did not run")
	case failed == trials:
		return g.Failed(note)
	case failed > 0 || thin < loads:
		g = g.Noted("%s", note).Check(worst)
		g.Status = report.Fail
		return g
	}
	return g.Noted("%s", note).Check(worst)
}
