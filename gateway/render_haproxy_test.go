package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// routesKey is the invoke key of the "keyed" function in TestHAProxyRoutes;
// routesCred is the replica credential its HAProxy sends, which the
// stand-in replicas require on health checks and echo on requests.
const (
	routesKey  = "s3cret-Key_42"
	routesCred = "routes-replica-credential-0123"
)

// routesUUID is what a generated X-Request-ID looks like (HAProxy's uuid).
var routesUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// routesSeen is what a replica saw of a request; it answers it as JSON.
type routesSeen struct {
	Server        string   `json:"server"`
	Method        string   `json:"method"`
	URI           string   `json:"uri"`
	XFF           []string `json:"xff"`
	RequestID     []string `json:"request_id"`
	Authorization []string `json:"authorization"`
	ReplicaAuth   []string `json:"replica_auth"`
	Body          string   `json:"body"`
}

// routesReplica starts a stand-in for a watchdog on 127.0.0.1: /_/health
// answers 200 to a check carrying routesCred (403 otherwise, so a
// check without it takes the replica out of rotation), ?sleep=<duration>
// waits that long (or until HAProxy gives up), everything else is echoed as
// routesSeen.
func routesReplica(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == contract.HealthPath {
			if got := r.Header.Values(contract.HeaderReplicaAuth); len(got) != 1 || got[0] != routesCred {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			io.WriteString(w, `{"status":"ok"}`+"\n")
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(routesSeen{
			Server:        name,
			Method:        r.Method,
			URI:           r.RequestURI,
			XFF:           r.Header.Values("X-Forwarded-For"),
			RequestID:     r.Header.Values("X-Request-Id"),
			Authorization: r.Header.Values("Authorization"),
			ReplicaAuth:   r.Header.Values(contract.HeaderReplicaAuth),
			Body:          string(body),
		})
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// routesFreeAddr returns a 127.0.0.1 address nothing listens on now.
func routesFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// routesOutput collects HAProxy's stdout and stderr (its log goes there).
type routesOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *routesOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *routesOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// routesStartHAProxy validates cfg and runs it in the foreground as a
// master-worker child of the test, stopped in t.Cleanup.
func routesStartHAProxy(t *testing.T, bin string, cfg []byte) (*routesOutput, <-chan struct{}) {
	t.Helper()
	if err := Validate(t.Context(), bin, cfg); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	out := &routesOutput{}
	cmd := exec.Command(bin, "-W", "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the worker too
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	return out, exited
}

// routesResponse is one answer read by routesDo.
type routesResponse struct {
	status int
	header http.Header
	body   string
}

// routesDo sends one request on a new connection and reads the answer:
// no client library, no retries, no redirects.
func routesDo(addr, method, target string, header http.Header, body string) (routesResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return routesResponse{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n", method, target)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", k, v)
		}
	}
	if body != "" && header.Get("Content-Length") == "" {
		fmt.Fprintf(&req, "Content-Length: %d\r\n", len(body))
	}
	req.WriteString("\r\n" + body)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return routesResponse{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return routesResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return routesResponse{}, err
	}
	return routesResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// routesPoll retries check until it returns nil or the deadline passes.
func routesPoll(t *testing.T, what string, exited <-chan struct{}, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after 10s", what, err)
		}
		select {
		case <-exited:
			t.Fatalf("%s: haproxy exited (last: %v)", what, err)
		case <-tick.C:
		}
	}
}

// TestHAProxyRoutes runs a rendered configuration in the real HAProxy in
// front of stand-in replicas and checks every route and edge of Render's
// contract, once per balancing algorithm.
func TestHAProxyRoutes(t *testing.T) {
	bin := renderHAProxyBin(t)
	for _, balance := range []string{BalanceLeastConn, BalanceRoundRobin} {
		t.Run(balance, func(t *testing.T) { testHAProxyRoutes(t, bin, balance) })
	}
}

func testHAProxyRoutes(t *testing.T, bin, balance string) {
	rep := func(id, addr string, draining bool) contract.Replica {
		return contract.Replica{TaskID: id, Node: "n1", Addr: addr, State: "running", Draining: draining}
	}
	cat := contract.Catalog{Version: "test", Functions: []contract.CatalogFunction{
		{Name: "echo", Replicas: []contract.Replica{
			rep("e1", routesReplica(t, "e1"), false),
			rep("e2", routesReplica(t, "e2"), false),
			rep("e3", routesReplica(t, "e3"), true),
		}},
		{Name: "keyed", Labels: map[string]string{contract.LabelMaxBody: "100"}, Replicas: []contract.Replica{
			rep("k1", routesReplica(t, "k1"), false),
		}},
		{Name: "empty", Replicas: []contract.Replica{}},
		{Name: "slow", Labels: map[string]string{contract.LabelTimeout: "200ms"}, Replicas: []contract.Replica{
			rep("s1", routesReplica(t, "s1"), false),
		}},
		// f1 refuses connections: HAProxy must retry on f2.
		{Name: "flaky", Replicas: []contract.Replica{
			rep("f1", routesFreeAddr(t), false),
			rep("f2", routesReplica(t, "f2"), false),
		}},
	}}
	gateway, admin := routesFreeAddr(t), routesFreeAddr(t)
	sock := filepath.Join(t.TempDir(), "rt.sock")
	keysMap := filepath.Join(t.TempDir(), "keys.map")
	if err := WriteKeysMap(keysMap, map[string][]string{"keyed": {contract.KeyDigest(routesKey)}}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Render(RenderConfig{
		Listen:        gateway,
		AdminListen:   admin,
		RuntimeSocket: sock,
		Log:           "stdout format raw local0 info",
		Balance:       balance,
		TimeoutMargin: 100 * time.Millisecond,
		KeysMap:       keysMap,
		ReplicaAuth:   routesCred,
	}, cat, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, exited := routesStartHAProxy(t, bin, cfg)
	routesPoll(t, "gateway ready", exited, func() error {
		r, err := routesDo(gateway, "GET", "/function/echo", nil, "")
		if err == nil && r.status != 200 {
			err = fmt.Errorf("status %d", r.status)
		}
		return err
	})

	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("runtime socket %s: %v, %v; want a socket with mode 0600", sock, fi.Mode(), err)
	}

	const (
		notFound  = `{"error":"not found"}` + "\n"
		badEscape = `{"error":"bad request: the path has an invalid percent-escape (write % as %25)"}` + "\n"
		jsonType  = "application/json"
	)
	hdr := func(kv ...string) http.Header {
		h := http.Header{"X-Forwarded-For": {"6.6.6.6"}} // a client's claim, never believed
		for i := 0; i+1 < len(kv); i += 2 {
			h[kv[i]] = append(h[kv[i]], kv[i+1])
		}
		return h
	}
	bearer := "Bearer " + routesKey
	tests := []struct {
		name    string
		method  string
		target  string
		header  http.Header
		body    string
		status  int
		want    string            // whole body for Pulse's own answers
		headers map[string]string // response headers that must be set
		seen    *routesSeen       // what the replica must have seen (Server "" = any but e3)
	}{
		{"name only", "GET", "/function/echo", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
		{"name and slash", "GET", "/function/echo/", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
		{"path and query", "GET", "/function/echo/a/b?q=1", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/a/b?q=1"}},
		{"query only", "GET", "/function/echo?x=1&y=2", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/?x=1&y=2"}},
		{"double slash kept", "GET", "/function/echo//x", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "//x"}},
		{"underscore alone is the function's", "GET", "/function/echo/_", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/_"}},
		{"post body", "POST", "/function/echo/p", hdr(), "hello", 200, "", nil, &routesSeen{Method: "POST", URI: "/p", Body: "hello"}},
		{"valid percent-escape kept", "GET", "/function/echo/%41b", hdr(), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/%41b"}},
		{"invalid percent-escape", "GET", "/function/echo/a%zz", hdr(), "", 400, badEscape, nil, nil},
		{"truncated percent-escape", "POST", "/function/echo/%4", hdr(), "x", 400, badEscape, nil, nil},
		{"invalid percent-escape in the name", "GET", "/function/ec%zzho", hdr(), "", 400, badEscape, nil, nil},
		{"reserved metrics", "GET", "/function/echo/_/metrics", hdr(), "", 404, notFound, nil, nil},
		{"reserved health", "GET", "/function/echo/_/health", hdr(), "", 404, notFound, nil, nil},
		{"reserved, percent-encoded", "GET", "/function/echo/%5F/health", hdr(), "", 404, notFound, nil, nil},
		{"reserved, encoded slash", "GET", "/function/echo/_%2Fhealth", hdr(), "", 404, notFound, nil, nil},
		{"reserved of an unknown function", "GET", "/function/nope/_/health", hdr(), "", 404, notFound, nil, nil},
		{"unknown function", "GET", "/function/nope", hdr(), "", 404, `{"error":"function not found","function":"nope"}` + "\n", nil, nil},
		{"unknown function with path", "POST", "/function/nope/x?y=1", hdr(), "data", 404, `{"error":"function not found","function":"nope"}` + "\n", nil, nil},
		{"empty name", "GET", "/function/", hdr(), "", 404, `{"error":"function not found","function":""}` + "\n", nil, nil},
		{"root", "GET", "/", hdr(), "", 404, notFound, nil, nil},
		{"no slash after function", "GET", "/function", hdr(), "", 404, notFound, nil, nil},
		{"other prefix", "GET", "/functions/echo", hdr(), "", 404, notFound, nil, nil},
		{"zero replicas", "GET", "/function/empty", hdr(), "", 503, `{"error":"no replica available","function":"empty"}` + "\n", map[string]string{"Retry-After": "1"}, nil},
		{"zero replicas, post", "POST", "/function/empty/x", hdr(), "x", 503, `{"error":"no replica available","function":"empty"}` + "\n", map[string]string{"Retry-After": "1"}, nil},
		{"key missing", "GET", "/function/keyed", hdr(), "", 401, `{"error":"invoke key required","function":"keyed"}` + "\n", map[string]string{"WWW-Authenticate": `Bearer realm="pulse"`}, nil},
		{"key wrong", "GET", "/function/keyed", hdr("Authorization", "Bearer wrong"), "", 401, `{"error":"invoke key required","function":"keyed"}` + "\n", nil, nil},
		{"key as prefix", "GET", "/function/keyed", hdr("Authorization", bearer+"x"), "", 401, `{"error":"invoke key required","function":"keyed"}` + "\n", nil, nil},
		{"key twice", "GET", "/function/keyed", hdr("Authorization", bearer, "Authorization", bearer), "", 401, `{"error":"invoke key required","function":"keyed"}` + "\n", nil, nil},
		{"key without scheme", "GET", "/function/keyed", hdr("Authorization", routesKey), "", 401, `{"error":"invoke key required","function":"keyed"}` + "\n", nil, nil},
		{"key right", "GET", "/function/keyed/k?a=b", hdr("Authorization", bearer), "", 200, "", nil, &routesSeen{Server: "k1", Method: "GET", URI: "/k?a=b"}},
		{"key right, scheme in lower case", "GET", "/function/keyed", hdr("Authorization", "bearer "+routesKey), "", 200, "", nil, &routesSeen{Server: "k1", Method: "GET", URI: "/"}},
		{"key of another function's map entry", "GET", "/function/keyed", hdr("Authorization", "Bearer required"), "", 401, `{"error":"invoke key required","function":"keyed"}` + "\n", nil, nil},
		{"open function keeps its Authorization", "GET", "/function/echo", hdr("Authorization", "Basic dTpw"), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/", Authorization: []string{"Basic dTpw"}}},
		{"client's replica credential replaced", "GET", "/function/echo", hdr(contract.HeaderReplicaAuth, "forged-by-the-client-000"), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
		{"client's replica credentials, twice, replaced", "GET", "/function/echo", hdr(contract.HeaderReplicaAuth, "a", contract.HeaderReplicaAuth, routesCred), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
		{"request head too large", "GET", "/function/echo", hdr("X-Big", strings.Repeat("b", 13<<10)), "", 431, `{"error":"request header fields too large"}` + "\n", nil, nil},
		{"body at the limit", "POST", "/function/keyed", hdr("Authorization", bearer), strings.Repeat("b", 100), 200, "", nil, &routesSeen{Server: "k1", Method: "POST", URI: "/", Body: strings.Repeat("b", 100)}},
		{"body over the limit", "POST", "/function/keyed", hdr("Authorization", bearer), strings.Repeat("b", 101), 413, `{"error":"request body too large","function":"keyed","limit":100}` + "\n", nil, nil},
		{"body over the limit without key", "POST", "/function/keyed", hdr(), strings.Repeat("b", 101), 401, `{"error":"invoke key required","function":"keyed"}` + "\n", nil, nil},
		{"server timeout", "GET", "/function/slow?sleep=5s", hdr(), "", 504, `{"error":"gateway timeout"}` + "\n", nil, nil},
		{"within the timeout", "GET", "/function/slow?sleep=50ms", hdr(), "", 200, "", nil, &routesSeen{Server: "s1", Method: "GET", URI: "/?sleep=50ms"}},
		{"refused connection retried, get", "GET", "/function/flaky", hdr(), "", 200, "", nil, &routesSeen{Server: "f2", Method: "GET", URI: "/"}},
		{"refused connection retried, post", "POST", "/function/flaky", hdr(), "once", 200, "", nil, &routesSeen{Server: "f2", Method: "POST", URI: "/", Body: "once"}},
		{"client request ID kept", "GET", "/function/echo", hdr("X-Request-ID", "chain-42.a:b"), "", 200, "", map[string]string{"X-Request-ID": "chain-42.a:b"}, &routesSeen{Method: "GET", URI: "/", RequestID: []string{"chain-42.a:b"}}},
		{"odd request ID replaced", "GET", "/function/echo", hdr("X-Request-ID", "has space"), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
		{"two request IDs replaced", "GET", "/function/echo", hdr("X-Request-ID", "a", "X-Request-ID", "b"), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
		{"long request ID replaced", "GET", "/function/echo", hdr("X-Request-ID", strings.Repeat("r", 129)), "", 200, "", nil, &routesSeen{Method: "GET", URI: "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := routesDo(gateway, tt.method, tt.target, tt.header, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %q", r.status, tt.status, r.body)
			}
			for k, v := range tt.headers {
				if got := r.header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			rid := r.header.Values("X-Request-ID")
			if len(rid) != 1 || rid[0] == "" {
				t.Fatalf("response X-Request-ID = %q, want one", rid)
			}
			if tt.headers["X-Request-ID"] == "" && !routesUUID.MatchString(rid[0]) {
				t.Errorf("generated X-Request-ID %q is not a UUID", rid[0])
			}
			if tt.seen == nil {
				if ct := r.header.Get("Content-Type"); ct != jsonType {
					t.Errorf("Content-Type %q, want %s", ct, jsonType)
				}
				if r.body != tt.want {
					t.Errorf("body %q, want %q", r.body, tt.want)
				}
				return
			}
			var seen routesSeen
			if err := json.Unmarshal([]byte(r.body), &seen); err != nil {
				t.Fatalf("replica answer %q: %v", r.body, err)
			}
			want := *tt.seen
			if want.Server == "" {
				if seen.Server == "e3" {
					t.Errorf("the draining replica e3 got a request")
				}
				want.Server = seen.Server
			}
			want.XFF = []string{"127.0.0.1"}
			want.ReplicaAuth = []string{routesCred}
			if want.RequestID == nil {
				want.RequestID = rid
			}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Errorf("replica saw\n  %+v\nwant\n  %+v", seen, want)
			}
		})
	}

	t.Run("balancing skips the draining replica", func(t *testing.T) {
		count := map[string]int{}
		for range 20 {
			r, err := routesDo(gateway, "GET", "/function/echo", nil, "")
			if err != nil || r.status != 200 {
				t.Fatalf("status %d, %v", r.status, err)
			}
			var seen routesSeen
			if err := json.Unmarshal([]byte(r.body), &seen); err != nil {
				t.Fatal(err)
			}
			count[seen.Server]++
		}
		if count["e3"] != 0 || count["e1"] == 0 || count["e2"] == 0 || count["e1"]+count["e2"] != 20 {
			t.Errorf("requests per replica %v: want e1 and e2 only", count)
		}
	})

	t.Run("admin", func(t *testing.T) {
		r, err := routesDo(admin, "GET", "/metrics", nil, "")
		if err != nil || r.status != 200 || !strings.Contains(r.body, `haproxy_backend_active_servers{proxy="fn_echo"} 2`) {
			t.Errorf("GET /metrics: %d, %v; want fn_echo with 2 active servers in:\n%.500s", r.status, err, r.body)
		}
		if r, err := routesDo(admin, "GET", "/stats", nil, ""); err != nil || r.status != 200 || !strings.Contains(r.body, "fn_echo") {
			t.Errorf("GET /stats: %d, %v", r.status, err)
		}
		if r, err := routesDo(admin, "GET", "/", nil, ""); err != nil || r.status != 404 || r.body != notFound {
			t.Errorf("GET /: %d %q, %v; want 404 %q", r.status, r.body, err, notFound)
		}
	})

	// The log has every request, never a key.
	routesPoll(t, "request log", exited, func() error {
		if !strings.Contains(out.String(), "fn_keyed/s1") {
			return errors.New("no log line for fn_keyed/s1")
		}
		return nil
	})
	if strings.Contains(out.String(), routesKey) {
		t.Errorf("HAProxy's output contains the invoke key")
	}
}
