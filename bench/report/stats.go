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
	"cmp"
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

// NearestRank returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest value with at least p % of the values at or below it
// (the 9th of 10 for p90); the zero value for none.
func NearestRank[T cmp.Ordered](sorted []T, p float64) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Percentile is NearestRank of xs in any order, NaN for none.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return NearestRank(s, p)
}

// Values is f of each of xs.
func Values[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// GroupBy groups items by key: the keys in the order they first appear,
// and each key's items in their order.
func GroupBy[T any, K comparable](items []T, key func(T) K) ([]K, map[K][]T) {
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

// Round3 rounds x to a thousandth.
func Round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// Truncate cuts s to n bytes, marking the cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
