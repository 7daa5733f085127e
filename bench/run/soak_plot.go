package main

// The soak suite's picture: five panels sharing the time axis (offered
// connections, answers per second, failed requests, replicas, latency),
// with the rolling update and the kill marked on every panel and the
// direct minute shaded. Drawn from the report alone, so a JSON can be drawn
// again.

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	soakBlue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	soakGreen  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	soakOrange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	soakRed    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	soakPurple = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	soakGrey   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
	soakShade  = color.RGBA{R: 230, G: 230, B: 230, A: 255}
)

// soakPlotPanel is one panel's data before drawing.
type soakPlotPanel struct {
	title   string
	ylabel  string
	log     bool
	integer bool // counts: whole-number ticks only
	series  []soakSeries
	note    string // drawn in the title when the panel has no data worth a line
}

type soakSeries struct {
	name    string
	xys     plotter.XYs
	color   color.Color
	step    bool
	scatter bool
	dashes  []vg.Length
	width   vg.Length
}

// soakPanels turns the report's seconds into the panels' series (x in
// minutes).
func soakPanels(r soakReport) []soakPlotPanel {
	min := func(t int) float64 { return float64(t) / 60 }
	var conns, gw, direct, failed, excused, running, draining, desired, p99, p50 plotter.XYs
	for _, s := range r.Seconds {
		x := min(s.T)
		conns = append(conns, plotter.XY{X: x, Y: float64(s.Conns)})
		if s.Direct {
			direct = append(direct, plotter.XY{X: x + 0.5/60, Y: float64(s.Answered)})
		} else {
			gw = append(gw, plotter.XY{X: x + 0.5/60, Y: float64(s.Answered)})
		}
		if n := s.Failed - s.Excused; n > 0 {
			failed = append(failed, plotter.XY{X: x + 0.5/60, Y: float64(n)})
		}
		if s.Excused > 0 {
			excused = append(excused, plotter.XY{X: x + 0.5/60, Y: float64(s.Excused)})
		}
		running = append(running, plotter.XY{X: x, Y: float64(s.Replicas)})
		draining = append(draining, plotter.XY{X: x, Y: float64(s.Draining)})
		desired = append(desired, plotter.XY{X: x, Y: float64(s.Desired)})
		if s.Started > 0 {
			p99 = append(p99, plotter.XY{X: x + 0.5/60, Y: math.Max(s.P99MS, 0.01)})
			p50 = append(p50, plotter.XY{X: x + 0.5/60, Y: math.Max(s.P50MS, 0.01)})
		}
	}
	failPanel := soakPlotPanel{title: "Failed requests per second (by start time)", ylabel: "requests", integer: true}
	if len(failed) > 0 {
		failPanel.series = append(failPanel.series, soakSeries{name: "failed", xys: failed, color: soakRed, scatter: true})
	}
	if len(excused) > 0 {
		failPanel.series = append(failPanel.series, soakSeries{name: "in flight on the killed replica", xys: excused, color: soakOrange, scatter: true})
	}
	if len(failed)+len(excused) == 0 {
		failPanel.note = " — none failed"
	}
	return []soakPlotPanel{
		{title: "Offered load: closed-loop keep-alive connections", ylabel: "connections", integer: true,
			series: []soakSeries{{name: "connections", xys: conns, color: soakBlue, step: true, width: 2}}},
		{title: "Answered requests per second", ylabel: "req/s", integer: true,
			series: []soakSeries{{name: "through the gateway", xys: gw, color: soakBlue}, {name: "straight to one replica", xys: direct, color: soakGreen}}},
		failPanel,
		{title: "Replicas in pulsed's catalog (polled every 500 ms)", ylabel: "replicas", integer: true,
			series: []soakSeries{{name: "running", xys: running, color: soakBlue, step: true, width: 2},
				{name: "draining", xys: draining, color: soakOrange, step: true},
				{name: "desired", xys: desired, color: soakGrey, step: true, dashes: []vg.Length{vg.Points(4), vg.Points(3)}}}},
		{title: "Latency per second (by start time, log scale)", ylabel: "ms", log: true,
			series: []soakSeries{{name: "p99", xys: p99, color: soakRed}, {name: "p50", xys: p50, color: soakPurple}}},
	}
}

// renderSoakPlot draws the report's picture as a PNG.
func renderSoakPlot(r soakReport) ([]byte, error) {
	panels := soakPanels(r)
	end := r.Config.DurationS / 60
	if end <= 0 && len(r.Seconds) > 0 {
		end = float64(len(r.Seconds)) / 60
	}
	var directFrom, directTo float64 = -1, -1
	for _, p := range r.Phases {
		if p.Direct {
			directFrom, directTo = p.StartS/60, p.EndS/60
		}
	}
	type mark struct {
		name  string
		color color.Color
		dash  []vg.Length
	}
	long, short := []vg.Length{vg.Points(6), vg.Points(3)}, []vg.Length{vg.Points(2), vg.Points(2)}
	markOf := map[string]mark{soakEventUpdate: {"rolling update started", soakOrange, long}, soakEventUpdateDone: {"rolling update done", soakOrange, short},
		soakEventKill: {"replica killed", soakRed, long}}
	ticks := plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var ts []plot.Tick
		for m := math.Ceil(lo); m <= hi+1e-9; m++ {
			ts = append(ts, plot.Tick{Value: m, Label: fmt.Sprintf("%.0f", m)})
		}
		return ts
	})
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title + pn.note
		p.Title.TextStyle.Font.Size = vg.Points(13)
		p.Y.Label.Text = pn.ylabel
		p.X.Tick.Marker = ticks
		if i == len(panels)-1 {
			p.X.Label.Text = "minutes since the load started"
		}
		p.Add(plotter.NewGrid())
		// The y range, from the data, so the shading and marks span it;
		// set again once every plotter is added (Add widens the axes).
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range pn.series {
			for _, xy := range s.xys {
				lo, hi = math.Min(lo, xy.Y), math.Max(hi, xy.Y)
			}
		}
		if pn.log {
			if math.IsInf(lo, 1) {
				lo, hi = 0.1, 10
			}
			// A decade of headroom for the legend.
			lo, hi = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 0.01)))), math.Pow(10, math.Ceil(math.Log10(math.Max(hi, 0.1)))+1)
			p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		} else {
			if math.IsInf(lo, 1) {
				lo, hi = 0, 1
			}
			lo, hi = 0, math.Max(hi*1.4, 1) // headroom for the legend
			p.Y.Tick.Marker = plainTicks{integer: pn.integer}
		}
		if directFrom >= 0 {
			poly, err := plotter.NewPolygon(plotter.XYs{{X: directFrom, Y: lo}, {X: directTo, Y: lo}, {X: directTo, Y: hi}, {X: directFrom, Y: hi}})
			if err != nil {
				return nil, err
			}
			poly.Color, poly.LineStyle.Width = soakShade, 0
			p.Add(poly)
			if i == 0 {
				p.Legend.Add("straight to one replica (CPU comparison)", poly)
			}
		}
		for _, s := range pn.series {
			if len(s.xys) == 0 {
				continue
			}
			if s.scatter {
				sc, err := plotter.NewScatter(s.xys)
				if err != nil {
					return nil, err
				}
				sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = s.color, vg.Points(3), draw.CircleGlyph{}
				p.Add(sc)
				p.Legend.Add(s.name, sc)
				continue
			}
			l, err := plotter.NewLine(s.xys)
			if err != nil {
				return nil, err
			}
			l.Color = s.color
			l.Width = vg.Points(1)
			if s.width > 0 {
				l.Width = s.width
			}
			l.Dashes = s.dashes
			if s.step {
				l.StepStyle = plotter.PostStep
			}
			p.Add(l)
			p.Legend.Add(s.name, l)
		}
		for _, e := range r.Events {
			m, ok := markOf[e.Name]
			if !ok {
				continue
			}
			l, err := plotter.NewLine(plotter.XYs{{X: e.AtS / 60, Y: lo}, {X: e.AtS / 60, Y: hi}})
			if err != nil {
				return nil, err
			}
			l.Color, l.Width, l.Dashes = m.color, vg.Points(1.5), m.dash
			p.Add(l)
			if i == 0 {
				p.Legend.Add(m.name, l)
			}
		}
		p.X.Min, p.X.Max = 0, end
		p.Y.Min, p.Y.Max = lo, hi
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.XOffs = vg.Points(4)
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		p.Legend.ThumbnailWidth = vg.Points(18)
		p.Legend.Padding = vg.Points(1)
		plots[i] = []*plot.Plot{p}
	}
	const w, h = 13 * vg.Inch, 16 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(100))
	dc := draw.New(img)
	title := fmt.Sprintf("Pulse soak run %s: %s through the gateway with the autoscaler on (%s)", readmeTime(r.Started), time.Duration(r.Config.DurationS*float64(time.Second)), r.Config.Function)
	dc.FillText(text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, vg.Points(15)), XAlign: draw.XCenter, YAlign: draw.YCenter,
		Handler: plot.DefaultTextHandler}, vg.Point{X: w / 2, Y: h - vg.Points(14)}, title)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(30), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(14)}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("png: %w", err)
	}
	return buf.Bytes(), nil
}

// plainTicks are 4–8 labelled ticks at a step of 1, 2 or 5 × 10^k, labelled
// without trailing zeros ("25000", "2.5"); whole numbers only for counts.
type plainTicks struct{ integer bool }

func (t plainTicks) Ticks(lo, hi float64) []plot.Tick {
	return niceTicks(lo, hi, t.integer)
}

func niceTicks(lo, hi float64, integer bool) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'f', -1, 64)}}
	}
	raw := (hi - lo) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	if integer {
		step = math.Max(1, math.Round(step))
	}
	var out []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		v = math.Round(v/step) * step
		out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return out
}
