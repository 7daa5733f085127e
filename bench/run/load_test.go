package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

func TestParseWrkOutput(t *testing.T) {
	want := wrkResult{Requests: 158346, DurationUS: 2100528, Bytes: 28502280}
	want.Errors.Status, want.Errors.Timeout = 3, 1
	want.Latency.P50, want.Latency.P90, want.Latency.P99, want.Latency.Max, want.Latency.Mean = 173, 1827, 4830, 12499, 555.2

	tests := []struct {
		name    string
		in      string
		want    wrkResult
		wantErr bool
	}{
		{name: "golden", in: readTestdata(t, "wrk-output.txt"), want: want},
		{name: "no line (script not loaded)", in: "Running 2s test @ http://127.0.0.1:1/\n", wantErr: true},
		{name: "no requests", in: `BENCHJSON {"requests":0,"duration_us":2000000}`, wantErr: true},
		{name: "unknown field", in: `BENCHJSON {"requests":1,"duration_us":1,"extra":1}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrkOutput([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if n := want.errorCount(); n != 4 {
		t.Errorf("errorCount = %d, want 4", n)
	}
}

func TestParseFloorOutput(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    floorResult
		wantErr bool
	}{
		{
			name: "golden",
			in:   readTestdata(t, "spawnloop-output.json"),
			want: floorResult{Program: "/bin/cat", Iterations: 2720, PayloadBytes: 64, WallS: 2.000089, CPUS: 1.987147,
				SelfCPUS: 0.145084, ChildrenCPUS: 1.842063, CPUPerIterUS: 730.569},
		},
		{name: "empty", in: "", wantErr: true},
		{name: "no iterations", in: `{"iterations":0,"cpu_s":1}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFloorOutput([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestClosedLoop(t *testing.T) {
	var n, credOK, credBad atomic.Int64
	var mu atomic.Bool // when set, every third request's connection is cut without an answer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		k := n.Add(1)
		// Straight to a replica ("/"), the replica credential; through the
		// gateway, none (HAProxy adds it).
		got, want := r.Header.Values(contract.HeaderReplicaAuth), []string(nil)
		if r.URL.Path == "/" {
			want = []string{"cred-1"}
		}
		if slices.Equal(got, want) {
			credOK.Add(1)
		} else {
			credBad.Add(1)
			t.Errorf("%s: %s = %q, want %q", r.URL.Path, contract.HeaderReplicaAuth, got, want)
		}
		switch {
		case mu.Load() && k%3 == 0:
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
		case k%5 == 0:
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	wait := func(atLeast int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for n.Load() < atLeast {
			if time.Now().After(deadline) {
				t.Fatalf("the server got %d requests, want %d", n.Load(), atLeast)
			}
			time.Sleep(time.Millisecond)
		}
	}
	l := newClosedLoop(time.Now(), "hello", http.Header{contract.HeaderReplicaAuth: {"cred-1"}})
	l.set(3, addr, "/function/x", false)
	wait(50)
	l.set(1, addr, "/function/x", false) // down: two workers leave after their request
	l.mu.Lock()
	if len(l.workers) != 1 || len(l.retired) != 2 {
		t.Errorf("after stepping down: %d workers, %d retired; want 1, 2", len(l.workers), len(l.retired))
	}
	l.mu.Unlock()
	mu.Store(true)
	wait(n.Load() + 30)
	l.set(2, addr, "/", true) // another path: every worker replaced
	wait(n.Load() + 30)
	recs, fails := l.end()
	if int64(len(recs)) < 100 || len(fails) == 0 {
		t.Fatalf("%d requests, %d failed; want many, some failed", len(recs), len(fails))
	}
	kinds := map[uint8]int{}
	direct := 0
	for _, r := range recs {
		kinds[r.Err]++
		if r.Direct {
			direct++
		}
		if r.Err != reqErrDial && r.Port == 0 {
			t.Errorf("request %+v has no client port", r)
		}
		if r.Err == reqOK && r.Status != 200 {
			t.Errorf("ok request with status %d", r.Status)
		}
	}
	if kinds[reqErrStatus] == 0 || kinds[reqErrRead] == 0 || kinds[reqOK] == 0 || direct == 0 {
		t.Errorf("outcomes %v, %d direct: want ok, status and read failures, and direct requests", kinds, direct)
	}
	if credOK.Load() < 100 || credBad.Load() != 0 {
		t.Errorf("replica credential right on %d requests, wrong on %d; want many, none", credOK.Load(), credBad.Load())
	}
	if got := kinds[reqErrStatus] + kinds[reqErrRead] + kinds[reqErrBody] + kinds[reqErrWrite]; got != len(fails) {
		t.Errorf("%d failed records, %d failures", got, len(fails))
	}
	for _, f := range fails {
		if f.Req.Err == reqErrStatus && !strings.HasPrefix(f.Msg, "503") {
			t.Errorf("status failure %q", f.Msg)
		}
	}
}
