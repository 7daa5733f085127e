package main

import (
	"math"
	"testing"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "odd", in: []float64{5, 1, 3}, want: 3},
		{name: "even", in: []float64{4, 1, 3, 2}, want: 2.5},
		{name: "one", in: []float64{7}, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	ten := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	tests := []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{name: "p90 of 10 is the 9th", in: ten, p: 90, want: 9},
		{name: "p50 of 10 is the 5th", in: ten, p: 50, want: 5},
		{name: "p100 is the max", in: ten, p: 100, want: 10},
		{name: "tiny p is the min", in: ten, p: 1, want: 1},
		{name: "p90 of 3 is the max", in: []float64{3, 1, 2}, p: 90, want: 3},
		{name: "one", in: []float64{7}, p: 90, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
		})
	}
	if !math.IsNaN(percentile(nil, 90)) || !math.IsNaN(mean(nil)) {
		t.Error("percentile or mean of nothing is not NaN")
	}
	if got := ten[0]; got != 10 {
		t.Error("percentile sorted its input")
	}
	if got := mean([]float64{1, 2, 6}); got != 3 {
		t.Errorf("mean = %v, want 3", got)
	}
}
