package main

import (
	"cmp"
	"math"
	"slices"
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
