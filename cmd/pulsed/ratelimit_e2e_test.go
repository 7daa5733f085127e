package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
