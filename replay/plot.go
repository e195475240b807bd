package replay

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	red   = color.RGBA{R: 200, A: 255}
	blue  = color.RGBA{B: 200, A: 255}
	amber = color.RGBA{R: 230, G: 150, A: 255}
	gray  = color.Gray{Y: 120}
)

// PlotPool draws, one panel per arm, the pool's memory over time against the
// budget, with marks where calls were throttled, frozen and OOM-killed.
func PlotPool(path string, results []*ArmResult, budget int64) error {
	plots := make([][]*plot.Plot, len(results))
	for i, r := range results {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("arm (%s) %s", r.Arm.Name, r.Arm.Label)
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = "pool memory (MiB)"
		p.Y.Min, p.Y.Max = 0, float64(budget)/(1<<20)*1.1
		var mem, throttled, frozen, killed plotter.XYs
		var prev PoolSample
		for _, s := range r.Samples {
			pt := plotter.XY{X: s.At.Seconds(), Y: float64(s.Bytes) / (1 << 20)}
			mem = append(mem, pt)
			if s.Throttles > prev.Throttles {
				throttled = append(throttled, pt)
			}
			if s.Frozen > 0 {
				frozen = append(frozen, pt)
			}
			if s.OOMKills > prev.OOMKills {
				killed = append(killed, pt)
			}
			prev = s
		}
		line, err := plotter.NewLine(mem)
		if err != nil {
			return err
		}
		limit := plotter.NewFunction(func(float64) float64 { return float64(budget) / (1 << 20) })
		limit.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		limit.Color = gray
		p.Add(line, limit)
		p.Legend.Add("pool memory", line)
		p.Legend.Add("budget", limit)
		for _, m := range []struct {
			name  string
			pts   plotter.XYs
			shape draw.GlyphDrawer
			c     color.Color
		}{{"throttled", throttled, draw.CircleGlyph{}, amber}, {"frozen", frozen, draw.TriangleGlyph{}, blue}, {"OOM kill", killed, draw.CrossGlyph{}, red}} {
			if len(m.pts) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(m.pts)
			if err != nil {
				return err
			}
			sc.GlyphStyle = draw.GlyphStyle{Shape: m.shape, Color: m.c, Radius: vg.Points(2.5)}
			p.Add(sc)
			p.Legend.Add(m.name, sc)
		}
		p.Legend.Top = true
		plots[i] = []*plot.Plot{p}
	}
	img := vgsvg.New(8*vg.Inch, vg.Length(len(results))*2.6*vg.Inch)
	tiles := draw.Tiles{Rows: len(results), Cols: 1, PadY: 6 * vg.Millimeter, PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, draw.New(img))
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	return writeSVG(path, img)
}

// PlotSweep draws agent-framework kills and completed agents against the
// number of agents, per arm.
func PlotSweep(path string, points []SweepPoint) error {
	p := plot.New()
	p.Title.Text = "agent-framework kills at a fixed budget"
	p.X.Label.Text = "agents (N)"
	p.Y.Label.Text = "agents killed"
	for i, arm := range Arms {
		var pts plotter.XYs
		for _, pt := range points {
			if pt.Arm == arm.Name {
				pts = append(pts, plotter.XY{X: float64(pt.Agents), Y: float64(pt.Totals.AgentKills)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		c := plotutil.Color(i)
		l.Color, s.Color = c, c
		p.Add(l, s)
		p.Legend.Add(fmt.Sprintf("(%s) %s", arm.Name, arm.Label), l, s)
	}
	p.Legend.Top, p.Legend.Left = true, true
	img := vgsvg.New(7*vg.Inch, 4*vg.Inch)
	p.Draw(draw.New(img))
	return writeSVG(path, img)
}

func writeSVG(path string, img *vgsvg.Canvas) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
