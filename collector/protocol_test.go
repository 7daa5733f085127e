package collector

import (
	"strings"
	"testing"
)

// TestChartTextsHaveNoQuotes: go.d v0.58.1 writes a CHART line with every
// field in single quotes and escapes nothing, and Netdata's plugins.d
// parser splits words at ' and ". A quote in a title (e.g. "gateway's")
// shifts the fields after it: Netdata then takes part of the title as the
// family and context, and the "obsolete" option lands in the wrong field,
// so the chart never goes obsolete. No text the module sends may hold one.
func TestChartTextsHaveNoQuotes(t *testing.T) {
	for _, ct := range append([]chartTemplate{collectorChart}, functionCharts...) {
		texts := []string{ct.ctx, ct.suffix, ct.title, ct.units, ct.kind}
		for _, d := range ct.dims {
			texts = append(texts, d.name)
		}
		texts = append(texts, ct.vars...)
		for _, s := range texts {
			if strings.ContainsAny(s, `'"`) {
				t.Errorf("chart %s: %q has a quote, which breaks the plugins.d CHART line", ct.suffix, s)
			}
		}
	}
	if strings.ContainsAny(collectorFamily, `'"`) {
		t.Errorf("collector family %q has a quote", collectorFamily)
	}
}
