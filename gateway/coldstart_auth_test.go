package gateway

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// coldCred is the replica credential of the cold-start tests.
const coldCred = "cold-start-replica-credential"

// coldReplica serves only requests that carry coldCred once (403 JSON
// otherwise, health included) and echoes what reached it.
func coldReplica(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Values(contract.HeaderReplicaAuth); len(got) != 1 || got[0] != coldCred {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"forbidden"}`+"\n")
			return
		}
		if r.URL.Path == contract.HealthPath {
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%d fn=%q auth=%q", r.Method, r.URL.RequestURI(), len(body),
			r.Header.Values(HeaderFunction), r.Header.Values("Authorization"))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// coldRaw sends one raw request to addr and returns the status line's code
// and the body.
func coldRaw(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestColdStartGuards: the cold-start listener, reached directly as any
// local process could, serves nothing without the replica credential, and
// with it applies the gateway's rules: no reserved path, the function's body
// limit (declared and chunked), the credential set on what it forwards and
// never passed on from the client.
func TestColdStartGuards(t *testing.T) {
	addr := coldReplica(t)
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{
		Name: "hello", Desired: 1, Labels: map[string]string{contract.LabelMaxBody: "10"},
		Replicas: []contract.Replica{{TaskID: "t1", Addr: addr, State: "running"}},
	}}}}
	cfg := DefaultColdStartConfig()
	cfg.ReplicaAuth = coldCred
	cs, err := NewColdStart(cfg, cat, &startingWaker{cat: cat, addr: addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cs)
	defer srv.Close()
	ln := srv.Listener.Addr().String()

	head := func(method, path, extra string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pulse-Function: hello\r\n%s", method, path, extra)
	}
	auth := contract.HeaderReplicaAuth + ": " + coldCred + "\r\n"
	forbidden := `{"error":"forbidden: this endpoint serves the gateway only"}` + "\n"
	tests := []struct {
		name   string
		raw    string
		status int
		body   string
	}{
		{"no credential", head("GET", "/", "\r\n"), 403, forbidden},
		{"wrong credential", head("GET", "/", contract.HeaderReplicaAuth+": "+strings.Repeat("x", len(coldCred))+"\r\n\r\n"), 403, forbidden},
		{"credential prefix", head("GET", "/", contract.HeaderReplicaAuth+": "+coldCred[:10]+"\r\n\r\n"), 403, forbidden},
		{"credential twice", head("GET", "/", auth+auth+"\r\n"), 403, forbidden},
		{"no credential, reserved path", head("GET", "/_/metrics", "\r\n"), 403, forbidden},
		{"reserved metrics", head("GET", "/_/metrics", auth+"\r\n"), 404, `{"error":"not found"}` + "\n"},
		{"reserved health", head("GET", "/_/health", auth+"\r\n"), 404, `{"error":"not found"}` + "\n"},
		{"reserved, percent-encoded", head("GET", "/%5F/health", auth+"\r\n"), 404, `{"error":"not found"}` + "\n"},
		{"body over the limit", head("POST", "/", auth+"Content-Length: 11\r\n\r\n01234567890"), 413, `{"error":"request body too large","function":"hello","limit":10}` + "\n"},
		{"chunked body over the limit", head("POST", "/", auth+"Transfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n"), 413, `{"error":"request body too large","function":"hello","limit":10}` + "\n"},
		{"body at the limit", head("POST", "/p?q=1", auth+"Content-Length: 10\r\n\r\n0123456789"), 200, `POST /p?q=1 body=10 fn=[] auth=[]`},
		{"chunked body at the limit", head("POST", "/", auth+"Transfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"), 200, `POST / body=10 fn=[] auth=[]`},
		{"authorization of an open function kept", head("GET", "/", auth+"Authorization: Basic dTpw\r\n\r\n"), 200, `GET / body=0 fn=[] auth=["Basic dTpw"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := coldRaw(t, ln, tt.raw)
			if status != tt.status || body != tt.body {
				t.Errorf("got %d %q, want %d %q", status, body, tt.status, tt.body)
			}
		})
	}
	if _, err := NewColdStart(ColdStartConfig{Timeout: time.Second, MaxHeld: 1, Probe: time.Second, ReplicaAuth: "short"}, cat, nil, nil); err == nil {
		t.Error("a short credential was accepted")
	}
}

// TestColdStartBehindHAProxy runs the cold-start path as the backup server
// of a real HAProxy whose function is protected by a key and at zero
// replicas: HAProxy checks the key (401 without), the held request wakes the
// function and reaches the replica with the credential, without the key,
// and a credential a client sends is replaced on the way.
func TestColdStartBehindHAProxy(t *testing.T) {
	bin := renderHAProxyBin(t)
	addr := coldReplica(t)
	cat := &staticCatalog{cat: contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello", Replicas: []contract.Replica{}}}}}
	cfg := DefaultColdStartConfig()
	cfg.ReplicaAuth = coldCred
	waker := &startingWaker{cat: cat, addr: addr, delay: 100 * time.Millisecond}
	cs, err := NewColdStart(cfg, cat, waker, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cs)
	defer srv.Close()

	dir := t.TempDir()
	keysMap := filepath.Join(dir, "keys.map")
	const key = "cold-key-123"
	if err := WriteKeysMap(keysMap, map[string][]string{"hello": {contract.KeyDigest(key)}}); err != nil {
		t.Fatal(err)
	}
	gw := routesFreeAddr(t)
	hcfg, err := Render(RenderConfig{
		Listen: gw, AdminListen: routesFreeAddr(t), RuntimeSocket: filepath.Join(dir, "rt.sock"),
		KeysMap: keysMap, ReplicaAuth: coldCred, BackupAddr: srv.Listener.Addr().String(),
	}, contract.Catalog{Functions: []contract.CatalogFunction{{Name: "hello", Replicas: []contract.Replica{}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, exited := routesStartHAProxy(t, bin, hcfg)
	routesPoll(t, "gateway up", exited, func() error {
		_, err := routesDo(gw, "GET", "/function/nope", nil, "")
		return err
	})
	r, err := routesDo(gw, "GET", "/function/hello", nil, "")
	if err != nil || r.status != 401 {
		t.Fatalf("no key: %d %q %v, want 401", r.status, r.body, err)
	}
	if waker.calls.Load() != 0 {
		t.Errorf("a request without key woke the function")
	}
	h := http.Header{"Authorization": {"Bearer " + key}, contract.HeaderReplicaAuth: {"forged-by-the-client-0000"}}
	r, err = routesDo(gw, "POST", "/function/hello/x?y=1", h, "data")
	if err != nil || r.status != 200 || r.body != `POST /x?y=1 body=4 fn=[] auth=[]` {
		t.Fatalf("cold request: %d %q %v", r.status, r.body, err)
	}
	if waker.calls.Load() != 1 {
		t.Errorf("waker calls %d, want 1", waker.calls.Load())
	}
}
