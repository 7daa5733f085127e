package collector

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdata/go.d.plugin/agent/module"
	"github.com/netdata/go.d.plugin/pkg/web"

	"github.com/pulsefaas/pulse/contract"
)

// syncBuffer is a bytes.Buffer safe for the job's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// TestModuleInGoDJob runs the module through go.d's job machinery (what
// the plugin's agent does per job) and checks the plugins.d protocol it
// writes: charts appear with the function's family and the contract's
// contexts, values are set, and a function that leaves the catalog gets
// its charts made obsolete.
func TestModuleInGoDJob(t *testing.T) {
	pulsed := &fakePulsed{cat: catalogOf("v1", fn("hello", 1, nil))}
	haproxy := golden(t, "haproxy_metrics.txt")
	mux := http.NewServeMux()
	mux.Handle(contract.CatalogPath, pulsed)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(haproxy) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	mod := New()
	mod.CatalogURL = srv.URL + contract.CatalogPath
	mod.HAProxyURL = srv.URL + "/metrics"
	mod.Timeout = web.Duration{Duration: 500 * time.Millisecond}
	mod.ReplicaAuthFile = credentialFileOf(t, "s3cret")
	out := &syncBuffer{}
	job := module.NewJob(module.JobConfig{
		PluginName: contract.PluginName, Name: contract.CollectorJob, ModuleName: contract.CollectorModule,
		FullName: contract.CollectorJob, Module: mod, Out: out, UpdateEvery: 1, Priority: module.Priority,
	})
	if !job.AutoDetection() {
		t.Fatal("AutoDetection failed")
	}
	go job.Start()
	defer job.Stop()

	// tick runs one collection: Tick drops a tick while the job is busy, so
	// it is repeated until the job has written something.
	clock := 0
	tick := func() string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			clock++
			job.Tick(clock)
			time.Sleep(20 * time.Millisecond)
			if s := out.take(); s != "" {
				return s
			}
		}
		t.Fatal("the job wrote nothing")
		return ""
	}

	first := tick()
	for _, line := range []string{
		"CHART 'pulse.fn_hello_requests' '' 'Requests answered by the replicas, by status class' 'requests/s' 'hello' 'pulse.requests' 'stacked' '70000' '1' '' 'pulse.d' 'pulse'\n",
		"DIMENSION '2xx' '2xx' 'incremental' '1' '1' ''\n",
		"CHART 'pulse.fn_hello_latency' '' 'Time inside the replica (watchdog: request received to response written) over the last interval; clients also wait for the network and the gateway' 'milliseconds' 'hello' 'pulse.latency' 'line' '70002' '1' '' 'pulse.d' 'pulse'\n",
		"DIMENSION 'p95' 'p95' 'absolute' '1' '1000' ''\n",
		"CHART 'pulse.fn_hello_utilization' '' 'Utilisation: demand / (ready replicas x target)' 'percentage' 'hello' 'pulse.utilization' 'line' '70004' '1' '' 'pulse.d' 'pulse'\n",
		"DIMENSION 'utilization' 'utilization' 'absolute' '1' '100' ''\n",
		"VARIABLE CHART 'replicas' = 0\n",
		"CHART 'pulse.fn_hello_gateway_requests' '' 'Gateway requests passed to the replicas, 5xx answers, and requests throttled by the rate limit (HAProxy backend)' 'requests/s' 'hello' 'pulse.gateway_requests' 'line' '70007' '1' '' 'pulse.d' 'pulse'\n",
		"CHART 'pulse.collector' '' 'Pulse collector: replicas in the catalog and scrapes' 'replicas' 'pulse.d' 'pulse.collector' 'line' '71000' '1' '' 'pulse.d' 'pulse'\n",
		// Values: 4 gateway sessions (3 queued) over no ready replica
		// against the default target 10: 40 %.
		"BEGIN 'pulse.fn_hello_utilization'\nSET 'utilization' = 4000\nVARIABLE CHART 'replicas' = 0\nVARIABLE CHART 'target' = 10\nVARIABLE CHART 'floor' = 1\nEND\n",
		"BEGIN 'pulse.fn_hello_gateway_demand'\nSET 'sessions' = 4\nSET 'queue' = 3\nEND\n",
		"BEGIN 'pulse.fn_hello_replicas'\nSET 'running' = 0\nSET 'desired' = 1\nSET 'scraped' = 0\nEND\n",
	} {
		if !strings.Contains(first, line) {
			t.Errorf("first cycle lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("first cycle:\n%s", first)
	}

	pulsed.set(func(f *fakePulsed) { f.cat = catalogOf("v2", fn("echo", 1, nil)) })
	second := tick()
	for _, line := range []string{
		"CHART 'pulse.fn_hello_requests' '' 'Requests answered by the replicas, by status class' 'requests/s' 'hello' 'pulse.requests' 'stacked' '70000' '1' 'obsolete' 'pulse.d' 'pulse'\n",
		"CHART 'pulse.fn_echo_requests' '' 'Requests answered by the replicas, by status class' 'requests/s' 'echo' 'pulse.requests' 'stacked' '70000' '1' '' 'pulse.d' 'pulse'\n",
	} {
		if !strings.Contains(second, line) {
			t.Errorf("second cycle lacks %q", line)
		}
	}
	if strings.Contains(second, "BEGIN 'pulse.fn_hello_") {
		t.Error("second cycle updates a removed function's chart")
	}
	if t.Failed() {
		t.Logf("second cycle:\n%s", second)
	}

	// And back: hello's charts are created anew.
	pulsed.set(func(f *fakePulsed) { f.cat = catalogOf("v3", fn("echo", 1, nil), fn("hello", 1, nil)) })
	if third := tick(); !strings.Contains(third, "CHART 'pulse.fn_hello_requests' '' ") {
		t.Errorf("hello's charts not recreated:\n%s", third)
	}
}
