// Package report is what every benchmark suite shares: the statistics
// (medians, percentiles), the measurement model (a Row per measured run or
// trial, Groups summarising rows that share labels), the goals a suite
// checks its figures against, and one rendering of a suite's Report as a
// terminal text, a README section and a JSON results file.
//
// A suite measures; everything it reports goes through this package, so a
// new suite writes only its measurement, its table columns and its goals.
package report

import (
	"math"
	"slices"
)

// Median returns the median of xs, or NaN if there are none.
func Median(xs []float64) float64 {
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

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of xs in any
// order: the smallest value with at least p % of the values at or below it
// (the 9th of 10 for p90); NaN for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// Values is f of each of xs.
func Values[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// Round3 rounds x to a thousandth.
func Round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// Truncate cuts s to n bytes, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
