package main

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"time"
)

// median returns the median of xs, or NaN if there are none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianOr is the median of xs, or none when there are none.
func medianOr(none float64, xs []float64) float64 {
	if len(xs) == 0 {
		return none
	}
	return median(xs)
}

// mean is the mean of xs, or NaN if there are none.
func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// values is f of each of xs.
func values[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// positive is xs without the values ≤ 0 (not measured); it reuses xs.
func positive(xs []float64) []float64 {
	return slices.DeleteFunc(xs, func(x float64) bool { return x <= 0 })
}

// groupBy groups items by key: the keys in the order they first appear,
// and each key's items in their order.
func groupBy[T any, K comparable](items []T, key func(T) K) ([]K, map[K][]T) {
	var keys []K
	groups := map[K][]T{}
	for _, it := range items {
		k := key(it)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], it)
	}
	return keys, groups
}

// tally counts one trial or run of a summary: one that failed (err set)
// in failed, flagged "<what>: <err>" (err cut to limit bytes), one that did
// not in ok. It returns whether it succeeded.
func tally(what, err string, limit int, ok, failed *int, flags *[]string) bool {
	if err != "" {
		*failed++
		*flags = append(*flags, what+": "+truncate(err, limit))
		return false
	}
	*ok++
	return true
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// secondsSince is the time since t in seconds, to the millisecond.
func secondsSince(t time.Time) float64 { return round3(time.Since(t).Seconds()) }

// nearestRank returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest value with at least p % of the values at or below it
// (the 9th of 10 for p90); the zero value for none.
func nearestRank[T cmp.Ordered](sorted []T, p float64) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// percentile is nearestRank of xs in any order, NaN for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return nearestRank(s, p)
}

// Goal verdicts.
const (
	pass = "PASS"
	fail = "FAIL"
	skip = "SKIP"
	info = "INFO" // a figure the issue asks for, without a limit
)

// goal is one target from the issue and how this run did against it.
type goal struct {
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

const mb = 1e6 // goals in MB are decimal megabytes (Docker's unit)

func verdict(v, limit float64) string {
	if v <= limit {
		return pass
	}
	return fail
}

// secs is a number of seconds that is written to JSON as null when it is
// NaN (nothing measured) or infinite (a failed trial counted as infinitely
// slow), which JSON cannot hold.
type secs float64

func (s secs) MarshalJSON() ([]byte, error) {
	f := float64(s)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatFloat(round3(f), 'f', -1, 64)), nil
}
