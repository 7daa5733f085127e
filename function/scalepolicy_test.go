package function

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulsefaas/pulse/contract"
	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// TestScaleRoundTrip ties functions.yml, the service labels `pulse deploy`
// writes and the policy pulsed's scaler, collector and gateway read
// (scalelabels.Parse), defaults included: spec → labels → Parse gives the
// spec's policy, and `pulse inspect` and `pulse scale` read the same one.
func TestScaleRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       scalelabels.Policy
	}{
		{"defaults", "  a: {lang: go}\n", scalelabels.Default()},
		{"all set", "  a: {lang: go, scale: {metric: rps, target: 2.5, min: 0, max: 50, idle: 90s}}\n",
			scalelabels.Policy{Metric: "rps", Target: 2.5, Min: 0, Max: 50, Idle: 90 * time.Second}},
		{"min only", "  a: {lang: go, scale: {min: 3}}\n",
			scalelabels.Policy{Metric: "inflight", Target: 10, Min: 3, Max: 10}},
		{"max only", "  a: {lang: go, scale: {max: 1}}\n",
			scalelabels.Policy{Metric: "inflight", Target: 10, Min: 1, Max: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			specs, err := ParseSpecs("functions.yml", []byte(specDoc(tc.yaml)), specTestDir)
			if err != nil {
				t.Fatal(err)
			}
			if specs[0].Scale != tc.want {
				t.Fatalf("spec scale = %+v, want %+v", specs[0].Scale, tc.want)
			}
			labels := specs[0].ServiceLabels()
			got, err := scalelabels.Parse(labels)
			if err != nil || got != tc.want {
				t.Errorf("Parse(labels) = %+v, %v; want %+v", got, err, tc.want)
			}
			sp := scalePolicy(labels)
			if sp.Metric != got.Metric || sp.Target != got.Target || sp.Min != got.Min || sp.Max != got.Max ||
				sp.Idle != map[bool]string{true: got.Idle.String(), false: ""}[got.Idle > 0] {
				t.Errorf("scalePolicy(labels) = %+v, want %+v", sp, got)
			}
			if err := checkScaleLimits(got.Max, labels); err != nil {
				t.Errorf("checkScaleLimits(max %d) = %v", got.Max, err)
			}
			if err := checkScaleLimits(got.Max+1, labels); !errors.Is(err, ErrScaleLimit) {
				t.Errorf("checkScaleLimits(max+1 = %d) = %v, want ErrScaleLimit", got.Max+1, err)
			}
		})
	}
	// Parse's defaults for absent labels are the spec's defaults.
	if got, err := scalelabels.Parse(nil); err != nil || got != DefaultScale() {
		t.Errorf("Parse(no labels) = %+v, %v; DefaultScale() = %+v", got, err, DefaultScale())
	}
}

// TestScaleMaxZeroRefused: every function has a cap. functions.yml refuses
// max 0 with what to write, and `pulse scale` reads a hand-written
// pulse.scale.max=0 as the default cap, as the scaler does, not as no cap.
func TestScaleMaxZeroRefused(t *testing.T) {
	_, err := ParseSpecs("functions.yml", []byte(specDoc("  a: {lang: go, scale: {max: 0}}\n")), specTestDir)
	if err == nil || !strings.Contains(err.Error(), "scale.max: 0: must be at least 1: every function has a cap; write") {
		t.Errorf("max 0 = %v, want a refusal saying what to write", err)
	}
	labels := map[string]string{contract.LabelScaleMin: "1", contract.LabelScaleMax: "0"}
	err = checkScaleLimits(scalelabels.DefaultMax+1, labels)
	if !errors.Is(err, ErrScaleLimit) || !strings.Contains(err.Error(), "max is 10") {
		t.Errorf("scale to %d with max label 0 = %v, want ErrScaleLimit at the default max", scalelabels.DefaultMax+1, err)
	}
	if got := scalePolicy(labels); got.Max != scalelabels.DefaultMax {
		t.Errorf("inspect reads max label 0 as %d, want the default %d", got.Max, scalelabels.DefaultMax)
	}
}

// TestScaleTargetBound: a target the labels could not carry (Parse refuses
// 1e9 and above) is refused in functions.yml too.
func TestScaleTargetBound(t *testing.T) {
	_, err := ParseSpecs("functions.yml", []byte(specDoc("  a: {lang: go, scale: {target: 1e9}}\n")), specTestDir)
	if err == nil || !strings.Contains(err.Error(), "scale.target: 1e+09: must be below 1e9") {
		t.Errorf("target 1e9 = %v, want a refusal", err)
	}
}
