// Package scalelabels reads a function's scaling policy from its service
// labels (contract.LabelScale*). The collector (utilisation) and the scaler
// (desired replicas) must read them identically, so both use this package.
package scalelabels

import (
	"fmt"
	"strconv"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Defaults for labels that are missing (a service deployed by hand); they
// equal `pulse deploy`'s defaults.
const (
	DefaultMetric = contract.ScaleMetricInflight
	DefaultTarget = 10.0
	DefaultMin    = 1
	DefaultMax    = 10
)

// Policy is a function's scaling policy.
type Policy struct {
	Metric string        // contract.ScaleMetricInflight or contract.ScaleMetricRPS
	Target float64       // > 0: the metric's target value per replica
	Min    int           // ≥ 0
	Max    int           // ≥ max(Min, 1)
	Idle   time.Duration // scale to zero after this long idle; 0 = never
}

// Floor is the fewest replicas the autoscaler keeps: max(Min, 1). It never
// takes a function to zero nor brings it back from zero; the gateway does
// both (scale.idle, and scale from zero on a request).
func (p Policy) Floor() int { return max(p.Min, 1) }

// Parse reads the policy. Missing labels take the defaults; a malformed one
// is an error naming the label, and the returned policy holds the defaults
// for it, so a caller may log once and carry on.
func Parse(labels map[string]string) (Policy, error) {
	p := Policy{Metric: DefaultMetric, Target: DefaultTarget, Min: DefaultMin, Max: DefaultMax}
	var errs []error
	bad := func(label, v, want string) {
		errs = append(errs, fmt.Errorf("label %s=%q: want %s", label, v, want))
	}
	if v, ok := labels[contract.LabelScaleMetric]; ok && v != "" {
		switch v {
		case contract.ScaleMetricInflight, contract.ScaleMetricRPS:
			p.Metric = v
		default:
			bad(contract.LabelScaleMetric, v, contract.ScaleMetricInflight+" or "+contract.ScaleMetricRPS)
		}
	}
	if v, ok := labels[contract.LabelScaleTarget]; ok && v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f < 1e9 {
			p.Target = f
		} else {
			bad(contract.LabelScaleTarget, v, "a number above 0")
		}
	}
	if v, ok := labels[contract.LabelScaleMin]; ok && v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			p.Min = n
		} else {
			bad(contract.LabelScaleMin, v, "an integer ≥ 0")
		}
	}
	if v, ok := labels[contract.LabelScaleMax]; ok && v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 {
			p.Max = n
		} else {
			bad(contract.LabelScaleMax, v, "an integer ≥ 1")
		}
	}
	if p.Max < p.Min {
		errs = append(errs, fmt.Errorf("labels %s=%d above %s=%d", contract.LabelScaleMin, p.Min, contract.LabelScaleMax, p.Max))
		p.Max = p.Min
	}
	if v, ok := labels[contract.LabelScaleIdle]; ok && v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			p.Idle = d
		} else {
			bad(contract.LabelScaleIdle, v, "a duration such as 5m")
		}
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("scale policy: %w", joinErrs(errs))
	}
	return p, nil
}

func joinErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	msg := errs[0].Error()
	for _, e := range errs[1:] {
		msg += "; " + e.Error()
	}
	return fmt.Errorf("%s", msg)
}

// Clamp limits n to [Min, Max].
func (p Policy) Clamp(n int) int { return max(p.Min, min(n, p.Max)) }
