package report

import (
	"fmt"
	"math"
)

// Goal verdicts.
const (
	Pass = "PASS"
	Fail = "FAIL"
	Skip = "SKIP"
	Info = "INFO" // a figure the issue asks for, without a limit
)

// Goal is one target from an issue and how a run did against it. Every
// limit is an upper one: the value passes when it is at most Limit.
type Goal struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Unit   string  `json:"unit"`
	Status string  `json:"status"`
	Note   string  `json:"note,omitempty"`
	// NoValue says the goal was measured but has no value (every trial
	// failed): Value is 0 and means nothing.
	NoValue bool `json:"no_value,omitempty"`
}

// NewGoal is a goal not yet checked.
func NewGoal(name, unit string, limit float64) Goal {
	return Goal{Name: name, Unit: unit, Limit: limit}
}

// Check sets the goal's value (to a thousandth) and its verdict. A NaN
// value (nothing measured) fails without a value.
func (g Goal) Check(v float64) Goal {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		g.Status, g.NoValue = Fail, true
		if g.Note == "" {
			g.Note = "nothing measured"
		}
		return g
	}
	g.Value = Round3(v)
	if g.Status != Info {
		g.Status = Pass
		if g.Value > g.Limit {
			g.Status = Fail
		}
	}
	return g
}

// Noted sets the goal's note.
func (g Goal) Noted(format string, a ...any) Goal {
	g.Note = fmt.Sprintf(format, a...)
	return g
}

// Skipped is the goal not checked, and why.
func (g Goal) Skipped(why string) Goal {
	g.Status, g.Note = Skip, why
	return g
}

// Failed is the goal failed without a value, and why.
func (g Goal) Failed(why string) Goal {
	g.Status, g.Note, g.NoValue = Fail, why, true
	return g
}

// AsInfo is the goal as a figure without a limit.
func (g Goal) AsInfo() Goal {
	g.Status = Info
	return g
}

// Over checks the goal against metric's median in the group labelled
// k=v: SKIP when no such group ran, FAIL when every run failed or one was
// flagged (its figures came with errors).
func (g Goal) Over(groups []Group, k, v, metric string) Goal {
	return g.OverScaled(groups, k, v, metric, 1)
}

// OverScaled is Over of the median times f (kB in MB).
func (g Goal) OverScaled(groups []Group, k, v, metric string, f float64) Goal {
	grp, ok := Find(groups, k, v)
	if bad := g.unfit(grp, ok, v); bad != nil {
		return *bad
	}
	return g.Check(grp.M(metric)*f).flagged(grp, v)
}

// Ratio checks the goal against metric's median in group k=a over its
// median in group k=b; FAIL when either is flagged.
func (g Goal) Ratio(groups []Group, k, a, b, metric string) Goal {
	ga, oka := Find(groups, k, a)
	gb, okb := Find(groups, k, b)
	if bad := g.unfit(ga, oka, a); bad != nil {
		return *bad
	}
	if bad := g.unfit(gb, okb, b); bad != nil {
		return *bad
	}
	checked := g.Check(ga.M(metric) / gb.M(metric))
	if ga.Flagged() {
		return checked.flagged(ga, a)
	}
	return checked.flagged(gb, b)
}

// unfit is the goal's verdict when grp cannot be read (missing, did not
// run, every run failed), nil when it can.
func (g Goal) unfit(grp Group, ok bool, name string) *Goal {
	var out Goal
	switch {
	case !ok:
		out = g.Skipped(name + " was not in this run")
	case grp.Runs == 0 && grp.Skipped != "":
		out = g.Skipped(name + " did not run: " + grp.Skipped)
	case grp.Runs == 0:
		out = g.Failed(name + ": every run failed")
	default:
		return nil
	}
	return &out
}

// flagged fails a checked goal whose group was flagged.
func (g Goal) flagged(grp Group, name string) Goal {
	if grp.Flagged() && g.Status != Skip {
		g.Status, g.Note = Fail, name+" had errors: "+grp.Flags[0]
	}
	return g
}

// FormatWithUnit formats a goal's value or limit: counts whole, ratios and
// percentages to a thousandth, times to what they are measured in.
func FormatWithUnit(v float64, unit string) string {
	switch unit {
	case "×":
		return fmt.Sprintf("%.3f×", v)
	case "%":
		return fmt.Sprintf("%.3f %%", v)
	case "µs", "ms":
		return fmt.Sprintf("%.1f %s", v, unit)
	case "requests", "trials", "transitions":
		return fmt.Sprintf("%.0f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}
