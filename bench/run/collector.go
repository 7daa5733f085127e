package main

// The collector suite: Pulse's Netdata collector (package collector, the
// pulse.d.plugin binary) against real watchdog processes.
//
// It starts collectorReplicas fork-mode watchdogs (cat) on loopback ports,
// serves a replica catalog listing the first 50, 100 and 200 of them (ten
// replicas per function) plus a HAProxy-style backend page for their
// functions from one in-process HTTP server, and measures one collection
// cycle (collector.Collector.Collect, in this process) over cycles at each
// size. Then it runs the built pulse.d.plugin standalone against the
// 100-replica catalog, its plugins.d output discarded, and reads its CPU
// and RSS from /proc; and then under a lab Netdata (collector_netdata.go)
// for the RSS of netdata and the plugin together, beside the system
// Netdata's if one runs.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
)

const suiteCollector = "collector"

// The suite's shape and the goals.
const (
	collectorReplicas        = 200
	collectorPerFunction     = 10
	collectorCycleGap        = 200 * time.Millisecond // between measured cycles
	collectorP99GoalMS       = 250                    // at 200 replicas
	collectorPluginCPUGoal   = 3                      // % of one core, 100 replicas
	collectorPluginReplicas  = 100
	collectorPluginWarmup    = 5 * time.Second
	collectorPluginDuration  = 30 * time.Second
	collectorQuickCycles     = 20
	collectorCycles          = 60
	collectorQuickPluginTime = 8 * time.Second
)

var collectorSizes = []int{50, 100, 200}

// collectorReport is the suite's JSON.
type collectorReport struct {
	runHead
	Quick     bool             `json:"quick"`
	Machine   machineInfo      `json:"machine"`
	Artifacts []artifact       `json:"artifacts"`
	Replicas  int              `json:"watchdogs"`
	NoFile    uint64           `json:"rlimit_nofile"`
	Cycles    []collectorCycle `json:"cycles"`
	Plugin    collectorPlugin  `json:"plugin"`
	Netdata   collectorNetdata `json:"netdata"`
	// SystemNetdata is the machine's own Netdata, if one ran: stock
	// configuration, every collector; informational.
	SystemNetdata *systemNetdata `json:"system_netdata,omitempty"`
	reportEnd
}

// collectorCycle is the in-process measurement at one catalog size.
type collectorCycle struct {
	Replicas  int       `json:"replicas"`
	Functions int       `json:"functions"`
	Cycles    int       `json:"cycles"`
	P50MS     float64   `json:"p50_ms"`
	P99MS     float64   `json:"p99_ms"`
	MaxMS     float64   `json:"max_ms"`
	Scraped   int64     `json:"scraped_last_cycle"`
	Failed    int64     `json:"failed_total"`
	RawMS     []float64 `json:"raw_ms"`
}

// collectorPlugin is the standalone plugin run.
type collectorPlugin struct {
	Replicas        int     `json:"replicas"`
	DurationS       float64 `json:"duration_s"`
	CPUPct          float64 `json:"cpu_pct_of_one_core"`
	RSSMB           float64 `json:"rss_mb"`
	RSSAnonMB       float64 `json:"rss_anon_mb"`
	CatalogRequests int64   `json:"catalog_requests"`
	HAProxyRequests int64   `json:"haproxy_requests"`
	Error           string  `json:"error,omitempty"`
}

// runCollector runs the collector suite.
func runCollector(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	rep := collectorReport{runHead: newRunHead(cfg.Suite, env.started), Quick: cfg.Quick,
		Machine: collectMachine(ctx, env.tools, env.clk), Replicas: collectorReplicas}
	if env.clkNote != "" {
		rep.Notes = append(rep.Notes, env.clkNote)
	}
	nofile, err := raiseNoFile(4 * collectorReplicas * 4)
	rep.NoFile = nofile
	if err != nil {
		return err
	}
	steps := []buildStep{
		goStep(env.tools, env.tmp, "watchdog", "./cmd/pulse-watchdog", forkTags),
		goStep(env.tools, env.tmp, "pulse.d.plugin", "./cmd/pulse.d.plugin", ""),
	}
	arts, err := build(ctx, log, env.root, steps)
	if err != nil {
		return err
	}
	for _, st := range steps {
		rep.Artifacts = append(rep.Artifacts, *arts[st.name])
		if arts.missing([]string{st.name}) != "" {
			return fmt.Errorf("%s did not build: %s", st.name, arts[st.name].Error)
		}
	}

	logDir := filepath.Join(env.tmp, "logs")
	if err := os.Mkdir(logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	// The watchdogs check the replica credential as replicas do, and the
	// collector (in this process, standalone and under Netdata) presents
	// it from its file, as it does pulsed's replica_auth_file.
	cred, err := newRunCredential(ctx, nil, "", env.tmp)
	if err != nil {
		return err
	}
	defer cred.remove(nil)
	log.Info("starting watchdogs", "n", collectorReplicas)
	replicas, stop, err := startCollectorWatchdogs(ctx, arts.path("watchdog"), env.tools.cat, logDir, cred, collectorReplicas)
	defer stop()
	if err != nil {
		return err
	}
	if refused, err := refusesWithout(ctx, "http://"+replicas[0].addr+"/", "hi"); err != nil {
		return err
	} else if !refused {
		rep.Notes = append(rep.Notes, "the watchdogs answered a request without the replica credential ("+contract.HeaderReplicaAuth+
			"): they do not check it, so the scrapes were measured without that check")
	}

	src := &benchCatalog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("catalog server: %w", err)
	}
	srv := &http.Server{Handler: src, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	cycles := collectorCycles
	pluginTime, netdataTime := collectorPluginDuration, collectorNetdataDuration
	if cfg.Quick {
		cycles, pluginTime, netdataTime = collectorQuickCycles, collectorQuickPluginTime, collectorQuickNetdataTime
	}
	for _, n := range collectorSizes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		src.set(replicas[:n])
		res, err := measureCollector(ctx, base, cred.path, cycles)
		if err != nil {
			return err
		}
		res.Replicas, res.Functions = n, (n+collectorPerFunction-1)/collectorPerFunction
		log.Info("cycles measured", "replicas", n, "p50_ms", res.P50MS, "p99_ms", res.P99MS, "failed", res.Failed)
		rep.Cycles = append(rep.Cycles, res)
	}

	src.set(replicas[:collectorPluginReplicas])
	log.Info("running pulse.d.plugin", "replicas", collectorPluginReplicas, "seconds", pluginTime.Seconds())
	rep.Plugin = runPluginStandalone(ctx, arts.path("pulse.d.plugin"), base, cred.path, env.tmp, env.clk, pluginTime, src)
	rep.Plugin.Replicas = collectorPluginReplicas

	log.Info("running a lab Netdata with pulse.d.plugin", "replicas", collectorPluginReplicas, "seconds", netdataTime.Seconds())
	functions := (collectorPluginReplicas + collectorPerFunction - 1) / collectorPerFunction
	rep.Netdata = runLabNetdata(ctx, arts.path("pulse.d.plugin"), base, cred.path, env.clk, netdataTime, functions)
	rep.Netdata.Replicas, rep.Netdata.Functions = collectorPluginReplicas, functions
	log.Info("lab Netdata measured", "netdata_rss_mb", rep.Netdata.NetdataRSSMB, "plugin_rss_mb", rep.Netdata.PluginRSSMB,
		"skipped", rep.Netdata.Skipped, "error", rep.Netdata.Error)
	if sys, err := measureSystemNetdata(env.clk); err != nil {
		rep.Notes = append(rep.Notes, "system Netdata not measured: "+err.Error())
	} else {
		rep.SystemNetdata = sys
	}

	if n := loadNote(rep.Machine.CPUs, rep.Machine.Load1); n != "" {
		rep.Notes = append(rep.Notes, n)
	}
	rep.Goals = collectorGoals(rep)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publish(cfg, stdout, env.started, rep, renderCollector(rep, false, ""), func(rel string) string { return renderCollector(rep, true, rel) })
}

// loadNote says when the machine was busy with more than the suite: the
// cycle times (waiting for 200 watchdogs to be scheduled) grow with it.
func loadNote(cpus int, atStart float64) string {
	atEnd, _ := readLoad1("/proc")
	if cpus <= 0 || max(atStart, atEnd) <= float64(cpus) {
		return ""
	}
	return fmt.Sprintf("the machine was busy: one-minute load average %.1f at the start and %.1f at the end, on %d CPUs; cycle times grow with the run queue", atStart, atEnd, cpus)
}

// raiseNoFile raises RLIMIT_NOFILE's soft limit to at least want (up to the
// hard limit): the collector holds a connection to every watchdog.
func raiseNoFile(want uint64) (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if r.Cur < want {
		r.Cur = min(want, r.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, fmt.Errorf("setrlimit nofile %d: %w", r.Cur, err)
		}
	}
	if r.Cur < want {
		return r.Cur, fmt.Errorf("RLIMIT_NOFILE hard limit %d below the %d the suite needs", r.Max, want)
	}
	return r.Cur, nil
}

// startCollectorWatchdogs starts n watchdogs, each checking cred and
// probed once with it, and returns them as catalog replicas (ten per
// function: f000, f001, ...).
func startCollectorWatchdogs(ctx context.Context, bin, cat, logDir string, cred *runCredential, n int) ([]benchReplica, func(), error) {
	var servers []*server
	stop := func() {
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Go(func() { _, _ = s.stop(2 * time.Second) })
		}
		wg.Wait()
	}
	var out []benchReplica
	for i := range n {
		if ctx.Err() != nil {
			return nil, stop, ctx.Err()
		}
		fn := fmt.Sprintf("f%03d", i/collectorPerFunction)
		addr, err := freeAddr()
		if err != nil {
			return nil, stop, err
		}
		s, err := startServer(launchSpec{Bin: bin, Env: []string{
			contract.EnvFunction + "=" + fn, contract.EnvMode + "=" + contract.ModeFork, contract.EnvExec + "=" + cat,
			contract.EnvListen + "=" + addr, contract.EnvDrainGrace + "=0s", contract.EnvLogLevel + "=warn",
			contract.EnvReplicaAuthFile + "=" + cred.path,
		}, Addr: addr}, filepath.Join(logDir, fmt.Sprintf("watchdog-%03d.log", i)))
		if err != nil {
			return nil, stop, err
		}
		servers = append(servers, s)
		if err := waitReady(ctx, s, "http://"+addr+contract.HealthPath, 10*time.Second, cred.header()); err != nil {
			return nil, stop, err
		}
		if err := probe(ctx, "http://"+addr+"/", "hi", cred.header()); err != nil {
			return nil, stop, err
		}
		out = append(out, benchReplica{function: fn, task: fmt.Sprintf("task%03d", i), addr: addr})
	}
	return out, stop, nil
}

// benchReplica is one watchdog as the catalog lists it.
type benchReplica struct{ function, task, addr string }

// benchCatalog serves GET /v1/replicas like pulsed (ETag, 304) and a
// HAProxy-exporter-style page (scope=backend) on /metrics with every
// function's backend.
type benchCatalog struct {
	mu       sync.Mutex
	body     []byte
	version  string
	page     []byte
	catalogN atomic.Int64
	haproxyN atomic.Int64
}

func (b *benchCatalog) set(rs []benchReplica) {
	cat := contract.Catalog{Version: fmt.Sprintf("n%d", len(rs))}
	var page strings.Builder
	for _, r := range rs {
		if n := len(cat.Functions); n == 0 || cat.Functions[n-1].Name != r.function {
			cat.Functions = append(cat.Functions, contract.CatalogFunction{Name: r.function, ServiceID: "svc-" + r.function,
				Labels: map[string]string{contract.LabelFunction: r.function}})
			for _, m := range []string{"current_sessions", "current_queue", "http_requests_total"} {
				fmt.Fprintf(&page, "haproxy_backend_%s{proxy=\"fn_%s\"} 3\n", m, r.function)
			}
			fmt.Fprintf(&page, "haproxy_backend_http_responses_total{proxy=\"fn_%s\",code=\"5xx\"} 1\n", r.function)
		}
		f := &cat.Functions[len(cat.Functions)-1]
		f.Desired++
		f.Replicas = append(f.Replicas, contract.Replica{TaskID: r.task, Node: "n1", Addr: r.addr, State: "running"})
	}
	body, err := json.Marshal(cat)
	if err != nil {
		panic(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.body, b.version, b.page = body, cat.Version, []byte(page.String())
}

func (b *benchCatalog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	body, version, page := b.body, b.version, b.page
	b.mu.Unlock()
	switch r.URL.Path {
	case contract.CatalogPath:
		b.catalogN.Add(1)
		etag := `"` + version + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	case "/metrics":
		b.haproxyN.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(page)
	default:
		http.NotFound(w, r)
	}
}

// measureCollector times Collect in this process, presenting the replica
// credential in credFile: three unmeasured cycles, then n measured ones
// collectorCycleGap apart.
func measureCollector(ctx context.Context, base, credFile string, n int) (collectorCycle, error) {
	c, err := collector.NewCollector(collector.Config{UpdateEvery: 1, CatalogURL: base + contract.CatalogPath,
		HAProxyURL: base + "/metrics", Timeout: web.Duration{Duration: collector.DefaultTimeout}, ReplicaAuthFile: credFile}, nil)
	if err != nil {
		return collectorCycle{}, err
	}
	defer c.Close()
	var res collectorCycle
	for i := -3; i < n; i++ {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		start := time.Now()
		mx, _ := c.Collect(ctx)
		took := time.Since(start)
		if i >= 0 {
			res.RawMS = append(res.RawMS, float64(took.Microseconds())/1000)
			res.Failed += mx["collector_failed"]
			res.Scraped = mx["collector_scraped"]
		}
		time.Sleep(collectorCycleGap)
	}
	res.Cycles = len(res.RawMS)
	sorted := slices.Sorted(slices.Values(res.RawMS))
	res.P50MS, res.P99MS, res.MaxMS = nearestRank(sorted, 50), nearestRank(sorted, 99), sorted[len(sorted)-1]
	return res, nil
}

// runPluginStandalone runs the built plugin with the shipped config
// pointed at the bench server and the replica credential in credFile, and
// measures its CPU and RSS over d after a warm-up.
func runPluginStandalone(ctx context.Context, bin, base, credFile, tmp string, clk float64, d time.Duration, src *benchCatalog) collectorPlugin {
	res := collectorPlugin{DurationS: d.Seconds()}
	fail := func(err error) collectorPlugin { res.Error = err.Error(); return res }
	conf := filepath.Join(tmp, "netdata-conf")
	credKey := "replica_auth_file: " + contract.DefaultReplicaAuthFile
	credSet := false
	err := fs.WalkDir(collector.ConfigFiles, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(conf, p), 0o755)
		}
		b, err := fs.ReadFile(collector.ConfigFiles, p)
		if err != nil {
			return err
		}
		s := strings.ReplaceAll(string(b), collector.DefaultCatalogURL, base+contract.CatalogPath)
		s = strings.ReplaceAll(s, collector.DefaultHAProxyURL, base+"/metrics")
		if strings.Contains(s, credKey) {
			s, credSet = strings.ReplaceAll(s, credKey, "replica_auth_file: "+credFile), true
		}
		return os.WriteFile(filepath.Join(conf, p), []byte(s), 0o644)
	})
	if err == nil && !credSet {
		err = fmt.Errorf("no line %q in the shipped job config to point at the run's credential", credKey)
	}
	if err != nil {
		return fail(fmt.Errorf("write config: %w", err))
	}
	cmd := exec.Command(bin, "1")
	cmd.Env = append(os.Environ(), "NETDATA_USER_CONFIG_DIR="+conf, "NETDATA_LOG_LEVEL=info")
	stdin, err := cmd.StdinPipe() // Netdata's pipe: kept open while it runs
	if err != nil {
		return fail(err)
	}
	defer stdin.Close()
	logPath := filepath.Join(tmp, "plugin.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = io.Discard, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	// Stopped as startServer's servers are (SIGTERM, then SIGKILL to what
	// is left), which cannot start it: it needs the open stdin.
	plugin := &server{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(plugin.done) }()
	defer func() { _, _ = plugin.stop(5 * time.Second) }()
	pid := cmd.Process.Pid
	if err := sleepCtx(ctx, collectorPluginWarmup); err != nil {
		return fail(err)
	}
	before, err := readStat("/proc", pid)
	if err != nil {
		return fail(fmt.Errorf("plugin exited early (see its log): %w", err))
	}
	cat0, hap0 := src.catalogN.Load(), src.haproxyN.Load()
	t0 := time.Now()
	if err := sleepCtx(ctx, d); err != nil {
		return fail(err)
	}
	after, err := readStat("/proc", pid)
	if err != nil {
		return fail(fmt.Errorf("plugin exited (see its log): %w", err))
	}
	elapsed := time.Since(t0).Seconds()
	mem, err := readStatus("/proc", pid)
	if err != nil {
		return fail(err)
	}
	ticks := float64((after.UTime + after.STime) - (before.UTime + before.STime))
	res.DurationS = elapsed
	res.CPUPct = round3(100 * ticks / clk / elapsed)
	res.RSSMB, res.RSSAnonMB = kbToMB(mem.RSSKB), kbToMB(mem.RSSAnonKB)
	res.CatalogRequests, res.HAProxyRequests = src.catalogN.Load()-cat0, src.haproxyN.Load()-hap0
	if res.CatalogRequests < int64(elapsed/2) {
		res.Error = fmt.Sprintf("only %d catalog requests in %.0f s: the plugin did not collect every second", res.CatalogRequests, elapsed)
	}
	return res
}

func collectorGoals(r collectorReport) []goal {
	var gs []goal
	for _, c := range r.Cycles {
		if c.Replicas == collectorReplicas {
			problem := ""
			if c.Failed > 0 {
				problem = fmt.Sprintf("%d failed scrapes", c.Failed)
			}
			gs = append(gs, limitGoal(fmt.Sprintf("collection cycle p99 ≤ %d ms at %d replicas", collectorP99GoalMS, c.Replicas),
				c.P99MS, collectorP99GoalMS, "ms", "", problem))
		}
	}
	p, n := r.Plugin, r.Netdata
	gs = append(gs, limitGoal(fmt.Sprintf("pulse.d.plugin CPU ≤ %d %% of a core at %d replicas", collectorPluginCPUGoal, p.Replicas),
		p.CPUPct, collectorPluginCPUGoal, "%", fmt.Sprintf("RSS %.1f MB", p.RSSMB), p.Error))
	g := limitGoal(fmt.Sprintf("netdata + pulse.d.plugin RSS ≤ %d MB (lab Netdata, %d replicas)", collectorNetdataRSSGoalMB, n.Replicas),
		n.TotalRSSMB, collectorNetdataRSSGoalMB, "MB", fmt.Sprintf("netdata %.1f MB + plugin %.1f MB", n.NetdataRSSMB, n.PluginRSSMB), n.Error)
	if n.Skipped != "" {
		g.Status, g.Note = skip, n.Skipped
	}
	return append(gs, g)
}

// limitGoal is the goal v ≤ limit; it fails with problem as its note if
// there is one.
func limitGoal(name string, v, limit float64, unit, note, problem string) goal {
	g := goal{Name: name, Value: v, Limit: limit, Unit: unit, Status: verdict(v, limit), Note: note}
	if problem != "" {
		g.Status, g.Note = fail, problem
	}
	return g
}

var collectorCycleHeader = []string{"replicas", "functions", "cycles", "p50 ms", "p99 ms", "max ms", "scraped (last cycle)", "failed scrapes"}

func collectorCycleRows(r collectorReport) [][]string {
	var rows [][]string
	for _, c := range r.Cycles {
		rows = append(rows, []string{fmt.Sprint(c.Replicas), fmt.Sprint(c.Functions), fmt.Sprint(c.Cycles),
			fmt.Sprintf("%.1f", c.P50MS), fmt.Sprintf("%.1f", c.P99MS), fmt.Sprintf("%.1f", c.MaxMS), fmt.Sprint(c.Scraped), fmt.Sprint(c.Failed)})
	}
	return rows
}

var collectorPluginHeader = []string{"replicas", "measured s", "CPU % of a core", "RSS MB (anon)", "catalog requests", "HAProxy page requests"}

func collectorPluginRows(r collectorReport) [][]string {
	p := r.Plugin
	return [][]string{{fmt.Sprint(p.Replicas), fmt.Sprintf("%.1f", p.DurationS), fmt.Sprintf("%.2f", p.CPUPct),
		fmt.Sprintf("%.1f (%.1f)", p.RSSMB, p.RSSAnonMB), fmt.Sprint(p.CatalogRequests), fmt.Sprint(p.HAProxyRequests)}}
}

func collectorSetup(r collectorReport) string {
	m := r.Machine
	return fmt.Sprintf("%d CPUs (%s), kernel %s, %s; %d fork-mode watchdogs (cat) on loopback, ten replicas per function; "+
		"cycles %s apart; RLIMIT_NOFILE %d", m.CPUs, m.CPUModel, m.Kernel, m.Go, r.Replicas, collectorCycleGap, r.NoFile)
}

func renderCollector(r collectorReport, md bool, jsonPath string) string {
	b := newReportDoc(md, "collector", "", r.Started, jsonPath, collectorSetup(r))
	captions := []string{"one collection cycle (in process):", "pulse.d.plugin standalone:",
		"Netdata with pulse.d.plugin (RSS at the end of the run, CPU over its second half):"}
	if md {
		captions = []string{"One collection cycle (`Collector.Collect`, in process):", "`pulse.d.plugin` standalone (plugins.d output discarded):",
			"Netdata with `pulse.d.plugin` (RSS at the end of the run, CPU over its second half):"}
	}
	b.caption(captions[0])
	b.table(collectorCycleHeader, collectorCycleRows(r))
	b.caption(captions[1])
	b.table(collectorPluginHeader, collectorPluginRows(r))
	b.caption(captions[2])
	b.table(collectorNetdataHeader, collectorNetdataRows(r))
	b.goals(r.Goals)
	b.notes(r.Notes)
	return b.String()
}
