package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/pulsefaas/pulse/alarms"
	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/function"
	"github.com/pulsefaas/pulse/internal/netdatalab"
)

// autoLab is the whole autoscaling loop on this machine, owned by one test:
// a private Netdata running the real pulse.d.plugin and Pulse's health
// templates, whose exec: runs the real hook against this test's pulsed; the
// pulsed (scaler, gateway, cold start) sees only the test's functions
// (instance <tag>).
type autoLab struct {
	t      *testing.T
	e      *env
	cfg    Config
	nd     *netdatalab.Netdata
	token  string
	sleepy []byte
	stop   func() // stops the running pulsed
}

const autoLabWindow = 10 * time.Second

func newAutoLab(t *testing.T) *autoLab {
	t.Helper()
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen, cfg.ColdStartListen = freePort(t), freePort(t), freePort(t), freePort(t)
	return startAutoLab(t, e, cfg)
}

// startAutoLab starts the lab Netdata (plugin, templates, hook) for cfg's
// pulsed and then that pulsed, with the scaler's test settings; e has
// given cfg its instance (useInstance).
func startAutoLab(t *testing.T, e *env, cfg Config) *autoLab {
	t.Helper()
	if err := netdatalab.Available(); err != nil {
		if os.Getenv("PULSE_TEST_REQUIRE_ENGINE") != "" {
			t.Fatalf("needs Netdata: %v", err)
		}
		t.Skipf("needs Netdata: %v", err)
	}
	// Netdata (as user netdata) runs the plugin and the hook and reads the
	// token: a directory it can read, not the test's 0700 temp dir.
	dir, err := os.MkdirTemp("", "pulse-autoscale-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goBuild(t, filepath.Join(dir, "pulse.d.plugin"), "../pulse.d.plugin")
	goBuild(t, filepath.Join(dir, "pulse-alarm-hook"), "../pulse-alarm-hook")
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	l := &autoLab{t: t, e: e, token: hex.EncodeToString(raw)}
	tokenFile := filepath.Join(dir, "alarm-token")
	if err := os.WriteFile(tokenFile, []byte(l.token+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if g, err := user.LookupGroup("netdata"); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		_ = os.Chown(tokenFile, 0, gid)
	}

	state := cfg.StateDir
	cfg.Autoscale = true
	cfg.CheckInterval = 500 * time.Millisecond
	cfg.LeaveRunning = true // HAProxy keeps serving across the restart test
	cfg.AlarmTokenFile = tokenFile
	cfg.ScaleWindow, cfg.ResyncInterval, cfg.IdleCheck = autoLabWindow, time.Second, 500*time.Millisecond
	t.Cleanup(func() { killHAProxy(state) })

	// Netdata runs exec: as one quoted word, so the hook takes this lab's
	// pulsed and token from the environment Netdata passes on.
	health := strings.ReplaceAll(alarms.Templates(), alarms.HookPath, filepath.Join(dir, "pulse-alarm-hook"))
	var ndLog io.Writer
	if testing.Verbose() {
		ndLog = os.Stderr
	}
	nd, err := netdatalab.Start(context.Background(), netdatalab.Config{
		Plugin: filepath.Join(dir, "pulse.d.plugin"),
		PluginConfig: netdatalab.JobConfig("http://"+cfg.APIListen+contract.CatalogPath, "http://"+cfg.AdminListen+"/metrics",
			netdatalab.WithReplicaAuthFile(cfg.ReplicaAuthFile)),
		Health: health, Stderr: ndLog,
		Env: []string{"PULSE_ALARM_URL=http://" + cfg.APIListen + contract.AlarmsPath, "PULSE_ALARM_TOKEN_FILE=" + tokenFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lab Netdata's error log (tail):\n%s", lastLines(nd.ErrorLog(), 40))
		}
		nd.Stop()
	})
	l.nd = nd
	cfg.NetdataURL = nd.URL
	l.cfg = cfg
	l.sleepy = buildSleepy(t)
	l.stop = pulsedUnder(t, cfg)
	t.Cleanup(func() { l.stop() })
	return l
}

func killHAProxy(state string) {
	raw, err := os.ReadFile(filepath.Join(state, "haproxy.pid"))
	if err != nil {
		return
	}
	var pid int
	fmt.Sscan(string(raw), &pid)
	if p, err := os.FindProcess(pid); err == nil && pid > 0 {
		_ = p.Kill()
	}
}

// buildSleepy compiles the test function: it reads the body, sleeps
// SLEEP_MS (default 100) milliseconds and echoes the body, so that
// concurrent requests become in-flight requests the scaler can see.
func buildSleepy(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "sleepy.c")
	if err := os.WriteFile(src, []byte(`#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(void){char b[65536];ssize_t n,t=0;while((n=read(0,b+t,sizeof b-t))>0)t+=n;
const char*s=getenv("SLEEP_MS");long ms=s?atol(s):100;struct timespec d={ms/1000,(ms%1000)*1000000L};nanosleep(&d,0);
if(t>0&&write(1,b,t)!=t)return 1;return 0;}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sleepy")
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deploy deploys a sleepy fork-mode function with the given policy, of this
// lab's instance, and waits for its first replica.
func (l *autoLab) deploy(name string, scale function.Scale) {
	l.t.Helper()
	l.e.deployFunc(name, "test", deployment{fn: l.sleepy, scale: scale, labels: map[string]string{"pulse.test": l.e.tag}})
}

// replicas is the service's replica count as Swarm has it.
func (l *autoLab) replicas(name string) int {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, _, err := l.e.cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	if svc.Spec.Mode.Replicated == nil || svc.Spec.Mode.Replicated.Replicas == nil {
		l.t.Fatalf("%s is not a replicated service", name)
	}
	return int(*svc.Spec.Mode.Replicated.Replicas)
}

// api calls pulsed's API with the token.
func (l *autoLab) api(method, path string, body []byte, into any) (int, string) {
	l.t.Helper()
	req, err := http.NewRequest(method, "http://"+l.cfg.APIListen+path, bytes.NewReader(body))
	if err != nil {
		l.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if into != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, into); err != nil {
			l.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, string(raw)
}

// metric reads one sample of pulsed's /metrics (0 if absent); series is
// the name with its labels as pulsed writes them.
func (l *autoLab) metric(series string) float64 {
	l.t.Helper()
	resp, err := http.Get("http://" + l.cfg.APIListen + contract.PulsedMetricsPath)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// events returns the scaler's decisions for fn.
func (l *autoLab) events(fn string) []contract.ScaleEvent {
	l.t.Helper()
	var evs contract.ScaleEvents
	if code, body := l.api(http.MethodGet, contract.EventsPath, nil, &evs); code != http.StatusOK {
		l.t.Fatalf("GET %s: %d %s", contract.EventsPath, code, body)
	}
	var out []contract.ScaleEvent
	for _, ev := range evs.Events {
		if ev.Function == fn {
			out = append(out, ev)
		}
	}
	return out
}

// logSeries logs the last n seconds of the function's demand inputs: the
// replicas' in-flight sum, HAProxy's sessions and the demand the scaler uses.
func (l *autoLab) logSeries(fn string, n int64) {
	l.t.Helper()
	for _, c := range []struct{ suffix, dim string }{
		{contract.ChartInflight, contract.DimInflight},
		{contract.ChartGatewayDemand, contract.DimSessions},
		{contract.ChartDemand, contract.DimDemand},
		{contract.ChartUtilization, contract.DimUtilization},
	} {
		d, err := l.nd.DataRange(context.Background(), contract.Chart(fn, c.suffix), -n, 0)
		if err != nil {
			l.t.Logf("%s: %v", c.suffix, err)
			continue
		}
		l.t.Logf("%s %s, newest first: %v", c.suffix, c.dim, d.Column(c.dim))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func (l *autoLab) waitFor(what string, limit time.Duration, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitCharts waits until the function's utilisation chart has data and
// its scale-up alarm has left UNINITIALIZED (Netdata needs a few seconds).
func (l *autoLab) waitCharts(fn string) {
	l.t.Helper()
	chart := contract.Chart(fn, contract.ChartUtilization)
	l.waitFor("utilisation chart and its alarms in Netdata", 60*time.Second, func() bool {
		st, err := l.nd.AlarmStatus(context.Background(), contract.AlarmScaleUp, chart)
		return err == nil && st != "UNINITIALIZED" && st != "UNDEFINED"
	})
}

// stepScale is the policy of the scaling tests' functions: target 2 in
// flight per replica, so 10 closed-loop clients on the 100 ms function are
// 5× one replica; max 20, so that a jump to max cannot pass for 5 ± 1.
var stepScale = function.Scale{Metric: "inflight", Target: 2, Min: 1, Max: 20}

// deployReady deploys fn with the scale policy and waits until the gateway
// routes it and Netdata's alarms on it are initialised.
func (l *autoLab) deployReady(fn string, scale function.Scale) {
	l.t.Helper()
	l.deploy(fn, scale)
	waitRoute(l.t, l.cfg.GatewayListen, "/function/"+fn)
	l.waitCharts(fn)
}

func ups(evs []contract.ScaleEvent) (n int) {
	for _, ev := range evs {
		if ev.To > ev.From {
			n++
		}
	}
	return n
}

// TestAutoscaleStep: a 5× step through HAProxy scales 1 → 5 ± 1 in one
// decision; replayed and reordered alarms change nothing; when the load
// stops the function returns to min, at most halving per window.
func TestAutoscaleStep(t *testing.T) {
	l := newAutoLab(t)
	fn := "as-step-" + l.e.tag
	l.deployReady(fn, stepScale)

	// 10 clients in a closed loop on a 100 ms function: 10 in flight, 5× the
	// target of one replica.
	start := time.Now()
	load := startLoad(l.cfg.GatewayListen, "/function/"+fn, 10)
	l.waitFor("the first scale-up decision", 30*time.Second, func() bool { return ups(l.events(fn)) > 0 })
	first := l.events(fn)[0]
	latency := "none: the periodic evaluation decided"
	if first.LatencyMS != nil {
		latency = fmt.Sprintf("%v ms since the alarm", *first.LatencyMS)
	}
	t.Logf("step → decision %d → %d after %.1fs (%s; %s)", first.From, first.To, time.Since(start).Seconds(), first.Reason, latency)
	if first.From != 1 || first.To < 4 || first.To > 6 {
		t.Errorf("first decision %d → %d, want 1 → 5 ± 1", first.From, first.To)
	}
	// Steady under the same load: no second decision while the new replicas
	// start and take their share.
	time.Sleep(12 * time.Second)
	l.logSeries(fn, 12)
	evs := l.events(fn)
	if ups(evs) != 1 || len(evs) != 1 {
		t.Errorf("decisions under a steady 5× load: %+v, want exactly one", evs)
	}

	// Netdata's alarm reached pulsed through the real hook (the first
	// decision may come from it or from the periodic evaluation, whichever
	// runs first; both size the same way).
	l.waitFor("a scale-up alarm from Netdata through the hook", 20*time.Second, func() bool {
		n := 0.0
		for _, r := range []string{"accepted", "duplicate", "reordered", "stale"} {
			n += l.metric(`pulsed_scaler_alarms_total{result="` + r + `"}`)
		}
		return n > 0
	})
	// Replay a scale-up alarm for the function, and older and newer ones
	// (reordered): the scaler re-reads the truth, so nothing changes.
	when := time.Now().Unix()
	for _, uid := range []uint64{1000, 1000, 999, 2000, 1} {
		ev := contract.AlarmEvent{UniqueID: uid, AlarmID: 1, EventID: 1, When: when, Alarm: contract.AlarmScaleUp,
			Chart: contract.Chart(fn, contract.ChartUtilization), Function: fn,
			Status: contract.AlarmCritical, OldStatus: contract.AlarmClear, Value: 500}
		body, _ := json.Marshal(ev)
		if code, resp := l.api(http.MethodPost, contract.AlarmsPath, body, nil); code != http.StatusAccepted {
			t.Errorf("replayed alarm: %d %s", code, resp)
		}
	}
	time.Sleep(3 * time.Second)
	if evs := l.events(fn); len(evs) != 1 {
		t.Errorf("replayed and reordered alarms caused decisions: %+v", evs)
	}
	ok, failures, why := load.end()
	t.Logf("under the step: %d ok, %d failed %v", ok, len(failures), why)
	if len(failures) > 0 {
		t.Errorf("%d failed requests under the step: %v", len(failures), why)
	}

	// Load gone: back to min within a few windows, at most half per step.
	stopped := time.Now()
	l.waitFor("back to min", 8*autoLabWindow, func() bool { return l.replicas(fn) == 1 })
	downs := l.events(fn)[1:]
	t.Logf("back to 1 replica %.0fs after the load stopped: %d steps", time.Since(stopped).Seconds(), len(downs))
	var last time.Time
	for _, ev := range downs {
		if ev.To >= ev.From || ev.To < int(math.Ceil(float64(ev.From)/2)) {
			t.Errorf("scale-down step %d → %d: want at most half", ev.From, ev.To)
		}
		if !last.IsZero() && ev.Time.Sub(last) < autoLabWindow-time.Second {
			t.Errorf("scale-down steps %v apart, within one window (%v)", ev.Time.Sub(last), autoLabWindow)
		}
		last = ev.Time
	}
	// At the floor the scale-down alarm has nothing left to do: it clears
	// (within two of its 5 s checks) and stays clear, so an idle function
	// shows no standing warning and the hook is not run for it.
	chart := contract.Chart(fn, contract.ChartUtilization)
	downStatus := func() string {
		st, err := l.nd.AlarmStatus(context.Background(), contract.AlarmScaleDown, chart)
		if err != nil {
			return err.Error()
		}
		return st
	}
	l.waitFor("the scale-down alarm clear at the floor", 15*time.Second, func() bool { return downStatus() == "CLEAR" })
	time.Sleep(6 * time.Second)
	if st := downStatus(); st != "CLEAR" {
		t.Errorf("scale-down alarm at the floor: %s, want CLEAR", st)
	}
}

// TestAutoscaleOscillation: a load swinging around the threshold changes
// direction at most once per window.
func TestAutoscaleOscillation(t *testing.T) {
	l := newAutoLab(t)
	fn := "as-osc-" + l.e.tag
	l.deployReady(fn, stepScale)
	// 3 clients (150 % of one replica) for 3 s, then 1 (50 %) for 3 s, ...
	end := time.Now().Add(40 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		conns := 3
		if i%2 == 1 {
			conns = 1
		}
		load := startLoad(l.cfg.GatewayListen, "/function/"+fn, conns)
		time.Sleep(3 * time.Second)
		if _, failures, why := load.end(); len(failures) > 0 {
			t.Errorf("%d failed requests: %v", len(failures), why)
		}
	}
	evs := l.events(fn)
	t.Logf("decisions: %d", len(evs))
	for i, ev := range evs {
		t.Logf("  %s %d → %d (%s)", ev.Time.Format("15:04:05.0"), ev.From, ev.To, ev.Reason)
		if i < 2 {
			continue
		}
		// A direction change at i-1 and another at i within one window.
		d1, d2 := sign(evs[i-1].To-evs[i-1].From), sign(ev.To-ev.From)
		d0 := sign(evs[i-2].To - evs[i-2].From)
		if d0 != d1 && d1 != d2 && ev.Time.Sub(evs[i-1].Time) < autoLabWindow {
			t.Errorf("two direction changes within one window: %v", evs[i-2:i+1])
		}
	}
}

func sign(n int) int {
	switch {
	case n > 0:
		return 1
	case n < 0:
		return -1
	}
	return 0
}

// TestAutoscaleWebhook: the real pulsed rejects forged, malformed and
// oversized alarms and unknown functions, and a forged CRITICAL alarm for a
// function that is idle changes nothing (the scaler re-reads the truth).
func TestAutoscaleWebhook(t *testing.T) {
	l := newAutoLab(t)
	fn := "as-hook-" + l.e.tag
	l.deployReady(fn, stepScale)
	good, _ := json.Marshal(contract.AlarmEvent{UniqueID: 99, AlarmID: 1, EventID: 1, When: time.Now().Unix(), Alarm: contract.AlarmScaleUp,
		Chart: contract.Chart(fn, contract.ChartUtilization), Function: fn,
		Status: contract.AlarmCritical, OldStatus: contract.AlarmClear, Value: 900})
	unknown := bytes.Replace(good, []byte(fn), []byte("nope-"+l.e.tag), -1)
	post := func(token string, body []byte) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+l.cfg.APIListen+contract.AlarmsPath, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name  string
		token string
		body  []byte
		want  int
	}{
		{"no token", "", good, 401},
		{"forged token", strings.Repeat("0", len(l.token)), good, 401},
		{"malformed", l.token, []byte(`{"function":`), 400},
		{"oversized", l.token, bytes.Repeat([]byte(" "), contract.MaxAlarmBody+1), 413},
		{"unknown function", l.token, unknown, 404},
		{"forged critical for an idle function", l.token, good, 202},
	} {
		if got := post(tc.token, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	time.Sleep(3 * time.Second)
	if evs := l.events(fn); len(evs) != 0 || l.replicas(fn) != 1 {
		t.Errorf("a forged alarm scaled an idle function: %+v, replicas %d", evs, l.replicas(fn))
	}
}

// TestAutoscaleRestart: pulsed restarted in the middle of a scale-up
// neither loses it nor doubles it.
func TestAutoscaleRestart(t *testing.T) {
	l := newAutoLab(t)
	fn := "as-restart-" + l.e.tag
	l.deployReady(fn, stepScale)
	load := startLoad(l.cfg.GatewayListen, "/function/"+fn, 10)
	defer load.end()
	// Restart as soon as the service has been told to scale, before the new
	// replicas run: the new pulsed starts from Swarm's truth.
	l.waitFor("the scale-up", 30*time.Second, func() bool { return l.replicas(fn) > 1 })
	scaledTo := l.replicas(fn)
	l.stop()
	l.stop = pulsedUnder(t, l.cfg)
	t.Logf("pulsed restarted right after the service was scaled 1 → %d", scaledTo)
	// Ten seconds under the same load: the new pulsed keeps it, no second
	// step (a double scaling would take it to ~10 or beyond).
	deadline := time.Now().Add(10 * time.Second)
	peak := 0
	for time.Now().Before(deadline) {
		peak = max(peak, l.replicas(fn))
		time.Sleep(250 * time.Millisecond)
	}
	if scaledTo < 4 || scaledTo > 6 || peak > 6 {
		t.Errorf("scaled to %d, peak %d after the restart; want 5 ± 1 and no more", scaledTo, peak)
	}
	if evs := l.events(fn); ups(evs) != 0 {
		t.Errorf("the restarted pulsed scaled up again: %+v", evs)
	}
	if _, failures, why := load.end(); len(failures) > 0 {
		t.Errorf("%d failed requests across the restart: %v", len(failures), why)
	}
}

// TestScaleToZeroAndBack: a function with scale.idle goes to zero replicas
// when idle and comes back on the next request, with no failed request
// (wrk: socket errors and non-2xx).
func TestScaleToZeroAndBack(t *testing.T) {
	l := newAutoLab(t)
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Fatalf("needs wrk: %v", err)
	}
	fn := "as-zero-" + l.e.tag
	l.deploy(fn, function.Scale{Metric: "inflight", Target: 2, Min: 1, Max: 4, Idle: 3 * time.Second})
	waitRoute(t, l.cfg.GatewayListen, "/function/"+fn)
	wrk := func(d time.Duration) (requests, failed int) {
		t.Helper()
		out, err := exec.Command("wrk", "-t1", "-c4", "-d"+strconv.Itoa(int(d.Seconds()))+"s", "--timeout", "20s",
			"-s", "../../bench/wrk/post.lua", "http://"+l.cfg.GatewayListen+"/function/"+fn).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		var res struct {
			Requests int `json:"requests"`
			Errors   struct {
				Connect, Read, Write, Timeout, Status int
			} `json:"errors"`
		}
		for _, line := range strings.Split(string(out), "\n") {
			if j, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
				if err := json.Unmarshal([]byte(j), &res); err != nil {
					t.Fatal(err)
				}
			}
		}
		e := res.Errors
		return res.Requests, e.Connect + e.Read + e.Write + e.Timeout + e.Status
	}
	n, failed := wrk(2 * time.Second)
	if n == 0 || failed != 0 {
		t.Errorf("warm: %d requests, %d failed", n, failed)
	}
	l.waitFor("scaled to zero when idle", 30*time.Second, func() bool { return l.replicas(fn) == 0 })
	l.waitFor("no replica left", 30*time.Second, func() bool {
		cat, err := http.Get("http://" + l.cfg.APIListen + contract.CatalogPath)
		if err != nil {
			return false
		}
		defer cat.Body.Close()
		var c contract.Catalog
		if json.NewDecoder(cat.Body).Decode(&c) != nil {
			return false
		}
		for _, f := range c.Functions {
			if f.Name == fn {
				return len(f.Replicas) == 0
			}
		}
		return false
	})
	// One cold request, timed, then wrk.
	start := time.Now()
	resp, err := http.Post("http://"+l.cfg.GatewayListen+"/function/"+fn, "text/plain", strings.NewReader("cold"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("cold request: %s %q in %v", resp.Status, body, time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != 200 || string(body) != "cold" {
		t.Errorf("cold request: %s %q", resp.Status, body)
	}
	// Asleep again, then woken by wrk itself: every request answered.
	l.waitFor("scaled to zero again", 30*time.Second, func() bool { return l.replicas(fn) == 0 })
	time.Sleep(2 * time.Second) // its replica drains and goes
	// Long enough that requests held through a slow cold start (seconds on
	// a busy host) are answered within the run: wrk drops what is in flight
	// when its duration ends, without counting it.
	n, failed = wrk(10 * time.Second)
	t.Logf("wrk from zero: %d requests, %d failed", n, failed)
	if n == 0 || failed != 0 {
		t.Errorf("from zero: %d requests, %d failed; want none failed", n, failed)
	}
	evs := l.events(fn)
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, fmt.Sprintf("%s %d→%d", ev.Trigger, ev.From, ev.To))
	}
	t.Logf("decisions: %v", kinds)
	wakes := 0
	for _, ev := range evs {
		if ev.Trigger == contract.TriggerEnsure && ev.From == 0 {
			wakes++
		}
	}
	if wakes != 2 {
		t.Errorf("wake-ups from zero: %d, want 2 (one per cold start, however many requests)", wakes)
	}
}
