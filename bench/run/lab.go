package main

// The stack the autoscale and soak suites run on, as it ships, on loopback
// ports the kernel picks: pulsed (cmd/pulsed) as a process with its own
// state directory, HAProxy, scaler, cold-start listener and alarm token; a
// private Netdata (internal/netdatalab) with only pulse.d.plugin, pointed at
// that pulsed's catalog and HAProxy exporter, and the health templates of
// alarms/ whose exec: line runs the built pulse-alarm-hook against that
// pulsed. pulsed runs as its own instance with a selector (the run's
// label), so it routes, watches and scales only the run's functions, and a
// `make up` pulsed on the same swarm leaves them alone. pulsed may be
// stopped and started again (a new lifetime, a fresh state directory) on the
// same ports, so the lab Netdata keeps pointing at it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
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

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/gateway"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// hookInstalled is the exec: path in alarms/health/pulse.conf.
const hookInstalled = "/usr/local/lib/pulse/pulse-alarm-hook"

const (
	// runLabel is the service and image label holding the run's ID;
	// testLabel marks everything as a test's.
	runLabel  = "pulse-bench.run"
	testLabel = "pulse.test"
	// haproxyLinger is how long pulsed's HAProxy may outlive pulsed
	// before it is killed.
	haproxyLinger = 2 * time.Second
	// alarmScaleUp is the scale-up alarm the lab's Netdata raises.
	alarmScaleUp = "pulse_scale_up"
)

// Request paths of the gateway and soak suites.
const (
	pathDirect  = "direct"  // straight to the replica's published port
	pathGateway = "gateway" // through HAProxy, /function/<name>
)

// pulseLab is one run's stack. Its fields are set by open, prepareShared,
// startNetdata and startPulsed, in that order.
type pulseLab struct {
	log     *slog.Logger
	env     suiteEnv
	arts    artifacts
	api     *client.Client
	sw      *function.Swarm
	run     string
	prefix  string // every service and image of the run is named prefix + run + "-…"
	haproxy string // the haproxy binary pulsed runs
	http    *http.Client

	// routeTimeout bounds pulsed's start and a function's routing;
	// stopGrace is how long pulsed has to exit after SIGTERM.
	routeTimeout, stopGrace time.Duration

	shared    string // a directory the netdata user can read: hook, token
	tokenFile string
	token     string
	// cred is the run's replica credential: its file is pulsed's
	// replica_auth_file and the collector's, its secret the replicas'.
	cred *runCredential

	apiAddr, gwAddr, adminAddr, coldAddr string // the same for every lifetime of pulsed

	stateDir   string   // the running (or last) pulsed's
	pulsedLog  string   // the running (or last) pulsed's
	pulsedLogs []string // every lifetime's, in order
	pulsed     *server
	rt         *gateway.Runtime
	nd         *netdatalab.Netdata
	fns        []string // functions deployed and not removed yet
}

func newPulseLab(log *slog.Logger, env suiteEnv, run, prefix, haproxy string, routeTimeout, stopGrace time.Duration) pulseLab {
	return pulseLab{log: log, env: env, run: run, prefix: prefix, haproxy: haproxy, routeTimeout: routeTimeout, stopGrace: stopGrace,
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}}
}

// labHead begins the reports of the suites on the lab: where they ran and
// what they built.
type labHead struct {
	runHead
	Machine   machineInfo `json:"machine"`
	Engine    string      `json:"engine"`
	HAProxy   string      `json:"haproxy"`
	Netdata   string      `json:"netdata"`
	Artifacts []artifact  `json:"artifacts"`
}

// open fills head (the machine, HAProxy's and Netdata's versions) and
// connects to the engine, which must be the manager of a single-node swarm.
func (l *pulseLab) open(ctx context.Context, suite string, head *labHead, end *reportEnd) error {
	*head = labHead{runHead: newRunHead(suite, l.env.started), Machine: collectMachine(ctx, l.env.tools, l.env.clk)}
	if l.env.clkNote != "" {
		end.Notes = append(end.Notes, l.env.clkNote)
	}
	head.HAProxy, _ = haproxyVersion(ctx, l.haproxy)
	head.Netdata, _ = commandOutput(ctx, "/usr/sbin/netdata", "-V")
	api, _, v, err := connectSingleNodeSwarm(ctx, suite, "where every replica runs on this host", callTimeout)
	if err != nil {
		return err
	}
	l.api, l.sw = api, localSwarm(api)
	head.Engine = "Docker Engine " + v.Version + " (API " + v.APIVersion + ")"
	return nil
}

// haproxyVersion returns "HAProxy <version>" from haproxy -v.
func haproxyVersion(ctx context.Context, bin string) (string, error) {
	out, err := commandOutput(ctx, bin, "-v")
	if err != nil {
		return "", err
	}
	return parseHAProxyVersion(out), nil
}

// parseHAProxyVersion shortens haproxy -v's first line to "HAProxy 2.6.12".
func parseHAProxyVersion(out string) string {
	first, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(first)
	if len(f) >= 3 && f[1] == "version" {
		return f[0] + " " + f[2]
	}
	return first
}

// build builds the lab's programs as they ship (pulsed, the plugin, the
// hook, and the fork-mode watchdog as an image gets it) and the suite's
// more, and records them in head; it fails if one did not build.
func (l *pulseLab) build(ctx context.Context, head *labHead, more ...buildStep) error {
	t, dir := l.env.tools, l.env.tmp
	steps := append([]buildStep{
		pulsedStep(t, dir),
		goStep(t, dir, "pulse.d.plugin", "./cmd/pulse.d.plugin", ""),
		goStep(t, dir, "pulse-alarm-hook", "./cmd/pulse-alarm-hook", ""),
		goStep(t, dir, "watchdog", "./cmd/pulse-watchdog", forkTags),
	}, more...)
	arts, recs, err := buildAll(ctx, l.log, l.env.root, steps)
	l.arts = arts
	head.Artifacts = append(head.Artifacts, recs...)
	return err
}

// prepareShared makes what Netdata's user reads, in a directory it can
// enter (removed by cleanup): the built hook (run by Netdata as user
// netdata), the alarm token (0640 root:netdata); and the run's replica
// credential (0640 root:netdata) with its secret, which the run's deploys
// need.
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
	hook, err := os.ReadFile(l.arts.path("pulse-alarm-hook"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.shared, "pulse-alarm-hook"), hook, 0o755); err != nil {
		return fmt.Errorf("install hook: %w", err)
	}
	if err := l.writeToken(); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	l.cred, err = newRunCredential(ctx, l.api, benchInstance(l.run), l.env.tmp)
	return err
}

// writeToken writes a fresh alarm token to the shared directory, readable
// by the netdata group.
func (l *pulseLab) writeToken() error {
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return err
	}
	l.token = hex.EncodeToString(tok[:])
	l.tokenFile = filepath.Join(l.shared, "alarm-token")
	if err := os.WriteFile(l.tokenFile, []byte(l.token+"\n"), 0o640); err != nil {
		return err
	}
	g, err := user.LookupGroup("netdata")
	if err != nil {
		return err
	}
	gid, _ := strconv.Atoi(g.Gid)
	return os.Chown(l.tokenFile, 0, gid)
}

// benchLabels are the labels of every function a run deploys.
func benchLabels(run string) map[string]string {
	return map[string]string{testLabel: "1", runLabel: run}
}

// benchImage assembles spec's image the way `pulse build` lays a function
// out: the in-process binary fn alone (wd nil), or the watchdog wd with fn
// as its handler; labelled with the function's name and spec's labels.
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
		Tag:          function.ImageRepository + spec.Name + ":bench",
		Files:        files,
		Entrypoint:   []string{entry},
		Env:          spec.WatchdogEnv(),
		User:         function.ImageUser,
		ExposedPorts: []string{fmt.Sprintf("%d/tcp", contract.WatchdogPort)},
		Labels:       labels,
	})
}

// deployFunction assembles spec's image (see benchImage) and deploys it as `pulse
// deploy` does on this engine (no Docker health check) with the run's
// instance and labels; it does not wait for the replicas.
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
// replica (not in maintenance) and, if up, that many serving (ready and
// up).
func (l *pulseLab) waitServers(ctx context.Context, fn string, n int, up bool) error {
	return poll(ctx, l.routeTimeout, 20*time.Millisecond, func(late bool) (bool, error) {
		ss, err := l.rt.Servers(ctx, gateway.BackendName(fn))
		last := ""
		if err != nil {
			last = err.Error()
		} else if live, ready := countSlots(ss); live == n && (!up || ready == n) {
			return true, nil
		} else {
			last = fmt.Sprintf("%d servers holding a replica, %d ready and up", live, ready)
		}
		if late {
			return false, fmt.Errorf("HAProxy has not %d servers for %s after %s (last: %s); pulsed log: %s", n, fn, l.routeTimeout, last, l.pulsed.logTail(2000))
		}
		select {
		case <-l.pulsed.done:
			return false, fmt.Errorf("pulsed exited; log: %s", l.pulsed.logTail(2000))
		default:
			return false, nil
		}
	})
}

// waitRouted waits until fn is routed to n replicas, every one serving,
// and a POST of body through the gateway is answered 200 with it.
func (l *pulseLab) waitRouted(ctx context.Context, fn string, n int, body string) error {
	if err := l.waitServers(ctx, fn, n, true); err != nil {
		return err
	}
	return probe(ctx, "http://"+l.gwAddr+"/function/"+fn, body, nil)
}

// keepLogs copies every pulsed lifetime's log, the lab Netdata's error log
// and extra (file name → content) to a new directory named after what and
// returns it ("" when it could not).
func (l *pulseLab) keepLogs(what string, extra map[string]string) string {
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
	for name, s := range extra {
		_ = os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644)
	}
	return dir
}

// cleanup stops Netdata and pulsed, kills any HAProxy of the run, removes
// the run's functions and anything else of the run on the engine (services,
// containers, images), then the run's replica credential (secret and file),
// and the shared directory. It is safe to call twice; it returns what it
// found left over.
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
