package alarms

import (
	"testing"

	"github.com/pulsefaas/pulse/collector"
)

// DESIGN §5: the health templates may only use contexts, dimensions and
// chart variables the collector's charts really have.
func TestTemplatesMatchCollectorCharts(t *testing.T) {
	var specs []chartSpec
	for _, c := range collector.ChartSpecs() {
		specs = append(specs, chartSpec{context: c.Context, dims: c.Dims, vars: c.Vars})
	}
	if len(specs) == 0 {
		t.Fatal("collector.ChartSpecs() is empty")
	}
	for _, p := range checkHealth(parseTemplates(t), specs) {
		t.Error(p)
	}
}
