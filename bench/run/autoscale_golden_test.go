package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
)

// autoscaleRows makes the rows of a stored autoscale result of the old
// schema (before bench/report) and returns the host's CPUs.
func autoscaleRows(t *testing.T, b []byte) (*report.Report, int) {
	var old struct {
		Started string           `json:"started"`
		Machine machineInfo      `json:"machine"`
		Steps   []map[string]any `json:"step_trials"`
		Cold    []map[string]any `json:"cold_trials"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	rep := &report.Report{Suite: suiteAutoscale, Started: old.Started, Setup: "2 CPUs (AMD EPYC), kernel 6.18.44"}
	put := func(r *report.Row, m map[string]any, keys ...string) {
		for _, k := range keys {
			if v, ok := m[k].(float64); ok {
				r.Put(strings.Replace(k, "failed", "failed_requests", 1), v)
			}
		}
	}
	for _, s := range old.Steps {
		if s["step"] != asStep {
			continue // the suite no longer runs the 1.5× step
		}
		r := report.NewRow("step", "step", s["step"], "conns", s["connections"], "trial", s["trial"])
		put(r, s, "traffic_s", "load1", "requests", "failed", "service_replicas")
		if v, ok := s["scaled_s"].(float64); ok {
			r.Put("decided_s", v)
		}
		if ds, _ := s["decisions"].([]any); len(ds) > 0 {
			first := ds[0].(map[string]any)
			r.Labels["trigger"] = first["trigger"].(string)
			r.Put("first_replicas", first["to"].(float64))
		}
		if s["foreign_change"] == true {
			r.Put("foreign_change", 1)
		}
		if s["error"] != nil {
			r.Fail(errString(s["error"].(string)))
		}
		rep.Add(r)
	}
	for _, c := range old.Cold {
		r := report.NewRow("cold", "from", "zero", "trial", c["trial"])
		put(r, c, "latency_s", "status", "load1")
		if c["status"] != 200.0 {
			r.Fail(errString(fmt.Sprintf("status %v, want 200", c["status"])))
		}
		rep.Add(r)
	}
	return rep, old.Machine.CPUs
}

// oldCollector is the part of a stored collector result of the old schema
// that its rows are made from.
type oldCollector struct {
	Started string      `json:"started"`
	Machine machineInfo `json:"machine"`
	Cycles  []struct {
		Replicas int
		RawMS    []float64 `json:"raw_ms"`
		Scraped  float64   `json:"scraped_last_cycle"`
		Failed   float64   `json:"failed_total"`
	}
	Plugin  map[string]any `json:"plugin"`
	Netdata map[string]any `json:"netdata"`
}

// collectorRows makes the rows of a stored collector result of the old
// schema.
func collectorRows(t *testing.T, b []byte) *report.Report {
	var old oldCollector
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	rep := &report.Report{Suite: suiteCollector, Started: old.Started, Setup: "2 CPUs (AMD EPYC), kernel 6.18.44"}
	for _, c := range old.Cycles {
		for i, ms := range c.RawMS {
			if c.Replicas == collectorReplicas {
				rep.Add(report.NewRow("cycle", "replicas", c.Replicas, "cycle", i+1).Put("ms", ms).Put("scraped", c.Scraped).Put("failed_scrapes", 0))
			}
		}
	}
	kb := func(m map[string]any, key string) float64 { return m[key].(float64) * mb / 1024 }
	p, n := old.Plugin, old.Netdata
	rep.Add(report.NewRow("plugin", "replicas", 100).PutAll(map[string]float64{"cpu_core_pct": p["cpu_pct_of_one_core"].(float64),
		"rss_kb": kb(p, "rss_mb"), "catalog_requests": p["catalog_requests"].(float64)}))
	rep.Add(report.NewRow("netdata", "netdata", "lab").PutAll(map[string]float64{"charts": n["charts"].(float64),
		"plugin_rss_kb": kb(n, "plugin_rss_mb"), "total_rss_kb": kb(n, "total_rss_mb")}))
	return rep
}

// TestAutoscaleCollectorGolden makes rows of stored results of the
// autoscale and collector suites (bench/results, the old schema),
// summarises them and checks the text and markdown renderings against
// golden files; run with -update to rewrite them after an intended change.
func TestAutoscaleCollectorGolden(t *testing.T) {
	for _, tc := range []struct {
		suite, stored string
		rep           func(b []byte) *report.Report
	}{
		{suiteAutoscale, "autoscale-20261126T000145Z.json", func(b []byte) *report.Report {
			rep, cpus := autoscaleRows(t, b)
			autoscaleSummary(rep, cpus)
			return rep
		}},
		{suiteCollector, "collector-20261126T000942Z.json", func(b []byte) *report.Report {
			rep := collectorRows(t, b)
			collectorSummary(rep)
			return rep
		}},
	} {
		b, err := os.ReadFile(filepath.Join("..", "results", tc.stored))
		if err != nil {
			t.Fatal(err)
		}
		rep := tc.rep(b)
		for ext, got := range map[string]string{".txt": rep.Render(false, ""), ".md": rep.Render(true, "results/"+tc.stored)} {
			golden := filepath.Join("testdata", tc.suite+"-results"+ext)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want := readTestdata(t, tc.suite+"-results"+ext); got != want {
				t.Errorf("%s renders differently from %s (run go test ./bench/run -update after an intended change):\n%s", tc.stored, golden, got)
			}
		}
	}
}
