package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// rateDo sends one POST to a function on a new connection from the local
// address from (loopback: 127.0.0.1, 127.0.0.2, ...), with an invoke key if
// given, and returns the status, the Retry-After header and the body.
func rateDo(gateway, from, function, key string) (int, string, string, error) {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", gateway)
	if err != nil {
		return 0, "", "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	if _, err := fmt.Fprintf(conn, "POST /function/%s HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n%sContent-Length: 0\r\n\r\n", function, auth); err != nil {
		return 0, "", "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), err
}

// TestHAProxyRateLimit runs rate-limited functions in the real HAProxy: a
// function's excess gets 429 JSON with Retry-After while what it answers
// stays near its limit (only answered requests count), another function
// under the same load is untouched, and the budgets by client and by key are
// each client's and each key's own; a made-up key is refused before it could
// open a budget of its own.
func TestHAProxyRateLimit(t *testing.T) {
	bin := renderHAProxyBin(t)
	rep := func(id string) []contract.Replica {
		return []contract.Replica{{TaskID: id, Node: "n1", Addr: routesReplica(t, id), State: "running"}}
	}
	limit := func(r contract.RateLimit) map[string]string {
		return map[string]string{contract.LabelRateLimit: r.String()}
	}
	cat := contract.Catalog{Version: "test", Functions: []contract.CatalogFunction{
		{Name: "limited", Labels: limit(contract.RateLimit{Requests: 20, Per: time.Second, By: contract.RateByFunction}), Replicas: rep("l1")},
		{Name: "free", Replicas: rep("f1")},
		{Name: "perclient", Labels: limit(contract.RateLimit{Requests: 3, Per: time.Minute, By: contract.RateByClient}), Replicas: rep("c1")},
		{Name: "perkey", Labels: limit(contract.RateLimit{Requests: 3, Per: time.Minute, By: contract.RateByKey}), Replicas: rep("k1")},
	}}
	gateway, admin := routesFreeAddr(t), routesFreeAddr(t)
	keysMap := filepath.Join(t.TempDir(), "keys.map")
	const keyA, keyB = "rate-key-A-0123456789", "rate-key-B-0123456789"
	if err := WriteKeysMap(keysMap, map[string][]string{"perkey": {contract.KeyDigest(keyA), contract.KeyDigest(keyB)}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Render(RenderConfig{
		Listen: gateway, AdminListen: admin, RuntimeSocket: filepath.Join(t.TempDir(), "rt.sock"),
		Balance: BalanceLeastConn, KeysMap: keysMap, ReplicaAuth: routesCred,
	}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, exited := routesStartHAProxy(t, bin, cfg)
	routesPoll(t, "gateway ready", exited, func() error {
		code, _, _, err := rateDo(gateway, "127.0.0.1", "free", "")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})

	// limited (20/s) and free, each pushed by 4 clients for 3 s.
	const window = 3 * time.Second
	type tally struct {
		mu     sync.Mutex
		codes  map[int]int
		retry  map[string]int
		bodies map[string]int
		errs   int
	}
	push := func(fn string) *tally {
		tl := &tally{codes: map[int]int{}, retry: map[string]int{}, bodies: map[string]int{}}
		var wg sync.WaitGroup
		end := time.Now().Add(window)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					code, retry, body, err := rateDo(gateway, "127.0.0.1", fn, "")
					tl.mu.Lock()
					if err != nil {
						tl.errs++
					} else {
						tl.codes[code]++
						if code == 429 {
							tl.retry[retry]++
							tl.bodies[body]++
						}
					}
					tl.mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return tl
	}
	var limited, free *tally
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); limited = push("limited") }()
	go func() { defer both.Done(); free = push("free") }()
	both.Wait()
	limited.mu.Lock()
	free.mu.Lock()
	t.Logf("limited (20/s) under load for %v: %v, Retry-After %v, %d errors; free: %v, %d errors", window, limited.codes, limited.retry, limited.errs, free.codes, free.errs)
	wantBody := `{"error":"rate limit exceeded","function":"limited","limit":20,"per":"1s","by":"function"}` + "\n"
	switch {
	case limited.codes[429] == 0:
		t.Errorf("limited: no 429 under load: %v", limited.codes)
	case len(limited.codes) != 2 || limited.errs != 0:
		t.Errorf("limited: want only 200 and 429, no errors: %v, %d errors", limited.codes, limited.errs)
	case len(limited.retry) != 1 || limited.retry["1"] == 0:
		t.Errorf("limited: Retry-After %v, want 1 on every 429", limited.retry)
	case len(limited.bodies) != 1 || limited.bodies[wantBody] == 0:
		t.Errorf("limited: 429 bodies %v, want %q", limited.bodies, wantBody)
	}
	// HAProxy's rate counter spans the current second and a share of the
	// previous one: over 3 s at 20/s about 60 answers, with a burst of up to
	// one period more at the start. The benchmark measures the rate itself.
	if ok := limited.codes[200]; ok < 40 || ok > 100 {
		t.Errorf("limited (20/s) answered %d in %v; want about 60 (40 to 100)", ok, window)
	}
	if len(free.codes) != 1 || free.codes[200] == 0 || free.errs != 0 {
		t.Errorf("free: %v, %d errors; want only 200s (another function's limit is not its own)", free.codes, free.errs)
	}
	// HAProxy counts each 429 as a request the backend denied (its
	// Prometheus exporter's haproxy_backend_requests_denied_total), which
	// the collector charts as throttled and leaves out of the demand.
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for fn, want := range map[string]int{"limited": limited.codes[429], "free": 0} {
		line := fmt.Sprintf(`haproxy_backend_requests_denied_total{proxy="%s"} %d`, BackendName(fn), want)
		if !strings.Contains(string(page), line+"\n") {
			t.Errorf("HAProxy's metrics lack %q", line)
			for _, l := range strings.Split(string(page), "\n") {
				if strings.Contains(l, "denied") && strings.Contains(l, BackendName(fn)) {
					t.Logf("  %s", l)
				}
			}
		}
	}
	limited.mu.Unlock()
	free.mu.Unlock()

	// By client (3 a minute): each address its own budget.
	sequence := func(from, fn, key string, n int) []int {
		var got []int
		for range n {
			code, _, _, err := rateDo(gateway, from, fn, key)
			if err != nil {
				t.Fatalf("%s from %s: %v", fn, from, err)
			}
			got = append(got, code)
		}
		return got
	}
	if got := sequence("127.0.0.1", "perclient", "", 4); fmt.Sprint(got) != "[200 200 200 429]" {
		t.Errorf("perclient from 127.0.0.1: %v, want [200 200 200 429]", got)
	}
	if got := sequence("127.0.0.2", "perclient", "", 2); fmt.Sprint(got) != "[200 200]" {
		t.Errorf("perclient from 127.0.0.2 after 127.0.0.1 used its budget: %v, want [200 200]", got)
	}
	// By key (3 a minute): each key its own budget; a wrong key is refused
	// (401) and counts for nothing.
	if got := sequence("127.0.0.1", "perkey", keyA, 4); fmt.Sprint(got) != "[200 200 200 429]" {
		t.Errorf("perkey with key A: %v, want [200 200 200 429]", got)
	}
	if got := sequence("127.0.0.1", "perkey", "made-up-key-0123456789", 2); fmt.Sprint(got) != "[401 401]" {
		t.Errorf("perkey with a made-up key: %v, want [401 401]", got)
	}
	if got := sequence("127.0.0.1", "perkey", keyB, 3); fmt.Sprint(got) != "[200 200 200]" {
		t.Errorf("perkey with key B after key A used its budget: %v, want [200 200 200]", got)
	}
}
