package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/pulsefaas/pulse/bench/report"
	"github.com/pulsefaas/pulse/function"
)

// counter is an endless reader of 0, 1, 2, … (mod 256) from start: distinct
// "random" bytes, the same in every run.
type counter struct{ next byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.next
		c.next++
	}
	return len(p), nil
}

func TestLayerChangeImages(t *testing.T) {
	wd := bytes.Repeat([]byte("watchdog"), 1<<15) // 256 KiB
	fn := bytes.Repeat([]byte("handler!"), 1<<12) // 32 KiB
	labels := map[string]string{"pulse.test": "1"}
	full, changed, err := layerChangeImages(&counter{}, wd, fn, labels)
	if err != nil {
		t.Fatal(err)
	}
	if full.BaseLayer == "" || full.BaseLayer != changed.BaseLayer || full.ID == changed.ID {
		t.Fatalf("base layers %q, %q and IDs %s, %s: want one shared base and two images", full.BaseLayer, changed.BaseLayer, full.ID, changed.ID)
	}
	// B's thin archive holds its function layer and not the base's data.
	if bytes.Contains(changed.Thin, wd[:4096]) || !bytes.Contains(changed.Thin, fn[:4096]) {
		t.Errorf("thin archive (%d bytes): want the handler and not the watchdog", len(changed.Thin))
	}
	if len(full.Archive) != len(changed.Archive) || len(changed.Thin) >= len(changed.Archive)-len(wd) {
		t.Errorf("archives %d and %d bytes, thin %d: want equal full sizes and a thin one without the %d-byte base", len(full.Archive), len(changed.Archive), len(changed.Thin), len(wd))
	}
	// The inputs are not changed by the appended bytes.
	if !bytes.Equal(wd, bytes.Repeat([]byte("watchdog"), 1<<15)) || len(fn) != 8<<12 {
		t.Error("layerChangeImages changed its inputs")
	}
	// The next trial's base is another.
	again, _, err := layerChangeImages(&counter{next: 7}, wd, fn, labels)
	if err != nil || again.BaseLayer == full.BaseLayer {
		t.Errorf("second pair: base %q (first %q), %v: want a fresh base layer", again.BaseLayer, full.BaseLayer, err)
	}
	// Out of random bytes: an error that says so.
	if _, _, err := layerChangeImages(bytes.NewReader(make([]byte, layerNonce+1)), wd, fn, labels); err == nil || !strings.Contains(err.Error(), "random bytes") {
		t.Errorf("short random source: %v, want a random bytes error", err)
	}
}

func TestCheckLoads(t *testing.T) {
	loaded := func(node string, thin bool) function.NodeResult {
		return function.NodeResult{Node: node, Outcome: "loaded", LoadReport: function.LoadReport{Thin: thin}}
	}
	for _, tc := range []struct {
		name string
		res  []function.NodeResult
		thin bool
		want string // "" for no error
	}{
		{"full everywhere", []function.NodeResult{loaded("n1", false), loaded("n2", false)}, false, ""},
		{"thin everywhere", []function.NodeResult{loaded("n1", true), loaded("n2", true)}, true, ""},
		{"present", []function.NodeResult{loaded("n1", false), {Node: "n2", Outcome: "present"}}, false, "n2: present, want loaded"},
		{"full where thin was due", []function.NodeResult{loaded("n1", true), loaded("n2", false)}, true, "n2: sent the full archive"},
		{"thin where full was due", []function.NodeResult{loaded("n1", true)}, false, "n1: sent the thin archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLoads(tc.res, tc.thin)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkLoads: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestLayerGoals: the worst node of any B trial against the limit, a
// failed trial or a full load failing it; B's time over A's reported.
func TestLayerGoals(t *testing.T) {
	const full, thin = 6_700_000, 700_000
	trial := func(variant string, nodes int, wall float64, sent float64, isThin bool, err string) report.Row {
		r := report.NewRow("layer", "variant", variant, "nodes", nodes).PutAll(map[string]float64{"wall_s": wall, "loads": float64(nodes),
			"thin_loads": map[bool]float64{true: float64(nodes)}[isThin], "sent_max_bytes": sent, "full_bytes": full})
		if err != "" {
			r.Fail(errString(err))
		}
		return *r
	}
	ok := []report.Row{
		trial(layerFull, 1, 0.2, full, false, ""), trial(layerThin, 1, 0.1, thin, true, ""),
		trial(layerFull, 3, 0.4, full, false, ""), trial(layerThin, 3, 0.16, thin, true, ""),
		trial(layerFull, 3, 0.5, full, false, ""), trial(layerThin, 3, 0.2, thin, true, ""),
	}
	fellBack := append(slices.Clone(ok), trial(layerThin, 3, 0.5, thin+full, false, "n2: sent the full archive"))
	allFailed := []report.Row{trial(layerFull, 3, 0, 0, false, "dial"), trial(layerThin, 3, 0, 0, false, "not run: A's push failed")}
	const name = "a one-function-layer change moves ≤ 15 % of the full image's bytes to each node (image B after A through ClusterDistributor, to "
	for _, tc := range []struct {
		name  string
		rows  []report.Row
		want  report.Goal
		times [2]string // B ÷ A to 3 nodes and to 1: status and value
	}{
		{"thin everywhere", ok, report.Goal{Name: name + "1 and 3 node(s))", Value: 10.448, Limit: 15, Unit: "%", Status: report.Pass,
			Note: "at most 0.700 MB of the full 6.700 MB sent to a node; 7 of 7 loads thin; 0 of 3 trials failed"}, [2]string{"INFO 0.4", "INFO 0.5"}},
		{"one trial fell back to the full archive", fellBack, report.Goal{Name: name + "1 and 3 node(s))", Value: 10.448, Limit: 15, Unit: "%", Status: report.Fail,
			Note: "at most 0.700 MB of the full 6.700 MB sent to a node; 7 of 10 loads thin; 1 of 4 trials failed"}, [2]string{"INFO 0.4", "INFO 0.5"}},
		{"every trial failed", allFailed, report.Goal{Name: name + "3 node(s))", Limit: 15, Unit: "%", Status: report.Fail, NoValue: true,
			Note: "at most 0.000 MB of the full 0.000 MB sent to a node; 0 of 3 loads thin; 1 of 1 trials failed"}, [2]string{"INFO 0", "SKIP 0"}},
		{"not run", nil, report.Goal{Name: name + "1 and 3 node(s))", Limit: 15, Unit: "%", Status: report.Skip, Note: "the layer-change trials did not run"},
			[2]string{"SKIP 0", "SKIP 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs := clusterGoals(tc.rows, nil, nil, report.Summarize(tc.rows, "layer", "variant", "nodes"), nil, clusterPlan{Trials: 2})
			if gs[5] != tc.want { // after 4 failover goals and the push's
				t.Errorf("goal\n got %+v\nwant %+v", gs[5], tc.want)
			}
			for i, want := range tc.times {
				if got := fmt.Sprintf("%s %v", gs[6+i].Status, gs[6+i].Value); got != want {
					t.Errorf("%s: %s, want %s", gs[6+i].Name, got, want)
				}
			}
		})
	}
}

func TestParseFlagsCluster(t *testing.T) {
	cfg, err := parseFlags([]string{"-suite", "cluster", "-only", "push"}, io.Discard)
	if err != nil || cfg.Suite != suiteCluster || len(cfg.Only) != 1 || cfg.Only[0] != "push" {
		t.Errorf("-suite cluster -only push: %+v, %v", cfg, err)
	}
	if _, err := parseFlags([]string{"-suite", "cluster", "-only", "push,latency"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "-only latency: no such stage of the cluster suite; want some of idle,push,saturation,failover") {
		t.Errorf("-suite cluster -only latency: %v, want the cluster's stages named", err)
	}
}
