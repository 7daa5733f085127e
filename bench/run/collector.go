package main

// The collector suite: Pulse's Netdata collector (package collector, the
// pulse.d.plugin binary) against real fork-mode watchdogs listed by an
// in-process catalog: one collection cycle in this process at 200
// replicas, the built plugin standalone and under a lab Netdata at 100
// (bench/README.md).

import (
	"cmp"
	"context"
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/collector"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/catalog"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

const suiteCollector = "collector"

// The suite's shape.
const (
	collectorReplicas       = 200
	collectorPerFunction    = 10
	collectorPluginReplicas = 100 // the standalone plugin's and the lab Netdata's catalog
	collectorCycleGap       = 200 * time.Millisecond
	collectorPluginName     = contract.PluginName + ".plugin"
)

// runCollector runs the collector suite.
func runCollector(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer, env suiteEnv) error {
	rep := report.New(cfg.Suite, env.started)
	m := noteMachine(ctx, rep, env)
	// Go raises the soft limit to the hard one at start; the collector
	// holds a connection to every watchdog.
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	} else if nofile.Cur < 16*collectorReplicas {
		return fmt.Errorf("RLIMIT_NOFILE %d below the %d the suite needs", nofile.Cur, 16*collectorReplicas)
	}
	rep.Setup = fmt.Sprintf("%d CPUs (%s), kernel %s, %s; %d fork-mode watchdogs (cat) on loopback, ten replicas per function; "+
		"cycles %s apart; RLIMIT_NOFILE %d", m.CPUs, m.CPUModel, m.Kernel, m.Go, collectorReplicas, collectorCycleGap, nofile.Cur)
	cycles, runTime := 60, 30*time.Second
	if cfg.Quick {
		cycles, runTime = 20, 8*time.Second
	}
	arts, recs, err := buildAll(ctx, log, env.root, []buildStep{goStep(env.tools, env.tmp, "watchdog", "./cmd/pulse-watchdog", forkTags),
		goStep(env.tools, env.tmp, "pulse.d.plugin", "./cmd/pulse.d.plugin", "")})
	rep.Record("artifacts", recs)
	if err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(env.tmp, "logs"), 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	// The watchdogs check the replica credential as replicas do; the
	// collector presents it from its file, as pulsed's replica_auth_file.
	cred, err := newRunCredential(ctx, nil, "", env.tmp)
	if err != nil {
		return err
	}
	defer cred.remove(nil)
	log.Info("starting watchdogs", "n", collectorReplicas)
	replicas, stop, err := startCollectorWatchdogs(ctx, arts.path("watchdog"), env.tools.cat, filepath.Join(env.tmp, "logs"), cred, collectorReplicas)
	defer stop()
	if err != nil {
		return err
	}
	if refused, err := refusesWithout(ctx, "http://"+replicas[0].addr+"/", "hi"); err != nil {
		return err
	} else if !refused {
		rep.Note("the watchdogs answered a request without the replica credential (%s): they do not check it, "+
			"so the scrapes were measured without that check", contract.HeaderReplicaAuth)
	}
	src := &benchCatalog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("catalog server: %w", err)
	}
	srv := &http.Server{Handler: src.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	src.set(replicas)
	rows, err := measureCollector(ctx, base, cred.path, collectorReplicas, cycles)
	if err != nil {
		return err
	}
	rep.Rows = rows
	src.set(replicas[:collectorPluginReplicas])
	log.Info("running pulse.d.plugin standalone, then under a lab Netdata", "replicas", collectorPluginReplicas, "seconds", runTime.Seconds())
	pl, nd := report.NewRow("plugin", "replicas", collectorPluginReplicas), report.NewRow("netdata", "netdata", "lab")
	pl.Fail(runPluginStandalone(ctx, pl, arts.path("pulse.d.plugin"), base, cred.path, env.tmp, env.clk, runTime, src))
	if err := netdatalab.Available(); err != nil {
		nd.Skipped = err.Error()
	} else {
		nd.Fail(runLabNetdata(ctx, nd, arts.path("pulse.d.plugin"), base, cred.path, runTime))
	}
	rep.Rows = append(rep.Rows, *pl, *nd)
	if atEnd, _ := readLoad1("/proc"); m.CPUs > 0 && max(m.Load1, atEnd) > float64(m.CPUs) {
		rep.Note("the machine was busy: one-minute load average %.1f at the start and %.1f at the end, on %d CPUs; "+
			"cycle times grow with the run queue", m.Load1, atEnd, m.CPUs)
	}
	collectorSummary(rep)
	rep.Finished = time.Now().UTC().Format(time.RFC3339)
	return publishReport(cfg, stdout, rep)
}

// startCollectorWatchdogs starts n watchdogs, each checking cred and probed
// once with it, and returns them as catalog replicas, ten per function.
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
		fn := fmt.Sprintf("f%03d", i/collectorPerFunction)
		addr, err := freeAddr()
		if err != nil {
			return nil, stop, err
		}
		s, err := startServer(launchSpec{Bin: bin, Addr: addr, Env: []string{
			contract.EnvFunction + "=" + fn, contract.EnvMode + "=" + contract.ModeFork, contract.EnvExec + "=" + cat,
			contract.EnvListen + "=" + addr, contract.EnvDrainGrace + "=0s", contract.EnvLogLevel + "=warn",
			contract.EnvReplicaAuthFile + "=" + cred.path,
		}}, filepath.Join(logDir, fmt.Sprintf("watchdog-%03d.log", i)))
		if err == nil {
			servers = append(servers, s)
			err = waitReady(ctx, s, "http://"+addr+contract.HealthPath, 10*time.Second, cred.header())
		}
		if err == nil {
			err = probe(ctx, "http://"+addr+"/", "hi", cred.header())
		}
		if err != nil {
			return nil, stop, err
		}
		out = append(out, benchReplica{function: fn, task: fmt.Sprintf("task%03d", i), addr: addr})
	}
	return out, stop, nil
}

// benchReplica is one watchdog as the catalog lists it.
type benchReplica struct{ function, task, addr string }

// benchCatalog is the suite's pulsed and HAProxy: its handler serves the
// catalog as pulsed does (internal/catalog) and, on /metrics, a
// HAProxy-exporter-style page (scope=backend) of its functions.
type benchCatalog struct {
	mu       sync.Mutex
	cat      contract.Catalog
	page     []byte
	catalogN atomic.Int64 // catalog requests served
}

// set lists rs in the catalog, ten per function, and their functions'
// backends on the page.
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
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cat, b.page = cat, []byte(page.String())
}

// Current is the catalog, for internal/catalog's handler.
func (b *benchCatalog) Current() (contract.Catalog, time.Time, error) {
	b.catalogN.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cat, time.Time{}, nil
}

// handler serves the catalog and the HAProxy page.
func (b *benchCatalog) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(contract.CatalogPath, catalog.NewHandler(b))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		b.mu.Lock()
		page := b.page
		b.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(page)
	})
	return mux
}

// measureCollector times Collect in this process over the catalog of
// replicas at base, presenting the credential in credFile: three
// unmeasured cycles, then a "cycle" row for each of n, collectorCycleGap
// apart.
func measureCollector(ctx context.Context, base, credFile string, replicas, n int) ([]report.Row, error) {
	c, err := collector.NewCollector(collector.Config{UpdateEvery: 1, CatalogURL: base + contract.CatalogPath,
		HAProxyURL: base + "/metrics", Timeout: web.Duration{Duration: collector.DefaultTimeout}, ReplicaAuthFile: credFile}, nil)
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	defer c.Close()
	var rows []report.Row
	for i := -3; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := time.Now()
		mx, _ := c.Collect(ctx)
		took := time.Since(start)
		if i >= 0 {
			r := report.NewRow("cycle", "replicas", replicas, "cycle", i+1).Put("ms", float64(took.Microseconds())/1000).
				Put("scraped", float64(mx["collector_scraped"])).Put("failed_scrapes", float64(mx["collector_failed"]))
			if f := mx["collector_failed"]; f > 0 {
				r.Flag("%d failed scrapes", f)
			}
			rows = append(rows, *r)
		}
		time.Sleep(collectorCycleGap)
	}
	return rows, nil
}

// runPluginStandalone runs the built plugin with the shipped config pointed
// at the bench server and the credential in credFile, and puts in r its CPU
// over d after 5 s of warm-up, its RSS and the catalog requests it made.
func runPluginStandalone(ctx context.Context, r *report.Row, bin, base, credFile, tmp string, clk float64, d time.Duration, src *benchCatalog) error {
	conf, credKey := filepath.Join(tmp, "netdata-conf"), "replica_auth_file: "+contract.DefaultReplicaAuthFile
	err := os.MkdirAll(filepath.Join(conf, "pulse.d"), 0o755)
	for _, p := range []string{"pulse.d.conf", "pulse.d/pulse.conf"} {
		b, rerr := fs.ReadFile(collector.ConfigFiles, p)
		if err = cmp.Or(err, rerr); err == nil && p != "pulse.d.conf" && !strings.Contains(string(b), credKey) {
			err = fmt.Errorf("no line %q in the shipped %s to point at the run's credential", credKey, p)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(conf, p), []byte(strings.NewReplacer(collector.DefaultCatalogURL, base+contract.CatalogPath,
				collector.DefaultHAProxyURL, base+"/metrics", credKey, "replica_auth_file: "+credFile).Replace(string(b))), 0o644)
		}
	}
	logPath := filepath.Join(tmp, "plugin.log")
	logf, lerr := os.Create(logPath)
	stdin, stdinW, perr := os.Pipe() // Netdata's pipe: kept open while it runs
	if err = cmp.Or(err, lerr, perr); err != nil {
		return fmt.Errorf("plugin config: %w", err)
	}
	defer logf.Close()
	defer stdin.Close()
	defer stdinW.Close()
	cmd := exec.Command(bin, "1")
	cmd.Env = append(os.Environ(), "NETDATA_USER_CONFIG_DIR="+conf, "NETDATA_LOG_LEVEL=info")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, io.Discard, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start plugin: %w", err)
	}
	// Stopped as startServer's servers are, which cannot start it: it
	// needs the open stdin.
	plugin := &server{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(plugin.done) }()
	defer func() { _, _ = plugin.stop(5 * time.Second) }()
	pid := cmd.Process.Pid
	err = sleepCtx(ctx, 5*time.Second) // warm-up
	cat0, t0 := src.catalogN.Load(), time.Now()
	st0, serr := readStat("/proc", pid)
	err = cmp.Or(err, serr, sleepCtx(ctx, d))
	st1, serr := readStat("/proc", pid)
	secs := time.Since(t0).Seconds()
	mem, merr := readStatus("/proc", pid)
	if err = cmp.Or(err, serr, merr); err != nil {
		return fmt.Errorf("plugin (see its log): %w", err)
	}
	cat := src.catalogN.Load() - cat0
	r.PutAll(map[string]float64{"cpu_core_pct": 100 * float64(st1.UTime+st1.STime-st0.UTime-st0.STime) / clk / secs,
		"rss_kb": float64(mem.RSSKB), "catalog_requests": float64(cat)})
	if cat < int64(secs/2) {
		r.Flag("only %d catalog requests in %.0f s: the plugin did not collect every second", cat, secs)
	}
	return nil
}

// runLabNetdata runs a lab Netdata with the plugin against the bench
// server's catalog for d and puts in r the RSS of its processes (the
// plugin's apart) and its function charts at the end.
func runLabNetdata(ctx context.Context, r *report.Row, plugin, base, credFile string, d time.Duration) error {
	lab, err := netdatalab.Start(ctx, netdatalab.Config{Plugin: plugin,
		PluginConfig: netdatalab.JobConfig(base+contract.CatalogPath, base+"/metrics", netdatalab.WithReplicaAuthFile(credFile))})
	if err != nil {
		return fmt.Errorf("lab netdata: %w", err)
	}
	defer lab.Stop()
	err = sleepCtx(ctx, d)
	procs, perr := lab.Processes()
	charts, cerr := lab.Charts(ctx)
	if err = cmp.Or(err, perr, cerr); err != nil {
		return fmt.Errorf("lab netdata: %w", err)
	}
	var total, pluginKB, plugins int64
	for _, p := range procs {
		total += p.RSSKB
		if len(p.Cmdline) > 0 && filepath.Base(p.Cmdline[0]) == collectorPluginName {
			pluginKB, plugins = pluginKB+p.RSSKB, plugins+1
		}
	}
	if plugins != 1 {
		return fmt.Errorf("%d %s processes in the lab, want 1 (see %s/log/error.log)", plugins, collectorPluginName, lab.Dir)
	}
	n := 0
	for id := range charts {
		if strings.HasPrefix(id, contract.ChartType+".fn_") {
			n++
		}
	}
	r.Put("total_rss_kb", float64(total)).Put("plugin_rss_kb", float64(pluginKB)).Put("charts", float64(n))
	if fns, per := collectorPluginReplicas/collectorPerFunction, len(collector.ChartSpecs()); n != fns*per {
		r.Flag("%d function charts in the lab Netdata, want %d × %d: the plugin did not chart every function", n, fns, per)
	}
	return nil
}

// collectorSummary summarises the rows into rep: the cycles', plugin's and
// Netdata's tables, the goals and the notes.
func collectorSummary(rep *report.Report) {
	cycles := report.Summarize(rep.Rows, "cycle", "replicas")
	plugin := report.Summarize(rep.Rows, "plugin", "replicas")
	nd := report.Summarize(rep.Rows, "netdata", "netdata")
	rep.Summary = slices.Concat(cycles, plugin, nd)
	failed := func(g report.Group) int64 {
		var n float64
		for _, v := range g.Values("failed_scrapes") {
			n += v
		}
		return int64(n)
	}
	mbCol := func(head, metric string) report.Col { return report.Scaled(head, metric, "%.1f", 1024/mb) }
	rep.Tables = append(rep.Tables,
		report.GroupTable("One collection cycle (`Collector.Collect`, in process):", cycles, "replicas",
			report.Col{Head: "cycles", Cell: func(g report.Group) string { return fmt.Sprint(g.Runs) }},
			report.Col{Head: "p99 ms", Cell: func(g report.Group) string { return report.Num("%.1f", report.Percentile(g.Values("ms"), 99)) }},
			report.Col{Head: "failed scrapes", Cell: func(g report.Group) string { return fmt.Sprint(failed(g)) }}),
		report.GroupTable("`pulse.d.plugin` standalone (plugins.d output discarded):", plugin, "replicas",
			report.Stat("CPU % of a core", "cpu_core_pct", "%.2f"), mbCol("RSS MB", "rss_kb"), report.Stat("catalog requests", "catalog_requests", "%.0f")),
		report.GroupTable("A lab Netdata with only `pulse.d.plugin`, against the 100-replica catalog (RSS at the end):", nd, "netdata",
			mbCol("total MB", "total_rss_kb"), mbCol("pulse.d.plugin MB", "plugin_rss_kb"), report.Stat("function charts", "charts", "%.0f")))

	p99 := report.NewGoal(fmt.Sprintf("collection cycle p99 ≤ 250 ms at %d replicas", collectorReplicas), "ms", 250)
	if g, ok := report.Find(cycles, "replicas", strconv.Itoa(collectorReplicas)); !ok {
		p99 = p99.Skipped("not measured")
	} else if p99 = p99.Check(report.Percentile(g.Values("ms"), 99)); g.Flagged() {
		p99.Status, p99.Note = report.Fail, fmt.Sprintf("%d failed scrapes", failed(g))
	}
	pl, _ := report.Find(plugin, "replicas", strconv.Itoa(collectorPluginReplicas))
	lab, _ := report.Find(nd, "netdata", "lab")
	rep.Goals = []report.Goal{p99,
		report.NewGoal(fmt.Sprintf("pulse.d.plugin CPU ≤ 3 %% of a core at %d replicas", collectorPluginReplicas), "%", 3).
			Noted("RSS %.1f MB", pl.M("rss_kb")*1024/mb).Over(plugin, "replicas", strconv.Itoa(collectorPluginReplicas), "cpu_core_pct"),
		report.NewGoal(fmt.Sprintf("netdata + pulse.d.plugin RSS ≤ 110 MB (lab Netdata, %d replicas)", collectorPluginReplicas), "MB", 110).
			Noted("netdata %.1f MB + plugin %.1f MB", (lab.M("total_rss_kb")-lab.M("plugin_rss_kb"))*1024/mb, lab.M("plugin_rss_kb")*1024/mb).
			OverScaled(nd, "netdata", "lab", "total_rss_kb", 1024/mb),
	}
	for _, g := range slices.Concat(plugin, nd) {
		for _, f := range g.Flags {
			rep.Note("%s %s: %s", g.Rows[0].Kind, cmp.Or(g.Label("netdata"), "standalone"), f)
		}
	}
}
