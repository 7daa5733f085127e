package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// errorsGarbageReplica accepts connections and answers every request with
// bytes that are not HTTP (health checks included, so it must be routed
// without checks passing: the catalog lists it and HAProxy tries it).
func errorsGarbageReplica(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil || l == "\r\n" {
						break
					}
				}
				io.WriteString(c, "NOT HTTP AT ALL\r\n\r\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// errorsRaw writes raw on a new connection to addr, optionally waits, and
// reads one answer.
func errorsRaw(t *testing.T, addr, raw string) (*http.Response, string) {
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
	return resp, string(b)
}

// TestHAProxyErrorBodies sends raw requests through a real HAProxy and
// checks that every error the gateway makes itself is JSON. Errors of
// HAProxy 2.6's HTTP/1 parser (a malformed request, a head over its buffer,
// a head not complete within timeout http-request) are the exception: its
// mux sends a built-in HTML page that no errorfile or http-error replaces
// (mux_h1.c, h1_send_error, honours only an empty errorfile); the last
// subtest pins their status codes.
func TestHAProxyErrorBodies(t *testing.T) {
	bin := renderHAProxyBin(t)
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.map")
	if err := WriteKeysMap(keys, map[string][]string{"keyed": {contract.KeyDigest("k")}}); err != nil {
		t.Fatal(err)
	}
	rep := func(id, addr string) []contract.Replica {
		return []contract.Replica{{TaskID: id, Addr: addr, State: "running"}}
	}
	gw := routesFreeAddr(t)
	cfg, err := Render(RenderConfig{
		Listen: gw, AdminListen: routesFreeAddr(t), RuntimeSocket: filepath.Join(dir, "rt.sock"),
		KeysMap: keys, ReplicaAuth: routesCred, RequestTimeout: 300 * time.Millisecond, TimeoutMargin: 100 * time.Millisecond,
		CheckInterval: time.Hour, // the garbage replica stays up: no check runs during the test
	}, contract.Catalog{Functions: []contract.CatalogFunction{
		{Name: "echo", Labels: map[string]string{contract.LabelMaxBody: "4"}, Replicas: rep("e1", routesReplica(t, "e1"))},
		{Name: "slow", Labels: map[string]string{contract.LabelTimeout: "200ms"}, Replicas: rep("s1", routesReplica(t, "s1"))},
		{Name: "garbage", Replicas: rep("g1", errorsGarbageReplica(t))},
		{Name: "keyed", Replicas: rep("k1", routesReplica(t, "k1"))},
		{Name: "empty", Replicas: []contract.Replica{}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, exited := routesStartHAProxy(t, bin, cfg)
	routesPoll(t, "gateway up", exited, func() error {
		_, err := routesDo(gw, "GET", "/", nil, "")
		return err
	})
	get := func(path, extra string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + "\r\n"
	}
	tests := []struct {
		name   string
		raw    string
		status int
		err    string
	}{
		{"401 no key", get("/function/keyed", ""), 401, "invoke key required"},
		{"404 unknown function", get("/function/nope", ""), 404, "function not found"},
		{"404 reserved path", get("/function/echo/_/metrics", ""), 404, "not found"},
		{"413 body too large", "POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345", 413, "request body too large"},
		{"431 head too large", get("/function/echo", "X-Big: "+strings.Repeat("b", 13<<10)+"\r\n"), 431, "request header fields too large"},
		{"502 garbage from the replica", get("/function/garbage", ""), 502, "bad gateway"},
		{"503 no replica", get("/function/empty", ""), 503, "no replica available"},
		{"504 replica too slow", get("/function/slow?sleep=2s", ""), 504, "gateway timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := errorsRaw(t, gw, tt.raw)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json; body %q", ct, body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != tt.err {
				t.Errorf("body %q: want JSON with error %q (%v)", body, tt.err, err)
			}
		})
	}
	t.Run("parser errors keep their status", func(t *testing.T) {
		for _, c := range []struct {
			raw    string
			status int
		}{
			{"POST /function/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
			{"GET /function/echo HTTP/1.1\r\nBad Header\r\n\r\n", 400},
			{get("/function/echo", "X-Big: "+strings.Repeat("b", 20<<10)+"\r\n"), 400},
			{"GET /function/echo HTTP/1.1\r\nHost: x\r\n", 408}, // never finished: timeout http-request
		} {
			resp, body := errorsRaw(t, gw, c.raw)
			if resp.StatusCode != c.status {
				t.Errorf("%.40q: status %d, want %d (%q)", c.raw, resp.StatusCode, c.status, body)
			}
		}
	})
}
