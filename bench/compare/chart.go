package compare

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// chartSeries are the lines of each panel, in legend order.
var chartSeries = []struct {
	sys string
	col color.RGBA
}{
	{sysFE1, color.RGBA{0x1f, 0x77, 0xb4, 0xff}},
	{sysFE1Lean, color.RGBA{0x94, 0x67, 0xbd, 0xff}},
	{sysFE2, color.RGBA{0x17, 0xbe, 0xcf, 0xff}},
	{sysLMTP, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}},
	{sysPostfix, color.RGBA{0xff, 0x7f, 0x0e, 0xff}},
	{sysDelivered, color.RGBA{0xd6, 0x27, 0x28, 0xff}},
	{sysCeiling, color.RGBA{0x7f, 0x7f, 0x7f, 0xff}},
}

const (
	panelW, panelH = 520, 380
	margin         = 60
	legendH        = 94 // three rows of three
)

// WriteChart draws throughput vs concurrency, one panel per kind of mail,
// raftmail beside Postfix and the ceiling, as a PNG.
func (r *Report) WriteChart(path string) error {
	payloads := r.Cfg.payloads()
	img := image.NewRGBA(image.Rect(0, 0, panelW*len(payloads), panelH+legendH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for i, p := range payloads {
		r.panel(img, image.Pt(i*panelW, 0), p)
	}
	for i, s := range chartSeries {
		x, y := 20+(i%3)*340, panelH+18+(i/3)*24
		fillRect(img, image.Rect(x, y-6, x+24, y-2), s.col)
		label(img, x+30, y, strings.ReplaceAll(s.sys, "→", "->"), color.Black) // basicfont is ASCII
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r *Report) panel(img *image.RGBA, at image.Point, payload string) {
	concs := r.Cfg.Concurrencies
	top := 1.0
	for _, s := range chartSeries {
		for _, c := range concs {
			top = math.Max(top, r.rate("smtp", payload, c, s.sys))
		}
	}
	top = niceCeil(top)
	x0, y0 := at.X+margin, at.Y+panelH-margin // origin
	w, h := panelW-margin-20, panelH-2*margin
	gray := color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	for i := 0; i <= 4; i++ {
		y := y0 - h*i/4
		fillRect(img, image.Rect(x0, y, x0+w, y+1), gray)
		label(img, at.X+4, y+4, fmt.Sprintf("%.0f", top*float64(i)/4), color.Black)
	}
	fillRect(img, image.Rect(x0, y0-h, x0+1, y0+1), color.Black)
	fillRect(img, image.Rect(x0, y0, x0+w, y0+1), color.Black)
	xAt := func(i int) int {
		if len(concs) == 1 {
			return x0 + w/2
		}
		return x0 + 20 + (w-40)*i/(len(concs)-1)
	}
	for i, c := range concs {
		label(img, xAt(i)-8, y0+18, fmt.Sprint(c), color.Black)
	}
	label(img, x0+w/2-60, y0+40, "concurrent connections", color.Black)
	label(img, at.X+margin, at.Y+24, "messages/s, "+payload+" mail", color.Black)
	for _, s := range chartSeries {
		var prev image.Point
		for i, c := range concs {
			v := r.rate("smtp", payload, c, s.sys)
			if v == 0 {
				prev = image.Point{}
				continue
			}
			p := image.Pt(xAt(i), y0-int(float64(h)*v/top))
			fillRect(img, image.Rect(p.X-3, p.Y-3, p.X+4, p.Y+4), s.col)
			if prev != (image.Point{}) {
				line(img, prev, p, s.col)
			}
			prev = p
		}
	}
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// line draws a 2-pixel line from a to b.
func line(img *image.RGBA, a, b image.Point, c color.RGBA) {
	steps := max(abs(b.X-a.X), abs(b.Y-a.Y), 1)
	for i := 0; i <= steps; i++ {
		x := a.X + (b.X-a.X)*i/steps
		y := a.Y + (b.Y-a.Y)*i/steps
		img.SetRGBA(x, y, c)
		img.SetRGBA(x, y+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func label(img *image.RGBA, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
