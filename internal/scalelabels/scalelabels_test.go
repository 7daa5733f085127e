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
		{"queue", map[string]string{contract.LabelScaleMetric: "queue", contract.LabelScaleTarget: "10"},
			Policy{Metric: "queue", Target: 10, Min: 1, Max: 10}, ""},
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

// TestValidate: every rule names its field, and Parse and Validate agree that
// max 0 is refused, saying what to write.
func TestValidate(t *testing.T) {
	if ps := Default().Validate(); len(ps) != 0 {
		t.Errorf("Default().Validate() = %v", ps)
	}
	ps := Policy{Metric: "cpu", Target: 0, Min: -1, Max: 0, Idle: -time.Second}.Validate()
	var fields []string
	for _, p := range ps {
		fields = append(fields, p.Field)
	}
	if got := strings.Join(fields, ","); got != "metric,target,min,max,idle" {
		t.Errorf("fields = %s, want metric,target,min,max,idle (%v)", got, ps)
	}
	const choices = `"cpu" is not a scaling metric; write inflight (requests in progress per replica), rps (requests per second per replica) or queue (queued async requests per replica)`
	for _, p := range ps {
		if p.Field == "metric" && p.Msg != choices {
			t.Errorf("metric cpu: %q, want %q", p.Msg, choices)
		}
		if p.Field == "max" && !strings.Contains(p.Msg, "every function has a cap; write") {
			t.Errorf("max 0: %q does not say what to write", p.Msg)
		}
	}
	if _, err := Parse(map[string]string{contract.LabelScaleMax: "0"}); err == nil || !strings.Contains(err.Error(), "every function has a cap") {
		t.Errorf("Parse(max=0) = %v, want a refusal", err)
	}
}

// FuzzFormatParse: a policy Validate accepts survives Format → Parse
// unchanged, and one Parse accepts from any labels is valid.
func FuzzFormatParse(f *testing.F) {
	f.Add("inflight", 10.0, 1, 10, int64(0))
	f.Add("rps", 2.5, 0, 50, int64(90*time.Second))
	f.Add("queue", 10.0, 0, 5, int64(0))
	f.Add("inflight", 1e9, 0, 0, int64(-1))
	f.Fuzz(func(t *testing.T, m string, target float64, lo, hi int, idle int64) {
		p := Policy{Metric: m, Target: target, Min: lo, Max: hi, Idle: time.Duration(idle)}
		got, err := Parse(Format(p))
		if len(p.Validate()) == 0 {
			if err != nil || got != p {
				t.Fatalf("%+v → %v → %+v, %v", p, Format(p), got, err)
			}
		} else if err == nil && got == p {
			t.Fatalf("invalid %+v (%v) read back unchanged without error", p, p.Validate())
		}
		if ps := got.Validate(); len(ps) != 0 {
			t.Fatalf("Parse gave invalid %+v: %v", got, ps)
		}
	})
}
