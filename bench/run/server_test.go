package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// buildEcho builds bench/echo into a temporary directory.
func buildEcho(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echo")
	cmd := exec.Command("go", "build", "-o", bin, "../echo")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build echo: %v\n%s", err, out)
	}
	return bin
}

// TestEchoUnderWrk runs the real pieces of one HTTP run: the bare echo
// server, readiness, the probe, a one-second wrk run with post.lua, the
// process-tree CPU sample, and a clean stop.
func TestEchoUnderWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	bin := buildEcho(t)
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(launchSpec{Bin: bin, Args: []string{"-listen", addr}, Env: os.Environ()}, filepath.Join(t.TempDir(), "echo.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = srv.stop(5 * time.Second) })
	ctx := context.Background()
	if err := waitReady(ctx, srv, "http://"+addr+"/", 10*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	body := payload(64)
	if err := probe(ctx, "http://"+addr+"/", body, nil); err != nil {
		t.Fatal(err)
	}
	tree, err := processTree("/proc", srv.pid())
	if err != nil {
		t.Fatal(err)
	}
	before := treeCPU(tree)
	res, wrkCPU, err := runWrk(ctx, wrkRun{Bin: wrk, Script: "../wrk/post.lua", URL: "http://" + addr + "/", Threads: 1, Conns: 2, Duration: time.Second, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 100 || res.errorCount() != 0 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
		t.Errorf("wrk result %+v: want ≥ 100 requests, no errors, 0 < p50 ≤ p99", res)
	}
	if res.Bytes < res.Requests*int64(len(body)) {
		t.Errorf("wrk read %d bytes for %d requests: bodies not echoed", res.Bytes, res.Requests)
	}
	if wrkCPU <= 0 {
		t.Errorf("wrk CPU = %s", wrkCPU)
	}
	tree, err = processTree("/proc", srv.pid())
	if err != nil {
		t.Fatal(err)
	}
	if after := treeCPU(tree); after <= before || len(tree) != 1 {
		t.Errorf("CPU sample before %+v, after %+v: want it to grow, one process", before, after)
	}
	if code, err := srv.stop(5 * time.Second); code != 0 || err != nil {
		t.Errorf("stop = %d, %v; want 0, nil", code, err)
	}
}

// TestStopKillsDescendants checks that stop kills a descendant that left
// the server's process group and would outlive it.
func TestStopKillsDescendants(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	srv, err := startServer(launchSpec{Bin: "/bin/sh", Args: []string{"-c", "setsid sleep 60 & exec sleep 60"}, Env: os.Environ()},
		filepath.Join(t.TempDir(), "sh.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = srv.stop(5 * time.Second) })
	var tree []procStat
	deadline := time.Now().Add(10 * time.Second)
	for len(tree) != 2 || tree[1].Comm != "sleep" || tree[0].Comm != "sleep" {
		if time.Now().After(deadline) {
			t.Fatalf("tree = %+v, want two sleeps", tree)
		}
		time.Sleep(10 * time.Millisecond)
		if tree, err = processTree("/proc", srv.pid()); err != nil {
			t.Fatal(err)
		}
	}
	stray := tree[1]
	code, err := srv.stop(5 * time.Second)
	if code != -1 || err != nil {
		t.Errorf("stop = %d, %v; want -1 (killed by SIGTERM), nil", code, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := readStat("/proc", stray.PID)
		if errors.Is(err, errNoProcess) || st.StartTime != stray.StartTime || st.State == "Z" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("descendant %d still alive: %+v", stray.PID, st)
		}
	}
}

// TestReplicaCredentialOnEveryRequest: wrk with post.lua and the harness's
// probe and readiness requests send the replica credential when given it,
// on every request, to a server that answers 403 without it as a replica
// does; without it, wrk's every request is refused.
func TestReplicaCredentialOnEveryRequest(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	const cred = "0123abcd"
	var ok, refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if v := r.Header.Values(contract.HeaderReplicaAuth); len(v) != 1 || v[0] != cred {
			refused.Add(1)
			http.Error(w, `{"error":"forbidden"}`, http.StatusForbidden)
			return
		}
		ok.Add(1)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	ctx := context.Background()
	hdr := http.Header{contract.HeaderReplicaAuth: {cred}}
	body := payload(64)
	if err := probe(ctx, srv.URL+"/", body, hdr); err != nil {
		t.Fatal(err)
	}
	if err := probe(ctx, srv.URL+"/", body, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("probe without the credential = %v, want a 403", err)
	}
	if r, err := refusesWithout(ctx, srv.URL+"/", body); !r || err != nil {
		t.Errorf("refusesWithout = %t, %v; want true, nil", r, err)
	}
	w := wrkRun{Bin: wrk, Script: "../wrk/post.lua", URL: srv.URL + "/", Threads: 1, Conns: 2, Duration: time.Second, Body: body, Headers: hdr}
	ok.Store(0)
	refused.Store(0)
	res, _, err := runWrk(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests < 100 || res.errorCount() != 0 || refused.Load() != 0 || ok.Load() < res.Requests {
		t.Errorf("with the credential: wrk %+v, server ok %d refused %d; want ≥ 100 requests, all answered", res, ok.Load(), refused.Load())
	}
	w.Headers = nil
	res, _, err = runWrk(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors.Status != res.Requests || refused.Load() < res.Requests {
		t.Errorf("without the credential: wrk %+v, server refused %d; want every request refused", res, refused.Load())
	}
	w.Headers = http.Header{"Bad Name": {"x"}}
	if _, _, err := runWrk(ctx, w); err == nil || !strings.Contains(err.Error(), "want a token") {
		t.Errorf("a header name with a space: %v, want refused before wrk runs", err)
	}
}

// TestWrkHeaderEnv pins post.lua's BENCH_HEADERS format.
func TestWrkHeaderEnv(t *testing.T) {
	for _, c := range []struct {
		name string
		h    http.Header
		want string
		err  string
	}{
		{name: "none", h: nil, want: ""},
		{name: "credential", h: http.Header{contract.HeaderReplicaAuth: {"abc"}}, want: "X-Pulse-Replica-Auth: abc\n"},
		{name: "sorted", h: http.Header{"B": {"2"}, "A": {"1", "3"}}, want: "A: 1\nA: 3\nB: 2\n"},
		{name: "colon in name", h: http.Header{"A:b": {"1"}}, err: "want a token"},
		{name: "line break in value", h: http.Header{"A": {"1\r\nB: 2"}}, err: "line break"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := wrkHeaderEnv(c.h)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("wrkHeaderEnv = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
