// Package scalelabels is the one owner of a function's scaling policy: its
// defaults, its metric names, its rules (Validate), its service labels
// (contract.LabelScale*: Format writes them, Parse reads them). The CLI
// (package function: functions.yml, `pulse deploy`, `pulse scale`, `pulse
// inspect`), the collector (utilisation), the gateway (scale to zero) and the
// scaler (desired replicas) all use it, so they cannot disagree. (Before
// issue 13 the policy type, its defaults and its rules were package
// function's; function.Scale is now an alias of Policy.)
package scalelabels

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pulsefaas/pulse/contract"
)

// Scaling metrics (Policy.Metric).
const (
	MetricInflight = contract.ScaleMetricInflight // requests in progress per replica
	MetricRPS      = contract.ScaleMetricRPS      // requests per second per replica
	MetricQueue    = contract.ScaleMetricQueue    // queued async requests per replica
)

// Metrics lists every scaling metric with what one unit of it is; adding a
// metric means adding it here (and to the collector's utilisation).
var Metrics = []struct{ Name, Unit string }{
	{MetricInflight, "requests in progress per replica"},
	{MetricRPS, "requests per second per replica"},
	{MetricQueue, "queued async requests per replica"},
}

// ValidMetric reports whether m is one of Metrics.
func ValidMetric(m string) bool {
	for _, x := range Metrics {
		if x.Name == m {
			return true
		}
	}
	return false
}

// Defaults of a function whose spec sets none, and of labels that are
// missing (a service deployed by hand).
const (
	DefaultMetric = MetricInflight
	DefaultTarget = 10.0
	DefaultMin    = 1
	DefaultMax    = 10
	// MaxTarget bounds Target from above (exclusive).
	MaxTarget = 1e9
)

// Default is the policy of a function that sets none: 1 to 10 replicas, 10
// requests in flight per replica, never to zero.
func Default() Policy {
	return Policy{Metric: DefaultMetric, Target: DefaultTarget, Min: DefaultMin, Max: DefaultMax}
}

// Policy is a function's scaling policy. Every function has a cap: Max is
// at least max(Min, 1); there is no "no cap" value.
type Policy struct {
	Metric string        // one of Metrics: MetricInflight, MetricRPS or MetricQueue
	Target float64       // in (0, MaxTarget): the metric's target value per replica
	Min    int           // ≥ 0: replicas at least (the deploy's count); 0 allows scale to zero
	Max    int           // ≥ max(Min, 1): replicas at most
	Idle   time.Duration // scale to zero after this long idle; 0 = never
}

// Problem is one rule a policy breaks: Field is the policy's field as
// functions.yml names it under scale (metric, target, min, max, idle), Msg
// says what is wrong and what to write.
type Problem struct{ Field, Msg string }

// Validate returns every rule p breaks, in field order; none for a policy
// Parse accepts from the labels Format writes.
func (p Policy) Validate() []Problem {
	var ps []Problem
	if !ValidMetric(p.Metric) {
		ps = append(ps, Problem{"metric", fmt.Sprintf("%q is not a scaling metric; write %s", p.Metric, metricChoices())})
	}
	if t := strconv.FormatFloat(p.Target, 'g', -1, 64); !(p.Target > 0) {
		ps = append(ps, Problem{"target", t + ": must be above 0: the value of the metric one replica should carry, e.g. 10"})
	} else if !(p.Target < MaxTarget) {
		ps = append(ps, Problem{"target", t + ": must be below 1e9: the value of the metric one replica should carry, e.g. 10"})
	}
	if p.Min < 0 {
		ps = append(ps, Problem{"min", fmt.Sprintf("%d is negative; write 0 (to allow scaling to zero) or more", p.Min)})
	}
	if p.Max < 1 {
		ps = append(ps, Problem{"max", fmt.Sprintf("%d: must be at least 1: every function has a cap; write the most replicas it may run, at least min and 1, e.g. %d", p.Max, max(p.Min, DefaultMax))})
	} else if p.Min > p.Max {
		ps = append(ps, Problem{"min", fmt.Sprintf("%d is above scale.max (%d); lower min or raise max", p.Min, p.Max)})
	}
	if p.Idle < 0 {
		ps = append(ps, Problem{"idle", fmt.Sprintf("%s is negative; write how long a function may be idle before it scales to zero, e.g. 5m, or remove it to never scale to zero", p.Idle)})
	}
	return ps
}

// metricChoices reads "inflight (requests in progress per replica), rps
// (…) or queue (…)".
func metricChoices() string {
	var b strings.Builder
	for i, m := range Metrics {
		switch {
		case i == 0:
		case i == len(Metrics)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", m.Name, m.Unit)
	}
	return b.String()
}

// Format returns p's service labels, which Parse reads back as p. Idle is
// empty when the function never scales to zero.
func Format(p Policy) map[string]string {
	idle := ""
	if p.Idle > 0 {
		idle = p.Idle.String()
	}
	return map[string]string{
		contract.LabelScaleMetric: p.Metric,
		contract.LabelScaleTarget: strconv.FormatFloat(p.Target, 'g', -1, 64),
		contract.LabelScaleMin:    strconv.Itoa(p.Min),
		contract.LabelScaleMax:    strconv.Itoa(p.Max),
		contract.LabelScaleIdle:   idle,
	}
}

// Floor is the fewest replicas the autoscaler keeps: max(Min, 1). It never
// takes a function to zero nor brings it back from zero; the gateway does
// both (scale.idle, and scale from zero on a request).
func (p Policy) Floor() int { return max(p.Min, 1) }

// Parse reads the policy. Missing labels take the defaults; a malformed one
// is an error naming the label, and the returned policy holds the defaults
// for it, so a caller may log once and carry on.
func Parse(labels map[string]string) (Policy, error) {
	p := Default()
	var errs []error
	bad := func(label, v, want string) {
		errs = append(errs, fmt.Errorf("label %s=%q: want %s", label, v, want))
	}
	if v, ok := labels[contract.LabelScaleMetric]; ok && v != "" {
		if ValidMetric(v) {
			p.Metric = v
		} else {
			bad(contract.LabelScaleMetric, v, metricChoices())
		}
	}
	if v, ok := labels[contract.LabelScaleTarget]; ok && v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f < MaxTarget {
			p.Target = f
		} else {
			bad(contract.LabelScaleTarget, v, "a number above 0 and below 1e9")
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
			bad(contract.LabelScaleMax, v, "an integer ≥ 1 (every function has a cap: the most replicas it may run)")
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
