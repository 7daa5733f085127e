package scalelabels

import (
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		want    Policy
		wantErr string
	}{
		{"defaults", nil, Policy{Metric: "inflight", Target: 10, Min: 1, Max: 10}, ""},
		{"all set", map[string]string{
			contract.LabelScaleMetric: "rps", contract.LabelScaleTarget: "2.5",
			contract.LabelScaleMin: "0", contract.LabelScaleMax: "20", contract.LabelScaleIdle: "90s",
		}, Policy{Metric: "rps", Target: 2.5, Min: 0, Max: 20, Idle: 90 * time.Second}, ""},
		{"bad metric", map[string]string{contract.LabelScaleMetric: "cpu"},
			Policy{Metric: "inflight", Target: 10, Min: 1, Max: 10}, "pulse.scale.metric"},
		{"bad target", map[string]string{contract.LabelScaleTarget: "-1"},
			Policy{Metric: "inflight", Target: 10, Min: 1, Max: 10}, "pulse.scale.target"},
		{"min above max", map[string]string{contract.LabelScaleMin: "5", contract.LabelScaleMax: "3"},
			Policy{Metric: "inflight", Target: 10, Min: 5, Max: 5}, "above"},
		{"bad idle", map[string]string{contract.LabelScaleIdle: "soon"},
			Policy{Metric: "inflight", Target: 10, Min: 1, Max: 10}, "pulse.scale.idle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.labels)
			if got != tc.want {
				t.Errorf("policy = %+v, want %+v", got, tc.want)
			}
			if tc.wantErr == "" && err != nil {
				t.Errorf("err = %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
	if got := (Policy{Min: 1, Max: 4}).Clamp(9); got != 4 {
		t.Errorf("Clamp(9) = %d", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("inflight", "10", "1", "10", "5m")
	f.Fuzz(func(t *testing.T, m, tg, lo, hi, idle string) {
		p, _ := Parse(map[string]string{contract.LabelScaleMetric: m, contract.LabelScaleTarget: tg,
			contract.LabelScaleMin: lo, contract.LabelScaleMax: hi, contract.LabelScaleIdle: idle})
		if p.Target <= 0 || p.Min < 0 || p.Max < p.Min || p.Max < 1 {
			t.Fatalf("invalid policy %+v", p)
		}
	})
}
