package main

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// syntheticSoak is a 10-minute report shaped like a real run: the
// schedule's load, replicas following it, a few failures at the kill.
func syntheticSoak(t *testing.T) soakReport {
	t.Helper()
	phases, update, kill, err := soakSchedule(10 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r := soakReport{labHead: labHead{runHead: runHead{Started: "2026-12-06T05:00:00Z"}}, Config: soakConfig{DurationS: 600, Function: "pbench-soak-abc123-echo"}, Phases: phases,
		Events: []soakEvent{{Name: soakEventUpdate, AtS: update.Seconds()}, {Name: soakEventUpdateDone, AtS: update.Seconds() + 14},
			{Name: soakEventKill, AtS: kill.Seconds()}}}
	for s := range 600 {
		p := phaseAt(phases, float64(s))
		sec := soakSecond{T: s, Conns: p.Conns, Direct: p.Direct, Started: 400 * p.Conns, Answered: 400 * p.Conns,
			P50MS: 0.5 + float64(p.Conns)/20, P99MS: 2 + float64(p.Conns)/4 + 3*math.Sin(float64(s)/7),
			Replicas: max(1, (p.Conns+7)/8), Desired: max(1, (p.Conns+7)/8)}
		if s == int(kill.Seconds()) {
			sec.Failed, sec.Excused = 3, 2
		}
		if s >= int(update.Seconds()) && s < int(update.Seconds())+14 {
			sec.Draining = 1
		}
		r.Seconds = append(r.Seconds, sec)
	}
	return r
}

func TestRenderSoakPlot(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*soakReport)
	}{
		{"a run with failures", func(*soakReport) {}},
		{"no failures, no events", func(r *soakReport) {
			r.Events = nil
			for i := range r.Seconds {
				r.Seconds[i].Failed, r.Seconds[i].Excused = 0, 0
			}
		}},
		{"empty", func(r *soakReport) { r.Seconds, r.Phases = nil, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := syntheticSoak(t)
			tc.edit(&r)
			b, err := renderSoakPlot(r)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if got := img.Bounds().Dx(); got != 1300 {
				t.Errorf("width %d px, want 1300", got)
			}
			if out := os.Getenv("SOAK_PLOT_OUT"); out != "" && tc.name == "a run with failures" {
				if err := os.WriteFile(out, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestNiceTicks(t *testing.T) {
	labels := func(lo, hi float64, integer bool) string {
		var out []string
		for _, tk := range niceTicks(lo, hi, integer) {
			out = append(out, tk.Label)
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		lo, hi  float64
		integer bool
		want    string
	}{
		{0, 67.2, true, "0 20 40 60"},
		{0, 2.8, true, "0 1 2"},
		{0, 1.4, false, "0 0.5 1"},
		{0, 37800, true, "0 10000 20000 30000"},
		{0, 8.4, true, "0 2 4 6 8"},
		{3, 3, true, "3"},
	} {
		if got := labels(tc.lo, tc.hi, tc.integer); got != tc.want {
			t.Errorf("niceTicks(%g, %g, %t) = %s, want %s", tc.lo, tc.hi, tc.integer, got, tc.want)
		}
	}
}
