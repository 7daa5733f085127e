package collector

import (
	"io/fs"
	"reflect"
	"testing"

	"gopkg.in/yaml.v2"

	"github.com/netdata/go.d.plugin/agent/module"

	"github.com/pulsefaas/pulse/contract"
)

// TestChartSpecs pins the per-function charts to the contract's names.
func TestChartSpecs(t *testing.T) {
	want := []ChartSpec{
		{contract.CtxRequests, contract.ChartRequests, []string{contract.Dim2xx, contract.Dim3xx, contract.Dim4xx, contract.Dim5xx}, nil},
		{contract.CtxErrors, contract.ChartErrors, []string{contract.DimThrottled, contract.DimTimedOut}, nil},
		{contract.CtxLatency, contract.ChartLatency, []string{contract.DimAvg, contract.DimP95}, nil},
		{contract.CtxInflight, contract.ChartInflight, []string{contract.DimInflight}, nil},
		{contract.CtxUtilization, contract.ChartUtilization, []string{contract.DimUtilization}, []string{contract.VarReplicas, contract.VarTarget, contract.VarFloor}},
		{contract.CtxReplicas, contract.ChartReplicas, []string{contract.DimRunning, contract.DimDesired, contract.DimScraped}, nil},
		{contract.CtxGatewayDemand, contract.ChartGatewayDemand, []string{contract.DimSessions, contract.DimQueue}, nil},
		{contract.CtxGatewayRequests, contract.ChartGatewayRequests, []string{contract.DimRate, contract.DimGateway5xx, contract.DimThrottled}, nil},
		{contract.CtxDemand, contract.ChartDemand, []string{contract.DimDemand}, nil},
		{contract.CtxQueue, contract.ChartQueue, []string{contract.DimDepth, contract.DimPending, contract.DimInFlight}, nil},
		{contract.CtxQueueAge, contract.ChartQueueAge, []string{contract.DimOldest}, nil},
		{contract.CtxAsyncRequests, contract.ChartAsyncRequests, []string{contract.DimEnqueued, contract.DimDone, contract.DimFailed, contract.DimRetried}, nil},
	}
	got := ChartSpecs()
	for i := range got {
		if len(got[i].Vars) == 0 {
			got[i].Vars = nil
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ChartSpecs() =\n%+v\nwant\n%+v", got, want)
	}
}

// TestQueueChartNames pins the async queue charts' wire names (issue 16):
// the contract's constants are what pulsed's operators and dashboards use.
func TestQueueChartNames(t *testing.T) {
	got := []string{contract.CtxQueue, contract.ChartQueue, contract.DimDepth, contract.DimPending, contract.DimInFlight,
		contract.CtxQueueAge, contract.ChartQueueAge, contract.DimOldest,
		contract.CtxAsyncRequests, contract.ChartAsyncRequests, contract.DimEnqueued, contract.DimDone, contract.DimFailed, contract.DimRetried,
		contract.ScaleMetricQueue}
	want := []string{"pulse.queue", "queue", "depth", "pending", "in_flight",
		"pulse.queue_age", "queue_age", "oldest",
		"pulse.async_requests", "async_requests", "enqueued", "done", "failed", "retried",
		"queue"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("names %q, want %q", got, want)
	}
}

// TestModuleChartsFollowSpecs checks that the module's charts for a
// function are exactly ChartSpecs (contexts, IDs, dimension and variable
// names as Netdata sees them), with the function as the family, and that
// every key they read is in Collect's map.
func TestModuleChartsFollowSpecs(t *testing.T) {
	p := New()
	if !p.Init() {
		t.Fatal("Init failed")
	}
	p.syncCharts([]string{"hello-2"})
	mx := map[string]int64{}
	newAggregator(nil).cycle(cycleInput{catalog: catalogOf("v", fn("hello-2", 1, nil)), haproxyOK: true,
		backends: map[string]backendStats{"hello-2": {}}, queuesOK: true}, mx)
	specs := ChartSpecs()
	charts := *p.Charts()
	if len(charts) != len(specs)+1 {
		t.Fatalf("%d charts, want %d + the collector's", len(charts), len(specs))
	}
	for i, s := range specs {
		ch := charts[i+1]
		if ch.ID != contract.ChartID("hello-2", s.IDSuffix) || ch.Ctx != s.Context || ch.Fam != "hello-2" {
			t.Errorf("chart %d: ID %q ctx %q fam %q, want %q %q", i, ch.ID, ch.Ctx, ch.Fam, contract.ChartID("hello-2", s.IDSuffix), s.Context)
		}
		var dims, vars []string
		for _, d := range ch.Dims {
			dims = append(dims, d.Name)
			if _, ok := mx[d.ID]; !ok {
				t.Errorf("%s: dimension %s (%s) not collected", ch.ID, d.Name, d.ID)
			}
		}
		for _, v := range ch.Vars {
			vars = append(vars, v.Name)
			if _, ok := mx[v.ID]; !ok {
				t.Errorf("%s: variable %s (%s) not collected", ch.ID, v.Name, v.ID)
			}
		}
		if !reflect.DeepEqual(dims, s.Dims) || len(vars)+len(s.Vars) > 0 && !reflect.DeepEqual(vars, s.Vars) {
			t.Errorf("%s: dims %v vars %v, want %v %v", ch.ID, dims, vars, s.Dims, s.Vars)
		}
	}
	var _ module.Module = p
}

// TestConfigFiles checks the shipped configuration: the plugin enables
// only module pulse; the module's one job is named like the module and its
// keys are the Config's, with the defaults.
func TestConfigFiles(t *testing.T) {
	var plugin struct {
		Enabled    bool            `yaml:"enabled"`
		DefaultRun bool            `yaml:"default_run"`
		MaxProcs   int             `yaml:"max_procs"`
		Modules    map[string]bool `yaml:"modules"`
	}
	readYAML(t, "pulse.d.conf", &plugin)
	if !plugin.Enabled || plugin.DefaultRun || !reflect.DeepEqual(plugin.Modules, map[string]bool{contract.CollectorModule: true}) {
		t.Errorf("pulse.d.conf = %+v", plugin)
	}
	var mod struct {
		UpdateEvery        int              `yaml:"update_every"`
		AutodetectionRetry int              `yaml:"autodetection_retry"`
		Jobs               []map[string]any `yaml:"jobs"`
	}
	readYAML(t, "pulse.d/pulse.conf", &mod)
	if mod.UpdateEvery != 1 || len(mod.Jobs) != 1 || mod.Jobs[0]["name"] != contract.CollectorJob {
		t.Fatalf("pulse.d/pulse.conf = %+v", mod)
	}
	b, err := yaml.Marshal(mod.Jobs[0])
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		Name   string `yaml:"name"`
		Config `yaml:",inline"`
	}
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		t.Fatalf("job keys: %v", err)
	}
	job.UpdateEvery = mod.UpdateEvery
	if job.Config != defaultConfig() {
		t.Errorf("job config %+v, want the defaults %+v", job.Config, defaultConfig())
	}
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := fs.ReadFile(ConfigFiles, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// Netdata's plugins.d protocol mangles bytes outside ASCII in titles and
// units (a "×" arrived as "__" on every function's chart).
func TestChartTextIsASCII(t *testing.T) {
	for _, c := range append(append([]chartTemplate(nil), functionCharts...), collectorChart) {
		for _, s := range []string{c.title, c.units} {
			for i := 0; i < len(s); i++ {
				if s[i] < ' ' || s[i] > '~' || s[i] == '\'' {
					t.Errorf("chart %s: %q has byte %q at %d; want printable ASCII without quotes", c.suffix, s, s[i], i)
					break
				}
			}
		}
	}
}
