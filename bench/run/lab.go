package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

const (
	hookInstalled = alarms.HookPath   // the exec: path of the health templates
	runLabel      = "pulse-bench.run" // service and image label holding the run's ID
	testLabel     = "pulse.test"      // marks everything as a test's
	haproxyLinger = 2 * time.Second   // how long pulsed's HAProxy may outlive it
	alarmScaleUp  = "pulse_scale_up"  // the scale-up alarm of the lab's Netdata
	pathDirect    = "direct"          // request path straight to the replica's published port
	pathGateway   = "gateway"         // request path through HAProxy, /function/<name>
)

// pulseLab is one run's stack on loopback: pulsed (the run's own instance,
// restartable) and a lab Netdata whose alarm hook calls it.
type pulseLab struct {
	log                  *slog.Logger
	env                  suiteEnv
	arts                 artifacts
	api                  *client.Client
	sw                   *function.Swarm
	run, prefix, haproxy string // the run's names are prefix + run + "-…"; haproxy is pulsed's binary
	http                 *http.Client
	routeTimeout         time.Duration // bounds pulsed's start and a function's routing
	stopGrace            time.Duration // pulsed's time to exit after SIGTERM

	shared, tokenFile, token string         // shared: a directory the netdata user can read (hook, token)
	cred                     *runCredential // pulsed's and the collector's replica_auth_file, the replicas' secret

	apiAddr, gwAddr, adminAddr, coldAddr string // the same for every lifetime of pulsed

	stateDir, pulsedLog string   // the running (or last) pulsed's
	pulsedLogs          []string // every lifetime's, in order
	pulsed              *server
	rt                  *gateway.Runtime
	nd                  *netdatalab.Netdata
	fns                 []string // functions deployed and not removed yet
}

// newPulseLab returns a lab of the run, not opened yet.
func newPulseLab(log *slog.Logger, env suiteEnv, run, prefix, haproxy string, routeTimeout, stopGrace time.Duration) pulseLab {
	return pulseLab{log: log, env: env, run: run, prefix: prefix, haproxy: haproxy, routeTimeout: routeTimeout, stopGrace: stopGrace,
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}}
}

// open connects to the engine (a single-node swarm) and records the machine
// and the versions in rep; it returns the machine and the versions' line.
func (l *pulseLab) open(ctx context.Context, rep *report.Report) (machineInfo, string, error) {
	m := noteMachine(ctx, rep, l.env)
	ha, _ := haproxyVersion(ctx, l.haproxy)
	nd, _ := commandOutput(ctx, "/usr/sbin/netdata", "-V")
	api, _, v, err := connectSingleNodeSwarm(ctx, rep.Suite, "where every replica runs on this host")
	if err != nil {
		return m, "", err
	}
	l.api, l.sw = api, function.NewSwarm(api, function.LocalDistributor{API: api}, nil) // images load into this engine
	engine := "Docker Engine " + v.Version + " (API " + v.APIVersion + ")"
	for k, v := range map[string]string{"engine": engine, "haproxy": ha, "netdata": nd} {
		rep.Record(k, v)
	}
	return m, engine + ", " + ha + ", " + nd, nil
}

// haproxyVersion returns "HAProxy <version>" from haproxy -v.
func haproxyVersion(ctx context.Context, bin string) (string, error) {
	out, err := commandOutput(ctx, bin, "-v")
	return parseHAProxyVersion(out), err
}

// parseHAProxyVersion shortens haproxy -v's first line to "HAProxy 2.6.12".
func parseHAProxyVersion(out string) string {
	first, _, _ := strings.Cut(out, "\n")
	if f := strings.Fields(first); len(f) >= 3 && f[1] == "version" {
		return f[0] + " " + f[2]
	}
	return first
}

// build builds the lab's programs as they ship (pulsed, the plugin, the hook,
// the fork-mode watchdog) and more, records them in rep; one not built fails.
func (l *pulseLab) build(ctx context.Context, rep *report.Report, more ...buildStep) error {
	t, dir := l.env.tools, l.env.tmp
	steps := append([]buildStep{
		pulsedStep(t, dir),
		goStep(t, dir, "pulse.d.plugin", "./cmd/pulse.d.plugin", ""),
		goStep(t, dir, "pulse-alarm-hook", "./cmd/pulse-alarm-hook", ""),
		goStep(t, dir, "watchdog", "./cmd/pulse-watchdog", forkTags),
	}, more...)
	arts, recs, err := buildAll(ctx, l.log, l.env.root, steps)
	l.arts = arts
	rep.Record("artifacts", recs)
	return err
}

// prepareShared makes, in a directory Netdata's user can enter, the hook and
// a fresh alarm token (0640 root:netdata); and the run's replica credential.
func (l *pulseLab) prepareShared(ctx context.Context) error {
	var err error
	if l.shared, err = os.MkdirTemp("", "pulse-bench-alarms-"); err != nil {
		return fmt.Errorf("shared dir: %w", err)
	}
	if strings.ContainsAny(l.shared, " \t\n'\"") {
		return fmt.Errorf("shared dir %q: whitespace or quotes break Netdata's exec line", l.shared)
	}
	if err := os.Chmod(l.shared, 0o755); err != nil {
		return fmt.Errorf("shared dir: %w", err)
	}
	hook, err := l.arts.read("pulse-alarm-hook")
	if err == nil {
		err = os.WriteFile(filepath.Join(l.shared, "pulse-alarm-hook"), hook, 0o755)
	}
	if err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // never fails since Go 1.24
	l.token, l.tokenFile = hex.EncodeToString(tok[:]), filepath.Join(l.shared, "alarm-token")
	g, err := user.LookupGroup("netdata")
	if err == nil {
		err = os.WriteFile(l.tokenFile, []byte(l.token+"\n"), 0o640)
	}
	if err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		err = os.Chown(l.tokenFile, 0, gid)
	}
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	l.cred, err = newRunCredential(ctx, l.api, benchInstance(l.run), l.env.tmp)
	return err
}

// benchLabels are the labels of every function a run deploys.
func benchLabels(run string) map[string]string {
	return map[string]string{testLabel: "1", runLabel: run}
}

// benchImage assembles spec's image as `pulse build` lays it out: the
// in-process binary fn alone (wd nil), or the watchdog wd with fn as handler.
func benchImage(spec function.Spec, wd, fn []byte) (function.Image, error) {
	files := []function.File{{Path: function.FunctionPath, Mode: 0o755, Content: fn}}
	entry := function.FunctionPath
	if wd != nil {
		files = append([]function.File{{Path: function.WatchdogPath, Mode: 0o755, Content: wd}}, files...)
		entry = function.WatchdogPath
	}
	labels := map[string]string{contract.LabelFunction: spec.Name}
	maps.Copy(labels, spec.Labels)
	return function.Assemble(function.ImageSpec{
		Tag: function.ImageRepository + spec.Name + ":bench", Files: files, Entrypoint: []string{entry}, Env: spec.WatchdogEnv(),
		User: function.ImageUser, ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)}, Labels: labels,
	})
}

// deployFunction deploys spec's image (benchImage) as `pulse deploy` does
// here (no Docker health check), as the run's; it does not wait for replicas.
func (l *pulseLab) deployFunction(ctx context.Context, spec *function.Spec, wd, fn []byte, drainGrace time.Duration) (function.Image, function.DeployResult, error) {
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	maps.Copy(spec.Labels, benchLabels(l.run))
	img, err := benchImage(*spec, wd, fn)
	if err != nil {
		return img, function.DeployResult{}, err
	}
	res, err := l.sw.Deploy(ctx, *spec, img, function.DeployOptions{NoHealthcheck: true, DrainGrace: drainGrace, Instance: benchInstance(l.run)})
	if err == nil && !slices.Contains(l.fns, spec.Name) {
		l.fns = append(l.fns, spec.Name)
	}
	return img, res, err
}

// remove removes a function of the run (service, containers, image).
func (l *pulseLab) remove(ctx context.Context, name string) error {
	if err := removeFunction(ctx, l.sw, name); err != nil {
		return err
	}
	l.fns = slices.DeleteFunc(l.fns, func(n string) bool { return n == name })
	return nil
}

// waitServers waits until HAProxy has exactly n slots of fn holding a
// replica and, if up, that many serving.
func (l *pulseLab) waitServers(ctx context.Context, fn string, n int, up bool) error {
	return poll(ctx, l.routeTimeout, 20*time.Millisecond, func(late bool) (bool, error) {
		ss, err := l.rt.Servers(ctx, gateway.BackendName(fn))
		live, ready := countSlots(ss)
		if err == nil && live == n && (!up || ready == n) {
			return true, nil
		}
		last := fmt.Sprintf("%d servers holding a replica, %d ready and up", live, ready)
		if err != nil {
			last = err.Error()
		}
		select {
		case <-l.pulsed.done:
			return false, fmt.Errorf("pulsed exited; log: %s", l.pulsed.logTail(2000))
		default:
		}
		if late {
			return false, fmt.Errorf("HAProxy has not %d servers for %s after %s (last: %s); pulsed log: %s", n, fn, l.routeTimeout, last, l.pulsed.logTail(2000))
		}
		return false, nil
	})
}

// waitRouted waits until fn is routed to n serving replicas and a POST of
// body through the gateway is answered 200 with it.
func (l *pulseLab) waitRouted(ctx context.Context, fn string, n int, body string) error {
	if err := l.waitServers(ctx, fn, n, true); err != nil {
		return err
	}
	return probe(ctx, "http://"+l.gwAddr+"/function/"+fn, body, nil)
}

// keepLogs copies every pulsed lifetime's log and the lab Netdata's error log
// to a new directory, which it returns.
func (l *pulseLab) keepLogs(what string) string {
	dir, err := os.MkdirTemp("", "pulse-bench-"+what+"-"+l.run+"-logs-")
	if err != nil {
		return ""
	}
	for _, p := range l.pulsedLogs {
		if b, err := os.ReadFile(p); err == nil {
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644)
		}
	}
	if l.nd != nil {
		_ = os.WriteFile(filepath.Join(dir, "netdata-error.log"), []byte(l.nd.ErrorLog()), 0o644)
	}
	return dir
}

// cleanup stops and removes all of the run (processes, files, the engine's,
// the credential) and returns what it found; it may be called twice.
func (l *pulseLab) cleanup() []string {
	var found []string
	if l.nd != nil {
		if err := l.nd.Stop(); err != nil {
			found = append(found, "lab netdata: "+err.Error())
		}
		l.nd = nil
	}
	found = append(found, l.stopPulsed()...)
	if l.env.tmp != "" {
		if pids := killHAProxies(l.env.tmp); len(pids) > 0 {
			found = append(found, fmt.Sprintf("haproxy processes %v: killed", pids))
		}
	}
	if l.shared != "" {
		_ = os.RemoveAll(l.shared)
		l.shared = ""
	}
	if l.api == nil {
		found = append(found, l.cred.remove(nil)...)
		l.cred = nil
		return found
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, fn := range slices.Clone(l.fns) {
		if err := l.remove(ctx, fn); err != nil {
			found = append(found, "remove "+fn+": "+err.Error())
		}
	}
	prefix := l.prefix + l.run
	found = engineSweep{
		api: l.api, log: l.log, cred: l.cred,
		remove: func(ctx context.Context, name string) error { return l.remove(ctx, name) },
		mine:   func(name string) bool { return strings.HasPrefix(name, prefix) },
		images: filters.NewArgs(filters.Arg("label", runLabel+"="+l.run)),
	}.run(ctx, found)
	l.cred = nil
	return found
}

// alarmStatus is the status of fn's scale-up alarm in the lab Netdata.
func (l *pulseLab) alarmStatus(ctx context.Context, fn string) (string, error) {
	return l.nd.AlarmStatus(ctx, alarmScaleUp, utilChart(fn))
}

// waitAlarm waits up to timeout for fn's scale-up alarm to be CLEAR.
func (l *pulseLab) waitAlarm(ctx context.Context, fn string, timeout time.Duration) error {
	return poll(ctx, timeout, 500*time.Millisecond, func(late bool) (bool, error) {
		st, err := l.alarmStatus(ctx, fn)
		if err == nil && st == "CLEAR" {
			return true, nil
		}
		if late {
			return false, fmt.Errorf("%s of %s not initialised after %s (status %q, %v); netdata log: %s", alarmScaleUp, fn, timeout, st, err, report.Truncate(l.nd.ErrorLog(), 2000))
		}
		return false, nil
	})
}

// utilChart is fn's utilization chart, the scale-up alarm's.
func utilChart(fn string) string {
	return contract.Chart(fn, contract.ChartUtilization)
}

// getJSON GETs url from pulsed's API (auth: with the alarm token) into into.
func (l *pulseLab) getJSON(ctx context.Context, url string, auth bool, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.http.Do(req)
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

// events returns the scaler's recent decisions.
func (l *pulseLab) events(ctx context.Context) (contract.ScaleEvents, error) {
	var ev contract.ScaleEvents
	err := l.getJSON(ctx, "http://"+l.apiAddr+contract.EventsPath, true, &ev)
	return ev, err
}

// catalogFunction returns fn as pulsed's catalog lists it.
func (l *pulseLab) catalogFunction(ctx context.Context, fn string) (contract.CatalogFunction, error) {
	var cat contract.Catalog
	if err := l.getJSON(ctx, "http://"+l.apiAddr+contract.CatalogPath, false, &cat); err != nil {
		return contract.CatalogFunction{}, err
	}
	for _, f := range cat.Functions {
		if f.Name == fn {
			return f, nil
		}
	}
	return contract.CatalogFunction{}, fmt.Errorf("%s is not in pulsed's catalog", fn)
}

// reloads returns how many times the running pulsed reloaded HAProxy.
func (l *pulseLab) reloads(ctx context.Context) (int, error) {
	var h struct {
		Status  string
		Reloads *int
	}
	if err := l.getJSON(ctx, "http://"+l.apiAddr+"/healthz", false, &h); err != nil {
		return 0, err
	}
	if h.Reloads == nil {
		return 0, fmt.Errorf("healthz: status %q, no reload count", h.Status)
	}
	return *h.Reloads, nil
}

// watchReplicas adds fn's running replicas to w: their processes (from the
// engine) and published ports (from pulsed's catalog).
func (l *pulseLab) watchReplicas(ctx context.Context, fn string, w *procWatch) {
	if f, err := l.catalogFunction(ctx, fn); err == nil {
		for _, r := range f.Replicas {
			if _, p, err := net.SplitHostPort(r.Addr); err == nil {
				if n, err := strconv.Atoi(p); err == nil && !slices.Contains(w.Ports, n) {
					w.Ports = append(w.Ports, n)
				}
			}
		}
	}
	ids, err := serviceContainers(ctx, l.api, fn)
	if err != nil {
		return
	}
	cctx, cancel := call(ctx)
	defer cancel()
	for _, id := range ids {
		ci, err := l.api.ContainerInspect(cctx, id)
		if err == nil && ci.ContainerJSONBase != nil && ci.State != nil && ci.State.Pid > 0 && !slices.Contains(w.Replicas, ci.State.Pid) {
			w.Replicas = append(w.Replicas, ci.State.Pid)
		}
	}
}

// procWatch watches the running pulsed and its HAProxy (no replicas yet).
func (l *pulseLab) procWatch() procWatch {
	return procWatch{HAProxyConfig: filepath.Join(l.stateDir, "haproxy.cfg"), Pulsed: l.pulsed.pid()}
}

// healthWithHook returns the health templates with every exec: line
// running hook instead of the installed one.
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

// startNetdata picks pulsed's ports and starts the lab Netdata; the hook gets
// pulsed's URL and token from the environment (exec: is one quoted word).
func (l *pulseLab) startNetdata(ctx context.Context) error {
	for _, a := range []*string{&l.apiAddr, &l.gwAddr, &l.adminAddr, &l.coldAddr} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		*a = addr
	}
	health, err := healthWithHook(alarms.Templates(), filepath.Join(l.shared, "pulse-alarm-hook"))
	if err != nil {
		return err
	}
	ndLog, err := os.Create(filepath.Join(l.env.tmp, "netdata.log"))
	if err != nil {
		return err
	}
	defer ndLog.Close()
	l.nd, err = netdatalab.Start(ctx, netdatalab.Config{
		Plugin: l.arts.path("pulse.d.plugin"),
		PluginConfig: netdatalab.JobConfig("http://"+l.apiAddr+contract.CatalogPath, "http://"+l.adminAddr+"/metrics",
			netdatalab.WithReplicaAuthFile(l.cred.path)),
		Health: health,
		Env:    netdatalab.HookEnv("http://"+l.apiAddr+contract.AlarmsPath, l.tokenFile),
		Stderr: ndLog,
	})
	if err != nil {
		return err
	}
	l.log.Info("lab netdata", "url", l.nd.URL)
	return nil
}

// startPulsed starts a new lifetime of pulsed (fresh state, the autoscaler on,
// the lab's Netdata if it has one, changed last so that it overrides) and
// waits for it; it returns the settings that are not defaults.
func (l *pulseLab) startPulsed(ctx context.Context, changed ...string) ([]string, error) {
	n := len(l.pulsedLogs) + 1
	l.stateDir = filepath.Join(l.env.tmp, fmt.Sprintf("state-%d", n))
	if err := os.Mkdir(l.stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	cfgFile := filepath.Join(l.env.tmp, "pulsed.yaml")
	if err := os.WriteFile(cfgFile, []byte("# pulse bench: every setting comes from PULSE_* variables\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pulsed config: %w", err)
	}
	changed = append([]string{"PULSE_INSTANCE=" + benchInstance(l.run), "PULSE_SELECTOR=" + runLabel + "=" + l.run}, changed...)
	async, err := asyncEnv()
	if err != nil {
		return nil, err
	}
	env := append(append(baseEnv(), async...), "PULSE_STATE_DIR="+l.stateDir,
		"PULSE_API_LISTEN="+l.apiAddr, "PULSE_GATEWAY_LISTEN="+l.gwAddr, "PULSE_ADMIN_LISTEN="+l.adminAddr, "PULSE_COLDSTART_LISTEN="+l.coldAddr,
		"PULSE_LEAVE_RUNNING=false", "PULSE_HAPROXY="+l.haproxy, "PULSE_AUTOSCALE=true", l.cred.pulsedEnv())
	if l.nd != nil {
		env = append(env, "PULSE_NETDATA_URL="+l.nd.URL, "PULSE_ALARM_TOKEN_FILE="+l.tokenFile)
	}
	env = append(env, changed...)
	l.pulsedLog = filepath.Join(l.env.tmp, fmt.Sprintf("pulsed-%d.log", n))
	l.pulsedLogs = append(l.pulsedLogs, l.pulsedLog)
	l.pulsed, err = startServer(launchSpec{Bin: l.arts.path("pulsed"), Args: []string{"-config", cfgFile}, Env: env, Addr: l.apiAddr}, l.pulsedLog)
	if err != nil {
		return nil, err
	}
	l.rt = gateway.NewRuntime(filepath.Join(l.stateDir, "haproxy.sock"), time.Second)
	if err := waitReady(ctx, l.pulsed, "http://"+l.apiAddr+"/healthz", l.routeTimeout, nil); err != nil {
		return nil, err
	}
	l.log.Info("pulsed started", "lifetime", n, "api", l.apiAddr, "gateway", l.gwAddr, "settings", changed)
	return changed, nil
}

// stopPulsed ends pulsed's lifetime: SIGTERM (it stops its HAProxy), then
// up to haproxyLinger for HAProxy to be gone. It returns what went wrong.
func (l *pulseLab) stopPulsed() []string {
	if l.pulsed == nil {
		return nil
	}
	var found []string
	if _, err := l.pulsed.stop(l.stopGrace); err != nil {
		found = append(found, "pulsed: "+err.Error())
	}
	l.pulsed = nil
	if pids := reapHAProxies(l.stateDir, haproxyLinger); len(pids) > 0 {
		found = append(found, fmt.Sprintf("haproxy processes %v outlived pulsed: killed", pids))
	}
	return found
}
