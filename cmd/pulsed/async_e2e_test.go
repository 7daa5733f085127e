package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// flakySource is a fork-mode function that logs every execution with the
// async request id and attempt it was given, sleeps 20 ms, and fails (exit
// 1: the watchdog answers 500) one time in three.
const flakySource = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
int main(void){const char*id=getenv("HTTP_X_PULSE_REQUEST_ID"),*at=getenv("HTTP_X_PULSE_ATTEMPT");
char b[4096];while(read(0,b,sizeof b)>0){}
struct timespec ts;clock_gettime(CLOCK_REALTIME,&ts);srand((unsigned)(ts.tv_nsec^getpid()));
usleep(20000);int fail=rand()%3==0;
fprintf(stderr,"exec %s %s %s\n",id?id:"-",at?at:"-",fail?"fail":"ok");fflush(stderr);
if(fail)return 1;printf("ok %s",id?id:"-");return 0;}
`

// callbackSink records the callbacks pulsed posts, by request id.
type callbackSink struct {
	mu    sync.Mutex
	got   map[string][]sinkCall
	addr  string
	close func()
}

type sinkCall struct {
	state, status, body, attempt string
}

func newCallbackSink(t *testing.T) *callbackSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &callbackSink{got: map[string][]sinkCall{}, addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		id := r.Header.Get(contract.HeaderAsyncRequestID)
		s.got[id] = append(s.got[id], sinkCall{state: r.Header.Get(contract.HeaderAsyncState),
			status: r.Header.Get(contract.HeaderAsyncStatus), body: string(b), attempt: r.Header.Get(contract.HeaderAttempt)})
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	s.close = func() { _ = srv.Close() }
	t.Cleanup(s.close)
	return s
}

func (s *callbackSink) calls(id string) []sinkCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkCall(nil), s.got[id]...)
}

// pulsedProcess runs the pulsed binary with a configuration file, so a test
// can SIGKILL it.
type pulsedProcess struct {
	t        *testing.T
	bin, cfg string
	cmd      *exec.Cmd
	log      *os.File
	stopped  bool
}

// startPulsedProcess builds pulsed and writes its configuration (cfg's
// instance, state and credential files, the addresses given, autoscale off,
// HAProxy stopped with pulsed, plus extra YAML); the caller starts it.
// Cleanup kills a HAProxy a killed pulsed left and shows pulsed's log when
// the test failed.
func startPulsedProcess(t *testing.T, cfg Config, dir, api, gw, admin, asyncAddr, dispatch, extra string) *pulsedProcess {
	t.Helper()
	conf := fmt.Sprintf(`api_listen: %q
gateway_listen: %q
admin_listen: %q
state_dir: %q
instance: %q
replica_auth_file: %q
api_token_file: %q
autoscale: false
leave_running: false
async_listen: %q
async_dispatch_listen: %q
`, api, gw, admin, cfg.StateDir, cfg.Instance, cfg.ReplicaAuthFile, cfg.APITokenFile, asyncAddr, dispatch) + extra
	cfgFile := filepath.Join(dir, "pulsed.yaml")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pulsed")
	goBuild(t, bin, ".")
	logf, err := os.Create(filepath.Join(dir, "pulsed.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// HAProxy outlives a killed pulsed; the last pulsed stops it, and
		// this makes sure of it.
		if b, err := os.ReadFile(filepath.Join(cfg.StateDir, "haproxy.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("pulsed's log:\n%s", lastLines(string(b), 60))
		}
		logf.Close()
	})
	return &pulsedProcess{t: t, bin: bin, cfg: cfgFile, log: logf}
}

// stopOnce stops pulsed (SIGTERM) unless it was stopped already.
func (p *pulsedProcess) stopOnce() {
	if !p.stopped {
		p.stopped = true
		p.stop()
	}
}

// rssKiB is pulsed's resident memory.
func (p *pulsedProcess) rssKiB() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

func (p *pulsedProcess) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "--config", p.cfg)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	// pulsed dies with the test, however the test ends.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pulsedProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (p *pulsedProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("pulsed did not stop within 30s of SIGTERM")
		p.kill()
	}
}

// rawAsync sends one async request over its own connection (never retried)
// and returns the status, the request id and the body.
func rawAsync(gw, fn, callback, body string) (int, string, string, error) {
	c, err := net.DialTimeout("tcp", gw, 2*time.Second)
	if err != nil {
		return 0, "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	cb := ""
	if callback != "" {
		cb = contract.HeaderCallbackURL + ": " + callback + "\r\n"
	}
	if _, err := fmt.Fprintf(c, "POST %s%s HTTP/1.1\r\nHost: gw\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		contract.AsyncFunctionPrefix, fn, cb, len(body), body); err != nil {
		return 0, "", "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get(contract.HeaderAsyncRequestID), string(b), nil
}

// TestAsyncSurvivesKill on the real stack: 1 000 async requests to a
// function that fails one time in three (retried: retry_500), with pulsed
// killed (SIGKILL) and restarted while the queue is full. Every accepted
// request ends done (or failed after its retries), none is lost; the
// executions the function logged match the at-least-once rule (every
// request ran; more runs than recorded attempts only for the few in flight
// at the kill); every request's callback arrives; a callback to a refused
// address is rejected at enqueue.
func TestAsyncSurvivesKill(t *testing.T) {
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	dir := t.TempDir()
	cfg.StateDir = filepath.Join(dir, "state")
	apiPort, gwPort, adminPort := freePort(t), freePort(t), freePort(t)
	asyncPort, dispatchPort := freePort(t), freePort(t)
	sink := newCallbackSink(t)
	token := e.tag + "-api-token-0123456789"
	if err := os.WriteFile(cfg.APITokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPulsedProcess(t, cfg, dir, apiPort, gwPort, adminPort, asyncPort, dispatchPort,
		fmt.Sprintf("async_ack_wait: 5s\nasync_callback_allow: [%q]\n", sink.addr))

	src := filepath.Join(dir, "flaky.c")
	if err := os.WriteFile(src, []byte(flakySource), 0o644); err != nil {
		t.Fatal(err)
	}
	flaky := filepath.Join(dir, "flaky")
	if out, err := exec.Command("gcc", "-static", "-O2", "-s", "-o", flaky, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	flakyBin, _ := os.ReadFile(flaky)
	fn := "flaky-" + e.tag
	const concurrency = 8
	policy := contract.AsyncPolicy{Retries: 12, MaxAge: 10 * time.Minute, Concurrency: concurrency, Retry500: true}
	e.deployFunc(fn, "v1", deployment{fn: flakyBin, labels: map[string]string{contract.LabelAsync: policy.String()}})
	e.scale(fn, 2)

	p.start()
	defer p.stopOnce()
	waitRoute(t, gwPort, "/function/"+fn+"?warm") // may answer 500: waitRoute wants 200
	// A callback to pulsed's own API is refused at enqueue.
	code, _, body, err := rawAsync(gwPort, fn, "http://"+apiPort+contract.KeysPath, "x")
	if err != nil || code != http.StatusBadRequest || !strings.Contains(body, "refused") {
		t.Fatalf("callback to pulsed's API: %d %q %v; want 400 refused", code, body, err)
	}
	code, _, body, _ = rawAsync(gwPort, "nosuch-"+e.tag, "", "x")
	if code != http.StatusNotFound {
		t.Errorf("async to a missing function: %d %q; want 404", code, body)
	}

	// 1 000 accepted requests from 4 senders; pulsed is killed after 400
	// and restarted 2 s later. A request refused while it is down (HAProxy's
	// 503) was never accepted: the sender sends it again, as a client would.
	const total, killAt = 1000, 400
	var mu sync.Mutex
	var ids []string
	refused := map[int]int{}
	var sendErrs []string
	killed := make(chan struct{})
	var killOnce sync.Once
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				mu.Lock()
				n := len(ids)
				mu.Unlock()
				if n >= total {
					return
				}
				code, id, body, err := rawAsync(gwPort, fn, "http://"+sink.addr+"/done", "payload")
				mu.Lock()
				switch {
				case err != nil:
					sendErrs = append(sendErrs, err.Error())
				case code == http.StatusAccepted && len(ids) < total:
					var acc contract.AsyncAccepted
					if json.Unmarshal([]byte(body), &acc) != nil || acc.RequestID != id || acc.Function != fn || acc.State != contract.AsyncQueued {
						sendErrs = append(sendErrs, fmt.Sprintf("202 body %q with header id %q", body, id))
					}
					ids = append(ids, id)
					if len(ids) == killAt {
						killOnce.Do(func() { close(killed) })
					}
				case code != http.StatusAccepted:
					refused[code]++
				}
				mu.Unlock()
				if code != http.StatusAccepted {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	<-killed
	p.kill()
	t.Logf("pulsed killed after %d accepted requests", killAt)
	time.Sleep(2 * time.Second)
	p.start()
	wg.Wait()
	t.Logf("accepted %d; refused while pulsed was down: %v; send errors: %d", len(ids), refused, len(sendErrs))
	// 503 while pulsed is down; 502 only for a request under way at the
	// kill (one per sender at most): its outcome is unknown to the client,
	// which sends it again.
	for code, n := range refused {
		if code != http.StatusServiceUnavailable && !(code == http.StatusBadGateway && n <= 4) {
			t.Errorf("refused with %d (%v); want 503 while pulsed was down, 502 only for the requests in flight at the kill", code, refused)
		}
	}
	if len(sendErrs) > 0 {
		t.Errorf("send errors: %v", sendErrs[:min(5, len(sendErrs))])
	}

	// Every request ends, and its callback arrives.
	states := map[string]contract.AsyncRequest{}
	deadline := time.Now().Add(5 * time.Minute)
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	for _, id := range ids {
		for {
			st, code := getAsync(api, apiPort, token, id)
			if code == http.StatusOK && (st.State == contract.AsyncDone || st.State == contract.AsyncFailed) &&
				st.CallbackState != contract.CallbackPending {
				states[id] = st
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("request %s: %d %+v after 5 min; want done or failed with its callback delivered", id, code, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var done, failed, dupCallbacks int
	for _, id := range ids {
		st := states[id]
		switch {
		case st.State == contract.AsyncDone && st.Status == http.StatusOK:
			done++
		case st.State == contract.AsyncFailed && st.Attempts == policy.Retries+1:
			failed++
		default:
			t.Errorf("request %s: %+v; want done 200, or failed after %d attempts", id, st, policy.Retries+1)
		}
		if st.CallbackState != contract.CallbackDelivered {
			t.Errorf("request %s: callback %s %q", id, st.CallbackState, st.CallbackError)
		}
		calls := sink.calls(id)
		if len(calls) == 0 {
			t.Errorf("request %s: no callback received", id)
			continue
		}
		dupCallbacks += len(calls) - 1
		last := calls[len(calls)-1]
		if last.state != st.State || (st.State == contract.AsyncDone && (last.status != "200" || last.body != "ok "+id)) {
			t.Errorf("request %s: callback %+v; want state %s, status 200, body %q", id, last, st.State, "ok "+id)
		}
	}
	t.Logf("done %d, failed after retries %d; duplicate callbacks %d", done, failed, dupCallbacks)

	// What the function ran, from its replicas' logs.
	execs, fails := functionExecutions(t, e, fn)
	var extra, retried int
	for _, id := range ids {
		n, st := execs[id], states[id]
		if n == 0 {
			t.Errorf("request %s: the function never ran it", id)
		}
		if fails[id] > 0 {
			retried++
		}
		// At least once: every attempt pulsed recorded ran; a run more than
		// recorded happens only to a request in flight when pulsed was killed.
		if n < st.Attempts-1 {
			t.Errorf("request %s: %d runs logged for %d attempts", id, n, st.Attempts)
		}
		if n > st.Attempts {
			extra++
		}
	}
	t.Logf("runs logged: %d requests retried after a 500; %d ran more often than their recorded attempts", retried, extra)
	if retried < total/5 {
		t.Errorf("only %d requests retried; the function fails one run in three, so want about a third", retried)
	}
	if extra > 2*concurrency*2 {
		t.Errorf("%d requests ran more often than recorded; want only those in flight at the kill (at most %d)", extra, 2*concurrency*2)
	}

	// The queue is empty and says so.
	qs := getQueues(t, api, apiPort)
	for _, q := range qs.Queues {
		if q.Function == fn && (q.Depth != 0 || q.InFlight != 0) {
			t.Errorf("queue after the run: %+v; want empty", q)
		}
	}
	p.stopOnce()
}

func getAsync(c *http.Client, api, token, id string) (contract.AsyncRequest, int) {
	var st contract.AsyncRequest
	req, _ := http.NewRequest(http.MethodGet, "http://"+api+contract.AsyncRequestsPath+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return st, 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st, resp.StatusCode
}

func getQueues(t *testing.T, c *http.Client, api string) contract.Queues {
	t.Helper()
	var qs contract.Queues
	resp, err := c.Get("http://" + api + contract.QueuesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&qs); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", contract.QueuesPath, resp.StatusCode, err)
	}
	return qs
}

// execLine is the flaky function's line, inside the watchdog's JSON log.
// (A failed run's line is also in the watchdog's "function failed" entry,
// as stderr_tail: only the "line" field counts.)
var execLine = regexp.MustCompile(`"line":"exec ([0-9a-f]{32}) ([0-9]+) (ok|fail)"`)

// functionExecutions counts the runs the flaky function logged, by request
// id, and the failed ones, from its containers' own logs (more complete than
// the swarm's service log stream, which dropped lines under this load).
func functionExecutions(t *testing.T, e *env, fn string) (runs, fails map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := e.cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+fn))})
	if err != nil || len(list) == 0 {
		t.Fatalf("containers of %s: %d, %v", fn, len(list), err)
	}
	runs, fails = map[string]int{}, map[string]int{}
	for _, c := range list {
		rc, err := e.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStderr: true, ShowStdout: true})
		if err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		go func() { _, err := stdcopy.StdCopy(pw, pw, rc); pw.CloseWithError(err) }()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if m := execLine.FindStringSubmatch(sc.Text()); m != nil {
				runs[m[1]]++
				if m[3] == "fail" {
					fails[m[1]]++
				}
			}
		}
		rc.Close()
	}
	return runs, fails
}

// rawRequest sends one request over its own connection and returns the
// status and body.
func rawRequest(t *testing.T, addr, method, path string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var h strings.Builder
	for k, v := range hdr {
		fmt.Fprintf(&h, "%s: %s\r\n", k, v)
	}
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: gw\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s", method, path, h.String(), len(body), body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAsyncSustained on the real stack, one pulsed process and one function
// limited to 2 requests/s:
//   - the async route keeps the gateway's rules (404 for the watchdog's
//     reserved space and for an unknown function, 413 over the function's
//     max body), and the async listener and the dispatch frontend take nobody
//     but their own (403);
//   - for 60 s, async enqueues at 100/s over 4 keep-alive connections while
//     sync clients push 10/s at the same function: enqueueing is not held to
//     the rate limit, nor is the dispatcher (no request is retried: a 429
//     would be), while the sync clients get 429s;
//   - it counts what a peer would: every answer, connections opened,
//     TIME_WAIT sockets on the gateway's, pulsed's async and the dispatch
//     ports, HAProxy's connect vs reuse towards pulsed and the replica, and
//     pulsed's memory after the load and after the queue drained; every
//     request ends done.
func TestAsyncSustained(t *testing.T) {
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	dir := t.TempDir()
	cfg.StateDir = filepath.Join(dir, "state")
	api, gw, admin, asyncAddr, dispatch := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	p := startPulsedProcess(t, cfg, dir, api, gw, admin, asyncAddr, dispatch, "")
	fn := "asus-" + e.tag
	e.deployFunc(fn, "v1", deployment{fn: e.echoBin, env: map[string]string{"VERSION": "v1"},
		rateLimit: &contract.RateLimit{Requests: 2, Per: time.Second, By: contract.RateByFunction},
		labels:    map[string]string{contract.LabelAsync: contract.AsyncPolicy{Retries: 3, MaxAge: time.Hour, Concurrency: 8}.String()}})
	p.start()
	defer p.stopOnce()
	waitRoute(t, gw, "/function/"+fn)
	rssBefore := p.rssKiB()

	for _, c := range []struct {
		name, path string
		body       string
		code       int
		want       string
	}{
		{"reserved space", contract.AsyncFunctionPrefix + fn + "/_/health", "x", 404, `{"error":"not found"}`},
		{"encoded reserved space", contract.AsyncFunctionPrefix + fn + "/%5F/health", "x", 404, `{"error":"not found"}`},
		{"unknown function", contract.AsyncFunctionPrefix + "nosuch-" + e.tag, "x", 404, `"function not found"`},
		{"body over max_body", contract.AsyncFunctionPrefix + fn, strings.Repeat("x", 1<<20+1), 413, `"request body too large"`},
	} {
		code, body := rawRequest(t, gw, "POST", c.path, nil, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q; want %d with %s", c.name, code, body, c.code, c.want)
		}
	}
	// Nobody but HAProxy enqueues, nobody but pulsed dispatches.
	if code, body := rawRequest(t, asyncAddr, "POST", "/", map[string]string{contract.HeaderFunction: fn}, "x"); code != 403 {
		t.Errorf("async listener without the replica credential: %d %q; want 403", code, body)
	}
	for _, tok := range []string{"", "wrong-token-0123456789"} {
		h := map[string]string{}
		if tok != "" {
			h[contract.HeaderDispatch] = tok
		}
		if code, body := rawRequest(t, dispatch, "POST", "/function/"+fn, h, "x"); code != 403 || !strings.Contains(body, "forbidden") {
			t.Errorf("dispatch frontend with token %q: %d %q; want 403", tok, code, body)
		}
	}

	const rate, conns, window = 100, 4, 60 * time.Second
	ports := []int{}
	for _, a := range []string{gw, asyncAddr, dispatch} {
		_, ps, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(ps)
		ports = append(ports, n)
	}
	end := make(chan struct{})
	tw := peakTimeWaitOn(ports, end)
	load := startStatusLoad(gw, contract.AsyncFunctionPrefix+fn, rate, conns, end)
	syncLoad := startStatusLoad(gw, "/function/"+fn, 10, 1, end)
	time.Sleep(window)
	close(end)
	took := load.wait()
	syncLoad.wait()
	peakTW := <-tw
	rssLoad := p.rssKiB()
	sent := 0
	for _, n := range load.codes {
		sent += n
	}
	t.Logf("async: %d requests in %v: %v; failures %v; %d connections; peak TIME_WAIT %d", sent, took.Round(time.Millisecond), load.codes, load.failures, load.connects, peakTW)
	t.Logf("sync clients at 10/s meanwhile: %v, failures %v", syncLoad.codes, syncLoad.failures)
	if len(load.failures) > 0 || len(load.codes) != 1 || load.codes[http.StatusAccepted] < int(0.9*rate*window.Seconds()) {
		t.Errorf("answers %v, failures %v; want every request answered 202 (enqueueing is not rate limited)", load.codes, load.failures)
	}
	if syncLoad.codes[http.StatusTooManyRequests] == 0 || len(syncLoad.failures) > 0 {
		t.Errorf("sync clients: %v, failures %v; want 429s: the rate limit holds for them", syncLoad.codes, syncLoad.failures)
	}
	if load.connects > 2*conns {
		t.Errorf("%d connections for %d requests; want the %d kept alive", load.connects, sent, conns)
	}
	if peakTW > 50 {
		t.Errorf("%d sockets in TIME_WAIT at the peak; want a handful (connections kept alive on every hop)", peakTW)
	}

	// Every request ends done, none retried: the dispatcher is not held to
	// the function's 2/s.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(2 * time.Minute)
	var q contract.QueueStatus
	for {
		for _, s := range getQueues(t, c, api).Queues {
			if s.Function == fn {
				q = s
			}
		}
		if q.Depth == 0 && q.Done+q.Failed >= uint64(load.codes[http.StatusAccepted]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue after 2 min: %+v; want empty with %d done", q, load.codes[http.StatusAccepted])
		}
		time.Sleep(250 * time.Millisecond)
	}
	if q.Failed != 0 || q.Retried != 0 || q.Done != uint64(load.codes[http.StatusAccepted]) || q.Enqueued != q.Done {
		t.Errorf("queue %+v; want %d enqueued and done, none retried or failed", q, load.codes[http.StatusAccepted])
	}
	rssDrained := p.rssKiB()
	t.Logf("pulsed's RSS: %d KiB before, %d KiB after the load, %d KiB drained", rssBefore, rssLoad, rssDrained)
	if rssDrained > 200<<10 {
		t.Errorf("pulsed's RSS %d KiB after %d async requests; want under 200 MiB", rssDrained, sent)
	}
	rt := gateway.NewRuntime(filepath.Join(cfg.StateDir, "haproxy.sock"), 2*time.Second)
	if _, checked := checkReuse(t, rt, "pulse_async", 1000); checked == 0 {
		t.Errorf("HAProxy → pulsed's async listener: no server took 1 000 requests: the reuse check said nothing")
	}
	if _, checked := checkReuse(t, rt, gateway.BackendName(fn), 1000); checked == 0 {
		t.Errorf("dispatches: no replica took 1 000 requests: the reuse check said nothing")
	}
	p.stopOnce()
}

// peakTimeWaitOn samples the TIME_WAIT sockets on the given local or remote
// ports every second until stop is closed; the channel yields the peak.
func peakTimeWaitOn(ports []int, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		peak := 0
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			n := 0
			for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
				b, _ := os.ReadFile(f)
				for _, l := range strings.Split(string(b), "\n") {
					fields := strings.Fields(l)
					if len(fields) <= 3 || fields[3] != "06" {
						continue
					}
					for _, a := range fields[1:3] {
						_, hexPort, _ := strings.Cut(a, ":")
						if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && slices.Contains(ports, int(p)) {
							n++
							break
						}
					}
				}
			}
			peak = max(peak, n)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}
