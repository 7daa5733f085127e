package scaler

import (
	"fmt"
	"math"
	"time"

	"github.com/pulsefaas/pulse/internal/scalelabels"
)

// decideInput is everything one decision depends on: the truth just read
// (service, catalog, Netdata) and the scaler's settings.
type decideInput struct {
	Now    time.Time
	Policy scalelabels.Policy
	// Replicas is the service's replica count, Ready the replicas in the
	// catalog that run and are not draining.
	Replicas int
	Ready    int
	// Utilisation is the recent average (percent); HaveUtilisation is false
	// when it could not be read.
	Utilisation     float64
	HaveUtilisation bool
	// Demand is the peak demand (in the scale metric: in flight, per
	// second, or queued async requests; the policy does not depend on which)
	// over the lookback, read when the utilisation is above UpThreshold;
	// WindowMaxDemand the peak over Window, read with WindowMax. A scale
	// decision sizes from them (demand / target) when they were read, from
	// ready × utilisation otherwise: the utilisation was measured against
	// the replicas ready then, which lag the replicas ready now while new
	// ones start, and multiplying the two would double-count a step.
	Demand              float64
	HaveDemand          bool
	WindowMaxDemand     float64
	HaveWindowMaxDemand bool
	// WindowMax is the largest utilisation over the last Window;
	// HaveWindowMax is false when it was not (or could not be) read.
	WindowMax     float64
	HaveWindowMax bool
	// LastChange is the service's last update (UpdatedAt): by the scaler,
	// `pulse scale` or a deploy. No scale-down within Window of it.
	LastChange time.Time

	Window        time.Duration
	UpThreshold   float64 // scale up above this utilisation
	DownThreshold float64 // consider scaling down below it
}

// decision is decideReplicas's answer: set the service to Replicas (equal
// to the input's Replicas: leave it). Want is what the policy wants before
// the scale-down step limit (0: unknown), Reason says why, for people.
type decision struct {
	Replicas int
	Want     int
	Reason   string
}

// decideReplicas applies DESIGN §5: desired = ceil(ready × utilisation /
// 100) clamped to [min, max]; up at once by as many as needed; down only
// after the utilisation stayed below the scale-down threshold for a whole
// window and the service has not changed for one, and then by at most half.
//
// Without a utilisation reading nothing changes, not even to respect min
// and max. The autoscaler never takes a function to zero or brings it back from zero
// (a service at 0 replicas is left alone: the gateway scales from zero and
// to zero when idle), so its floor is max(min, 1).
func decideReplicas(in decideInput) decision {
	cur := in.Replicas
	hold := func(want int, format string, args ...any) decision {
		return decision{Replicas: cur, Want: want, Reason: fmt.Sprintf(format, args...)}
	}
	if cur == 0 {
		return hold(0, "scaled to zero: left to scale-from-zero")
	}
	if !in.HaveUtilisation {
		// No evidence, no action, not even the limits: Netdata may be down,
		// or the function is not one this Pulse's collector watches.
		return hold(0, "utilisation unknown")
	}
	floor := in.Policy.Floor()
	ceiling := max(in.Policy.Max, floor)
	clamp := func(n int) int { return max(floor, min(n, ceiling)) }

	if cur < floor {
		return decision{Replicas: floor, Want: floor, Reason: fmt.Sprintf("below min %d", floor)}
	}
	want := 0
	haveWant := in.Ready > 0 || in.HaveDemand
	switch {
	case in.HaveDemand:
		want = clamp(replicasForDemand(in.Demand, in.Policy.Target))
	case haveWant:
		want = clamp(replicasFor(in.Ready, in.Utilisation))
	}
	// The peak demand over the lookback fits the replicas the service
	// already has, within the scale-up threshold's tolerance: a scale-up
	// just made (by this pulsed or one before a restart) is not repeated
	// for a sample that counted a request on two replicas (10 clients on 5
	// replicas of target 2 peaked at 11 in flight, not 10).
	carried := in.HaveDemand && in.Policy.Target > 0 &&
		in.Demand <= float64(cur)*in.Policy.Target*in.UpThreshold/100
	if haveWant && in.Utilisation > in.UpThreshold && want > cur && carried {
		return hold(want, "peak demand %.4g fits %d replicas of target %.4g within %.0f%%", in.Demand, cur, in.Policy.Target, in.UpThreshold)
	}
	if haveWant && in.Utilisation > in.UpThreshold && want > cur {
		return decision{Replicas: want, Want: want,
			Reason: fmt.Sprintf("utilisation %.0f%% over %d ready replicas above %.0f%%", in.Utilisation, in.Ready, in.UpThreshold)}
	}
	if haveWant && in.Utilisation > in.UpThreshold && cur <= ceiling {
		// Starting replicas, or at max: the demand is already provided for.
		return hold(want, "utilisation %.0f%% over %d ready replicas wants %d: has %d", in.Utilisation, in.Ready, want, cur)
	}

	// Scaling down: above max, or utilisation low for the whole window.
	target, why := cur, ""
	switch {
	case cur > ceiling:
		target, why = ceiling, fmt.Sprintf("above max %d", ceiling)
		if !haveWant {
			want = ceiling
		}
	case in.Ready == 0:
		return hold(0, "no ready replica yet")
	case in.Utilisation >= in.DownThreshold:
		return hold(want, "utilisation %.0f%% within [%.0f%%, %.0f%%]", in.Utilisation, in.DownThreshold, in.UpThreshold)
	case !in.HaveWindowMax:
		return hold(want, "utilisation %.0f%% low but its window maximum is unknown", in.Utilisation)
	case in.WindowMax >= in.DownThreshold:
		return hold(want, "utilisation %.0f%% low but %.0f%% within the last %v", in.Utilisation, in.WindowMax, in.Window)
	default:
		// Size for the window's peak, not the current average.
		want = clamp(replicasFor(in.Ready, in.WindowMax))
		if in.HaveWindowMaxDemand {
			want = clamp(replicasForDemand(in.WindowMaxDemand, in.Policy.Target))
		}
		target, why = want, fmt.Sprintf("utilisation at most %.0f%% for %v, below %.0f%%", in.WindowMax, in.Window, in.DownThreshold)
	}
	if target >= cur {
		return hold(want, "at the policy's size")
	}
	if since := in.Now.Sub(in.LastChange); since < in.Window {
		return hold(want, "stabilising: the service changed %v ago (window %v)", since.Round(time.Second), in.Window)
	}
	next := max(target, (cur+1)/2) // at most half per window
	return decision{Replicas: next, Want: want, Reason: why}
}

// replicasForDemand is ceil(demand / target): the replicas that carry the
// demand at the target, with the same allowance for floating-point noise.
func replicasForDemand(demand, target float64) int {
	if demand <= 0 || target <= 0 {
		return 0
	}
	x := demand / target
	if x > 1e6 {
		return 1e6
	}
	return int(math.Ceil(x - 1e-9))
}

// replicasFor is ceil(ready × utilisation / 100): the replicas that carry the
// demand at the target. A hair is taken off before rounding up so that
// floating-point noise (3 × 133.33…% = 4.0000001) does not add a replica.
func replicasFor(ready int, utilisation float64) int {
	if utilisation <= 0 || ready <= 0 {
		return 0
	}
	x := float64(ready) * utilisation / 100
	if x > 1e6 {
		return 1e6
	}
	return int(math.Ceil(x - 1e-9))
}
