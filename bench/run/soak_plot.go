package main

// The soak's picture, drawn from its report alone: five panels over time
// (offered connections, answers per second, failed requests, replicas,
// latency), the rolling update and the kill marked on each.

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/pulsefaas/pulse/bench/report"
)

// renderSoakPlot draws the picture of a soak of length d as a PNG, from
// the report's per-second series and events.
func renderSoakPlot(rep *report.Report, d time.Duration) ([]byte, error) {
	sec, _ := rep.Records["seconds"].(map[string][]float64)
	blue, green, orange, red := color.RGBA{31, 119, 180, 255}, color.RGBA{44, 160, 44, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{214, 39, 40, 255}
	// A series is a name, its y at second i (NaN: none) and its colour;
	// dots for counts that are mostly zero.
	type series struct {
		name  string
		y     func(i int) float64
		color color.RGBA
		dots  bool
	}
	of := func(k string, keep func(i int) bool) func(int) float64 {
		return func(i int) float64 {
			if keep != nil && !keep(i) {
				return math.NaN()
			}
			return sec[k][i]
		}
	}
	direct := func(i int) bool { return sec["direct"][i] == 1 }
	answered := func(i int) bool { return sec["requests"][i] > 0 }
	panels := []struct {
		title string
		log   bool
		lines []series
	}{
		{"Offered load: closed-loop keep-alive connections", false, []series{{"connections", of("conns", nil), blue, false}}},
		{"Answered requests per second", false, []series{{"through the gateway", of("answered", func(i int) bool { return !direct(i) }), blue, false},
			{"straight to one replica", of("answered", direct), green, false}}},
		{"Failed requests per second (by start time)", false, []series{{"failed", func(i int) float64 { return sec["failed"][i] - sec["excused"][i] }, red, true},
			{"in flight on the killed replica", of("excused", nil), orange, true}}},
		{"Replicas in pulsed's catalog (polled every 500 ms)", false, []series{{"running", of("running", nil), blue, false},
			{"draining", of("draining", nil), orange, false}, {"desired", of("desired", nil), color.RGBA{127, 127, 127, 255}, false}}},
		{"Latency per second (ms, by start time)", true, []series{{"p99", of("p99_ms", answered), red, false}, {"p50", of("p50_ms", answered), color.RGBA{148, 103, 189, 255}, false}}},
	}
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text, p.Legend.Top, p.Legend.Left = pn.title, true, true
		p.Add(plotter.NewGrid())
		hi := 1.0
		for _, s := range pn.lines {
			var xys plotter.XYs
			for j := range sec["conns"] {
				if y := s.y(j); !math.IsNaN(y) && (y > 0 || !s.dots) {
					xys, hi = append(xys, plotter.XY{X: (float64(j) + 0.5) / 60, Y: math.Max(y, 0.01)}), math.Max(hi, y)
				}
			}
			if len(xys) == 0 {
				continue
			}
			var pl plot.Plotter
			if s.dots {
				sc, err := plotter.NewScatter(xys)
				if err != nil {
					return nil, fmt.Errorf("soak picture: %w", err)
				}
				sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = s.color, vg.Points(3), draw.CircleGlyph{}
				pl = sc
			} else {
				l, err := plotter.NewLine(xys)
				if err != nil {
					return nil, fmt.Errorf("soak picture: %w", err)
				}
				l.Color, l.Width = s.color, vg.Points(1.5)
				pl = l
			}
			p.Add(pl)
			p.Legend.Add(s.name, pl.(plot.Thumbnailer))
		}
		lo := 0.0
		if hi *= 1.4; pn.log { // room for the legend
			lo, hi = 0.01, math.Pow(10, math.Ceil(math.Log10(hi))+1)
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
		for _, e := range report.Of(rep.Rows, "event") {
			c, ok := map[string]color.RGBA{soakEventUpdate: orange, soakEventUpdateDone: green, soakEventKill: red}[e.Label("event")]
			if l, err := plotter.NewLine(plotter.XYs{{X: e.V("at_s") / 60, Y: lo}, {X: e.V("at_s") / 60, Y: hi}}); ok && err == nil {
				l.Color, l.Width, l.Dashes = c, vg.Points(1.5), []vg.Length{vg.Points(6), vg.Points(3)}
				p.Add(l)
				if i == 0 {
					p.Legend.Add(e.Label("event"), l)
				}
			}
		}
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, d.Minutes(), lo, hi
		if i == len(panels)-1 {
			p.X.Label.Text = "minutes since the load started"
		}
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.NewWith(vgimg.UseWH(13*vg.Inch, 16*vg.Inch), vgimg.UseDPI(100))
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(14)}
	for i, c := range plot.Align(plots, tiles, draw.New(img)) {
		plots[i][0].Draw(c[0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("soak picture: %w", err)
	}
	return buf.Bytes(), nil
}
