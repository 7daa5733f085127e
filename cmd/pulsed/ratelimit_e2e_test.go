package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/gateway"
)

// statusLoad sends POSTs to one path at a fixed rate over keep-alive
// connections, each request written by hand and never retried: an error or
// a closed connection counts as a failure and the next request opens a new
// connection. It counts answers by status, and the 429s' Retry-After and
// bodies.
type statusLoad struct {
	mu        sync.Mutex
	codes     map[int]int
	retry     map[string]int
	bodies    map[string]int
	failures  map[string]int
	connects  int
	startedAt time.Time
	wg        sync.WaitGroup
}

// startStatusLoad sends rate requests per second (over conns connections, each
// with its own ticker) until stop is closed.
func startStatusLoad(gw, path string, rate, conns int, stop <-chan struct{}) *statusLoad {
	l := &statusLoad{codes: map[int]int{}, retry: map[string]int{}, bodies: map[string]int{}, failures: map[string]int{}, startedAt: time.Now()}
	req := []byte("POST " + path + " HTTP/1.1\r\nHost: gateway\r\nContent-Length: 1\r\n\r\nx")
	every := time.Second * time.Duration(conns) / time.Duration(rate)
	for range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				fail := func(why string) {
					l.mu.Lock()
					l.failures[why]++
					l.mu.Unlock()
					if conn != nil {
						conn.Close()
						conn = nil
					}
				}
				if conn == nil {
					c, err := net.DialTimeout("tcp", gw, 2*time.Second)
					if err != nil {
						fail("dial")
						continue
					}
					conn, br = c, bufio.NewReader(c)
					l.mu.Lock()
					l.connects++
					l.mu.Unlock()
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write(req); err != nil {
					fail("write")
					continue
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					fail("read")
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					fail("body")
					continue
				}
				l.mu.Lock()
				l.codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests {
					l.retry[resp.Header.Get("Retry-After")]++
					l.bodies[string(body)]++
				}
				l.mu.Unlock()
				if resp.Close {
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	return l
}

func (l *statusLoad) wait() time.Duration {
	l.wg.Wait()
	return time.Since(l.startedAt)
}

// TestGatewayRateLimit on the real stack (pulsed, its HAProxy, replicas in
// the swarm): a function deployed with rate_limit 50/s under 200 requests/s
// for 60 s answers about 50/s and 429 JSON with Retry-After to the excess,
// on the same keep-alive connections; another function loaded at the same
// time answers every request. A never-retrying client counts every answer.
func TestGatewayRateLimit(t *testing.T) {
	e := newEnv(t)
	cfg := defaults()
	e.useInstance(&cfg)
	cfg.Autoscale = false
	cfg.LeaveRunning = false // HAProxy stops with pulsed
	cfg.StateDir = t.TempDir()
	cfg.APIListen, cfg.GatewayListen, cfg.AdminListen = freePort(t), freePort(t), freePort(t)
	limited, other := "rl-"+e.tag, "rlo-"+e.tag
	const limit, offered, window = 50, 200, 60 * time.Second
	e.deployFunc(limited, "v1", deployment{fn: e.echoBin, env: map[string]string{"VERSION": "v1"},
		rateLimit: &contract.RateLimit{Requests: limit, Per: time.Second, By: contract.RateByFunction}})
	e.deploy(other, "v1")
	stop := pulsedUnder(t, cfg)
	defer stop()
	waitRoute(t, cfg.GatewayListen, "/function/"+other)
	waitRoute(t, cfg.GatewayListen, "/function/"+limited)
	time.Sleep(2 * time.Second) // waitRoute's own requests are out of the limit's window

	_, gwPort, _ := net.SplitHostPort(cfg.GatewayListen)
	port, _ := strconv.Atoi(gwPort)
	end := make(chan struct{})
	tw := peakTimeWait(t, port, end)
	lim := startStatusLoad(cfg.GatewayListen, "/function/"+limited, offered, 4, end)
	oth := startStatusLoad(cfg.GatewayListen, "/function/"+other, 50, 1, end)
	time.Sleep(window)
	close(end)
	took := lim.wait()
	oth.wait()
	peakTW := <-tw

	answered := float64(lim.codes[200]) / took.Seconds()
	t.Logf("limited (%d/s) offered %d/s for %v: %v, %.1f answered/s, Retry-After %v, %d connections, failures %v", limit, offered,
		took.Round(time.Millisecond), lim.codes, answered, lim.retry, lim.connects, lim.failures)
	t.Logf("other (no limit) at 50/s: %v, %d connections, failures %v", oth.codes, oth.connects, oth.failures)
	wantBody := fmt.Sprintf(`{"error":"rate limit exceeded","function":%q,"limit":%d,"per":"1s","by":"function"}`+"\n", limited, limit)
	switch {
	case len(lim.failures) > 0:
		t.Errorf("limited: failed requests %v; want none (a throttled request is answered)", lim.failures)
	case len(lim.codes) != 2 || lim.codes[429] == 0:
		t.Errorf("limited: answers %v; want 200 and 429 only", lim.codes)
	case len(lim.retry) != 1 || lim.retry["1"] == 0:
		t.Errorf("limited: Retry-After %v; want 1 on every 429", lim.retry)
	case len(lim.bodies) != 1 || lim.bodies[wantBody] == 0:
		t.Errorf("limited: 429 bodies %v; want %q", lim.bodies, wantBody)
	}
	// The answered rate is the limit's (the benchmark holds it to 10 %);
	// here a wide band: what is answered is capped, and not starved.
	if answered < limit*0.8 || answered > limit*1.2 {
		t.Errorf("limited answered %.1f/s; want about %d/s", answered, limit)
	}
	// Keep-alive survives the 429s: a handful of connections, not one per request.
	if lim.connects > 8 {
		t.Errorf("limited: %d connections for %d requests; want the 4 kept alive", lim.connects, lim.codes[200]+lim.codes[429])
	}
	if len(oth.failures) > 0 || len(oth.codes) != 1 || oth.codes[200] < int(0.9*50*window.Seconds()) {
		t.Errorf("other: %v, failures %v; want every request answered 200 (another function's limit is not its own)", oth.codes, oth.failures)
	}
	// What a peer counts on the way in and behind HAProxy: TIME_WAIT sockets
	// (keep-alive both ways: a handful), HAProxy's connections to the
	// replicas (reused, not one per request), its memory after the load.
	if peakTW > 50 {
		t.Errorf("%d sockets in TIME_WAIT at the peak; want a handful (connections kept alive)", peakTW)
	}
	rt := gateway.NewRuntime(filepath.Join(cfg.StateDir, "haproxy.sock"), 2*time.Second)
	for _, fn := range []string{limited, other} {
		if _, checked := checkReuse(t, rt, gateway.BackendName(fn), 1000); checked == 0 {
			t.Errorf("%s: no server took 1 000 requests: the reuse check said nothing", fn)
		}
	}
	t.Logf("peak TIME_WAIT %d; HAProxy's RSS after the load: %s", peakTW, haproxyRSS(t, cfg.StateDir))
	if !strings.Contains(lastBody(t, cfg.GatewayListen, other), "v1:x") {
		t.Errorf("other does not answer after the load")
	}
}

func lastBody(t *testing.T, gw, fn string) string {
	t.Helper()
	resp, err := http.Post("http://"+gw+"/function/"+fn, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// haproxyRSS is VmRSS of the HAProxy master whose pid file is in state, and
// of its workers.
func haproxyRSS(t *testing.T, state string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(state, "haproxy.pid"))
	if err != nil {
		return err.Error()
	}
	master := strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0])
	rss := func(pid string) string {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			return "?"
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	out := []string{"master " + rss(master)}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == master {
			pid := strings.TrimSuffix(strings.TrimPrefix(p, "/proc/"), "/stat")
			out = append(out, "worker "+pid+" "+rss(pid))
		}
	}
	return strings.Join(out, ", ")
}
